//! Resolution across layers: flag > environment > file > default.

use super::export::{Features, OtlpProtocol, UnmatchedRoutes};
use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut argv = vec!["ratatosk"];
    argv.extend_from_slice(args);
    Config::from_args_with_env(argv, &|k| env.get(k).cloned())
}

/// A configuration file that is removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ratatosk-config-test-{}-{}.yaml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn err(r: Result<Config, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn no_selector_means_everything_and_text_printer() {
    let c = parse(&[], &[]).unwrap();
    // Everything but the default exclusions.
    assert!(c.selection.include.is_empty() && c.selection.exclude.is_empty());
    assert_eq!(c.selection.default_exclude.len(), 1);
    assert_eq!(c.printer, PrinterMode::Text);
    assert!(c.prometheus.is_none() && c.otlp.traces.is_none());
    assert_eq!(c.capture_bytes, 1024);
    assert_eq!(c.ringbuf_bytes, 8 << 20);
    assert_eq!(c.max_connections, 65536);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.prometheus_features, Features::default());
    assert_eq!(c.routes.max_per_service, 100);
    assert_eq!(c.otlp.metric_interval, Duration::from_secs(60));
}

#[test]
fn other_outputs_silence_the_printer() {
    let c = parse(&["--prometheus-port", "9400"], &[]).unwrap();
    assert_eq!(c.printer, PrinterMode::Disabled);
    assert_eq!(c.prometheus.unwrap().port(), 9400);
    let c = parse(&["--otlp-endpoint", "http://c:4318"], &[]).unwrap();
    assert_eq!(c.printer, PrinterMode::Disabled);
    assert_eq!(c.otlp.traces.unwrap().endpoint, "http://c:4318/v1/traces");
}

#[test]
fn each_selector_flag_is_its_own_entry() {
    let c = parse(
        &["--open-port", "80", "--exe-path", "nginx", "--pid", "7"],
        &[],
    )
    .unwrap();
    let inc = &c.selection.include;
    assert_eq!(inc.len(), 3);
    assert!(inc[0].open_ports.contains(80) && inc[0].exe_path.is_none());
    assert!(
        inc[1]
            .exe_path
            .as_ref()
            .unwrap()
            .is_match("/usr/sbin/nginx")
    );
    assert_eq!(inc[2].pids, vec![7]);
    assert!(c.selection.has_ports() && c.selection.needs_exec_check());
    let c = parse(&["--exclude-exe-path", "sshd"], &[]).unwrap();
    assert!(c.selection.include.is_empty() && c.selection.exclude.len() == 1);
    assert!(!c.selection.is_everything());
}

