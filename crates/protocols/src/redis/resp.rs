//! One direction of a RESP connection, read as a stream: every RESP2 and
//! RESP3 type, nesting tracked by a bounded stack of element counts, bulk
//! payloads skipped by their declared length (so a capture gap inside a
//! large value costs nothing), and only the few bytes a span needs kept
//! (the first arguments of a command, the first word of a reply).

use super::command::{Class, classify, keep};
use crate::parse::Segment;

/// Nesting deeper than this is taken as garbage (Redis replies nest a few
/// levels: EXEC of XREAD, COMMAND DOCS).
const MAX_DEPTH: usize = 32;
/// Longest header line (`*N`, `$N`, `:N`): sign and 20 digits.
const HEAD_MAX: usize = 24;
/// Largest bulk accepted (Redis's default `proto-max-bulk-len`).
const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Largest element count accepted.
const MAX_COUNT: u64 = 1 << 32;
/// Bytes kept of an argument (the key) or of a reply's first string.
pub(crate) const ARG_KEEP: usize = 128;
/// Arguments whose prefix may be kept: the command, a subcommand or key,
/// and one more (`CLIENT REPLY OFF`).
pub(crate) const ARGS_KEPT: usize = 3;
/// Longest inline command line Redis accepts.
const INLINE_MAX: u64 = 64 * 1024;

/// Which end of the conversation this stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Commands: arrays of bulk strings, or inline lines.
    Request,
    /// Replies of any type.
    Reply,
}

/// Bytes kept of the command name (and of a reply's first string).
pub(crate) const NAME_KEEP: usize = 32;
/// Bytes kept of the third argument (`CLIENT REPLY OFF`).
const THIRD_KEEP: usize = 8;
/// Where each kept argument lives in [`Args`]' buffer, and its room.
const ARG_AT: [usize; ARGS_KEPT] = [0, NAME_KEEP, NAME_KEEP + ARG_KEEP];
const ARG_ROOM: [usize; ARGS_KEPT] = [NAME_KEEP, ARG_KEEP, THIRD_KEEP];

/// Kept prefixes of the first arguments (or of a reply's string), in one
/// small buffer: clearing it for the next message costs three lengths.
#[derive(Clone, Copy)]
pub(crate) struct Args {
    buf: [u8; NAME_KEEP + ARG_KEEP + THIRD_KEEP],
    kept: [u8; ARGS_KEPT],
    /// Bytes allowed to be kept (0: this argument is not kept at all).
    cap: [u8; ARGS_KEPT],
    /// Some bytes were not kept (over the cap, or lost to a gap).
    cut: [bool; ARGS_KEPT],
}

impl Args {
    const EMPTY: Args = Args {
        buf: [0; NAME_KEEP + ARG_KEEP + THIRD_KEEP],
        kept: [0; ARGS_KEPT],
        cap: [0; ARGS_KEPT],
        cut: [false; ARGS_KEPT],
    };

    fn clear(&mut self) {
        self.kept = [0; ARGS_KEPT];
        self.cap = [0; ARGS_KEPT];
        self.cut = [false; ARGS_KEPT];
    }

    /// Argument `i` as kept.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let (Some(&at), Some(&n)) = (ARG_AT.get(i), self.kept.get(i)) else {
            return &[];
        };
        self.buf.get(at..at + usize::from(n)).unwrap_or_default()
    }

    /// Whether argument `i` lost bytes.
    pub(crate) fn cut(&self, i: usize) -> bool {
        self.cut.get(i).copied().unwrap_or(false)
    }

    fn set_cut(&mut self, i: usize) {
        if let Some(c) = self.cut.get_mut(i) {
            *c = true;
        }
    }

    fn start(&mut self, i: usize, cap: usize) {
        if let (Some(k), Some(c), Some(x), Some(&room)) = (
            self.kept.get_mut(i),
            self.cap.get_mut(i),
            self.cut.get_mut(i),
            ARG_ROOM.get(i),
        ) {
            *k = 0;
            *c = cap.min(room) as u8;
            *x = false;
        }
    }

    fn push(&mut self, i: usize, data: &[u8]) {
        let (Some(&at), Some(&kept), Some(&cap)) =
            (ARG_AT.get(i), self.kept.get(i), self.cap.get(i))
        else {
            return;
        };
        let take = data.len().min(usize::from(cap.saturating_sub(kept)));
        let from = at + usize::from(kept);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(from..from + take), data.get(..take)) {
            dst.copy_from_slice(src);
            if let Some(k) = self.kept.get_mut(i) {
                *k += take as u8;
            }
        }
        if take < data.len() {
            self.set_cut(i);
        }
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print argument bytes (they may be passwords): only sizes.
        write!(f, "Args(kept {:?}, cut {:?})", self.kept, self.cut)
    }
}

