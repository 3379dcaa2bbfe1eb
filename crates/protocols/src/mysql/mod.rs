//! MySQL and MariaDB client/server protocol.
//!
//! The server speaks first: its greeting (protocol 10) alone identifies
//! the protocol, the server (`db.system.name` `mariadb` when its version
//! string says MariaDB, else `mysql`) and the direction of requests. The
//! client answers with its capabilities, user, authentication data
//! (never kept) and database (`db.namespace`); after the authentication
//! exchange every command starts a new packet sequence (id 0) and is
//! answered in order.
//!
//! Operations (one span each): `COM_QUERY` (a multi-statement query is one
//! operation, its result sets summed in `returned_rows`),
//! `COM_STMT_EXECUTE` and MariaDB's `COM_STMT_BULK_EXECUTE` (with the text
//! of the prepared statement; parameters are never read). Housekeeping
//! commands (`COM_STMT_PREPARE`, `COM_INIT_DB`, `COM_PING`,
//! `COM_STMT_RESET`, `COM_SET_OPTION`, …) give a span only when the server
//! answers with an error, the application's call having then failed; a
//! failed prepare is named after its statement. `COM_INIT_DB`, `USE db`
//! and session-tracked schema changes update `db.namespace`.
//! `COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA` and `COM_QUIT` have no
//! response.
//!
//! TLS: after an SSL request the cleartext parser is done
//! ([`State::Done`]`("tls")`); the agent's TLS capture restarts detection
//! on the decrypted stream, which begins with the client's handshake
//! response (sequence 2): a strong match that starts the session there
//! (namespace and capabilities from it; `db.system.name` is `mysql`, the
//! greeting that told MariaDB having gone in clear). The same holds when
//! capture begins right after the greeting. Capture begun later: a
//! `COM_QUERY`/`COM_STMT_PREPARE`, a result set or an error answer are
//! weak matches; nothing is assumed (no namespace, `mysql`, deprecated
//! EOF learnt from the first result set).
//!
//! Not parsed: compressed sessions (`"compressed"`, counted), replication
//! streams (`"replication"`).
//!
//! [`State::Done`]: crate::parser::State::Done

mod conn;
mod framer;
mod wire;

pub use conn::MysqlParser;

use crate::parse::Direction;
use crate::parser::{ConnParser, Detection, Limits, Protocol, Strength};

/// The MySQL/MariaDB entry of the registry.
pub struct Mysql;

pub static MYSQL: Mysql = Mysql;

/// Command bytes (first payload byte of a request).
pub(crate) mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;

    /// A byte that starts some command.
    pub fn known(c: u8) -> bool {
        (0x01..=0x1f).contains(&c) || c == STMT_BULK_EXECUTE
    }
}

impl Protocol for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn ports(&self) -> &'static [u16] {
        &[3306]
    }

    fn detect(&self, dir: Direction, first: &[u8]) -> Detection {
        detect(dir, first)
    }

    fn parser(&self, request_dir: Direction, limits: &Limits) -> Box<dyn ConnParser> {
        Box::new(MysqlParser::new(request_dir, limits))
    }
}

/// Strong on a server greeting (requests go the other way); weak on a
/// `COM_QUERY`/`COM_STMT_PREPARE` with SQL-looking text or on the start
/// of a result set or an error answer, as seen when capture begins on a
/// connection already open.
pub fn detect(dir: Direction, first: &[u8]) -> Detection {
    let Some(hdr) = first.first_chunk::<4>() else {
        // Too short to say: a packet header is 4 bytes.
        return Detection::NeedMore;
    };
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
    let seq = hdr[3];
    let payload = first.get(4..).unwrap_or_default();
    let complete = payload.len() >= len;
    let payload = payload.get(..len).unwrap_or(payload);
    if len == 0 {
        return Detection::No;
    }
    let Some(&kind) = payload.first() else {
        return if seq <= 2 {
            Detection::NeedMore
        } else {
            Detection::No
        };
    };
    match (seq, kind) {
        (0, 0x0a) if (20..=1024).contains(&len) => match wire::greeting(payload, complete) {
            Ok(_) => Detection::Match {
                request_dir: dir.opposite(),
                strength: Strength::Strong,
            },
            Err(true) => Detection::NeedMore,
            Err(false) => Detection::No,
        },
        (0, com::QUERY | com::STMT_PREPARE) => sql_looking(payload, len, dir),
        (1 | 2, _) if len >= 32 && handshake_looking(payload, complete, dir) != Detection::No => {
            handshake_looking(payload, complete, dir)
        }
        (1, 0xff) => error_looking(payload, complete, dir),
        (1, 1..=0xfa) => result_set_looking(first, len, dir),
        _ => Detection::No,
    }
}

