//! OTLP export end to end: real capture in the kernel, real servers, and a
//! real OpenTelemetry collector (rotel) receiving over gRPC and HTTP.

use std::time::{Duration, Instant};

use ratatosk_e2e::*;

const WAIT: Duration = Duration::from_secs(20);
const N: usize = 10;

/// Starts a python server with its own OTel identity, the agent exporting
/// to rotel with `env`, sends N requests and checks what rotel received.
fn spans_and_histogram_reach_rotel(protocol_env: &[(&str, String)]) {
    let _g = serial();
    let rotel = Rotel::start();
    let www = www_dir();
    let port = free_port();
    let server = python_http_server_on(
        www.path(),
        "127.0.0.1",
        port,
        &[
            ("OTEL_SERVICE_NAME", "shop"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.namespace=prod,deployment.environment=e2e",
            ),
        ],
    );
    let mut env: Vec<(&str, String)> = vec![
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
    ];
    env.extend(protocol_env.iter().map(|(k, v)| {
        (
            *k,
            v.replace("GRPC", &rotel.grpc_port.to_string())
                .replace("HTTP", &rotel.http_port.to_string()),
        )
    }));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let agent = Agent::start_with_env(&["--open-port", &port.to_string()], &env_ref);

    for _ in 0..N {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello")), 200);
    }
    let ours = |s: &OtlpSpan| {
        s.attr("server.port") == Some(&port.to_string()) && s.kind == "SPAN_KIND_SERVER"
    };
    let spans = rotel.wait_spans(N, WAIT, ours);
    assert_eq!(
        spans.len(),
        N,
        "rotel got:\n{}\nagent:\n{}",
        rotel.output(),
        agent.stderr_text()
    );
    let pid = server.pid().to_string();
    for s in &spans {
        assert_eq!(s.name, "GET /hello");
        assert_eq!(s.attr("http.route"), Some("/hello"));
        assert_eq!(s.attr("http.response.status_code"), Some("200"));
        assert_eq!(s.attr("url.scheme"), Some("http"));
        assert_eq!(s.trace_id.len(), 32);
        for (k, v) in [
            ("service.name", "shop"),
            ("service.namespace", "prod"),
            ("deployment.environment", "e2e"),
            ("os.type", "linux"),
            ("process.pid", pid.as_str()),
        ] {
            assert_eq!(s.resource_attr(k), Some(v), "{k} in {:?}", s.resource);
        }
        for k in [
            "service.instance.id",
            "host.name",
            "host.id",
            "process.executable.name",
            "process.executable.path",
            "process.runtime.name",
            "telemetry.sdk.language",
            "telemetry.distro.name",
        ] {
            assert!(
                s.resource_attr(k).is_some_and(|v| !v.is_empty()),
                "{k} missing in {:?}",
                s.resource
            );
        }
    }
    // The histogram's cumulative count reaches N under the same resource.
    let count = rotel.wait_latest_sum(
        "http.server.request.duration",
        WAIT,
        |p| {
            p.resource_attr("service.name") == Some("shop")
                && p.attr("server.port") == Some(&port.to_string())
        },
        |c| c >= N as f64,
    );
    assert_eq!(count, N as f64, "rotel got:\n{}", rotel.output());
    // Self-metrics go out too, under the agent's own resource.
    let self_metrics = || {
        rotel.points().iter().any(|p| {
            p.metric.starts_with("ratatosk_spans_emitted")
                && p.resource_attr("service.name") == Some("ratatosk")
        })
    };
    let start = Instant::now();
    while !self_metrics() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(self_metrics(), "no self-metrics in:\n{}", rotel.output());
}

#[test]
fn otlp_grpc_spans_and_histogram_reach_a_collector() {
    spans_and_histogram_reach_rotel(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:GRPC".into(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ]);
}

#[test]
fn otlp_http_protobuf_gzip_spans_and_histogram_reach_a_collector() {
    spans_and_histogram_reach_rotel(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:HTTP".into(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
    ]);
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn receiver_down_at_start_then_up_drops_are_counted_and_data_flows() {
    let _g = serial();
    let (grpc_port, http_port) = (free_port(), free_port());
    let www = www_dir();
    let port = free_port();
    let _server = python_http_server(www.path(), port);
    let endpoint = format!("http://127.0.0.1:{http_port}");
    let agent = Agent::start_with_env(
        &["--open-port", &port.to_string()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
    );
    // Nobody listens: spans pile up to the queue bound, the rest is dropped
    // and counted; the agent keeps capturing and its memory stays put.
    let rss_before = vm_rss_kib(agent.proc.pid());
    const DOWN: usize = 60;
    for _ in 0..DOWN {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello")), 200);
    }
    let spans = agent.wait_spans(DOWN, WAIT, |s| attr(s, "server.port") == port.to_string());
    assert_eq!(
        spans.len(),
        DOWN,
        "capture goes on while the receiver is down"
    );
    let start = Instant::now();
    let dropped = loop {
        let d = agent.metric_sum("ratatosk_otlp_dropped_total", &[("signal", "traces")]);
        if d >= (DOWN - 8 - 4) as f64 || start.elapsed() > WAIT {
            break d;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        dropped >= (DOWN - 8 - 4) as f64,
        "dropped {dropped}; metrics:\n{}",
        agent.metrics()
    );
    let rss_after = vm_rss_kib(agent.proc.pid());
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );

    // The receiver comes up: new requests are exported.
    let rotel = Rotel::start_on(grpc_port, http_port);
    let start = Instant::now();
    let mut got = 0;
    while start.elapsed() < Duration::from_secs(30) {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello?after=1")), 200);
        got = rotel
            .spans()
            .iter()
            .filter(|s| s.attr("url.query") == Some("after=1"))
            .count();
        if got > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        got > 0,
        "no span after the receiver came up; agent:\n{}",
        agent.stderr_text()
    );
    // Wait for the count rather than reading the first point that arrives:
    // that one can be an older snapshot the agent was still retrying.
    let count = rotel.wait_latest_sum(
        "http.server.request.duration",
        WAIT,
        |_| true,
        |c| c > DOWN as f64,
    );
    assert!(
        count > DOWN as f64,
        "metrics are cumulative: the requests made while the receiver was down count too ({count}); rotel got:\n{}",
        rotel.output()
    );
}
