//! RED metrics for OTLP: the shared aggregation ([`crate::red`]) keyed
//! by process, each process being one resource, exported as cumulative
//! explicit-bucket histograms with the semantic-convention names
//! (`http.server.request.duration`, `db.client.operation.duration`, …).
//! The series count is capped; a span that would open a series beyond
//! the cap is not recorded (counted).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric,
};

use super::resource::{ProcessResource, kv_int, kv_str};
use super::traces::scope;
pub use crate::red::Recorded;
use crate::red::{Hist, Instrument, LabelValue, RedStore, Series};
use crate::spans::Span;

/// A process's resource as a store owner: the same `Arc` is the same
/// instance (a new one for a pid means an exec or a reused pid).
#[derive(Clone)]
struct Owner(Arc<ProcessResource>);

impl PartialEq for Owner {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

impl Eq for Owner {}

impl Hash for Owner {
    fn hash<H: Hasher>(&self, h: &mut H) {
        Arc::as_ptr(&self.0).hash(h);
    }
}

pub struct MetricStore {
    store: RedStore<Owner>,
    /// Live instance of each pid.
    live: rustc_hash::FxHashMap<u32, Owner>,
    /// Instances that ended (exit, exec): exported once more, then dropped.
    retired: Vec<Owner>,
}

impl MetricStore {
    pub fn new(max_series: usize) -> Self {
        MetricStore {
            store: RedStore::new(max_series),
            live: rustc_hash::FxHashMap::default(),
            retired: Vec::new(),
        }
    }

    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.store.len()
    }

    pub fn record(
        &mut self,
        span: &Span,
        resource: &Arc<ProcessResource>,
        now_ns: u64,
    ) -> Recorded {
        let pid = resource.pid;
        let owner = Owner(resource.clone());
        // A new ProcInfo for the pid (exec, reuse) is a new instance.
        match self.live.get(&pid) {
            Some(o) if *o == owner => {}
            Some(_) => {
                if let Some(old) = self.live.insert(pid, owner.clone()) {
                    self.retired.push(old);
                }
            }
            None => {
                self.live.insert(pid, owner.clone());
            }
        }
        self.store.record(&owner, span, now_ns)
    }

    /// The process's series get exported one last time, then dropped.
    pub fn forget_process(&mut self, pid: u32) {
        if let Some(o) = self.live.remove(&pid) {
            self.retired.push(o);
        }
    }

    /// Every series as OTLP, at most `max_series_per_chunk` series per
    /// element (receivers cap message sizes: gRPC's default is 4 MiB).
    /// Retired processes are included and dropped from the store; call
    /// only when the result will be handed over.
    pub fn snapshot(&mut self, now_ns: u64, max_series_per_chunk: usize) -> Vec<ResourceMetrics> {
        let mut out = Vec::new();
        for (owner, series) in self.store.owners() {
            let mut series: Vec<&Series> = series.collect();
            // Stable order: easier on receivers and on tests.
            series.sort_by_key(|s| (s.instrument, s.start_ns));
            for chunk in series.chunks(max_series_per_chunk.max(1)) {
                out.push(ResourceMetrics {
                    resource: Some(owner.0.resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics: metrics_of(chunk, now_ns),
                        schema_url: String::new(),
                    }],
                    schema_url: opentelemetry_semantic_conventions::SCHEMA_URL.to_string(),
                });
            }
        }
        for o in std::mem::take(&mut self.retired) {
            self.store.remove_owner(&o);
        }
        out
    }
}

fn point(h: &Hist, attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.count,
        sum: Some(h.sum),
        bucket_counts: h.counts.clone(),
        explicit_bounds: h.bounds.to_vec(),
        min: (h.count > 0).then_some(h.min),
        max: (h.count > 0).then_some(h.max),
        ..Default::default()
    }
}

fn attributes(s: &Series) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(8);
    s.labels.for_each(&mut |k, v| {
        a.push(match v {
            LabelValue::Str(v) => kv_str(k, v),
            LabelValue::Int(i) => kv_int(k, i),
        })
    });
    a
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
    for instrument in Instrument::ALL {
        let of: Vec<&&Series> = series
            .iter()
            .filter(|s| s.instrument == instrument)
            .collect();
        if of.is_empty() {
            continue;
        }
        for (i, d) in instrument.histograms().iter().enumerate() {
            let points = of
                .iter()
                .filter_map(|s| Some(point(s.hists.get(i)?, attributes(s), s.start_ns, now)))
                .collect();
            out.push(histogram(d.otlp, d.unit, d.help, points));
        }
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
    use crate::export::traces::tests::{db_span, span};
    use crate::red::DURATION_BUCKETS;
    use crate::spans::SpanKind;

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
                st.record(&span(r.proc.clone(), status, SpanKind::Server), &r, 7),
                Recorded::Yes
            );
        }
        st.record(&span(r.proc.clone(), 200, SpanKind::Client), &r, 8);
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
        st.record(&span(r.proc.clone(), 200, SpanKind::Server), &r, 50);
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
            st.record(&span(a.proc.clone(), 200, SpanKind::Server), &a, 1),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&span(b.proc.clone(), 200, SpanKind::Server), &b, 1),
            Recorded::Yes
        );
        assert_eq!(
            st.record(&span(b.proc.clone(), 404, SpanKind::Server), &b, 1),
            Recorded::SeriesLimit
        );
        // Existing series still count.
        assert_eq!(
            st.record(&span(b.proc.clone(), 200, SpanKind::Server), &b, 1),
            Recorded::Yes
        );
        // A new process refused at the cap leaves no entry behind.
        let c = res(3);
        assert_eq!(
            st.record(&span(c.proc.clone(), 200, SpanKind::Server), &c, 1),
            Recorded::SeriesLimit
        );
        st.forget_process(1);
        // Exported one last time...
        assert_eq!(st.snapshot(5, 1000).len(), 2);
        // ...then gone, freeing room.
        assert_eq!(st.snapshot(6, 1000).len(), 1);
        assert_eq!(st.series(), 1);
        assert_eq!(
            st.record(&span(b.proc.clone(), 404, SpanKind::Server), &b, 1),
            Recorded::Yes
        );
    }

    #[test]
    fn database_calls_have_their_own_instrument() {
        let r = res(4);
        let mut st = MetricStore::new(100);
        st.record(&db_span(r.proc.clone(), None), &r, 1);
        st.record(&db_span(r.proc.clone(), Some("42P01")), &r, 1);
        let snap = st.snapshot(2, 1000);
        let d = hist(&snap, "db.client.operation.duration");
        assert_eq!(d.len(), 2);
        let failed = d
            .iter()
            .find(|p| p.attributes.iter().any(|a| a.key == "error.type"))
            .unwrap();
        assert!(failed.attributes.iter().any(|a| a.key == "db.system.name"));
        assert_eq!(hist(&snap, "http.server.request.duration").len(), 0);
    }

    #[test]
    fn chunks_big_snapshots() {
        let r = res(3);
        let mut st = MetricStore::new(100);
        for status in 200..210 {
            st.record(&span(r.proc.clone(), status, SpanKind::Server), &r, 1);
        }
        let snap = st.snapshot(2, 4);
        assert_eq!(snap.len(), 3);
        assert_eq!(data_points(&snap), 30);
    }
}
