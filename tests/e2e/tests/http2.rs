//! HTTP/2 and gRPC end to end: the real agent watching nginx (h2c and
//! over TLS) answer curl and h2load, and gRPC servers and clients in
//! Python (grpcio) and Node (@grpc/grpc-js) talk to each other. Exact
//! span counts, names and attributes; nothing partial where the capture
//! saw every byte.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ratatosk_e2e::grpc::{self, CALLS, Lang};
use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn h2_server_spans(port: u16) -> impl Fn(&Value) -> bool {
    move |s| {
        s["kind"] == "server"
            && attr(s, "network.protocol.version") == "2"
            && attr(s, "server.port") == port.to_string()
            && attr(s, "rpc.system.name").is_empty()
    }
}

/// Losses the HTTP/2 parser counted.
fn h2_losses(agent: &Agent) -> f64 {
    agent.metric_sum("ratatosk_parser_errors_total", &[("protocol", "http2")])
}

fn run_ok(name: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// h2load's own count of 2xx responses: the ground truth for exactness.
fn h2load(args: &[&str]) -> u64 {
    let text = run_ok("h2load", Command::new(tool("h2load")).args(args));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("status codes:"))
        .unwrap_or_else(|| panic!("no status line in h2load's output:\n{text}"));
    // "status codes: 5000 2xx, 0 3xx, 0 4xx, 0 5xx"
    let ok: u64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable h2load line: {line}"));
    assert!(
        line.contains(" 0 3xx, 0 4xx, 0 5xx"),
        "h2load saw errors: {line}"
    );
    ok
}

fn write_file(dir: &Path, name: &str, size: usize) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, "y".repeat(size)).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

#[test]
fn curl_prior_knowledge_one_span_per_stream() {
    let _g = serial();
    let www = www_dir();
    let port = free_port();
    let nginx = Nginx::start_h2c(www.path(), port);
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    // Twenty curl runs (a connection each), a traceparent on the first to
    // be joined. (curl 7.88 fails to reuse a prior-knowledge connection
    // with nginx: "Error in the HTTP2 framing layer", without the agent
    // too; h2load covers many streams per connection below.)
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let tp = format!("traceparent: 00-{trace}-{parent}-01");
    for i in 0..20 {
        let url = format!("http://127.0.0.1:{port}/hello?n={i}");
        let mut args = vec!["-sS", "-o", "/dev/null", "--http2-prior-knowledge", &url];
        if i == 0 {
            args.extend(["-H", &tp]);
        }
        run_ok("curl", Command::new(tool("curl")).args(&args));
    }
    let spans = agent.wait_spans(20, WAIT, h2_server_spans(port));
    assert_eq!(spans.len(), 20, "{spans:#?}\n{}", agent.self_counters());
    assert_eq!(nginx.access_log_lines(), 20);
    for s in &spans {
        assert_eq!(s["name"], "GET /hello", "{s}");
        assert_eq!(attr(s, "http.request.method"), "GET");
        assert_eq!(attr(s, "http.response.status_code"), "200");
        assert_eq!(attr(s, "url.path"), "/hello");
        assert_eq!(attr(s, "http.response.body.size"), "12");
        assert_eq!(attr(s, "ratatosk.partial"), "");
        assert!(attr(s, "user_agent.original").starts_with("curl/"), "{s}");
    }
    let joined: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == trace).collect();
    assert_eq!(joined.len(), 1, "{spans:#?}");
    assert_eq!(joined[0]["parent_span_id"], parent);
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
    // The HTTP metrics, version 2.
    assert_eq!(
        agent.metric_sum(
            "http_server_request_duration_seconds_count",
            &[("network_protocol_version", "2"), ("http_route", "/hello")]
        ),
        20.0
    );
}

#[test]
fn h2load_multiplexed_streams_exact_counts() {
    let _g = serial();
    let www = www_dir();
    let port = free_port();
    let nginx = Nginx::start_h2c(www.path(), port);
    let agent = Agent::start(&["--open-port", &port.to_string(), "--ringbuf-mib", "64"]);
    let url = format!("http://127.0.0.1:{port}/hello");
    let ok = h2load(&["-n", "5000", "-c", "4", "-m", "16", &url]);
    assert_eq!(ok, 5000);
    let spans = agent.wait_spans(5000, WAIT, h2_server_spans(port));
    assert_eq!(
        spans.len(),
        5000,
        "{}\n{}",
        agent.stderr_text(),
        agent.self_counters()
    );
    assert_eq!(nginx.access_log_lines(), 5000);
    assert!(spans.iter().all(|s| attr(s, "ratatosk.partial").is_empty()));
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}

