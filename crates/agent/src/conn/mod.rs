//! Connection tracking: per-process, per-socket state that turns the
//! ordered stream of data records into protocol parser input, and parser
//! output into finished exchanges tagged with their connection.
//!
//! A socket is identified by its kernel `struct sock` address (stable while
//! it lives); close records carry it, and `(tgid, fd)` tracks which socket
//! each descriptor names. Every table is
//! bounded: connections by `max_conns` (least recently active evicted,
//! counted), per-connection state by the parser's own limits, and all of
//! it together by a byte budget (`Budget`: oldest evicted first, idle ones
//! expired), so that many slow or idle connections cannot grow the agent.

use rustc_hash::FxHashMap as HashMap;

use ratatosk_protocols::op::{Operation, Outcome};
use ratatosk_protocols::parse::{Direction, Role, Segment};
use ratatosk_protocols::parser::{ConnParser, Limits, Output, Protocol, State};
use ratatosk_protocols::registry::{self, FirstBytes, Verdict};

mod tls;

use crate::decode::{Data, RawTuple, TlsKeys, Tuple};
use crate::selfmon::{ReasonLabel, SelfMetrics};

/// A parsed operation and the connection it happened on.
#[derive(Debug)]
pub struct Finished {
    pub tgid: u32,
    pub tuple: Tuple,
    pub op: Operation,
    /// Time the request waited in the socket before the server read it.
    pub queue_ns: Option<u64>,
    /// The exchange was read from TLS plaintext (`https`).
    pub tls: bool,
    /// The thread that moved the request's first segment (the server's
    /// reader, the client's writer); 0 when not known.
    pub tid: u32,
}

/// A request began on a connection: a server read one, or a client wrote
/// one to a peer on this host. Told to the trace linker (spans/link.rs),
/// which needs to know which thread serves which request while the
/// request is in progress, and which local calls are under way.
#[derive(Debug, Clone, Copy)]
pub struct RequestStart {
    pub tgid: u32,
    pub tid: u32,
    pub ts_ns: u64,
    pub role: Role,
    pub tuple: Tuple,
}

/// Most bytes and segments held, both directions together, while the
/// first bytes of a connection could still become a known protocol.
const PROBE_MAX_BYTES: usize = 4096;
const PROBE_MAX_SEGMENTS: usize = 16;

/// What both directions said before the protocol was known, replayed
/// into the parser once it is.
#[derive(Default)]
struct Probe {
    ingress: Vec<u8>,
    egress: Vec<u8>,
    /// In arrival order.
    segments: Vec<HeldSegment>,
}

struct HeldSegment {
    direction: Direction,
    ts_ns: u64,
    /// Captured bytes, at the end of the direction's buffer so far.
    captured: usize,
    /// Bytes moved.
    len: u64,
    queued_ns: u64,
    tid: u32,
}

impl Probe {
    fn bytes(&self, dir: Direction) -> &Vec<u8> {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    fn held(&self) -> usize {
        self.ingress.len() + self.egress.len()
    }

    /// Bytes the probe stands for (captured or not).
    fn moved(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
}

enum Proto {
    /// Not enough payload seen yet to know the protocol.
    Detecting(Option<Box<Probe>>),
    Parsing {
        protocol: &'static dyn Protocol,
        parser: Box<dyn ConnParser>,
        /// Ingress on a server's connection.
        request_dir: Direction,
    },
    /// Not a protocol we parse (or no longer: upgraded); bytes are counted.
    Opaque,
}

/// Recent ingress segments and how long their data had waited:
/// (segment ts, queued ns).
const ARRIVALS: usize = 4;

/// The memory budget of connection and parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes of state (approximate: see `conn_bytes`) for every tracked
    /// connection together; past it the least recently active go first.
    pub max_bytes: usize,
    /// A connection with no record for this long is forgotten.
    pub idle_ns: u64,
}

/// 16 MiB: with the binary, the OTLP span queue (~8 MB when full) and the
/// RED stores, the agent stays within its 40 MB RSS target.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;
/// Longer than common keep-alive (nginx 75 s) and pool idle timeouts' first
/// probes, so a quiet but live connection keeps its state (statement
/// tables, database) in normal use.
pub const DEFAULT_IDLE_NS: u64 = 300_000_000_000;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_bytes: DEFAULT_BUDGET_BYTES,
            idle_ns: DEFAULT_IDLE_NS,
        }
    }
}

/// How often idle connections are looked for.
const SWEEP_NS: u64 = 1_000_000_000;

/// What a tracked connection costs besides its protocol state: its
/// entries in the connection and fd tables (the `Conn` lives inside the
/// first), with a control byte each, times 3/2 for the tables' spare
/// capacity (hashbrown fills 7/16 to 7/8 of its slots).
const CONN_BASE_BYTES: usize =
    (std::mem::size_of::<(u64, Conn)>() + std::mem::size_of::<(u32, u64)>() + 2) * 3 / 2;

/// Approximate bytes of one connection's state: honest to within the
/// allocator's rounding (capacities, not lengths, are counted).
fn conn_bytes(conn: &Conn) -> usize {
    let proto = match &conn.proto {
        Proto::Detecting(Some(p)) => {
            std::mem::size_of::<Probe>()
                + p.ingress.capacity()
                + p.egress.capacity()
                + p.segments.capacity() * std::mem::size_of::<HeldSegment>()
        }
        Proto::Parsing { parser, .. } => parser.state_bytes(),
        Proto::Detecting(None) | Proto::Opaque => 0,
    };
    CONN_BASE_BYTES + proto + conn.cipher.as_ref().map_or(0, |c| c.state_bytes())
}

