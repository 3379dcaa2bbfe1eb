//! HPACK header block decoding (RFC 7541) for one direction of an HTTP/2
//! connection, with its dynamic table.
//!
//! Written here rather than taken from a crate: the observer must go on
//! when the context is incomplete (capture began mid-connection, bytes were
//! lost), yielding "unknown" for what it cannot know instead of failing,
//! and it keeps only the fields spans use. Every field still enters the
//! dynamic table, as an entry of a known size (its values kept only for
//! the names we need).
//!
//! Incomplete context: after a loss the table may hold entries we never
//! saw. Entries inserted since are still exact: an insertion always lands
//! at the top (index 62) and eviction takes the oldest first, so the
//! entries we saw are the newest ones, in order, and are evicted by our
//! own size accounting no later than by the encoder's. Indexes beyond them
//! are unknown, never guessed. A new loss forgets them all again.

use std::collections::VecDeque;

use super::huffman;

/// The header fields this observer keeps; every other name is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Method,
    Path,
    Authority,
    Status,
    ContentType,
    UserAgent,
    Traceparent,
    GrpcStatus,
    Other,
    /// A field this decoder cannot know (a dynamic-table entry it never
    /// saw): both name and value unknown.
    Unknown,
}

impl Name {
    fn of(name: &[u8]) -> Name {
        match name {
            b":method" => Name::Method,
            b":path" => Name::Path,
            b":authority" => Name::Authority,
            b":status" => Name::Status,
            b"content-type" => Name::ContentType,
            b"user-agent" => Name::UserAgent,
            b"traceparent" => Name::Traceparent,
            b"grpc-status" => Name::GrpcStatus,
            _ => Name::Other,
        }
    }

    fn kept(self) -> bool {
        !matches!(self, Name::Other | Name::Unknown)
    }
}

/// RFC 7541 appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The default SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Longest name decoded to be classified; longer names are `Other`.
const NAME_KEEP: usize = 64;

/// Why a header block could not be decoded (a compression error, or bytes
/// that are not HPACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    Truncated,
    BadInteger,
    BadIndex,
    Huffman,
    /// A table size update after the first field.
    LateSizeUpdate,
}

/// Huffman strings whose decoded length is remembered, and their longest.
const COUNTS: usize = 4;
const COUNT_RAW: usize = 40;

/// A Huffman string (its bytes) and its decoded length.
#[derive(Debug, Clone, Copy)]
struct Counted {
    len: u8,
    decoded: u16,
    raw: [u8; COUNT_RAW],
}

/// One dynamic-table entry: its size, its name's kind and, for kept
/// names, its value (cut at the decoder's value limit).
#[derive(Debug)]
struct Entry {
    size: usize,
    /// Decoded name length (a literal may reuse the name).
    name_len: usize,
    name: Name,
    /// The name's bytes, kept only in `keep_all` mode (tests, fuzzing).
    raw_name: Box<[u8]>,
    value: Box<[u8]>,
}

/// The HPACK decoder of one direction.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first: dynamic index 62 is `entries[0]`.
    entries: VecDeque<Entry>,
    size: usize,
    /// Current maximum size (the last size update, bounded by `limit`).
    max_size: usize,
    /// What the receiving side advertised, capped by the observer's limit.
    limit: usize,
    cap: usize,
    /// Entries may exist that we never saw (loss, mid-connection start, a
    /// size clamped by our cap): indexes past ours are unknown, not errors.
    incomplete: bool,
    /// Longest value kept for a kept name.
    keep_value: usize,
    /// Keep every name and value (tests and fuzzing check the table).
    keep_all: bool,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
    counts: [Counted; COUNTS],
    next_count: usize,
}