/// A 1 MB response on one stream while small requests run on others:
/// nginx writes their HEADERS frames behind megabytes of DATA.
#[test]
fn large_responses_interleaved_with_small_requests() {
    let _g = serial();
    let www = www_dir();
    write_file(www.path(), "mega", 1 << 20);
    let port = free_port();
    let _nginx = Nginx::start_h2c(www.path(), port);
    let agent = Agent::start(&["--open-port", &port.to_string(), "--ringbuf-mib", "64"]);
    let base = format!("http://127.0.0.1:{port}");
    // h2load takes the URIs in turn: 20 large, 180 small, 16 at a time.
    let mut args = vec!["-n".to_string(), "200".into(), "-c".into(), "1".into()];
    args.extend(["-m".into(), "16".into()]);
    args.push(format!("{base}/mega"));
    for _ in 0..9 {
        args.push(format!("{base}/hello"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(h2load(&argv), 200);
    let spans = agent.wait_spans(200, WAIT, h2_server_spans(port));
    assert_eq!(spans.len(), 200, "{}", agent.self_counters());
    let big: Vec<&Value> = spans
        .iter()
        .filter(|s| attr(s, "url.path") == "/mega")
        .collect();
    assert_eq!(big.len(), 20);
    for s in &big {
        assert_eq!(attr(s, "http.response.body.size"), (1 << 20).to_string());
    }
    for s in &spans {
        assert_eq!(attr(s, "http.response.status_code"), "200", "{s}");
        assert_eq!(attr(s, "ratatosk.partial"), "", "{s}");
    }
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}

#[test]
fn h2_over_tls_curl_and_h2load_exact_counts() {
    let _g = serial();
    let www = www_dir();
    let certs = tls_cert();
    let port = free_port();
    let nginx = Nginx::start_h2_tls(www.path(), port, certs.path());
    let agent = Agent::start(&["--open-port", &port.to_string(), "--ringbuf-mib", "64"]);
    run_ok(
        "curl",
        Command::new(tool("curl")).args([
            "-s",
            "-k",
            "-o",
            "/dev/null",
            "--http2",
            &format!("https://127.0.0.1:{port}/hello?n=[1-10]"),
        ]),
    );
    let ok = h2load(&[
        "-n",
        "1000",
        "-c",
        "2",
        "-m",
        "8",
        &format!("https://127.0.0.1:{port}/hello"),
    ]);
    assert_eq!(ok, 1000);
    let spans = agent.wait_spans(1010, WAIT, h2_server_spans(port));
    assert_eq!(spans.len(), 1010, "{}", agent.self_counters());
    assert_eq!(nginx.access_log_lines(), 1010);
    for s in &spans {
        assert_eq!(attr(s, "url.scheme"), "https", "{s}");
        assert_eq!(attr(s, "http.response.status_code"), "200", "{s}");
        assert_eq!(attr(s, "ratatosk.partial"), "", "{s}");
    }
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}

/// The six calls of a `grpc::Client`, on both sides.
fn grpc_case(server_lang: Lang, client_lang: Lang, tls: bool) {
    let _g = serial();
    let certs = tls_cert();
    let certs_arg = tls.then(|| certs.path());
    let port = free_port();
    let server = grpc::server(server_lang, port, certs_arg);
    let client = grpc::Client::start(client_lang, port, certs_arg);
    let agent = Agent::start(&[
        "--pid",
        &server.pid().to_string(),
        "--pid",
        &client.pid().to_string(),
    ]);
    client.run();
    let is_grpc = |kind: &'static str| {
        move |s: &Value| {
            s["kind"] == kind
                && attr(s, "rpc.system.name") == "grpc"
                && attr(s, "server.port") == port.to_string()
        }
    };
    let mut expected: Vec<(String, String)> = CALLS
        .iter()
        .map(|(m, st)| (m.to_string(), st.to_string()))
        .collect();
    expected.sort();
    for kind in ["server", "client"] {
        let spans = agent.wait_spans(CALLS.len(), WAIT, is_grpc(kind));
        let mut got: Vec<(String, String)> = spans
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or_default().to_string(),
                    attr(s, "rpc.response.status_code"),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            expected,
            "{kind} spans: {spans:#?}\n{}",
            agent.self_counters()
        );
        for s in &spans {
            let name = s["name"].as_str().unwrap_or_default();
            assert_eq!(attr(s, "rpc.method"), name);
            assert_eq!(attr(s, "ratatosk.partial"), "", "{s}");
            let status = attr(s, "rpc.response.status_code");
            // error.type names every non-OK status; the span status
            // follows the side's rule (NOT_FOUND and ABORTED are the
            // caller's failures, not the server's).
            if status == "OK" {
                assert_eq!(attr(s, "error.type"), "", "{s}");
                assert_eq!(s["status"], "unset", "{s}");
            } else {
                assert_eq!(attr(s, "error.type"), status, "{s}");
                let failed = if kind == "client" { "error" } else { "unset" };
                assert_eq!(s["status"], failed, "{s}");
            }
        }
    }
    let m = agent.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "rpc_server_call_duration_seconds_count",
            &[("rpc_method", "helloworld.Greeter/SayHello")]
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "rpc_client_call_duration_seconds_count",
            &[("rpc_response_status_code", "NOT_FOUND")]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}

#[test]
fn grpc_python_to_python_h2c() {
    grpc_case(Lang::Python, Lang::Python, false);
}

#[test]
fn grpc_node_to_node_h2c() {
    grpc_case(Lang::Node, Lang::Node, false);
}

#[test]
fn grpc_python_client_to_node_server_h2c() {
    grpc_case(Lang::Node, Lang::Python, false);
}

#[test]
fn grpc_node_client_to_python_server_h2c() {
    grpc_case(Lang::Python, Lang::Node, false);
}

/// Node links OpenSSL statically: decrypted from its handshake secrets.
/// (grpcio carries BoringSSL, which the agent does not decrypt yet.)
#[test]
fn grpc_node_to_node_over_tls() {
    grpc_case(Lang::Node, Lang::Node, true);
}

/// The agent starts while a client holds a connection it already used:
/// the HPACK state of what came before is unknown. Whatever is reported
/// is true (a method is the one called, or the span says it is partial),
/// and what could not be parsed is counted.
#[test]
fn capture_begun_mid_connection_invents_nothing() {
    let _g = serial();
    let port = free_port();
    let server = grpc::server(Lang::Python, port, None);
    let client = grpc::AcrossClient::start_warm(port);
    let agent = Agent::start(&[
        "--pid",
        &server.pid().to_string(),
        "--pid",
        &client.pid().to_string(),
    ]);
    client.go();
    std::thread::sleep(Duration::from_secs(1));
    let spans: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|s| attr(s, "server.port") == port.to_string())
        .collect();
    for kind in ["server", "client"] {
        let side: Vec<&Value> = spans.iter().filter(|s| s["kind"] == kind).collect();
        let partial = side
            .iter()
            .filter(|s| attr(s, "ratatosk.partial") == "true")
            .count();
        eprintln!(
            "mid-connection {kind}: {} spans, {partial} partial",
            side.len()
        );
        assert!(side.len() <= 4, "more {kind} spans than calls: {side:#?}");
        for s in &side {
            let method = attr(s, "rpc.method");
            let status = attr(s, "rpc.response.status_code");
            match method.as_str() {
                "helloworld.Greeter/SayHello" => {
                    assert!(status == "OK" || status.is_empty(), "{s}")
                }
                "helloworld.Greeter/GetMissing" => {
                    assert!(status == "NOT_FOUND" || status.is_empty(), "{s}")
                }
                "" => assert_eq!(attr(s, "ratatosk.partial"), "true", "{s}"),
                other => panic!("invented method {other}: {s}"),
            }
        }
        if side.len() < 4 {
            // What was not reported was counted.
            let counted =
                agent.metric_sum("ratatosk_unparsed_bytes_total", &[]) + h2_losses(&agent);
            assert!(
                counted > 0.0,
                "{kind}: {side:#?}\n{}",
                agent.self_counters()
            );
        }
    }
}

