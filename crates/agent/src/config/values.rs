//! Value types of settings, parsed the same way from a flag, a variable or
//! the file: each is `FromStr` with a message naming what was expected, and
//! `Val<T>` deserializes any of them from YAML so a bad value is refused
//! with its line and column.

use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::export::{Features, UnmatchedRoutes};

/// A YAML scalar (string, number or bool) parsed with `T::from_str`; for
/// list-valued settings also a sequence of scalars (joined with commas).
#[derive(Debug, Clone, PartialEq)]
pub struct Val<T>(pub T);

/// A setting's value type. `LIST`: its text form is a comma-separated list,
/// so a YAML sequence is accepted for it (a sequence given for any other
/// setting is refused at its position, not joined into one odd value).
pub trait Setting: FromStr<Err = String> {
    const LIST: bool = false;
}

macro_rules! settings {
    (list: $($l:ty),*; scalar: $($s:ty),* $(,)?) => {
        $(impl Setting for $l { const LIST: bool = true; })*
        $(impl Setting for $s {})*
    };
}

settings!(
    list: PortSet, Pids, Features, RouteList;
    scalar: Pattern, Glob, ServePort, Ip, Flag, Text, LogFilter, Millis, HookMode, PrinterMode,
    ContextPropagation,
    UnmatchedRoutes, super::otel::Endpoint, super::otel::Protocol,
    super::otel::CompressionName, super::otel::SamplerName, super::otel::Ratio,
);

impl<const LO: u64, const HI: u64> Setting for Ranged<LO, HI> {}

impl<'de, T> Deserialize<'de> for Val<T>
where
    T: Setting,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Setting> V<T> {
            fn parse<E: de::Error>(s: &str) -> Result<Val<T>, E> {
                s.parse::<T>().map(Val).map_err(E::custom)
            }
        }
        impl<'de, T: Setting> Visitor<'de> for V<T> {
            type Value = Val<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Val<T>, E> {
                Self::parse(s)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Val<T>, E> {
                Self::parse(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Val<T>, E> {
                Self::parse(&n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Val<T>, E> {
                Self::parse(&n.to_string())
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Val<T>, E> {
                Self::parse(if b { "true" } else { "false" })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<T>, A::Error> {
                if !T::LIST {
                    return Err(de::Error::custom(
                        "expected a single value here, not a list",
                    ));
                }
                let mut parts = Vec::new();
                while let Some(Scalar(s)) = seq.next_element::<Scalar>()? {
                    parts.push(s);
                }
                Self::parse(&parts.join(","))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// One scalar of a list, as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
        }
        d.deserialize_any(V)
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

/// A regular expression (unanchored, as Beyla's).
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty regex".to_string());
        }
        Regex::new(s)
            .map(Pattern)
            .map_err(|e| format!("bad regex `{s}`: {}", one_line(&e.to_string())))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Process ids, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pids(pub Vec<u32>);

impl FromStr for Pids {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u32>() {
                Ok(0) => return Err("pid 0 is not a process".to_string()),
                Ok(n) => out.push(n),
                Err(_) => return Err(format!("`{p}` is not a process id")),
            }
        }
        if out.is_empty() {
            return Err("no process id given".to_string());
        }
        Ok(Pids(out))
    }
}

/// An integer within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranged<const LO: u64, const HI: u64>(pub u64);

impl<const LO: u64, const HI: u64> FromStr for Ranged<LO, HI> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<u64>() {
            Ok(n) if (LO..=HI).contains(&n) => Ok(Ranged(n)),
            _ => Err(format!("`{s}` is not a whole number in {LO}-{HI}")),
        }
    }
}

/// A TCP port to serve on; 0 means off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServePort(pub Option<u16>);

impl FromStr for ServePort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p = s
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port (1-65535, 0 to disable)"))?;
        Ok(ServePort((p != 0).then_some(p)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub std::net::IpAddr);

impl FromStr for Ip {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map(Ip)
            .map_err(|_| format!("`{s}` is not an IP address"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl FromStr for Flag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Flag(true)),
            "false" | "0" | "no" | "off" => Ok(Flag(false)),
            _ => Err(format!("`{s}` is not a boolean (true or false)")),
        }
    }
}

/// A non-empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl FromStr for Text {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty value".to_string());
        }
        Ok(Text(t.to_string()))
    }
}

/// A glob over the whole executable path, as Beyla 2.x's
/// `discovery.instrument[].exe_path` (see `glob_to_regex`).
#[derive(Debug, Clone)]
pub struct Glob(pub Regex);

impl FromStr for Glob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("empty glob".to_string());
        }
        Regex::new(&super::glob_to_regex(s))
            .map(Glob)
            .map_err(|_| format!("bad glob `{s}` (unbalanced `{{`?)"))
    }
}

/// A log filter in tracing-subscriber's syntax, lowercased. Every directive
/// must name a level: the syntax also reads a bare word as a target to
/// enable, so `verbose` would silently turn every log line off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

const LEVELS: &str = "trace, debug, info, warn, error or off";

fn is_level(s: &str) -> bool {
    matches!(
        s,
        "trace" | "debug" | "info" | "warn" | "error" | "off" | "0" | "1" | "2" | "3" | "4" | "5"
    )
}

