//! Request and response heads (start line + header fields) via httparse.

use std::mem::MaybeUninit;

use compact_str::CompactString;

use super::body::Framing;
use super::error::ParseError;
use super::traceparent::TraceParent;
use crate::parse::Parsed;

/// Header fields accepted per head; more is treated as malformed rather
/// than growing an unbounded array.
pub const MAX_HEADERS: usize = 64;
/// Request-target bytes kept by [`parse_request_head`].
pub const DEFAULT_MAX_TARGET_LEN: usize = 2048;
/// Longest method token accepted; real methods are short words.
const MAX_METHOD_LEN: usize = 32;
/// Longest Host value kept (DNS names are at most 253 bytes, plus a port).
const MAX_HOST_LEN: usize = 270;
/// Longest User-Agent value kept.
const MAX_USER_AGENT_LEN: usize = 256;
/// Longest reason phrase kept (server errors only).
const MAX_REASON_LEN: usize = 64;

/// A parsed request head. Its text fields are stored inline when short
/// (methods, most hosts and paths), so a head usually costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: CompactString,
    /// Raw request-target, cut on a character boundary at the target limit.
    pub target: CompactString,
    /// The target was longer than the limit and has been cut.
    pub target_truncated: bool,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Declared body length; `None` when absent or overridden by chunked.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`.
    pub chunked: bool,
    /// `Connection: close` was sent.
    pub connection_close: bool,
    /// `Connection: keep-alive` was sent.
    pub connection_keep_alive: bool,
    pub host: Option<CompactString>,
    /// `User-Agent`, cut at 256 bytes.
    pub user_agent: Option<CompactString>,
    /// A syntactically valid W3C `traceparent` (its first 55 bytes).
    pub traceparent: Option<TraceParent>,
    /// An `Upgrade` header field asks to switch protocols.
    pub upgrade: bool,
    /// `Upgrade` names `h2c` (HTTP/2 over cleartext, RFC 7540 §3.2).
    pub upgrade_h2c: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// Body framing of this request (RFC 9112 §6.3: requests never read
    /// until close).
    pub fn framing(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            match self.content_length {
                Some(n) => Framing::Length(n),
                None => Framing::None,
            }
        }
    }

    /// Whether the client asked for the connection to persist.
    pub fn keep_alive(&self) -> bool {
        keep_alive(
            self.minor_version,
            self.connection_close,
            self.connection_keep_alive,
        )
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, always 100..=999.
    pub status: u16,
    pub minor_version: u8,
    /// Declared body length; `None` when absent or overridden by
    /// `Transfer-Encoding`.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`.
    pub chunked: bool,
    pub connection_close: bool,
    pub connection_keep_alive: bool,
    /// The reason phrase of a server error (5xx), which describes the
    /// failure; not kept for other statuses.
    pub reason: Option<CompactString>,
}

impl ResponseHead {
    /// A 1xx other than 101: the final response is still to come.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Body framing per RFC 9112 §6.3, given the method of the request this
    /// answers (`None` if unknown).
    pub fn framing(&self, request_method: Option<&str>) -> Framing {
        let no_body_status = self.status < 200 || self.status == 204 || self.status == 304;
        let tunnel = request_method == Some("CONNECT") && (200..300).contains(&self.status);
        if no_body_status || tunnel || request_method == Some("HEAD") {
            Framing::None
        } else if self.chunked {
            Framing::Chunked
        } else {
            // A Transfer-Encoding other than chunked also lands here with no
            // length: such a body is delimited by the close.
            match self.content_length {
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        }
    }

    /// Whether the server intends to keep the connection open.
    pub fn keep_alive(&self) -> bool {
        keep_alive(
            self.minor_version,
            self.connection_close,
            self.connection_keep_alive,
        )
    }
}

fn keep_alive(minor: u8, close: bool, keep_alive: bool) -> bool {
    !close && (minor >= 1 || keep_alive)
}

/// Parses a request head at the start of `buf` (leading empty lines are
/// skipped), keeping at most [`DEFAULT_MAX_TARGET_LEN`] target bytes.
pub fn parse_request_head(buf: &[u8]) -> Result<Parsed<RequestHead>, ParseError> {
    parse_request_head_with(buf, DEFAULT_MAX_TARGET_LEN)
}

/// [`parse_request_head`] with an explicit target length limit.
pub fn parse_request_head_with(
    buf: &[u8],
    max_target_len: usize,
) -> Result<Parsed<RequestHead>, ParseError> {
    let start = skip_empty_lines(buf);
    match start.first() {
        None => return Ok(Parsed::NeedMore),
        // Responses and binary data are not malformed requests, just not
        // requests at all.
        Some(&b) if !is_tchar(b) => return Ok(Parsed::Ignored),
        Some(_) if start.starts_with(b"HTTP/") => return Ok(Parsed::Ignored),
        Some(_) => {}
    }
    // Uninitialised slots: zeroing 64 headers (2 KiB) per head showed in
    // profiles, and httparse only hands back the ones it filled.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let consumed = match req.parse_with_uninit_headers(buf, &mut headers)? {
        httparse::Status::Partial => return Ok(Parsed::NeedMore),
        httparse::Status::Complete(n) => n,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Ok(Parsed::NeedMore);
    };
    if method.len() > MAX_METHOD_LEN {
        return Err(ParseError::InvalidToken);
    }
    let f = Fields::scan(req.headers);
    let (chunked, content_length) = if f.te_present {
        // RFC 9112 §6.3 item 4: a request coding list must end in chunked,
        // and chunked overrides any Content-Length.
        if !f.te_chunked_last {
            return Err(ParseError::InvalidTransferEncoding);
        }
        (true, None)
    } else {
        (false, f.content_length?)
    };
    let (target, target_truncated) = truncate_str(path, max_target_len);
    let head = RequestHead {
        method: CompactString::new(method),
        target: CompactString::new(target),
        target_truncated,
        minor_version: minor,
        content_length,
        chunked,
        connection_close: f.close,
        connection_keep_alive: f.keep_alive,
        host: f.host,
        user_agent: f.user_agent,
        traceparent: f.traceparent,
        upgrade: f.upgrade,
        upgrade_h2c: f.upgrade_h2c,
        expect_continue: f.expect_continue,
    };
    Ok(Parsed::Complete {
        frame: head,
        consumed,
    })
}