/// One top-level message, summarised.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    /// Type byte of the top-level value (after any RESP3 attribute);
    /// `b'i'` for an inline command.
    pub(crate) ty: u8,
    /// Elements of a top-level aggregate, arguments of a command
    /// (including the command itself); 0 otherwise.
    pub(crate) count: u64,
    /// Requests: the first arguments (as the keep policy allowed).
    /// Replies: `args[0]` is the string of a top-level simple string,
    /// error or bulk, or the first element of a top-level aggregate.
    pub(crate) args: Args,
    /// Requests: what the command is (known once its name is).
    pub(crate) class: Class,
    /// Replies: the third element of a top-level aggregate, when an
    /// integer (the subscription count of a pub/sub confirmation).
    pub(crate) third_int: Option<i64>,
    /// The message was cut by a gap or invalid bytes before its end.
    pub(crate) partial: bool,
}

impl Msg {
    const EMPTY: Msg = Msg {
        start_ns: 0,
        end_ns: 0,
        ty: 0,
        count: 0,
        args: Args::EMPTY,
        class: Class::UNKNOWN,
        third_int: None,
        partial: false,
    };

    pub(crate) fn arg(&self, i: usize) -> &[u8] {
        self.args.get(i)
    }
}

/// What a stream produced, in order.
#[derive(Debug)]
pub(crate) enum Item {
    Msg(Msg),
    /// Framing was lost (a gap outside any known length, or bytes that are
    /// not RESP); the message in progress, if its start was seen, is
    /// handed over cut. The stream then looks for a message boundary.
    Lost {
        partial: Option<Msg>,
        ts_ns: u64,
        invalid: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Next byte starts a value (a type byte), or at top level on the
    /// request side an inline command.
    Start,
    /// Inside the line of a value of type `ty`.
    Line { ty: u8, cr: bool },
    /// Inside a bulk payload: `left` bytes including the final CRLF.
    Bulk { left: u64 },
    /// Inside an inline command line.
    Inline {
        cr: bool,
        in_token: bool,
        /// Inside a quoted argument (`"` or `'`; 0: not quoted).
        quote: u8,
        /// The previous byte was a backslash inside `"…"`.
        escaped: bool,
    },
    /// Sync lost: waiting for a boundary.
    Lost,
}

/// Command names remembered with their class.
const RECENT: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Recent {
    name: [u8; NAME_KEEP],
    /// `usize::MAX`: empty.
    len: usize,
    class: Class,
}

/// The reader of one direction.
#[derive(Debug)]
pub(crate) struct Reader {
    side: Side,
    mode: Mode,
    /// Current header line (only short lines are stored; longer simple
    /// strings and errors keep their prefix in the message's args).
    line: [u8; HEAD_MAX],
    line_len: usize,
    line_total: u64,
    /// Remaining elements of each open aggregate, outermost first.
    stack: [u64; MAX_DEPTH],
    depth: usize,
    /// Index, within the top-level aggregate, of the element in progress.
    top_index: u64,
    /// Index of the argument being kept into (`usize::MAX`: none).
    recording: usize,
    /// The top-level value is a RESP3 attribute: the real reply follows.
    in_attribute: bool,
    /// A message is in progress.
    open: bool,
    /// The request in progress has its class.
    classified: bool,
    /// Recently classified command names.
    recent: [Recent; RECENT],
    recent_next: usize,
    /// Timestamp of the last segment fed.
    last_ns: u64,
    msg: Msg,
}

impl Reader {
    pub(crate) fn new(side: Side) -> Self {
        Reader {
            side,
            mode: Mode::Start,
            line: [0; HEAD_MAX],
            line_len: 0,
            line_total: 0,
            stack: [0; MAX_DEPTH],
            depth: 0,
            top_index: 0,
            recording: usize::MAX,
            in_attribute: false,
            open: false,
            classified: false,
            recent: [Recent {
                name: [0; NAME_KEEP],
                len: usize::MAX,
                class: Class::UNKNOWN,
            }; RECENT],
            recent_next: 0,
            last_ns: 0,
            msg: Msg::EMPTY,
        }
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.mode == Mode::Lost
    }

