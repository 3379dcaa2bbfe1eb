//! RED metrics as Prometheus reads them: one [`RedStore`] keyed by
//! service (every process of a service adds to the same series, as
//! Beyla's names and labels expect), encoded at each scrape by a
//! collector; `target_info` per process.
//!
//! Series live until not updated for the TTL (Beyla's
//! `prometheus_export.ttl`): a process's exit removes only its
//! `target_info`, since its series may be shared with its siblings and a
//! counter must not go down while it is exported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;

use super::{Instrument, LabelValue, Recorded, RedStore, Series};
use crate::discovery::ProcInfo;
use crate::spans::Span;

/// Whose series these are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub service_name: String,
    pub service_namespace: String,
    pub service_instance_id: String,
    pub host_name: String,
    pub process_pid: u32,
    pub process_executable_name: String,
    pub process_executable_path: String,
    pub telemetry_sdk_name: &'static str,
    pub telemetry_sdk_version: &'static str,
}

type SharedStore = Arc<Mutex<RedStore<Arc<ServiceKey>>>>;

/// Processes whose service key is remembered before the cache starts
/// over (it only saves rebuilding keys).
const MAX_CACHED_PROCESSES: usize = 65_536;

pub struct PrometheusRed {
    store: SharedStore,
    /// pid -> (the ProcInfo the key was made from, the key).
    keys: FxHashMap<u32, (Arc<ProcInfo>, Arc<ServiceKey>)>,
    target_info: Family<TargetLabels, Gauge>,
    /// target_info label set of each live process, to remove exactly it.
    targets: FxHashMap<u32, TargetLabels>,
    series_limit: Counter,
    expired: Counter,
    ttl_ns: u64,
    last_expiry_ns: u64,
    host_name: String,
}

