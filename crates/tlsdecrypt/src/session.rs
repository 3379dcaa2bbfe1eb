//! One TCP connection's decryption: framing per direction, the hellos, the
//! wait for the secrets (pending queue), then record opening in event order.

use std::collections::VecDeque;

use crate::decrypt::{DirCrypto, OpenCtx, OpenLimits, Opened, Outcome};
use crate::hello::{Hello, HelloError, HelloReader};
use crate::keys::{RecordKey, tls12_prf};
use crate::record::{
    ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, FrameError, Framer, HANDSHAKE, HEADER_LEN, Record,
    Step,
};
use crate::report::{DirectionState, GiveUpReason, Stats};
use crate::secrets::Secrets;
use crate::suite::{Negotiated, Version, lookup};

/// Which way bytes went on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    fn from_index(i: usize) -> Self {
        if i == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }
}

/// The plaintext of one application-data record.
#[derive(Debug)]
pub struct Plaintext<'a, T> {
    pub dir: Direction,
    /// The decrypted known prefix (all of it unless the record was partly
    /// not captured).
    pub data: &'a [u8],
    /// The full plaintext length of the record.
    pub len: u64,
    /// The tag of the event that held the record's last byte.
    pub tag: &'a T,
    /// The AEAD tag was checked (false: decrypted prefix of a partly
    /// captured record).
    pub authenticated: bool,
}

/// Bounds of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of records (plus a fixed cost per record and per event tag)
    /// kept while the secrets are not there yet. Past it: give up with
    /// `BufferOverflow`.
    pub max_pending_bytes: usize,
    /// TLS 1.3: records per direction the application keys may fail to open
    /// before the first success (handshake records) before the secrets are
    /// declared wrong (`KeyMismatch`).
    pub max_handshake_records: u32,
    /// Authentication failures in a row after sync that end a direction.
    pub max_auth_failures_in_row: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pending_bytes: 256 * 1024,
            max_handshake_records: 16,
            max_auth_failures_in_row: 8,
        }
    }
}

/// Budget cost of one queued record or event tag beyond its bytes.
const ITEM_COST: usize = 64;

/// Decrypts one TLS connection from the bytes the observed process read and
/// wrote, once its secrets are known. `T` is the caller's per-event tag
/// (timestamps, ...), handed back with the plaintext.
pub struct Session<T> {
    framers: [Framer; 2],
    core: Core,
    pending: Pending<T>,
}

/// Everything but the framers and the pending queue (split so a framed
/// record can borrow its framer while the rest is updated).
struct Core {
    limits: Limits,
    stats: Stats,
    gave_up: Option<GiveUpReason>,
    hellos: [HelloReader; 2],
    /// ChangeCipherSpec seen per direction (TLS 1.2: records after it are
    /// protected).
    ccs_seen: [bool; 2],
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    /// Known from a HelloRetryRequest or the ServerHello.
    version: Option<Version>,
    negotiated: Option<Negotiated>,
    secrets: Option<Secrets>,
    /// Keys derived: records are opened as they come.
    ready: bool,
    dirs: [DirCrypto; 2],
    scratch: Vec<u8>,
}

/// How a framed record is handled.
enum Class {
    Skip,
    Hello,
    /// Opened (or queued) in event order; `protected` false for a plaintext
    /// alert before the keys change.
    Ordered {
        protected: bool,
    },
}

/// The current event's tag: used directly, or queued with the records.
enum TagSlot<T> {
    Live(T),
    Queued(u64),
}

impl<T> Default for Session<T> {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl<T> Session<T> {
    pub fn new(limits: Limits) -> Self {
        Self {
            framers: Default::default(),
            core: Core {
                limits,
                stats: Stats::default(),
                gave_up: None,
                hellos: Default::default(),
                ccs_seen: [false; 2],
                client_random: None,
                server_random: None,
                version: None,
                negotiated: None,
                secrets: None,
                ready: false,
                dirs: Default::default(),
                scratch: Vec::new(),
            },
            pending: Pending::default(),
        }
    }