    /// Start time of the message in progress.
    pub(crate) fn message_start(&self) -> Option<u64> {
        self.open.then_some(self.msg.start_ns)
    }

    /// The message in progress, cut (its end: the last segment seen).
    pub(crate) fn take_partial(&mut self) -> Option<Msg> {
        if self.open {
            self.classify();
        }
        let m = self.open.then(|| {
            let mut m = self.msg;
            m.partial = true;
            m.end_ns = self.last_ns;
            m
        });
        self.reset();
        m
    }

    /// Gives up framing without counting (the consumer decided it).
    pub(crate) fn lose(&mut self) {
        self.reset();
        self.mode = Mode::Lost;
    }

    /// Takes the next byte as a message boundary.
    pub(crate) fn resume(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.mode = Mode::Start;
        self.depth = 0;
        self.top_index = 0;
        self.recording = usize::MAX;
        self.in_attribute = false;
        self.open = false;
        self.line_len = 0;
        self.line_total = 0;
    }

    /// Consumes one segment, appending what it produced to `items`.
    pub(crate) fn feed(&mut self, seg: Segment<'_>, items: &mut Vec<Item>) {
        let ts = seg.ts_ns;
        self.last_ns = ts;
        let mut data = seg.data;
        if self.mode == Mode::Lost && self.side == Side::Request {
            match resync_point(data) {
                Some(at) => {
                    self.reset();
                    data = data.get(at..).unwrap_or_default();
                }
                None => return,
            }
        }
        while !data.is_empty() {
            let used = self.step(data, ts, items);
            data = data.get(used..).unwrap_or_default();
            if self.mode == Mode::Lost {
                if self.side == Side::Reply {
                    // The consumer decides where replies resume.
                    return;
                }
                // Past the byte that broke framing, at a CRLF boundary
                // only (the segment start was tried already).
                match resync_after_start(data) {
                    Some(at) => {
                        self.reset();
                        data = data.get(at..).unwrap_or_default();
                    }
                    None => return,
                }
            }
        }
        let gap = seg.gap();
        if gap > 0 {
            self.skip_gap(gap, ts, items);
        }
    }

    /// Bytes of unknown content: fine inside a bulk of known length,
    /// framing lost anywhere else.
    fn skip_gap(&mut self, gap: u64, ts: u64, items: &mut Vec<Item>) {
        match self.mode {
            Mode::Lost => {}
            Mode::Bulk { left } => {
                if self.recording != usize::MAX {
                    self.msg.args.set_cut(self.recording);
                }
                if gap < left {
                    self.mode = Mode::Bulk { left: left - gap };
                } else {
                    self.value_done(ts, items);
                    if gap > left {
                        self.lost(ts, false, items);
                    }
                }
            }
            _ => self.lost(ts, false, items),
        }
    }

    fn lost(&mut self, ts: u64, invalid: bool, items: &mut Vec<Item>) {
        if self.open {
            self.classify();
        }
        let partial = self.open.then(|| {
            let mut m = self.msg;
            m.partial = true;
            m.end_ns = ts;
            m
        });
        items.push(Item::Lost {
            partial,
            ts_ns: ts,
            invalid,
        });
        self.lose();
    }

    fn begin_message(&mut self, ts: u64) {
        if !self.open {
            self.open = true;
            // Field by field: the argument buffer is not wiped.
            self.msg.start_ns = ts;
            self.msg.end_ns = ts;
            self.msg.ty = 0;
            self.msg.count = 0;
            self.msg.args.clear();
            self.msg.class = Class::UNKNOWN;
            self.classified = false;
            self.msg.third_int = None;
            self.msg.partial = false;
            self.top_index = 0;
        }
    }

