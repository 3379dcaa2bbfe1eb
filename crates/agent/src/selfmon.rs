//! The agent's own metrics (`ratatosk_*`): what was read, parsed, emitted,
//! and every record, byte or span lost on the way, by stage and reason.
//!
//! Counters are atomics shared by handle, so the hot path increments them
//! without locks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ratatosk_bpf::BpfStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolReasonLabel {
    pub protocol: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResultLabel {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    pub probe: &'static str,
    /// `entry` (a trap into the kernel) or `return`.
    pub point: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabel {
    pub signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalReasonLabel {
    pub signal: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Default)]
pub struct SelfMetrics {
    /// Records the kernel wrote into the ring buffer.
    pub bpf_events: Counter,
    /// Records lost because the ring buffer was full, by record kind.
    pub ringbuf_dropped: Family<KindLabel, Counter>,
    /// Data records whose payload was cut at the capture size (not a loss:
    /// sizes stay exact, but headers past the cut are not seen).
    pub capture_truncated: Counter,
    /// Payloads the kernel could not read from user memory.
    pub capture_read_faults: Counter,
    /// Forked children not traced because the target map was full.
    pub targets_full: Counter,
    /// Spans left out of /metrics: they would open a label set past the cap.
    pub prometheus_series_limit: Counter,
    /// /metrics requests refused, by reason (busy: too many at once;
    /// body_limit: the body would pass its bound).
    pub prometheus_scrapes_refused: Family<ReasonLabel, Counter>,
    /// /metrics series dropped after the TTL without an update.
    pub prometheus_series_expired: Counter,
    /// Socket I/O of traced processes the socket hooks could not decode
    /// (io_uring, recvmmsg/sendmmsg, splice): not reported.
    pub capture_undecoded_io: Counter,
    /// HTTP/2 frame walk in the kernel (h2c): sockets found by their
    /// client preface, frame headers walked, chunked records, header
    /// block bytes skipped for lack of record space, and socket
    /// directions whose walk was given up (captured as a prefix after).
    pub capture_h2_connections: Counter,
    pub capture_h2_frames: Counter,
    pub capture_h2_records: Counter,
    pub capture_h2_header_bytes_lost: Counter,
    pub capture_h2_desync: Counter,
    /// `traceparent` headers inserted into outgoing HTTP/1 requests.
    pub traceparent_injected: Counter,
    /// Requests (or whole sockets) not injected into, by reason.
    pub traceparent_inject_skipped: Family<ReasonLabel, Counter>,
    /// Records the reader consumed, by kind.
    pub reader_records: Family<KindLabel, Counter>,
    /// Records the reader could not decode.
    pub reader_invalid_records: Counter,
    /// Connections whose bytes are not parsed, by reason.
    pub unparsed_connections: Family<ReasonLabel, Counter>,
    /// Bytes seen on connections that are not parsed.
    pub unparsed_bytes: Counter,
    /// Parser events that lose data, by reason (invalid message, resync,
    /// unpaired response, pending queue full, ...).
    pub parser_errors: Family<ProtocolReasonLabel, Counter>,
    /// Connections seen opening, by origin (accept, connect, or data:
    /// first seen by its bytes).
    pub connections_opened: Family<KindLabel, Counter>,
    /// /proc reads given up on the reader's behalf, by reason (timeout:
    /// the read blocked past its deadline; helpers_stuck: too many
    /// helpers blocked to try).
    pub proc_reads_abandoned: Family<ReasonLabel, Counter>,
    /// Connections currently tracked.
    pub connections_tracked: Gauge,
    /// Connections forgotten before their close, by reason
    /// (max_connections, memory_budget, idle).
    pub connections_evicted: Family<ReasonLabel, Counter>,
    /// Approximate bytes of connection and parser state (budgeted by
    /// --conn-memory-mib).
    pub connections_state_bytes: Gauge,
    pub spans_emitted: Counter,
    /// Items dropped because a bounded queue was full, by queue.
    pub queue_dropped: Family<QueueLabel, Counter>,
    /// Items waiting in a bounded queue, by queue.
    pub queue_fill: Family<QueueLabel, Gauge>,
    /// Routes folded into `/**` because a service reached its route cap.
    pub routes_folded: Counter,
    /// Requests not reported because their route is ignored.
    pub spans_ignored: Counter,
    /// Spans given (or not) a parent on this host, by span kind and
    /// result (found, not_found, ambiguous, traceparent).
    pub trace_parents: Family<KindResultLabel, Counter>,
    /// Spans the trace linker sent unlinked although a parent might have
    /// come (held_full, timeout), or requests it could not track
    /// (table_full).
    pub trace_link_dropped: Family<ReasonLabel, Counter>,
    pub processes_selected: Counter,
    pub process_cache_resets: Counter,
    /// Uprobe program runs, by probe and point (entry/return), every
    /// process mapping a probed file included.
    pub uprobe_hits: Family<ProbeLabel, Counter>,
    /// TLS plaintext dropped in the kernel: its socket was not found.
    pub tls_unattributed: Counter,
    /// TLS records decrypted in the agent (OpenSSL handshake secrets).
    pub tls_decrypted_records: Counter,
    /// TLS records decrypted without authentication (partly captured).
    pub tls_unauthenticated_records: Counter,
    /// TLS decryption losses, by reason (a connection given up, or a
    /// direction that lost record sync or failed authentication).
    pub tls_decrypt_failures: Family<ReasonLabel, Counter>,
    /// TLS secrets or BIOs the kernel could not read from an SSL object.
    pub tls_keys_faults: Counter,
    /// Files (libraries, executables) given OpenSSL probes, by result
    /// (`attached`, `failed`, `no_tls` for Go binaries without crypto/tls, `limit`).
    pub tls_files: Family<ReasonLabel, Counter>,
    /// OTLP items the receiver accepted (spans, metric data points), by
    /// signal.
    pub otlp_exported: Family<SignalLabel, Counter>,
    /// OTLP items lost, by signal and reason (queue_full,
    /// retries_exhausted, rejected, partial_rejected, series_limit,
    /// sender_gone, shutdown).
    pub otlp_dropped: Family<SignalReasonLabel, Counter>,
    /// OTLP export attempts retried after a retryable failure.
    pub otlp_retries: Family<SignalLabel, Counter>,
    /// Items a receiver refused in a partial success.
    pub otlp_partial_rejected: Family<SignalLabel, Counter>,
    /// Last BPF counters seen, to turn absolute values into increments.
    last_bpf: std::sync::Arc<std::sync::Mutex<BpfStats>>,
}

impl SelfMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "ratatosk_bpf_events",
            "Records the kernel wrote to the ring buffer",
            self.bpf_events.clone(),
        );
        r.register(
            "ratatosk_ringbuf_dropped",
            "Records lost in the kernel because the ring buffer was full",
            self.ringbuf_dropped.clone(),
        );
        r.register(
            "ratatosk_capture_truncated",
            "Socket reads/writes whose payload was cut at the capture size",
            self.capture_truncated.clone(),
        );
        r.register(
            "ratatosk_capture_read_faults",
            "Payloads the kernel could not read from user memory",
            self.capture_read_faults.clone(),
        );
        r.register(
            "ratatosk_capture_undecoded_io",
            "Socket reads/writes of traced processes not reported: done by a syscall the socket hooks cannot decode (io_uring, recvmmsg/sendmmsg, splice)",
            self.capture_undecoded_io.clone(),
        );
        r.register(
            "ratatosk_capture_h2_connections",
            "Sockets the kernel found speaking cleartext HTTP/2 (client preface): their frames are walked",
            self.capture_h2_connections.clone(),
        );
        r.register(
            "ratatosk_capture_h2_frames",
            "HTTP/2 frame headers walked in the kernel",
            self.capture_h2_frames.clone(),
        );
        r.register(
            "ratatosk_capture_h2_records",
            "Records of walked HTTP/2 syscalls (header frames copied whole, DATA payloads skipped)",
            self.capture_h2_records.clone(),
        );
        r.register(
            "ratatosk_capture_h2_header_bytes_lost",
            "HTTP/2 header-frame payload bytes not copied: more than one syscall's records hold",
            self.capture_h2_header_bytes_lost.clone(),
        );
        r.register(
            "ratatosk_capture_h2_desync",
            "HTTP/2 socket directions whose frame walk was given up (walk or iovec limit, implausible frame header, unreadable buffer): a prefix is captured after",
            self.capture_h2_desync.clone(),
        );
        r.register(
            "ratatosk_traceparent_injected",
            "traceparent headers inserted into outgoing plaintext HTTP/1 requests (sk_msg)",
            self.traceparent_injected.clone(),
        );
        r.register(
            "ratatosk_traceparent_inject_skipped",
            "Outgoing requests not injected into, by reason: has_traceparent and pipelined skip one request; the others stop injection on that socket for good (not_http, tunnel, chunked, split_head, head_too_long, insert_failed) or never start it (sockhash_full)",
            self.traceparent_inject_skipped.clone(),
        );
        r.register(
            "ratatosk_targets_full",
            "Processes not traced because the target map was full (at fork in the kernel, or at selection)",
            self.targets_full.clone(),
        );
        r.register(
            "ratatosk_reader_records",
            "Records read from the ring buffer",
            self.reader_records.clone(),
        );
        r.register(
            "ratatosk_reader_invalid_records",
            "Ring-buffer records that could not be decoded",
            self.reader_invalid_records.clone(),
        );
        r.register(
            "ratatosk_unparsed_connections",
            "Connections whose bytes are not parsed, by reason",
            self.unparsed_connections.clone(),
        );
        r.register(
            "ratatosk_unparsed_bytes",
            "Bytes on connections that are not parsed",
            self.unparsed_bytes.clone(),
        );
        r.register(
            "ratatosk_parser_errors",
            "Parser events that lose data, by protocol and reason",
            self.parser_errors.clone(),
        );
        r.register(
            "ratatosk_connections_opened",
            "Connections of traced processes seen opening, by origin",
            self.connections_opened.clone(),
        );
        r.register(
            "ratatosk_proc_reads_abandoned",
            "/proc/PID/environ reads given up (the process is named without its OTEL_* variables), by reason: timeout (blocked over 100 ms), helpers_stuck (8 helper threads blocked already)",
            self.proc_reads_abandoned.clone(),
        );
        r.register(
            "ratatosk_connections_tracked",
            "Connections currently tracked",
            self.connections_tracked.clone(),
        );
        r.register(
            "ratatosk_connections_evicted",
            "Connections forgotten before their close, by reason: max_connections, memory_budget (state over --conn-memory-mib, oldest first), idle (--conn-idle-timeout)",
            self.connections_evicted.clone(),
        );
        r.register(
            "ratatosk_connections_state_bytes",
            "Approximate bytes of connection and parser state held",
            self.connections_state_bytes.clone(),
        );
        r.register(
            "ratatosk_spans_emitted",
            "Spans built from parsed requests",
            self.spans_emitted.clone(),
        );
        r.register(
            "ratatosk_queue_dropped",
            "Items dropped because a bounded queue was full",
            self.queue_dropped.clone(),
        );
        r.register(
            "ratatosk_queue_fill",
            "Items waiting in a bounded queue",
            self.queue_fill.clone(),
        );
        r.register(
            "ratatosk_routes_folded",
            "Requests whose route was folded into /** by the per-service route cap",
            self.routes_folded.clone(),
        );
        r.register(
            "ratatosk_spans_ignored",
            "Requests not reported because their path matches an ignored route pattern",
            self.spans_ignored.clone(),
        );
        r.register(
            "ratatosk_trace_parents",
            "Spans linked to a parent span on this host (their process's server span, or the local caller's client span), by span kind and result",
            self.trace_parents.clone(),
        );
        r.register(
            "ratatosk_trace_link_dropped",
            "Spans sent without waiting longer for their parent, or requests not tracked for linking, by reason",
            self.trace_link_dropped.clone(),
        );
        r.register(
            "ratatosk_processes_selected",
            "Processes selected for instrumentation",
            self.processes_selected.clone(),
        );
        r.register(
            "ratatosk_uprobe_hits",
            "Uprobe program runs by probe and point (entry: a trap; return)",
            self.uprobe_hits.clone(),
        );
        r.register(
            "ratatosk_tls_unattributed",
            "TLS plaintext dropped because its socket was not found",
            self.tls_unattributed.clone(),
        );
        r.register(
            "ratatosk_tls_decrypted_records",
            "TLS records decrypted in the agent from the connections' handshake secrets",
            self.tls_decrypted_records.clone(),
        );
        r.register(
            "ratatosk_tls_unauthenticated_records",
            "TLS records decrypted without authentication because they were only partly captured",
            self.tls_unauthenticated_records.clone(),
        );
        r.register(
            "ratatosk_tls_decrypt_failures",
            "TLS connections or directions no longer decrypted, by reason",
            self.tls_decrypt_failures.clone(),
        );
        r.register(
            "ratatosk_tls_keys_faults",
            "TLS secrets or socket BIOs that could not be read from an SSL object",
            self.tls_keys_faults.clone(),
        );
        r.register(
            "ratatosk_tls_files",
            "Libraries and executables given OpenSSL probes, by result",
            self.tls_files.clone(),
        );
        r.register(
            "ratatosk_process_cache_resets",
            "Times the process cache was cleared to stay bounded",
            self.process_cache_resets.clone(),
        );
        r.register(
            "ratatosk_otlp_exported",
            "Spans and metric data points an OTLP receiver accepted, by signal",
            self.otlp_exported.clone(),
        );
        r.register(
            "ratatosk_otlp_dropped",
            "Spans and metric data points not exported over OTLP, by signal and reason",
            self.otlp_dropped.clone(),
        );
        r.register(
            "ratatosk_prometheus_scrapes_refused",
            "/metrics requests refused with 503, by reason: busy (more than 2 scrapes at once), body_limit (body over 8 MiB)",
            self.prometheus_scrapes_refused.clone(),
        );
        r.register(
            "ratatosk_prometheus_series_limit",
            "Spans not counted in the /metrics RED histograms because they would open a label set past the limit (50 000)",
            self.prometheus_series_limit.clone(),
        );
        r.register(
            "ratatosk_prometheus_series_expired",
            "Series removed from /metrics after the TTL without an update",
            self.prometheus_series_expired.clone(),
        );
        r.register(
            "ratatosk_otlp_retries",
            "OTLP exports retried after a retryable failure, by signal",
            self.otlp_retries.clone(),
        );
        r.register(
            "ratatosk_otlp_partial_rejected",
            "Items an OTLP receiver rejected in a partial success, by signal",
            self.otlp_partial_rejected.clone(),
        );
    }

    /// Folds a fresh read of the BPF counters into the counters above.
    pub fn observe_bpf(&self, now: BpfStats) {
        let Ok(mut last) = self.last_bpf.lock() else {
            return;
        };
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.bpf_events.inc_by(d(now.events, last.events));
        self.ringbuf_dropped
            .get_or_create(&KindLabel { kind: "data" })
            .inc_by(d(now.ringbuf_full_data, last.ringbuf_full_data));
        self.ringbuf_dropped
            .get_or_create(&KindLabel { kind: "control" })
            .inc_by(d(now.ringbuf_full_ctrl, last.ringbuf_full_ctrl));
        self.capture_truncated
            .inc_by(d(now.truncated, last.truncated));
        self.capture_read_faults
            .inc_by(d(now.read_faults, last.read_faults));
        self.targets_full
            .inc_by(d(now.targets_full, last.targets_full));
        self.capture_undecoded_io
            .inc_by(d(now.undecoded_io, last.undecoded_io));
        self.capture_h2_connections
            .inc_by(d(now.h2_conns, last.h2_conns));
        self.capture_h2_frames
            .inc_by(d(now.h2_frames, last.h2_frames));
        self.capture_h2_records
            .inc_by(d(now.h2_records, last.h2_records));
        self.capture_h2_header_bytes_lost
            .inc_by(d(now.h2_header_lost, last.h2_header_lost));
        self.capture_h2_desync
            .inc_by(d(now.h2_desync, last.h2_desync));
        self.traceparent_injected
            .inc_by(d(now.injected, last.injected));
        for (i, reason) in ratatosk_bpf::INJECT_SKIPS.iter().enumerate() {
            let n = d(
                now.inject_skipped.get(i).copied().unwrap_or(0),
                last.inject_skipped.get(i).copied().unwrap_or(0),
            );
            if n > 0 {
                self.traceparent_inject_skipped
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n);
            }
        }
        for (i, (probe, entry)) in ratatosk_bpf::UPROBES.iter().enumerate() {
            let n = d(
                now.uprobe_hits.get(i).copied().unwrap_or(0),
                last.uprobe_hits.get(i).copied().unwrap_or(0),
            );
            if n > 0 {
                let point = if *entry { "entry" } else { "return" };
                self.uprobe_hits
                    .get_or_create(&ProbeLabel { probe, point })
                    .inc_by(n);
            }
        }
        self.tls_unattributed
            .inc_by(d(now.tls_no_socket, last.tls_no_socket));
        self.tls_keys_faults
            .inc_by(d(now.tls_keys_fault, last.tls_keys_fault));
        // A ClientHello whose SSL object (memory or custom BIO) was not
        // found: that connection is not decrypted.
        let unmatched = d(now.tls_hello_unmatched, last.tls_hello_unmatched);
        if unmatched > 0 {
            self.tls_decrypt_failures
                .get_or_create(&ReasonLabel {
                    reason: "unmatched_handshake",
                })
                .inc_by(unmatched);
        }
        *last = now;
    }

    pub fn otlp_dropped(&self, signal: &'static str, reason: &'static str, n: u64) {
        if n > 0 {
            self.otlp_dropped
                .get_or_create(&SignalReasonLabel { signal, reason })
                .inc_by(n);
        }
    }

    pub fn parser_error(&self, protocol: &'static str, reason: &'static str, n: u64) {
        if n > 0 {
            self.parser_errors
                .get_or_create(&ProtocolReasonLabel { protocol, reason })
                .inc_by(n);
        }
    }
}
