//! Settings: command line, environment (with Beyla/OBI migration aliases),
//! validated into one `Config`. Precedence: flag > RATATOSK_* > alias > default.

// Consumed as the exporters and routes land.
#[allow(dead_code)]
pub mod export;

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use regex::Regex;

/// Zero-code eBPF instrumentation: HTTP spans and RED metrics for the
/// selected processes, without kprobes and without touching them.
///
/// With no selector at all, every process on the host but the agent is
/// instrumented. Selectors combine as a union.
#[derive(Debug, Parser)]
#[command(name = "ratatosk", version, about, long_about = None)]
pub struct Cli {
    /// Instrument processes listening on these TCP ports: a list of ports
    /// and ranges, e.g. `80,443,8000-8100`.
    /// [aliases: BEYLA_OPEN_PORT, OTEL_EBPF_OPEN_PORT]
    #[arg(long, env = "RATATOSK_OPEN_PORT", value_name = "PORTS")]
    pub open_port: Option<String>,

    /// Instrument processes whose executable path matches this regex.
    /// [aliases: BEYLA_EXECUTABLE_NAME, OTEL_EBPF_AUTO_TARGET_EXE]
    #[arg(long, env = "RATATOSK_EXE_PATH", value_name = "REGEX")]
    pub exe_path: Option<String>,

    /// Instrument these process ids (comma-separated), and their children.
    #[arg(long, env = "RATATOSK_PID", value_name = "PIDS", value_delimiter = ',')]
    pub pid: Vec<u32>,

    /// Print each span on stdout: `text`, `json` or `disabled`. Default:
    /// `text` when no other output is configured, else `disabled`.
    /// [aliases: BEYLA_TRACE_PRINTER, OTEL_EBPF_TRACE_PRINTER]
    #[arg(long, env = "RATATOSK_TRACE_PRINTER", value_name = "MODE")]
    pub trace_printer: Option<String>,

    /// Serve Prometheus metrics on this port at /metrics.
    /// [aliases: BEYLA_PROMETHEUS_PORT, OTEL_EBPF_PROMETHEUS_PORT]
    #[arg(long, env = "RATATOSK_PROMETHEUS_PORT", value_name = "PORT")]
    pub prometheus_port: Option<String>,

    /// Address the metrics endpoint binds to.
    #[arg(long, env = "RATATOSK_PROMETHEUS_ADDRESS", default_value = "0.0.0.0")]
    pub prometheus_address: std::net::IpAddr,

    /// Payload bytes captured per socket read/write: enough for the request
    /// line and headers. Larger costs more per request.
    #[arg(long, env = "RATATOSK_CAPTURE_BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(64..=8192))]
    pub capture_bytes: u32,

    /// How socket syscalls are hooked: `raw` (one tp_btf program on
    /// raw_syscalls:sys_exit, entered by every syscall on the host) or
    /// `per-syscall` (one syscalls:sys_exit_* tracepoint per socket syscall;
    /// other syscalls run no BPF, socket syscalls cost more). See
    /// bench/README.md for the measured trade-off.
    #[arg(long, env = "RATATOSK_SYSCALL_HOOKS", value_enum, default_value_t = HookMode::Raw)]
    pub syscall_hooks: HookMode,

    /// Capture TLS plaintext from OpenSSL (libssl.so and executables that
    /// export SSL_read/SSL_write) with uprobes; `false` leaves TLS
    /// connections unparsed and costs nothing per TLS call.
    #[arg(long, env = "RATATOSK_TLS_CAPTURE", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tls_capture: bool,

    /// Size of the kernel-to-agent ring buffer in MiB (power of two).
    #[arg(long, env = "RATATOSK_RINGBUF_MIB", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ringbuf_mib: u32,

    /// Most TCP connections tracked at once; the least recently active are
    /// evicted beyond it (counted).
    #[arg(long, env = "RATATOSK_MAX_CONNECTIONS", default_value_t = 65536)]
    pub max_connections: usize,

    /// Most processes instrumented at once.
    #[arg(long, env = "RATATOSK_MAX_PROCESSES", default_value_t = 16384)]
    pub max_processes: u32,

