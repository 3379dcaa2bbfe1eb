//! One PostgreSQL connection: client messages queue what the server will
//! answer, server messages end operations in that order.
//!
//! Operations: one per statement of a simple Query, one per Execute of the
//! extended protocol (carrying the summary of the statement its portal was
//! bound from). Nothing of a password message, a Bind's parameter values,
//! a DataRow or an error's message text is kept past the message that
//! carried it: only the SQLSTATE of an error is.
//!
//! After an ErrorResponse the server skips the rest of a simple Query (its
//! later statements give no operation: they never ran) and, in the
//! extended protocol, every message up to the next Sync. The Execute the
//! error belongs to (the first one of the batch not yet answered) ends
//! with the SQLSTATE; the later Executes of that batch end as
//! [`Outcome::NoResponse`]: they were sent, never run, never answered.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use compact_str::CompactString;

use super::framer::{Caps, ENC_ANSWER, Event, Framer, Keep, Msg, Side, UNTYPED};
use crate::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use crate::parse::{Direction, Role, Segment};
use crate::parser::{ConnParser, Limits, Output, State};
use crate::sql::{Dialect, SqlSummary, summaries, summarize_as};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const PROTOCOL_3: u32 = 196_608;
/// Statement and portal names kept (longer ones are cut: names are
/// compared on what is kept).
const MAX_NAME: usize = 128;

/// What each message kind keeps of its body.
fn rule(side: Side, kind: u8, caps: Caps) -> Keep {
    match (side, kind) {
        (Side::Front, UNTYPED) => Keep::Upto(caps.head),
        // The text and its NUL (a Parse: its name first).
        (Side::Front, b'Q') => Keep::Upto(caps.query.saturating_add(1)),
        (Side::Front, b'P') => Keep::Upto(caps.query.saturating_add(MAX_NAME + 2)),
        // Names only: the parameter values after them are never kept.
        (Side::Front, b'B') => Keep::Nuls(2, 2 * MAX_NAME + 2),
        (Side::Front, b'E' | b'D' | b'C') => Keep::Upto(MAX_NAME + 2),
        (Side::Back, b'Z') => Keep::Upto(1),
        (Side::Back, b'R') => Keep::Upto(4),
        (Side::Back, b'C') => Keep::Upto(64),
        // Severity fields then the SQLSTATE come first; message text
        // after them is cut here and never read.
        (Side::Back, b'E') => Keep::Upto(64),
        (Side::Back, ENC_ANSWER) => Keep::Upto(1),
        _ => Keep::Nothing,
    }
}

/// A statement as operations show it.
type Stmt = Arc<SqlSummary>;

/// An operation waiting for (the rest of) its response.
#[derive(Debug)]
struct Draft {
    stmt: Option<Stmt>,
    req_start: u64,
    req_end: u64,
    resp_start: u64,
    resp_end: u64,
    rows: u64,
    /// A RowDescription came (simple Query): rows are returned, even none.
    described: bool,
    /// Response bytes were lost to a gap: row counts are unreliable.
    lost: bool,
}

impl Draft {
    fn new(stmt: Option<Stmt>, req_start: u64, req_end: u64) -> Self {
        Draft {
            stmt,
            req_start,
            req_end,
            resp_start: 0,
            resp_end: 0,
            rows: 0,
            described: false,
            lost: false,
        }
    }

    fn saw(&mut self, m: &Msg<'_>) {
        if self.resp_start == 0 {
            self.resp_start = m.ts_start.max(1);
        }
        self.resp_end = m.ts_end.max(self.resp_start);
    }
}

/// A simple Query: its statements, answered one after the other.
#[derive(Debug)]
struct QueryGroup {
    /// Statements not yet answered; the front one is running.
    stmts: VecDeque<Stmt>,
    /// The text was cut: statements past the known ones may follow.
    more: bool,
    cur: Draft,
    /// An error ended it: the rest never runs.
    failed: bool,
}

