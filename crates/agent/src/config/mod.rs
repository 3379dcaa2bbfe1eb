//! Settings: command line, environment (RATATOSK_*, then the Beyla/OBI
//! aliases and the standard OTEL_* variables), the `--config` YAML file and
//! defaults, resolved in one place into `Config`. Precedence: flag >
//! environment > file > default; an error names its source (`--flag`,
//! `$VAR` or `FILE:LINE:COL`). docs/configuration.md has the whole table.

mod cli;
pub mod export;
mod file;
mod otel;
mod select;
mod table;
mod values;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use select::{ProcView, SelectEntry, Selection, Verdict};
pub use values::{ContextPropagation, HookMode, PortSet, PrinterMode};

use file::{EntryFile, FileConfig};
use values::{Flag, Ip, LogFilter, Millis, Pattern, Pids, Ranged, RouteList, ServePort, Text, Val};

/// Where a value came from, to name it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(String),
    File(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(n) => write!(f, "--{n}"),
            Origin::Env(n) => write!(f, "${n}"),
            Origin::File(p) => f.write_str(p),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {msg}")]
    Invalid { origin: Origin, msg: String },
    /// A refusal of the configuration file, at a line and column if known.
    #[error("{}: {msg}", place(.path, .at))]
    File {
        path: String,
        at: Option<(u64, u64)>,
        msg: String,
    },
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

fn place(path: &str, at: &Option<(u64, u64)>) -> String {
    match at {
        Some((line, col)) => format!("{path}:{line}:{col}"),
        None => path.to_string(),
    }
}

fn invalid(origin: &Origin, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.clone(),
        msg: msg.into(),
    }
}

/// The validated settings the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file read, if any.
    pub config_file: Option<String>,
    pub selection: Selection,
    pub printer: PrinterMode,
    pub prometheus: Option<std::net::SocketAddr>,
    pub capture_bytes: u32,
    pub syscall_hooks: HookMode,
    pub tls_capture: bool,
    /// OpenSSL libraries: decrypt from the handshake's secrets instead of
    /// probing every SSL_read/SSL_write.
    pub tls_decrypt: bool,
    /// SQL text as sent instead of sanitized (the user's opt-in).
    pub raw_db_query_text: bool,
    /// Linking of spans into traces on this host (docs/traces.md).
    pub context_propagation: ContextPropagation,
    pub ringbuf_bytes: u32,
    pub max_connections: usize,
    /// Connection and parser state: byte budget and idle timeout.
    pub conn_budget: crate::conn::Budget,
    pub max_processes: u32,
    pub log_level: String,
    pub prometheus_features: export::Features,
    /// How long a /metrics series lives without an update.
    pub prometheus_ttl: std::time::Duration,
    pub naming: export::Naming,
    pub routes: export::RouteSettings,
    pub otlp: export::OtlpSettings,
    pub sampler: export::Sampler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Cli,
    Env,
    File,
}

/// The command line and the environment, read through the table.
struct Sources<'a> {
    cli: &'a cli::CliValues,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// An environment variable; empty counts as unset.
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// The flag, else the first variable set among the setting's primary
    /// name and aliases.
    fn given(&self, id: &str) -> Option<(String, Origin)> {
        let s = table::get(id);
        if let Some(v) = self.cli.get(id) {
            return Some((v.to_string(), Origin::Flag(s.flag)));
        }
        std::iter::once(s.env)
            .chain(s.aliases.iter().copied())
            .find_map(|n| {
                let v = self.var(n)?;
                // OBI reads this one as a glob (`*/java`): same meaning here.
                let v = if table::GLOB_ALIASES.contains(&n) {
                    glob_to_regex(&v)
                } else {
                    v
                };
                Some((v, Origin::Env(n.to_string())))
            })
    }

    /// A setting from the flag or environment (parsed here), else the file.
    fn layered<T: FromStr<Err = String>>(
        &self,
        id: &str,
        file: Option<T>,
    ) -> Result<Option<(T, Layer)>, ConfigError> {
        match self.given(id) {
            Some((v, o)) => {
                let layer = match o {
                    Origin::Flag(_) => Layer::Cli,
                    _ => Layer::Env,
                };
                v.parse::<T>()
                    .map(|t| Some((t, layer)))
                    .map_err(|m| invalid(&o, m))
            }
            None => Ok(file.map(|t| (t, Layer::File))),
        }
    }

    fn value<T: FromStr<Err = String>>(
        &self,
        id: &str,
        file: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.layered(id, file)?.map_or(default, |(t, _)| t))
    }
}

