//! Opening the protected records of one direction: TLS 1.3 (trial decryption
//! past the handshake records, KeyUpdate) and TLS 1.2 (explicit or XOR nonce,
//! AAD with the sequence number).

use crate::hello::KEY_UPDATE;
use crate::keys::{KeyError, MAX_SECRET, RecordKey, TAG_LEN, hkdf_expand_label};
use crate::record::{APPLICATION_DATA, HEADER_LEN, Record};
use crate::report::{DirectionState, GiveUpReason, Stats};
use crate::suite::Negotiated;

/// Longest run of trial decryptions done for one record when partly captured
/// records before it leave its sequence number uncertain.
const MAX_SEQ_TRIALS: u64 = 8;

/// A record's content after opening: `body[start..start + known]` holds the
/// known plaintext, `len` the full content length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) content_type: u8,
    pub(crate) start: usize,
    pub(crate) known: usize,
    pub(crate) len: u64,
    pub(crate) authenticated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to hand out (handshake record, failure counted, ...).
    Nothing,
    Content(Opened),
    /// TLS 1.3: a KeyUpdate seen in a partly captured record.
    KeyUpdate,
    GiveUp(GiveUpReason),
}

/// What opening a record needs besides the direction's state.
pub(crate) struct OpenCtx<'a> {
    pub(crate) stats: &'a mut Stats,
    /// Reused buffer (keystream, trial copies).
    pub(crate) scratch: &'a mut Vec<u8>,
    pub(crate) limits: OpenLimits,
}

/// Counting limits the opener needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenLimits {
    pub(crate) max_handshake_records: u32,
    pub(crate) max_auth_failures_in_row: u32,
}

/// Protection state of one direction.
pub(crate) struct DirCrypto {
    pub(crate) state: DirectionState,
    key: Option<RecordKey>,
    /// TLS 1.3: the current traffic secret (for KeyUpdate).
    secret: [u8; MAX_SECRET],
    seq: u64,
    /// The keys opened a record of this direction (TLS 1.3: the first
    /// application record; TLS 1.2: Finished).
    synced: bool,
    /// TLS 1.3: partly captured records seen before sync; each may or may not
    /// have used an application sequence number.
    uncertain: u64,
    trials: u32,
    failures_in_row: u32,
    post_handshake: HandshakeStream,
}

/// The traffic secret is wiped with the direction's state (the AEAD key
/// inside ring's `LessSafeKey` cannot be reached; `RecordKey` wipes its IV).
impl Drop for DirCrypto {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl Default for DirCrypto {
    fn default() -> Self {
        Self {
            state: DirectionState::Active,
            key: None,
            secret: [0; MAX_SECRET],
            seq: 0,
            synced: false,
            uncertain: 0,
            trials: 0,
            failures_in_row: 0,
            post_handshake: HandshakeStream::default(),
        }
    }
}

impl DirCrypto {
    pub(crate) fn set_tls13_secret(
        &mut self,
        neg: Negotiated,
        secret: &[u8],
    ) -> Result<(), KeyError> {
        let hash_len = neg.hash.len();
        let secret = secret.get(..hash_len).ok_or(KeyError)?;
        self.key = Some(RecordKey::tls13(neg.aead, neg.hash, secret)?);
        if let Some(dst) = self.secret.get_mut(..hash_len) {
            dst.copy_from_slice(secret);
        }
        Ok(())
    }

    pub(crate) fn set_tls12_key(&mut self, key: RecordKey) {
        self.key = Some(key);
    }

    /// RFC 8446 7.2: the next traffic secret and its keys, sequence from 0.
    pub(crate) fn key_update(&mut self, neg: Negotiated) -> Result<(), KeyError> {
        let hash_len = neg.hash.len();
        let mut next = [0u8; MAX_SECRET];
        let next = next.get_mut(..hash_len).ok_or(KeyError)?;
        hkdf_expand_label(
            neg.hash,
            self.secret.get(..hash_len).ok_or(KeyError)?,
            b"traffic upd",
            next,
        )?;
        self.set_tls13_secret(neg, next)?;
        self.seq = 0;
        Ok(())
    }

    fn auth_failed(&mut self, stats: &mut Stats, limits: OpenLimits) -> Outcome {
        stats.auth_failures += 1;
        self.failures_in_row += 1;
        if self.failures_in_row >= limits.max_auth_failures_in_row {
            self.state = DirectionState::Failed;
        }
        Outcome::Nothing
    }

