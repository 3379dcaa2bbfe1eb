//! Redis (RESP2 and RESP3): detection from either direction, and a parser
//! that pairs commands with replies in order.
//!
//! A client sends arrays of bulk strings (or inline lines); the server
//! answers each command with one reply, in order, except in pub/sub and
//! MONITOR modes and under `CLIENT REPLY OFF|SKIP`, where replies are
//! pushed (counted, never paired) or missing. Spans carry the command
//! name and the key; every other argument becomes `?`.
//!
//! Counted (`ratatosk_parser_errors_total{protocol="redis", reason}`):
//! `invalid_message` (bytes that are not RESP), `lost_sync` (a capture
//! gap outside a known length), `unpaired_response` (a reply to no seen
//! command), `pending_queue_full` (a command emitted without its reply),
//! `pipeline_folded` (a command counted in the previous one's batch),
//! `pubsub_push` and `monitor_push` (server pushes: not losses, counted
//! so that they show).

mod command;
mod conn;
mod resp;

pub use conn::RedisParser;

use crate::parse::Direction;
use crate::parser::{ConnParser, Detection, Limits, Protocol, Strength};

/// The Redis entry of the registry.
pub struct Redis;

pub static REDIS: Redis = Redis;

impl Protocol for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn ports(&self) -> &'static [u16] {
        &[6379]
    }

    fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
        detect(dir, first)
    }

    fn parser(&self, request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser> {
        Box::new(RedisParser::new(request_dir, limits))
    }
}

/// Bytes of a first line looked at before deciding.
const DETECT_LINE_MAX: usize = 512;

/// Words that start pushed pub/sub arrays: a server's bytes, not a
/// command, even though they look like one.
const PUSH_WORDS: [&[u8]; 9] = [
    b"message",
    b"pmessage",
    b"smessage",
    b"subscribe",
    b"psubscribe",
    b"ssubscribe",
    b"unsubscribe",
    b"punsubscribe",
    b"sunsubscribe",
];

/// Classifies the first bytes of one direction: a command array whose
/// first element is a Redis command is strong evidence of the request
/// direction; a reply line or an inline command is weak (many text
/// protocols start with `+OK` or a word).
pub fn detect(dir: Direction, first: &[u8]) -> Detection {
    let request = Detection::Match {
        request_dir: dir,
        strength: Strength::Strong,
    };
    let weak_request = Detection::Match {
        request_dir: dir,
        strength: Strength::Weak,
    };
    let reply = Detection::Match {
        request_dir: dir.opposite(),
        strength: Strength::Weak,
    };
    let Some(&b0) = first.first() else {
        return Detection::NeedMore;
    };
    if b0 == b'*' {
        return match command_array(first) {
            Shape::NeedMore => Detection::NeedMore,
            Shape::Known => request,
            Shape::Word => weak_request,
            Shape::Reply => reply,
            Shape::No => Detection::No,
        };
    }
    if b0.is_ascii_alphabetic() {
        let word = first.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        return match first.get(word) {
            None if word < command::NAME_MAX => Detection::NeedMore,
            Some(b' ' | b'\r' | b'\n')
                if command::is_known(first.get(..word).unwrap_or_default()) =>
            {
                weak_request
            }
            _ => Detection::No,
        };
    }
    match detect_reply(first) {
        None => Detection::NeedMore,
        Some(true) => reply,
        Some(false) => Detection::No,
    }
}

enum Shape {
    NeedMore,
    /// `*N\r\n$M\r\n<known command>\r\n`.
    Known,
    /// The same with a word that is not a known command.
    Word,
    /// An array that is not a command (a reply).
    Reply,
    No,
}

