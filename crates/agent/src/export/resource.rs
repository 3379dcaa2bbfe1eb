//! OTLP resources: one per instrumented process (a service instance),
//! built once from /proc and cached, and one for the agent itself.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_semantic_conventions::attribute as semconv;
use prost::Message;
use rustc_hash::FxHashMap;

use super::runtime;
use crate::config::export::Naming;
use crate::discovery::ProcInfo;

/// Identifies the agent in every resource (semconv: an auto-instrumentation
/// agent is a distribution; `telemetry.sdk.name` names the code that
/// produced the telemetry, and `opentelemetry` is reserved for the
/// OpenTelemetry SDKs). Beyla/OBI also put their own name there.
pub const AGENT_NAME: &str = "ratatosk";
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bytes of /proc/PID/cmdline turned into `process.command_args`.
const MAX_CMDLINE: usize = 4096;
/// Bytes of /proc/PID/maps read for runtime libraries (a JVM's maps run
/// to hundreds of KiB; the runtime library is mapped early).
const MAX_MAPS: usize = 1 << 20;
/// Resources kept; beyond, the cache starts over (processes are bounded
/// by --max-processes, so this only bites after much churn).
const MAX_CACHED: usize = 16384;

pub fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn kv_str_array(key: &str, vs: Vec<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vs
                    .into_iter()
                    .map(|v| AnyValue {
                        value: Some(any_value::Value::StringValue(v)),
                    })
                    .collect(),
            })),
        }),
        ..Default::default()
    }
}

/// Facts about the host, read once.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub id: Option<String>,
}

impl Host {
    pub fn detect() -> Host {
        Host {
            name: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            id: ["/etc/machine-id", "/var/lib/dbus/machine-id"]
                .iter()
                .find_map(|p| {
                    let id = fs::read_to_string(p).ok()?;
                    let id = id.trim();
                    (!id.is_empty()).then(|| id.to_string())
                }),
        }
    }

    /// `service.instance.id`: the same value `target_info` carries on
    /// /metrics, so both outputs name an instance alike.
    pub fn instance_id(&self, pid: u32) -> String {
        format!("{}-{pid}", self.name)
    }
}

/// What /proc tells about a process beyond `ProcInfo`.
#[derive(Debug, Default, Clone)]
pub struct ProcFacts {
    pub command_args: Option<Vec<String>>,
    pub language: Option<runtime::Language>,
}

impl ProcFacts {
    pub fn read(p: &ProcInfo, command_args: bool) -> ProcFacts {
        let maps = read_bounded(&format!("/proc/{}/maps", p.pid), MAX_MAPS)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        ProcFacts {
            command_args: if command_args {
                read_bounded(&format!("/proc/{}/cmdline", p.pid), MAX_CMDLINE)
                    .map(|b| split_cmdline(&b))
            } else {
                None
            },
            // Through /proc: the path is the process's own view, which in
            // a container is not the agent's.
            language: runtime::detect(
                &p.exe_name,
                Path::new(&format!("/proc/{}/exe", p.pid)),
                maps.as_deref(),
            ),
        }
    }
}

