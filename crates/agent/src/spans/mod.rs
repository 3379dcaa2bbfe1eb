//! Span building: a parsed operation on a connection of a known process
//! becomes an OpenTelemetry-shaped span. The common fields live in
//! [`Span`]; what a semantic-convention family adds (HTTP, database, RPC)
//! in [`SpanDetail`], mapped to attributes, names and metric labels by
//! that family's module ([`http`], [`db`], [`rpc`]).

pub mod attrs;
pub mod db;
pub mod http;
pub mod link;
pub mod redact;
pub mod route;
pub mod rpc;
pub mod sampler;

use std::net::SocketAddr;
use std::sync::Arc;

use compact_str::CompactString;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use ratatosk_protocols::http1::{TraceParent, target_path, target_query};
use ratatosk_protocols::op::{DbDetail, Detail, HttpDetail, Operation, Outcome, RpcDetail};
use ratatosk_protocols::parse::Role;

use crate::clock::Clock;
use crate::config::export::Sampler;
use crate::decode::Tuple;
use crate::discovery::ProcInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Server,
    Client,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        }
    }
}

/// One operation as a span. Times are wall-clock ns since the epoch.
#[derive(Debug, Clone)]
pub struct Span {
    pub kind: SpanKind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// From the request's `traceparent`, when it had one.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether trace exporters send this span (the sampler's decision,
    /// also carried in the trace flags).
    pub sampled: bool,
    /// First byte of the request seen.
    pub start_ns: u64,
    /// Last byte of the response seen.
    pub end_ns: u64,
    /// Time the request waited in the socket before the server read it,
    /// when the kernel told us when it arrived.
    pub queue_ns: Option<u64>,
    pub server: SocketAddr,
    pub client: SocketAddr,
    /// Read from TLS plaintext.
    pub tls: bool,
    pub outcome: Outcome,
    /// Why the operation ended early, when its protocol said (an HTTP/2
    /// reset's error code name).
    pub abort: Option<&'static str>,
    /// Some fields could not be decoded (capture gap, capture begun
    /// mid-connection): the ones present are real, none was guessed.
    pub partial: bool,
    pub process: Arc<ProcInfo>,
    pub detail: SpanDetail,
}

/// What the span's semantic-convention family adds.
#[derive(Debug, Clone)]
pub enum SpanDetail {
    Http(HttpSpan),
    Db(DbSpan),
    Rpc(RpcSpan),
}

/// An HTTP request.
#[derive(Debug, Clone)]
pub struct HttpSpan {
    /// A known method, or `_OTHER` (OpenTelemetry's rule: keeps metric
    /// label values bounded whatever clients send).
    pub method: &'static str,
    /// The method as sent, when it is not a known one.
    pub method_original: Option<CompactString>,
    /// The request-target as sent (path and query are views of it).
    pub target: CompactString,
    pub route: Arc<str>,
    pub scheme: &'static str,
    /// 0 when no response was seen.
    pub status: u16,
    pub protocol_version: &'static str,
    pub host: Option<CompactString>,
    pub user_agent: Option<CompactString>,
    /// Reason phrase of a server error.
    pub status_text: Option<CompactString>,
    pub request_body_size: u64,
    pub response_body_size: u64,
}

impl HttpSpan {
    pub fn path(&self) -> &str {
        target_path(&self.target)
    }

    pub fn query(&self) -> Option<&str> {
        target_query(&self.target)
    }
}

/// A database or cache call.
#[derive(Debug, Clone)]
pub struct DbSpan {
    pub db: DbDetail,
    /// Operation and collection as metric labels: the service's cap on
    /// distinct pairs folds new ones into `_OTHER` (see [`db::DbNames`]).
    pub metric_operation: Arc<str>,
    pub metric_collection: Option<Arc<str>>,
}

/// A remote procedure call (gRPC).
#[derive(Debug, Clone)]
pub struct RpcSpan {
    pub rpc: RpcDetail,
    /// The method as a metric label: past the service's cap on distinct
    /// methods, `_OTHER` (spans keep their names).
    pub metric_method: Arc<str>,
}

impl Span {
    /// The span name its family gives it, in two parts joined by a space
    /// when the second is not empty (written in place by the OTLP encoder).
    pub fn name_parts(&self) -> (&str, &str) {
        match &self.detail {
            SpanDetail::Http(h) => http::name_parts(self.kind, h),
            SpanDetail::Db(d) => db::name_parts(&d.db),
            SpanDetail::Rpc(r) => rpc::name_parts(r),
        }
    }

    pub fn name(&self) -> String {
        match self.name_parts() {
            (a, "") => a.to_string(),
            (a, b) => format!("{a} {b}"),
        }
    }

