//! PostgreSQL parser over wire bytes captured from real clients and a real
//! server (see tests/fixtures/postgres/README.md).

use ratatosk_protocols::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use ratatosk_protocols::parse::{Direction, Role, Segment};
use ratatosk_protocols::parser::{Detection, Limits, Output, Protocol, State, Strength};
use ratatosk_protocols::postgres::POSTGRES;
use ratatosk_protocols::registry::{FirstBytes, Verdict, detect};

const PASSWORD: &str = "Pw-s3cret-x9";

/// One captured record: client-to-server or not, bytes moved, captured
/// prefix.
#[derive(Clone)]
struct Rec {
    client: bool,
    len: u64,
    data: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn load(text: &str) -> Vec<Rec> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split(' ');
            let side = f.next().unwrap();
            let len: u64 = f.next().unwrap().parse().unwrap();
            let data = hex(f.next().unwrap_or(""));
            Rec {
                client: side == "C",
                len,
                data,
            }
        })
        .collect()
}

macro_rules! fixture {
    ($name:literal) => {
        load(include_str!(concat!("fixtures/postgres/", $name, ".txt")))
    };
}

/// Which process was observed: the client (requests are its writes) or
/// the server (requests are its reads).
#[derive(Clone, Copy, PartialEq, Debug)]
enum View {
    Client,
    Server,
}

fn dir_of(rec_client: bool, view: View) -> Direction {
    match (rec_client, view) {
        (true, View::Client) | (false, View::Server) => Direction::Egress,
        _ => Direction::Ingress,
    }
}

