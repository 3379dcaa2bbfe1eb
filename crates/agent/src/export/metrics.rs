//! RED metrics for OTLP: cumulative explicit-bucket histograms per process
//! and label set, with the semconv names Beyla exports
//! (`http.server.request.duration`, …) and the buckets of the Prometheus
//! output. The series count is capped; a span that would open a series
//! beyond the cap is not recorded (counted).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric,
};
use opentelemetry_semantic_conventions::{attribute as semconv, metric as names};
use rustc_hash::{FxHashMap, FxHasher};

use super::resource::{ProcessResource, kv_int, kv_str};
use super::traces::scope;
use crate::metrics::{DURATION_BUCKETS, SIZE_BUCKETS};
use crate::spans::{Span, SpanKind};

/// One cumulative histogram.
#[derive(Debug, Clone)]
struct Hist {
    bounds: &'static [f64],
    /// One more than `bounds`: the last counts values above every bound.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Hist {
    fn new(bounds: &'static [f64]) -> Self {
        Hist {
            bounds,
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn observe(&mut self, v: f64) {
        // OTLP buckets are upper-inclusive: (bound[i-1], bound[i]].
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn point(&self, attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.counts.clone(),
            explicit_bounds: self.bounds.to_vec(),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SeriesKey {
    kind: SpanKind,
    method: &'static str,
    status: u16,
    route: Arc<str>,
    scheme: &'static str,
    port: u16,
}

impl SeriesKey {
    fn matches(&self, s: &Span) -> bool {
        self.kind == s.kind
            && self.status == s.status
            && self.port == s.server.port()
            && self.method == s.method
            && *self.route == *s.route
            && self.scheme == s.scheme
    }

    fn attributes(&self) -> Vec<KeyValue> {
        let mut a = vec![
            kv_str(semconv::HTTP_REQUEST_METHOD, self.method),
            kv_str(semconv::HTTP_ROUTE, &*self.route),
            kv_str(semconv::URL_SCHEME, self.scheme),
            kv_int(semconv::SERVER_PORT, i64::from(self.port)),
        ];
        if self.status != 0 {
            a.push(kv_int(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(self.status),
            ));
        }
        a
    }
}

fn key_hash(s: &Span) -> u64 {
    let mut h = FxHasher::default();
    (
        s.kind as u8,
        &s.method,
        s.status,
        &*s.route,
        s.scheme,
        s.server.port(),
    )
        .hash(&mut h);
    h.finish()
}

#[derive(Debug)]
struct Series {
    key: SeriesKey,
    start_ns: u64,
    duration: Hist,
    request_size: Hist,
    response_size: Hist,
}

/// The series of one process.
struct ProcessSeries {
    resource: Arc<ProcessResource>,
    /// Label-set hash -> series; collisions kept apart.
    series: FxHashMap<u64, Vec<Series>>,
    len: usize,
}

/// What one span did to the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Yes,
    /// The series cap was reached.
    SeriesLimit,
}

pub struct MetricStore {
    live: FxHashMap<u32, ProcessSeries>,
    /// Processes that ended (or exec'd): exported once more, then dropped.
    retired: Vec<ProcessSeries>,
    series: usize,
    max_series: usize,
}

impl MetricStore {
    pub fn new(max_series: usize) -> Self {
        MetricStore {
            live: FxHashMap::default(),
            retired: Vec::new(),
            series: 0,
            max_series,
        }
    }

    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.series
    }

    /// `now_ns` is asked only when the span opens a series (a clock read
    /// per span showed in the pipeline bench).
    pub fn record(
        &mut self,
        span: &Span,
        resource: &Arc<ProcessResource>,
        now_ns: impl FnOnce() -> u64,
    ) -> Recorded {
        let pid = resource.pid;
        // A new ProcInfo for the pid (exec, reuse) is a new instance.
        if let Some(p) = self.live.get(&pid)
            && !Arc::ptr_eq(&p.resource, resource)
            && let Some(old) = self.live.remove(&pid)
        {
            self.retired.push(old);
        }
        // Refused spans must leave nothing behind, not even an empty
        // process entry: the cap bounds memory.
        if self.series >= self.max_series && !self.live.contains_key(&pid) {
            return Recorded::SeriesLimit;
        }
        let p = self.live.entry(pid).or_insert_with(|| ProcessSeries {
            resource: resource.clone(),
            series: FxHashMap::default(),
            len: 0,
        });
        let hash = key_hash(span);
        // Refused spans must leave nothing behind: the cap bounds memory.
        let known = p
            .series
            .get(&hash)
            .is_some_and(|slot| slot.iter().any(|s| s.key.matches(span)));
        if !known && self.series >= self.max_series {
            return Recorded::SeriesLimit;
        }
        let slot = p.series.entry(hash).or_default();
        let i = match slot.iter().position(|s| s.key.matches(span)) {
            Some(i) => i,
            None => {
                self.series += 1;
                p.len += 1;
                slot.push(Series {
                    key: SeriesKey {
                        kind: span.kind,
                        method: span.method,
                        status: span.status,
                        route: span.route.clone(),
                        scheme: span.scheme,
                        port: span.server.port(),
                    },
                    start_ns: now_ns(),
                    duration: Hist::new(&DURATION_BUCKETS),
                    request_size: Hist::new(&SIZE_BUCKETS),
                    response_size: Hist::new(&SIZE_BUCKETS),
                });
                slot.len() - 1
            }
        };
        if let Some(s) = slot.get_mut(i) {
            s.duration.observe(span.duration_ns() as f64 / 1e9);
            s.request_size.observe(span.request_body_size as f64);
            s.response_size.observe(span.response_body_size as f64);
        }
        Recorded::Yes
    }

    /// The process's series get exported one last time, then dropped.
    pub fn forget_process(&mut self, pid: u32) {
        if let Some(p) = self.live.remove(&pid) {
            self.retired.push(p);
        }
    }

    /// Every series as OTLP, at most `max_series_per_chunk` series per
    /// element (receivers cap message sizes: gRPC's default is 4 MiB).
    /// Retired processes are included and dropped from the store; call
    /// only when the result will be handed over.
    pub fn snapshot(&mut self, now_ns: u64, max_series_per_chunk: usize) -> Vec<ResourceMetrics> {
        let mut out = Vec::new();
        let retired = std::mem::take(&mut self.retired);
        for p in self.live.values().chain(retired.iter()) {
            let mut series: Vec<&Series> = p.series.values().flatten().collect();
            // Stable order: easier on receivers and on tests.
            series.sort_by_key(|s| s.start_ns);
            for chunk in series.chunks(max_series_per_chunk.max(1)) {
                out.push(ResourceMetrics {
                    resource: Some(p.resource.resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics: metrics_of(chunk, now_ns),
                        schema_url: String::new(),
                    }],
                    schema_url: opentelemetry_semantic_conventions::SCHEMA_URL.to_string(),
                });
            }
        }
        for p in &retired {
            self.series = self.series.saturating_sub(p.len);
        }
        out
    }
}

fn histogram(name: &str, unit: &str, description: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn metrics_of(series: &[&Series], now: u64) -> Vec<Metric> {
    let mut out = Vec::new();
    for kind in [SpanKind::Server, SpanKind::Client] {
        let of_kind: Vec<&&Series> = series.iter().filter(|s| s.key.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let (d, rq, rs) = match kind {
            SpanKind::Server => (
                names::HTTP_SERVER_REQUEST_DURATION,
                names::HTTP_SERVER_REQUEST_BODY_SIZE,
                names::HTTP_SERVER_RESPONSE_BODY_SIZE,
            ),
            SpanKind::Client => (
                names::HTTP_CLIENT_REQUEST_DURATION,
                names::HTTP_CLIENT_REQUEST_BODY_SIZE,
                names::HTTP_CLIENT_RESPONSE_BODY_SIZE,
            ),
        };
        let side = kind.as_str();
        let points = |h: fn(&Series) -> &Hist| {
            of_kind
                .iter()
                .map(|s| h(s).point(s.key.attributes(), s.start_ns, now))
                .collect::<Vec<_>>()
        };
        out.push(histogram(
            d,
            "s",
            &format!("Duration of HTTP {side} requests"),
            points(|s| &s.duration),
        ));
        out.push(histogram(
            rq,
            "By",
            &format!("Size of HTTP {side} request bodies"),
            points(|s| &s.request_size),
        ));
        out.push(histogram(
            rs,
            "By",
            &format!("Size of HTTP {side} response bodies"),
            points(|s| &s.response_size),
        ));
    }
    out
}

/// Data points in a set of resource metrics (what receivers count).
pub fn data_points(rm: &[ResourceMetrics]) -> u64 {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::span;

    fn res(pid: u32) -> Arc<ProcessResource> {
        let p = Arc::new(proc_info(pid, "srv"));
        Arc::new(ProcessResource::new(p, Default::default()))
    }

    fn hist<'a>(rm: &'a [ResourceMetrics], name: &str) -> Vec<&'a HistogramDataPoint> {
        rm.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => h.data_points.iter().collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn aggregates_cumulatively() {
        let r = res(10);
        let mut st = MetricStore::new(100);
        for status in [200, 200, 500] {
            assert_eq!(
                st.record(&span(r.proc.clone(), status, SpanKind::Server), &r, || 7),
                Recorded::Yes
            );
        }
        st.record(&span(r.proc.clone(), 200, SpanKind::Client), &r, || 8);
        assert_eq!(st.series(), 3);
        let snap = st.snapshot(99, 1000);
        assert_eq!(data_points(&snap), 9);
        let d = hist(&snap, "http.server.request.duration");
        assert_eq!(d.len(), 2);
        let ok = d.iter().find(|p| p.count == 2).unwrap();
        assert_eq!(ok.start_time_unix_nano, 7);
        assert_eq!(ok.time_unix_nano, 99);
        assert_eq!(ok.explicit_bounds, DURATION_BUCKETS.to_vec());
        // 4.999 ms falls in (0.0, 0.005].
        assert_eq!(ok.bucket_counts[1], 2);
        assert_eq!(ok.bucket_counts.iter().sum::<u64>(), 2);
        let sizes = hist(&snap, "http.server.response.body.size");
        // 12 bytes: (0, 32].
        assert!(sizes.iter().all(|p| p.bucket_counts[1] == p.count));
        assert_eq!(hist(&snap, "http.client.request.duration").len(), 1);
        // Cumulative: a second snapshot still counts everything.
        st.record(&span(r.proc.clone(), 200, SpanKind::Server), &r, || 50);
        let snap = st.snapshot(100, 1000);
        let d = hist(&snap, "http.server.request.duration");
        assert!(
            d.iter()
                .any(|p| p.count == 3 && p.start_time_unix_nano == 7)
        );
    }

    #[test]
    fn caps_series_and_forgets_processes() {
        let (a, b) = (res(1), res(2));
        let mut st = MetricStore::new(2);
        assert_eq!(
            st.record(&span(a.proc.clone(), 200, SpanKind::Server), &a, || 1),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&span(b.proc.clone(), 200, SpanKind::Server), &b, || 1),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&span(b.proc.clone(), 404, SpanKind::Server), &b, || 1),
            Recorded::SeriesLimit
        );
        // Existing series still count.
        assert_eq!(
            st.record(&span(b.proc.clone(), 200, SpanKind::Server), &b, || 1),
            Recorded::Yes
        );
        // A new process refused at the cap leaves no entry behind.
        let c = res(3);
        assert_eq!(
            st.record(&span(c.proc.clone(), 200, SpanKind::Server), &c, || 1),
            Recorded::SeriesLimit
        );
        assert!(!st.live.contains_key(&3));
        st.forget_process(1);
        // Exported one last time...
        assert_eq!(st.snapshot(5, 1000).len(), 2);
        // ...then gone, freeing room.
        assert_eq!(st.snapshot(6, 1000).len(), 1);
        assert_eq!(st.series(), 1);
        assert_eq!(
            st.record(&span(b.proc.clone(), 404, SpanKind::Server), &b, || 1),
            Recorded::Yes
        );
    }

    #[test]
    fn chunks_big_snapshots() {
        let r = res(3);
        let mut st = MetricStore::new(100);
        for status in 200..210 {
            st.record(&span(r.proc.clone(), status, SpanKind::Server), &r, || 1);
        }
        let snap = st.snapshot(2, 4);
        assert_eq!(snap.len(), 3);
        assert_eq!(data_points(&snap), 30);
    }
}