    /// Log filter (tracing-subscriber syntax), e.g. `info`, `ratatosk=debug`.
    /// [aliases: BEYLA_LOG_LEVEL, OTEL_EBPF_LOG_LEVEL]
    #[arg(long, env = "RATATOSK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Where a value came from, to name it in errors.
#[derive(Debug, Clone)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(n) => write!(f, "--{n}"),
            Origin::Env(n) => write!(f, "${n}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {msg}")]
    Invalid { origin: Origin, msg: String },
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

fn invalid(origin: &Origin, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.clone(),
        msg: msg.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookMode {
    Raw,
    PerSyscall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrinterMode {
    Text,
    Json,
    Disabled,
}

impl FromStr for PrinterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(PrinterMode::Text),
            "json" => Ok(PrinterMode::Json),
            "disabled" | "none" | "off" | "" => Ok(PrinterMode::Disabled),
            other => Err(format!(
                "unknown trace printer `{other}` (expected text, json or disabled)"
            )),
        }
    }
}

/// A set of TCP ports given as ports and ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(Vec<RangeInclusive<u16>>);

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(&port))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for PortSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{}` is not a port (1-65535)", p.trim()))
                .and_then(|n| {
                    if n == 0 {
                        Err("port 0 is not a port".to_string())
                    } else {
                        Ok(n)
                    }
                })
        };
        let mut ranges = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let r = match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if a > b {
                        return Err(format!("range `{}` is backwards", part.trim()));
                    }
                    a..=b
                }
                None => {
                    let p = port(part)?;
                    p..=p
                }
            };
            ranges.push(r);
        }
        if ranges.is_empty() {
            return Err("no port given".to_string());
        }
        Ok(PortSet(ranges))
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Which processes to instrument. Empty means everything but the agent.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub open_ports: PortSet,
    pub exe_path: Option<Regex>,
    pub pids: Vec<u32>,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.open_ports.is_empty() && self.exe_path.is_none() && self.pids.is_empty()
    }
}

/// The validated settings the agent runs with.
#[derive(Debug, Clone)]
#[allow(dead_code)] // until the exporters and routes consume the new fields
pub struct Config {
    pub selection: Selection,
    pub printer: PrinterMode,
    pub prometheus: Option<std::net::SocketAddr>,
    pub capture_bytes: u32,
    pub syscall_hooks: HookMode,
    pub tls_capture: bool,
    pub ringbuf_bytes: u32,
    pub max_connections: usize,
    pub max_processes: u32,
    pub log_level: String,
    pub prometheus_features: export::Features,
    pub naming: export::Naming,
    pub routes: export::RouteSettings,
    pub otlp: export::OtlpSettings,
    pub sampler: export::Sampler,
}

/// Migration aliases: for a setting, the environment names read when
/// neither the flag nor the RATATOSK_* variable is set, in order.
const ALIASES: &[(&str, &[&str])] = &[
    ("open_port", &["BEYLA_OPEN_PORT", "OTEL_EBPF_OPEN_PORT"]),
    (
        "exe_path",
        &["BEYLA_EXECUTABLE_NAME", "OTEL_EBPF_AUTO_TARGET_EXE"],
    ),
    (
        "trace_printer",
        &["BEYLA_TRACE_PRINTER", "OTEL_EBPF_TRACE_PRINTER"],
    ),
    (
        "prometheus_port",
        &["BEYLA_PROMETHEUS_PORT", "OTEL_EBPF_PROMETHEUS_PORT"],
    ),
    ("log_level", &["BEYLA_LOG_LEVEL", "OTEL_EBPF_LOG_LEVEL"]),
];

const PRIMARY_ENV: &[(&str, &str)] = &[
    ("open_port", "RATATOSK_OPEN_PORT"),
    ("exe_path", "RATATOSK_EXE_PATH"),
    ("trace_printer", "RATATOSK_TRACE_PRINTER"),
    ("prometheus_port", "RATATOSK_PROMETHEUS_PORT"),
    ("log_level", "RATATOSK_LOG_LEVEL"),
];

impl Config {
    /// Parses the process's arguments and environment.
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        let matches = Cli::command().try_get_matches()?;
        let env = |name: &str| std::env::var(name).ok();
        Config::from_matches(&matches, &env)
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
        // clap reads `env = …` from the real environment; tests pass their
        // own, so the RATATOSK_* variables are applied here like aliases.
        let matches = Cli::command()
            .ignore_errors(false)
            .try_get_matches_from(args)?;
        Config::from_matches(&matches, env)
    }

    fn from_matches(
        m: &ArgMatches,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let cli = Cli::from_arg_matches(m)?;
        // Resolve a string setting and where it came from.
        let pick = |id: &'static str, from_cli: Option<String>| -> Option<(String, Origin)> {
            let flag_name: &'static str = match id {
                "open_port" => "open-port",
                "exe_path" => "exe-path",
                "trace_printer" => "trace-printer",
                "prometheus_port" => "prometheus-port",
                _ => "log-level",
            };
            let primary = PRIMARY_ENV.iter().find(|(k, _)| *k == id).map(|(_, v)| *v);
            match m.value_source(id) {
                Some(ValueSource::CommandLine) => {
                    return from_cli.map(|v| (v, Origin::Flag(flag_name)));
                }
                Some(ValueSource::EnvVariable) => {
                    return from_cli.map(|v| (v, Origin::Env(primary.unwrap_or(""))));
                }
                _ => {}
            }
            if let Some(p) = primary
                && let Some(v) = env(p)
            {
                return Some((v, Origin::Env(p)));
            }
            let aliases = ALIASES
                .iter()
                .find(|(k, _)| *k == id)
                .map(|(_, a)| *a)
                .unwrap_or(&[]);
            for a in aliases {
                if let Some(v) = env(a) {
                    return Some((v, Origin::Env(a)));
                }
            }
            from_cli.map(|v| (v, Origin::Default))
        };

        let open_ports = match pick("open_port", cli.open_port.clone()) {
            Some((v, o)) => v.parse::<PortSet>().map_err(|e| invalid(&o, e))?,
            None => PortSet::default(),
        };
        let exe_path = match pick("exe_path", cli.exe_path.clone()) {
            Some((v, o)) if !v.is_empty() => {
                Some(Regex::new(&v).map_err(|e| invalid(&o, format!("bad regex: {e}")))?)
            }
            _ => None,
        };
        let prometheus_port = match pick("prometheus_port", cli.prometheus_port.clone()) {
            Some((v, o)) => {
                let p = v
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| invalid(&o, format!("`{v}` is not a port (1-65535)")))?;
                (p != 0).then_some(p)
            }
            None => None,
        };
        let printer = match pick("trace_printer", cli.trace_printer.clone()) {
            Some((v, o)) => v.parse::<PrinterMode>().map_err(|e| invalid(&o, e))?,
            // Show something on a first run; stay quiet when metrics go elsewhere.
            None if prometheus_port.is_none() => PrinterMode::Text,
            None => PrinterMode::Disabled,
        };
        let log_level = pick("log_level", Some(cli.log_level.clone()))
            .map(|(v, _)| v.to_ascii_lowercase())
            .unwrap_or_else(|| "info".to_string());
        if cli.pid.contains(&0) {
            return Err(invalid(&Origin::Flag("pid"), "pid 0 is not a process"));
        }
        if cli.max_connections == 0 {
            return Err(invalid(
                &Origin::Flag("max-connections"),
                "must be at least 1",
            ));
        }
        Ok(Config {
            selection: Selection {
                open_ports,
                exe_path,
                pids: cli.pid.clone(),
            },
            printer,
            prometheus: prometheus_port
                .map(|p| std::net::SocketAddr::new(cli.prometheus_address, p)),
            capture_bytes: cli.capture_bytes,
            syscall_hooks: cli.syscall_hooks,
            tls_capture: cli.tls_capture,
            ringbuf_bytes: cli.ringbuf_mib.next_power_of_two().saturating_mul(1 << 20),
            max_connections: cli.max_connections,
            max_processes: cli.max_processes.max(1),
            log_level,
            prometheus_features: export::Features::default(),
            naming: export::Naming::default(),
            routes: export::RouteSettings::default(),
            otlp: export::OtlpSettings::default(),
            sampler: export::Sampler::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv = vec!["ratatosk"];
        argv.extend_from_slice(args);
        Config::from_args_with_env(argv, &|k| env.get(k).cloned())
    }

    #[test]
    fn port_sets() {
        let p: PortSet = "80,8000-8100, 443".parse().unwrap();
        assert!(p.contains(80) && p.contains(8050) && p.contains(443));
        assert!(!p.contains(81) && !p.contains(8101));
        assert_eq!(p.to_string(), "80,8000-8100,443");
        assert!("8100-8000".parse::<PortSet>().is_err());
        assert!("http".parse::<PortSet>().is_err());
        assert!("0".parse::<PortSet>().is_err());
        assert!("70000".parse::<PortSet>().is_err());
        assert!("".parse::<PortSet>().is_err());
    }

    #[test]
    fn no_selector_means_everything_and_text_printer() {
        let c = parse(&[], &[]).unwrap();
        assert!(c.selection.is_everything());
        assert_eq!(c.printer, PrinterMode::Text);
        assert!(c.prometheus.is_none());
    }

    #[test]
    fn prometheus_alone_silences_printer() {
        let c = parse(&["--prometheus-port", "9400"], &[]).unwrap();
        assert_eq!(c.printer, PrinterMode::Disabled);
        assert_eq!(c.prometheus.unwrap().port(), 9400);
    }

    #[test]
    fn beyla_and_obi_aliases() {
        let c = parse(
            &[],
            &[
                ("BEYLA_OPEN_PORT", "8080"),
                ("BEYLA_EXECUTABLE_NAME", "nginx"),
                ("BEYLA_TRACE_PRINTER", "json"),
                ("BEYLA_PROMETHEUS_PORT", "9999"),
            ],
        )
        .unwrap();
        assert!(c.selection.open_ports.contains(8080));
        assert!(c.selection.exe_path.unwrap().is_match("/usr/sbin/nginx"));
        assert_eq!(c.printer, PrinterMode::Json);
        assert_eq!(c.prometheus.unwrap().port(), 9999);

        let c = parse(
            &[],
            &[
                ("OTEL_EBPF_OPEN_PORT", "1-2"),
                ("OTEL_EBPF_AUTO_TARGET_EXE", "x"),
                ("OTEL_EBPF_TRACE_PRINTER", "disabled"),
                ("OTEL_EBPF_PROMETHEUS_PORT", "9"),
            ],
        )
        .unwrap();
        assert!(c.selection.open_ports.contains(2));
        assert_eq!(c.printer, PrinterMode::Disabled);
        assert_eq!(c.prometheus.unwrap().port(), 9);
    }

    #[test]
    fn precedence_flag_then_ratatosk_then_alias() {
        let env = [("RATATOSK_OPEN_PORT", "2000"), ("BEYLA_OPEN_PORT", "3000")];
        let c = parse(&["--open-port", "1000"], &env).unwrap();
        assert!(c.selection.open_ports.contains(1000) && !c.selection.open_ports.contains(2000));
        let c = parse(&[], &env).unwrap();
        assert!(c.selection.open_ports.contains(2000) && !c.selection.open_ports.contains(3000));
        let c = parse(&[], &env[1..]).unwrap();
        assert!(c.selection.open_ports.contains(3000));
    }

    #[test]
    fn errors_name_their_source() {
        let e = parse(&[], &[("BEYLA_OPEN_PORT", "eighty")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("$BEYLA_OPEN_PORT") && e.contains("eighty"),
            "{e}"
        );
        let e = parse(&["--exe-path", "(unclosed"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--exe-path") && e.contains("regex"), "{e}");
        let e = parse(&["--trace-printer", "fancy"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("fancy"), "{e}");
        assert!(parse(&["--capture-bytes", "9"], &[]).is_err());
    }
}
