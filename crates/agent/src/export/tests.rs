//! The exporter against real receivers: rotel (a real OpenTelemetry
//! collector, from the lab venv; see scripts/lab.sh) over gRPC and
//! HTTP/protobuf, and an in-test HTTP server that answers 503/400 to check
//! retries. Missing rotel is a failure, never a skip.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::config::export::{BatchSettings, Compression, Features, OtlpProtocol, OtlpSignal};
use crate::discovery::ProcInfo;
use crate::export::resource::tests::proc_info;
use crate::export::traces::tests::span;
use crate::selfmon::{SignalLabel, SignalReasonLabel};
use crate::spans::SpanKind;

fn rotel_path() -> PathBuf {
    let lab = std::env::var("RATATOSK_LAB").unwrap_or_else(|_| "/opt/ratatosk-lab".into());
    let lib = PathBuf::from(&lab).join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "rotel-agent not found under {}: run scripts/lab.sh (installs PyPI rotel)",
            lib.display()
        )
    })
}

/// An exporter for `st` on `rt`, counting into `sm`.
fn start(st: &OtlpSettings, sm: &SelfMetrics, rt: &tokio::runtime::Runtime) -> Exporter {
    Exporter::start(st, &Naming::default(), sm.clone(), rt.handle())
        .unwrap()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A rotel-agent printing everything it receives to a log file; killed
/// (by its own pid) when dropped.
struct Rotel {
    child: Child,
    log: PathBuf,
    grpc: u16,
    http: u16,
}

static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);

impl Rotel {
    fn start(grpc: u16, http: u16) -> Rotel {
        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        let log =
            std::env::temp_dir().join(format!("ratatosk-rotel-{}-{n}.log", std::process::id()));
        let out = File::create(&log).unwrap();
        let child = rotel_command(grpc, http)
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting rotel-agent");
        let r = Rotel {
            child,
            log,
            grpc,
            http,
        };
        let up = wait_until(Duration::from_secs(10), || {
            [grpc, http]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(up, "rotel did not listen; log:\n{}", r.log());
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn signal(endpoint: String, protocol: OtlpProtocol, compression: Compression) -> OtlpSignal {
    OtlpSignal {
        endpoint,
        protocol,
        headers: vec![("x-ratatosk-test".into(), "1".into())],
        timeout: Duration::from_secs(2),
        compression,
    }
}

fn settings(traces: Option<OtlpSignal>, metrics: Option<OtlpSignal>) -> OtlpSettings {
    OtlpSettings {
        traces,
        metrics,
        metric_interval: Duration::from_millis(300),
        metric_features: Features::default(),
        batch: BatchSettings {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(100),
        },
    }
}

/// A process description for this test process (so /proc reads work),
/// with a name and resource attributes of its own.
fn test_process(service: &str) -> Arc<ProcInfo> {
    let mut p = proc_info(std::process::id(), "ratatosk-test");
    p.service_name = service.into();
    p.resource_attributes = vec![("deployment.environment.name".into(), "lab".into())];
    Arc::new(p)
}

fn spans(p: &Arc<ProcInfo>, n: usize) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let mut s = span(p.clone(), 200, SpanKind::Server);
            s.trace_id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            s.span_id = (i as u64 + 1).to_be_bytes();
            s
        })
        .collect()
}

fn exported(m: &SelfMetrics, signal: &'static str) -> u64 {
    m.otlp_exported.get_or_create(&SignalLabel { signal }).get()
}

fn dropped(m: &SelfMetrics, signal: &'static str, reason: &'static str) -> u64 {
    m.otlp_dropped
        .get_or_create(&SignalReasonLabel { signal, reason })
        .get()
}

/// Drives the exporter like the outputs thread until `done`.
fn drive(e: &mut Exporter, timeout: Duration, done: impl Fn() -> bool) -> bool {
    wait_until(timeout, || {
        e.tick();
        done()
    })
}

fn export_n_spans(protocol: OtlpProtocol, compression: Compression, service: &str) {
    const N: usize = 40;
    let rotel = Rotel::start(free_port(), free_port());
    let (t, m) = match protocol {
        OtlpProtocol::Grpc => {
            let ep = format!("http://127.0.0.1:{}", rotel.grpc);
            (ep.clone(), ep)
        }
        OtlpProtocol::HttpProtobuf => (
            format!("http://127.0.0.1:{}/v1/traces", rotel.http),
            format!("http://127.0.0.1:{}/v1/metrics", rotel.http),
        ),
    };
    let rt = runtime();
    let sm = SelfMetrics::default();
    let mut e = start(
        &settings(
            Some(signal(t, protocol, compression)),
            Some(signal(m, protocol, compression)),
        ),
        &sm,
        &rt,
    );
    let p = test_process(service);
    let batch = spans(&p, N);
    e.push_spans(&batch);
    for s in &batch {
        e.record(s, 1);
    }
    let ok = drive(&mut e, Duration::from_secs(10), || {
        exported(&sm, "traces") == N as u64 && exported(&sm, "metrics") > 0
    });
    assert!(
        ok,
        "not exported; self-metrics: traces {} metrics {}; log:\n{}",
        exported(&sm, "traces"),
        exported(&sm, "metrics"),
        rotel.log()
    );
    e.shutdown(Duration::from_secs(5));
    // rotel prints what it received; give it a moment.
    let host = resource::Host::detect();
    let expect = [
        format!("-> service.name: Str({service})"),
        "-> deployment.environment.name: Str(lab)".to_string(),
        format!(
            "-> service.instance.id: Str({})",
            host.instance_id(std::process::id())
        ),
        "-> telemetry.distro.name: Str(ratatosk)".to_string(),
        "-> os.type: Str(linux)".to_string(),
        "-> service.name: Str(ratatosk)".to_string(),
        "-> Name: ratatosk_otlp_exported".to_string(),
    ];
    let complete = wait_until(Duration::from_secs(5), || {
        let log = rotel.log();
        log.matches("Kind           : SPAN_KIND_SERVER").count() >= N
            && histogram_counts(&log, "http.server.request.duration").contains(&(N as u64))
    });
    let log = rotel.log();
    assert!(
        complete,
        "rotel did not print {N} spans and a histogram of {N}:\n{log}"
    );
    assert_eq!(log.matches("Kind           : SPAN_KIND_SERVER").count(), N);
    for e in &expect {
        assert!(log.contains(e.as_str()), "{e} missing from:\n{log}");
    }
    assert_eq!(exported(&sm, "traces"), N as u64);
    assert_eq!(
        sm.otlp_retries
            .get_or_create(&SignalLabel { signal: "traces" })
            .get(),
        0
    );
}

/// `Count:` of every data point rotel printed under metric `name`.
fn histogram_counts(log: &str, name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        if let Some(n) = line.trim().strip_prefix("-> Name: ") {
            inside = n == name;
        } else if inside && let Some(c) = line.strip_prefix("Count: ") {
            out.extend(c.trim().parse::<u64>().ok());
        }
    }
    out
}

