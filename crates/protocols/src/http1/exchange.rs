//! The unit the agent reports: one request paired with its response.

use compact_str::CompactString;

use super::traceparent::TraceParent;
pub use crate::op::Outcome;
use crate::parse::Role;

/// One request and its response on an HTTP/1 connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Server if the request was read by the observed process.
    pub role: crate::parse::Role,
    pub method: CompactString,
    /// Raw request-target, possibly cut at the target length limit.
    pub target: CompactString,
    pub minor_version: u8,
    pub host: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    pub traceparent: Option<TraceParent>,
    /// Final status; 0 when no response was seen.
    pub status: u16,
    /// Reason phrase of a 5xx response.
    pub status_text: Option<CompactString>,
    /// Timestamp of the segment holding the first request byte.
    pub request_start_ns: u64,
    /// Timestamp of the segment holding the last request byte seen.
    pub request_end_ns: u64,
    /// Timestamp of the segment holding the first byte of the final
    /// response (interim 1xx responses are not counted); 0 if none.
    pub response_start_ns: u64,
    /// Timestamp of the segment holding the last response byte seen; 0 if
    /// no response.
    pub response_end_ns: u64,
    /// Request payload bytes (decoded size for chunked bodies).
    pub request_body_size: u64,
    /// Response payload bytes (decoded size for chunked bodies).
    pub response_body_size: u64,
    pub outcome: Outcome,
    /// The request asked for `Upgrade: h2c` (with a 101, the connection
    /// continues in HTTP/2 and this request is its stream 1).
    pub upgrade_h2c: bool,
}

impl Exchange {
    /// Path part of the target: see [`target_path`].
    pub fn path(&self) -> &str {
        target_path(&self.target)
    }

    /// Query part of the target: see [`target_query`].
    pub fn query(&self) -> Option<&str> {
        target_query(&self.target)
    }

    /// Whether the observed process served (true) or issued the request.
    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }
}

/// Path part of a request-target: no query, and no scheme/authority for
/// absolute-form targets (`http://h/p?q` gives `/p`).
pub fn target_path(target: &str) -> &str {
    // Origin form (`/p?q`), by far the most common, needs no scheme search.
    let (rest, absolute) = if target.starts_with('/') {
        (target, false)
    } else {
        match strip_scheme_authority(target) {
            Some(rest) => (rest, true),
            None => (target, false),
        }
    };
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if absolute && path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Query part of a request-target (after the first `?`, without fragment).
pub fn target_query(target: &str) -> Option<&str> {
    let (_, q) = target.split_once('?')?;
    q.split('#').next()
}

/// For an absolute-form target, the part after `scheme://authority`.
fn strip_scheme_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(end..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_target(target: &str) -> Exchange {
        Exchange {
            role: Role::Server,
            method: "GET".into(),
            target: target.into(),
            minor_version: 1,
            host: None,
            user_agent: None,
            traceparent: None,
            status: 200,
            status_text: None,
            request_start_ns: 1,
            request_end_ns: 1,
            response_start_ns: 2,
            response_end_ns: 2,
            request_body_size: 0,
            response_body_size: 0,
            outcome: Outcome::Complete,
            upgrade_h2c: false,
        }
    }

    #[test]
    fn path_and_query() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/", "/", None),
            ("/a/b?x=1&y=2", "/a/b", Some("x=1&y=2")),
            ("/a?", "/a", Some("")),
            ("/a?q#frag", "/a", Some("q")),
            ("/a?x=http://b/c", "/a", Some("x=http://b/c")),
            ("http://h:8080/p/q?z", "/p/q", Some("z")),
            ("https://h", "/", None),
            ("HTTP://h?x", "/", Some("x")),
            ("*", "*", None),
            ("example.com:443", "example.com:443", None),
            (
                "/redirect?to=https://x/y",
                "/redirect",
                Some("to=https://x/y"),
            ),
            ("", "", None),
        ];
        for &(target, path, query) in cases {
            let x = with_target(target);
            assert_eq!((x.path(), x.query()), (path, query), "{target}");
        }
        assert!(with_target("/").is_server());
    }
}
