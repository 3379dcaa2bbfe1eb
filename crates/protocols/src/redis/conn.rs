//! One Redis connection: commands paired with replies in order (RESP
//! replies carry no id, so order is everything), with the connection
//! state that changes what replies mean: the selected database, pub/sub
//! (pushes answer no command), MONITOR, `CLIENT REPLY OFF|SKIP`.

use std::collections::VecDeque;

use compact_str::CompactString;

use super::command::{SUBSCRIBE_KINDS, Special, Summary, error_code, summarize};
use super::resp::{Item, Msg, Reader, Side};
use crate::op::{DbDetail, DbSystem, Detail, Operation, Outcome};
use crate::parse::{Direction, Role, Segment};
use crate::parser::{ConnParser, Limits, Output};

/// What a command does to the connection once it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    None,
    /// `SELECT n`: later commands run on database `n`.
    Select(CompactString),
    /// A (P|S)(UN)SUBSCRIBE: answered by one confirmation per channel,
    /// each an array whose first element is this word.
    Subscribe(&'static str),
    /// `MONITOR`: every later reply is a pushed trace line.
    Monitor,
    /// `RESET`: back to database 0, out of pub/sub and MONITOR.
    Reset,
}

/// A command waiting for its reply.
#[derive(Debug)]
struct Pending {
    start_ns: u64,
    end_ns: u64,
    summary: Summary,
    effect: Effect,
    /// Replies still owed (pub/sub confirmations: one per channel).
    expect: u64,
    /// First reply byte, when some of several replies came.
    response_start_ns: u64,
    /// Commands this entry stands for: more than one when a deep
    /// pipeline filled the queue and same-named commands were folded into
    /// the last entry (one span with `db.operation.batch_size`).
    batch: u32,
    /// The first error reply among a batch's.
    error: Option<CompactString>,
}

#[derive(Debug)]
enum Entry {
    Command(Pending),
    /// Framing of the commands was lost here: an unknown number of
    /// commands went by unseen. Their replies are the ones that begin
    /// before the next seen command was sent (see `on_reply`).
    Barrier,
}

/// `CLIENT REPLY` mode: which commands the server will answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// The next command gets no reply.
    Skip,
}

/// The Redis [`ConnParser`].
#[derive(Debug)]
pub struct RedisParser {
    request_dir: Direction,
    limits: Limits,
    requests: Reader,
    replies: Reader,
    pending: VecDeque<Entry>,
    /// Replies still to come for commands already emitted without them
    /// (the pending queue overflowed): skipped, in order.
    orphans: u64,
    /// Selected database, when known (`"0"` once the connection's start
    /// was seen, then what SELECT set).
    namespace: Option<CompactString>,
    subscribed: bool,
    monitor: bool,
    reply_mode: ReplyMode,
    /// Timestamp of the last reply segment.
    last_reply_ns: u64,
    /// A command was seen already.
    seen_request: bool,
    closed: bool,
    items: Vec<Item>,
}

impl RedisParser {
    pub fn new(request_dir: Direction, limits: &Limits) -> Self {
        RedisParser {
            request_dir,
            limits: *limits,
            requests: Reader::new(Side::Request),
            replies: Reader::new(Side::Reply),
            pending: VecDeque::new(),
            orphans: 0,
            namespace: None,
            subscribed: false,
            monitor: false,
            reply_mode: ReplyMode::On,
            last_reply_ns: 0,
            seen_request: false,
            closed: false,
            items: Vec::new(),
        }
    }

    /// The connection was seen from its start: it is on database 0.
    pub fn connection_start_seen(&mut self) {
        if self.namespace.is_none() {
            self.namespace = Some(CompactString::const_new("0"));
        }
    }

    fn operation(
        &self,
        p: Pending,
        outcome: Outcome,
        response: (u64, u64),
        status: Option<CompactString>,
    ) -> Operation {
        let mut d = DbDetail::new(DbSystem::Redis);
        d.operation = p.summary.operation;
        d.namespace = self.namespace.clone();
        d.query_text = p.summary.text;
        d.query_truncated = p.summary.truncated;
        d.status_code = status.or(p.error);
        d.batch_size = p.batch;
        Operation {
            role: Role::from_request_direction(self.request_dir),
            request_start_ns: p.start_ns,
            request_end_ns: p.end_ns,
            response_start_ns: response.0,
            response_end_ns: response.1,
            outcome,
            traceparent: None,
            partial: false,
            abort: None,
            detail: Detail::Db(d),
        }
    }

