//! The interface every protocol implements: how it is recognised from the
//! first bytes of a connection ([`Protocol::detect`]) and the per-connection
//! parser that turns both directions' bytes into [`Operation`]s
//! ([`ConnParser`]).
//!
//! The agent knows protocols only through this interface and the
//! [`registry`](crate::registry): adding one is a parser module, a line in
//! the registry and, for a new semantic-convention family, its mapping.

use crate::op::Operation;
use crate::parse::{Direction, Segment};

/// Bounds on per-connection parser state, shared by every protocol (each
/// uses the ones that concern it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest message head (HTTP start line + fields; a database message
    /// header and the statement prefix kept) buffered.
    pub max_head_bytes: usize,
    /// Requests awaiting a response; the oldest is dropped on overflow.
    pub max_pending_requests: usize,
    /// Request-target bytes kept (longer targets are cut, not rejected).
    pub max_target_len: usize,
    /// Statement or command text kept before sanitizing (longer ones are
    /// cut and marked truncated).
    pub max_query_len: usize,
    /// Prepared statements remembered per connection (name or id → text).
    pub max_statements: usize,
    /// SQL text as sent, literals included, instead of sanitized (the
    /// user's opt-in). Statements that set a password stay sanitized,
    /// and Redis commands always are (their values are never held).
    pub raw_sql: bool,
    /// HTTP/2 streams open at once per connection; beyond, the oldest is
    /// emitted unfinished (counted as `stream_table_full`).
    pub max_streams: usize,
    /// Largest HPACK dynamic table kept per direction, whatever the peer
    /// advertised (`SETTINGS_HEADER_TABLE_SIZE`).
    pub max_header_table_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_pending_requests: 64,
            max_target_len: 2048,
            max_query_len: 4096,
            max_statements: 256,
            raw_sql: false,
            max_streams: 128,
            max_header_table_size: 64 * 1024,
        }
    }
}

/// What a parser hands back after each call.
#[derive(Debug, Default)]
pub struct Output {
    /// Finished operations, in the order they ended.
    pub ops: Vec<Operation>,
    /// Losses since the last drain: (reason, count). Reasons are short
    /// snake_case labels (`invalid_message`, `resync`, `pending_queue_full`,
    /// …) reported with the protocol's name.
    pub losses: Vec<(&'static str, u64)>,
}

impl Output {
    /// Counts `n` losses of `reason` (nothing when `n` is 0).
    pub fn lose(&mut self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.losses.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.losses.push((reason, n)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.losses.is_empty()
    }
}

/// Whether a parser still understands its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Parsing.
    Active,
    /// The connection switched to something this parser does not speak
    /// (an HTTP upgrade, a tunnel, TLS started in band, a compressed
    /// MySQL session): later bytes are counted as unparsed with this
    /// reason.
    Done(&'static str),
}

/// The parser of one connection. Both directions go through it; it was
/// created knowing which direction carries requests (see [`Detection`]).
pub trait ConnParser: Send + std::fmt::Debug {
    /// One captured read or write of `dir` (a prefix of `seg.len` bytes:
    /// the rest is a gap of known length).
    fn on_data(&mut self, dir: Direction, seg: Segment<'_>, out: &mut Output);

    /// The connection closed: operations still open are emitted (without
    /// a response, or truncated). Later input is ignored.
    fn on_close(&mut self, ts_ns: u64, out: &mut Output);

    fn state(&self) -> State {
        State::Active
    }

    /// The connection was observed from its opening (its connect or
    /// accept was seen before any data), so the state every new
    /// connection starts in may be assumed (Redis: database 0). Called
    /// at most once, before any data.
    fn start_seen(&mut self) {}

    /// Approximate bytes of state held (the parser itself, its buffers and
    /// tables), for the agent's memory budget. The default counts the
    /// parser's own size; parsers that buffer or remember more add it.
    fn state_bytes(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// How sure a detector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Plausible but could be something else (a message seen mid-stream
    /// whose framing many binary protocols share): the registry takes it
    /// only when no strong match exists, and breaks ties by port.
    Weak,
    /// The protocol's own opening (a greeting, a startup message, a start
    /// line): taken whatever the ports.
    Strong,
}

/// A detector's verdict on the first bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// These bytes are this protocol; requests travel in `request_dir`.
    Match {
        request_dir: Direction,
        strength: Strength,
    },
    /// A proper prefix of something this protocol would recognise.
    NeedMore,
    /// Not this protocol (from this direction's bytes).
    No,
}

/// A protocol the agent can parse: its name, how to recognise it and how
/// to parse a connection of it.
pub trait Protocol: Sync {
    /// Label value of the self-metrics (`protocol="postgresql"`).
    fn name(&self) -> &'static str;

    /// Well-known server ports: used only to break ties between weak
    /// matches, never to decide alone.
    fn ports(&self) -> &'static [u16];

    /// Classifies the first bytes `dir` carried on a connection (the
    /// bytes held so far: a prefix of the direction's stream, or what
    /// followed a gap when capture began mid-connection).
    fn detect(&self, dir: Direction, first: &[u8]) -> Detection;

    /// A parser for a connection whose requests travel in `request_dir`.
    fn parser(&self, request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser>;
}
