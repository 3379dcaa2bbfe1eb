//! HTTP/2 (h2c with prior knowledge, after `Upgrade: h2c`, and inside TLS)
//! and gRPC over it: one operation per stream.
//!
//! Each direction is framed on its own (9-byte frame headers, payloads
//! skipped or kept by type) and decodes its header blocks with its own
//! HPACK context ([`hpack`], written here: it must go on with unknown
//! dynamic entries instead of failing). Streams are paired by id and end
//! with the response's END_STREAM, a RST_STREAM, a GOAWAY that excludes
//! them or the connection's close, never leaked.
//!
//! Capture gaps: a gap inside a DATA payload is expected (the kernel side
//! skips them) and costs nothing. A gap over header-block bytes loses that
//! block and that direction's HPACK context (later references to entries
//! we did not see give unknown fields, never guessed ones; operations say
//! `partial`). A gap over a frame header loses the framing: open streams
//! end partial and the connection is no longer parsed.
//!
//! `abort` values: the RST_STREAM or GOAWAY error code name
//! (`CANCEL`, `REFUSED_STREAM`…, `UNKNOWN_ERROR` for codes outside RFC
//! 9113), `GOAWAY` for streams above the last stream id of a graceful
//! (NO_ERROR) GOAWAY, and `CONNECTION_CLOSED` for streams open when the
//! connection closed. Streams ended by a capture loss (framing lost, the
//! stream table full) have no `abort`: they are `partial`.
//!
//! Counted (`ratatosk_parser_errors_total{protocol="http2", reason}`):
//! `lost_sync` (a gap over a frame header), `header_block_lost` (a gap
//! inside a header block), `header_block_too_large`, `hpack_error`,
//! `frame_lost` (a control frame cut by a gap), `invalid_frame`,
//! `unpaired_response` (a response to a request not seen),
//! `stream_table_full` (an open stream emitted early to make room).

mod conn;
pub mod hpack;
mod huffman;

pub use conn::{CONNECTION_CLOSED, GOAWAY_REFUSED, Http2Parser};

use crate::parse::Direction;
use crate::parser::{ConnParser, Detection, Limits, Protocol, Strength};

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP/2 entry of the registry.
pub struct Http2;

pub static HTTP2: Http2 = Http2;

impl Protocol for Http2 {
    fn name(&self) -> &'static str {
        "http2"
    }

    fn ports(&self) -> &'static [u16] {
        // gRPC's customary port; h2c has none of its own.
        &[50051]
    }

    fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
        detect(dir, first)
    }

    fn parser(&self, request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser> {
        Box::new(Http2Parser::new(request_dir, limits))
    }
}

/// The client preface is strong evidence (requests travel the way it
/// went); a server's first SETTINGS frame alone is weak (nine bytes many
/// binary protocols could start with).
pub fn detect(dir: Direction, first: &[u8]) -> Detection {
    if first.is_empty() {
        return Detection::NeedMore;
    }
    let n = first.len().min(PREFACE.len());
    if first.get(..n) == PREFACE.get(..n) {
        return if n == PREFACE.len() {
            Detection::Match {
                request_dir: dir,
                strength: Strength::Strong,
            }
        } else {
            Detection::NeedMore
        };
    }
    // SETTINGS (type 4), no flags, stream 0, a length of whole settings
    // of a plausible size.
    let shape = |i: usize, b: u8| match i {
        0 => b == 0,
        3 => b == 4,
        4..=8 => b == 0,
        _ => true,
    };
    if !first.iter().take(9).enumerate().all(|(i, &b)| shape(i, b)) {
        return mid_connection(dir, first);
    }
    match first.get(..3) {
        Some(&[_, a, b]) if first.len() >= 9 => {
            let len = u16::from_be_bytes([a, b]);
            if len % 6 == 0 && len <= 60 {
                Detection::Match {
                    request_dir: dir.opposite(),
                    strength: Strength::Weak,
                }
            } else {
                Detection::No
            }
        }
        _ => Detection::NeedMore,
    }
}

/// Frames seen mid-connection (capture began after the preface): weak,
/// and only when every byte held parses as a chain of plausible frames
/// (known type, flags and stream id that fit it, default-bounded length)
/// with a header block whose first static-table field says which way it
/// went: `:authority`, `:method`, `:path` or `:scheme` (indexes 1..=7,
/// whole or as a literal's name) a request, `:status` (8..=14) a
/// response. Anything else is left undetected.
fn mid_connection(dir: Direction, first: &[u8]) -> Detection {
    let mut at = 0usize;
    let mut frames = 0;
    let mut hint: Option<bool> = None;
    while let Some(h) = first.get(at..at + 9) {
        let &[l0, l1, l2, ty, flags, s0, s1, s2, s3] = h else {
            return Detection::No;
        };
        let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
        let fits = match ty {
            0 => stream != 0 && flags & !0x09 == 0,
            1 => stream != 0 && flags & !0x2d == 0,
            2 => stream != 0 && flags == 0 && len == 5,
            3 => stream != 0 && flags == 0 && len == 4,
            4 => stream == 0 && flags & !0x01 == 0 && len % 6 == 0,
            6 => stream == 0 && flags & !0x01 == 0 && len == 8,
            7 => stream == 0 && flags == 0 && len >= 8,
            8 => flags == 0 && len == 4,
            9 => stream != 0 && flags & !0x04 == 0,
            _ => false,
        };
        if !fits || s0 & 0x80 != 0 || len > 16384 {
            return Detection::No;
        }
        if ty == 1 && hint.is_none() {
            // Leading one-byte fields of the block, past padding and
            // priority: indexed ones and table size updates.
            let skip = usize::from(flags & 0x08 != 0) + if flags & 0x20 != 0 { 5 } else { 0 };
            let block = first.get(at + 9 + skip..(at + 9 + len).min(first.len()));
            for &b in block.unwrap_or_default() {
                // Pseudo-header fields come first: the first static one,
                // indexed or naming a literal, tells the side.
                let idx = match b {
                    0x80..=0xfe => b & 0x7f,
                    0x20..=0x3e => continue,
                    0x40..=0x7e => b & 0x3f,
                    0x00..=0x0e | 0x10..=0x1e => b & 0x0f,
                    _ => 0,
                };
                match idx {
                    1..=7 => hint = Some(true),
                    8..=14 => hint = Some(false),
                    // A dynamic reference we cannot read: look further.
                    62.. if b & 0x80 != 0 => continue,
                    _ => {}
                }
                break;
            }
        }
        frames += 1;
        at += 9 + len;
    }
    match hint {
        // Fewer than 9 bytes: a frame header's prefix (lengths within the
        // default 16 KiB start with 0) or nothing.
        _ if frames == 0 => match first {
            [0] | [0, _] | [0, _, _] => Detection::NeedMore,
            [0, _, _, ty, ..] if *ty <= 9 => Detection::NeedMore,
            _ => Detection::No,
        },
        Some(request) => Detection::Match {
            request_dir: if request { dir } else { dir.opposite() },
            strength: Strength::Weak,
        },
        // Plausible frames but nothing yet says which way: wait for more
        // only while few bytes are held.
        None if first.len() < 1024 => Detection::NeedMore,
        None => Detection::No,
    }
}

/// RFC 9113 error code names (`abort` of an operation).
pub fn error_name(code: u32) -> &'static str {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .copied()
        .unwrap_or("UNKNOWN_ERROR")
}
