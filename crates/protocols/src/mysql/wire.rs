//! Field layouts of the packets the parser reads: the greeting, the
//! client's handshake response, OK/EOF/ERR, length-encoded integers.
//! Every reader is total: a short or malformed payload gives `None`.

/// Capability flags (client and server share the bit positions; the
/// MariaDB extended ones are shifted by 32).
pub(crate) mod cap {
    pub const LONG_PASSWORD: u64 = 1;
    pub const CONNECT_WITH_DB: u64 = 1 << 3;
    pub const COMPRESS: u64 = 1 << 5;
    pub const PROTOCOL_41: u64 = 1 << 9;
    pub const SSL: u64 = 1 << 11;
    pub const SECURE_CONNECTION: u64 = 1 << 15;
    pub const PLUGIN_AUTH_LENENC: u64 = 1 << 21;
    pub const SESSION_TRACK: u64 = 1 << 23;
    pub const DEPRECATE_EOF: u64 = 1 << 24;
    /// MySQL 8's zstd compression.
    pub const ZSTD: u64 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u64 = 1 << 27;
    /// MariaDB: a result set may omit column definitions the client cached
    /// (the column count is followed by a "metadata follows" byte).
    pub const MARIADB_CACHE_METADATA: u64 = 1 << 36;
}

/// Server status flags (OK and EOF packets).
pub(crate) mod status {
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// A length-encoded integer at the start of `b`: (value, bytes used).
pub(crate) fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let wide = |n: usize| -> Option<(u64, usize)> {
        let raw = b.get(1..1 + n)?;
        let mut v = [0u8; 8];
        v.get_mut(..n)?.copy_from_slice(raw);
        Some((u64::from_le_bytes(v), 1 + n))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => wide(2),
        0xfd => wide(3),
        0xfe => wide(8),
        // 0xfb is NULL in rows, 0xff an error: neither is a length.
        _ => None,
    }
}

/// A length-encoded string at the start of `b`: (bytes, bytes used).
pub(crate) fn lenenc_str(b: &[u8]) -> Option<(&[u8], usize)> {
    let (n, used) = lenenc(b)?;
    let n = usize::try_from(n).ok()?;
    let s = b.get(used..used.checked_add(n)?)?;
    Some((s, used + n))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*b.get(at..at + 2)?.first_chunk::<2>()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..at + 4)?.first_chunk::<4>()?))
}

/// What the server greeting (protocol 10) tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Greeting {
    pub mariadb: bool,
    /// Server capabilities, MariaDB's extended ones in the high half.
    pub caps: u64,
}

/// Checks a greeting payload. `Err(true)`: a valid prefix, more needed;
/// `Err(false)`: not a greeting.
pub(crate) fn greeting(p: &[u8], complete: bool) -> Result<Greeting, bool> {
    let more = Err(!complete);
    match p.first() {
        None => return more,
        Some(&0x0a) => {}
        Some(_) => return Err(false),
    }
    let rest = p.get(1..).unwrap_or_default();
    // Version: printable ASCII starting with a digit, NUL-terminated,
    // short.
    let Some(nul) = rest.iter().take(64).position(|&c| c == 0) else {
        let ok = rest.iter().take(64).all(|&c| (0x20..0x7f).contains(&c))
            && rest.first().is_none_or(u8::is_ascii_digit)
            && rest.len() < 64;
        return if ok { more } else { Err(false) };
    };
    let version = rest.get(..nul).unwrap_or_default();
    if version.is_empty()
        || !version.first().is_some_and(u8::is_ascii_digit)
        || !version.iter().all(|&c| (0x20..0x7f).contains(&c))
    {
        return Err(false);
    }
    // connection id (4), auth data part 1 (8), filler 0x00, caps low (2).
    let at = 1 + nul + 1;
    let filler = at + 4 + 8;
    match p.get(filler) {
        None => return more,
        Some(0) => {}
        Some(_) => return Err(false),
    }
    let Some(low) = u16_at(p, filler + 1) else {
        return more;
    };
    let mut caps = u64::from(low);
    // charset (1), status (2), caps high (2), auth data length (1),
    // reserved 6 + MariaDB extended caps (4).
    if let Some(high) = u16_at(p, filler + 6) {
        caps |= u64::from(high) << 16;
    }
    if caps & cap::LONG_PASSWORD == 0 {
        // MariaDB clears this bit to say the reserved tail carries its
        // extended capabilities.
        if let Some(ext) = u32_at(p, filler + 15) {
            caps |= u64::from(ext) << 32;
        }
    }
    let mariadb = memchr::memmem::find(&version.to_ascii_lowercase(), b"mariadb").is_some();
    Ok(Greeting { mariadb, caps })
}

