//! Cheap start-line recognition: protocol detection on a new connection and
//! resynchronisation after lost or garbage bytes.
//!
//! Resynchronisation recognises only well-known methods because it scans
//! arbitrary bytes, where a permissive pattern would find false starts
//! inside bodies and other protocols. At a fixed position (the first bytes
//! of a connection direction) any token method is accepted, as the full
//! parser does, when a valid target and `HTTP/1.x` follow: custom methods
//! (`BREW`, `PURGE`-like verbs) are HTTP, while Redis inline commands
//! (`GET key`) lack the version and stay rejected.

/// Methods recognised when probing or resynchronising.
const KNOWN_METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    // WebDAV and cache-purge verbs show up in real traffic often enough.
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

/// Longest custom (unknown) method recognised at a connection's start: a
/// bound on how long a run of token bytes keeps detection waiting.
const MAX_CUSTOM_METHOD: usize = 24;

/// What the first bytes of a connection direction look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// A complete request line (`GET / HTTP/1.1` + EOL; any token method).
    Request,
    /// A status line (`HTTP/1.x DDD` followed by SP or EOL).
    Response,
    /// A proper prefix of a request or status line; ask again with more.
    NeedMore,
    /// Not HTTP/1.
    No,
}

/// How far a buffer matches a start line pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineMatch {
    /// The whole start line is present and plausible.
    Yes,
    /// The buffer ends inside something that may still become a start line.
    Prefix,
    /// Cannot be a start line.
    No,
}

/// Outcome of stripping one element of a start line.
enum Step<'a> {
    Rest(&'a [u8]),
    Prefix,
    No,
}

/// Classifies the first bytes seen on one direction of a connection.
///
/// Rejects TLS records, binary protocols and RESP at the first byte, since
/// none of them begins with an upper-case method name or `H`.
pub fn detect(buf: &[u8]) -> Detect {
    match (match_request_start(buf), match_status_line(buf)) {
        (LineMatch::Yes, _) => Detect::Request,
        (_, LineMatch::Yes) => Detect::Response,
        (LineMatch::Prefix, _) | (_, LineMatch::Prefix) => Detect::NeedMore,
        (LineMatch::No, LineMatch::No) => Detect::No,
    }
}

/// Offset of the first place in `buf` where a request line of a known
/// method starts, or where the buffer ends inside what may still become one
/// (the caller should keep those bytes and look again when more arrive).
pub fn find_request_boundary(buf: &[u8]) -> Option<usize> {
    find_boundary(
        buf,
        |b| KNOWN_METHODS.iter().any(|m| m.first() == Some(&b)),
        match_request_line,
    )
}

/// Offset of the first place in `buf` where a status line starts, or where
/// the buffer ends inside what may still become one.
pub fn find_response_boundary(buf: &[u8]) -> Option<usize> {
    find_boundary(buf, |b| b == b'H', match_status_line)
}

fn find_boundary(
    buf: &[u8],
    first_byte: impl Fn(u8) -> bool,
    matcher: fn(&[u8]) -> LineMatch,
) -> Option<usize> {
    // The first-byte filter keeps the scan close to a memchr in practice.
    (0..buf.len()).find(|&p| {
        buf.get(p..).is_some_and(|rest| {
            rest.first().is_some_and(|&b| first_byte(b)) && matcher(rest) != LineMatch::No
        })
    })
}

/// Matches `METHOD SP request-target SP HTTP/1.[01] (CR|LF)` at offset 0,
/// for a known method (what resynchronisation may look for).
pub(crate) fn match_request_line(buf: &[u8]) -> LineMatch {
    match_request_line_with(buf, strip_method)
}

/// The same for any token method: for a position known to start a message
/// (the first bytes of a direction), not for scanning.
pub(crate) fn match_request_start(buf: &[u8]) -> LineMatch {
    match_request_line_with(buf, strip_token_method)
}

