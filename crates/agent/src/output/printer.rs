//! The stdout trace printer: one line per span, as text or JSON.

use std::io::Write;

use ratatosk_protocols::op::{DbSystem, Outcome};
use serde_json::{Map, Value, json};

use crate::config::PrinterMode;
use crate::spans::attrs::{Value as Attr, for_each_attribute};
use crate::spans::redact::{DEFAULT_REDACTED_KEYS, escape_control, redact_query};
use crate::spans::{Span, SpanDetail, SpanKind, rpc};

pub struct Printer<W: Write> {
    mode: PrinterMode,
    out: W,
}

impl<W: Write> Printer<W> {
    pub fn new(mode: PrinterMode, out: W) -> Self {
        Printer { mode, out }
    }

    pub fn print(&mut self, span: &Span) -> std::io::Result<()> {
        match self.mode {
            PrinterMode::Disabled => Ok(()),
            PrinterMode::Text => writeln!(self.out, "{}", text_line(span)),
            PrinterMode::Json => {
                serde_json::to_writer(&mut self.out, &json_value(span))?;
                self.out.write_all(b"\n")
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2026-11-23 13:49:04.123` (UTC) from ns since the epoch.
pub fn format_time(wall_ns: u64) -> String {
    let secs = (wall_ns / 1_000_000_000) as i64;
    let ms = (wall_ns / 1_000_000) % 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Human duration with about four significant digits: 15.22ms, 689.9µs.
pub fn format_duration(ns: u64) -> String {
    let f = ns as f64;
    if ns >= 1_000_000_000 {
        format!("{:.4}s", f / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1}µs", f / 1e3)
    } else {
        format!("{ns}ns")
    }
}

/// One line per span. HTTP: `2026-11-23 13:49:04.123 (15.22ms[689.9µs])
/// HTTP 200 GET /hello [127.0.0.1:51234]->[127.0.0.1:18080] size:12B
/// svc=[python3] traceparent=[…]`: the first duration includes the time
/// the request waited in the socket, the bracketed one does not. A
/// database call: `… (1.20ms[1.20ms]) PostgreSQLClient ok SELECT accounts
/// [client]->[server] svc=[…] traceparent=[…]`, the status being `ok`, the
/// error code, or `no-response`.
pub fn text_line(s: &Span) -> String {
    let handler = s.duration_ns();
    let total = handler + s.queue_ns.unwrap_or(0);
    let head = format!(
        "{} ({}[{}])",
        format_time(s.start_ns.saturating_sub(s.queue_ns.unwrap_or(0))),
        format_duration(total),
        format_duration(handler),
    );
    let tail = format!("[{}]->[{}]", s.client, s.server);
    let context = format!(
        "svc=[{}] traceparent=[00-{}-{}-{}]",
        s.service_name(),
        hex(&s.trace_id),
        hex(&s.span_id),
        if s.sampled { "01" } else { "00" },
    );
    match &s.detail {
        SpanDetail::Http(h) => {
            let kind = match (s.kind, s.tls) {
                (SpanKind::Server, false) => "HTTP",
                (SpanKind::Server, true) => "HTTPS",
                (SpanKind::Client, false) => "HTTPClient",
                (SpanKind::Client, true) => "HTTPSClient",
            };
            // Secrets in the query redacted; control characters a client
            // sent (terminal escapes, newlines) shown escaped, never raw.
            let target = match h.query() {
                Some(q) => format!(
                    "{}?{}",
                    escape_control(h.path()),
                    escape_control(&redact_query(q, DEFAULT_REDACTED_KEYS))
                ),
                None => escape_control(h.path()).into_owned(),
            };
            // What happened when there is no status to say it.
            let status = match (h.status, s.outcome) {
                (0, Outcome::NoResponse) => "no-response".to_string(),
                (0, _) => "?".to_string(),
                (st, _) => st.to_string(),
            };
            // The response body size, when its end was seen.
            let size = match s.outcome {
                Outcome::Complete => format!("{}B", h.response_body_size),
                Outcome::NoResponse | Outcome::ResponseTruncated => "?".to_string(),
            };
            format!(
                "{head} {kind} {status} {} {target} {tail} size:{size} {context}",
                h.method,
            )
        }
        SpanDetail::Db(d) => {
            let system = match d.db.system {
                DbSystem::Postgresql => "PostgreSQL",
                DbSystem::Mysql => "MySQL",
                DbSystem::Mariadb => "MariaDB",
                DbSystem::Redis => "Redis",
            };
            let kind = match s.kind {
                SpanKind::Server => "Server",
                SpanKind::Client => "Client",
            };
            let status = match (&d.db.status_code, s.outcome) {
                (Some(code), _) => code.as_str(),
                (None, Outcome::NoResponse) => "no-response",
                (None, _) => "ok",
            };
            format!(
                "{head} {system}{kind} {status} {} {tail} {context}",
                s.name()
            )
        }
        SpanDetail::Rpc(r) => {
            let kind = match (s.kind, s.tls) {
                (SpanKind::Server, false) => "gRPC",
                (SpanKind::Server, true) => "gRPCS",
                (SpanKind::Client, false) => "gRPCClient",
                (SpanKind::Client, true) => "gRPCSClient",
            };
            format!(
                "{head} {kind} {} {} {tail} {context}",
                rpc::printed_status(s, r),
                escape_control(&s.name()),
            )
        }
    }
}

pub fn json_value(s: &Span) -> Value {
    let mut a = Map::new();
    for_each_attribute(s, &mut |k, v| {
        let v = match v {
            Attr::Str(v) => json!(v),
            Attr::Int(i) => json!(i),
            Attr::Bool(b) => json!(b),
        };
        a.insert(k.into(), v);
    });
    json!({
        "name": s.name(),
        "kind": s.kind.as_str(),
        "trace_id": hex(&s.trace_id),
        "span_id": hex(&s.span_id),
        "parent_span_id": s.parent_span_id.map(|p| hex(&p)).unwrap_or_default(),
        "sampled": s.sampled,
        "start_time_unix_nano": s.start_ns,
        "end_time_unix_nano": s.end_ns,
        "service.name": s.service_name(),
        "process.pid": s.process.pid,
        "status": if s.is_error() { "error" } else { "unset" },
        "attributes": a,
    })
}

pub(crate) fn host_without_port(h: &str) -> &str {
    // [v6]:port, host:port, or a bare host.
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_durations() {
        // 2026-11-23 13:49:04.123 UTC
        assert_eq!(
            format_time(1_795_441_744_123_000_000),
            "2026-11-23 13:49:04.123"
        );
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_time(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000"
        );
        assert_eq!(format_duration(15_220_000), "15.22ms");
        assert_eq!(format_duration(689_900), "689.9µs");
        assert_eq!(format_duration(999), "999ns");
        assert_eq!(format_duration(2_500_000_000), "2.5000s");
    }

    #[test]
    fn secrets_and_control_characters_never_print() {
        use crate::export::resource::tests::proc_info;
        use crate::export::traces::tests::{http, span};
        let mut s = span(
            std::sync::Arc::new(proc_info(1, "a")),
            200,
            SpanKind::Server,
        );
        http(&mut s).target = "/p\x1b[2J?X-Amz-Signature=abc123&token=t0k&x=1".into();
        let line = text_line(&s);
        assert!(!line.contains("abc123") && !line.contains("t0k"), "{line}");
        assert!(!line.contains('\x1b'), "{line}");
        assert!(line.contains("x=1"), "{line}");
        let json = json_value(&s).to_string();
        assert!(!json.contains("abc123") && !json.contains("t0k"), "{json}");
    }

    #[test]
    fn grpc_lines_name_the_method_and_status() {
        use crate::export::resource::tests::proc_info;
        use crate::export::traces::tests::rpc_span;
        let p = std::sync::Arc::new(proc_info(1, "a"));
        let line = text_line(&rpc_span(p.clone(), SpanKind::Server, Some(5)));
        assert!(
            line.contains(" gRPC NOT_FOUND helloworld.Greeter/SayHello "),
            "{line}"
        );
        let mut reset = rpc_span(p, SpanKind::Client, None);
        reset.abort = Some("CANCEL");
        let line = text_line(&reset);
        assert!(line.contains(" gRPCClient CANCEL "), "{line}");
        let json = json_value(&reset);
        assert_eq!(json["status"], "error");
        assert_eq!(json["attributes"]["error.type"], "CANCEL");
    }

    #[test]
    fn strips_ports_from_host() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "::1");
    }
}
