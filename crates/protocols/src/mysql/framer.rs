//! Packet framing of one direction: `[len: u24 LE][seq: u8][payload]`,
//! over captured segments that may be split anywhere and end in gaps.
//!
//! Payloads of 0xffffff bytes continue in the next packet (16 MB
//! multi-packet messages): they are joined into one logical [`Packet`].
//! Only a prefix of each payload is kept (`keep` bytes); the rest is
//! counted, so a gap inside a payload costs nothing but its content.

/// One logical packet (a message), possibly only partly captured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Packet {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Sequence id of its last physical packet (the next one follows it).
    pub last_seq: u8,
    /// Payload length (all physical packets).
    pub len: u64,
    /// Captured prefix of the payload (at most `keep` bytes).
    pub data: Vec<u8>,
    /// `data` holds the whole payload.
    pub complete: bool,
    pub first_ts: u64,
    pub last_ts: u64,
}

const MAX_PHYSICAL: u32 = 0xff_ffff;

#[derive(Debug)]
pub(crate) struct Framer {
    keep: usize,
    hdr: [u8; 4],
    hdr_len: usize,
    /// The logical packet being assembled (after its first header).
    cur: Option<Packet>,
    /// Payload bytes still due in the current physical packet.
    remaining: u64,
    /// The current physical packet is full-size: another one continues it.
    continues: bool,
    /// Out of sync (a gap hid a packet boundary): bytes are skipped until
    /// the owner resynchronises.
    lost: bool,
    /// Payload buffers handed back after use (a few: one packet is
    /// assembled at a time), so steady traffic allocates nothing.
    spare: Vec<Vec<u8>>,
}

impl Framer {
    /// Heap bytes held (the packet being assembled, spare buffers).
    pub fn heap_bytes(&self) -> usize {
        self.cur.as_ref().map_or(0, |p| p.data.capacity())
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
            + self.spare.capacity() * std::mem::size_of::<Vec<u8>>()
    }

    pub fn new(keep: usize) -> Self {
        Framer {
            keep,
            hdr: [0; 4],
            hdr_len: 0,
            cur: None,
            remaining: 0,
            continues: false,
            lost: false,
            spare: Vec::new(),
        }
    }

    /// Takes back a payload buffer of a packet this framer produced.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        // Small ones only: a connection keeps at most 4 KB of spares.
        if self.spare.len() < 4 && buf.capacity() <= 1024 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether the next byte starts a packet (nothing half read).
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.hdr_len == 0 && self.cur.is_none()
    }

    /// Forgets any half-read packet and takes the next byte as a packet
    /// start (the owner knows a boundary from elsewhere).
    pub fn reset(&mut self) {
        self.hdr_len = 0;
        self.cur = None;
        self.remaining = 0;
        self.continues = false;
        self.lost = false;
    }

    /// Gives up on framing until [`reset`](Self::reset).
    pub fn lose(&mut self) {
        self.reset();
        self.lost = true;
    }

    /// Frames `data` (captured at `ts`) followed by `gap` uncaptured bytes.
    /// Finished packets are appended to `out`. Returns true when this call
    /// lost sync (a gap covered a header).
    pub fn feed(&mut self, ts: u64, data: &[u8], gap: u64, out: &mut Vec<Packet>) -> bool {
        if self.lost {
            return false;
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.cur.is_some() && self.hdr_len == 0 && self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                let (take, after) = rest.split_at(n);
                rest = after;
                self.remaining -= n as u64;
                if let Some(p) = self.cur.as_mut() {
                    let room = self.keep.saturating_sub(p.data.len());
                    p.data.extend_from_slice(take.get(..room).unwrap_or(take));
                    p.last_ts = ts;
                }
                self.end_physical(out);
                continue;
            }
            // Header bytes.
            let n = (4 - self.hdr_len).min(rest.len());
            let (take, after) = rest.split_at(n);
            rest = after;
            if let Some(dst) = self.hdr.get_mut(self.hdr_len..self.hdr_len + n) {
                dst.copy_from_slice(take);
            }
            self.hdr_len += n;
            if self.hdr_len == 4 {
                self.start_physical(ts, out);
            }
        }
        if gap == 0 {
            return false;
        }
        if self.cur.is_some() && self.hdr_len == 0 && gap <= self.remaining {
            self.remaining -= gap;
            if let Some(p) = self.cur.as_mut() {
                p.last_ts = ts;
            }
            self.end_physical(out);
            return false;
        }
        // The gap runs past the end of the current payload (or into a
        // header): what we have of the packet is kept, the next boundary
        // is unknown.
        if self.hdr_len == 0
            && let Some(mut p) = self.cur.take()
        {
            p.last_ts = ts;
            out.push(p);
        }
        self.lose();
        true
    }

    fn start_physical(&mut self, ts: u64, out: &mut Vec<Packet>) {
        let [a, b, c, seq] = self.hdr;
        let len = u32::from_le_bytes([a, b, c, 0]);
        self.hdr_len = 0;
        match self.cur.as_mut() {
            Some(p) => {
                p.last_seq = seq;
                p.len += u64::from(len);
                p.last_ts = ts;
            }
            None => {
                self.cur = Some(Packet {
                    seq,
                    last_seq: seq,
                    len: u64::from(len),
                    data: self.spare.pop().unwrap_or_default(),
                    complete: false,
                    first_ts: ts,
                    last_ts: ts,
                });
            }
        }
        self.remaining = u64::from(len);
        self.continues = len == MAX_PHYSICAL;
        self.end_physical(out);
    }

    /// Finishes the logical packet when its last physical packet is done.
    fn end_physical(&mut self, out: &mut Vec<Packet>) {
        if self.remaining > 0 || self.hdr_len > 0 {
            return;
        }
        if self.continues {
            // A full-size physical packet ended: the next header continues
            // the same message.
            self.continues = false;
            return;
        }
        if let Some(mut p) = self.cur.take() {
            p.complete = p.data.len() as u64 == p.len;
            out.push(p);
        }
    }
}
