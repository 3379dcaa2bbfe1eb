//! Span building: a parsed request/response exchange on a connection of a
//! known process becomes an OpenTelemetry-shaped span.

pub mod route;
pub mod sampler;

use std::net::SocketAddr;
use std::sync::Arc;

use compact_str::CompactString;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use ratatosk_protocols::http1::{Exchange, Outcome, target_path, target_query};
use ratatosk_protocols::parse::Role;

use crate::clock::Clock;
use crate::config::export::Sampler;
use crate::decode::Tuple;
use crate::discovery::ProcInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One HTTP request as a span. Times are wall-clock ns since the epoch.
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
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub host: Option<CompactString>,
    pub request_body_size: u64,
    pub response_body_size: u64,
    pub outcome: Outcome,
    pub process: Arc<ProcInfo>,
}

impl Span {
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.route)
    }

    pub fn path(&self) -> &str {
        target_path(&self.target)
    }

    pub fn query(&self) -> Option<&str> {
        target_query(&self.target)
    }

    pub fn service_name(&self) -> &str {
        &self.process.service_name
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// OpenTelemetry HTTP semantics: 5xx is an error for servers; 4xx too
    /// for clients; no response at all is an error.
    pub fn is_error(&self) -> bool {
        match self.kind {
            _ if self.status == 0 => true,
            SpanKind::Server => self.status >= 500,
            SpanKind::Client => self.status >= 400,
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

    pub fn build(
        &mut self,
        ex: Exchange,
        tuple: &Tuple,
        queue_ns: Option<u64>,
        tls: bool,
        route: Arc<str>,
        process: Arc<ProcInfo>,
    ) -> Span {
        let (kind, server, client) = match ex.role {
            Role::Server => (SpanKind::Server, tuple.local, tuple.remote),
            Role::Client => (SpanKind::Client, tuple.remote, tuple.local),
        };
        let end_mono = if ex.response_end_ns > 0 {
            ex.response_end_ns
        } else {
            ex.request_end_ns
        };
        let (method, method_original) =
            match KNOWN_METHODS.iter().find(|&&m| m == ex.method.as_str()) {
                Some(&m) => (m, None),
                None => ("_OTHER", Some(ex.method)),
            };
        // Join the caller's trace when the request carries one (a client
        // span's header was set by an SDK in the process: its span is our
        // parent).
        let parent = ex.traceparent;
        // fill_bytes takes 8 bytes per draw; random::<[u8; N]>() draws
        // once per byte (24 draws per span).
        let mut trace_id = [0u8; 16];
        match &parent {
            Some(p) => trace_id = p.trace_id,
            None => self.rng.fill_bytes(&mut trace_id),
        }
        let mut span_id = [0u8; 8];
        self.rng.fill_bytes(&mut span_id);
        let sampled = sampler::sample(&self.sampler, &trace_id, parent.as_ref());
        Span {
            kind,
            trace_id,
            span_id,
            parent_span_id: parent.map(|p| p.parent_id),
            sampled,
            start_ns: self.clock.to_wall_ns(ex.request_start_ns),
            end_ns: self.clock.to_wall_ns(end_mono.max(ex.request_start_ns)),
            queue_ns,
            method,
            method_original,
            target: ex.target,
            route,
            scheme: if tls { "https" } else { "http" },
            status: ex.status,
            protocol_version: if ex.minor_version == 0 { "1.0" } else { "1.1" },
            server,
            client,
            host: ex.host,
            request_body_size: ex.request_body_size,
            response_body_size: ex.response_body_size,
            outcome: ex.outcome,
            process,
        }
    }
}
