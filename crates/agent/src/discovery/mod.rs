//! Process discovery: which processes are instrumented, and who they are.
//!
//! Event-driven: the kernel reports exec, listen and exit, and this module
//! decides on each record as the reader meets it. Because the ring buffer
//! is ordered, a process's exec record is seen before any of its data, so a
//! decision is in force before its first request is parsed.

pub mod donor;
pub mod gotls;
pub mod offload;
pub mod openssl;
pub mod procfs;
pub mod sslcal;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatosk_bpf::Targets;
use tracing::{debug, info, warn};

use crate::config::export::Naming;
use crate::config::{PortSet, ProcView, SelectEntry, Selection, Verdict};
use crate::selfmon::SelfMetrics;

/// Who a process is, for span and metric attributes.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub exe_path: String,
    /// Executable file name.
    pub exe_name: String,
    /// What the process calls itself, as an OpenTelemetry SDK in it would
    /// (`OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`), else its selection entry's name, else
    /// the configured service name, else the executable name.
    pub service_name: String,
    /// `service.namespace` of its `OTEL_RESOURCE_ATTRIBUTES`, else its
    /// selection entry's, else the configured one.
    pub service_namespace: Option<String>,
    /// The process's own `OTEL_RESOURCE_ATTRIBUTES`, parsed and bounded
    /// (see `procfs::MAX_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
}

/// service.name and service.namespace, by the precedence documented on
/// `ProcInfo`.
pub fn identity(
    env: &procfs::OtelEnv,
    entry: Option<&SelectEntry>,
    naming: &Naming,
    exe_name: &str,
) -> (String, Option<String>) {
    let name = env
        .service_name
        .clone()
        .or_else(|| env.attribute("service.name").map(str::to_string))
        .or_else(|| entry.and_then(|e| e.name.clone()))
        .or_else(|| naming.service_name.clone())
        .unwrap_or_else(|| exe_name.to_string());
    let namespace = env
        .attribute("service.namespace")
        .map(str::to_string)
        .or_else(|| entry.and_then(|e| e.namespace.clone()))
        .or_else(|| naming.service_namespace.clone());
    (name, namespace)
}

impl ProcInfo {
    fn from_proc(
        pid: u32,
        fallback_comm: Option<&str>,
        fallback_path: Option<&str>,
        entry: Option<&SelectEntry>,
        naming: &Naming,
        environ: &mut offload::Offloaded,
    ) -> ProcInfo {
        let exe_path = procfs::exe(pid)
            .map(|p| p.to_string_lossy().into_owned())
            .or_else(|| fallback_path.map(str::to_string))
            .unwrap_or_default();
        let exe_name = Path::new(&exe_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .or_else(|| fallback_comm.map(str::to_string))
            .or_else(|| procfs::comm(pid))
            .unwrap_or_else(|| format!("pid-{pid}"));
        // Off this thread, with a deadline: the read can be made to block.
        let env = environ
            .read(pid)
            .map(|e| procfs::otel_env(&e))
            .unwrap_or_default();
        let (service_name, service_namespace) = identity(&env, entry, naming, &exe_name);
        ProcInfo {
            pid,
            exe_path,
            exe_name,
            service_name,
            service_namespace,
            resource_attributes: env.resource_attributes,
        }
    }
}

/// A live process as the selection sees it; listening ports are read from
/// /proc only if an entry asks, and at most once.
struct LiveProc<'a> {
    pid: u32,
    exe: String,
    /// A port the kernel just reported it listens on.
    new_port: Option<u16>,
    /// Whether /proc may be scanned for its listening sockets.
    scan: bool,
    ports: Option<Vec<u16>>,
    listeners_by_ns: &'a mut HashMap<u64, HashMap<u64, u16>>,
}

impl ProcView for LiveProc<'_> {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn exe(&self) -> &str {
        &self.exe
    }
    fn listens_on(&mut self, set: &PortSet) -> bool {
        if self.new_port.is_some_and(|p| set.contains(p)) {
            return true;
        }
        if !self.scan {
            return false;
        }
        let (pid, cache) = (self.pid, &mut *self.listeners_by_ns);
        let ports = self
            .ports
            .get_or_insert_with(|| listening_ports(pid, cache));
        ports.iter().any(|p| set.contains(*p))
    }
}

