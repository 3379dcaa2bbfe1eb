//! Messages of one direction of a PostgreSQL connection, from segments
//! split anywhere and cut by capture gaps.
//!
//! Every message but the client's first ones is `type:u8 length:u32 body`
//! (the length counts itself); the client's startup-family messages have no
//! type byte (they start with a length, so a 0 byte); the server answers an
//! SSLRequest/GSSENCRequest with one unframed byte. Lengths let a gap
//! inside a message be skipped exactly; a gap past a message's end loses
//! the framing, found again by [`find_boundary`].

use crate::parse::Segment;

/// Kind of the client's untyped startup-family messages.
pub const UNTYPED: u8 = 0;
/// Kind of the server's one-byte answer to an SSL/GSS encryption request.
pub const ENC_ANSWER: u8 = 1;

/// Bytes held while looking for a message boundary after lost sync.
const RESYNC_HOLD: usize = 1024;

/// Largest message any side sends (the server's allocation limit).
const MAX_LEN: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Client to server.
    Front,
    /// Server to client.
    Back,
}

/// How much of a body is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing (row data, passwords, notices).
    Nothing,
    /// At most this many bytes.
    Upto(usize),
    /// Up to and including the `n`-th NUL (names before values), at most
    /// `max` bytes.
    Nuls(u8, usize),
}

/// The limits a keep rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Startup-family messages.
    pub head: usize,
    /// Statement text.
    pub query: usize,
}

/// Message kind → how much of its body to keep.
pub type Rule = fn(Side, u8, Caps) -> Keep;

/// One message, as far as it was captured and kept.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub kind: u8,
    /// Kept prefix of the body.
    pub body: &'a [u8],
    /// Declared body length (without type and length fields).
    pub len: u32,
    /// Part of the body fell in a capture gap.
    pub gapped: bool,
    /// Timestamp of the segment holding its first byte.
    pub ts_start: u64,
    /// Timestamp of the segment holding its last byte.
    pub ts_end: u64,
}

impl Msg<'_> {
    /// The whole body was captured and kept.
    pub fn whole(&self) -> bool {
        self.body.len() as u64 == u64::from(self.len)
    }
}

/// What the framer reports, in stream order.
#[derive(Debug)]
pub enum Event<'a> {
    Msg(Msg<'a>),
    /// Framing lost (a gap past a message end, or bytes that are no
    /// message); messages resume at the next boundary found.
    Lost {
        invalid: bool,
    },
}