fn read_bounded(path: &str, max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// NUL-separated arguments; a cut last argument is kept as cut.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    match raw.get(..end) {
        Some(r) if !r.is_empty() => r
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn telemetry_attrs(language: Option<&'static str>, out: &mut Vec<KeyValue>) {
    out.push(kv_str(semconv::TELEMETRY_SDK_NAME, AGENT_NAME));
    out.push(kv_str(semconv::TELEMETRY_SDK_VERSION, AGENT_VERSION));
    // Omitted when undetected: semconv lists no "unknown" value.
    if let Some(l) = language {
        out.push(kv_str(semconv::TELEMETRY_SDK_LANGUAGE, l));
    }
    out.push(kv_str(semconv::TELEMETRY_DISTRO_NAME, AGENT_NAME));
    out.push(kv_str(semconv::TELEMETRY_DISTRO_VERSION, AGENT_VERSION));
}

fn host_attrs(host: &Host, out: &mut Vec<KeyValue>) {
    out.push(kv_str(semconv::HOST_NAME, &host.name));
    if let Some(id) = &host.id {
        out.push(kv_str(semconv::HOST_ID, id));
    }
    out.push(kv_str(semconv::OS_TYPE, "linux"));
}

/// Sets `key` to `value`, replacing an earlier value (later sources win,
/// as when an SDK merges resources).
fn upsert(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    match attrs.iter_mut().find(|a| a.key == kv.key) {
        Some(a) => *a = kv,
        None => attrs.push(kv),
    }
}

/// The resource of one instrumented process. Order of precedence, as an
/// SDK in the process would merge them: what the agent detects, then the
/// process's `OTEL_RESOURCE_ATTRIBUTES`, then the service name and
/// namespace discovery decided.
pub fn process_resource(p: &ProcInfo, facts: &ProcFacts, host: &Host, naming: &Naming) -> Resource {
    let mut a = Vec::with_capacity(20);
    a.push(kv_str(
        semconv::SERVICE_INSTANCE_ID,
        host.instance_id(p.pid),
    ));
    host_attrs(host, &mut a);
    a.push(kv_int(semconv::PROCESS_PID, i64::from(p.pid)));
    a.push(kv_str(semconv::PROCESS_EXECUTABLE_NAME, &p.exe_name));
    if !p.exe_path.is_empty() {
        a.push(kv_str(semconv::PROCESS_EXECUTABLE_PATH, &p.exe_path));
    }
    if let Some(args) = &facts.command_args {
        a.push(kv_str_array(semconv::PROCESS_COMMAND_ARGS, args.clone()));
    }
    if let Some(l) = facts.language {
        a.push(kv_str(semconv::PROCESS_RUNTIME_NAME, l.runtime_name()));
    }
    telemetry_attrs(facts.language.map(|l| l.sdk_language()), &mut a);
    for (k, v) in &p.resource_attributes {
        upsert(&mut a, kv_str(k, v));
    }
    upsert(&mut a, kv_str(semconv::SERVICE_NAME, &p.service_name));
    if let Some(ns) = p
        .service_namespace
        .as_ref()
        .or(naming.service_namespace.as_ref())
    {
        upsert(&mut a, kv_str(semconv::SERVICE_NAMESPACE, ns));
    }
    Resource {
        attributes: a,
        ..Default::default()
    }
}

/// The agent's own resource, for its self-metrics.
pub fn agent_resource(host: &Host) -> Resource {
    let pid = std::process::id();
    let mut a = vec![
        kv_str(semconv::SERVICE_NAME, AGENT_NAME),
        kv_str(semconv::SERVICE_VERSION, AGENT_VERSION),
        kv_str(semconv::SERVICE_INSTANCE_ID, host.instance_id(pid)),
    ];
    host_attrs(host, &mut a);
    a.push(kv_int(semconv::PROCESS_PID, i64::from(pid)));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(name) = exe.file_name() {
            a.push(kv_str(
                semconv::PROCESS_EXECUTABLE_NAME,
                name.to_string_lossy(),
            ));
        }
        a.push(kv_str(
            semconv::PROCESS_EXECUTABLE_PATH,
            exe.to_string_lossy(),
        ));
    }
    a.push(kv_str(semconv::PROCESS_RUNTIME_NAME, "rust"));
    telemetry_attrs(Some("rust"), &mut a);
    Resource {
        attributes: a,
        ..Default::default()
    }
}

/// A process's resource with what it was built from.
#[derive(Debug)]
pub struct ProcessResource {
    pub pid: u32,
    /// The `ProcInfo` the resource describes: a new one (exec, pid reuse)
    /// means a new resource.
    pub proc: Arc<ProcInfo>,
    pub resource: Resource,
    /// `resource` as protobuf, encoded once: every span request carries it.
    pub encoded: Vec<u8>,
}

impl ProcessResource {
    pub fn new(proc: Arc<ProcInfo>, resource: Resource) -> Self {
        ProcessResource {
            pid: proc.pid,
            encoded: resource.encode_to_vec(),
            proc,
            resource,
        }
    }
}

/// Resources by pid, built on first use.
pub struct Resources {
    host: Host,
    naming: Naming,
    by_pid: FxHashMap<u32, Arc<ProcessResource>>,
}

impl Resources {
    pub fn new(host: Host, naming: Naming) -> Self {
        Resources {
            host,
            naming,
            by_pid: FxHashMap::default(),
        }
    }

