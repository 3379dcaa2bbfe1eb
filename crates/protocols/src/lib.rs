//! Pure protocol parsers over byte streams captured by eBPF at syscall exit.
//!
//! Nothing here does I/O or keeps unbounded state: every buffer has a cap and
//! malformed or partially captured input degrades into counted losses, never
//! into a panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod http1;
pub mod http2;
pub mod mysql;
pub mod op;
pub mod parse;
pub mod parser;
pub mod postgres;
pub mod redis;
pub mod registry;
pub mod sql;

/// Plain-function bodies of the cargo-fuzz targets, so `cargo test` can run
/// them over the committed seeds without a nightly toolchain.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