/// Whether a message of `kind` with a body of `len` bytes may come from
/// `side` (lengths outside what the server ever sends are refused).
pub fn plausible(side: Side, kind: u8, len: u32) -> bool {
    let ok = |lo: u32, hi: u32| (lo..=hi).contains(&len);
    match side {
        Side::Back => match kind {
            b'Z' => len == 1,
            b'1' | b'2' | b'3' | b'n' | b'I' | b'c' | b's' => len == 0,
            b'K' => len == 8,
            b'R' => ok(4, 1 << 16),
            b'S' => ok(2, 1 << 16),
            b'C' => ok(1, 1 << 10),
            b'E' | b'N' => ok(1, 1 << 20),
            b'T' => ok(2, 1 << 24),
            b't' => ok(2, 1 << 20),
            b'D' => ok(2, MAX_LEN),
            b'G' | b'H' | b'W' => ok(3, 1 << 18),
            b'd' => ok(0, MAX_LEN),
            b'A' => ok(6, MAX_LEN),
            b'v' => ok(8, 1 << 16),
            b'V' => ok(4, MAX_LEN),
            _ => false,
        },
        Side::Front => match kind {
            b'Q' => ok(1, MAX_LEN),
            b'P' => ok(4, MAX_LEN),
            b'B' => ok(8, MAX_LEN),
            b'E' => ok(5, 1 << 16),
            b'D' | b'C' => ok(2, 1 << 16),
            b'S' | b'H' | b'X' | b'c' => len == 0,
            b'd' => ok(0, MAX_LEN),
            b'f' => ok(1, 1 << 20),
            b'p' => ok(1, 1 << 20),
            b'F' => ok(10, MAX_LEN),
            _ => false,
        },
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Checks that messages of `side` chain from the start of `bytes`: one
/// complete message or more exactly to the end, or two or more then a
/// last one that runs past the end (cut by the capture, or still coming).
pub fn chain_ok(side: Side, bytes: &[u8]) -> bool {
    let mut i = 0usize;
    let mut complete = 0u32;
    loop {
        let Some(rest) = bytes.get(i..).filter(|r| !r.is_empty()) else {
            return complete > 0;
        };
        let (Some(&kind), Some(len)) = (rest.first(), rest.get(1..).and_then(be32)) else {
            // A header cut by the end: its kind at least must fit.
            return complete > 1 && rest.first().is_some_and(|&k| is_kind(side, k));
        };
        let Some(body) = len.checked_sub(4).filter(|&b| plausible(side, kind, b)) else {
            return false;
        };
        let next = i + 1 + 4 + body as usize;
        if next > bytes.len() {
            return complete > 1;
        }
        complete += 1;
        i = next;
    }
}

/// First offset of `bytes` where a chain of messages starts (see
/// [`chain_ok`]).
pub fn find_boundary(side: Side, bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&k| {
        bytes
            .get(k..)
            .is_some_and(|r| r.first().is_some_and(|&c| is_kind(side, c)) && chain_ok(side, r))
    })
}

fn is_kind(side: Side, c: u8) -> bool {
    const BACK: &[u8] = b"Z123nIcsKRSCENTtDGHWdAvV";
    const FRONT: &[u8] = b"QPBEDCSHXcdfpF";
    match side {
        Side::Back => BACK.contains(&c),
        Side::Front => FRONT.contains(&c),
    }
}

/// Stream assembly of one direction.
#[derive(Debug)]
pub struct Framer {
    side: Side,
    /// Header bytes collected (typed: 5, untyped: 4).
    hdr: [u8; 5],
    hdr_have: usize,
    /// The header being read is an untyped startup-family one.
    untyped: bool,
    /// In a body: its kind, length and progress.
    in_body: bool,
    kind: u8,
    body_len: u32,
    body_done: u32,
    keep_rule: Keep,
    keep: Vec<u8>,
    /// The kept prefix is complete for its rule (e.g. the NULs were seen).
    keep_full: bool,
    gapped: bool,
    ts_start: u64,
    synced: bool,
    /// Bytes held while out of sync, searched for a boundary.
    rbuf: Vec<u8>,
    /// The next byte of this (server) side answers an encryption request.
    pub expect_enc_answer: bool,
    rule: Rule,
    caps: Caps,
}

impl Framer {
    /// Heap bytes held (kept prefix, resync buffer).
    pub fn heap_bytes(&self) -> usize {
        self.keep.capacity() + self.rbuf.capacity()
    }

    pub fn new(side: Side, rule: Rule, caps: Caps) -> Self {
        Framer {
            side,
            hdr: [0; 5],
            hdr_have: 0,
            untyped: false,
            in_body: false,
            kind: 0,
            body_len: 0,
            body_done: 0,
            keep_rule: Keep::Nothing,
            keep: Vec::new(),
            keep_full: false,
            gapped: false,
            ts_start: 0,
            synced: true,
            rbuf: Vec::new(),
            expect_enc_answer: false,
            rule,
            caps,
        }
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Feeds one segment; `emit` sees messages and losses in order.
    pub fn feed(&mut self, seg: Segment<'_>, emit: &mut dyn FnMut(Event<'_>)) {
        let data = seg.data;
        let mut p = 0usize;
        while p < data.len() {
            let Some(rest) = data.get(p..) else { break };
            if self.synced {
                p += self.step(rest, seg.ts_ns, emit);
                continue;
            }
            self.stash(rest);
            p = data.len();
            self.resync(seg.ts_ns, emit);
        }
        let mut gap = seg.gap();
        if gap == 0 {
            return;
        }
        if !self.synced {
            // The bytes held are no longer followed by what comes next.
            self.rbuf.clear();
            return;
        }
        if self.in_body {
            let left = u64::from(self.body_len - self.body_done);
            let take = left.min(gap);
            // take <= left, a u32.
            self.body_done += u32::try_from(take).unwrap_or(0);
            self.gapped = true;
            gap -= take;
            if self.body_done == self.body_len {
                self.finish(seg.ts_ns, emit);
            }
        }
        if gap > 0 {
            // The next header is in the gap: its place is unknown.
            self.lose(false, emit);
        }
    }

    /// Header or body bytes from `rest` (non-empty); returns how many it
    /// used (at least one).
    fn step(&mut self, rest: &[u8], ts: u64, emit: &mut dyn FnMut(Event<'_>)) -> usize {
        if self.in_body {
            self.body(rest, ts, emit)
        } else {
            self.header(rest, ts, emit)
        }
    }

    /// Holds bytes read while out of sync (the last [`RESYNC_HOLD`]).
    fn stash(&mut self, bytes: &[u8]) {
        self.rbuf.extend_from_slice(bytes);
        let over = self.rbuf.len().saturating_sub(RESYNC_HOLD);
        if over > 0 {
            self.rbuf.drain(..over);
        }
    }

    /// Looks for a boundary in the held bytes and parses from it, as
    /// often as sync is lost again in them.
    fn resync(&mut self, ts: u64, emit: &mut dyn FnMut(Event<'_>)) {
        while let Some(k) = find_boundary(self.side, &self.rbuf) {
            let bytes = std::mem::take(&mut self.rbuf);
            self.synced = true;
            let mut p = k;
            while self.synced {
                let Some(rest) = bytes.get(p..).filter(|r| !r.is_empty()) else {
                    return;
                };
                p += self.step(rest, ts, emit);
            }
            self.rbuf = bytes.get(p..).unwrap_or_default().to_vec();
        }
    }

    fn lose(&mut self, invalid: bool, emit: &mut dyn FnMut(Event<'_>)) {
        self.synced = false;
        self.in_body = false;
        self.hdr_have = 0;
        self.keep.clear();
        self.expect_enc_answer = false;
        emit(Event::Lost { invalid });
    }

    /// Reads header bytes from `rest`; returns how many it used.
    fn header(&mut self, rest: &[u8], ts: u64, emit: &mut dyn FnMut(Event<'_>)) -> usize {
        let Some(&first) = rest.first() else { return 0 };
        if self.hdr_have == 0 {
            self.ts_start = ts;
            if self.side == Side::Back && self.expect_enc_answer {
                self.expect_enc_answer = false;
                emit(Event::Msg(Msg {
                    kind: ENC_ANSWER,
                    body: rest.get(..1).unwrap_or_default(),
                    len: 1,
                    gapped: false,
                    ts_start: ts,
                    ts_end: ts,
                }));
                return 1;
            }
        }
        if self.hdr_have == 0 {
            // Typed messages start with a letter; a length (< 16 MiB)
            // starts with 0.
            self.untyped = self.side == Side::Front && first == 0;
            if let (false, Some(h)) = (self.untyped, rest.first_chunk::<5>()) {
                // The whole header is here: no copy.
                self.hdr = *h;
                return self.start_body(5, ts, emit);
            }
        }
        let untyped = self.untyped;
        let need = if untyped { 4 } else { 5 };
        let take = (need - self.hdr_have).min(rest.len());
        for (slot, &b) in self
            .hdr
            .iter_mut()
            .skip(self.hdr_have)
            .zip(rest.iter().take(take))
        {
            *slot = b;
        }
        self.hdr_have += take;
        if self.hdr_have < need {
            return take;
        }
        self.hdr_have = 0;
        self.start_body(take, ts, emit)
    }

    /// Starts the body of the message whose header is in `hdr`; returns
    /// `used` (the header bytes taken from the current data), or 1 when
    /// the header is not a message (sync is lost: the search for a
    /// boundary starts after its first byte).
    fn start_body(&mut self, used: usize, ts: u64, emit: &mut dyn FnMut(Event<'_>)) -> usize {
        let untyped = self.untyped;
        let [kind, ..] = self.hdr;
        let (kind, len) = if untyped {
            (UNTYPED, be32(&self.hdr))
        } else {
            (kind, self.hdr.get(1..).and_then(be32))
        };
        let body = len.and_then(|l| l.checked_sub(4));
        let ok = match (kind, body) {
            (UNTYPED, Some(b)) => (4..=10_000).contains(&b),
            (_, Some(b)) => plausible(self.side, kind, b),
            _ => false,
        };
        let Some(body) = body.filter(|_| ok) else {
            self.lose(true, emit);
            return 1.min(used);
        };
        self.in_body = true;
        self.kind = kind;
        self.body_len = body;
        self.body_done = 0;
        self.keep.clear();
        self.keep_full = false;
        self.gapped = false;
        self.keep_rule = (self.rule)(self.side, kind, self.caps);
        if body == 0 {
            self.finish(ts, emit);
        }
        used
    }

    /// Reads body bytes from `rest`; returns how many it used.
    fn body(&mut self, rest: &[u8], ts: u64, emit: &mut dyn FnMut(Event<'_>)) -> usize {
        let left = (self.body_len - self.body_done) as usize;
        let take = left.min(rest.len());
        let chunk = rest.get(..take).unwrap_or_default();
        if self.body_done == 0 && take == left && !self.gapped {
            // The whole body is here: no copy.
            let kept = kept_len(self.keep_rule, &[], chunk);
            self.in_body = false;
            emit(Event::Msg(Msg {
                kind: self.kind,
                body: chunk.get(..kept).unwrap_or_default(),
                len: self.body_len,
                gapped: false,
                ts_start: self.ts_start,
                ts_end: ts,
            }));
            return take;
        }
        if !self.keep_full {
            let n = kept_len(self.keep_rule, &self.keep, chunk);
            self.keep
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
            self.keep_full = n < chunk.len();
        }
        self.body_done += take as u32;
        if self.body_done == self.body_len {
            self.finish(ts, emit);
        }
        take
    }

    fn finish(&mut self, ts: u64, emit: &mut dyn FnMut(Event<'_>)) {
        self.in_body = false;
        emit(Event::Msg(Msg {
            kind: self.kind,
            body: &self.keep,
            len: self.body_len,
            gapped: self.gapped,
            ts_start: self.ts_start,
            ts_end: ts,
        }));
        self.keep.clear();
    }
}

/// How many bytes of `chunk` to keep after `have` under `rule`.
fn kept_len(rule: Keep, have: &[u8], chunk: &[u8]) -> usize {
    match rule {
        Keep::Nothing => 0,
        Keep::Upto(max) => max.saturating_sub(have.len()).min(chunk.len()),
        Keep::Nuls(n, max) => {
            let room = max.saturating_sub(have.len()).min(chunk.len());
            let seen = have.iter().filter(|&&c| c == 0).count();
            let mut need = usize::from(n).saturating_sub(seen);
            if need == 0 {
                return 0;
            }
            for (i, &c) in chunk.iter().take(room).enumerate() {
                if c == 0 {
                    need -= 1;
                    if need == 0 {
                        return i + 1;
                    }
                }
            }
            room
        }
    }
}
