//! The reader thread's work: every ring-buffer record, in kernel order,
//! through decode -> discovery -> connection tracking -> parsing -> span
//! building, batched towards the outputs stage. It owns all of its state and
//! takes no locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ratatosk_bpf::RecordSink;
use rustc_hash::FxHashMap as HashMap;
use tracing::{info, warn};

use crate::conn::{Finished, Tracker};
use crate::decode::{self, Record};
use crate::discovery::Discovery;
use crate::output::Batch;
use crate::queue::QueueTx;
use crate::selfmon::{KindLabel, QueueLabel, ReasonLabel, SelfMetrics};
use crate::spans::db::DbNames;
use crate::spans::link::{Origin, TraceLinker};
use crate::spans::route::{Decision, Routes};
use crate::spans::{KernelIds, Named, Span, SpanBuilder, SpanKind};
use ratatosk_protocols::http1::target_path;
use ratatosk_protocols::op::Detail;
use ratatosk_protocols::parse::Role;

/// Spans per batch before the reader sends one without waiting for a drain.
pub const BATCH_SPANS: usize = 256;
/// Records between two yields of the reader thread.
const YIELD_EVERY: u32 = 512;

#[derive(Clone, Copy)]
enum RecordKind {
    Data,
    ConnOpen,
    Close,
    Exec,
    Exit,
    Listen,
    TlsKeys,
    TlsMemoryBio,
}
/// Label of `ratatosk_connections_opened_total`, indexed by `ConnOrigin`,
/// then connections first seen by their bytes (`ORIGIN_DATA`): accepted
/// ones under the socket hooks, which do not see accept(), and any open
/// before the agent started.
const ORIGINS: [&str; 3] = ["accept", "connect", "data"];
const ORIGIN_DATA: usize = 2;

