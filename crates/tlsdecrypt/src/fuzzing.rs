//! Body of the `tls_session` cargo-fuzz target in `fuzz/`, kept here so that
//! `cargo test` runs it over the committed seeds on stable.
//!
//! It panics (via `assert!`) when an invariant breaks: that is the point.
//!
//! Input format (see fuzz/README.md):
//!
//! - `byte0 < 0x80`: **fixture mode**. One of the committed real transcripts
//!   (`byte0 % 14`) is re-cut into events by 3-byte ops `[kind][a][b]`
//!   (`n = 1 + (a << 8 | b)`): kind % 4 == 0 cuts an event of `n` bytes;
//!   1 cuts `n` bytes of which only `b` (or `b * 64` if kind bit 2) are
//!   captured; 2 flips a byte `n` bytes ahead (corruption); 3 gives the
//!   secrets now. What no op covers is fed chunk by chunk. `byte1`: bit 0
//!   secrets at the end, bit 1 wrong secrets, bit 2 tight limits.
//! - `byte0 >= 0x80`: **raw mode**. `byte1` fills the secrets, then records
//!   `[flags][n][gap][n bytes]`: flags bit 0 the direction, bit 1 give the
//!   secrets before this event; `gap` uncaptured bytes follow the data.
//!
//! Invariants: never a panic; `data.len() <= len`; in fixture mode every
//! authenticated plaintext is one of the transcript's real records, every
//! unauthenticated one (without corruption; 4+ bytes) a prefix of one, and without
//! holes or corruption the output is exactly the unsplit transcript's.

use std::sync::OnceLock;

use crate::{Direction, Limits, Plaintext, Secrets, Session};

/// Declares the committed transcripts once: their names (for the seed
/// files) and their text, in the order fuzz inputs index them.
macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        /// Names of the transcripts, in the order fuzz inputs index them.
        pub const FIXTURE_NAMES: &[&str] = &[$($name),*];
        const FIXTURES: &[&str] = &[$(include_str!(concat!("../fixtures/", $name, ".txt"))),*];
    };
}

fixtures![
    "tls13_aes128gcm",
    "tls13_aes256gcm",
    "tls13_chacha20",
    "tls13_keyupdate",
    "tls13_hrr",
    "tls12_aes128gcm",
    "tls12_aes256gcm",
    "tls12_chacha20",
    "tls12_resumed",
    "tls13_resumed",
    "go13_default",
    "go12_aes256gcm",
    "go12_chacha20",
    "tls12_cbc",
];

/// Index of the KeyUpdate fixture: a KeyUpdate lost in a hole makes later
/// unauthenticated prefixes garbage, legitimately.
const KEY_UPDATE_FIXTURE: usize = 3;

/// One plaintext handed out, as the harness keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub dir: Direction,
    pub data: Vec<u8>,
    pub len: u64,
    pub authenticated: bool,
}

/// A committed transcript: secrets and the chunks each side wrote.
pub struct Transcript {
    pub secrets: Secrets,
    pub chunks: Vec<(Direction, Vec<u8>)>,
}

struct Reference {
    transcript: Transcript,
    /// The unsplit run's output (secrets at the end).
    pieces: Vec<Piece>,
}

fn decode_hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .filter_map(|p| {
            let hi = char::from(*p.first()?).to_digit(16)?;
            let lo = char::from(*p.get(1)?).to_digit(16)?;
            u8::try_from(hi << 4 | lo).ok()
        })
        .collect()
}

/// Parses a fixture file (format in fixtures/gen_fixtures.py).
pub fn parse_transcript(text: &str) -> Transcript {
    let mut keylog = String::new();
    let mut client_random = [0u8; 32];
    let mut chunks = Vec::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("keylog") => {
                let rest: Vec<&str> = parts.collect();
                if let Some(r) = rest.get(1) {
                    let r = decode_hex(r);
                    if let Ok(r) = <[u8; 32]>::try_from(r.as_slice()) {
                        client_random = r;
                    }
                }
                keylog.push_str(&rest.join(" "));
                keylog.push('\n');
            }
            Some("c2s") => chunks.push((
                Direction::ClientToServer,
                decode_hex(parts.next().unwrap_or("")),
            )),
            Some("s2c") => chunks.push((
                Direction::ServerToClient,
                decode_hex(parts.next().unwrap_or("")),
            )),
            _ => {}
        }
    }
    let secrets = Secrets::from_keylog(&keylog, &client_random).unwrap_or_default();
    Transcript { secrets, chunks }
}

