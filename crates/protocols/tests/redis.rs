//! Redis parser over traffic captured from real clients and a real
//! redis-server 7.0.15 (see fixtures/redis/README.md), seen from either
//! end, whole, split at every offset, cut by capture gaps, and garbled.

use std::collections::BTreeMap;

use ratatosk_protocols::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use ratatosk_protocols::parse::Direction::{self, Egress, Ingress};
use ratatosk_protocols::parse::{Role, Segment};
use ratatosk_protocols::parser::{ConnParser, Detection, Limits, Output, Protocol, Strength};
use ratatosk_protocols::redis::{REDIS, RedisParser};
use ratatosk_protocols::registry::{self, FirstBytes, Verdict};

/// One recorded recv() of the relay: which connection, which way, the
/// bytes kept (at most 1024, as the agent captures) and how many moved.
#[derive(Debug, Clone)]
struct Rec {
    conn: u32,
    from_client: bool,
    data: Vec<u8>,
    len: u64,
}

fn fixture(name: &str) -> Vec<Rec> {
    let path = format!(
        "{}/tests/fixtures/redis/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.split(' ');
        let tag = parts.next().unwrap();
        let data = hex(parts.next().unwrap());
        let len = parts
            .next()
            .map_or(data.len() as u64, |n| n.parse().unwrap());
        out.push(Rec {
            conn: tag[1..].parse().unwrap(),
            from_client: tag.starts_with('C'),
            data,
            len,
        });
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Which process the agent watches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// The application: commands are its writes.
    Client,
    /// redis-server: commands are its reads.
    Server,
}

impl Seen {
    fn dir(self, from_client: bool) -> Direction {
        match (self, from_client) {
            (Seen::Client, true) | (Seen::Server, false) => Egress,
            _ => Ingress,
        }
    }
    fn request_dir(self) -> Direction {
        self.dir(true)
    }
}

struct Run {
    ops: Vec<Operation>,
    losses: BTreeMap<&'static str, u64>,
}

impl Run {
    fn db(&self) -> Vec<&DbDetail> {
        self.ops.iter().map(db).collect()
    }
    fn names(&self) -> Vec<&str> {
        self.ops.iter().map(|o| db(o).operation.as_str()).collect()
    }
    fn texts(&self) -> Vec<&str> {
        self.ops
            .iter()
            .map(|o| db(o).query_text.as_deref().unwrap_or(""))
            .collect()
    }
    fn loss(&self, reason: &str) -> u64 {
        self.losses.get(reason).copied().unwrap_or(0)
    }
    /// Everything a span could carry, as text, for leak checks.
    fn dump(&self) -> String {
        format!("{:?}", self.ops)
    }
}

fn db(op: &Operation) -> &DbDetail {
    match &op.detail {
        Detail::Db(d) => d,
        other => panic!("not a db op: {other:?}"),
    }
}

/// Feeds connection `conn` of `recs` (one segment per record, 1 µs
/// apart) and closes it.
fn run_with(recs: &[Rec], conn: u32, seen: Seen, limits: Limits, start_seen: bool) -> Run {
    let mut p = REDIS.parser(seen.request_dir(), &limits);
    if start_seen {
        p.start_seen();
    }
    let mut out = Output::default();
    let mut ts = 0;
    for r in recs.iter().filter(|r| r.conn == conn) {
        ts += 1000;
        p.on_data(
            seen.dir(r.from_client),
            Segment::truncated(ts, &r.data, r.len),
            &mut out,
        );
    }
    p.on_close(ts + 1000, &mut out);
    collect(out)
}

fn collect(out: Output) -> Run {
    let mut losses = BTreeMap::new();
    for (r, n) in out.losses {
        *losses.entry(r).or_default() += n;
    }
    Run {
        ops: out.ops,
        losses,
    }
}

fn run(name: &str, conn: u32, seen: Seen) -> Run {
    run_with(&fixture(name), conn, seen, Limits::default(), true)
}

fn assert_complete(r: &Run) {
    for op in &r.ops {
        assert_eq!(op.outcome, Outcome::Complete, "{op:?}");
        assert!(op.request_start_ns <= op.request_end_ns);
        assert!(op.request_end_ns <= op.response_start_ns);
        assert!(op.response_start_ns <= op.response_end_ns);
    }
}

const HANDSHAKE: [&str; 4] = [
    "HELLO",
    "CLIENT MAINT_NOTIFICATIONS",
    "CLIENT SETINFO",
    "CLIENT SETINFO",
];

#[test]
fn redis_py_single_commands_from_both_ends() {
    for seen in [Seen::Client, Seen::Server] {
        let r = run("basic", 1, seen);
        assert_eq!(r.losses, BTreeMap::new(), "{seen:?}");
        assert_complete(&r);
        let mut names = HANDSHAKE.to_vec();
        names.extend([
            "SET", "GET", "HSET", "INCRBY", "INCRBY", "LPUSH", "GET", "DEL",
        ]);
        assert_eq!(r.names(), names);
        assert_eq!(
            r.texts()[4..],
            [
                "SET user:1 ?",
                "GET user:1",
                "HSET h ? ?",
                "INCRBY counter ?",
                "INCRBY user:1 ?",
                "LPUSH user:1 ?",
                "GET missing",
                "DEL user:1 ?",
            ]
        );
        assert_eq!(r.texts()[0], "HELLO ?");
        assert_eq!(r.texts()[2], "CLIENT SETINFO ? ?");
        let status: Vec<_> = r.db().iter().map(|d| d.status_code.as_deref()).collect();
        assert_eq!(
            status,
            [
                None,
                Some("ERR"), // redis 7.0 has no CLIENT MAINT_NOTIFICATIONS
                Some("ERR"), // nor CLIENT SETINFO
                Some("ERR"),
                None,
                None,
                None,
                None,
                Some("ERR"), // INCR of a string
                Some("WRONGTYPE"),
                None,
                None,
            ]
        );
        for d in r.db() {
            assert_eq!(d.system, DbSystem::Redis);
            assert_eq!(d.namespace.as_deref(), Some("0"));
            assert_eq!(d.collection, None);
            assert!(!d.query_truncated);
        }
        let role = if seen == Seen::Client {
            Role::Client
        } else {
            Role::Server
        };
        assert!(r.ops.iter().all(|o| o.role == role));
        let dump = r.dump();
        for lit in ["secret-value-1", "field-lit", "value-lit", "x-lit"] {
            assert!(!dump.contains(lit), "{lit} leaked: {dump}");
        }
    }
}

#[test]
fn timestamps_follow_the_segments() {
    let r = run("basic", 1, Seen::Client);
    // HELLO: request in segment 1, reply in segment 2.
    let hello = &r.ops[0];
    assert_eq!(
        (
            hello.request_start_ns,
            hello.request_end_ns,
            hello.response_start_ns,
            hello.response_end_ns
        ),
        (1000, 1000, 2000, 2000)
    );
    // Then one command per write, each answered in the next read.
    for (i, op) in r.ops.iter().enumerate() {
        let at = (2 * i as u64 + 1) * 1000;
        assert_eq!((op.request_start_ns, op.request_end_ns), (at, at), "{i}");
        assert_eq!(
            (op.response_start_ns, op.response_end_ns),
            (at + 1000, at + 1000),
            "{i}"
        );
    }
}

#[test]
fn select_sets_the_namespace_of_later_commands() {
    let r = run("select", 1, Seen::Client);
    assert_complete(&r);
    let mut names = HANDSHAKE.to_vec();
    names.extend(["SELECT", "SET", "GET"]);
    assert_eq!(r.names(), names);
    let ns: Vec<_> = r.db().iter().map(|d| d.namespace.as_deref()).collect();
    assert_eq!(
        ns,
        [
            Some("0"),
            Some("0"),
            Some("0"),
            Some("0"),
            Some("0"), // SELECT itself ran on database 0
            Some("2"),
            Some("2")
        ]
    );
    assert_eq!(r.texts()[4], "SELECT ?");
    // A connection seen from its start whose first command is HELLO:
    // database 0 even when the agent did not see the connect.
    let r = run_with(
        &fixture("select"),
        1,
        Seen::Server,
        Limits::default(),
        false,
    );
    let ns: Vec<_> = r.db().iter().map(|d| d.namespace.as_deref()).collect();
    assert_eq!(ns[0], Some("0"));
    // Capture that began mid-connection (after the handshake) does not
    // know the database; nor does it for a connection opened with a
    // command that could come at any time.
    let late: Vec<Rec> = fixture("select").into_iter().skip(4).collect();
    let r = run_with(&late, 1, Seen::Server, Limits::default(), false);
    assert_eq!(r.texts(), ["SET k2 ?", "GET k2"]);
    assert!(r.db().iter().all(|d| d.namespace.is_none()));
    let r = run_with(
        &fixture("bench16"),
        2,
        Seen::Server,
        Limits::default(),
        false,
    );
    assert!(r.db().iter().all(|d| d.namespace.is_none()));
    let r = run_with(
        &fixture("bench16"),
        2,
        Seen::Server,
        Limits::default(),
        true,
    );
    assert!(r.db().iter().all(|d| d.namespace.as_deref() == Some("0")));
}

#[test]
fn a_pipeline_of_ten_gives_ten_operations_in_order() {
    for seen in [Seen::Client, Seen::Server] {
        let r = run("pipeline10", 1, seen);
        assert_eq!(r.losses, BTreeMap::new());
        assert_complete(&r);
        assert_eq!(r.ops.len(), 14);
        let texts = r.texts();
        for i in 0..5 {
            assert_eq!(texts[4 + i], format!("SET pk:{i} ?"));
            assert_eq!(texts[9 + i], format!("GET pk:{i}"));
        }
        // One write, one read: all ten share their times.
        let first = &r.ops[4];
        for op in &r.ops[4..] {
            assert_eq!(op.request_start_ns, first.request_start_ns);
            assert_eq!(op.response_end_ns, first.response_end_ns);
        }
        assert!(!r.dump().contains("pv-lit"));
    }
}

#[test]
fn multi_exec_and_discard() {
    let r = run("multi", 1, Seen::Client);
    assert_eq!(r.losses, BTreeMap::new());
    assert_complete(&r);
    assert_eq!(
        r.names()[4..],
        [
            "MULTI", "SET", "INCRBY", "GET", "EXEC", "MULTI", "SET", "DISCARD"
        ]
    );
    assert_eq!(
        r.texts()[4..],
        [
            "MULTI",
            "SET mk ?",
            "INCRBY mc ?",
            "GET mk",
            "EXEC",
            "MULTI",
            "SET dk ?",
            "DISCARD"
        ]
    );
    assert!(!r.dump().contains("mv-lit") && !r.dump().contains("dv-lit"));
}

#[test]
fn passwords_never_appear() {
    for (name, conns, secret) in [("auth", 2, "s3cr3t-pass"), ("cliauth", 3, "s3cr3t-cli")] {
        for conn in 1..=conns {
            for seen in [Seen::Client, Seen::Server] {
                let r = run(name, conn, seen);
                assert_complete(&r);
                let dump = r.dump();
                assert!(!dump.contains(secret), "{name}/{conn}: {dump}");
                assert!(!dump.contains("default"), "user names are arguments too");
                assert!(!dump.contains("newpass-lit") && !dump.contains("requirepass"));
            }
        }
    }
    let r = run("auth", 1, Seen::Client);
    assert_eq!(r.texts()[0], "HELLO ? ? ? ?");
    let r = run("cliauth", 1, Seen::Client);
    assert_eq!(r.texts(), ["AUTH ?", "SET ck ?"]);
    let r = run("cliauth", 2, Seen::Client);
    assert_eq!(r.texts(), ["AUTH ? ?", "HELLO ?", "GET ck"]);
    let r = run("cliauth", 3, Seen::Client);
    assert_eq!(r.names(), ["CONFIG SET"]);
    assert_eq!(r.texts(), ["CONFIG SET ? ?"]);
    assert_eq!(r.db()[0].status_code.as_deref(), Some("NOAUTH"));
}

#[test]
fn resp3_replies_of_every_type_pair() {
    let r = run("resp3", 1, Seen::Client);
    assert_eq!(r.losses, BTreeMap::new());
    assert_complete(&r);
    let names = r.names();
    assert_eq!(
        names[4..11],
        [
            "HSET", "HGETALL", "SADD", "SMEMBERS", "ZADD", "ZSCORE", "GET"
        ]
    );
    assert_eq!(names.iter().filter(|n| **n == "DEBUG PROTOCOL").count(), 8);
    assert_eq!(names.len(), 4 + 7 + 8 + 2);
    assert_eq!(r.db()[19].status_code.as_deref(), Some("WRONGTYPE"));
    assert_eq!(r.texts()[4], "HSET h3 ? ? ? ?");
    assert!(!r.dump().contains("lit"));
}

#[test]
fn resp3_attribute_push_bignum_verbatim_from_redis_cli() {
    let recs = fixture("cli3");
    let mut pushes = 0;
    for conn in 1..=4 {
        let r = run_with(&recs, conn, Seen::Client, Limits::default(), true);
        assert_complete(&r);
        assert_eq!(r.names(), ["HELLO", "DEBUG PROTOCOL"], "conn {conn}");
        pushes += r.loss("pubsub_push");
        assert_eq!(r.losses.len(), usize::from(r.loss("pubsub_push") > 0));
    }
    // The push that DEBUG PROTOCOL push sends before its reply.
    assert_eq!(pushes, 1);
}

#[test]
fn pubsub_pushes_are_counted_never_paired() {
    for (name, ping) in [("pubsub2", "*2 pong"), ("pubsub3", "+PONG")] {
        for seen in [Seen::Client, Seen::Server] {
            let r = run(name, 1, seen);
            assert_complete(&r);
            let names = r.names();
            let tail: Vec<_> = names
                .iter()
                .copied()
                .skip_while(|n| *n != "SUBSCRIBE")
                .collect();
            assert_eq!(
                tail,
                [
                    "SUBSCRIBE",
                    "PSUBSCRIBE",
                    "PING",
                    "UNSUBSCRIBE",
                    "PUNSUBSCRIBE"
                ],
                "{name} {ping}"
            );
            // Three messages, and the second confirmation of the
            // UNSUBSCRIBE without arguments.
            assert_eq!(r.loss("pubsub_push"), 4, "{name}: {:?}", r.losses);
            assert_eq!(r.losses.len(), 1, "{:?}", r.losses);
            let sub = r
                .ops
                .iter()
                .find(|o| db(o).operation == "SUBSCRIBE")
                .unwrap();
            assert_eq!(db(sub).query_text.as_deref(), Some("SUBSCRIBE news ?"));
            assert!(!r.dump().contains("m-lit"));
            // The publisher.
            let p = run(name, 2, seen);
            assert_complete(&p);
            let publishes: Vec<_> = p
                .texts()
                .into_iter()
                .filter(|t| t.starts_with("PUBLISH"))
                .collect();
            assert_eq!(
                publishes,
                ["PUBLISH news ?", "PUBLISH news ?", "PUBLISH weather ?"]
            );
            assert!(!p.dump().contains("m-lit"));
        }
    }
}

#[test]
fn large_values_skip_their_gaps_by_length() {
    // Records over 1024 bytes are kept as the agent keeps them: a 1 KiB
    // prefix and the length moved.
    for seen in [Seen::Client, Seen::Server] {
        let r = run("bigvalue", 1, seen);
        assert_eq!(
            r.names()[4..],
            ["SET", "GET", "LPUSH", "LRANGE", "DEL"],
            "{seen:?}"
        );
        let out: Vec<_> = r.ops.iter().map(|o| o.outcome).collect();
        // SET's 100 000-byte value and GET's reply are one bulk each:
        // skipped by length. LPUSH's 300 arguments and LRANGE's 300
        // elements are cut inside their framing: LPUSH's text is marked
        // truncated and LRANGE's reply end is unknown. DEL is paired again.
        assert_eq!(
            out[4..],
            [
                Outcome::Complete,
                Outcome::Complete,
                Outcome::Complete,
                Outcome::ResponseTruncated,
                Outcome::Complete
            ]
        );
        let d = r.db();
        assert_eq!(d[4].query_text.as_deref(), Some("SET big ?"));
        assert!(!d[4].query_truncated);
        assert!(d[6].query_truncated);
        assert!(
            d[6].query_text
                .as_deref()
                .unwrap()
                .starts_with("LPUSH biglist ? ?")
        );
        assert_eq!(d[8].query_text.as_deref(), Some("DEL big ?"));
        assert_eq!(r.loss("lost_sync"), 2, "{:?}", r.losses);
        assert!(!r.dump().contains("item-"));
    }
}

#[test]
fn inline_commands() {
    let r = run("inline", 1, Seen::Server);
    assert_eq!(r.losses, BTreeMap::new());
    assert_complete(&r);
    assert_eq!(r.texts(), ["PING", "SET ik ?", "GET ik", "EXISTS ik"]);
    assert!(!r.dump().contains("iv-lit"));

    // Quoted arguments are one argument each, as redis-server splits
    // them (`redis-cli` would send arrays; telnet users type these).
    let mut p = RedisParser::new(Ingress, &Limits::default());
    let mut out = Output::default();
    p.on_data(
        Ingress,
        Segment::new(
            1,
            b"SET k \"two words \\\" lit\" EX 10\r\nSET k2 'it s lit'\r\n",
        ),
        &mut out,
    );
    p.on_data(Egress, Segment::new(2, b"+OK\r\n+OK\r\n"), &mut out);
    let r = collect(out);
    assert_eq!(r.texts(), ["SET k ? ? ?", "SET k2 ?"]);
    assert!(!r.dump().contains("lit"));
}

#[test]
fn redis_benchmark_counts_are_exact() {
    let recs = fixture("bench16");
    let mut total = BTreeMap::<String, usize>::new();
    for conn in 1..=3 {
        let r = run_with(&recs, conn, Seen::Server, Limits::default(), true);
        assert_eq!(r.losses, BTreeMap::new());
        assert_complete(&r);
        for t in r.texts() {
            *total.entry(t.to_string()).or_default() += 1;
        }
    }
    assert_eq!(total["CONFIG GET ?"], 2);
    assert_eq!(total["SET key:__rand_int__ ?"], 64);
    assert_eq!(total["GET key:__rand_int__"], 64);
    assert_eq!(total.len(), 3);

    let recs = fixture("bench");
    let mut n = 0;
    for conn in 1..=3 {
        let r = run_with(&recs, conn, Seen::Client, Limits::default(), true);
        assert_eq!(r.losses, BTreeMap::new());
        assert_complete(&r);
        n += r.ops.len();
    }
    assert_eq!(n, 2 + 20 + 20);
}

#[test]
fn client_reply_select_reset_monitor() {
    let r = run("modes", 1, Seen::Client);
    let got: Vec<_> = r
        .ops
        .iter()
        .map(|o| {
            (
                db(o).query_text.as_deref().unwrap(),
                o.outcome,
                db(o).namespace.as_deref(),
            )
        })
        .collect();
    use Outcome::{Complete as C, NoResponse as N};
    assert_eq!(
        got,
        [
            ("CLIENT REPLY ?", N, Some("0")),
            ("SET ra ?", N, Some("0")),
            ("CLIENT REPLY ?", C, Some("0")),
            ("CLIENT REPLY ?", N, Some("0")),
            ("SET rb ?", N, Some("0")),
            ("GET ra", C, Some("0")),
            ("SELECT ?", C, Some("0")),
            ("GET ra", C, Some("3")),
            ("RESET", C, Some("3")),
            ("GET ra", C, Some("0")),
            ("MONITOR", C, Some("0")),
            ("RESET", C, Some("0")),
            ("PING", C, Some("0")),
        ]
    );
    assert_eq!(r.loss("monitor_push"), 2);
    assert!(!r.dump().contains("lit"));
}

/// Every record split in two at every offset (same timestamp) gives the
/// same operations.
#[test]
fn splits_at_every_offset() {
    for (name, conn) in [
        ("basic", 1),
        ("pipeline10", 1),
        ("multi", 1),
        ("resp3", 1),
        ("pubsub2", 1),
        ("cli3", 1),
        ("inline", 1),
    ] {
        let recs: Vec<Rec> = fixture(name)
            .into_iter()
            .filter(|r| r.conn == conn)
            .collect();
        for seen in [Seen::Client, Seen::Server] {
            let whole = run_with(&recs, conn, seen, Limits::default(), true);
            for (i, rec) in recs.iter().enumerate() {
                for at in 1..rec.data.len() {
                    let mut p = RedisParser::new(seen.request_dir(), &Limits::default());
                    p.connection_start_seen();
                    let mut out = Output::default();
                    for (j, r) in recs.iter().enumerate() {
                        let ts = (j as u64 + 1) * 1000;
                        let dir = seen.dir(r.from_client);
                        if i == j {
                            let (a, b) = r.data.split_at(at);
                            p.on_data(dir, Segment::new(ts, a), &mut out);
                            p.on_data(dir, Segment::new(ts, b), &mut out);
                        } else {
                            p.on_data(dir, Segment::new(ts, &r.data), &mut out);
                        }
                    }
                    p.on_close(recs.len() as u64 * 1000 + 1000, &mut out);
                    let split = collect(out);
                    assert_eq!(split.ops, whole.ops, "{name} record {i} split at {at}");
                    assert_eq!(split.losses, whole.losses);
                }
            }
            // And one byte per segment.
            let mut p = RedisParser::new(seen.request_dir(), &Limits::default());
            p.connection_start_seen();
            let mut out = Output::default();
            for (j, r) in recs.iter().enumerate() {
                for b in r.data.chunks(1) {
                    let dir = seen.dir(r.from_client);
                    p.on_data(dir, Segment::new((j as u64 + 1) * 1000, b), &mut out);
                }
            }
            p.on_close(recs.len() as u64 * 1000 + 1000, &mut out);
            assert_eq!(collect(out).ops, whole.ops, "{name} byte by byte");
        }
    }
}

/// A pipelined write whose capture stopped inside it: the commands in
/// the gap are lost (counted), their replies are not paired with the
/// commands that follow.
#[test]
fn gap_inside_a_pipeline() {
    let recs: Vec<Rec> = fixture("bench16")
        .into_iter()
        .filter(|r| r.conn == 2)
        .collect();
    let mut p = RedisParser::new(Egress, &Limits::default());
    let mut out = Output::default();
    for (i, r) in recs.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        if i == 0 {
            // Only 110 bytes of the first batch of 16 SET (45 bytes each)
            // were captured: two SET and the third up to `ke` of its key.
            p.on_data(
                Egress,
                Segment::truncated(ts, &r.data[..110], r.len),
                &mut out,
            );
        } else {
            p.on_data(
                if r.from_client { Egress } else { Ingress },
                Segment::new(ts, &r.data),
                &mut out,
            );
        }
    }
    p.on_close(100_000, &mut out);
    let r = collect(out);
    // Two whole SET and the third, cut: 3 operations for the first batch,
    // paired with the first three +OK; 13 replies answer lost commands;
    // the three later batches are whole.
    assert_eq!(r.ops.len(), 3 + 48);
    assert_complete(&r);
    assert!(db(&r.ops[2]).query_truncated);
    assert_eq!(db(&r.ops[2]).query_text.as_deref(), Some("SET ke ?"));
    assert_eq!(r.loss("lost_sync"), 1);
    assert_eq!(r.loss("unpaired_response"), 13);
}

