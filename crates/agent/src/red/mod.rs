//! RED metrics (rate, errors, duration) from spans: one aggregation for
//! every sink. Each semantic-convention family says which instruments a
//! span feeds and with which labels ([`Labels::of`]); a [`RedStore`] keeps
//! cumulative histograms per owner and label set, bounded. Prometheus
//! keeps one store keyed by service ([`prometheus`]); the OTLP exporter
//! one keyed by process, each process being one OTLP resource
//! (`export::metrics`).

pub mod prometheus;

use std::hash::Hash;
use std::sync::Arc;

use compact_str::CompactString;
use opentelemetry_semantic_conventions::attribute as semconv;
use rustc_hash::FxHashMap;

use crate::output::printer::host_without_port;
use crate::spans::attrs::SmallText;
use crate::spans::{Span, SpanDetail, SpanKind, db, rpc};

/// OpenTelemetry's recommended HTTP duration buckets (seconds).
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Body size buckets (bytes), as Beyla uses.
pub const SIZE_BUCKETS: [f64; 10] = [
    0.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// The database conventions' duration buckets (seconds).
pub const DB_DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// One histogram of an instrument: its names and what it measures.
pub struct HistDesc {
    /// OTLP metric name (semantic conventions).
    pub otlp: &'static str,
    /// Prometheus family name (Beyla's).
    pub prom: &'static str,
    pub unit: &'static str,
    pub help: &'static str,
    pub bounds: &'static [f64],
    pub value: fn(&Span) -> f64,
}

fn seconds(s: &Span) -> f64 {
    s.duration_ns() as f64 / 1e9
}

fn request_body(s: &Span) -> f64 {
    s.http().map_or(0.0, |h| h.request_body_size as f64)
}

fn response_body(s: &Span) -> f64 {
    s.http().map_or(0.0, |h| h.response_body_size as f64)
}

/// What a span feeds: one instrument, made of one or more histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Instrument {
    HttpServer,
    HttpClient,
    DbClient,
    RpcServer,
    RpcClient,
}

impl Instrument {
    pub const ALL: [Instrument; 5] = [
        Instrument::HttpServer,
        Instrument::HttpClient,
        Instrument::DbClient,
        Instrument::RpcServer,
        Instrument::RpcClient,
    ];

    pub fn histograms(self) -> &'static [HistDesc] {
        match self {
            Instrument::HttpServer => &HTTP_SERVER,
            Instrument::HttpClient => &HTTP_CLIENT,
            Instrument::DbClient => &DB_CLIENT,
            Instrument::RpcServer => &RPC_SERVER,
            Instrument::RpcClient => &RPC_CLIENT,
        }
    }
}

static HTTP_SERVER: [HistDesc; 3] = [
    HistDesc {
        otlp: "http.server.request.duration",
        prom: "http_server_request_duration_seconds",
        unit: "s",
        help: "Duration of HTTP server requests",
        bounds: &DURATION_BUCKETS,
        value: seconds,
    },
    HistDesc {
        otlp: "http.server.request.body.size",
        prom: "http_server_request_body_size_bytes",
        unit: "By",
        help: "Size of HTTP server request bodies",
        bounds: &SIZE_BUCKETS,
        value: request_body,
    },
    HistDesc {
        otlp: "http.server.response.body.size",
        prom: "http_server_response_body_size_bytes",
        unit: "By",
        help: "Size of HTTP server response bodies",
        bounds: &SIZE_BUCKETS,
        value: response_body,
    },
];

static HTTP_CLIENT: [HistDesc; 3] = [
    HistDesc {
        otlp: "http.client.request.duration",
        prom: "http_client_request_duration_seconds",
        unit: "s",
        help: "Duration of HTTP client requests",
        bounds: &DURATION_BUCKETS,
        value: seconds,
    },
    HistDesc {
        otlp: "http.client.request.body.size",
        prom: "http_client_request_body_size_bytes",
        unit: "By",
        help: "Size of HTTP client request bodies",
        bounds: &SIZE_BUCKETS,
        value: request_body,
    },
    HistDesc {
        otlp: "http.client.response.body.size",
        prom: "http_client_response_body_size_bytes",
        unit: "By",
        help: "Size of HTTP client response bodies",
        bounds: &SIZE_BUCKETS,
        value: response_body,
    },
];