    fn on_request(&mut self, m: &Msg, out: &mut Output) {
        let summary = summarize(m, self.limits.max_query_len);
        if !self.seen_request {
            self.seen_request = true;
            // Clients send these only to open a connection: this one was
            // seen from its start, before any SELECT.
            if matches!(
                summary.operation.as_str(),
                "HELLO" | "AUTH" | "CLIENT SETINFO" | "CLIENT SETNAME"
            ) {
                self.connection_start_seen();
            }
        }
        if summary.operation.is_empty() && m.partial {
            // Cut before its name was known: not a command we can name.
            return;
        }
        let effect = effect(m);
        let expect = match effect {
            Effect::Subscribe(_) => m.count.saturating_sub(1).max(1),
            _ => 1,
        };
        let p = Pending {
            start_ns: m.start_ns,
            end_ns: m.end_ns,
            summary,
            effect,
            expect,
            response_start_ns: 0,
            batch: 1,
            error: None,
        };
        // CLIENT REPLY OFF|SKIP: commands the server will not answer end
        // now, without a reply.
        let mode = if m.class.special == Special::Client && p.summary.operation == "CLIENT REPLY" {
            let arg = m.arg(2);
            if arg.eq_ignore_ascii_case(b"ON") {
                Some(ReplyMode::On)
            } else if arg.eq_ignore_ascii_case(b"OFF") {
                Some(ReplyMode::Off)
            } else if arg.eq_ignore_ascii_case(b"SKIP") {
                Some(ReplyMode::Skip)
            } else {
                None
            }
        } else {
            None
        };
        let answered = match (mode, self.reply_mode) {
            (Some(ReplyMode::On), _) => {
                self.reply_mode = ReplyMode::On;
                true
            }
            (Some(ReplyMode::Off), _) => {
                self.reply_mode = ReplyMode::Off;
                false
            }
            (Some(ReplyMode::Skip), ReplyMode::Off) => false,
            (Some(ReplyMode::Skip), _) => {
                self.reply_mode = ReplyMode::Skip;
                false
            }
            (None, ReplyMode::Off) => false,
            (None, ReplyMode::Skip) => {
                self.reply_mode = ReplyMode::On;
                false
            }
            (None, ReplyMode::On) => true,
        };
        if !answered {
            let op = self.operation(p, Outcome::NoResponse, (0, 0), None);
            out.ops.push(op);
            return;
        }
        if self.pending.len() >= self.limits.max_pending_requests.max(1) {
            // A deep pipeline of one command (a bulk load, a benchmark):
            // the new command joins the last entry as one more of a batch,
            // answered by as many replies, in order.
            if let Some(Entry::Command(last)) = self.pending.back_mut()
                && last.effect == Effect::None
                && p.effect == Effect::None
                && last.summary.operation == p.summary.operation
                && last.batch < u32::MAX
            {
                last.batch += 1;
                last.expect += 1;
                last.end_ns = p.end_ns;
                out.lose("pipeline_folded", 1);
                return;
            }
            match self.pending.pop_front() {
                Some(Entry::Command(old)) => {
                    // Its reply is still to come: skip it when it does.
                    let op = self.operation(old, Outcome::NoResponse, (0, 0), None);
                    out.ops.push(op);
                    self.orphans += 1;
                }
                Some(Entry::Barrier) => self.reply_barrier(),
                None => {}
            }
            out.lose("pending_queue_full", 1);
        }
        self.pending.push_back(Entry::Command(p));
    }

    /// Replies can no longer be paired from where they are: wait for a
    /// reply segment that starts while commands are pending.
    fn reply_barrier(&mut self) {
        self.replies.lose();
        self.orphans = 0;
    }

    fn on_request_lost(&mut self, partial: Option<&Msg>, invalid: bool, out: &mut Output) {
        out.lose(
            if invalid {
                "invalid_message"
            } else {
                "lost_sync"
            },
            1,
        );
        if let Some(m) = partial {
            self.on_request(m, out);
        }
        if !matches!(self.pending.back(), Some(Entry::Barrier)) {
            self.pending.push_back(Entry::Barrier);
        }
    }