#[test]
fn garbage_gives_no_operation_and_is_counted() {
    let garbage: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random \x00\xff bytes\r\n";
    for seen in [Seen::Client, Seen::Server] {
        let mut p = RedisParser::new(seen.request_dir(), &Limits::default());
        let mut out = Output::default();
        p.on_data(seen.dir(true), Segment::new(1, garbage), &mut out);
        p.on_data(seen.dir(false), Segment::new(2, garbage), &mut out);
        p.on_data(seen.dir(true), Segment::new(3, b"%%%%\r\n"), &mut out);
        p.on_close(4, &mut out);
        let r = collect(out);
        assert!(r.ops.is_empty(), "{:?}", r.ops);
        assert!(r.loss("invalid_message") >= 2, "{:?}", r.losses);
    }
    // And detection does not take it for Redis.
    for dir in [Ingress, Egress] {
        assert_eq!(REDIS.detect(dir, garbage), Detection::No);
    }
    let v = registry::detect(FirstBytes {
        ingress: garbage,
        egress: garbage,
        local_port: 6379,
        remote_port: 40000,
    });
    assert!(matches!(v, Verdict::Unknown), "{v:?}");
}

#[test]
fn garbage_then_commands_resyncs() {
    let mut p = RedisParser::new(Ingress, &Limits::default());
    let mut out = Output::default();
    let mut req = b"\x00\x01junk\r\n".to_vec();
    req.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    p.on_data(Ingress, Segment::new(1, &req), &mut out);
    p.on_data(Egress, Segment::new(2, b"$1\r\nv\r\n"), &mut out);
    p.on_close(3, &mut out);
    let r = collect(out);
    assert_eq!(r.texts(), ["GET k"]);
    assert_complete(&r);
    assert_eq!(r.loss("invalid_message"), 1);
}