    #[cfg(test)]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The process's resource, built on first use. Borrowed: callers
    /// clone it only to keep it (a clone and drop per span showed in the
    /// pipeline bench).
    pub fn get(&mut self, p: &Arc<ProcInfo>) -> &Arc<ProcessResource> {
        use std::collections::hash_map::Entry;
        let fresh = self
            .by_pid
            .get(&p.pid)
            .is_some_and(|r| Arc::ptr_eq(&r.proc, p));
        if !fresh && self.by_pid.len() >= MAX_CACHED {
            self.by_pid.clear();
        }
        let build = || {
            let facts = ProcFacts::read(p, self.naming.command_args);
            Arc::new(ProcessResource::new(
                p.clone(),
                process_resource(p, &facts, &self.host, &self.naming),
            ))
        };
        match self.by_pid.entry(p.pid) {
            Entry::Occupied(mut e) => {
                if !fresh {
                    e.insert(build());
                }
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(build()),
        }
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn attr<'a>(r: &'a Resource, key: &str) -> Option<&'a any_value::Value> {
        r.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    pub fn str_attr<'a>(r: &'a Resource, key: &str) -> Option<&'a str> {
        match attr(r, key)? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    pub fn proc_info(pid: u32, name: &str) -> ProcInfo {
        ProcInfo {
            pid,
            exe_path: format!("/usr/bin/{name}"),
            exe_name: name.to_string(),
            service_name: name.to_string(),
            service_namespace: None,
            resource_attributes: Vec::new(),
        }
    }

    #[test]
    fn process_resource_merges_like_an_sdk() {
        let mut p = proc_info(42, "python3.11");
        p.service_name = "shop".into();
        p.resource_attributes = vec![
            ("deployment.environment.name".into(), "prod".into()),
            ("service.name".into(), "ignored".into()),
            ("host.name".into(), "from-env".into()),
        ];
        let host = Host {
            name: "box".into(),
            id: Some("abc".into()),
        };
        let facts = ProcFacts {
            command_args: Some(vec!["python3".into(), "app.py".into()]),
            language: runtime::from_exe_name("python3.11"),
        };
        let naming = Naming {
            service_namespace: Some("ns".into()),
            ..Default::default()
        };
        let r = process_resource(&p, &facts, &host, &naming);
        assert_eq!(str_attr(&r, "service.name"), Some("shop"));
        assert_eq!(str_attr(&r, "service.namespace"), Some("ns"));
        assert_eq!(str_attr(&r, "service.instance.id"), Some("box-42"));
        assert_eq!(str_attr(&r, "host.id"), Some("abc"));
        assert_eq!(str_attr(&r, "host.name"), Some("from-env"));
        assert_eq!(str_attr(&r, "os.type"), Some("linux"));
        assert_eq!(str_attr(&r, "deployment.environment.name"), Some("prod"));
        assert_eq!(str_attr(&r, "telemetry.sdk.language"), Some("python"));
        assert_eq!(str_attr(&r, "process.runtime.name"), Some("cpython"));
        assert_eq!(str_attr(&r, "telemetry.distro.name"), Some("ratatosk"));
        assert_eq!(
            attr(&r, "process.pid"),
            Some(&any_value::Value::IntValue(42))
        );
        assert!(attr(&r, "process.command_args").is_some());
        // Each key once.
        let mut keys: Vec<_> = r.attributes.iter().map(|a| &a.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), r.attributes.len());

        // The process's own namespace wins over the agent-wide one.
        p.service_namespace = Some("own".into());
        let r = process_resource(&p, &ProcFacts::default(), &host, &naming);
        assert_eq!(str_attr(&r, "service.namespace"), Some("own"));
        assert_eq!(str_attr(&r, "telemetry.sdk.language"), None);
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            split_cmdline(b"python3\0-m\0http.server\0"),
            vec!["python3", "-m", "http.server"]
        );
        assert_eq!(split_cmdline(b"nginx: worker"), vec!["nginx: worker"]);
    }

    #[test]
    fn resources_are_cached_per_process_info() {
        let mut rs = Resources::new(Host::detect(), Naming::default());
        let me = Arc::new(proc_info(std::process::id(), "ratatosk-test"));
        let a = rs.get(&me).clone();
        let b = rs.get(&me).clone();
        assert!(Arc::ptr_eq(&a, &b));
        let again = Arc::new(proc_info(std::process::id(), "ratatosk-test"));
        assert!(!Arc::ptr_eq(&a, rs.get(&again)));
        let agent = agent_resource(rs.host());
        assert_eq!(str_attr(&agent, "service.name"), Some("ratatosk"));
        assert_eq!(str_attr(&agent, "telemetry.sdk.language"), Some("rust"));
    }
}
