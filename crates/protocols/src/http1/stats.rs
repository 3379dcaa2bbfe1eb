//! Per-connection counters.

use super::stream::StreamCounters;

/// Per-connection counters of everything that did not become a clean
/// exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Request heads accepted (including salvaged ones).
    pub requests: u64,
    /// Final response heads seen (paired or not).
    pub responses: u64,
    /// Interim 1xx responses skipped.
    pub interim_responses: u64,
    /// Exchanges emitted.
    pub exchanges: u64,
    /// Heads rejected as malformed or over the size cap.
    pub invalid_messages: u64,
    /// Heads cut by a capture gap (salvaged or not).
    pub lost_heads: u64,
    /// Times a stream found a message again after dropping bytes.
    pub resyncs: u64,
    /// Bytes (captured or not) dropped while out of sync.
    pub lost_sync_bytes: u64,
    /// Bodies whose framing was lost (gap over chunk framing, bad chunk).
    pub lost_bodies: u64,
    /// Final responses with no request to pair with; dropped.
    pub unpaired_responses: u64,
    /// Requests dropped because the pending queue was full.
    pub dropped_pending: u64,
    /// Exchanges emitted as [`Outcome::ResponseTruncated`](super::Outcome::ResponseTruncated).
    pub truncated_responses: u64,
}

impl ConnStats {
    pub(crate) fn add(&mut self, c: StreamCounters) {
        self.invalid_messages += c.invalid_messages;
        self.lost_heads += c.lost_heads;
        self.resyncs += c.resyncs;
        self.lost_sync_bytes += c.lost_sync_bytes;
        self.lost_bodies += c.lost_bodies;
    }
}