/// Why a connection was forgotten before its close
/// (`ratatosk_connections_evicted_total{reason}`).
#[derive(Debug, Clone, Copy)]
enum Evict {
    /// `--max-connections` reached.
    MaxConnections,
    /// The state budget exceeded.
    Memory,
    /// No record for the idle timeout.
    Idle,
}

impl Evict {
    fn label(self) -> &'static str {
        match self {
            Evict::MaxConnections => "max_connections",
            Evict::Memory => "memory_budget",
            Evict::Idle => "idle",
        }
    }
}
/// Recent turns into the request direction (a request's first segment):
/// (segment ts, thread). Only turns are kept, so a request in many
/// segments or a long response does not push its start out.
const TURNS: usize = 4;

struct Conn {
    tuple: Tuple,
    /// What `tuple` was decoded from (default when it came decoded).
    raw_tuple: RawTuple,
    last_ns: u64,
    proto: Proto,
    arrivals: [(u64, u64); ARRIVALS],
    next_arrival: usize,
    turns: [(u64, u32); TURNS],
    next_turn: usize,
    /// Direction of the last parsed segment.
    last_dir: Option<Direction>,
    /// Plaintext comes from the TLS library or from decryption: the
    /// socket's own bytes (ciphertext) are not parsed.
    tls: bool,
    /// Decryption of the socket's ciphertext (OpenSSL handshake secrets).
    cipher: Option<Box<tls::Cipher>>,
    /// An fd that `fds` maps to this socket (kept true by
    /// `ProcConns::bind_fd`), so a record from it needs no `fds` lookup.
    fd: Option<u32>,
    /// Its connect or accept was seen before any data: the parser may
    /// assume the state a new connection starts in.
    opened: bool,
    /// Bytes this connection is counted for in `Tracker::bytes`.
    bytes: usize,
}

impl Conn {
    fn new(tuple: Tuple, raw_tuple: RawTuple, ts: u64, fd: Option<u32>) -> Self {
        Conn {
            fd,
            tuple,
            raw_tuple,
            last_ns: ts,
            proto: Proto::Detecting(None),
            arrivals: [(0, 0); ARRIVALS],
            next_arrival: 0,
            turns: [(0, 0); TURNS],
            next_turn: 0,
            last_dir: None,
            tls: false,
            cipher: None,
            opened: false,
            bytes: 0,
        }
    }

    /// How long the request had waited in the socket when the server
    /// read its first byte (kernel-tick resolution; None when not seen).
    fn queue_time(&self, ex: &Operation) -> Option<u64> {
        if ex.role != Role::Server {
            return None;
        }
        let (_, queued) = self
            .arrivals
            .iter()
            .find(|(ts, _)| *ts == ex.request_start_ns)?;
        (*queued > 0).then_some(*queued)
    }

    /// The thread that moved the request's first segment (0: not seen).
    fn request_tid(&self, ex: &Operation) -> u32 {
        self.turns
            .iter()
            .find(|(ts, _)| *ts == ex.request_start_ns)
            .map_or(0, |(_, tid)| *tid)
    }
}

#[derive(Default)]
struct ProcConns {
    conns: HashMap<u64, Conn>,
    fds: HashMap<u32, u64>,
}

impl ProcConns {
    /// Maps `fd` to `sock`, keeping every connection's `fd` shortcut true.
    fn bind_fd(&mut self, fd: u32, sock: u64) {
        if let Some(old) = self.fds.insert(fd, sock)
            && old != sock
            && let Some(c) = self.conns.get_mut(&old)
            && c.fd == Some(fd)
        {
            c.fd = None;
        }
        if let Some(c) = self.conns.get_mut(&sock) {
            c.fd = Some(fd);
        }
    }
}

pub struct Tracker {
    procs: HashMap<u32, ProcConns>,
    total: usize,
    max_conns: usize,
    /// State bytes of every tracked connection (sum of `Conn::bytes`).
    bytes: usize,
    budget: Budget,
    /// When idle connections are next looked for (record clock).
    next_sweep_ns: u64,
    limits: Limits,
    metrics: SelfMetrics,
    scratch: Output,
    /// Plaintext decrypted from one record, parsed right after.
    plain: tls::PlainBuf,
    /// Request starts for the trace linker, taken by the reader after
    /// each record; only filled when `notify_starts` is set.
    pub starts: Vec<RequestStart>,
    notify_starts: bool,
}

impl Tracker {
    pub fn new(max_conns: usize, limits: Limits, metrics: SelfMetrics) -> Self {
        Tracker {
            procs: HashMap::default(),
            total: 0,
            max_conns: max_conns.max(1),
            bytes: 0,
            budget: Budget::default(),
            next_sweep_ns: 0,
            limits,
            metrics,
            scratch: Output::default(),
            plain: tls::PlainBuf::default(),
            starts: Vec::new(),
            notify_starts: false,
        }
    }

    /// Report request starts in `starts` (the trace linker is on).
    pub fn notify_starts(&mut self, on: bool) {
        self.notify_starts = on;
    }

    pub fn tracked(&self) -> usize {
        self.total
    }