fn match_request_line_with(buf: &[u8], method: fn(&[u8]) -> Step<'_>) -> LineMatch {
    let rest = match method(buf) {
        Step::Rest(r) => r,
        Step::Prefix => return LineMatch::Prefix,
        Step::No => return LineMatch::No,
    };
    let rest = match strip_target(rest) {
        Step::Rest(r) => r,
        Step::Prefix => return LineMatch::Prefix,
        Step::No => return LineMatch::No,
    };
    const VERSION: &[u8] = b"HTTP/1.";
    for (i, &want) in VERSION.iter().enumerate() {
        match rest.get(i) {
            None => return LineMatch::Prefix,
            Some(&b) if b == want => {}
            Some(_) => return LineMatch::No,
        }
    }
    let tail = rest.get(VERSION.len()..).unwrap_or_default();
    match (tail.first(), tail.get(1)) {
        (None, _) | (Some(b'0' | b'1'), None) => LineMatch::Prefix,
        (Some(b'0' | b'1'), Some(b'\r' | b'\n')) => LineMatch::Yes,
        _ => LineMatch::No,
    }
}

/// Matches `HTTP/1.[01] SP DDD (SP|CR|LF)` at offset 0 (status >= 100).
pub(crate) fn match_status_line(buf: &[u8]) -> LineMatch {
    const LEN: usize = 13;
    for i in 0..LEN {
        match buf.get(i) {
            None => return LineMatch::Prefix,
            Some(&b) if status_byte_ok(i, b) => {}
            Some(_) => return LineMatch::No,
        }
    }
    LineMatch::Yes
}

fn status_byte_ok(i: usize, b: u8) -> bool {
    match i {
        0..=6 => b"HTTP/1.".get(i) == Some(&b),
        7 => matches!(b, b'0' | b'1'),
        8 => b == b' ',
        9 => matches!(b, b'1'..=b'9'),
        10 | 11 => b.is_ascii_digit(),
        _ => matches!(b, b' ' | b'\r' | b'\n'),
    }
}

fn strip_method(buf: &[u8]) -> Step<'_> {
    let mut prefix = false;
    for m in KNOWN_METHODS {
        if let Some(rest) = buf.strip_prefix(*m) {
            match rest.split_first() {
                Some((b' ', after)) => return Step::Rest(after),
                None => prefix = true,
                Some(_) => {}
            }
        } else if m.starts_with(buf) {
            prefix = true;
        }
    }
    if prefix { Step::Prefix } else { Step::No }
}

