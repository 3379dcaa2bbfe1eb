//! The whole Go executable analysis (ELF, build info, pclntab, RETs,
//! DWARF) over arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ratatosk_goinfo::analyze(data);
    let _ = ratatosk_goinfo::rets::ret_offsets(data);
    if let Ok(s) = ratatosk_goinfo::buildinfo::version_string(data) {
        let _ = ratatosk_goinfo::buildinfo::parse_version(s);
    }
});
