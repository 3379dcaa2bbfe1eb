//! Types shared by every protocol parser.

/// Which way bytes moved, relative to the observed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes the process read.
    Ingress,
    /// Bytes the process wrote.
    Egress,
}

impl Direction {
    /// The other direction of the same connection.
    pub fn opposite(self) -> Self {
        match self {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        }
    }
}

/// The observed process's part in one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The process read the request (it serves).
    Server,
    /// The process wrote the request (it calls).
    Client,
}

impl Role {
    /// Role implied by the direction in which a request travelled.
    pub fn from_request_direction(dir: Direction) -> Self {
        match dir {
            Direction::Ingress => Role::Server,
            Direction::Egress => Role::Client,
        }
    }
}

/// One captured read()/write() on a socket.
///
/// `data` is a prefix of the `len` bytes the syscall moved; the remaining
/// `len - data.len()` bytes are a gap of known size but unknown content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Monotonic time at syscall exit, in nanoseconds.
    pub ts_ns: u64,
    /// Captured prefix of the bytes moved.
    pub data: &'a [u8],
    /// Total bytes moved by the syscall (`>= data.len()`).
    pub len: u64,
}

impl<'a> Segment<'a> {
    /// A fully captured segment.
    pub fn new(ts_ns: u64, data: &'a [u8]) -> Self {
        Segment {
            ts_ns,
            data,
            len: data.len() as u64,
        }
    }

    /// A segment whose capture stopped after `data`; `len` bytes were moved.
    pub fn truncated(ts_ns: u64, data: &'a [u8], len: u64) -> Self {
        Segment { ts_ns, data, len }
    }

    /// Bytes moved but not captured. A `len` smaller than the data (a broken
    /// producer) counts as no gap rather than an error.
    pub fn gap(&self) -> u64 {
        self.len.saturating_sub(self.data.len() as u64)
    }
}

/// Result of trying to parse one frame at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A frame was parsed from the first `consumed` bytes.
    Complete { frame: T, consumed: usize },
    /// The bytes so far are a valid beginning; more are needed.
    NeedMore,
    /// The buffer does not start with a frame of this kind at all (for
    /// example the other message type, or binary data); nothing consumed.
    Ignored,
}