    pub fn service_name(&self) -> &str {
        &self.process.service_name
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Whether the span failed, by its family's rules.
    pub fn is_error(&self) -> bool {
        match &self.detail {
            SpanDetail::Http(h) => http::is_error(self.kind, h.status),
            SpanDetail::Db(d) => db::is_error(self, d),
            SpanDetail::Rpc(r) => rpc::is_error(self, r),
        }
    }

    /// The span status's description, when it failed and something says
    /// why (an HTTP server error's reason phrase).
    pub fn status_message(&self) -> Option<&str> {
        match &self.detail {
            SpanDetail::Http(h) if self.is_error() && self.kind == SpanKind::Server => {
                h.status_text.as_deref()
            }
            _ => None,
        }
    }

    /// The HTTP part, for callers that only handle HTTP.
    pub fn http(&self) -> Option<&HttpSpan> {
        match &self.detail {
            SpanDetail::Http(h) => Some(h),
            SpanDetail::Db(_) | SpanDetail::Rpc(_) => None,
        }
    }
}

/// RFC 9110 methods plus PATCH (OpenTelemetry's list).
const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub struct SpanBuilder {
    clock: Clock,
    sampler: Sampler,
    /// Ids need to be unique, not secret: a fast generator seeded from the
    /// OS beats a cryptographic one on the hot path.
    rng: SmallRng,
}

impl SpanBuilder {
    pub fn new(clock: Clock, sampler: Sampler) -> Self {
        SpanBuilder {
            clock,
            sampler,
            rng: SmallRng::from_os_rng(),
        }
    }

    /// `named` is what the family's naming step decided (the HTTP route,
    /// the database metric labels); `kernel`, the ids the kernel gave the
    /// request (traceparent injection), which the span must carry.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        op: Operation,
        tuple: &Tuple,
        queue_ns: Option<u64>,
        tls: bool,
        named: Named,
        process: Arc<ProcInfo>,
        kernel: Option<KernelIds>,
    ) -> Span {
        let (kind, server, client) = match op.role {
            Role::Server => (SpanKind::Server, tuple.local, tuple.remote),
            Role::Client => (SpanKind::Client, tuple.remote, tuple.local),
        };
        let end_mono = op.end_ns();
        let detail = match (op.detail, named) {
            (Detail::Http(h), Named::Http { route }) => SpanDetail::Http(http_span(h, route, tls)),
            (
                Detail::Db(db),
                Named::Db {
                    operation,
                    collection,
                },
            ) => SpanDetail::Db(DbSpan {
                db,
                metric_operation: operation,
                metric_collection: collection,
            }),
            (Detail::Rpc(rpc), Named::Rpc { method }) => SpanDetail::Rpc(RpcSpan {
                rpc,
                metric_method: method,
            }),
            // The reader names each operation by its own family: these
            // cannot meet, and would get the overflow names if they did.
            (Detail::Http(h), _) => {
                SpanDetail::Http(http_span(h, Arc::from(route::OVERFLOW_ROUTE), tls))
            }
            (Detail::Db(db), _) => SpanDetail::Db(DbSpan {
                metric_operation: Arc::from(db::OTHER),
                metric_collection: None,
                db,
            }),
            (Detail::Rpc(rpc), _) => SpanDetail::Rpc(RpcSpan {
                rpc,
                metric_method: Arc::from(db::OTHER),
            }),
        };
        // Join the caller's trace when the request carries one (a client
        // span's header was set by an SDK in the process: its span is our
        // parent).
        let mut parent = op.traceparent;
        // fill_bytes takes 8 bytes per draw; random::<[u8; N]>() draws
        // once per byte (24 draws per span).
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        match (kernel, &parent) {
            // A server request: the kernel parents the thread's injected
            // calls under these ids (its trace id is the traceparent's
            // when the request came with one).
            (
                Some(KernelIds::Server {
                    trace_id: t,
                    span_id: s,
                }),
                p,
            ) => {
                trace_id = p.as_ref().map_or(t, |p| p.trace_id);
                span_id = s;
            }
            // A client request the kernel wrote these ids into: the next
            // hop is their child, whatever this host links.
            (
                Some(KernelIds::Injected {
                    trace_id: t,
                    span_id: s,
                    parent_id,
                }),
                None,
            ) => {
                trace_id = t;
                span_id = s;
                parent = parent_id.map(|parent_id| TraceParent {
                    version: 0,
                    trace_id: t,
                    parent_id,
                    flags: 1,
                });
            }
            (_, Some(p)) => {
                trace_id = p.trace_id;
                self.rng.fill_bytes(&mut span_id);
            }
            (_, None) => {
                self.rng.fill_bytes(&mut trace_id);
                self.rng.fill_bytes(&mut span_id);
            }
        }
        let sampled = sampler::sample(&self.sampler, &trace_id, parent.as_ref());
        Span {
            kind,
            trace_id,
            span_id,
            parent_span_id: parent.map(|p| p.parent_id),
            sampled,
            start_ns: self.clock.to_wall_ns(op.request_start_ns),
            end_ns: self.clock.to_wall_ns(end_mono),
            queue_ns,
            server,
            client,
            tls,
            outcome: op.outcome,
            abort: op.abort,
            partial: op.partial,
            process,
            detail,
        }
    }
}