/// Adds local counts to a labelled counter family and clears them.
fn publish(counts: &mut [u64], kinds: &[&'static str], family: &Family<KindLabel, Counter>) {
    for (n, &kind) in counts.iter_mut().zip(kinds) {
        if *n > 0 {
            family.get_or_create(&KindLabel { kind }).inc_by(*n);
            *n = 0;
        }
    }
}

const RECORD_KINDS: [&str; 8] = [
    "data",
    "conn_open",
    "close",
    "exec",
    "exit",
    "listen",
    "tls_keys",
    "tls_memory_bio",
];

/// Tells the linker a request that makes no span is over.
fn ignored(l: &mut TraceLinker, f: &Finished, out: &mut Vec<Span>) {
    let (kind, server, client) = match f.op.role {
        Role::Server => (SpanKind::Server, f.tuple.local, f.tuple.remote),
        Role::Client => (SpanKind::Client, f.tuple.remote, f.tuple.local),
    };
    let origin = Origin {
        tgid: f.tgid,
        tid: f.tid,
        start_ns: f.op.request_start_ns,
        end_ns: f.op.end_ns(),
    };
    l.on_ignored(kind, server, client, origin, out);
}

/// Reader-thread state: everything from a raw record to a span.
pub struct Reader {
    /// Records since the reader last yielded its core.
    since_yield: u32,
    /// Batches the outputs thread has emptied, to fill again: a fresh
    /// allocation per batch faulted its pages in every time (the
    /// allocator gave the freed ones back to the kernel).
    spent: Option<crossbeam_channel::Receiver<Vec<Span>>>,
    record_counts: [u64; RECORD_KINDS.len()],
    /// Connections opened since the last drain, by origin.
    opened: [u64; ORIGINS.len()],
    discovery: Discovery,
    tracker: Tracker,
    spans: SpanBuilder,
    routes: Routes,
    /// The route of spans without one (empty).
    no_route: Arc<str>,
    /// The database family's cap on metric labels, as `routes` for HTTP.
    db_names: DbNames,
    /// The same cap for RPC methods (a client can send any `:path`).
    rpc_names: DbNames,
    finished: Vec<Finished>,
    /// Parents outgoing calls and joins local calls (None: context
    /// propagation disabled).
    linker: Option<TraceLinker>,
    batch: Vec<Span>,
    /// Exit notices the outputs have not taken yet (queue full), retried
    /// at every drain: a lost one would leave the dead process's series
    /// behind. Bounded by MAX_PENDING_EXITS.
    pending_exits: Vec<u32>,
    tx: QueueTx<Batch>,
    metrics: SelfMetrics,
    stop: Arc<AtomicBool>,
    /// Ids the kernel gave requests (traceparent injection), by (tgid,
    /// timestamp of the record that starts the request), until their span
    /// is built. Bounded; entries whose span never comes age out.
    kernel_ids: HashMap<(u32, u64), KernelIds>,
    /// Newest record time seen (monotonic ns): the ids' clock.
    last_ts: u64,
}

const MAX_PENDING_EXITS: usize = 4096;
/// Kernel ids awaiting their span, and how long they wait.
const MAX_KERNEL_IDS: usize = 16384;
const KERNEL_IDS_TTL_NS: u64 = 30_000_000_000;

impl Reader {
    pub fn new(
        discovery: Discovery,
        tracker: Tracker,
        spans: SpanBuilder,
        routes: Routes,
        tx: QueueTx<Batch>,
        metrics: SelfMetrics,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Reader {
            since_yield: 0,
            spent: None,
            record_counts: [0; RECORD_KINDS.len()],
            opened: [0; ORIGINS.len()],
            discovery,
            tracker,
            spans,
            no_route: Arc::from(""),
            db_names: DbNames::new(routes.max_routes()).with_slot_ttl(routes.slot_ttl()),
            rpc_names: DbNames::new(routes.max_routes()).with_slot_ttl(routes.slot_ttl()),
            routes,
            finished: Vec::new(),
            linker: None,
            batch: Vec::with_capacity(BATCH_SPANS),
            pending_exits: Vec::new(),
            tx,
            metrics,
            stop,
            kernel_ids: HashMap::default(),
            last_ts: 0,
        }
    }

    /// Takes emptied batches back from the outputs thread.
    pub fn recycle_batches(&mut self, spent: crossbeam_channel::Receiver<Vec<Span>>) {
        self.spent = Some(spent);
    }

    /// Links spans into traces on this host (context propagation on).
    pub fn link_traces(&mut self, on: bool) {
        self.linker = on.then(TraceLinker::new);
        self.tracker.notify_starts(on);
    }

    /// Counts a record; one local add per record, folded into the shared
    /// counters once per drain (a family lookup per record showed up in
    /// profiles).
    fn count(&mut self, kind: RecordKind) {
        self.record_counts[kind as usize] += 1;
    }

    fn publish_counts(&mut self) {
        publish(
            &mut self.record_counts,
            &RECORD_KINDS,
            &self.metrics.reader_records,
        );
        publish(&mut self.opened, &ORIGINS, &self.metrics.connections_opened);
    }

    fn build_spans(&mut self) {
        for f in self.finished.drain(..) {
            let process = self.discovery.info(f.tgid);
            // Each family names its operations within its own caps.
            let named = match &f.op.detail {
                Detail::Http(h) => {
                    let path = target_path(&h.target);
                    let decision = if f.op.role == Role::Server {
                        self.routes
                            .route_with_status(&process.service_name, path, h.status)
                    } else {
                        self.routes.route(&process.service_name, path)
                    };
                    match decision {
                        Decision::Route(route, folded) => {
                            if folded {
                                self.metrics.routes_folded.inc();
                            }
                            Named::Http { route }
                        }
                        Decision::Ignored => {
                            self.metrics.spans_ignored.inc();
                            if let Some(l) = &mut self.linker {
                                ignored(l, &f, &mut self.batch);
                            }
                            continue;
                        }
                        Decision::Unrouted => Named::Http {
                            route: self.no_route.clone(),
                        },
                    }
                }
                Detail::Db(d) => {
                    let (operation, collection, folded) =
                        self.db_names.labels(&process.service_name, d);
                    if folded {
                        self.metrics.routes_folded.inc();
                    }
                    Named::Db {
                        operation,
                        collection,
                    }
                }
                Detail::Rpc(r) => {
                    let name = if r.method.is_empty() {
                        r.system.as_str()
                    } else {
                        &r.method
                    };
                    let (method, _, folded) =
                        self.rpc_names.pair(&process.service_name, name, None);
                    if folded {
                        self.metrics.routes_folded.inc();
                    }
                    Named::Rpc { method }
                }
            };
            let kernel = if self.kernel_ids.is_empty() {
                None
            } else {
                self.kernel_ids.remove(&(f.tgid, f.op.request_start_ns))
            };
            // The next hop got these ids in its traceparent: the linker
            // must not give the span another parent by its thread.
            let fixed = matches!(kernel, Some(KernelIds::Injected { .. }));
            let origin = Origin {
                tgid: f.tgid,
                tid: if fixed { 0 } else { f.tid },
                start_ns: f.op.request_start_ns,
                end_ns: f.op.end_ns(),
            };
            let span = self
                .spans
                .build(f.op, &f.tuple, f.queue_ns, f.tls, named, process, kernel);
            match &mut self.linker {
                Some(l) => l.on_span(span, origin, &mut self.batch),
                None => self.batch.push(span),
            }
        }
        if self.batch.len() >= BATCH_SPANS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self
            .spent
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(BATCH_SPANS));
        let batch = std::mem::replace(&mut self.batch, next);
        let n = batch.len() as u64;
        if self.tx.send(Batch::Spans(batch), n) {
            self.metrics.spans_emitted.inc_by(n);
        }
    }

    /// Sends the pending exit notices in order, up to the first refused.
    fn send_exits(&mut self) {
        let mut sent = 0;
        for &pid in &self.pending_exits {
            // Weight 0: a refused notice stays pending, nothing is lost yet.
            if !self.tx.send(Batch::ProcessExit(pid), 0) {
                break;
            }
            sent += 1;
        }
        self.pending_exits.drain(..sent);
    }
}