    /// Bounds connection state by `budget` instead of the default.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Budget {
            max_bytes: budget.max_bytes.max(1),
            ..budget
        };
        self
    }

    /// Approximate bytes of connection and parser state held.
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Counts `conn`'s state anew (after its buffers may have changed).
    fn account(bytes: &mut usize, conn: &mut Conn) {
        let now = conn_bytes(conn);
        *bytes = bytes.saturating_sub(conn.bytes).saturating_add(now);
        conn.bytes = now;
    }

    /// Evicts the least recently active connections while state is over
    /// budget, down to seven eighths of it so the sort that finds them is
    /// paid once per eighth of the budget, not per record.
    fn enforce_budget(&mut self, out: &mut Vec<Finished>) {
        if self.bytes <= self.budget.max_bytes {
            return;
        }
        let target = self.budget.max_bytes - self.budget.max_bytes / 8;
        let mut ages = self.ages();
        ages.sort_unstable();
        for (ts, tgid, sock) in ages {
            if self.bytes <= target {
                break;
            }
            self.evict(tgid, sock, ts, Evict::Memory, out);
        }
        self.prune_procs();
    }

    /// Forgets connections without a record for the idle timeout; looks at
    /// most once a second. `now_ns` is on the records' clock (monotonic).
    pub fn expire_idle(&mut self, now_ns: u64, out: &mut Vec<Finished>) {
        if now_ns < self.next_sweep_ns {
            return;
        }
        self.next_sweep_ns = now_ns.saturating_add(SWEEP_NS);
        let Some(cutoff) = now_ns.checked_sub(self.budget.idle_ns) else {
            return;
        };
        let idle: Vec<(u64, u32, u64)> = self
            .procs
            .iter()
            .flat_map(|(tgid, p)| p.conns.iter().map(move |(s, c)| (c.last_ns, *tgid, *s)))
            .filter(|(ts, _, _)| *ts < cutoff)
            .collect();
        if idle.is_empty() {
            return;
        }
        for (ts, tgid, sock) in idle {
            self.evict(tgid, sock, ts, Evict::Idle, out);
        }
        self.prune_procs();
    }

    /// (last activity, tgid, socket) of every tracked connection.
    fn ages(&self) -> Vec<(u64, u32, u64)> {
        self.procs
            .iter()
            .flat_map(|(tgid, p)| p.conns.iter().map(move |(s, c)| (c.last_ns, *tgid, *s)))
            .collect()
    }

    fn evict(&mut self, tgid: u32, sock: u64, ts: u64, why: Evict, out: &mut Vec<Finished>) {
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.fds.retain(|_, s| *s != sock);
        }
        self.finish(tgid, sock, ts, out);
        self.metrics
            .connections_evicted
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
    }

    fn prune_procs(&mut self) {
        self.procs
            .retain(|_, p| !p.conns.is_empty() || !p.fds.is_empty());
    }

    /// accept() or connect() completed: a fresh connection on `sock_id`.
    pub fn on_open(
        &mut self,
        tgid: u32,
        ts: u64,
        sock_id: u64,
        fd: u32,
        tuple: Tuple,
        out: &mut Vec<Finished>,
    ) {
        // The socket address may have been reused since we last saw it.
        self.finish(tgid, sock_id, ts, out);
        self.make_room(out);
        let pc = self.procs.entry(tgid).or_default();
        let mut conn = Conn::new(tuple, RawTuple::default(), ts, None);
        conn.opened = true;
        Self::account(&mut self.bytes, &mut conn);
        pc.conns.insert(sock_id, conn);
        pc.bind_fd(fd, sock_id);
        self.total += 1;
        self.enforce_budget(out);
    }

    /// One data record; true if it started tracking a connection (first
    /// seen by its bytes, not by an open record).
    pub fn on_data(&mut self, d: &Data<'_>, out: &mut Vec<Finished>) -> bool {
        let tgid = d.hdr.tgid;
        // Fast path, nearly every record: a known connection already
        // mapped from this fd costs two lookups.
        if let Some(pc) = self.procs.get_mut(&tgid)
            && let Some(conn) = pc.conns.get_mut(&d.sock_id)
            && conn.fd == Some(d.fd)
        {
            let mut ctx = Ctx {
                limits: self.limits,
                metrics: &self.metrics,
                scratch: &mut self.scratch,
                tgid,
                tid: d.hdr.tid,
                starts: self.notify_starts.then_some(&mut self.starts),
                out,
            };
            feed_record(&mut ctx, conn, d, &mut self.plain);
            Self::account(&mut self.bytes, conn);
            self.enforce_budget(out);
            return false;
        }
        let known = self
            .procs
            .get(&tgid)
            .is_some_and(|p| p.conns.contains_key(&d.sock_id));
        if !known {
            self.make_room(out);
            self.total += 1;
        }
        let Tracker {
            procs,
            bytes,
            limits,
            metrics,
            scratch,
            plain,
            starts,
            notify_starts,
            ..
        } = self;
        let pc = procs.entry(tgid).or_default();
        pc.conns
            .entry(d.sock_id)
            .or_insert_with(|| Conn::new(d.tuple.decode(), d.tuple, d.hdr.ts_ns, None));
        pc.bind_fd(d.fd, d.sock_id);
        let Some(conn) = pc.conns.get_mut(&d.sock_id) else {
            return !known;
        };
        let mut ctx = Ctx {
            limits: *limits,
            metrics,
            scratch,
            tgid,
            tid: d.hdr.tid,
            starts: notify_starts.then_some(starts),
            out,
        };
        feed_record(&mut ctx, conn, d, plain);
        Self::account(bytes, conn);
        self.enforce_budget(out);
        !known
    }

    /// The secrets of a connection whose ciphertext is being captured:
    /// what waited for them is decrypted and parsed now.
    pub fn on_tls_keys(&mut self, keys: &TlsKeys, out: &mut Vec<Finished>) {
        let tgid = keys.hdr.tgid;
        let Tracker {
            procs,
            bytes,
            limits,
            metrics,
            scratch,
            plain,
            starts,
            notify_starts,
            ..
        } = self;
        // A connection whose records were never seen (or evicted) has
        // nothing to decrypt.
        let Some(conn) = procs
            .get_mut(&tgid)
            .and_then(|p| p.conns.get_mut(&keys.sock_id))
            .filter(|c| c.cipher.is_some())
        else {
            tls::count_failure(metrics, "no_connection");
            return;
        };
        if let Some(c) = conn.cipher.as_mut() {
            c.set_keys(keys, plain, metrics);
        }
        // Records decrypted now were moved by threads not known here.
        let mut ctx = Ctx {
            limits: *limits,
            metrics,
            scratch,
            tgid,
            tid: 0,
            starts: notify_starts.then_some(starts),
            out,
        };
        feed_decrypted(&mut ctx, conn, plain);
        Self::account(bytes, conn);
        self.enforce_budget(out);
    }

    /// close(fd) of the TCP socket `sock_id` in `tgid`.
    pub fn on_close(&mut self, tgid: u32, fd: u32, sock_id: u64, ts: u64, out: &mut Vec<Finished>) {
        let Some(pc) = self.procs.get_mut(&tgid) else {
            return;
        };
        // The fd may already name another socket (the socket hooks report
        // the close of a socket whose fd was dup'ed over): unmap it only
        // if it is this one's.
        if pc.fds.get(&fd) == Some(&sock_id) {
            pc.fds.remove(&fd);
        }
        self.finish(tgid, sock_id, ts, out);
        if self
            .procs
            .get(&tgid)
            .is_some_and(|p| p.conns.is_empty() && p.fds.is_empty())
        {
            self.procs.remove(&tgid);
        }
    }

    /// The process is gone: every connection of it ends now.
    pub fn on_exit(&mut self, tgid: u32, ts: u64, out: &mut Vec<Finished>) {
        let Some(pc) = self.procs.remove(&tgid) else {
            return;
        };
        for (_, conn) in pc.conns {
            self.total = self.total.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(conn.bytes);
            self.close_conn(tgid, conn, ts, out);
        }
    }

    /// Forgets everything of a process without emitting (it was found not
    /// to be selected).
    pub fn forget(&mut self, tgid: u32) {
        if let Some(pc) = self.procs.remove(&tgid) {
            self.total = self.total.saturating_sub(pc.conns.len());
            let held: usize = pc.conns.values().map(|c| c.bytes).sum();
            self.bytes = self.bytes.saturating_sub(held);
        }
    }

    fn finish(&mut self, tgid: u32, sock_id: u64, ts: u64, out: &mut Vec<Finished>) {
        let Some(conn) = self
            .procs
            .get_mut(&tgid)
            .and_then(|p| p.conns.remove(&sock_id))
        else {
            return;
        };
        self.total = self.total.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(conn.bytes);
        self.close_conn(tgid, conn, ts, out);
    }

    fn close_conn(&mut self, tgid: u32, mut conn: Conn, ts: u64, out: &mut Vec<Finished>) {
        match &mut conn.proto {
            Proto::Parsing {
                protocol, parser, ..
            } => {
                let protocol = *protocol;
                parser.on_close(ts, &mut self.scratch);
                // A request the close left unanswered lasted until the
                // close: that is when its caller learnt it failed.
                for op in &mut self.scratch.ops {
                    if op.outcome == Outcome::NoResponse && op.response_end_ns == 0 {
                        op.response_end_ns = ts.max(op.request_end_ns);
                    }
                }
                collect(tgid, &conn, protocol, &self.metrics, &mut self.scratch, out);
            }
            // Bytes held until the end: the protocol was never known.
            Proto::Detecting(Some(p)) => {
                unparsed(&self.metrics, p.moved(), "undetected");
            }
            Proto::Detecting(None) | Proto::Opaque => {}
        }
    }

    /// Keeps the table under `max_conns` by evicting the least recently
    /// active eighth (an amortised sort instead of an LRU list on the hot
    /// path). Evicted connections are closed, not silently dropped.
    fn make_room(&mut self, out: &mut Vec<Finished>) {
        if self.total < self.max_conns {
            return;
        }
        let mut ages = self.ages();
        ages.sort_unstable();
        let n = (self.max_conns / 8).max(1);
        for (ts, tgid, sock) in ages.into_iter().take(n) {
            self.evict(tgid, sock, ts, Evict::MaxConnections, out);
        }
        self.prune_procs();
    }
}

