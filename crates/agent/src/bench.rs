//! The pipeline benchmark's driver (`benches/pipeline.rs`, run by
//! `bench/pipeline.sh`): a realistic stream of keep-alive HTTP/1.1
//! exchanges, as the ring-buffer records the kernel writes, through the
//! code the agent runs, with the cost per span of each stage:
//!
//! - `capture`: records -> decode -> discovery -> tracker -> HTTP parser ->
//!   span builder -> batches on `tracker_to_outputs` (the reader thread);
//! - `outputs`: those batches -> Prometheus RED histograms -> OTLP RED
//!   store -> OTLP span queue -> export requests -> the bytes one send
//!   attempt puts in the gRPC message (the outputs thread's and the
//!   sender's work, without the network);
//! - `grpc` (with `--otlp-grpc URL`): the same batches through the real
//!   exporter (traces and metrics every second, over gRPC) to a real
//!   receiver; CPU of the whole process, tokio included.
//!
//! Heap allocations are counted by the bench binary's global allocator.

use std::mem::offset_of;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use ratatosk_abi::{
    rt_conn_event, rt_conn_origin, rt_data_event, rt_direction, rt_event_kind, rt_header, rt_tuple,
};
use ratatosk_bpf::RecordSink;
use ratatosk_protocols::parser::Limits;
use rustix::time::{ClockId, clock_gettime};

use crate::clock::Clock;
use crate::config::Selection;
use crate::config::export::{
    BatchSettings, Compression, Features, Naming, OtlpProtocol, OtlpSettings, OtlpSignal,
    RouteSettings, Sampler,
};
use crate::conn::Tracker;
use crate::discovery::Discovery;
use crate::export::Exporter;
use crate::export::batch::SpanBatcher;
use crate::export::metrics::MetricStore;
use crate::export::resource::{Host, Resources};
use crate::output::Batch;
use crate::queue;
use crate::reader::Reader;
use crate::red::prometheus::PrometheusRed;
use crate::selfmon::{QueueLabel, SelfMetrics, SignalLabel, SignalReasonLabel};
use crate::spans::route::Routes;
use crate::spans::{Span, SpanBuilder};

/// Heap allocations and bytes allocated so far, from the bench binary's
/// allocator.
pub type AllocCounter = fn() -> (u64, u64);

struct Options {
    requests: usize,
    connections: usize,
    rounds: usize,
    otlp_grpc: Option<String>,
}

const USAGE: &str = "usage: pipeline [--requests N (100000)] [--connections N (8)] \
[--rounds N (5)] [--otlp-grpc http://HOST:PORT]";

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        requests: 100_000,
        connections: 8,
        rounds: 5,
        otlp_grpc: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // cargo bench passes --bench to harness-less benches.
        if a == "--bench" {
            continue;
        }
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        let number = |v: &String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{a}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--requests" => o.requests = number(value()?)?,
            "--connections" => o.connections = number(value()?)?,
            "--rounds" => o.rounds = number(value()?)?,
            "--otlp-grpc" => o.otlp_grpc = Some(value()?.clone()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(o)
}

/// What a stage cost, in total.
#[derive(Clone, Copy, Default)]
struct Cost {
    wall_ns: u64,
    cpu_ns: u64,
    allocs: u64,
    bytes: u64,
}

fn cpu_ns(id: ClockId) -> u64 {
    let t = clock_gettime(id);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Runs `f` and measures it; `clock` is the thread's or the process's
/// CPU clock.
fn measure<T>(allocs: AllocCounter, clock: ClockId, f: impl FnOnce() -> T) -> (T, Cost) {
    let (a0, b0) = allocs();
    let c0 = cpu_ns(clock);
    let t0 = Instant::now();
    let out = f();
    let wall = t0.elapsed();
    let c1 = cpu_ns(clock);
    let (a1, b1) = allocs();
    let cost = Cost {
        wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        cpu_ns: c1.saturating_sub(c0),
        allocs: a1.saturating_sub(a0),
        bytes: b1.saturating_sub(b0),
    };
    (out, cost)
}

// ---- the record stream ----

const SERVER: &str = "127.0.0.1:8080";
/// Request paths, in turn: a static file (wrk's bench target), API paths
/// whose ids the route heuristic folds, a query string.
const PATHS: [&str; 4] = [
    "/file",
    "/api/users/1234/orders",
    "/static/app.js?v=3",
    "/api/items/987654",
];
/// An upstream SDK's context on every fourth request.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Mon, 23 Nov 2026 17:56:21 GMT\r\nContent-Type: application/octet-stream\r\n\
Content-Length: 13\r\nLast-Modified: Mon, 23 Nov 2026 17:50:00 GMT\r\n\
Connection: keep-alive\r\nETag: \"6563b2c8-d\"\r\nAccept-Ranges: bytes\r\n\r\n";
/// The 13-byte body goes out by sendfile: counted, not captured.
const BODY_LEN: u64 = 13;

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn header(b: &mut [u8], kind: rt_event_kind, tgid: u32, ts: u64) {
    put(b, 0, &[kind as u8]);
    put(b, offset_of!(rt_header, tgid), &tgid.to_ne_bytes());
    put(b, offset_of!(rt_header, tid), &tgid.to_ne_bytes());
    put(b, offset_of!(rt_header, ts_ns), &ts.to_ne_bytes());
}

fn tuple(b: &mut [u8], base: usize, local: SocketAddr, remote: SocketAddr) {
    let v4 = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets(),
        std::net::IpAddr::V6(_) => [0; 4],
    };
    put(b, base + offset_of!(rt_tuple, family), &2u16.to_ne_bytes());
    put(b, base + offset_of!(rt_tuple, saddr), &v4(local));
    put(b, base + offset_of!(rt_tuple, daddr), &v4(remote));
    put(
        b,
        base + offset_of!(rt_tuple, sport),
        &local.port().to_ne_bytes(),
    );
    put(
        b,
        base + offset_of!(rt_tuple, dport),
        &remote.port().to_ne_bytes(),
    );
}

