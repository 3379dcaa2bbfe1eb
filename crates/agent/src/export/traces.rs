//! Spans as OTLP: the attributes the JSON printer writes (same semconv
//! names), grouped per process resource under one `ratatosk` scope.
//!
//! Spans are written straight into protobuf bytes, the bytes prost would
//! write for the same `opentelemetry-proto` messages (a test decodes them
//! and compares with a builder of those messages): building the messages
//! cost ~25 heap allocations per span (an owned `String` per key and
//! value, IPs formatted into `String`s), which made OTLP export 5 times
//! the cost of everything else the agent does per request.

use super::proto::{
    len_field_len, put_bytes, put_fixed32, put_fixed64, put_len_header, put_varint,
    put_varint_field, varint_field_len,
};
use super::resource::{AGENT_NAME, AGENT_VERSION};
use crate::spans::attrs::{Value, for_each_attribute};
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
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    /// KeyValue
    pub const KEY: u32 = 1;
    pub const VALUE: u32 = 2;
    /// AnyValue
    pub const STRING_VALUE: u32 = 1;
    pub const BOOL_VALUE: u32 = 2;
    pub const INT_VALUE: u32 = 3;
}

/// Appends one `Span.attributes` element (a KeyValue).
fn put_attribute(out: &mut Vec<u8>, key: &str, value: Value<'_>) {
    let (any_value, value_len) = match value {
        Value::Str(v) => (len_field_len(field::STRING_VALUE, v.len()), v.len()),
        // int64 is written as its two's complement, like prost.
        Value::Int(i) => (varint_field_len(field::INT_VALUE, i as u64), 0),
        Value::Bool(b) => (varint_field_len(field::BOOL_VALUE, u64::from(b)), 0),
    };
    let kv = len_field_len(field::KEY, key.len()) + len_field_len(field::VALUE, any_value);
    if kv < 128 {
        // Every length fits one byte (the usual case): the small headers
        // go in two writes.
        out.extend_from_slice(&[
            tag(field::ATTRIBUTES),
            kv as u8,
            tag(field::KEY),
            key.len() as u8,
        ]);
        out.extend_from_slice(key.as_bytes());
        match value {
            Value::Str(v) => {
                out.extend_from_slice(&[
                    tag(field::VALUE),
                    any_value as u8,
                    tag(field::STRING_VALUE),
                    value_len as u8,
                ]);
                out.extend_from_slice(v.as_bytes());
            }
            Value::Int(i) => {
                out.extend_from_slice(&[tag(field::VALUE), any_value as u8]);
                put_varint_field(out, field::INT_VALUE, i as u64);
            }
            Value::Bool(b) => {
                out.extend_from_slice(&[tag(field::VALUE), any_value as u8]);
                put_varint_field(out, field::BOOL_VALUE, u64::from(b));
            }
        }
        return;
    }
    put_len_header(out, field::ATTRIBUTES, kv);
    put_bytes(out, field::KEY, key.as_bytes());
    put_len_header(out, field::VALUE, any_value);
    match value {
        Value::Str(v) => put_bytes(out, field::STRING_VALUE, v.as_bytes()),
        Value::Int(i) => put_varint_field(out, field::INT_VALUE, i as u64),
        Value::Bool(b) => put_varint_field(out, field::BOOL_VALUE, u64::from(b)),
    }
}

