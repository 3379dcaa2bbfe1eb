//! The kernel's HTTP/2 frame walk delivers every header block whole.
//!
//! The capture is loaded in this process (no agent binary) and its
//! records are decoded with the agent's own decoder into the segments its
//! connection tracker feeds the parsers; each socket direction's segments
//! are laid end to end (gaps as unknown bytes) and walked frame by frame.
//! nginx serves h2c while curl fetches 1 MB on one connection and h2load
//! multiplexes small requests and 1 MB responses on another, so DATA
//! frames and HEADERS frames share writes: every HEADERS frame, seen from
//! both ends, must arrive with all its bytes.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ratatosk::decode::{Record, decode};
use ratatosk_bpf::{Capture, LoadOptions, RecordSink};
use ratatosk_e2e::{Nginx, Proc, free_port, require_root, tool};
use ratatosk_protocols::parse::Direction;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The default capture size: a HEADERS frame starting further into its
/// syscall than this was lost before the walk.
const PREFIX: usize = 1024;

/// One socket direction, reassembled.
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    known: Vec<bool>,
    /// Where each syscall's bytes begin.
    syscalls: Vec<usize>,
    last_ts: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Walk {
    headers_whole: usize,
    headers_lost: usize,
    /// HEADERS frames further into their syscall than PREFIX.
    headers_deep: usize,
    /// HEADERS frames not first in their syscall, and the furthest in.
    headers_behind: usize,
    headers_max_offset: usize,
    data_frames: usize,
    data_gap: usize,
    /// A frame header with unknown bytes: the walk lost its place.
    desync: bool,
}

impl Stream {
    fn walk(&self) -> Walk {
        let mut w = Walk::default();
        let mut pos = if self.bytes.starts_with(PREFACE) {
            PREFACE.len()
        } else {
            0
        };
        while pos + 9 <= self.bytes.len() {
            if !self.known[pos..pos + 9].iter().all(|k| *k) {
                w.desync = true;
                break;
            }
            let h = &self.bytes[pos..pos + 9];
            let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
            let end = pos + 9 + len;
            if end > self.bytes.len() {
                break; // the rest was never written
            }
            let payload_known = self.known[pos + 9..end].iter().all(|k| *k);
            match h[3] {
                0 => {
                    w.data_frames += 1;
                    w.data_gap += self.known[pos + 9..end].iter().filter(|k| !**k).count();
                }
                1 => {
                    if payload_known {
                        w.headers_whole += 1;
                    } else {
                        w.headers_lost += 1;
                    }
                    let start = match self.syscalls.binary_search(&pos) {
                        Ok(i) => self.syscalls[i],
                        Err(i) => self.syscalls[i.saturating_sub(1)],
                    };
                    if pos - start > PREFIX {
                        w.headers_deep += 1;
                    }
                    if pos > start {
                        w.headers_behind += 1;
                    }
                    w.headers_max_offset = w.headers_max_offset.max(pos - start);
                }
                5 | 9 if !payload_known => w.headers_lost += 1,
                _ => {}
            }
            pos = end;
        }
        w
    }
}