impl FromStr for LogFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        if t.is_empty() {
            return Err(format!("empty log filter: give a level ({LEVELS})"));
        }
        for d in t.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            // `target[span{field=value}]` alone: a span directive, at every
            // level; its syntax is checked below.
            if d.ends_with(']') {
                continue;
            }
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
            if !is_level(level) {
                return Err(if d.contains('=') {
                    format!("`{level}` in `{d}` is not a level ({LEVELS})")
                } else {
                    format!("`{d}` is not a level ({LEVELS}) nor a `target=level` directive")
                });
            }
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(&t)
            .map_err(|e| format!("bad log filter `{t}`: {}", one_line(&e.to_string())))?;
        Ok(LogFilter(t))
    }
}

/// A duration: `30s`, `500ms`, `1m`, `1h`, or a bare number of
/// milliseconds (the unit of the OTEL_* variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad =
            || format!("`{s}` is not a duration (e.g. `30s`, `500ms`, `1m`, or milliseconds)");
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "" | "ms" => Some(n),
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => None,
        }
        .ok_or_else(bad)?;
        if ms == 0 {
            return Err(format!("`{s}`: the duration must be positive"));
        }
        Ok(Millis(Duration::from_millis(ms)))
    }
}

/// Names a list of values for messages: `a`, `b` or `c`.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMode {
    Raw,
    PerSyscall,
    Socket,
}

impl FromStr for HookMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raw" => Ok(HookMode::Raw),
            "per-syscall" | "per_syscall" => Ok(HookMode::PerSyscall),
            "socket" => Ok(HookMode::Socket),
            _ => Err(format!(
                "unknown syscall hook mode `{s}` (expected {})",
                one_of(&["raw", "per-syscall", "socket"])
            )),
        }
    }
}

/// Beyla's `context_propagation`: `all` and `headers` link spans on this
/// host and insert `traceparent` into outgoing plaintext HTTP/1 requests
/// (both the same here: headers are the only carrier), `disabled` does
/// neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextPropagation {
    All,
    Headers,
    Disabled,
}

impl ContextPropagation {
    pub fn links(self) -> bool {
        self != ContextPropagation::Disabled
    }

    /// Whether `traceparent` is inserted into outgoing requests.
    pub fn injects(self) -> bool {
        self != ContextPropagation::Disabled
    }
}

impl FromStr for ContextPropagation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(ContextPropagation::All),
            "headers" => Ok(ContextPropagation::Headers),
            "disabled" => Ok(ContextPropagation::Disabled),
            other => Err(format!(
                "unknown context propagation mode `{other}` (expected {})",
                one_of(&["all", "headers", "disabled"])
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
                "unknown trace printer `{other}` (expected {})",
                one_of(&["text", "json", "disabled"])
            )),
        }
    }
}

const FEATURES: &[&str] = &[
    "application",
    "application_span",
    "application_service_graph",
];

impl FromStr for Features {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut f = Features {
            application: false,
            application_span: false,
            application_service_graph: false,
        };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "application" => f.application = true,
                "application_span" => f.application_span = true,
                "application_service_graph" => f.application_service_graph = true,
                "*" | "all" => {
                    f.application = true;
                    f.application_span = true;
                    f.application_service_graph = true;
                }
                _ => {
                    return Err(format!(
                        "unknown metric feature `{name}` (expected {})",
                        one_of(FEATURES)
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl FromStr for UnmatchedRoutes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "heuristic" => Ok(UnmatchedRoutes::Heuristic),
            "path" => Ok(UnmatchedRoutes::Path),
            "wildcard" => Ok(UnmatchedRoutes::Wildcard),
            _ => Err(format!(
                "unknown unmatched-route mode `{s}` (expected {})",
                one_of(&["heuristic", "path", "wildcard"])
            )),
        }
    }
}

/// A route pattern: an absolute path with `{name}`, `:name` or `*` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern(pub String);

impl FromStr for RoutePattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.len() > 1024 {
            return Err("route pattern longer than 1024 bytes".to_string());
        }
        // The route table's own parser: whatever it would refuse at start
        // is refused here, where the error can name its origin.
        crate::spans::route::Pattern::parse(t).map_err(|e| e.to_string())?;
        Ok(RoutePattern(t.to_string()))
    }
}

/// Route patterns, comma-separated on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteList(pub Vec<String>);

impl FromStr for RouteList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.parse::<RoutePattern>().map(|r| r.0))
            .collect::<Result<Vec<_>, _>>()
            .map(RouteList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn durations() {
        let ms = |s: &str| s.parse::<Millis>().map(|m| m.0.as_millis());
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1500"), Ok(1500));
        assert!(ms("0").is_err() && ms("soon").is_err() && ms("5d").is_err());
    }

    #[test]
    fn features_and_modes() {
        let f: Features = "application, application_span".parse().unwrap();
        assert!(f.application && f.application_span && !f.application_service_graph);
        let e = "network".parse::<Features>().unwrap_err();
        assert!(
            e.contains("network") && e.contains("`application_service_graph`"),
            "{e}"
        );
        assert_eq!("Path".parse::<UnmatchedRoutes>(), Ok(UnmatchedRoutes::Path));
        assert!("low-cardinality".parse::<UnmatchedRoutes>().is_err());
        assert_eq!("per-syscall".parse::<HookMode>(), Ok(HookMode::PerSyscall));
        assert_eq!(
            "/a/{id},/b/:x".parse::<RouteList>().unwrap().0,
            vec!["/a/{id}", "/b/:x"]
        );
        assert!("a/b".parse::<RouteList>().is_err());
        assert_eq!("1,2".parse::<Pids>(), Ok(Pids(vec![1, 2])));
        assert!("0".parse::<Pids>().is_err());
        assert!("9".parse::<Ranged<64, 8192>>().is_err());
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