#[test]
fn exports_over_grpc_to_rotel() {
    export_n_spans(OtlpProtocol::Grpc, Compression::None, "otlp-grpc");
}

#[test]
fn exports_over_http_protobuf_to_rotel() {
    export_n_spans(OtlpProtocol::HttpProtobuf, Compression::None, "otlp-http");
}

#[test]
fn exports_gzipped_over_http_and_grpc_to_rotel() {
    export_n_spans(
        OtlpProtocol::HttpProtobuf,
        Compression::Gzip,
        "otlp-http-gzip",
    );
    export_n_spans(OtlpProtocol::Grpc, Compression::Gzip, "otlp-grpc-gzip");
}

/// Receiver down at start: spans beyond the small queue are dropped and
/// counted, memory stays at the queue bound; once a receiver listens on
/// the port, data flows without restarting anything.
#[test]
fn receiver_down_then_up() {
    let (grpc, http) = (free_port(), free_port());
    let rt = runtime();
    let sm = SelfMetrics::default();
    let mut st = settings(
        Some(OtlpSignal {
            timeout: Duration::from_millis(500),
            ..signal(
                format!("http://127.0.0.1:{grpc}"),
                OtlpProtocol::Grpc,
                Compression::None,
            )
        }),
        None,
    );
    st.batch = BatchSettings {
        max_queue_size: 100,
        max_export_batch_size: 10,
        schedule_delay: Duration::from_millis(50),
    };
    let mut e = start(&st, &sm, &rt);
    let p = test_process("otlp-down-up");
    let mut pushed = 0u64;
    for _ in 0..20 {
        e.push_spans(&spans(&p, 50));
        pushed += 50;
        e.tick();
        let t = e.traces.as_ref().unwrap();
        let waiting = t.batcher.len() as u64 + t.task.in_flight.load(Ordering::Relaxed);
        assert!(waiting <= 110, "queue grew past its bound: {waiting}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let queue_full = dropped(&sm, "traces", "queue_full");
    // 1000 pushed; at most 100 waiting (queued or handed over) and one
    // batch of 10 being sent.
    assert!(queue_full >= 1000 - 100 - 10, "dropped {queue_full}");
    assert_eq!(exported(&sm, "traces"), 0);

    let rotel = Rotel::start(grpc, http);
    let flowed = drive(&mut e, Duration::from_secs(15), || {
        exported(&sm, "traces") > 0
    });
    assert!(
        flowed,
        "nothing exported after the receiver came up; log:\n{}",
        rotel.log()
    );
    e.push_spans(&spans(&p, 30));
    pushed += 30;
    e.shutdown(Duration::from_secs(10));
    // Every span is accounted for: exported or dropped for a reason.
    let accounted = exported(&sm, "traces")
        + ["queue_full", "retries_exhausted", "rejected", "shutdown"]
            .iter()
            .map(|r| dropped(&sm, "traces", r))
            .sum::<u64>();
    assert_eq!(accounted, pushed);
    assert!(rotel.log().contains("-> service.name: Str(otlp-down-up)"));
    println!(
        "down/up: pushed {pushed}, exported {}, queue_full {}, retries_exhausted {}, retries {}",
        exported(&sm, "traces"),
        dropped(&sm, "traces", "queue_full"),
        dropped(&sm, "traces", "retries_exhausted"),
        sm.otlp_retries
            .get_or_create(&SignalLabel { signal: "traces" })
            .get()
    );
}

/// What the in-test receiver saw.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(String, Instant, Option<String>)>,
}

/// A real HTTP server: `/flaky/v1/traces` answers 503 with
/// `Retry-After: 1` once, then 200; `/bad/v1/traces` always 400.
async fn start_test_receiver(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::post;
    async fn handle(
        axum::extract::State(seen): axum::extract::State<Arc<Mutex<Seen>>>,
        uri: Uri,
        headers: HeaderMap,
        _body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let path = uri.path().to_string();
        let n = {
            let mut s = seen.lock().unwrap();
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            s.arrivals.push((path.clone(), Instant::now(), ct));
            s.arrivals.iter().filter(|(p, _, _)| *p == path).count()
        };
        match path.as_str() {
            "/flaky/v1/traces" if n == 1 => (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "busy",
            )
                .into_response(),
            "/bad/v1/traces" => (StatusCode::BAD_REQUEST, "malformed").into_response(),
            _ => StatusCode::OK.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/{*path}", post(handle))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[test]
fn retries_after_503_and_not_after_400() {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = rt.block_on(start_test_receiver(seen.clone()));
    let run = |path: &str| {
        let sm = SelfMetrics::default();
        let mut e = start(
            &settings(
                Some(signal(
                    format!("http://{addr}{path}"),
                    OtlpProtocol::HttpProtobuf,
                    Compression::None,
                )),
                None,
            ),
            &sm,
            &rt,
        );
        e.push_spans(&spans(&test_process("otlp-retry"), 5));
        drive(&mut e, Duration::from_secs(10), || {
            exported(&sm, "traces") + dropped(&sm, "traces", "rejected") == 5
        });
        e.shutdown(Duration::from_secs(2));
        sm
    };

    let sm = run("/flaky/v1/traces");
    assert_eq!(exported(&sm, "traces"), 5);
    assert_eq!(
        sm.otlp_retries
            .get_or_create(&SignalLabel { signal: "traces" })
            .get(),
        1
    );
    {
        let s = seen.lock().unwrap();
        let times: Vec<_> = s
            .arrivals
            .iter()
            .filter(|a| a.0 == "/flaky/v1/traces")
            .collect();
        assert_eq!(times.len(), 2);
        let waited = times[1].1 - times[0].1;
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
        assert_eq!(times[0].2.as_deref(), Some("application/x-protobuf"));
    }

    let sm = run("/bad/v1/traces");
    assert_eq!(exported(&sm, "traces"), 0);
    assert_eq!(dropped(&sm, "traces", "rejected"), 5);
    assert_eq!(
        sm.otlp_retries
            .get_or_create(&SignalLabel { signal: "traces" })
            .get(),
        0
    );
    let s = seen.lock().unwrap();
    assert_eq!(
        s.arrivals
            .iter()
            .filter(|a| a.0 == "/bad/v1/traces")
            .count(),
        1
    );
}

/// `rotel-agent` receiving OTLP on both ports and discarding it.
fn rotel_command(grpc: u16, http: u16) -> Command {
    let mut cmd = Command::new(rotel_path());
    cmd.arg("start")
        .arg("--otlp-grpc-endpoint")
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--otlp-http-endpoint")
        .arg(format!("127.0.0.1:{http}"))
        .args(["--exporter", "blackhole"]);
    cmd
}

/// A rotel-agent that discards everything without printing (for rates).
fn quiet_rotel(grpc: u16, http: u16) -> Child {
    let child = rotel_command(grpc, http)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rotel-agent");
    assert!(wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", grpc)).is_ok()
    }));
    child
}

/// The exporter keeps up with a steady span stream to a real receiver
/// (figures printed; the floor is far below what it does, even
/// unoptimised, so the test checks that nothing is lost at a sane rate).
#[test]
fn sustained_rate_to_rotel() {
    let (grpc, http) = (free_port(), free_port());
    let mut rotel = quiet_rotel(grpc, http);
    let rt = runtime();
    let sm = SelfMetrics::default();
    let mut st = settings(
        Some(signal(
            format!("http://127.0.0.1:{grpc}"),
            OtlpProtocol::Grpc,
            Compression::None,
        )),
        None,
    );
    st.batch.schedule_delay = Duration::from_millis(20);
    let mut e = start(&st, &sm, &rt);
    let p = test_process("otlp-rate");
    let chunk = spans(&p, 256);
    let mut one = Vec::new();
    traces::put_span(&mut one, &chunk[0]);
    let wire = one.len();
    // Paced: 256 spans per 20 ms (12 800/s); nothing may be lost.
    const TOTAL: u64 = 20_000;
    let start = Instant::now();
    let mut offered = 0;
    let mut push_time = Duration::ZERO;
    while offered < TOTAL {
        let t = Instant::now();
        e.push_spans(&chunk);
        e.tick();
        push_time += t.elapsed();
        offered += chunk.len() as u64;
        std::thread::sleep(Duration::from_millis(20));
    }
    drive(&mut e, Duration::from_secs(10), || {
        exported(&sm, "traces") + dropped(&sm, "traces", "queue_full") >= offered
    });
    let paced = exported(&sm, "traces");
    println!(
        "paced: {paced} of {offered} spans exported in {:.2}s; outputs-thread cost {:.1} µs/span; \
         {wire} B/span on the wire",
        start.elapsed().as_secs_f64(),
        push_time.as_secs_f64() * 1e6 / offered as f64,
    );
    assert_eq!(paced, offered, "spans lost at 12 800/s");
    assert_eq!(dropped(&sm, "traces", "queue_full"), 0);

    // Saturated: refill the queue whenever there is room, for 2 s: what
    // one in-flight request at a time sustains.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let t = e.traces.as_ref().unwrap();
        let waiting = t.batcher.len() + t.task.in_flight.load(Ordering::Relaxed) as usize;
        if waiting + chunk.len() <= st.batch.max_queue_size {
            e.push_spans(&chunk);
        }
        e.tick();
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let burst = exported(&sm, "traces") - paced;
    println!("saturated: {:.0} spans/s exported", burst as f64 / secs);
    e.shutdown(Duration::from_secs(5));
    let _ = rotel.kill();
    let _ = rotel.wait();
    assert_eq!(dropped(&sm, "traces", "queue_full"), 0);
}

/// Log output of a test, shared with the subscriber that writes it.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A receiver that refuses connections is reported at the first failed
/// attempt, within one export timeout (not when the retries run out, three
/// timeouts later), naming the endpoint, the signal and why.
#[test]
fn an_unreachable_receiver_is_named_at_the_first_failure() {
    let port = free_port();
    for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
        let endpoint = match protocol {
            OtlpProtocol::Grpc => format!("http://127.0.0.1:{port}"),
            OtlpProtocol::HttpProtobuf => format!("http://127.0.0.1:{port}/v1/traces"),
        };
        let mut sig = signal(endpoint.clone(), protocol, Compression::None);
        sig.timeout = Duration::from_secs(2);
        let logs = LogBuf::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(async {
                let sender = transport::Sender {
                    transport: Transport::new(&sig).unwrap(),
                    endpoint: endpoint.as_str().into(),
                    metrics: SelfMetrics::default(),
                    logs: Arc::new(Mutex::new(retry::LogLimiter::new(LOG_EVERY))),
                };
                let req = transport::Request::traces(bytes::Bytes::new(), 1);
                // Cut short well within the export timeout.
                let _ = tokio::time::timeout(Duration::from_secs(1), sender.export(&req)).await;
            });
        });
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
        assert!(
            text.contains("OTLP export failed, retrying")
                && text.contains(&format!("endpoint={endpoint}"))
                && text.contains("signal=\"traces\"")
                && text.to_ascii_lowercase().contains("connection refused"),
            "{protocol:?}: {text}"
        );
    }
}