    fn on_reply_lost(&mut self, partial: Option<&Msg>, ts: u64, invalid: bool, out: &mut Output) {
        out.lose(
            if invalid {
                "invalid_message"
            } else {
                "lost_sync"
            },
            1,
        );
        // The reply in progress (or the one the gap began) answers the
        // oldest command; what came after is unknown.
        let start = partial.map_or(ts, |m| m.start_ns);
        let mut first = true;
        if self.orphans > 0 {
            first = false;
            self.orphans = 0;
        }
        while let Some(e) = self.pending.pop_front() {
            if let Entry::Command(p) = e {
                let op = if first {
                    let s = if p.response_start_ns > 0 {
                        p.response_start_ns
                    } else {
                        start
                    };
                    self.operation(p, Outcome::ResponseTruncated, (s, ts), None)
                } else {
                    self.operation(p, Outcome::NoResponse, (0, 0), None)
                };
                out.ops.push(op);
                first = false;
            }
        }
    }

    fn on_reply(&mut self, m: &Msg, out: &mut Output) {
        if self.monitor {
            // Only RESET and QUIT are answered in MONITOR mode; their
            // replies are the only ones that are not trace lines.
            let answer = m.ty == b'+' && (m.arg(0) == b"OK" || m.arg(0) == b"RESET");
            if !(answer && self.head_is_command()) {
                out.lose("monitor_push", 1);
                return;
            }
        }
        let aggregate = m.ty == b'*' || m.ty == b'>';
        let first = m.arg(0);
        if aggregate
            && m.count == 3
            && let Some(kind) = SUBSCRIBE_KINDS
                .iter()
                .find(|k| first.eq_ignore_ascii_case(k.as_bytes()))
        {
            if let Some(count) = m.third_int {
                self.subscribed = count > 0;
            }
            if let Some(Entry::Command(p)) = self.pending.front_mut()
                && p.effect == Effect::Subscribe(kind)
                && self.orphans == 0
            {
                if p.response_start_ns == 0 {
                    p.response_start_ns = m.start_ns;
                }
                p.expect = p.expect.saturating_sub(1);
                if p.expect == 0
                    && let Some(Entry::Command(p)) = self.pending.pop_front()
                {
                    let s = p.response_start_ns;
                    let op = self.operation(p, Outcome::Complete, (s, m.end_ns), None);
                    out.ops.push(op);
                }
                return;
            }
            if m.ty == b'>' || self.subscribed || !self.head_is_command() {
                // A confirmation nobody is waiting for (UNSUBSCRIBE with
                // no arguments answers once per channel).
                out.lose("pubsub_push", 1);
                return;
            }
        }
        if m.ty == b'>' {
            // RESP3 pushes (messages, invalidations) answer no command.
            out.lose("pubsub_push", 1);
            return;
        }
        if m.ty == b'*'
            && (self.subscribed || !self.head_is_command())
            && ((m.count == 3
                && (first.eq_ignore_ascii_case(b"message")
                    || first.eq_ignore_ascii_case(b"smessage")))
                || (m.count == 4 && first.eq_ignore_ascii_case(b"pmessage")))
        {
            out.lose("pubsub_push", 1);
            return;
        }
        if self.orphans > 0 {
            self.orphans -= 1;
            return;
        }
        // Past a barrier: a reply that began before the next seen command
        // was sent answers one of the commands lost with the framing.
        while let Some(Entry::Barrier) = self.pending.front() {
            match self.pending.get(1) {
                Some(Entry::Command(next)) if m.start_ns >= next.start_ns => {
                    self.pending.pop_front();
                }
                _ => {
                    out.lose("unpaired_response", 1);
                    return;
                }
            }
        }
        let failed = m.ty == b'-' || m.ty == b'!';
        if let Some(Entry::Command(p)) = self.pending.front_mut()
            && p.batch > 1
            && p.expect > 1
        {
            // One reply of a folded batch; the last one ends it.
            p.expect -= 1;
            if p.response_start_ns == 0 {
                p.response_start_ns = m.start_ns;
            }
            if failed && p.error.is_none() {
                p.error = Some(error_code(m.arg(0)));
            }
            return;
        }
        let Some(Entry::Command(p)) = self.pending.pop_front() else {
            out.lose("unpaired_response", 1);
            return;
        };
        let status = failed.then(|| error_code(m.arg(0)));
        let start = if p.response_start_ns > 0 {
            p.response_start_ns
        } else {
            m.start_ns
        };
        let effect = p.effect.clone();
        let op = self.operation(p, Outcome::Complete, (start, m.end_ns), status);
        out.ops.push(op);
        if !failed {
            self.apply(effect, m);
        }
    }

