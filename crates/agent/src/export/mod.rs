//! OTLP export of spans and metrics. The outputs thread drives an
//! [`Exporter`] synchronously and never waits on the network: spans are
//! converted and queued (bounded), metrics aggregated (bounded), and
//! whole requests handed to one tokio task per signal through a small
//! bounded channel; each task sends one request at a time.
//!
//! ```text
//! outputs thread                          tokio
//! push_spans -> outputs_to_otlp + batches handed over (≤ max_queue_size spans)
//!            -> batch (≤ max_export_batch_size) --[queue/batch]--> traces sender -> receiver
//! record     -> RED store (≤ 50 000 series)
//! tick       -> snapshot + self-metrics every interval --[1]--> metrics sender -> receiver
//! ```

pub mod batch;
pub mod metrics;
pub mod proto;
pub mod resource;
pub mod retry;
pub mod runtime;
pub mod selfmetrics;
pub mod traces;
pub mod transport;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::registry::Registry;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::config::export::{Naming, OtlpSettings};
use crate::selfmon::{QueueLabel, SelfMetrics};
use crate::spans::Span;
use batch::SpanBatcher;
use metrics::{MetricStore, Recorded};
use resource::{Host, Resources};
use retry::LogLimiter;
use transport::{Request, Sender, Transport};

/// RED series kept for OTLP before new label sets are refused (counted
/// as `ratatosk_otlp_dropped_total{signal="metrics",reason="series_limit"}`).
pub const MAX_SERIES: usize = 50_000;
/// Series per metrics request: 3 histograms each, ~0.5 KB a data point,
/// so about 1.5 MB, well under gRPC's default 4 MiB message limit.
const SERIES_PER_REQUEST: usize = 1000;
/// Name of the span queue in `ratatosk_queue_fill`.
const SPAN_QUEUE: &str = "outputs_to_otlp";
/// How often one kind of export failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Export requests of one signal in flight at once.
const CONCURRENT_EXPORTS: usize = 4;

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A request list handed to a signal's sender task.
type Job = Vec<Request>;

/// One signal's sender task and what it holds.
struct Task {
    signal: &'static str,
    tx: mpsc::Sender<Job>,
    handle: JoinHandle<()>,
    /// Items handed to the task and not yet exported or counted dropped.
    in_flight: Arc<AtomicU64>,
    gone_warned: AtomicBool,
    metrics: SelfMetrics,
}

