//! The /proc readers over text a traced process influences: environ
//! (OTEL_* variables), maps (file names), net/tcp and mountinfo lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ratatosk::fuzzing::proc_text(data));
