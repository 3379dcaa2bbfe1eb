//! Body framing: tracks where a message body ends without copying it, over
//! captured bytes and over gaps (bytes moved but not captured).

use super::error::ParseError;

/// Longest chunk-extension accepted on one chunk-size line.
const MAX_CHUNK_EXT_LEN: usize = 4096;
/// Longest trailer section accepted after the last chunk.
const MAX_TRAILER_LEN: usize = 8192;

/// How a message body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Where the decoder is within a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// The body is complete (or there was none).
    None,
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
    /// Framing was lost; nothing more is consumed.
    Lost,
}

/// Position inside chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Reading the hex chunk size; `digits` seen so far.
    Size { value: u64, digits: u32 },
    /// Whitespace after the size, before an extension or the line end.
    SizeSpace { value: u64 },
    /// Inside `;name=value` extensions; `len` bytes so far.
    Extension { value: u64, len: usize },
    /// Saw CR ending the size line.
    SizeLf { value: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart { total: usize },
    /// Inside a trailer field line.
    TrailerLine { total: usize },
    /// Saw the CR of the final empty line.
    FinalLf,
}

/// Framing was lost after `consumed` bytes of the input were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} after {consumed} bytes")]
pub struct BodyError {
    /// Input bytes taken before (and including) the offending one.
    pub consumed: u64,
    pub kind: ParseError,
}

/// Incremental body framing over known bytes and gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    state: BodyState,
    size: u64,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::None | Framing::Length(0) => BodyState::None,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkState::Size {
                value: 0,
                digits: 0,
            }),
            Framing::UntilClose => BodyState::UntilClose,
        };
        BodyDecoder { state, size: 0 }
    }

    pub fn state(&self) -> BodyState {
        self.state
    }

    /// The body has ended; further input belongs to the next message.
    pub fn is_complete(&self) -> bool {
        self.state == BodyState::None
    }

    /// Body bytes so far: payload only, i.e. the sum of chunk sizes for
    /// chunked bodies, including payload that fell into gaps.
    pub fn body_size(&self) -> u64 {
        self.size
    }

    /// Consumes body bytes from the start of `data`; returns how many were
    /// body (fewer than `data.len()` only when the body ended).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, BodyError> {
        let mut pos = 0usize;
        while let Some(rest) = data.get(pos..) {
            if rest.is_empty() {
                break;
            }
            let avail = rest.len() as u64;
            match self.state {
                BodyState::None | BodyState::Lost => break,
                BodyState::UntilClose => {
                    self.size += avail;
                    pos = data.len();
                }
                BodyState::Length(remaining) => {
                    let n = remaining.min(avail);
                    self.take_payload(n, remaining, BodyState::None, BodyState::Length);
                    pos += n as usize;
                }
                BodyState::Chunked(ChunkState::Data { remaining }) => {
                    let n = remaining.min(avail);
                    self.take_payload(n, remaining, BodyState::Chunked(ChunkState::DataCr), |r| {
                        BodyState::Chunked(ChunkState::Data { remaining: r })
                    });
                    pos += n as usize;
                }
                BodyState::Chunked(cs) => {
                    // Framing bytes are few; walk them one at a time.
                    let b = rest.first().copied().unwrap_or_default();
                    pos += 1;
                    match chunk_step(cs, b) {
                        Ok(next) => self.state = next,
                        Err(kind) => {
                            self.state = BodyState::Lost;
                            return Err(BodyError {
                                consumed: pos as u64,
                                kind,
                            });
                        }
                    }
                }
            }
        }
        Ok(pos)
    }

    /// Consumes up to `n` uncaptured bytes; returns how many belonged to the
    /// body. A gap is harmless inside payload but loses framing bytes.
    pub fn feed_gap(&mut self, n: u64) -> Result<u64, BodyError> {
        match self.state {
            BodyState::None | BodyState::Lost => Ok(0),
            BodyState::UntilClose => {
                self.size += n;
                Ok(n)
            }
            BodyState::Length(remaining) => {
                let k = remaining.min(n);
                self.take_payload(k, remaining, BodyState::None, BodyState::Length);
                Ok(k)
            }
            BodyState::Chunked(ChunkState::Data { remaining }) => {
                let k = remaining.min(n);
                self.take_payload(k, remaining, BodyState::Chunked(ChunkState::DataCr), |r| {
                    BodyState::Chunked(ChunkState::Data { remaining: r })
                });
                if k < n {
                    self.state = BodyState::Lost;
                    return Err(BodyError {
                        consumed: k,
                        kind: ParseError::GapInChunkFraming,
                    });
                }
                Ok(k)
            }
            BodyState::Chunked(_) if n == 0 => Ok(0),
            BodyState::Chunked(_) => {
                self.state = BodyState::Lost;
                Err(BodyError {
                    consumed: 0,
                    kind: ParseError::GapInChunkFraming,
                })
            }
        }
    }

    fn take_payload(
        &mut self,
        n: u64,
        remaining: u64,
        done: BodyState,
        more: impl Fn(u64) -> BodyState,
    ) {
        self.size += n;
        self.state = if n == remaining {
            done
        } else {
            more(remaining - n)
        };
    }
}

