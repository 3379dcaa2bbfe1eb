//! Resolved settings of the OTLP exporters, the sampler, routes, metric
//! features and resource naming: what `config` produces from flags,
//! environment (the standard `OTEL_*` variables included) and the file, and
//! what `export`, `spans` and `metrics` consume.

use std::time::Duration;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// One signal's destination, resolved with the OpenTelemetry rules:
/// per-signal variables over generic ones; for `http/protobuf` a generic
/// endpoint gets `/v1/traces` or `/v1/metrics` appended, a per-signal one
/// is used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSignal {
    /// Full URL (`http://host:port[/path]` or `https://…`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Extra request headers (gRPC metadata), e.g. authorization.
    pub headers: Vec<(String, String)>,
    /// Per-export deadline (`OTEL_EXPORTER_OTLP_*TIMEOUT`, default 10 s).
    pub timeout: Duration,
    pub compression: Compression,
}

/// Span batching (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans waiting for export before new ones are dropped (counted).
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    /// Longest a span waits before its batch is sent.
    pub schedule_delay: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            // The SDKs' 2048 holds ~30 ms of one busy host's traffic: the
            // agent exports every selected process's spans, and at nginx's
            // saturating rate on 2 cores 2048 dropped 35 % of them while
            // 16384 dropped none (bench/README.md); spans wait encoded,
            // ~0.5 KB each: ~8 MB at most.
            max_queue_size: 16384,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(5000),
        }
    }
}

/// `OTEL_TRACES_SAMPLER` (+ `_ARG`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Keep this fraction of traces, decided from the trace id.
    TraceIdRatio(f64),
    /// Follow the incoming `traceparent`'s sampled flag; root spans use the
    /// inner sampler.
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

/// Metric families an exporter emits (Beyla's `metrics.features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// RED histograms per service/route/method/status.
    pub application: bool,
    /// Span-derived metrics (`traces_spanmetrics_*`): not built yet.
    pub application_span: bool,
    /// Service-graph metrics: not built yet.
    pub application_service_graph: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            application: true,
            application_span: false,
            application_service_graph: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// None: traces are not exported over OTLP.
    pub traces: Option<OtlpSignal>,
    /// None: metrics are not exported over OTLP.
    pub metrics: Option<OtlpSignal>,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s).
    pub metric_interval: Duration,
    pub metric_features: Features,
    pub batch: BatchSettings,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            traces: None,
            metrics: None,
            metric_interval: Duration::from_secs(60),
            metric_features: Features::default(),
            batch: BatchSettings::default(),
        }
    }
}

/// How a path that matches no user pattern becomes `http.route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedRoutes {
    /// Identifier-like segments collapsed to `*` (default).
    #[default]
    Heuristic,
    /// The path as is (bounded only by the cap).
    Path,
    /// Everything unmatched is `/**`.
    Wildcard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// User patterns: `/users/{id}`, `/users/:id`, `/files/*`.
    pub patterns: Vec<String>,
    /// Requests whose route matches one of these produce no span and no
    /// metric (health checks).
    pub ignored: Vec<String>,
    pub unmatched: UnmatchedRoutes,
    /// Distinct routes (and span names) per service before they fold into
    /// one overflow value.
    pub max_per_service: usize,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings {
            patterns: Vec::new(),
            ignored: Vec::new(),
            unmatched: UnmatchedRoutes::Heuristic,
            max_per_service: 100,
        }
    }
}

/// Service naming and resource options that apply to every process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Naming {
    /// Used when the process has no `OTEL_SERVICE_NAME` of its own and its
    /// selection entry gives no name.
    pub service_name: Option<String>,
    pub service_namespace: Option<String>,
    /// Add `process.command_args` to resources (opt-in: may hold secrets).
    pub command_args: bool,
}