/// Every alias of the table is read, and after the primary variable.
#[test]
fn every_alias_is_read_in_order() {
    // A valid value per setting, and how to see it in the Config.
    let sample = |id: &str| -> (&'static str, fn(&Config) -> String) {
        match id {
            "config" => ("", |_| String::new()),
            "open_port" => ("8080", |c| c.selection.include[0].open_ports.to_string()),
            "exe_path" | "exclude_exe_path" => ("nginx", |c| {
                let e = c.selection.include.first().or(c.selection.exclude.first());
                e.and_then(|e| e.exe_path.as_ref()).unwrap().to_string()
            }),
            "pid" => ("42", |c| format!("{:?}", c.selection.include[0].pids)),
            "service_name" => ("svc", |c| format!("{:?}", c.naming.service_name)),
            "service_namespace" => ("ns", |c| format!("{:?}", c.naming.service_namespace)),
            "resource_command_args" => ("true", |c| c.naming.command_args.to_string()),
            "raw_db_query_text" => ("true", |c| c.raw_db_query_text.to_string()),
            "trace_printer" => ("json", |c| format!("{:?}", c.printer)),
            "prometheus_port" => ("9999", |c| format!("{:?}", c.prometheus)),
            "prometheus_address" => ("127.0.0.1", |c| format!("{:?}", c.prometheus)),
            "prometheus_ttl" => ("90s", |c| format!("{:?}", c.prometheus_ttl)),
            "prometheus_features" => ("application_span", |c| {
                format!("{:?}", c.prometheus_features)
            }),
            "metrics_features" => ("application_span", |c| {
                format!("{:?}", c.otlp.metric_features)
            }),
            "metrics_interval" => ("1500", |c| format!("{:?}", c.otlp.metric_interval)),
            "otlp_endpoint" => ("http://c:4318", |c| format!("{:?}", c.otlp.traces)),
            "otlp_protocol" => ("grpc", |c| format!("{:?}", c.otlp.traces)),
            "route_patterns" => ("/a/{id}", |c| format!("{:?}", c.routes.patterns)),
            "route_ignored" => ("/health", |c| format!("{:?}", c.routes.ignored)),
            "route_unmatched" => ("path", |c| format!("{:?}", c.routes.unmatched)),
            "max_routes" => ("7", |c| c.routes.max_per_service.to_string()),
            "capture_bytes" => ("2048", |c| c.capture_bytes.to_string()),
            "syscall_hooks" => ("per-syscall", |c| format!("{:?}", c.syscall_hooks)),
            "tls_capture" => ("false", |c| c.tls_capture.to_string()),
            "tls_decrypt" => ("false", |c| c.tls_decrypt.to_string()),
            "context_propagation" => ("disabled", |c| format!("{:?}", c.context_propagation)),
            "ringbuf_mib" => ("16", |c| c.ringbuf_bytes.to_string()),
            "max_connections" => ("10", |c| c.max_connections.to_string()),
            "max_processes" => ("10", |c| c.max_processes.to_string()),
            "conn_memory_mib" => ("3", |c| c.conn_budget.max_bytes.to_string()),
            "conn_idle_timeout" => ("90s", |c| c.conn_budget.idle_ns.to_string()),
            "log_level" => ("debug", |c| c.log_level.clone()),
            other => panic!("no sample for setting {other}: add one"),
        }
    };
    for s in table::SETTINGS {
        let (value, show) = sample(s.id);
        if s.id == "config" {
            continue; // loaded below
        }
        // Settings that need a companion to be observable.
        let extra: &[(&str, &str)] = match s.id {
            "prometheus_address" => &[("RATATOSK_PROMETHEUS_PORT", "9")],
            "otlp_protocol" => &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1")],
            _ => &[],
        };
        let expected = show(&parse(&[&format!("--{}", s.flag), value], extra).unwrap());
        let names: Vec<&str> = std::iter::once(s.env)
            .chain(s.aliases.iter().copied())
            .collect();
        for (i, name) in names.iter().enumerate() {
            let mut env = extra.to_vec();
            env.push((name, value));
            let got = show(&parse(&[], &env).unwrap());
            // A glob alias means what the flag means for its regex form.
            let expected_here = if table::GLOB_ALIASES.contains(name) {
                let re = glob_to_regex(value);
                show(&parse(&[&format!("--{}", s.flag), &re], extra).unwrap())
            } else {
                expected.clone()
            };
            assert_eq!(got, expected_here, "${name} for {}", s.id);
            // An earlier name wins over this one.
            if i > 0 {
                let bad = "%%not valid%%";
                let mut env = extra.to_vec();
                env.push((name, bad));
                env.push((names[0], value));
                assert_eq!(
                    show(&parse(&[], &env).unwrap()),
                    expected,
                    "{} over {name}",
                    names[0]
                );
            }
        }
    }
    let f = TempFile::new("log_level: warn\n");
    for name in [
        "RATATOSK_CONFIG",
        "BEYLA_CONFIG_PATH",
        "OTEL_EBPF_CONFIG_PATH",
    ] {
        let c = parse(&[], &[(name, f.path())]).unwrap();
        assert_eq!(c.log_level, "warn", "{name}");
        assert_eq!(c.config_file.as_deref(), Some(f.path()));
    }
}

