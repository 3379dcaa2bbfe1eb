//! What a session tells its caller: counters, why it gave up, per-direction
//! state. Every loss has a counter or a reason with a stable label, for the
//! caller's `ratatosk_*` self-metrics.

use std::fmt;

/// Per-connection counters (monotonic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records authenticated and decrypted (any inner content type).
    pub records_decrypted: u64,
    /// Records whose body was partly not captured (after sync), decrypted
    /// WITHOUT authentication: application data hands out its known prefix.
    pub records_unauthenticated: u64,
    /// Plaintext bytes handed to the sink.
    pub plaintext_bytes: u64,
    /// TLS 1.3: records the application keys did not open before the first
    /// one that did (the records under handshake keys).
    pub handshake_records_skipped: u64,
    /// TLS 1.3: partly captured records before the first authenticated one;
    /// handshake or application data cannot be told apart, so they are lost.
    pub records_undecidable: u64,
    /// Records failing authentication after keys were confirmed.
    pub auth_failures: u64,
    /// Directions that lost record sync (a record header in a hole).
    pub lost_sync: u64,
    /// Directions whose bytes were not TLS records (bad header).
    pub bad_records: u64,
    /// TLS 1.3 KeyUpdates followed.
    pub key_updates: u64,
    /// Alerts received; close_notify and fatal ones end their direction.
    pub alerts: u64,
    /// Pending-buffer overflows before the secrets came (gives up).
    pub buffer_overflows: u64,
    /// Unsupported version or cipher suite (gives up).
    pub unsupported: u64,
}

/// Why a session stopped decrypting the whole connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// A version other than TLS 1.2 / 1.3 (or an unknown draft).
    UnsupportedVersion,
    /// CBC, CCM, NULL, ... : only AES-GCM and ChaCha20-Poly1305 are decrypted.
    UnsupportedCipherSuite,
    /// More bytes waited for the secrets than `Limits::max_pending_bytes`.
    BufferOverflow,
    /// The secret the negotiated version needs was all zeros (unknown).
    MissingSecret,
    /// The secrets do not open this connection's records.
    KeyMismatch,
    /// Encrypted records without a ClientHello/ServerHello before them
    /// (capture started mid-connection), or the hellos came in the wrong
    /// direction.
    NoHandshake,
    /// A hello was truncated, malformed, too large or not captured.
    MalformedHandshake,
    /// TLS 1.2 renegotiation: new keys this session has no secrets for.
    Renegotiation,
}

impl GiveUpReason {
    /// Stable metric label.
    pub fn label(self) -> &'static str {
        match self {
            GiveUpReason::UnsupportedVersion => "unsupported_version",
            GiveUpReason::UnsupportedCipherSuite => "unsupported_cipher_suite",
            GiveUpReason::BufferOverflow => "buffer_overflow",
            GiveUpReason::MissingSecret => "missing_secret",
            GiveUpReason::KeyMismatch => "key_mismatch",
            GiveUpReason::NoHandshake => "no_handshake",
            GiveUpReason::MalformedHandshake => "malformed_handshake",
            GiveUpReason::Renegotiation => "renegotiation",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where one direction of the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirectionState {
    /// Records are followed (or waited for).
    Active,
    /// An alert (close_notify or fatal) ended the direction.
    Closed,
    /// A record header fell into a hole; nothing more comes out.
    LostSync,
    /// The bytes were not TLS records.
    NotTls,
    /// Too many authentication failures in a row after sync.
    Failed,
}

impl DirectionState {
    /// Stable metric label.
    pub fn label(self) -> &'static str {
        match self {
            DirectionState::Active => "active",
            DirectionState::Closed => "closed",
            DirectionState::LostSync => "lost_sync",
            DirectionState::NotTls => "not_tls",
            DirectionState::Failed => "auth_failures",
        }
    }
}
