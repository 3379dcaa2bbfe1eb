//! Secrets from OpenSSL key log lines (NSS key log format:
//! `LABEL <client_random hex> <secret hex>`).

/// The secrets of one SSL object that calibration looks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Secrets {
    /// TLS 1.3 `CLIENT_TRAFFIC_SECRET_0`.
    pub client_app: Option<Vec<u8>>,
    /// TLS 1.3 `SERVER_TRAFFIC_SECRET_0`.
    pub server_app: Option<Vec<u8>>,
    /// TLS 1.2 `CLIENT_RANDOM` (the master secret).
    pub master: Option<Vec<u8>>,
}

/// Collects the secrets from the lines logged for one SSL object; a
/// malformed line is an error (it would mean a library we do not understand).
pub(crate) fn secrets<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Secrets, String> {
    let mut out = Secrets::default();
    for line in lines {
        let mut fields = line.split(' ');
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("malformed line {line:?}"));
        };
        if random.len() != 64 || hex(random).is_none() {
            return Err(format!("bad client random in {line:?}"));
        }
        let slot = match label {
            "CLIENT_TRAFFIC_SECRET_0" => &mut out.client_app,
            "SERVER_TRAFFIC_SECRET_0" => &mut out.server_app,
            "CLIENT_RANDOM" => &mut out.master,
            _ => continue,
        };
        let bytes = hex(secret)
            .filter(|b| (16..=64).contains(&b.len()))
            .ok_or_else(|| format!("bad secret in {line:?}"))?;
        *slot = Some(bytes);
    }
    Ok(out)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn picks_the_application_and_master_secrets() {
        let lines = [
            format!(
                "SERVER_HANDSHAKE_TRAFFIC_SECRET {RANDOM} {}",
                "11".repeat(48)
            ),
            format!("CLIENT_TRAFFIC_SECRET_0 {RANDOM} {}", "a1".repeat(48)),
            format!("SERVER_TRAFFIC_SECRET_0 {RANDOM} {}", "B2".repeat(32)),
            format!("CLIENT_RANDOM {RANDOM} {}", "c3".repeat(48)),
        ];
        let s = secrets(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(s.client_app, Some(vec![0xa1; 48]));
        assert_eq!(s.server_app, Some(vec![0xb2; 32]));
        assert_eq!(s.master, Some(vec![0xc3; 48]));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "CLIENT_RANDOM".to_owned(),
            format!("CLIENT_RANDOM {RANDOM}"),
            format!("CLIENT_RANDOM {RANDOM} zz"),
            format!("CLIENT_RANDOM {RANDOM} {} extra", "00".repeat(48)),
            format!("CLIENT_RANDOM abc {}", "00".repeat(48)),
            format!("CLIENT_RANDOM {RANDOM} {}", "00".repeat(65)),
            format!("CLIENT_RANDOM {RANDOM} {}0", "00".repeat(48)),
        ] {
            assert!(secrets([bad.as_str()]).is_err(), "{bad}");
        }
    }
}
