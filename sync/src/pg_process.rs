//! # A throw-away PostgreSQL server (test and bench fixture)
//!
//! [`PostgresProcess::start`] runs the system's PostgreSQL: `initdb` into a fresh temporary
//! directory (trust authentication, superuser `postgres`, UTF-8, no fsync of the initial files),
//! then `postgres` listening on a free port of 127.0.0.1 only, with its unix socket in that
//! directory too, and returns once a connection succeeds and the database `central` exists.
//! Dropping it stops the server (SIGQUIT: immediate shutdown, then SIGKILL if it lingers),
//! waits for it and removes the directory. It never touches port 5432 or the Debian package's
//! system cluster (which may be running).
//!
//! The server itself keeps `fsync=on` (the default): a commit waits for the disk, as it would
//! in production.
//!
//! ## Binaries
//! `$PG_BINDIR` if set, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/<ver>/bin`
//! (Debian's layout). Missing: an error naming `scripts/install-native`.
//!
//! ## As root
//! PostgreSQL refuses to run as root, and CI runs as root. Then `initdb` and `postgres` run
//! inside a user namespace, `unshare --user --map-user=65534 --map-group=65534` (util-linux
//! 2.38, Debian 12): inside it they are `nobody`, the temporary directory (owned by root
//! outside) is theirs, and outside nothing changes owner. `unshare` execs the program, so the
//! child's pid is the postmaster's. As any other user they run directly.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::central::postgres::off_runtime;

/// How long [`PostgresProcess::start`] waits for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The database [`PostgresProcess::start`] creates.
pub const TEST_DATABASE: &str = "central";

/// A running PostgreSQL server, stopped and deleted when dropped.
#[derive(Debug)]
pub struct PostgresProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PostgresProcess {
    /// Initialises a cluster in a temporary directory and starts it on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(None)
    }

    /// [`Self::start`] with TLS on (`ssl=on`): the server presents `cert_pem` (its key in
    /// `key_pem`, both PEM; copied into the cluster's folder with mode 0600 as PostgreSQL wants).
    /// Plain connections are still accepted, so one test can try both.
    pub fn start_with_tls(cert_pem: &Path, key_pem: &Path) -> anyhow::Result<Self> {
        Self::start_inner(Some((cert_pem, key_pem)))
    }

    fn start_inner(tls: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let bindir = find_bindir()?;
        let dir = unique_dir()?;
        let data = dir.join("data");
        let log_path = dir.join("postgres.log");
        let initdb = as_non_root(&bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", bindir.join("initdb").display()));
        let initdb = match initdb {
            Ok(out) => out,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if !initdb.status.success() {
            let _ = fs::remove_dir_all(&dir);
            bail!(
                "initdb failed ({}):\n{}{}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr)
            );
        }
        let mut tls_args = Vec::new();
        if let Some((cert, key)) = tls {
            let (cert_to, key_to) = (dir.join("server.crt"), dir.join("server.key"));
            let copied = fs::copy(cert, &cert_to)
                .with_context(|| format!("copying {}", cert.display()))
                .and_then(|_| {
                    fs::copy(key, &key_to).with_context(|| format!("copying {}", key.display()))
                })
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt as _;
                    fs::set_permissions(&key_to, fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("chmod 600 {}", key_to.display()))
                });
            if let Err(e) = copied {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
            tls_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert_to.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key_to.display()),
            ];
        }
        let port = crate::loopback::free_port()?;
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating {}", log_path.display()))?;
        let child = as_non_root(&bindir.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir)
            // Enough connections for a few test clients; small shared memory.
            .args(["-c", "max_connections=20", "-c", "shared_buffers=32MB"])
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("starting {}", bindir.join("postgres").display()))?;
        // From here on, Drop cleans up whatever happens.
        let mut process = Self { child, port, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match process.create_database(TEST_DATABASE) {
                Ok(_) => {
                    tracing::debug!(port, "postgres ready");
                    return Ok(process);
                }
                Err(error) => {
                    if let Some(status) = process.child.try_wait().context("polling postgres")? {
                        bail!(
                            "postgres exited with {status} before accepting connections on port {port}; its log:\n{}",
                            read_log(&log_path)
                        );
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "postgres did not accept connections on port {port} within {} s ({error:#}); its log:\n{}",
                            READY_TIMEOUT.as_secs(),
                            read_log(&log_path)
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates another empty database on this server and returns its URL (one server, many
    /// independent stores).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let admin = self.url_of("postgres");
        off_runtime(|| -> anyhow::Result<()> {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                .with_context(|| format!("connecting to {admin}"))?;
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .with_context(|| format!("creating database {name}"))
        })?;
        Ok(self.url_of(name))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the test database, for [`crate::CentralStore::open_postgres`].
    pub fn url(&self) -> String {
        self.url_of(TEST_DATABASE)
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster takes its backends down with it.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A command for `program` that runs as a user other than root (see the module documentation).
fn as_non_root(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-user=65534", "--map-group=65534"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    // No libc (unsafe is denied): the effective uid from /proc ("Uid: real effective ...").
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn find_bindir() -> anyhow::Result<PathBuf> {
    const HINT: &str =
        "install PostgreSQL: apt-get install postgresql (scripts/install-native does), \
                        or set PG_BINDIR to the folder holding initdb and postgres";
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("PostgreSQL's initdb and postgres were not found (no PG_BINDIR, no pg_config, nothing in /usr/lib/postgresql/*/bin); {HINT}"))
}

fn unique_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Short: the unix socket's path must stay under 108 bytes.
    let dir = std::env::temp_dir().join(format!(
        "bcp-pg-{}-{n}-{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