/// SQL text after the command byte (and the empty query-attributes block
/// MySQL 8 clients put first).
fn sql_looking(payload: &[u8], len: usize, dir: Direction) -> Detection {
    let mut sql = payload.get(1..).unwrap_or_default();
    if let Some(tail) = sql.strip_prefix(&[0, 1][..]) {
        sql = tail;
    }
    let head: &[u8] = sql.get(..32).unwrap_or(sql);
    let printable = |c: &u8| (0x20..0x7f).contains(c) || matches!(c, b'\t' | b'\n' | b'\r');
    let start_ok = head
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_none_or(|&c| c.is_ascii_alphabetic() || c == b'(' || c == b'/');
    if !head.iter().all(printable) || !start_ok || len < 2 {
        return Detection::No;
    }
    if head.len() < 4 && payload.len() < len {
        return Detection::NeedMore;
    }
    if head.iter().any(u8::is_ascii_alphabetic) {
        Detection::Match {
            request_dir: dir,
            strength: Strength::Weak,
        }
    } else {
        Detection::No
    }
}

/// The client's HandshakeResponse41: sequence 1 right after the greeting,
/// or 2 as the first plaintext inside TLS (after the SSL request), where
/// the greeting is not part of the decrypted stream. 4.1 capabilities,
/// 23 filler bytes that are zero (but MariaDB's 4 extended-capability
/// bytes), a printable user name: strong.
fn handshake_looking(payload: &[u8], complete: bool, dir: Direction) -> Detection {
    let four_one = payload.get(1).is_none_or(|&c| c & 0x02 != 0);
    let filler: &[u8] = payload.get(9..28).or(payload.get(9..)).unwrap_or_default();
    if !four_one || filler.iter().any(|&b| b != 0) {
        return Detection::No;
    }
    match wire::handshake_response(payload, None) {
        Some(h) if !h.ssl && h.user_printable => Detection::Match {
            request_dir: dir,
            strength: Strength::Strong,
        },
        // The user name (or the rest) is still to come.
        _ if !complete => Detection::NeedMore,
        _ => Detection::No,
    }
}

/// `[0xff][code][#][SQLSTATE]` answering a command.
fn error_looking(payload: &[u8], complete: bool, dir: Direction) -> Detection {
    match payload.get(3..9) {
        Some([b'#', state @ ..]) if state.iter().all(u8::is_ascii_alphanumeric) => {
            Detection::Match {
                request_dir: dir.opposite(),
                strength: Strength::Weak,
            }
        }
        None if !complete && payload.get(3).is_none_or(|&c| c == b'#') => Detection::NeedMore,
        _ => Detection::No,
    }
}

/// A column count (seq 1) followed by a column definition starting with
/// the catalog `def` (seq 2).
fn result_set_looking(first: &[u8], len: usize, dir: Direction) -> Detection {
    if len > 10 {
        return Detection::No;
    }
    let next = first.get(4 + len..).unwrap_or_default();
    let want: &[u8] = b"\x03def";
    match next.get(3..) {
        None if next.len() < 3 => Detection::NeedMore,
        Some([2, rest @ ..]) if rest.starts_with(want) => Detection::Match {
            request_dir: dir.opposite(),
            strength: Strength::Weak,
        },
        Some([2, rest @ ..]) if want.starts_with(rest) => Detection::NeedMore,
        _ => Detection::No,
    }
}
