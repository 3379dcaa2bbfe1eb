//! Trace linking on the reader thread, between span building and the
//! outputs batch: spans of one request across threads and processes of
//! this host become one trace.
//!
//! - **Outgoing calls get a parent.** A client span written by thread T of
//!   process P while T serves exactly one server request of P (T read it,
//!   its response is not written yet) is that server span's child. The
//!   server span completes after its children, so those are held until it
//!   arrives. Two or more requests in progress on one thread is an event
//!   loop: which one a call belongs to cannot be told, nothing is linked.
//! - **Local calls join.** A server span whose connection is the reverse
//!   of a client span's of a traced process on this host is that client
//!   span's child. It completes first (the client reads the response after
//!   the server wrote it), so it is held until the client span arrives
//!   when the tracker saw that call start.
//!
//! A span that carries its own `traceparent` keeps it. Held spans are
//! bounded in number and age; what is over is sent unlinked, counted. The
//! tracker reports request starts ([`RequestStart`]): the context a thread
//! is in is [`ThreadState`]. A call into which the kernel inserted a
//! `traceparent` arrives with the kernel's parent (or with no thread, so
//! that nothing here re-parents it): the next hop already has its ids.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ratatosk_protocols::parse::Role;

use super::{Span, SpanDetail, SpanKind};
use crate::conn::RequestStart;
use crate::decode::Tuple;
use crate::selfmon::{KindResultLabel, ReasonLabel, SelfMetrics};

/// Most spans held at once (a tree counts all its spans).
pub const MAX_HELD: usize = 4096;
/// Longest a span is held waiting for its parent or its local caller.
pub const MAX_HOLD: Duration = Duration::from_secs(2);
/// A request start not closed by its server span for this long is
/// forgotten (its span was lost, or it is a long-poll).
const OPEN_TTL: Duration = Duration::from_secs(10);
/// Requests in progress remembered per thread (an event loop has many;
/// one is enough to know the thread is one).
const MAX_OPEN_PER_THREAD: usize = 8;
/// Threads and local calls tracked.
const MAX_THREADS: usize = 65536;
const MAX_LOCAL_CALLS: usize = 16384;

