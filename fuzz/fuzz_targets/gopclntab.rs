//! The Go function table parser over arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratatosk_goinfo::pclntab::Pclntab;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Pclntab::parse(data) {
        for i in 0..t.len().min(64) {
            let _ = t.name(i);
            let _ = t.range(i, t.text_start);
        }
        let _ = t.find(ratatosk_goinfo::READ_FUNC, t.text_start);
    }
});
