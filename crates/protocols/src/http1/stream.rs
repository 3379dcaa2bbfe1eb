//! Per-direction message assembler: turns the segments of one direction into
//! message events (head parsed, message complete, framing lost), buffering
//! only head bytes.

use std::marker::PhantomData;

pub(crate) use super::message::{Input, MessageKind, Requests, Responses};

use super::body::{BodyDecoder, BodyState, Framing};
use super::detect::LineMatch;
use crate::parse::Parsed;

/// Timestamp marks kept per held head; more distinct segments than this
/// in one head only blur start times of messages found inside it.
const MAX_MARKS: usize = 64;

/// Something the consumer of a stream must react to.
#[derive(Debug)]
pub(crate) enum Event<H> {
    /// A head was parsed; the consumer must call `set_framing` next.
    Head {
        head: H,
        start_ns: u64,
        start_offset: u64,
        end_ns: u64,
    },
    /// A head was cut by a capture gap; the start line (and any complete
    /// header lines) survived but the message's extent is unknown. The
    /// stream is resynchronising.
    Salvaged {
        head: H,
        start_ns: u64,
        start_offset: u64,
        last_ns: u64,
    },
    /// The current message ended with the segment at `end_ns`.
    Complete { end_ns: u64, body_size: u64 },
    /// The current message's framing was lost; the stream is resynchronising.
    BodyLost { last_ns: u64, body_size: u64 },
}

impl<H> Event<H> {
    /// Stream offset where a new message started, if this event starts one.
    pub(crate) fn start_offset(&self) -> Option<u64> {
        match self {
            Event::Head { start_offset, .. } | Event::Salvaged { start_offset, .. } => {
                Some(*start_offset)
            }
            Event::Complete { .. } | Event::BodyLost { .. } => None,
        }
    }
}

/// Verdict on a head in progress.
enum Judgement<H> {
    Parsed(H),
    /// Plausible so far; wait for more bytes.
    Wait,
    /// Not a message start (no error counted).
    Garbage,
    /// Malformed or over the head cap.
    Invalid,
}

/// How the in-flight message stood when the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// No message body in progress.
    Idle,
    /// A close-delimited body ended with the close.
    UntilClose { end_ns: u64, body_size: u64 },
    /// The body was cut short by the close.
    Incomplete { last_ns: u64, body_size: u64 },
}

/// Loss and error counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamCounters {
    pub(crate) invalid_messages: u64,
    pub(crate) lost_heads: u64,
    pub(crate) resyncs: u64,
    pub(crate) lost_sync_bytes: u64,
    pub(crate) lost_bodies: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not synchronised: looking for a start line; `buf` may hold a
    /// candidate that is still a plausible prefix.
    Seek,
    /// At a trusted message boundary or inside a head being buffered.
    Head,
    /// A head was reported; waiting for the consumer's framing decision.
    AwaitFraming,
    Body,
    /// Not HTTP/1 any more (upgrade or close): swallow everything.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct MessageStream<K: MessageKind> {
    state: State,
    /// Head bytes of the current message (or a Seek candidate).
    buf: Vec<u8>,
    /// `(offset in buf, ts)` where bytes of a new timestamp start, so a
    /// message found inside held bytes gets the right start time.
    marks: Vec<(usize, u64)>,
    /// Head terminator scan state: 1 after LF, 2 after LF CR.
    nl: u8,
    start_ns: u64,
    start_offset: u64,
    head_end_ns: u64,
    /// Timestamp of the last segment that contributed to the message.
    last_ns: u64,
    /// Bytes (captured or not) consumed so far on this direction.
    offset: u64,
    body: BodyDecoder,
    max_head: usize,
    max_target: usize,
    /// Bytes were dropped since sync was last confirmed.
    discarded: bool,
    /// Timestamp of the last segment that had bytes dropped while seeking.
    skipped_last_ns: u64,
    counters: StreamCounters,
    kind: PhantomData<K>,
}