/// Whether the peer of a connection is on this host: loopback, or the
/// same address at both ends.
pub fn is_local_peer(t: &Tuple) -> bool {
    let remote = canonical(t.remote.ip());
    remote.is_loopback() || remote == canonical(t.local.ip())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What the tracker knew of a span's request (monotonic ns, thread).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub tgid: u32,
    /// 0: not known.
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A held span and the spans whose context derives from it.
struct Node {
    span: Span,
    start_ns: u64,
    children: Vec<Node>,
    /// Spans in this tree.
    size: usize,
}

impl Node {
    fn new(span: Span, start_ns: u64) -> Node {
        Node {
            span,
            start_ns,
            children: Vec::new(),
            size: 1,
        }
    }

    /// Makes `child` a child of this span: its trace, parent and sampling
    /// decision, and the trace of everything under it.
    fn adopt(&mut self, mut child: Node) {
        child.span.parent_span_id = Some(self.span.span_id);
        child.retrace(self.span.trace_id, self.span.sampled);
        self.size += child.size;
        self.children.push(child);
    }

    fn retrace(&mut self, trace_id: [u8; 16], sampled: bool) {
        self.span.trace_id = trace_id;
        self.span.sampled = sampled;
        for c in &mut self.children {
            c.retrace(trace_id, sampled);
        }
    }

    fn flatten(self, out: &mut Vec<Span>) {
        out.push(self.span);
        for c in self.children {
            c.flatten(out);
        }
    }
}

/// A server request in progress on a thread.
struct Open {
    start_ns: u64,
    tuple: Tuple,
    seen: Instant,
}

/// The context a thread is in: the server requests it is serving and the
/// client spans waiting for the one it serves.
#[derive(Default)]
struct ThreadState {
    open: Vec<Open>,
    /// Client spans of the thread's one request in progress.
    held: Vec<Node>,
    held_since: Option<Instant>,
}

/// A call to a server on this host whose client span has not come yet.
struct LocalCall {
    tgid: u32,
    start_ns: u64,
    seen: Instant,
}

/// A server span waiting for its local caller's client span.
struct Waiting {
    node: Node,
    since: Instant,
}

/// (server, client) addresses: equal for the two ends of a connection.
type ConnKey = (SocketAddr, SocketAddr);

/// IPv4 peers of a dual-stack listener appear as `::ffff:a.b.c.d` at
/// one end and `a.b.c.d` at the other.
fn key(s: &Span) -> ConnKey {
    conn_key(s.server, s.client)
}

fn conn_key(server: SocketAddr, client: SocketAddr) -> ConnKey {
    let c = |a: SocketAddr| SocketAddr::new(canonical(a.ip()), a.port());
    (c(server), c(client))
}

/// Whether the span is one stream of a multiplexed connection.
fn multiplexed(s: &Span) -> bool {
    match &s.detail {
        SpanDetail::Http(h) => h.protocol_version == "2",
        SpanDetail::Rpc(_) => true,
        SpanDetail::Db(_) => false,
    }
}

/// Results of `ratatosk_trace_parents_total`, by span kind.
#[derive(Clone, Copy)]
enum Parent {
    Found = 0,
    NotFound = 1,
    Ambiguous = 2,
    Traceparent = 3,
}
const RESULTS: [&str; 4] = ["found", "not_found", "ambiguous", "traceparent"];
/// Reasons of `ratatosk_trace_link_dropped_total`.
#[derive(Clone, Copy)]
enum Drop {
    HeldFull = 0,
    Timeout = 1,
    TableFull = 2,
}
const DROPS: [&str; 3] = ["held_full", "timeout", "table_full"];

pub struct TraceLinker {
    threads: HashMap<(u32, u32), ThreadState>,
    calls: HashMap<ConnKey, LocalCall>,
    waiting: HashMap<ConnKey, Waiting>,
    held: usize,
    /// The last tick: held spans are stamped with it (no clock read per
    /// span; ages are right to one drain interval).
    now: Instant,
    /// Local counts, published at each drain (a family lookup per span
    /// costs more than the rest).
    parents: [[u64; RESULTS.len()]; 2],
    drops: [u64; DROPS.len()],
}

impl Default for TraceLinker {
    fn default() -> Self {
        TraceLinker::new()
    }
}

impl TraceLinker {
    pub fn new() -> Self {
        TraceLinker {
            threads: HashMap::default(),
            calls: HashMap::default(),
            waiting: HashMap::default(),
            held: 0,
            now: Instant::now(),
            parents: [[0; RESULTS.len()]; 2],
            drops: [0; DROPS.len()],
        }
    }

    /// Spans held now.
    pub fn held(&self) -> usize {
        self.held
    }

    fn count(&mut self, kind: SpanKind, r: Parent) {
        self.parents[kind as usize][r as usize] += 1;
    }

    /// A request began (see [`RequestStart`]).
    pub fn on_start(&mut self, s: &RequestStart) {
        match s.role {
            Role::Server => {
                let now = self.now;
                if !self.threads.contains_key(&(s.tgid, s.tid)) && self.threads.len() >= MAX_THREADS
                {
                    self.drops[Drop::TableFull as usize] += 1;
                    return;
                }
                let t = self.threads.entry((s.tgid, s.tid)).or_default();
                // A turn on a connection the thread already serves: a body
                // after `100 Continue` (the same request), or the next
                // request after one whose span never came (it replaces it).
                if let Some(o) = t.open.iter_mut().find(|o| o.tuple == s.tuple) {
                    o.start_ns = s.ts_ns;
                    o.seen = now;
                    return;
                }
                if t.open.len() < MAX_OPEN_PER_THREAD {
                    t.open.push(Open {
                        start_ns: s.ts_ns,
                        tuple: s.tuple,
                        seen: now,
                    });
                }
            }
            Role::Client => {
                let k = conn_key(s.tuple.remote, s.tuple.local);
                if !self.calls.contains_key(&k) && self.calls.len() >= MAX_LOCAL_CALLS {
                    self.drops[Drop::TableFull as usize] += 1;
                    return;
                }
                self.calls.insert(
                    k,
                    LocalCall {
                        tgid: s.tgid,
                        start_ns: s.ts_ns,
                        seen: self.now,
                    },
                );
            }
        }
    }

    /// A built span; what can be sent now goes to `out`.
    pub fn on_span(&mut self, span: Span, origin: Origin, out: &mut Vec<Span>) {
        if multiplexed(&span) {
            return self.on_multiplexed(span, origin, out);
        }
        match span.kind {
            SpanKind::Server => self.on_server(span, origin, out),
            SpanKind::Client => self.on_client(span, origin, out),
        }
    }

    /// A request that makes no span (its route is ignored): it is no
    /// longer in progress, and what waited for it is sent unlinked.
    pub fn on_ignored(
        &mut self,
        kind: SpanKind,
        server: SocketAddr,
        client: SocketAddr,
        o: Origin,
        out: &mut Vec<Span>,
    ) {
        match kind {
            SpanKind::Server => {
                for c in self.close_request(server, client, o) {
                    self.parents[SpanKind::Client as usize][Parent::NotFound as usize] += 1;
                    c.flatten(out);
                }
            }
            SpanKind::Client => {
                let k = conn_key(server, client);
                self.calls.remove(&k);
                if let Some(w) = self.waiting.remove(&k) {
                    self.held -= w.node.size;
                    self.count(SpanKind::Server, Parent::NotFound);
                    w.node.flatten(out);
                }
            }
        }
    }

    /// An HTTP/2 stream (gRPC included): linked by its `traceparent`
    /// only. Streams share a connection, and one I/O thread serves many
    /// at once, so neither the thread nor the connection tells which
    /// request a stream belongs to: a guess could be a wrong parent.
    fn on_multiplexed(&mut self, span: Span, o: Origin, out: &mut Vec<Span>) {
        match span.kind {
            SpanKind::Server => {
                // Its turn on the thread ends; calls held in it go
                // unparented.
                for c in self.close_request(span.server, span.client, o) {
                    self.count(SpanKind::Client, Parent::NotFound);
                    c.flatten(out);
                }
            }
            SpanKind::Client => {
                self.calls.remove(&key(&span));
            }
        }
        let r = if span.parent_span_id.is_some() {
            Parent::Traceparent
        } else {
            Parent::NotFound
        };
        self.count(span.kind, r);
        out.push(span);
    }

    fn on_server(&mut self, span: Span, o: Origin, out: &mut Vec<Span>) {
        let calls = self.close_request(span.server, span.client, o);
        // Most server spans have no call held and no traced local caller:
        // sent as they are (no tree, no key hashed).
        if calls.is_empty() && (span.parent_span_id.is_some() || !self.may_wait(&span, &o)) {
            let r = if span.parent_span_id.is_some() {
                Parent::Traceparent
            } else {
                Parent::NotFound
            };
            self.count(SpanKind::Server, r);
            out.push(span);
            return;
        }
        let mut node = Node::new(span, o.start_ns);
        for c in calls {
            self.parents[SpanKind::Client as usize][Parent::Found as usize] += 1;
            node.adopt(c);
        }
        self.after_server(node, o, out);
    }

    /// Whether a traced process on this host was seen calling the span's
    /// connection (then the server span waits for that client span).
    fn may_wait(&self, span: &Span, o: &Origin) -> bool {
        !self.calls.is_empty()
            && self
                .calls
                .get(&key(span))
                .is_some_and(|c| c.start_ns <= o.start_ns)
    }

    /// The server request on `o`'s thread is complete: it is no longer in
    /// progress; returns the calls made in it (no longer counted held).
    fn close_request(&mut self, server: SocketAddr, client: SocketAddr, o: Origin) -> Vec<Node> {
        let mut taken = Vec::new();
        if let Some(t) = self.threads.get_mut(&(o.tgid, o.tid)) {
            let conn = (server, client);
            t.open.retain(|op| {
                let in_it = op.start_ns == o.start_ns
                    || (op.start_ns >= o.start_ns && op.start_ns < o.end_ns);
                !(in_it && (op.tuple.local, op.tuple.remote) == conn)
            });
            // In place: the thread's buffer keeps its capacity.
            let mut i = 0;
            while let Some(c) = t.held.get(i) {
                if c.start_ns >= o.start_ns && c.start_ns <= o.end_ns {
                    let c = t.held.swap_remove(i);
                    self.held -= c.size;
                    taken.push(c);
                } else {
                    i += 1;
                }
            }
            if t.held.is_empty() {
                t.held_since = None;
            }
            // An idle thread's entry stays until the next tick, so a
            // thread serving request after request allocates nothing.
        }
        taken
    }

    /// A complete server span (with its calls): sent, or held for its
    /// local caller's client span.
    fn after_server(&mut self, node: Node, o: Origin, out: &mut Vec<Span>) {
        if node.span.parent_span_id.is_some() {
            self.count(SpanKind::Server, Parent::Traceparent);
            node.flatten(out);
            return;
        }
        // Wait for the local caller's client span, if the call was seen.
        if !self.may_wait(&node.span, &o) {
            self.count(SpanKind::Server, Parent::NotFound);
            node.flatten(out);
            return;
        }
        if self.held + node.size > MAX_HELD {
            self.drops[Drop::HeldFull as usize] += 1;
            self.count(SpanKind::Server, Parent::NotFound);
            node.flatten(out);
            return;
        }
        self.held += node.size;
        let k = key(&node.span);
        let w = Waiting {
            node,
            since: self.now,
        };
        if let Some(old) = self.waiting.insert(k, w) {
            // The previous request on the connection never met its caller.
            self.held -= old.node.size;
            self.count(SpanKind::Server, Parent::NotFound);
            old.node.flatten(out);
        }
    }

    fn on_client(&mut self, span: Span, o: Origin, out: &mut Vec<Span>) {
        let mut node = Node::new(span, o.start_ns);
        let k = key(&node.span);
        self.calls.remove(&k);
        if let Some(w) = self.waiting.remove(&k) {
            self.held -= w.node.size;
            if w.node.start_ns >= o.start_ns {
                self.count(SpanKind::Server, Parent::Found);
                node.adopt(w.node);
            } else {
                self.count(SpanKind::Server, Parent::NotFound);
                w.node.flatten(out);
            }
        }
        if node.span.parent_span_id.is_some() {
            self.count(SpanKind::Client, Parent::Traceparent);
            node.flatten(out);
            return;
        }
        let Some(t) = self
            .threads
            .get_mut(&(o.tgid, o.tid))
            .filter(|_| o.tid != 0)
        else {
            self.count(SpanKind::Client, Parent::NotFound);
            node.flatten(out);
            return;
        };
        let serving = t.open.iter().filter(|op| op.start_ns <= o.start_ns).count();
        let r = match serving {
            0 => Parent::NotFound,
            1 if self.held + node.size <= MAX_HELD => {
                self.held += node.size;
                t.held_since.get_or_insert(self.now);
                t.held.push(node);
                return;
            }
            1 => {
                self.drops[Drop::HeldFull as usize] += 1;
                Parent::NotFound
            }
            _ => Parent::Ambiguous,
        };
        self.count(SpanKind::Client, r);
        node.flatten(out);
    }

    /// Releases what waited too long and forgets stale state; called at
    /// every drain.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Span>) {
        self.now = now;
        let old = |t: Instant, max: Duration| now.saturating_duration_since(t) >= max;
        let mut released = 0;
        let mut timed_out = 0u64;
        self.threads.retain(|_, t| {
            if t.held_since.is_some_and(|s| old(s, MAX_HOLD)) {
                for n in t.held.drain(..) {
                    released += n.size;
                    timed_out += 1;
                    n.flatten(out);
                }
                t.held_since = None;
            }
            t.open.retain(|o| !old(o.seen, OPEN_TTL));
            !(t.open.is_empty() && t.held.is_empty())
        });
        let expired: Vec<ConnKey> = self
            .waiting
            .iter()
            .filter(|(_, w)| old(w.since, MAX_HOLD))
            .map(|(k, _)| *k)
            .collect();
        let waited = expired.len() as u64;
        for k in expired {
            if let Some(w) = self.waiting.remove(&k) {
                released += w.node.size;
                w.node.flatten(out);
            }
        }
        self.held -= released;
        self.drops[Drop::Timeout as usize] += timed_out + waited;
        self.parents[SpanKind::Client as usize][Parent::NotFound as usize] += timed_out;
        self.parents[SpanKind::Server as usize][Parent::NotFound as usize] += waited;
        self.calls.retain(|_, c| !old(c.seen, OPEN_TTL));
    }

    /// Sends everything a process's threads hold (it exited).
    pub fn on_exit(&mut self, tgid: u32, out: &mut Vec<Span>) {
        let mut released = 0;
        self.threads.retain(|(p, _), t| {
            if *p != tgid {
                return true;
            }
            for n in t.held.drain(..) {
                released += n.size;
                n.flatten(out);
            }
            false
        });
        let gone: Vec<ConnKey> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.node.span.process.pid == tgid)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(w) = self.waiting.remove(&k) {
                released += w.node.size;
                w.node.flatten(out);
            }
        }
        self.held -= released;
        self.calls.retain(|_, c| c.tgid != tgid);
    }

    /// Adds the local counts to the self-metrics and clears them.
    pub fn publish(&mut self, m: &SelfMetrics) {
        publish_parents(&mut self.parents, &m.trace_parents);
        for (n, &reason) in self.drops.iter_mut().zip(&DROPS) {
            if *n > 0 {
                m.trace_link_dropped
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(*n);
                *n = 0;
            }
        }
    }
}

