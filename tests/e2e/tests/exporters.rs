//! What leaves the agent reaches real backends: a real Prometheus server
//! scraping `/metrics`, real OTLP receivers.

use std::time::{Duration, Instant};

use ratatosk_e2e::*;

#[test]
fn prometheus_server_scrapes_the_request_count() {
    let _g = serial();
    let www = www_dir();
    let port = free_port();
    let _server = python_http_server(www.path(), port);
    let agent = Agent::start(&["--open-port", &port.to_string()]);
    let prom = Prometheus::start(agent.metrics_port);

    const N: usize = 12;
    for _ in 0..N {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello")), 200);
    }
    let q = format!(
        "sum(http_server_request_duration_seconds_count{{server_port=\"{port}\",http_route=\"/hello\"}})"
    );
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(30) {
        last = prom.query(&q);
        if last == Some(N as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        last,
        Some(N as f64),
        "PromQL `{q}`; agent metrics:\n{}",
        agent.metrics()
    );
    // The scrape itself is healthy and the resource shows up as target_info.
    assert_eq!(prom.query("up{job=\"ratatosk\"}"), Some(1.0));
    assert!(prom.query("count(target_info)").unwrap_or(0.0) >= 1.0);
}

/// A process's exit removes its own `target_info` only; its series stay
/// until the TTL, then go, counted.
#[test]
fn an_exit_removes_only_its_target_info_and_series_expire_after_the_ttl() {
    let _g = serial();
    let www = www_dir();
    let (pa, pb) = (free_port(), free_port());
    let mut a = python_http_server(www.path(), pa);
    let _b = python_http_server(www.path(), pb);
    let agent = Agent::start(&[
        "--open-port",
        &format!("{pa},{pb}"),
        "--prometheus-ttl",
        "3s",
    ]);
    assert_eq!(curl(&format!("http://127.0.0.1:{pa}/hello")), 200);
    assert_eq!(curl(&format!("http://127.0.0.1:{pb}/hello")), 200);
    let pid = |p: &Proc| format!("process_pid=\"{}\"", p.pid());
    let a_pid = pid(&a);
    let wait_for = |what: &str, ok: &dyn Fn(&str) -> bool| {
        let start = Instant::now();
        loop {
            let m = agent.metrics();
            if ok(&m) {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}; metrics:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("both processes' target_info", &|m| {
        m.contains(&a_pid) && m.contains(&format!("server_port=\"{pb}\""))
    });
    a.stop();
    // Keep B's series fresh while A's age.
    let m = wait_for("A's target_info gone, B's kept", &|m| {
        let _ = curl(&format!("http://127.0.0.1:{pb}/hello"));
        !m.contains(&a_pid)
            && m.lines().any(|l| {
                l.starts_with("target_info") && l.contains(&format!("process_pid=\"{}\"", _b.pid()))
            })
    });
    assert!(
        m.contains(&format!("server_port=\"{pa}\"")),
        "A's series stay until the TTL:\n{m}"
    );
    let m = wait_for("A's series expired", &|m| {
        let _ = curl(&format!("http://127.0.0.1:{pb}/hello"));
        !m.contains(&format!("server_port=\"{pa}\""))
    });
    assert!(m.contains(&format!("server_port=\"{pb}\"")), "{m}");
    assert!(
        metric_sum(&m, "ratatosk_prometheus_series_expired_total", &[]) >= 1.0,
        "{m}"
    );
}
