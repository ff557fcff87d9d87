//! Where the benchmark writes, and which filesystem that is.
//!
//! fsync on a memory filesystem (`tmpfs`, `ramfs`) costs nothing, so durability figures
//! measured there mean nothing. Without `--dir`, the benchmark uses the system temp directory
//! unless it is memory-backed, in which case it falls back to `target/bench-data` next to the
//! binary. The filesystem actually used is printed with the report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Filesystem types whose fsync does not reach a disk.
const MEMORY_FILESYSTEMS: [&str; 3] = ["tmpfs", "ramfs", "devtmpfs"];

/// The filesystem a path lives on, from `/proc/self/mounts`.
#[derive(Debug, Clone)]
pub(crate) struct Filesystem {
    pub(crate) fs_type: String,
    pub(crate) device: String,
    pub(crate) mount_point: PathBuf,
}

impl Filesystem {
    /// True when fsync on it is free (nothing reaches a disk).
    pub(crate) fn is_memory(&self) -> bool {
        MEMORY_FILESYSTEMS.contains(&self.fs_type.as_str())
    }
}

/// The directory the benchmark's databases go under, and what it is.
#[derive(Debug)]
pub(crate) struct BenchDir {
    pub(crate) path: PathBuf,
    /// `None` where the mount table cannot be read (not Linux).
    pub(crate) filesystem: Option<Filesystem>,
    /// Why this directory was chosen, or what is wrong with it.
    pub(crate) note: String,
}

impl BenchDir {
    /// One line for the report: path, filesystem, device and mount point.
    pub(crate) fn describe(&self) -> String {
        match &self.filesystem {
            Some(fs) => format!(
                "`{}` on **{}** (device `{}`, mounted at `{}`) — {}",
                self.path.display(),
                fs.fs_type,
                fs.device,
                fs.mount_point.display(),
                self.note
            ),
            None => format!("`{}` on an unknown filesystem — {}", self.path.display(), self.note),
        }
    }
}

/// Picks the benchmark directory: `requested` if given, else the system temp directory unless
/// it is memory-backed, else `target/bench-data`. The directory is created if missing.
pub(crate) fn choose(requested: Option<&Path>) -> Result<BenchDir> {
    if let Some(path) = requested {
        let path = prepare(path)?;
        let filesystem = filesystem_of(&path);
        let note = match &filesystem {
            Some(fs) if fs.is_memory() => {
                "given by --dir; WARNING: memory filesystem, fsync is free and the fsync figures mean nothing"
                    .to_string()
            }
            _ => "given by --dir".to_string(),
        };
        return Ok(BenchDir { path, filesystem, note });
    }
    let temp = prepare(&std::env::temp_dir())?;
    let temp_fs = filesystem_of(&temp);
    match &temp_fs {
        Some(fs) if fs.is_memory() => {
            let fallback = prepare(&fallback_dir())?;
            let filesystem = filesystem_of(&fallback);
            let mut note = format!(
                "the system temp directory `{}` is {}, where fsync is free; using the build directory instead",
                temp.display(),
                fs.fs_type
            );
            if filesystem.as_ref().is_some_and(Filesystem::is_memory) {
                note.push_str("; WARNING: it is memory-backed too, the fsync figures mean nothing");
            }
            Ok(BenchDir { path: fallback, filesystem, note })
        }
        _ => Ok(BenchDir { path: temp, filesystem: temp_fs, note: "the system temp directory".to_string() }),
    }
}

/// Creates `path` if needed and returns it canonicalised.
fn prepare(path: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("create benchmark directory {}", path.display()))?;
    path.canonicalize().with_context(|| format!("resolve benchmark directory {}", path.display()))
}

/// `target/bench-data`, found from the binary's own place (`target/<profile>/covenant-bench`);
/// `./target/bench-data` when that does not work out.
fn fallback_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(|target| target.join("bench-data")))
        .unwrap_or_else(|| PathBuf::from("target").join("bench-data"))
}

/// The filesystem holding `path` (already canonical): the longest mount point that contains it.
pub(crate) fn filesystem_of(path: &Path) -> Option<Filesystem> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<Filesystem> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mount_field(mount_point));
        if !path.starts_with(&mount_point) {
            continue;
        }
        // Later lines win ties: a mount stacked on the same point hides the earlier one.
        let longer =
            best.as_ref().is_none_or(|b| mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(Filesystem {
                fs_type: fs_type.to_string(),
                device: unescape_mount_field(device),
                mount_point,
            });
        }
    }
    best
}

/// Undoes the octal escapes (`\040` for a space, …) of `/proc/self/mounts` fields.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' {
            let octal = bytes
                .get(index + 1..index + 4)
                .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
            if let Some(digits) = octal {
                let value = digits.iter().fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                if let Ok(value) = u8::try_from(value) {
                    out.push(value);
                    index += 4;
                    continue;
                }
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
        assert_eq!(unescape_mount_field("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn root_is_on_some_filesystem() {
        if Path::new("/proc/self/mounts").exists() {
            assert!(filesystem_of(Path::new("/")).is_some());
        }
    }
}
