//! A real `redis-server` for tests: started on a free loopback port with no
//! persistence, stopped (killed) when dropped.
//!
//! Use it as `kendo_test_support::redis_server`
//! and start one with [`RedisServer::start_or_skip`]:
//!
//! ```ignore
//! let Some(redis) = RedisServer::start_or_skip("my_test") else { return };
//! let url = redis.url();
//! ```
//!
//! [`RedisServer::start_tls_or_skip`] starts one that speaks only TLS, with
//! the certificate, key and CA the test gives.
//!
//! Where `redis-server` is not on `PATH`, `start_or_skip` prints
//! `SKIPPED: redis-server not found` and returns `None`, so the test passes;
//! when the `CI` environment variable is set, that is a failure instead.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer `PING`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two `PING` attempts while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A `redis-server` child process on `127.0.0.1:<port>`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    /// Serves only TLS on `port` (no plain port).
    tls: bool,
    dir: tempfile::TempDir,
}

/// PEM texts for a TLS `redis-server`.
pub struct TlsPem<'a> {
    /// The server's certificate (chain).
    pub cert: &'a str,
    /// The server certificate's private key.
    pub key: &'a str,
    /// The CA redis-server requires (clients are not asked for certificates).
    pub ca: &'a str,
}

impl RedisServer {
    /// Starts a server, or returns `None` after printing a SKIPPED line when
    /// `redis-server` is not installed (panics instead when `CI` is set).
    ///
    /// # Panics
    ///
    /// When the server is installed but does not start, or when it is
    /// missing and `CI` is set.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        Self::start_with_args_or_skip(test, &[])
    }

    /// [`start_or_skip`](Self::start_or_skip) with extra `redis-server`
    /// arguments, e.g. `["--requirepass", "secret"]`.
    pub fn start_with_args_or_skip(test: &str, args: &[&str]) -> Option<Self> {
        Self::start_inner(test, args, None)
    }

    /// [`start_or_skip`](Self::start_or_skip) for a server that speaks only
    /// TLS (`--port 0 --tls-port <port>`), with `pem`'s certificate and key,
    /// and without client certificates (`--tls-auth-clients no`).
    ///
    /// [`command`](Self::command) does not speak TLS, so it does not work on
    /// this server.
    pub fn start_tls_or_skip(test: &str, pem: &TlsPem<'_>) -> Option<Self> {
        Self::start_inner(test, &[], Some(pem))
    }

    fn start_inner(test: &str, args: &[&str], tls: Option<&TlsPem<'_>>) -> Option<Self> {
        let Some(binary) = redis_server_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: redis-server not found on PATH, and CI is set: install it \
                     (apt-get install -y redis-server) so the Redis tests really run"
                );
            }
            println!("SKIPPED: redis-server not found ({test}); install redis-server to run it");
            return None;
        };
        let dir = tempfile::tempdir().expect("create a temporary directory for redis-server");
        let mut extra_args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        if let Some(pem) = tls {
            for (option, name, text) in [
                ("--tls-cert-file", "server.crt", pem.cert),
                ("--tls-key-file", "server.key", pem.key),
                ("--tls-ca-cert-file", "ca.crt", pem.ca),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, text).expect("write a TLS file for redis-server");
                extra_args.push(option.to_owned());
                extra_args.push(path.to_str().expect("UTF-8 temporary path").to_owned());
            }
            extra_args.extend(["--tls-auth-clients".to_owned(), "no".to_owned()]);
        }
        let mut server = Self {
            child: None,
            port: 0,
            extra_args,
            tls: tls.is_some(),
            dir,
        };
        // A free port can be taken by someone else between our check and
        // redis-server's bind: try a few.
        let mut last_error = String::new();
        for _attempt in 0..5 {
            server.port = free_port();
            match server.spawn(&binary) {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("{test}: redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL, like a crash) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with empty data, and waits
    /// until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When it does not come back within the startup deadline.
    pub fn restart(&mut self) {
        self.kill();
        let binary = redis_server_binary().expect("redis-server was found before");
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut last_error = String::new();
        // The old socket may take a moment to free the port.
        for _attempt in 0..20 {
            match self.spawn(&binary) {
                Ok(()) => return,
                Err(error) => last_error = error,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}: {last_error}",
            self.port
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`pause`](Self::pause)d server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends one command and returns the raw first reply line, e.g. `+PONG`.
    pub fn command(&self, parts: &[&str]) -> std::io::Result<String> {
        raw_command(self.port, parts)
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed: {status}");
    }

    fn spawn(&mut self, binary: &PathBuf) -> Result<(), String> {
        let port = self.port.to_string();
        let ports = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let mut child = Command::new(binary)
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status} (port {} taken?)", self.port));
            }
            let ready = if self.tls {
                // The handshake is the client's job; a listening port is
                // enough (redis-server listens once it is ready).
                let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
                TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            } else {
                // `-NOAUTH` also proves the server is up (with --requirepass).
                raw_command(self.port, &["PING"])
                    .is_ok_and(|reply| reply == "+PONG" || reply.starts_with("-NOAUTH"))
            };
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready on port {} within {STARTUP_DEADLINE:?}",
                    self.port
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A paused server would ignore SIGTERM; SIGKILL works regardless.
            self.kill();
        }
    }
}

fn redis_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// One RESP command over a fresh connection, with short timeouts.
///
/// Returns a simple reply as its line (`+PONG`, `:42`, `-ERR ...`), a bulk
/// string as its content and a nil bulk string as `(nil)`.
fn raw_command(port: u16, parts: &[&str]) -> std::io::Result<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let mut request = format!("*{}\r\n", parts.len());
    for part in parts {
        request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded by the read timeout and by size.
    while reply.len() < 1 << 20 {
        if let Some(line_end) = reply.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&reply[..line_end]).into_owned();
            let Some(length) = line.strip_prefix('$') else {
                return Ok(line);
            };
            let Ok(length) = length.parse::<usize>() else {
                return Ok("(nil)".to_owned());
            };
            let start = line_end + 2;
            if reply.len() >= start + length + 2 {
                return Ok(String::from_utf8_lossy(&reply[start..start + length]).into_owned());
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "incomplete reply from redis-server",
    ))
}
