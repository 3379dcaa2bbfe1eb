//! Decryption of one connection's captured ciphertext (OpenSSL sockets
//! whose handshake the kernel saw): the glue between the data records, the
//! secrets record and `ratatosk_tlsdecrypt::Session`, plus its counters.

use ratatosk_protocols::parse::{Direction, Segment};
use ratatosk_tlsdecrypt::{
    Direction as TlsDirection, DirectionState, Limits, Plaintext, Secrets, Session, Stats,
};

use crate::decode::{Data, TlsKeys};
use crate::selfmon::{ReasonLabel, SelfMetrics};

/// Ciphertext kept per connection while its secrets are on their way (the
/// handshake's records: a few KiB; the bound only matters for a connection
/// whose secrets never come).
const MAX_PENDING_BYTES: usize = 64 * 1024;

/// The event a record's plaintext is dated by: (ts, queued ns).
type Tag = (u64, u64);

pub struct Cipher {
    session: Session<Tag>,
    /// The local direction of client-to-server bytes: the client speaks
    /// first, so it is the direction of the connection's first record.
    client_to_server: Direction,
    seen: Stats,
    /// Failures already counted (give-up, per-direction end).
    counted: [bool; 3],
}

/// Plaintext produced by one call, parsed right after (the session cannot
/// be borrowed while the parser runs on the same connection).
#[derive(Default)]
pub struct PlainBuf {
    bytes: Vec<u8>,
    segs: Vec<PlainSeg>,
}

struct PlainSeg {
    direction: Direction,
    ts_ns: u64,
    queued_ns: u64,
    start: usize,
    end: usize,
    len: u64,
}

/// One plaintext segment as the parser takes it.
pub struct Plain<'a> {
    pub direction: Direction,
    pub segment: Segment<'a>,
    pub queued_ns: u64,
}

impl PlainBuf {
    fn push(&mut self, p: &Plaintext<'_, Tag>, c2s: Direction) {
        let direction = match p.dir {
            TlsDirection::ClientToServer => c2s,
            TlsDirection::ServerToClient => opposite(c2s),
        };
        let start = self.bytes.len();
        self.bytes.extend_from_slice(p.data);
        self.segs.push(PlainSeg {
            direction,
            ts_ns: p.tag.0,
            queued_ns: p.tag.1,
            start,
            end: self.bytes.len(),
            len: p.len,
        });
    }

    pub fn segments(&self) -> impl Iterator<Item = Plain<'_>> {
        self.segs.iter().map(|s| Plain {
            direction: s.direction,
            segment: Segment {
                ts_ns: s.ts_ns,
                data: self.bytes.get(s.start..s.end).unwrap_or(&[]),
                len: s.len,
            },
            queued_ns: s.queued_ns,
        })
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.segs.clear();
    }
}

fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Ingress => Direction::Egress,
        Direction::Egress => Direction::Ingress,
    }
}

impl Cipher {
    /// Approximate bytes held by this connection's decryption.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<Session<Tag>>()
            + self.session.state_bytes()
    }

    /// A connection whose first ciphertext record moved in `first`.
    pub fn new(first: Direction) -> Self {
        Cipher {
            session: Session::new(Limits {
                max_pending_bytes: MAX_PENDING_BYTES,
                ..Limits::default()
            }),
            client_to_server: first,
            seen: Stats::default(),
            counted: [false; 3],
        }
    }

    pub fn feed(&mut self, d: &Data<'_>, plain: &mut PlainBuf, m: &SelfMetrics) {
        let dir = if d.direction == self.client_to_server {
            TlsDirection::ClientToServer
        } else {
            TlsDirection::ServerToClient
        };
        let c2s = self.client_to_server;
        self.session.feed(
            dir,
            d.payload,
            d.len,
            (d.hdr.ts_ns, d.queued_ns),
            &mut |p| plain.push(&p, c2s),
        );
        self.account(m);
    }

    pub fn set_keys(&mut self, k: &TlsKeys, plain: &mut PlainBuf, m: &SelfMetrics) {
        let secrets = Secrets {
            client_traffic_secret_0: k.client_secret,
            server_traffic_secret_0: k.server_secret,
            master_secret: k.master_secret,
        };
        let c2s = self.client_to_server;
        self.session
            .set_secrets(&secrets, &mut |p| plain.push(&p, c2s));
        self.account(m);
    }

    /// Adds what the session did since the last look to the counters.
    fn account(&mut self, m: &SelfMetrics) {
        let now = self.session.stats();
        m.tls_decrypted_records.inc_by(
            now.records_decrypted
                .saturating_sub(self.seen.records_decrypted),
        );
        m.tls_unauthenticated_records.inc_by(
            now.records_unauthenticated
                .saturating_sub(self.seen.records_unauthenticated),
        );
        self.seen = now.clone();
        if !self.counted[0]
            && let Some(reason) = self.session.gave_up()
        {
            self.counted[0] = true;
            count_failure(m, reason.label());
        }
        for (i, dir) in [TlsDirection::ClientToServer, TlsDirection::ServerToClient]
            .into_iter()
            .enumerate()
        {
            let state = self.session.direction_state(dir);
            if !matches!(state, DirectionState::Active | DirectionState::Closed)
                && let Some(done) = self.counted.get_mut(i + 1)
                && !*done
            {
                *done = true;
                count_failure(m, state.label());
            }
        }
    }
}

pub fn count_failure(m: &SelfMetrics, reason: &'static str) {
    m.tls_decrypt_failures
        .get_or_create(&ReasonLabel { reason })
        .inc();
}
