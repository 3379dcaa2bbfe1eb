//! Issue 22: a traced process cannot steer the agent.
//!
//! Run as root, under the shared lock, one file at a time:
//! `flock /tmp/ratatosk-e2e.lock cargo test -p ratatosk-e2e --test hardening -- --test-threads=1`

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratatosk_e2e::*;

/// The traced process of the swap test. It loads N fresh copies of the
/// system libssl from `D/a` (each a new inode), while a thread exchanges
/// the directories `D/a` and `D/b` (renameat2 RENAME_EXCHANGE) in a tight
/// loop. /proc/PID/maps names a mapped file by its current path, so each
/// copy shows up as `D/a/…` or `D/b/…` depending on the moment the agent
/// reads the maps; under the same name in the other directory sits a
/// decoy: a copy of libssl whose SSL_read/SSL_write symbols are renamed
/// (a probe by name there is a probe on another inode), or a FIFO (opening
/// it by name blocks a reader without O_NONBLOCK). Copies are loaded only
/// while the real directory is `D/a` (under the swap lock), so the process
/// itself maps only real copies. When `D/call` appears it calls
/// SSL_write once through every copy (an SSL object without a handshake:
/// the call fails harmlessly after the entry probe fired) and writes
/// `D/done`.
const SWAPPER: &str = r#"
import ctypes, os, shutil, sys, threading, time
D, real_lib, decoy, n, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
A, B = (os.path.join(D, x).encode() for x in ("a", "b"))
lock = threading.Lock()
state = {"real_at_a": True, "swaps": 0, "stop": False}

def swap():
    while not state["stop"]:
        with lock:
            if libc.renameat2(AT_FDCWD, A, AT_FDCWD, B, RENAME_EXCHANGE) != 0:
                print("renameat2 failed", ctypes.get_errno(), flush=True)
                os._exit(3)
            state["real_at_a"] = not state["real_at_a"]
            state["swaps"] += 1

threading.Thread(target=swap, daemon=True).start()
libs = []
interval = secs / n
for i in range(n):
    name = "libssl.so.3.%d" % i
    with lock:
        if not state["real_at_a"]:
            libc.renameat2(AT_FDCWD, A, AT_FDCWD, B, RENAME_EXCHANGE)
            state["real_at_a"] = True
        shutil.copyfile(real_lib, os.path.join(D, "a", name))
        other = os.path.join(D, "b", name)
        if i % 2 == 0:
            shutil.copyfile(decoy, other)
        else:
            os.mkfifo(other)
        libs.append(ctypes.CDLL(os.path.join(D, "a", name)))
    time.sleep(interval)
print("loaded", n, "swaps so far", state["swaps"], flush=True)
while not os.path.exists(os.path.join(D, "call")):
    time.sleep(0.05)
state["stop"] = True
for lib in libs:
    lib.TLS_method.restype = ctypes.c_void_p
    lib.SSL_CTX_new.restype = ctypes.c_void_p
    lib.SSL_CTX_new.argtypes = [ctypes.c_void_p]
    lib.SSL_new.restype = ctypes.c_void_p
    lib.SSL_new.argtypes = [ctypes.c_void_p]
    lib.SSL_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    ctx = lib.SSL_CTX_new(lib.TLS_method())
    ssl = lib.SSL_new(ctx)
    assert lib.SSL_write(ssl, b"x", 1) <= 0
open(os.path.join(D, "done"), "w").close()
print("called", len(libs), "swaps", state["swaps"], flush=True)
time.sleep(3600)
"#;

/// A copy of the system libssl without SSL_read/SSL_write symbols (their
/// names in the dynamic string table renamed).
/// The running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (major, minor)
}

fn decoy_libssl(to: &Path) {
    let mut bytes = std::fs::read(system_libssl()).expect("read libssl");
    for (from, into) in [
        (&b"\0SSL_read\0"[..], &b"\0XSL_read\0"[..]),
        (b"\0SSL_write\0", b"\0XSL_write\0"),
    ] {
        let mut hits = 0;
        let mut at = 0;
        while let Some(p) = bytes[at..].windows(from.len()).position(|w| w == from) {
            bytes[at + p..at + p + into.len()].copy_from_slice(into);
            at += p + from.len();
            hits += 1;
        }
        assert!(hits > 0, "no {from:?} in libssl");
    }
    std::fs::write(to, bytes).expect("write decoy");
}

