//! The secrets a session needs, as read from the SSL object or an NSS keylog.

use std::fmt;

/// Secret buffers as the agent reads them (48 bytes, the longest hash).
/// Zeros mean unknown; the session picks by the negotiated version:
/// TLS 1.3 uses the first hash-length bytes of the two traffic secrets,
/// TLS 1.2 the master secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// NSS keylog `CLIENT_TRAFFIC_SECRET_0`.
    pub client_traffic_secret_0: [u8; 48],
    /// NSS keylog `SERVER_TRAFFIC_SECRET_0`.
    pub server_traffic_secret_0: [u8; 48],
    /// NSS keylog `CLIENT_RANDOM` (TLS 1.2 master secret).
    pub master_secret: [u8; 48],
}

impl Default for Secrets {
    fn default() -> Self {
        Self {
            client_traffic_secret_0: [0; 48],
            server_traffic_secret_0: [0; 48],
            master_secret: [0; 48],
        }
    }
}

// Wiped when dropped: a connection's secrets do not outlive it in memory
// (copies the compiler makes on the stack are out of reach).
impl Drop for Secrets {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.client_traffic_secret_0.zeroize();
        self.server_traffic_secret_0.zeroize();
        self.master_secret.zeroize();
    }
}

// Secrets never go to logs.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = |s: &[u8; 48]| s.iter().any(|b| *b != 0);
        f.debug_struct("Secrets")
            .field(
                "client_traffic_secret_0",
                &known(&self.client_traffic_secret_0),
            )
            .field(
                "server_traffic_secret_0",
                &known(&self.server_traffic_secret_0),
            )
            .field("master_secret", &known(&self.master_secret))
            .finish()
    }
}

/// A keylog line that is not `LABEL <hex client_random> <hex secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylogError {
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for KeylogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keylog line {}: expected LABEL <64 hex digits> <up to 96 hex digits>",
            self.line
        )
    }
}

impl std::error::Error for KeylogError {}

impl Secrets {
    /// The secrets of the connection with `client_random` from NSS keylog
    /// text (SSLKEYLOGFILE format). Other connections' lines and other labels
    /// are ignored; blank lines and `#` comments are skipped.
    pub fn from_keylog(text: &str, client_random: &[u8; 32]) -> Result<Secrets, KeylogError> {
        let mut s = Secrets::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = KeylogError { line: i + 1 };
            let mut fields = line.split_ascii_whitespace();
            let (Some(label), Some(random), Some(secret), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(err);
            };
            let mut r = [0u8; 32];
            if decode_hex(random, &mut r) != Some(32) {
                return Err(err);
            }
            let mut value = [0u8; 48];
            if decode_hex(secret, &mut value).is_none() {
                return Err(err);
            }
            if &r != client_random {
                continue;
            }
            match label {
                "CLIENT_TRAFFIC_SECRET_0" => s.client_traffic_secret_0 = value,
                "SERVER_TRAFFIC_SECRET_0" => s.server_traffic_secret_0 = value,
                "CLIENT_RANDOM" => s.master_secret = value,
                _ => {}
            }
        }
        Ok(s)
    }
}

/// Decodes hex into the front of `out`; the byte count, or None if not hex
/// or too long.
fn decode_hex(hex: &str, out: &mut [u8]) -> Option<usize> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) || digits.len() / 2 > out.len() {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *o = u8::try_from(hi << 4 | lo).ok()?;
    }
    Some(digits.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keylog_picks_the_connection_and_labels() {
        let cr = "11".repeat(32);
        let other = "22".repeat(32);
        let text = format!(
            "# comment\n\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {cr} {}\n\
             CLIENT_TRAFFIC_SECRET_0 {cr} {}\nSERVER_TRAFFIC_SECRET_0 {other} {}\n\
             CLIENT_RANDOM {cr} {}\n",
            "aa".repeat(32),
            "bb".repeat(32),
            "cc".repeat(32),
            "dd".repeat(48)
        );
        let s = Secrets::from_keylog(&text, &[0x11; 32]).unwrap();
        assert_eq!(&s.client_traffic_secret_0[..32], &[0xbb; 32]);
        assert_eq!(&s.client_traffic_secret_0[32..], &[0; 16]);
        assert_eq!(s.server_traffic_secret_0, [0; 48]);
        assert_eq!(s.master_secret, [0xdd; 48]);
        assert!(!format!("{s:?}").contains("dd"));
    }

    #[test]
    fn malformed_keylog_lines_are_errors() {
        let cr = "11".repeat(32);
        for bad in [
            format!("CLIENT_RANDOM {cr}"),
            format!("CLIENT_RANDOM {cr} zz"),
            format!("CLIENT_RANDOM 1122 {}", "aa".repeat(48)),
            format!("CLIENT_RANDOM {cr} {}", "aa".repeat(49)),
        ] {
            assert_eq!(
                Secrets::from_keylog(&bad, &[0x11; 32]),
                Err(KeylogError { line: 1 })
            );
        }
    }
}