#[test]
fn close_mid_request_and_mid_reply() {
    // `SET user:1 <value>` cut after its key.
    let set = b"*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$14\r\nsecret-";
    let mut p = RedisParser::new(Egress, &Limits::default());
    let mut out = Output::default();
    p.on_data(Egress, Segment::new(1, set), &mut out);
    p.on_close(2, &mut out);
    let r = collect(out);
    assert_eq!(r.texts(), ["SET user:1 ?"]);
    assert_eq!(r.ops[0].outcome, Outcome::NoResponse);
    assert!(db(&r.ops[0]).query_truncated);
    assert!(!r.dump().contains("secret"));

    // GET answered by half a bulk, then GET with no answer.
    let mut p = RedisParser::new(Egress, &Limits::default());
    let mut out = Output::default();
    p.on_data(
        Egress,
        Segment::new(
            1,
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n",
        ),
        &mut out,
    );
    p.on_data(Ingress, Segment::new(5, b"$10\r\nabc"), &mut out);
    p.on_close(9, &mut out);
    let r = collect(out);
    let got: Vec<_> = r
        .ops
        .iter()
        .map(|o| (o.outcome, o.response_start_ns, o.response_end_ns))
        .collect();
    assert_eq!(
        got,
        [
            (Outcome::ResponseTruncated, 5, 5),
            (Outcome::NoResponse, 0, 0)
        ]
    );
}