static DB_CLIENT: [HistDesc; 1] = [HistDesc {
    otlp: "db.client.operation.duration",
    prom: "db_client_operation_duration_seconds",
    unit: "s",
    help: "Duration of database client operations",
    bounds: &DB_DURATION_BUCKETS,
    value: seconds,
}];

static RPC_SERVER: [HistDesc; 1] = [HistDesc {
    otlp: "rpc.server.call.duration",
    prom: "rpc_server_call_duration_seconds",
    unit: "s",
    help: "Duration of RPC calls served",
    bounds: &DURATION_BUCKETS,
    value: seconds,
}];

static RPC_CLIENT: [HistDesc; 1] = [HistDesc {
    otlp: "rpc.client.call.duration",
    prom: "rpc_client_call_duration_seconds",
    unit: "s",
    help: "Duration of RPC calls made",
    bounds: &DURATION_BUCKETS,
    value: seconds,
}];

/// The label set of a series, per family. Built from a span without heap
/// allocation in the common case (static strings, shared `Arc`s, short
/// inline strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Labels {
    Http {
        method: &'static str,
        /// 0 when no response was seen.
        status: u16,
        /// Server side only: a client knows no route.
        route: Option<Arc<str>>,
        scheme: &'static str,
        port: u16,
        /// Client side only: the host the request went to.
        address: Option<CompactString>,
        version: &'static str,
        /// Set on errors: what `error.type` says when there is no status.
        error: Option<&'static str>,
    },
    Db {
        system: &'static str,
        operation: Arc<str>,
        collection: Option<Arc<str>>,
        namespace: Option<CompactString>,
        port: u16,
        error_type: Option<CompactString>,
    },
    Rpc {
        system: &'static str,
        method: Arc<str>,
        /// `rpc.response.status_code`; none when the call ended without.
        status: Option<CompactString>,
        port: u16,
        error_type: Option<CompactString>,
    },
}

/// A label value.
pub enum LabelValue<'a> {
    Str(&'a str),
    Int(i64),
}

impl Labels {
    /// The instrument `span` feeds and its labels; None when its family
    /// defines no metric for it (database server spans).
    pub fn of(span: &Span) -> Option<(Instrument, Labels)> {
        match &span.detail {
            SpanDetail::Http(h) => {
                let (instrument, route, address) = match span.kind {
                    SpanKind::Server => (
                        Instrument::HttpServer,
                        (!h.route.is_empty()).then(|| h.route.clone()),
                        None,
                    ),
                    SpanKind::Client => {
                        let address = match h.host.as_deref() {
                            Some(host) => CompactString::from(host_without_port(host)),
                            None => CompactString::from(SmallText::ip(span.server.ip()).as_str()),
                        };
                        (Instrument::HttpClient, None, Some(address))
                    }
                };
                Some((
                    instrument,
                    Labels::Http {
                        method: h.method,
                        status: h.status,
                        route,
                        scheme: h.scheme,
                        port: span.server.port(),
                        address,
                        version: h.protocol_version,
                        error: span
                            .is_error()
                            .then(|| crate::spans::http::failure_without_status(span)),
                    },
                ))
            }
            SpanDetail::Db(d) => {
                if span.kind != SpanKind::Client {
                    return None;
                }
                Some((
                    Instrument::DbClient,
                    Labels::Db {
                        system: d.db.system.as_str(),
                        operation: d.metric_operation.clone(),
                        collection: d.metric_collection.clone(),
                        namespace: d.db.namespace.clone(),
                        port: span.server.port(),
                        error_type: db::error_type(span, d).map(CompactString::from),
                    },
                ))
            }
            SpanDetail::Rpc(r) => {
                let instrument = match span.kind {
                    SpanKind::Server => Instrument::RpcServer,
                    SpanKind::Client => Instrument::RpcClient,
                };
                Some((
                    instrument,
                    Labels::Rpc {
                        system: r.rpc.system.as_str(),
                        method: r.metric_method.clone(),
                        status: r
                            .rpc
                            .status
                            .map(|c| CompactString::from(rpc::status_text(c).as_str())),
                        port: span.server.port(),
                        error_type: rpc::error_type(span, r)
                            .map(|e| CompactString::from(e.as_str())),
                    },
                ))
            }
        }
    }

