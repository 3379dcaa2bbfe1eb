//! MySQL protocol end to end: a real MariaDB (the server side, selected by
//! pid) and real Python clients (PyMySQL, mysql-connector-python with
//! prepared statements; the client side, selected by executable), the
//! real agent loaded into the real kernel.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ratatosk_e2e::mysql::{APP_PASSWORD, Mariadb, lab_python};
use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
/// PyMySQL queries with parameters (inlined by the client).
const N: usize = 10;
/// mysql-connector executions of one prepared statement.
const M: usize = 6;
/// Statements each client sends by itself on connecting: PyMySQL `SET
/// NAMES`, `SET AUTOCOMMIT`; mysql-connector `SET NAMES`, `SET
/// @@session.autocommit` (its COM_PING and the prepares are no spans).
const SETUP: usize = 4;
/// A literal the application puts in its queries: never in any output.
const LITERAL: &str = "e2e-Literal-Value-5521";

const CLIENT: &str = r#"
import sys, pymysql, mysql.connector
port, pw, literal, n, m = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = pymysql.connect(host='127.0.0.1', port=port, user='app', password=pw, database='shop')
cur = c.cursor()
for i in range(n):
    cur.execute("SELECT name FROM accounts WHERE name = %s OR id = %s", (literal, 1000 + i))
    cur.fetchall()
try:
    cur.execute("SELECT * FROM missing_table WHERE secret = %s", (literal,))
    raise SystemExit("the missing table exists")
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1146, e
c.close()
c = mysql.connector.connect(host='127.0.0.1', port=port, user='app', password=pw,
                            database='shop', ssl_disabled=True, use_pure=True)
cur = c.cursor(prepared=True)
for i in range(m):
    cur.execute("SELECT id, balance FROM accounts WHERE balance > ? AND name <> ?", (i, literal))
    assert len(cur.fetchall()) == 3
cur.close()
c.close()
print("ok")
"#;

fn on_port(port: u16, kind: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["kind"] == kind && attr(s, "server.port") == port.to_string()
}

fn with_text<'a>(spans: &'a [Value], text: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| attr(s, "db.query.text") == text)
        .collect()
}

#[test]
fn mariadb_client_and_server_spans_with_no_literal_and_no_password() {
    let _g = serial();
    let db = Mariadb::start();
    let agent = Agent::start(&[
        "--pid",
        &db.pid().to_string(),
        "--exe-path",
        "/python3(\\.[0-9]+)?$",
    ]);

    let out = lab_python(
        CLIENT,
        &[
            &db.port.to_string(),
            APP_PASSWORD,
            LITERAL,
            &N.to_string(),
            &M.to_string(),
        ],
    );
    assert_eq!(out.trim(), "ok");

    let total = N + 1 + M + SETUP;
    for kind in ["client", "server"] {
        let spans = agent.wait_spans(total, WAIT, on_port(db.port, kind));
        let names: Vec<String> = spans.iter().map(|s| s["name"].to_string()).collect();
        eprintln!(
            "{kind} span: {}",
            spans.first().map(Value::to_string).unwrap_or_default()
        );
        assert_eq!(
            spans.len(),
            total,
            "{kind} spans: {names:?}\n{}",
            agent.self_counters()
        );
        for s in &spans {
            assert_eq!(attr(s, "db.system.name"), "mariadb", "{s}");
            assert_eq!(attr(s, "db.namespace"), "shop", "{s}");
        }
        let plain = with_text(&spans, "SELECT name FROM accounts WHERE name = ? OR id = ?");
        assert_eq!(plain.len(), N, "{kind}: {names:?}");
        for s in &plain {
            assert_eq!(attr(s, "db.operation.name"), "SELECT");
            assert_eq!(attr(s, "db.response.returned_rows"), "0");
            assert_eq!(s["name"], "SELECT accounts");
            assert_eq!(attr(s, "db.collection.name"), "accounts");
        }
        let prepared = with_text(
            &spans,
            "SELECT id, balance FROM accounts WHERE balance > ? AND name <> ?",
        );
        assert_eq!(prepared.len(), M, "{kind}: {names:?}");
        for s in &prepared {
            assert_eq!(s["name"], "SELECT accounts");
            assert_eq!(attr(s, "db.response.returned_rows"), "3");
        }
        let failed = with_text(&spans, "SELECT * FROM missing_table WHERE secret = ?");
        assert_eq!(failed.len(), 1, "{kind}: {names:?}");
        assert_eq!(attr(failed[0], "db.response.status_code"), "1146");
        assert_eq!(attr(failed[0], "error.type"), "1146");
        assert_eq!(failed[0]["name"], "SELECT missing_table");
        assert_eq!(
            spans
                .iter()
                .filter(|s| !attr(s, "error.type").is_empty())
                .count(),
            1,
            "only the failing query is an error"
        );
    }

    // Metrics: one duration sample per client operation.
    let p = db.port.to_string();
    let labels = [("db_system_name", "mariadb"), ("server_port", p.as_str())];
    assert_eq!(
        agent.metric_sum("db_client_operation_duration_seconds_count", &labels),
        total as f64,
        "{}",
        agent.metrics()
    );
    assert_eq!(
        agent.metric_sum(
            "db_client_operation_duration_seconds_count",
            &[("server_port", p.as_str()), ("error_type", "1146")]
        ),
        1.0
    );

    // Garbage after the greeting: no span, counted.
    let before = agent.spans().len();
    let mut s = TcpStream::connect(("127.0.0.1", db.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).expect("greeting");
    s.write_all(b"\x20\x00\x00\x01garbage that is no handshake!!!!")
        .expect("send garbage");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    drop(s);
    std::thread::sleep(Duration::from_millis(600));
    let after = agent.spans();
    assert_eq!(after.len(), before, "{:?}", &after[before..]);
    let errors = agent.metric_sum(
        "ratatosk_parser_errors_total",
        &[("protocol", "mysql"), ("reason", "invalid_message")],
    );
    assert!(errors >= 1.0, "{}", agent.self_counters());

    // Neither the literal nor the password, anywhere.
    let everything = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&agent.spans()).unwrap(),
        agent.stderr_text(),
        agent.metrics()
    );
    for secret in [LITERAL, APP_PASSWORD, "e2e-Literal"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// The `mariadb` CLI (libmariadb: MariaDB's extended capabilities) and a
/// result set far bigger than the 1024 bytes captured per read/write.
#[test]
fn mariadb_cli_and_a_result_set_bigger_than_the_capture() {
    let _g = serial();
    let db = Mariadb::start();
    db.root_sql(
        "CREATE TABLE shop.big (id INT PRIMARY KEY, pad VARCHAR(100));
         SET SESSION max_recursive_iterations = 10000;
         INSERT INTO shop.big SELECT n, REPEAT('x', 50) FROM (WITH RECURSIVE s(n) AS
           (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 2000) SELECT n FROM s) AS q;",
    );
    let agent = Agent::start(&["--pid", &db.pid().to_string(), "--exe-path", "/mariadb$"]);
    let out = std::process::Command::new(tool("mariadb"))
        .args(["-h127.0.0.1", &format!("-P{}", db.port), "-uapp"])
        .arg(format!("-p{APP_PASSWORD}"))
        .args(["--skip-ssl", "--batch", "shop", "-e"])
        .arg(
            "SELECT name FROM accounts WHERE id = 2; SELECT id, pad FROM big; \
             SELECT COUNT(*) FROM big WHERE pad <> 'e2e-Literal-Value-5521'",
        )
        .output()
        .expect("run mariadb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2 + 2001 + 2
    );

    for kind in ["client", "server"] {
        let spans = agent.wait_spans(3, WAIT, on_port(db.port, kind));
        let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["SELECT accounts", "SELECT big", "SELECT big"],
            "{kind}\n{}",
            agent.self_counters()
        );
        assert_eq!(attr(&spans[0], "db.response.returned_rows"), "1");
        assert_eq!(attr(&spans[0], "db.system.name"), "mariadb");
        assert_eq!(attr(&spans[0], "db.namespace"), "shop");
        // 2000 rows, most of them in capture gaps: the span is there, its
        // row count is not guessed.
        assert_eq!(attr(&spans[1], "db.query.text"), "SELECT id, pad FROM big");
        assert_eq!(attr(&spans[1], "db.response.returned_rows"), "");
        assert_eq!(attr(&spans[1], "error.type"), "");
        assert_eq!(
            attr(&spans[2], "db.query.text"),
            "SELECT COUNT(*) FROM big WHERE pad <> ?"
        );
        assert_eq!(attr(&spans[2], "db.response.returned_rows"), "1");
    }
    let everything = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&agent.spans()).unwrap(),
        agent.stderr_text(),
        agent.metrics()
    );
    for secret in [LITERAL, APP_PASSWORD] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// PyMySQL over TLS (Python's ssl on the shared libssl) to MariaDB
