//! Fixture loading and event splitting shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

use ratatosk_tlsdecrypt::{
    Direction, DirectionState, GiveUpReason, Limits, Secrets, Session, Stats,
};

/// OpenSSL 3.0 transcripts (gen_fixtures.py): full-size records, several
/// records per write.
pub const OPENSSL: &[&str] = &[
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
];

/// Go crypto/tls transcripts (gen_go_fixtures.go): X25519MLKEM768 hellos,
/// dynamic record sizes (one growing record per write).
pub const GO: &[&str] = &["go13_default", "go12_aes256gcm", "go12_chacha20"];

pub fn is_tls12(name: &str) -> bool {
    name.starts_with("tls12") || name.starts_with("go12")
}

/// Every supported-suite transcript.
pub fn all() -> impl Iterator<Item = &'static str> {
    OPENSSL.iter().chain(GO).copied()
}

/// A transcript written by fixtures/gen_fixtures.py.
pub struct Fixture {
    pub name: String,
    pub keylog: String,
    pub client_random: [u8; 32],
    /// Expected plaintext per direction (index 0: client to server).
    pub plain: [Vec<u8>; 2],
    /// Chunks in the order they were written.
    pub chunks: Vec<(Direction, Vec<u8>)>,
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn dir_of(s: &str) -> Direction {
    match s {
        "c2s" => Direction::ClientToServer,
        "s2c" => Direction::ServerToClient,
        other => panic!("bad direction {other}"),
    }
}

pub fn idx(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

pub fn load(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut fx = Fixture {
        name: name.to_string(),
        keylog: String::new(),
        client_random: [0; 32],
        plain: [Vec::new(), Vec::new()],
        chunks: Vec::new(),
    };
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match parts.next().unwrap() {
            "keylog" => {
                let rest: Vec<&str> = parts.collect();
                fx.client_random = hex(rest[1]).try_into().unwrap();
                fx.keylog.push_str(&rest.join(" "));
                fx.keylog.push('\n');
            }
            "plain" => {
                let d = dir_of(parts.next().unwrap());
                let (count, data) = parts.next().unwrap().split_once('x').unwrap();
                let data = hex(data);
                for _ in 0..count.parse::<usize>().unwrap() {
                    fx.plain[idx(d)].extend_from_slice(&data);
                }
            }
            d => fx.chunks.push((dir_of(d), hex(parts.next().unwrap()))),
        }
    }
    assert!(
        !fx.chunks.is_empty() && !fx.keylog.is_empty(),
        "{name}: empty fixture"
    );
    fx
}

impl Fixture {
    pub fn secrets(&self) -> Secrets {
        Secrets::from_keylog(&self.keylog, &self.client_random).unwrap()
    }
}

/// One syscall as the agent sees it: captured prefix and moved length.
#[derive(Clone, Debug)]
pub struct Event {
    pub dir: Direction,
    pub data: Vec<u8>,
    pub len: u64,
}

pub fn whole_chunks(fx: &Fixture) -> Vec<Event> {
    fx.chunks
        .iter()
        .map(|(dir, data)| Event {
            dir: *dir,
            data: data.clone(),
            len: data.len() as u64,
        })
        .collect()
}

/// As OpenSSL reads without read-ahead (and as most stacks write): one
/// event per record header and one per record body.
pub fn header_body(fx: &Fixture) -> Vec<Event> {
    let mut out = Vec::new();
    for (dir, data) in &fx.chunks {
        let mut rest = &data[..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            for part in [&rest[..5], &rest[5..5 + len]] {
                out.push(Event {
                    dir: *dir,
                    data: part.to_vec(),
                    len: part.len() as u64,
                });
            }
            rest = &rest[5 + len..];
        }
    }
    out
}

pub fn one_byte_each(fx: &Fixture) -> Vec<Event> {
    let mut out = Vec::new();
    for (dir, data) in &fx.chunks {
        for b in data {
            out.push(Event {
                dir: *dir,
                data: vec![*b],
                len: 1,
            });
        }
    }
    out
}

/// Consecutive chunks of one direction merged into one event.
pub fn merged(fx: &Fixture) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for (dir, data) in &fx.chunks {
        match out.last_mut() {
            Some(last) if last.dir == *dir => {
                last.data.extend_from_slice(data);
                last.len = last.data.len() as u64;
            }
            _ => out.push(Event {
                dir: *dir,
                data: data.clone(),
                len: data.len() as u64,
            }),
        }
    }
    out
}