/// A method token (RFC 9110 `tchar`s) and the space after it. It must
/// begin with a letter, as every registered method does: RESP (`*`, `+`,
/// `$`, `-`, `:`) and binary protocols are then refused at the first byte.
fn strip_token_method(buf: &[u8]) -> Step<'_> {
    if buf.first().is_some_and(|b| !b.is_ascii_alphabetic()) {
        return Step::No;
    }
    for (i, &b) in buf.iter().enumerate() {
        if b == b' ' {
            return if i == 0 {
                Step::No
            } else {
                Step::Rest(buf.get(i + 1..).unwrap_or_default())
            };
        }
        if i >= MAX_CUSTOM_METHOD || !is_tchar(b) {
            return Step::No;
        }
    }
    Step::Prefix
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn strip_target(buf: &[u8]) -> Step<'_> {
    // origin-form '/', asterisk-form '*', absolute-form and authority-form
    // both start alphanumeric.
    match buf.first() {
        None => return Step::Prefix,
        Some(&b) if b == b'/' || b == b'*' || b.is_ascii_alphanumeric() => {}
        Some(_) => return Step::No,
    }
    for (i, &b) in buf.iter().enumerate() {
        if b == b' ' {
            return Step::Rest(buf.get(i + 1..).unwrap_or_default());
        }
        // Same byte set httparse accepts in a target.
        if !(b'!'..=0x7e).contains(&b) && b < 0x80 {
            return Step::No;
        }
    }
    Step::Prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_requests_and_responses() {
        assert_eq!(detect(b"GET / HTTP/1.1\r\nHost: a\r\n"), Detect::Request);
        assert_eq!(detect(b"DELETE /x?y=1 HTTP/1.0\n"), Detect::Request);
        assert_eq!(detect(b"OPTIONS * HTTP/1.1\r\n"), Detect::Request);
        assert_eq!(
            detect(b"CONNECT example.com:443 HTTP/1.1\r\n"),
            Detect::Request
        );
        assert_eq!(detect(b"GET http://a/b HTTP/1.1\r\n"), Detect::Request);
        assert_eq!(detect(b"HTTP/1.1 200 OK\r\n"), Detect::Response);
        assert_eq!(detect(b"HTTP/1.0 404\r\n"), Detect::Response);
    }

    #[test]
    fn partial_start_lines_need_more() {
        for p in [
            &b""[..],
            b"G",
            b"GE",
            b"GET",
            b"GET ",
            b"GET /index",
            b"GET /index ",
            b"GET / HTTP/1.",
            b"GET / HTTP/1.1",
            b"P",
            b"PROP",
            b"H",
            b"HEAD / HTTP/1",
            b"HTTP/1.1 20",
            b"HTTP/1.1 200",
        ] {
            assert_eq!(
                detect(p),
                Detect::NeedMore,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn other_protocols_are_rejected() {
        // TLS 1.0 record header carrying a ClientHello.
        let tls = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        assert_eq!(detect(&tls), Detect::No);
        // Postgres StartupMessage: length 8, protocol 3.0.
        let pg = [0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00];
        assert_eq!(detect(&pg), Detect::No);
        // Postgres SSLRequest.
        let pg_ssl = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(detect(&pg_ssl), Detect::No);
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), Detect::No);
        // Redis inline commands share method names but lack a version.
        assert_eq!(detect(b"GET key\r\n"), Detect::No);
        assert_eq!(detect(b"PING\r\n"), Detect::No);
        // HTTP/2 connection preface.
        assert_eq!(detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Detect::No);
        assert_eq!(detect(b"HTTP/2 200\r\n"), Detect::No);
        assert_eq!(detect(b"GET\t/ HTTP/1.1\r\n"), Detect::No);
        assert_eq!(detect(b" GET / HTTP/1.1\r\n"), Detect::No);
        assert_eq!(detect(b"BREW key\r\n"), Detect::No);
        assert_eq!(detect(b"BR(EW / HTTP/1.1\r\n"), Detect::No);
        assert_eq!(detect(b"MGET a b c\r\n"), Detect::No);
        let long = [b'A'; MAX_CUSTOM_METHOD + 1];
        assert_eq!(detect(&long), Detect::No);
        assert_eq!(detect(b"GET / HTTP/1.1 \r\n"), Detect::No);
        assert_eq!(detect(b"GET /a b HTTP/1.1\r\n"), Detect::No);
        assert_eq!(detect(b"HTTP/1.1 099 X\r\n"), Detect::No);
        assert_eq!(detect(b"HTTP/1.1 2000\r\n"), Detect::No);
    }

    /// Any token method is HTTP at a connection's start when a valid
    /// target and the version follow; scanning still only finds known ones.
    #[test]
    fn custom_methods_are_detected_at_the_start_only() {
        assert_eq!(
            detect(b"BREW /pot HTTP/1.1\r\nHost: a\r\n"),
            Detect::Request
        );
        assert_eq!(detect(b"M-SEARCH * HTTP/1.1\r\n"), Detect::Request);
        assert_eq!(detect(b"get / HTTP/1.1\r\n"), Detect::Request);
        for p in [
            &b"BREW"[..],
            b"BREW ",
            b"BREW /pot",
            b"BREW /pot HTTP/1.",
            b"FOO",
        ] {
            assert_eq!(
                detect(p),
                Detect::NeedMore,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(find_request_boundary(b"xx BREW /pot HTTP/1.1\r\n"), None);
        assert_eq!(match_request_line(b"BREW /pot HTTP/1.1\r\n"), LineMatch::No);
    }

    #[test]
    fn boundaries_skip_garbage() {
        let buf = b"\x00\x01garbage GETx HTTP/1.1 POST /p HTTP/1.1\r\n";
        assert_eq!(find_request_boundary(buf), Some(24));
        assert_eq!(find_request_boundary(b"xyz"), None);
        // A trailing possible start is reported so the caller keeps it.
        assert_eq!(find_request_boundary(b"xyzGE"), Some(3));
        let resp = b"ody bytes}HTTP/1.1 204 No Content\r\n";
        assert_eq!(find_response_boundary(resp), Some(10));
        assert_eq!(
            find_response_boundary(b"HTTP/2 200 HTTP/1.1 200\r"),
            Some(11)
        );
        assert_eq!(find_response_boundary(b"no status here"), None);
        assert_eq!(find_response_boundary(b"...HTT"), Some(3));
        assert_eq!(find_request_boundary(b""), None);
    }
}