#[test]
fn a_full_pending_queue_folds_or_drops_in_order() {
    let limits = Limits {
        max_pending_requests: 4,
        ..Limits::default()
    };
    let r = run_with(&fixture("pipeline10"), 1, Seen::Client, limits, true);
    // Five SET then five GET in one write, four commands awaiting replies
    // at most: SET pk:4 joins SET pk:3 as a batch of 2; the first GET
    // pushes SET pk:0 out (emitted without its reply, which is then
    // skipped); the other GET join it as a batch of 5.
    let got: Vec<_> = r.ops[4..]
        .iter()
        .map(|o| {
            (
                db(o).query_text.as_deref().unwrap(),
                o.outcome,
                db(o).batch_size,
            )
        })
        .collect();
    use Outcome::{Complete as C, NoResponse as N};
    assert_eq!(
        got,
        [
            ("SET pk:0 ?", N, 1),
            ("SET pk:1 ?", C, 1),
            ("SET pk:2 ?", C, 1),
            ("SET pk:3 ?", C, 2),
            ("GET pk:0", C, 5),
        ]
    );
    assert_eq!(r.loss("pending_queue_full"), 1);
    assert_eq!(r.loss("pipeline_folded"), 5);
    assert_eq!(r.loss("unpaired_response"), 0);
    assert_eq!(r.ops.len(), 9);

    // redis-benchmark -P 16 under a queue of 4: each batch of 16 GET is
    // 3 single operations and a batch of 13.
    let r = run_with(&fixture("bench16"), 3, Seen::Server, limits, true);
    assert_complete(&r);
    let batches: Vec<u32> = r.db().iter().map(|d| d.batch_size).collect();
    assert_eq!(batches, [1, 1, 1, 13].repeat(4));
    assert_eq!(r.loss("pipeline_folded"), 4 * 12);
}

