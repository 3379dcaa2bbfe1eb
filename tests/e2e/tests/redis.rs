//! Redis end to end: the real agent watching a real redis-server answer
//! redis-py, redis-cli and redis-benchmark.

use std::time::Duration;

use ratatosk_e2e::redis::{RedisServer, redis_benchmark, redis_py, send_raw};
use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn redis_spans(port: u16, kind: &'static str) -> impl Fn(&Value) -> bool {
    move |s| {
        s["kind"] == kind
            && attr(s, "db.system.name") == "redis"
            && attr(s, "server.port") == port.to_string()
    }
}

/// Everything the agent said: spans, logs and metrics.
fn everything(agent: &Agent) -> String {
    format!(
        "{}\n{}\n{}",
        serde_json::to_string(&agent.spans()).unwrap(),
        agent.stderr_text(),
        agent.metrics()
    )
}

const SINGLE: &str = r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]), protocol=2)
r.set("user:1", "lit-secret-value")
r.get("user:1")
r.hset("h", "lit-field", "lit-value")
r.incr("counter")
try:
    r.incr("user:1")
except redis.ResponseError:
    pass
r.delete("user:1", "h", "counter")
"#;

const PIPELINE: &str = r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]), protocol=2)
p = r.pipeline(transaction=False)
for i in range(5):
    p.set(f"pk:{i}", f"lit-pv-{i}")
for i in range(5):
    p.get(f"pk:{i}")
p.execute()
t = r.pipeline(transaction=True)
t.set("mk", "lit-mv")
t.incr("mc")
t.get("mk")
t.execute()
"#;

#[test]
fn redis_py_commands_pipeline_multi_and_errors() {
    let _g = serial();
    let server = RedisServer::start(None);
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);

    redis_py(SINGLE, server.port, "");
    // CLIENT SETINFO ×2 (redis-py's handshake), SET, GET, HSET, INCRBY,
    // INCRBY (fails), DEL.
    let spans = agent.wait_spans(8, WAIT, redis_spans(server.port, "server"));
    let names: Vec<_> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "CLIENT SETINFO",
            "CLIENT SETINFO",
            "SET",
            "GET",
            "HSET",
            "INCRBY",
            "INCRBY",
            "DEL"
        ],
        "{spans:#?}"
    );
    let texts: Vec<_> = spans.iter().map(|s| attr(s, "db.query.text")).collect();
    assert_eq!(
        texts[2..],
        [
            "SET user:1 ?",
            "GET user:1",
            "HSET h ? ?",
            "INCRBY counter ?",
            "INCRBY user:1 ?",
            "DEL user:1 ? ?"
        ]
    );
    for s in &spans {
        assert_eq!(attr(s, "db.namespace"), "0", "{s}");
        assert_eq!(attr(s, "db.operation.name"), s["name"].as_str().unwrap());
    }
    let failed = &spans[6];
    assert_eq!(attr(failed, "db.response.status_code"), "ERR", "{failed}");
    assert_eq!(attr(failed, "error.type"), "ERR");
    assert_eq!(attr(&spans[2], "error.type"), "");

    redis_py(PIPELINE, server.port, "");
    // 2 handshake + 10 pipelined + MULTI, SET, INCRBY, GET, EXEC.
    let spans = agent.wait_spans(8 + 17, WAIT, redis_spans(server.port, "server"));
    assert_eq!(spans.len(), 8 + 17, "{spans:#?}");
    let names: Vec<_> = spans[10..]
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "SET", "SET", "SET", "SET", "SET", "GET", "GET", "GET", "GET", "GET", "MULTI", "SET",
            "INCRBY", "GET", "EXEC"
        ]
    );

    let all = everything(&agent);
    assert!(!all.contains("lit-"), "a literal leaked:\n{all}");
}

#[test]
fn redis_py_client_spans_and_select() {
    let _g = serial();
    let server = RedisServer::start(None);
    let agent = Agent::start(&["--exe-path", "python3?[0-9.]*$"]);
    redis_py(
        r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]), db=3, protocol=2)
r.set("k", "lit-v")
r.get("k")
"#,
        server.port,
        "",
    );
    // CLIENT SETINFO ×2 and SELECT 3 (one write), SET, GET.
    let spans = agent.wait_spans(5, WAIT, redis_spans(server.port, "client"));
    let got: Vec<_> = spans
        .iter()
        .map(|s| (attr(s, "db.query.text"), attr(s, "db.namespace")))
        .collect();
    assert_eq!(
        got,
        [
            ("CLIENT SETINFO ? ?".into(), "0".into()),
            ("CLIENT SETINFO ? ?".into(), "0".into()),
            ("SELECT ?".into(), "0".into()),
            ("SET k ?".into(), "3".into()),
            ("GET k".into(), "3".into()),
        ]
    );
    assert!(!everything(&agent).contains("lit-"));
    let p = server.port.to_string();
    let count = |op: &str, ns: &str| {
        agent.metric_sum(
            "db_client_operation_duration_seconds_count",
            &[
                ("db_system_name", "redis"),
                ("db_operation_name", op),
                ("db_namespace", ns),
                ("server_port", &p),
            ],
        )
    };
    assert_eq!(
        (count("SET", "3"), count("GET", "3"), count("SELECT", "0")),
        (1.0, 1.0, 1.0),
        "metrics:\n{}",
        agent.metrics()
    );
}