    /// Calls `f` with each label as its semantic-convention attribute
    /// name (Prometheus replaces dots with underscores).
    pub fn for_each(&self, f: &mut impl FnMut(&'static str, LabelValue<'_>)) {
        match self {
            Labels::Http {
                method,
                status,
                route,
                scheme,
                port,
                address,
                version,
                error,
            } => {
                f(semconv::HTTP_REQUEST_METHOD, LabelValue::Str(method));
                if *status != 0 {
                    f(
                        semconv::HTTP_RESPONSE_STATUS_CODE,
                        LabelValue::Int(i64::from(*status)),
                    );
                }
                if let Some(r) = route {
                    f(semconv::HTTP_ROUTE, LabelValue::Str(r));
                }
                f(semconv::URL_SCHEME, LabelValue::Str(scheme));
                if let Some(a) = address {
                    f(semconv::SERVER_ADDRESS, LabelValue::Str(a));
                }
                f(semconv::SERVER_PORT, LabelValue::Int(i64::from(*port)));
                f(semconv::NETWORK_PROTOCOL_VERSION, LabelValue::Str(version));
                if let Some(e) = error {
                    let code = SmallText::of(status);
                    let e = if *status == 0 { e } else { code.as_str() };
                    f(semconv::ERROR_TYPE, LabelValue::Str(e));
                }
            }
            Labels::Db {
                system,
                operation,
                collection,
                namespace,
                port,
                error_type,
            } => {
                f(semconv::DB_SYSTEM_NAME, LabelValue::Str(system));
                f(semconv::DB_OPERATION_NAME, LabelValue::Str(operation));
                if let Some(c) = collection {
                    f(semconv::DB_COLLECTION_NAME, LabelValue::Str(c));
                }
                if let Some(n) = namespace {
                    f(semconv::DB_NAMESPACE, LabelValue::Str(n));
                }
                f(semconv::SERVER_PORT, LabelValue::Int(i64::from(*port)));
                if let Some(e) = error_type {
                    f(semconv::ERROR_TYPE, LabelValue::Str(e));
                }
            }
            Labels::Rpc {
                system,
                method,
                status,
                port,
                error_type,
            } => {
                f("rpc.system.name", LabelValue::Str(system));
                f("rpc.method", LabelValue::Str(method));
                if let Some(st) = status {
                    f("rpc.response.status_code", LabelValue::Str(st));
                }
                f(semconv::SERVER_PORT, LabelValue::Int(i64::from(*port)));
                if let Some(e) = error_type {
                    f(semconv::ERROR_TYPE, LabelValue::Str(e));
                }
            }
        }
    }
}

/// One cumulative histogram.
#[derive(Debug, Clone)]
pub struct Hist {
    pub bounds: &'static [f64],
    /// One more than `bounds`: the last counts values above every bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Hist {
    pub fn new(bounds: &'static [f64]) -> Self {
        Hist {
            bounds,
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub fn observe(&mut self, v: f64) {
        // Buckets are upper-inclusive: (bound[i-1], bound[i]], as both
        // OTLP and Prometheus (`le`) define them.
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

/// The histograms of one label set.
#[derive(Debug, Clone)]
pub struct Series {
    pub instrument: Instrument,
    pub labels: Labels,
    /// When the series was created (ns since the epoch).
    pub start_ns: u64,
    /// Last span recorded (ns since the epoch), for expiry.
    pub updated_ns: u64,
    /// One per histogram of the instrument, in its order.
    pub hists: Vec<Hist>,
}

/// What recording one span did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Yes,
    /// The family defines no metric for this span.
    NoMetric,
    /// A new series would have passed the cap: not counted.
    SeriesLimit,
}

/// Cumulative series per owner (a service, a process), at most `max` in
/// all. A span that would open a series beyond the cap is refused and
/// leaves nothing behind.
pub struct RedStore<O> {
    owners: FxHashMap<O, FxHashMap<(Instrument, Labels), Series>>,
    len: usize,
    max: usize,
}

impl<O> std::fmt::Debug for RedStore<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedStore({} series)", self.len)
    }
}

impl<O: Hash + Eq + Clone> RedStore<O> {
    pub fn new(max: usize) -> Self {
        RedStore {
            owners: FxHashMap::default(),
            len: 0,
            max,
        }
    }

