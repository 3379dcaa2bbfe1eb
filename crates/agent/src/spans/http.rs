//! The HTTP family: span names, error rule and attributes of HTTP
//! requests (OpenTelemetry HTTP semantic conventions).

use opentelemetry_semantic_conventions::attribute as semconv;
use ratatosk_protocols::op::Outcome;

use super::attrs::{SmallText, Value};
use super::redact::{DEFAULT_REDACTED_KEYS, redact_query};
use super::{HttpSpan, Span, SpanKind};
use crate::output::printer::host_without_port;

/// Server spans are `METHOD route`; client spans `METHOD` (the
/// conventions name them by method: a client knows no route).
pub fn name_parts(kind: SpanKind, h: &HttpSpan) -> (&str, &str) {
    match kind {
        SpanKind::Server => (h.method, &h.route),
        SpanKind::Client => (h.method, ""),
    }
}

/// 5xx is an error for servers; 4xx too for clients; no response at all
/// is an error.
pub fn is_error(kind: SpanKind, status: u16) -> bool {
    match kind {
        _ if status == 0 => true,
        SpanKind::Server => status >= 500,
        SpanKind::Client => status >= 400,
    }
}

/// The HTTP attributes of `s`, in export order.
pub fn for_each_attribute(s: &Span, h: &HttpSpan, f: &mut impl FnMut(&'static str, Value<'_>)) {
    f(semconv::HTTP_REQUEST_METHOD, Value::Str(h.method));
    if let Some(m) = &h.method_original {
        f(semconv::HTTP_REQUEST_METHOD_ORIGINAL, Value::Str(m));
    }
    f(semconv::URL_PATH, Value::Str(h.path()));
    // Values of keys that carry secrets never leave (semconv's rule).
    let query = h.query().map(|q| redact_query(q, DEFAULT_REDACTED_KEYS));
    if let Some(q) = &query {
        f(semconv::URL_QUERY, Value::Str(q));
    }
    f(semconv::URL_SCHEME, Value::Str(h.scheme));
    // No route (a 404 on a path no pattern names): none exported.
    if s.kind == SpanKind::Server && !h.route.is_empty() {
        f(semconv::HTTP_ROUTE, Value::Str(&h.route));
    }
    if s.kind == SpanKind::Client {
        // The absolute URL the client asked for, its query redacted.
        f(
            semconv::URL_FULL,
            Value::Str(&url_full(s, h, query.as_deref())),
        );
    }
    // Semconv: only when a response was received.
    if h.status != 0 {
        f(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            Value::Int(i64::from(h.status)),
        );
    }
    // The server's IP is needed without a Host header, and as the peer
    // of a client span.
    let server_ip = if h.host.is_none() || s.kind == SpanKind::Client {
        SmallText::ip(s.server.ip())
    } else {
        SmallText::new()
    };
    let client_ip = SmallText::ip(s.client.ip());
    // The logical name the client used (Host), else the IP it reached.
    let server_address = match h.host.as_deref() {
        Some(host) => host_without_port(host),
        None => server_ip.as_str(),
    };
    f(semconv::SERVER_ADDRESS, Value::Str(server_address));
    f(semconv::SERVER_PORT, Value::Int(i64::from(s.server.port())));
    f(semconv::CLIENT_ADDRESS, Value::Str(client_ip.as_str()));
    f(semconv::CLIENT_PORT, Value::Int(i64::from(s.client.port())));
    // The other end of the connection, as seen from this process.
    let (peer_ip, peer_port) = match s.kind {
        SpanKind::Server => (client_ip.as_str(), s.client.port()),
        SpanKind::Client => (server_ip.as_str(), s.server.port()),
    };
    f(semconv::NETWORK_PEER_ADDRESS, Value::Str(peer_ip));
    f(semconv::NETWORK_PEER_PORT, Value::Int(i64::from(peer_port)));
    f(
        semconv::NETWORK_PROTOCOL_VERSION,
        Value::Str(h.protocol_version),
    );
    if let Some(ua) = &h.user_agent {
        f(semconv::USER_AGENT_ORIGINAL, Value::Str(ua));
    }
    f(
        semconv::HTTP_REQUEST_BODY_SIZE,
        Value::Int(i64::try_from(h.request_body_size).unwrap_or(i64::MAX)),
    );
    f(
        semconv::HTTP_RESPONSE_BODY_SIZE,
        Value::Int(i64::try_from(h.response_body_size).unwrap_or(i64::MAX)),
    );
    if is_error(s.kind, h.status) {
        // Semconv: the status code as a string, or `_OTHER` when there
        // is none to name the failure.
        if h.status != 0 {
            f(
                semconv::ERROR_TYPE,
                Value::Str(SmallText::of(h.status).as_str()),
            );
        } else {
            f(semconv::ERROR_TYPE, Value::Str(failure_without_status(s)));
        }
    }
}

/// `error.type` of an operation that got no status: what the protocol
/// said ended it (an HTTP/2 stream reset), else what the outcome tells.
pub fn failure_without_status(s: &Span) -> &'static str {
    s.abort.unwrap_or_else(|| no_status_error(s.outcome))
}

/// `error.type` of a request that got no status: the connection closed
/// before a response, or a response whose status was never seen.
pub fn no_status_error(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::NoResponse => "no_response",
        Outcome::Complete | Outcome::ResponseTruncated => "_OTHER",
    }
}

/// `scheme://host[:port]/path[?query]` of a client request: the Host the
/// client sent (else the address it connected to) and the target's path;
/// an absolute-form target already names its authority.
fn url_full(s: &Span, h: &HttpSpan, query: Option<&str>) -> String {
    let authority = match h.host.as_deref() {
        Some(host) => host.to_string(),
        None => {
            let ip = SmallText::ip(s.server.ip());
            match s.server {
                std::net::SocketAddr::V6(_) => format!("[{}]:{}", ip.as_str(), s.server.port()),
                std::net::SocketAddr::V4(_) => format!("{}:{}", ip.as_str(), s.server.port()),
            }
        }
    };
    let mut url = format!("{}://{}{}", h.scheme, authority, h.path());
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}
