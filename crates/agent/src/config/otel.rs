//! The standard OpenTelemetry SDK variables (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_*_EXPORTER`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER*`), resolved over
//! the file's `otel_traces_export` / `otel_metrics_export` sections into
//! `OtlpSettings` and `Sampler`. A pure function of a variable lookup.

use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::export::{BatchSettings, Compression, OtlpProtocol, OtlpSettings, OtlpSignal, Sampler};
use super::file::{FileConfig, SamplerFile};
use super::values::{Millis, Ranged, Val, one_of};
use super::{ConfigError, Origin, invalid};

/// Largest span queue or batch accepted.
pub const MAX_QUEUE: u64 = 1 << 20;
const MAX_HEADERS: usize = 64;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Looks a variable up (or the flag standing for it), with its origin.
/// Empty values count as unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<(String, Origin)>;

/// An OTLP endpoint URL: `http://` or `https://`, a host, an optional
/// port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub String);

impl Endpoint {
    fn port(&self) -> Option<u16> {
        let rest = self.0.split_once("://").map(|(_, r)| r).unwrap_or("");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(authority);
        let after_host = match hostport.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map(|(_, p)| p).unwrap_or(""),
            None => hostport.split_once(':').map(|(_, p)| p).unwrap_or(""),
        };
        let after_host = after_host.strip_prefix(':').unwrap_or(after_host);
        after_host.parse().ok()
    }

    /// With a signal path appended, as the spec does for a generic endpoint.
    fn with_path(&self, path: &str) -> String {
        format!("{}{path}", self.0.trim_end_matches('/'))
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = |why: &str| format!("`{t}` is not an OTLP endpoint URL: {why}");
        let (scheme, rest) = t
            .split_once("://")
            .ok_or_else(|| bad("expected http://host[:port] or https://host[:port]"))?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(bad("credentials belong in headers, not in the URL"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, p) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
                (h, p.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
            return Err(bad("no host"));
        }
        if let Some(p) = port
            && !matches!(p.parse::<u16>(), Ok(n) if n != 0)
        {
            return Err(bad("bad port"));
        }
        if t.chars().any(char::is_whitespace) {
            return Err(bad("spaces in the URL"));
        }
        // The transports match the scheme in lower case.
        Ok(Endpoint(format!(
            "{}://{rest}",
            scheme.to_ascii_lowercase()
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol(pub OtlpProtocol);

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol(OtlpProtocol::Grpc)),
            "http/protobuf" => Ok(Protocol(OtlpProtocol::HttpProtobuf)),
            "http/json" => Err(
                "OTLP protocol `http/json` is not supported (use `grpc` or `http/protobuf`)"
                    .to_string(),
            ),
            _ => Err(format!(
                "unknown OTLP protocol `{s}` (expected {})",
                one_of(&["grpc", "http/protobuf"])
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionName(pub Compression);

impl FromStr for CompressionName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" => Ok(CompressionName(Compression::Gzip)),
            "none" | "" => Ok(CompressionName(Compression::None)),
            _ => Err(format!(
                "unknown compression `{s}` (expected {})",
                one_of(&["gzip", "none"])
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerName {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio,
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio,
}

const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl FromStr for SamplerName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "always_on" => SamplerName::AlwaysOn,
            "always_off" => SamplerName::AlwaysOff,
            "traceidratio" => SamplerName::TraceIdRatio,
            "parentbased_always_on" => SamplerName::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerName::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerName::ParentBasedTraceIdRatio,
            _ => {
                return Err(format!(
                    "unknown sampler `{s}` (expected {})",
                    one_of(SAMPLERS)
                ));
            }
        })
    }
}

/// A sampling ratio in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl FromStr for Ratio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(Ratio(r)),
            _ => Err(format!("sampler ratio `{s}` is not a number in [0, 1]")),
        }
    }
}

fn sampler(name: SamplerName, ratio: Option<Ratio>) -> Sampler {
    let r = ratio.map_or(1.0, |r| r.0);
    match name {
        SamplerName::AlwaysOn => Sampler::AlwaysOn,
        SamplerName::AlwaysOff => Sampler::AlwaysOff,
        SamplerName::TraceIdRatio => Sampler::TraceIdRatio(r),
        SamplerName::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerName::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerName::ParentBasedTraceIdRatio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(r)))
        }
    }
}

