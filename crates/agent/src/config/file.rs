//! The YAML configuration file, in Beyla/OBI's layout where Beyla has the
//! setting. Values are validated while they are read (see `Val`), so every
//! refusal carries `FILE:LINE:COL`. Unknown keys are refused with the
//! closest allowed key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::MessageFormatter;

use super::ConfigError;
use super::export::{Features, UnmatchedRoutes};
use super::values::{
    ContextPropagation, Flag, Glob, HookMode, Ip, LogFilter, Millis, Pattern, Pids, PortSet,
    PrinterMode, Ranged, RouteList, ServePort, Setting, Text, Val,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub open_port: Option<Val<PortSet>>,
    pub executable_path: Option<Val<Pattern>>,
    pub target_pids: Option<Val<Pids>>,
    pub service_name: Option<Val<Text>>,
    pub service_namespace: Option<Val<Text>>,
    pub trace_printer: Option<Val<PrinterMode>>,
    pub log_level: Option<Val<LogFilter>>,
    #[serde(default)]
    pub discovery: DiscoveryFile,
    #[serde(default)]
    pub otel_traces_export: TracesFile,
    #[serde(default)]
    pub otel_metrics_export: MetricsFile,
    #[serde(default)]
    pub prometheus_export: PrometheusFile,
    #[serde(default)]
    pub routes: RoutesFile,
    #[serde(default)]
    pub ebpf: EbpfFile,
    #[serde(default)]
    pub attributes: AttributesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    /// Beyla 1.x / early 2.x: `exe_path` is a regex.
    #[serde(default)]
    pub services: Vec<EntryFile>,
    #[serde(default)]
    pub exclude_services: Vec<EntryFile>,
    pub default_exclude_services: Option<Vec<EntryFile>>,
    /// Beyla 2.x: the same entries with `exe_path` a glob.
    #[serde(default)]
    pub instrument: Vec<GlobEntryFile>,
    #[serde(default)]
    pub exclude_instrument: Vec<GlobEntryFile>,
    pub default_exclude_instrument: Option<Vec<GlobEntryFile>>,
}

/// One `discovery.services[]` / `exclude_services[]` item, with at least
/// one criterion.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "EntryRaw<Pattern>")]
pub struct EntryFile {
    pub name: Option<Val<Text>>,
    pub namespace: Option<Val<Text>>,
    pub open_ports: Option<Val<PortSet>>,
    pub exe_path: Option<Val<Pattern>>,
    pub target_pids: Option<Val<Pids>>,
}

/// One `discovery.instrument[]` / `exclude_instrument[]` /
/// `default_exclude_instrument[]` item: `exe_path` is a glob.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "EntryRaw<Glob>")]
pub struct GlobEntryFile(pub EntryFile);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "P: Setting")]
struct EntryRaw<P> {
    name: Option<Val<Text>>,
    namespace: Option<Val<Text>>,
    open_ports: Option<Val<PortSet>>,
    exe_path: Option<Val<P>>,
    target_pids: Option<Val<Pids>>,
}

impl<P> EntryRaw<P> {
    fn entry(self, exe_path: Option<Val<Pattern>>) -> Result<EntryFile, String> {
        if self.open_ports.is_none() && exe_path.is_none() && self.target_pids.is_none() {
            return Err(
                "a selection entry needs at least one of `open_ports`, `exe_path` or `target_pids`"
                    .to_string(),
            );
        }
        Ok(EntryFile {
            name: self.name,
            namespace: self.namespace,
            open_ports: self.open_ports,
            exe_path,
            target_pids: self.target_pids,
        })
    }
}

impl TryFrom<EntryRaw<Pattern>> for EntryFile {
    type Error = String;
    fn try_from(mut r: EntryRaw<Pattern>) -> Result<Self, String> {
        let exe = r.exe_path.take();
        r.entry(exe)
    }
}

