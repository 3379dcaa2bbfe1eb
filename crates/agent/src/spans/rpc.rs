//! The RPC family (gRPC over HTTP/2): span names, error rule and
//! attributes (OpenTelemetry RPC semantic conventions, as of the stable
//! `rpc.system.name` / `rpc.response.status_code` naming).

use ratatosk_protocols::op::{Outcome, grpc_status_name};

use super::attrs::{SmallText, Value};
use super::{RpcSpan, Span, SpanKind};

/// Status codes a gRPC server reports as its own failure (the
/// conventions' rule); a client treats every non-OK status as an error.
const SERVER_ERRORS: [u32; 6] = [
    2,  // UNKNOWN
    4,  // DEADLINE_EXCEEDED
    12, // UNIMPLEMENTED
    13, // INTERNAL
    14, // UNAVAILABLE
    15, // DATA_LOSS
];

/// `package.Service/Method`; the system name when the method is unknown
/// (its header block was lost).
pub fn name_parts(r: &RpcSpan) -> (&str, &str) {
    if r.rpc.method.is_empty() {
        (r.rpc.system.as_str(), "")
    } else {
        (&r.rpc.method, "")
    }
}

/// The `rpc.response.status_code` value: the status name, or the number
/// when it is outside the known codes.
pub fn status_text(code: u32) -> SmallText {
    match grpc_status_name(code) {
        Some(name) => SmallText::of(name),
        None => SmallText::of(code),
    }
}

/// A call failed when its status says so (by side), or when it ended
/// without a status (reset, closed, never answered).
pub fn is_error(s: &Span, r: &RpcSpan) -> bool {
    match r.rpc.status {
        None => true,
        Some(0) => false,
        Some(code) => match s.kind {
            SpanKind::Client => true,
            SpanKind::Server => SERVER_ERRORS.contains(&code),
        },
    }
}

/// `error.type`: the status name of a non-OK call; the stream's abort
/// reason or `no_response` when no status came.
pub fn error_type(s: &Span, r: &RpcSpan) -> Option<SmallText> {
    match r.rpc.status {
        Some(0) => None,
        Some(code) => Some(status_text(code)),
        None => Some(SmallText::of(super::http::failure_without_status(s))),
    }
}

/// The RPC attributes of `s`, in export order.
pub fn for_each_attribute(s: &Span, r: &RpcSpan, f: &mut impl FnMut(&'static str, Value<'_>)) {
    let rpc = &r.rpc;
    f("rpc.system.name", Value::Str(rpc.system.as_str()));
    if !rpc.method.is_empty() {
        f("rpc.method", Value::Str(&rpc.method));
    }
    if let Some(code) = rpc.status {
        f(
            "rpc.response.status_code",
            Value::Str(status_text(code).as_str()),
        );
    }
    if let Some(e) = error_type(s, r) {
        f("error.type", Value::Str(e.as_str()));
    }
    let server_ip = SmallText::ip(s.server.ip());
    // The logical name the client used (`:authority`), else the IP.
    let server_address = match rpc.authority.as_deref() {
        Some(a) => crate::output::printer::host_without_port(a),
        None => server_ip.as_str(),
    };
    f("server.address", Value::Str(server_address));
    f("server.port", Value::Int(i64::from(s.server.port())));
    let (peer, peer_port) = match s.kind {
        SpanKind::Server => (SmallText::ip(s.client.ip()), s.client.port()),
        SpanKind::Client => (server_ip, s.server.port()),
    };
    f("network.peer.address", Value::Str(peer.as_str()));
    f("network.peer.port", Value::Int(i64::from(peer_port)));
    f("network.protocol.name", Value::Str("http"));
    f("network.protocol.version", Value::Str("2"));
    if let Some(ua) = &rpc.user_agent {
        f("user_agent.original", Value::Str(ua));
    }
}