impl PrometheusRed {
    pub fn new(
        registry: &mut Registry,
        max_series: usize,
        series_limit: Counter,
        expired: Counter,
        ttl: Duration,
    ) -> Self {
        let store: SharedStore = Arc::new(Mutex::new(RedStore::new(max_series)));
        let target_info = Family::<TargetLabels, Gauge>::default();
        registry.register_collector(Box::new(RedCollector(store.clone())));
        registry.register("target_info", "Target metadata", target_info.clone());
        PrometheusRed {
            store,
            keys: FxHashMap::default(),
            target_info,
            targets: FxHashMap::default(),
            series_limit,
            expired,
            ttl_ns: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            last_expiry_ns: 0,
            host_name: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// Records a batch of spans (one lock for the batch).
    pub fn record(&mut self, spans: &[Span], now_ns: u64) {
        let mut refused = 0;
        {
            let Ok(mut store) = self.store.lock() else {
                return;
            };
            for s in spans {
                let key = key_of(&mut self.keys, &s.process);
                if store.record(&key, s, now_ns) == Recorded::SeriesLimit {
                    refused += 1;
                }
            }
        }
        self.series_limit.inc_by(refused);
        for s in spans {
            self.note_target(&s.process);
        }
    }

    /// target_info for a process, once.
    fn note_target(&mut self, p: &ProcInfo) {
        if self.targets.contains_key(&p.pid) {
            return;
        }
        let labels = TargetLabels {
            service_name: p.service_name.clone(),
            service_namespace: p.service_namespace.clone().unwrap_or_default(),
            service_instance_id: format!("{}-{}", self.host_name, p.pid),
            host_name: self.host_name.clone(),
            process_pid: p.pid,
            process_executable_name: p.exe_name.clone(),
            process_executable_path: p.exe_path.clone(),
            telemetry_sdk_name: "ratatosk",
            telemetry_sdk_version: env!("CARGO_PKG_VERSION"),
        };
        self.target_info.get_or_create(&labels).set(1);
        self.targets.insert(p.pid, labels);
    }

    /// A process ended: its target_info goes; the series it shares with
    /// its service stay until they expire.
    pub fn forget_process(&mut self, pid: u32) {
        if let Some(labels) = self.targets.remove(&pid) {
            self.target_info.remove(&labels);
        }
        self.keys.remove(&pid);
    }

    /// Drops series not updated for the TTL (checked every tenth of it).
    pub fn expire(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.last_expiry_ns) < self.ttl_ns / 10 {
            return;
        }
        self.last_expiry_ns = now_ns;
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        let n = store.expire(now_ns.saturating_sub(self.ttl_ns));
        self.expired.inc_by(n as u64);
    }
}

fn key_of(
    keys: &mut FxHashMap<u32, (Arc<ProcInfo>, Arc<ServiceKey>)>,
    p: &Arc<ProcInfo>,
) -> Arc<ServiceKey> {
    if let Some((info, key)) = keys.get(&p.pid)
        && Arc::ptr_eq(info, p)
    {
        return key.clone();
    }
    if keys.len() >= MAX_CACHED_PROCESSES {
        keys.clear();
    }
    let key = Arc::new(ServiceKey {
        name: p.service_name.clone(),
        namespace: p.service_namespace.clone(),
    });
    keys.insert(p.pid, (p.clone(), key.clone()));
    key
}

/// Encodes the store at each scrape.
#[derive(Debug)]
struct RedCollector(SharedStore);

impl Collector for RedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(store) = self.0.lock() else {
            return Ok(());
        };
        for instrument in Instrument::ALL {
            let series: Vec<(&Arc<ServiceKey>, &Series)> = store
                .owners()
                .flat_map(|(o, s)| s.map(move |s| (o, s)))
                .filter(|(_, s)| s.instrument == instrument)
                .collect();
            if series.is_empty() {
                continue;
            }
            for (i, desc) in instrument.histograms().iter().enumerate() {
                let mut family =
                    encoder.encode_descriptor(desc.prom, desc.help, None, MetricType::Histogram)?;
                for (owner, s) in &series {
                    let Some(h) = s.hists.get(i) else {
                        continue;
                    };
                    let labels = prom_labels(owner, s);
                    let buckets: Vec<(f64, u64)> = h
                        .bounds
                        .iter()
                        .copied()
                        .chain(std::iter::once(f64::INFINITY))
                        .zip(h.counts.iter().copied())
                        .collect();
                    let metric = family.encode_family(&labels)?;
                    HistogramValue {
                        sum: h.sum,
                        count: h.count,
                        buckets: &buckets,
                    }
                    .encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

/// A histogram's values, encoded the way prometheus-client's own are.
struct HistogramValue<'a> {
    sum: f64,
    count: u64,
    buckets: &'a [(f64, u64)],
}

impl EncodeMetric for HistogramValue<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Prometheus labels of a series: the family's, with dots turned to
/// underscores, then the service's.
fn prom_labels(owner: &ServiceKey, s: &Series) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(10);
    s.labels.for_each(&mut |k, v| {
        let v = match v {
            LabelValue::Str(v) => v.to_string(),
            LabelValue::Int(i) => i.to_string(),
        };
        out.push((k.replace('.', "_"), v));
    });
    out.push(("service_name".into(), owner.name.clone()));
    if let Some(ns) = &owner.namespace {
        out.push(("service_namespace".into(), ns.clone()));
    }
    out
}

/// Label names of every series /metrics serves, per family (for the
/// docs test).
#[cfg(test)]
pub fn label_names(text: &str, family: &str) -> Vec<String> {
    let mut names: std::collections::HashMap<String, ()> = Default::default();
    for line in text.lines().filter(|l| l.starts_with(family)) {
        if let Some(inner) = line.split_once('{').and_then(|(_, r)| r.split_once('}')) {
            for kv in inner.0.split(',') {
                if let Some((k, _)) = kv.split_once('=') {
                    names.insert(k.to_string(), ());
                }
            }
        }
    }
    let mut v: Vec<String> = names.into_keys().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::resource::tests::proc_info;
    use crate::export::traces::tests::{db_span, rpc_span, span};
    use crate::spans::SpanKind;
    use prometheus_client::encoding::text::encode;

    fn setup(max: usize) -> (Registry, PrometheusRed, Counter, Counter) {
        let mut registry = Registry::default();
        let (limit, expired) = (Counter::default(), Counter::default());
        let m = PrometheusRed::new(
            &mut registry,
            max,
            limit.clone(),
            expired.clone(),
            Duration::from_secs(300),
        );
        (registry, m, limit, expired)
    }

    fn text(r: &Registry) -> String {
        let mut t = String::new();
        encode(&mut t, r).unwrap();
        t
    }

    #[test]
    fn label_sets_past_the_cap_are_counted_not_created() {
        let (registry, mut m, limit, _) = setup(2);
        let p = Arc::new(proc_info(7, "srv"));
        let spans: Vec<Span> = [200, 404, 500, 200, 404]
            .into_iter()
            .map(|st| span(p.clone(), st, SpanKind::Server))
            .collect();
        m.record(&spans, 1);
        // 200 and 404 fit; 500 opens a third label set and is refused;
        // the known ones still count.
        assert_eq!(limit.get(), 1);
        let text = text(&registry);
        let counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .collect();
        assert_eq!(counts.len(), 2, "{counts:#?}");
        assert!(counts.iter().all(|l| l.ends_with(" 2")), "{counts:#?}");
        assert!(text.contains("process_pid=\"7\""), "{text}");
        assert!(
            text.contains("http_server_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\""), "{text}");
    }

    #[test]
    fn families_labels_and_exit() {
        let (registry, mut m, _, expired) = setup(100);
        let a = Arc::new(proc_info(1, "a"));
        let b = Arc::new(proc_info(2, "b"));
        m.record(
            &[
                span(a.clone(), 200, SpanKind::Server),
                span(b.clone(), 503, SpanKind::Client),
                db_span(b.clone(), Some("42P01")),
                rpc_span(b.clone(), SpanKind::Client, Some(5)),
            ],
            10,
        );
        let t = text(&registry);
        assert_eq!(
            label_names(&t, "http_server_request_duration_seconds_count"),
            [
                "http_request_method",
                "http_response_status_code",
                "http_route",
                "network_protocol_version",
                "server_port",
                "service_name",
                "url_scheme"
            ]
        );
        assert_eq!(
            label_names(&t, "http_client_request_duration_seconds_count"),
            [
                "error_type",
                "http_request_method",
                "http_response_status_code",
                "network_protocol_version",
                "server_address",
                "server_port",
                "service_name",
                "url_scheme"
            ]
        );
        assert_eq!(
            label_names(&t, "db_client_operation_duration_seconds_count"),
            [
                "db_collection_name",
                "db_namespace",
                "db_operation_name",
                "db_system_name",
                "error_type",
                "server_port",
                "service_name"
            ]
        );
        assert!(t.contains("db_system_name=\"postgresql\""), "{t}");
        // gRPC under Beyla's family name, with the conventions' labels.
        assert_eq!(
            label_names(&t, "rpc_client_call_duration_seconds_count"),
            [
                "error_type",
                "rpc_method",
                "rpc_response_status_code",
                "rpc_system_name",
                "server_port",
                "service_name"
            ]
        );
        assert!(t.contains("rpc_response_status_code=\"NOT_FOUND\""), "{t}");
        // Process 1 exits: only its target_info goes.
        m.forget_process(1);
        let t = text(&registry);
        assert!(!t.contains("process_pid=\"1\""), "{t}");
        assert!(t.contains("process_pid=\"2\""), "{t}");
        assert!(
            t.contains("service_name=\"a\""),
            "series stay until the TTL"
        );
        // Past the TTL, series not updated go, counted.
        let ttl = 300_000_000_000;
        m.record(&[span(b.clone(), 200, SpanKind::Server)], ttl);
        m.expire(ttl + 20);
        let t = text(&registry);
        assert!(!t.contains("service_name=\"a\""), "{t}");
        assert!(t.contains("service_name=\"b\""), "{t}");
        assert_eq!(expired.get(), 4);
    }
}
