//! TLS plaintext capture from OpenSSL end to end: real servers using the
//! shared libssl (nginx, python `ssl`, uvicorn) or a statically linked
//! OpenSSL (node), real clients, the real agent.

use std::time::{Duration, Instant};

use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn server_spans_on(port: u16) -> impl Fn(&Value) -> bool {
    move |s| s["kind"] == "server" && attr(s, "server.port") == port.to_string()
}

/// The BPF counters reach /metrics once a second.
fn settle_counters() {
    std::thread::sleep(Duration::from_millis(1300));
}

fn uprobe_hits(agent: &Agent, labels: &[(&str, &str)]) -> f64 {
    agent.metric_sum("ratatosk_uprobe_hits_total", labels)
}

/// `n` keep-alive GETs of `path`, every span https with the right fields.
fn check_https_spans(agent: &Agent, port: u16, path: &str, n: usize, body: usize) -> Vec<Value> {
    check_https_spans_tagged(agent, port, path, n, body, "")
}

/// `check_https_spans` over the server spans whose query starts with
/// `query_prefix` (one batch of requests among several).
fn check_https_spans_tagged(
    agent: &Agent,
    port: u16,
    path: &str,
    n: usize,
    body: usize,
    query_prefix: &str,
) -> Vec<Value> {
    let spans = agent.wait_spans(n, WAIT, |s| {
        server_spans_on(port)(s) && attr(s, "url.query").starts_with(query_prefix)
    });
    assert_eq!(
        spans.len(),
        n,
        "server spans {query_prefix}: {spans:#?}\n{}",
        agent.metrics()
    );
    for s in &spans {
        assert_eq!(attr(s, "url.scheme"), "https", "{s}");
        assert_eq!(attr(s, "http.request.method"), "GET");
        assert_eq!(attr(s, "url.path"), path);
        assert_eq!(attr(s, "http.response.status_code"), "200");
        assert_eq!(attr(s, "http.response.body.size"), body.to_string(), "{s}");
        assert_eq!(attr(s, "network.protocol.version"), "1.1");
        assert_eq!(attr(s, "client.address"), "127.0.0.1");
    }
    // Every request once: the glob numbers them.
    let mut queries: Vec<String> = spans.iter().map(|s| attr(s, "url.query")).collect();
    queries.sort();
    queries.dedup();
    assert_eq!(queries.len(), n, "duplicated or lost requests: {queries:?}");
    spans
}

