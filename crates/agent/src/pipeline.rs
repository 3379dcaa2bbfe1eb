//! The one place that wires the pipeline together:
//!
//! ```text
//! kernel (BPF) --ring buffer--> reader thread: decode -> discovery
//!                                               -> conn tracker -> HTTP parser -> span builder
//!              --tracker_to_outputs (bounded)--> outputs thread: RED metrics, trace printer
//! tokio: /metrics endpoint, signals
//! ```
//!
//! The hot path (decode, track, parse, build) runs on one plain thread
//! that owns all its state, so it takes no locks. Network I/O lives on
//! tokio.

use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, TryRecvError};
use prometheus_client::registry::Registry;
use ratatosk_bpf::{Capture, Counters, LoadOptions, RecordSink, SyscallHooks};
use ratatosk_protocols::http1::Limits;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, HookMode};
use crate::conn::{Finished, Tracker};
use crate::decode::{self, ConnOrigin, Record};
use crate::discovery::Discovery;
use crate::metrics::HttpMetrics;
use crate::output::printer::Printer;
use crate::output::prometheus;
use crate::queue::{self, QueueTx};
use crate::selfmon::{KindLabel, QueueLabel, SelfMetrics};
use crate::spans::route::{self, RouteCap};
use crate::spans::{Span, SpanBuilder};

/// What the reader hands to the outputs stage.
pub enum Batch {
    Spans(Vec<Span>),
    ProcessExit(u32),
}

/// Batches of spans waiting for the outputs thread.
const TRACKER_TO_OUTPUTS_CAPACITY: usize = 1024;
/// Spans per batch before the reader sends one without waiting for a drain.
const BATCH_SPANS: usize = 256;
/// How often the reader drains the ring buffer when the kernel did not
/// wake it (the kernel only wakes it once enough data waits).
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the outputs thread drains its queue.
const OUTPUTS_TICK: Duration = Duration::from_millis(20);
/// Distinct routes per service before they fold into `/**`.
const MAX_ROUTES_PER_SERVICE: usize = 100;

pub fn run(config: Config) -> anyhow::Result<()> {
    let self_metrics = SelfMetrics::default();
    let mut registry = Registry::default();
    self_metrics.register(&mut registry);
    let http_metrics = HttpMetrics::new(&mut registry);
    let registry = Arc::new(Mutex::new(registry));

    // Privileges and kernel features first: a clear one-line refusal
    // before anything is touched.
    ratatosk_bpf::preflight().context("checking the kernel and privileges")?;
    match ratatosk_bpf::ensure_tracefs() {
        Ok(true) => info!("mounted tracefs on /sys/kernel/tracing"),
        Ok(false) => {}
        Err(e) => warn!(error = %e, "tracefs unavailable (not needed for capture)"),
    }
    let sel = &config.selection;
    let trace_all = sel.is_everything();
    let capture = Capture::load(&LoadOptions {
        agent_tgid: std::process::id(),
        trace_all,
        report_listen: !sel.open_ports.is_empty(),
        trace_new_execs: sel.exe_path.is_some(),
        capture_bytes: config.capture_bytes,
        // Measured (bench/run.py, nginx): 512 KiB batches cut wake-ups but
        // each batch holds a core for ~1 ms and added ~0.8 ms to the
        // server's p99; 64 KiB costs the same throughput and ~0.15 ms. At
        // low rates the poll interval bounds the delay.
        wakeup_bytes: (64 * 1024).min(u64::from(config.ringbuf_bytes) / 4),
        ringbuf_bytes: config.ringbuf_bytes,
        max_targets: config.max_processes,
        syscall_hooks: match config.syscall_hooks {
            HookMode::Raw => SyscallHooks::RawExit,
            HookMode::PerSyscall => SyscallHooks::PerSyscall,
        },
    })
    .context("loading the BPF capture programs")?;
    info!(
        selection = %describe_selection(&config),
        capture_bytes = capture.capture_bytes(),
        hooks = ?config.syscall_hooks,
        "capture attached (syscall exits, sched_process_fork/exec/exit)"
    );

    let targets = if trace_all {
        None
    } else {
        Some(capture.targets().context("opening the target map")?)
    };
    let mut discovery = Discovery::new(
        config.selection.clone(),
        targets,
        config.max_processes as usize,
        self_metrics.clone(),
    );
    let found = discovery.initial_scan();
    if !trace_all {
        info!(processes = found, "initial scan done");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clock = Clock::new();
    let (tracker_to_outputs, outputs_rx) = queue::bounded::<Batch>(
        "tracker_to_outputs",
        TRACKER_TO_OUTPUTS_CAPACITY,
        self_metrics.clone(),
    );

    // Reader thread: the hot path.
    let events = capture.events().context("opening the ring buffer")?;
    let mut reader = Reader {
        record_counts: [0; RECORD_KINDS.len()],
        discovery,
        tracker: Tracker::new(
            config.max_connections,
            Limits::default(),
            self_metrics.clone(),
        ),
        spans: SpanBuilder::new(clock.clone()),
        routes: RouteCap::new(MAX_ROUTES_PER_SERVICE),
        finished: Vec::new(),
        batch: Vec::with_capacity(BATCH_SPANS),
        tx: tracker_to_outputs,
        metrics: self_metrics.clone(),
        stop: stop.clone(),
    };
    let reader_thread = thread::Builder::new()
        .name("ratatosk-reader".into())
        .spawn(move || events.run(POLL_INTERVAL, &mut reader))
        .context("starting the reader thread")?;

    // Outputs thread.
    let counters = capture.counters().context("opening BPF counters")?;
    let printer = Printer::new(
        config.printer,
        BufWriter::with_capacity(64 * 1024, std::io::stdout()),
    );
    let outputs_metrics = self_metrics.clone();
    let outputs_thread = thread::Builder::new()
        .name("ratatosk-outputs".into())
        .spawn(move || {
            run_outputs(
                outputs_rx,
                http_metrics,
                printer,
                counters,
                outputs_metrics,
                clock,
            )
        })
        .context("starting the outputs thread")?;

    // tokio: metrics endpoint and signals.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("ratatosk-io")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let server = match config.prometheus {
            Some(addr) => {
                let listener = prometheus::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
                info!(%addr, "serving Prometheus metrics at /metrics");
                let mut rx = shutdown_rx.clone();
                let shutdown = async move {
                    let _ = rx.wait_for(|v| *v).await;
                };
                Some(tokio::spawn(prometheus::serve(
                    listener,
                    registry.clone(),
                    shutdown,
                )))
            }
            None => None,
        };
        info!("ready");
        wait_for_signal(&stop, &reader_thread).await?;
        let _ = shutdown_tx.send(true);
        if let Some(s) = server {
            match s.await {
                Ok(Err(e)) => warn!(error = %e, "metrics endpoint failed"),
                Err(e) => warn!(error = %e, "metrics endpoint task failed"),
                Ok(Ok(())) => {}
            }
        }
        anyhow::Ok(())
    });

    stop.store(true, Ordering::Relaxed);
    let reader_result = reader_thread.join();
    let outputs_result = outputs_thread.join();
    // Detach the programs only after the reader stopped reading.
    drop(capture);
    result?;
    match reader_result {
        Ok(r) => r.context("reading the ring buffer")?,
        Err(_) => anyhow::bail!("the reader thread panicked"),
    }
    if outputs_result.is_err() {
        anyhow::bail!("the outputs thread panicked");
    }
    info!("stopped");
    Ok(())
}