#[test]
fn long_keys_and_many_arguments_are_cut_and_marked() {
    let key = "k".repeat(300);
    let cmd = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes();
    let mut p = RedisParser::new(Egress, &Limits::default());
    let mut out = Output::default();
    p.on_data(Egress, Segment::new(1, &cmd), &mut out);
    p.on_data(Ingress, Segment::new(2, b"$-1\r\n"), &mut out);
    let limits = Limits {
        max_query_len: 20,
        ..Limits::default()
    };
    let mut q = RedisParser::new(Egress, &limits);
    let mset: Vec<u8> = {
        let mut v = b"*21\r\n$4\r\nMSET\r\n".to_vec();
        for i in 0..10 {
            v.extend_from_slice(format!("$2\r\nk{i}\r\n$3\r\nv-{i}\r\n").as_bytes());
        }
        v
    };
    q.on_data(Egress, Segment::new(1, &mset), &mut out);
    q.on_data(Ingress, Segment::new(2, b"+OK\r\n"), &mut out);
    let r = collect(out);
    let get = db(&r.ops[0]);
    assert!(get.query_truncated);
    assert_eq!(get.query_text.as_deref().unwrap().len(), 4 + 128);
    let mset = db(&r.ops[1]);
    assert!(mset.query_truncated);
    assert!(mset.query_text.as_deref().unwrap().len() <= 20);
    assert!(
        mset.query_text
            .as_deref()
            .unwrap()
            .starts_with("MSET k0 ? ?")
    );
}

