//! A configuration file drives the real agent: selection entries with
//! names, exclusions, route patterns and ignored routes.

use std::time::Duration;

use ratatosk_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn config_file_entries_exclusions_and_route_patterns() {
    let _g = serial();
    let www = www_dir();
    let (p1, p2) = (free_port(), free_port());
    let _s1 = python_http_server(www.path(), p1);
    let s2 = python_http_server(www.path(), p2);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ratatosk.yaml");
    std::fs::write(
        &file,
        format!(
            "discovery:\n  services:\n    - name: storefront\n      namespace: shop\n      open_ports: {p1},{p2}\n  \
             exclude_services:\n    - target_pids: [{}]\n\
             routes:\n  patterns: [\"/users/{{id}}\"]\n  ignored_patterns: [/health]\n  unmatched: heuristic\n",
            s2.pid()
        ),
    )
    .expect("write config");
    let agent = Agent::start(&["--config", file.to_str().expect("utf-8 path")]);

    for path in ["/users/1", "/users/2", "/health", "/other/123"] {
        curl(&format!("http://127.0.0.1:{p1}{path}"));
        curl(&format!("http://127.0.0.1:{p2}{path}"));
    }
    let ours = |s: &Value| s["kind"] == "server";
    let spans = agent.wait_spans(3, WAIT, ours);
    let routes: Vec<String> = spans.iter().map(|s| attr(s, "http.route")).collect();
    // Every path is a 404 here: the pattern still names its requests,
    // the unmatched one mints no route (as an SDK sets none on 404s).
    assert_eq!(routes, ["/users/{id}", "/users/{id}", ""], "{spans:#?}");
    assert_eq!(spans[2]["name"], "GET", "{spans:#?}");
    for s in &spans {
        assert_eq!(
            attr(s, "server.port"),
            p1.to_string(),
            "the excluded pid is not traced"
        );
        assert_eq!(s["service.name"], "storefront", "the entry's name");
    }
    assert_eq!(spans[0]["name"], "GET /users/{id}");
    assert_eq!(agent.metric_sum("ratatosk_spans_ignored_total", &[]), 1.0);
}

#[test]
fn a_bad_config_file_is_refused_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "discovery:\n  services:\n    - open_prots: 80\n").expect("write");
    let out = std::process::Command::new(agent_bin())
        .args(["--config", file.to_str().expect("utf-8 path")])
        .output()
        .expect("run the agent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:7", file.display())) && err.contains("open_ports"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

/// Runs the agent expecting it to exit by itself; one that keeps running
/// (the old behaviour these tests guard against) is stopped after 20 s.
/// Returns its exit code (None if it had to be stopped) and its stderr.
fn run_briefly(cmd: &mut std::process::Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the agent");
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (code, err)
}

/// `--log-level verbose` would read as a target and silence every log line
/// (not even `ready`): it is refused at start like any other bad value.
#[test]
fn a_log_level_that_names_no_level_is_refused() {
    let (code, err) = run_briefly(
        std::process::Command::new(agent_bin())
            .args(["--log-level", "verbose", "--open-port", "1"])
            .env_remove("RUST_LOG"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--log-level: `verbose` is not a level"),
        "{err}"
    );
}

/// A metrics port that is taken fails start-up before any BPF program is
/// loaded or attached.
#[test]
fn a_taken_prometheus_port_fails_before_anything_is_loaded() {
    let _g = serial();
    require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (code, err) = run_briefly(
        std::process::Command::new(agent_bin())
            .args(["--open-port", "1", "--prometheus-address", "127.0.0.1"])
            .args(["--prometheus-port", &port.to_string()])
            .env("RUST_LOG", "info"),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("binding the metrics endpoint on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        !err.contains("capture attached") && !err.contains("tracefs"),
        "BPF was loaded before the port was checked:\n{err}"
    );
}

/// With no selector the agent says in one line how many processes it
/// instruments and how to narrow that, and leaves observability agents
/// alone (Beyla's default exclusions): a server whose executable is named
/// `prometheus` makes no span, the same server under its own name does.
#[test]
fn no_selector_says_so_and_skips_observability_agents() {
    let _g = serial();
    let www = www_dir();
    let bin = tempfile::tempdir().expect("tempdir");
    let disguised = bin.path().join("prometheus");
    // The interpreter itself (`python3` on PATH may be a wrapper script).
    let out = std::process::Command::new(tool("python3"))
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .expect("run python3");
    let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::copy(&real, &disguised).expect("copy python3");
    let (p1, p2) = (free_port(), free_port());
    let _collector = Proc::spawn(
        "python3 as prometheus",
        std::process::Command::new(&disguised)
            .args(["-m", "http.server", "--bind", "127.0.0.1", &p1.to_string()])
            .current_dir(www.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_port(p1, WAIT);
    let _app = python_http_server(www.path(), p2);
    let agent = Agent::start(&[]);
    let said = agent.log_lines_with("no selector: instrumenting");
    assert_eq!(said.len(), 1, "{}", agent.stderr_text());
    assert!(
        said[0].contains("running processes") && said[0].contains("--open-port"),
        "{}",
        said[0]
    );
    assert_eq!(
        agent.log_lines_with("instrumenting process").len(),
        0,
        "one line, not one per process:\n{}",
        agent.stderr_text()
    );
    assert_eq!(curl(&format!("http://127.0.0.1:{p2}/hello")), 200);
    assert_eq!(curl(&format!("http://127.0.0.1:{p1}/hello")), 200);
    let server_on =
        |p: u16| move |s: &Value| s["kind"] == "server" && attr(s, "server.port") == p.to_string();
    assert_eq!(agent.wait_spans(1, WAIT, server_on(p2)).len(), 1);
    assert!(
        agent.spans().iter().all(|s| !server_on(p1)(s)),
        "the observability agent was instrumented"
    );
}

/// A Beyla 2.x file drives the agent: `discovery.instrument` with an
/// `exe_path` glob and ports, `exclude_instrument` by pid, and route
/// patterns given as one comma-separated string.
#[test]
fn beyla_2_instrument_layout_drives_the_agent() {
    let _g = serial();
    let www = www_dir();
    let (p1, p2) = (free_port(), free_port());
    let _s1 = python_http_server(www.path(), p1);
    let s2 = python_http_server(www.path(), p2);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("beyla.yaml");
    std::fs::write(
        &file,
        format!(
            "discovery:\n  instrument:\n    - exe_path: \"*/python3*\"\n      open_ports: {p1},{p2}\n      name: storefront\n  \
             exclude_instrument:\n    - target_pids: [{}]\n\
             routes:\n  patterns: \"/users/{{id}},/files/*\"\n",
            s2.pid()
        ),
    )
    .expect("write config");
    let agent = Agent::start(&["--config", file.to_str().expect("utf-8 path")]);
    for port in [p1, p2] {
        curl(&format!("http://127.0.0.1:{port}/users/7"));
        curl(&format!("http://127.0.0.1:{port}/files/a.txt"));
    }
    let spans = agent.wait_spans(2, WAIT, |s: &Value| s["kind"] == "server");
    let got: Vec<(String, String, String)> = spans
        .iter()
        .map(|s| {
            (
                attr(s, "server.port"),
                attr(s, "http.route"),
                s["service.name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want = |route: &str| (p1.to_string(), route.to_string(), "storefront".to_string());
    assert_eq!(got, [want("/users/{id}"), want("/files/*")], "{spans:#?}");
}