fn chunk_step(cs: ChunkState, b: u8) -> Result<BodyState, ParseError> {
    use ChunkState as C;
    let next = match cs {
        C::Size { value, digits } => match hex_value(b) {
            Some(d) => {
                let value = value
                    .checked_mul(16)
                    .and_then(|v| v.checked_add(d))
                    .ok_or(ParseError::ChunkSizeOverflow)?;
                C::Size {
                    value,
                    digits: digits.saturating_add(1),
                }
            }
            None if digits == 0 => return Err(ParseError::InvalidChunkSize),
            None => return after_size_digits(value, b),
        },
        C::SizeSpace { value } => return after_size_digits(value, b),
        C::Extension { value, len } => match b {
            b'\r' => C::SizeLf { value },
            b'\n' => return Ok(size_line_done(value)),
            _ if len >= MAX_CHUNK_EXT_LEN => return Err(ParseError::ChunkExtensionTooLong),
            _ => C::Extension {
                value,
                len: len + 1,
            },
        },
        C::SizeLf { value } => match b {
            b'\n' => return Ok(size_line_done(value)),
            _ => return Err(ParseError::InvalidChunkSize),
        },
        // Data is consumed in bulk by the caller; a zero-length remainder
        // cannot occur, but treat it as the end of data to stay total.
        C::Data { .. } | C::DataCr => match b {
            b'\r' => C::DataLf,
            // Bare LF line ends are tolerated as many servers do.
            b'\n' => C::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(ParseError::MissingChunkCrlf),
        },
        C::DataLf => match b {
            b'\n' => C::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(ParseError::MissingChunkCrlf),
        },
        C::TrailerStart { total } => match b {
            b'\r' => C::FinalLf,
            b'\n' => return Ok(BodyState::None),
            _ => trailer_byte(total)?,
        },
        C::TrailerLine { total } => match b {
            b'\n' => C::TrailerStart { total: total + 1 },
            _ => trailer_byte(total)?,
        },
        C::FinalLf => match b {
            b'\n' => return Ok(BodyState::None),
            _ => return Err(ParseError::InvalidTrailers),
        },
    };
    Ok(BodyState::Chunked(next))
}

fn after_size_digits(value: u64, b: u8) -> Result<BodyState, ParseError> {
    let next = match b {
        // RFC 9112 allows BWS before the ';' of an extension.
        b' ' | b'\t' => ChunkState::SizeSpace { value },
        b';' => ChunkState::Extension { value, len: 0 },
        b'\r' => ChunkState::SizeLf { value },
        b'\n' => return Ok(size_line_done(value)),
        _ => return Err(ParseError::InvalidChunkSize),
    };
    Ok(BodyState::Chunked(next))
}

fn size_line_done(value: u64) -> BodyState {
    BodyState::Chunked(if value == 0 {
        ChunkState::TrailerStart { total: 0 }
    } else {
        ChunkState::Data { remaining: value }
    })
}

fn trailer_byte(total: usize) -> Result<ChunkState, ParseError> {
    if total >= MAX_TRAILER_LEN {
        Err(ParseError::InvalidTrailers)
    } else {
        Ok(ChunkState::TrailerLine { total: total + 1 })
    }
}

fn hex_value(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}