#[test]
fn detection() {
    let strong_req = |dir| Detection::Match {
        request_dir: dir,
        strength: Strength::Strong,
    };
    let weak = |dir| Detection::Match {
        request_dir: dir,
        strength: Strength::Weak,
    };
    // redis-cli's first command: strong, requests are this direction.
    assert_eq!(
        REDIS.detect(Egress, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"),
        strong_req(Egress)
    );
    assert_eq!(
        REDIS.detect(Ingress, b"*1\r\n$4\r\nping\r\n"),
        strong_req(Ingress)
    );
    // Prefixes wait.
    for n in 1..14 {
        assert_eq!(
            REDIS.detect(Egress, &b"*1\r\n$4\r\nPING\r\n"[..n]),
            Detection::NeedMore,
            "{n}"
        );
    }
    // Replies are weak and point the other way.
    for reply in [
        &b"+OK\r\n"[..],
        b"-ERR unknown command\r\n",
        b":1\r\n",
        b"$5\r\nhello\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*2\r\n:1\r\n:2\r\n",
        b"%7\r\n$6\r\nserver\r\n",
        b"_\r\n",
        b"#t\r\n",
        b",1.5\r\n",
        b"(123456789012345678901234567890\r\n",
        b">3\r\n$7\r\nmessage\r\n",
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n",
        b"|1\r\n$14\r\nkey-popularity\r\n",
        b"=29\r\ntxt:",
    ] {
        assert_eq!(
            REDIS.detect(Ingress, reply),
            weak(Egress),
            "{}",
            String::from_utf8_lossy(reply)
        );
    }
    // Inline commands are weak.
    assert_eq!(REDIS.detect(Ingress, b"PING\r\n"), weak(Ingress));
    assert_eq!(REDIS.detect(Ingress, b"PIN"), Detection::NeedMore);
    // Not Redis.
    for other in [
        &b"\x16\x03\x01\x00"[..],
        b"\x00\x00\x00\x1f\x00\x03\x00\x00user\x00",
        b"HELLOTHERE friend\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ] {
        assert_eq!(
            REDIS.detect(Ingress, other),
            Detection::No,
            "{}",
            String::from_utf8_lossy(other)
        );
    }
    // The registry: a command beats HTTP/1 nowhere, HTTP/1 wins its own.
    let v = registry::detect(FirstBytes {
        ingress: b"",
        egress: b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        local_port: 40000,
        remote_port: 6379,
    });
    assert!(
        matches!(v, Verdict::Detected { protocol, request_dir: Egress } if protocol.name() == "redis"),
        "{v:?}"
    );
    let v = registry::detect(FirstBytes {
        ingress: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        egress: b"",
        local_port: 80,
        remote_port: 40000,
    });
    assert!(
        matches!(v, Verdict::Detected { protocol, .. } if protocol.name() == "http1"),
        "{v:?}"
    );
    // A server-only capture: +OK read by the client.
    let v = registry::detect(FirstBytes {
        ingress: b"+OK\r\n",
        egress: b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        local_port: 40000,
        remote_port: 6379,
    });
    assert!(
        matches!(v, Verdict::Detected { protocol, request_dir: Egress } if protocol.name() == "redis"),
        "{v:?}"
    );
}

#[test]
fn every_fixture_connection_is_detected_from_its_first_bytes() {
    for name in [
        "basic",
        "select",
        "pipeline10",
        "multi",
        "auth",
        "resp3",
        "pubsub2",
        "pubsub3",
        "bigvalue",
        "cli3",
        "cliauth",
        "bench16",
        "bench",
        "modes",
    ] {
        let recs = fixture(name);
        let conns: std::collections::BTreeSet<u32> = recs.iter().map(|r| r.conn).collect();
        for conn in conns {
            let first = recs
                .iter()
                .find(|r| r.conn == conn && r.from_client)
                .unwrap();
            let v = registry::detect(FirstBytes {
                ingress: b"",
                egress: &first.data,
                local_port: 40000,
                remote_port: 16379,
            });
            assert!(
                matches!(v, Verdict::Detected { protocol, request_dir: Egress } if protocol.name() == "redis"),
                "{name}/{conn}: {v:?}"
            );
        }
    }
    let recs = fixture("inline");
    assert_eq!(
        REDIS.detect(Egress, &recs[0].data),
        Detection::Match {
            request_dir: Egress,
            strength: Strength::Weak
        }
    );
}

/// Cost of one GET and its reply through the parser (run with
/// `cargo test --release -p ratatosk-protocols --test redis -- --ignored`).
#[test]
#[ignore]
fn cost_per_get() {
    let req = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n";
    let rep = b"$3\r\nVXK\r\n";
    let mut p = RedisParser::new(Ingress, &Limits::default());
    let mut out = Output::default();
    let n = 1_000_000u64;
    let t = std::time::Instant::now();
    for i in 0..n {
        p.on_data(Ingress, Segment::new(2 * i + 1, req), &mut out);
        p.on_data(Egress, Segment::new(2 * i + 2, rep), &mut out);
        if out.ops.len() >= 256 {
            out.ops.clear();
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("{ns:.0} ns per GET");
}

/// Redis never claims the bytes of the other database protocols: no
/// record of the PostgreSQL and MySQL fixtures, in either direction, is a
/// strong Redis match, and their connections' first bytes go to their own
/// protocol through the registry.
#[test]
fn other_database_protocols_are_not_redis() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for (proto, with_len) in [("postgres", true), ("mysql", false)] {
        let mut files = 0;
        for entry in std::fs::read_dir(format!("{dir}/{proto}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let recs: Vec<(bool, Vec<u8>)> = text
                .lines()
                .filter(|l| l.starts_with("C ") || l.starts_with("S "))
                .map(|l| {
                    let parts: Vec<&str> = l.split(' ').collect();
                    let h = if with_len { parts[2] } else { parts[1] };
                    (parts[0] == "C", hex(h))
                })
                .collect();
            for (_, data) in &recs {
                for dir in [Ingress, Egress] {
                    let d = REDIS.detect(dir, data);
                    assert!(
                        !matches!(
                            d,
                            Detection::Match {
                                strength: Strength::Strong,
                                ..
                            }
                        ),
                        "{}: {d:?}",
                        path.display()
                    );
                }
            }
            // The connection's opening, as the agent holds it.
            let client = recs.iter().find(|r| r.0).map(|r| &r.1[..]).unwrap_or(b"");
            let server = recs.iter().find(|r| !r.0).map(|r| &r.1[..]).unwrap_or(b"");
            let v = registry::detect(FirstBytes {
                ingress: server,
                egress: client,
                local_port: 40000,
                remote_port: 1,
            });
            if let Verdict::Detected { protocol, .. } = v {
                assert_ne!(protocol.name(), "redis", "{}", path.display());
            }
        }
        assert!(files > 0, "{proto} fixtures");
    }
}