/// What the client's HandshakeResponse41 (or SSL request) tells. The
/// authentication data is skipped, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub caps: u64,
    /// Asks for TLS next (an SSL request: the real response follows
    /// inside TLS).
    pub ssl: bool,
    pub database: Option<Vec<u8>>,
    /// The user name is printable ASCII (a detection hint; the name
    /// itself is not kept).
    pub user_printable: bool,
}

/// `server_caps`: `None` when the greeting was not seen (inside TLS): the
/// client's own layout then tells whether it sent MariaDB's extended
/// capabilities.
pub(crate) fn handshake_response(p: &[u8], server_caps: Option<u64>) -> Option<Handshake> {
    let server_caps = server_caps.unwrap_or(0);
    let low = u32_at(p, 0)?;
    let mut caps = u64::from(low);
    // Every client since MySQL 4.1 speaks the 4.1 protocol; its 23 filler
    // bytes are zero (MariaDB's extended capabilities aside): a cheap
    // check that these bytes are a handshake at all.
    let mariadb_ext = caps & cap::LONG_PASSWORD == 0 && server_caps & cap::LONG_PASSWORD == 0;
    let filler_end = if mariadb_ext { 28 } else { 32 };
    if caps & cap::PROTOCOL_41 == 0 || p.get(9..filler_end)?.iter().any(|&b| b != 0) {
        return None;
    }
    if mariadb_ext && let Some(ext) = u32_at(p, 28) {
        caps |= u64::from(ext) << 32;
    }
    if p.len() <= 32 {
        // caps, max packet, charset, filler and nothing else: an SSL
        // request when it asks for SSL.
        return Some(Handshake {
            caps,
            ssl: caps & cap::SSL != 0,
            database: None,
            user_printable: false,
        });
    }
    let mut at = 32;
    let user_end = p.get(at..)?.iter().position(|&c| c == 0)?;
    let user_printable = p
        .get(at..at + user_end)
        .is_some_and(|u| !u.is_empty() && u.iter().all(|c| (0x21..0x7f).contains(c)));
    at += user_end + 1;
    if caps & cap::PLUGIN_AUTH_LENENC != 0 {
        let (_, used) = lenenc_str(p.get(at..)?)?;
        at += used;
    } else if caps & cap::SECURE_CONNECTION != 0 {
        let n = usize::from(*p.get(at)?);
        at += 1 + n;
    } else {
        at += p.get(at..)?.iter().position(|&c| c == 0)? + 1;
    }
    let database = if caps & cap::CONNECT_WITH_DB != 0 {
        let tail = p.get(at..)?;
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        tail.get(..end)
            .filter(|d| !d.is_empty())
            .map(<[u8]>::to_vec)
    } else {
        None
    };
    Some(Handshake {
        caps,
        ssl: false,
        database,
        user_printable,
    })
}

/// The end of a command's response as an OK (0x00 or 0xfe header) or EOF
/// packet says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ok {
    pub status: u16,
    /// The current schema, when session tracking reported a change.
    pub schema: Option<Vec<u8>>,
}

/// An OK packet (header 0x00, or 0xfe when it ends a result set under
/// CLIENT_DEPRECATE_EOF).
pub(crate) fn ok_packet(p: &[u8], caps: u64) -> Option<Ok> {
    let mut at = 1;
    let (_, used) = lenenc(p.get(at..)?)?; // affected rows
    at += used;
    let (_, used) = lenenc(p.get(at..)?)?; // last insert id
    at += used;
    let status = u16_at(p, at)?;
    at += 4; // status, warnings
    let mut schema = None;
    if caps & cap::SESSION_TRACK != 0 && status & status::SESSION_STATE_CHANGED != 0 {
        schema = (|| {
            let (_, used) = lenenc_str(p.get(at..)?)?; // info
            let (mut state, _) = lenenc_str(p.get(at + used..)?)?;
            let mut found = None;
            while let Some((&kind, tail)) = state.split_first() {
                let (data, used) = lenenc_str(tail)?;
                if kind == 1 {
                    found = Some(lenenc_str(data)?.0.to_vec());
                }
                state = tail.get(used..)?;
            }
            found
        })();
    }
    Some(Ok { status, schema })
}

/// An EOF packet (0xfe, payload shorter than 9): its status flags.
pub(crate) fn eof_status(p: &[u8]) -> Option<u16> {
    u16_at(p, 3)
}

/// An ERR packet's error code (`None` for MariaDB progress reports,
/// which share the 0xff header with code 0xffff and end nothing).
pub(crate) fn err_code(p: &[u8]) -> Option<u16> {
    u16_at(p, 1).filter(|&c| c != 0xffff)
}