#[derive(Debug)]
enum Expect {
    Query(QueryGroup),
    /// Parse, Bind, Describe, Close or FunctionCall (by kind byte); a Parse
    /// carries its statement (for an error with no Execute after it) and
    /// name (forgotten if it fails).
    Step {
        kind: u8,
        stmt: Option<Stmt>,
        name: Option<CompactString>,
    },
    Execute(Draft),
    Sync,
}

/// Named things of a session (statements, portals), bounded.
#[derive(Debug, Default)]
struct Names {
    unnamed: Option<Stmt>,
    named: HashMap<CompactString, (Stmt, u64)>,
    seq: u64,
    /// Bytes of `named`'s keys and statements, kept up to date so that
    /// `state_bytes` stays O(1) per record.
    named_bytes: usize,
}

/// Bytes a named entry holds beyond the table slot (a statement shared
/// with a portal is counted in each).
fn entry_bytes(key: &CompactString, stmt: &Stmt) -> usize {
    key.len() + std::mem::size_of::<SqlSummary>() + stmt.heap_bytes()
}

impl Names {
    /// Approximate bytes held (a shared statement is counted each time).
    fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(CompactString, (Stmt, u64))>() + 8;
        self.unnamed.as_ref().map_or(0, |s| s.heap_bytes())
            + self.named.capacity() * entry
            + self.named_bytes
    }

    fn forget(&mut self, key: &CompactString) {
        if let Some((old, _)) = self.named.remove(key) {
            self.named_bytes = self.named_bytes.saturating_sub(entry_bytes(key, &old));
        }
    }

    fn get(&self, name: &[u8]) -> Option<Stmt> {
        if name.is_empty() {
            return self.unnamed.clone();
        }
        let key = name_key(name);
        self.named.get(&key).map(|(s, _)| s.clone())
    }

    /// Remembers `stmt` under `name`; false if an older one was evicted.
    fn put(&mut self, name: &[u8], stmt: Option<Stmt>, max: usize) -> bool {
        if name.is_empty() {
            self.unnamed = stmt;
            return true;
        }
        let key = name_key(name);
        let Some(stmt) = stmt else {
            self.forget(&key);
            return true;
        };
        self.seq += 1;
        let mut kept = true;
        if !self.named.contains_key(&key) && self.named.len() >= max.max(1) {
            if let Some(oldest) = self
                .named
                .iter()
                .min_by_key(|(_, (_, seq))| *seq)
                .map(|(k, _)| k.clone())
            {
                self.forget(&oldest);
            }
            kept = false;
        }
        self.forget(&key);
        self.named_bytes += entry_bytes(&key, &stmt);
        self.named.insert(key, (stmt, self.seq));
        kept
    }

    fn remove(&mut self, name: &[u8]) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.forget(&name_key(name));
        }
    }
}

fn name_key(name: &[u8]) -> CompactString {
    let cut = name.get(..MAX_NAME).unwrap_or(name);
    CompactString::from(String::from_utf8_lossy(cut))
}

/// First NUL-terminated field of `b` and what follows it (None without a
/// NUL).
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = memchr::memchr(0, b)?;
    Some((b.get(..n)?, b.get(n + 1..)?))
}

/// The PostgreSQL parser of one connection: the two directions' framers
/// and the session they feed.
#[derive(Debug)]
pub struct PgConn {
    front: Framer,
    back: Framer,
    s: Session,
}

/// What a connection remembers between messages.
#[derive(Debug)]
struct Session {
    request_dir: Direction,
    limits: Limits,
    done: Option<&'static str>,
    closed: bool,
    namespace: Option<CompactString>,
    stmts: Names,
    portals: Names,
    queue: VecDeque<Expect>,
    /// Timestamp of the first client message of the Execute being built.
    step_start: Option<u64>,
    /// First server answer to the steps before the next Execute.
    steps_resp: Option<u64>,
    /// Server framing was lost since the queue was last empty.
    back_lost: bool,
    /// Client framing was lost since the queue was last empty.
    front_lost: bool,
    /// The statement and time of the last Bind not yet followed by an
    /// Execute (see [`Session::infer_execute`]).
    unexecuted_bind: Option<(Option<Stmt>, u64)>,
    /// An encryption request awaits its one-byte answer.
    enc_requested: bool,
    /// A COPY ran in the current operation (counted once).
    copying: bool,
}