/// What the parsing path borrows from the tracker.
struct Ctx<'a> {
    limits: Limits,
    metrics: &'a SelfMetrics,
    scratch: &'a mut Output,
    tgid: u32,
    /// Thread of the record being parsed (0: not known).
    tid: u32,
    starts: Option<&'a mut Vec<RequestStart>>,
    out: &'a mut Vec<Finished>,
}

/// One data record of a tracked connection: its bytes (or the plaintext
/// decrypted from them) into the connection's parser.
fn feed_record(ctx: &mut Ctx<'_>, conn: &mut Conn, d: &Data<'_>, plain: &mut tls::PlainBuf) {
    conn.last_ns = d.hdr.ts_ns;
    // connect() may report the tuple before the local port is final, so
    // a later record completes it. But a socket the peer reset while we
    // wrote to it reaches TCP_CLOSE inside that very write, and the
    // kernel then zeroes its local port (inet_num, in __inet_put_port):
    // such a record must not erase the port we knew.
    if d.tuple != conn.raw_tuple && (d.tuple.local_port() != 0 || conn.tuple.local.port() == 0) {
        conn.tuple = d.tuple.decode();
        conn.raw_tuple = d.tuple;
    }
    if d.cipher {
        // Ciphertext to decrypt: its plaintext goes through the same
        // parsers, in the order of the records.
        if conn.cipher.is_none() {
            conn.cipher = Some(Box::new(tls::Cipher::new(d.direction)));
            conn.tls = true;
            restart_detection(conn, ctx.metrics);
        }
        if let Some(c) = conn.cipher.as_mut() {
            c.feed(d, plain, ctx.metrics);
        }
        feed_decrypted(ctx, conn, plain);
        return;
    }
    if d.tls != conn.tls {
        if conn.tls {
            // Ciphertext that left the kernel before the socket was
            // known to carry TLS: the plaintext is parsed instead.
            ctx.metrics.unparsed_bytes.inc_by(d.len);
            return;
        }
        // First plaintext on a connection whose handshake was seen as
        // ciphertext (and given up on): parse from here, as HTTP over
        // TLS goes through the same parsers as plaintext.
        conn.tls = true;
        restart_detection(conn, ctx.metrics);
    }
    // An HTTP/2 record the kernel walked is several segments (copied
    // frame headers and header blocks, each followed by the DATA payload
    // it skipped), all of the same syscall.
    for seg in d.segments() {
        feed_plain(ctx, conn, d.direction, seg, d.queued_ns);
    }
}

