//! The Go version from the build information the Go linker writes into
//! every Go binary (`.go.buildinfo`, kept by `strip` and `-ldflags=-s`).
//!
//! Go 1.18 and later write the strings inline: a 32-byte header (the
//! magic, the pointer size, a flags byte whose bit 1 says "inline", then
//! padding), then the version and the module information, each as a
//! uvarint length and its bytes (`debug/buildinfo`).

/// Magic at the start of Go's build information.
pub const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const FLAG_INLINE: u8 = 2;

/// A Go release, as far as struct layouts care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "go{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    #[error("no Go build information")]
    Missing,
    #[error("Go build information in the pre-1.18 format (Go older than 1.18)")]
    OldFormat,
    #[error("Go build information is truncated")]
    Truncated,
    #[error("unrecognised Go version string {0:?}")]
    Version(String),
}

/// The version string (`go1.27.3`) from the bytes of `.go.buildinfo`.
pub fn version_string(section: &[u8]) -> Result<&str, BuildInfoError> {
    if section.get(..MAGIC.len()) != Some(MAGIC) {
        return Err(BuildInfoError::Missing);
    }
    let flags = *section.get(15).ok_or(BuildInfoError::Truncated)?;
    if flags & FLAG_INLINE == 0 {
        return Err(BuildInfoError::OldFormat);
    }
    let rest = section.get(HEADER..).ok_or(BuildInfoError::Truncated)?;
    let (len, used) = uvarint(rest).ok_or(BuildInfoError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| BuildInfoError::Truncated)?;
    let s = rest
        .get(used..used.checked_add(len).ok_or(BuildInfoError::Truncated)?)
        .ok_or(BuildInfoError::Truncated)?;
    std::str::from_utf8(s).map_err(|_| BuildInfoError::Version(String::from_utf8_lossy(s).into()))
}

/// `go1.27.3`, `go1.22rc1`, `go1.21.0-bigcorp`, `devel go1.23-abc…` →
/// (1, 27) …
pub fn parse_version(s: &str) -> Result<GoVersion, BuildInfoError> {
    let bad = || BuildInfoError::Version(s.to_string());
    let at = s.find("go1.").ok_or_else(bad)?;
    let v = s.get(at + 2..).ok_or_else(bad)?;
    let mut parts = v.splitn(3, '.');
    let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor_str = parts.next().ok_or_else(bad)?;
    let digits = minor_str
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor_str.len());
    let minor = minor_str
        .get(..digits)
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    Ok(GoVersion { major, minor })
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, flags: u8) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8); // pointer size
        s.push(flags);
        s.resize(HEADER, 0);
        s.push(version.len() as u8);
        s.extend_from_slice(version.as_bytes());
        s.push(0); // empty module info
        s
    }

    #[test]
    fn inline_version() {
        let s = section("go1.27.3", 2);
        assert_eq!(version_string(&s), Ok("go1.27.3"));
        assert_eq!(
            version_string(&section("go1.16", 0)),
            Err(BuildInfoError::OldFormat)
        );
        for n in 0..s.len() - 1 {
            assert!(version_string(&s[..n]).is_err());
        }
    }

    #[test]
    fn versions() {
        let v = |major, minor| Ok(GoVersion { major, minor });
        assert_eq!(parse_version("go1.27.3"), v(1, 27));
        assert_eq!(parse_version("go1.22rc1"), v(1, 22));
        assert_eq!(parse_version("go1.21.0-bigcorp"), v(1, 21));
        assert_eq!(parse_version("devel go1.23-abcdef Tue"), v(1, 23));
        assert!(parse_version("gccgo").is_err());
        assert!(parse_version("go1.").is_err());
    }
}