/// Go's net/http speaks HTTP/2 over TLS by default (ALPN h2), in the
/// server and the client; the plaintext comes from the Go crypto/tls
/// probes.
const GO_H2_SRC: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	switch os.Args[1] {
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor != 2 {
				http.Error(w, "not h2", 500)
				return
			}
			fmt.Fprint(w, "Hello world\n")
		})
		if err := http.ListenAndServeTLS("127.0.0.1:"+os.Args[2], os.Args[3], os.Args[4], nil); err != nil {
			panic(err)
		}
	case "get":
		n, _ := strconv.Atoi(os.Args[3])
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		c := &http.Client{Transport: tr}
		for i := 0; i < n; i++ {
			resp, err := c.Get(os.Args[2] + "?i=" + strconv.Itoa(i))
			if err != nil {
				panic(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
				panic(resp.Proto + " " + resp.Status)
			}
		}
	}
}
"#;

#[test]
fn go_server_and_client_over_tls_speak_h2() {
    let _g = serial();
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-goh2")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let bin = go_build(dir.path(), "goh2", GO_H2_SRC, "");
    let certs = tls_cert();
    let port = free_port();
    let _server = Proc::spawn(
        "go h2 server",
        Command::new(&bin)
            .arg("serve")
            .arg(port.to_string())
            .arg(certs.path().join("cert.pem"))
            .arg(certs.path().join("key.pem")),
    );
    wait_for_port(port, WAIT);
    let agent = Agent::start(&["--exe-path", "/goh2$"]);
    const N: usize = 20;
    run_ok(
        "go client",
        Command::new(&bin).args([
            "get",
            &format!("https://127.0.0.1:{port}/go"),
            &N.to_string(),
        ]),
    );
    let on_port = |s: &Value| attr(s, "server.port") == port.to_string();
    let spans = agent.wait_spans(2 * N, WAIT, on_port);
    let server = spans.iter().filter(|s| s["kind"] == "server").count();
    let client = spans.iter().filter(|s| s["kind"] == "client").count();
    assert_eq!(
        (server, client),
        (N, N),
        "{spans:#?}\n{}",
        agent.self_counters()
    );
    for s in &spans {
        assert_eq!(attr(s, "url.scheme"), "https", "{s}");
        assert_eq!(attr(s, "network.protocol.version"), "2", "{s}");
        assert_eq!(attr(s, "url.path"), "/go", "{s}");
        assert_eq!(attr(s, "http.response.status_code"), "200", "{s}");
        assert_eq!(attr(s, "ratatosk.partial"), "", "{s}");
    }
    let mut queries: Vec<String> = spans
        .iter()
        .filter(|s| s["kind"] == "server")
        .map(|s| attr(s, "url.query"))
        .collect();
    queries.sort();
    queries.dedup();
    assert_eq!(queries.len(), N, "{queries:?}");
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}