    /// Parses from the start of `data`; returns the bytes used (at least
    /// one unless the mode became `Lost`).
    fn step(&mut self, data: &[u8], ts: u64, items: &mut Vec<Item>) -> usize {
        match self.mode {
            Mode::Lost => 0,
            Mode::Start => {
                let Some(&b) = data.first() else { return 0 };
                if self.depth == 0 && !self.in_attribute {
                    if self.side == Side::Request && b != b'*' {
                        if b == b'\r' || b == b'\n' {
                            // Blank lines between commands are ignored
                            // by Redis.
                            return 1;
                        }
                        if !b.is_ascii_alphabetic() {
                            self.lost(ts, true, items);
                            return 0;
                        }
                        self.begin_message(ts);
                        self.msg.ty = b'i';
                        self.line_total = 0;
                        self.mode = Mode::Inline {
                            cr: false,
                            in_token: false,
                            quote: 0,
                            escaped: false,
                        };
                        return 0;
                    }
                    self.begin_message(ts);
                }
                if !is_type(b) || (self.side == Side::Request && !self.request_type_ok(b)) {
                    self.lost(ts, true, items);
                    return 0;
                }
                if self.depth == 0 && !self.in_attribute {
                    self.msg.ty = b;
                } else if self.depth == 0 && self.in_attribute {
                    // The attribute is over; this is the reply proper.
                    self.in_attribute = false;
                    self.msg.ty = b;
                }
                self.line_len = 0;
                self.line_total = 0;
                self.start_recording(b);
                self.mode = Mode::Line { ty: b, cr: false };
                1
            }
            Mode::Line { ty, cr } => self.line_bytes(data, ty, cr, ts, items),
            Mode::Bulk { left } => {
                let avail = data.len() as u64;
                let take = avail.min(left);
                // Payload bytes proper (the final CRLF is not payload).
                let payload = left.saturating_sub(2);
                let pay_here = take.min(payload) as usize;
                if self.recording != usize::MAX
                    && let Some(p) = data.get(..pay_here)
                {
                    self.msg.args.push(self.recording, p);
                }
                // The two bytes that end the payload must be CRLF.
                for i in payload..take {
                    let want = if left - i == 2 { b'\r' } else { b'\n' };
                    if data.get(i as usize) != Some(&want) {
                        self.lost(ts, true, items);
                        return 0;
                    }
                }
                if take == left {
                    self.value_done(ts, items);
                } else {
                    self.mode = Mode::Bulk { left: left - take };
                }
                take as usize
            }
            Mode::Inline {
                cr,
                in_token,
                quote,
                escaped,
            } => self.inline_bytes(data, (cr, in_token, quote, escaped), ts, items),
        }
    }

    /// Starts keeping request argument `i`, as much of it as its command
    /// allows (the command is classified once its name is complete).
    fn start_arg(&mut self, i: u64) {
        self.recording = usize::MAX;
        let Ok(i) = usize::try_from(i) else { return };
        if i >= ARGS_KEPT {
            return;
        }
        let cap = if i == 0 {
            NAME_KEEP
        } else {
            self.classify();
            keep(self.msg.class, i)
        };
        self.msg.args.start(i, cap);
        self.recording = i;
    }

    /// Classifies the command of the request in progress, once (from a
    /// small cache of recent names: workloads repeat a few commands).
    fn classify(&mut self) {
        if self.side != Side::Request || self.classified {
            return;
        }
        self.classified = true;
        if self.msg.args.cut(0) {
            self.msg.class = Class::UNKNOWN;
            return;
        }
        let name = self.msg.args.get(0);
        if let Some(hit) = self
            .recent
            .iter()
            .find(|r| r.len == name.len() && r.name.get(..name.len()) == Some(name))
        {
            self.msg.class = hit.class;
            return;
        }
        let class = classify(name);
        self.msg.class = class;
        let at = self.recent_next % RECENT;
        self.recent_next = self.recent_next.wrapping_add(1);
        if let Some(slot) = self.recent.get_mut(at)
            && let Some(dst) = slot.name.get_mut(..name.len())
        {
            dst.copy_from_slice(name);
            slot.len = name.len();
            slot.class = class;
        }
    }

    fn request_type_ok(&self, b: u8) -> bool {
        match self.depth {
            0 => b == b'*',
            _ => b == b'$',
        }
    }

    /// Decides whether the value starting now is kept, and how much of it.
    fn start_recording(&mut self, ty: u8) {
        self.recording = usize::MAX;
        match self.side {
            Side::Request => {
                if self.depth == 1 {
                    self.start_arg(self.top_index);
                }
            }
            Side::Reply => {
                let stringy = matches!(ty, b'+' | b'-' | b'$' | b'!' | b'=');
                let top = self.depth == 0 && !self.in_attribute;
                let first = self.depth == 1 && self.top_index == 0 && !self.in_attribute;
                if stringy && (top || first) {
                    self.msg.args.start(0, NAME_KEEP);
                    self.recording = 0;
                }
            }
        }
    }

