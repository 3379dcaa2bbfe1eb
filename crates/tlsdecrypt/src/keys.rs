//! Key schedules (TLS 1.3 HKDF-Expand-Label, TLS 1.2 PRF) and the record
//! protection of one direction.

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{hkdf, hmac};

use crate::suite::{Aead, Hash};

/// Longest secret or derived value handled here (SHA-384 output).
pub(crate) const MAX_SECRET: usize = 48;

/// Bytes of AEAD tag at the end of every protected record.
pub(crate) const TAG_LEN: usize = 16;

/// A key schedule step failed (an output length ring refuses; cannot happen
/// with the lengths used here, but it is reported rather than unwrapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyError;

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 8446 7.1 HKDF-Expand-Label(secret, label, "", out.len()).
pub(crate) fn hkdf_expand_label(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), KeyError> {
    let len = u16::try_from(out.len())
        .map_err(|_| KeyError)?
        .to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).map_err(|_| KeyError)?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    let prk = hkdf::Prk::new_less_safe(hash.hkdf(), secret);
    prk.expand(&info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| KeyError)
}

/// RFC 5246 5 PRF(secret, label, seed) = P_<hash>(secret, label || seed).
pub(crate) fn tls12_prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let key = hmac::Key::new(hash.hmac(), secret);
    // A(1) = HMAC(secret, label || seed); A(i) = HMAC(secret, A(i-1)).
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(label);
    ctx.update(seed);
    let mut a = ctx.sign();
    for chunk in out.chunks_mut(hash.len()) {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(label);
        ctx.update(seed);
        let block = ctx.sign();
        for (o, b) in chunk.iter_mut().zip(block.as_ref()) {
            *o = *b;
        }
        a = hmac::sign(&key, a.as_ref());
    }
}

/// The protection of one direction: AEAD key and static IV.
pub(crate) struct RecordKey {
    key: LessSafeKey,
    /// TLS 1.3 and TLS 1.2 ChaCha20: the 12-byte IV XORed with the sequence
    /// number. TLS 1.2 GCM: the 4-byte salt in front, then the record's
    /// explicit nonce.
    iv: [u8; NONCE_LEN],
    pub(crate) aead: Aead,
}

impl Drop for RecordKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.iv);
    }
}

impl RecordKey {
    pub(crate) fn new(aead: Aead, key: &[u8], iv: &[u8]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(aead.ring(), key).map_err(|_| KeyError)?;
        let mut full = [0u8; NONCE_LEN];
        for (o, b) in full.iter_mut().zip(iv) {
            *o = *b;
        }
        Ok(Self {
            key: LessSafeKey::new(unbound),
            iv: full,
            aead,
        })
    }

    /// RFC 8446 7.3: key and IV from a traffic secret.
    pub(crate) fn tls13(aead: Aead, hash: Hash, secret: &[u8]) -> Result<Self, KeyError> {
        let mut key = [0u8; 32];
        let key = key.get_mut(..aead.key_len()).ok_or(KeyError)?;
        hkdf_expand_label(hash, secret, b"key", key)?;
        let mut iv = [0u8; NONCE_LEN];
        hkdf_expand_label(hash, secret, b"iv", &mut iv)?;
        Self::new(aead, key, &iv)
    }

    /// The per-record nonce: IV XOR the 64-bit sequence number, right-aligned
    /// (TLS 1.3, and TLS 1.2 ChaCha20-Poly1305 by RFC 7905).
    pub(crate) fn xor_nonce(&self, seq: u64) -> [u8; NONCE_LEN] {
        let mut n = self.iv;
        for (o, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *o ^= s;
        }
        n
    }

    /// TLS 1.2 GCM (RFC 5288 3): 4-byte salt || 8-byte explicit nonce.
    pub(crate) fn salted_nonce(&self, explicit: &[u8]) -> [u8; NONCE_LEN] {
        let mut n = self.iv;
        for (o, e) in n.iter_mut().skip(4).zip(explicit) {
            *o = *e;
        }
        n
    }

    /// Authenticates and decrypts `ciphertext || tag` in place; the
    /// plaintext length on success. ring zeroes the buffer on failure.
    pub(crate) fn open(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Option<usize> {
        self.key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .ok()
            .map(|p| p.len())
    }

    /// Decrypts a ciphertext prefix WITHOUT authentication, for a record whose
    /// tail was not captured. Both AEADs are a stream cipher (AES-CTR from
    /// counter 2 of the GCM J0 block, ChaCha20 from block 1) XORed onto the
    /// plaintext, so sealing zeros under the same nonce yields exactly that
    /// keystream; ring exposes no raw CTR/ChaCha20, and this keeps one crypto
    /// dependency. `scratch` is reused between calls.
    pub(crate) fn xor_keystream(
        &self,
        nonce: [u8; NONCE_LEN],
        buf: &mut [u8],
        scratch: &mut Vec<u8>,
    ) {
        scratch.clear();
        scratch.resize(buf.len(), 0);
        // Sealing cannot fail below ring's per-nonce length limit (~64 GiB).
        if self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                scratch.as_mut_slice(),
            )
            .is_ok()
        {
            for (b, k) in buf.iter_mut().zip(scratch.iter()) {
                *b ^= *k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8448 3 (simple 1-RTT handshake): the server application traffic
    // secret and the key/iv it expands to.
    #[test]
    fn hkdf_expand_label_matches_rfc8448() {
        let secret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
        let mut key = [0u8; 16];
        hkdf_expand_label(Hash::Sha256, &secret, b"key", &mut key).unwrap();
        assert_eq!(key.to_vec(), hex("9f02283b6c9c07efc26bb9f2ac92e356"));
        let mut iv = [0u8; 12];
        hkdf_expand_label(Hash::Sha256, &secret, b"iv", &mut iv).unwrap();
        assert_eq!(iv.to_vec(), hex("cf782b88dd83549aadf1e984"));
    }

    // A published TLS 1.2 PRF (SHA-256) test vector (the one used by the
    // IETF TLS WG mailing list and several TLS stacks' test suites).
    #[test]
    fn tls12_prf_sha256_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 100];
        tls12_prf(Hash::Sha256, &secret, b"test label", &seed, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(concat!(
                "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a",
                "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab",
                "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701",
                "87347b66"
            ))
        );
    }

    // Sealing zeros gives the keystream, so keystream XOR equals the
    // authenticated decryption on any prefix.
    #[test]
    fn keystream_prefix_matches_authenticated_open() {
        for aead in [Aead::Aes128Gcm, Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
            let key = RecordKey::new(aead, &[7u8; 32][..aead.key_len()], &[9u8; 12]).unwrap();
            let plain: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
            let nonce = key.xor_nonce(5);
            let mut sealed = plain.clone();
            let tag = key
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(b"hdr"),
                    &mut sealed,
                )
                .unwrap();
            let mut prefix = sealed[..333].to_vec();
            let mut scratch = Vec::new();
            key.xor_keystream(nonce, &mut prefix, &mut scratch);
            assert_eq!(prefix, plain[..333]);
            let mut whole = sealed.clone();
            whole.extend_from_slice(tag.as_ref());
            assert_eq!(key.open(nonce, b"hdr", &mut whole), Some(1000));
            assert_eq!(whole[..1000], plain[..]);
        }
    }
}
