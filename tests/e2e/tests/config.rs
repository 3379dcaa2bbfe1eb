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
    assert_eq!(
        routes,
        ["/users/{id}", "/users/{id}", "/other/*"],
        "{spans:#?}"
    );
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
