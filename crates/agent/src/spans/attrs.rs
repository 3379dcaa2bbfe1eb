//! Span attributes as one walk over a span, shared by every output (the
//! OTLP encoder, the JSON printer): the common ones, then the family's.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Span, SpanDetail, db, http, rpc};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// Text formatted on the stack: an IP address (at most 45 characters for
/// IPv6 with an embedded IPv4) or a status code.
pub struct SmallText {
    buf: [u8; 48],
    len: usize,
}

impl SmallText {
    pub fn new() -> SmallText {
        SmallText {
            buf: [0; 48],
            len: 0,
        }
    }

    pub fn of(v: impl std::fmt::Display) -> SmallText {
        let mut t = SmallText::new();
        // Cannot fail: every value formatted here fits (see above).
        let _ = write!(t, "{v}");
        t
    }

    /// The IP as `Display` writes it; IPv4 by hand (the formatting
    /// machinery cost more than the rest of the attribute).
    pub fn ip(ip: IpAddr) -> SmallText {
        let IpAddr::V4(v4) = ip else {
            return SmallText::of(ip);
        };
        let mut t = SmallText::new();
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                t.push(b'.');
            }
            if octet >= 100 {
                t.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                t.push(b'0' + octet / 10 % 10);
            }
            t.push(b'0' + octet % 10);
        }
        t
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Write for SmallText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Calls `f` with each of the span's attributes, in the order they are
/// exported. Values that need formatting are formatted on the stack.
pub fn for_each_attribute(s: &Span, f: &mut impl FnMut(&'static str, Value<'_>)) {
    match &s.detail {
        SpanDetail::Http(h) => http::for_each_attribute(s, h, f),
        SpanDetail::Db(d) => db::for_each_attribute(s, d, f),
        SpanDetail::Rpc(r) => rpc::for_each_attribute(s, r, f),
    }
    if s.partial {
        f("ratatosk.partial", Value::Bool(true));
    }
    match s.outcome {
        ratatosk_protocols::op::Outcome::Complete => {}
        ratatosk_protocols::op::Outcome::NoResponse => {
            f("ratatosk.outcome", Value::Str("no_response"))
        }
        ratatosk_protocols::op::Outcome::ResponseTruncated => {
            f("ratatosk.outcome", Value::Str("response_truncated"))
        }
    }
    if let Some(q) = s.queue_ns {
        f(
            "ratatosk.queue_time_ns",
            Value::Int(i64::try_from(q).unwrap_or(i64::MAX)),
        );
    }
}