/// Each chunk cut at pseudo-random points (xorshift, deterministic).
pub fn random_splits(fx: &Fixture, mut seed: u64) -> Vec<Event> {
    let mut out = Vec::new();
    for (dir, data) in &fx.chunks {
        let mut rest = &data[..];
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = 1 + (seed % 3000) as usize;
            let (a, b) = rest.split_at(n.min(rest.len()));
            out.push(Event {
                dir: *dir,
                data: a.to_vec(),
                len: a.len() as u64,
            });
            rest = b;
        }
    }
    out
}

/// Captures at most `cap` bytes of each event (the rest becomes a hole).
pub fn capped(events: &[Event], cap: usize) -> Vec<Event> {
    events
        .iter()
        .map(|e| Event {
            dir: e.dir,
            data: e.data[..e.data.len().min(cap)].to_vec(),
            len: e.len,
        })
        .collect()
}

/// One plaintext handed out: direction, data, full length, tag (event index), authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub dir: Direction,
    pub data: Vec<u8>,
    pub len: u64,
    pub tag: usize,
    pub authenticated: bool,
}

pub struct Run {
    pub out: Vec<Out>,
    pub stats: Stats,
    pub gave_up: Option<GiveUpReason>,
    pub states: [DirectionState; 2],
}

/// When the secrets are given.
#[derive(Clone, Copy, Debug)]
pub enum SecretsAt {
    Never,
    /// Before event i (0: before anything; past the end: after everything).
    Before(usize),
}

pub fn run(events: &[Event], secrets: &Secrets, at: SecretsAt, limits: Limits) -> Run {
    let mut session: Session<usize> = Session::new(limits);
    let mut out = Vec::new();
    let mut sink = |p: ratatosk_tlsdecrypt::Plaintext<'_, usize>| {
        assert!(p.data.len() as u64 <= p.len);
        out.push(Out {
            dir: p.dir,
            data: p.data.to_vec(),
            len: p.len,
            tag: *p.tag,
            authenticated: p.authenticated,
        })
    };
    for (i, e) in events.iter().enumerate() {
        if matches!(at, SecretsAt::Before(n) if n == i) {
            session.set_secrets(secrets, &mut sink);
        }
        session.feed(e.dir, &e.data, e.len, i, &mut sink);
    }
    if matches!(at, SecretsAt::Before(n) if n >= events.len()) {
        session.set_secrets(secrets, &mut sink);
    }
    Run {
        out,
        stats: session.stats().clone(),
        gave_up: session.gave_up(),
        states: [
            session.direction_state(Direction::ClientToServer),
            session.direction_state(Direction::ServerToClient),
        ],
    }
}

/// Concatenated plaintext per direction.
pub fn joined(out: &[Out]) -> [Vec<u8>; 2] {
    let mut j = [Vec::new(), Vec::new()];
    for o in out {
        j[idx(o.dir)].extend_from_slice(&o.data);
    }
    j
}

/// Checks output against the expected streams when records may be partly
/// known: each piece is a prefix of the expected bytes at its offset, offsets
/// advance by the full length and end at the stream's end. Returns the
/// number of unauthenticated pieces.
pub fn check_prefixes(fx: &Fixture, out: &[Out]) -> usize {
    let mut offset = [0usize; 2];
    let mut partial = 0;
    for o in out {
        let d = idx(o.dir);
        let at = offset[d];
        let want = &fx.plain[d][at..at + o.data.len()];
        assert_eq!(o.data, want, "{}: piece at {at} of {:?}", fx.name, o.dir);
        if o.authenticated {
            assert_eq!(o.data.len() as u64, o.len);
        } else {
            partial += 1;
        }
        offset[d] += o.len as usize;
    }
    assert_eq!(
        offset,
        [fx.plain[0].len(), fx.plain[1].len()],
        "{}",
        fx.name
    );
    partial
}

/// Tags never go backwards: plaintext comes out in event order.
pub fn assert_in_event_order(out: &[Out]) {
    for w in out.windows(2) {
        assert!(
            w[0].tag <= w[1].tag,
            "out of order: {} then {}",
            w[0].tag,
            w[1].tag
        );
    }
}
