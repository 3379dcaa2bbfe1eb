//! Spans as OTLP: the attributes the JSON printer writes (same semconv
//! names), grouped per process resource under one `ratatosk` scope.
//!
//! Spans are written straight into protobuf bytes, the bytes prost would
//! write for the same `opentelemetry-proto` messages (a test decodes them
//! and compares with a builder of those messages): building the messages
//! cost ~25 heap allocations per span (an owned `String` per key and
//! value, IPs formatted into `String`s), which made OTLP export 5 times
//! the cost of everything else the agent does per request.

use std::fmt::Write as _;

use opentelemetry_semantic_conventions::attribute as semconv;
use ratatosk_protocols::http1::Outcome;

use super::proto::{
    fixed32_field_len, fixed64_field_len, len_field_len, put_bytes, put_fixed32, put_fixed64,
    put_len_header, put_varint_field, varint_field_len,
};
use super::resource::{AGENT_NAME, AGENT_VERSION};
use crate::output::printer::host_without_port;
use crate::spans::{Span, SpanKind};

/// W3C trace flags: sampled (the sampler ran before the exporter).
const FLAG_SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is known to be remote, and is.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// `Span.SpanKind` and `Status.StatusCode` values (trace.proto).
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
const STATUS_ERROR: u64 = 2;

/// Field numbers (opentelemetry/proto: collector/trace/v1, trace/v1,
/// common/v1).
mod field {
    /// ExportTraceServiceRequest
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    /// ResourceSpans
    pub const RS_RESOURCE: u32 = 1;
    pub const RS_SCOPE_SPANS: u32 = 2;
    pub const RS_SCHEMA_URL: u32 = 3;
    /// ScopeSpans
    pub const SS_SCOPE: u32 = 1;
    pub const SS_SPANS: u32 = 2;
    /// InstrumentationScope
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    /// Span
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const PARENT_SPAN_ID: u32 = 4;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START: u32 = 7;
    pub const END: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
    /// Status
    pub const STATUS_CODE: u32 = 3;
    /// KeyValue
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
    /// AnyValue
    pub const STRING_VALUE: u32 = 1;
    pub const INT_VALUE: u32 = 3;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attr<'a> {
    pub key: &'static str,
    pub value: Value<'a>,
}

/// Most attributes a span has (every optional one present: 19).
const MAX_ATTRS: usize = 20;

/// A span's attributes, on the stack.
pub struct Attrs<'a> {
    items: [Attr<'a>; MAX_ATTRS],
    len: usize,
}

impl<'a> Attrs<'a> {
    fn push(&mut self, key: &'static str, value: Value<'a>) {
        // MAX_ATTRS counts every attribute `attributes` can add (a test
        // adds them all), so nothing is ever left out here.
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Attr { key, value };
            self.len += 1;
        }
    }

    fn str(&mut self, key: &'static str, v: &'a str) {
        self.push(key, Value::Str(v));
    }

    fn int(&mut self, key: &'static str, v: i64) {
        self.push(key, Value::Int(v));
    }

    pub fn as_slice(&self) -> &[Attr<'a>] {
        self.items.get(..self.len).unwrap_or_default()
    }
}

/// Text formatted on the stack: an IP address (at most 45 characters for
/// IPv6 with an embedded IPv4) or a status code.
pub struct SmallText {
    buf: [u8; 48],
    len: usize,
}