impl PgConn {
    pub fn new(request_dir: Direction, limits: &Limits) -> Self {
        let caps = Caps {
            head: limits.max_head_bytes,
            query: limits.max_query_len,
        };
        PgConn {
            front: Framer::new(Side::Front, rule, caps),
            back: Framer::new(Side::Back, rule, caps),
            s: Session::new(request_dir, limits),
        }
    }
}

impl Session {
    fn new(request_dir: Direction, limits: &Limits) -> Self {
        Session {
            request_dir,
            limits: *limits,
            done: None,
            closed: false,
            namespace: None,
            stmts: Names::default(),
            portals: Names::default(),
            queue: VecDeque::new(),
            step_start: None,
            steps_resp: None,
            back_lost: false,
            front_lost: false,
            unexecuted_bind: None,
            enc_requested: false,
            copying: false,
        }
    }

    fn summary(&self, sql: &[u8], cut: bool) -> Stmt {
        let max = self.limits.max_query_len;
        let cut = cut || sql.len() > max;
        let sql = sql.get(..max).unwrap_or(sql);
        Arc::new(summarize_as(
            sql,
            Dialect::Postgres,
            cut,
            max,
            self.limits.raw_sql,
        ))
    }

    fn op(
        &self,
        d: Draft,
        outcome: Outcome,
        status: Option<CompactString>,
        rows: Option<u64>,
    ) -> Operation {
        let mut detail = DbDetail::new(DbSystem::Postgresql);
        detail.namespace = self.namespace.clone();
        // Without a statement (prepared before capture began, or past a
        // cut Query text) it ran, but what it was is unknown.
        if let Some(s) = d.stmt {
            // A Query's statement ends here (moved); a prepared one stays
            // shared with the statement table (copied).
            let s = Arc::try_unwrap(s).unwrap_or_else(|shared| (*shared).clone());
            detail.operation = s.operation;
            detail.collection = s.collection;
            detail.query_text = Some(s.text);
            detail.query_truncated = s.truncated;
        }
        detail.status_code = status;
        detail.returned_rows = rows;
        let (resp_start, resp_end) = match outcome {
            Outcome::NoResponse => (0, 0),
            _ => (d.resp_start, d.resp_end),
        };
        Operation {
            role: Role::from_request_direction(self.request_dir),
            request_start_ns: d.req_start,
            request_end_ns: d.req_end.max(d.req_start),
            response_start_ns: resp_start,
            response_end_ns: resp_end,
            outcome,
            traceparent: None,
            partial: false,
            abort: None,
            detail: Detail::Db(detail),
        }
    }

    fn push(&mut self, e: Expect, out: &mut Output) {
        // Every operation queues a few steps: bound the queue by that.
        let cap = self.limits.max_pending_requests.max(1).saturating_mul(4);
        while self.queue.len() >= cap {
            self.queue.pop_front();
            out.lose("pending_queue_full", 1);
        }
        self.queue.push_back(e);
    }

    // ------------------------------------------------------------ client

