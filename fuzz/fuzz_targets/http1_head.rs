#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in the library so `cargo test` exercises it on stable.
fuzz_target!(|data: &[u8]| {
    ratatosk_protocols::fuzzing::http1_head(data);
});