impl TryFrom<EntryRaw<Glob>> for GlobEntryFile {
    type Error = String;
    fn try_from(mut r: EntryRaw<Glob>) -> Result<Self, String> {
        let exe = r.exe_path.take().map(|g| Val(Pattern(g.0.0)));
        r.entry(exe).map(GlobEntryFile)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerFile {
    pub name: Option<Val<SamplerName>>,
    pub arg: Option<Val<Ratio>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesFile {
    pub endpoint: Option<Val<Endpoint>>,
    pub protocol: Option<Val<Protocol>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub timeout: Option<Val<Millis>>,
    pub compression: Option<Val<CompressionName>>,
    pub sampler: Option<SamplerFile>,
    /// Beyla's names for the batch span processor settings.
    pub batch_max_size: Option<Val<Ranged<1, { super::otel::MAX_QUEUE }>>>,
    pub batch_timeout: Option<Val<Millis>>,
    pub queue_size: Option<Val<Ranged<1, { super::otel::MAX_QUEUE }>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    pub endpoint: Option<Val<Endpoint>>,
    pub protocol: Option<Val<Protocol>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub timeout: Option<Val<Millis>>,
    pub compression: Option<Val<CompressionName>>,
    pub interval: Option<Val<Millis>>,
    pub features: Option<Val<Features>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusFile {
    pub port: Option<Val<ServePort>>,
    pub address: Option<Val<Ip>>,
    pub ttl: Option<Val<Millis>>,
    pub features: Option<Val<Features>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// A YAML sequence or one comma-separated string, as every list.
    pub patterns: Option<Val<RouteList>>,
    pub ignored_patterns: Option<Val<RouteList>>,
    pub unmatched: Option<Val<UnmatchedRoutes>>,
    pub max_routes: Option<Val<Ranged<1, 100_000>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbpfFile {
    pub capture_bytes: Option<Val<Ranged<64, 8192>>>,
    pub syscall_hooks: Option<Val<HookMode>>,
    pub tls_capture: Option<Val<Flag>>,
    pub tls_decrypt: Option<Val<Flag>>,
    pub context_propagation: Option<Val<ContextPropagation>>,
    pub ringbuf_mib: Option<Val<Ranged<1, 1024>>>,
    pub max_connections: Option<Val<Ranged<1, 16_777_216>>>,
    pub conn_memory_mib: Option<Val<Ranged<1, 4096>>>,
    pub conn_idle_timeout: Option<Val<Millis>>,
    pub max_processes: Option<Val<Ranged<1, 4_194_304>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesFile {
    pub process_command_args: Option<Val<Flag>>,
    pub raw_db_query_text: Option<Val<Flag>>,
}

use super::otel::{CompressionName, Endpoint, Protocol, Ratio, SamplerName};

/// Reads and validates `path`.
pub fn load(path: &str) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_string(),
        at: None,
        msg: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses file text; `path` only names it in errors.
pub fn parse(path: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_saphyr::from_str::<FileConfig>(text).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        ConfigError::File {
            path: path.to_string(),
            at,
            msg: message(&e),
        }
    })
}

/// The error's message without the parser's own location suffix, with a
/// hint for unknown keys.
fn message(e: &serde_saphyr::Error) -> String {
    let inner = e.without_snippet();
    if let serde_saphyr::Error::SerdeUnknownField {
        field, expected, ..
    } = inner
    {
        return unknown_key(field, expected);
    }
    let msg: Cow<'_, str> = serde_saphyr::DefaultMessageFormatter.format_message(inner);
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Beyla/OBI keys Ratatosk does not implement, with what to use instead:
/// a Beyla file is refused at the first of them rather than half applied.
const BEYLA_KEYS: &[(&str, &str)] = &[
    (
        "executable_name",
        "select with `executable_path` (a regex) or `discovery.instrument[].exe_path` (a glob)",
    ),
    (
        "auto_target_exe",
        "select with `discovery.instrument[].exe_path` (a glob) or `executable_path` (a regex)",
    ),
    (
        "languages",
        "languages are not told apart: select with `exe_path`, `open_ports` or `target_pids`",
    ),
    (
        "cmd_args",
        "command lines are not matched: select with `exe_path`, `open_ports` or `target_pids`",
    ),
    (
        "containers_only",
        "containers are not told apart: select with `exe_path`, `open_ports` or `target_pids`",
    ),
    (
        "exports",
        "per-entry exports are not implemented: `otel_traces_export`, `otel_metrics_export` and `prometheus_export` apply to every process",
    ),
    (
        "sampler",
        "per-entry sampling is not implemented: use `otel_traces_export.sampler` (or `OTEL_TRACES_SAMPLER`)",
    ),
    (
        "routes",
        "per-entry routes are not implemented: use the top-level `routes` section",
    ),
    (
        "metrics",
        "per-entry metrics are not implemented: use `prometheus_export.features` / `otel_metrics_export.features`",
    ),
    (
        "survey",
        "survey mode is not implemented: list the processes to instrument in `discovery.instrument`",
    ),
    (
        "skip_go_specific_tracers",
        "there are no Go-specific tracers to skip: Go TLS is probed with `ebpf.tls_capture`",
    ),
    (
        "exclude_otel_instrumented_services",
        "not implemented: exclude such processes with `discovery.exclude_instrument`",
    ),
    (
        "min_process_age",
        "not implemented: a process is instrumented as soon as it matches",
    ),
    ("network", "network flow metrics are not implemented"),
    ("filter", "attribute filters are not implemented"),
    (
        "internal_metrics",
        "the agent's own metrics are always exported, as `ratatosk_*`, with the others",
    ),
    (
        "channel_buffer_len",
        "queues are sized by the agent: see `ebpf.ringbuf_mib`",
    ),
    (
        "wakeup_len",
        "the ring buffer is sized with `ebpf.ringbuf_mib`",
    ),
    (
        "track_request_headers",
        "request headers are always read for `traceparent`",
    ),
    (
        "buckets",
        "histogram buckets are fixed (OpenTelemetry's recommended ones for durations)",
    ),
    ("histogram_aggregation", "histograms are explicit-bucket"),
    (
        "wildcard_char",
        "unmatched routes are chosen with `routes.unmatched`",
    ),
    ("kubernetes", "Kubernetes metadata is not implemented"),
];

fn unknown_key(field: &str, expected: &[&str]) -> String {
    if field.starts_with("k8s_") {
        return format!(
            "`{field}` (Beyla) is not implemented: Kubernetes metadata is not read; \
             select with `exe_path`, `open_ports` or `target_pids`"
        );
    }
    if let Some((_, instead)) = BEYLA_KEYS.iter().find(|(k, _)| *k == field) {
        return format!("`{field}` (Beyla) is not implemented by Ratatosk: {instead}");
    }
    let best = expected
        .iter()
        .map(|k| (strsim::levenshtein(field, k), *k))
        .min();
    match best {
        Some((d, k)) if d <= (field.len() / 3).max(2) => {
            format!("unknown key `{field}`: did you mean `{k}`?")
        }
        _ => format!(
            "unknown key `{field}` (allowed here: {})",
            expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse("conf.yaml", text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn example_file_loads() {
        let f = parse(
            "docs/ratatosk.example.yaml",
            include_str!("../../../../docs/ratatosk.example.yaml"),
        )
        .unwrap();
        assert!(!f.discovery.services.is_empty());
    }

    /// The example file sets every default it shows as the default.
    #[test]
    fn example_file_shows_the_default_hooks() {
        let f = parse(
            "docs/ratatosk.example.yaml",
            include_str!("../../../../docs/ratatosk.example.yaml"),
        )
        .unwrap();
        assert_eq!(f.ebpf.syscall_hooks.unwrap().0, HookMode::Socket);
    }

    /// Every ```yaml block of the docs and the README is a file the agent
    /// accepts, so a documented example cannot drift from the code.
    #[test]
    fn every_yaml_snippet_in_the_docs_loads() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md")];
        for e in std::fs::read_dir(root.join("docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        let mut snippets = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let mut lines = text.lines().enumerate();
            while let Some((n, l)) = lines.next() {
                if l.trim() != "```yaml" {
                    continue;
                }
                let body: Vec<&str> = lines
                    .by_ref()
                    .map(|(_, l)| l)
                    .take_while(|l| l.trim() != "```")
                    .collect();
                let name = format!("{}:{}", f.display(), n + 1);
                if let Err(e) = parse(&name, &body.join("\n")) {
                    panic!("the snippet at {name} is refused: {e}");
                }
                snippets += 1;
            }
        }
        assert!(snippets >= 3, "only {snippets} yaml snippets found");
    }

    #[test]
    fn lists_are_sequences_or_comma_separated_strings() {
        let f = parse(
            "conf.yaml",
            "routes:\n  patterns: \"/a/{id},/b\"\n  ignored_patterns: /health, /metrics\nopen_port: 80,8080\n",
        )
        .unwrap();
        assert_eq!(f.routes.patterns.unwrap().0.0, ["/a/{id}", "/b"]);
        assert_eq!(
            f.routes.ignored_patterns.unwrap().0.0,
            ["/health", "/metrics"]
        );
        let f = parse("conf.yaml", "routes:\n  patterns: [\"/a/{id}\", /b]\n").unwrap();
        assert_eq!(f.routes.patterns.unwrap().0.0, ["/a/{id}", "/b"]);
        let e = err("routes:\n  patterns: \"/a/{id},b\"\n");
        assert!(e.starts_with("conf.yaml:2:"), "{e}");
    }

    #[test]
    fn valid_file() {
        let f = parse(
            "conf.yaml",
            "discovery:\n  services:\n    - name: shop\n      open_ports: 8080-8089\n      exe_path: python\n    - target_pids: [12, 13]\n  exclude_services:\n    - exe_path: debug\nprometheus_export:\n  port: 9400\n  features: [application, application_span]\nroutes:\n  patterns: [\"/users/{id}\"]\n  unmatched: wildcard\nebpf:\n  capture_bytes: 2048\n  syscall_hooks: per-syscall\notel_traces_export:\n  endpoint: http://collector:4318\n  headers:\n    authorization: Bearer x\n  sampler:\n    name: parentbased_traceidratio\n    arg: \"0.25\"\n",
        )
        .unwrap();
        let s = &f.discovery.services;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name.as_ref().unwrap().0.0, "shop");
        assert!(s[0].open_ports.as_ref().unwrap().0.contains(8085));
        assert_eq!(s[1].target_pids.as_ref().unwrap().0.0, vec![12, 13]);
        assert_eq!(f.prometheus_export.port.unwrap().0.0, Some(9400));
        assert!(f.prometheus_export.features.unwrap().0.application_span);
        assert_eq!(f.ebpf.capture_bytes.unwrap().0.0, 2048);
        assert_eq!(f.ebpf.syscall_hooks.unwrap().0, HookMode::PerSyscall);
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let e = err("prometheus_export:\n  prot: 9400\n");
        assert!(e.starts_with("conf.yaml:2:3: "), "{e}");
        assert!(
            e.contains("unknown key `prot`: did you mean `port`?"),
            "{e}"
        );
        let e = err("discovery:\n  services:\n    - exe_pth: x\n");
        assert!(
            e.starts_with("conf.yaml:3:7: ") && e.contains("`exe_path`"),
            "{e}"
        );
        let e = err("log_level: info\nzzzzzzzz: 1\n");
        assert!(e.starts_with("conf.yaml:2:1: "), "{e}");
        assert!(
            e.contains("allowed here:") && e.contains("`discovery`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type() {
        let e = err("discovery:\n  services: nginx\n");
        assert!(e.starts_with("conf.yaml:2:13: "), "{e}");
        assert!(e.contains("sequence"), "{e}");
        let e = err("ebpf:\n  capture_bytes: lots\n");
        assert!(
            e.starts_with("conf.yaml:2:18: ") && e.contains("64-8192"),
            "{e}"
        );
    }

    #[test]
    fn a_list_is_refused_where_one_value_is_expected() {
        let e = err("executable_path: [nginx, java]\n");
        assert!(
            e.starts_with("conf.yaml:1:") && e.contains("not a list"),
            "{e}"
        );
        let e = err("service_name: [a, b]\n");
        assert!(e.contains("not a list"), "{e}");
        // List-valued settings still take a YAML list.
        assert!(parse("conf.yaml", "open_port: [80, 8080-8090]\n").is_ok());
    }

    #[test]
    fn entry_without_criteria() {
        let e = err("discovery:\n  services:\n    - name: lonely\n");
        assert!(
            e.starts_with("conf.yaml:3:") && e.contains("at least one of"),
            "{e}"
        );
    }

    #[test]
    fn bad_regex() {
        let e = err("discovery:\n  services:\n    - exe_path: \"(unclosed\"\n");
        assert!(e.starts_with("conf.yaml:3:17: "), "{e}");
        assert!(e.contains("bad regex"), "{e}");
    }

    #[test]
    fn bad_port_set() {
        let e = err("discovery:\n  services:\n    - open_ports: 9000-8000\n");
        assert!(
            e.starts_with("conf.yaml:3:19: ") && e.contains("backwards"),
            "{e}"
        );
        let e = err("open_port: [80, http]\n");
        assert!(
            e.starts_with("conf.yaml:1:") && e.contains("`http` is not a port"),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_lists_the_allowed_values() {
        let e = err("routes:\n  unmatched: low-cardinality\n");
        assert!(e.starts_with("conf.yaml:2:14: "), "{e}");
        assert!(e.contains("`heuristic`, `path` or `wildcard`"), "{e}");
        let e = err("prometheus_export:\n  features: [application, network]\n");
        assert!(
            e.starts_with("conf.yaml:2:") && e.contains("`network`"),
            "{e}"
        );
        let e = err("otel_traces_export:\n  protocol: http/json\n");
        assert!(
            e.starts_with("conf.yaml:2:13: ") && e.contains("not supported"),
            "{e}"
        );
    }
}
