//! PostgreSQL end to end: the real agent, a private PostgreSQL 15
//! cluster, real clients (psycopg 3, psql, pgbench). Exact span counts,
//! names and attributes; no literal and no password in any output.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use ratatosk_e2e::postgres::{PG_DB, PG_PASSWORD, Postgres, lab_python};
use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn pg_spans(port: u16, kind: &'static str) -> impl Fn(&Value) -> bool {
    move |s| {
        s["kind"] == kind
            && attr(s, "db.system.name") == "postgresql"
            && attr(s, "server.port") == port.to_string()
    }
}

/// No secret in anything the agent printed or serves.
fn assert_no_secrets(agent: &Agent, literals: &[&str]) {
    let printed: Vec<String> = agent.spans().iter().map(|s| s.to_string()).collect();
    let printed = printed.join("\n");
    let metrics = agent.metrics();
    for secret in literals.iter().chain([&PG_PASSWORD]) {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
        assert!(
            !agent.stderr_text().contains(secret),
            "{secret} in the agent's log"
        );
    }
}

fn names(spans: &[Value]) -> Vec<String> {
    spans
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// psycopg 3 against the cluster; waits for a line on stdin before
/// connecting, so that the agent can select it by pid first.
const PSYCOPG_APP: &str = r#"
import sys, psycopg
sys.stdin.readline()
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    # execute with a parameter (extended protocol, unnamed statement)
    conn.execute("SELECT owner, balance FROM accounts WHERE owner = %s", ("Lit-Alice-x1",)).fetchall()
    # execute without parameters (simple Query, literal in the text)
    conn.execute("UPDATE accounts SET balance = balance + 1 WHERE owner = 'Lit-Bob-x2'")
    # prepare=True: one named statement, executed three times
    for i in range(3):
        conn.execute("SELECT balance FROM public.accounts WHERE id = %s", (i + 1,), prepare=True).fetchall()
    # pipeline mode: four statements, one Sync
    with conn.pipeline():
        conn.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (1001, "Lit-Carol-x3", 5))
        conn.execute("SELECT count(*) FROM accounts")
        conn.execute("UPDATE accounts SET owner = %s WHERE id = %s", ("Lit-Dave-x4", 1001))
        conn.execute("DELETE FROM accounts WHERE id = %s", (1001,))
    # a failing query: SQLSTATE 42P01
    try:
        conn.execute("SELECT * FROM no_such_table WHERE x = %s", ("Lit-Eve-x5",))
    except psycopg.errors.UndefinedTable:
        pass
    conn.execute("SELECT 1")
    # a Bind larger than the capture: Describe/Execute/Sync in its gap
    conn.execute("SELECT id FROM accounts WHERE id = ANY(%s) AND owner <> %s", (list(range(300)), "Lit-Grace-x6")).fetchall()
print("done", flush=True)
"#;

