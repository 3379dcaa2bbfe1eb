//! `traceparent` injection (sockops + sk_msg) must never corrupt a
//! stream: a raw-socket server records every byte it receives from a
//! traced raw-socket client, and each connection's bytes must be exactly
//! what was sent plus one `traceparent` line right after each request
//! line where one is expected, and nothing anywhere else.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratatosk_e2e::*;
use serde_json::Value;

/// Accepts connections and appends, per connection once it ends, one
/// JSON line {"port": peer port, "hex": bytes received} to the file
/// argv[2]. Answers nothing: the client only sends.
const RECORDER: &str = r#"
import json, socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(64)
lock = threading.Lock()
def serve(c, peer):
    got = b""
    c.settimeout(10)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
    except OSError:
        pass
    c.close()
    with lock, open(sys.argv[2], "a") as f:
        f.write(json.dumps({"port": peer[1], "hex": got.hex()}) + "\n")
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"#;

/// Waits for "go" on stdin, then runs each case on its own connection
/// (every element of `sends` is one send(), with a pause between them so
/// they leave as separate messages), and prints one JSON line per case:
/// its name, local port, the bytes sent and the injections expected.
const CLIENT: &str = r#"
import json, socket, sys, time
port = int(sys.argv[1])
sys.stdin.readline()
body = b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"
post = b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
get = lambda p: b"GET " + p + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
tp = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
cases = [
    ("plain", [get(b"/a")], 1),
    ("keepalive", [get(b"/a1"), get(b"/a2"), get(b"/a3")], 3),
    # The head cut by the send: nothing injected on that socket again.
    ("split", [b"GET /b HTTP/1.1\r\nHo", b"st: x\r\n\r\n", get(b"/b2")], 0),
    # Two requests in one send: the first is injected, the second not;
    # the next send is on a boundary again.
    ("pipelined", [get(b"/c1") + get(b"/c2"), get(b"/c3")], 2),
    # A body that holds a request line, in the head's send and alone.
    ("post_body_same_send", [post + body, get(b"/d2")], 2),
    ("post_body_own_send", [post, body, get(b"/d3")], 2),
    ("post_body_split", [post + body[:10], body[10:], get(b"/d4")], 2),
    ("has_traceparent", [b"GET /e HTTP/1.1\r\n" + tp + b"Host: x\r\n\r\n", get(b"/e2")], 1),
    ("connect_tunnel", [b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                        b"\x16\x03\x01\x00\x05hello", get(b"/f"), bytes(range(256))], 0),
    ("chunked", [b"POST /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 get(b"/g2")], 0),
    ("not_http", [b"\x00\x01binary" + get(b"/h")], 0),
    ("upgrade", [b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                 get(b"/i")], 0),
    # A body sent with sendfile(2) (socket.sendfile): counted as body.
    ("sendfile_body", [b"POST /j HTTP/1.1\r\nHost: x\r\nContent-Length: 66500\r\n\r\n",
                       ("FILE", b"GET /k HTTP/1.1\r\n\r\n" * 3500), get(b"/j2")], 2),
]
import tempfile
for name, sends, want in cases:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = b""
    for chunk in sends:
        if isinstance(chunk, tuple):
            with tempfile.TemporaryFile() as f:
                f.write(chunk[1])
                f.flush()
                f.seek(0)
                s.sendfile(f)
            chunk = chunk[1]
        else:
            s.sendall(chunk)
        wire += chunk
        time.sleep(0.05)
    local = s.getsockname()[1]
    s.close()
    print(json.dumps({"name": name, "port": local, "hex": wire.hex(), "want": want}), flush=True)
print("done", flush=True)
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const LINE: usize = 70;

/// An inserted line at got[i..]: `traceparent: 00-<32 hex>-<16 hex>-01\r\n`
/// right after a request line's CRLF.
fn injection_at(got: &[u8], i: usize) -> bool {
    let Some(l) = got.get(i..i + LINE) else {
        return false;
    };
    let hex = |r: std::ops::Range<usize>| {
        l[r].iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let before = &got[..i];
    let line_start = before[..before.len().saturating_sub(2)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let prev = &before[line_start..];
    l.starts_with(b"traceparent: 00-")
        && hex(16..48)
        && l[48] == b'-'
        && hex(49..65)
        && l.ends_with(b"-01\r\n")
        && prev.ends_with(b" HTTP/1.1\r\n")
        && prev.first().is_some_and(u8::is_ascii_uppercase)
}

/// How many lines were inserted into `sent` to make `got`, or None when
/// `got` differs from `sent` in any other way.
fn inserted(sent: &[u8], got: &[u8]) -> Option<usize> {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < got.len() {
        let inj = injection_at(got, i) && !sent[j..].starts_with(&got[i..i + LINE]);
        if inj {
            n += 1;
            i += LINE;
        } else if sent.get(j) == Some(&got[i]) {
            i += 1;
            j += 1;
        } else {
            return None;
        }
    }
    (j == sent.len()).then_some(n)
}

#[test]
fn injected_streams_are_byte_exact() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let port = free_port();
    let _server = Proc::spawn(
        "recorder",
        Command::new(tool("python3"))
            .args(["-c", RECORDER, &port.to_string(), record.to_str().unwrap()])
            .stdout(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    let mut client = Command::new(tool("python3"))
        .args(["-c", CLIENT, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let agent = Agent::start(&["--pid", &client.id().to_string()]);
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut cases: Vec<Value> = Vec::new();
    for line in BufReader::new(client.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "done" {
            break;
        }
        cases.push(serde_json::from_str(&line).unwrap());
    }
    client.wait().unwrap();
    assert_eq!(cases.len(), 13);

    let deadline = Instant::now() + Duration::from_secs(10);
    let received = loop {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if rows.len() >= cases.len() || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut total = 0;
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let got = received
            .iter()
            .find(|r| r["port"] == c["port"])
            .unwrap_or_else(|| panic!("{name}: nothing received"));
        let sent = unhex(c["hex"].as_str().unwrap());
        let got = unhex(got["hex"].as_str().unwrap());
        let n = inserted(&sent, &got).unwrap_or_else(|| {
            panic!(
                "{name}: bytes changed beyond inserted lines\nsent {:?}\ngot  {:?}",
                String::from_utf8_lossy(&sent),
                String::from_utf8_lossy(&got)
            )
        });
        assert_eq!(
            n as u64,
            c["want"].as_u64().unwrap(),
            "{name}: injections\n{:?}",
            String::from_utf8_lossy(&got)
        );
        total += n;
    }
    // BPF counters are read once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let counters = agent.self_counters();
    eprintln!("{counters}");
    assert_eq!(
        agent.metric_sum("ratatosk_traceparent_injected_total", &[]),
        total as f64,
        "{counters}"
    );
    let skipped = |reason: &str| {
        agent.metric_sum(
            "ratatosk_traceparent_inject_skipped_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(skipped("split_head"), 1.0, "{counters}");
    assert_eq!(skipped("pipelined"), 1.0, "{counters}");
    assert_eq!(skipped("has_traceparent"), 1.0, "{counters}");
    assert_eq!(skipped("tunnel"), 2.0, "{counters}");
    assert_eq!(skipped("chunked"), 1.0, "{counters}");
    assert_eq!(skipped("not_http"), 1.0, "{counters}");
}
