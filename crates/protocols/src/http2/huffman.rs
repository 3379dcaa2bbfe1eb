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
    /// Read by the bitwise decoder of the tests only.
    #[cfg_attr(not(test), allow(dead_code))]
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

#[cfg(test)]
static CANON: Canon = canon();

/// The decoding tree's 256 internal nodes: each child is an internal
/// node or, with `LEAF` set, a symbol.
const LEAF: u16 = 0x8000;
const UNSET: u16 = 0xffff;

/// The nibble decoder's table: entry `node << 4 | nibble` says where
/// four bits lead from an internal node: the next node (bits 0..8),
/// whether a symbol was emitted on the way (bit 8) and which (bits 9..17),
/// and whether EOS was met (bit 17). Bit 18 of entry `node << 4` marks
/// nodes where a string may end: reached from the root by at most 7
/// one-bits (a prefix of EOS used as padding).
const EMIT: u32 = 1 << 8;
const FAIL: u32 = 1 << 17;
const ACCEPT: u32 = 1 << 18;

// Evaluated at compile time only (`NIBBLES`): an index out of range would
// fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
const fn nibbles() -> [u32; 4096] {
    let c = canon();
    // Build the tree from the canonical codes.
    let mut children = [[UNSET; 2]; 256];
    let mut depth = [0u8; 256];
    let mut ones = [false; 256];
    ones[0] = true;
    let mut count = 1usize;
    let mut idx = 0;
    while idx < 257 {
        let s = c.symbols[idx];
        let len = LENGTHS[s as usize] as usize;
        let code = c.first[len] + (idx as u32 - c.base[len] as u32);
        let mut node = 0usize;
        let mut bit = len;
        while bit > 1 {
            bit -= 1;
            let b = ((code >> bit) & 1) as usize;
            if children[node][b] == UNSET {
                children[node][b] = count as u16;
                depth[count] = depth[node] + 1;
                ones[count] = ones[node] && b == 1;
                count += 1;
            }
            node = children[node][b] as usize;
        }
        children[node][(code & 1) as usize] = LEAF | s;
        idx += 1;
    }
    let mut table = [0u32; 4096];
    let mut n = 0;
    while n < 256 {
        let mut nib = 0;
        while nib < 16 {
            let mut node = n;
            let mut e = 0u32;
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = children[node][(nib >> bit) & 1];
                if child & LEAF != 0 {
                    let sym = child & !LEAF;
                    if sym == EOS {
                        e |= FAIL;
                    } else {
                        e |= EMIT | ((sym as u32) << 9);
                    }
                    node = 0;
                } else {
                    node = child as usize;
                }
            }
            e |= node as u32;
            if nib == 0 && ones[n] && depth[n] <= 7 {
                e |= ACCEPT;
            }
            table[(n << 4) | nib] = e;
            nib += 1;
        }
        n += 1;
    }
    table
}

static NIBBLES: [u32; 4096] = nibbles();

/// Why a Huffman string is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HuffmanError;

/// One nibble from `state`: the table entry.
#[inline(always)]
fn step(state: u32, nib: u8) -> u32 {
    // The mask keeps the index in the table (states are 8-bit).
    NIBBLES
        .get((((state & 0xff) << 4) | u32::from(nib & 0x0f)) as usize)
        .copied()
        .unwrap_or(FAIL)
}

/// Decodes `src`, appending at most `keep` bytes to `out` (the rest is
/// only counted), and returns the decoded length. Rejects EOS inside the
/// string and padding that is longer than 7 bits or not all ones.
///
/// Four bits at a time: codes are at least 5 bits long, so a nibble
/// emits at most one symbol.
pub fn decode(src: &[u8], out: &mut Vec<u8>, keep: usize) -> Result<usize, HuffmanError> {
    let mut state = 0u32;
    let mut n = 0usize;
    let mut seen = 0u32;
    for &byte in src {
        for nib in [byte >> 4, byte & 0x0f] {
            let e = step(state, nib);
            seen |= e;
            if e & EMIT != 0 {
                if n < keep {
                    out.push((e >> 9) as u8);
                }
                n += 1;
            }
            state = e & 0xff;
        }
    }
    if seen & FAIL == 0 && step(state, 0) & ACCEPT != 0 {
        Ok(n)
    } else {
        Err(HuffmanError)
    }
}

/// The bit-at-a-time decoder the nibble tables are checked against.
#[cfg(test)]
fn decode_bits(src: &[u8], out: &mut Vec<u8>) -> Result<usize, HuffmanError> {
    let c = &CANON;
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let (first, count) = (c.first[len], c.count[len]);
            if code >= first && code - first < count {
                let sym = c.symbols[usize::from(c.base[len]) + (code - first) as usize];
                if sym == EOS {
                    return Err(HuffmanError);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError);
    }
    Ok(out.len())
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
    fn nibble_tables_agree_with_the_bitwise_decoder() {
        // Every symbol alone and in pairs, with every padding, and a
        // pseudo-random stream: both decoders agree on all of it.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 12) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (rng >> (i * 5)) as u8).collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ra = decode(&bytes, &mut a, usize::MAX);
            let rb = decode_bits(&bytes, &mut b);
            assert_eq!(ra, rb, "{bytes:02x?}");
            if ra.is_ok() {
                assert_eq!(a, b);
            }
        }
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