struct Conn {
    sock: u64,
    fd: u32,
    remote: SocketAddr,
}

fn conn_open(c: &Conn, tgid: u32, ts: u64, local: SocketAddr) -> Vec<u8> {
    let mut b = vec![0u8; std::mem::size_of::<rt_conn_event>()];
    header(&mut b, rt_event_kind::RT_EV_CONN_OPEN, tgid, ts);
    put(
        &mut b,
        offset_of!(rt_conn_event, sock_id),
        &c.sock.to_ne_bytes(),
    );
    put(&mut b, offset_of!(rt_conn_event, fd), &c.fd.to_ne_bytes());
    put(
        &mut b,
        offset_of!(rt_conn_event, origin),
        &[rt_conn_origin::RT_ORIGIN_ACCEPT as u8],
    );
    tuple(&mut b, offset_of!(rt_conn_event, tuple), local, c.remote);
    b
}

fn data(
    c: &Conn,
    tgid: u32,
    ts: u64,
    local: SocketAddr,
    dir: rt_direction,
    payload: &[u8],
    len: u64,
) -> Vec<u8> {
    let off = offset_of!(rt_data_event, data);
    let mut b = vec![0u8; off + payload.len()];
    header(&mut b, rt_event_kind::RT_EV_DATA, tgid, ts);
    put(
        &mut b,
        offset_of!(rt_data_event, sock_id),
        &c.sock.to_ne_bytes(),
    );
    put(&mut b, offset_of!(rt_data_event, len), &len.to_ne_bytes());
    put(&mut b, offset_of!(rt_data_event, fd), &c.fd.to_ne_bytes());
    let captured = u32::try_from(payload.len()).unwrap_or(0);
    put(
        &mut b,
        offset_of!(rt_data_event, captured),
        &captured.to_ne_bytes(),
    );
    put(&mut b, offset_of!(rt_data_event, direction), &[dir as u8]);
    tuple(&mut b, offset_of!(rt_data_event, tuple), local, c.remote);
    put(&mut b, off, payload);
    b
}

/// `requests` exchanges over `connections` keep-alive connections of the
/// process `tgid`, round robin, as nginx shows them: the request read, the
/// response head written, the body sent by sendfile.
fn records(requests: usize, connections: usize, tgid: u32) -> Vec<Vec<u8>> {
    let local: SocketAddr = SERVER
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let conns: Vec<Conn> = (0..connections)
        .map(|i| Conn {
            sock: 0xffff_8880_0000_0000 + (i as u64) * 0x1000,
            fd: 10 + i as u32,
            remote: SocketAddr::from(([127, 0, 0, 1], 40000 + (i % 20000) as u16)),
        })
        .collect();
    let mut ts = 1_000_000_000u64;
    let mut out = Vec::with_capacity(connections + requests * 3);
    for c in &conns {
        out.push(conn_open(c, tgid, ts, local));
        ts += 1_000;
    }
    for i in 0..requests {
        let c = &conns[i % conns.len()];
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {SERVER}\r\n",
            PATHS[i % PATHS.len()]
        );
        if i % 4 == 3 {
            req.push_str(&format!("traceparent: {TRACEPARENT}\r\n"));
        }
        req.push_str("\r\n");
        let r = req.as_bytes();
        out.push(data(
            c,
            tgid,
            ts,
            local,
            rt_direction::RT_DIR_INGRESS,
            r,
            r.len() as u64,
        ));
        ts += 20_000;
        out.push(data(
            c,
            tgid,
            ts,
            local,
            rt_direction::RT_DIR_EGRESS,
            RESPONSE_HEAD,
            RESPONSE_HEAD.len() as u64,
        ));
        ts += 2_000;
        out.push(data(
            c,
            tgid,
            ts,
            local,
            rt_direction::RT_DIR_EGRESS,
            &[],
            BODY_LEN,
        ));
        ts += 5_000;
    }
    out
}