    /// TLS 1.3 record (outer type application_data).
    pub(crate) fn open_tls13(&mut self, rec: &mut Record<'_>, ctx: &mut OpenCtx<'_>) -> Outcome {
        let (header, len, complete) = (rec.header, rec.len, rec.complete);
        let body = &mut *rec.body;
        let (stats, scratch, limits) = (&mut *ctx.stats, &mut *ctx.scratch, ctx.limits);
        let Some(key) = self.key.as_ref() else {
            return Outcome::Nothing;
        };
        if header[0] != APPLICATION_DATA {
            return Outcome::Nothing;
        }
        // content || type || padding, then the tag.
        let inner_len = len.saturating_sub(TAG_LEN);
        if !complete {
            if !self.synced {
                self.uncertain += 1;
                stats.records_undecidable += 1;
                return Outcome::Nothing;
            }
            let nonce = key.xor_nonce(self.seq);
            self.seq = self.seq.wrapping_add(1);
            if inner_len == 0 {
                return self.auth_failed(stats, limits);
            }
            let known = body.len().min(inner_len);
            let Some(prefix) = body.get_mut(..known) else {
                return Outcome::Nothing;
            };
            key.xor_keystream(nonce, prefix, scratch);
            stats.records_unauthenticated += 1;
            if known == inner_len {
                // Only tag bytes are missing: type and padding are known.
                return match strip_padding(prefix) {
                    Some((content_type, n)) => Outcome::Content(Opened {
                        content_type,
                        start: 0,
                        known: n,
                        len: n as u64,
                        authenticated: false,
                    }),
                    None => Outcome::Nothing,
                };
            }
            // Padding unknown: assume none (OpenSSL and most stacks pad nothing).
            let content_len = inner_len - 1;
            let data = prefix.get(..known.min(content_len)).unwrap_or_default();
            // A handshake message filling the record exactly is a
            // NewSessionTicket or KeyUpdate, not application data (data
            // starting with such a header: odds 2^-32).
            if let Some(&[ty, l0, l1, l2]) = data.first_chunk::<4>() {
                let msg_len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                if msg_len + 4 == content_len {
                    return if ty == KEY_UPDATE {
                        Outcome::KeyUpdate
                    } else {
                        Outcome::Nothing
                    };
                }
            }
            return Outcome::Content(Opened {
                content_type: APPLICATION_DATA,
                start: 0,
                known: data.len(),
                len: content_len as u64,
                authenticated: false,
            });
        }
        let opened = if self.synced {
            let nonce = key.xor_nonce(self.seq);
            self.seq = self.seq.wrapping_add(1);
            match key.open(nonce, &header, body) {
                Some(n) => n,
                None => return self.auth_failed(stats, limits),
            }
        } else {
            match trial_open(key, header, body, self.uncertain, scratch) {
                Some((seq, n)) => {
                    self.synced = true;
                    self.seq = seq.wrapping_add(1);
                    self.uncertain = 0;
                    n
                }
                None => {
                    stats.handshake_records_skipped += 1;
                    self.trials += 1;
                    if self.trials > limits.max_handshake_records {
                        return Outcome::GiveUp(GiveUpReason::KeyMismatch);
                    }
                    return Outcome::Nothing;
                }
            }
        };
        self.failures_in_row = 0;
        stats.records_decrypted += 1;
        let Some((content_type, n)) = body.get(..opened).and_then(strip_padding) else {
            // Authenticated but all zeros: a peer bug; nothing to hand out.
            return Outcome::Nothing;
        };
        Outcome::Content(Opened {
            content_type,
            start: 0,
            known: n,
            len: n as u64,
            authenticated: true,
        })
    }

    /// TLS 1.2 record under the connection keys (after ChangeCipherSpec).
    pub(crate) fn open_tls12(&mut self, rec: &mut Record<'_>, ctx: &mut OpenCtx<'_>) -> Outcome {
        let (header, len, complete) = (rec.header, rec.len, rec.complete);
        let body = &mut *rec.body;
        let (stats, scratch, limits) = (&mut *ctx.stats, &mut *ctx.scratch, ctx.limits);
        let Some(key) = self.key.as_ref() else {
            return Outcome::Nothing;
        };
        let [content_type, v0, v1, _, _] = header;
        let explicit = key.aead.tls12_explicit_nonce_len();
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let first = seq == 0;
        let Some(plain_len) = len.checked_sub(explicit + TAG_LEN) else {
            return if first && complete {
                Outcome::GiveUp(GiveUpReason::KeyMismatch)
            } else {
                self.auth_failed(stats, limits)
            };
        };
        let nonce = if explicit == 0 {
            Some(key.xor_nonce(seq))
        } else {
            body.get(..explicit).map(|e| key.salted_nonce(e))
        };
        if !complete {
            if content_type != APPLICATION_DATA {
                return Outcome::Nothing;
            }
            stats.records_unauthenticated += 1;
            let mut known = 0;
            if let (Some(nonce), Some(cipher)) = (nonce, body.get_mut(explicit..)) {
                known = cipher.len().min(plain_len);
                if let Some(prefix) = cipher.get_mut(..known) {
                    key.xor_keystream(nonce, prefix, scratch);
                }
            }
            return Outcome::Content(Opened {
                content_type,
                start: explicit,
                known,
                len: plain_len as u64,
                authenticated: false,
            });
        }
        // RFC 5246 6.2.3.3: seq_num || type || version || length.
        let mut aad = [0u8; 13];
        let [l0, l1] = u16::try_from(plain_len).unwrap_or(u16::MAX).to_be_bytes();
        for (o, b) in
            aad.iter_mut().zip(
                seq.to_be_bytes()
                    .into_iter()
                    .chain([content_type, v0, v1, l0, l1]),
            )
        {
            *o = b;
        }
        let opened = match (nonce, body.get_mut(explicit..)) {
            (Some(nonce), Some(cipher)) => key.open(nonce, &aad, cipher),
            _ => None,
        };
        let Some(n) = opened else {
            // The first record is Finished: failing it means wrong secrets.
            return if first {
                Outcome::GiveUp(GiveUpReason::KeyMismatch)
            } else {
                self.auth_failed(stats, limits)
            };
        };
        self.synced = true;
        self.failures_in_row = 0;
        stats.records_decrypted += 1;
        Outcome::Content(Opened {
            content_type,
            start: explicit,
            known: n,
            len: n as u64,
            authenticated: true,
        })
    }