/// `k=v,k2=v2` with percent-encoded values (W3C baggage style, as the spec
/// asks of `OTEL_EXPORTER_OTLP_HEADERS`). Errors name a header by its
/// position, or by its name once that is valid, never by text from a
/// malformed entry: that text is often a credential (`Bearer …`).
pub fn parse_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, item) in s
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .enumerate()
    {
        let n = n + 1;
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("header {n} of the list is not key=value"))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!(
                "header {n} of the list has no valid name before `=` (a token without spaces or `:`)"
            ));
        }
        let v = percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of header `{k}` is not UTF-8 once decoded"))?;
        if v.chars().any(|c| c == '\r' || c == '\n') {
            return Err(format!("the value of header `{k}` has a line break"));
        }
        out.push((k.to_ascii_lowercase(), v.into_owned()));
        if out.len() > MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} headers"));
        }
    }
    Ok(out)
}

/// `otlp` or `none` (`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`).
fn exporter_enabled(s: &str) -> Result<bool, String> {
    let names: Vec<String> = s
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for n in &names {
        if n != "otlp" && n != "none" {
            return Err(format!(
                "exporter `{n}` is not supported (expected {}; Prometheus is --prometheus-port)",
                one_of(&["otlp", "none"])
            ));
        }
    }
    let none = names.iter().any(|n| n == "none");
    if none && names.len() > 1 {
        return Err("`none` cannot be combined with another exporter".to_string());
    }
    Ok(!none)
}

/// Parses a looked-up value, naming its origin on failure.
fn get_parsed<T: FromStr<Err = String>>(
    get: Lookup,
    name: &str,
) -> Result<Option<(T, Origin)>, ConfigError> {
    match get(name) {
        Some((v, o)) => match v.parse::<T>() {
            Ok(t) => Ok(Some((t, o))),
            Err(m) => Err(invalid(&o, m)),
        },
        None => Ok(None),
    }
}

fn from_flag(o: &Origin) -> bool {
    matches!(o, Origin::Flag(_))
}

fn file_val<T: Clone>(v: &Option<Val<T>>) -> Option<T> {
    v.as_ref().map(|v| v.0.clone())
}

/// The file's settings of one signal.
struct SignalFile<'a> {
    endpoint: Option<Endpoint>,
    protocol: Option<Protocol>,
    headers: Option<&'a std::collections::BTreeMap<String, String>>,
    timeout: Option<Millis>,
    compression: Option<CompressionName>,
}