    /// One event: `captured` is a prefix of the `len` bytes one syscall
    /// moved in `dir` (the rest is a hole). Plaintext of every
    /// application-data record completed goes to `sink`, in order.
    pub fn feed<F>(&mut self, dir: Direction, captured: &[u8], len: u64, tag: T, sink: &mut F)
    where
        F: FnMut(Plaintext<'_, T>),
    {
        self.feed_dyn(dir, captured, len, tag, sink);
    }

    /// The secrets, usually after the handshake records were fed. Queued
    /// records are then opened in their original order. Ignored once keys
    /// are derived or the session gave up.
    pub fn set_secrets<F>(&mut self, secrets: &Secrets, sink: &mut F)
    where
        F: FnMut(Plaintext<'_, T>),
    {
        if self.core.gave_up.is_some() || self.core.ready {
            return;
        }
        self.core.secrets = Some(secrets.clone());
        self.core.try_ready();
        self.drain(sink);
    }

    /// Approximate bytes held: the session itself, records being framed,
    /// hellos being read, records waiting for the secrets.
    pub fn state_bytes(&self) -> usize {
        let p = &self.pending;
        std::mem::size_of::<Self>()
            + self.framers.iter().map(Framer::heap_bytes).sum::<usize>()
            + self
                .core
                .hellos
                .iter()
                .map(HelloReader::heap_bytes)
                .sum::<usize>()
            + self.core.scratch.capacity()
            + p.bytes.capacity()
            + p.items.capacity() * std::mem::size_of::<Item>()
            + p.tags.capacity() * std::mem::size_of::<T>()
    }

    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Why the whole connection is no longer decrypted, if it is not.
    pub fn gave_up(&self) -> Option<GiveUpReason> {
        self.core.gave_up
    }

    pub fn direction_state(&self, dir: Direction) -> DirectionState {
        let d = dir.index();
        match self.framers.get(d).and_then(Framer::failure) {
            Some(FrameError::LostSync) => DirectionState::LostSync,
            Some(FrameError::BadHeader) => DirectionState::NotTls,
            None => self
                .core
                .dirs
                .get(d)
                .map_or(DirectionState::Failed, |c| c.state),
        }
    }

    /// Nothing more can come out: gave up, or both directions ended.
    pub fn is_finished(&self) -> bool {
        self.core.gave_up.is_some()
            || [Direction::ClientToServer, Direction::ServerToClient]
                .iter()
                .all(|d| self.direction_state(*d) != DirectionState::Active)
    }

    /// Version and suite, once the ServerHello was read (and supported).
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.core.negotiated
    }

    /// From the ClientHello: the key to find this connection in a keylog.
    pub fn client_random(&self) -> Option<&[u8; 32]> {
        self.core.client_random.as_ref()
    }

    fn feed_dyn(
        &mut self,
        dir: Direction,
        captured: &[u8],
        len: u64,
        tag: T,
        sink: &mut dyn FnMut(Plaintext<'_, T>),
    ) {
        if self.core.gave_up.is_some() || self.direction_state(dir) != DirectionState::Active {
            return;
        }
        let d = dir.index();
        let Session {
            framers,
            core,
            pending,
        } = self;
        let Some(framer) = framers.get_mut(d) else {
            return;
        };
        let slot = if core.ready {
            TagSlot::Live(tag)
        } else {
            TagSlot::Queued(pending.push_tag(tag))
        };
        let mut tag_used = false;
        let mut input = captured;
        let mut hole = len.saturating_sub(captured.len() as u64);
        let mut in_hole = false;
        loop {
            if core.gave_up.is_some()
                || core.dirs.get(d).map(|c| c.state) != Some(DirectionState::Active)
            {
                break;
            }
            let step = if in_hole {
                framer.skip(&mut hole)
            } else {
                framer.take(&mut input)
            };
            match step {
                Step::Record(mut rec) => {
                    core.on_record(d, &mut rec, &slot, pending, &mut tag_used, sink)
                }
                Step::NeedMore if !in_hole && hole > 0 => in_hole = true,
                Step::NeedMore => break,
                Step::Failed(e) => {
                    match e {
                        FrameError::LostSync => core.stats.lost_sync += 1,
                        FrameError::BadHeader => core.stats.bad_records += 1,
                    }
                    break;
                }
            }
        }
        if core.gave_up.is_some() {
            pending.clear();
        } else if let TagSlot::Queued(id) = slot
            && !tag_used
        {
            pending.pop_tag(id);
        }
        self.drain(sink);
    }

    /// Opens the queued records in order once the keys are there.
    fn drain(&mut self, sink: &mut dyn FnMut(Plaintext<'_, T>)) {
        if !self.core.ready || self.pending.items.is_empty() {
            return;
        }
        let Pending {
            items,
            mut bytes,
            tags,
            first_tag,
            ..
        } = std::mem::take(&mut self.pending);
        for item in items {
            if self.core.gave_up.is_some() {
                break;
            }
            let tag = usize::try_from(item.tag.wrapping_sub(first_tag))
                .ok()
                .and_then(|i| tags.get(i));
            let body = bytes.get_mut(item.start..item.start.saturating_add(item.known));
            let (Some(tag), Some(body)) = (tag, body) else {
                continue;
            };
            let mut rec = Record {
                header: item.header,
                body,
                len: item.len,
                complete: item.complete,
            };
            self.core
                .on_ordered(item.dir, &mut rec, item.protected, tag, sink);
        }
    }
}

impl Core {
    fn give_up(&mut self, reason: GiveUpReason) {
        if self.gave_up.is_none() {
            self.gave_up = Some(reason);
            match reason {
                GiveUpReason::BufferOverflow => self.stats.buffer_overflows += 1,
                GiveUpReason::UnsupportedCipherSuite | GiveUpReason::UnsupportedVersion => {
                    self.stats.unsupported += 1
                }
                _ => {}
            }
            self.secrets = None;
        }
    }

    fn classify(&mut self, d: usize, content_type: u8) -> Class {
        let tls13 = self.version == Some(Version::Tls13);
        let ccs_seen = self.ccs_seen.get(d).copied().unwrap_or(false);
        // TLS 1.2 protects everything after ChangeCipherSpec; TLS 1.3 marks
        // protected records by their outer type (its CCS is a no-op).
        let protected12 = ccs_seen && !tls13;
        match content_type {
            APPLICATION_DATA => Class::Ordered { protected: true },
            HANDSHAKE | CHANGE_CIPHER_SPEC | ALERT if protected12 => {
                Class::Ordered { protected: true }
            }
            HANDSHAKE => Class::Hello,
            CHANGE_CIPHER_SPEC => {
                if let Some(seen) = self.ccs_seen.get_mut(d) {
                    *seen = true;
                }
                Class::Skip
            }
            ALERT => Class::Ordered { protected: false },
            _ => Class::Skip, // heartbeat
        }
    }

    fn on_record<T>(
        &mut self,
        d: usize,
        rec: &mut Record<'_>,
        slot: &TagSlot<T>,
        pending: &mut Pending<T>,
        tag_used: &mut bool,
        sink: &mut dyn FnMut(Plaintext<'_, T>),
    ) {
        match self.classify(d, rec.content_type()) {
            Class::Skip => {}
            Class::Hello => self.on_hello_record(d, rec),
            Class::Ordered { protected } => {
                if protected && self.client_random.is_none() && self.version.is_none() {
                    self.give_up(GiveUpReason::NoHandshake);
                    pending.clear();
                    return;
                }
                match slot {
                    TagSlot::Live(tag) => {
                        self.on_ordered(Direction::from_index(d), rec, protected, tag, sink)
                    }
                    TagSlot::Queued(id) => {
                        let item = Item {
                            dir: Direction::from_index(d),
                            header: rec.header,
                            start: 0,
                            known: rec.body.len(),
                            len: rec.len,
                            complete: rec.complete,
                            protected,
                            tag: *id,
                        };
                        if pending.push(item, rec.body, self.limits.max_pending_bytes) {
                            *tag_used = true;
                        } else {
                            self.give_up(GiveUpReason::BufferOverflow);
                            pending.clear();
                        }
                    }
                }
            }
        }
    }

    fn on_hello_record(&mut self, d: usize, rec: &Record<'_>) {
        let client = d == 0;
        let Some(reader) = self.hellos.get_mut(d) else {
            return;
        };
        if reader.done {
            return;
        }
        if !rec.complete {
            self.give_up(GiveUpReason::MalformedHandshake);
            return;
        }
        // At most a HelloRetryRequest and a ServerHello per record.
        let mut got: [Option<Hello>; 2] = [None, None];
        let mut n = 0;
        let res = reader.push(client, rec.body, &mut |h| {
            if let Some(slot) = got.get_mut(n) {
                *slot = Some(h);
            }
            n += 1;
        });
        for hello in got.into_iter().flatten() {
            self.on_hello(hello);
        }
        match res {
            Ok(()) => {}
            Err(HelloError::NotAHello) => self.give_up(GiveUpReason::NoHandshake),
            Err(HelloError::Malformed) => self.give_up(GiveUpReason::MalformedHandshake),
        }
    }

    fn on_hello(&mut self, hello: Hello) {
        match hello {
            Hello::Client { random } => {
                // A second ClientHello (after HelloRetryRequest) has the same random.
                self.client_random.get_or_insert(random);
            }
            Hello::Server(sh) => {
                let version = match sh.version {
                    0x0304 => Version::Tls13,
                    0x0303 if !sh.retry_request => Version::Tls12,
                    _ => return self.give_up(GiveUpReason::UnsupportedVersion),
                };
                self.version = Some(version);
                if sh.retry_request {
                    return;
                }
                let Some(neg) = lookup(version, sh.cipher_suite) else {
                    return self.give_up(GiveUpReason::UnsupportedCipherSuite);
                };
                self.server_random = Some(sh.random);
                self.negotiated = Some(neg);
                self.try_ready();
            }
        }
    }

    /// Derives the keys once the ServerHello and the secrets are both there.
    fn try_ready(&mut self) {
        if self.ready || self.gave_up.is_some() {
            return;
        }
        let Some(neg) = self.negotiated else {
            return;
        };
        // Taken: secrets are not kept once the keys are derived.
        let Some(secrets) = self.secrets.take() else {
            return;
        };
        let result = match neg.version {
            Version::Tls13 => self.keys_tls13(neg, &secrets),
            Version::Tls12 => {
                let Some(client_random) = self.client_random else {
                    // The ClientHello was not seen: no key block.
                    return self.give_up(GiveUpReason::NoHandshake);
                };
                self.keys_tls12(neg, &secrets, client_random)
            }
        };
        match result {
            Ok(()) => self.ready = true,
            Err(reason) => self.give_up(reason),
        }
    }

    fn keys_tls13(&mut self, neg: Negotiated, s: &Secrets) -> Result<(), GiveUpReason> {
        let hash_len = neg.hash.len();
        let [client, server] = &mut self.dirs;
        for (dir, secret) in [
            (client, &s.client_traffic_secret_0),
            (server, &s.server_traffic_secret_0),
        ] {
            let secret = secret.get(..hash_len).ok_or(GiveUpReason::MissingSecret)?;
            if secret.iter().all(|b| *b == 0) {
                return Err(GiveUpReason::MissingSecret);
            }
            dir.set_tls13_secret(neg, secret)
                .map_err(|_| GiveUpReason::MissingSecret)?;
        }
        Ok(())
    }

    fn keys_tls12(
        &mut self,
        neg: Negotiated,
        s: &Secrets,
        client_random: [u8; 32],
    ) -> Result<(), GiveUpReason> {
        if s.master_secret.iter().all(|b| *b == 0) {
            return Err(GiveUpReason::MissingSecret);
        }
        let server_random = self.server_random.ok_or(GiveUpReason::NoHandshake)?;
        // RFC 5246 6.3: client/server MAC keys (none for AEADs), client/server
        // write keys, client/server IVs.
        let (k, iv) = (neg.aead.key_len(), neg.aead.tls12_fixed_iv_len());
        let mut block = [0u8; 2 * 32 + 2 * 12];
        let block = block
            .get_mut(..2 * k + 2 * iv)
            .ok_or(GiveUpReason::MissingSecret)?;
        let mut seed = [0u8; 64];
        let (sr, cr) = seed.split_at_mut(32);
        sr.copy_from_slice(&server_random);
        cr.copy_from_slice(&client_random);
        tls12_prf(neg.hash, &s.master_secret, b"key expansion", &seed, block);
        let part =
            |from: usize, n: usize| block.get(from..from + n).ok_or(GiveUpReason::MissingSecret);
        let client = RecordKey::new(neg.aead, part(0, k)?, part(2 * k, iv)?);
        let server = RecordKey::new(neg.aead, part(k, k)?, part(2 * k + iv, iv)?);
        let (Ok(client), Ok(server)) = (client, server) else {
            return Err(GiveUpReason::MissingSecret);
        };
        let [c, s] = &mut self.dirs;
        c.set_tls12_key(client);
        s.set_tls12_key(server);
        Ok(())
    }

    /// A protected record (or plaintext alert), in event order, keys known.
    fn on_ordered<T>(
        &mut self,
        dir: Direction,
        rec: &mut Record<'_>,
        protected: bool,
        tag: &T,
        sink: &mut dyn FnMut(Plaintext<'_, T>),
    ) {
        let (Some(neg), None) = (self.negotiated, self.gave_up) else {
            return;
        };
        let Some(dc) = self.dirs.get_mut(dir.index()) else {
            return;
        };
        if dc.state != DirectionState::Active {
            return;
        }
        if !protected {
            self.stats.alerts += 1;
            if alert_ends_direction(rec.body, neg.version) {
                dc.state = DirectionState::Closed;
            }
            return;
        }
        let limits = OpenLimits {
            max_handshake_records: self.limits.max_handshake_records,
            max_auth_failures_in_row: self.limits.max_auth_failures_in_row,
        };
        let mut ctx = OpenCtx {
            stats: &mut self.stats,
            scratch: &mut self.scratch,
            limits,
        };
        let outcome = match neg.version {
            Version::Tls13 => dc.open_tls13(rec, &mut ctx),
            Version::Tls12 => dc.open_tls12(rec, &mut ctx),
        };
        match outcome {
            Outcome::Nothing => {}
            Outcome::GiveUp(reason) => self.give_up(reason),
            Outcome::KeyUpdate => self.key_update(dir, neg),
            Outcome::Content(opened) => self.on_content(dir, neg, rec.body, opened, tag, sink),
        }
    }

    fn key_update(&mut self, dir: Direction, neg: Negotiated) {
        let Some(dc) = self.dirs.get_mut(dir.index()) else {
            return;
        };
        match dc.key_update(neg) {
            Ok(()) => self.stats.key_updates += 1,
            Err(_) => dc.state = DirectionState::Failed,
        }
    }

    fn on_content<T>(
        &mut self,
        dir: Direction,
        neg: Negotiated,
        body: &[u8],
        opened: Opened,
        tag: &T,
        sink: &mut dyn FnMut(Plaintext<'_, T>),
    ) {
        let data = body
            .get(opened.start..opened.start.saturating_add(opened.known))
            .unwrap_or_default();
        let Some(dc) = self.dirs.get_mut(dir.index()) else {
            return;
        };
        match opened.content_type {
            APPLICATION_DATA => {
                self.stats.plaintext_bytes += data.len() as u64;
                sink(Plaintext {
                    dir,
                    data,
                    len: opened.len,
                    tag,
                    authenticated: opened.authenticated,
                });
            }
            // A KeyUpdate switches this direction's keys after its record.
            HANDSHAKE if neg.version == Version::Tls13 && dc.post_handshake(data) => {
                self.key_update(dir, neg)
            }
            // TLS 1.3 tickets; TLS 1.2 Finished or renegotiation messages
            // (its ChangeCipherSpec gives up).
            HANDSHAKE => {}
            ALERT => {
                self.stats.alerts += 1;
                if alert_ends_direction(data, neg.version) {
                    dc.state = DirectionState::Closed;
                }
            }
            CHANGE_CIPHER_SPEC if neg.version == Version::Tls12 => {
                self.give_up(GiveUpReason::Renegotiation)
            }
            _ => {}
        }
    }
}

/// close_notify and fatal alerts end a direction; TLS 1.2 warnings (e.g.
/// no_renegotiation) and TLS 1.3 user_canceled do not. An alert not fully
/// known ends it (the safe side: no garbage after it).
fn alert_ends_direction(body: &[u8], version: Version) -> bool {
    const FATAL: u8 = 2;
    const CLOSE_NOTIFY: u8 = 0;
    const USER_CANCELED: u8 = 90;
    let Some(&[level, description]) = body.first_chunk::<2>() else {
        return true;
    };
    match version {
        // RFC 8446 6: every alert but close_notify and user_canceled is fatal.
        Version::Tls13 => description != USER_CANCELED,
        Version::Tls12 => level == FATAL || description == CLOSE_NOTIFY,
    }
}

/// One record waiting for the secrets.
struct Item {
    dir: Direction,
    header: [u8; HEADER_LEN],
    start: usize,
    known: usize,
    len: usize,
    complete: bool,
    protected: bool,
    /// Id of its event's tag.
    tag: u64,
}

/// Records (and their events' tags) waiting for the secrets, in order.
struct Pending<T> {
    items: VecDeque<Item>,
    bytes: Vec<u8>,
    tags: VecDeque<T>,
    /// Id of `tags[0]`.
    first_tag: u64,
    used: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: Vec::new(),
            tags: VecDeque::new(),
            first_tag: 0,
            used: 0,
        }
    }
}

impl<T> Pending<T> {
    fn next_id(&self) -> u64 {
        self.first_tag + self.tags.len() as u64
    }

    fn push_tag(&mut self, tag: T) -> u64 {
        let id = self.next_id();
        self.tags.push_back(tag);
        self.used = self.used.saturating_add(ITEM_COST);
        id
    }

    /// Drops the current event's tag when no record of it was queued.
    fn pop_tag(&mut self, id: u64) {
        if !self.tags.is_empty() && self.next_id() == id + 1 {
            self.tags.pop_back();
            self.used = self.used.saturating_sub(ITEM_COST);
        }
    }

    /// Queues a record; false if over `max` bytes.
    fn push(&mut self, mut item: Item, body: &[u8], max: usize) -> bool {
        let used = self
            .used
            .saturating_add(body.len())
            .saturating_add(ITEM_COST);
        if used > max {
            return false;
        }
        self.used = used;
        item.start = self.bytes.len();
        self.bytes.extend_from_slice(body);
        self.items.push_back(item);
        true
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_alerts_end_a_direction() {
        // close_notify, a fatal alert, a TLS 1.2 warning, TLS 1.3 user_canceled.
        assert!(alert_ends_direction(&[1, 0], Version::Tls12));
        assert!(alert_ends_direction(&[2, 40], Version::Tls12));
        assert!(!alert_ends_direction(&[1, 100], Version::Tls12));
        assert!(alert_ends_direction(&[1, 0], Version::Tls13));
        assert!(!alert_ends_direction(&[1, 90], Version::Tls13));
        assert!(alert_ends_direction(&[2], Version::Tls13));
    }
}