/// An ASGI app for hypercorn, which accepts `Upgrade: h2c` (nginx does not).
const ASGI_APP: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello\n"})
"#;

/// `curl --http2` on `http://` asks for `Upgrade: h2c`: the request that
/// asked is answered on stream 1 of the new HTTP/2 connection, and later
/// requests of the same curl run go on its next streams.
#[test]
fn upgrade_to_h2c_continues_on_http2() {
    let _g = serial();
    let dir = tempfile::Builder::new()
        .prefix("ratatosk-h2c-up")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::write(dir.path().join("asgi_app.py"), ASGI_APP).expect("write app");
    let port = free_port();
    let _server = Proc::spawn(
        "hypercorn",
        Command::new(lab_dir().join("bin/hypercorn"))
            .current_dir(dir.path())
            .args(["-b", &format!("127.0.0.1:{port}"), "asgi_app:app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, WAIT);
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    let out = run_ok(
        "curl",
        Command::new(tool("curl")).args([
            "-sS",
            "--http2",
            "-w",
            "%{http_version}\\n",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/up?n=[1-3]"),
        ]),
    );
    assert!(out.lines().all(|l| l == "2"), "curl did not upgrade: {out}");
    let server = |s: &Value| s["kind"] == "server" && attr(s, "server.port") == port.to_string();
    let spans = agent.wait_spans(3, WAIT, server);
    assert_eq!(spans.len(), 3, "{spans:#?}\n{}", agent.self_counters());
    let mut versions: Vec<String> = spans
        .iter()
        .map(|s| attr(s, "network.protocol.version"))
        .collect();
    versions.sort();
    // The request that asked for the upgrade was sent as HTTP/1.1 and
    // answered on HTTP/2; the next two were HTTP/2 streams.
    assert!(
        versions.iter().filter(|v| *v == "2").count() >= 2,
        "{versions:?}"
    );
    for s in &spans {
        assert_eq!(attr(s, "url.path"), "/up", "{s}");
        assert_eq!(attr(s, "http.response.status_code"), "200", "{s}");
        assert_eq!(attr(s, "ratatosk.partial"), "", "{s}");
    }
    assert_eq!(h2_losses(&agent), 0.0, "{}", agent.self_counters());
}