/// Looks at `*N\r\n$M\r\nNAME\r\n`.
fn command_array(b: &[u8]) -> Shape {
    let Some(rest) = b.get(1..) else {
        return Shape::NeedMore;
    };
    let (n, rest) = match header(rest) {
        Header::NeedMore => return Shape::NeedMore,
        Header::Bad => return Shape::No,
        Header::Int(n, rest) => (n, rest),
    };
    if n < 1 {
        return if n >= -1 { Shape::Reply } else { Shape::No };
    }
    match rest.first() {
        None => return Shape::NeedMore,
        Some(b'$') => {}
        Some(_) => {
            return match detect_reply(rest) {
                None => Shape::NeedMore,
                Some(true) => Shape::Reply,
                Some(false) => Shape::No,
            };
        }
    }
    let (m, rest) = match header(rest.get(1..).unwrap_or_default()) {
        Header::NeedMore => return Shape::NeedMore,
        Header::Bad => return Shape::No,
        Header::Int(m, rest) => (m, rest),
    };
    let Ok(m) = usize::try_from(m) else {
        // `$-1`: a null in an array: a reply.
        return if m == -1 { Shape::Reply } else { Shape::No };
    };
    if m == 0 || m > command::NAME_MAX {
        return Shape::Reply;
    }
    let Some(name) = rest.get(..m) else {
        let have = rest;
        return if have.iter().all(|c| is_name_byte(*c)) {
            Shape::NeedMore
        } else {
            Shape::Reply
        };
    };
    if !name.iter().all(|c| is_name_byte(*c)) {
        return Shape::Reply;
    }
    match rest.get(m..m + 2) {
        None if rest.len() < m + 2 && rest.get(m).is_none_or(|c| *c == b'\r') => {
            return Shape::NeedMore;
        }
        Some(b"\r\n") => {}
        _ => return Shape::No,
    }
    if PUSH_WORDS.iter().any(|w| name.eq_ignore_ascii_case(w)) {
        Shape::Reply
    } else if command::is_known(name) {
        Shape::Known
    } else {
        Shape::Word
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'|')
}

enum Header<'a> {
    NeedMore,
    Bad,
    Int(i64, &'a [u8]),
}

/// An integer line (`-1`, `42`) ended by CRLF, and what follows it.
fn header(b: &[u8]) -> Header<'_> {
    let len = b
        .iter()
        .take(21)
        .take_while(|c| c.is_ascii_digit() || **c == b'-')
        .count();
    match (b.get(len), b.get(len + 1)) {
        (None, _) if len < 21 => Header::NeedMore,
        (Some(b'\r'), None) => Header::NeedMore,
        (Some(b'\r'), Some(b'\n')) => match resp::parse_int(b.get(..len).unwrap_or_default()) {
            Some(v) => Header::Int(v, b.get(len + 2..).unwrap_or_default()),
            None => Header::Bad,
        },
        _ => Header::Bad,
    }
}

/// Whether `b` starts with a plausible reply line (`None`: not enough
/// bytes to tell).
pub(crate) fn detect_reply(b: &[u8]) -> Option<bool> {
    let (&ty, rest) = b.split_first()?;
    let line_end = memchr::memmem::find(
        rest.get(..rest.len().min(DETECT_LINE_MAX)).unwrap_or(rest),
        b"\r\n",
    );
    let Some(end) = line_end else {
        if rest.len() >= DETECT_LINE_MAX {
            // A long simple string or error: its first bytes decide.
            return Some(matches!(ty, b'+' | b'-') && rest.iter().all(|&c| printable(c)));
        }
        // No line end yet: wait while what is there can still be one.
        let body = rest.strip_suffix(b"\r").unwrap_or(rest);
        let fits = match ty {
            b'+' | b'-' => body.iter().all(|&c| printable(c)),
            b':' | b'$' | b'*' | b'!' | b'=' | b'%' | b'~' | b'>' | b'|' => {
                body.len() < 21 && body.iter().all(|&c| c.is_ascii_digit() || c == b'-')
            }
            b'(' => body.iter().all(|&c| c.is_ascii_digit() || c == b'-'),
            b',' => body.len() < 64,
            b'#' => body.len() <= 1 && body.iter().all(|&c| c == b't' || c == b'f'),
            b'_' => body.is_empty(),
            _ => false,
        };
        return if fits { None } else { Some(false) };
    };
    let line = rest.get(..end).unwrap_or_default();
    let int = || resp::parse_int(line);
    Some(match ty {
        b'+' => line.iter().all(|&c| printable(c)),
        b'-' => {
            line.first().is_some_and(u8::is_ascii_uppercase) && line.iter().all(|&c| printable(c))
        }
        b':' => int().is_some(),
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        }
        b'$' | b'*' => int().is_some_and(|n| n >= -1),
        b'!' | b'=' | b'%' | b'~' | b'>' | b'|' => int().is_some_and(|n| n >= 0),
        b',' => {
            !line.is_empty()
                && line
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'))
        }
        b'#' => line == b"t" || line == b"f",
        b'_' => line.is_empty(),
        _ => false,
    })
}

fn printable(c: u8) -> bool {
    c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80
}