/// Ports `pid` holds listening sockets on. `listeners_by_ns` caches
/// /proc/PID/net/tcp{,6} per network namespace.
fn listening_ports(pid: u32, listeners_by_ns: &mut HashMap<u64, HashMap<u64, u16>>) -> Vec<u16> {
    let inodes = procfs::socket_inodes(pid);
    if inodes.is_empty() {
        return Vec::new();
    }
    let Some(ns) = procfs::netns(pid) else {
        return Vec::new();
    };
    let listeners = listeners_by_ns
        .entry(ns)
        .or_insert_with(|| procfs::listening_sockets(pid));
    inodes
        .iter()
        .filter_map(|i| listeners.get(i).copied())
        .collect()
}

/// How long a "not selected" verdict filters records still in flight from
/// the moment before the kernel map was updated.
const REJECT_GRACE: Duration = Duration::from_secs(2);

/// Rejections remembered at once (bounded even when processes churn).
const MAX_REJECTED: usize = 1024;

pub struct Discovery {
    selection: Selection,
    naming: Naming,
    /// None when every process is traced (no selector).
    targets: Option<Targets>,
    agent: u32,
    procs: FxHashMap<u32, Arc<ProcInfo>>,
    /// The include entry that selected a process (None: selected with no
    /// include entry, i.e. everything but exclusions). Bounded with `procs`.
    chosen: FxHashMap<u32, Option<usize>>,
    max_procs: usize,
    /// Processes found not to match at exec, whose records may still be
    /// in the ring buffer.
    rejected: FxHashMap<u32, Instant>,
    /// `/proc/PID/environ`, read on a helper thread (offload.rs).
    environ: offload::Offloaded,
    metrics: SelfMetrics,
}

impl Discovery {
    pub fn new(
        selection: Selection,
        naming: Naming,
        targets: Option<Targets>,
        max_procs: usize,
        metrics: SelfMetrics,
    ) -> Self {
        Discovery {
            selection,
            naming,
            targets,
            agent: std::process::id(),
            procs: FxHashMap::default(),
            chosen: FxHashMap::default(),
            max_procs,
            rejected: FxHashMap::default(),
            environ: offload::Offloaded::new(procfs::environ, metrics.clone()),
            metrics,
        }
    }

    /// Finds and selects the processes already running.
    pub fn initial_scan(&mut self) -> usize {
        if self.targets.is_none() {
            return 0;
        }
        let mut listeners_by_ns = HashMap::new();
        let mut n = 0;
        for pid in procfs::pids() {
            if pid == self.agent {
                continue;
            }
            let exe = procfs::exe(pid)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut view = LiveProc {
                pid,
                exe,
                new_port: None,
                scan: true,
                ports: None,
                listeners_by_ns: &mut listeners_by_ns,
            };
            if let Verdict::Selected(entry) = self.selection.decide(&mut view) {
                self.choose(pid, entry);
                self.select(pid, "running at start");
                n += 1;
            }
        }
        n
    }

    fn choose(&mut self, tgid: u32, entry: Option<usize>) {
        if self.chosen.len() >= self.max_procs && !self.chosen.contains_key(&tgid) {
            // Same policy as `remember`: forget rather than grow.
            self.chosen.clear();
            self.metrics.process_cache_resets.inc();
        }
        self.chosen.insert(tgid, entry);
        // Its identity may depend on the entry: re-read on next use.
        self.procs.remove(&tgid);
    }

    fn select(&mut self, tgid: u32, why: &str) {
        let Some(targets) = &self.targets else { return };
        match targets.insert(tgid) {
            Ok(()) => {
                self.rejected.remove(&tgid);
                let info = self.info(tgid);
                // With no selector every process is: one line at start
                // says how many (pipeline.rs), not one per process.
                if self.selection.include.is_empty() {
                    debug!(pid = tgid, exe = %info.exe_path, service = %info.service_name, reason = why, "instrumenting process");
                } else {
                    info!(pid = tgid, exe = %info.exe_path, service = %info.service_name, reason = why, "instrumenting process");
                }
                self.metrics.processes_selected.inc();
            }
            Err(e) => {
                // Full (E2BIG) in practice: --max-processes reached.
                self.metrics.targets_full.inc();
                warn!(pid = tgid, error = %e, "cannot instrument process (counted in ratatosk_targets_full_total)");
            }
        }
    }

