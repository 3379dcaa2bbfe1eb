//! OpenSSL linked into an executable (Node's `node`) cannot be loaded to
//! learn its struct layout, but a shared libssl of the same build can: a
//! *donor* is a libssl (with its libcrypto) whose exported accessors use
//! the same struct offsets as the executable's (`ratatosk_sslcal::
//! fingerprint`) and whose version text the executable holds. Its
//! calibrated layout is then used for the executable; AEAD authentication
//! of every decrypted record checks it again at run time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ratatosk_sslcal::fingerprint::{Fingerprint, FingerprintError, rodata_contains};

/// Where distributions install libssl (the multiarch directory first).
const SYSTEM_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib64",
    "/usr/local/lib",
];
/// Donor candidates looked at per executable, and fingerprints kept.
const MAX_CANDIDATES: usize = 16;

/// A donor found for an executable.
pub struct Donor {
    pub libssl: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DonorError {
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    #[error("no shared libssl has the same struct offsets and version ({looked} looked at{first})")]
    NoneAgrees { looked: usize, first: String },
}

/// The libssl files known to the agent (calibrated for other processes)
/// and the system's, with their fingerprints once computed.
#[derive(Default)]
pub struct Donors {
    /// Host paths of libraries calibrated successfully, newest last.
    calibrated: Vec<PathBuf>,
    /// By (device, inode) of the libssl.
    prints: HashMap<(u64, u64), Option<Fingerprint>>,
}

impl Donors {
    /// A libssl that was calibrated: the first donor candidate from now on.
    pub fn calibrated(&mut self, libssl: &Path) {
        if !self.calibrated.iter().any(|p| p == libssl) && self.calibrated.len() < MAX_CANDIDATES {
            self.calibrated.push(libssl.to_path_buf());
        }
    }

    /// Whether the executable at `exe` holds OpenSSL accessors at all
    /// (`Err(Fingerprint(Missing))` otherwise), and the libssl whose
    /// accessors agree with them. `version_of` calibrates a candidate and
    /// returns its version text, which the executable must hold too.
    pub fn find(
        &mut self,
        exe: &Path,
        version_of: &mut dyn FnMut(&Path) -> Option<String>,
    ) -> Result<Donor, DonorError> {
        let wanted = Fingerprint::of(&[exe])?;
        let mut looked = 0;
        let mut first = String::new();
        for libssl in self.candidates() {
            let Some(print) = self.print(&libssl) else {
                continue;
            };
            looked += 1;
            let why = match wanted.differs_from(print) {
                Some(accessor) => format!("{accessor} uses other offsets"),
                None => match version_of(&libssl) {
                    None => "its calibration failed".to_string(),
                    Some(version) if rodata_contains(exe, version.as_bytes())? => {
                        return Ok(Donor { libssl });
                    }
                    Some(version) => format!("the executable does not hold {version:?}"),
                },
            };
            if first.is_empty() {
                first = format!("; {}: {why}", libssl.display());
            }
        }
        Err(DonorError::NoneAgrees { looked, first })
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let mut out = self.calibrated.clone();
        for dir in SYSTEM_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libssl.so."))
                })
                .collect();
            found.sort();
            for p in found {
                // The same file under two names (lib -> usr/lib): once.
                let real = std::fs::canonicalize(&p).unwrap_or(p);
                if !out.contains(&real) {
                    out.push(real);
                }
            }
        }
        out.truncate(MAX_CANDIDATES);
        out
    }

    /// The fingerprint of `libssl` and its libcrypto, once per file (by
    /// inode: a library upgraded in place is a new file).
    fn print(&mut self, libssl: &Path) -> Option<&Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(libssl).ok().map(|m| (m.dev(), m.ino()))?;
        if !self.prints.contains_key(&id) {
            if self.prints.len() >= MAX_CANDIDATES * 2 {
                self.prints.clear();
            }
            let crypto = libcrypto_beside(libssl);
            let files: Vec<&Path> = std::iter::once(libssl).chain(crypto.as_deref()).collect();
            self.prints.insert(id, Fingerprint::of(&files).ok());
        }
        self.prints.get(&id).and_then(Option::as_ref)
    }
}

/// `libcrypto.so.N` beside `libssl.so.N` (the pair a distribution ships).
fn libcrypto_beside(libssl: &Path) -> Option<PathBuf> {
    let name = libssl.file_name()?.to_str()?;
    let crypto = libssl.with_file_name(name.replacen("libssl", "libcrypto", 1));
    crypto.exists().then_some(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcrypto_is_found_beside_its_libssl() {
        assert_eq!(
            libcrypto_beside(Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3")),
            Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"))
        );
        assert_eq!(
            libcrypto_beside(Path::new("/nonexistent/libssl.so.3")),
            None
        );
    }

    /// Node links OpenSSL 3.0.19 statically; Debian's libssl3 is 3.0.19:
    /// it is the donor. A plain executable has no OpenSSL accessors.
    #[test]
    fn the_system_libssl_is_nodes_donor() {
        let mut donors = Donors::default();
        let mut versions = Vec::new();
        let donor = donors
            .find(Path::new("/usr/bin/node"), &mut |p| {
                versions.push(p.to_path_buf());
                ratatosk_sslcal::calibrate(p).ok().map(|o| o.version)
            })
            .unwrap();
        assert_eq!(
            donor.libssl,
            PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3")
        );
        assert_eq!(versions, std::slice::from_ref(&donor.libssl));
        // A version text the executable does not hold: no donor.
        let err = donors
            .find(Path::new("/usr/bin/node"), &mut |_| {
                Some("OpenSSL 3.0.0 7 sep 2021".into())
            })
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not hold"), "{err}");
        assert!(matches!(
            donors.find(Path::new("/usr/bin/curl"), &mut |_| None),
            Err(DonorError::Fingerprint(FingerprintError::Missing { .. }))
        ));
    }
}