    fn line_bytes(
        &mut self,
        data: &[u8],
        ty: u8,
        cr: bool,
        ts: u64,
        items: &mut Vec<Item>,
    ) -> usize {
        if cr {
            // The CR ended the previous segment: LF must follow.
            if data.first() != Some(&b'\n') {
                self.lost(ts, true, items);
                return 0;
            }
            self.line_done(ty, ts, items);
            return 1;
        }
        // Content runs to the first CR or LF (the common case: all of a
        // short line is in this segment).
        let end = memchr::memchr2(b'\r', b'\n', data).unwrap_or(data.len());
        let content = data.get(..end).unwrap_or_default();
        self.line_total += content.len() as u64;
        if matches!(ty, b'+' | b'-') && self.recording != usize::MAX {
            self.msg.args.push(self.recording, content);
        } else {
            let room = HEAD_MAX - self.line_len;
            let take = content.len().min(room);
            if let (Some(dst), Some(src)) = (
                self.line.get_mut(self.line_len..self.line_len + take),
                content.get(..take),
            ) {
                dst.copy_from_slice(src);
                self.line_len += take;
            }
            let long_ok = matches!(ty, b'+' | b'-' | b'(' | b',');
            if take < content.len() && !long_ok {
                self.lost(ts, true, items);
                return 0;
            }
        }
        match (data.get(end), data.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => {
                self.line_done(ty, ts, items);
                end + 2
            }
            (Some(b'\r'), None) => {
                self.mode = Mode::Line { ty, cr: true };
                end + 1
            }
            (None, _) => {
                self.mode = Mode::Line { ty, cr: false };
                end
            }
            _ => {
                // A bare LF, or CR not followed by LF.
                self.lost(ts, true, items);
                0
            }
        }
    }

