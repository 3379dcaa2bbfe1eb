//! The agent's own metrics (`ratatosk_*`, the families /metrics serves)
//! as OTLP under the agent's resource. The exporter keeps a registry of
//! the `SelfMetrics` families alone (shared with the /metrics registry's)
//! and walks it generically through prometheus-client's OpenMetrics
//! data-model encoding, so a self-metric added later is exported without
//! code here. The per-service families of /metrics (`http_*`,
//! `target_info`) are not: the RED store exports them per process
//! resource, and `target_info` is what OTLP resources already are.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    metric, number_data_point,
};
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pm;
use prometheus_client::registry::Registry;

use super::resource::kv_str;

/// Families exported from the registry.
const PREFIX: &str = "ratatosk_";

fn labels(ls: &[pm::LabelPair]) -> Vec<KeyValue> {
    ls.iter().map(|l| kv_str(&l.name, &l.value)).collect()
}

/// Integers stay integers (counters count things); the encoding carries
/// every value as a double.
fn value(v: f64) -> number_data_point::Value {
    const EXACT: f64 = (1u64 << 53) as f64;
    if v.fract() == 0.0 && v.abs() < EXACT {
        number_data_point::Value::AsInt(v as i64)
    } else {
        number_data_point::Value::AsDouble(v)
    }
}

fn number(attributes: Vec<KeyValue>, v: f64, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(value(v)),
        ..Default::default()
    }
}

/// The registry's `ratatosk_*` families as OTLP metrics. Counters are
/// monotonic cumulative sums starting at `start_ns` (the agent's start)
/// and lose the `_total` the Prometheus encoding adds (OTLP receivers add
/// it back when they expose Prometheus); gauges stay gauges, histograms
/// become cumulative histograms.
pub fn encode(
    registry: &Registry,
    start_ns: u64,
    now_ns: u64,
) -> Result<Vec<Metric>, std::fmt::Error> {
    let families = prometheus_client::encoding::prometheus_protobuf::encode(registry)?;
    Ok(from_families(families, start_ns, now_ns))
}

pub fn from_families(families: Vec<pm::MetricFamily>, start: u64, now: u64) -> Vec<Metric> {
    let mut out = Vec::new();
    for fam in families {
        if !fam.name.starts_with(PREFIX) {
            continue;
        }
        let kind = pm::MetricType::try_from(fam.r#type).unwrap_or(pm::MetricType::Untyped);
        let data = match kind {
            pm::MetricType::Counter => {
                let points: Vec<_> = fam
                    .metric
                    .iter()
                    .filter_map(|m| {
                        Some(number(
                            labels(&m.label),
                            m.counter.as_ref()?.value,
                            start,
                            now,
                        ))
                    })
                    .collect();
                (!points.is_empty()).then_some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }))
            }
            pm::MetricType::Gauge => {
                // Gauges have no start time.
                let points: Vec<_> = fam
                    .metric
                    .iter()
                    .filter_map(|m| Some(number(labels(&m.label), m.gauge.as_ref()?.value, 0, now)))
                    .collect();
                (!points.is_empty()).then_some(metric::Data::Gauge(Gauge {
                    data_points: points,
                }))
            }
            pm::MetricType::Histogram => {
                let points: Vec<_> = fam
                    .metric
                    .iter()
                    .filter_map(|m| {
                        Some(histogram(
                            labels(&m.label),
                            m.histogram.as_ref()?,
                            start,
                            now,
                        ))
                    })
                    .collect();
                (!points.is_empty()).then_some(metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }))
            }
            // The agent registers no other kinds.
            _ => None,
        };
        // None also for a family with no series yet (a labelled counter
        // nobody bumped).
        let Some(data) = data else {
            continue;
        };
        let name = match kind {
            pm::MetricType::Counter => fam.name.strip_suffix("_total").unwrap_or(&fam.name),
            _ => &fam.name,
        };
        out.push(Metric {
            name: name.to_string(),
            description: fam.help.trim_end_matches('.').to_string(),
            unit: fam.unit.clone(),
            data: Some(data),
            ..Default::default()
        });
    }
    out
}

/// Prometheus buckets are cumulative with an optional last `+Inf`; OTLP
/// wants per-bucket counts and the finite bounds only.
fn histogram(
    attributes: Vec<KeyValue>,
    h: &pm::Histogram,
    start: u64,
    now: u64,
) -> HistogramDataPoint {
    let mut explicit_bounds = Vec::with_capacity(h.bucket.len());
    let mut bucket_counts = Vec::with_capacity(h.bucket.len() + 1);
    let mut below = 0u64;
    for b in &h.bucket {
        if !b.upper_bound.is_finite() {
            break;
        }
        explicit_bounds.push(b.upper_bound);
        bucket_counts.push(b.cumulative_count.saturating_sub(below));
        below = b.cumulative_count;
    }
    bucket_counts.push(h.sample_count.saturating_sub(below));
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.sample_count,
        sum: Some(h.sample_sum),
        bucket_counts,
        explicit_bounds,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfmon::{QueueLabel, SelfMetrics};
    use prometheus_client::metrics::histogram::Histogram as PHist;

    #[test]
    fn walks_the_registry() {
        let m = SelfMetrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        let h = PHist::new([0.1, 1.0]);
        r.register("ratatosk_test_latency", "test", h.clone());
        r.register(
            "http_server_request_duration_seconds",
            "not ours",
            PHist::new([1.0]),
        );
        m.spans_emitted.inc_by(5);
        m.queue_fill
            .get_or_create(&QueueLabel { queue: "a_to_b" })
            .set(3);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(0.7);
        h.observe(9.0);
        let out = encode(&r, 1, 2).unwrap();
        assert!(out.iter().all(|m| m.name.starts_with("ratatosk_")));
        let get = |n: &str| {
            out.iter()
                .find(|m| m.name == n)
                .unwrap()
                .data
                .clone()
                .unwrap()
        };
        match get("ratatosk_spans_emitted") {
            metric::Data::Sum(s) => {
                assert!(s.is_monotonic);
                assert_eq!(
                    s.data_points[0].value,
                    Some(number_data_point::Value::AsInt(5))
                );
                assert_eq!(s.data_points[0].start_time_unix_nano, 1);
            }
            d => panic!("{d:?}"),
        }
        match get("ratatosk_queue_fill") {
            metric::Data::Gauge(g) => {
                assert_eq!(
                    g.data_points[0].value,
                    Some(number_data_point::Value::AsInt(3))
                );
                assert_eq!(g.data_points[0].attributes[0].key, "queue");
            }
            d => panic!("{d:?}"),
        }
        match get("ratatosk_test_latency") {
            metric::Data::Histogram(h) => {
                let p = &h.data_points[0];
                assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
                assert_eq!(p.bucket_counts, vec![1, 2, 1]);
                assert_eq!(p.count, 4);
            }
            d => panic!("{d:?}"),
        }
        // Unlabelled families always have their one series; labelled ones
        // nobody touched have none and are left out.
        assert!(out.iter().any(|m| m.name == "ratatosk_bpf_events"));
        assert!(!out.iter().any(|m| m.name == "ratatosk_otlp_dropped"));
    }
}