impl<K: MessageKind> MessageStream<K> {
    /// Heap bytes held (head buffer and its timestamp marks).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.marks.capacity() * std::mem::size_of::<(usize, u64)>()
    }

    /// A stream that must first find a start line (we may be joining the
    /// connection mid-way).
    pub(crate) fn new(max_head: usize, max_target: usize) -> Self {
        MessageStream {
            state: State::Seek,
            buf: Vec::new(),
            marks: Vec::new(),
            nl: 0,
            start_ns: 0,
            start_offset: 0,
            head_end_ns: 0,
            last_ns: 0,
            offset: 0,
            body: BodyDecoder::new(Framing::None),
            max_head,
            max_target,
            discarded: false,
            skipped_last_ns: 0,
            counters: StreamCounters::default(),
            kind: PhantomData,
        }
    }

    pub(crate) fn counters(&self) -> StreamCounters {
        self.counters
    }

    /// Timestamp of the last segment that contributed to the current (or
    /// just finished) message.
    pub(crate) fn last_ns(&self) -> u64 {
        self.last_ns
    }

    /// Body bytes of the current message so far.
    pub(crate) fn body_size(&self) -> u64 {
        self.body.body_size()
    }

    pub(crate) fn in_body(&self) -> bool {
        self.state == State::Body
    }

    pub(crate) fn is_until_close(&self) -> bool {
        self.state == State::Body && self.body.state() == BodyState::UntilClose
    }

    /// Timestamp of the last segment whose bytes were dropped while seeking.
    pub(crate) fn skipped_last_ns(&self) -> u64 {
        self.skipped_last_ns
    }

    /// Consumes input until something happens or the input is used up.
    pub(crate) fn poll(&mut self, input: &mut Input<'_>) -> Option<Event<K::Head>> {
        while !input.is_empty() {
            let event = match self.state {
                State::Stopped => {
                    let (n, g) = (input.data.len(), input.gap);
                    self.take_data(input, n);
                    self.take_gap(input, g);
                    None
                }
                // The consumer did not decide; assume no body rather than
                // stall.
                State::AwaitFraming => self.set_framing(Framing::None),
                State::Seek => self.seek(input),
                State::Head => self.head(input),
                State::Body => self.body(input),
            };
            if event.is_some() {
                return event;
            }
        }
        None
    }

    /// Applies the consumer's framing decision for the head just reported.
    /// Returns `Complete` at once for an empty body.
    pub(crate) fn set_framing(&mut self, framing: Framing) -> Option<Event<K::Head>> {
        if self.state != State::AwaitFraming {
            return None;
        }
        self.body = BodyDecoder::new(framing);
        if self.body.is_complete() {
            self.state = State::Head;
            Some(Event::Complete {
                end_ns: self.head_end_ns,
                body_size: 0,
            })
        } else {
            self.state = State::Body;
            None
        }
    }

    /// Drops the current message and looks for the next start line.
    pub(crate) fn resync(&mut self) {
        if self.state != State::Stopped {
            self.clear_buf();
            self.state = State::Seek;
            self.discarded = true;
        }
    }

    /// Ends parsing on this direction for good.
    pub(crate) fn stop(&mut self) {
        self.state = State::Stopped;
        self.clear_buf();
        self.buf = Vec::new();
        self.marks = Vec::new();
    }

    /// Reports how the in-flight body stood at connection close, then stops.
    pub(crate) fn finish(&mut self) -> Finish {
        let finish = match (self.state, self.body.state()) {
            (State::Body, BodyState::UntilClose) => Finish::UntilClose {
                end_ns: self.last_ns,
                body_size: self.body.body_size(),
            },
            (State::Body, _) => Finish::Incomplete {
                last_ns: self.last_ns,
                body_size: self.body.body_size(),
            },
            _ => Finish::Idle,
        };
        self.stop();
        finish
    }

    fn push_buf(&mut self, ts: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.buf.is_empty() {
            self.marks.clear();
            self.start_ns = ts;
        }
        if self.marks.last().is_none_or(|&(_, last)| last != ts) {
            if self.marks.len() >= MAX_MARKS {
                // Merge into the earlier mark: its time stays a lower bound.
                self.marks.remove(1);
            }
            self.marks.push((self.buf.len(), ts));
        }
        self.buf.extend_from_slice(bytes);
    }

    fn clear_buf(&mut self) {
        self.buf.clear();
        self.marks.clear();
    }

    /// Drops the first `n` held bytes; the start time becomes that of the
    /// segment holding the new first byte.
    fn drain_buf(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
        let first_kept = self.marks.iter().rposition(|&(at, _)| at <= n).unwrap_or(0);
        self.marks.drain(..first_kept);
        for (i, mark) in self.marks.iter_mut().enumerate() {
            mark.0 = if i == 0 { 0 } else { mark.0 - n };
        }
        if let Some(&(_, ts)) = self.marks.first() {
            self.start_ns = ts;
        }
        if self.buf.is_empty() {
            self.marks.clear();
        }
    }

    fn take_data<'a>(&mut self, input: &mut Input<'a>, n: usize) -> &'a [u8] {
        let (taken, rest) = input.data.split_at(n.min(input.data.len()));
        input.data = rest;
        self.offset += taken.len() as u64;
        taken
    }

    fn take_gap(&mut self, input: &mut Input<'_>, n: u64) {
        let n = n.min(input.gap);
        input.gap -= n;
        self.offset += n;
    }

    /// Counts bytes dropped while unsynchronised.
    fn skipped(&mut self, ts: u64, n: u64) {
        if n > 0 {
            self.counters.lost_sync_bytes += n;
            self.skipped_last_ns = ts;
            self.discarded = true;
        }
    }

    fn enter_seek(&mut self, ts: u64) {
        let n = self.buf.len() as u64;
        self.clear_buf();
        self.skipped(ts, n);
        self.discarded = true;
        self.state = State::Seek;
    }

    fn seek(&mut self, input: &mut Input<'_>) -> Option<Event<K::Head>> {
        let ts = input.ts;
        if input.data.is_empty() {
            // Unknown bytes break any candidate and may hide message starts.
            if !self.buf.is_empty() {
                self.counters.lost_heads += 1;
            }
            let n = self.buf.len() as u64 + input.gap;
            self.clear_buf();
            self.skipped(ts, n);
            let g = input.gap;
            self.take_gap(input, g);
            return None;
        }
        if self.buf.is_empty() && !self.at_stream_start() {
            let Some(p) = K::find_boundary(input.data) else {
                let n = input.data.len();
                self.take_data(input, n);
                self.skipped(ts, n as u64);
                return None;
            };
            self.take_data(input, p);
            self.skipped(ts, p as u64);
            self.start_offset = self.offset;
        }
        // A start line is judged on its own, so take at most one line (and
        // never more than one byte over the head cap).
        let line = input
            .data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.data.len(), |i| i + 1);
        let room = self.max_head.saturating_sub(self.buf.len()) + 1;
        let taken = self.take_data(input, line.min(room));
        self.push_buf(ts, taken);
        self.settle(ts, false, false)
    }

    /// Decides what the bytes held in `buf` are. With `judge_head` the
    /// buffer is a head in progress (`found`: its terminator is in) and is
    /// judged first. Whatever is rejected is searched for the next start
    /// line.
    ///
    /// Every decision is tied to a byte position fixed by the content (the
    /// first byte, each line end, the head cap, the terminator), never to
    /// where a segment happened to end, so the outcome does not depend on
    /// segmentation.
    fn settle(&mut self, ts: u64, mut judge_head: bool, mut found: bool) -> Option<Event<K::Head>> {
        loop {
            if judge_head {
                match self.judge(found) {
                    Judgement::Parsed(frame) => return Some(self.head_parsed(frame, ts)),
                    Judgement::Wait => return None,
                    Judgement::Garbage => {}
                    Judgement::Invalid => self.counters.invalid_messages += 1,
                }
                self.drop_candidate(ts);
            }
            let within_cap = self.buf.get(..self.max_head).unwrap_or(&self.buf);
            let line = if self.at_stream_start() {
                K::match_start(within_cap)
            } else {
                K::match_line(within_cap)
            };
            let verdict = match line {
                _ if self.buf.is_empty() => LineMatch::Prefix,
                LineMatch::Prefix if self.buf.len() > self.max_head => LineMatch::No,
                v => v,
            };
            match verdict {
                LineMatch::Prefix => {
                    self.state = State::Seek;
                    return None;
                }
                LineMatch::No => {
                    self.drop_candidate(ts);
                    judge_head = false;
                }
                LineMatch::Yes => {
                    self.state = State::Head;
                    self.nl = 0;
                    let held = std::mem::take(&mut self.buf);
                    found = self.scan_terminator(&held).1;
                    self.buf = held;
                    judge_head = true;
                }
            }
        }
    }

    /// Judges a head in progress at the last decision point it reached.
    fn judge(&self, found: bool) -> Judgement<K::Head> {
        let over_cap = self.buf.len() > self.max_head;
        if found && !over_cap {
            return match K::parse(&self.buf, self.max_target) {
                Ok(Parsed::Complete { frame, consumed }) if consumed == self.buf.len() => {
                    Judgement::Parsed(frame)
                }
                Ok(Parsed::Ignored) => Judgement::Garbage,
                _ => Judgement::Invalid,
            };
        }
        // Parser errors are prefix-monotonic, so judging up to the last
        // complete line within the cap (or just the first byte) finds any
        // rejection an earlier line end would have found.
        let within_cap = self.buf.get(..self.max_head).unwrap_or(&self.buf);
        let upto = within_cap
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(1, |i| i + 1);
        match K::parse(self.buf.get(..upto).unwrap_or(&self.buf), self.max_target) {
            Ok(Parsed::NeedMore) if over_cap => Judgement::Invalid,
            Ok(Parsed::NeedMore) => Judgement::Wait,
            Ok(Parsed::Ignored) => Judgement::Garbage,
            Ok(Parsed::Complete { .. }) | Err(_) => Judgement::Invalid,
        }
    }

    /// The candidate starts at the direction's first byte and nothing was
    /// dropped: a known position, where any request method is accepted
    /// (anywhere else a scan could find false starts).
    fn at_stream_start(&self) -> bool {
        self.start_offset == 0 && !self.discarded
    }

    /// Skips the byte at the start of `buf` and everything up to the next
    /// possible start line within it.
    fn drop_candidate(&mut self, ts: u64) {
        let drop = self
            .buf
            .get(1..)
            .and_then(K::find_boundary)
            .map_or(self.buf.len(), |q| q + 1)
            .min(self.buf.len());
        self.drain_buf(drop);
        self.start_offset += drop as u64;
        self.skipped(ts, drop as u64);
        self.state = State::Seek;
    }

    fn head_parsed(&mut self, head: K::Head, ts: u64) -> Event<K::Head> {
        self.note_resync();
        self.clear_buf();
        self.state = State::AwaitFraming;
        self.head_end_ns = ts;
        self.last_ns = ts;
        Event::Head {
            head,
            start_ns: self.start_ns,
            start_offset: self.start_offset,
            end_ns: ts,
        }
    }

    /// Counts regaining sync after bytes were dropped.
    fn note_resync(&mut self) {
        if self.discarded {
            self.counters.resyncs += 1;
            self.discarded = false;
        }
    }

    /// Scans for the empty line ending a head; returns how many bytes of
    /// `data` belong to the head and whether the end was found.
    fn scan_terminator(&mut self, data: &[u8]) -> (usize, bool) {
        // Jump from line end to line end (memchr) instead of stepping
        // through every byte: this runs over every head on the hot path.
        // `nl` carries across segments: 1 after '\n', 2 after "\n\r".
        let mut at = 0;
        while let Some(&b) = data.get(at) {
            if self.nl != 0 {
                match (self.nl, b) {
                    (_, b'\n') => {
                        self.nl = 0;
                        return (at + 1, true);
                    }
                    (1, b'\r') => {
                        self.nl = 2;
                        at += 1;
                        continue;
                    }
                    _ => self.nl = 0,
                }
            }
            match memchr::memchr(b'\n', data.get(at..).unwrap_or_default()) {
                Some(i) => {
                    at += i + 1;
                    self.nl = 1;
                }
                None => return (data.len(), false),
            }
        }
        (data.len(), false)
    }

    fn head(&mut self, input: &mut Input<'_>) -> Option<Event<K::Head>> {
        let ts = input.ts;
        if input.data.is_empty() {
            let g = input.gap;
            self.take_gap(input, g);
            return self.lose_head(ts, g);
        }
        if self.buf.is_empty() {
            // Stray CRLFs between messages (RFC 9112 §2.2) are not a start.
            let blank = input
                .data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.take_data(input, blank);
            if input.data.is_empty() {
                return None;
            }
            self.start_offset = self.offset;
            self.nl = 0;
        }
        let fresh = self.buf.is_empty();
        // Fast path: a whole head in one segment is parsed where it lies,
        // without copying it into `buf` or scanning for its end first (the
        // parser finds it). Same verdict as `settle` would reach on the
        // copy (a complete, valid head within the cap); anything else takes
        // the scanning path below.
        if fresh {
            let head = input.data.get(..self.max_head).unwrap_or(input.data);
            if let Ok(Parsed::Complete { frame, consumed }) = K::parse(head, self.max_target) {
                self.take_data(input, consumed);
                self.start_ns = ts;
                self.last_ns = ts;
                return Some(self.head_parsed(frame, ts));
            }
        }
        let room = self.max_head.saturating_sub(self.buf.len()) + 1;
        let (n, found) = self.scan_terminator(input.data.get(..room).unwrap_or(input.data));
        let taken = self.take_data(input, n);
        let new_line = taken.contains(&b'\n');
        self.push_buf(ts, taken);
        self.last_ns = ts;
        // Judge at the first byte, at every completed line and at the cap
        // instead of only when the head is complete.
        if found || fresh || new_line || self.buf.len() > self.max_head {
            return self.settle(ts, true, found);
        }
        None
    }

    /// A gap hit a head (or the place where the next head starts).
    fn lose_head(&mut self, ts: u64, gap: u64) -> Option<Event<K::Head>> {
        self.counters.lost_heads += 1;
        let salvaged = if self.buf.is_empty() {
            None
        } else {
            K::salvage(&self.buf, self.max_target)
        };
        match salvaged {
            Some(head) => {
                self.note_resync();
                // The head bytes were used, only the gap is unknown.
                self.clear_buf();
                self.skipped(ts, gap);
                self.state = State::Seek;
                self.last_ns = ts;
                Some(Event::Salvaged {
                    head,
                    start_ns: self.start_ns,
                    start_offset: self.start_offset,
                    last_ns: ts,
                })
            }
            None => {
                self.skipped(ts, gap);
                self.enter_seek(ts);
                None
            }
        }
    }

    fn body(&mut self, input: &mut Input<'_>) -> Option<Event<K::Head>> {
        let ts = input.ts;
        let gap_only = input.data.is_empty();
        let result = if gap_only {
            self.body.feed_gap(input.gap)
        } else {
            self.body.feed(input.data).map(|n| n as u64)
        };
        let (taken, lost) = match result {
            Ok(n) => (n, false),
            Err(e) => (e.consumed, true),
        };
        if gap_only {
            self.take_gap(input, taken);
        } else {
            self.take_data(input, usize::try_from(taken).unwrap_or(usize::MAX));
        }
        if taken > 0 || lost {
            self.last_ns = ts;
        }
        if lost {
            self.counters.lost_bodies += 1;
            self.discarded = true;
            self.clear_buf();
            self.state = State::Seek;
            return Some(Event::BodyLost {
                last_ns: ts,
                body_size: self.body.body_size(),
            });
        }
        if self.body.is_complete() {
            self.state = State::Head;
            return Some(Event::Complete {
                end_ns: self.last_ns,
                body_size: self.body.body_size(),
            });
        }
        None
    }
}
