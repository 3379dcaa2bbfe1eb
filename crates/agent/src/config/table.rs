//! The one table of settings: flag, environment variable, Beyla/OBI
//! aliases, YAML key, default and meaning. The command line and its help
//! are built from it, resolution reads names from it, and a test checks
//! that docs/configuration.md lists every row.

/// Aliases whose values are globs in Beyla/OBI (turned into anchored
/// regexes when read).
pub const GLOB_ALIASES: &[&str] = &["BEYLA_AUTO_TARGET_EXE", "OTEL_EBPF_AUTO_TARGET_EXE"];

pub struct Setting {
    /// Internal id (clap's argument id).
    pub id: &'static str,
    /// Long flag without the dashes.
    pub flag: &'static str,
    pub value_name: &'static str,
    /// The primary environment variable.
    pub env: &'static str,
    /// Migration aliases, read in this order after `env`.
    pub aliases: &'static [&'static str],
    /// Dotted YAML path in the configuration file, if the file has it.
    pub yaml: Option<&'static str>,
    /// Default, as documented.
    pub default: &'static str,
    pub help: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        id: "config",
        flag: "config",
        value_name: "FILE",
        env: "RATATOSK_CONFIG",
        aliases: &["BEYLA_CONFIG_PATH", "OTEL_EBPF_CONFIG_PATH"],
        yaml: None,
        default: "none",
        help: "YAML configuration file (Beyla/OBI layout). Flags and environment override it.",
    },
    Setting {
        id: "open_port",
        flag: "open-port",
        value_name: "PORTS",
        env: "RATATOSK_OPEN_PORT",
        aliases: &["BEYLA_OPEN_PORT", "OTEL_EBPF_OPEN_PORT"],
        yaml: Some("open_port"),
        default: "none",
        help: "Instrument processes listening on these TCP ports: ports and ranges, e.g. `80,443,8000-8100`.",
    },
    Setting {
        id: "exe_path",
        flag: "exe-path",
        value_name: "REGEX",
        env: "RATATOSK_EXE_PATH",
        aliases: &[
            "BEYLA_EXECUTABLE_NAME",
            "BEYLA_AUTO_TARGET_EXE",
            "OTEL_EBPF_EXECUTABLE_PATH",
            "OTEL_EBPF_AUTO_TARGET_EXE",
        ],
        yaml: Some("executable_path"),
        default: "none",
        help: "Instrument processes whose executable path matches this regex.",
    },
    Setting {
        id: "pid",
        flag: "pid",
        value_name: "PIDS",
        env: "RATATOSK_PID",
        aliases: &["BEYLA_TARGET_PID", "OTEL_EBPF_TARGET_PID"],
        yaml: Some("target_pids"),
        default: "none",
        help: "Instrument these process ids (comma-separated), and the children they fork.",
    },
    Setting {
        id: "exclude_exe_path",
        flag: "exclude-exe-path",
        value_name: "REGEX",
        env: "RATATOSK_EXCLUDE_EXE_PATH",
        aliases: &[],
        yaml: Some("discovery.exclude_services[].exe_path"),
        default: "none",
        help: "Never instrument processes whose executable path matches this regex (wins over every selector).",
    },
    Setting {
        id: "service_name",
        flag: "service-name",
        value_name: "NAME",
        env: "RATATOSK_SERVICE_NAME",
        aliases: &[
            "BEYLA_SERVICE_NAME",
            "OTEL_EBPF_SERVICE_NAME",
            "OTEL_SERVICE_NAME",
        ],
        yaml: Some("service_name"),
        default: "executable name",
        help: "service.name of processes that set none themselves and whose selection entry gives none.",
    },
    Setting {
        id: "service_namespace",
        flag: "service-namespace",
        value_name: "NAMESPACE",
        env: "RATATOSK_SERVICE_NAMESPACE",
        aliases: &["BEYLA_SERVICE_NAMESPACE", "OTEL_EBPF_SERVICE_NAMESPACE"],
        yaml: Some("service_namespace"),
        default: "none",
        help: "service.namespace of processes that set none themselves and whose selection entry gives none.",
    },
    Setting {
        id: "resource_command_args",
        flag: "resource-command-args",
        value_name: "BOOL",
        env: "RATATOSK_RESOURCE_COMMAND_ARGS",
        aliases: &[],
        yaml: Some("attributes.process_command_args"),
        default: "false",
        help: "Add process.command_args to resources (off by default: arguments may hold secrets).",
    },
    Setting {
        id: "raw_db_query_text",
        flag: "raw-db-query-text",
        value_name: "BOOL",
        env: "RATATOSK_RAW_DB_QUERY_TEXT",
        aliases: &[],
        yaml: Some("attributes.raw_db_query_text"),
        default: "false",
        help: "Show SQL in db.query.text as sent, literals included (off by default: literals carry user data; statements setting a password and Redis commands stay sanitized).",
    },
    Setting {
        id: "trace_printer",
        flag: "trace-printer",
        value_name: "MODE",
        env: "RATATOSK_TRACE_PRINTER",
        aliases: &["BEYLA_TRACE_PRINTER", "OTEL_EBPF_TRACE_PRINTER"],
        yaml: Some("trace_printer"),
        default: "text, or disabled when another output is configured",
        help: "Print each span on stdout: `text`, `json` or `disabled`.",
    },
    Setting {
        id: "prometheus_port",
        flag: "prometheus-port",
        value_name: "PORT",
        env: "RATATOSK_PROMETHEUS_PORT",
        aliases: &["BEYLA_PROMETHEUS_PORT", "OTEL_EBPF_PROMETHEUS_PORT"],
        yaml: Some("prometheus_export.port"),
        default: "none (0 disables)",
        help: "Serve Prometheus metrics on this port at /metrics.",
    },
    Setting {
        id: "prometheus_address",
        flag: "prometheus-address",
        value_name: "IP",
        env: "RATATOSK_PROMETHEUS_ADDRESS",
        aliases: &[],
        yaml: Some("prometheus_export.address"),
        default: "0.0.0.0",
        help: "Address the metrics endpoint binds to.",
    },
    Setting {
        id: "prometheus_ttl",
        flag: "prometheus-ttl",
        value_name: "DURATION",
        env: "RATATOSK_PROMETHEUS_TTL",
        aliases: &["BEYLA_PROMETHEUS_TTL", "OTEL_EBPF_PROMETHEUS_TTL"],
        yaml: Some("prometheus_export.ttl"),
        default: "5m",
        help: "A /metrics series not updated for this long is removed (`30s`, `5m`, `1h`).",
    },
    Setting {
        id: "prometheus_features",
        flag: "prometheus-features",
        value_name: "LIST",
        env: "RATATOSK_PROMETHEUS_FEATURES",
        aliases: &["BEYLA_PROMETHEUS_FEATURES", "OTEL_EBPF_PROMETHEUS_FEATURES"],
        yaml: Some("prometheus_export.features"),
        default: "application",
        help: "Metric families on /metrics: `application`, `application_span`, `application_service_graph` (the last two produce nothing yet).",
    },
    Setting {
        id: "metrics_features",
        flag: "metrics-features",
        value_name: "LIST",
        env: "RATATOSK_METRICS_FEATURES",
        aliases: &["BEYLA_OTEL_METRICS_FEATURES", "OTEL_EBPF_METRICS_FEATURES"],
        yaml: Some("otel_metrics_export.features"),
        default: "application",
        help: "Metric families exported over OTLP (same values as --prometheus-features).",
    },
    Setting {
        id: "metrics_interval",
        flag: "metrics-interval",
        value_name: "DURATION",
        env: "RATATOSK_METRICS_INTERVAL",
        aliases: &[
            "BEYLA_METRICS_INTERVAL",
            "OTEL_EBPF_METRICS_INTERVAL",
            "OTEL_METRIC_EXPORT_INTERVAL",
        ],
        yaml: Some("otel_metrics_export.interval"),
        default: "60s",
        help: "OTLP metric export period: `30s`, `500ms`, `1m`, or a bare number of milliseconds.",
    },
    Setting {
        id: "otlp_endpoint",
        flag: "otlp-endpoint",
        value_name: "URL",
        env: "OTEL_EXPORTER_OTLP_ENDPOINT",
        aliases: &[],
        yaml: Some("otel_traces_export.endpoint, otel_metrics_export.endpoint"),
        default: "none (no OTLP export)",
        help: "OTLP endpoint for traces and metrics (`/v1/traces`, `/v1/metrics` appended for http/protobuf).",
    },
    Setting {
        id: "otlp_protocol",
        flag: "otlp-protocol",
        value_name: "PROTOCOL",
        env: "OTEL_EXPORTER_OTLP_PROTOCOL",
        aliases: &[],
        yaml: Some("otel_traces_export.protocol, otel_metrics_export.protocol"),
        default: "http/protobuf (grpc when the endpoint's port is 4317)",
        help: "OTLP transport: `grpc` or `http/protobuf`.",
    },
    Setting {
        id: "route_patterns",
        flag: "route-patterns",
        value_name: "LIST",
        env: "RATATOSK_ROUTE_PATTERNS",
        aliases: &[],
        yaml: Some("routes.patterns"),
        default: "none",
        help: "Route patterns for http.route, comma-separated: `/users/{id}`, `/users/:id`, `/files/*`.",
    },
    Setting {
        id: "route_ignored",
        flag: "route-ignored",
        value_name: "LIST",
        env: "RATATOSK_ROUTE_IGNORED",
        aliases: &[],
        yaml: Some("routes.ignored_patterns"),
        default: "none",
        help: "Requests whose route matches one of these patterns produce no span and no metric.",
    },
    Setting {
        id: "route_unmatched",
        flag: "route-unmatched",
        value_name: "MODE",
        env: "RATATOSK_ROUTE_UNMATCHED",
        aliases: &[],
        yaml: Some("routes.unmatched"),
        default: "heuristic",
        help: "http.route of paths no pattern matches: `heuristic` (ids collapsed to `*`), `path` or `wildcard` (`/**`).",
    },
    Setting {
        id: "max_routes",
        flag: "max-routes",
        value_name: "N",
        env: "RATATOSK_MAX_ROUTES",
        aliases: &[],
        yaml: Some("routes.max_routes"),
        default: "100",
        help: "Distinct routes per service before later ones fold into one overflow value (counted).",
    },
    Setting {
        id: "capture_bytes",
        flag: "capture-bytes",
        value_name: "N",
        env: "RATATOSK_CAPTURE_BYTES",
        aliases: &[],
        yaml: Some("ebpf.capture_bytes"),
        default: "1024",
        help: "Payload bytes captured per socket read/write (64-8192): enough for the request line and headers.",
    },
    Setting {
        id: "syscall_hooks",
        flag: "syscall-hooks",
        value_name: "MODE",
        env: "RATATOSK_SYSCALL_HOOKS",
        aliases: &[],
        yaml: Some("ebpf.syscall_hooks"),
        default: "socket",
        help: "How socket I/O is hooked: `socket` (the sock:sock_recv_length/sock_send_length and inet_sock_set_state tracepoints: only socket I/O runs BPF; `raw` on kernels before 6.4), `raw` (one tp_btf program on raw_syscalls:sys_exit) or `per-syscall` (one syscalls:sys_exit_* tracepoint per socket syscall). See ARCHITECTURE.md.",
    },
    Setting {
        id: "tls_capture",
        flag: "tls-capture",
        value_name: "BOOL",
        env: "RATATOSK_TLS_CAPTURE",
        aliases: &[],
        yaml: Some("ebpf.tls_capture"),
        default: "true",
        help: "Capture TLS plaintext from OpenSSL (libssl.so and executables exporting SSL_read/SSL_write) and Go crypto/tls (Go 1.18+ executables) with uprobes; `false` leaves TLS connections unparsed and costs nothing per TLS call.",
    },
    Setting {
        id: "tls_decrypt",
        flag: "tls-decrypt",
        value_name: "BOOL",
        env: "RATATOSK_TLS_DECRYPT",
        aliases: &[],
        yaml: Some("ebpf.tls_decrypt"),
        default: "true",
        help: "For OpenSSL shared libraries (libssl.so 1.1.1/3.x): probe only the connection's set-up (once per connection), read the connection's TLS secrets and decrypt the captured ciphertext in the agent (AES-GCM and ChaCha20-Poly1305 suites), instead of a uprobe on every SSL_read/SSL_write; `false` always probes the calls.",
    },
    Setting {
        id: "context_propagation",
        flag: "context-propagation",
        value_name: "MODE",
        env: "RATATOSK_CONTEXT_PROPAGATION",
        aliases: &[
            "BEYLA_BPF_CONTEXT_PROPAGATION",
            "OTEL_EBPF_BPF_CONTEXT_PROPAGATION",
        ],
        yaml: Some("ebpf.context_propagation"),
        default: "all",
        help: "`all` or `headers` (the same here): insert `traceparent` into the selected processes' outgoing plaintext HTTP/1 requests that lack one (sockops + sk_msg; the client span carries its ids, so the next hop joins on any host), a client span made while its thread serves a request of the same process is that server span's child, and a server span called from a traced process on this host is the caller's client span's child; `disabled`: nothing is written and every span without an incoming `traceparent` starts its own trace. See docs/traces.md.",
    },
    Setting {
        id: "ringbuf_mib",
        flag: "ringbuf-mib",
        value_name: "N",
        env: "RATATOSK_RINGBUF_MIB",
        aliases: &[],
        yaml: Some("ebpf.ringbuf_mib"),
        default: "8",
        help: "Kernel-to-agent ring buffer size in MiB (1-1024, rounded up to a power of two).",
    },
    Setting {
        id: "max_connections",
        flag: "max-connections",
        value_name: "N",
        env: "RATATOSK_MAX_CONNECTIONS",
        aliases: &[],
        yaml: Some("ebpf.max_connections"),
        default: "65536",
        help: "Most TCP connections tracked at once; the least recently active are evicted beyond it (counted).",
    },
    Setting {
        id: "conn_memory_mib",
        flag: "conn-memory-mib",
        value_name: "N",
        env: "RATATOSK_CONN_MEMORY_MIB",
        aliases: &[],
        yaml: Some("ebpf.conn_memory_mib"),
        default: "16",
        help: "Budget in MiB (1-4096) for the state of every tracked connection together (probe buffers, parser buffers and statement tables, TLS decryption); past it the least recently active connections are forgotten first (counted in ratatosk_connections_evicted_total{reason=\"memory_budget\"}).",
    },
    Setting {
        id: "conn_idle_timeout",
        flag: "conn-idle-timeout",
        value_name: "DURATION",
        env: "RATATOSK_CONN_IDLE_TIMEOUT",
        aliases: &[],
        yaml: Some("ebpf.conn_idle_timeout"),
        default: "5m",
        help: "A connection with no traffic for this long is forgotten (`30s`, `5m`; counted in ratatosk_connections_evicted_total{reason=\"idle\"}); its next bytes start it again, mid-stream.",
    },
    Setting {
        id: "max_processes",
        flag: "max-processes",
        value_name: "N",
        env: "RATATOSK_MAX_PROCESSES",
        aliases: &[],
        yaml: Some("ebpf.max_processes"),
        default: "16384",
        help: "Most processes instrumented at once.",
    },
    Setting {
        id: "log_level",
        flag: "log-level",
        value_name: "FILTER",
        env: "RATATOSK_LOG_LEVEL",
        aliases: &["BEYLA_LOG_LEVEL", "OTEL_EBPF_LOG_LEVEL"],
        yaml: Some("log_level"),
        default: "info",
        help: "Log filter (tracing-subscriber syntax), e.g. `info`, `ratatosk=debug`.",
    },
];