/// Parses the plaintext that decryption produced (held in `plain`).
fn feed_decrypted(ctx: &mut Ctx<'_>, conn: &mut Conn, plain: &mut tls::PlainBuf) {
    for seg in plain.segments() {
        feed_plain(ctx, conn, seg.direction, seg.segment, seg.queued_ns);
    }
    plain.clear();
}

/// One segment of plaintext (socket bytes, or TLS plaintext) into the
/// connection's protocol detection and parser.
fn feed_plain(
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    direction: Direction,
    seg: Segment<'_>,
    queued_ns: u64,
) {
    if let Proto::Detecting(probe) = &mut conn.proto {
        if seg.data.is_empty() {
            // Nothing to detect from (all gap): counted, not held.
            ctx.metrics.unparsed_bytes.inc_by(seg.len);
            return;
        }
        let mut p = probe.take().unwrap_or_default();
        if p.held() + seg.data.len() > PROBE_MAX_BYTES || p.segments.len() >= PROBE_MAX_SEGMENTS {
            unparsed(ctx.metrics, p.moved() + seg.len, "undetected");
            conn.proto = Proto::Opaque;
            return;
        }
        match direction {
            Direction::Ingress => p.ingress.extend_from_slice(seg.data),
            Direction::Egress => p.egress.extend_from_slice(seg.data),
        }
        p.segments.push(HeldSegment {
            direction,
            ts_ns: seg.ts_ns,
            captured: seg.data.len(),
            len: seg.len,
            queued_ns,
            tid: ctx.tid,
        });
        let first = FirstBytes {
            ingress: &p.ingress,
            egress: &p.egress,
            local_port: conn.tuple.local.port(),
            remote_port: conn.tuple.remote.port(),
        };
        match registry::detect(first) {
            Verdict::NeedMore => {
                conn.proto = Proto::Detecting(Some(p));
            }
            Verdict::Unknown => {
                unparsed(ctx.metrics, p.moved(), "unknown_protocol");
                conn.proto = Proto::Opaque;
            }
            Verdict::Detected {
                protocol,
                request_dir,
            } => {
                let mut parser = protocol.parser(request_dir, &ctx.limits);
                // Not after a TLS restart: the plaintext starts mid-way.
                if conn.opened && !conn.tls {
                    parser.start_seen();
                }
                conn.proto = Proto::Parsing {
                    protocol,
                    parser,
                    request_dir,
                };
                replay(ctx, conn, &p);
            }
        }
        return;
    }
    parse(ctx, conn, direction, seg, queued_ns);
}

/// Feeds what detection held, in arrival order.
fn replay(ctx: &mut Ctx<'_>, conn: &mut Conn, p: &Probe) {
    let (mut at_in, mut at_eg) = (0, 0);
    for s in &p.segments {
        let at = match s.direction {
            Direction::Ingress => &mut at_in,
            Direction::Egress => &mut at_eg,
        };
        let data = p
            .bytes(s.direction)
            .get(*at..*at + s.captured)
            .unwrap_or(&[]);
        *at += s.captured;
        let seg = Segment {
            ts_ns: s.ts_ns,
            data,
            len: s.len,
        };
        let tid = std::mem::replace(&mut ctx.tid, s.tid);
        parse(ctx, conn, s.direction, seg, s.queued_ns);
        ctx.tid = tid;
    }
}

/// One segment into the connection's parser.
fn parse(
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    direction: Direction,
    seg: Segment<'_>,
    queued_ns: u64,
) {
    let Proto::Parsing {
        protocol,
        parser,
        request_dir,
    } = &mut conn.proto
    else {
        ctx.metrics.unparsed_bytes.inc_by(seg.len);
        return;
    };
    let protocol = *protocol;
    if direction == Direction::Ingress {
        conn.arrivals[conn.next_arrival % ARRIVALS] = (seg.ts_ns, queued_ns);
        conn.next_arrival = conn.next_arrival.wrapping_add(1);
    }
    if direction == *request_dir && conn.last_dir != Some(direction) {
        conn.turns[conn.next_turn % TURNS] = (seg.ts_ns, ctx.tid);
        conn.next_turn = conn.next_turn.wrapping_add(1);
        if let Some(starts) = ctx.starts.as_deref_mut() {
            notice_start(starts, ctx.tgid, ctx.tid, seg.ts_ns, direction, &conn.tuple);
        }
    }
    conn.last_dir = Some(direction);
    parser.on_data(direction, seg, ctx.scratch);
    let state = parser.state();
    if !ctx.scratch.is_empty() {
        collect(ctx.tgid, conn, protocol, ctx.metrics, ctx.scratch, ctx.out);
    }
    if let State::Done(reason) = state {
        conn.proto = Proto::Opaque;
        unparsed(ctx.metrics, 0, reason);
    }
}

