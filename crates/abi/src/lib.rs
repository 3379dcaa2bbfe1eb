//! The BPF <-> userspace records, generated from `bpf/include/abi.h`.
//!
//! Nothing here is written by hand: `build.rs` runs bindgen on the header
//! that the BPF programs include, so both sides share one definition.
#![no_std]
#![allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/abi.rs"));
