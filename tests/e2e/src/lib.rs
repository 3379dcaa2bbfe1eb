//! Harness for the privileged end-to-end tests: start the real agent, real
//! servers and real clients on free loopback ports, collect what the agent
//! prints and serves, and stop exactly what was started.
//!
//! Nothing is skipped: a missing tool or privilege panics with its name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod grpc;
pub mod mysql;
pub mod redis;

/// Fails loudly unless we can load BPF programs.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .expect("Uid line");
    assert_eq!(
        euid, "0",
        "end-to-end tests load BPF programs: run them as root"
    );
}

/// The path of a required tool, or a panic naming it.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("required tool `{name}` is not installed (the README's test command installs it)");
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_for_addr("127.0.0.1", port, timeout);
}

pub fn wait_for_addr(host: &str, port: u16, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect((host, port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {host}:{port} after {timeout:?}");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The agent binary: $RATATOSK_BIN, else target/debug/ratatosk (built by
/// the test command before the tests run).
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RATATOSK_BIN") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/debug/ratatosk");
    assert!(
        p.is_file(),
        "{} is missing: build it first (`cargo build -p ratatosk`)",
        p.display()
    );
    p
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} failed: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running agent whose JSON trace printer output is collected.
pub struct Agent {
    pub proc: Proc,
    spans: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    pub metrics_port: u16,
}

impl Agent {
    /// Starts `ratatosk --trace-printer json --prometheus-port P ARGS…` and
    /// waits until it logs `ready`.
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Agent {
        require_root();
        let metrics_port = free_port();
        let mut cmd = Command::new(agent_bin());
        cmd.args([
            "--trace-printer",
            "json",
            "--prometheus-address",
            "127.0.0.1",
        ])
        .args(["--prometheus-port", &metrics_port.to_string()])
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut proc = Proc::spawn("ratatosk", &mut cmd);
        let stdout = proc.child.stdout.take().expect("stdout");
        let stderr = proc.child.stderr.take().expect("stderr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let spans = spans.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) => spans.lock().expect("lock").push(v),
                        Err(e) => panic!("agent printed a line that is not JSON ({e}): {line}"),
                    }
                }
            });
        }
        {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[agent] {line}");
                    lines.lock().expect("lock").push(line);
                }
            });
        }
        let agent = Agent {
            proc,
            spans,
            stderr: lines,
            metrics_port,
        };
        let start = Instant::now();
        let mut agent = agent;
        loop {
            if let Ok(Some(status)) = agent.proc.child.try_wait() {
                thread::sleep(Duration::from_millis(100)); // let stderr drain
                panic!(
                    "agent exited ({status}) before ready; stderr:\n{}",
                    agent.stderr_text()
                );
            }
            if agent
                .stderr
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l.contains(" ready"))
            {
                return agent;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agent not ready after 30 s; stderr:\n{}",
                agent.stderr_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// The agent's log lines containing `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.stderr
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// All spans printed so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for at least `n` spans (or the timeout),
    /// then a little longer to catch any extra span, and returns the
    /// matching spans.
    pub fn wait_spans(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got: Vec<Value> = self.spans().into_iter().filter(|s| pred(s)).collect();
            if got.len() >= n || start.elapsed() > timeout {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The reader drains every 50 ms: wait a few drains for stragglers.
        thread::sleep(Duration::from_millis(400));
        self.spans().into_iter().filter(|s| pred(s)).collect()
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").1
    }

    /// Sum of a metric's samples whose label set contains every `labels`
    /// pair (`key="value"`).
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// The agent's own non-zero `ratatosk_*` samples (drops, parser
    /// errors, evictions, …), one per line: what a failed count assertion
    /// prints to tell a counted loss from an uncounted one.
    pub fn self_counters(&self) -> String {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("ratatosk_"))
            .filter(|l| l.rsplit(' ').next().is_some_and(|v| v != "0"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `curl` as a real client; returns the HTTP status.
pub fn curl(url: &str) -> u16 {
    let out = Command::new(tool("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A span's attribute as a string (numbers rendered).
pub fn attr(span: &Value, key: &str) -> String {
    match &span["attributes"][key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// Scratch directory with files to serve, world-readable (nginx workers
/// run as nobody).
pub fn www_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-e2e")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::write(dir.path().join("hello"), "Hello world\n").expect("write");
    std::fs::write(dir.path().join("big"), "x".repeat(100_000)).expect("write");
    set_mode(dir.path(), 0o755);
    set_mode(&dir.path().join("hello"), 0o644);
    set_mode(&dir.path().join("big"), 0o644);
    dir
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `python3 -m http.server` (HTTP/1.0, a connection per request).
pub fn python_http_server(dir: &Path, port: u16) -> Proc {
    python_http_server_on(dir, "127.0.0.1", port, &[])
}

/// `python3 -m http.server` bound to `host`, with extra environment.
pub fn python_http_server_on(dir: &Path, host: &str, port: u16, env: &[(&str, &str)]) -> Proc {
    let p = Proc::spawn(
        "python3 http.server",
        Command::new(tool("python3"))
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                host,
                "--directory",
            ])
            .arg(dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_addr(host, port, Duration::from_secs(10));
    p
}

/// A small python HTTP/1.1 keep-alive server with routes that the stock
/// servers do not offer: `/chunked` (Transfer-Encoding: chunked, 3 chunks),
/// `/fail` (500), `/echo` (POST body length echoed), `/slow` (200 after
/// 300 ms, head and body in one write), anything else 404.
pub fn python_app_server(port: u16) -> Proc {
    const APP: &str = r#"
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/slow"):
            time.sleep(0.3)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n")
        elif self.path.startswith("/fail"):
            body = b"boom\n"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = b"not here\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        body = str(len(data)).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
    let p = Proc::spawn(
        "python3 app server",
        Command::new(tool("python3"))
            .args(["-c", APP, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    p
}

/// nginx with one worker serving `dir`, all state in its own temp dir.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    _state: tempfile::TempDir,
}

impl Nginx {
    pub fn start(www: &Path, port: u16) -> Nginx {
        Nginx::start_with(www, port, &format!("listen 127.0.0.1:{port};"))
    }

    /// nginx serving HTTPS with the certificate in `certs` (see
    /// `tls_cert`), through the system's shared libssl.
    pub fn start_tls(www: &Path, port: u16, certs: &Path) -> Nginx {
        let c = certs.display();
        Nginx::start_with(
            www,
            port,
            &format!(
                "listen 127.0.0.1:{port} ssl; ssl_certificate {c}/cert.pem; ssl_certificate_key {c}/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
            ),
        )
    }

    /// nginx speaking HTTP/2 over cleartext (prior knowledge, h2c).
    pub fn start_h2c(www: &Path, port: u16) -> Nginx {
        Nginx::start_with(www, port, &format!("listen 127.0.0.1:{port} http2;"))
    }

    /// nginx speaking HTTP/2 over TLS (ALPN `h2`, HTTP/1.1 for the rest).
    pub fn start_h2_tls(www: &Path, port: u16, certs: &Path) -> Nginx {
        let c = certs.display();
        Nginx::start_with(
            www,
            port,
            &format!(
                "listen 127.0.0.1:{port} ssl http2; ssl_certificate {c}/cert.pem; ssl_certificate_key {c}/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
            ),
        )
    }

    fn start_with(www: &Path, port: u16, listen: &str) -> Nginx {
        let state = tempfile::Builder::new()
            .prefix("ratatosk-nginx")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let s = state.path().display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
pid {s}/nginx.pid;
error_log {s}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {s}/access.log;
    client_body_temp_path {s}/body;
    proxy_temp_path {s}/proxy;
    fastcgi_temp_path {s}/fastcgi;
    uwsgi_temp_path {s}/uwsgi;
    scgi_temp_path {s}/scgi;
    default_type text/plain;
    keepalive_requests 100000;
    server {{
        {listen}
        root {www};
        location = /fail {{ return 500 "boom\n"; }}
    }}
}}
"#,
            www = www.display()
        );
        let conf_path = state.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let proc = Proc::spawn(
            "nginx",
            Command::new(tool("nginx"))
                .arg("-c")
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(10));
        Nginx {
            proc,
            port,
            _state: state,
        }
    }

    /// Requests nginx logged (its access log), the ground truth.
    pub fn access_log_lines(&self) -> usize {
        std::fs::read_to_string(self._state.path().join("access.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// Sends raw bytes on one connection and reads until `responses` HTTP
/// responses (Content-Length framed) have arrived.
pub fn raw_exchange(port: u16, chunks: &[&[u8]], responses: usize) -> Vec<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for c in chunks {
        s.write_all(c).expect("write");
        thread::sleep(Duration::from_millis(5));
    }
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    let mut tmp = [0u8; 65536];
    while statuses.len() < responses {
        // Parse what we have.
        statuses.clear();
        let mut rest = &buf[..];
        while let Some(end) = find(rest, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).to_string();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if rest.len() < end + 4 + len {
                break;
            }
            statuses.push(status);
            rest = &rest[end + 4 + len..];
        }
        if statuses.len() >= responses {
            break;
        }
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "server closed after {} responses", statuses.len());
        buf.extend_from_slice(&tmp[..n]);
    }
    statuses
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// BPF programs are global kernel state: tests that load them take this
/// lock so they never overlap, whatever --test-threads says.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Node.js `http` server (libuv: read/writev on non-blocking sockets):
/// `/hello` answers 12 bytes with Content-Length, `/stream` is chunked.
pub fn node_http_server(port: u16) -> Proc {
    const APP: &str = r#"
const http = require('http');
http.createServer((req, res) => {
  if (req.url.startsWith('/stream')) {
    res.write('part one\n'); res.write('part two\n'); res.end();
  } else {
    res.setHeader('Content-Length', '12'); res.end('Hello world\n');
  }
}).listen(Number(process.argv[1]), '127.0.0.1');
"#;
    let p = Proc::spawn(
        "node http server",
        Command::new(tool("node"))
            .args(["-e", APP, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    p
}

/// A Java 17 `com.sun.net.httpserver` server (NIO) answering 12 bytes.
pub fn java_http_server(port: u16) -> (Proc, tempfile::TempDir) {
    const APP: &str = r#"
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
public class Server {
    public static void main(String[] a) throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[0])), 64);
        s.createContext("/", ex -> {
            byte[] body = "Hello world\n".getBytes();
            ex.sendResponseHeaders(200, body.length);
            ex.getResponseBody().write(body);
            ex.close();
        });
        s.start();
    }
}
"#;
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-java")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let src = dir.path().join("Server.java");
    std::fs::write(&src, APP).expect("write Server.java");
    let p = Proc::spawn(
        "java http server",
        Command::new(tool("java"))
            .arg(&src)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(60));
    (p, dir)
}

/// Where scripts/lab.sh installs what does not come from Debian.
pub fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("RATATOSK_LAB").unwrap_or_else(|_| "/opt/ratatosk-lab".into()))
}

/// Builds a Go program (standard library only, no module proxy) that
/// serves `/` with 12 bytes (`prog serve PORT`) or GETs a URL N times over
/// one keep-alive connection (`prog get URL N`).
pub fn build_go_http() -> (PathBuf, tempfile::TempDir) {
    const SRC: &str = r#"package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	switch os.Args[1] {
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "12")
			fmt.Fprint(w, "Hello world\n")
		})
		if err := http.ListenAndServe("127.0.0.1:"+os.Args[2], nil); err != nil {
			panic(err)
		}
	case "get":
		n, _ := strconv.Atoi(os.Args[3])
		for i := 0; i < n; i++ {
			resp, err := http.Get(os.Args[2])
			if err != nil {
				panic(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
"#;
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-go")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let out = go_build(dir.path(), "gohttp", SRC, "");
    (out, dir)
}

/// Builds `src` (one file, standard library only, no module proxy) into
/// `dir/name` with the lab's Go and `-ldflags` (e.g. `-s -w` to strip).
pub fn go_build(dir: &Path, name: &str, src: &str, ldflags: &str) -> PathBuf {
    let go = lab_dir().join("bin/go");
    assert!(
        go.is_file(),
        "{} is missing: run scripts/lab.sh",
        go.display()
    );
    let src_file = dir.join(format!("{name}.go"));
    std::fs::write(&src_file, src).expect("write source");
    let out = dir.join(name);
    let status = Command::new(&go)
        .current_dir(dir)
        .args(["build", "-ldflags", ldflags, "-o"])
        .arg(&out)
        .arg(&src_file)
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", lab_dir().join("gocache"))
        .env("HOME", dir)
        .status()
        .expect("run go build");
    assert!(status.success(), "go build failed");
    out
}

/// A self-signed certificate for 127.0.0.1/localhost (`cert.pem`,
/// `key.pem`), readable by nginx's unprivileged worker.
pub fn tls_cert() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-cert")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let status = Command::new(tool("openssl"))
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl req");
    assert!(status.success(), "openssl req failed");
    set_mode(dir.path(), 0o755);
    set_mode(&dir.path().join("cert.pem"), 0o644);
    set_mode(&dir.path().join("key.pem"), 0o644);
    dir
}

/// The system's shared OpenSSL library (what nginx, curl and python use).
pub fn system_libssl() -> PathBuf {
    let p = PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3");
    assert!(
        p.is_file(),
        "{} is missing (Debian package libssl3)",
        p.display()
    );
    p
}

/// A private copy of the system libssl: a client loading it
/// (`LD_LIBRARY_PATH`) runs OpenSSL from another inode, so the probes the
/// agent put on the system library count only the server's calls.
pub fn private_libssl() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-libssl")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::copy(system_libssl(), dir.path().join("libssl.so.3")).expect("copy libssl");
    dir
}

/// `curl -k` fetching `url` `n` times over one keep-alive connection
/// (URL glob), with extra environment; returns every status.
pub fn curl_tls_keepalive(url: &str, n: usize, env: &[(&str, &str)]) -> Vec<u16> {
    curl_tls_keepalive_args(url, n, env, &[])
}

/// `curl_tls_keepalive` with extra curl arguments (TLS version, ciphers);
/// `url` may carry a query of its own.
pub fn curl_tls_keepalive_args(
    url: &str,
    n: usize,
    env: &[(&str, &str)],
    args: &[&str],
) -> Vec<u16> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let glob = format!("{url}{sep}i=[1-{n}]");
    let out = Command::new(tool("curl"))
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\n",
        ])
        .args(args)
        .arg(&glob)
        .envs(env.iter().copied())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let connects: u32 = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        .sum();
    assert_eq!(
        connects, 1,
        "curl did not keep its connection alive: {text}"
    );
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `python_app_server`'s routes over HTTPS (python's `ssl`, which calls
/// SSL_read_ex/SSL_write_ex in the shared libssl).
pub fn python_tls_server(port: u16, certs: &Path) -> Proc {
    const APP: &str = r#"
import ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"hello over tls\n" if self.path.startswith("/hello") else b"not here\n"
        self.send_response(200 if self.path.startswith("/hello") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = str(len(data)).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2] + "/cert.pem", sys.argv[2] + "/key.pem")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;
    let p = Proc::spawn(
        "python3 tls server",
        Command::new(tool("python3"))
            .args(["-c", APP, &port.to_string()])
            .arg(certs)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    p
}

/// uvicorn (from the lab venv) serving an ASGI app over HTTPS on the
/// event loop `event_loop` (`asyncio` or `uvloop`): Python's `ssl` over
/// memory BIOs, the socket I/O done by the loop. `/hello` answers 15 bytes.
pub fn uvicorn_tls_server(port: u16, certs: &Path, event_loop: &str) -> (Proc, tempfile::TempDir) {
    const APP: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    ok = scope["path"].startswith("/hello")
    body = b"hello over tls\n" if ok else b"not here\n"
    await send({"type": "http.response.start", "status": 200 if ok else 404,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"#;
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-uvicorn")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::write(dir.path().join("asgiapp.py"), APP).expect("write the app");
    let uvicorn = lab_dir().join("bin/uvicorn");
    assert!(
        uvicorn.exists(),
        "{} is missing: run scripts/lab.sh",
        uvicorn.display()
    );
    let p = Proc::spawn(
        "uvicorn tls server",
        Command::new(uvicorn)
            .args([
                "asgiapp:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--loop", event_loop, "--log-level", "warning", "--app-dir"])
            .arg(dir.path())
            .arg("--ssl-certfile")
            .arg(certs.join("cert.pem"))
            .arg("--ssl-keyfile")
            .arg(certs.join("key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    (p, dir)
}

/// A Node.js `https` server (OpenSSL 3 linked into the `node` executable)
/// answering `/hello` with 12 bytes.
pub fn node_https_server(port: u16, certs: &Path) -> Proc {
    const APP: &str = r#"
const https = require('https'), fs = require('fs');
const dir = process.argv[2];
https.createServer({ key: fs.readFileSync(dir + '/key.pem'), cert: fs.readFileSync(dir + '/cert.pem') },
  (req, res) => { res.setHeader('Content-Length', '12'); res.end('Hello world\n'); })
  .listen(Number(process.argv[1]), '127.0.0.1');
"#;
    let p = Proc::spawn(
        "node https server",
        Command::new(tool("node"))
            .args(["-e", APP, &port.to_string()])
            .arg(certs)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    p
}

/// A real Prometheus server (Debian's) scraping one target every second,
/// with its own scratch storage.
pub struct Prometheus {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("ratatosk-prom")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ratatosk\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(tool("prometheus"));
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn("prometheus", &mut cmd);
        wait_for_port(port, Duration::from_secs(20));
        Prometheus {
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    /// The value of an instant PromQL query returning one sample, if any.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        );
        assert_eq!(status, 200, "prometheus answered {status}: {body}");
        let v: Value = serde_json::from_str(&body).expect("prometheus JSON");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }
}

/// Percent-encoding for a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `rotel-agent` from the lab venv: a real OpenTelemetry collector printing
/// everything it receives.
pub fn rotel_bin() -> PathBuf {
    let lib = lab_dir().join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("site-packages/rotel/rotel-agent"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "rotel-agent is not installed under {} (the README's test command installs it)",
            lib.display()
        )
    })
}

/// A span as rotel printed it.
#[derive(Debug, Clone, Default)]
pub struct OtlpSpan {
    pub resource: Vec<(String, String)>,
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

impl OtlpSpan {
    pub fn attr(&self, k: &str) -> Option<&str> {
        find_kv(&self.attributes, k)
    }
    pub fn resource_attr(&self, k: &str) -> Option<&str> {
        find_kv(&self.resource, k)
    }
}

fn find_kv<'a>(kv: &'a [(String, String)], k: &str) -> Option<&'a str> {
    kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// `     -> key: Str(value)` → (key, value); other types keep their text.
fn parse_attr_line(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix("-> ")?;
    let (k, v) = rest.split_once(": ")?;
    let v = v.trim();
    let v = match v.split_once('(') {
        Some((_ty, inner)) if v.ends_with(')') => inner[..inner.len() - 1].to_string(),
        _ => v.to_string(),
    };
    Some((k.to_string(), v))
}

/// A metric data point as rotel printed it: a histogram's count or a
/// number's value.
#[derive(Debug, Clone, Default)]
pub struct OtlpPoint {
    pub resource: Vec<(String, String)>,
    pub metric: String,
    pub attributes: Vec<(String, String)>,
    pub value: f64,
    pub sum: f64,
}

impl OtlpPoint {
    pub fn attr(&self, k: &str) -> Option<&str> {
        find_kv(&self.attributes, k)
    }
    pub fn resource_attr(&self, k: &str) -> Option<&str> {
        find_kv(&self.resource, k)
    }
}

pub struct Rotel {
    pub grpc_port: u16,
    pub http_port: u16,
    proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Rotel {
    pub fn start() -> Rotel {
        Rotel::start_on(free_port(), free_port())
    }

    pub fn start_on(grpc_port: u16, http_port: u16) -> Rotel {
        let mut cmd = Command::new(rotel_bin());
        cmd.args(["start", "--otlp-grpc-endpoint"])
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .args([
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
            ])
            .args(["--debug-log-verbosity", "detailed"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("rotel-agent", &mut cmd);
        let stdout = proc.child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().expect("lock").push(line);
                }
            });
        }
        wait_for_port(grpc_port, Duration::from_secs(20));
        wait_for_port(http_port, Duration::from_secs(20));
        Rotel {
            grpc_port,
            http_port,
            proc,
            lines,
        }
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }

    pub fn output(&self) -> String {
        self.lines.lock().expect("lock").join("\n")
    }

    /// Every span received so far, with its resource's attributes.
    pub fn spans(&self) -> Vec<OtlpSpan> {
        let lines = self.lines.lock().expect("lock").clone();
        let mut out = Vec::new();
        let mut resource = Vec::new();
        let mut cur: Option<OtlpSpan> = None;
        // Which attribute list the `->` lines belong to.
        let mut in_resource = false;
        for line in &lines {
            let t = line.trim();
            if t.starts_with("ResourceSpans #") || t.starts_with("ResourceMetrics #") {
                out.extend(cur.take());
                resource = Vec::new();
                in_resource = false;
            } else if t == "Resource attributes:" {
                in_resource = true;
            } else if t.starts_with("ScopeSpans #") || t.starts_with("ScopeMetrics #") {
                in_resource = false;
            } else if t.starts_with("Span #") {
                out.extend(cur.take());
                cur = Some(OtlpSpan {
                    resource: resource.clone(),
                    ..Default::default()
                });
            } else if let Some(kv) = parse_attr_line(line) {
                if in_resource {
                    resource.push(kv);
                } else if let Some(s) = cur.as_mut() {
                    s.attributes.push(kv);
                }
            } else if let (Some(s), Some((k, v))) = (cur.as_mut(), t.split_once(':')) {
                let v = v.trim().to_string();
                match k.trim() {
                    "Trace ID" => s.trace_id = v,
                    "Parent ID" => s.parent_id = v,
                    "ID" => s.id = v,
                    "Name" => s.name = v,
                    "Kind" => s.kind = v,
                    _ => {}
                }
            }
        }
        out.extend(cur.take());
        out
    }

    /// Every metric data point received so far, in arrival order.
    pub fn points(&self) -> Vec<OtlpPoint> {
        let lines = self.lines.lock().expect("lock").clone();
        let mut out = Vec::new();
        let mut resource: Vec<(String, String)> = Vec::new();
        let mut metric = String::new();
        let mut cur: Option<OtlpPoint> = None;
        #[derive(PartialEq)]
        enum In {
            Other,
            Resource,
            Descriptor,
            Point,
        }
        let mut state = In::Other;
        for line in &lines {
            let t = line.trim();
            if t.starts_with("ResourceMetrics #") || t.starts_with("ResourceSpans #") {
                out.extend(cur.take());
                resource.clear();
                state = In::Other;
            } else if t == "Resource attributes:" {
                state = In::Resource;
            } else if t == "Descriptor:" {
                out.extend(cur.take());
                state = In::Descriptor;
            } else if t.starts_with("HistogramDataPoints #") || t.starts_with("NumberDataPoints #")
            {
                out.extend(cur.take());
                cur = Some(OtlpPoint {
                    resource: resource.clone(),
                    metric: metric.clone(),
                    ..Default::default()
                });
                state = In::Point;
            } else if t.starts_with("ScopeMetrics #") || t.starts_with("Metric #") {
                out.extend(cur.take());
                state = In::Other;
            } else if let Some((k, v)) = parse_attr_line(line) {
                match state {
                    In::Resource => resource.push((k, v)),
                    In::Descriptor if k == "Name" => metric = v,
                    In::Point => {
                        if let Some(p) = cur.as_mut() {
                            p.attributes.push((k, v));
                        }
                    }
                    _ => {}
                }
            } else if let (Some(p), Some((k, v))) = (cur.as_mut(), t.split_once(": ")) {
                match k {
                    "Count" | "Value" => p.value = v.trim().parse().unwrap_or(f64::NAN),
                    "Sum" => p.sum = v.trim().parse().unwrap_or(f64::NAN),
                    _ => {}
                }
            }
        }
        out.extend(cur.take());
        out
    }

    /// The latest value of each series of `metric` (cumulative points are
    /// re-sent every interval).
    pub fn latest(&self, metric: &str) -> Vec<OtlpPoint> {
        let mut latest: Vec<OtlpPoint> = Vec::new();
        for p in self.points().into_iter().filter(|p| p.metric == metric) {
            match latest
                .iter_mut()
                .find(|q| q.resource == p.resource && q.attributes == p.attributes)
            {
                Some(q) => *q = p,
                None => latest.push(p),
            }
        }
        latest
    }

    /// Waits until the sum of the latest points of `metric` that `filter`
    /// keeps satisfies `done` (or the timeout) and returns that sum. Tests
    /// wait for a count this way instead of reading the first point that
    /// arrives, which may be an older snapshot being retried.
    pub fn wait_latest_sum(
        &self,
        metric: &str,
        timeout: Duration,
        filter: impl Fn(&OtlpPoint) -> bool,
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let start = Instant::now();
        loop {
            let sum: f64 = self
                .latest(metric)
                .iter()
                .filter(|p| filter(p))
                .map(|p| p.value)
                .sum();
            if done(sum) || start.elapsed() > timeout {
                return sum;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `pred` holds for `n` spans or the timeout; returns them.
    pub fn wait_spans(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&OtlpSpan) -> bool,
    ) -> Vec<OtlpSpan> {
        let start = Instant::now();
        loop {
            let got: Vec<OtlpSpan> = self.spans().into_iter().filter(|s| pred(s)).collect();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}
pub mod postgres;