fn publish_parents(
    counts: &mut [[u64; RESULTS.len()]; 2],
    family: &Family<KindResultLabel, Counter>,
) {
    for (kind, row) in [SpanKind::Server, SpanKind::Client]
        .into_iter()
        .zip(counts.iter_mut())
    {
        for (n, &result) in row.iter_mut().zip(&RESULTS) {
            if *n > 0 {
                family
                    .get_or_create(&KindResultLabel {
                        kind: kind.as_str(),
                        result,
                    })
                    .inc_by(*n);
                *n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::span;
    use std::sync::Arc;

    const APP: &str = "127.0.0.1:8000";
    const CURL: &str = "127.0.0.1:50000";
    const BACKEND: &str = "127.0.0.1:9000";
    const APP_OUT: &str = "127.0.0.1:40000";
    const REMOTE: &str = "10.1.2.3:5432";
    const BACKEND_OUT: &str = "127.0.0.1:41000";

    fn mk(kind: SpanKind, pid: u32, server: &str, client: &str, id: u8) -> Span {
        let mut s = span(Arc::new(proc_info(pid, "app")), 200, kind);
        s.server = server.parse().unwrap();
        s.client = client.parse().unwrap();
        s.trace_id = [id; 16];
        s.span_id = [id; 8];
        s.parent_span_id = None;
        s.sampled = id.is_multiple_of(2);
        s
    }

    fn origin(tgid: u32, tid: u32, start_ns: u64, end_ns: u64) -> Origin {
        Origin {
            tgid,
            tid,
            start_ns,
            end_ns,
        }
    }

    /// What the tracker reports when `tid` of `tgid` starts a request,
    /// from that process's end of the connection.
    fn start(
        tgid: u32,
        tid: u32,
        ts_ns: u64,
        role: Role,
        local: &str,
        remote: &str,
    ) -> RequestStart {
        RequestStart {
            tgid,
            tid,
            ts_ns,
            role,
            tuple: Tuple {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            },
        }
    }

    fn find(out: &[Span], id: u8) -> &Span {
        out.iter().find(|s| s.span_id == [id; 8]).unwrap()
    }

    fn parents(l: &mut TraceLinker) -> Vec<(&'static str, &'static str, u64)> {
        let m = SelfMetrics::default();
        l.publish(&m);
        let mut v = Vec::new();
        for kind in ["server", "client"] {
            for result in RESULTS {
                let n = m
                    .trace_parents
                    .get_or_create(&KindResultLabel { kind, result })
                    .get();
                if n > 0 {
                    v.push((kind, result, n));
                }
            }
        }
        v
    }

    #[test]
    fn a_call_made_while_serving_is_the_server_spans_child() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        assert!(out.is_empty(), "held until its parent completes");
        assert_eq!(l.held(), 1);
        l.on_span(
            mk(SpanKind::Server, 1, APP, CURL, 4),
            origin(1, 10, 100, 200),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        let (server, client) = (find(&out, 4), find(&out, 2));
        assert_eq!(client.trace_id, server.trace_id);
        assert_eq!(client.parent_span_id, Some(server.span_id));
        assert_eq!(client.sampled, server.sampled);
        assert_eq!(server.parent_span_id, None);
        assert_eq!(l.held(), 0);
        assert_eq!(
            parents(&mut l),
            [("server", "not_found", 1), ("client", "found", 1)]
        );
        // The thread is idle again: a later call is not held.
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 6),
            origin(1, 10, 300, 310),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(find(&out, 6).trace_id, [6; 16]);
    }

    #[test]
    fn http2_streams_are_linked_by_traceparent_only() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        let h2 = |mut s: Span| {
            crate::export::traces::tests::http(&mut s).protocol_version = "2";
            s
        };
        // A thread's turn on an HTTP/2 connection, a call made in it: the
        // call is not the stream's child (another stream may own it).
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        l.on_span(
            h2(mk(SpanKind::Server, 1, APP, CURL, 4)),
            origin(1, 10, 100, 200),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| s.parent_span_id.is_none()));
        assert_eq!(l.held(), 0);
        // Two processes on this host over HTTP/2: not joined by the
        // connection either.
        l.on_start(&start(1, 20, 300, Role::Client, APP_OUT, BACKEND));
        l.on_span(
            h2(mk(SpanKind::Server, 2, BACKEND, APP_OUT, 6)),
            origin(2, 30, 310, 320),
            &mut out,
        );
        l.on_span(
            h2(mk(SpanKind::Client, 1, BACKEND, APP_OUT, 8)),
            origin(1, 20, 300, 330),
            &mut out,
        );
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|s| s.parent_span_id.is_none()));
        assert_eq!(
            parents(&mut l),
            [("server", "not_found", 2), ("client", "not_found", 2)]
        );
    }

    #[test]
    fn other_threads_and_processes_are_not_parented() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 11, 150, 180),
            &mut out,
        );
        l.on_span(
            mk(SpanKind::Client, 2, REMOTE, APP_OUT, 3),
            origin(2, 10, 150, 180),
            &mut out,
        );
        // Thread not known (decrypted late).
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 5),
            origin(1, 0, 150, 180),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|s| s.parent_span_id.is_none()));
        assert_eq!(parents(&mut l), [("client", "not_found", 3)]);
    }

    #[test]
    fn an_event_loop_serving_two_requests_links_nothing() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_start(&start(1, 10, 110, Role::Server, APP, "127.0.0.1:50001"));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].parent_span_id, None);
        assert_eq!(parents(&mut l), [("client", "ambiguous", 1)]);
        // A body after `100 Continue` is a turn on the same connection,
        // not a second request.
        let mut l = TraceLinker::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_start(&start(1, 10, 120, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        assert_eq!(l.held(), 1);
    }

    #[test]
    fn a_request_with_an_ignored_route_is_over_too() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        let (app, curl) = (APP.parse().unwrap(), CURL.parse().unwrap());
        l.on_ignored(
            SpanKind::Server,
            app,
            curl,
            origin(1, 10, 100, 200),
            &mut out,
        );
        assert_eq!((out.len(), l.held()), (1, 0));
        // The thread's next request, on another connection, is its only one.
        l.on_start(&start(1, 10, 300, Role::Server, APP, "127.0.0.1:50001"));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 3),
            origin(1, 10, 350, 380),
            &mut out,
        );
        assert_eq!(l.held(), 1);
    }

    #[test]
    fn a_client_span_with_its_own_traceparent_keeps_it() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        let mut c = mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2);
        c.parent_span_id = Some([9; 8]);
        l.on_span(c, origin(1, 10, 150, 180), &mut out);
        assert_eq!(out.len(), 1, "not held");
        assert_eq!(out[0].parent_span_id, Some([9; 8]));
        assert_eq!(out[0].trace_id, [2; 16]);
        assert_eq!(parents(&mut l), [("client", "traceparent", 1)]);
    }

    #[test]
    fn two_processes_on_one_host_make_one_trace() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        // curl -> app (pid 1, thread 10) -> backend (pid 2, thread 20),
        // whose handler calls a remote database.
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_start(&start(1, 10, 150, Role::Client, APP_OUT, BACKEND));
        l.on_start(&start(2, 20, 160, Role::Server, BACKEND, APP_OUT));
        l.on_span(
            mk(SpanKind::Client, 2, REMOTE, BACKEND_OUT, 7),
            origin(2, 20, 165, 170),
            &mut out,
        );
        l.on_span(
            mk(SpanKind::Server, 2, BACKEND, APP_OUT, 6),
            origin(2, 20, 160, 175),
            &mut out,
        );
        assert!(out.is_empty(), "the backend waits for its caller");
        l.on_span(
            mk(SpanKind::Client, 1, BACKEND, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        assert!(out.is_empty(), "the call waits for its server span");
        assert_eq!(l.held(), 3);
        l.on_span(
            mk(SpanKind::Server, 1, APP, CURL, 4),
            origin(1, 10, 100, 200),
            &mut out,
        );
        assert_eq!(out.len(), 4);
        assert_eq!(l.held(), 0);
        assert!(out.iter().all(|s| s.trace_id == [4; 16]));
        assert!(out.iter().all(|s| s.sampled), "sampled as the root");
        assert_eq!(find(&out, 4).parent_span_id, None);
        assert_eq!(find(&out, 2).parent_span_id, Some([4; 8]));
        assert_eq!(find(&out, 6).parent_span_id, Some([2; 8]));
        assert_eq!(find(&out, 7).parent_span_id, Some([6; 8]));
        assert_eq!(
            parents(&mut l),
            [
                ("server", "found", 1),
                ("server", "not_found", 1),
                ("client", "found", 2)
            ]
        );
    }

    #[test]
    fn a_local_server_span_with_a_traceparent_keeps_it_and_untraced_callers_are_not_awaited() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 150, Role::Client, APP_OUT, BACKEND));
        let mut s = mk(SpanKind::Server, 2, BACKEND, APP_OUT, 6);
        s.parent_span_id = Some([9; 8]);
        l.on_span(s, origin(2, 20, 160, 175), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].trace_id, [6; 16]);
        // No call seen from a traced process (curl is not traced).
        l.on_span(
            mk(SpanKind::Server, 1, APP, CURL, 4),
            origin(1, 10, 100, 200),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(l.held(), 0);
    }

    #[test]
    fn held_spans_are_bounded_in_age_and_number() {
        let mut l = TraceLinker::new();
        let t0 = Instant::now();
        l.tick(t0, &mut Vec::new());
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        for i in 0..MAX_HELD + 5 {
            l.on_span(
                mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
                origin(1, 10, 150 + i as u64, 180),
                &mut out,
            );
        }
        assert_eq!(l.held(), MAX_HELD);
        assert_eq!(out.len(), 5);
        l.tick(t0 + Duration::from_millis(500), &mut out);
        assert_eq!(l.held(), MAX_HELD, "not old yet");
        l.tick(t0 + MAX_HOLD, &mut out);
        assert_eq!(l.held(), 0);
        assert_eq!(out.len(), MAX_HELD + 5);
        assert!(out.iter().all(|s| s.parent_span_id.is_none()));
        let m = SelfMetrics::default();
        l.publish(&m);
        let dropped = |reason| {
            m.trace_link_dropped
                .get_or_create(&ReasonLabel { reason })
                .get()
        };
        assert_eq!(dropped("held_full"), 5);
        assert_eq!(dropped("timeout"), MAX_HELD as u64);
        // The request start itself is forgotten after OPEN_TTL.
        l.tick(t0 + OPEN_TTL, &mut out);
        assert!(l.threads.is_empty());
    }

    #[test]
    fn an_exit_releases_what_the_process_held() {
        let mut l = TraceLinker::new();
        let mut out = Vec::new();
        l.on_start(&start(1, 10, 100, Role::Server, APP, CURL));
        l.on_span(
            mk(SpanKind::Client, 1, REMOTE, APP_OUT, 2),
            origin(1, 10, 150, 180),
            &mut out,
        );
        l.on_exit(1, &mut out);
        assert_eq!((out.len(), l.held()), (1, 0));
    }

    #[test]
    fn local_peers() {
        let t = |l: &str, r: &str| Tuple {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
        };
        assert!(is_local_peer(&t("127.0.0.1:1", "127.0.0.1:2")));
        assert!(is_local_peer(&t("[::1]:1", "[::1]:2")));
        assert!(is_local_peer(&t("[::ffff:10.0.0.1]:1", "10.0.0.1:2")));
        assert!(!is_local_peer(&t("10.0.0.1:1", "10.0.0.2:2")));
    }
}
