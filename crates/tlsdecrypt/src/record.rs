//! TLS record framing over one direction's byte stream, with holes (bytes
//! that moved but were not captured).

/// Bytes of a record header: type, legacy version (2), length (2).
pub(crate) const HEADER_LEN: usize = 5;

/// Largest record body accepted: a TLS 1.3 ciphertext's limit (2^14 + 256),
/// above every AEAD TLS 1.2 record too. Anything longer is not TLS (or not
/// in sync) and stops the direction.
pub(crate) const MAX_BODY: usize = (1 << 14) + 256;

pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;
pub(crate) const HEARTBEAT: u8 = 24;

/// Why framing stopped for good in a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A record header fell into a hole: record boundaries are unknown.
    LostSync,
    /// The bytes at a record boundary are no TLS record header.
    BadHeader,
}

/// One whole record, or one whose body was partly in a hole.
pub(crate) struct Record<'a> {
    pub(crate) header: [u8; HEADER_LEN],
    /// The known (captured) prefix of the body.
    pub(crate) body: &'a mut [u8],
    /// The body length from the header.
    pub(crate) len: usize,
    /// Every byte of the body was captured.
    pub(crate) complete: bool,
}

impl Record<'_> {
    pub(crate) fn content_type(&self) -> u8 {
        self.header[0]
    }
}

pub(crate) enum Step<'a> {
    Record(Record<'a>),
    NeedMore,
    Failed(FrameError),
}

/// Reassembles records of one direction. Holds at most one record body.
#[derive(Default)]
pub(crate) struct Framer {
    header: [u8; HEADER_LEN],
    header_len: usize,
    body: Vec<u8>,
    body_len: usize,
    /// Body bytes passed so far, captured or in a hole.
    body_seen: usize,
    /// Part of the body fell into a hole; later captured bytes of the same
    /// record are dropped (only a prefix is useful to a stream cipher here).
    holed: bool,
    /// The last step returned a record: start a new one on the next call.
    emitted: bool,
    failed: Option<FrameError>,
}

impl Framer {
    /// Heap bytes held (the record body being framed).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.body.capacity()
    }

    fn start_next(&mut self) {
        if self.emitted {
            self.emitted = false;
            self.header_len = 0;
            self.body.clear();
            self.body_len = 0;
            self.body_seen = 0;
            self.holed = false;
        }
    }

    /// Why framing stopped, if it did.
    pub(crate) fn failure(&self) -> Option<FrameError> {
        self.failed
    }

    fn fail(&mut self, e: FrameError) -> Step<'_> {
        self.failed = Some(e);
        Step::Failed(e)
    }

    fn emit(&mut self) -> Step<'_> {
        self.emitted = true;
        Step::Record(Record {
            header: self.header,
            len: self.body_len,
            complete: !self.holed,
            body: self.body.as_mut_slice(),
        })
    }

    /// Consumes captured bytes from `input` up to the end of the next record.
    pub(crate) fn take(&mut self, input: &mut &[u8]) -> Step<'_> {
        if let Some(e) = self.failed {
            return Step::Failed(e);
        }
        self.start_next();
        while !input.is_empty() {
            if self.header_len < HEADER_LEN {
                let n = (HEADER_LEN - self.header_len).min(input.len());
                let (head, rest) = input.split_at(n);
                if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + n) {
                    dst.copy_from_slice(head);
                }
                self.header_len += n;
                *input = rest;
                if self.header_len == HEADER_LEN {
                    match valid_header(&self.header) {
                        Some(len) => self.body_len = len,
                        None => return self.fail(FrameError::BadHeader),
                    }
                    if self.body_len == 0 {
                        return self.emit();
                    }
                }
            } else {
                let n = (self.body_len - self.body_seen).min(input.len());
                let (part, rest) = input.split_at(n);
                if !self.holed {
                    self.body.extend_from_slice(part);
                }
                self.body_seen += n;
                *input = rest;
                if self.body_seen == self.body_len {
                    return self.emit();
                }
            }
        }
        Step::NeedMore
    }

    /// Passes over `hole` uncaptured bytes; returns the current record if the
    /// hole reaches its end. Call again while `*hole > 0`: a header in the
    /// hole loses sync.
    pub(crate) fn skip(&mut self, hole: &mut u64) -> Step<'_> {
        if let Some(e) = self.failed {
            return Step::Failed(e);
        }
        if *hole == 0 {
            return Step::NeedMore;
        }
        self.start_next();
        if self.header_len < HEADER_LEN {
            return self.fail(FrameError::LostSync);
        }
        let left = (self.body_len - self.body_seen) as u64;
        let n = left.min(*hole);
        *hole -= n;
        // n <= left, which came from a usize.
        self.body_seen += usize::try_from(n).unwrap_or(0);
        self.holed = true;
        if self.body_seen == self.body_len {
            return self.emit();
        }
        Step::NeedMore
    }
}

