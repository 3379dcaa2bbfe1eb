//! Keeping secrets a request carries in its URL out of every output, and
//! a client's bytes from steering a terminal: pure functions over text.

use std::borrow::Cow;

/// Query keys whose values are replaced by `REDACTED`: the ones the
/// OpenTelemetry semantic conventions name for `url.query` (signed-URL
/// credentials of AWS and Google) and the common names of tokens,
/// passwords and OAuth codes. Matched ignoring ASCII case.
pub const DEFAULT_REDACTED_KEYS: &[&str] = &[
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "secret",
    "code",
    "client_secret",
    "refresh_token",
    "id_token",
];

/// What replaces a sensitive value.
pub const REDACTED: &str = "REDACTED";

/// `query` (without the `?`) with the value of every `key=value` pair whose
/// key is one of `keys` (ignoring ASCII case, after percent-decoding the
/// key, so `X%2DAmz%2DSignature` is caught too) replaced by `REDACTED`.
/// Pairs are split on `&` and `;`; a key without `=` has no value to hide.
/// Borrowed when nothing is redacted.
pub fn redact_query<'a>(query: &'a str, keys: &[&str]) -> Cow<'a, str> {
    let sensitive = |key: &str| {
        let is = |key: &str| keys.iter().any(|k| k.eq_ignore_ascii_case(key.trim()));
        if key.contains(['%', '+']) {
            let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            is(&decoded.replace('+', " "))
        } else {
            is(key)
        }
    };
    let mut out: Option<String> = None;
    let mut start = 0;
    for (end, sep) in query
        .match_indices(['&', ';'])
        .map(|(i, s)| (i, Some(s)))
        .chain(std::iter::once((query.len(), None)))
    {
        let pair = query.get(start..end).unwrap_or("");
        let redact = match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && sensitive(k) => Some(k),
            _ => None,
        };
        match (redact, &mut out) {
            (Some(k), out) => {
                let o = out.get_or_insert_with(|| query.get(..start).unwrap_or("").to_string());
                o.push_str(k);
                o.push('=');
                o.push_str(REDACTED);
            }
            (None, Some(o)) => o.push_str(pair),
            (None, None) => {}
        }
        if let (Some(o), Some(sep)) = (&mut out, sep) {
            o.push_str(sep);
        }
        start = end + 1;
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(query),
    }
}

/// `s` with control characters escaped for a line-oriented text output:
/// `\n`, `\r`, `\t` as such, the other C0 controls, DEL and the C1
/// controls as `\xNN`, and the Unicode bidirectional overrides (which
/// reorder what a terminal shows) as `\u{NNNN}`. Borrowed when there is
/// nothing to escape.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || is_bidi_control(c);
    let Some(first) = s.find(needs) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(s.get(..first).unwrap_or(""));
    for c in s.get(first..).unwrap_or("").chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                use std::fmt::Write;
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_bidi_control(c) => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Marks and embeddings that change the display order of text.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(q: &str) -> Cow<'_, str> {
        redact_query(q, DEFAULT_REDACTED_KEYS)
    }

    #[test]
    fn signed_url_credentials_and_tokens_are_redacted() {
        assert_eq!(
            r(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA123%2F2024&X-Amz-Signature=ab12cd&page=2"
            ),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&page=2"
        );
        assert_eq!(
            r("AWSAccessKeyId=AKIA&Expires=1700000000&Signature=abc%3D"),
            "AWSAccessKeyId=REDACTED&Expires=1700000000&Signature=REDACTED"
        );
        assert_eq!(r("TOKEN=s3cr3t;lang=en"), "TOKEN=REDACTED;lang=en");
        assert_eq!(r("code=xyz&state=abc"), "code=REDACTED&state=abc");
        assert_eq!(r("x-goog-signature=1a2b"), "x-goog-signature=REDACTED");
        // A percent-encoded key is still the key.
        assert_eq!(r("X%2DAmz%2DSignature=ff"), "X%2DAmz%2DSignature=REDACTED");
        assert_eq!(r("password=&q=1"), "password=&q=1");
    }

    #[test]
    fn other_queries_are_borrowed_unchanged() {
        for q in [
            "",
            "q=rust&page=2",
            "tokens=1",
            "mytoken=2",
            "flag",
            "a=1&&b=2",
            "=x",
        ] {
            assert!(matches!(r(q), Cow::Borrowed(_)), "{q}");
            assert_eq!(r(q), q);
        }
        // Configured keys replace the defaults.
        assert_eq!(
            redact_query("session=1&token=2", &["session"]),
            "session=REDACTED&token=2"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape_control("/api/v1/users?x=é"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_control("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(
            escape_control("\u{1b}[31mred\u{1b}[0m"),
            "\\x1b[31mred\\x1b[0m"
        );
        assert_eq!(escape_control("\0\u{7f}\u{85}"), "\\x00\\x7f\\x85");
        assert_eq!(
            escape_control("user\u{202e}gpj.exe"),
            "user\\u{202e}gpj.exe"
        );
    }
}