impl Decoder {
    /// Heap bytes held: the table's entries (what the agent's memory
    /// budget counts; the table itself is bounded by its cap).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .entries
                .iter()
                .map(|e| e.raw_name.len() + e.value.len())
                .sum::<usize>()
            + self.name_buf.capacity()
            + self.value_buf.capacity()
    }

    /// A decoder for a context seen from its start (`complete`) or not,
    /// whose table never exceeds `cap` bytes, keeping values up to
    /// `keep_value` bytes.
    pub fn new(cap: usize, keep_value: usize, complete: bool) -> Self {
        let limit = DEFAULT_TABLE_SIZE.min(cap);
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            cap,
            incomplete: !complete || cap < DEFAULT_TABLE_SIZE,
            keep_value,
            keep_all: false,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
            counts: [Counted {
                len: 0,
                decoded: 0,
                raw: [0; COUNT_RAW],
            }; COUNTS],
            next_count: 0,
        }
    }

    /// Keeps every name and value (for tests and fuzzing).
    pub fn keep_all(&mut self) {
        self.keep_all = true;
    }

    /// The receiving side advertised SETTINGS_HEADER_TABLE_SIZE `n`.
    pub fn set_limit(&mut self, n: u32) {
        // Only a size update above our cap makes the table incomplete (an
        // encoder may never use all it is allowed).
        self.limit = usize::try_from(n).unwrap_or(usize::MAX).min(self.cap);
    }

    /// The context was seen from its start (connection preface).
    pub fn set_complete(&mut self) {
        if self.entries.is_empty() && self.cap >= DEFAULT_TABLE_SIZE {
            self.incomplete = false;
        }
    }

    /// Bytes were lost: every entry we hold may have moved.
    pub fn lose_context(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.incomplete = true;
    }

    pub fn is_incomplete(&self) -> bool {
        self.incomplete
    }

    /// Current table size in bytes (RFC 7541 §4.1 accounting).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// The table's current maximum size.
    pub fn max_table_size(&self) -> usize {
        self.max_size
    }

    pub fn table_len(&self) -> usize {
        self.entries.len()
    }

    /// Decodes one complete header block, calling `sink(name, raw name,
    /// value)` for each field. `raw name` is empty when not known; the
    /// value is empty for `Other` names unless `keep_all`, and both are
    /// empty for `Unknown`. On error the fields already given stand, and
    /// the caller should treat the context as lost.
    pub fn decode<F>(&mut self, block: &[u8], mut sink: F) -> Result<(), HpackError>
    where
        F: FnMut(Name, &[u8], &[u8]),
    {
        let mut pos = 0usize;
        let mut fields = 0usize;
        while let Some(&b) = block.get(pos) {
            if b & 0x80 != 0 {
                let idx = int(block, &mut pos, 7)?;
                self.indexed(idx, &mut sink)?;
                fields += 1;
            } else if b & 0xc0 == 0x40 {
                self.literal(block, &mut pos, 6, true, &mut sink)?;
                fields += 1;
            } else if b & 0xe0 == 0x20 {
                if fields > 0 {
                    return Err(HpackError::LateSizeUpdate);
                }
                let n = int(block, &mut pos, 5)?;
                self.size_update(n);
            } else {
                // Without indexing (0000) or never indexed (0001).
                self.literal(block, &mut pos, 4, false, &mut sink)?;
                fields += 1;
            }
        }
        Ok(())
    }

    fn size_update(&mut self, n: usize) {
        if n > self.limit {
            // Over what we allow (our cap, or a SETTINGS change we saw
            // late): a smaller table than the encoder's forgets its oldest
            // entries, whose indexes become unknown.
            self.incomplete = true;
        }
        self.max_size = n.min(self.limit);
        self.evict(0);
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    fn indexed<F>(&self, idx: usize, sink: &mut F) -> Result<(), HpackError>
    where
        F: FnMut(Name, &[u8], &[u8]),
    {
        match idx {
            0 => Err(HpackError::BadIndex),
            1..=61 => {
                let (n, v) = STATIC.get(idx - 1).copied().ok_or(HpackError::BadIndex)?;
                sink(Name::of(n.as_bytes()), n.as_bytes(), v.as_bytes());
                Ok(())
            }
            _ => match self.entries.get(idx - 62) {
                Some(e) => {
                    sink(e.name, &e.raw_name, &e.value);
                    Ok(())
                }
                None if self.incomplete => {
                    sink(Name::Unknown, b"", b"");
                    Ok(())
                }
                None => Err(HpackError::BadIndex),
            },
        }
    }

    fn literal<F>(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix: u32,
        index: bool,
        sink: &mut F,
    ) -> Result<(), HpackError>
    where
        F: FnMut(Name, &[u8], &[u8]),
    {
        let name_idx = int(block, pos, prefix)?;
        self.name_buf.clear();
        let (name, name_len) = if name_idx == 0 {
            let keep = NAME_KEEP.max(self.keep());
            let len = string(block, pos, &mut self.name_buf, keep)?;
            let name = if len > NAME_KEEP {
                Name::Other
            } else {
                Name::of(&self.name_buf)
            };
            (name, len)
        } else if let Some((n, _)) = name_idx.checked_sub(1).and_then(|i| STATIC.get(i)) {
            self.name_buf.extend_from_slice(n.as_bytes());
            (Name::of(n.as_bytes()), n.len())
        } else {
            match self.entries.get(name_idx - 62) {
                Some(e) => {
                    self.name_buf.extend_from_slice(&e.raw_name);
                    (e.name, e.name_len)
                }
                None if self.incomplete => (Name::Unknown, 0),
                None => return Err(HpackError::BadIndex),
            }
        };
        self.value_buf.clear();
        if !index && !name.kept() && !self.keep_all {
            // Neither kept nor entering the table: its length does not
            // matter, so it is skipped undecoded.
            skip_string(block, pos)?;
            sink(name, &self.name_buf, b"");
            return Ok(());
        }
        let keep = if name.kept() || self.keep_all {
            self.keep()
        } else {
            0
        };
        let value_len = if keep == 0 {
            self.counted(block, pos)?
        } else {
            string(block, pos, &mut self.value_buf, keep)?
        };
        if name == Name::Unknown {
            sink(Name::Unknown, b"", b"");
        } else {
            sink(name, &self.name_buf, &self.value_buf);
        }
        if index {
            self.insert(name, name_len, value_len);
        }
        Ok(())
    }

    /// The decoded length of a string only counted (a value entering the
    /// table under a name we do not keep). Servers repeat the same
    /// literals (nginx's `server` and `date` on every response), so the
    /// last few Huffman strings' lengths are remembered by their bytes.
    fn counted(&mut self, block: &[u8], pos: &mut usize) -> Result<usize, HpackError> {
        let start = *pos;
        let huff = block.get(start).is_some_and(|b| b & 0x80 != 0);
        if !huff {
            return string(block, pos, &mut self.value_buf, 0);
        }
        let len = int(block, pos, 7)?;
        let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
        let raw = block.get(*pos..end).ok_or(HpackError::Truncated)?;
        *pos = end;
        if let Some(c) = self
            .counts
            .iter()
            .find(|c| usize::from(c.len) == raw.len() && c.raw.get(..raw.len()) == Some(raw))
        {
            return Ok(c.decoded as usize);
        }
        let n = huffman::decode(raw, &mut self.value_buf, 0).map_err(|_| HpackError::Huffman)?;
        if let (Some(slot), Ok(decoded)) = (self.counts.get_mut(self.next_count), u16::try_from(n))
            && raw.len() <= COUNT_RAW
        {
            slot.len = raw.len() as u8;
            slot.decoded = decoded;
            if let Some(dst) = slot.raw.get_mut(..raw.len()) {
                dst.copy_from_slice(raw);
            }
            self.next_count = (self.next_count + 1) % COUNTS;
        }
        Ok(n)
    }

    fn keep(&self) -> usize {
        if self.keep_all {
            usize::MAX
        } else {
            self.keep_value
        }
    }

    fn insert(&mut self, name: Name, name_len: usize, value_len: usize) {
        let size = name_len.saturating_add(value_len).saturating_add(32);
        if size > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        // An entry whose name is unknown says nothing, whatever was kept.
        let keep_all = self.keep_all && name != Name::Unknown;
        let raw_name: Box<[u8]> = if keep_all {
            self.name_buf.as_slice().into()
        } else {
            Box::default()
        };
        let value: Box<[u8]> = if name.kept() || keep_all {
            self.value_buf.as_slice().into()
        } else {
            Box::default()
        };
        self.entries.push_front(Entry {
            size,
            name_len,
            name,
            raw_name,
            value,
        });
        self.size += size;
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1), bounded to
/// 2^28 so that no input overflows.
fn int(block: &[u8], pos: &mut usize, prefix: u32) -> Result<usize, HpackError> {
    let mask = (1usize << prefix) - 1;
    let first = usize::from(*block.get(*pos).ok_or(HpackError::Truncated)?) & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(HpackError::BadInteger);
        }
    }
}

