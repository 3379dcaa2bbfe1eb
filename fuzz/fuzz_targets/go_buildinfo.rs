//! The Go build-info reader alone (ratatosk_goinfo::buildinfo) over the
//! contents of a `.go.buildinfo` section: the version string and its
//! parse. `go_executable` runs it inside the whole analysis; this
//! one reaches it at full speed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = ratatosk_goinfo::buildinfo::version_string(data) {
        assert!(s.len() <= data.len());
        let _ = ratatosk_goinfo::buildinfo::parse_version(s);
    }
});
