//! RED metrics from spans, with Beyla/OBI-compatible names and labels so
//! existing dashboards keep working.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::spans::{Span, SpanKind};

/// OpenTelemetry's recommended HTTP duration buckets (seconds).
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Body size buckets (bytes), as Beyla uses.
pub const SIZE_BUCKETS: [f64; 10] = [
    0.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub http_request_method: String,
    pub http_response_status_code: u16,
    pub http_route: String,
    pub url_scheme: &'static str,
    pub server_port: u16,
    pub service_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub service_name: String,
    pub service_instance_id: String,
    pub host_name: String,
    pub process_pid: u32,
    pub process_executable_name: String,
    pub process_executable_path: String,
    pub telemetry_sdk_name: &'static str,
    pub telemetry_sdk_version: &'static str,
}

#[derive(Clone)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistFamily = Family<HttpLabels, Histogram, Buckets>;

struct Direction {
    duration: HistFamily,
    request_size: HistFamily,
    response_size: HistFamily,
}

impl Direction {
    fn new() -> Self {
        Direction {
            duration: Family::new_with_constructor(Buckets(&DURATION_BUCKETS)),
            request_size: Family::new_with_constructor(Buckets(&SIZE_BUCKETS)),
            response_size: Family::new_with_constructor(Buckets(&SIZE_BUCKETS)),
        }
    }

    fn register(&self, r: &mut Registry, side: &str) {
        r.register(
            format!("http_{side}_request_duration_seconds"),
            format!("Duration of HTTP {side} requests"),
            self.duration.clone(),
        );
        r.register(
            format!("http_{side}_request_body_size_bytes"),
            format!("Size of HTTP {side} request bodies"),
            self.request_size.clone(),
        );
        r.register(
            format!("http_{side}_response_body_size_bytes"),
            format!("Size of HTTP {side} response bodies"),
            self.response_size.clone(),
        );
    }
}

/// The three histograms of one label set, held directly so that a span
/// whose labels were seen before costs no allocation and no family lookup.
struct Handles {
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

/// Cached label sets before the cache starts over (bounded like the label
/// sets themselves: routes are capped per service, methods and statuses are
/// few).
const MAX_CACHED_LABEL_SETS: usize = 16384;

/// Label sets /metrics holds at most (families are never pruned, and
/// client spans bring the remote's port and status): as the OTLP store.
pub const MAX_SERIES: usize = crate::export::MAX_SERIES;

pub struct HttpMetrics {
    server: Direction,
    client: Direction,
    /// Label-set hash -> (kind, labels, handles); collisions kept apart.
    cache: FxHashMap<u64, Vec<(SpanKind, HttpLabels, Handles)>>,
    cached: usize,
    /// Hashes of every label set created (the cache above starts over).
    series: rustc_hash::FxHashSet<u64>,
    max_series: usize,
    /// Spans not counted because they would open a label set past the cap.
    series_limit: Counter,
    target_info: Family<TargetLabels, Gauge>,
    known_targets: HashSet<u32>,
    host_name: String,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry, max_series: usize, series_limit: Counter) -> Self {
        let m = HttpMetrics {
            server: Direction::new(),
            client: Direction::new(),
            cache: FxHashMap::default(),
            cached: 0,
            series: rustc_hash::FxHashSet::default(),
            max_series,
            series_limit,
            target_info: Family::default(),
            known_targets: HashSet::new(),
            host_name: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        };
        m.server.register(registry, "server");
        m.client.register(registry, "client");
        registry.register("target_info", "Target metadata", m.target_info.clone());
        m
    }

    pub fn record(&mut self, span: &Span) {
        let service = span.service_name();
        let port = span.server.port();
        let mut h = FxHasher::default();
        (
            span.kind as u8,
            &span.method,
            span.status,
            &span.route,
            span.scheme,
            port,
            service,
        )
            .hash(&mut h);
        let key = h.finish();
        let same = |(k, l, _): &&(SpanKind, HttpLabels, Handles)| {
            *k == span.kind
                && l.http_response_status_code == span.status
                && l.server_port == port
                && l.http_request_method == span.method
                && *l.http_route == *span.route
                && l.url_scheme == span.scheme
                && l.service_name == service
        };
        let hit = self.cache.get(&key).and_then(|v| v.iter().find(same));
        let handles = match hit {
            Some((_, _, handles)) => handles,
            None => {
                if !self.series.contains(&key) {
                    if self.series.len() >= self.max_series {
                        self.series_limit.inc();
                        self.note_target(span);
                        return;
                    }
                    self.series.insert(key);
                }
                let labels = HttpLabels {
                    http_request_method: span.method.to_string(),
                    http_response_status_code: span.status,
                    http_route: span.route.to_string(),
                    url_scheme: span.scheme,
                    server_port: port,
                    service_name: service.to_string(),
                };
                let dir = match span.kind {
                    SpanKind::Server => &self.server,
                    SpanKind::Client => &self.client,
                };
                let handles = Handles {
                    duration: dir.duration.get_or_create(&labels).clone(),
                    request_size: dir.request_size.get_or_create(&labels).clone(),
                    response_size: dir.response_size.get_or_create(&labels).clone(),
                };
                if self.cached >= MAX_CACHED_LABEL_SETS {
                    self.cache.clear();
                    self.cached = 0;
                }
                self.cached += 1;
                let slot = self.cache.entry(key).or_default();
                slot.push((span.kind, labels, handles));
                match slot.last() {
                    Some((_, _, h)) => h,
                    None => return,
                }
            }
        };
        handles.duration.observe(span.duration_ns() as f64 / 1e9);
        handles.request_size.observe(span.request_body_size as f64);
        handles
            .response_size
            .observe(span.response_body_size as f64);
        self.note_target(span);
    }

    /// target_info for the span's process, once per process.
    fn note_target(&mut self, span: &Span) {
        let p = &span.process;
        if self.known_targets.insert(p.pid) {
            self.target_info
                .get_or_create(&TargetLabels {
                    service_name: p.service_name.clone(),
                    service_instance_id: format!("{}-{}", self.host_name, p.pid),
                    host_name: self.host_name.clone(),
                    process_pid: p.pid,
                    process_executable_name: p.exe_name.clone(),
                    process_executable_path: p.exe_path.clone(),
                    telemetry_sdk_name: "ratatosk",
                    telemetry_sdk_version: env!("CARGO_PKG_VERSION"),
                })
                .set(1);
        }
    }

    /// A process ended: its target_info series goes away.
    pub fn forget_process(&mut self, pid: u32) {
        if self.known_targets.remove(&pid) {
            // Family has no remove-by-predicate; clear and let live
            // processes re-register on their next span.
            self.target_info.clear();
            self.known_targets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::span;
    use prometheus_client::encoding::text::encode;
    use std::sync::Arc;

    #[test]
    fn label_sets_past_the_cap_are_counted_not_created() {
        let mut registry = Registry::default();
        let limit = Counter::default();
        let mut m = HttpMetrics::new(&mut registry, 2, limit.clone());
        let p = Arc::new(proc_info(7, "srv"));
        for status in [200, 404, 500, 200, 404] {
            m.record(&span(p.clone(), status, SpanKind::Server));
        }
        // 200 and 404 fit; 500 opens a third label set and is refused;
        // the known ones still count.
        assert_eq!(limit.get(), 1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .collect();
        assert_eq!(counts.len(), 2, "{counts:#?}");
        assert!(counts.iter().all(|l| l.ends_with(" 2")), "{counts:#?}");
        // target_info is still kept for the process.
        assert!(text.contains("process_pid=\"7\""), "{text}");
    }
}
