//! `OTEL_TRACES_SAMPLER` semantics, decided once per span when it is built:
//! which spans the trace exporters send. Metrics count every request.

use crate::config::export::Sampler;

/// The incoming W3C trace context of a request (`traceparent`), checked
/// and decoded by the HTTP parser.
pub use ratatosk_protocols::http1::TraceParent;

/// Whether a span with this trace id and parent is exported.
pub fn sample(sampler: &Sampler, trace_id: &[u8; 16], parent: Option<&TraceParent>) -> bool {
    match sampler {
        Sampler::AlwaysOn => true,
        Sampler::AlwaysOff => false,
        Sampler::TraceIdRatio(ratio) => ratio_sampled(*ratio, trace_id),
        Sampler::ParentBased(root) => match parent {
            Some(p) => p.sampled(),
            None => sample(root, trace_id, None),
        },
    }
}

/// The OpenTelemetry rule: the trace id's rightmost 56 bits, as a number,
/// below `ratio × 2^56` — so every service keeps the same traces.
fn ratio_sampled(ratio: f64, trace_id: &[u8; 16]) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return false;
    }
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id[9..]);
    let r = u64::from_be_bytes(low);
    let threshold = (ratio * (1u64 << 56) as f64) as u64;
    r < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers() {
        let id = [0x55u8; 16];
        let sampled = TraceParent {
            version: 0,
            trace_id: id,
            parent_id: [1; 8],
            flags: 1,
        };
        let on = Some(sampled);
        let off = Some(TraceParent {
            flags: 0,
            ..sampled
        });
        assert!(sample(&Sampler::AlwaysOn, &id, off.as_ref()));
        assert!(!sample(&Sampler::AlwaysOff, &id, on.as_ref()));
        let pb = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        assert!(sample(&pb, &id, on.as_ref()));
        assert!(!sample(&pb, &id, off.as_ref()));
        assert!(!sample(&pb, &id, None));
        assert!(sample(&Sampler::default(), &id, None));
    }

    #[test]
    fn ratio_keeps_about_that_fraction_and_is_deterministic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let s = Sampler::TraceIdRatio(0.25);
        let n = 100_000;
        let kept = (0..n)
            .filter(|_| {
                let id: [u8; 16] = rng.random();
                let a = sample(&s, &id, None);
                assert_eq!(a, sample(&s, &id, None));
                a
            })
            .count();
        let frac = kept as f64 / n as f64;
        assert!((0.24..0.26).contains(&frac), "{frac}");
        assert!(!sample(&Sampler::TraceIdRatio(0.0), &[0xff; 16], None));
        assert!(sample(&Sampler::TraceIdRatio(1.0), &[0xff; 16], None));
    }
}