    /// TLS 1.3 handshake content under application keys (NewSessionTicket,
    /// KeyUpdate, post-handshake auth): whether a KeyUpdate ended in it.
    pub(crate) fn post_handshake(&mut self, content: &[u8]) -> bool {
        self.post_handshake.feed(content)
    }
}

/// Tries sequence numbers 0..=uncertain on a complete record before sync.
/// On success the plaintext is in `body`; ring zeroes a buffer on failure,
/// so retries work on copies.
fn trial_open(
    key: &RecordKey,
    header: [u8; HEADER_LEN],
    body: &mut [u8],
    uncertain: u64,
    scratch: &mut Vec<u8>,
) -> Option<(u64, usize)> {
    if uncertain == 0 {
        return key.open(key.xor_nonce(0), &header, body).map(|n| (0, n));
    }
    for seq in 0..=uncertain.min(MAX_SEQ_TRIALS) {
        scratch.clear();
        scratch.extend_from_slice(body);
        if let Some(n) = key.open(key.xor_nonce(seq), &header, scratch) {
            if let (Some(dst), Some(src)) = (body.get_mut(..n), scratch.get(..n)) {
                dst.copy_from_slice(src);
            }
            return Some((seq, n));
        }
    }
    None
}

/// RFC 8446 5.4: TLSInnerPlaintext = content || type || zeros. The type and
/// the content length; None if all zeros.
fn strip_padding(inner: &[u8]) -> Option<(u8, usize)> {
    let at = inner.iter().rposition(|b| *b != 0)?;
    Some((*inner.get(at)?, at))
}

/// Walks handshake messages across records without keeping them: only
/// message boundaries and KeyUpdate matter after the handshake.
#[derive(Default)]
struct HandshakeStream {
    header: [u8; 4],
    have: usize,
    remaining: usize,
}

impl HandshakeStream {
    fn feed(&mut self, mut data: &[u8]) -> bool {
        let mut key_update = false;
        while !data.is_empty() {
            if self.have < 4 {
                let n = (4 - self.have).min(data.len());
                let (head, rest) = data.split_at(n);
                if let Some(dst) = self.header.get_mut(self.have..self.have + n) {
                    dst.copy_from_slice(head);
                }
                self.have += n;
                data = rest;
                if self.have == 4 {
                    let [_, l0, l1, l2] = self.header;
                    self.remaining = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                }
            } else {
                let n = self.remaining.min(data.len());
                data = data.get(n..).unwrap_or_default();
                self.remaining -= n;
            }
            if self.have == 4 && self.remaining == 0 {
                // Tickets resume sessions the agent does not follow: dropped.
                key_update |= self.header[0] == KEY_UPDATE;
                self.have = 0;
            }
        }
        key_update
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::NEW_SESSION_TICKET;

    #[test]
    fn handshake_stream_finds_key_update_across_records() {
        let mut s = HandshakeStream::default();
        // NewSessionTicket (5 bytes) then KeyUpdate split over two records.
        assert!(!s.feed(&[NEW_SESSION_TICKET, 0, 0, 5, 1, 2, 3, 4, 5, KEY_UPDATE, 0]));
        assert!(s.feed(&[0, 1, 1]));
        assert!(!s.feed(&[NEW_SESSION_TICKET, 0, 0, 0]));
    }

    #[test]
    fn padding_is_stripped() {
        assert_eq!(strip_padding(&[1, 2, 23, 0, 0]), Some((23, 2)));
        assert_eq!(strip_padding(&[22]), Some((22, 0)));
        assert_eq!(strip_padding(&[0, 0]), None);
    }
}