/// Moves what the parser produced into `out` with the connection's
/// identity, and counts the parser's losses.
fn collect(
    tgid: u32,
    conn: &Conn,
    protocol: &dyn Protocol,
    metrics: &SelfMetrics,
    parsed: &mut Output,
    out: &mut Vec<Finished>,
) {
    for (reason, n) in parsed.losses.drain(..) {
        metrics.parser_error(protocol.name(), reason, n);
    }
    for op in parsed.ops.drain(..) {
        let queue_ns = conn.queue_time(&op);
        let tid = conn.request_tid(&op);
        out.push(Finished {
            tgid,
            tuple: conn.tuple,
            op,
            queue_ns,
            tls: conn.tls,
            tid,
        });
    }
}

/// Most request starts held between two records (a record starts at
/// most one request; decryption of a backlog can start more).
const MAX_STARTS: usize = 4096;

/// Tells the linker a request began: every server request (the thread
/// that read it serves it), and client requests to a peer on this host
/// (whose server span may be the child of the client span).
fn notice_start(
    starts: &mut Vec<RequestStart>,
    tgid: u32,
    tid: u32,
    ts_ns: u64,
    direction: Direction,
    tuple: &Tuple,
) {
    let role = match direction {
        Direction::Ingress => Role::Server,
        Direction::Egress => Role::Client,
    };
    let wanted = match role {
        // The linker keys server requests by thread.
        Role::Server => tid != 0,
        Role::Client => crate::spans::link::is_local_peer(tuple),
    };
    if !wanted || starts.len() >= MAX_STARTS {
        return;
    }
    starts.push(RequestStart {
        tgid,
        tid,
        ts_ns,
        role,
        tuple: *tuple,
    });
}

/// The connection's plaintext starts over (TLS found under it): bytes
/// held for detection were ciphertext, counted as unparsed.
fn restart_detection(conn: &mut Conn, m: &SelfMetrics) {
    if let Proto::Detecting(Some(p)) = &conn.proto {
        m.unparsed_bytes.inc_by(p.moved());
    }
    conn.proto = Proto::Detecting(None);
}

