//! Real service processes for the black-box tests: ledger, standing and watchdog child
//! processes on free ports, started against a test's own nats-server and data directories,
//! killed with SIGKILL on demand and on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running service child process (`ledger-process`, `standing-process`, `watchdog-process`).
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    pub grpc_addr: SocketAddr,
}

/// The ledger's process (the name the earlier tests use).
pub type LedgerProcess = ServiceProcess;

impl ServiceProcess {
    /// Starts `binary` with `args` (plus `--grpc-addr 127.0.0.1:0`, and `--insecure-no-auth`
    /// unless `args` name `--auth-tokens`: the tests of authentication pass their own token file,
    /// the others test something else) and waits until it prints `<name> listening on <addr>`.
    pub fn start_service<S: AsRef<std::ffi::OsStr>>(binary: &Path, name: &str, args: &[S]) -> Result<Self> {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        Self::spawn(binary, name, args, Stdio::inherit(), &level, &[])
    }

    fn spawn<S: AsRef<std::ffi::OsStr>>(
        binary: &Path,
        name: &str,
        args: &[S],
        stderr: Stdio,
        log_level: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let authenticated = args.iter().any(|arg| arg.as_ref() == "--auth-tokens");
        let mut child = Command::new(binary)
            .args(args)
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args((!authenticated).then_some("--insecure-no-auth"))
            .env("RUST_LOG", log_level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the service's stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let prefix = format!("{name} listening on ");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix(&prefix) {
                    let _ = sender.send(addr.trim().to_owned());
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => {
                Ok(Self { child, grpc_addr: addr.parse().with_context(|| format!("the {name}'s address"))? })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("the {name} did not start listening (exit status {status})")
            }
        }
    }

    /// Starts the ledger binary `binary` on a free port with its log in `data_dir`, talking to
    /// NATS at `nats_url`, serving metrics at `metrics` (an address or `off`), and waits until
    /// it listens.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        nats_url: &str,
        durability: &str,
        metrics: &str,
    ) -> Result<Self> {
        let data_dir = data_dir.as_os_str().to_owned();
        let args: Vec<std::ffi::OsString> = vec![
            "--data-dir".into(),
            data_dir,
            "--durability".into(),
            durability.into(),
            "--nats-url".into(),
            nats_url.into(),
            "--metrics-addr".into(),
            metrics.into(),
        ];
        Self::start_service(binary, "ledger", &args)
    }

    /// Starts standing (`name` "standing") or the watchdog (`name` "watchdog") with its store in
    /// `data_dir`, for a log of `partitions` partitions, metrics off.
    pub fn start_consumer(
        binary: &Path,
        name: &str,
        data_dir: &Path,
        nats_url: &str,
        partitions: u16,
    ) -> Result<Self> {
        let args: Vec<std::ffi::OsString> = vec![
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
            "--nats-url".into(),
            nats_url.into(),
            "--partitions".into(),
            partitions.to_string().into(),
            "--metrics-addr".into(),
            "off".into(),
        ];
        Self::start_service(binary, name, &args)
    }

    /// Starts `binary` (`name` "ledger", "standing" or "watchdog") with its data in `data_dir`,
    /// metrics off, calls checked against the token file `tokens`, plus `extra` options and
    /// `env`, its log written to `log` at `debug` level (so a test can check what even a verbose
    /// log never holds).
    #[allow(clippy::too_many_arguments)]
    pub fn start_authenticated(
        binary: &Path,
        name: &str,
        data_dir: &Path,
        nats_url: &str,
        tokens: &Path,
        extra: &[std::ffi::OsString],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
            "--nats-url".into(),
            nats_url.into(),
            "--metrics-addr".into(),
            "off".into(),
            "--auth-tokens".into(),
            tokens.as_os_str().to_owned(),
        ];
        args.extend(extra.iter().cloned());
        let stderr = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        Self::spawn(binary, name, &args, Stdio::from(stderr), "debug", env)
    }

    /// `http://<addr>` for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident memory of the process now, in bytes (`VmRSS`).
    pub fn resident_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("VmRSS in /proc/<pid>/status")?;
        Ok(kib * 1024)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (at most `timeout`); true when it exited cleanly.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Ok(false)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory of a test's own state (kept on failure only if `COVENANT_KEEP_TEST_DIRS` is set).
pub fn test_dir() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("covenant-test-").tempdir()?;
    if std::env::var_os("COVENANT_KEEP_TEST_DIRS").is_some() {
        eprintln!("test directory: {}", dir.path().display());
    }
    Ok(dir)
}

/// `dir/name`.
pub fn sub(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// A loopback port that was free a moment ago (for services that cannot report the port they
/// bound, such as the metrics listener).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The body of `GET http://127.0.0.1:<port><path>` (plain HTTP/1.0), retried for up to 10 s
/// while the listener starts.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                let body =
                    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
                return Ok(body);
            }
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => return Err(error.into()),
        }
    }
}