fn references() -> &'static [Reference] {
    static REFS: OnceLock<Vec<Reference>> = OnceLock::new();
    REFS.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|text| {
                let transcript = parse_transcript(text);
                let mut session = Session::new(Limits::default());
                let mut pieces = Vec::new();
                for (dir, data) in &transcript.chunks {
                    session.feed(*dir, data, data.len() as u64, (), &mut |p| {
                        pieces.push(piece(&p))
                    });
                }
                session.set_secrets(&transcript.secrets, &mut |p| pieces.push(piece(&p)));
                Reference { transcript, pieces }
            })
            .collect()
    })
}

fn piece<T>(p: &Plaintext<'_, T>) -> Piece {
    assert!(
        p.data.len() as u64 <= p.len,
        "more data than the record holds"
    );
    Piece {
        dir: p.dir,
        data: p.data.to_vec(),
        len: p.len,
        authenticated: p.authenticated,
    }
}

/// The `tls_session` target.
pub fn tls_session(input: &[u8]) {
    match input.first() {
        Some(&mode) if mode < 0x80 => fixture_mode(
            usize::from(mode) % FIXTURES.len(),
            input.get(1..).unwrap_or_default(),
        ),
        Some(_) => raw_mode(input.get(1..).unwrap_or_default()),
        None => {}
    }
}

fn fixture_mode(which: usize, input: &[u8]) {
    let Some(reference) = references().get(which) else {
        return;
    };
    let flags = input.first().copied().unwrap_or(0);
    let mut ops = input.get(1..).unwrap_or_default();
    let mut secrets = reference.transcript.secrets.clone();
    let wrong = flags & 2 != 0;
    if wrong {
        secrets.client_traffic_secret_0[0] ^= 1;
        secrets.server_traffic_secret_0[0] ^= 1;
        secrets.master_secret[0] ^= 1;
    }
    let limits = if flags & 4 != 0 {
        Limits {
            max_pending_bytes: 4096,
            max_handshake_records: 2,
            max_auth_failures_in_row: 1,
        }
    } else {
        Limits::default()
    };
    let mut session: Session<()> = Session::new(limits);
    let mut out = Vec::new();
    let (mut holes, mut corrupted, mut secrets_given) = (false, false, false);
    for (dir, chunk) in &reference.transcript.chunks {
        let mut chunk = chunk.clone();
        let mut at = 0;
        while at < chunk.len() {
            let Some((&[kind, a, b], rest)) = ops.split_first_chunk::<3>() else {
                break;
            };
            ops = rest;
            let n = 1 + (usize::from(a) << 8 | usize::from(b));
            match kind % 4 {
                0 | 1 => {
                    let end = (at + n).min(chunk.len());
                    let event = chunk.get(at..end).unwrap_or_default();
                    let captured = if kind % 4 == 1 {
                        let cap = usize::from(b) * if kind & 4 != 0 { 64 } else { 1 };
                        holes |= cap < event.len();
                        event.get(..cap.min(event.len())).unwrap_or_default()
                    } else {
                        event
                    };
                    session.feed(*dir, captured, event.len() as u64, (), &mut |p| {
                        out.push(piece(&p))
                    });
                    at = end;
                }
                2 => {
                    if let Some(byte) = chunk.get_mut(at + n - 1) {
                        *byte ^= kind | 1;
                        corrupted = true;
                    }
                }
                _ => {
                    session.set_secrets(&secrets, &mut |p| out.push(piece(&p)));
                    secrets_given = true;
                }
            }
        }
        if let Some(rest) = chunk.get(at..).filter(|r| !r.is_empty()) {
            session.feed(*dir, rest, rest.len() as u64, (), &mut |p| {
                out.push(piece(&p))
            });
        }
    }
    if flags & 1 != 0 {
        session.set_secrets(&secrets, &mut |p| out.push(piece(&p)));
        secrets_given = true;
    }
    let stats = session.stats();
    assert!(stats.plaintext_bytes == out.iter().map(|p| p.data.len() as u64).sum::<u64>());
    for p in &out {
        let real = reference.pieces.iter().filter(|r| r.dir == p.dir);
        if p.authenticated {
            assert!(
                real.clone().any(|r| r.data == p.data),
                "authenticated plaintext that is no record of the transcript"
            );
        } else if !corrupted && which != KEY_UPDATE_FIXTURE && !wrong && p.data.len() >= 4 {
            // (Under 4 known bytes a cut ticket or alert looks like data.)
            assert!(
                real.clone()
                    .any(|r| r.len == p.len && r.data.starts_with(&p.data)),
                "unauthenticated prefix that is no record's prefix"
            );
        }
    }
    if wrong {
        assert!(out.iter().all(|p| !p.authenticated));
    }
    if !holes && !corrupted && !wrong && secrets_given && limits == Limits::default() {
        assert!(
            out == reference.pieces,
            "a re-split transcript decrypts differently"
        );
    }
}

