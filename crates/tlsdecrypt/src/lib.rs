//! Userspace decryption of captured TLS records from the connection's
//! traffic secrets.
//!
//! The agent captures what a process read from and wrote to a TCP socket
//! (a prefix of each syscall's bytes) and, from the TLS library, the traffic
//! secrets of the connection. A [`Session`] per connection takes both and
//! hands back the plaintext of every application-data record, in the order
//! the events happened:
//!
//! - TLS 1.3 (AES-128/256-GCM, ChaCha20-Poly1305): keys from the
//!   `*_TRAFFIC_SECRET_0`s; the records under handshake keys are skipped by
//!   trial decryption; KeyUpdate is followed.
//! - TLS 1.2 (AES-GCM, ChaCha20-Poly1305 suites): keys from the master
//!   secret and both hello randoms.
//!
//! Records whose tail was not captured are decrypted without authentication
//! (known prefix, full length reported). Every buffer is bounded; every loss
//! is a counter in [`Stats`] or a [`GiveUpReason`]. No I/O, no unsafe, no
//! panics on input.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod decrypt;
mod hello;
mod keys;
mod record;
mod report;
mod secrets;
mod session;
mod suite;

pub use report::{DirectionState, GiveUpReason, Stats};
pub use secrets::{KeylogError, Secrets};
pub use session::{Direction, Limits, Plaintext, Session};
pub use suite::{Aead, Hash, Negotiated, Version};

/// Plain-function body of the cargo-fuzz target, so `cargo test` can run it
/// over the committed seeds without a nightly toolchain.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
