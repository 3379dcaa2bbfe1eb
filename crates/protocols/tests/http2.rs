//! HTTP/2 and gRPC over fixtures captured from real clients and servers
//! (tests/fixtures/http2/README.md).

use ratatosk_protocols::http2::{CONNECTION_CLOSED, HTTP2, PREFACE};
use ratatosk_protocols::op::{Detail, HttpDetail, Operation, Outcome, RpcDetail};
use ratatosk_protocols::parse::{Direction, Role, Segment};
use ratatosk_protocols::parser::{Limits, Output, Protocol};
use ratatosk_protocols::registry::{self, FirstBytes, Verdict};

#[derive(Debug, Clone)]
struct Rec {
    conn: u32,
    from_client: bool,
    data: Vec<u8>,
}

fn fixture(name: &str) -> Vec<Rec> {
    let path = format!(
        "{}/tests/fixtures/http2/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (tag, hexs) = line.split_once(' ').unwrap();
            Rec {
                conn: tag[1..].parse().unwrap(),
                from_client: tag.starts_with('C'),
                data: hex(hexs),
            }
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One segment as the parser receives it.
#[derive(Debug, Clone)]
struct Seg {
    from_client: bool,
    ts: u64,
    data: Vec<u8>,
    gap: u64,
}

/// The records of connection `conn`, one segment each, timestamps 1000
/// apart.
fn segments(recs: &[Rec], conn: u32) -> Vec<Seg> {
    recs.iter()
        .filter(|r| r.conn == conn)
        .enumerate()
        .map(|(i, r)| Seg {
            from_client: r.from_client,
            ts: (i as u64 + 1) * 1000,
            data: r.data.clone(),
            gap: 0,
        })
        .collect()
}

/// Re-cuts segments the way the kernel capture delivers HTTP/2: frame
/// headers and every other payload captured, DATA payloads as gaps, all
/// at the segment's timestamp.
fn kernel_cut(segs: &[Seg]) -> Vec<Seg> {
    // Per direction: preface bytes left, header bytes gathered, payload
    // left and whether it is DATA.
    struct W {
        preface: usize,
        hdr: Vec<u8>,
        left: usize,
        data: bool,
    }
    let mut ws = [
        W {
            preface: PREFACE.len(),
            hdr: vec![],
            left: 0,
            data: false,
        },
        W {
            preface: 0,
            hdr: vec![],
            left: 0,
            data: false,
        },
    ];
    let mut out = Vec::new();
    for s in segs {
        let w = &mut ws[usize::from(!s.from_client)];
        let mut cur = Seg {
            data: vec![],
            gap: 0,
            ..s.clone()
        };
        for &b in &s.data {
            if w.preface > 0 {
                w.preface -= 1;
                cur.data.push(b);
                continue;
            }
            if w.left == 0 {
                w.hdr.push(b);
                if cur.gap > 0 {
                    out.push(std::mem::replace(
                        &mut cur,
                        Seg {
                            data: vec![],
                            gap: 0,
                            ..s.clone()
                        },
                    ));
                }
                cur.data.push(b);
                if w.hdr.len() == 9 {
                    w.left = usize::from(w.hdr[0]) << 16
                        | usize::from(w.hdr[1]) << 8
                        | usize::from(w.hdr[2]);
                    w.data = w.hdr[3] == 0;
                    w.hdr.clear();
                }
                continue;
            }
            w.left -= 1;
            if w.data {
                cur.gap += 1;
            } else {
                if cur.gap > 0 {
                    out.push(std::mem::replace(
                        &mut cur,
                        Seg {
                            data: vec![],
                            gap: 0,
                            ..s.clone()
                        },
                    ));
                }
                cur.data.push(b);
            }
        }
        out.push(cur);
    }
    out
}

/// Every segment as one-byte reads (its gap after its last byte).
fn one_byte(segs: &[Seg]) -> Vec<Seg> {
    let mut out = Vec::new();
    for s in segs {
        if s.data.len() <= 1 {
            out.push(s.clone());
            continue;
        }
        let last = s.data.len() - 1;
        for (i, &b) in s.data.iter().enumerate() {
            out.push(Seg {
                data: vec![b],
                gap: if i == last { s.gap } else { 0 },
                ..s.clone()
            });
        }
    }
    out
}

/// Parses segments as the server (client bytes are ingress) or as the
/// client, closing at the end unless `close` is false.
fn run_as(segs: &[Seg], server: bool, close: bool) -> Output {
    let client_dir = if server {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    let mut p = HTTP2.parser(client_dir, &Limits::default());
    let mut out = Output::default();
    for s in segs {
        let dir = if s.from_client {
            client_dir
        } else {
            client_dir.opposite()
        };
        p.on_data(
            dir,
            Segment::truncated(s.ts, &s.data, s.data.len() as u64 + s.gap),
            &mut out,
        );
    }
    if close {
        let end = segs.last().map_or(1, |s| s.ts + 1);
        p.on_close(end, &mut out);
    }
    out
}

fn run(segs: &[Seg]) -> Output {
    run_as(segs, true, true)
}

fn http(op: &Operation) -> &HttpDetail {
    match &op.detail {
        Detail::Http(d) => d,
        other => panic!("not HTTP: {other:?}"),
    }
}

fn rpc(op: &Operation) -> &RpcDetail {
    match &op.detail {
        Detail::Rpc(d) => d,
        other => panic!("not RPC: {other:?}"),
    }
}

#[test]
fn detected_from_the_client_preface() {
    let recs = fixture("curl");
    let client = &recs.iter().find(|r| r.from_client).unwrap().data;
    let server = &recs.iter().find(|r| !r.from_client).unwrap().data;
    let v = registry::detect(FirstBytes {
        ingress: client,
        egress: &[],
        local_port: 18931,
        remote_port: 40000,
    });
    match v {
        Verdict::Detected {
            protocol,
            request_dir,
        } => {
            assert_eq!(protocol.name(), "http2");
            assert_eq!(request_dir, Direction::Ingress);
        }
        other => panic!("{other:?}"),
    }
    // A prefix of the preface waits; the server's SETTINGS alone is weak
    // but, with nothing else, decides.
    assert!(matches!(
        registry::detect(FirstBytes {
            ingress: &client[..10],
            egress: &[],
            local_port: 18931,
            remote_port: 40000,
        }),
        Verdict::NeedMore
    ));
    match registry::detect(FirstBytes {
        ingress: &[],
        egress: server,
        local_port: 18931,
        remote_port: 40000,
    }) {
        Verdict::Detected {
            protocol,
            request_dir,
        } => {
            assert_eq!(protocol.name(), "http2");
            assert_eq!(request_dir, Direction::Ingress);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn curl_get_with_traceparent_and_404() {
    let recs = fixture("curl");
    let out = run(&segments(&recs, 1));
    assert!(out.losses.is_empty(), "{:?}", out.losses);
    assert_eq!(out.ops.len(), 1);
    let op = &out.ops[0];
    assert_eq!(op.role, Role::Server);
    assert_eq!(op.outcome, Outcome::Complete);
    assert!(!op.partial);
    assert_eq!(op.abort, None);
    assert_eq!(
        op.traceparent.unwrap().to_string(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    let d = http(op);
    assert_eq!(d.method, "GET");
    assert_eq!(d.target, "/hello");
    assert_eq!(d.protocol_version, "2");
    assert_eq!(d.host.as_deref(), Some("127.0.0.1:18932"));
    assert_eq!(d.user_agent.as_deref(), Some("curl/7.88.1"));
    assert_eq!(d.status, 200);
    assert_eq!(d.response_body_size, 6);
    assert!(op.request_start_ns <= op.response_start_ns);
    assert!(op.response_start_ns <= op.response_end_ns);

    let out = run(&segments(&recs, 2));
    assert!(out.losses.is_empty(), "{:?}", out.losses);
    assert_eq!(out.ops.len(), 1);
    let d = http(&out.ops[0]);
    assert_eq!((d.target.as_str(), d.status), ("/missing", 404));
    assert!(d.response_body_size > 100);
    assert_eq!(out.ops[0].traceparent, None);
}

#[test]
fn h2load_multiplexed_gives_one_op_per_stream() {
    let segs = segments(&fixture("h2load"), 1);
    for server in [true, false] {
        let out = run_as(&segs, server, true);
        assert!(out.losses.is_empty(), "{:?}", out.losses);
        assert_eq!(out.ops.len(), 64);
        for op in &out.ops {
            assert_eq!(op.role, if server { Role::Server } else { Role::Client });
            assert_eq!(op.outcome, Outcome::Complete);
            assert!(!op.partial);
            let d = http(op);
            assert_eq!((d.method.as_str(), d.target.as_str()), ("GET", "/hello"));
            assert_eq!((d.status, d.response_body_size), (200, 6));
            assert_eq!(d.user_agent.as_deref(), Some("h2load nghttp2/1.52.0"));
        }
    }
}

#[test]
fn interleaved_big_bodies_and_kernel_gaps_inside_data() {
    let segs = segments(&fixture("mixed"), 1);
    let out = run(&segs);
    assert!(out.losses.is_empty(), "{:?}", out.losses);
    assert_eq!(out.ops.len(), 8);
    let mut sizes: Vec<u64> = out.ops.iter().map(|o| http(o).response_body_size).collect();
    sizes.sort();
    assert_eq!(sizes, [6, 6, 6, 6, 20000, 20000, 20000, 20000]);
    // As the kernel delivers it: DATA payloads skipped as gaps. Same ops,
    // no loss.
    let cut = kernel_cut(&segs);
    assert!(cut.iter().any(|s| s.gap > 0));
    let again = run(&cut);
    assert!(again.losses.is_empty(), "{:?}", again.losses);
    assert_eq!(again.ops, out.ops);
}

#[test]
fn grpc_unary_not_found_streaming_and_cancel() {
    check_grpc("grpc", "grpc-python/", 39);
}

#[test]
fn grpc_js_the_same() {
    check_grpc("node_grpc", "grpc-node-js/", 39);
}

fn check_grpc(name: &str, agent: &str, streamed: u64) {
    let out = run(&segments(&fixture(name), 1));
    assert!(out.losses.is_empty(), "{:?}", out.losses);
    let got: Vec<(String, Option<u32>, Option<&str>, Outcome)> = out
        .ops
        .iter()
        .map(|o| {
            let d = rpc(o);
            (d.method.to_string(), d.status, o.abort, o.outcome)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "lab.v1.Greeter/SayHello".into(),
                Some(0),
                None,
                Outcome::Complete
            ),
            (
                "lab.v1.Greeter/SayHello".into(),
                Some(0),
                None,
                Outcome::Complete
            ),
            (
                "lab.v1.Greeter/Find".into(),
                Some(5),
                None,
                Outcome::Complete
            ),
            (
                "lab.v1.Greeter/ListItems".into(),
                Some(0),
                None,
                Outcome::Complete
            ),
            (
                "lab.v1.Greeter/Broken".into(),
                Some(13),
                None,
                Outcome::Complete
            ),
            (
                "lab.v1.Greeter/ListItems".into(),
                None,
                Some("CANCEL"),
                Outcome::ResponseTruncated
            ),
        ]
    );
    for op in &out.ops {
        assert!(!op.partial);
        let d = rpc(op);
        assert_eq!(d.http_status, 200);
        assert!(d.authority.as_deref().unwrap().starts_with("127.0.0.1:"));
        assert!(d.user_agent.as_deref().unwrap().starts_with(agent));
        assert!(d.request_body_size > 0);
    }
    assert_eq!(
        out.ops[0].traceparent.unwrap().to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(out.ops[1].traceparent, None);
    // Trailers-only NOT_FOUND: no DATA.
    assert_eq!(rpc(&out.ops[2]).response_body_size, 0);
    // Three streamed messages of 13 bytes (5-byte prefix + 8).
    assert_eq!(rpc(&out.ops[3]).response_body_size, streamed);
}

#[test]
fn one_byte_reads_give_the_same_ops() {
    for (name, conns) in [
        ("curl", 2),
        ("h2load", 1),
        ("mixed", 1),
        ("grpc", 1),
        ("nghttp", 1),
        ("goaway", 1),
        ("node_grpc", 1),
    ] {
        let recs = fixture(name);
        for conn in 1..=conns {
            let segs = segments(&recs, conn);
            let whole = run(&segs);
            let split = run(&one_byte(&segs));
            assert_eq!(whole.ops, split.ops, "{name} conn {conn}");
            assert_eq!(whole.losses, split.losses);
            let cut = run(&one_byte(&kernel_cut(&segs)));
            assert_eq!(whole.ops, cut.ops, "{name} conn {conn} (kernel cut)");
        }
    }
}

/// Position of the `n`-th frame of `ty` sent by the client (offset of its
/// header in the concatenated client bytes), skipping the preface.
fn client_frames(segs: &[Seg]) -> Vec<(usize, u8, usize)> {
    let bytes: Vec<u8> = segs
        .iter()
        .filter(|s| s.from_client)
        .flat_map(|s| s.data.clone())
        .collect();
    let mut at = PREFACE.len();
    let mut frames = Vec::new();
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        frames.push((at, bytes[at + 3], len));
        at += 9 + len;
    }
    frames
}

/// Replaces client bytes `from..to` (offsets in the concatenated client
/// stream) by a gap, keeping segment boundaries.
fn gap_client(segs: &[Seg], from: usize, to: usize) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut off = 0usize;
    for s in segs {
        if !s.from_client {
            out.push(s.clone());
            continue;
        }
        let (a, b) = (off, off + s.data.len());
        off = b;
        if b <= from || a >= to {
            out.push(s.clone());
            continue;
        }
        let keep_head = from.saturating_sub(a);
        let lost = to.min(b) - a.max(from);
        out.push(Seg {
            data: s.data[..keep_head].to_vec(),
            gap: lost as u64,
            ..s.clone()
        });
        if to < b {
            out.push(Seg {
                data: s.data[to - a..].to_vec(),
                gap: 0,
                ..s.clone()
            });
        }
    }
    out
}

#[test]
fn gap_over_a_header_block_is_counted_and_partial() {
    let segs = segments(&fixture("h2load"), 1);
    // The first request HEADERS carries the literals the others index.
    let (at, ty, len) = client_frames(&segs).into_iter().find(|f| f.1 == 1).unwrap();
    assert_eq!(ty, 1);
    let cut = gap_client(&segs, at + 9 + 2, at + 9 + len);
    let out = run(&cut);
    assert_eq!(
        out.losses,
        vec![("header_block_lost", 1)],
        "{:?}",
        out.losses
    );
    // Every stream still ends, once; what could not be decoded is absent
    // (never guessed) and said so.
    assert_eq!(out.ops.len(), 64);
    let partial = out.ops.iter().filter(|o| o.partial).count();

    assert!(partial >= 1);
    for op in &out.ops {
        let d = http(op);
        assert_eq!(op.outcome, Outcome::Complete);
        assert!(d.target.is_empty() || d.target == "/hello");
        assert!(d.method.is_empty() || d.method == "GET");
        if d.target.is_empty() || d.method.is_empty() {
            assert!(op.partial);
        }
        // Responses come from the other direction's intact context.
        assert_eq!(d.status, 200);
    }
}

#[test]
fn gap_over_a_frame_header_loses_the_framing() {
    let segs = segments(&fixture("h2load"), 1);
    let frames = client_frames(&segs);
    let (at, _, _) = frames[frames.len() / 2];
    let out = run(&gap_client(&segs, at, at + 4));
    assert!(out.losses.iter().any(|l| l.0 == "lost_sync"));
    // Streams open then end without inventing anything.
    assert!(out.ops.len() <= 64);
    assert!(
        out.ops
            .iter()
            .all(|o| o.outcome == Outcome::Complete || o.partial)
    );
}

#[test]
fn capture_started_mid_connection_invents_nothing() {
    let recs = fixture("h2load");
    let segs = segments(&recs, 1);
    // Start after the first client and server segments (preface,
    // SETTINGS and the first requests' literals are gone).
    let client_at = segs.iter().position(|s| s.from_client).unwrap();
    let skip: Vec<Seg> = segs
        .iter()
        .enumerate()
        .filter(|&(i, _)| i > client_at + 1)
        .map(|(_, s)| s.clone())
        .collect();
    assert!(!skip.is_empty());
    let out = run(&skip);
    assert!(out.ops.len() >= 40, "{}", out.ops.len());
    for op in &out.ops {
        let d = http(op);
        assert!(d.target.is_empty() || d.target == "/hello");
        assert!(d.method.is_empty() || d.method == "GET");
        assert!(d.status == 0 || d.status == 200);
        if d.target.is_empty() {
            assert!(op.partial);
        }
    }
}

#[test]
fn close_mid_stream_ends_it_aborted() {
    let segs = segments(&fixture("grpc"), 1);
    // Cut before the end of the first ListItems call: the server's last
    // segment carrying its trailers is never seen.
    let out = run(&segs);
    let end = out.ops[3].response_end_ns;
    let cut: Vec<Seg> = segs.iter().filter(|s| s.ts < end).cloned().collect();
    let out = run(&cut);
    let last = out.ops.last().unwrap();
    assert_eq!(rpc(last).method, "lab.v1.Greeter/ListItems");
    assert_eq!(last.abort, Some(CONNECTION_CLOSED));
    assert_eq!(last.outcome, Outcome::ResponseTruncated);
    assert_eq!(rpc(last).status, None);
    // Without the close nothing is emitted yet, and nothing leaks after.
    assert_eq!(run_as(&cut, true, false).ops.len(), out.ops.len() - 1);
}

#[test]
fn upgrade_h2c_hands_over_to_http2() {
    use ratatosk_protocols::http1::HTTP1;
    use ratatosk_protocols::parser::State;

    let segs = segments(&fixture("upgrade"), 1);
    for one in [false, true] {
        let segs = if one { one_byte(&segs) } else { segs.clone() };
        let mut p = HTTP1.parser(Direction::Ingress, &Limits::default());
        let mut out = Output::default();
        for s in &segs {
            let dir = if s.from_client {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            p.on_data(dir, Segment::new(s.ts, &s.data), &mut out);
        }
        assert_eq!(p.state(), State::Active);
        p.on_close(segs.last().unwrap().ts + 1, &mut out);
        assert!(out.losses.is_empty(), "one-byte {one}: {:?}", out.losses);
        let got: Vec<(&str, &str, u16, Outcome)> = out
            .ops
            .iter()
            .map(|o| {
                let d = http(o);
                (d.method.as_str(), d.target.as_str(), d.status, o.outcome)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("GET", "/hello", 200, Outcome::Complete),
                ("GET", "/again", 200, Outcome::Complete),
            ],
            "one-byte reads: {one}"
        );
        let first = &out.ops[0];
        assert_eq!(
            first.traceparent.unwrap().to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(http(first).response_body_size, 6);
        assert_eq!(http(first).user_agent.as_deref(), Some("curl/7.88.1"));
        assert!(out.ops.iter().all(|o| !o.partial));
    }
}

#[test]
fn detected_mid_connection_from_either_side() {
    let detect = |ingress: &[u8], egress: &[u8]| match registry::detect(FirstBytes {
        ingress,
        egress,
        local_port: 18931,
        remote_port: 40000,
    }) {
        Verdict::Detected {
            protocol,
            request_dir,
        } => Some((protocol.name(), request_dir)),
        _ => None,
    };
    for name in ["h2load", "grpc"] {
        let segs = segments(&fixture(name), 1);
        // Past the preface and the first exchanges: the first later
        // client segment that starts a HEADERS frame, and the first
        // server one.
        let client = segs
            .iter()
            .skip(4)
            .find(|s| s.from_client && s.data.get(3) == Some(&1))
            .unwrap();
        let server = segs
            .iter()
            .skip(4)
            .find(|s| !s.from_client && s.data.get(3) == Some(&1))
            .unwrap();
        assert_eq!(
            detect(&client.data, &[]),
            Some(("http2", Direction::Ingress)),
            "{name}"
        );
        assert_eq!(
            detect(&[], &server.data),
            Some(("http2", Direction::Ingress)),
            "{name}"
        );
    }
    // Other protocols' openings are not taken for frames.
    assert_eq!(detect(b"+OK\r\n", &[]).map(|d| d.0), Some("redis"));
    assert_eq!(
        detect(b"\x00\x00", b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"),
        None
    );
    assert_eq!(
        detect(b"*1\r\n$4\r\nPING\r\n", &[]).map(|d| d.0),
        Some("redis")
    );
}

#[test]
fn goaway_ends_the_streams_it_refuses() {
    use ratatosk_protocols::http2::GOAWAY_REFUSED;

    let segs = segments(&fixture("goaway"), 1);
    // Before the close: streams above the last stream id already ended.
    let open = run_as(&segs, true, false);
    assert!(open.losses.is_empty(), "{:?}", open.losses);
    let got: Vec<(u16, Option<&str>, Outcome)> = open
        .ops
        .iter()
        .map(|o| (http(o).status, o.abort, o.outcome))
        .collect();
    let ok = (200, None, Outcome::Complete);
    let refused = (0, Some(GOAWAY_REFUSED), Outcome::NoResponse);
    assert_eq!(got, [ok, ok, ok, ok, refused, refused, refused, ok]);
    // Closing adds nothing: every stream had ended.
    let closed = run(&segs);
    assert_eq!(closed.ops, open.ops);
}

#[test]
fn stream_table_bound_evicts_the_oldest_and_counts() {
    let segs = segments(&fixture("h2load"), 1);
    let limits = Limits {
        max_streams: 4,
        ..Limits::default()
    };
    let mut p = HTTP2.parser(Direction::Ingress, &limits);
    let mut out = Output::default();
    for s in &segs {
        let dir = if s.from_client {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        p.on_data(dir, Segment::new(s.ts, &s.data), &mut out);
    }
    p.on_close(1 << 40, &mut out);
    let evicted = out
        .losses
        .iter()
        .find(|l| l.0 == "stream_table_full")
        .map_or(0, |l| l.1);
    assert!(evicted > 0);
    // Every stream gives one operation: evicted ones early and partial,
    // their responses then unpaired.
    assert_eq!(out.ops.len(), 64);
    assert_eq!(out.ops.iter().filter(|o| o.partial).count() as u64, evicted);
    assert!(out.losses.iter().any(|l| l.0 == "unpaired_response"));
}

#[test]
fn nghttp_priorities_are_skipped() {
    let segs = segments(&fixture("nghttp"), 1);
    for segs in [segs.clone(), kernel_cut(&segs)] {
        let out = run(&segs);
        assert!(out.losses.is_empty(), "{:?}", out.losses);
        let got: Vec<(&str, u16, u64, bool)> = out
            .ops
            .iter()
            .map(|o| {
                let d = http(o);
                (
                    d.target.as_str(),
                    d.status,
                    d.response_body_size,
                    o.traceparent.is_some(),
                )
            })
            .collect();
        assert_eq!(got[0], ("/hello", 200, 6, true));
        assert_eq!(got[1], ("/big.txt", 200, 20000, true));
        assert_eq!((got[2].0, got[2].1), ("/missing", 404));
        assert_eq!(got.len(), 3);
        assert!(
            out.ops
                .iter()
                .all(|o| !o.partial && o.outcome == Outcome::Complete)
        );
        assert_eq!(
            http(&out.ops[0]).user_agent.as_deref(),
            Some("nghttp2/1.52.0")
        );
    }
}

/// The memory budget sees the HPACK tables and buffers a connection holds.
#[test]
fn state_bytes_count_the_header_tables() {
    let segs = segments(&fixture("grpc"), 1);
    let mut p = HTTP2.parser(Direction::Ingress, &Limits::default());
    let empty = p.state_bytes();
    let mut out = Output::default();
    for s in &segs {
        let dir = if s.from_client {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        p.on_data(dir, Segment::new(s.ts, &s.data), &mut out);
    }
    assert!(!out.ops.is_empty());
    let held = p.state_bytes();
    // gRPC clients index their headers: the tables hold them.
    assert!(held > empty + 100, "{empty} -> {held}");
    assert!(held < empty + 2 * 64 * 1024 + 64 * 1024, "{held}");
}