    fn line_done(&mut self, ty: u8, ts: u64, items: &mut Vec<Item>) {
        let line = self.line.get(..self.line_len).unwrap_or_default();
        self.mode = Mode::Start;
        match ty {
            b'+' | b'-' | b'(' | b',' => self.value_done(ts, items),
            b':' => match parse_int(line) {
                Some(v) => {
                    if self.depth == 1 && self.top_index == 2 && !self.in_attribute {
                        self.msg.third_int = Some(v);
                    }
                    self.value_done(ts, items)
                }
                None => self.lost(ts, true, items),
            },
            b'#' => match line {
                b"t" | b"f" => self.value_done(ts, items),
                _ => self.lost(ts, true, items),
            },
            b'_' => match line {
                b"" => self.value_done(ts, items),
                _ => self.lost(ts, true, items),
            },
            b'$' | b'!' | b'=' => match parse_int(line) {
                Some(-1) if ty == b'$' => self.value_done(ts, items),
                Some(n) if n >= 0 && (n as u64) <= MAX_BULK => {
                    self.mode = Mode::Bulk { left: n as u64 + 2 };
                }
                _ => self.lost(ts, true, items),
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => match parse_int(line) {
                Some(-1) if ty == b'*' => self.aggregate(0, ty, ts, items),
                Some(n) if n >= 0 && (n as u64) <= MAX_COUNT => {
                    let n = n as u64;
                    let n = if matches!(ty, b'%' | b'|') { n * 2 } else { n };
                    self.aggregate(n, ty, ts, items);
                }
                _ => self.lost(ts, true, items),
            },
            _ => self.lost(ts, true, items),
        }
    }

    fn aggregate(&mut self, n: u64, ty: u8, ts: u64, items: &mut Vec<Item>) {
        let top = self.depth == 0;
        if ty == b'|' && !top {
            // Attributes inside aggregates (which Redis never sends)
            // would shift element counts: give up rather than guess.
            self.lost(ts, true, items);
            return;
        }
        if top && ty == b'|' {
            self.in_attribute = true;
        } else if top {
            self.msg.count = n;
        }
        if self.side == Side::Request && top && n == 0 {
            // `*0` and `*-1` are no command: Redis skips them.
            self.open = false;
            return;
        }
        if n == 0 {
            self.value_done(ts, items);
            return;
        }
        match self.stack.get_mut(self.depth) {
            Some(slot) => {
                *slot = n;
                self.depth += 1;
                if self.depth == 1 {
                    self.top_index = 0;
                }
            }
            None => self.lost(ts, true, items),
        }
    }

    /// A value (scalar or aggregate) ended: pop finished aggregates and
    /// emit the message when the top level is done.
    fn value_done(&mut self, ts: u64, items: &mut Vec<Item>) {
        self.mode = Mode::Start;
        self.recording = usize::MAX;
        loop {
            if self.depth == 0 {
                if self.in_attribute {
                    // The attribute ended; the reply it annotates follows.
                    return;
                }
                self.msg.end_ns = ts;
                self.open = false;
                self.classify();
                items.push(Item::Msg(self.msg));
                return;
            }
            if self.depth == 1 {
                self.top_index += 1;
            }
            let Some(left) = self.stack.get_mut(self.depth - 1) else {
                return;
            };
            *left = left.saturating_sub(1);
            if *left > 0 {
                return;
            }
            self.depth -= 1;
            if self.depth == 0 && self.in_attribute {
                // The attribute map is complete: its value is not the
                // message; what follows at top level is.
                self.mode = Mode::Start;
                return;
            }
        }
    }

    /// An inline command: words split as Redis splits them (spaces,
    /// except inside `"…"` or `'…'`), kept as arguments are.
    fn inline_bytes(
        &mut self,
        data: &[u8],
        state: (bool, bool, u8, bool),
        ts: u64,
        items: &mut Vec<Item>,
    ) -> usize {
        let (mut cr, mut in_token, mut quote, mut escaped) = state;
        for (i, &b) in data.iter().enumerate() {
            if cr && b != b'\n' {
                self.lost(ts, true, items);
                return 0;
            }
            self.line_total += 1;
            if self.line_total > INLINE_MAX {
                self.lost(ts, true, items);
                return 0;
            }
            match b {
                b'\n' => {
                    self.msg.count = self.top_index;
                    self.mode = Mode::Start;
                    self.msg.end_ns = ts;
                    self.open = false;
                    self.classify();
                    items.push(Item::Msg(self.msg));
                    return i + 1;
                }
                b'\r' => {
                    cr = true;
                    in_token = false;
                }
                b' ' | b'\t' if quote == 0 => in_token = false,
                _ => {
                    if !in_token {
                        in_token = true;
                        let idx = self.top_index;
                        self.top_index += 1;
                        self.start_arg(idx);
                        if (b == b'"' || b == b'\'') && idx > 0 {
                            quote = b;
                        }
                    } else if quote != 0 {
                        if escaped {
                            escaped = false;
                        } else if quote == b'"' && b == b'\\' {
                            escaped = true;
                        } else if b == quote {
                            quote = 0;
                        }
                    }
                    if self.top_index == 1 && !(b.is_ascii_alphanumeric() || b == b'_') {
                        // Command names are words; anything else is not
                        // an inline command.
                        self.lost(ts, true, items);
                        return 0;
                    }
                    if self.recording != usize::MAX {
                        self.msg.args.push(self.recording, std::slice::from_ref(&b));
                    }
                }
            }
        }
        self.mode = Mode::Inline {
            cr,
            in_token,
            quote,
            escaped,
        };
        data.len()
    }
}

fn is_type(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b','
            | b'#'
            | b'!'
            | b'='
            | b'('
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// A decimal integer as RESP writes it (optional `-`, digits only).
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// Where a command may start in bytes seen after lost framing: the start
/// of the segment or just after a CRLF, at `*<digits>\r\n$` (or a prefix
/// of it cut by the end of the data). Inline commands are accepted only
/// at the start of a segment (a client's write starts with a command).
pub(crate) fn resync_point(data: &[u8]) -> Option<usize> {
    if looks_like_command_start(data) || looks_like_inline_start(data) {
        return Some(0);
    }
    resync_after_start(data)
}

/// [`resync_point`] past offset 0: after a CRLF only.
fn resync_after_start(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(data.get(from..)?, b"\r\n*") {
        let at = from + p + 2;
        if looks_like_command_start(data.get(at..).unwrap_or_default()) {
            return Some(at);
        }
        from = at;
    }
    None
}

/// `*<1..=10 digits>\r\n$`, or a prefix of it up to the end of `data`.
fn looks_like_command_start(data: &[u8]) -> bool {
    let Some((&b'*', rest)) = data.split_first() else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return rest.is_empty();
    }
    if digits > 10 {
        return false;
    }
    let tail = rest.get(digits..).unwrap_or_default();
    let want = b"\r\n$";
    let n = tail.len().min(want.len());
    tail.get(..n) == want.get(..n)
}

/// A word of letters followed by a space or line end.
fn looks_like_inline_start(data: &[u8]) -> bool {
    let word = data.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    word > 0
        && word <= 32
        && matches!(data.get(word), Some(b' ' | b'\r' | b'\n'))
        && super::command::is_known(data.get(..word).unwrap_or_default())
}