// ---- stages ----

/// Records between two drains of the reader (the ring buffer is drained in
/// batches of thousands of records under load).
const DRAIN_EVERY: usize = 1024;

/// The reader thread's work over `recs`; returns the batches it queued.
fn capture(recs: &[Vec<u8>], requests: usize) -> Result<Vec<Vec<Span>>, String> {
    let metrics = SelfMetrics::default();
    let discovery = Discovery::new(
        Selection::default(),
        Naming::default(),
        None,
        1024,
        metrics.clone(),
    );
    let tracker = Tracker::new(16384, Limits::default(), metrics.clone());
    let spans = SpanBuilder::new(Clock::new(), Sampler::default());
    let routes = Routes::new(&RouteSettings::default()).map_err(|e| format!("routes: {e}"))?;
    let (tx, rx) = queue::bounded::<Batch>("tracker_to_outputs", requests, metrics.clone());
    let mut reader = Reader::new(
        discovery,
        tracker,
        spans,
        routes,
        tx,
        metrics,
        Arc::new(AtomicBool::new(false)),
    );
    // As the agent runs by default (context propagation `all`).
    reader.link_traces(std::env::var_os("RATATOSK_BENCH_NO_LINK").is_none());
    let mut out = Vec::with_capacity(requests / 256 + 2);
    for chunk in recs.chunks(DRAIN_EVERY) {
        for r in chunk {
            reader.record(r);
        }
        reader.drained();
        out.extend(rx.try_iter().filter_map(|b| match b {
            Batch::Spans(s) => Some(s),
            Batch::ProcessExit(_) => None,
        }));
    }
    Ok(out)
}

/// What the outputs thread does with every batch when Prometheus and OTLP
/// (traces and metrics) are on, up to the bytes of each export request;
/// returns the requests' total size.
fn outputs(batches: Vec<Vec<Span>>, registry: &mut Registry) -> u64 {
    let mut prometheus = PrometheusRed::new(
        registry,
        crate::export::MAX_SERIES,
        Default::default(),
        Default::default(),
        Duration::from_secs(300),
    );
    let mut resources = Resources::new(Host::detect(), Naming::default());
    let mut store = MetricStore::new(crate::export::MAX_SERIES);
    let mut batcher = SpanBatcher::new(BatchSettings::default());
    let mut wire = 0u64;
    let mut send = |batcher: &mut SpanBatcher, force: bool| {
        while batcher.is_due(force) {
            let Some(req) = batcher.take() else { break };
            // One send attempt: what the transport hands to tonic.
            let attempt = req.clone();
            wire += attempt.body().len() as u64;
        }
    };
    for batch in batches {
        // Exporter::push_spans
        for s in batch.iter().filter(|s| s.sampled) {
            batcher.push(resources.get(&s.process), s);
        }
        send(&mut batcher, false);
        let now = crate::export::now_ns();
        prometheus.record(&batch, now);
        for s in &batch {
            // Exporter::record
            store.record(s, resources.get(&s.process), now);
        }
    }
    send(&mut batcher, true);
    wire
}