/// What the printer shows as the call's status.
pub fn printed_status(s: &Span, r: &RpcSpan) -> String {
    match (r.rpc.status, s.abort, s.outcome) {
        (Some(code), _, _) => status_text(code).as_str().to_string(),
        (None, Some(abort), _) => abort.to_string(),
        (None, None, Outcome::NoResponse) => "no-response".to_string(),
        (None, None, _) => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::rpc_span;
    use crate::red::{Instrument, LabelValue, Labels};
    use crate::spans::SpanDetail;
    use crate::spans::attrs::for_each_attribute;

    fn attrs(s: &Span) -> HashMap<&'static str, String> {
        let mut m = HashMap::new();
        for_each_attribute(s, &mut |k, v| {
            let v = match v {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
            };
            m.insert(k, v);
        });
        m
    }

    fn labels(s: &Span) -> (Instrument, HashMap<&'static str, String>) {
        let (i, l) = Labels::of(s).unwrap();
        let mut m = HashMap::new();
        l.for_each(&mut |k, v| {
            let v = match v {
                LabelValue::Str(s) => s.to_string(),
                LabelValue::Int(i) => i.to_string(),
            };
            m.insert(k, v);
        });
        (i, m)
    }

    #[test]
    fn ok_call_names_and_attributes() {
        let p = Arc::new(proc_info(7, "greeter"));
        let s = rpc_span(p, SpanKind::Server, Some(0));
        assert_eq!(s.name(), "helloworld.Greeter/SayHello");
        assert!(!s.is_error());
        let a = attrs(&s);
        assert_eq!(a["rpc.system.name"], "grpc");
        assert_eq!(a["rpc.method"], "helloworld.Greeter/SayHello");
        assert_eq!(a["rpc.response.status_code"], "OK");
        assert_eq!(a["server.address"], "localhost");
        assert_eq!(a["server.port"], "50051");
        assert!(!a.contains_key("error.type"));
        let (i, l) = labels(&s);
        assert_eq!(i, Instrument::RpcServer);
        assert_eq!(l["rpc.method"], "helloworld.Greeter/SayHello");
        assert_eq!(l["rpc.response.status_code"], "OK");
        assert!(!l.contains_key("error.type"));
    }

    #[test]
    fn error_rule_depends_on_the_side() {
        let p = Arc::new(proc_info(7, "greeter"));
        // NOT_FOUND: the client failed, the server did its job.
        let server = rpc_span(p.clone(), SpanKind::Server, Some(5));
        let client = rpc_span(p.clone(), SpanKind::Client, Some(5));
        assert!(!server.is_error());
        assert!(client.is_error());
        assert_eq!(attrs(&server)["error.type"], "NOT_FOUND");
        assert_eq!(attrs(&client)["rpc.response.status_code"], "NOT_FOUND");
        let (i, l) = labels(&client);
        assert_eq!(i, Instrument::RpcClient);
        assert_eq!(l["error.type"], "NOT_FOUND");
        // INTERNAL is the server's own failure.
        assert!(rpc_span(p.clone(), SpanKind::Server, Some(13)).is_error());
        // A code outside the table is shown as its number.
        assert_eq!(
            attrs(&rpc_span(p.clone(), SpanKind::Client, Some(99)))["rpc.response.status_code"],
            "99"
        );
    }

    #[test]
    fn a_reset_call_fails_with_its_reason() {
        let p = Arc::new(proc_info(7, "greeter"));
        let mut s = rpc_span(p.clone(), SpanKind::Server, None);
        s.abort = Some("CANCEL");
        s.outcome = Outcome::ResponseTruncated;
        s.partial = true;
        assert!(s.is_error());
        let a = attrs(&s);
        assert_eq!(a["error.type"], "CANCEL");
        assert_eq!(a["ratatosk.partial"], "true");
        assert!(!a.contains_key("rpc.response.status_code"));
        // A lost header block: the system names the span.
        if let SpanDetail::Rpc(r) = &mut s.detail {
            r.rpc.method = "".into();
        }
        assert_eq!(s.name(), "grpc");
        let mut closed = rpc_span(p, SpanKind::Client, None);
        closed.outcome = Outcome::NoResponse;
        assert_eq!(attrs(&closed)["error.type"], "no_response");
    }
}
