//! A real PostgreSQL server for tests: `initdb` into a temporary directory,
//! `postgres` on a free loopback port, stopped when dropped.
//!
//! Use it as `kendo_test_support::postgres_server`
//! and start one with [`PostgresServer::start_or_skip`]:
//!
//! ```ignore
//! let Some(pg) = PostgresServer::start_or_skip("my_test") else { return };
//! let url = pg.url();
//! ```
//!
//! The binaries are looked up on `PATH`, then in
//! `/usr/lib/postgresql/*/bin/` (Debian's `postgresql` package). Where they
//! are missing, `start_or_skip` prints `SKIPPED: ...` and returns `None`, so
//! the test passes; when the `CI` environment variable is set, that is a
//! failure instead. PostgreSQL refuses to run as root: when the tests run as
//! root, the server runs as the `postgres` system user (the package creates
//! it), and the temporary directory is handed to that user.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A `postgres` child process on `127.0.0.1:<port>`, superuser `postgres`,
/// trust authentication on loopback.
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Uid and gid the server runs as (when the tests run as root).
    user: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Starts a server, or returns `None` after printing a SKIPPED line when
    /// PostgreSQL is not installed (panics instead when `CI` is set).
    ///
    /// # Panics
    ///
    /// When it is installed but does not start, or when it is missing and
    /// `CI` is set.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        let Some(bin) = postgres_bin_dir() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: initdb/postgres not found (on PATH or in /usr/lib/postgresql/*/bin), \
                     and CI is set: install them (apt-get install -y postgresql) so the Postgres \
                     tests really run"
                );
            }
            println!("SKIPPED: PostgreSQL (initdb, postgres) not found ({test}); install the postgresql package to run it");
            return None;
        };
        let dir = tempfile::tempdir().expect("create a temporary directory for postgres");
        let user = run_as_user(test);
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap_or_else(|e| {
                panic!("{test}: chown the temporary directory to postgres: {e}")
            });
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb
            .output()
            .unwrap_or_else(|e| panic!("{test}: run initdb: {e}"));
        assert!(
            output.status.success(),
            "{test}: initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Self {
            child: None,
            port: 0,
            bin,
            data,
            user,
            dir,
        };
        // A free port can be taken by someone else between our check and
        // the server's bind: try a few.
        let mut last_error = String::new();
        for _attempt in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("{test}: postgres did not start: {last_error}");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open connections are cut, every
    /// committed transaction stays) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + STARTUP_DEADLINE;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Restarts the server with TLS on (`cert_pem` and `key_pem` as its
    /// certificate and key) and refuses every loopback connection without
    /// TLS (`hostnossl … reject` in `pg_hba.conf`).
    ///
    /// # Panics
    ///
    /// When the files cannot be written or the server does not come back.
    pub fn require_tls(&mut self, cert_pem: &str, key_pem: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        self.stop();
        let write = |name: &str, content: &str, mode: u32| {
            let path = self.data.join(name);
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {name}: {e}"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
            if let Some((uid, gid)) = self.user {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {name}: {e}"));
            }
        };
        write("server.crt", cert_pem, 0o644);
        write("server.key", key_pem, 0o600);
        write(
            "pg_hba.conf",
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
            0o600,
        );
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        self.restart();
    }

    /// Starts the stopped server again on the same port and data directory.
    ///
    /// # Panics
    ///
    /// When it does not come back within the startup deadline.
    pub fn restart(&mut self) {
        self.stop();
        let mut last_error = String::new();
        // The old socket may take a moment to free the port.
        for _attempt in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(error) => last_error = error,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "postgres did not restart on port {}: {last_error}",
            self.port
        );
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.path().join(format!("postgres-{}.log", self.port)))
                .map_err(|e| format!("create the server log: {e}"))?;
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=50"])
            .args(["-c", "shared_buffers=32MB"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.join("postgres").display()))?;
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(
                    self.dir.path().join(format!("postgres-{}.log", self.port)),
                )
                .unwrap_or_default();
                return Err(format!(
                    "exited with {status} (port {} taken?): {log}",
                    self.port
                ));
            }
            if self.is_ready() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not accepting connections on port {} within {STARTUP_DEADLINE:?}",
                    self.port
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Whether the server accepts connections (`pg_isready`, or a TCP
    /// connect where it is missing).
    fn is_ready(&self) -> bool {
        let pg_isready = self.bin.join("pg_isready");
        if pg_isready.is_file() {
            return Command::new(pg_isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-t",
                    "1",
                ])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        }
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: nothing to keep.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory holding `initdb` and `postgres`: `PATH` first, then the
/// newest `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir)) {
            // Follow a symlinked initdb back to its real directory, where
            // postgres and pg_isready live beside it.
            let real = std::fs::canonicalize(dir.join("initdb")).ok();
            return Some(match real.as_deref().and_then(Path::parent) {
                Some(parent) if has_both(parent) => parent.to_path_buf(),
                _ => dir,
            });
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// Uid and gid of the `postgres` user when running as root (PostgreSQL
/// refuses root); `None` when not root.
fn run_as_user(test: &str) -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let output = Command::new("id").args(args).output().ok()?;
        String::from_utf8(output.stdout).ok()?.trim().parse().ok()
    };
    if id(&["-u"]) != Some(0) {
        return None;
    }
    match (id(&["-u", "postgres"]), id(&["-g", "postgres"])) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        _ => panic!(
            "{test}: running as root, and PostgreSQL refuses root, but there is no `postgres` \
             user to run it as (the postgresql package creates it; or: useradd --system postgres)"
        ),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