/// A glob as Beyla/OBI read them (`*` any run, `/` included; `?` one
/// character; `[abc]`, `[a-z]`, `[!abc]`; `{a,b}` alternatives; `\x` a
/// literal x) as an anchored regex over the whole path. An unclosed `[` is a
/// literal; an unbalanced `{` is left for the regex parser to refuse.
pub(crate) fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut lit = [0u8; 4];
    let mut depth = 0usize;
    let mut chars = glob.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '{' => {
                depth += 1;
                re.push_str("(?:");
            }
            ',' if depth > 0 => re.push('|'),
            '}' if depth > 0 => {
                depth -= 1;
                re.push(')');
            }
            '[' => {
                let rest: String = chars.clone().collect();
                match rest.find(']') {
                    Some(end) if end > 0 => {
                        let class = rest.get(..end).unwrap_or_default();
                        let (neg, body) = match class.strip_prefix('!') {
                            Some(b) => (true, b),
                            None => (false, class),
                        };
                        re.push('[');
                        if neg {
                            re.push('^');
                        }
                        for k in body.chars() {
                            if k == '-' {
                                re.push('-');
                            } else {
                                re.push_str(&regex::escape(k.encode_utf8(&mut lit)));
                            }
                        }
                        re.push(']');
                        // Skip the class and its `]`.
                        for _ in 0..=class.chars().count() {
                            chars.next();
                        }
                    }
                    _ => re.push_str(r"\["),
                }
            }
            '\\' => {
                let k = chars.next().unwrap_or('\\');
                re.push_str(&regex::escape(k.encode_utf8(&mut lit)));
            }
            c => re.push_str(&regex::escape(c.encode_utf8(&mut lit))),
        }
    }
    re.push('$');
    re
}

fn take<T>(v: Option<Val<T>>) -> Option<T> {
    v.map(|v| v.0)
}

fn entry(e: EntryFile) -> SelectEntry {
    SelectEntry {
        name: take(e.name).map(|t| t.0),
        namespace: take(e.namespace).map(|t| t.0),
        open_ports: take(e.open_ports).unwrap_or_default(),
        exe_path: take(e.exe_path).map(|p| p.0),
        pids: take(e.target_pids).map(|p| p.0).unwrap_or_default(),
    }
}