impl RecordSink for Reader {
    fn record(&mut self, raw: &[u8]) {
        // A big batch would hold a core for milliseconds; on a busy host
        // let the instrumented processes run in between (measured: a
        // saturated nginx's p99 +2.4 ms without, +0.24 ms with).
        self.since_yield += 1;
        if self.since_yield >= YIELD_EVERY {
            self.since_yield = 0;
            std::thread::yield_now();
        }
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
                self.last_ts = self.last_ts.max(d.hdr.ts_ns);
                if let Some(ids) = d.ids {
                    if self.kernel_ids.len() < MAX_KERNEL_IDS {
                        self.kernel_ids.insert((d.hdr.tgid, d.hdr.ts_ns), ids);
                    } else {
                        self.metrics
                            .trace_link_dropped
                            .get_or_create(&ReasonLabel {
                                reason: "kernel_ids_full",
                            })
                            .inc();
                    }
                }
                if self.tracker.on_data(&d, &mut self.finished) {
                    self.opened[ORIGIN_DATA] += 1;
                }
            }
            Record::ConnOpen {
                hdr,
                sock_id,
                fd,
                tuple,
                origin,
            } => {
                self.count(RecordKind::ConnOpen);
                self.opened[origin as usize] += 1;
                if self.discovery.is_rejected(hdr.tgid) {
                    return;
                }
                self.tracker
                    .on_open(hdr.tgid, hdr.ts_ns, sock_id, fd, tuple, &mut self.finished);
            }
            Record::Close { hdr, fd, sock_id } => {
                self.count(RecordKind::Close);
                self.tracker
                    .on_close(hdr.tgid, fd, sock_id, hdr.ts_ns, &mut self.finished);
            }
            Record::Exec {
                hdr,
                comm,
                filename,
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
                if let Some(l) = &mut self.linker {
                    l.on_exit(hdr.tgid, &mut self.batch);
                }
                self.discovery.on_exit(hdr.tgid);
                self.flush();
                if self.pending_exits.len() < MAX_PENDING_EXITS {
                    self.pending_exits.push(hdr.tgid);
                } else {
                    self.tx.count_dropped(1);
                }
                self.send_exits();
            }
            Record::Listen { hdr, port } => {
                self.count(RecordKind::Listen);
                self.discovery.on_listen(hdr.tgid, port);
            }
            Record::TlsKeys(keys) => {
                self.count(RecordKind::TlsKeys);
                if self.discovery.is_rejected(keys.hdr.tgid) {
                    return;
                }
                self.tracker.on_tls_keys(&keys, &mut self.finished);
            }
            Record::TlsMemoryBio { hdr } => {
                self.count(RecordKind::TlsMemoryBio);
                // Once per process (the kernel remembers whom it told).
                info!(
                    pid = hdr.tgid,
                    "TLS capture: this process runs OpenSSL over its own BIOs (not a socket): each connection is found by its ClientHello random; those not found are counted in ratatosk_tls_decrypt_failures_total{{reason=\"unmatched_handshake\"}} (--tls-decrypt=false probes its SSL calls instead)"
                );
            }
        }
        if !self.tracker.starts.is_empty() {
            if let Some(l) = &mut self.linker {
                for s in &self.tracker.starts {
                    l.on_start(s);
                }
            }
            self.tracker.starts.clear();
        }
        if !self.finished.is_empty() {
            self.build_spans();
        }
    }

    fn drained(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.routes.tick(now);
        self.db_names.tick(now);
        self.rpc_names.tick(now);
        if !self.kernel_ids.is_empty() {
            // Reads that started no span (an ignored route, a request
            // never answered) leave their ids behind.
            let horizon = self.last_ts.saturating_sub(KERNEL_IDS_TTL_NS);
            self.kernel_ids.retain(|&(_, ts), _| ts >= horizon);
        }
        if let Some(l) = &mut self.linker {
            l.tick(now, &mut self.batch);
            l.publish(&self.metrics);
            self.metrics
                .queue_fill
                .get_or_create(&QueueLabel {
                    queue: "trace_linker",
                })
                .set(l.held() as i64);
        }
        // Idle connections are looked for on the records' clock.
        self.tracker
            .expire_idle(crate::clock::mono_ns(), &mut self.finished);
        if !self.finished.is_empty() {
            self.build_spans();
        }
        self.flush();
        self.send_exits();
        self.publish_counts();
        self.metrics
            .connections_tracked
            .set(self.tracker.tracked() as i64);
        self.metrics
            .connections_state_bytes
            .set(i64::try_from(self.tracker.state_bytes()).unwrap_or(i64::MAX));
        self.metrics
            .queue_fill
            .get_or_create(&QueueLabel {
                queue: "tracker_to_outputs",
            })
            .set(self.tx.len() as i64);
        !self.stop.load(Ordering::Relaxed)
    }
}