/// An HTTP request's span fields: unknown methods become `_OTHER`.
fn http_span(h: HttpDetail, route: Arc<str>, tls: bool) -> HttpSpan {
    let (method, method_original) = match KNOWN_METHODS.iter().find(|&&m| m == h.method.as_str()) {
        Some(&m) => (m, None),
        None => ("_OTHER", Some(h.method)),
    };
    HttpSpan {
        method,
        method_original,
        target: h.target,
        route,
        scheme: if tls { "https" } else { "http" },
        status: h.status,
        protocol_version: h.protocol_version,
        host: h.host,
        user_agent: h.user_agent,
        status_text: h.status_text,
        request_body_size: h.request_body_size,
        response_body_size: h.response_body_size,
    }
}

/// Ids the kernel gave a request when `traceparent` injection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelIds {
    /// A server request: its span id, and its trace id unless the request
    /// carried a `traceparent`.
    Server {
        trace_id: [u8; 16],
        span_id: [u8; 8],
    },
    /// A client request into which the kernel inserted `traceparent` with
    /// these ids; `parent_id`: the server request its thread was serving.
    Injected {
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_id: Option<[u8; 8]>,
    },
}

/// What the reader's naming step decided for one operation.
pub enum Named {
    Http {
        route: Arc<str>,
    },
    Db {
        operation: Arc<str>,
        collection: Option<Arc<str>>,
    },
    Rpc {
        method: Arc<str>,
    },
}

#[cfg(test)]
mod kernel_ids_tests {
    use super::*;
    use crate::export::resource::tests::proc_info;

    fn op(role: Role, traceparent: Option<TraceParent>) -> Operation {
        Operation {
            role,
            request_start_ns: 10,
            request_end_ns: 11,
            response_start_ns: 12,
            response_end_ns: 13,
            outcome: Outcome::Complete,
            traceparent,
            partial: false,
            abort: None,
            detail: Detail::Http(HttpDetail {
                method: "GET".into(),
                target: "/a".into(),
                protocol_version: "1.1",
                host: None,
                user_agent: None,
                status: 200,
                status_text: None,
                request_body_size: 0,
                response_body_size: 0,
            }),
        }
    }

    fn build(role: Role, tp: Option<TraceParent>, k: Option<KernelIds>) -> Span {
        let mut b = SpanBuilder::new(Clock::new(), Sampler::default());
        let tuple = Tuple {
            local: "127.0.0.1:8000".parse().unwrap(),
            remote: "127.0.0.1:5000".parse().unwrap(),
        };
        b.build(
            op(role, tp),
            &tuple,
            None,
            false,
            Named::Http {
                route: Arc::from("/a"),
            },
            Arc::new(proc_info(7, "app")),
            k,
        )
    }

    const TP: TraceParent = TraceParent {
        version: 0,
        trace_id: [9; 16],
        parent_id: [8; 8],
        flags: 1,
    };

    #[test]
    fn a_server_span_takes_the_kernel_span_id_and_keeps_its_traceparent() {
        let k = KernelIds::Server {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let s = build(Role::Server, None, Some(k));
        assert_eq!(
            (s.trace_id, s.span_id, s.parent_span_id),
            ([1; 16], [2; 8], None)
        );
        let s = build(Role::Server, Some(TP), Some(k));
        assert_eq!(
            (s.trace_id, s.span_id, s.parent_span_id),
            ([9; 16], [2; 8], Some([8; 8]))
        );
    }

    #[test]
    fn an_injected_call_is_exactly_what_its_header_said() {
        let k = KernelIds::Injected {
            trace_id: [1; 16],
            span_id: [3; 8],
            parent_id: Some([2; 8]),
        };
        let s = build(Role::Client, None, Some(k));
        assert_eq!(
            (s.trace_id, s.span_id, s.parent_span_id),
            ([1; 16], [3; 8], Some([2; 8]))
        );
        assert!(s.sampled);
        let k = KernelIds::Injected {
            trace_id: [1; 16],
            span_id: [3; 8],
            parent_id: None,
        };
        let s = build(Role::Client, None, Some(k));
        assert_eq!(
            (s.trace_id, s.span_id, s.parent_span_id),
            ([1; 16], [3; 8], None)
        );
        // Without kernel ids: the span's own, the request's traceparent kept.
        let s = build(Role::Client, Some(TP), None);
        assert_eq!((s.trace_id, s.parent_span_id), ([9; 16], Some([8; 8])));
        assert_ne!(s.span_id, [0; 8]);
    }
}