/// A connection given up on; `bytes` it stood for.
fn unparsed(m: &SelfMetrics, bytes: u64, reason: &'static str) {
    m.unparsed_bytes.inc_by(bytes);
    m.unparsed_connections
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Header;
    use ratatosk_protocols::op::{Detail, HttpDetail};

    fn http(op: &Operation) -> &HttpDetail {
        match &op.detail {
            Detail::Http(h) => h,
            _ => panic!("not HTTP"),
        }
    }

    fn tuple() -> Tuple {
        Tuple {
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "127.0.0.1:50000".parse().unwrap(),
        }
    }

    fn local_port_zero() -> RawTuple {
        let mut t = tuple();
        t.local.set_port(0);
        t.into()
    }

    fn data<'a>(sock: u64, fd: u32, ts: u64, dir: Direction, payload: &'a [u8]) -> Data<'a> {
        Data {
            hdr: Header {
                tgid: 7,
                tid: 7,
                ts_ns: ts,
            },
            sock_id: sock,
            len: payload.len() as u64,
            queued_ns: 0,
            fd,
            direction: dir,
            tls: false,
            cipher: false,
            tuple: tuple().into(),
            ids: None,
            payload,
            chunks: Default::default(),
        }
    }

    fn tls_data<'a>(sock: u64, ts: u64, dir: Direction, payload: &'a [u8]) -> Data<'a> {
        Data {
            tls: true,
            ..data(sock, 3, ts, dir, payload)
        }
    }

    fn tracker(max: usize) -> (Tracker, SelfMetrics) {
        let m = SelfMetrics::default();
        (Tracker::new(max, Limits::default(), m.clone()), m)
    }

    const REQ: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    /// A TLS alert record (handshake failure).
    const TLS_ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

    #[test]
    fn request_split_before_detection_is_replayed() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        // "GET /" alone cannot be told from other protocols yet.
        t.on_data(&data(1, 3, 10, Direction::Ingress, &REQ[..5]), &mut out);
        t.on_data(&data(1, 3, 20, Direction::Ingress, &REQ[5..]), &mut out);
        t.on_data(&data(1, 3, 30, Direction::Egress, RESP), &mut out);
        assert_eq!(out.len(), 1);
        let ex = &out[0].op;
        assert_eq!(
            (
                http(ex).method.as_str(),
                http(ex).target.as_str(),
                http(ex).status
            ),
            ("GET", "/a", 200)
        );
        assert_eq!(
            (ex.request_start_ns, ex.response_end_ns),
            (10, 30),
            "starts at the first held byte"
        );
        assert_eq!(ex.role, Role::Server);
    }

    #[test]
    fn other_protocols_are_counted_not_parsed() {
        let (mut t, m) = tracker(16);
        let mut out = Vec::new();
        // A TLS ClientHello record header.
        t.on_data(
            &data(
                1,
                3,
                10,
                Direction::Ingress,
                &[0x16, 0x03, 0x01, 0x02, 0x00],
            ),
            &mut out,
        );
        t.on_data(&data(1, 3, 20, Direction::Ingress, REQ), &mut out);
        assert!(out.is_empty());
        // Held while the server could still say what it is.
        assert_eq!(m.unparsed_bytes.get(), 0);
        t.on_data(&data(1, 3, 30, Direction::Egress, TLS_ALERT), &mut out);
        assert!(out.is_empty());
        assert_eq!(
            m.unparsed_bytes.get(),
            (5 + REQ.len() + TLS_ALERT.len()) as u64
        );
    }

    #[test]
    fn tls_plaintext_is_parsed_after_the_handshake_and_ciphertext_ignored() {
        let (mut t, m) = tracker(16);
        let mut out = Vec::new();
        // Handshake seen as ciphertext: given up on.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00];
        t.on_data(&data(1, 3, 10, Direction::Ingress, &hello), &mut out);
        // Then the library's plaintext, and a late ciphertext record.
        t.on_data(&tls_data(1, 20, Direction::Ingress, REQ), &mut out);
        let record = [0x17, 0x03, 0x03, 0x00, 0x20];
        t.on_data(&data(1, 3, 25, Direction::Egress, &record), &mut out);
        t.on_data(&tls_data(1, 30, Direction::Egress, RESP), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].tls);
        assert_eq!(http(&out[0].op).target, "/a");
        assert_eq!(http(&out[0].op).status, 200);
        assert_eq!(m.unparsed_bytes.get(), 10);
    }

    #[test]
    fn a_reset_socket_keeps_its_local_port_and_a_late_port_completes_it() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(&data(1, 3, 10, Direction::Ingress, REQ), &mut out);
        // The response's write saw the peer's reset: local port 0.
        let mut resp = data(1, 3, 20, Direction::Egress, RESP);
        resp.tuple = local_port_zero();
        t.on_data(&resp, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tuple, tuple());

        // A client's connect() reported before its port was bound.
        let mut early = data(2, 4, 30, Direction::Egress, REQ);
        early.tuple = local_port_zero();
        t.on_data(&early, &mut out);
        t.on_data(&data(2, 4, 40, Direction::Ingress, RESP), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].tuple, tuple());
    }

    #[test]
    fn close_maps_fd_back_to_the_socket_and_flushes() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(&data(9, 4, 10, Direction::Egress, REQ), &mut out);
        t.on_close(7, 4, 9, 50, &mut out);
        assert_eq!(
            out.len(),
            1,
            "a request without response is flushed at close"
        );
        assert_eq!(http(&out[0].op).status, 0);
        assert_eq!(out[0].op.role, Role::Client);
        // It lasted until the close.
        assert_eq!(out[0].op.outcome, Outcome::NoResponse);
        assert_eq!(out[0].op.end_ns(), 50);
        assert_eq!(t.tracked(), 0);
        // Closing an fd we never saw does nothing.
        t.on_close(7, 99, 99, 60, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_fd_reused_without_a_close_seen_maps_to_its_latest_socket() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(&data(1, 3, 10, Direction::Ingress, REQ), &mut out);
        // fd 3 now names socket 2 (its close was not seen), then socket 1
        // again: each record remaps it, whatever the shortcut remembered.
        t.on_data(&data(2, 3, 20, Direction::Ingress, REQ), &mut out);
        t.on_data(&data(1, 3, 30, Direction::Ingress, &[]), &mut out);
        t.on_close(7, 3, 1, 40, &mut out);
        assert_eq!(out.len(), 1, "only socket 1 closed");
        assert_eq!(out[0].op.request_start_ns, 10);
        assert_eq!(t.tracked(), 1);
        t.on_data(&data(2, 3, 50, Direction::Ingress, &[]), &mut out);
        t.on_close(7, 3, 2, 60, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].op.request_start_ns, 20);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn close_of_a_socket_whose_fd_now_names_another_keeps_the_other() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(&data(1, 3, 10, Direction::Ingress, REQ), &mut out);
        t.on_data(&data(2, 3, 20, Direction::Ingress, REQ), &mut out);
        // Socket 1 closes (its fd 3 was dup2'ed over): socket 2 keeps fd 3.
        t.on_close(7, 3, 1, 30, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].op.request_start_ns, 10);
        t.on_close(7, 3, 2, 40, &mut out);
        assert_eq!(out.len(), 2, "fd 3 still mapped to socket 2");
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn table_stays_bounded_and_counts_evictions() {
        let (mut t, m) = tracker(8);
        let mut out = Vec::new();
        for sock in 0..100u64 {
            t.on_data(
                &data(sock, sock as u32, sock, Direction::Ingress, REQ),
                &mut out,
            );
        }
        assert!(t.tracked() <= 8, "{}", t.tracked());
        let evicted = m
            .connections_evicted
            .get_or_create(&ReasonLabel {
                reason: "max_connections",
            })
            .get();
        assert!(evicted >= 92, "{evicted}");
        // Evicted connections flushed their pending requests.
        assert!(out.len() >= 92);
    }

    fn evicted(m: &SelfMetrics, reason: &'static str) -> u64 {
        m.connections_evicted
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    #[test]
    fn state_stays_within_the_byte_budget_oldest_first() {
        let m = SelfMetrics::default();
        let budget = Budget {
            max_bytes: 256 * 1024,
            idle_ns: u64::MAX,
        };
        let mut t = Tracker::new(1 << 20, Limits::default(), m.clone()).with_budget(budget);
        let mut out = Vec::new();
        // Slowloris: every connection holds half a request head.
        let half = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaa";
        for sock in 0..5000u64 {
            t.on_data(
                &data(sock, sock as u32, 1000 + sock, Direction::Ingress, half),
                &mut out,
            );
            assert!(t.state_bytes() <= budget.max_bytes, "{}", t.state_bytes());
        }
        let gone = evicted(&m, "memory_budget");
        assert!(gone > 0 && t.tracked() < 5000, "{gone} {}", t.tracked());
        assert_eq!(gone as usize + t.tracked(), 5000);
        // The newest stayed: the last connection still completes.
        t.on_data(
            &data(4999, 4999, 9000, Direction::Ingress, b"\r\n\r\n"),
            &mut out,
        );
        t.on_data(&data(4999, 4999, 9001, Direction::Egress, RESP), &mut out);
        assert!(out.iter().any(|f| f.op.request_start_ns == 1000 + 4999));
        // Accounting returns to zero when everything closes.
        for sock in 0..5000u64 {
            t.on_close(7, sock as u32, sock, 10_000, &mut out);
        }
        assert_eq!((t.tracked(), t.state_bytes()), (0, 0));
    }

    #[test]
    fn a_connection_counts_its_parser_buffers() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(
            &data(1, 3, 10, Direction::Ingress, b"GET / HTTP/1.1\r\n"),
            &mut out,
        );
        let small = t.state_bytes();
        let pad = vec![b'a'; 8000];
        let mut big = b"X-Pad: ".to_vec();
        big.extend_from_slice(&pad);
        t.on_data(&data(1, 3, 20, Direction::Ingress, &big), &mut out);
        assert!(
            t.state_bytes() >= small + 8000,
            "{small} {}",
            t.state_bytes()
        );
    }

    #[test]
    fn idle_connections_expire() {
        let m = SelfMetrics::default();
        let budget = Budget {
            max_bytes: 1 << 30,
            idle_ns: 1_000,
        };
        let mut t = Tracker::new(16, Limits::default(), m.clone()).with_budget(budget);
        let mut out = Vec::new();
        t.on_data(&data(1, 3, 10, Direction::Ingress, REQ), &mut out);
        t.on_data(&data(2, 4, 5_000, Direction::Ingress, REQ), &mut out);
        t.expire_idle(5_500, &mut out);
        assert_eq!((t.tracked(), evicted(&m, "idle")), (1, 1));
        // The idle one's request was flushed (no response).
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].op.outcome, Outcome::NoResponse);
    }

    #[test]
    fn an_operation_carries_the_thread_of_its_first_request_segment() {
        let (mut t, _) = tracker(16);
        t.notify_starts(true);
        let mut out = Vec::new();
        let with_tid = |mut d: Data<'static>, tid| {
            d.hdr.tid = tid;
            d
        };
        // Server: read by 11 (split before detection), answered by 12.
        t.on_data(
            &with_tid(data(1, 3, 10, Direction::Ingress, &REQ[..5]), 11),
            &mut out,
        );
        t.on_data(
            &with_tid(data(1, 3, 20, Direction::Ingress, &REQ[5..]), 13),
            &mut out,
        );
        t.on_data(
            &with_tid(data(1, 3, 30, Direction::Egress, RESP), 12),
            &mut out,
        );
        // Client to a loopback peer: written by 21.
        t.on_data(
            &with_tid(data(2, 4, 40, Direction::Egress, REQ), 21),
            &mut out,
        );
        t.on_data(
            &with_tid(data(2, 4, 50, Direction::Ingress, RESP), 22),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].op.role, out[0].tid), (Role::Server, 11));
        assert_eq!((out[1].op.role, out[1].tid), (Role::Client, 21));
        let starts: Vec<_> = t.starts.iter().map(|s| (s.role, s.tid, s.ts_ns)).collect();
        assert_eq!(starts, [(Role::Server, 11, 10), (Role::Client, 21, 40)]);
    }

    /// An HTTP/2 exchange as the kernel's frame walk delivers it: the
    /// response's DATA payload skipped (chunked records), its HEADERS
    /// frame behind it in the same write. The parser gets consecutive
    /// segments with gaps inside DATA only and makes one whole span.
    #[test]
    fn walked_http2_records_make_whole_spans() {
        let (mut t, m) = tracker(16);
        let mut out = Vec::new();
        let frame = |len: u32, ty: u8, flags: u8, stream: u32| {
            let mut f = len.to_be_bytes()[1..].to_vec();
            f.extend([ty, flags]);
            f.extend(stream.to_be_bytes());
            f
        };
        let table = |chunks: &[(u32, u32)]| -> Vec<u8> {
            chunks
                .iter()
                .flat_map(|(c, s)| [c.to_ne_bytes(), s.to_ne_bytes()].concat())
                .collect()
        };
        // Client: preface, SETTINGS, two GET requests (static table only).
        let mut req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        req.extend(frame(0, 4, 0, 0));
        for stream in [1, 3] {
            req.extend(frame(3, 1, 0x5, stream));
            req.extend([0x82, 0x86, 0x84]);
        }
        t.on_data(&data(1, 3, 10, Direction::Ingress, &req), &mut out);
        // Server, one write: SETTINGS, stream 1's HEADERS and a DATA frame
        // of 100 000 bytes (skipped), then stream 3's HEADERS and DATA
        // (skipped) after it.
        let mut copied = frame(0, 4, 0, 0);
        copied.extend(frame(1, 1, 0x4, 1));
        copied.push(0x88);
        copied.extend(frame(100_000, 0, 0x1, 1));
        let first = copied.len() as u32;
        copied.extend(frame(1, 1, 0x4, 3));
        copied.push(0x88);
        copied.extend(frame(5, 0, 0x1, 3));
        let second = copied.len() as u32 - first;
        let tab = table(&[(first, 100_000), (second, 5)]);
        let mut resp = data(1, 3, 20, Direction::Egress, &copied);
        resp.len = copied.len() as u64 + 100_005;
        resp.chunks = crate::decode::Chunks::from_raw(&tab);
        t.on_data(&resp, &mut out);
        assert_eq!(out.len(), 2, "{:?}", m.parser_errors);
        let mut sizes: Vec<_> = out
            .iter()
            .map(|f| {
                assert!(!f.op.partial, "{:?}", f.op);
                (http(&f.op).status, http(&f.op).response_body_size)
            })
            .collect();
        sizes.sort();
        assert_eq!(sizes, [(200, 5), (200, 100_000)]);
        assert_eq!(m.unparsed_bytes.get(), 0);
    }

    #[test]
    fn exit_ends_every_connection_of_the_process() {
        let (mut t, _) = tracker(16);
        let mut out = Vec::new();
        t.on_data(&data(1, 3, 10, Direction::Ingress, REQ), &mut out);
        t.on_data(&data(2, 4, 10, Direction::Ingress, REQ), &mut out);
        t.on_exit(7, 99, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.tracked(), 0);
    }
}