/// Decryption (the default): nginx's libssl gets the connection probe only;
/// every TLS version and AEAD suite curl can negotiate, small and large
/// (multi-record, truncated) responses, one span per request, and no
/// uprobe trap per request.
#[test]
fn nginx_https_decrypted_from_handshake_secrets_every_suite() {
    let _g = serial();
    let www = www_dir();
    let certs = tls_cert();
    let port = free_port();
    let nginx = Nginx::start_tls(www.path(), port, certs.path());
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    let attached = agent.log_lines_with("OpenSSL connection probe attached");
    assert!(
        attached.len() == 1 && attached[0].contains("file=/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "libssl not set up for decryption before ready:\n{}",
        agent.stderr_text()
    );
    let lib = private_libssl();
    let env = [("LD_LIBRARY_PATH", lib.path().to_str().expect("utf-8 path"))];
    const N: usize = 20;
    let variants: [(&str, &[&str]); 6] = [
        ("tls13-aes256", &["--tlsv1.3"]),
        (
            "tls13-aes128",
            &["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"],
        ),
        (
            "tls13-chacha",
            &[
                "--tlsv1.3",
                "--tls13-ciphers",
                "TLS_CHACHA20_POLY1305_SHA256",
            ],
        ),
        (
            "tls12-aes128",
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ],
        ),
        (
            "tls12-aes256",
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ],
        ),
        (
            "tls12-chacha",
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ],
        ),
    ];
    let mut total = 0;
    for (tag, args) in variants {
        for (path, body) in [("/hello", 12), ("/big", 100_000)] {
            let url = format!("https://127.0.0.1:{port}{path}?v={tag}{path}");
            let statuses = curl_tls_keepalive_args(&url, N, &env, args);
            assert_eq!(statuses, vec![200; N], "{tag}");
            total += N;
            check_https_spans_tagged(&agent, port, path, N, body, &format!("v={tag}{path}&"));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(nginx.access_log_lines(), total);
    assert_eq!(agent.spans().len(), total, "no span from anything else");

    settle_counters();
    let set_bio = uprobe_hits(&agent, &[("probe", "SSL_set0_rbio")]);
    let entries = uprobe_hits(&agent, &[("point", "entry")]);
    eprintln!(
        "nginx over TLS, decrypting: {:.3} uprobe traps per request ({set_bio} SSL_set0_rbio for {} connections)",
        entries / total as f64,
        variants.len() * 2
    );
    // One trap per connection (SSL_set_fd -> SSL_set_bio -> SSL_set0_rbio),
    // none per request.
    assert_eq!(entries, set_bio, "only SSL_set0_rbio is probed");
    assert_eq!(set_bio, (variants.len() * 2) as f64);
    assert_eq!(
        agent.metric_sum("ratatosk_tls_decrypt_failures_total", &[]),
        0.0,
        "{}",
        agent.metrics()
    );
    assert!(agent.metric_sum("ratatosk_tls_decrypted_records_total", &[]) >= total as f64 * 2.0);
}

/// `--tls-decrypt=false`: uprobes on every SSL_read/SSL_write.
#[test]
fn nginx_https_keepalive_with_call_probes_one_span_per_request_and_uprobe_hits() {
    let _g = serial();
    let www = www_dir();
    let certs = tls_cert();
    let port = free_port();
    let nginx = Nginx::start_tls(www.path(), port, certs.path());
    let agent = Agent::start(&["--open-port", &port.to_string(), "--tls-decrypt=false"]);
    assert!(
        agent
            .stderr_text()
            .contains("OpenSSL probes attached file=/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "libssl not probed before ready:\n{}",
        agent.stderr_text()
    );

    // The client runs its own copy of libssl: the hits counted are nginx's.
    let lib = private_libssl();
    let env = [("LD_LIBRARY_PATH", lib.path().to_str().expect("utf-8 path"))];
    const N: usize = 50;
    let url = format!("https://127.0.0.1:{port}/hello");
    let statuses = curl_tls_keepalive(&url, N, &env);
    assert_eq!(statuses, vec![200; N]);
    check_https_spans(&agent, port, "/hello", N, 12);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(nginx.access_log_lines(), N);
    // Nothing from the ciphertext: no other span at all.
    assert_eq!(agent.spans().len(), N, "{:#?}", agent.spans());

    settle_counters();
    let entries = uprobe_hits(&agent, &[("point", "entry")]);
    let returns = uprobe_hits(&agent, &[("point", "return")]);
    let per_req = entries / N as f64;
    eprintln!(
        "nginx over TLS: {per_req:.2} uprobe entries (traps) and {:.2} returns per request \
         (SSL_read entries {}, SSL_write entries {})",
        returns / N as f64,
        uprobe_hits(&agent, &[("probe", "SSL_read"), ("point", "entry")]),
        uprobe_hits(&agent, &[("probe", "SSL_write"), ("point", "entry")]),
    );
    // nginx calls SSL_read until it would block (twice per request) and
    // SSL_write once: 3 entries per request, plus the handshake's reads.
    assert!(per_req <= 3.1, "{per_req} uprobe entries per request");
    assert!(per_req >= 2.0, "{per_req}: nginx's calls were not all seen");
    assert_eq!(entries, returns, "every entry has its return");
    assert_eq!(
        agent.metric_sum("ratatosk_tls_unattributed_total", &[]),
        0.0
    );
    // The ciphertext of the TLS connection was never reported as data:
    // only the handshake's records, before the socket was known as TLS.
    assert!(
        agent.metric_sum("ratatosk_unparsed_bytes_total", &[]) < 4096.0,
        "ciphertext reached userspace:\n{}",
        agent.metrics()
    );
}

#[test]
fn python_ssl_server_started_after_the_agent_is_covered_within_a_second() {
    let _g = serial();
    let certs = tls_cert();
    let port = free_port();
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    assert!(
        !agent
            .stderr_text()
            .contains("OpenSSL connection probe attached")
    );
    let _server = python_tls_server(port, certs.path());
    let listening = Instant::now();
    // Selected at listen(), its mappings scanned within the scan interval.
    while !agent
        .stderr_text()
        .contains("OpenSSL connection probe attached")
    {
        assert!(
            listening.elapsed() < Duration::from_secs(1),
            "libssl of a new process not probed within 1 s:\n{}",
            agent.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    const N: usize = 20;
    let statuses = curl_tls_keepalive(&format!("https://127.0.0.1:{port}/hello"), N, &[]);
    assert_eq!(statuses, vec![200; N]);
    check_https_spans(&agent, port, "/hello", N, 15);
    settle_counters();
    // One connection: one or two traps when its SSL object is set up
    // (Python's ssl module sets the read BIO twice), none per request.
    let traps = uprobe_hits(&agent, &[("point", "entry")]);
    assert!((1.0..=2.0).contains(&traps), "{traps}");
    assert_eq!(uprobe_hits(&agent, &[("probe", "SSL_set0_rbio")]), traps);
    assert_eq!(
        agent.metric_sum("ratatosk_tls_unattributed_total", &[]),
        0.0
    );
}

/// uvicorn serves TLS through Python's `ssl` over memory BIOs: the SSL
/// object never sees a socket, so each connection is found by the random of
/// its ClientHello. Concurrent clients interleave handshakes in the event
/// loop; every request still gives exactly one span, on both loops.
#[test]
fn uvicorn_over_memory_bios_concurrent_connections_each_decrypted() {
    let _g = serial();
    let certs = tls_cert();
    for event_loop in ["uvloop", "asyncio"] {
        let port = free_port();
        let (_server, _app) = uvicorn_tls_server(port, certs.path(), event_loop);
        let agent = Agent::start(&["--open-port", &port.to_string()]);
        assert_eq!(
            agent
                .log_lines_with("OpenSSL connection probe attached")
                .len(),
            1,
            "{}",
            agent.stderr_text()
        );
        // Parallel curl processes, each several requests on one connection.
        const CLIENTS: usize = 12;
        const N: usize = 5;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let url = format!("https://127.0.0.1:{port}/hello?c={c}");
                std::thread::spawn(move || curl_tls_keepalive(&url, N, &[]))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().expect("curl thread"), vec![200; N]);
        }
        check_https_spans(&agent, port, "/hello", CLIENTS * N, 15);
        settle_counters();
        assert_eq!(
            agent.metric_sum("ratatosk_tls_decrypt_failures_total", &[]),
            0.0,
            "{event_loop}: {}",
            agent.metrics()
        );
        // One trap per connection in uvicorn and one in its curl (the same
        // probed libssl), none per request.
        let traps = uprobe_hits(&agent, &[("point", "entry")]);
        assert!(
            (CLIENTS as f64..=2.0 * CLIENTS as f64).contains(&traps),
            "{event_loop}: {traps} traps for {CLIENTS} connections"
        );
        assert_eq!(
            agent.metric_sum(
                "ratatosk_reader_records_total",
                &[("kind", "tls_memory_bio")]
            ),
            1.0
        );
    }
}

/// Node links OpenSSL 3.0 into its executable, which cannot be loaded to
/// learn the layout: Debian's libssl 3.0, whose accessors use the same
/// struct offsets and whose version text `node` holds, lends its layout.
/// Node drives OpenSSL over its own BIO, so connections are found by their
/// ClientHello random. One trap per connection, none per request; with
/// `--tls-decrypt=false` the per-call probes still work.
#[test]
fn node_https_with_statically_linked_openssl() {
    let _g = serial();
    let certs = tls_cert();
    let port = free_port();
    let _server = node_https_server(port, certs.path());
    let node = std::fs::canonicalize(tool("node")).expect("node path");
    // A private libssl for curl: its traps are not counted with the server's.
    let lib = private_libssl();
    let env = [("LD_LIBRARY_PATH", lib.path().to_str().expect("utf-8 path"))];
    const N: usize = 20;
    const CLIENTS: usize = 4;

    let agent = Agent::start(&["--open-port", &port.to_string()]);
    let attached = agent.log_lines_with("OpenSSL connection probe attached");
    assert_eq!(attached.len(), 1, "{}", agent.stderr_text());
    assert!(
        attached[0].contains(&format!("file={}", node.display()))
            && attached[0].contains("layout_from=/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "{}",
        attached[0]
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = format!("https://127.0.0.1:{port}/hello?c={c}");
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                curl_tls_keepalive(&url, N, &env)
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("curl thread"), vec![200; N]);
    }
    check_https_spans(&agent, port, "/hello", CLIENTS * N, 12);
    settle_counters();
    let traps = uprobe_hits(&agent, &[("point", "entry")]);
    assert_eq!(traps, CLIENTS as f64, "one trap per connection");
    assert_eq!(uprobe_hits(&agent, &[("probe", "SSL_set_bio")]), traps);
    assert_eq!(
        agent.metric_sum("ratatosk_tls_decrypt_failures_total", &[]),
        0.0,
        "{}",
        agent.metrics()
    );
    drop(agent);

    let agent = Agent::start(&["--open-port", &port.to_string(), "--tls-decrypt=false"]);
    assert!(
        agent
            .stderr_text()
            .contains(&format!("OpenSSL probes attached file={}", node.display())),
        "node's executable not probed:\n{}",
        agent.stderr_text()
    );
    let statuses = curl_tls_keepalive(&format!("https://127.0.0.1:{port}/hello"), N, &env);
    assert_eq!(statuses, vec![200; N]);
    check_https_spans(&agent, port, "/hello", N, 12);
    settle_counters();
    let entries = uprobe_hits(&agent, &[("point", "entry")]);
    eprintln!(
        "node over TLS, per-call probes: {:.2} uprobe entries per request",
        entries / N as f64
    );
    assert_eq!(
        agent.metric_sum("ratatosk_tls_unattributed_total", &[]),
        0.0
    );
}

#[test]
fn a_library_that_cannot_be_probed_is_named_once_and_plaintext_continues() {
    let _g = serial();
    let www = www_dir();
    let port = free_port();
    // NSS's libssl3.so is named like OpenSSL's but has no SSL_read: a real
    // library the agent finds and cannot probe.
    const APP: &str = r#"
import ctypes, runpy, sys
ctypes.CDLL("libssl3.so")
sys.argv = ["http.server", sys.argv[1], "--bind", "127.0.0.1", "--directory", sys.argv[2]]
runpy.run_module("http.server", run_name="__main__")
"#;
    let _server = Proc::spawn(
        "python3 http.server with NSS loaded",
        std::process::Command::new(tool("python3"))
            .args(["-c", APP, &port.to_string()])
            .arg(www.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    let agent = Agent::start(&["--open-port", &port.to_string()]);

    const N: usize = 5;
    for _ in 0..N {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello")), 200);
    }
    let spans = agent.wait_spans(N, WAIT, server_spans_on(port));
    assert_eq!(spans.len(), N, "{spans:#?}");
    assert!(spans.iter().all(|s| attr(s, "url.scheme") == "http"));
    // Rescans do not repeat the warning.
    std::thread::sleep(Duration::from_millis(1200));
    let warnings = agent.log_lines_with("cannot probe");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("libssl3.so") && warnings[0].contains("no SSL_read symbol"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        agent.metric_sum("ratatosk_tls_files_total", &[("reason", "failed")]),
        1.0
    );
}

/// curl as a client (curl drives OpenSSL through its own BIO method, not a
/// socket BIO): its connection is found from the handshake's own socket
/// calls and decrypted; one client span per request, next to nginx's
/// server spans, both from one probed libssl.
#[test]
fn curl_client_over_its_own_bio_is_decrypted_too() {
    let _g = serial();
    let www = www_dir();
    let certs = tls_cert();
    let port = free_port();
    let _nginx = Nginx::start_tls(www.path(), port, certs.path());
    let agent = Agent::start(&["--open-port", &port.to_string(), "--exe-path", "/curl$"]);
    assert_eq!(
        agent
            .log_lines_with("OpenSSL connection probe attached")
            .len(),
        1
    );
    const N: usize = 10;
    for (tag, args) in [
        ("tls13", &["--tlsv1.3"][..]),
        ("tls12", &["--tls-max", "1.2"][..]),
    ] {
        let url = format!("https://127.0.0.1:{port}/hello?v={tag}");
        assert_eq!(curl_tls_keepalive_args(&url, N, &[], args), vec![200; N]);
        let prefix = format!("v={tag}&");
        let clients = agent.wait_spans(N, WAIT, |s| {
            s["kind"] == "client"
                && attr(s, "server.port") == port.to_string()
                && attr(s, "url.query").starts_with(&prefix)
        });
        assert_eq!(clients.len(), N, "{tag}: {clients:#?}\n{}", agent.metrics());
        for s in &clients {
            assert_eq!(attr(s, "url.scheme"), "https", "{s}");
            assert_eq!(attr(s, "http.response.status_code"), "200");
            assert_eq!(attr(s, "http.response.body.size"), "12");
        }
        let servers = agent.wait_spans(N, WAIT, |s| {
            server_spans_on(port)(s) && attr(s, "url.query").starts_with(&prefix)
        });
        assert_eq!(servers.len(), N, "{tag}");
    }
    settle_counters();
    assert!(
        agent.metric_sum(
            "ratatosk_reader_records_total",
            &[("kind", "tls_memory_bio")]
        ) >= 1.0
    );
    assert_eq!(
        agent.metric_sum("ratatosk_tls_decrypt_failures_total", &[]),
        0.0,
        "{}",
        agent.metrics()
    );
}

/// Names of the BPF programs the process `pid` holds open (its fds on
/// `anon_inode:bpf-prog`, named by bpftool from their ids).
fn loaded_program_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("agent fds") {
        let fd = fd.expect("fd entry");
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .expect("fdinfo");
        let id = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .expect("prog_id in fdinfo")
            .trim()
            .to_string();
        let out = std::process::Command::new(tool("bpftool"))
            .args(["prog", "show", "id", &id, "--json"])
            .output()
            .expect("bpftool runs");
        assert!(out.status.success(), "bpftool prog show id {id}: {out:?}");
        let prog: Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
        names.push(prog["name"].as_str().expect("program name").to_string());
    }
    names
}

/// `--tls-capture false` loads no TLS program at all (so a kernel that
/// refuses them still captures plaintext), and plaintext spans go on.
#[test]
fn tls_capture_off_loads_no_tls_program() {
    let _g = serial();
    let www = www_dir();
    let port = free_port();
    let _server = python_http_server(www.path(), port);
    wait_for_port(port, Duration::from_secs(10));

    let on = Agent::start(&["--open-port", &port.to_string()]);
    let with_tls = loaded_program_names(on.proc.pid());
    drop(on);
    // The control: the same listing sees the TLS programs when they are on.
    for name in ["ssl_set_bio", "ssl_set0_rbio", "go_tls_read"] {
        assert!(
            with_tls.iter().any(|n| n == name),
            "{name} not in {with_tls:?}"
        );
    }

    let agent = Agent::start(&["--open-port", &port.to_string(), "--tls-capture", "false"]);
    let names = loaded_program_names(agent.proc.pid());
    let tls: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("ssl_") || n.starts_with("go_tls"))
        .collect();
    assert!(
        tls.is_empty(),
        "TLS programs loaded with --tls-capture false: {tls:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("sock_")), "{names:?}");

    assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello")), 200);
    let spans = agent.wait_spans(1, WAIT, server_spans_on(port));
    assert_eq!(spans.len(), 1, "{spans:#?}");
}
