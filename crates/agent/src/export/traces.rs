//! Spans as OTLP: the attributes the JSON printer writes (same semconv
//! names), grouped per process resource under one `ratatosk` scope.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind as OtlpKind,
    status::StatusCode,
};
use opentelemetry_semantic_conventions::attribute as semconv;
use ratatosk_protocols::http1::Outcome;

use super::resource::{AGENT_NAME, AGENT_VERSION, ProcessResource, kv_int, kv_str};
use crate::output::printer::host_without_port;
use crate::spans::{Span, SpanKind};

/// W3C trace flags: sampled (the sampler ran before the exporter).
const FLAG_SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is known to be remote, and is.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: AGENT_NAME.to_string(),
        version: AGENT_VERSION.to_string(),
        ..Default::default()
    }
}

pub fn attributes(s: &Span) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(18);
    a.push(kv_str(semconv::HTTP_REQUEST_METHOD, &s.method));
    if let Some(m) = &s.method_original {
        a.push(kv_str(semconv::HTTP_REQUEST_METHOD_ORIGINAL, m));
    }
    a.push(kv_str(semconv::URL_PATH, s.path()));
    if let Some(q) = s.query() {
        a.push(kv_str(semconv::URL_QUERY, q));
    }
    a.push(kv_str(semconv::URL_SCHEME, s.scheme));
    a.push(kv_str(semconv::HTTP_ROUTE, &*s.route));
    // Semconv: only when a response was received.
    if s.status != 0 {
        a.push(kv_int(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(s.status),
        ));
    }
    // The logical name the client used (Host), else the IP it reached.
    let server_address = s
        .host
        .as_deref()
        .map(host_without_port)
        .unwrap_or_else(|| s.server.ip().to_string());
    a.push(kv_str(semconv::SERVER_ADDRESS, server_address));
    a.push(kv_int(semconv::SERVER_PORT, i64::from(s.server.port())));
    a.push(kv_str(semconv::CLIENT_ADDRESS, s.client.ip().to_string()));
    a.push(kv_int(semconv::CLIENT_PORT, i64::from(s.client.port())));
    // The other end of the connection, as seen from this process.
    let peer = match s.kind {
        SpanKind::Server => s.client,
        SpanKind::Client => s.server,
    };
    a.push(kv_str(semconv::NETWORK_PEER_ADDRESS, peer.ip().to_string()));
    a.push(kv_int(semconv::NETWORK_PEER_PORT, i64::from(peer.port())));
    a.push(kv_str(
        semconv::NETWORK_PROTOCOL_VERSION,
        s.protocol_version,
    ));
    a.push(kv_int(
        semconv::HTTP_REQUEST_BODY_SIZE,
        i64::try_from(s.request_body_size).unwrap_or(i64::MAX),
    ));
    a.push(kv_int(
        semconv::HTTP_RESPONSE_BODY_SIZE,
        i64::try_from(s.response_body_size).unwrap_or(i64::MAX),
    ));
    if s.is_error() {
        // Semconv: the status code as a string, or `_OTHER` when there
        // is none to name the failure.
        let t = if s.status != 0 {
            s.status.to_string()
        } else {
            "_OTHER".to_string()
        };
        a.push(kv_str(semconv::ERROR_TYPE, t));
    }
    match s.outcome {
        Outcome::Complete => {}
        Outcome::NoResponse => a.push(kv_str("ratatosk.outcome", "no_response")),
        Outcome::ResponseTruncated => a.push(kv_str("ratatosk.outcome", "response_truncated")),
    }
    if let Some(q) = s.queue_ns {
        a.push(kv_int(
            "ratatosk.queue_time_ns",
            i64::try_from(q).unwrap_or(i64::MAX),
        ));
    }
    a
}

pub fn convert(s: &Span) -> OtlpSpan {
    OtlpSpan {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        // We know where the parent lives: a server span's parent is the
        // caller (remote); a client span's is the SDK span in the process.
        flags: FLAG_SAMPLED
            | FLAG_HAS_IS_REMOTE
            | match (s.parent_span_id, s.kind) {
                (Some(_), SpanKind::Server) => FLAG_IS_REMOTE,
                _ => 0,
            },
        name: s.name(),
        kind: match s.kind {
            SpanKind::Server => OtlpKind::Server,
            SpanKind::Client => OtlpKind::Client,
        } as i32,
        start_time_unix_nano: s.start_ns,
        end_time_unix_nano: s.end_ns,
        attributes: attributes(s),
        // Semconv: HTTP spans leave the description empty; the status
        // code says what failed. Server 4xx is the client's error, not
        // the span's (`Span::is_error`).
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

/// One request from queued spans: one `ResourceSpans` per process (in
/// order of first appearance), one scope each.
pub fn request(spans: Vec<(Arc<ProcessResource>, OtlpSpan)>) -> ExportTraceServiceRequest {
    let mut out: Vec<(Arc<ProcessResource>, Vec<OtlpSpan>)> = Vec::new();
    for (r, s) in spans {
        // Few processes per batch: a linear scan beats hashing here.
        match out.iter_mut().find(|(k, _)| Arc::ptr_eq(k, &r)) {
            Some((_, v)) => v.push(s),
            None => out.push((r, vec![s])),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::discovery::ProcInfo;
    use crate::export::resource::tests::proc_info;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

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

    fn get<'a>(s: &'a OtlpSpan, k: &str) -> Option<&'a Value> {
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
        assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        let s = |v: &str| Some(Value::StringValue(v.into()));
        assert_eq!(get(&o, "http.request.method").cloned(), s("GET"));
        assert_eq!(get(&o, "url.path").cloned(), s("/users/42"));
        assert_eq!(get(&o, "url.query").cloned(), s("x=1"));
        assert_eq!(get(&o, "http.route").cloned(), s("/users/*"));
        assert_eq!(get(&o, "server.address").cloned(), s("example.com"));
        assert_eq!(get(&o, "network.peer.port"), Some(&Value::IntValue(51234)));
        assert_eq!(
            get(&o, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
        assert_eq!(
            get(&o, "ratatosk.queue_time_ns"),
            Some(&Value::IntValue(700))
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
            Some(&Value::StringValue("_OTHER".into()))
        );
        let client = convert(&span(p, 200, SpanKind::Client));
        assert_eq!(client.kind, OtlpKind::Client as i32);
        assert_eq!(
            get(&client, "network.peer.port"),
            Some(&Value::IntValue(8080))
        );
    }

    #[test]
    fn groups_by_process() {
        let a = Arc::new(ProcessResource {
            pid: 1,
            proc: Arc::new(proc_info(1, "a")),
            resource: Default::default(),
        });
        let b = Arc::new(ProcessResource {
            pid: 2,
            proc: Arc::new(proc_info(2, "b")),
            resource: Default::default(),
        });
        let s = OtlpSpan::default();
        let req = request(vec![
            (a.clone(), s.clone()),
            (b.clone(), s.clone()),
            (a, s.clone()),
        ]);
        assert_eq!(req.resource_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(req.resource_spans[1].scope_spans[0].spans.len(), 1);
        assert_eq!(
            req.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "ratatosk"
        );
    }
}
