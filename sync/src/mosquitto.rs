//! # A throw-away Mosquitto broker (test and demo fixture)
//!
//! [`MosquittoProcess::start`] runs the system's `mosquitto` on a free loopback port with a
//! configuration in a fresh temporary directory (`listener <port> 127.0.0.1`,
//! `allow_anonymous true`, `persistence false`) and returns once the port accepts connections.
//! Dropping it kills the process, waits for it and removes the directory, so tests leave nothing
//! behind. It never touches port 1883 or a system-wide Mosquitto.
//!
//! The binary is `$MOSQUITTO_BIN` if set, else `mosquitto` on `PATH`, else `/usr/sbin/mosquitto`
//! (Debian installs it there, outside a normal user's `PATH`).
//!
//! Kept in the library (not under `tests/`) so that other crates' tests can use it too.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long [`MosquittoProcess::start`] waits for the broker to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Mosquitto, killed when dropped.
#[derive(Debug)]
pub struct MosquittoProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl MosquittoProcess {
    /// Starts Mosquitto on a free port of 127.0.0.1.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::loopback::free_port()?)
    }

    /// Starts Mosquitto on a given port of 127.0.0.1 (to restart a broker where clients expect
    /// it, after dropping the previous one).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::start_with(port, "")
    }

    /// Starts Mosquitto with a TLS listener on a free port of 127.0.0.1: its certificate and
    /// key, the CA that clients' certificates must chain to, and whether clients must present
    /// one (mutual TLS). All PEM files.
    pub fn start_tls(
        ca: &Path,
        cert: &Path,
        key: &Path,
        require_client_certificate: bool,
    ) -> anyhow::Result<Self> {
        let extra = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_client_certificate}\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        Self::start_with(crate::loopback::free_port()?, &extra)
    }

    /// `listener_extra`: configuration lines for the listener (TLS files, ...).
    fn start_with(port: u16, listener_extra: &str) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        let dir = unique_dir()?;
        let conf = dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{listener_extra}allow_anonymous true\npersistence false\nlog_dest stderr\n"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let log_path = dir.join("mosquitto.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating {}", log_path.display()))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // From here on, Drop cleans up whatever happens.
        let mut process = Self { child, port, dir };

        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                tracing::debug!(port, "mosquitto ready");
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait().context("polling mosquitto")? {
                bail!(
                    "mosquitto exited with {status} before accepting connections on {addr}; its log:\n{}",
                    read_log(&log_path)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "mosquitto did not accept connections on {addr} within {} s; its log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    read_log(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for MosquittoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("MOSQUITTO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file());
    let fallback = Path::new("/usr/sbin/mosquitto");
    on_path
        .or_else(|| fallback.is_file().then(|| fallback.to_owned()))
        .context(
            "the mosquitto binary was not found (not on PATH, not /usr/sbin/mosquitto, \
             MOSQUITTO_BIN unset); install it: apt-get install mosquitto (scripts/install-native does)",
        )
}

fn unique_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "bcp-mosquitto-{}-{n}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
