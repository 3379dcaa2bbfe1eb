#![no_main]

use libfuzzer_sys::fuzz_target;

// Input format: see `ratatosk_protocols::fuzzing::decode_conn_input`;
// requests are the egress segments.
fuzz_target!(|data: &[u8]| {
    ratatosk_protocols::fuzzing::mysql_conn(data);
});