    fn on_front(&mut self, m: &Msg<'_>, out: &mut Output) {
        match m.kind {
            UNTYPED => self.on_startup(m, out),
            b'Q' => self.on_query(m, out),
            b'P' => {
                self.step_start.get_or_insert(m.ts_start);
                let Some((name, rest)) = cstr(m.body) else {
                    out.lose("invalid_message", 1);
                    return;
                };
                let (sql, cut) = match cstr(rest) {
                    Some((sql, _)) => (sql, false),
                    None => (rest, true),
                };
                let stmt = self.summary(sql, cut);
                if !self
                    .stmts
                    .put(name, Some(stmt.clone()), self.limits.max_statements)
                {
                    out.lose("statement_table_full", 1);
                }
                let name = (!name.is_empty()).then(|| name_key(name));
                self.push(
                    Expect::Step {
                        kind: b'P',
                        stmt: Some(stmt),
                        name,
                    },
                    out,
                );
            }
            b'B' => {
                self.step_start.get_or_insert(m.ts_start);
                let Some((portal, rest)) = cstr(m.body) else {
                    out.lose("invalid_message", 1);
                    return;
                };
                let stmt_name = cstr(rest).map_or(rest, |(n, _)| n);
                let stmt = self.stmts.get(stmt_name);
                if stmt.is_none() {
                    // Prepared before capture began, or evicted.
                    out.lose("statement_unknown", 1);
                }
                self.unexecuted_bind = Some((stmt.clone(), m.ts_start));
                // Portals are few (one unnamed, cursors): same bound.
                if !self.portals.put(portal, stmt, self.limits.max_statements) {
                    out.lose("portal_table_full", 1);
                }
                self.push(step(b'B'), out);
            }
            b'E' => {
                self.unexecuted_bind = None;
                let start = self.step_start.take().unwrap_or(m.ts_start);
                let portal = cstr(m.body).map_or(m.body, |(n, _)| n);
                let stmt = self.portals.get(portal);
                self.push(Expect::Execute(Draft::new(stmt, start, m.ts_end)), out);
            }
            b'D' => {
                self.step_start.get_or_insert(m.ts_start);
                self.push(step(b'D'), out);
            }
            b'C' => {
                self.step_start.get_or_insert(m.ts_start);
                if let Some((&what, rest)) = m.body.split_first() {
                    let name = cstr(rest).map_or(rest, |(n, _)| n);
                    match what {
                        b'S' => self.stmts.remove(name),
                        b'P' => self.portals.remove(name),
                        _ => {}
                    }
                }
                self.push(step(b'C'), out);
            }
            b'S' => {
                self.step_start = None;
                self.push(Expect::Sync, out);
            }
            b'F' => {
                // A function call answers like a one-statement query.
                self.push(step(b'F'), out);
                self.push(Expect::Sync, out);
            }
            b'd' | b'c' | b'f' => self.copy_seen(out),
            // Password, SASL and GSS responses are skipped unread; Flush
            // and Terminate need no answer.
            _ => {}
        }
    }

    fn on_startup(&mut self, m: &Msg<'_>, out: &mut Output) {
        let Some((code, params)) = m.body.split_first_chunk::<4>() else {
            out.lose("invalid_message", 1);
            return;
        };
        match u32::from_be_bytes(*code) {
            SSL_REQUEST | GSSENC_REQUEST => {
                self.enc_requested = true;
            }
            PROTOCOL_3 => {
                let (mut user, mut db) = (None, None);
                let mut rest = params;
                while let Some((key, after)) = cstr(rest) {
                    if key.is_empty() {
                        break;
                    }
                    let Some((value, after)) = cstr(after) else {
                        break;
                    };
                    match key {
                        b"user" => user = Some(value),
                        b"database" => db = Some(value),
                        _ => {}
                    }
                    rest = after;
                }
                // The server's default database is the user's name.
                self.namespace = db
                    .filter(|d| !d.is_empty())
                    .or(user)
                    .filter(|n| !n.is_empty())
                    .map(name_key);
            }
            // CancelRequest (a connection of its own) and future
            // protocol versions: nothing to report.
            _ => {}
        }
    }

