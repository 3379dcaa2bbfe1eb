//! PostgreSQL (frontend/backend protocol 3.0): detection from the
//! client's startup-family messages (strong) or from messages seen
//! mid-stream (weak), and the connection parser.
//!
//! Layout: [`framer`] turns each direction's segments into messages
//! (skipping gaps by message lengths), [`conn`] pairs them into
//! operations.
//!
//! Losses counted (`ratatosk_parser_errors_total{protocol="postgresql"}`):
//! `lost_sync` (a capture gap past a message's end), `invalid_message`
//! (bytes that are no message), `unpaired_response` (an answer to a
//! request never seen), `pending_queue_full`, `statement_table_full`,
//! `portal_table_full`, `statement_unknown` (an execution of a statement
//! prepared before capture began or forgotten: no text),
//! `too_many_statements` (a Query of more statements than
//! `max_pending_requests`), `statement_split_mismatch` (the server ran
//! fewer statements than the text showed), `copy_data` (once per COPY:
//! its data is skipped, not parsed).

pub mod conn;
pub mod framer;

pub use conn::PgConn;

use framer::{Side, chain_ok};

use crate::parse::Direction;
use crate::parser::{ConnParser, Detection, Limits, Protocol, Strength};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 196_608;

/// The PostgreSQL entry of the registry.
pub struct Postgres;

pub static POSTGRES: Postgres = Postgres;

impl Protocol for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn ports(&self) -> &'static [u16] {
        &[5432]
    }

    fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
        detect(dir, first)
    }

    fn parser(&self, request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser> {
        Box::new(PgConn::new(request_dir, limits))
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Classifies the first bytes of one direction.
pub fn detect(dir: Direction, first: &[u8]) -> Detection {
    let strong = Detection::Match {
        request_dir: dir,
        strength: Strength::Strong,
    };
    if first.first() == Some(&0) {
        // A startup-family message: length (< 16 MiB, so a 0 first
        // byte) then a code.
        let (Some(len), Some(code)) = (be32(first, 0), be32(first, 4)) else {
            return Detection::NeedMore;
        };
        return match code {
            SSL_REQUEST | GSSENC_REQUEST if len == 8 => strong,
            CANCEL_REQUEST if len == 16 => strong,
            PROTOCOL_3 if (9..=10_000).contains(&len) => {
                if startup_params_ok(
                    first
                        .get(8..len as usize)
                        .unwrap_or(first.get(8..).unwrap_or_default()),
                ) {
                    strong
                } else {
                    Detection::No
                }
            }
            _ => Detection::No,
        };
    }
    if first.len() < 5 {
        return Detection::No;
    }
    match first.first() {
        Some(b'Q' | b'P') if frontend_text_ok(first) && chain_ok(Side::Front, first) => {
            Detection::Match {
                request_dir: dir,
                strength: Strength::Weak,
            }
        }
        Some(b'R' | b'Z' | b'T' | b'D' | b'C') if chain_ok(Side::Back, first) => Detection::Match {
            request_dir: dir.opposite(),
            strength: Strength::Weak,
        },
        _ => Detection::No,
    }
}

/// StartupMessage parameters as far as captured: NUL-separated printable
/// names and values, the first name a known one.
fn startup_params_ok(params: &[u8]) -> bool {
    let printable = params.iter().all(|&c| c == 0 || c >= 0x20 && c != 0x7f);
    let first_key = params.split(|&c| c == 0).next().unwrap_or_default();
    printable && !first_key.is_empty() && first_key.iter().all(|c| c.is_ascii_graphic())
}

/// The text a Query or Parse starts with looks like SQL.
fn frontend_text_ok(first: &[u8]) -> bool {
    let body = first.get(5..).unwrap_or_default();
    let text = match first.first() {
        // Parse: statement name, then the text.
        Some(b'P') => match memchr::memchr(0, body) {
            Some(n) => body.get(n + 1..).unwrap_or_default(),
            None => body,
        },
        _ => body,
    };
    let text = memchr::memchr(0, text).map_or(text, |n| text.get(..n).unwrap_or_default());
    !text.is_empty()
        && text
            .iter()
            .take(64)
            .all(|&c| c >= 0x20 && c != 0x7f || c == b'\n' || c == b'\r' || c == b'\t')
        && text.iter().take(64).any(u8::is_ascii_alphabetic)
}