#[test]
fn precedence_flag_env_file_default() {
    let f = TempFile::new(
        "log_level: warn\nprometheus_export:\n  port: 7000\n  features: [application_span]\nebpf:\n  capture_bytes: 512\nroutes:\n  unmatched: wildcard\n  max_routes: 50\nservice_name: from-file\n",
    );
    let file = ["--config", f.path()];
    // File over default.
    let c = parse(&file, &[]).unwrap();
    assert_eq!(c.log_level, "warn");
    assert_eq!(c.prometheus.unwrap().port(), 7000);
    assert!(c.prometheus_features.application_span && !c.prometheus_features.application);
    assert_eq!(c.capture_bytes, 512);
    assert_eq!(c.routes.unmatched, UnmatchedRoutes::Wildcard);
    assert_eq!(c.routes.max_per_service, 50);
    assert_eq!(c.naming.service_name.as_deref(), Some("from-file"));
    assert_eq!(c.syscall_hooks, HookMode::Socket);
    // Environment (primary or alias) over file.
    let env = [
        ("BEYLA_LOG_LEVEL", "error"),
        ("RATATOSK_PROMETHEUS_PORT", "7001"),
        ("RATATOSK_CAPTURE_BYTES", "256"),
        ("OTEL_SERVICE_NAME", "from-env"),
    ];
    let c = parse(&file, &env).unwrap();
    assert_eq!(c.log_level, "error");
    assert_eq!(c.prometheus.unwrap().port(), 7001);
    assert_eq!(c.capture_bytes, 256);
    assert_eq!(c.naming.service_name.as_deref(), Some("from-env"));
    assert_eq!(c.routes.max_per_service, 50);
    // Flags over environment.
    let mut args = file.to_vec();
    args.extend([
        "--log-level",
        "trace",
        "--capture-bytes",
        "128",
        "--service-name",
        "flag",
    ]);
    let c = parse(&args, &env).unwrap();
    assert_eq!(c.log_level, "trace");
    assert_eq!(c.capture_bytes, 128);
    assert_eq!(c.naming.service_name.as_deref(), Some("flag"));
    assert_eq!(c.prometheus.unwrap().port(), 7001);
}

#[test]
fn selection_on_cli_or_env_replaces_the_files() {
    let f = TempFile::new(
        "open_port: 80\ndiscovery:\n  services:\n    - name: shop\n      exe_path: python\n      open_ports: 8080\n  exclude_services:\n    - exe_path: debug\n",
    );
    let c = parse(&["--config", f.path()], &[]).unwrap();
    let inc = &c.selection.include;
    assert_eq!(inc.len(), 2);
    assert!(inc[0].open_ports.contains(80));
    assert_eq!(inc[1].name.as_deref(), Some("shop"));
    assert_eq!(c.selection.exclude.len(), 1);
    // An environment selector replaces the whole include list...
    let c = parse(
        &["--config", f.path()],
        &[("BEYLA_EXECUTABLE_NAME", "java")],
    )
    .unwrap();
    let inc = &c.selection.include;
    assert_eq!(inc.len(), 1);
    assert!(inc[0].exe_path.as_ref().unwrap().is_match("/opt/java"));
    // ...and exclusions add up.
    let c = parse(&["--config", f.path(), "--exclude-exe-path", "x"], &[]).unwrap();
    assert_eq!(c.selection.exclude.len(), 2);
}

#[test]
fn errors_name_their_source() {
    let e = err(parse(&[], &[("BEYLA_OPEN_PORT", "eighty")]));
    assert!(
        e.starts_with("$BEYLA_OPEN_PORT: ") && e.contains("eighty"),
        "{e}"
    );
    let e = err(parse(&["--exe-path", "(unclosed"], &[]));
    assert!(e.starts_with("--exe-path: ") && e.contains("regex"), "{e}");
    let e = err(parse(&["--trace-printer", "fancy"], &[]));
    assert!(
        e.starts_with("--trace-printer: ") && e.contains("fancy"),
        "{e}"
    );
    let e = err(parse(&["--capture-bytes", "9"], &[]));
    assert!(
        e.starts_with("--capture-bytes: ") && e.contains("64-8192"),
        "{e}"
    );
    let e = err(parse(&[], &[("RATATOSK_MAX_CONNECTIONS", "0")]));
    assert!(e.starts_with("$RATATOSK_MAX_CONNECTIONS: "), "{e}");
    let e = err(parse(&["--pid", "0"], &[]));
    assert!(e.starts_with("--pid: ") && e.contains("pid 0"), "{e}");
    let e = err(parse(&["--metrics-features", "network"], &[]));
    assert!(
        e.starts_with("--metrics-features: ") && e.contains("`network`"),
        "{e}"
    );
    let e = err(parse(
        &[
            "--otlp-protocol",
            "http/json",
            "--otlp-endpoint",
            "http://c",
        ],
        &[],
    ));
    assert!(
        e.starts_with("--otlp-protocol: ") && e.contains("not supported"),
        "{e}"
    );
    let e = err(parse(&["--otlp-endpoint", "collector:4317"], &[]));
    assert!(e.starts_with("--otlp-endpoint: "), "{e}");
    let e = err(parse(&["--config", "/nonexistent/ratatosk.yaml"], &[]));
    assert!(
        e.starts_with("/nonexistent/ratatosk.yaml: cannot read"),
        "{e}"
    );
    let f = TempFile::new("ebpf:\n  ringbuf_mb: 4\n");
    let e = err(parse(&["--config", f.path()], &[]));
    assert!(
        e.starts_with(&format!("{}:2:3: ", f.path())) && e.contains("did you mean `ringbuf_mib`?"),
        "{e}"
    );
}