/// A traced process swaps the directory of the libraries it maps in a
/// tight loop for 30 s, with decoys (another libssl inode, or a FIFO)
/// under the same names: every probe lands on the file mapped (each copy's
/// SSL_write entry probe fires exactly once per call through it, so no
/// copy lost its probe to a decoy), no decoy or FIFO is ever opened, the
/// agent keeps capturing plaintext HTTP meanwhile and stops on SIGTERM
/// within 2 s.
#[test]
fn probes_land_on_the_mapped_file_while_paths_are_swapped() {
    let _guard = serial();
    require_root();
    const N: usize = 40;
    const SECS: f64 = 30.0;
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-swap")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("a")).unwrap();
    std::fs::create_dir(d.join("b")).unwrap();
    let decoy = d.join("decoy.so");
    decoy_libssl(&decoy);

    let www = www_dir();
    let http_port = free_port();
    let http = python_http_server(www.path(), http_port);

    let mut swapper = Proc::spawn(
        "swapper",
        Command::new(tool("python3"))
            .args(["-c", SWAPPER])
            .arg(d)
            .arg(system_libssl())
            .arg(&decoy)
            .args([N.to_string(), SECS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let pids = format!("{},{}", swapper.pid(), http.pid());
    let agent = Agent::start(&["--pid", &pids]);

    // Plaintext capture goes on while the files are swapped.
    let start = Instant::now();
    let mut gets = 0;
    while start.elapsed() < Duration::from_secs_f64(SECS) {
        assert_eq!(http_get(http_port, "/hello").0, 200);
        gets += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let spans = agent.wait_spans(gets, Duration::from_secs(10), |s| {
        attr(s, "url.path") == "/hello"
    });
    assert_eq!(spans.len(), gets, "{}", agent.self_counters());

    // Every copy probed: attach lines name them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let attached = loop {
        let lines = agent.log_lines_with("OpenSSL probes attached");
        let n = lines.iter().filter(|l| l.contains("libssl.so.3.")).count();
        if n >= N || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        agent.log_lines_with("cannot probe this file").is_empty()
            && agent.log_lines_with("not probing this file").is_empty(),
        "{}",
        agent.stderr_text()
    );
    assert_eq!(attached, N, "{}", agent.stderr_text());
    // Libraries in /tmp are never run to learn their layout.
    assert_eq!(
        agent
            .log_lines_with("not running this library to learn its layout")
            .len(),
        N,
        "{}",
        agent.stderr_text()
    );

    // The kernel's view: an SSL_write through each copy fires its entry
    // probe once, so each copy (the inode mapped) carries the probe.
    let before = agent.metric_sum(
        "ratatosk_uprobe_hits_total",
        &[("probe", "SSL_write"), ("point", "entry")],
    );
    std::fs::write(d.join("call"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.join("done").exists() {
        assert!(
            Instant::now() < deadline,
            "the swapper never called SSL_write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // counters are read every second
    let after = agent.metric_sum(
        "ratatosk_uprobe_hits_total",
        &[("probe", "SSL_write"), ("point", "entry")],
    );
    assert_eq!(after - before, N as f64, "{}", agent.self_counters());
    assert_eq!(
        agent.metric_sum("ratatosk_tls_files_total", &[("reason", "failed")]),
        0.0
    );

    // No process crashed; the swaps really ran.
    let mut out = String::new();
    let mut so = swapper.child.stdout.take().unwrap();
    assert!(
        swapper.child.try_wait().unwrap().is_none(),
        "the swapper died"
    );
    std::thread::spawn(move || {
        let _ = so.read_to_string(&mut out);
        out
    });
    // SIGTERM: no descriptor (FIFO or otherwise) holds the agent: it
    // starts stopping at once, and the whole stop takes less than 2 s.
    // It is dominated by the kernel detaching the uprobes: a perf-event
    // uprobe waits for an RCU-tasks-trace grace period under a global
    // mutex (~90 ms each here, so 40 libraries of 8 probes took ~30 s);
    // uprobe_multi links (Linux 6.6) dropped from many threads share
    // their waits. Older kernels are held to the start of the stop only.
    let mut agent = agent;
    let links = 8 * (N + 1);
    let pid = rustix::process::Pid::from_raw(agent.proc.pid() as i32).unwrap();
    let t = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    while agent.log_lines_with("SIGTERM: flushing").is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "SIGTERM not acted on within 2 s: {}",
            agent.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        if let Some(s) = agent.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "SIGTERM: not stopped after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    let signalled = agent.log_lines_with("SIGTERM: flushing");
    eprintln!("stopped {took:?} after SIGTERM ({links} uprobe links at most)");
    if kernel_at_least(6, 6) && std::env::var_os("RATATOSK_NO_UPROBE_MULTI").is_none() {
        assert!(
            took < Duration::from_secs(2),
            "stopped {took:?} after SIGTERM"
        );
    }
    assert!(status.success(), "{status}: {}", agent.stderr_text());
    assert_eq!(signalled.len(), 1);
    swapper.stop();
}

/// RATATOSK_TEST_PANIC=outputs (debug builds): the outputs thread panics a
/// second after it starts; the agent stops with exit code 101 and one line
/// naming the thread and the message.
#[test]
fn a_panic_in_the_outputs_thread_stops_the_agent() {
    let _guard = serial();
    require_root();
    let me = std::process::id().to_string();
    let start = Instant::now();
    let mut child = Command::new(agent_bin())
        .args(["--trace-printer", "json", "--pid", &me])
        .env("RATATOSK_TEST_PANIC", "outputs")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the agent did not stop after the injected panic");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap();
    eprintln!("{stderr}");
    assert_eq!(status.code(), Some(101), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.contains("ratatosk-outputs")
            && last.contains("RATATOSK_TEST_PANIC=outputs: injected panic"),
        "{last}"
    );
}

/// In a PID namespace of its own (a container without hostPID), with its
/// own /proc or the host's, the agent refuses in one line naming what is
/// needed, before loading anything.
#[test]
fn refuses_without_the_host_pid_namespace() {
    require_root();
    for mount_proc in [true, false] {
        let mut cmd = Command::new(tool("unshare"));
        cmd.args(["--pid", "--fork"]);
        if mount_proc {
            cmd.arg("--mount-proc");
        }
        let out = cmd
            .arg(agent_bin())
            .args(["--pid", "1"])
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("hostPID: true") && lines[0].contains("--pid=host"),
            "{stderr}"
        );
    }
}

/// The capability set docs/deployment.md documents (and
/// contrib/systemd/ratatosk.service uses), as setpriv names them.
const DOCUMENTED_CAPS: &str = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+setuid,+setgid,+setpcap";
/// The set for plaintext capture only (`--tls-capture false`).
const PLAINTEXT_CAPS: &str = "+bpf,+perfmon,+sys_ptrace";

/// A wrapper running the agent with only `caps` (bounding set; uid 0 gets
/// exactly these on exec), as the agent binary of `Agent::start`.
fn setpriv_wrapper(dir: &Path, caps: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = agent_bin();
    let script = dir.join(format!("ratatosk-caps{}", caps.len()));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} --inh-caps=-all --ambient-caps=-all --bounding-set=-all,{caps} -- {} \"$@\"\n",
            tool("setpriv").display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// With only the documented capabilities the agent captures plaintext
/// HTTP and still learns the system libssl's layout (its calibration child
/// needs setuid/setgid) and attaches its uprobe, naming no missing
/// capability; with the plaintext set and `--tls-capture false` likewise;
/// without CAP_SYS_PTRACE it names that one; without CAP_BPF it exits with
/// one line naming it.
#[test]
fn runs_with_the_documented_capabilities_only() {
    let _guard = serial();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let www = www_dir();
    let port = free_port();
    let server = python_http_server(www.path(), port);

    let wrapper = setpriv_wrapper(dir.path(), DOCUMENTED_CAPS);
    // SAFETY: the tests of this file run one at a time (serial()) and no
    // other thread reads the environment meanwhile.
    unsafe { std::env::set_var("RATATOSK_BIN", &wrapper) };
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);
    // SAFETY: as above.
    unsafe { std::env::remove_var("RATATOSK_BIN") };
    let caps = std::fs::read_to_string(format!("/proc/{}/status", agent.proc.pid())).unwrap();
    let eff = caps
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(http_get(port, "/hello").0, 200);
    }
    let spans = agent.wait_spans(3, Duration::from_secs(10), |s| {
        attr(s, "url.path") == "/hello"
    });
    assert_eq!(spans.len(), 3, "{}", agent.stderr_text());
    let missing = agent.log_lines_with("running without it");
    assert!(missing.is_empty(), "{eff}\n{}", agent.stderr_text());
    // python http.server maps the system libssl: decryption set up, so
    // the confined calibration ran with these capabilities.
    assert!(
        !agent
            .log_lines_with("OpenSSL connection probe attached")
            .is_empty(),
        "{}",
        agent.stderr_text()
    );
    drop(agent);

    for (caps, named) in [
        (PLAINTEXT_CAPS, None),
        ("+bpf,+perfmon", Some("CAP_SYS_PTRACE")),
    ] {
        let wrapper = setpriv_wrapper(dir.path(), caps);
        // SAFETY: as above.
        unsafe { std::env::set_var("RATATOSK_BIN", &wrapper) };
        let agent = Agent::start(&["--pid", &server.pid().to_string(), "--tls-capture", "false"]);
        // SAFETY: as above.
        unsafe { std::env::remove_var("RATATOSK_BIN") };
        let missing = agent.log_lines_with("running without it");
        match named {
            None => {
                assert!(missing.is_empty(), "{}", agent.stderr_text());
                assert_eq!(http_get(port, "/hello").0, 200);
                let spans = agent.wait_spans(1, Duration::from_secs(10), |s| {
                    attr(s, "url.path") == "/hello"
                });
                assert_eq!(spans.len(), 1, "{}", agent.stderr_text());
            }
            Some(cap) => {
                assert_eq!(missing.len(), 1, "{}", agent.stderr_text());
                assert!(missing[0].contains(cap), "{}", missing[0]);
            }
        }
    }

    let no_bpf = setpriv_wrapper(dir.path(), "+perfmon,+sys_ptrace");
    let out = Command::new(&no_bpf)
        .args(["--pid", &server.pid().to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("CAP_BPF"), "{stderr}");
}