    fn apply(&mut self, effect: Effect, m: &Msg) {
        match effect {
            Effect::Select(db) if m.ty == b'+' => self.namespace = Some(db),
            Effect::Monitor if m.ty == b'+' => self.monitor = true,
            Effect::Reset if m.ty == b'+' => {
                self.namespace = Some(CompactString::const_new("0"));
                self.subscribed = false;
                self.monitor = false;
                self.reply_mode = ReplyMode::On;
            }
            _ => {}
        }
    }

    fn head_is_command(&self) -> bool {
        matches!(self.pending.front(), Some(Entry::Command(_)))
    }
}

fn effect(m: &Msg) -> Effect {
    match m.class.special {
        Special::Select => {
            let db = m.arg(1);
            if !db.is_empty() && db.len() <= 5 && db.iter().all(u8::is_ascii_digit) {
                // Digits only, so no literal can leak through it.
                std::str::from_utf8(db)
                    .map(|s| Effect::Select(CompactString::from(s)))
                    .unwrap_or(Effect::None)
            } else {
                Effect::None
            }
        }
        Special::Monitor => Effect::Monitor,
        Special::Reset => Effect::Reset,
        Special::Subscribe(i) => SUBSCRIBE_KINDS
            .get(usize::from(i))
            .map_or(Effect::None, |k| Effect::Subscribe(k)),
        Special::None | Special::Client => Effect::None,
    }
}

/// A plausible first line of a reply at the start of `data`.
pub(crate) fn looks_like_reply(data: &[u8]) -> bool {
    super::detect_reply(data) == Some(true)
}

impl ConnParser for RedisParser {
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output) {
        if self.closed {
            return;
        }
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        if dir == self.request_dir {
            self.requests.feed(seg, &mut items);
            // By reference: messages are a few hundred bytes.
            for item in &items {
                match item {
                    Item::Msg(m) => self.on_request(m, out),
                    Item::Lost {
                        partial, invalid, ..
                    } => self.on_request_lost(partial.as_ref(), *invalid, out),
                }
            }
        } else {
            self.last_reply_ns = seg.ts_ns;
            if self.replies.is_lost() {
                while matches!(self.pending.front(), Some(Entry::Barrier)) {
                    self.pending.pop_front();
                }
                if self.head_is_command() && looks_like_reply(seg.data) {
                    self.replies.resume();
                } else {
                    self.items = items;
                    return;
                }
            }
            self.replies.feed(seg, &mut items);
            for item in &items {
                match item {
                    Item::Msg(m) => self.on_reply(m, out),
                    Item::Lost {
                        partial,
                        ts_ns,
                        invalid,
                    } => self.on_reply_lost(partial.as_ref(), *ts_ns, *invalid, out),
                }
            }
        }
        self.items = items;
    }

    fn start_seen(&mut self) {
        self.connection_start_seen();
    }

    fn on_close(&mut self, _ts_ns: u64, out: &mut Output) {
        if self.closed {
            return;
        }
        self.closed = true;
        // A command cut by the close.
        if let Some(m) = self.requests.take_partial() {
            let summary = summarize(&m, self.limits.max_query_len);
            if !summary.operation.is_empty() {
                self.pending.push_back(Entry::Command(Pending {
                    start_ns: m.start_ns,
                    end_ns: m.end_ns,
                    summary,
                    effect: Effect::None,
                    expect: 1,
                    response_start_ns: 0,
                    batch: 1,
                    error: None,
                }));
            }
        }
        let mut first = self.orphans == 0;
        let reply_start = self.replies.message_start();
        let last = self.last_reply_ns;
        while let Some(e) = self.pending.pop_front() {
            let Entry::Command(p) = e else {
                first = false;
                continue;
            };
            let started = if p.response_start_ns > 0 {
                Some(p.response_start_ns)
            } else {
                reply_start
            };
            let op = match started {
                Some(s) if first => self.operation(p, Outcome::ResponseTruncated, (s, last), None),
                _ => self.operation(p, Outcome::NoResponse, (0, 0), None),
            };
            out.ops.push(op);
            first = false;
        }
    }
}
