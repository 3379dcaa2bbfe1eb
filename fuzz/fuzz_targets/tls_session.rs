#![no_main]

use libfuzzer_sys::fuzz_target;

// Input format: see `ratatosk_tlsdecrypt::fuzzing` (fixture and raw modes).
fuzz_target!(|data: &[u8]| {
    ratatosk_tlsdecrypt::fuzzing::tls_session(data);
});