#[test]
fn psycopg_execute_prepare_pipeline_and_failure_as_client_spans() {
    let _g = serial();
    let pg = Postgres::start();
    let mut app = Proc::spawn(
        "psycopg app",
        std::process::Command::new(lab_python())
            .args(["-c", PSYCOPG_APP, &pg.dsn()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let agent = Agent::start(&["--pid", &app.pid().to_string()]);
    app.child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("start the app");
    let status = app.child.wait().expect("app ran");
    assert!(status.success());

    let want = [
        "SELECT accounts",
        "UPDATE accounts",
        "SELECT public.accounts",
        "SELECT public.accounts",
        "SELECT public.accounts",
        "INSERT accounts",
        "SELECT accounts",
        "UPDATE accounts",
        "DELETE accounts",
        "SELECT no_such_table",
        "SELECT",
        "SELECT accounts",
    ];
    let spans = agent.wait_spans(want.len(), WAIT, pg_spans(pg.port, "client"));
    assert_eq!(names(&spans), want, "{spans:#?}\n{}", agent.self_counters());
    for s in &spans {
        assert_eq!(attr(s, "db.namespace"), PG_DB);
        assert_eq!(attr(s, "server.address"), "127.0.0.1");
    }
    let text = |i: usize| attr(&spans[i], "db.query.text");
    assert_eq!(
        text(0),
        "SELECT owner, balance FROM accounts WHERE owner = $1"
    );
    assert_eq!(attr(&spans[0], "db.response.returned_rows"), "0");
    assert_eq!(
        text(1),
        "UPDATE accounts SET balance = balance + ? WHERE owner = ?"
    );
    assert_eq!(text(2), "SELECT balance FROM public.accounts WHERE id = $1");
    assert_eq!(attr(&spans[2], "db.response.returned_rows"), "1");
    assert_eq!(attr(&spans[6], "db.response.returned_rows"), "1");
    // The Execute was not captured (its write is 1228 bytes): the rows and
    // CommandComplete answer the portal just bound.
    assert_eq!(
        text(11),
        "SELECT id FROM accounts WHERE id = ANY($1) AND owner <> $2"
    );
    assert_eq!(attr(&spans[11], "db.response.returned_rows"), "50");
    let failed = &spans[9];
    assert_eq!(attr(failed, "db.response.status_code"), "42P01");
    assert_eq!(attr(failed, "error.type"), "42P01");
    for (i, s) in spans.iter().enumerate() {
        if i != 9 {
            assert_eq!(attr(s, "error.type"), "", "{s}");
        }
    }

    // One duration sample per operation, by operation and table.
    let p = pg.port.to_string();
    let count = |labels: &[(&str, &str)]| {
        let mut all = vec![
            ("db_system_name", "postgresql"),
            ("server_port", p.as_str()),
        ];
        all.extend_from_slice(labels);
        agent.metric_sum("db_client_operation_duration_seconds_count", &all)
    };
    assert_eq!(count(&[]), want.len() as f64, "{}", agent.metrics());
    assert_eq!(
        count(&[
            ("db_operation_name", "SELECT"),
            ("db_collection_name", "public.accounts")
        ]),
        3.0
    );
    assert_eq!(count(&[("error_type", "42P01")]), 1.0);
    assert_no_secrets(
        &agent,
        &[
            "Lit-Alice",
            "Lit-Bob",
            "Lit-Carol",
            "Lit-Dave",
            "Lit-Eve",
            "Lit-Grace",
        ],
    );
    // The one loss: the client's framing in that capture gap.
    let errors = |reason: &str| {
        agent.metric_sum(
            "ratatosk_parser_errors_total",
            &[("protocol", "postgresql"), ("reason", reason)],
        )
    };
    assert_eq!(errors("lost_sync"), 1.0, "{}", agent.self_counters());
    assert_eq!(
        agent.metric_sum(
            "ratatosk_parser_errors_total",
            &[("protocol", "postgresql")]
        ),
        1.0,
        "{}",
        agent.self_counters()
    );
}

#[test]
fn psql_statements_in_one_query_as_server_spans() {
    let _g = serial();
    let pg = Postgres::start();
    let agent = Agent::start(&["--pid", &pg.pid().to_string()]);
    pg.psql(PG_DB, "SELECT 1; SELECT 2");
    // The error ends the query: SELECT 3 never runs, so no span.
    let out = pg.try_psql(
        PG_DB,
        "SELECT owner FROM accounts WHERE owner = 'Lit-Frank-x6'; SELECT * FROM nope; SELECT 3",
    );
    assert!(!out.status.success());

    let spans = agent.wait_spans(4, WAIT, pg_spans(pg.port, "server"));
    assert_eq!(
        names(&spans),
        ["SELECT", "SELECT", "SELECT accounts", "SELECT nope"],
        "{spans:#?}\n{}",
        agent.self_counters()
    );
    assert_eq!(attr(&spans[0], "db.query.text"), "SELECT ?");
    assert_eq!(attr(&spans[1], "db.query.text"), "SELECT ?");
    assert_eq!(
        attr(&spans[2], "db.query.text"),
        "SELECT owner FROM accounts WHERE owner = ?"
    );
    assert_eq!(attr(&spans[3], "db.response.status_code"), "42P01");
    for s in &spans {
        assert_eq!(attr(s, "db.namespace"), PG_DB);
    }
    assert_no_secrets(&agent, &["Lit-Frank"]);
    assert_no_parser_errors(&agent);
}

#[test]
fn raw_query_text_on_request_but_never_a_password() {
    let _g = serial();
    let pg = Postgres::start();
    let agent = Agent::start(&["--pid", &pg.pid().to_string(), "--raw-db-query-text"]);
    pg.psql(
        PG_DB,
        "SELECT owner FROM accounts WHERE owner = 'Lit-Raw-x7'; CREATE ROLE raw_probe PASSWORD 'Pw-Secret-x8'",
    );
    let spans = agent.wait_spans(2, WAIT, pg_spans(pg.port, "server"));
    assert_eq!(
        attr(&spans[0], "db.query.text"),
        "SELECT owner FROM accounts WHERE owner = 'Lit-Raw-x7'"
    );
    assert_eq!(attr(&spans[1], "db.operation.name"), "CREATE");
    assert_eq!(
        attr(&spans[1], "db.query.text"),
        "CREATE ROLE raw_probe PASSWORD ?"
    );
    assert_no_secrets(&agent, &["Pw-Secret"]);
    assert_no_parser_errors(&agent);
}

/// No PostgreSQL loss counted.
fn assert_no_parser_errors(agent: &Agent) {
    assert_eq!(
        agent.metric_sum(
            "ratatosk_parser_errors_total",
            &[("protocol", "postgresql")]
        ),
        0.0,
        "{}",
        agent.self_counters()
    );
}

#[test]
fn tls_accepted_is_parsed_through_the_tls_capture() {
    let _g = serial();
    let certs = tls_cert();
    let pg = Postgres::start_tls(certs.path());
    // The server maps the system libssl at start: selecting it attaches
    // the OpenSSL probes to that file, which psql (started later, gone in
    // milliseconds, before a rescan of its own maps) uses too.
    let pid = pg.pid().to_string();
    let agent = Agent::start(&["--pid", &pid, "--exe-path", "/psql$"]);
    // sslmode=require: SSLRequest, the server's 'S', then TLS; the
    // StartupMessage and the query travel inside it.
    let out = pg
        .client(&tool("psql"))
        .env("PGSSLMODE", "require")
        .args([
            "-d",
            PG_DB,
            "-X",
            "-c",
            "SELECT id FROM accounts WHERE owner = 'Lit-Tls-x8'; SELECT 2",
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = agent.wait_spans(2, WAIT, pg_spans(pg.port, "client"));
    assert_eq!(
        names(&spans),
        ["SELECT accounts", "SELECT"],
        "{spans:#?}\n{}",
        agent.self_counters()
    );
    assert_eq!(attr(&spans[0], "db.namespace"), PG_DB);
    assert_eq!(
        attr(&spans[0], "db.query.text"),
        "SELECT id FROM accounts WHERE owner = ?"
    );
    // (The backend's own TLS is not decrypted yet: the TLS capture gets
    // no keys from a forked PostgreSQL backend, so no server span here.)
    assert_no_secrets(&agent, &["Lit-Tls"]);
    assert_no_parser_errors(&agent);
}

#[test]
fn pgbench_select_only_gives_exact_counts() {
    let _g = serial();
    let pg = Postgres::start();
    let agent = Agent::start(&["--exe-path", "/pgbench$"]);
    let out = pg
        .client(&tool("pgbench"))
        .args(["-S", "-t", "200", "-c", "2", PG_DB])
        .stdout(Stdio::piped())
        .output()
        .expect("pgbench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("number of transactions actually processed: 400/400")
    );

    // pgbench's setup connection first runs five statements (captured in
    // crates/protocols/tests/fixtures/postgres/pgbench_setup.txt): a
    // count of pgbench_branches, a catalog query on pg_class, VACUUM of
    // two tables, TRUNCATE pgbench_history. Then 2 clients × 200 SELECTs.
    let selects =
        |s: &Value| pg_spans(pg.port, "client")(s) && s["name"] == "SELECT pgbench_accounts";
    let spans = agent.wait_spans(400, WAIT, selects);
    assert_eq!(spans.len(), 400, "{}", agent.self_counters());
    for s in &spans {
        assert_eq!(
            attr(s, "db.query.text"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = ?"
        );
        assert_eq!(attr(s, "db.response.returned_rows"), "1");
    }
    let all = agent.wait_spans(405, WAIT, pg_spans(pg.port, "client"));
    let mut setup: Vec<String> = names(&all)
        .into_iter()
        .filter(|n| n != "SELECT pgbench_accounts")
        .collect();
    setup.sort();
    assert_eq!(
        setup,
        [
            "SELECT pg_catalog.pg_class",
            "SELECT pgbench_branches",
            "TRUNCATE pgbench_history",
            "VACUUM",
            "VACUUM"
        ],
        "{}",
        agent.self_counters()
    );
    let p = pg.port.to_string();
    assert_eq!(
        agent.metric_sum(
            "db_client_operation_duration_seconds_count",
            &[
                ("db_system_name", "postgresql"),
                ("server_port", &p),
                ("db_operation_name", "SELECT"),
                ("db_collection_name", "pgbench_accounts"),
            ]
        ),
        400.0
    );
    assert_eq!(
        agent.metric_sum(
            "db_client_operation_duration_seconds_count",
            &[("db_system_name", "postgresql"), ("server_port", &p)]
        ),
        405.0
    );
    assert_no_secrets(&agent, &[]);
    assert_no_parser_errors(&agent);
}

#[test]
fn garbage_to_the_port_gives_no_span_and_is_counted() {
    let _g = serial();
    let pg = Postgres::start();
    let agent = Agent::start(&["--pid", &pg.pid().to_string()]);
    let before = agent.metric_sum("ratatosk_unparsed_connections_total", &[]);
    // Bytes no PostgreSQL client sends: a startup length of 3.7 GB (the
    // server hangs up), then an unknown protocol code (the server answers
    // with an ErrorResponse and hangs up).
    for junk in [
        &b"\xde\xad\xbe\xef garbage \x01\x02\x03 Lit-Garbage-x7"[..],
        &b"\x00\x00\x00\x10garb-Lit-Garbage-x7"[..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", pg.port)).expect("connect");
        s.write_all(junk).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut sink);
    }
    // Then one real query: it must give a span (the agent is watching).
    pg.psql(PG_DB, "SELECT 42");
    let spans = agent.wait_spans(1, WAIT, pg_spans(pg.port, "server"));
    assert_eq!(names(&spans), ["SELECT"], "{spans:#?}");
    let all_pg: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|s| attr(s, "server.port") == pg.port.to_string())
        .collect();
    assert_eq!(all_pg.len(), 1, "garbage made spans: {all_pg:#?}");
    let after = agent.metric_sum("ratatosk_unparsed_connections_total", &[]);
    assert!(
        after >= before + 2.0,
        "unparsed connections {before} -> {after}\n{}",
        agent.self_counters()
    );
    assert_no_secrets(&agent, &["Lit-Garbage"]);
}
