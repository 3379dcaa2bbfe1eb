//! Ring-buffer records as the agent's reader decodes them (decode.rs):
//! every kind, any length; never a panic, payloads inside the record,
//! TLS secrets never in Debug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ratatosk::fuzzing::record(data));
