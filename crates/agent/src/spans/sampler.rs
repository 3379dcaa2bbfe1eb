//! `OTEL_TRACES_SAMPLER` semantics, decided once per span when it is built:
//! which spans the trace exporters send. Metrics count every request.

use crate::config::export::Sampler;

/// The incoming W3C trace context of a request (`traceparent`), already
/// checked for shape by the HTTP parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`; None for anything else.
    pub fn parse(s: &str) -> Option<TraceParent> {
        let mut parts = s.split('-');
        let (_version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        hex_into(trace, &mut trace_id)?;
        hex_into(parent, &mut parent_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            sampled: f[0] & 1 == 1,
        })
    }
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(())
}

/// Whether a span with this trace id and parent is exported.
pub fn sample(sampler: &Sampler, trace_id: &[u8; 16], parent: Option<&TraceParent>) -> bool {
    match sampler {
        Sampler::AlwaysOn => true,
        Sampler::AlwaysOff => false,
        Sampler::TraceIdRatio(ratio) => ratio_sampled(*ratio, trace_id),
        Sampler::ParentBased(root) => match parent {
            Some(p) => p.sampled,
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
    fn parses_traceparent() {
        // From the W3C Trace Context spec's examples.
        let tp =
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(tp.trace_id[0], 0x0a);
        assert_eq!(tp.trace_id[15], 0x9c);
        assert_eq!(
            tp.parent_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert!(tp.sampled);
        let tp =
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        assert!(!tp.sampled);
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none()
        );
        assert!(
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01").is_none()
        );
        assert!(TraceParent::parse("garbage").is_none());
    }

    #[test]
    fn samplers() {
        let id = [0x55u8; 16];
        let on = Some(TraceParent {
            trace_id: id,
            parent_id: [1; 8],
            sampled: true,
        });
        let off = Some(TraceParent {
            trace_id: id,
            parent_id: [1; 8],
            sampled: false,
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
