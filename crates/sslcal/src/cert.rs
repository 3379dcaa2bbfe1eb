//! The server's certificate and key, generated per run (nothing secret is
//! stored in the source), in the DER forms libssl loads without libcrypto
//! helpers.

use crate::error::CalError;

pub(crate) struct Identity {
    pub cert_der: Vec<u8>,
    /// PKCS#8 ECDSA P-256 key (`EVP_PKEY_EC` for SSL_CTX_use_PrivateKey_ASN1).
    pub key_der: Vec<u8>,
}

pub(crate) fn generate() -> Result<Identity, CalError> {
    // P-256: supported by every OpenSSL with TLS 1.3, and fast to generate.
    let key = rcgen::KeyPair::generate().map_err(CalError::Certificate)?;
    let cert = rcgen::CertificateParams::new(vec!["ratatosk-sslcal.invalid".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .map_err(CalError::Certificate)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}