fn describe_selection(config: &Config) -> String {
    let s = &config.selection;
    if s.is_everything() {
        return "every process except the agent".to_string();
    }
    let mut parts = Vec::new();
    if !s.open_ports.is_empty() {
        parts.push(format!("open ports {}", s.open_ports));
    }
    if let Some(re) = &s.exe_path {
        parts.push(format!("executable path ~ /{re}/"));
    }
    if !s.pids.is_empty() {
        parts.push(format!("pids {:?}", s.pids));
    }
    parts.join(" or ")
}

async fn wait_for_signal(
    stop: &AtomicBool,
    reader: &thread::JoinHandle<Result<(), ratatosk_bpf::MapError>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: flushing and detaching"); break; }
            _ = int.recv() => { info!("SIGINT: flushing and detaching"); break; }
            _ = tick.tick() => {
                // The reader only ends on its own when it failed.
                if reader.is_finished() {
                    error!("the reader stopped unexpectedly");
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

#[derive(Clone, Copy)]
enum RecordKind {
    Data,
    ConnOpen,
    Close,
    Exec,
    Exit,
    Listen,
}
const RECORD_KINDS: [&str; 6] = ["data", "conn_open", "close", "exec", "exit", "listen"];

/// Reader-thread state: everything from a raw record to a span.
struct Reader {
    record_counts: [u64; RECORD_KINDS.len()],
    discovery: Discovery,
    tracker: Tracker,
    spans: SpanBuilder,
    routes: RouteCap,
    finished: Vec<Finished>,
    batch: Vec<Span>,
    tx: QueueTx<Batch>,
    metrics: SelfMetrics,
    stop: Arc<AtomicBool>,
}

impl Reader {
    /// Counts a record; one local add per record, folded into the shared
    /// counters once per drain (a family lookup per record showed up in
    /// profiles).
    fn count(&mut self, kind: RecordKind) {
        self.record_counts[kind as usize] += 1;
    }

    fn publish_counts(&mut self) {
        for (i, n) in self.record_counts.iter_mut().enumerate() {
            if *n > 0 {
                let kind = RECORD_KINDS[i];
                self.metrics
                    .reader_records
                    .get_or_create(&KindLabel { kind })
                    .inc_by(*n);
                *n = 0;
            }
        }
    }

    fn build_spans(&mut self) {
        for f in self.finished.drain(..) {
            let process = self.discovery.info(f.tgid);
            let (route, folded) = self
                .routes
                .admit(&process.exe_name, route::heuristic(f.exchange.path()));
            if folded {
                self.metrics.routes_folded.inc();
            }
            let span = self
                .spans
                .build(f.exchange, &f.tuple, f.queue_ns, route, process);
            self.batch.push(span);
        }
        if self.batch.len() >= BATCH_SPANS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_SPANS));
        let n = batch.len() as u64;
        if self.tx.send(Batch::Spans(batch), n) {
            self.metrics.spans_emitted.inc_by(n);
        }
    }
}

impl RecordSink for Reader {
    fn record(&mut self, raw: &[u8]) {
        let rec = match decode::decode(raw) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reader_invalid_records.inc();
                warn!(error = %e, "undecodable ring-buffer record");
                return;
            }
        };
        match rec {
            Record::Data(d) => {
                self.count(RecordKind::Data);
                if self.discovery.is_rejected(d.hdr.tgid) {
                    return;
                }
                self.tracker.on_data(&d, &mut self.finished);
            }
            Record::ConnOpen {
                hdr,
                sock_id,
                fd,
                tuple,
                origin,
            } => {
                self.count(RecordKind::ConnOpen);
                let kind = match origin {
                    ConnOrigin::Accept => "accept",
                    ConnOrigin::Connect => "connect",
                };
                self.metrics
                    .connections_opened
                    .get_or_create(&KindLabel { kind })
                    .inc();
                if self.discovery.is_rejected(hdr.tgid) {
                    return;
                }
                self.tracker
                    .on_open(hdr.tgid, hdr.ts_ns, sock_id, fd, tuple, &mut self.finished);
            }
            Record::Close { hdr, fd } => {
                self.count(RecordKind::Close);
                self.tracker
                    .on_close(hdr.tgid, fd, hdr.ts_ns, &mut self.finished);
            }
            Record::Exec {
                hdr,
                comm,
                filename,
                ..
            } => {
                self.count(RecordKind::Exec);
                self.discovery.on_exec(hdr.tgid, comm, filename);
                if self.discovery.is_rejected(hdr.tgid) {
                    self.tracker.forget(hdr.tgid);
                }
            }
            Record::Exit { hdr } => {
                self.count(RecordKind::Exit);
                self.tracker
                    .on_exit(hdr.tgid, hdr.ts_ns, &mut self.finished);
                // Spans of the process are built before it is forgotten.
                self.build_spans();
                self.discovery.on_exit(hdr.tgid);
                self.flush();
                self.tx.send(Batch::ProcessExit(hdr.tgid), 0);
            }
            Record::Listen { hdr, port } => {
                self.count(RecordKind::Listen);
                self.discovery.on_listen(hdr.tgid, port);
            }
        }
        if !self.finished.is_empty() {
            self.build_spans();
        }
    }

    fn drained(&mut self) -> bool {
        self.flush();
        self.publish_counts();
        self.metrics
            .connections_tracked
            .set(self.tracker.tracked() as i64);
        self.metrics
            .queue_fill
            .get_or_create(&QueueLabel {
                queue: "tracker_to_outputs",
            })
            .set(self.tx.len() as i64);
        !self.stop.load(Ordering::Relaxed)
    }
}

