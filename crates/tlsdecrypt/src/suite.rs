//! The protocol versions and cipher suites this crate can decrypt.

/// A negotiated TLS version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

/// The record protection of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

/// The suite's hash (HKDF in TLS 1.3, the PRF in TLS 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

/// What the ServerHello chose, for a supported suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub version: Version,
    /// The IANA cipher suite number (e.g. 0x1301, 0xc02f).
    pub cipher_suite: u16,
    pub aead: Aead,
    pub hash: Hash,
}

impl Aead {
    pub(crate) fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm | Aead::ChaCha20Poly1305 => 32,
        }
    }

    pub(crate) fn ring(self) -> &'static ring::aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &ring::aead::AES_128_GCM,
            Aead::Aes256Gcm => &ring::aead::AES_256_GCM,
            Aead::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        }
    }

    /// TLS 1.2: bytes of the write IV from the key block (RFC 5288: 4-byte
    /// salt; RFC 7905: the full 12-byte IV).
    pub(crate) fn tls12_fixed_iv_len(self) -> usize {
        match self {
            Aead::Aes128Gcm | Aead::Aes256Gcm => 4,
            Aead::ChaCha20Poly1305 => 12,
        }
    }

    /// TLS 1.2: bytes of explicit nonce at the start of each record body.
    pub(crate) fn tls12_explicit_nonce_len(self) -> usize {
        match self {
            Aead::Aes128Gcm | Aead::Aes256Gcm => 8,
            Aead::ChaCha20Poly1305 => 0,
        }
    }
}

impl Hash {
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }

    pub(crate) fn hkdf(self) -> ring::hkdf::Algorithm {
        match self {
            Hash::Sha256 => ring::hkdf::HKDF_SHA256,
            Hash::Sha384 => ring::hkdf::HKDF_SHA384,
        }
    }

    pub(crate) fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            Hash::Sha256 => ring::hmac::HMAC_SHA256,
            Hash::Sha384 => ring::hmac::HMAC_SHA384,
        }
    }
}

/// The suite behind `id` under `version`, if this crate decrypts it.
pub(crate) fn lookup(version: Version, id: u16) -> Option<Negotiated> {
    use Aead::*;
    use Hash::*;
    let (aead, hash) = match (version, id) {
        // RFC 8446 B.4 (the CCM suites 0x1304/0x1305 are not supported).
        (Version::Tls13, 0x1301) => (Aes128Gcm, Sha256),
        (Version::Tls13, 0x1302) => (Aes256Gcm, Sha384),
        (Version::Tls13, 0x1303) => (ChaCha20Poly1305, Sha256),
        // RFC 5288 / 5289 / 5487 / 8442 AES-GCM suites: the PRF hash is the
        // suite's (SHA-256 for AES-128, SHA-384 for AES-256).
        (
            Version::Tls12,
            0x009c | 0x009e | 0x00a0 | 0x00a2 | 0x00a4 | 0x00a8 | 0x00aa | 0x00ac | 0xc02b | 0xc02d
            | 0xc02f | 0xc031 | 0xd001,
        ) => (Aes128Gcm, Sha256),
        (
            Version::Tls12,
            0x009d | 0x009f | 0x00a1 | 0x00a3 | 0x00a5 | 0x00a9 | 0x00ab | 0x00ad | 0xc02c | 0xc02e
            | 0xc030 | 0xc032 | 0xd002,
        ) => (Aes256Gcm, Sha384),
        // RFC 7905 ChaCha20-Poly1305 suites, all with SHA-256.
        (Version::Tls12, 0xcca8..=0xccae) => (ChaCha20Poly1305, Sha256),
        _ => return None,
    };
    Some(Negotiated {
        version,
        cipher_suite: id,
        aead,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_map_to_their_aead_and_hash() {
        let s = lookup(Version::Tls13, 0x1302).unwrap();
        assert_eq!((s.aead, s.hash), (Aead::Aes256Gcm, Hash::Sha384));
        let s = lookup(Version::Tls12, 0xc02f).unwrap();
        assert_eq!((s.aead, s.hash), (Aead::Aes128Gcm, Hash::Sha256));
        let s = lookup(Version::Tls12, 0xcca8).unwrap();
        assert_eq!((s.aead, s.hash), (Aead::ChaCha20Poly1305, Hash::Sha256));
        // CCM, CBC, and a TLS 1.3 suite under TLS 1.2.
        assert!(lookup(Version::Tls13, 0x1304).is_none());
        assert!(lookup(Version::Tls12, 0xc027).is_none());
        assert!(lookup(Version::Tls12, 0x1301).is_none());
    }
}