#[test]
fn redis_benchmark_gives_one_span_per_command() {
    let _g = serial();
    let server = RedisServer::start(None);
    let agent = Agent::start(&["--pid", &server.pid().to_string(), "--ringbuf-mib", "64"]);
    const N: usize = 2000;
    redis_benchmark(
        server.port,
        &["-n", &N.to_string(), "-c", "10", "-t", "get,set"],
    );
    // redis-benchmark first reads the server's CONFIG GET save and
    // appendonly.
    let total = 2 * N + 2;
    let spans = agent.wait_spans(
        total,
        Duration::from_secs(60),
        redis_spans(server.port, "server"),
    );
    let count = |name: &str| spans.iter().filter(|s| s["name"] == name).count();
    assert_eq!(
        (count("SET"), count("GET"), count("CONFIG GET")),
        (N, N, 2),
        "self counters:\n{}",
        agent.self_counters()
    );
    assert_eq!(spans.len(), total);
    assert!(spans.iter().all(|s| s["status"] == "unset"));
    assert_eq!(
        agent.metric_sum("ratatosk_parser_errors_total", &[("protocol", "redis")]),
        0.0,
        "self counters:\n{}",
        agent.self_counters()
    );
}

#[test]
fn passwords_never_leave_the_agent() {
    let _g = serial();
    const PASSWORD: &str = "lit-s3cr3t-pw";
    let server = RedisServer::start(Some(PASSWORD));
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);
    redis_py(
        r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]), password=os.environ["PASSWORD"], protocol=2)
r.ping()
r = redis.Redis(port=int(os.environ["PORT"]), password=os.environ["PASSWORD"], protocol=3)
r.ping()
"#,
        server.port,
        PASSWORD,
    );
    let out = std::process::Command::new(tool("redis-cli"))
        .args([
            "-p",
            &server.port.to_string(),
            "-a",
            PASSWORD,
            "--no-auth-warning",
        ])
        .args(["CONFIG", "SET", "requirepass", "lit-new-pw"])
        .output()
        .expect("redis-cli");
    assert!(out.status.success());
    // AUTH, CLIENT SETINFO ×2, PING; HELLO 3 AUTH, CLIENT SETINFO ×2,
    // PING; AUTH, CONFIG SET.
    let spans = agent.wait_spans(10, WAIT, redis_spans(server.port, "server"));
    let texts: Vec<_> = spans.iter().map(|s| attr(s, "db.query.text")).collect();
    assert!(texts.contains(&"AUTH ?".to_string()), "{texts:?}");
    assert!(texts.contains(&"HELLO ? ? ? ?".to_string()), "{texts:?}");
    assert!(texts.contains(&"CONFIG SET ? ?".to_string()), "{texts:?}");
    let all = everything(&agent);
    assert!(
        !all.contains("s3cr3t") && !all.contains("lit-new-pw"),
        "{all}"
    );
}

#[test]
fn garbage_on_the_port_gives_no_span_and_is_counted() {
    let _g = serial();
    let server = RedisServer::start(None);
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);
    // Binary bytes with no line end: redis-server waits for more and
    // says nothing.
    send_raw(
        server.port,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\xff",
    );
    // A proper command afterwards is still seen.
    redis_py(
        "import os, redis\nredis.Redis(port=int(os.environ['PORT']), protocol=2).ping()",
        server.port,
        "",
    );
    let spans = agent.wait_spans(3, WAIT, redis_spans(server.port, "server"));
    let names: Vec<_> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CLIENT SETINFO", "CLIENT SETINFO", "PING"]);
    let m = agent.metrics();
    let unparsed = metric_sum(&m, "ratatosk_unparsed_connections_total", &[]);
    let errors = metric_sum(&m, "ratatosk_parser_errors_total", &[("protocol", "redis")]);
    assert!(
        unparsed + errors >= 1.0,
        "self counters:\n{}",
        agent.self_counters()
    );
}

const PUBSUB: &str = r#"
import os, time, redis
port = int(os.environ["PORT"])
for proto in (2, 3):
    sub = redis.Redis(port=port, protocol=proto).pubsub()
    pub = redis.Redis(port=port, protocol=2)
    sub.subscribe("news")
    while sub.get_message(timeout=0.5) is None:
        pass
    for i in range(3):
        pub.publish("news", f"lit-msg-{i}")
    got = 0
    while got < 3:
        m = sub.get_message(timeout=2)
        if m and m["type"] == "message":
            got += 1
    sub.unsubscribe()
    while sub.get_message(timeout=0.3):
        pass
    sub.close()
    pub.close()
"#;

#[test]
fn pubsub_pushes_are_counted_not_spans() {
    let _g = serial();
    let server = RedisServer::start(None);
    let agent = Agent::start(&["--pid", &server.pid().to_string()]);
    redis_py(PUBSUB, server.port, "");
    // Per protocol: SUBSCRIBE, 3 PUBLISH, UNSUBSCRIBE, besides the
    // clients' handshakes; the 3 messages pushed to the subscriber are
    // no span.
    let spans = agent.wait_spans(10, WAIT, |s| {
        redis_spans(server.port, "server")(s)
            && !s["name"].as_str().unwrap().starts_with("CLIENT")
            && s["name"] != "HELLO"
    });
    let names: Vec<_> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let count = |n: &str| names.iter().filter(|x| **x == n).count();
    assert_eq!(
        (count("SUBSCRIBE"), count("PUBLISH"), count("UNSUBSCRIBE")),
        (2, 6, 2),
        "{names:?}"
    );
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(attr(&spans[0], "db.query.text"), "SUBSCRIBE news");
    let pushes = agent.metric_sum(
        "ratatosk_parser_errors_total",
        &[("protocol", "redis"), ("reason", "pubsub_push")],
    );
    assert_eq!(pushes, 6.0, "self counters:\n{}", agent.self_counters());
    assert!(!everything(&agent).contains("lit-msg"));
}