fn raw_mode(input: &[u8]) {
    let fill = input.first().copied().unwrap_or(0);
    let secrets = Secrets {
        client_traffic_secret_0: [fill; 48],
        server_traffic_secret_0: [fill.wrapping_add(1); 48],
        master_secret: [fill.wrapping_add(2); 48],
    };
    let limits = Limits {
        max_pending_bytes: 8192,
        ..Limits::default()
    };
    let mut session: Session<u32> = Session::new(limits);
    let mut rest = input.get(1..).unwrap_or_default();
    let mut count = 0u64;
    let mut event = 0u32;
    while let Some((&[flags, n, gap], tail)) = rest.split_first_chunk::<3>() {
        let (data, after) = tail.split_at(usize::from(n).min(tail.len()));
        rest = after;
        let dir = if flags & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        if flags & 2 != 0 {
            session.set_secrets(&secrets, &mut |p| {
                count += piece(&p).data.len() as u64;
            });
        }
        event += 1;
        let len = data.len() as u64 + u64::from(gap);
        session.feed(dir, data, len, event, &mut |p| {
            assert!(*p.tag <= event);
            count += piece(&p).data.len() as u64;
        });
    }
    assert_eq!(session.stats().plaintext_bytes, count);
}

/// Writes a fixture-mode input (for seeds): fixture, flags, ops.
pub fn encode_fixture_input(fixture: u8, flags: u8, ops: &[[u8; 3]]) -> Vec<u8> {
    let mut v = vec![fixture & 0x7f, flags];
    for op in ops {
        v.extend_from_slice(op);
    }
    v
}

/// Writes a raw-mode input (for seeds): secret fill byte, then
/// (direction flags, data, gap) records; data longer than 255 is split.
pub fn encode_raw_input(fill: u8, events: &[(u8, &[u8], u8)]) -> Vec<u8> {
    let mut v = vec![0x80, fill];
    for (flags, data, gap) in events {
        let mut chunks = data.chunks(255).peekable();
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            v.push(*flags);
            v.push(u8::try_from(c.len()).unwrap_or(255));
            v.push(if last { *gap } else { 0 });
            v.extend_from_slice(c);
        }
    }
    v
}

/// The committed transcripts, for seed generation.
pub fn transcripts() -> impl Iterator<Item = &'static Transcript> {
    references().iter().map(|r| &r.transcript)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The invariants are only as strong as the reference runs.
    #[test]
    fn reference_runs_decrypt_every_fixture_but_cbc() {
        for (i, r) in references().iter().enumerate() {
            let authenticated = r.pieces.iter().filter(|p| p.authenticated).count();
            if i == FIXTURES.len() - 1 {
                assert_eq!(authenticated, 0, "CBC is refused");
            } else {
                assert!(authenticated >= 5, "fixture {i}: {authenticated} pieces");
            }
        }
    }
}