fn run_outputs<W: std::io::Write>(
    rx: Receiver<Batch>,
    mut http: HttpMetrics,
    mut printer: Printer<W>,
    counters: Counters,
    metrics: SelfMetrics,
    clock: Clock,
) {
    let mut last_housekeeping = Instant::now();
    let mut print_failed = false;
    let mut open = true;
    while open {
        // Wake on a timer and drain what queued meanwhile: one wake-up per
        // tick instead of one per batch (context switches showed in
        // profiles); spans wait at most one tick.
        thread::sleep(OUTPUTS_TICK);
        loop {
            match rx.try_recv() {
                Ok(Batch::Spans(spans)) => {
                    for s in &spans {
                        http.record(s);
                        if let Err(e) = printer.print(s)
                            && !print_failed
                        {
                            warn!(error = %e, "trace printer cannot write to stdout");
                            print_failed = true;
                        }
                    }
                }
                Ok(Batch::ProcessExit(pid)) => http.forget_process(pid),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let _ = printer.flush();
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            match counters.read() {
                Ok(s) => metrics.observe_bpf(s),
                Err(e) => warn!(error = %e, "cannot read BPF counters"),
            }
            clock.refresh();
        }
    }
    if let Ok(s) = counters.read() {
        metrics.observe_bpf(s);
    }
    let _ = printer.flush();
}