/// Copies every record out of the ring buffer until told to stop.
struct Collect {
    records: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl RecordSink for Collect {
    fn record(&mut self, data: &[u8]) {
        self.records.lock().unwrap().push(data.to_vec());
    }
    fn drained(&mut self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// A client started stopped: `sh` waits for a line, then execs it, so
/// its pid can be traced before its first byte.
fn held(name: &str, cmd: &str) -> Proc {
    Proc::spawn(
        name,
        Command::new("sh")
            .args(["-c", &format!("read _ && exec {cmd}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn release(p: &mut Proc) {
    let mut stdin = p.child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release the client");
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn every_headers_frame_arrives_whole_while_data_frames_share_the_writes() {
    require_root();
    let www = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    std::fs::write(www.path().join("big.bin"), &big).unwrap();
    std::fs::write(www.path().join("small.txt"), b"hello\n").unwrap();
    // nginx's worker runs as nobody.
    let mode = |p: &std::path::Path, m| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(www.path(), 0o755);
    mode(&www.path().join("big.bin"), 0o644);
    mode(&www.path().join("small.txt"), 0o644);
    let port = free_port();
    let mut nginx = Nginx::start_h2c(www.path(), port);

    let capture = Capture::load(&LoadOptions {
        tls: false,
        ..LoadOptions::default()
    })
    .expect("load the capture");
    let targets = capture.targets().expect("targets");
    targets.insert(nginx.proc.pid()).unwrap();
    for w in children(nginx.proc.pid()) {
        targets.insert(w).unwrap();
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let events = capture.events().expect("events");
    let reader = {
        let mut sink = Collect {
            records: records.clone(),
            stop: stop.clone(),
        };
        thread::spawn(move || {
            events
                .run(
                    Duration::from_millis(20),
                    Duration::from_millis(50),
                    &mut sink,
                )
                .expect("ring buffer")
        })
    };

    let base = format!("http://127.0.0.1:{port}");
    let mut curl = held(
        "curl",
        &format!(
            "{} -s --http2-prior-knowledge -o /dev/null {base}/big.bin",
            tool("curl").display()
        ),
    );
    // Round-robin over the paths: 25 responses of 1 MB among 175 small
    // ones, 16 streams at a time, on one connection.
    let mut paths = vec![format!("{base}/big.bin")];
    paths.extend((0..7).map(|_| format!("{base}/small.txt")));
    let mut h2load = held(
        "h2load",
        &format!(
            "{} -n 200 -c 1 -m 16 {}",
            tool("h2load").display(),
            paths.join(" ")
        ),
    );
    targets.insert(curl.pid()).unwrap();
    targets.insert(h2load.pid()).unwrap();
    release(&mut curl);
    release(&mut h2load);
    for p in [&mut curl, &mut h2load] {
        let status = p.child.wait().expect("wait");
        assert!(status.success(), "{} failed: {status}", p.name);
    }
    assert_eq!(nginx.access_log_lines(), 201, "nginx served every request");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    let stats = capture.counters().unwrap().read().unwrap();
    nginx.proc.stop();

    let clients = [(curl.pid(), "curl"), (h2load.pid(), "h2load")];
    let mut streams: HashMap<(u32, u64, bool), Stream> = HashMap::new();
    let mut bad = 0;
    for raw in records.lock().unwrap().iter() {
        let d = match decode(raw) {
            Ok(Record::Data(d)) => d,
            Ok(_) => continue,
            Err(_) => {
                bad += 1;
                continue;
            }
        };
        let t = d.tuple.decode();
        if t.local.port() != port && t.remote.port() != port {
            continue;
        }
        let egress = d.direction == Direction::Egress;
        let s = streams.entry((d.hdr.tgid, d.sock_id, egress)).or_default();
        if d.hdr.ts_ns != s.last_ts {
            s.syscalls.push(s.bytes.len());
            s.last_ts = d.hdr.ts_ns;
        }
        for seg in d.segments() {
            s.bytes.extend_from_slice(seg.data);
            s.known.extend(std::iter::repeat_n(true, seg.data.len()));
            let gap = seg.gap() as usize;
            s.bytes.extend(std::iter::repeat_n(0, gap));
            s.known.extend(std::iter::repeat_n(false, gap));
        }
    }
    assert_eq!(bad, 0, "records the agent's decoder refuses");

    let who = |tgid: u32| {
        clients
            .iter()
            .find(|(p, _)| *p == tgid)
            .map_or("nginx", |(_, n)| *n)
    };
    let mut seen: HashMap<(&str, bool), Walk> = HashMap::new();
    for ((tgid, _, egress), s) in &streams {
        let w = s.walk();
        eprintln!(
            "{} {}: {w:?}",
            who(*tgid),
            if *egress { "egress" } else { "ingress" }
        );
        assert!(!w.desync, "lost the frame sequence: {w:?}");
        let sum = seen.entry((who(*tgid), *egress)).or_default();
        sum.headers_whole += w.headers_whole;
        sum.headers_lost += w.headers_lost;
        sum.headers_deep += w.headers_deep;
        sum.headers_behind += w.headers_behind;
        sum.headers_max_offset = sum.headers_max_offset.max(w.headers_max_offset);
        sum.data_frames += w.data_frames;
        sum.data_gap += w.data_gap;
    }
    eprintln!("kernel: {stats:?}");
    for ((name, egress), w) in &seen {
        assert_eq!(w.headers_lost, 0, "{name} egress={egress}: {w:?}");
    }
    let get = |k: (&str, bool)| seen.get(&k).map_or(0, |w| w.headers_whole);
    // One HEADERS frame per request and per response.
    assert_eq!(get(("nginx", false)), 201);
    assert_eq!(get(("nginx", true)), 201);
    assert_eq!(get(("h2load", true)), 200);
    assert_eq!(get(("h2load", false)), 200);
    assert_eq!(get(("curl", true)), 1);
    assert_eq!(get(("curl", false)), 1);
    // The case a prefix capture loses: HEADERS frames behind DATA frames
    // in one syscall, past the default prefix. nginx here starts each
    // response's write with its HEADERS frame, but h2load's reads take
    // up frames of several streams at once.
    let h2load_in = &seen[&("h2load", false)];
    assert!(
        h2load_in.headers_deep > 0,
        "no HEADERS frame behind DATA frames in one read: {h2load_in:?}"
    );
    let nginx_out = &seen[&("nginx", true)];
    // 26 MB of DATA payload were skipped, not copied.
    assert!(nginx_out.data_gap >= 26 << 20, "{nginx_out:?}");
    assert_eq!(stats.h2_desync, 0, "{stats:?}");
    assert_eq!(stats.h2_header_lost, 0, "{stats:?}");
    assert_eq!(
        stats.h2_conns, 4,
        "both ends of both connections: {stats:?}"
    );
}
