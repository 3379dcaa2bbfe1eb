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
    Flag, HookMode, Ip, Millis, Pattern, Pids, PortSet, PrinterMode, Ranged, RoutePattern,
    ServePort, Text, Val,
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
    pub log_level: Option<Val<Text>>,
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
    #[serde(default)]
    pub services: Vec<EntryFile>,
    #[serde(default)]
    pub exclude_services: Vec<EntryFile>,
}

/// One `discovery.services[]` / `exclude_services[]` item, with at least
/// one criterion.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "EntryRaw")]
pub struct EntryFile {
    pub name: Option<Val<Text>>,
    pub namespace: Option<Val<Text>>,
    pub open_ports: Option<Val<PortSet>>,
    pub exe_path: Option<Val<Pattern>>,
    pub target_pids: Option<Val<Pids>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRaw {
    name: Option<Val<Text>>,
    namespace: Option<Val<Text>>,
    open_ports: Option<Val<PortSet>>,
    exe_path: Option<Val<Pattern>>,
    target_pids: Option<Val<Pids>>,
}

impl TryFrom<EntryRaw> for EntryFile {
    type Error = String;
    fn try_from(r: EntryRaw) -> Result<Self, String> {
        if r.open_ports.is_none() && r.exe_path.is_none() && r.target_pids.is_none() {
            return Err(
                "a selection entry needs at least one of `open_ports`, `exe_path` or `target_pids`"
                    .to_string(),
            );
        }
        Ok(EntryFile {
            name: r.name,
            namespace: r.namespace,
            open_ports: r.open_ports,
            exe_path: r.exe_path,
            target_pids: r.target_pids,
        })
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
    pub features: Option<Val<Features>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    pub patterns: Option<Vec<Val<RoutePattern>>>,
    pub ignored_patterns: Option<Vec<Val<RoutePattern>>>,
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
    pub ringbuf_mib: Option<Val<Ranged<1, 1024>>>,
    pub max_connections: Option<Val<Ranged<1, 16_777_216>>>,
    pub max_processes: Option<Val<Ranged<1, 4_194_304>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesFile {
    pub process_command_args: Option<Val<Flag>>,
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

fn unknown_key(field: &str, expected: &[&str]) -> String {
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
