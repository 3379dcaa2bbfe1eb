//! What can go wrong while calibrating a library.

use std::path::PathBuf;

/// Which end of a handshake pair an error or observation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// Failures of [`crate::calibrate`] and [`crate::verify`].
#[derive(Debug, thiserror::Error)]
pub enum CalError {
    #[error("cannot load {path} as a shared library")]
    Load {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("{path} does not export {symbol}: not an OpenSSL libssl >= 1.1.1")]
    MissingSymbol { path: PathBuf, symbol: &'static str },
    #[error("unsupported library {version:?}: {reason}")]
    Unsupported {
        version: String,
        reason: &'static str,
    },
    #[error("cannot generate the calibration certificate")]
    Certificate(#[source] rcgen::Error),
    #[error("{step} failed: {openssl_error}")]
    Setup {
        step: &'static str,
        openssl_error: String,
    },
    #[error("{step} failed")]
    Socket {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{side} {step} failed (SSL_get_error {ssl_error}): {openssl_error}")]
    Handshake {
        side: Side,
        step: &'static str,
        ssl_error: i32,
        openssl_error: String,
    },
    #[error("{side} {step} made no progress after {steps} steps")]
    Stalled {
        side: Side,
        step: &'static str,
        steps: usize,
    },
    #[error("{side} data exchange returned {got:?}, expected {expected:?}")]
    DataMismatch {
        side: Side,
        expected: Vec<u8>,
        got: Vec<u8>,
    },
    #[error("key log of the {side}: {problem}")]
    Keylog { side: Side, problem: String },
    #[error("cannot read the {object} object at {addr:#x}: {problem}")]
    Memory {
        object: &'static str,
        addr: usize,
        problem: &'static str,
    },
    #[error("{field}: no offset holds the expected value in every handshake")]
    NotFound { field: &'static str },
    #[error("{field}: ambiguous, candidate offsets {candidates:?}")]
    Ambiguous {
        field: &'static str,
        candidates: Vec<u32>,
    },
    #[error("verification of {field} failed: {problem}")]
    Verification {
        field: &'static str,
        problem: String,
    },
}