/// (OpenSSL too): the agent's TLS capture hands the decrypted stream to
/// detection, which starts at the client's handshake response.
#[test]
fn pymysql_over_tls_client_and_server_spans() {
    let _g = serial();
    let certs = tls_cert();
    let db = Mariadb::start_tls(certs.path());
    let agent = Agent::start(&[
        "--pid",
        &db.pid().to_string(),
        "--exe-path",
        "/python3(\\.[0-9]+)?$",
    ]);
    const SCRIPT: &str = r#"
import sys, pymysql
port, pw, literal, n, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
c = pymysql.connect(host='127.0.0.1', port=port, user='app', password=pw, database='shop', ssl_ca=ca)
cur = c.cursor()
cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
assert cur.fetchone()[1], "not TLS"
for i in range(n):
    cur.execute("SELECT balance FROM accounts WHERE name = %s OR id = %s", (literal, 1))
    assert len(cur.fetchall()) == 1
c.close()
print("ok")
"#;
    let ca = certs.path().join("cert.pem");
    let out = lab_python(
        SCRIPT,
        &[
            &db.port.to_string(),
            APP_PASSWORD,
            LITERAL,
            &N.to_string(),
            ca.to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "ok");
    let text = "SELECT balance FROM accounts WHERE name = ? OR id = ?";
    for kind in ["client", "server"] {
        let spans = agent.wait_spans(N, WAIT, |s| {
            on_port(db.port, kind)(s) && attr(s, "db.query.text") == text
        });
        assert_eq!(spans.len(), N, "{kind}\n{}", agent.self_counters());
        for s in &spans {
            assert_eq!(s["name"], "SELECT accounts");
            assert_eq!(attr(s, "db.namespace"), "shop");
            assert_eq!(attr(s, "db.response.returned_rows"), "1");
            // The greeting went in clear before TLS: the decrypted stream
            // does not say MariaDB.
            assert_eq!(attr(s, "db.system.name"), "mysql");
        }
        // SET NAMES, SET AUTOCOMMIT, SHOW STATUS and the N queries.
        let all = agent.wait_spans(N + 3, WAIT, on_port(db.port, kind));
        assert_eq!(all.len(), N + 3, "{kind}");
    }
    let everything = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&agent.spans()).unwrap(),
        agent.stderr_text(),
        agent.metrics()
    );
    for secret in [LITERAL, APP_PASSWORD] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