/// The row of `id`. Ids are compile-time constants of this module's users;
/// an unknown one is a programming error caught by the tests.
pub fn get(id: &str) -> &'static Setting {
    match SETTINGS.iter().find(|s| s.id == id) {
        Some(s) => s,
        None => unreachable!("no setting `{id}` in the table"),
    }
}

/// Standard OpenTelemetry variables read beside the table's (see otel.rs),
/// listed for the documentation check.
#[cfg(test)]
pub const OTEL_VARIABLES: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_flags_and_envs_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.id), "duplicate id {}", s.id);
            assert!(
                seen.insert(s.flag) || s.flag == s.id,
                "duplicate flag {}",
                s.flag
            );
            for e in std::iter::once(&s.env).chain(s.aliases) {
                assert!(seen.insert(e), "duplicate env {e}");
            }
        }
    }

    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../../../../docs/configuration.md");
        for s in SETTINGS {
            assert!(
                doc.contains(&format!("`--{}", s.flag)),
                "docs lack --{}",
                s.flag
            );
            for e in std::iter::once(&s.env).chain(s.aliases) {
                assert!(doc.contains(&format!("`{e}`")), "docs lack {e}");
            }
            if let Some(y) = s.yaml {
                for key in y.split(", ") {
                    assert!(
                        doc.contains(&format!("`{key}`")),
                        "docs lack YAML key {key}"
                    );
                }
            }
        }
        for v in OTEL_VARIABLES {
            assert!(doc.contains(&format!("`{v}`")), "docs lack {v}");
        }
    }
}
