#![no_main]

use libfuzzer_sys::fuzz_target;

// Input format: see `ratatosk_protocols::fuzzing::hpack`.
fuzz_target!(|data: &[u8]| {
    ratatosk_protocols::fuzzing::hpack(data);
});