    fn deselect(&mut self, tgid: u32, exe: &str, why: &str) {
        let Some(targets) = &self.targets else { return };
        debug!(pid = tgid, exe = %exe, reason = why, "not instrumenting process");
        if let Err(e) = targets.remove(tgid) {
            warn!(pid = tgid, error = %e, "cannot stop instrumenting process");
        }
        self.chosen.remove(&tgid);
        self.reject(tgid);
    }

    /// A process executed a program: decide whether it stays traced.
    pub fn on_exec(&mut self, tgid: u32, comm: &str, filename: &str) {
        // A new program: whatever we knew about the old one is replaced.
        self.procs.remove(&tgid);
        self.chosen.remove(&tgid);
        let Some(targets) = &self.targets else {
            let info = Arc::new(ProcInfo::from_proc(
                tgid,
                Some(comm),
                Some(filename),
                None,
                &self.naming,
                &mut self.environ,
            ));
            self.remember(tgid, info);
            return;
        };
        // The kernel traces an exec'd process provisionally (exe selector)
        // or because its parent was traced; inherited listening sockets are
        // only worth a /proc scan in that case.
        let was_traced = targets.contains(tgid);
        let exe = procfs::exe(tgid)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| filename.to_string());
        let mut cache = HashMap::new();
        let mut view = LiveProc {
            pid: tgid,
            exe: exe.clone(),
            new_port: None,
            scan: was_traced,
            ports: None,
            listeners_by_ns: &mut cache,
        };
        let verdict = self.selection.decide(&mut view);
        match verdict {
            Verdict::Selected(entry) => {
                // The full identity (environment read) only for what is
                // traced: execs on a busy host are mostly not.
                let info = Arc::new(ProcInfo::from_proc(
                    tgid,
                    Some(comm),
                    Some(filename),
                    self.selection.entry(entry),
                    &self.naming,
                    &mut self.environ,
                ));
                self.choose(tgid, entry);
                self.remember(tgid, info);
                self.select(tgid, "exec");
            }
            Verdict::Excluded | Verdict::NotSelected => {
                // What the process was before this exec no longer holds.
                self.procs.remove(&tgid);
                self.chosen.remove(&tgid);
                if was_traced {
                    let why = if verdict == Verdict::Excluded {
                        "excluded"
                    } else {
                        "exec'd program not selected"
                    };
                    self.deselect(tgid, &exe, why);
                }
            }
        }
    }

    /// A process started listening on a TCP port.
    pub fn on_listen(&mut self, tgid: u32, port: u16) {
        if tgid == self.agent || self.targets.is_none() || !self.selection.has_ports() {
            return;
        }
        let already = self.targets.as_ref().is_some_and(|t| t.contains(tgid));
        // Only the executable is needed: no full identity for processes
        // that may never be selected.
        let exe = match self.procs.get(&tgid) {
            Some(i) => i.exe_path.clone(),
            None => procfs::exe(tgid)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let mut cache = HashMap::new();
        let mut view = LiveProc {
            pid: tgid,
            exe: exe.clone(),
            new_port: Some(port),
            // Its earlier listens were reported (or seen at start) already.
            scan: false,
            ports: None,
            listeners_by_ns: &mut cache,
        };
        match self.selection.decide(&mut view) {
            Verdict::Selected(entry) if !already => {
                self.choose(tgid, entry);
                self.select(tgid, "listens on a selected port");
            }
            Verdict::Excluded if already => self.deselect(tgid, &exe, "excluded by a port"),
            _ => {}
        }
    }

    pub fn on_exit(&mut self, tgid: u32) {
        self.procs.remove(&tgid);
        self.chosen.remove(&tgid);
        self.rejected.remove(&tgid);
    }

    /// Whether records of this process must be ignored (see REJECT_GRACE).
    /// Only within the grace: a rejected process that exits sends no exit
    /// record (it is not traced), and its pid may come back as a traced
    /// child whose records must not be ignored.
    pub fn is_rejected(&self, tgid: u32) -> bool {
        self.rejected
            .get(&tgid)
            .is_some_and(|t| t.elapsed() < REJECT_GRACE)
    }

    fn reject(&mut self, tgid: u32) {
        if self.rejected.len() >= MAX_REJECTED {
            let now = Instant::now();
            self.rejected
                .retain(|_, t| now.duration_since(*t) < REJECT_GRACE);
            if self.rejected.len() >= MAX_REJECTED {
                // More rejections within the grace than the bound: all
                // verdicts go, and their in-flight records are tracked
                // like a target's until they stop.
                self.rejected.clear();
            }
        }
        self.rejected.insert(tgid, Instant::now());
    }

    /// The include entry behind `tgid`: its own, else its parent's (a child
    /// the kernel traced on fork inherits the parent's decision).
    fn entry_of(&self, tgid: u32) -> Option<usize> {
        if let Some(e) = self.chosen.get(&tgid) {
            return *e;
        }
        procfs::ppid(tgid).and_then(|p| self.chosen.get(&p).copied().flatten())
    }

    /// Who `tgid` is, read from /proc the first time it is asked.
    pub fn info(&mut self, tgid: u32) -> Arc<ProcInfo> {
        if let Some(i) = self.procs.get(&tgid) {
            return i.clone();
        }
        let entry = self.selection.entry(self.entry_of(tgid));
        let info = Arc::new(ProcInfo::from_proc(
            tgid,
            None,
            None,
            entry,
            &self.naming,
            &mut self.environ,
        ));
        self.remember(tgid, info.clone());
        info
    }

    fn remember(&mut self, tgid: u32, info: Arc<ProcInfo>) {
        if self.procs.len() >= self.max_procs && !self.procs.contains_key(&tgid) {
            // Exit records normally keep this small; if they were lost,
            // forget everything rather than grow (entries are re-read).
            self.procs.clear();
            self.metrics.process_cache_resets.inc();
        }
        self.procs.insert(tgid, info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery() -> Discovery {
        Discovery::new(
            Selection::default(),
            Naming::default(),
            None,
            16,
            SelfMetrics::default(),
        )
    }

    #[test]
    fn a_rejection_filters_only_within_its_grace() {
        let mut d = discovery();
        d.reject(42);
        assert!(d.is_rejected(42));
        assert!(!d.is_rejected(43));
        // The process exited untraced (no exit record) and its pid came
        // back as a traced child: its records count again.
        let past = Instant::now().checked_sub(REJECT_GRACE + Duration::from_millis(1));
        d.rejected.insert(42, past.expect("clock past the grace"));
        assert!(!d.is_rejected(42));
    }

    #[test]
    fn rejections_stay_bounded_under_churn() {
        let mut d = discovery();
        for pid in 0..(3 * MAX_REJECTED as u32) {
            d.reject(pid);
            assert!(d.rejected.len() <= MAX_REJECTED);
        }
        assert!(d.is_rejected(3 * MAX_REJECTED as u32 - 1));
    }

    #[test]
    fn service_identity_precedence() {
        let naming = Naming {
            service_name: Some("configured".into()),
            service_namespace: Some("cfg-ns".into()),
            command_args: false,
        };
        let entry = SelectEntry {
            name: Some("entry".into()),
            namespace: Some("entry-ns".into()),
            ..SelectEntry::default()
        };
        let env = |b: &[u8]| procfs::otel_env(b);
        let own = env(b"OTEL_SERVICE_NAME=own\0OTEL_RESOURCE_ATTRIBUTES=service.name=attr,service.namespace=attr-ns\0");
        assert_eq!(
            identity(&own, Some(&entry), &naming, "exe"),
            ("own".into(), Some("attr-ns".into()))
        );
        let attrs = env(b"OTEL_RESOURCE_ATTRIBUTES=service.name=attr\0");
        assert_eq!(
            identity(&attrs, Some(&entry), &naming, "exe"),
            ("attr".into(), Some("entry-ns".into()))
        );
        let none = procfs::OtelEnv::default();
        assert_eq!(
            identity(&none, Some(&entry), &naming, "exe"),
            ("entry".into(), Some("entry-ns".into()))
        );
        assert_eq!(
            identity(&none, None, &naming, "exe"),
            ("configured".into(), Some("cfg-ns".into()))
        );
        assert_eq!(
            identity(&none, None, &Naming::default(), "exe"),
            ("exe".into(), None)
        );
    }
}
