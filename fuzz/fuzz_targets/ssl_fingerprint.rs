//! The OpenSSL fingerprint ELF reader (ratatosk_sslcal::fingerprint) over
//! arbitrary files: it reads executables a traced process maps. The
//! reader takes paths (it reads only the parts it parses of files up to
//! ~100 MB), so each input is written to a file in /dev/shm first.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ratatosk_sslcal::fingerprint::{Fingerprint, rodata_contains};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("ratatosk-fuzz-fingerprint-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write the scratch file");
    if let Ok(print) = Fingerprint::of(&[path.as_path()]) {
        assert_eq!(print.differs_from(&print), None);
    }
    let needle = data.get(..data.len().min(12)).unwrap_or_default();
    let _ = rodata_contains(path, needle);
    let _ = rodata_contains(path, b"OpenSSL 3.0");
});
