//! A real `redis-server` for tests: started on a free loopback port with no
//! persistence, stopped (killed) when dropped.
//!
//! Include it with `#[path = "support/redis_server.rs"] mod redis_server;`
//! and start one with [`RedisServer::start_or_skip`]:
//!
//! ```ignore
//! let Some(redis) = RedisServer::start_or_skip("my_test") else { return };
//! let url = redis.url();
//! ```
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
    dir: tempfile::TempDir,
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
        let mut server = Self {
            child: None,
            port: 0,
            extra_args: args.iter().map(|&a| a.to_owned()).collect(),
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

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
        let mut child = Command::new(binary)
            .args(["--port", &self.port.to_string()])
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
            match raw_command(self.port, &["PING"]) {
                // `-NOAUTH` also proves the server is up (with --requirepass).
                Ok(reply) if reply == "+PONG" || reply.starts_with("-NOAUTH") => {
                    self.child = Some(child);
                    return Ok(());
                }
                _ if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "no PONG on port {} within {STARTUP_DEADLINE:?}",
                        self.port
                    ));
                }
                _ => std::thread::sleep(POLL_INTERVAL),
            }
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
