//! HPACK's static Huffman code (RFC 7541, appendix B), decode only.
//!
//! The code is canonical (codes of one length are consecutive, assigned in
//! symbol order, shorter lengths first), so the code lengths alone define
//! it: the decoder reads bits until the code read so far falls in the
//! range of codes of its length.

/// Code length in bits of each symbol 0..=255 and of EOS (256), from RFC
/// 7541 appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code's shape: per length, the first code, how many codes
/// and where its symbols start in `symbols`.
struct Canon {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    base: [u16; MAX_LEN + 1],
    /// Symbols sorted by (length, symbol).
    symbols: [u16; 257],
}

// Evaluated at compile time only (`CANON`): an index out of range would
// fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
const fn canon() -> Canon {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut base = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        first[len] = code;
        base[len] = at;
        code = (code + count[len]) << 1;
        at += count[len] as u16;
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = base;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canon {
        first,
        count,
        base,
        symbols,
    }
}

static CANON: Canon = canon();

/// Why a Huffman string is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HuffmanError;

/// Decodes `src`, appending at most `keep` bytes to `out` (the rest is
/// only counted), and returns the decoded length. Rejects EOS inside the
/// string and padding that is longer than 7 bits or not all ones.
pub fn decode(src: &[u8], out: &mut Vec<u8>, keep: usize) -> Result<usize, HuffmanError> {
    let c = &CANON;
    let mut code: u32 = 0;
    let mut len: usize = 0;
    let mut n = 0usize;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let (Some(&first), Some(&count)) = (c.first.get(len), c.count.get(len)) else {
                return Err(HuffmanError);
            };
            let off = code.wrapping_sub(first);
            if code >= first && off < count {
                let at = c.base.get(len).map_or(0, |&b| usize::from(b)) + off as usize;
                let sym = c.symbols.get(at).copied().unwrap_or(EOS);
                if sym == EOS {
                    return Err(HuffmanError);
                }
                if n < keep {
                    out.push(sym as u8);
                }
                n += 1;
                code = 0;
                len = 0;
            }
        }
    }
    // Padding: a prefix of EOS (all ones), shorter than a byte.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(hex: &str) -> Result<Vec<u8>, HuffmanError> {
        let src: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut out = Vec::new();
        let n = decode(&src, &mut out, usize::MAX)?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    #[test]
    fn rfc7541_c4_strings() {
        assert_eq!(dec("f1e3c2e5f23a6ba0ab90f4ff").unwrap(), b"www.example.com");
        assert_eq!(dec("a8eb10649cbf").unwrap(), b"no-cache");
        assert_eq!(dec("25a849e95ba97d7f").unwrap(), b"custom-key");
        assert_eq!(dec("25a849e95bb8e8b4bf").unwrap(), b"custom-value");
    }

    #[test]
    fn canonical_codes_match_appendix_b_samples() {
        // A few codes of appendix B, rebuilt from the lengths.
        let code_of = |sym: usize| {
            let l = usize::from(LENGTHS[sym]);
            let rank = CANON.symbols[usize::from(CANON.base[l])..]
                .iter()
                .position(|&s| usize::from(s) == sym)
                .unwrap();
            CANON.first[l] + rank as u32
        };
        assert_eq!(code_of(usize::from(b'0')), 0x0);
        assert_eq!(code_of(usize::from(b' ')), 0x14);
        assert_eq!(code_of(0), 0x1ff8);
        assert_eq!(code_of(256), 0x3fff_ffff);
        assert_eq!(code_of(255), 0x3ff_ffee);
    }

    #[test]
    fn bad_padding_and_eos() {
        // Eight ones of padding: too long.
        assert!(dec("ff").is_err());
        // Padding with a zero bit: '0' is 00000, then 000 pad.
        assert!(dec("00").is_err());
        // EOS encoded in full (30 ones + 2 ones of padding).
        assert!(dec("ffffffff").is_err());
        // '0' (00000) + 111 padding.
        assert_eq!(dec("07").unwrap(), b"0");
        assert_eq!(dec("").unwrap(), b"");
    }

    #[test]
    fn keep_bounds_output() {
        let src = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut out = Vec::new();
        assert_eq!(decode(&src, &mut out, 3).unwrap(), 15);
        assert_eq!(out, b"www");
    }
}
