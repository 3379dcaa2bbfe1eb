//! Route heuristic and user-pattern matcher over request paths (format in
//! ratatosk::fuzzing::route): no panic, folding stable and never adding
//! segments.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ratatosk::fuzzing::route(data));
