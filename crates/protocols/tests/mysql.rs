//! MySQL/MariaDB parser over conversations captured from real clients and
//! a real MariaDB 10.11 (see fixtures/mysql/README.md), plus hand-cut
//! variants of them (gaps, splits, mid-stream starts, garbage).

use ratatosk_protocols::mysql::{MYSQL, detect};
use ratatosk_protocols::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use ratatosk_protocols::parse::{Direction, Role, Segment};
use ratatosk_protocols::parser::{Detection, Limits, Output, Protocol, State, Strength};
use ratatosk_protocols::registry::{self, FirstBytes, Verdict};

/// The password the fixtures' user authenticated with.
const PASSWORD: &str = "Hunter2Secret";
/// A literal the clients put in queries (inlined by PyMySQL, sent as a
/// binary parameter by mysql-connector).
const LITERAL: &str = "SecretLiteral42";

/// Who sent a chunk: the client (`C`) or the server (`S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Client,
    Server,
}

/// One recv() of the capturing relay.
type Chunk = (From, Vec<u8>);

fn load(text: &str) -> Vec<Chunk> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (tag, hex) = l.split_once(' ').unwrap();
            let from = if tag == "C" {
                From::Client
            } else {
                From::Server
            };
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (from, bytes)
        })
        .collect()
}

fn pymysql() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/pymysql.txt"))
}
fn pymysql_multi() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/pymysql_multi.txt"))
}
fn pymysql_big() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/pymysql_big.txt"))
}
fn pymysql_infile() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/pymysql_infile.txt"))
}
fn connector() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/connector_prepared.txt"))
}
fn cli() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/mariadb_cli.txt"))
}
fn cli_compress() -> Vec<Chunk> {
    load(include_str!("fixtures/mysql/mariadb_cli_compress.txt"))
}

/// Which process the agent observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observed {
    Client,
    Server,
}

impl Observed {
    fn dir(self, from: From) -> Direction {
        match (self, from) {
            (Observed::Client, From::Client) | (Observed::Server, From::Server) => {
                Direction::Egress
            }
            _ => Direction::Ingress,
        }
    }
    fn request_dir(self) -> Direction {
        self.dir(From::Client)
    }
}