/// Parses a response head at the start of `buf` (leading empty lines are
/// skipped).
pub fn parse_response_head(buf: &[u8]) -> Result<Parsed<ResponseHead>, ParseError> {
    let start = skip_empty_lines(buf);
    if start.is_empty() {
        return Ok(Parsed::NeedMore);
    }
    let n = start.len().min(5);
    if start.get(..n) != b"HTTP/".get(..n) {
        return Ok(Parsed::Ignored);
    }
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    // Be as lenient as clients are with sloppy servers: an observer wants to
    // measure what was exchanged, not police it.
    let consumed = match httparse::ParserConfig::default()
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response_with_uninit_headers(&mut res, buf, &mut headers)?
    {
        httparse::Status::Partial => return Ok(Parsed::NeedMore),
        httparse::Status::Complete(n) => n,
    };
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Ok(Parsed::NeedMore);
    };
    if status < 100 {
        return Err(ParseError::InvalidStatus);
    }
    let f = Fields::scan(res.headers);
    let (chunked, content_length) = if f.te_present {
        (f.te_chunked_last, None)
    } else {
        (false, f.content_length?)
    };
    let head = ResponseHead {
        status,
        minor_version: minor,
        content_length,
        chunked,
        connection_close: f.close,
        connection_keep_alive: f.keep_alive,
        reason: (status >= 500)
            .then(|| {
                res.reason
                    .map(|r| CompactString::new(truncate_str(r.trim(), MAX_REASON_LEN).0))
            })
            .flatten()
            .filter(|r| !r.is_empty()),
    };
    Ok(Parsed::Complete {
        frame: head,
        consumed,
    })
}

/// Best-effort request head from a head whose end was not captured: the
/// complete lines before the cut are parsed as if the head ended there.
/// Framing fields are unreliable in the result and must not be used.
pub(crate) fn salvage_request_head(buf: &[u8], max_target_len: usize) -> Option<RequestHead> {
    salvage(buf, |b| parse_request_head_with(b, max_target_len))
}

/// Best-effort response head from a head whose end was not captured.
pub(crate) fn salvage_response_head(buf: &[u8]) -> Option<ResponseHead> {
    salvage(buf, parse_response_head)
}

fn salvage<T>(buf: &[u8], parse: impl Fn(&[u8]) -> Result<Parsed<T>, ParseError>) -> Option<T> {
    let first_lf = buf.iter().position(|&b| b == b'\n')?;
    let last_lf = buf.iter().rposition(|&b| b == b'\n')?;
    let attempt = |end: usize| {
        let mut tmp = Vec::with_capacity(end + 3);
        tmp.extend_from_slice(buf.get(..=end)?);
        tmp.extend_from_slice(b"\r\n");
        match parse(&tmp) {
            Ok(Parsed::Complete { frame, .. }) => Some(frame),
            _ => None,
        }
    };
    // A header line cut mid-way, or a framing conflict among the visible
    // fields, should not cost us the start line.
    attempt(last_lf).or_else(|| attempt(first_lf))
}