/// The one-byte key of a length-delimited field numbered below 16.
const fn tag(field: u32) -> u8 {
    (field << 3 | 2) as u8
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
    out.push(tag(field::SS_SPANS));
    // The length is known once the span is written: two bytes are kept
    // for it (a span takes 128 to 16383 bytes but for odd ones, whose
    // bytes are then moved).
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    // In field-number order, as prost writes them; fields equal to their
    // default are not written.
    put_bytes(out, field::TRACE_ID, &s.trace_id);
    put_bytes(out, field::SPAN_ID, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        put_bytes(out, field::PARENT_SPAN_ID, p);
    }
    // The name ("METHOD route", "SELECT accounts"), written in place.
    match s.name_parts() {
        (a, "") => put_bytes(out, field::NAME, a.as_bytes()),
        (a, b) => {
            put_len_header(out, field::NAME, a.len() + 1 + b.len());
            out.extend_from_slice(a.as_bytes());
            out.push(b' ');
            out.extend_from_slice(b.as_bytes());
        }
    }
    let kind = match s.kind {
        SpanKind::Server => KIND_SERVER,
        SpanKind::Client => KIND_CLIENT,
    };
    put_varint_field(out, field::KIND, kind);
    if s.start_ns != 0 {
        put_fixed64(out, field::START, s.start_ns);
    }
    if s.end_ns != 0 {
        put_fixed64(out, field::END, s.end_ns);
    }
    for_each_attribute(s, &mut |k, v| put_attribute(out, k, v));
    let code = status_code(s);
    if code == 0 {
        put_len_header(out, field::STATUS, 0);
    } else {
        // Status fields in number order: message (2), code (3).
        let message = s.status_message().unwrap_or_default();
        let message_len = if message.is_empty() {
            0
        } else {
            len_field_len(field::STATUS_MESSAGE, message.len())
        };
        put_len_header(
            out,
            field::STATUS,
            message_len + varint_field_len(field::STATUS_CODE, code),
        );
        if !message.is_empty() {
            put_bytes(out, field::STATUS_MESSAGE, message.as_bytes());
        }
        put_varint_field(out, field::STATUS_CODE, code);
    }
    put_fixed32(out, field::FLAGS, flags(s));
    let len = out.len() - at - 2;
    if (128..16384).contains(&len) {
        if let Some(b) = out.get_mut(at..at + 2) {
            b.copy_from_slice(&[(len as u8) | 0x80, (len >> 7) as u8]);
        }
    } else {
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len as u64);
        out.splice(at..at + 2, prefix);
    }
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
    use crate::spans::attrs::SmallText;
    use crate::spans::{DbSpan, HttpSpan, RpcSpan, SpanDetail};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{
        ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind as OtlpKind,
        status::StatusCode,
    };
    use prost::Message;
    use ratatosk_protocols::op::{DbDetail, DbSystem, Outcome, RpcDetail};
    use std::net::IpAddr;
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
            server: "127.0.0.1:8080".parse().unwrap(),
            client: "127.0.0.1:51234".parse().unwrap(),
            tls: false,
            outcome: Outcome::Complete,
            abort: None,
            partial: false,
            process,
            detail: SpanDetail::Http(HttpSpan {
                method: "GET",
                method_original: None,
                target: "/users/42?x=1".into(),
                route: Arc::from("/users/*"),
                scheme: "http",
                status,
                protocol_version: "1.1",
                host: Some("example.com:8080".into()),
                user_agent: Some("curl/8.0".into()),
                status_text: (status >= 500).then(|| "Service Unavailable".into()),
                request_body_size: 0,
                response_body_size: 12,
            }),
        }
    }

    /// A gRPC call of `helloworld.Greeter/SayHello` ending with `status`.
    pub fn rpc_span(process: Arc<ProcInfo>, kind: SpanKind, status: Option<u32>) -> Span {
        let mut s = span(process, 0, kind);
        s.server = "127.0.0.1:50051".parse().unwrap();
        let rpc = RpcDetail {
            method: "helloworld.Greeter/SayHello".into(),
            status,
            authority: Some("localhost:50051".into()),
            user_agent: Some("grpc-python/1.60".into()),
            http_status: 200,
            ..RpcDetail::grpc()
        };
        s.detail = SpanDetail::Rpc(RpcSpan {
            rpc,
            metric_method: Arc::from("helloworld.Greeter/SayHello"),
        });
        s
    }

    /// A client span of a PostgreSQL query.
    pub fn db_span(process: Arc<ProcInfo>, status_code: Option<&str>) -> Span {
        let mut s = span(process, 0, SpanKind::Client);
        s.server = "127.0.0.1:5432".parse().unwrap();
        let db = DbDetail {
            operation: "SELECT".into(),
            collection: Some("accounts".into()),
            namespace: Some("shop".into()),
            query_text: Some("SELECT * FROM accounts WHERE id = ?".into()),
            status_code: status_code.map(Into::into),
            returned_rows: Some(1),
            ..DbDetail::new(DbSystem::Postgresql)
        };
        s.detail = SpanDetail::Db(DbSpan {
            db,
            metric_operation: Arc::from("SELECT"),
            metric_collection: Some(Arc::from("accounts")),
        });
        s
    }

    /// The HTTP part of a test span.
    pub fn http(s: &mut Span) -> &mut HttpSpan {
        match &mut s.detail {
            SpanDetail::Http(h) => h,
            _ => panic!("not an HTTP span"),
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
        let mut attributes: Vec<KeyValue> = Vec::new();
        for_each_attribute(s, &mut |k, v| {
            attributes.push(match v {
                Value::Str(v) => kv_str(k, v),
                Value::Int(v) => kv_int(k, v),
                Value::Bool(b) => KeyValue {
                    key: k.to_string(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(AnyValue::BoolValue(b)),
                    }),
                    ..Default::default()
                },
            })
        });
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
                message: s.status_message().unwrap_or_default().to_string(),
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
            get(&client, "url.full"),
            Some(&AnyValue::StringValue(
                "http://example.com:8080/users/42?x=1".into()
            ))
        );
        assert_eq!(get(&client, "http.route"), None);
        let mut secret = span(p.clone(), 200, SpanKind::Client);
        http(&mut secret).target = "/a?token=t0k&y=2".into();
        http(&mut secret).host = None;
        assert_eq!(
            get(&convert(&secret), "url.full"),
            Some(&AnyValue::StringValue(
                "http://127.0.0.1:8080/a?token=REDACTED&y=2".into()
            ))
        );
        assert_eq!(
            get(&client, "network.peer.port"),
            Some(&AnyValue::IntValue(8080))
        );
        let e = convert(&span(p.clone(), 503, SpanKind::Server));
        assert_eq!(
            get(&e, "error.type"),
            Some(&AnyValue::StringValue("503".into()))
        );
        // A server error's reason phrase describes the status.
        assert_eq!(e.status.as_ref().unwrap().message, "Service Unavailable");
        assert_eq!(
            get(&e, "user_agent.original"),
            Some(&AnyValue::StringValue("curl/8.0".into()))
        );
        assert_eq!(client.name, "GET", "client spans are named by method");
        // A request the close left unanswered.
        let mut aborted = span(p.clone(), 0, SpanKind::Client);
        aborted.outcome = Outcome::NoResponse;
        let a = convert(&aborted);
        assert_eq!(a.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(
            get(&a, "error.type"),
            Some(&AnyValue::StringValue("no_response".into()))
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
                    let h = http(&mut s);
                    h.method = "_OTHER";
                    h.method_original = Some("PROPFIND".into());
                    h.host = None;
                    h.scheme = "https";
                    h.protocol_version = "1.0";
                    h.target = "/".into();
                    s.parent_span_id = None;
                    s.queue_ns = None;
                    s.outcome = Outcome::NoResponse;
                    s.server = "[2001:db8::1]:443".parse().unwrap();
                    s.client = "[::ffff:10.0.0.1]:50000".parse().unwrap();
                }
                if i == 2 {
                    let h = http(&mut s);
                    h.request_body_size = u64::MAX;
                    h.host = Some("[::1]:8443".into());
                    h.route = Arc::from("/ünïcode/*");
                    s.outcome = Outcome::ResponseTruncated;
                    s.start_ns = 0;
                }
                if i == 3 {
                    // Attributes longer than 127 bytes, a span longer
                    // than 16383.
                    http(&mut s).target =
                        format!("/{}?q={}", "a".repeat(20_000), "b".repeat(300)).into();
                }
                if i == 4 {
                    http(&mut s).host = Some("plain-host".into());
                    s.end_ns = 0;
                    s.queue_ns = Some(u64::MAX);
                }
                out.push(s);
            }
        }
        // Database spans: a failure, a call without reply, a cut text.
        out.push(db_span(p.clone(), Some("42P01")));
        let mut d = db_span(p.clone(), None);
        d.outcome = Outcome::NoResponse;
        if let SpanDetail::Db(db) = &mut d.detail {
            db.db.query_truncated = true;
            db.db.collection = None;
            db.db.batch_size = 3;
        }
        out.push(d);
        out
    }

    #[test]
    fn ipv4_text_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.100.9",
            "1.20.199.250",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(SmallText::ip(ip).as_str(), ip.to_string());
        }
        let v6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(SmallText::ip(v6).as_str(), v6.to_string());
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            assert_eq!(SmallText::ip(ip).as_str(), ip.to_string());
        }
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
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 12);
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