/// Skips a string literal.
fn skip_string(block: &[u8], pos: &mut usize) -> Result<(), HpackError> {
    let len = int(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    if end > block.len() {
        return Err(HpackError::Truncated);
    }
    *pos = end;
    Ok(())
}

/// A string literal (RFC 7541 §5.2): appends at most `keep` decoded bytes
/// to `out` and returns the decoded length.
fn string(
    block: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
    keep: usize,
) -> Result<usize, HpackError> {
    let huff = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = int(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if huff {
        huffman::decode(raw, out, keep).map_err(|_| HpackError::Huffman)
    } else {
        out.extend_from_slice(raw.get(..keep.min(raw.len())).unwrap_or_default());
        Ok(raw.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn block(d: &mut Decoder, h: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(&hex(h), |_, n, v| {
            out.push((
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ))
        })
        .unwrap();
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn full(cap: usize) -> Decoder {
        let mut d = Decoder::new(cap, 4096, true);
        d.keep_all();
        d
    }

    #[test]
    fn rfc7541_c2_literals() {
        let mut d = full(4096);
        assert_eq!(
            block(
                &mut d,
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"
            ),
            pairs(&[("custom-key", "custom-header")])
        );
        assert_eq!((d.table_len(), d.table_size()), (1, 55));
        let mut d = full(4096);
        assert_eq!(
            block(&mut d, "040c 2f73 616d 706c 652f 7061 7468"),
            pairs(&[(":path", "/sample/path")])
        );
        assert_eq!(d.table_len(), 0);
        let mut d = full(4096);
        assert_eq!(
            block(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74"),
            pairs(&[("password", "secret")])
        );
        assert_eq!(d.table_len(), 0);
        let mut d = full(4096);
        assert_eq!(block(&mut d, "82"), pairs(&[(":method", "GET")]));
        assert_eq!(d.table_len(), 0);
    }

    fn requests(blocks: [&str; 3]) {
        let mut d = full(4096);
        assert_eq!(
            block(&mut d, blocks[0]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (1, 57));
        assert_eq!(
            block(&mut d, blocks[1]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (2, 110));
        assert_eq!(
            block(&mut d, blocks[2]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (3, 164));
    }

    #[test]
    fn rfc7541_c3_requests_plain() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn rfc7541_c4_requests_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOC: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn responses(blocks: [&str; 3]) {
        // The examples run with SETTINGS_HEADER_TABLE_SIZE 256.
        let mut d = full(4096);
        d.set_limit(256);
        d.size_update(256);
        assert_eq!(
            block(&mut d, blocks[0]),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (4, 222));
        assert_eq!(
            block(&mut d, blocks[1]),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (4, 222));
        assert_eq!(
            block(&mut d, blocks[2]),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE2),
                ("location", LOC),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE),
            ])
        );
        assert_eq!((d.table_len(), d.table_size()), (3, 215));
    }

    #[test]
    fn rfc7541_c5_responses_plain() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
             3d31",
        ]);
    }

    #[test]
    fn rfc7541_c6_responses_huffman() {
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn unknown_dynamic_entries_after_loss() {
        let mut d = Decoder::new(4096, 4096, true);
        let mut got = Vec::new();
        d.decode(
            &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            |n, _, v| got.push((n, v.to_vec())),
        )
        .unwrap();
        d.lose_context();
        got.clear();
        // :method GET (static), :authority = dynamic 62 (lost), then a new
        // literal :path inserted and referenced: known.
        d.decode(&hex("82be 4403 2f61 62be"), |n, _, v| {
            got.push((n, v.to_vec()))
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (Name::Method, b"GET".to_vec()),
                (Name::Unknown, vec![]),
                (Name::Path, b"/ab".to_vec()),
                (Name::Path, b"/ab".to_vec()),
            ]
        );
        // Past what we saw: unknown, not an error.
        got.clear();
        d.decode(&hex("bf"), |n, _, v| got.push((n, v.to_vec())))
            .unwrap();
        assert_eq!(got, vec![(Name::Unknown, vec![])]);
        // A complete context refuses the same index.
        let mut fresh = Decoder::new(4096, 4096, true);
        assert_eq!(
            fresh.decode(&hex("be"), |_, _, _| {}),
            Err(HpackError::BadIndex)
        );
    }

    #[test]
    fn hostile_input_is_refused_not_panicking() {
        let mut d = Decoder::new(4096, 16, true);
        for bad in [
            "80",
            "ff ff ff ff ff ff",
            "40 ff",
            "00 8f 00",
            "82 3f e1 1f",
        ] {
            let _ = d.decode(&hex(bad), |_, _, _| {});
        }
        // A size update above the cap is clamped.
        let mut d = Decoder::new(100, 16, true);
        d.set_limit(1 << 20);
        d.decode(&hex("3fe1 1f"), |_, _, _| {}).unwrap();
        assert!(d.max_size <= 100);
        assert!(d.is_incomplete());
        // An entry bigger than the table empties it.
        let mut d = Decoder::new(32, 16, true);
        d.decode(&hex("4003 6162 6303 6465 66"), |_, _, _| {})
            .unwrap();
        assert_eq!(d.table_len(), 0);
    }
}