/// Header fields that matter to framing and reporting.
struct Fields {
    content_length: Result<Option<u64>, ParseError>,
    te_present: bool,
    te_chunked_last: bool,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    upgrade_h2c: bool,
    expect_continue: bool,
    host: Option<CompactString>,
    user_agent: Option<CompactString>,
    traceparent: Option<TraceParent>,
}

impl Fields {
    fn scan(headers: &[httparse::Header<'_>]) -> Self {
        let mut f = Fields {
            content_length: Ok(None),
            te_present: false,
            te_chunked_last: false,
            close: false,
            keep_alive: false,
            upgrade: false,
            upgrade_h2c: false,
            expect_continue: false,
            host: None,
            user_agent: None,
            traceparent: None,
        };
        for h in headers {
            let name = h.name.as_bytes();
            let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
            // The names that matter all differ in length: one compare per
            // field instead of up to seven (this runs on every head).
            match name.len() {
                14 if is(b"content-length") => {
                    if let Ok(prev) = f.content_length {
                        f.content_length = merge_content_length(prev, trim_ows(h.value));
                    }
                }
                17 if is(b"transfer-encoding") => {
                    // Several fields form one list; only the final coding
                    // decides.
                    for coding in list_items(trim_ows(h.value)) {
                        let coding_name = coding.split(|&b| b == b';').next().unwrap_or_default();
                        f.te_present = true;
                        f.te_chunked_last = trim_ows(coding_name).eq_ignore_ascii_case(b"chunked");
                    }
                }
                10 if is(b"connection") => {
                    for token in list_items(trim_ows(h.value)) {
                        f.close |= token.eq_ignore_ascii_case(b"close");
                        f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                10 if f.user_agent.is_none() && is(b"user-agent") => {
                    let value = String::from_utf8_lossy(trim_ows(h.value));
                    f.user_agent = Some(CompactString::new(
                        truncate_str(&value, MAX_USER_AGENT_LEN).0,
                    ));
                }
                4 if is(b"host") => {
                    let value = trim_ows(h.value);
                    if f.host.is_none() && !value.is_empty() {
                        // Hosts are ASCII: the lossy copy is only for the
                        // rare one that is not (its scan showed in profiles).
                        let host = match std::str::from_utf8(value) {
                            Ok(s) => CompactString::new(truncate_str(s, MAX_HOST_LEN).0),
                            Err(_) => {
                                let lossy = String::from_utf8_lossy(value);
                                CompactString::new(truncate_str(&lossy, MAX_HOST_LEN).0)
                            }
                        };
                        f.host = Some(host);
                    }
                }
                // The first traceparent field counts.
                11 if f.traceparent.is_none() && is(b"traceparent") => {
                    f.traceparent = TraceParent::parse(trim_ows(h.value));
                }
                7 if is(b"upgrade") => {
                    f.upgrade |= !trim_ows(h.value).is_empty();
                    f.upgrade_h2c |=
                        list_items(trim_ows(h.value)).any(|t| t.eq_ignore_ascii_case(b"h2c"));
                }
                6 if is(b"expect") => {
                    f.expect_continue |= trim_ows(h.value).eq_ignore_ascii_case(b"100-continue");
                }
                _ => {}
            }
        }
        f
    }
}

/// Folds one Content-Length field into the value seen so far. RFC 9110 §8.6
/// lets a recipient accept a list of identical values; anything else is an
/// unrecoverable framing error.
fn merge_content_length(prev: Option<u64>, value: &[u8]) -> Result<Option<u64>, ParseError> {
    let mut current = prev;
    let mut any = false;
    for item in value.split(|&b| b == b',') {
        let item = trim_ows(item);
        let n = parse_decimal(item).ok_or(ParseError::InvalidContentLength)?;
        match current {
            Some(c) if c != n => return Err(ParseError::ConflictingContentLength),
            _ => current = Some(n),
        }
        any = true;
    }
    if any {
        Ok(current)
    } else {
        Err(ParseError::InvalidContentLength)
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// Non-empty, OWS-trimmed elements of a comma-separated field value.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', rest)) = s.split_first() {
        s = rest;
    }
    while let Some((b' ' | b'\t', rest)) = s.split_last() {
        s = rest;
    }
    s
}

fn skip_empty_lines(mut buf: &[u8]) -> &[u8] {
    while let Some((b'\r' | b'\n', rest)) = buf.split_first() {
        buf = rest;
    }
    buf
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Cuts `s` to at most `max` bytes without splitting a character.
pub(crate) fn truncate_str(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s.get(..end).unwrap_or_default(), true)
}