/// The real exporter over gRPC to `endpoint`; returns (spans exported,
/// spans dropped).
fn grpc(batches: Vec<Vec<Span>>, endpoint: &str) -> Result<(u64, u64), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let metrics = SelfMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut prometheus = PrometheusRed::new(
        &mut registry,
        crate::export::MAX_SERIES,
        metrics.prometheus_series_limit.clone(),
        metrics.prometheus_series_expired.clone(),
        Duration::from_secs(300),
    );
    let signal = OtlpSignal {
        endpoint: endpoint.to_string(),
        protocol: OtlpProtocol::Grpc,
        headers: Vec::new(),
        timeout: Duration::from_secs(10),
        compression: Compression::None,
    };
    let settings = OtlpSettings {
        traces: Some(signal.clone()),
        metrics: Some(signal),
        metric_interval: Duration::from_secs(1),
        metric_features: Features::default(),
        batch: BatchSettings::default(),
    };
    let mut e = Exporter::start(&settings, &Naming::default(), metrics.clone(), rt.handle())
        .map_err(|e| format!("exporter: {e:#}"))?
        .ok_or("exporter not started")?;
    let fill = metrics.queue_fill.get_or_create(&QueueLabel {
        queue: "outputs_to_otlp",
    });
    let room = BatchSettings::default().max_queue_size as i64 / 2;
    for batch in batches {
        // Like the outputs thread, but never overflowing the span queue: a
        // receiver slower than the bench would only measure drops.
        while fill.get() > room {
            std::thread::sleep(Duration::from_millis(1));
            // An empty push refreshes the fill gauge.
            e.push_spans(&[]);
            e.tick();
        }
        e.push_spans(&batch);
        let now = crate::export::now_ns();
        prometheus.record(&batch, now);
        for s in &batch {
            e.record(s, now);
        }
        e.tick();
    }
    e.shutdown(Duration::from_secs(30));
    let exported = metrics
        .otlp_exported
        .get_or_create(&SignalLabel { signal: "traces" })
        .get();
    let dropped = [
        "queue_full",
        "sender_gone",
        "retries_exhausted",
        "rejected",
        "partial_rejected",
        "shutdown",
    ]
    .into_iter()
    .map(|reason| {
        metrics
            .otlp_dropped
            .get_or_create(&SignalReasonLabel {
                signal: "traces",
                reason,
            })
            .get()
    })
    .sum();
    Ok((exported, dropped))
}

// ---- report ----

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn report(stage: &str, spans: usize, costs: &[Cost]) {
    let per = |f: fn(&Cost) -> u64| -> Vec<f64> {
        costs
            .iter()
            .map(|c| f(c) as f64 / spans.max(1) as f64)
            .collect()
    };
    let wall = per(|c| c.wall_ns);
    let min = wall.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{stage:<9} {spans:>8} {:>10.0} {min:>8.0} {:>10.0} {:>12.2} {:>12.0}",
        median(wall.clone()),
        median(per(|c| c.cpu_ns)),
        median(per(|c| c.allocs)),
        median(per(|c| c.bytes)),
    );
}

/// The bench binary's `main`.
pub fn main(allocs: AllocCounter) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pipeline: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tgid = std::process::id();
    let recs = records(o.requests, o.connections, tgid);
    println!(
        "{} keep-alive HTTP/1.1 exchanges over {} connections ({} records), {} rounds",
        o.requests,
        o.connections,
        recs.len(),
        o.rounds
    );
    println!(
        "{:<9} {:>8} {:>10} {:>8} {:>10} {:>12} {:>12}",
        "stage", "spans", "ns/span", "min", "cpu ns", "allocs/span", "bytes/span"
    );
    let mut cap_costs = Vec::new();
    let mut out_costs = Vec::new();
    let mut spans = 0;
    let mut wire = 0;
    for _ in 0..o.rounds {
        let (batches, c) = measure(allocs, ClockId::ThreadCPUTime, || {
            capture(&recs, o.requests)
        });
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                eprintln!("pipeline: {e}");
                return ExitCode::FAILURE;
            }
        };
        cap_costs.push(c);
        spans = batches.iter().map(Vec::len).sum();
        let mut registry = Registry::default();
        let (w, c) = measure(allocs, ClockId::ThreadCPUTime, || {
            outputs(batches, &mut registry)
        });
        wire = w;
        out_costs.push(c);
    }
    if spans != o.requests {
        eprintln!(
            "pipeline: {spans} spans from {} requests: the stream or the pipeline is broken",
            o.requests
        );
        return ExitCode::FAILURE;
    }
    report("capture", spans, &cap_costs);
    report("outputs", spans, &out_costs);
    println!(
        "          (OTLP: {:.0} protobuf bytes per span)",
        wire as f64 / spans as f64
    );
    if let Some(endpoint) = &o.otlp_grpc {
        let mut costs = Vec::new();
        for _ in 0..o.rounds {
            let (r, c) = match capture(&recs, o.requests) {
                Ok(batches) => measure(allocs, ClockId::ProcessCPUTime, || grpc(batches, endpoint)),
                Err(e) => (Err(e), Cost::default()),
            };
            match r {
                Ok((exported, dropped)) if exported == spans as u64 && dropped == 0 => {}
                Ok((exported, dropped)) => {
                    eprintln!(
                        "pipeline: gRPC: {exported} of {spans} spans exported, {dropped} dropped"
                    );
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("pipeline: gRPC: {e}");
                    return ExitCode::FAILURE;
                }
            }
            costs.push(c);
        }
        report("grpc", spans, &costs);
        println!(
            "          (grpc: cpu of every thread, tokio included; wall includes the receiver)"
        );
    }
    ExitCode::SUCCESS
}
