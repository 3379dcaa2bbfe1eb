//! The few protobuf wire-format pieces the span encoder writes by hand
//! (varints, keys, length-delimited and fixed-width fields), in the form
//! prost writes them, so our bytes equal prost's for the same message.

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

pub fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 still takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from(field << 3 | wire));
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// Bytes a length-delimited field with `len` bytes of content takes.
pub fn len_field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// The key and length of a length-delimited field whose content follows.
pub fn put_len_header(buf: &mut Vec<u8>, field: u32, len: usize) {
    put_key(buf, field, LEN);
    put_varint(buf, len as u64);
}

pub fn put_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_len_header(buf, field, b.len());
    buf.extend_from_slice(b);
}

pub fn varint_field_len(field: u32, v: u64) -> usize {
    key_len(field) + varint_len(v)
}

pub fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, VARINT);
    put_varint(buf, v);
}

pub fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

pub fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    put_key(buf, field, FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn varints_like_prost() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            i64::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(varint_len(v), theirs.len(), "{v}");
        }
    }

    /// A message with every kind of field written here, against prost.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Probe {
        #[prost(bytes = "vec", tag = "1")]
        bytes: Vec<u8>,
        #[prost(int64, tag = "3")]
        int: i64,
        #[prost(fixed64, tag = "7")]
        f64: u64,
        #[prost(fixed32, tag = "16")]
        f32: u32,
        #[prost(string, tag = "200")]
        text: String,
    }

    #[test]
    fn fields_like_prost() {
        let p = Probe {
            bytes: vec![1, 2, 3],
            int: -5,
            f64: 0x0102_0304_0506_0708,
            f32: 0x0301,
            text: "x".repeat(130),
        };
        let mut ours = Vec::new();
        put_bytes(&mut ours, 1, &p.bytes);
        put_varint_field(&mut ours, 3, p.int as u64);
        put_fixed64(&mut ours, 7, p.f64);
        put_fixed32(&mut ours, 16, p.f32);
        put_bytes(&mut ours, 200, p.text.as_bytes());
        assert_eq!(ours, p.encode_to_vec());
        assert_eq!(
            ours.len(),
            len_field_len(1, 3)
                + varint_field_len(3, p.int as u64)
                + 9
                + 6
                + len_field_len(200, 130)
        );
    }
}