impl Default for SmallText {
    fn default() -> Self {
        SmallText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl SmallText {
    fn of(v: impl std::fmt::Display) -> SmallText {
        let mut t = SmallText::default();
        // Cannot fail: every value formatted here fits (see above).
        let _ = write!(t, "{v}");
        t
    }

    fn as_str(&self) -> &str {
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

/// The values of a span's attributes that must be formatted.
pub struct Texts {
    server_ip: SmallText,
    client_ip: SmallText,
    error_type: SmallText,
}

impl Texts {
    pub fn new(s: &Span) -> Texts {
        // The server's IP is needed without a Host header, and as the
        // peer of a client span.
        let server_ip = if s.host.is_none() || s.kind == SpanKind::Client {
            SmallText::of(s.server.ip())
        } else {
            SmallText::default()
        };
        Texts {
            server_ip,
            client_ip: SmallText::of(s.client.ip()),
            error_type: if s.is_error() && s.status != 0 {
                SmallText::of(s.status)
            } else {
                SmallText::default()
            },
        }
    }
}

/// The span's attributes, in the order they are exported.
pub fn attributes<'a>(s: &'a Span, t: &'a Texts) -> Attrs<'a> {
    let mut a = Attrs {
        items: [Attr {
            key: "",
            value: Value::Int(0),
        }; MAX_ATTRS],
        len: 0,
    };
    a.str(semconv::HTTP_REQUEST_METHOD, &s.method);
    if let Some(m) = &s.method_original {
        a.str(semconv::HTTP_REQUEST_METHOD_ORIGINAL, m);
    }
    a.str(semconv::URL_PATH, s.path());
    if let Some(q) = s.query() {
        a.str(semconv::URL_QUERY, q);
    }
    a.str(semconv::URL_SCHEME, s.scheme);
    a.str(semconv::HTTP_ROUTE, &s.route);
    // Semconv: only when a response was received.
    if s.status != 0 {
        a.int(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(s.status));
    }
    // The logical name the client used (Host), else the IP it reached.
    let server_address = match s.host.as_deref() {
        Some(h) => host_without_port(h),
        None => t.server_ip.as_str(),
    };
    a.str(semconv::SERVER_ADDRESS, server_address);
    a.int(semconv::SERVER_PORT, i64::from(s.server.port()));
    a.str(semconv::CLIENT_ADDRESS, t.client_ip.as_str());
    a.int(semconv::CLIENT_PORT, i64::from(s.client.port()));
    // The other end of the connection, as seen from this process.
    let (peer_ip, peer_port) = match s.kind {
        SpanKind::Server => (t.client_ip.as_str(), s.client.port()),
        SpanKind::Client => (t.server_ip.as_str(), s.server.port()),
    };
    a.str(semconv::NETWORK_PEER_ADDRESS, peer_ip);
    a.int(semconv::NETWORK_PEER_PORT, i64::from(peer_port));
    a.str(semconv::NETWORK_PROTOCOL_VERSION, s.protocol_version);
    a.int(
        semconv::HTTP_REQUEST_BODY_SIZE,
        i64::try_from(s.request_body_size).unwrap_or(i64::MAX),
    );
    a.int(
        semconv::HTTP_RESPONSE_BODY_SIZE,
        i64::try_from(s.response_body_size).unwrap_or(i64::MAX),
    );
    if s.is_error() {
        // Semconv: the status code as a string, or `_OTHER` when there
        // is none to name the failure.
        let t = if s.status != 0 {
            t.error_type.as_str()
        } else {
            "_OTHER"
        };
        a.str(semconv::ERROR_TYPE, t);
    }
    match s.outcome {
        Outcome::Complete => {}
        Outcome::NoResponse => a.str("ratatosk.outcome", "no_response"),
        Outcome::ResponseTruncated => a.str("ratatosk.outcome", "response_truncated"),
    }
    if let Some(q) = s.queue_ns {
        a.int(
            "ratatosk.queue_time_ns",
            i64::try_from(q).unwrap_or(i64::MAX),
        );
    }
    a
}

/// Length of a KeyValue message.
fn key_value_len(a: &Attr<'_>) -> usize {
    let any_value = match a.value {
        Value::Str(s) => len_field_len(field::STRING_VALUE, s.len()),
        Value::Int(i) => varint_field_len(field::INT_VALUE, i as u64),
    };
    len_field_len(field::KEY, a.key.len()) + len_field_len(field::VALUE, any_value)
}

fn put_key_value(out: &mut Vec<u8>, a: &Attr<'_>) {
    put_bytes(out, field::KEY, a.key.as_bytes());
    match a.value {
        Value::Str(s) => {
            put_len_header(
                out,
                field::VALUE,
                len_field_len(field::STRING_VALUE, s.len()),
            );
            put_bytes(out, field::STRING_VALUE, s.as_bytes());
        }
        Value::Int(i) => {
            // int64 is written as its two's complement, like prost.
            put_len_header(
                out,
                field::VALUE,
                varint_field_len(field::INT_VALUE, i as u64),
            );
            put_varint_field(out, field::INT_VALUE, i as u64);
        }
    }
}

fn flags(s: &Span) -> u32 {
    // We know where the parent lives: a server span's parent is the
    // caller (remote); a client span's is the SDK span in the process.
    FLAG_SAMPLED
        | FLAG_HAS_IS_REMOTE
        | match (s.parent_span_id, s.kind) {
            (Some(_), SpanKind::Server) => FLAG_IS_REMOTE,
            _ => 0,
        }
}

/// Semconv: HTTP spans leave the description empty; the status code says
/// what failed. Server 4xx is the client's error, not the span's
/// (`Span::is_error`). Unset is the default, so not written.
fn status_code(s: &Span) -> u64 {
    if s.is_error() { STATUS_ERROR } else { 0 }
}

/// Appends the span as an element of `ScopeSpans.spans` (key, length,
/// `Span` message). Allocates nothing but `out`'s growth.
pub fn put_span(out: &mut Vec<u8>, s: &Span) {
    let texts = Texts::new(s);
    let attrs = attributes(s, &texts);
    let attrs = attrs.as_slice();
    let name_len = s.method.len() + 1 + s.route.len();
    let kind = match s.kind {
        SpanKind::Server => KIND_SERVER,
        SpanKind::Client => KIND_CLIENT,
    };
    let code = status_code(s);
    let status_len = if code == 0 {
        0
    } else {
        varint_field_len(field::STATUS_CODE, code)
    };
    // Fields equal to their default are not written, as prost does.
    let mut len = len_field_len(field::TRACE_ID, s.trace_id.len())
        + len_field_len(field::SPAN_ID, s.span_id.len())
        + s.parent_span_id
            .map_or(0, |p| len_field_len(field::PARENT_SPAN_ID, p.len()))
        + len_field_len(field::NAME, name_len)
        + varint_field_len(field::KIND, kind)
        + if s.start_ns != 0 {
            fixed64_field_len(field::START)
        } else {
            0
        }
        + if s.end_ns != 0 {
            fixed64_field_len(field::END)
        } else {
            0
        }
        + len_field_len(field::STATUS, status_len)
        + fixed32_field_len(field::FLAGS);
    for a in attrs {
        len += len_field_len(field::ATTRIBUTES, key_value_len(a));
    }
    out.reserve(len_field_len(field::SS_SPANS, len));
    put_len_header(out, field::SS_SPANS, len);
    let start = out.len();
    // In field-number order, as prost writes them.
    put_bytes(out, field::TRACE_ID, &s.trace_id);
    put_bytes(out, field::SPAN_ID, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        put_bytes(out, field::PARENT_SPAN_ID, p);
    }
    // The name is "METHOD route", written in place.
    put_len_header(out, field::NAME, name_len);
    out.extend_from_slice(s.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(s.route.as_bytes());
    put_varint_field(out, field::KIND, kind);
    if s.start_ns != 0 {
        put_fixed64(out, field::START, s.start_ns);
    }
    if s.end_ns != 0 {
        put_fixed64(out, field::END, s.end_ns);
    }
    for a in attrs {
        put_len_header(out, field::ATTRIBUTES, key_value_len(a));
        put_key_value(out, a);
    }
    put_len_header(out, field::STATUS, status_len);
    if code != 0 {
        put_varint_field(out, field::STATUS_CODE, code);
    }
    put_fixed32(out, field::FLAGS, flags(s));
    debug_assert_eq!(out.len() - start, len, "span length computed wrong");
}

fn scope_len() -> usize {
    len_field_len(field::SCOPE_NAME, AGENT_NAME.len())
        + len_field_len(field::SCOPE_VERSION, AGENT_VERSION.len())
}

fn scope_spans_len(spans_len: usize) -> usize {
    len_field_len(field::SS_SCOPE, scope_len()) + spans_len
}

fn resource_spans_len(resource: &[u8], spans_len: usize) -> usize {
    len_field_len(field::RS_RESOURCE, resource.len())
        + len_field_len(field::RS_SCOPE_SPANS, scope_spans_len(spans_len))
        + len_field_len(
            field::RS_SCHEMA_URL,
            opentelemetry_semantic_conventions::SCHEMA_URL.len(),
        )
}

/// Bytes one `ResourceSpans` element of a request takes, for a resource
/// (its encoded `Resource`) and `spans_len` bytes of `put_span` output.
pub fn resource_spans_field_len(resource: &[u8], spans_len: usize) -> usize {
    len_field_len(
        field::REQUEST_RESOURCE_SPANS,
        resource_spans_len(resource, spans_len),
    )
}

/// Writes one `ResourceSpans` element of an `ExportTraceServiceRequest`
/// (one resource, the `ratatosk` scope) around `spans_len` bytes of
/// spans that `put_spans` appends.
pub fn put_resource_spans(
    out: &mut Vec<u8>,
    resource: &[u8],
    spans_len: usize,
    put_spans: impl FnOnce(&mut Vec<u8>),
) {
    put_len_header(
        out,
        field::REQUEST_RESOURCE_SPANS,
        resource_spans_len(resource, spans_len),
    );
    put_bytes(out, field::RS_RESOURCE, resource);
    put_len_header(out, field::RS_SCOPE_SPANS, scope_spans_len(spans_len));
    put_len_header(out, field::SS_SCOPE, scope_len());
    put_bytes(out, field::SCOPE_NAME, AGENT_NAME.as_bytes());
    put_bytes(out, field::SCOPE_VERSION, AGENT_VERSION.as_bytes());
    let before = out.len();
    put_spans(out);
    debug_assert_eq!(out.len() - before, spans_len, "spans length given wrong");
    put_bytes(
        out,
        field::RS_SCHEMA_URL,
        opentelemetry_semantic_conventions::SCHEMA_URL.as_bytes(),
    );
}

/// The `ratatosk` instrumentation scope (metrics use it as a message).
pub fn scope() -> opentelemetry_proto::tonic::common::v1::InstrumentationScope {
    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
        name: AGENT_NAME.to_string(),
        version: AGENT_VERSION.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::discovery::ProcInfo;
    use crate::export::resource::ProcessResource;
    use crate::export::resource::kv_int;
    use crate::export::resource::kv_str;
    use crate::export::resource::tests::proc_info;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind as OtlpKind,
        status::StatusCode,
    };
    use prost::Message;
    use std::sync::Arc;

    pub fn span(process: Arc<ProcInfo>, status: u16, kind: SpanKind) -> Span {
        Span {
            kind,
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            sampled: true,
            start_ns: 1_000,
            end_ns: 5_000_000,
            queue_ns: Some(700),
            method: "GET".into(),
            method_original: None,
            target: "/users/42?x=1".into(),
            route: Arc::from("/users/*"),
            scheme: "http",
            status,
            protocol_version: "1.1",
            server: "127.0.0.1:8080".parse().unwrap(),
            client: "127.0.0.1:51234".parse().unwrap(),
            host: Some("example.com:8080".into()),
            request_body_size: 0,
            response_body_size: 12,
            outcome: Outcome::Complete,
            process,
        }
    }

    /// The span as the exporter writes it, decoded by prost.
    fn convert(s: &Span) -> OtlpSpan {
        let mut b = Vec::new();
        put_span(&mut b, s);
        ScopeSpans::decode(b.as_slice()).unwrap().spans.remove(0)
    }

    /// The builder of opentelemetry-proto messages the exporter used
    /// before it wrote bytes itself: the reference the bytes must equal.
    fn reference_span(s: &Span) -> OtlpSpan {
        let texts = Texts::new(s);
        let attributes = attributes(s, &texts)
            .as_slice()
            .iter()
            .map(|a| match a.value {
                Value::Str(v) => kv_str(a.key, v),
                Value::Int(v) => kv_int(a.key, v),
            })
            .collect::<Vec<KeyValue>>();
        OtlpSpan {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: flags(s),
            name: s.name(),
            kind: match s.kind {
                SpanKind::Server => OtlpKind::Server,
                SpanKind::Client => OtlpKind::Client,
            } as i32,
            start_time_unix_nano: s.start_ns,
            end_time_unix_nano: s.end_ns,
            attributes,
            status: Some(Status {
                message: String::new(),
                code: if s.is_error() {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                } as i32,
            }),
            ..Default::default()
        }
    }

    /// The reference request: one `ResourceSpans` per process in order of
    /// first appearance, one scope each.
    fn reference_request(spans: &[(Arc<ProcessResource>, &Span)]) -> ExportTraceServiceRequest {
        let mut out: Vec<(Arc<ProcessResource>, Vec<OtlpSpan>)> = Vec::new();
        for (r, s) in spans {
            match out.iter_mut().find(|(k, _)| Arc::ptr_eq(k, r)) {
                Some((_, v)) => v.push(reference_span(s)),
                None => out.push((r.clone(), vec![reference_span(s)])),
            }
        }
        ExportTraceServiceRequest {
            resource_spans: out
                .into_iter()
                .map(|(r, spans)| ResourceSpans {
                    resource: Some(r.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope()),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: opentelemetry_semantic_conventions::SCHEMA_URL.to_string(),
                })
                .collect(),
        }
    }

    /// A request written the way the batcher writes one.
    fn request_bytes(spans: &[(Arc<ProcessResource>, &Span)]) -> Vec<u8> {
        let mut groups: Vec<(Arc<ProcessResource>, Vec<u8>)> = Vec::new();
        for (r, s) in spans {
            let i = match groups.iter().position(|(k, _)| Arc::ptr_eq(k, r)) {
                Some(i) => i,
                None => {
                    groups.push((r.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            put_span(&mut groups[i].1, s);
        }
        let mut out = Vec::new();
        for (r, b) in &groups {
            put_resource_spans(&mut out, &r.encoded, b.len(), |o| o.extend_from_slice(b));
        }
        let expected: usize = groups
            .iter()
            .map(|(r, b)| resource_spans_field_len(&r.encoded, b.len()))
            .sum();
        assert_eq!(out.len(), expected);
        out
    }

    fn get<'a>(s: &'a OtlpSpan, k: &str) -> Option<&'a AnyValue> {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn converts_a_server_span() {
        let p = Arc::new(proc_info(7, "python3"));
        let o = convert(&span(p.clone(), 200, SpanKind::Server));
        assert_eq!(o.trace_id, vec![1; 16]);
        assert_eq!(o.span_id, vec![2; 8]);
        assert_eq!(o.parent_span_id, vec![3; 8]);
        assert_eq!(o.name, "GET /users/*");
        assert_eq!(o.kind, OtlpKind::Server as i32);
        assert_eq!(
            (o.start_time_unix_nano, o.end_time_unix_nano),
            (1_000, 5_000_000)
        );
        assert_eq!(o.flags, 0x301);
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        let s = |v: &str| Some(AnyValue::StringValue(v.into()));
        assert_eq!(get(&o, "http.request.method").cloned(), s("GET"));
        assert_eq!(get(&o, "url.path").cloned(), s("/users/42"));
        assert_eq!(get(&o, "url.query").cloned(), s("x=1"));
        assert_eq!(get(&o, "http.route").cloned(), s("/users/*"));
        assert_eq!(get(&o, "server.address").cloned(), s("example.com"));
        assert_eq!(get(&o, "client.address").cloned(), s("127.0.0.1"));
        assert_eq!(
            get(&o, "network.peer.port"),
            Some(&AnyValue::IntValue(51234))
        );
        assert_eq!(
            get(&o, "http.response.status_code"),
            Some(&AnyValue::IntValue(200))
        );
        assert_eq!(
            get(&o, "ratatosk.queue_time_ns"),
            Some(&AnyValue::IntValue(700))
        );
        assert_eq!(get(&o, "error.type"), None);
        // Same attribute names as the JSON printer.
        let json = crate::output::printer::json_value(&span(p, 200, SpanKind::Server));
        for k in json["attributes"].as_object().unwrap().keys() {
            assert!(get(&o, k).is_some(), "{k} missing");
        }
    }

    #[test]
    fn error_status_per_semconv() {
        let p = Arc::new(proc_info(7, "python3"));
        let code = |status, kind| convert(&span(p.clone(), status, kind)).status.unwrap().code;
        assert_eq!(code(404, SpanKind::Server), StatusCode::Unset as i32);
        assert_eq!(code(503, SpanKind::Server), StatusCode::Error as i32);
        assert_eq!(code(404, SpanKind::Client), StatusCode::Error as i32);
        let none = convert(&span(p.clone(), 0, SpanKind::Client));
        assert_eq!(none.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(get(&none, "http.response.status_code"), None);
        assert_eq!(
            get(&none, "error.type"),
            Some(&AnyValue::StringValue("_OTHER".into()))
        );
        let client = convert(&span(p.clone(), 200, SpanKind::Client));
        assert_eq!(client.kind, OtlpKind::Client as i32);
        assert_eq!(
            get(&client, "network.peer.port"),
            Some(&AnyValue::IntValue(8080))
        );
        let e = convert(&span(p, 503, SpanKind::Server));
        assert_eq!(
            get(&e, "error.type"),
            Some(&AnyValue::StringValue("503".into()))
        );
    }

    /// Spans covering every optional field and both kinds: unknown
    /// method, no host (IP as server.address), IPv6 and v4-mapped
    /// addresses, no parent, zero times, huge sizes, both outcomes.
    fn varied(p: &Arc<ProcInfo>) -> Vec<Span> {
        let mut out = Vec::new();
        for (i, status) in [200u16, 0, 404, 503, 101].into_iter().enumerate() {
            for kind in [SpanKind::Server, SpanKind::Client] {
                let mut s = span(p.clone(), status, kind);
                s.span_id = [i as u8; 8];
                if i % 2 == 1 {
                    s.method = "_OTHER".into();
                    s.method_original = Some("PROPFIND".into());
                    s.host = None;
                    s.parent_span_id = None;
                    s.queue_ns = None;
                    s.outcome = Outcome::NoResponse;
                    s.server = "[2001:db8::1]:443".parse().unwrap();
                    s.client = "[::ffff:10.0.0.1]:50000".parse().unwrap();
                    s.scheme = "https";
                    s.protocol_version = "1.0";
                    s.target = "/".into();
                }
                if i == 2 {
                    s.outcome = Outcome::ResponseTruncated;
                    s.request_body_size = u64::MAX;
                    s.start_ns = 0;
                    s.host = Some("[::1]:8443".into());
                    s.route = Arc::from("/ünïcode/*");
                }
                if i == 4 {
                    s.end_ns = 0;
                    s.queue_ns = Some(u64::MAX);
                    s.host = Some("plain-host".into());
                }
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn every_attribute_fits() {
        let p = Arc::new(proc_info(7, "python3"));
        // A client's 404: a status code and an error type; every optional
        // attribute present.
        let mut s = span(p, 404, SpanKind::Client);
        s.method_original = Some("PROPFIND".into());
        s.outcome = Outcome::ResponseTruncated;
        let t = Texts::new(&s);
        let n = attributes(&s, &t).as_slice().len();
        assert_eq!(n, 19);
        assert!(n <= MAX_ATTRS);
    }

    /// The bytes equal prost's encoding of the messages the previous
    /// builder made, for every kind of span, grouped per process.
    #[test]
    fn bytes_equal_the_message_builder() {
        let pa = Arc::new(proc_info(1, "a"));
        let pb = Arc::new(proc_info(2, "b"));
        let host = crate::export::resource::Host {
            name: "box".into(),
            id: Some("id".into()),
        };
        let res = |p: &Arc<ProcInfo>| {
            Arc::new(ProcessResource::new(
                p.clone(),
                crate::export::resource::process_resource(
                    p,
                    &Default::default(),
                    &host,
                    &Default::default(),
                ),
            ))
        };
        let (ra, rb) = (res(&pa), res(&pb));
        let empty = Arc::new(ProcessResource::new(pa.clone(), Default::default()));
        let (sa, sb) = (varied(&pa), varied(&pb));
        let mut batch: Vec<(Arc<ProcessResource>, &Span)> = Vec::new();
        for (i, (a, b)) in sa.iter().zip(&sb).enumerate() {
            batch.push((ra.clone(), a));
            batch.push((
                if i % 3 == 0 {
                    empty.clone()
                } else {
                    rb.clone()
                },
                b,
            ));
        }
        for s in sa.iter().chain(&sb) {
            let mut one = Vec::new();
            put_span(&mut one, s);
            let wrapped = ScopeSpans {
                spans: vec![reference_span(s)],
                ..Default::default()
            };
            assert_eq!(one, wrapped.encode_to_vec(), "{s:?}");
        }
        let ours = request_bytes(&batch);
        let theirs = reference_request(&batch);
        assert_eq!(ours, theirs.encode_to_vec());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).unwrap();
        assert_eq!(decoded, theirs);
        assert_eq!(decoded.resource_spans.len(), 3);
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 10);
        assert_eq!(
            decoded.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "ratatosk"
        );
    }
}