    fn on_query(&mut self, m: &Msg<'_>, out: &mut Output) {
        if self.back_lost && !self.queue.is_empty() {
            // A client of the simple protocol waits for ReadyForQuery
            // before its next Query: what is still queued was answered in
            // bytes the capture lost.
            self.flush_truncated(out);
        }
        let body = m.body;
        let (text, cut) = match body.split_last() {
            Some((0, text)) if m.whole() => (text, false),
            _ => (body, true),
        };
        let max = self.limits.max_query_len;
        let cut = cut || text.len() > max;
        let text = text.get(..max).unwrap_or(text);
        let mut stmts = VecDeque::new();
        let mut more = false;
        for s in summaries(text, Dialect::Postgres, cut, max).raw(self.limits.raw_sql) {
            if stmts.len() >= self.limits.max_pending_requests.max(1) {
                out.lose("too_many_statements", 1);
                more = true;
                break;
            }
            stmts.push_back(Arc::new(s));
        }
        more |= cut;
        self.push(
            Expect::Query(QueryGroup {
                stmts,
                more,
                cur: Draft::new(None, m.ts_start, m.ts_end),
                failed: false,
            }),
            out,
        );
    }

    fn copy_seen(&mut self, out: &mut Output) {
        if !self.copying {
            self.copying = true;
            // COPY data is skipped, not parsed: counted once per COPY.
            out.lose("copy_data", 1);
        }
    }

    // ------------------------------------------------------------ server

    fn on_back(&mut self, m: &Msg<'_>, out: &mut Output) {
        match m.kind {
            ENC_ANSWER => {
                self.enc_requested = false;
                match m.body.first() {
                    Some(b'S') => self.done = Some("tls"),
                    Some(b'G') => self.done = Some("gssenc"),
                    _ => {}
                }
            }
            // Asynchronous or authentication messages: not answers.
            b'R' | b'S' | b'K' | b'N' | b'A' | b'v' => {}
            b'Z' => self.on_ready(m, out),
            b'1' | b'2' | b'3' | b'n' | b'T' | b'V' | b't' if self.head_is_step() => {
                self.saw_step(m);
                if m.kind == b't' {
                    // ParameterDescription: the Describe's answer goes on.
                    return;
                }
                while let Some(Expect::Step { kind, .. }) = self.queue.front() {
                    let answers = matches!(
                        (kind, m.kind),
                        (b'P', b'1')
                            | (b'B', b'2')
                            | (b'C', b'3')
                            | (b'D', b'n' | b'T')
                            | (b'F', b'V')
                    );
                    self.queue.pop_front();
                    if answers {
                        break;
                    }
                    // A step whose answer was lost.
                    out.lose("unpaired_response", 1);
                }
            }
            b'T' => {
                if let Some(d) = self.head_draft(false) {
                    d.saw(m);
                    d.described = true;
                }
            }
            b'D' => {
                if let Some(d) = self.head_draft(true) {
                    d.saw(m);
                    d.rows += 1;
                    d.lost |= m.gapped;
                }
            }
            b'G' | b'H' | b'W' | b'd' | b'c' => {
                if let Some(d) = self.head_draft(true) {
                    d.saw(m);
                }
                if m.kind == b'd' {
                    self.copy_seen(out);
                }
            }
            b'C' | b'I' | b's' => self.on_complete(m, out),
            b'E' => self.on_error(m, out),
            _ => {}
        }
    }

    fn head_is_step(&self) -> bool {
        matches!(self.queue.front(), Some(Expect::Step { .. }))
    }

    fn saw_step(&mut self, m: &Msg<'_>) {
        self.steps_resp.get_or_insert(m.ts_start.max(1));
    }

    /// The draft answered now: the running Execute or statement.
    /// `execution`: the message answers an execution only (rows, a
    /// completion, COPY data), so an Execute lost in a client-side capture
    /// gap may be inferred for it.
    fn head_draft(&mut self, execution: bool) -> Option<&mut Draft> {
        // Steps before it whose answers were lost are skipped.
        while self.head_is_step() {
            self.queue.pop_front();
        }
        if execution {
            self.infer_execute();
        }
        let steps_resp = self.steps_resp.take();
        let d = match self.queue.front_mut()? {
            Expect::Execute(d) => d,
            Expect::Query(g) if !g.failed => &mut g.cur,
            _ => return None,
        };
        if let (0, Some(ts)) = (d.resp_start, steps_resp) {
            d.resp_start = ts;
        }
        Some(d)
    }