    /// Series held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `now_ns` is asked once per span (series times).
    pub fn record(&mut self, owner: &O, span: &Span, now_ns: u64) -> Recorded {
        let Some((instrument, labels)) = Labels::of(span) else {
            return Recorded::NoMetric;
        };
        let full = self.len >= self.max;
        let key = (instrument, labels);
        let series = match self.owners.get_mut(owner) {
            Some(m) => m,
            None if full => return Recorded::SeriesLimit,
            None => self.owners.entry(owner.clone()).or_default(),
        };
        let s = match series.get_mut(&key) {
            Some(s) => s,
            None if full => return Recorded::SeriesLimit,
            None => {
                self.len += 1;
                let hists = instrument
                    .histograms()
                    .iter()
                    .map(|h| Hist::new(h.bounds))
                    .collect();
                series.entry(key.clone()).or_insert(Series {
                    instrument: key.0,
                    labels: key.1,
                    start_ns: now_ns,
                    updated_ns: now_ns,
                    hists,
                })
            }
        };
        s.updated_ns = now_ns;
        for (h, d) in s.hists.iter_mut().zip(instrument.histograms()) {
            h.observe((d.value)(span));
        }
        Recorded::Yes
    }

    /// Every series, grouped by owner.
    pub fn owners(&self) -> impl Iterator<Item = (&O, impl Iterator<Item = &Series>)> {
        self.owners.iter().map(|(o, m)| (o, m.values()))
    }

    /// Removes every series of `owner`, returning them.
    pub fn remove_owner(&mut self, owner: &O) -> Vec<Series> {
        let Some(m) = self.owners.remove(owner) else {
            return Vec::new();
        };
        self.len = self.len.saturating_sub(m.len());
        m.into_values().collect()
    }

    /// Drops the series not updated since `before_ns`; returns how many.
    pub fn expire(&mut self, before_ns: u64) -> usize {
        let mut n = 0;
        for m in self.owners.values_mut() {
            let was = m.len();
            m.retain(|_, s| s.updated_ns >= before_ns);
            n += was - m.len();
        }
        self.owners.retain(|_, m| !m.is_empty());
        self.len = self.len.saturating_sub(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::{db_span, span};

    #[test]
    fn caps_series_and_refuses_without_a_trace() {
        let p = Arc::new(proc_info(7, "srv"));
        let mut st: RedStore<u32> = RedStore::new(2);
        assert_eq!(
            st.record(&1, &span(p.clone(), 200, SpanKind::Server), 1),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&1, &span(p.clone(), 200, SpanKind::Server), 2),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&2, &span(p.clone(), 200, SpanKind::Server), 3),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&3, &span(p.clone(), 200, SpanKind::Server), 4),
            Recorded::SeriesLimit,
            "a new owner at the cap"
        );
        assert_eq!(
            st.record(&1, &span(p.clone(), 500, SpanKind::Server), 5),
            Recorded::SeriesLimit
        );
        assert_eq!(st.len(), 2);
        assert_eq!(st.owners().count(), 2);
        // Database client calls feed their own instrument; server-side
        // database spans feed none.
        let mut st: RedStore<u32> = RedStore::new(10);
        assert_eq!(st.record(&1, &db_span(p.clone(), None), 1), Recorded::Yes);
        let mut server = db_span(p.clone(), None);
        server.kind = SpanKind::Server;
        assert_eq!(st.record(&1, &server, 1), Recorded::NoMetric);
        let (_, series) = st.owners().next().unwrap();
        let s: Vec<&Series> = series.collect();
        assert_eq!(s[0].instrument, Instrument::DbClient);
        assert_eq!(s[0].hists.len(), 1);
        assert_eq!(s[0].hists[0].count, 1);
        assert_eq!(st.expire(2), 1);
        assert!(st.is_empty());
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Hist::new(&DURATION_BUCKETS);
        for v in [0.0, 0.005, 0.0051, 11.0] {
            h.observe(v);
        }
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[DURATION_BUCKETS.len()], 1);
    }
}
