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