#[test]
fn otlp_flags_sit_at_the_environment_level() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ];
    let c = parse(
        &[
            "--otlp-endpoint",
            "http://flag:4317",
            "--otlp-protocol",
            "grpc",
        ],
        &env,
    )
    .unwrap();
    let t = c.otlp.traces.unwrap();
    assert_eq!(
        (t.endpoint.as_str(), t.protocol),
        ("http://flag:4317", OtlpProtocol::Grpc)
    );
    let c = parse(&[], &env).unwrap();
    assert_eq!(
        c.otlp.metrics.unwrap().endpoint,
        "http://env:4318/v1/metrics"
    );
    // OTEL_METRIC_EXPORT_INTERVAL is in milliseconds; Beyla's takes units.
    let c = parse(&[], &[("OTEL_METRIC_EXPORT_INTERVAL", "5000")]).unwrap();
    assert_eq!(c.otlp.metric_interval, Duration::from_secs(5));
    let c = parse(
        &[],
        &[
            ("BEYLA_METRICS_INTERVAL", "5s"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1"),
        ],
    )
    .unwrap();
    assert_eq!(c.otlp.metric_interval, Duration::from_secs(5));
}

#[test]
fn example_file_resolves() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/ratatosk.example.yaml"
    );
    let c = parse(&["--config", path], &[]).unwrap();
    assert!(!c.selection.include.is_empty());
    assert!(c.otlp.traces.is_some());
}

#[test]
fn otlp_flags_beat_per_signal_variables() {
    let env = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://old:4318/v1/traces",
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
    ];
    let c = parse(
        &[
            "--otlp-endpoint",
            "http://new:4317",
            "--otlp-protocol",
            "grpc",
        ],
        &env,
    )
    .unwrap();
    let t = c.otlp.traces.unwrap();
    assert_eq!(t.endpoint, "http://new:4317");
    assert_eq!(t.protocol, OtlpProtocol::Grpc);
    // Without the flags the per-signal variables win over the generic one.
    let c = parse(
        &[],
        &[
            env[0],
            env[1],
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gen:4317"),
        ],
    )
    .unwrap();
    assert_eq!(c.otlp.traces.unwrap().endpoint, "http://old:4318/v1/traces");
}

#[test]
fn endpoint_scheme_is_case_insensitive() {
    let c = parse(&["--otlp-endpoint", "HTTPS://c:4318"], &[]).unwrap();
    assert_eq!(c.otlp.traces.unwrap().endpoint, "https://c:4318/v1/traces");
}

#[test]
fn obi_auto_target_exe_is_a_glob() {
    let c = parse(&[], &[("OTEL_EBPF_AUTO_TARGET_EXE", "*/java")]).unwrap();
    let re = c.selection.include[0].exe_path.as_ref().unwrap();
    assert!(re.is_match("/usr/lib/jvm/bin/java"));
    assert!(!re.is_match("/usr/bin/javac"));
    let c = parse(&[], &[("OTEL_EBPF_AUTO_TARGET_EXE", "/opt/app.v?")]).unwrap();
    let re = c.selection.include[0].exe_path.as_ref().unwrap();
    assert!(re.is_match("/opt/app.v2") && !re.is_match("/opt/appXv2"));
}

