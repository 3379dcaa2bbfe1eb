//! A private redis-server on a free loopback port and the real clients
//! the Redis tests drive (redis-py from the lab venv, redis-cli,
//! redis-benchmark).

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Proc, free_port, lab_dir, tool, wait_for_port};

/// `redis-server` in a temporary directory, stopped when dropped.
pub struct RedisServer {
    pub proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server without persistence; with `password`, clients must
    /// AUTH with it (`requirepass`).
    pub fn start(password: Option<&str>) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(tool("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let proc = Proc::spawn("redis-server", &mut cmd);
        wait_for_port(port, Duration::from_secs(10));
        RedisServer {
            proc,
            port,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// The lab venv's Python (redis-py installed by scripts/lab.sh).
pub fn lab_python() -> std::path::PathBuf {
    let p = lab_dir().join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/lab.sh as root",
        p.display()
    );
    p
}

/// Runs a redis-py script (`PORT` and `PASSWORD` in its environment) and
/// returns its stdout; panics if it fails.
pub fn redis_py(script: &str, port: u16, password: &str) -> String {
    let out = Command::new(lab_python())
        .arg("-c")
        .arg(script)
        .env("PORT", port.to_string())
        .env("PASSWORD", password)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "redis-py script failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-benchmark -p PORT -q ARGS…`; panics if it fails.
pub fn redis_benchmark(port: u16, args: &[&str]) -> String {
    let out = Command::new(tool("redis-benchmark"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(args)
        .output()
        .expect("run redis-benchmark");
    assert!(out.status.success(), "redis-benchmark failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `bytes` to the port and closes (the server answers garbage with
/// an error or nothing).
pub fn send_raw(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(bytes).expect("write");
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = [0u8; 256];
    let _ = std::io::Read::read(&mut s, &mut buf);
}