fn signal(
    get: Lookup,
    upper: &str,
    path: &str,
    file: SignalFile,
) -> Result<Option<OtlpSignal>, ConfigError> {
    if let Some((v, o)) = get(&format!("OTEL_{upper}_EXPORTER"))
        && !exporter_enabled(&v).map_err(|m| invalid(&o, m))?
    {
        return Ok(None);
    }
    let specific = format!("OTEL_EXPORTER_OTLP_{upper}_");
    let generic = "OTEL_EXPORTER_OTLP_";
    enum Kind {
        Specific,
        Generic,
        File,
    }
    // The generic lookup also carries `--otlp-endpoint`/`--otlp-protocol`:
    // a flag beats every variable, the per-signal one included.
    let generic_endpoint = get_parsed::<Endpoint>(get, &format!("{generic}ENDPOINT"))?;
    let endpoint = match generic_endpoint {
        Some((e, o)) if from_flag(&o) => Some((e, Kind::Generic)),
        generic_endpoint => match get_parsed::<Endpoint>(get, &format!("{specific}ENDPOINT"))? {
            Some((e, _)) => Some((e, Kind::Specific)),
            None => match generic_endpoint {
                Some((e, _)) => Some((e, Kind::Generic)),
                None => file.endpoint.map(|e| (e, Kind::File)),
            },
        },
    };
    let Some((endpoint, kind)) = endpoint else {
        return Ok(None);
    };
    let generic_protocol = get_parsed::<Protocol>(get, &format!("{generic}PROTOCOL"))?;
    let specific_protocol = match &generic_protocol {
        Some((_, o)) if from_flag(o) => None,
        _ => get_parsed::<Protocol>(get, &format!("{specific}PROTOCOL"))?,
    };
    let protocol = match specific_protocol {
        Some((p, _)) => p.0,
        None => match generic_protocol {
            Some((p, _)) => p.0,
            // Beyla's inference: nobody said, and 4317 is the gRPC port.
            None => match file.protocol {
                Some(p) => p.0,
                None if endpoint.port() == Some(4317) => OtlpProtocol::Grpc,
                None => OtlpProtocol::HttpProtobuf,
            },
        },
    };
    let url = match (protocol, kind) {
        (OtlpProtocol::Grpc, _) | (_, Kind::Specific) => endpoint.0.clone(),
        (OtlpProtocol::HttpProtobuf, Kind::Generic) => endpoint.with_path(path),
        // Beyla's file `endpoint` is a generic one; tolerate a full URL.
        (OtlpProtocol::HttpProtobuf, Kind::File) => {
            if endpoint.0.trim_end_matches('/').ends_with(path) {
                endpoint.0.clone()
            } else {
                endpoint.with_path(path)
            }
        }
    };
    let headers =
        match get(&format!("{specific}HEADERS")).or_else(|| get("OTEL_EXPORTER_OTLP_HEADERS")) {
            Some((v, o)) => parse_headers(&v).map_err(|m| invalid(&o, m))?,
            None => file
                .headers
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
    let timeout = match get_parsed::<Millis>(get, &format!("{specific}TIMEOUT"))? {
        Some((t, _)) => t.0,
        None => match get_parsed::<Millis>(get, &format!("{generic}TIMEOUT"))? {
            Some((t, _)) => t.0,
            None => file.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        },
    };
    let compression = match get_parsed::<CompressionName>(get, &format!("{specific}COMPRESSION"))? {
        Some((c, _)) => c.0,
        None => match get_parsed::<CompressionName>(get, &format!("{generic}COMPRESSION"))? {
            Some((c, _)) => c.0,
            None => file.compression.map_or(Compression::None, |c| c.0),
        },
    };
    Ok(Some(OtlpSignal {
        endpoint: url,
        protocol,
        headers,
        timeout,
        compression,
    }))
}

/// Resolves the OTLP exporters and the sampler. `file_origin` names the
/// file for the few checks that span several of its values.
pub fn resolve(
    get: Lookup,
    file: &FileConfig,
    file_origin: &Origin,
) -> Result<(OtlpSettings, Sampler), ConfigError> {
    let t = &file.otel_traces_export;
    let m = &file.otel_metrics_export;
    let traces = signal(
        get,
        "TRACES",
        "/v1/traces",
        SignalFile {
            endpoint: file_val(&t.endpoint),
            protocol: file_val(&t.protocol),
            headers: t.headers.as_ref(),
            timeout: file_val(&t.timeout),
            compression: file_val(&t.compression),
        },
    )?;
    let metrics = signal(
        get,
        "METRICS",
        "/v1/metrics",
        SignalFile {
            endpoint: file_val(&m.endpoint),
            protocol: file_val(&m.protocol),
            headers: m.headers.as_ref(),
            timeout: file_val(&m.timeout),
            compression: file_val(&m.compression),
        },
    )?;

    let d = BatchSettings::default();
    type Size = Ranged<1, MAX_QUEUE>;
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let (max_queue_size, queue_origin) = match get_parsed::<Size>(get, "OTEL_BSP_MAX_QUEUE_SIZE")? {
        Some((n, o)) => (size(n.0), o),
        None => match &t.queue_size {
            Some(n) => (size(n.0.0), file_origin.clone()),
            None => (d.max_queue_size, Origin::Default),
        },
    };
    let (max_export_batch_size, batch_origin) =
        match get_parsed::<Size>(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
            Some((n, o)) => (size(n.0), o),
            None => match &t.batch_max_size {
                Some(n) => (size(n.0.0), file_origin.clone()),
                None => (d.max_export_batch_size.min(max_queue_size), Origin::Default),
            },
        };
    if max_export_batch_size > max_queue_size {
        return Err(invalid(
            &batch_origin,
            format!(
                "the export batch ({max_export_batch_size}) is larger than the queue ({max_queue_size}, from {queue_origin})"
            ),
        ));
    }
    let schedule_delay = match get_parsed::<Millis>(get, "OTEL_BSP_SCHEDULE_DELAY")? {
        Some((v, _)) => v.0,
        None => t.batch_timeout.as_ref().map_or(d.schedule_delay, |v| v.0.0),
    };

    let sampler = resolve_sampler(get, t.sampler.as_ref())?;
    Ok((
        OtlpSettings {
            traces,
            metrics,
            batch: BatchSettings {
                max_queue_size,
                max_export_batch_size,
                schedule_delay,
            },
            ..OtlpSettings::default()
        },
        sampler,
    ))
}

fn resolve_sampler(get: Lookup, file: Option<&SamplerFile>) -> Result<Sampler, ConfigError> {
    let name = match get_parsed::<SamplerName>(get, "OTEL_TRACES_SAMPLER")? {
        Some((n, _)) => Some(n),
        None => file.and_then(|f| f.name.as_ref()).map(|n| n.0),
    };
    let ratio = match get_parsed::<Ratio>(get, "OTEL_TRACES_SAMPLER_ARG")? {
        Some((r, _)) => Some(r),
        None => file.and_then(|f| f.arg.as_ref()).map(|r| r.0),
    };
    Ok(match name {
        Some(n) => sampler(n, ratio),
        None => Sampler::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], file: &str) -> Result<(OtlpSettings, Sampler), String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .filter(|v| !v.is_empty())
                .map(|v| (v.clone(), Origin::Env(k.to_string())))
        };
        let file = super::super::file::parse("f.yaml", file).map_err(|e| e.to_string())?;
        resolve(&get, &file, &Origin::File("f.yaml".into())).map_err(|e| e.to_string())
    }

    fn ok(vars: &[(&str, &str)]) -> OtlpSettings {
        run(vars, "").unwrap().0
    }

    #[test]
    fn nothing_set_means_no_export() {
        let s = ok(&[]);
        assert!(s.traces.is_none() && s.metrics.is_none());
        assert_eq!(s.batch, BatchSettings::default());
        assert_eq!(run(&[], "").unwrap().1, Sampler::default());
    }

    #[test]
    fn generic_endpoint_gets_signal_paths_for_http() {
        let s = ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]);
        let t = s.traces.unwrap();
        assert_eq!(t.endpoint, "http://c:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert_eq!(s.metrics.unwrap().endpoint, "http://c:4318/v1/metrics");
        let s = ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c/otlp")]);
        assert_eq!(s.traces.unwrap().endpoint, "https://c/otlp/v1/traces");
    }

    #[test]
    fn per_signal_endpoint_is_used_as_is() {
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9999/custom"),
        ]);
        assert_eq!(s.traces.unwrap().endpoint, "http://t:9999/custom");
        assert_eq!(
            s.metrics.unwrap().endpoint,
            "http://generic:4318/v1/metrics"
        );
        let s = ok(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318")]);
        assert!(s.traces.is_none());
        assert_eq!(s.metrics.unwrap().endpoint, "http://m:4318");
    }

    #[test]
    fn protocol_inference_and_grpc_endpoints() {
        let s = ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        let t = s.traces.unwrap();
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.endpoint, "http://c:4317");
        // An explicit protocol wins over the inference.
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(s.traces.unwrap().endpoint, "http://c:4317/v1/traces");
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ]);
        assert_eq!(s.metrics.unwrap().protocol, OtlpProtocol::Grpc);
        assert_eq!(s.traces.unwrap().protocol, OtlpProtocol::HttpProtobuf);
        let e = run(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("$OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("not supported"),
            "{e}"
        );
    }

    #[test]
    fn bad_endpoints_name_the_variable() {
        for bad in [
            "c:4318",
            "ftp://c",
            "http://",
            "http://c:0",
            "http://c:http",
        ] {
            let e = run(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)], "").unwrap_err();
            assert!(
                e.starts_with("$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "),
                "{bad}: {e}"
            );
        }
        assert!(
            ok(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318")])
                .traces
                .is_some()
        );
    }

    #[test]
    fn headers_are_percent_decoded_and_per_signal_wins() {
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20abc%3D, x-tenant = t1",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-m=1"),
        ]);
        assert_eq!(
            s.traces.unwrap().headers,
            vec![
                ("authorization".to_string(), "Basic abc=".to_string()),
                ("x-tenant".to_string(), "t1".to_string())
            ]
        );
        assert_eq!(s.metrics.unwrap().headers, vec![("x-m".into(), "1".into())]);
        let e = run(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ],
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("$OTEL_EXPORTER_OTLP_HEADERS") && e.contains("key=value"),
            "{e}"
        );
        // A malformed value is never echoed: it is usually a credential.
        for bad in [
            "Authorization Bearer s3cr3tT0ken",
            "Authorization: Bearer s3cr3tT0ken=x",
            "x-ok=1,s3cr3tT0ken",
            "x-ok=%FFs3cr3tT0ken",
        ] {
            let e = run(
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", bad),
                ],
                "",
            )
            .unwrap_err();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn timeout_compression_and_batch() {
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ]);
        let (t, m) = (s.traces.unwrap(), s.metrics.unwrap());
        assert_eq!(t.timeout, Duration::from_millis(700));
        assert_eq!(m.timeout, Duration::from_millis(2500));
        assert_eq!(
            (t.compression, m.compression),
            (Compression::Gzip, Compression::None)
        );
        assert_eq!(
            s.batch,
            BatchSettings {
                max_queue_size: 100,
                max_export_batch_size: 10,
                schedule_delay: Duration::from_millis(200)
            }
        );
        // A small queue alone lowers the default batch to fit.
        assert_eq!(
            ok(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")])
                .batch
                .max_export_batch_size,
            100
        );
        let e = run(
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
            ],
            "",
        )
        .unwrap_err();
        assert!(e.starts_with("$OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "), "{e}");
        let e = run(
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ],
            "",
        )
        .unwrap_err();
        assert!(e.starts_with("$OTEL_EXPORTER_OTLP_TIMEOUT: "), "{e}");
    }

    #[test]
    fn exporter_none_disables_a_signal() {
        let s = ok(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ]);
        assert!(s.traces.is_none() && s.metrics.is_some());
        let e = run(&[("OTEL_METRICS_EXPORTER", "prometheus")], "").unwrap_err();
        assert!(
            e.starts_with("$OTEL_METRICS_EXPORTER: ") && e.contains("not supported"),
            "{e}"
        );
    }

    #[test]
    fn samplers() {
        let s = |vars: &[(&str, &str)]| run(vars, "").map(|r| r.1);
        assert_eq!(
            s(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            Ok(Sampler::AlwaysOff)
        );
        assert_eq!(
            s(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1")
            ]),
            Ok(Sampler::TraceIdRatio(0.1))
        );
        assert_eq!(
            s(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")]),
            Ok(Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(1.0))))
        );
        assert_eq!(
            s(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]),
            Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
        );
        let e = s(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .unwrap_err();
        assert!(e.starts_with("$OTEL_TRACES_SAMPLER_ARG: "), "{e}");
        let e = s(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap_err();
        assert!(e.contains("`parentbased_traceidratio`"), "{e}");
    }

    #[test]
    fn file_sits_below_the_variables() {
        let file = "otel_traces_export:\n  endpoint: http://file:4318\n  headers:\n    X-Key: v\n  sampler:\n    name: traceidratio\n    arg: 0.5\n  batch_max_size: 64\n  queue_size: 128\n  batch_timeout: 1s\notel_metrics_export:\n  endpoint: http://file:4317\n";
        let (s, sampler) = run(&[], file).unwrap();
        let t = s.traces.unwrap();
        assert_eq!(t.endpoint, "http://file:4318/v1/traces");
        assert_eq!(t.headers, vec![("x-key".into(), "v".into())]);
        assert_eq!(sampler, Sampler::TraceIdRatio(0.5));
        assert_eq!(s.batch.max_queue_size, 128);
        assert_eq!(s.batch.schedule_delay, Duration::from_secs(1));
        let m = s.metrics.unwrap();
        assert_eq!(
            (m.endpoint.as_str(), m.protocol),
            ("http://file:4317", OtlpProtocol::Grpc)
        );
        let (s, sampler) = run(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
            ],
            file,
        )
        .unwrap();
        assert_eq!(s.traces.unwrap().endpoint, "http://env:4318/v1/traces");
        assert_eq!(sampler, Sampler::AlwaysOn);
        // A full URL in the file is not extended twice.
        let (s, _) = run(
            &[],
            "otel_traces_export:\n  endpoint: http://f:4318/v1/traces\n",
        )
        .unwrap();
        assert_eq!(s.traces.unwrap().endpoint, "http://f:4318/v1/traces");
    }
}