impl Config {
    /// Parses the process's arguments and environment (and the file they
    /// name).
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        let cli = cli::parse_from(std::env::args_os())?;
        let env = |name: &str| std::env::var(name).ok();
        Config::resolve(&cli, &env)
    }

    /// Parses `args` against an explicit environment (for tests).
    #[cfg(test)]
    pub fn from_args_with_env<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = cli::parse_from(args)?;
        Config::resolve(&cli, env)
    }

    fn resolve(
        cli: &cli::CliValues,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let src = Sources { cli, env };
        let (mut file, file_origin, config_file) = match src.given("config") {
            Some((path, _)) => (file::load(&path)?, Origin::File(path.clone()), Some(path)),
            None => (FileConfig::default(), Origin::Default, None),
        };

        let selection = {
            let ports = src.layered::<PortSet>("open_port", take(file.open_port.take()))?;
            let exe = src.layered::<Pattern>("exe_path", take(file.executable_path.take()))?;
            let pids = src.layered::<Pids>("pid", take(file.target_pids.take()))?;
            let layers = [
                ports.as_ref().map(|p| p.1),
                exe.as_ref().map(|p| p.1),
                pids.as_ref().map(|p| p.1),
            ];
            // A selection on the command line or in the environment replaces
            // the file's: merging would widen what the file meant to select.
            let outside_file = layers
                .iter()
                .any(|l| matches!(l, Some(Layer::Cli | Layer::Env)));
            let keep = |l: Layer| !outside_file || l != Layer::File;
            let mut include = Vec::new();
            if let Some((p, l)) = ports
                && keep(l)
            {
                include.push(SelectEntry {
                    open_ports: p,
                    ..SelectEntry::default()
                });
            }
            if let Some((re, l)) = exe
                && keep(l)
            {
                include.push(SelectEntry {
                    exe_path: Some(re.0),
                    ..SelectEntry::default()
                });
            }
            if let Some((p, l)) = pids
                && keep(l)
            {
                include.push(SelectEntry {
                    pids: p.0,
                    ..SelectEntry::default()
                });
            }
            let d = &mut file.discovery;
            if !outside_file {
                // Beyla 2.x's `instrument` beside the older `services`.
                include.extend(std::mem::take(&mut d.services).into_iter().map(entry));
                include.extend(
                    std::mem::take(&mut d.instrument)
                        .into_iter()
                        .map(|g| entry(g.0)),
                );
            }
            // Exclusions only narrow, so the flag adds to the file's.
            let mut exclude: Vec<SelectEntry> = std::mem::take(&mut d.exclude_services)
                .into_iter()
                .map(entry)
                .chain(
                    std::mem::take(&mut d.exclude_instrument)
                        .into_iter()
                        .map(|g| entry(g.0)),
                )
                .collect();
            // Observability agents, unless the file lists its own (an empty
            // list: none).
            let default_exclude = match (
                d.default_exclude_instrument.take(),
                d.default_exclude_services.take(),
            ) {
                (Some(globs), _) => globs.into_iter().map(|g| entry(g.0)).collect(),
                (None, Some(regexes)) => regexes.into_iter().map(entry).collect(),
                (None, None) => vec![SelectEntry {
                    exe_path: Some(
                        regex::Regex::new(&glob_to_regex(select::DEFAULT_EXCLUDE_GLOB))
                            .map_err(|e| invalid(&Origin::Default, e.to_string()))?,
                    ),
                    ..SelectEntry::default()
                }],
            };
            if let Some((re, _)) = src.layered::<Pattern>("exclude_exe_path", None)? {
                exclude.push(SelectEntry {
                    exe_path: Some(re.0),
                    ..SelectEntry::default()
                });
            }
            Selection {
                include,
                exclude,
                default_exclude,
            }
        };

        let naming = export::Naming {
            service_name: src
                .layered::<Text>("service_name", take(file.service_name.take()))?
                .map(|(t, _)| t.0),
            service_namespace: src
                .layered::<Text>("service_namespace", take(file.service_namespace.take()))?
                .map(|(t, _)| t.0),
            command_args: src
                .value(
                    "resource_command_args",
                    file.attributes.process_command_args.clone().map(|v| v.0),
                    Flag(false),
                )?
                .0,
        };

        let raw_db_query_text = src
            .value(
                "raw_db_query_text",
                file.attributes.raw_db_query_text.clone().map(|v| v.0),
                Flag(false),
            )?
            .0;

        let prometheus_port = src
            .value(
                "prometheus_port",
                take(file.prometheus_export.port.clone()),
                ServePort(None),
            )?
            .0;
        let prometheus_address = src
            .value(
                "prometheus_address",
                take(file.prometheus_export.address.clone()),
                Ip(std::net::Ipv4Addr::UNSPECIFIED.into()),
            )?
            .0;
        let prometheus_ttl = src
            .value(
                "prometheus_ttl",
                take(file.prometheus_export.ttl.clone()),
                Millis(std::time::Duration::from_secs(300)),
            )?
            .0;
        let prometheus_features = src.value(
            "prometheus_features",
            take(file.prometheus_export.features.clone()),
            export::Features::default(),
        )?;

        let routes = export::RouteSettings {
            patterns: src
                .value(
                    "route_patterns",
                    take(file.routes.patterns.take()),
                    RouteList(vec![]),
                )?
                .0,
            ignored: src
                .value(
                    "route_ignored",
                    take(file.routes.ignored_patterns.take()),
                    RouteList(vec![]),
                )?
                .0,
            unmatched: src.value(
                "route_unmatched",
                take(file.routes.unmatched.clone()),
                export::UnmatchedRoutes::default(),
            )?,
            max_per_service: usize::try_from(
                src.value(
                    "max_routes",
                    take(file.routes.max_routes.clone()),
                    Ranged::<1, 100_000>(100),
                )?
                .0,
            )
            .unwrap_or(usize::MAX),
        };

        // The generic OTLP endpoint and protocol also have flags.
        let otel_get = |name: &str| -> Option<(String, Origin)> {
            match name {
                "OTEL_EXPORTER_OTLP_ENDPOINT" => src.given("otlp_endpoint"),
                "OTEL_EXPORTER_OTLP_PROTOCOL" => src.given("otlp_protocol"),
                _ => src.var(name).map(|v| (v, Origin::Env(name.to_string()))),
            }
        };
        let (mut otlp, sampler) = otel::resolve(&otel_get, &file, &file_origin)?;
        otlp.metric_interval = src
            .value(
                "metrics_interval",
                take(file.otel_metrics_export.interval.clone()),
                Millis(Duration::from_secs(60)),
            )?
            .0;
        otlp.metric_features = src.value(
            "metrics_features",
            take(file.otel_metrics_export.features.clone()),
            export::Features::default(),
        )?;

        let printer =
            match src.layered::<PrinterMode>("trace_printer", take(file.trace_printer.take()))? {
                Some((p, _)) => p,
                // Show something on a first run; stay quiet when spans or
                // metrics go elsewhere.
                None if prometheus_port.is_none()
                    && otlp.traces.is_none()
                    && otlp.metrics.is_none() =>
                {
                    PrinterMode::Text
                }
                None => PrinterMode::Disabled,
            };
        let log_level = src
            .value(
                "log_level",
                take(file.log_level.take()),
                LogFilter("info".to_string()),
            )?
            .0;

        let capture_bytes = src.value(
            "capture_bytes",
            take(file.ebpf.capture_bytes.clone()),
            Ranged::<64, 8192>(1024),
        )?;
        let syscall_hooks = src.value(
            "syscall_hooks",
            take(file.ebpf.syscall_hooks.clone()),
            HookMode::Socket,
        )?;
        let tls_capture = src
            .value(
                "tls_capture",
                take(file.ebpf.tls_capture.clone()),
                Flag(true),
            )?
            .0;
        let tls_decrypt = src
            .value(
                "tls_decrypt",
                take(file.ebpf.tls_decrypt.clone()),
                Flag(true),
            )?
            .0;
        let context_propagation = src.value(
            "context_propagation",
            take(file.ebpf.context_propagation.clone()),
            ContextPropagation::All,
        )?;
        let ringbuf_mib = src.value(
            "ringbuf_mib",
            take(file.ebpf.ringbuf_mib.clone()),
            Ranged::<1, 1024>(8),
        )?;
        let max_connections = src.value(
            "max_connections",
            take(file.ebpf.max_connections.clone()),
            Ranged::<1, 16_777_216>(65536),
        )?;
        let conn_memory_mib = src.value(
            "conn_memory_mib",
            take(file.ebpf.conn_memory_mib.clone()),
            Ranged::<1, 4096>(16),
        )?;
        let conn_idle_timeout = src
            .value(
                "conn_idle_timeout",
                take(file.ebpf.conn_idle_timeout.clone()),
                Millis(std::time::Duration::from_secs(300)),
            )?
            .0;
        let max_processes = src.value(
            "max_processes",
            take(file.ebpf.max_processes.clone()),
            Ranged::<1, 4_194_304>(16384),
        )?;
        // The ranges above keep these conversions lossless.
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);

        Ok(Config {
            config_file,
            selection,
            printer,
            prometheus: prometheus_port.map(|p| std::net::SocketAddr::new(prometheus_address, p)),
            capture_bytes: small(capture_bytes.0),
            syscall_hooks,
            tls_capture,
            tls_decrypt,
            raw_db_query_text,
            context_propagation,
            ringbuf_bytes: small(ringbuf_mib.0)
                .next_power_of_two()
                .saturating_mul(1 << 20),
            max_connections: usize::try_from(max_connections.0).unwrap_or(usize::MAX),
            conn_budget: crate::conn::Budget {
                max_bytes: usize::try_from(conn_memory_mib.0 << 20).unwrap_or(usize::MAX),
                idle_ns: u64::try_from(conn_idle_timeout.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1_000_000_000),
            },
            max_processes: small(max_processes.0),
            log_level,
            prometheus_features,
            prometheus_ttl,
            naming,
            routes,
            otlp,
            sampler,
        })
    }
}

#[cfg(test)]
mod tests;