/// Every default `--help` and docs/configuration.md show as a value is the
/// one resolved: giving it explicitly changes nothing. Defaults written as
/// prose ("none", "executable name", "text, or disabled when…") are not
/// values this test can give.
#[test]
fn shown_defaults_are_the_resolved_ones() {
    let unset = format!("{:?}", parse(&[], &[]).unwrap());
    let mut checked = 0;
    for s in table::SETTINGS {
        let value = s.default;
        if value == "none" || value.contains(' ') {
            continue;
        }
        let flag = format!("--{}", s.flag);
        let given = parse(&[&flag, value], &[])
            .unwrap_or_else(|e| panic!("{flag} {value}: the shown default is refused: {e}"));
        let given = format!("{given:?}");
        assert_eq!(
            given, unset,
            "{flag}: shown default {value:?} is not the resolved one"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} defaults checked");
}

/// A log filter that names no level would turn every line off (`verbose`
/// reads as a target): refused from every source, like any other setting.
#[test]
fn a_log_filter_without_a_level_is_refused() {
    let e = err(parse(&["--log-level", "verbose"], &[]));
    assert!(
        e.starts_with("--log-level: ") && e.contains("`verbose` is not a level"),
        "{e}"
    );
    for var in [
        "RATATOSK_LOG_LEVEL",
        "BEYLA_LOG_LEVEL",
        "OTEL_EBPF_LOG_LEVEL",
    ] {
        let e = err(parse(&[], &[(var, "loud")]));
        assert!(e.starts_with(&format!("${var}: ")), "{e}");
    }
    let e = err(parse(&["--log-level", "ratatosk=chatty"], &[]));
    assert!(e.contains("`chatty`"), "{e}");
    let f = TempFile::new("log_level: verbose\n");
    let e = err(parse(&["--config", f.path()], &[]));
    assert!(e.starts_with(&format!("{}:1:", f.path())), "{e}");
    // Beyla's upper-case levels, targets with levels and span directives.
    for ok in [
        "DEBUG",
        "warn",
        "info,ratatosk=debug",
        "ratatosk[export]=trace",
        "off",
    ] {
        let c = parse(&["--log-level", ok], &[]).unwrap();
        assert_eq!(c.log_level, ok.to_ascii_lowercase());
    }
}

/// What the selection decides for a process with this executable and port.
fn decide(c: &Config, pid: u32, exe: &'static str, port: u16) -> Verdict {
    struct P(u32, &'static str, u16);
    impl ProcView for P {
        fn pid(&self) -> u32 {
            self.0
        }
        fn exe(&self) -> &str {
            self.1
        }
        fn listens_on(&mut self, ports: &PortSet) -> bool {
            ports.contains(self.2)
        }
    }
    c.selection.decide(&mut P(pid, exe, port))
}

/// Beyla 2.x's discovery layout: `instrument` entries with `exe_path`
/// globs beside the older regex `services`, glob exclusions, and the
/// default exclusions replaced.
#[test]
fn beyla_2_discovery_instrument_layout() {
    let f = TempFile::new(
        "discovery:\n  instrument:\n    - exe_path: \"*/python3*\"\n      open_ports: 8000-8099\n      name: storefront\n      namespace: shop\n    - exe_path: \"{*/nginx,*/caddy}\"\n  services:\n    - exe_path: java$\n  exclude_instrument:\n    - exe_path: \"*/nginx-debug\"\n  default_exclude_instrument: []\n",
    );
    let c = parse(&["--config", f.path()], &[]).unwrap();
    assert_eq!(c.selection.include.len(), 3);
    assert!(c.selection.default_exclude.is_empty());
    assert_eq!(
        decide(&c, 9, "/usr/bin/python3.11", 8080),
        Verdict::Selected(Some(1))
    );
    let e = c.selection.entry(Some(1)).unwrap();
    assert_eq!(e.name.as_deref(), Some("storefront"));
    assert_eq!(e.namespace.as_deref(), Some("shop"));
    assert_eq!(
        decide(&c, 9, "/usr/bin/python3.11", 9000),
        Verdict::NotSelected
    );
    assert_eq!(
        decide(&c, 9, "/usr/sbin/nginx", 80),
        Verdict::Selected(Some(2))
    );
    assert_eq!(
        decide(&c, 9, "/usr/bin/caddy", 80),
        Verdict::Selected(Some(2))
    );
    // A glob matches the whole path: `*/nginx` is not `*/nginx-debug`.
    assert_eq!(
        decide(&c, 9, "/usr/sbin/nginx-debug", 80),
        Verdict::NotSelected
    );
    assert_eq!(
        decide(&c, 9, "/opt/jdk/bin/java", 1),
        Verdict::Selected(Some(0))
    );
}

#[test]
fn beyla_auto_target_exe_is_a_glob() {
    for var in ["BEYLA_AUTO_TARGET_EXE", "OTEL_EBPF_AUTO_TARGET_EXE"] {
        let c = parse(&[], &[(var, "*/{node,bun}")]).unwrap();
        assert_eq!(
            decide(&c, 9, "/usr/bin/node", 1),
            Verdict::Selected(Some(0))
        );
        assert_eq!(decide(&c, 9, "/usr/bin/bun", 1), Verdict::Selected(Some(0)));
        assert_eq!(decide(&c, 9, "/usr/bin/nodejs", 1), Verdict::NotSelected);
    }
}

#[test]
fn globs_as_beyla_reads_them() {
    let m = |g: &str, s: &str| regex::Regex::new(&glob_to_regex(g)).unwrap().is_match(s);
    assert!(m("*/otelcol-contrib[!/]*", "/usr/bin/otelcol-contrib2"));
    assert!(!m("*/otelcol-contrib[!/]*", "/usr/bin/otelcol-contrib/x"));
    assert!(m("/opt/app[0-9]", "/opt/app7") && !m("/opt/app[0-9]", "/opt/appx"));
    assert!(m("{a,b}*", "bee") && !m("{a,b}*", "cab"));
    assert!(m("/x/[unclosed", "/x/[unclosed"));
    assert!(m(r"/x/\*", "/x/*") && !m(r"/x/\*", "/x/y"));
    assert!("{a,b".parse::<values::Glob>().is_err());
}

/// A Beyla key Ratatosk does not implement is refused, naming what to use
/// instead, never silently ignored.
#[test]
fn unimplemented_beyla_keys_are_refused_with_the_equivalent() {
    for (text, want) in [
        (
            "discovery:\n  instrument:\n    - k8s_namespace: shop\n",
            "Kubernetes metadata",
        ),
        (
            "discovery:\n  instrument:\n    - exe_path: \"*\"\n      languages: java\n",
            "`exe_path`, `open_ports` or `target_pids`",
        ),
        (
            "discovery:\n  survey:\n    - exe_path: \"*\"\n",
            "`discovery.instrument`",
        ),
        (
            "discovery:\n  instrument:\n    - open_ports: 80\n      sampler:\n        name: always_on\n",
            "`otel_traces_export.sampler`",
        ),
        ("network:\n  enable: true\n", "not implemented"),
    ] {
        let f = TempFile::new(text);
        let e = err(parse(&["--config", f.path()], &[]));
        assert!(
            e.starts_with(f.path()) && e.contains("(Beyla) is not implemented") && e.contains(want),
            "{text}: {e}"
        );
    }
}

/// With no selector, observability agents are left out (Beyla's default
/// exclusions); a file can replace or empty that list, and a selector
/// that names such a process selects it.
#[test]
fn default_exclusions_of_observability_agents() {
    let c = parse(&[], &[]).unwrap();
    assert!(!c.selection.is_everything());
    assert_eq!(
        decide(&c, 9, "/usr/bin/otelcol-contrib", 4317),
        Verdict::Excluded
    );
    assert_eq!(decide(&c, 9, "/usr/local/bin/alloy", 1), Verdict::Excluded);
    assert_eq!(
        decide(&c, 9, "/usr/bin/python3", 1),
        Verdict::Selected(None)
    );
    let c = parse(&["--open-port", "4317"], &[]).unwrap();
    assert_eq!(
        decide(&c, 9, "/usr/bin/otelcol-contrib", 4317),
        Verdict::Selected(Some(0))
    );
    let f =
        TempFile::new("discovery:\n  default_exclude_instrument:\n    - exe_path: \"*/python3\"\n");
    let c = parse(&["--config", f.path()], &[]).unwrap();
    assert_eq!(decide(&c, 9, "/usr/bin/python3", 1), Verdict::Excluded);
    assert_eq!(
        decide(&c, 9, "/usr/bin/otelcol", 1),
        Verdict::Selected(None)
    );
    let f = TempFile::new("discovery:\n  default_exclude_instrument: []\n");
    let c = parse(&["--config", f.path()], &[]).unwrap();
    assert!(c.selection.is_everything());
}