    /// The client's framing was lost in a capture gap (a Bind with large
    /// values makes the write longer than the capture: its Describe,
    /// Execute and Sync are in the gap) and the server answers an
    /// execution no queued Execute accounts for: it is the execution of
    /// the last portal bound, whose statement is known. Queued after the
    /// steps still waiting; false if nothing could be inferred.
    fn infer_execute(&mut self) -> bool {
        if !self.front_lost {
            return false;
        }
        let at = self
            .queue
            .iter()
            .position(|e| !matches!(e, Expect::Step { .. }))
            .unwrap_or(self.queue.len());
        if matches!(
            self.queue.get(at),
            Some(Expect::Execute(_) | Expect::Query(_))
        ) {
            return false;
        }
        let Some((stmt, ts)) = self.unexecuted_bind.take() else {
            return false;
        };
        self.queue
            .insert(at, Expect::Execute(Draft::new(stmt, ts, ts)));
        true
    }

    fn on_complete(&mut self, m: &Msg<'_>, out: &mut Output) {
        let Some(d) = self.head_draft(true) else {
            out.lose("unpaired_response", 1);
            return;
        };
        d.saw(m);
        let tag = if m.kind == b'C' {
            cstr(m.body).map_or(m.body, |(t, _)| t)
        } else {
            b""
        };
        let empty = m.kind == b'I';
        self.copying = false;
        match self.queue.front_mut() {
            Some(Expect::Execute(_)) => {
                if let Some(Expect::Execute(d)) = self.queue.pop_front() {
                    let rows = returned_rows(tag, &d);
                    let op = self.op(d, Outcome::Complete, None, rows);
                    out.ops.push(op);
                }
            }
            Some(Expect::Query(g)) => {
                let next = Draft::new(None, g.cur.req_start, g.cur.req_end);
                let mut d = std::mem::replace(&mut g.cur, next);
                match g.stmts.pop_front() {
                    Some(s) => d.stmt = Some(s),
                    None if g.more => {}
                    None if empty => return,
                    None => {
                        // More answers than statements seen: the split
                        // disagreed with the server's.
                        out.lose("unpaired_response", 1);
                        return;
                    }
                }
                let rows = returned_rows(tag, &d);
                let op = self.op(d, Outcome::Complete, None, rows);
                out.ops.push(op);
            }
            _ => {}
        }
    }

    fn on_error(&mut self, m: &Msg<'_>, out: &mut Output) {
        let code = sqlstate(m.body);
        self.copying = false;
        let steps_resp = self.steps_resp.take();
        if let Some(Expect::Query(g)) = self.queue.front_mut() {
            // The running statement failed; the rest never runs.
            if g.failed {
                return;
            }
            g.failed = true;
            let next = Draft::new(None, g.cur.req_start, g.cur.req_end);
            let mut d = std::mem::replace(&mut g.cur, next);
            d.stmt = g.stmts.pop_front();
            let known = d.stmt.is_some() || g.more;
            g.stmts.clear();
            g.more = false;
            if known {
                d.saw(m);
                let op = self.op(d, Outcome::Complete, Some(code), None);
                out.ops.push(op);
            }
            return;
        }
        self.infer_execute();
        // Extended protocol: the server skips to the Sync. The first
        // Execute not yet answered is the one that failed (in its Parse,
        // Bind or itself); the later ones were never run.
        let mut failed_parse: Option<Stmt> = None;
        let mut owner: Option<Draft> = None;
        let mut skipped = Vec::new();
        while let Some(e) = self.queue.front() {
            if matches!(e, Expect::Sync | Expect::Query(_)) {
                break;
            }
            match self.queue.pop_front() {
                Some(Expect::Step {
                    kind: b'P',
                    stmt,
                    name,
                }) => {
                    // Skipped or failed: the statement does not exist.
                    if let Some(n) = &name {
                        self.stmts.remove(n.as_bytes());
                    }
                    if owner.is_none() && failed_parse.is_none() {
                        failed_parse = stmt;
                    }
                }
                Some(Expect::Execute(mut d)) => {
                    if owner.is_none() {
                        if d.resp_start == 0 {
                            d.resp_start = steps_resp.unwrap_or(m.ts_start).max(1);
                        }
                        d.saw(m);
                        owner = Some(d);
                    } else {
                        skipped.push(d);
                    }
                }
                _ => {}
            }
        }
        if let Some(d) = owner {
            let op = self.op(d, Outcome::Complete, Some(code), None);
            out.ops.push(op);
        } else if let Some(s) = failed_parse {
            // A Parse failed with no Execute after it in the batch.
            let mut d = Draft::new(Some(s), m.ts_start, m.ts_start);
            if let Some(first) = self.step_start.take() {
                d.req_start = first;
                d.req_end = first;
            }
            d.resp_start = steps_resp.unwrap_or(m.ts_start).max(1);
            d.saw(m);
            let op = self.op(d, Outcome::Complete, Some(code), None);
            out.ops.push(op);
        }
        for d in skipped {
            let op = self.op(d, Outcome::NoResponse, None, None);
            out.ops.push(op);
        }
    }