impl Task {
    fn start(
        signal: &'static str,
        endpoint: &str,
        transport: Transport,
        metrics: SelfMetrics,
        rt: &Handle,
        jobs: usize,
        concurrency: usize,
    ) -> Task {
        // `jobs` waiting while one is sent: a slow or absent receiver
        // backs up into the bounded queues on the outputs side, where it
        // is counted.
        let (tx, mut rx) = mpsc::channel::<Job>(jobs.max(1));
        let in_flight = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            transport,
            endpoint: endpoint.into(),
            metrics: metrics.clone(),
            logs: Arc::new(Mutex::new(LogLimiter::new(LOG_EVERY))),
        };
        let counter = in_flight.clone();
        let handle = rt.spawn(async move {
            // Several exports in flight: one request's round trip (and a
            // receiver's flow-control stalls, measured at ~45 ms with
            // rotel over gRPC) no longer caps the rate at one batch per
            // round trip. Items in flight stay counted in `in_flight`, so
            // the outputs side's bound still holds.
            let slots = Arc::new(Semaphore::new(concurrency.max(1)));
            let mut running = JoinSet::new();
            while let Some(job) = rx.recv().await {
                for req in job {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let sender = sender.clone();
                    let counter = counter.clone();
                    running.spawn(async move {
                        // Released even if the export panicked, so the
                        // outputs side's bound never leaks.
                        let _done = InFlight(counter, req.items());
                        sender.export(&req).await;
                        drop(permit);
                    });
                    while running.try_join_next().is_some() {}
                }
            }
            while running.join_next().await.is_some() {}
        });
        Task {
            signal,
            tx,
            handle,
            in_flight,
            gone_warned: AtomicBool::new(false),
            metrics,
        }
    }

    /// Hands over without waiting; gives the job back when the task is
    /// still busy with the previous one.
    fn try_send(&self, job: Job) -> Result<(), Job> {
        let n: u64 = job.iter().map(Request::items).sum();
        self.in_flight.fetch_add(n, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j)) => {
                self.in_flight.fetch_sub(n, Ordering::Relaxed);
                Err(j)
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.tx.capacity() > 0
    }

    /// The sender task has ended (it only does on shutdown or a panic):
    /// what could not be handed over is counted, and said once.
    fn gone(&self, job: &Job) {
        let n: u64 = job.iter().map(Request::items).sum();
        self.metrics.otlp_dropped(self.signal, "sender_gone", n);
        if !self.gone_warned.swap(true, Ordering::Relaxed) {
            warn!(signal = self.signal, "OTLP sender gone: dropping (counted)");
        }
    }

    /// Nothing handed over is still being sent.
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// Items of one request, taken off `in_flight` when the export ends.
struct InFlight(Arc<AtomicU64>, u64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

struct TracePipe {
    task: Task,
    batcher: SpanBatcher,
    warned_full: bool,
}

struct MetricPipe {
    task: Task,
    /// None when application metrics are off (self-metrics only).
    store: Option<MetricStore>,
    /// The self-metrics only (the same families /metrics serves): walking
    /// the shared registry took its lock and encoded every `http_*`
    /// series only to drop them (41 ms for 5000 series).
    registry: Registry,
    agent: Resource,
    start_ns: u64,
    interval: Duration,
    last: Instant,
}

pub struct Exporter {
    resources: Resources,
    traces: Option<TracePipe>,
    metrics: Option<MetricPipe>,
    self_metrics: SelfMetrics,
    rt: Handle,
}

impl Exporter {
    /// None when neither signal has an endpoint. Fails on settings that
    /// cannot work (bad URL, header); connects lazily, so a receiver that
    /// is down at start only delays data.
    pub fn start(
        settings: &OtlpSettings,
        naming: &Naming,
        metrics: SelfMetrics,
        rt: &Handle,
    ) -> anyhow::Result<Option<Exporter>> {
        if settings.traces.is_none() && settings.metrics.is_none() {
            return Ok(None);
        }
        let host = Host::detect();
        // The tonic channel spawns its connection on the runtime it is
        // created in.
        let _guard = rt.enter();
        let traces = match &settings.traces {
            Some(s) => {
                // Room for a queue's worth of batches, so that every tick
                // can hand over all full batches (one per tick would cap
                // the rate at batch size per tick); the bound below counts
                // them with the queue.
                let b = &settings.batch;
                let jobs = b.max_queue_size / b.max_export_batch_size.max(1);
                let task = Task::start(
                    "traces",
                    &s.endpoint,
                    Transport::new(s)?,
                    metrics.clone(),
                    rt,
                    jobs,
                    CONCURRENT_EXPORTS,
                );
                info!(endpoint = %s.endpoint, protocol = ?s.protocol, "exporting traces over OTLP");
                Some(TracePipe {
                    task,
                    batcher: SpanBatcher::new(settings.batch),
                    warned_full: false,
                })
            }
            None => None,
        };
        let metric_pipe = match &settings.metrics {
            Some(s) => {
                // One at a time: cumulative snapshots must arrive in order.
                let task = Task::start(
                    "metrics",
                    &s.endpoint,
                    Transport::new(s)?,
                    metrics.clone(),
                    rt,
                    1,
                    1,
                );
                info!(endpoint = %s.endpoint, protocol = ?s.protocol,
                    interval = ?settings.metric_interval, "exporting metrics over OTLP");
                Some(MetricPipe {
                    task,
                    store: settings
                        .metric_features
                        .application
                        .then(|| MetricStore::new(MAX_SERIES)),
                    registry: {
                        let mut r = Registry::default();
                        metrics.register(&mut r);
                        r
                    },
                    agent: resource::agent_resource(&host),
                    start_ns: now_ns(),
                    interval: settings.metric_interval,
                    last: Instant::now(),
                })
            }
            None => None,
        };
        Ok(Some(Exporter {
            resources: Resources::new(host, naming.clone()),
            traces,
            metrics: metric_pipe,
            self_metrics: metrics,
            rt: rt.clone(),
        }))
    }

    /// Converts and queues spans for export; never blocks. Beyond
    /// `max_queue_size` spans waiting (queued or in batches handed over)
    /// plus the batch being sent, new ones are dropped and counted.
    pub fn push_spans(&mut self, spans: &[Span]) {
        let Some(t) = &mut self.traces else {
            return;
        };
        let b = t.batcher.settings();
        let bound = b.max_queue_size + b.max_export_batch_size;
        let handed =
            usize::try_from(t.task.in_flight.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let mut dropped = 0;
        // The sampler decided when the span was built; unsampled spans
        // still count in the metrics (recorded separately).
        for s in spans.iter().filter(|s| s.sampled) {
            if t.batcher.len().saturating_add(handed) >= bound {
                dropped += 1;
                continue;
            }
            t.batcher.push(self.resources.get(&s.process), s);
        }
        if dropped > 0 {
            self.self_metrics
                .otlp_dropped("traces", "queue_full", dropped);
            if !t.warned_full {
                warn!(
                    queue = SPAN_QUEUE,
                    "OTLP span queue full (receiver slow or down): dropping \
                     (counted in ratatosk_otlp_dropped_total)"
                );
                t.warned_full = true;
            }
        }
        t.flush(false);
        let waiting = t.batcher.len() as u64 + t.task.in_flight.load(Ordering::Relaxed);
        self.self_metrics
            .queue_fill
            .get_or_create(&QueueLabel { queue: SPAN_QUEUE })
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Adds a span to the OTLP RED metrics.
    pub fn record(&mut self, span: &Span, now_ns: u64) {
        let Some(MetricPipe {
            store: Some(store), ..
        }) = &mut self.metrics
        else {
            return;
        };
        let r = self.resources.get(&span.process);
        if store.record(span, r, now_ns) == Recorded::SeriesLimit {
            self.self_metrics.otlp_dropped("metrics", "series_limit", 1);
        }
    }

    /// A process ended: its series are exported once more, then dropped.
    pub fn forget_process(&mut self, pid: u32) {
        self.resources.forget(pid);
        if let Some(MetricPipe {
            store: Some(store), ..
        }) = &mut self.metrics
        {
            store.forget_process(pid);
        }
    }

    /// When [`tick`](Self::tick) next has work without more spans: the
    /// queued spans' schedule delay, or the next metrics snapshot.
    pub fn next_due(&self) -> Option<Instant> {
        let spans = self.traces.as_ref().and_then(|t| t.batcher.due_at());
        let metrics = self.metrics.as_ref().map(|m| m.last + m.interval);
        spans.into_iter().chain(metrics).min()
    }

    /// Called every outputs tick: sends due span batches and, every
    /// interval, a metrics snapshot.
    pub fn tick(&mut self) {
        if let Some(t) = &mut self.traces {
            t.flush(false);
        }
        if let Some(m) = &mut self.metrics
            && m.last.elapsed() >= m.interval
        {
            if m.export() {
                m.last = Instant::now();
            } else {
                // Cumulative data: the next snapshot carries everything,
                // so waiting loses nothing.
                debug!("previous OTLP metrics export still running; snapshot postponed");
            }
        }
    }

    /// Flushes queued spans and a final metrics snapshot, waiting at most
    /// `deadline` in all; what is not sent by then is counted dropped
    /// (`reason="shutdown"`). Must not be called from within the runtime.
    pub fn shutdown(mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        let rt = self.rt.clone();
        let left = || end.saturating_duration_since(Instant::now());
        let mut tasks = Vec::new();
        if let Some(mut t) = self.traces.take() {
            while !t.batcher.is_empty() && !left().is_zero() {
                // Wait for room, release it, and let flush take it: nothing
                // else sends on this channel.
                let ready = matches!(wait(&rt, left(), t.task.tx.reserve()), Some(Ok(_)));
                if !ready {
                    break;
                }
                t.flush(true);
            }
            self.self_metrics
                .otlp_dropped("traces", "shutdown", t.batcher.len() as u64);
            tasks.push(t.task);
        }
        if let Some(mut m) = self.metrics.take() {
            let ready = matches!(wait(&rt, left(), m.task.tx.reserve()), Some(Ok(_)));
            if ready {
                m.export();
            }
            tasks.push(m.task);
        }
        for t in tasks {
            let Task {
                signal,
                tx,
                mut handle,
                in_flight,
                ..
            } = t;
            // Closing the channel ends the task once its queue is empty.
            drop(tx);
            if wait(&rt, left(), &mut handle).is_none() {
                handle.abort();
                let n = in_flight.load(Ordering::Relaxed);
                self.self_metrics.otlp_dropped(signal, "shutdown", n);
                if n > 0 {
                    warn!(
                        signal,
                        items = n,
                        "OTLP export unfinished at shutdown: dropped"
                    );
                }
            }
        }
    }
}

/// Runs `f` on the runtime from a plain thread, for at most `d`.
fn wait<F: std::future::Future>(rt: &Handle, d: Duration, f: F) -> Option<F::Output> {
    // The timer must be created inside the runtime.
    rt.block_on(async move { tokio::time::timeout(d, f).await.ok() })
}

impl TracePipe {
    /// Hands full batches over, and a partial one when its oldest span
    /// waited `schedule_delay` (or always when `force`), while the sender
    /// task can take them.
    fn flush(&mut self, force: bool) {
        while self.batcher.is_due(force) && self.task.is_ready() {
            let Some(req) = self.batcher.take() else {
                return;
            };
            if let Err(job) = self.task.try_send(vec![req]) {
                // Raced with a closing task: nothing will send these.
                self.task.gone(&job);
                return;
            }
        }
    }
}

impl MetricPipe {
    /// Takes a snapshot and hands it over; false (and nothing taken) when
    /// the sender is still busy with the previous one.
    fn export(&mut self) -> bool {
        // The previous snapshot fully sent (retries included) before the
        // next is taken: cumulative points must not arrive out of order.
        if !self.task.is_idle() || !self.task.is_ready() {
            return false;
        }
        let now = now_ns();
        let mut resource_metrics = Vec::new();
        match selfmetrics::encode(&self.registry, self.start_ns, now) {
            Ok(ms) if !ms.is_empty() => resource_metrics.push(ResourceMetrics {
                resource: Some(self.agent.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(traces::scope()),
                    metrics: ms,
                    schema_url: String::new(),
                }],
                schema_url: opentelemetry_semantic_conventions::SCHEMA_URL.to_string(),
            }),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot encode self-metrics for OTLP"),
        }
        if let Some(store) = &mut self.store {
            resource_metrics.extend(store.snapshot(now, SERIES_PER_REQUEST));
        }
        // Pack resource metrics into requests of about SERIES_PER_REQUEST
        // series (3 points each) so no message grows past receiver limits.
        let mut job: Job = Vec::new();
        let mut cur: Vec<ResourceMetrics> = Vec::new();
        let mut points = 0;
        for rm in resource_metrics {
            let p = metrics::data_points(std::slice::from_ref(&rm));
            if points + p > SERIES_PER_REQUEST as u64 * 3 && !cur.is_empty() {
                job.push(Request::metrics(&ExportMetricsServiceRequest {
                    resource_metrics: std::mem::take(&mut cur),
                }));
                points = 0;
            }
            points += p;
            cur.push(rm);
        }
        if !cur.is_empty() {
            job.push(Request::metrics(&ExportMetricsServiceRequest {
                resource_metrics: cur,
            }));
        }
        if job.is_empty() {
            return true;
        }
        if let Err(job) = self.task.try_send(job) {
            self.task.gone(&job);
        }
        true
    }
}