struct Run {
    ops: Vec<Operation>,
    losses: Vec<(&'static str, u64)>,
    state: State,
}

impl Run {
    fn db(&self) -> Vec<&DbDetail> {
        self.ops
            .iter()
            .map(|o| match &o.detail {
                Detail::Db(d) => d,
                other => panic!("not a db op: {other:?}"),
            })
            .collect()
    }
    fn names(&self) -> Vec<String> {
        self.db()
            .iter()
            .map(|d| match &d.collection {
                Some(c) => format!("{} {c}", d.operation),
                None => d.operation.to_string(),
            })
            .collect()
    }
    fn lost(&self, reason: &str) -> u64 {
        self.losses
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
    /// Everything the parser reported, as text, for leak checks.
    fn dump(&self) -> String {
        format!("{:?} {:?}", self.ops, self.losses)
    }
}

/// Feeds `chunks` as segments (each cut to `capture` bytes, the rest a
/// gap), timestamps 1000, 2000, … , then closes.
fn run_with(chunks: &[Chunk], observed: Observed, capture: usize, limits: &Limits) -> Run {
    let mut p = MYSQL.parser(observed.request_dir(), limits);
    let mut out = Output::default();
    let mut ts = 0;
    for (from, bytes) in chunks {
        ts += 1000;
        let data = &bytes[..bytes.len().min(capture)];
        let seg = Segment::truncated(ts, data, bytes.len() as u64);
        p.on_data(observed.dir(*from), seg, &mut out);
    }
    let state = p.state();
    p.on_close(ts + 1000, &mut out);
    Run {
        ops: out.ops,
        losses: out.losses,
        state,
    }
}

fn run(chunks: &[Chunk], observed: Observed) -> Run {
    run_with(chunks, observed, usize::MAX, &Limits::default())
}

/// The same bytes in other segment boundaries (no gaps).
fn run_segments(segs: &[(From, &[u8])], observed: Observed) -> Run {
    let chunks: Vec<Chunk> = segs.iter().map(|(f, b)| (*f, b.to_vec())).collect();
    run(&chunks, observed)
}

fn no_leak(r: &Run, secrets: &[&str]) {
    let text = r.dump();
    for s in secrets.iter().chain([&PASSWORD, &LITERAL]) {
        assert!(!text.contains(s), "{s:?} leaked: {text}");
    }
}

// ------------------------------------------------------------- detection

/// The greeting of MariaDB 10.11 (first chunk of every fixture):
/// `64 00 00 | 00`: 100-byte payload, sequence 0;
/// `0a`: protocol 10; `5.5.5-10.11.19-MariaDB-0+deb12u1 00`: version;
/// 4-byte connection id; 8 bytes of scramble; `00` filler;
/// `fe f7`: capabilities (low); `2d`: charset; `02 00`: status;
/// `ff 81`: capabilities (high); `15`: scramble length; 6 reserved bytes;
/// `1d 00 00 00`: MariaDB extended capabilities; the scramble's rest;
/// `mysql_native_password 00`: the authentication plugin.
#[test]
fn the_greeting_alone_is_a_strong_match_for_the_other_direction() {
    let greeting = &pymysql()[0].1;
    assert_eq!(&greeting[4..10], b"\x0a5.5.5");
    for dir in [Direction::Ingress, Direction::Egress] {
        assert_eq!(
            detect(dir, greeting),
            Detection::Match {
                request_dir: dir.opposite(),
                strength: Strength::Strong
            }
        );
        // Every prefix asks for more until the fields checked are in:
        // never a no.
        for n in 1..greeting.len() {
            let d = detect(dir, &greeting[..n]);
            if n < 53 {
                assert_eq!(d, Detection::NeedMore, "{n}");
            } else {
                assert!(matches!(d, Detection::Match { .. }), "{n}");
            }
        }
    }
    // Through the registry: the client said nothing yet.
    let v = registry::detect(FirstBytes {
        ingress: greeting,
        egress: b"",
        local_port: 40000,
        remote_port: 33062,
    });
    match v {
        Verdict::Detected {
            protocol,
            request_dir,
        } => {
            assert_eq!(protocol.name(), "mysql");
            assert_eq!(request_dir, Direction::Egress);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mid_stream_commands_and_results_are_weak_matches() {
    let chunks = pymysql();
    // `12 00 00 00 03 SET NAMES utf8mb4`: COM_QUERY, sequence 0.
    let set_names = &chunks[3].1;
    assert_eq!(set_names[4], 0x03);
    assert_eq!(
        detect(Direction::Egress, set_names),
        Detection::Match {
            request_dir: Direction::Egress,
            strength: Strength::Weak
        }
    );
    // A result set: column count (seq 1) then a column definition whose
    // catalog is "def" (seq 2).
    let result = &chunks[8].1;
    assert_eq!(&result[..5], b"\x01\x00\x00\x01\x02");
    assert_eq!(
        detect(Direction::Ingress, result),
        Detection::Match {
            request_dir: Direction::Egress,
            strength: Strength::Weak
        }
    );
    // ERR answering a command: `31 00 00 01 ff 7a 04 # 42S02 …`.
    let err = &chunks[16].1;
    assert_eq!(err[4], 0xff);
    assert!(matches!(
        detect(Direction::Ingress, err),
        Detection::Match {
            strength: Strength::Weak,
            ..
        }
    ));
    // Not MySQL: HTTP, TLS, PostgreSQL startup, Redis, binary noise.
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"*1\r\n$4\r\nPING\r\n",
        b"\xde\xad\xbe\xef\x00\x01\x02\x03\x04",
        b"\x05\x00\x00\x00\x03\x01\x02\x03\x04",
    ] {
        for dir in [Direction::Ingress, Direction::Egress] {
            assert_eq!(detect(dir, other), Detection::No, "{other:?}");
        }
    }
}

// ------------------------------------------------------------ PyMySQL

/// PyMySQL 1.2.4 (text protocol, parameters inlined by the client):
/// handshake with database `shop`, `SET NAMES`, `SET AUTOCOMMIT`, two
/// SELECTs with parameters, an UPDATE, COMMIT, a SELECT of a missing
/// table (ERR 1146), `select_db` (COM_INIT_DB), `ping` (COM_PING), close
/// (COM_QUIT).
#[test]
fn pymysql_session_as_client_and_as_server() {
    for observed in [Observed::Client, Observed::Server] {
        let r = run(&pymysql(), observed);
        assert_eq!(
            r.names(),
            [
                "SET",
                "SET",
                "SELECT accounts",
                "SELECT accounts",
                "UPDATE accounts",
                "COMMIT",
                "SELECT missing_table"
            ],
            "{observed:?}"
        );
        let db = r.db();
        for d in &db {
            assert_eq!(d.system, DbSystem::Mariadb);
            assert_eq!(d.namespace.as_deref(), Some("shop"));
        }
        assert_eq!(
            db[2].query_text.as_deref(),
            Some("SELECT id, name FROM accounts WHERE name = ? AND balance > ?")
        );
        assert_eq!(db[2].returned_rows, Some(0));
        assert_eq!(db[3].returned_rows, Some(3));
        assert_eq!(db[4].returned_rows, None, "an UPDATE returns no rows");
        assert_eq!(db[4].status_code, None);
        assert_eq!(
            db[4].query_text.as_deref(),
            Some("UPDATE accounts SET balance = balance + ? WHERE name = ?")
        );
        assert_eq!(db[6].status_code.as_deref(), Some("1146"));
        assert_eq!(db[6].returned_rows, None);
        let role = match observed {
            Observed::Client => Role::Client,
            Observed::Server => Role::Server,
        };
        for (i, o) in r.ops.iter().enumerate() {
            assert_eq!(o.role, role);
            assert_eq!(o.outcome, Outcome::Complete);
            // Each command and its response are one chunk each.
            assert_eq!(o.request_start_ns, o.request_end_ns);
            assert_eq!(o.response_start_ns, o.response_end_ns);
            assert_eq!(o.response_start_ns, o.request_start_ns + 1000, "op {i}");
        }
        assert!(r.losses.is_empty(), "{:?}", r.losses);
        assert_eq!(r.state, State::Active);
        no_leak(&r, &["bob", "SecretLiteral", "missing_table' doesn"]);
    }
}

#[test]
fn auth_data_never_surfaces() {
    let chunks = pymysql();
    // HandshakeResponse41: caps `0d a2 3a 00`, max packet, charset, 23
    // filler bytes, `app\0`, `14` + 20 bytes of scrambled password, `shop\0`,
    // `mysql_native_password\0`, connection attributes.
    let resp = &chunks[1].1;
    assert_eq!(&resp[36..40], b"app\0");
    let scramble = &resp[41..61];
    let r = run(&chunks, Observed::Client);
    let text = r.dump();
    let hex: String = scramble.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!text.contains(&hex));
    assert!(
        !text.contains("app"),
        "the user name is not an attribute either"
    );
    for o in &r.ops {
        let Detail::Db(d) = &o.detail else {
            unreachable!()
        };
        for field in [&d.query_text, &d.namespace, &d.collection, &d.status_code]
            .into_iter()
            .flatten()
        {
            assert!(
                !scramble
                    .windows(4)
                    .any(|w| field.as_bytes().windows(4).any(|f| f == w)),
                "{field}"
            );
        }
    }
}

#[test]
fn every_split_of_every_chunk_gives_the_same_operations() {
    for chunks in [
        pymysql(),
        connector(),
        cli(),
        pymysql_multi(),
        pymysql_infile(),
    ] {
        let want = run(&chunks, Observed::Client);
        // One byte per segment, all with the chunk's timestamp pattern
        // (the split pieces share their chunk's timestamp).
        for i in 0..chunks.len() {
            for k in 1..chunks[i].1.len() {
                let (a, b) = chunks[i].1.split_at(k);
                let mut segs: Vec<(From, &[u8])> =
                    chunks[..i].iter().map(|(f, b)| (*f, &b[..])).collect();
                segs.push((chunks[i].0, a));
                segs.push((chunks[i].0, b));
                segs.extend(chunks[i + 1..].iter().map(|(f, b)| (*f, &b[..])));
                let got = run_segments(&segs, Observed::Client);
                assert_eq!(got.names(), want.names(), "chunk {i} split at {k}");
                let strip = |r: &Run| -> Vec<DbDetail> { r.db().into_iter().cloned().collect() };
                assert_eq!(strip(&got), strip(&want), "chunk {i} split at {k}");
                assert_eq!(got.losses, want.losses);
            }
        }
        // All of it one byte at a time.
        let bytes: Vec<(From, &[u8])> = chunks
            .iter()
            .flat_map(|(f, b)| b.chunks(1).map(move |c| (*f, c)))
            .collect();
        let got = run_segments(&bytes, Observed::Client);
        assert_eq!(got.names(), want.names());
    }
}

/// `CLIENT_MULTI_STATEMENTS`: three statements in one COM_QUERY, three
/// results chained by SERVER_MORE_RESULTS_EXISTS: one operation.
#[test]
fn a_multi_statement_query_is_one_operation() {
    let r = run(&pymysql_multi(), Observed::Client);
    assert_eq!(r.names(), ["SET", "SET", "SELECT accounts"]);
    let d = r.db()[2];
    assert_eq!(
        d.query_text.as_deref(),
        Some(
            "SELECT id FROM accounts WHERE id = ?; SELECT name FROM accounts WHERE name = ?; \
             UPDATE accounts SET balance = ? WHERE id = ?"
        )
    );
    assert_eq!(d.returned_rows, Some(1), "1 row + 0 rows");
    // The results came in three writes: the end is the third.
    let o = &r.ops[2];
    assert_eq!(o.response_end_ns - o.response_start_ns, 2000);
    assert!(r.losses.is_empty(), "{:?}", r.losses);
    no_leak(&r, &[]);
}

/// 300 rows in a 16384-byte and a 1313-byte write; with the agent's
/// 1024-byte capture, most of it is a gap.
#[test]
fn a_big_result_set_whole_and_through_a_1024_byte_capture() {
    let r = run(&pymysql_big(), Observed::Client);
    assert_eq!(r.names(), ["SET", "SET", "SELECT big", "SELECT big"]);
    assert_eq!(r.db()[2].returned_rows, Some(300));
    assert_eq!(r.db()[3].returned_rows, Some(2));
    assert!(r.losses.is_empty());

    for observed in [Observed::Client, Observed::Server] {
        let r = run_with(&pymysql_big(), observed, 1024, &Limits::default());
        assert_eq!(r.names(), ["SET", "SET", "SELECT big", "SELECT big"]);
        let big = &r.ops[2];
        assert_eq!(big.outcome, Outcome::ResponseTruncated);
        let Detail::Db(d) = &big.detail else {
            unreachable!()
        };
        assert_eq!(
            d.returned_rows, None,
            "rows hidden by the gap are not guessed"
        );
        // Its end: the second write, which ends with the EOF packet.
        assert_eq!(big.response_end_ns, big.response_start_ns + 1000);
        assert_eq!(r.ops[3].outcome, Outcome::Complete);
        assert_eq!(r.db()[3].returned_rows, Some(2));
        assert_eq!(r.lost("lost_sync"), 1);
    }
}

/// `LOAD DATA LOCAL INFILE`: the server asks for the file (0xfb), the
/// client sends it (sequence 2, then an empty packet), the server's OK
/// ends the command.
#[test]
fn local_infile_is_one_operation_and_the_file_stays_unread() {
    let r = run(&pymysql_infile(), Observed::Client);
    assert_eq!(r.names(), ["SET", "SET", "LOAD", "COMMIT"]);
    let o = &r.ops[2];
    assert_eq!(o.outcome, Outcome::Complete);
    assert_eq!(o.response_end_ns - o.response_start_ns, 3000);
    assert_eq!(r.lost("local_infile"), 1);
    assert_eq!(r.losses.len(), 1);
    no_leak(&r, &["dave", "erin"]);
}

// ------------------------------------------------ mysql-connector-python

/// mysql-connector-python (pure Python) with `cursor(prepared=True)`:
/// COM_STMT_PREPARE, COM_STMT_RESET, COM_STMT_EXECUTE (binary protocol,
/// parameters as binary values), the same statement twice, a second
/// statement, COM_STMT_CLOSE, a prepare failing with 1146, then a
/// COM_STMT_CLOSE and COM_QUIT in one write.
#[test]
fn connector_prepared_statements() {
    for observed in [Observed::Client, Observed::Server] {
        let r = run(&connector(), observed);
        assert_eq!(
            r.names(),
            [
                "SET",
                "SET",
                "SELECT accounts",
                "SELECT accounts",
                "SELECT accounts",
                "SELECT missing_table"
            ],
            "{:?}",
            r.ops
        );
        let db = r.db();
        let first = "SELECT id, name FROM accounts WHERE name = ? AND balance > ?";
        assert_eq!(db[2].query_text.as_deref(), Some(first));
        assert_eq!(db[2].returned_rows, Some(0));
        assert_eq!(
            db[3].query_text.as_deref(),
            Some(first),
            "statement 1 reused"
        );
        assert_eq!(db[3].returned_rows, Some(1));
        assert_eq!(
            db[4].query_text.as_deref(),
            Some("SELECT id, balance FROM accounts WHERE balance > ?")
        );
        assert_eq!(db[4].returned_rows, Some(5));
        // The failing prepare is the application's failed call.
        assert_eq!(
            db[5].query_text.as_deref(),
            Some("SELECT * FROM missing_table WHERE secret = ?")
        );
        assert_eq!(db[5].status_code.as_deref(), Some("1146"));
        for d in &db {
            assert_eq!(d.system, DbSystem::Mariadb);
            assert_eq!(d.namespace.as_deref(), Some("shop"));
        }
        assert!(r.losses.is_empty(), "{:?}", r.losses);
        no_leak(&r, &["alice"]);
    }
}

#[test]
fn an_execute_of_an_unknown_or_forgotten_statement_says_execute() {
    let chunks = connector();
    // From the first COM_STMT_RESET on: statement 1 was prepared before
    // the capture began.
    let start = chunks
        .iter()
        .position(|(f, b)| *f == From::Client && b.get(4) == Some(&0x1a))
        .unwrap();
    let r = run(&chunks[start..], Observed::Client);
    assert_eq!(r.names()[..2], ["EXECUTE", "EXECUTE"]);
    assert_eq!(r.db()[0].query_text, None);
    assert_eq!(
        r.db()[0].system,
        DbSystem::Mysql,
        "no greeting: the protocol's name"
    );

    // No room for statements: both successful prepares are counted, their
    // executions unnamed.
    let limits = Limits {
        max_statements: 0,
        ..Limits::default()
    };
    let r = run_with(&chunks, Observed::Client, usize::MAX, &limits);
    assert_eq!(
        r.names(),
        [
            "SET",
            "SET",
            "EXECUTE",
            "EXECUTE",
            "EXECUTE",
            "SELECT missing_table"
        ]
    );
    assert_eq!(r.lost("statement_table_full"), 2);
}

// ------------------------------------------------------------ mariadb CLI

/// The `mariadb` 10.11 CLI (libmariadb): MariaDB's cached-metadata
/// capability (a "metadata follows" byte after the column count), the
/// schema reported by session tracking in the OK after authentication.
#[test]
fn mariadb_cli_with_extended_capabilities() {
    let r = run(&cli(), Observed::Client);
    assert_eq!(r.names(), ["SELECT accounts", "SELECT accounts"]);
    let db = r.db();
    assert_eq!(
        db[0].query_text.as_deref(),
        Some("SELECT name FROM accounts WHERE id = ?")
    );
    assert_eq!(db[0].returned_rows, Some(1));
    assert_eq!(
        db[1].query_text.as_deref(),
        Some("SELECT COUNT(*) FROM accounts")
    );
    assert_eq!(db[1].returned_rows, Some(1));
    assert_eq!(db[0].namespace.as_deref(), Some("shop"));
    assert!(r.losses.is_empty(), "{:?}", r.losses);
    no_leak(&r, &["bob"]);
}

#[test]
fn a_compressed_session_is_given_up_and_counted() {
    let r = run(&cli_compress(), Observed::Client);
    assert!(r.ops.is_empty());
    assert_eq!(r.state, State::Done("compressed"));
    assert_eq!(r.lost("compressed"), 1);
}

/// An SSL request: the first 32 bytes of a handshake response, with
/// CLIENT_SSL; TLS follows.
#[test]
fn an_ssl_request_hands_over_to_tls() {
    let chunks = pymysql();
    let mut ssl = chunks[1].1[..36].to_vec();
    ssl[0] = 32; // payload length
    ssl[5] |= 0x08; // CLIENT_SSL (bit 11)
    let convo = vec![
        chunks[0].clone(),
        (From::Client, ssl),
        (From::Client, b"\x16\x03\x01\x00\x05hello".to_vec()),
    ];
    let r = run(&convo, Observed::Client);
    assert_eq!(r.state, State::Done("tls"));
    assert!(r.ops.is_empty());
    assert!(r.losses.is_empty());
}

// ---------------------------------------------- mid-stream, gaps, garbage

#[test]
fn capture_starting_after_the_handshake() {
    let chunks = pymysql();
    // From `SET NAMES` on.
    let r = run(&chunks[3..], Observed::Client);
    assert_eq!(
        r.names(),
        [
            "SET",
            "SET",
            "SELECT accounts",
            "SELECT accounts",
            "UPDATE accounts",
            "COMMIT",
            "SELECT missing_table"
        ]
    );
    let db = r.db();
    assert_eq!(db[0].system, DbSystem::Mysql);
    assert_eq!(db[0].namespace, None, "never invented");
    // After `select_db`, the namespace is known... but nothing follows.
    assert_eq!(db[2].returned_rows, Some(0));
    assert_eq!(db[3].returned_rows, Some(3));
    assert!(r.ops.iter().all(|o| o.outcome == Outcome::Complete));
    // Starting on a response: it pairs with nothing.
    let r = run(&chunks[8..], Observed::Client);
    assert_eq!(
        r.names(),
        [
            "SELECT accounts",
            "UPDATE accounts",
            "COMMIT",
            "SELECT missing_table"
        ]
    );
    assert_eq!(r.lost("unpaired_response"), 1);
}

#[test]
fn init_db_switches_the_namespace_mid_stream() {
    let chunks = pymysql();
    // From COM_INIT_DB `shop` on, then a query.
    let at = chunks
        .iter()
        .position(|(f, b)| *f == From::Client && b.get(4) == Some(&0x02))
        .unwrap();
    let mut convo = chunks[at..at + 2].to_vec();
    convo.extend_from_slice(&chunks[9..11]); // a SELECT and its result
    let r = run(&convo, Observed::Client);
    assert_eq!(r.names(), ["SELECT accounts"]);
    assert_eq!(r.db()[0].namespace.as_deref(), Some("shop"));
    assert_eq!(r.db()[0].returned_rows, Some(3));
}

#[test]
fn a_long_statement_cut_by_the_capture_is_marked_truncated() {
    let chunks = pymysql();
    // The first SELECT (81 bytes) captured up to 60 bytes: the literal
    // is cut in its middle.
    let r = run_with(&chunks[..10], Observed::Client, 60, &Limits::default());
    let d = r.db()[2];
    assert_eq!(d.operation, "SELECT");
    assert!(d.query_truncated);
    assert_eq!(
        d.query_text.as_deref(),
        Some("SELECT id, name FROM accounts WHERE name = ?")
    );
    no_leak(&r, &["Secret"]);
}

#[test]
fn close_before_the_response() {
    let chunks = pymysql();
    let r = run(&chunks[..8], Observed::Client);
    assert_eq!(r.names(), ["SET", "SET", "SELECT accounts"]);
    assert_eq!(r.ops[2].outcome, Outcome::NoResponse);
    assert_eq!(r.ops[2].response_start_ns, 0);
    // Closed mid-response: truncated.
    let mut convo = chunks[..8].to_vec();
    convo.push((From::Server, chunks[8].1[..40].to_vec()));
    let r = run(&convo, Observed::Client);
    assert_eq!(r.ops[2].outcome, Outcome::ResponseTruncated);
    assert_eq!(r.db()[2].returned_rows, None);
}

#[test]
fn garbage_gives_no_operation_and_is_counted() {
    let chunks = pymysql();
    let mut convo = chunks[..3].to_vec();
    // After authentication: bytes that are no command.
    convo.push((
        From::Client,
        b"\x05\x00\x00\x00\xee\x01\x02\x03\x04".to_vec(),
    ));
    convo.push((From::Server, b"\x02\x00\x00\x07\xde\xad".to_vec()));
    let r = run(&convo, Observed::Client);
    assert!(r.ops.is_empty());
    assert_eq!(r.lost("invalid_message"), 1);
    assert_eq!(r.lost("unpaired_response"), 1);
    // Then a real command parses again.
    convo.extend_from_slice(&chunks[3..5]);
    let r = run(&convo, Observed::Client);
    assert_eq!(r.names(), ["SET"]);
}

#[test]
fn a_gap_in_the_request_stream_resyncs_at_the_next_command() {
    let chunks = pymysql();
    let mut convo = chunks[..8].to_vec();
    // The SELECT's header lost in a gap: a segment of 2 bytes of 81.
    let limits = Limits::default();
    let mut p = MYSQL.parser(Direction::Egress, &limits);
    let mut out = Output::default();
    let mut ts = 0;
    let last = convo.pop().unwrap();
    for (from, b) in &convo {
        ts += 1000;
        p.on_data(Observed::Client.dir(*from), Segment::new(ts, b), &mut out);
    }
    p.on_data(
        Direction::Egress,
        Segment::truncated(ts + 1, &last.1[..2], last.1.len() as u64),
        &mut out,
    );
    for (from, b) in &chunks[8..] {
        ts += 1000;
        p.on_data(Observed::Client.dir(*from), Segment::new(ts, b), &mut out);
    }
    p.on_close(ts + 1, &mut out);
    let names: Vec<_> = out
        .ops
        .iter()
        .map(|o| match &o.detail {
            Detail::Db(d) => d.operation.to_string(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        names,
        ["SET", "SET", "SELECT", "UPDATE", "COMMIT", "SELECT"]
    );
    assert!(out.losses.iter().any(|(r, _)| *r == "lost_sync"));
}

#[test]
fn pending_commands_are_bounded() {
    let chunks = pymysql();
    let limits = Limits {
        max_pending_requests: 2,
        ..Limits::default()
    };
    let mut p = MYSQL.parser(Direction::Egress, &limits);
    let mut out = Output::default();
    for (from, b) in &chunks[..3] {
        p.on_data(Observed::Client.dir(*from), Segment::new(1, b), &mut out);
    }
    for _ in 0..5 {
        p.on_data(Direction::Egress, Segment::new(2, &chunks[3].1), &mut out);
    }
    p.on_close(3, &mut out);
    assert_eq!(out.ops.len(), 2);
    assert!(out.ops.iter().all(|o| o.outcome == Outcome::NoResponse));
    assert!(out.losses.contains(&("pending_queue_full", 3)));
}

#[test]
fn garbage_instead_of_a_handshake_response_is_counted() {
    // 36 bytes of text where the handshake response belongs; MariaDB
    // answers ERR 1043 (its message without SQLSTATE: no 4.1 client yet).
    let convo = load(include_str!("fixtures/mysql/garbage_handshake.txt"));
    assert_eq!(&convo[2].1[4..7], b"\xff\x13\x04");
    for observed in [Observed::Client, Observed::Server] {
        let r = run(&convo, observed);
        assert!(r.ops.is_empty());
        assert_eq!(r.lost("invalid_message"), 1);
    }
}

// ------------------------------------- derived: DEPRECATE_EOF, 16 MB packets

/// Splits a chunk into packets `(seq, payload)`.
fn packets(chunk: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= chunk.len() {
        let len = u32::from_le_bytes([chunk[at], chunk[at + 1], chunk[at + 2], 0]) as usize;
        out.push((chunk[at + 3], chunk[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    assert_eq!(at, chunk.len());
    out
}

fn frame(pkts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, p) in pkts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
        out.push(*seq);
        out.extend_from_slice(p);
    }
    out
}

/// A result set as a CLIENT_DEPRECATE_EOF session gets it (no EOF after
/// the columns; an OK with a 0xfe header at the end), made from a
/// captured one (EOF packets are `fe warnings(2) status(2)`).
fn without_eofs(chunk: &[u8]) -> Vec<u8> {
    let mut pkts = packets(chunk);
    let first_eof = pkts.iter().position(|(_, p)| p[0] == 0xfe).unwrap();
    pkts.remove(first_eof);
    let last = pkts.last_mut().unwrap();
    assert_eq!(last.1[0], 0xfe);
    let (warnings, status) = (last.1[1..3].to_vec(), last.1[3..5].to_vec());
    last.1 = [&[0xfe, 0, 0][..], &status, &warnings].concat();
    for (i, (seq, _)) in pkts.iter_mut().enumerate() {
        *seq = i as u8 + 1;
    }
    frame(&pkts)
}

#[test]
fn deprecate_eof_sessions_from_the_handshake_and_mid_stream() {
    let mut chunks = pymysql();
    // The client asks for CLIENT_DEPRECATE_EOF (bit 24: byte 3 of the
    // capabilities); MariaDB offers it in its greeting.
    chunks[1].1[7] |= 0x01;
    for i in [8, 10] {
        chunks[i].1 = without_eofs(&chunks[i].1);
    }
    let want_rows = [Some(0), Some(3)];
    let r = run(&chunks, Observed::Client);
    assert_eq!(r.names().len(), 7);
    assert_eq!(
        [r.db()[2].returned_rows, r.db()[3].returned_rows],
        want_rows
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);
    // Without the handshake: learnt from the rows that follow the columns
    // (first query: empty, the end told by the next command).
    let r = run(&chunks[3..], Observed::Client);
    assert_eq!(r.names().len(), 7);
    assert_eq!(
        [r.db()[2].returned_rows, r.db()[3].returned_rows],
        want_rows
    );
    assert!(r.ops.iter().all(|o| o.outcome == Outcome::Complete));
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

/// A 16 MB statement (a full-size packet continued by a short one) and a
/// 16 MB row whose first byte is 0xfe (an 8-byte length), through the
/// 1024-byte capture.
#[test]
fn sixteen_megabyte_packets_through_the_capture() {
    let chunks = pymysql();
    const FULL: usize = 0xff_ffff;
    let mut query = b"\x03SELECT id FROM accounts WHERE name = '".to_vec();
    query.resize(FULL + 10, b'x');
    *query.last_mut().unwrap() = b'\'';
    let mut request = frame(&[(0, query[..FULL].to_vec())]);
    request.extend_from_slice(&frame(&[(1, query[FULL..].to_vec())]));
    // Result: count 1, a column definition (from the capture), EOF, one
    // 16 MB row, EOF.
    let captured = packets(&chunks[8].1);
    let coldef = captured[1].1.clone();
    let eof = captured[3].1.clone();
    let mut row = vec![0xfe];
    row.extend_from_slice(&((FULL + 20 - 9) as u64).to_le_bytes());
    row.resize(FULL + 20, b'r');
    let mut response = frame(&[(2, vec![1]), (3, coldef), (4, eof.clone())]);
    response.extend_from_slice(&frame(&[(5, row[..FULL].to_vec())]));
    response.extend_from_slice(&frame(&[(6, row[FULL..].to_vec()), (7, eof)]));

    let mut convo = chunks[..3].to_vec();
    convo.push((From::Client, request));
    convo.push((From::Server, response));
    // Whole, then as writes of 64 KB each captured up to 1024 bytes.
    let r = run(&convo, Observed::Client);
    assert_eq!(r.names(), ["SELECT accounts"]);
    assert_eq!(r.db()[0].returned_rows, Some(1));
    assert!(r.db()[0].query_truncated);
    assert_eq!(
        r.db()[0].query_text.as_deref(),
        Some("SELECT id FROM accounts WHERE name = ?")
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);

    let mut writes = chunks[..3].to_vec();
    for (from, bytes) in &convo[3..] {
        writes.extend(bytes.chunks(65536).map(|c| (*from, c.to_vec())));
    }
    let r = run_with(&writes, Observed::Client, 1024, &Limits::default());
    assert_eq!(r.names(), ["SELECT accounts"]);
    let o = &r.ops[0];
    // The row's second physical packet starts inside a gap: framing is
    // lost there, and the operation ends at the segment ending with EOF.
    assert!(o.outcome == Outcome::Complete || o.outcome == Outcome::ResponseTruncated);
    assert!(r.db()[0].query_truncated);
    no_leak(&r, &["xxxx"]);
}

/// sysbench `oltp_point_select` over libmariadb: one prepare, then
/// executions whose result sets skip the cached column definitions
/// (`02 00 00 01 | 01 00`: one column, metadata not sent).
#[test]
fn sysbench_executions_with_skipped_metadata() {
    let chunks = load(include_str!("fixtures/mysql/sysbench_point_select.txt"));
    assert_eq!(&chunks[6].1[..6], b"\x02\x00\x00\x01\x01\x00");
    for observed in [Observed::Client, Observed::Server] {
        let r = run(&chunks, observed);
        assert_eq!(r.names(), vec!["SELECT sbtest1"; 4]);
        for d in r.db() {
            assert_eq!(
                d.query_text.as_deref(),
                Some("SELECT c FROM sbtest1 WHERE id=?")
            );
            assert_eq!(d.returned_rows, Some(1));
            assert_eq!(d.namespace.as_deref(), Some("sbtest"));
            assert_eq!(d.system, DbSystem::Mariadb);
        }
        assert!(r.ops.iter().all(|o| o.outcome == Outcome::Complete));
        assert!(r.losses.is_empty(), "{:?}", r.losses);
    }
}

/// Inside TLS the decrypted stream starts with the client's handshake
/// response (sequence 2, after the cleartext greeting and SSL request):
/// made from the PyMySQL session by renumbering its handshake (2) and the
/// server's OK (3), and setting CLIENT_SSL.
#[test]
fn the_plaintext_of_a_tls_session_is_detected_and_parsed() {
    let mut chunks = pymysql();
    chunks.remove(0); // the greeting went in clear, before TLS
    chunks[0].1[3] = 2;
    chunks[0].1[5] |= 0x08; // CLIENT_SSL
    chunks[1].1[3] = 3;
    for dir in [Direction::Ingress, Direction::Egress] {
        assert_eq!(
            detect(dir, &chunks[0].1),
            Detection::Match {
                request_dir: dir,
                strength: Strength::Strong
            }
        );
        // Every prefix waits, never says no.
        for n in 1..40 {
            assert_eq!(detect(dir, &chunks[0].1[..n]), Detection::NeedMore, "{n}");
        }
    }
    // The response right after the greeting, when capture began there.
    assert!(matches!(
        detect(Direction::Egress, &pymysql()[1].1),
        Detection::Match {
            strength: Strength::Strong,
            ..
        }
    ));
    for observed in [Observed::Client, Observed::Server] {
        let r = run(&chunks, observed);
        assert_eq!(r.names().len(), 7);
        assert_eq!(r.names()[2], "SELECT accounts");
        for d in r.db() {
            assert_eq!(d.namespace.as_deref(), Some("shop"));
            assert_eq!(
                d.system,
                DbSystem::Mysql,
                "no greeting: the protocol's name"
            );
        }
        assert_eq!(r.db()[3].returned_rows, Some(3));
        assert!(r.losses.is_empty(), "{:?}", r.losses);
        no_leak(&r, &[]);
    }
}

#[test]
fn deprecate_eof_prepared_statements_mid_stream() {
    let chunks = connector();
    let start = chunks
        .iter()
        .position(|(f, b)| *f == From::Client && b[4] == 0x16)
        .unwrap();
    let mut convo = chunks[start..].to_vec();
    let mut prepare_next = false;
    for (from, bytes) in convo.iter_mut() {
        match from {
            From::Client => prepare_next = bytes[4] == 0x16,
            From::Server if prepare_next => {
                // Prepare answers: both EOFs go.
                let mut pkts = packets(bytes);
                pkts.retain(|(_, p)| !(p[0] == 0xfe && p.len() < 9));
                for (i, (seq, _)) in pkts.iter_mut().enumerate() {
                    *seq = i as u8 + 1;
                }
                *bytes = frame(&pkts);
            }
            From::Server if bytes[4] != 0x00 && bytes[4] != 0xff => *bytes = without_eofs(bytes),
            From::Server => {}
        }
    }
    let r = run(&convo, Observed::Client);
    assert_eq!(
        r.names(),
        [
            "SELECT accounts",
            "SELECT accounts",
            "SELECT accounts",
            "SELECT missing_table"
        ]
    );
    let rows: Vec<_> = r.db().iter().map(|d| d.returned_rows).collect();
    assert_eq!(rows, [Some(0), Some(1), Some(5), None]);
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn skipped_metadata_mid_stream() {
    let chunks = load(include_str!("fixtures/mysql/sysbench_point_select.txt"));
    // From the first execution: the statement was prepared before.
    let r = run(&chunks[5..], Observed::Client);
    assert_eq!(r.names(), ["EXECUTE"; 4]);
    assert!(r.db().iter().all(|d| d.returned_rows == Some(1)));
    assert!(r.ops.iter().all(|o| o.outcome == Outcome::Complete));
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

/// Steady-state parser cost: one connection, a fixture's commands and
/// answers (after authentication) repeated. Run with
/// `cargo test --release -p ratatosk-protocols --test mysql -- --ignored --nocapture`.
#[test]
#[ignore]
fn steady_cost_per_operation() {
    let sysbench = load(include_str!("fixtures/mysql/sysbench_point_select.txt"));
    for (name, chunks, setup, body) in [
        ("sysbench_point_select", &sysbench, 5, 5..13),
        ("pymysql", &pymysql(), 3, 3..17),
    ] {
        let mut p = MYSQL.parser(Direction::Egress, &Limits::default());
        let mut out = Output::default();
        let mut ts = 0;
        for (from, b) in &chunks[..setup] {
            ts += 10;
            p.on_data(Observed::Client.dir(*from), Segment::new(ts, b), &mut out);
        }
        let start = std::time::Instant::now();
        let mut ops = 0;
        for _ in 0..20_000 {
            for (from, b) in &chunks[body.clone()] {
                ts += 10;
                p.on_data(Observed::Client.dir(*from), Segment::new(ts, b), &mut out);
            }
            ops += out.ops.len();
            out.ops.clear();
        }
        assert!(out.losses.is_empty(), "{:?}", out.losses);
        let per = start.elapsed().as_nanos() as f64 / ops as f64;
        println!("{name}: {per:.0} ns per operation, steady ({ops} ops)");
    }
}