    fn on_ready(&mut self, m: &Msg<'_>, out: &mut Output) {
        self.steps_resp = None;
        self.copying = false;
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Sync => break,
                Expect::Query(g) => {
                    if g.failed {
                        break;
                    }
                    if self.back_lost || g.cur.lost {
                        // Their completions were in bytes the capture lost.
                        self.end_group(g, Outcome::ResponseTruncated, Some(m), out);
                    } else if !g.stmts.is_empty() {
                        out.lose("statement_split_mismatch", 1);
                    }
                    break;
                }
                Expect::Step { .. } => {}
                Expect::Execute(d) => self.end_open(d, out),
            }
        }
        if self.queue.is_empty() {
            self.back_lost = false;
            self.front_lost = false;
            self.unexecuted_bind = None;
        }
    }

    /// Ends an Execute still open: never answered, or answered in lost
    /// bytes.
    fn end_open(&self, d: Draft, out: &mut Output) {
        let outcome = if d.resp_start == 0 {
            Outcome::NoResponse
        } else {
            Outcome::ResponseTruncated
        };
        out.ops.push(self.op(d, outcome, None, None));
    }

    /// Ends every statement left in a group: the running one keeps what
    /// its response showed; `last` (ReadyForQuery) ends the truncated.
    fn end_group(
        &self,
        mut g: QueryGroup,
        outcome: Outcome,
        last: Option<&Msg<'_>>,
        out: &mut Output,
    ) {
        let mut first = true;
        while let Some(s) = g.stmts.pop_front() {
            let mut d = Draft::new(Some(s), g.cur.req_start, g.cur.req_end);
            if first {
                d.resp_start = g.cur.resp_start;
                d.resp_end = g.cur.resp_end;
                first = false;
            }
            if let Some(m) = last {
                d.saw(m);
            }
            let outcome = if d.resp_start == 0 {
                Outcome::NoResponse
            } else {
                outcome
            };
            out.ops.push(self.op(d, outcome, None, None));
        }
    }

    /// Ends everything queued as answered in lost bytes.
    fn flush_truncated(&mut self, out: &mut Output) {
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Execute(d) => self.end_open(d, out),
                Expect::Query(g) if !g.failed => {
                    self.end_group(g, Outcome::ResponseTruncated, None, out);
                }
                _ => {}
            }
        }
        self.back_lost = false;
    }

    fn on_back_lost(&mut self, invalid: bool, out: &mut Output) {
        out.lose(
            if invalid {
                "invalid_message"
            } else {
                "lost_sync"
            },
            1,
        );
        self.back_lost = true;
        for e in self.queue.iter_mut() {
            match e {
                Expect::Execute(d) => d.lost = true,
                Expect::Query(g) => g.cur.lost = true,
                _ => {}
            }
        }
    }
}