/// The body length, if `h` looks like a TLS record header.
fn valid_header(h: &[u8; HEADER_LEN]) -> Option<usize> {
    let [ct, major, minor, l0, l1] = *h;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let known_type = (CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&ct);
    // 3.1..3.4 on the record layer (3.0 is SSLv3, never seen with AEADs).
    (known_type && major == 3 && (1..=4).contains(&minor) && len <= MAX_BODY).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, known body, len, complete)
    type Framed = (u8, Vec<u8>, usize, bool);

    /// Feeds events (captured bytes, hole) and lists the records.
    fn frame(events: &[(&[u8], u64)]) -> (Vec<Framed>, Option<FrameError>) {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for (data, hole) in events {
            let mut input = *data;
            loop {
                match f.take(&mut input) {
                    Step::Record(r) => {
                        out.push((r.content_type(), r.body.to_vec(), r.len, r.complete))
                    }
                    Step::NeedMore => break,
                    Step::Failed(e) => return (out, Some(e)),
                }
            }
            let mut hole = *hole;
            while hole > 0 {
                match f.skip(&mut hole) {
                    Step::Record(r) => {
                        out.push((r.content_type(), r.body.to_vec(), r.len, r.complete))
                    }
                    Step::NeedMore => break,
                    Step::Failed(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn records_split_and_merged() {
        let stream = [
            &[23u8, 3, 3, 0, 3, 1, 2, 3][..],
            &[22, 3, 3, 0, 0],
            &[23, 3, 3, 0, 1, 9],
        ]
        .concat();
        let want = vec![
            (23, vec![1, 2, 3], 3, true),
            (22, vec![], 0, true),
            (23, vec![9], 1, true),
        ];
        assert_eq!(frame(&[(&stream, 0)]), (want.clone(), None));
        let bytes: Vec<(&[u8], u64)> = stream.chunks(1).map(|c| (c, 0)).collect();
        assert_eq!(frame(&bytes), (want, None));
    }

    #[test]
    fn hole_ending_at_record_end_keeps_sync() {
        let (out, err) = frame(&[(&[23, 3, 3, 0, 4, 1], 3), (&[23, 3, 3, 0, 1, 7], 0)]);
        assert_eq!(err, None);
        assert_eq!(out, vec![(23, vec![1], 4, false), (23, vec![7], 1, true)]);
    }

    #[test]
    fn hole_over_a_header_loses_sync() {
        let (out, err) = frame(&[(&[23, 3, 3, 0, 2, 1], 4)]);
        assert_eq!(out, vec![(23, vec![1], 2, false)]);
        assert_eq!(err, Some(FrameError::LostSync));
        let (_, err) = frame(&[(&[23, 3], 1)]);
        assert_eq!(err, Some(FrameError::LostSync));
    }

    #[test]
    fn garbage_and_oversized_headers_are_refused() {
        assert_eq!(
            frame(&[(b"GET / HTTP/1.1", 0)]).1,
            Some(FrameError::BadHeader)
        );
        assert_eq!(
            frame(&[(&[23, 3, 3, 0x41, 1], 0)]).1,
            Some(FrameError::BadHeader)
        );
    }
}