struct Run {
    ops: Vec<Operation>,
    losses: Vec<(&'static str, u64)>,
    state: State,
}

impl Run {
    fn lost(&self, reason: &str) -> u64 {
        self.losses
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Feeds records (each one segment, timestamps 10, 20, …) and closes.
fn run_with(recs: &[Rec], view: View, limits: Limits) -> Run {
    let request_dir = match view {
        View::Client => Direction::Egress,
        View::Server => Direction::Ingress,
    };
    let mut p = POSTGRES.parser(request_dir, &limits);
    let mut out = Output::default();
    let mut ts = 0;
    for r in recs {
        ts += 10;
        p.on_data(
            dir_of(r.client, view),
            Segment::truncated(ts, &r.data, r.len),
            &mut out,
        );
    }
    p.on_close(ts + 10, &mut out);
    Run {
        ops: out.ops,
        losses: out.losses,
        state: p.state(),
    }
}

fn run(recs: &[Rec]) -> Run {
    run_with(recs, View::Client, Limits::default())
}

fn db(op: &Operation) -> &DbDetail {
    match &op.detail {
        Detail::Db(d) => d,
        other => panic!("not a db op: {other:?}"),
    }
}

/// (operation, collection, sanitized text, status, returned rows)
type Row = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    Option<u64>,
);

fn rows(r: &Run) -> Vec<Row> {
    r.ops
        .iter()
        .map(|o| {
            let d = db(o);
            (
                leak(d.operation.as_str()),
                d.collection.as_deref().map(leak),
                leak(d.query_text.as_deref().unwrap_or("")),
                d.status_code.as_deref().map(leak),
                d.returned_rows,
            )
        })
        .collect()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// Nothing secret in any field of any operation.
fn assert_clean(r: &Run) {
    for o in &r.ops {
        let all = format!("{o:?}");
        assert!(!all.contains(PASSWORD), "password in {all}");
        assert!(!all.contains("Lit-"), "literal in {all}");
        let d = db(o);
        assert_eq!(d.system, DbSystem::Postgresql);
        assert!(o.request_start_ns > 0 && o.request_start_ns <= o.request_end_ns);
        if o.outcome == Outcome::NoResponse {
            assert_eq!((o.response_start_ns, o.response_end_ns), (0, 0));
        } else {
            assert!(o.response_start_ns >= o.request_start_ns, "{o:?}");
            assert!(o.response_start_ns <= o.response_end_ns, "{o:?}");
        }
    }
}

fn all_fixtures() -> Vec<(&'static str, Vec<Rec>)> {
    vec![
        ("psycopg_simple_ddl", fixture!("psycopg_simple_ddl")),
        ("psycopg_execute", fixture!("psycopg_execute")),
        ("psycopg_prepare", fixture!("psycopg_prepare")),
        ("psycopg_pipeline", fixture!("psycopg_pipeline")),
        ("psycopg_fail", fixture!("psycopg_fail")),
        ("psycopg_pipeline_fail", fixture!("psycopg_pipeline_fail")),
        ("psycopg_copy", fixture!("psycopg_copy")),
        ("psycopg_big_rows", fixture!("psycopg_big_rows")),
        ("psql_two_statements", fixture!("psql_two_statements")),
        ("psql_error_mid_query", fixture!("psql_error_mid_query")),
        ("pgbench_setup", fixture!("pgbench_setup")),
        ("pgbench_select", fixture!("pgbench_select")),
        ("psycopg_wrong_password", fixture!("psycopg_wrong_password")),
        ("psycopg_named_cursor", fixture!("psycopg_named_cursor")),
        ("psycopg_long_queries", fixture!("psycopg_long_queries")),
    ]
}

#[test]
fn simple_queries_with_a_notice() {
    let r = run(&fixture!("psycopg_simple_ddl"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "DROP",
                Some("accounts"),
                "DROP TABLE IF EXISTS accounts",
                None,
                None
            ),
            (
                "CREATE",
                Some("accounts"),
                "CREATE TABLE accounts (id int primary key, owner text, balance numeric)",
                None,
                None
            ),
            (
                "INSERT",
                Some("accounts"),
                "INSERT INTO accounts SELECT g, ? || g, g * ? FROM generate_series(?, ?) g",
                None,
                None
            ),
        ]
    );
    for o in &r.ops {
        assert_eq!(db(o).namespace.as_deref(), Some("labdb"));
        assert_eq!(o.outcome, Outcome::Complete);
        assert_eq!(o.role, Role::Client);
    }
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn extended_protocol_and_simple_query() {
    let r = run(&fixture!("psycopg_execute"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "SELECT",
                Some("accounts"),
                "SELECT owner, balance FROM accounts WHERE owner = $1",
                None,
                Some(0)
            ),
            (
                "SELECT",
                Some("accounts"),
                "SELECT id FROM accounts WHERE id < $1",
                None,
                Some(3)
            ),
            (
                "UPDATE",
                Some("accounts"),
                "UPDATE accounts SET balance = balance + ? WHERE id = ?",
                None,
                None
            ),
        ]
    );
    // Times: each Execute's request is its Parse..Execute write, its
    // response the server's next write.
    let o = &r.ops[0];
    assert_eq!(
        (
            o.request_start_ns,
            o.request_end_ns,
            o.response_start_ns,
            o.response_end_ns
        ),
        (50, 50, 60, 60)
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn named_statements_are_reused() {
    let r = run(&fixture!("psycopg_prepare"));
    assert_clean(&r);
    let q = "SELECT balance FROM public.accounts WHERE id = $1";
    assert_eq!(
        rows(&r),
        vec![("SELECT", Some("public.accounts"), q, None, Some(1)); 3]
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn pipeline_gives_one_operation_per_execute() {
    let r = run(&fixture!("psycopg_pipeline"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "INSERT",
                Some("accounts"),
                "INSERT INTO accounts VALUES ($1, $2, $3)",
                None,
                None
            ),
            (
                "SELECT",
                Some("accounts"),
                "SELECT count(*) FROM accounts",
                None,
                Some(1)
            ),
            (
                "UPDATE",
                Some("accounts"),
                "UPDATE accounts SET owner = $1 WHERE id = $2",
                None,
                None
            ),
            (
                "DELETE",
                Some("accounts"),
                "DELETE FROM accounts WHERE id = $1",
                None,
                None
            ),
        ]
    );
    // All four were written before the one Sync and answered in one read.
    let starts: Vec<_> = r.ops.iter().map(|o| o.request_start_ns).collect();
    assert_eq!(starts, [50, 60, 70, 80]);
    assert!(r.ops.iter().all(|o| o.response_end_ns == 110));
}

#[test]
fn a_failed_parse_gives_its_sqlstate() {
    let r = run(&fixture!("psycopg_fail"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "SELECT",
                Some("no_such_table"),
                "SELECT * FROM no_such_table WHERE x = $1",
                Some("42P01"),
                None
            ),
            ("SELECT", None, "SELECT ?", None, Some(1)),
        ]
    );
    assert!(db(&r.ops[0]).is_error());
    assert_eq!(r.ops[0].outcome, Outcome::Complete);
}

#[test]
fn executes_skipped_after_an_error_end_without_response() {
    let r = run(&fixture!("psycopg_pipeline_fail"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            ("SELECT", None, "SELECT ?", None, Some(1)),
            (
                "SELECT",
                Some("no_such_table"),
                "SELECT * FROM no_such_table",
                Some("42P01"),
                None
            ),
            ("SELECT", None, "SELECT ?", None, None),
        ]
    );
    let outcomes: Vec<_> = r.ops.iter().map(|o| o.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Complete, Outcome::Complete, Outcome::NoResponse]
    );
}

#[test]
fn copy_is_one_operation_and_its_data_is_counted() {
    let r = run(&fixture!("psycopg_copy"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "COPY",
                Some("accounts"),
                "COPY accounts (id, owner, balance) FROM STDIN",
                None,
                None
            ),
            (
                "COPY",
                Some("accounts"),
                "COPY accounts TO STDOUT",
                None,
                None
            ),
            (
                "DELETE",
                Some("accounts"),
                "DELETE FROM accounts WHERE id >= ?",
                None,
                None
            ),
        ]
    );
    assert_eq!(r.lost("copy_data"), 2, "{:?}", r.losses);
    // The COPY TO answer (1131 bytes) was captured to 1024: its
    // CommandComplete and ReadyForQuery fell in the gap, the next Query
    // ends it as truncated and sync returns with the DELETE's answer.
    let outcomes: Vec<_> = r.ops.iter().map(|o| o.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Complete,
            Outcome::ResponseTruncated,
            Outcome::Complete
        ]
    );
}

#[test]
fn a_response_cut_by_capture_gaps_ends_truncated_and_sync_returns() {
    let r = run(&fixture!("psycopg_big_rows"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            (
                "SELECT",
                None,
                "SELECT repeat(?, ?) FROM generate_series(?, ?)",
                None,
                None
            ),
            ("SELECT", None, "SELECT ?", None, Some(1)),
        ]
    );
    assert_eq!(r.ops[0].outcome, Outcome::ResponseTruncated);
    assert_eq!(r.ops[1].outcome, Outcome::Complete);
    assert!(r.lost("lost_sync") >= 1, "{:?}", r.losses);
}

#[test]
fn two_statements_in_one_query_after_a_refused_ssl_request() {
    let r = run(&fixture!("psql_two_statements"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            ("SELECT", None, "SELECT ?", None, Some(1)),
            ("SELECT", None, "SELECT ?", None, Some(1)),
        ]
    );
    assert_eq!(r.state, State::Active);
    assert_eq!(db(&r.ops[1]).namespace.as_deref(), Some("labdb"));
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn statements_after_an_error_in_a_query_do_not_run() {
    let r = run(&fixture!("psql_error_mid_query"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            ("SELECT", None, "SELECT ?", None, Some(1)),
            (
                "SELECT",
                Some("nope"),
                "SELECT * FROM nope",
                Some("42P01"),
                None
            ),
        ]
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn pgbench_counts_exactly() {
    let r = run(&fixture!("pgbench_setup"));
    assert_clean(&r);
    let ops: Vec<_> = rows(&r).iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(
        ops,
        [
            ("SELECT", Some("pgbench_branches")),
            // … FROM pg_catalog.pg_class AS c JOIN …: the first table.
            ("SELECT", Some("pg_catalog.pg_class")),
            ("VACUUM", None),
            ("VACUUM", None),
            ("TRUNCATE", Some("pgbench_history")),
        ]
    );
    let r = run(&fixture!("pgbench_select"));
    assert_clean(&r);
    let q = "SELECT abalance FROM pgbench_accounts WHERE aid = ?";
    assert_eq!(
        rows(&r),
        vec![("SELECT", Some("pgbench_accounts"), q, None, Some(1)); 5]
    );
}

#[test]
fn writes_longer_than_the_capture() {
    let r = run(&fixture!("psycopg_long_queries"));
    assert_clean(&r);
    assert_eq!(r.ops.len(), 2, "{:?}", r.ops);
    // A 2876-byte Query captured to 1024 bytes: its prefix, the IN list
    // collapsed as far as it goes, marked truncated.
    let d = db(&r.ops[0]);
    assert_eq!(
        (d.operation.as_str(), d.collection.as_deref()),
        ("SELECT", Some("accounts"))
    );
    assert_eq!(
        d.query_text.as_deref(),
        Some("SELECT id, owner FROM accounts WHERE owner <> ? AND id IN (?")
    );
    assert!(d.query_truncated);
    assert_eq!(d.returned_rows, Some(0));
    // Parse, Bind (a 300-element array) then Describe, Execute and Sync in
    // the capture gap of the same write: the server's rows and
    // CommandComplete tell the Execute happened, of the portal just bound.
    let d = db(&r.ops[1]);
    assert_eq!(
        d.query_text.as_deref(),
        Some("SELECT id FROM accounts WHERE id = ANY($1) AND owner <> $2")
    );
    assert_eq!(d.returned_rows, Some(50));
    assert!(d.status_code.is_none());
    assert_eq!(r.ops[1].outcome, Outcome::Complete);
    assert_eq!(r.lost("lost_sync"), 1, "{:?}", r.losses);
    assert_eq!(r.lost("unpaired_response"), 0, "{:?}", r.losses);
}

#[test]
fn a_failed_authentication_gives_nothing() {
    let r = run(&fixture!("psycopg_wrong_password"));
    assert!(r.ops.is_empty(), "{:?}", r.ops);
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn a_server_side_cursor_fetches_rows() {
    let r = run(&fixture!("psycopg_named_cursor"));
    assert_clean(&r);
    assert_eq!(
        rows(&r),
        vec![
            ("BEGIN", None, "BEGIN", None, None),
            (
                "DECLARE",
                None,
                "DECLARE \"acc_cur\" CURSOR FOR SELECT id, owner FROM accounts WHERE balance > $1 ORDER BY id",
                None,
                None
            ),
            (
                "FETCH",
                None,
                "FETCH FORWARD ? FROM \"acc_cur\"",
                None,
                Some(20)
            ),
            (
                "FETCH",
                None,
                "FETCH FORWARD ? FROM \"acc_cur\"",
                None,
                Some(20)
            ),
            (
                "FETCH",
                None,
                "FETCH FORWARD ? FROM \"acc_cur\"",
                None,
                Some(0)
            ),
            ("CLOSE", None, "CLOSE \"acc_cur\"", None, None),
            ("COMMIT", None, "COMMIT", None, None),
        ]
    );
    assert!(r.losses.is_empty(), "{:?}", r.losses);
}

#[test]
fn the_server_view_gives_the_same_operations_as_server_spans() {
    for (name, recs) in all_fixtures() {
        let c = run_with(&recs, View::Client, Limits::default());
        let s = run_with(&recs, View::Server, Limits::default());
        assert_eq!(rows(&c), rows(&s), "{name}");
        assert!(s.ops.iter().all(|o| o.role == Role::Server), "{name}");
    }
}

/// Re-segments every record at `cut` (two segments, same timestamp;
/// the gap stays with the second).
fn split_at(recs: &[Rec], cut: usize) -> Vec<(bool, u64, Vec<u8>, bool)> {
    let mut v = Vec::new();
    for r in recs {
        let k = cut.min(r.data.len());
        if k == 0 || k == r.data.len() {
            v.push((r.client, r.len, r.data.clone(), false));
            continue;
        }
        v.push((r.client, k as u64, r.data[..k].to_vec(), false));
        v.push((r.client, r.len - k as u64, r.data[k..].to_vec(), true));
    }
    v
}

#[test]
fn splits_at_every_byte_offset_change_nothing() {
    for (name, recs) in all_fixtures() {
        let want = run(&recs);
        let max = recs.iter().map(|r| r.data.len()).max().unwrap();
        for cut in 1..max {
            let segs = split_at(&recs, cut);
            let mut p = POSTGRES.parser(Direction::Egress, &Limits::default());
            let mut out = Output::default();
            let mut ts = 0;
            for (client, len, data, cont) in &segs {
                if !cont {
                    ts += 10;
                }
                p.on_data(
                    dir_of(*client, View::Client),
                    Segment::truncated(ts, data, *len),
                    &mut out,
                );
            }
            p.on_close(ts + 10, &mut out);
            assert_eq!(out.ops, want.ops, "{name} cut at {cut}");
            assert_eq!(out.losses, want.losses, "{name} cut at {cut}");
        }
    }
}

#[test]
fn one_byte_reads_change_nothing() {
    for (name, recs) in all_fixtures() {
        let want = run(&recs);
        let mut p = POSTGRES.parser(Direction::Egress, &Limits::default());
        let mut out = Output::default();
        let mut ts = 0;
        for r in &recs {
            ts += 10;
            let last = r.data.len().saturating_sub(1);
            for (i, b) in r.data.chunks(1).enumerate() {
                let extra = if i == last {
                    r.len - r.data.len() as u64
                } else {
                    0
                };
                p.on_data(
                    dir_of(r.client, View::Client),
                    Segment::truncated(ts, b, 1 + extra),
                    &mut out,
                );
            }
        }
        p.on_close(ts + 10, &mut out);
        assert_eq!(out.ops, want.ops, "{name}");
    }
}

#[test]
fn a_query_cut_by_the_capture_keeps_its_prefix_marked_truncated() {
    let recs = fixture!("psycopg_simple_ddl");
    // The CREATE TABLE query (77 bytes) captured to 40 bytes only.
    let recs: Vec<Rec> = recs
        .into_iter()
        .map(|mut r| {
            if r.client && r.data.starts_with(b"Q") && r.len == 77 {
                r.data.truncate(40);
            }
            r
        })
        .collect();
    let r = run(&recs);
    assert_clean(&r);
    let d = db(&r.ops[1]);
    assert_eq!(d.operation, "CREATE");
    assert_eq!(d.collection.as_deref(), Some("accounts"));
    assert_eq!(
        d.query_text.as_deref(),
        Some("CREATE TABLE accounts (id int prima")
    );
    assert!(d.query_truncated);
    assert_eq!(r.ops.len(), 3);
    assert!(
        r.losses.is_empty(),
        "a gap inside a message loses nothing: {:?}",
        r.losses
    );
}

#[test]
fn close_mid_request_ends_without_response() {
    let recs = fixture!("pgbench_select");
    // Up to the third SELECT's request, then close.
    let n = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.client && r.data.starts_with(b"Q"))
        .nth(2)
        .unwrap()
        .0;
    let r = run(&recs[..=n]);
    assert_clean(&r);
    let outcomes: Vec<_> = r.ops.iter().map(|o| o.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Complete, Outcome::Complete, Outcome::NoResponse]
    );
}

#[test]
fn garbage_gives_no_operation_and_is_counted() {
    let junk: Vec<u8> = (0..600u32).map(|i| (i * 7919 % 251) as u8).collect();
    let recs = vec![
        Rec {
            client: true,
            len: junk.len() as u64,
            data: junk.clone(),
        },
        Rec {
            client: false,
            len: 300,
            data: junk[..300].to_vec(),
        },
    ];
    let r = run(&recs);
    assert!(r.ops.is_empty(), "{:?}", r.ops);
    assert!(!r.losses.is_empty());
    assert!(matches!(
        POSTGRES.detect(Direction::Egress, &junk),
        Detection::No
    ));
    assert!(matches!(
        POSTGRES.detect(Direction::Egress, b"GET / HTTP/1.1\r\n\r\n"),
        Detection::No
    ));
}

#[test]
fn tls_accepted_hands_over_and_refused_goes_on() {
    let ssl = hex("0000000804d2162f");
    let gss = hex("0000000804d21630");
    for (req, answer, state) in [
        (&ssl, b'S', State::Done("tls")),
        (&ssl, b'N', State::Active),
        (&gss, b'G', State::Done("gssenc")),
        (&gss, b'N', State::Active),
    ] {
        let mut recs = vec![
            Rec {
                client: true,
                len: 8,
                data: req.clone(),
            },
            Rec {
                client: false,
                len: 1,
                data: vec![answer],
            },
        ];
        // The plaintext rest of a refused request.
        recs.extend(fixture!("psql_two_statements").into_iter().skip(2));
        let r = run(&recs);
        assert_eq!(r.state, state);
        assert_eq!(r.ops.len(), if state == State::Active { 2 } else { 0 });
    }
}

#[test]
fn detection() {
    let strong = |d| Detection::Match {
        request_dir: d,
        strength: Strength::Strong,
    };
    let psql = fixture!("psql_two_statements");
    let psycopg = fixture!("psycopg_execute");
    // SSLRequest, StartupMessage: strong, requests in their direction.
    for first in [&psql[0].data, &psql[2].data, &psycopg[0].data] {
        assert_eq!(
            POSTGRES.detect(Direction::Egress, first),
            strong(Direction::Egress)
        );
        assert_eq!(
            POSTGRES.detect(Direction::Ingress, first),
            strong(Direction::Ingress)
        );
    }
    assert_eq!(
        POSTGRES.detect(Direction::Egress, &psql[0].data[..5]),
        Detection::NeedMore
    );
    // Mid-stream: a Query (weak, its direction), server messages (weak,
    // the other direction).
    let q = psql.iter().find(|r| r.client && r.data[0] == b'Q').unwrap();
    assert_eq!(
        POSTGRES.detect(Direction::Egress, &q.data),
        Detection::Match {
            request_dir: Direction::Egress,
            strength: Strength::Weak
        }
    );
    let answer = psql.iter().rev().find(|r| !r.client).unwrap();
    assert_eq!(
        POSTGRES.detect(Direction::Ingress, &answer.data),
        Detection::Match {
            request_dir: Direction::Egress,
            strength: Strength::Weak
        }
    );
    let parse = psycopg
        .iter()
        .find(|r| r.client && r.data[0] == b'P')
        .unwrap();
    assert!(matches!(
        POSTGRES.detect(Direction::Egress, &parse.data),
        Detection::Match {
            strength: Strength::Weak,
            ..
        }
    ));
    // The registry takes a startup message from either side alone.
    let v = detect(FirstBytes {
        ingress: &[],
        egress: &psycopg[0].data,
        local_port: 40000,
        remote_port: 5432,
    });
    assert!(
        matches!(v, Verdict::Detected { protocol, request_dir: Direction::Egress } if protocol.name() == "postgresql"),
        "{v:?}"
    );
}

#[test]
fn mid_stream_capture_parses_from_the_next_request() {
    let recs = fixture!("pgbench_select");
    // Capture starts at the second SELECT's response (no request seen),
    // then goes on.
    let first_q = recs
        .iter()
        .position(|r| r.client && r.data.starts_with(b"Q"))
        .unwrap();
    let r = run(&recs[first_q + 1..]);
    assert_clean(&r);
    assert_eq!(r.ops.len(), 4);
    assert_eq!(r.lost("unpaired_response"), 1);
}

#[test]
fn an_execute_of_a_statement_parsed_before_capture_has_no_text() {
    let recs = fixture!("psycopg_prepare");
    // Capture starts after the named statement's Parse and its answer.
    let parse = recs
        .iter()
        .position(|r| r.client && r.data.starts_with(b"P"))
        .unwrap();
    let r = run(&recs[parse + 2..]);
    assert_clean(&r);
    assert_eq!(r.ops.len(), 3);
    for o in &r.ops {
        let d = db(o);
        assert_eq!((d.operation.as_str(), d.query_text.as_deref()), ("", None));
        assert_eq!(d.returned_rows, Some(1));
        assert_eq!(o.outcome, Outcome::Complete);
    }
    assert_eq!(r.lost("statement_unknown"), 3);
}

#[test]
fn statement_tables_are_bounded() {
    let recs = fixture!("psycopg_prepare");
    let limits = Limits {
        max_statements: 1,
        ..Limits::default()
    };
    // One named statement fits: same operations.
    let r = run_with(&recs, View::Client, limits);
    assert_eq!(r.ops.len(), 3);
    let limits = Limits {
        max_pending_requests: 1,
        ..Limits::default()
    };
    let r = run_with(&fixture!("psycopg_pipeline"), View::Client, limits);
    assert!(r.lost("pending_queue_full") > 0);
    assert_clean(&r);
}

#[test]
fn passwords_and_literals_never_appear() {
    for (name, recs) in all_fixtures() {
        for view in [View::Client, View::Server] {
            let r = run_with(&recs, view, Limits::default());
            assert_clean(&r);
            let _ = name;
        }
    }
}

/// Parser cost per operation over real fixtures (run with
/// `cargo test --release -p ratatosk-protocols --test postgres -- --ignored --nocapture`).
#[test]
#[ignore]
fn cost_per_operation() {
    for name in ["pgbench_select", "psycopg_prepare", "psycopg_pipeline"] {
        let recs = all_fixtures()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        let n = 20_000;
        let start = std::time::Instant::now();
        let mut ops = 0;
        for _ in 0..n {
            ops += run(&recs).ops.len();
        }
        let per = start.elapsed().as_nanos() as f64 / ops as f64;
        println!("{name}: {per:.0} ns per operation (connection setup included)");
    }
}

/// Steady-state cost: one connection, the fixture's queries and answers
/// (after authentication) repeated.
#[test]
#[ignore]
fn steady_cost_per_operation() {
    let only = std::env::var("PG_BENCH_ONLY").ok();
    for (name, skip) in [
        ("pgbench_select", 6),
        ("psycopg_prepare", 4),
        ("psycopg_pipeline", 4),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let recs = all_fixtures()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        let mut p = POSTGRES.parser(Direction::Egress, &Limits::default());
        let mut out = Output::default();
        let mut ts = 0;
        for r in &recs[..skip] {
            ts += 10;
            p.on_data(
                dir_of(r.client, View::Client),
                Segment::truncated(ts, &r.data, r.len),
                &mut out,
            );
        }
        // Drop the final Terminate.
        let body: Vec<&Rec> = recs[skip..]
            .iter()
            .filter(|r| r.data != b"X\0\0\0\x04")
            .collect();
        let start = std::time::Instant::now();
        let mut ops = 0;
        for _ in 0..20_000 {
            for r in &body {
                ts += 10;
                p.on_data(
                    dir_of(r.client, View::Client),
                    Segment::truncated(ts, &r.data, r.len),
                    &mut out,
                );
            }
            ops += out.ops.len();
            out.ops.clear();
        }
        let per = start.elapsed().as_nanos() as f64 / ops as f64;
        println!("{name}: {per:.0} ns per operation, steady ({ops} ops)");
    }
}

#[test]
#[ignore]
fn sql_cost() {
    use ratatosk_protocols::sql::{Dialect, statements, summarize};
    let q = b"SELECT abalance FROM pgbench_accounts WHERE aid = 70548;";
    let start = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..100_000 {
        for s in statements(q, Dialect::Postgres) {
            n += summarize(s, Dialect::Postgres, false, 4096).text.len();
        }
    }
    println!(
        "split+summarize: {:.0} ns ({n})",
        start.elapsed().as_nanos() as f64 / 100_000.0
    );
}