fn step(kind: u8) -> Expect {
    Expect::Step {
        kind,
        stmt: None,
        name: None,
    }
}

/// The SQLSTATE of an ErrorResponse body (field `C`); `_OTHER` when it
/// was not captured or is malformed.
fn sqlstate(body: &[u8]) -> CompactString {
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, next)) = cstr(after) else {
            break;
        };
        if field == b'C' {
            if value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric) {
                return CompactString::from(String::from_utf8_lossy(value));
            }
            break;
        }
        rest = next;
    }
    CompactString::const_new("_OTHER")
}

/// Rows a statement returned: the count of a `SELECT n`/`FETCH n` tag
/// (not rows affected: `INSERT 0 n`, `UPDATE n` are not returned rows),
/// else the DataRows counted when rows came (RETURNING, SHOW) and none
/// were lost.
fn returned_rows(tag: &[u8], d: &Draft) -> Option<u64> {
    let mut words = tag.split(|&c| c == b' ');
    let first = words.next().unwrap_or_default();
    // CREATE TABLE … AS answers `SELECT n` for the rows it stored.
    let created = d.stmt.as_ref().is_some_and(|s| s.operation == "CREATE");
    let count = words
        .next_back()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok());
    if let (b"SELECT" | b"FETCH", false, Some(n)) = (first, created, count) {
        return Some(n);
    }
    ((d.rows > 0 || d.described) && !d.lost).then_some(d.rows)
}

impl ConnParser for PgConn {
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        let s = &mut self.s;
        if s.closed || s.done.is_some() {
            return;
        }
        if dir == s.request_dir {
            self.front.feed(seg, &mut |e| match e {
                Event::Msg(m) => s.on_front(&m, out),
                Event::Lost { invalid } => {
                    s.front_lost = true;
                    out.lose(
                        if invalid {
                            "invalid_message"
                        } else {
                            "lost_sync"
                        },
                        1,
                    );
                }
            });
        } else {
            self.back.expect_enc_answer = s.enc_requested;
            self.back.feed(seg, &mut |e| match e {
                Event::Msg(m) => s.on_back(&m, out),
                Event::Lost { invalid } => s.on_back_lost(invalid, out),
            });
        }
    }

    fn on_close(&mut self, _ts_ns: u64, out: &mut Output) {
        self.s.on_close(out);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
            + self.front.heap_bytes()
            + self.back.heap_bytes()
            + self.s.stmts.heap_bytes()
            + self.s.portals.heap_bytes()
            + self.s.queue.capacity() * std::mem::size_of::<Expect>()
    }

    fn state(&self) -> State {
        match self.s.done {
            Some(reason) => State::Done(reason),
            None => State::Active,
        }
    }
}

impl Session {
    /// Requests still open end without (the end of) a response.
    fn on_close(&mut self, out: &mut Output) {
        if self.closed {
            return;
        }
        self.closed = true;
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Execute(d) => self.end_open(d, out),
                Expect::Query(g) if !g.failed => {
                    self.end_group(g, Outcome::ResponseTruncated, None, out);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn named_statement_bytes_follow_puts_evictions_and_removals() {
        let stmt = |q: &[u8]| {
            Some(Arc::new(crate::sql::summarize(
                q,
                Dialect::Postgres,
                false,
                4096,
            )))
        };
        let mut n = Names::default();
        n.put(b"a", stmt(b"SELECT * FROM accounts WHERE id = $1"), 2);
        n.put(b"b", stmt(b"SELECT 1"), 2);
        let two = n.named_bytes;
        n.put(b"b", stmt(b"SELECT 1"), 2);
        assert_eq!(n.named_bytes, two, "replacing counts once");
        n.put(b"c", stmt(b"SELECT 2"), 2);
        assert_eq!(n.named.len(), 2);
        n.remove(b"b");
        n.remove(b"c");
        assert_eq!(n.named_bytes, 0);
    }
}
