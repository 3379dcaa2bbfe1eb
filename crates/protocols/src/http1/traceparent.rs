//! The W3C `traceparent` request header, checked and decoded once by the
//! parser (a fixed-size value: no allocation per request, no second parse
//! when the span is built).

use std::fmt;

/// Bytes of a version-00 `traceparent`; later versions may append fields
/// after these, which are not kept.
pub const TRACEPARENT_LEN: usize = 55;

/// A syntactically valid `traceparent`: its first [`TRACEPARENT_LEN`] bytes,
/// decoded. Displays as it was sent (lower-case hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    /// Never all zero.
    pub trace_id: [u8; 16],
    /// Never all zero.
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Accepts `version-traceid-parentid-flags` per W3C Trace Context:
    /// lower-case hex, non-zero ids, version not `ff`; versions after 00 may
    /// append `-` and more fields. Surrounding whitespace must already be
    /// trimmed.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let (head, tail) = value.split_at_checked(TRACEPARENT_LEN)?;
        let mut parts = head.split(|&b| b == b'-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let mut tp = TraceParent {
            version: 0,
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        let mut one = [0u8; 1];
        hex_into(version, &mut one)?;
        tp.version = one[0];
        hex_into(trace, &mut tp.trace_id)?;
        hex_into(parent, &mut tp.parent_id)?;
        hex_into(flags, &mut one)?;
        tp.flags = one[0];
        let ids_ok = tp.trace_id != [0; 16] && tp.parent_id != [0; 8];
        let tail_ok = match tp.version {
            0 => tail.is_empty(),
            0xff => false,
            _ => tail.is_empty() || tail.first() == Some(&b'-'),
        };
        (ids_ok && tail_ok).then_some(tp)
    }

    /// The caller asked for the trace to be recorded (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Decodes lower-case hex of exactly `2 * out.len()` digits.
fn hex_into(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(())
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}-", self.version)?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.parent_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_displays_as_sent() {
        // From the W3C Trace Context spec's examples.
        let s = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let tp = TraceParent::parse(s.as_bytes()).unwrap();
        assert_eq!(tp.version, 0);
        assert_eq!(tp.trace_id[0], 0x0a);
        assert_eq!(tp.trace_id[15], 0x9c);
        assert_eq!(
            tp.parent_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), s);
        let off = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert!(!TraceParent::parse(off.as_bytes()).unwrap().sampled());
        let v2 = "02-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-x";
        let tp = TraceParent::parse(v2.as_bytes()).unwrap();
        assert_eq!((tp.version, tp.flags), (2, 3));
        assert_eq!(tp.to_string(), v2[..TRACEPARENT_LEN]);
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            "00+0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-011",
            "garbage",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
