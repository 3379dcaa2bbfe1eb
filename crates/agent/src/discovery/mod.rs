//! Process discovery: which processes are instrumented, and who they are.
//!
//! Event-driven: the kernel reports exec, listen and exit, and this module
//! decides on each record as the reader meets it. Because the ring buffer
//! is ordered, a process's exec record is seen before any of its data, so a
//! decision is in force before its first request is parsed.

pub mod procfs;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatosk_bpf::Targets;
use tracing::{debug, info, warn};

use crate::config::Selection;
use crate::selfmon::SelfMetrics;

/// Who a process is, for span and metric attributes.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub exe_path: String,
    /// Executable file name.
    pub exe_name: String,
    /// What the process calls itself, as an OpenTelemetry SDK in it would:
    /// `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else the executable name.
    pub service_name: String,
    /// `service.namespace` decided for the process, when known.
    pub service_namespace: Option<String>,
    /// The process's own `OTEL_RESOURCE_ATTRIBUTES`, decoded.
    pub resource_attributes: Vec<(String, String)>,
}

impl ProcInfo {
    fn from_proc(pid: u32, fallback_comm: Option<&str>, fallback_path: Option<&str>) -> ProcInfo {
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
        let service_name = procfs::environ(pid)
            .and_then(|env| procfs::service_name_from_env(&env))
            .unwrap_or_else(|| exe_name.clone());
        ProcInfo {
            pid,
            exe_path,
            exe_name,
            service_name,
            service_namespace: None,
            resource_attributes: Vec::new(),
        }
    }
}

/// How long a "not selected" verdict filters records still in flight from
/// the moment before the kernel map was updated.
const REJECT_GRACE: Duration = Duration::from_secs(2);

pub struct Discovery {
    selection: Selection,
    /// None when every process is traced (no selector).
    targets: Option<Targets>,
    agent: u32,
    procs: FxHashMap<u32, Arc<ProcInfo>>,
    max_procs: usize,
    /// Processes found not to match at exec, whose records may still be
    /// in the ring buffer.
    rejected: FxHashMap<u32, Instant>,
    metrics: SelfMetrics,
}

impl Discovery {
    pub fn new(
        selection: Selection,
        targets: Option<Targets>,
        max_procs: usize,
        metrics: SelfMetrics,
    ) -> Self {
        Discovery {
            selection,
            targets,
            agent: std::process::id(),
            procs: FxHashMap::default(),
            max_procs,
            rejected: FxHashMap::default(),
            metrics,
        }
    }

    /// Finds and selects the processes already running.
    pub fn initial_scan(&mut self) -> usize {
        if self.targets.is_none() {
            return 0;
        }
        let mut listeners_by_ns: HashMap<u64, HashMap<u64, u16>> = HashMap::new();
        let mut n = 0;
        for pid in procfs::pids() {
            if pid == self.agent {
                continue;
            }
            if self.matches(pid, &mut listeners_by_ns) {
                self.select(pid, "running at start");
                n += 1;
            }
        }
        n
    }

    fn matches(&self, pid: u32, listeners_by_ns: &mut HashMap<u64, HashMap<u64, u16>>) -> bool {
        let sel = &self.selection;
        if sel.pids.contains(&pid) {
            return true;
        }
        if let Some(re) = &sel.exe_path
            && let Some(exe) = procfs::exe(pid)
            && re.is_match(&exe.to_string_lossy())
        {
            return true;
        }
        self.listens_on_selected_port(pid, listeners_by_ns)
    }

    /// Whether `pid` holds a listening socket on a selected port.
    /// `listeners_by_ns` caches /proc/PID/net/tcp{,6} per network namespace.
    fn listens_on_selected_port(
        &self,
        pid: u32,
        listeners_by_ns: &mut HashMap<u64, HashMap<u64, u16>>,
    ) -> bool {
        let ports = &self.selection.open_ports;
        if ports.is_empty() {
            return false;
        }
        let inodes = procfs::socket_inodes(pid);
        if inodes.is_empty() {
            return false;
        }
        let Some(ns) = procfs::netns(pid) else {
            return false;
        };
        let listeners = listeners_by_ns
            .entry(ns)
            .or_insert_with(|| procfs::listening_sockets(pid));
        inodes
            .iter()
            .filter_map(|i| listeners.get(i))
            .any(|p| ports.contains(*p))
    }

    fn select(&mut self, tgid: u32, why: &str) {
        let Some(targets) = &self.targets else { return };
        match targets.insert(tgid) {
            Ok(()) => {
                self.rejected.remove(&tgid);
                let info = self.info(tgid);
                info!(pid = tgid, exe = %info.exe_path, reason = why, "instrumenting process");
                self.metrics.processes_selected.inc();
            }
            Err(e) => warn!(pid = tgid, error = %e, "cannot instrument process"),
        }
    }

    /// A process executed a program: decide whether it stays traced.
    pub fn on_exec(&mut self, tgid: u32, comm: &str, filename: &str) {
        // A new program: whatever we knew about the old one is replaced.
        let info = Arc::new(ProcInfo::from_proc(tgid, Some(comm), Some(filename)));
        self.remember(tgid, info.clone());
        let Some(targets) = &self.targets else { return };
        let sel = &self.selection;
        let by_exe = sel
            .exe_path
            .as_ref()
            .is_some_and(|re| re.is_match(&info.exe_path));
        let by_pid = sel.pids.contains(&tgid);
        // The kernel traces an exec'd process provisionally (exe selector)
        // or because its parent was traced; inherited listening sockets are
        // only worth a /proc scan in that case.
        let was_traced = targets.contains(tgid);
        if by_exe
            || by_pid
            || (was_traced && self.listens_on_selected_port(tgid, &mut HashMap::new()))
        {
            self.select(tgid, "exec");
        } else if was_traced {
            debug!(pid = tgid, exe = %info.exe_path, "exec'd program not selected");
            if let Err(e) = targets.remove(tgid) {
                warn!(pid = tgid, error = %e, "cannot stop instrumenting process");
            }
            self.reject(tgid);
        }
    }

    /// A process started listening on a TCP port.
    pub fn on_listen(&mut self, tgid: u32, port: u16) {
        if tgid == self.agent || self.targets.is_none() {
            return;
        }
        if self.selection.open_ports.contains(port) {
            let already = self.targets.as_ref().is_some_and(|t| t.contains(tgid));
            if !already {
                self.select(tgid, "listens on a selected port");
            }
        }
    }

    pub fn on_exit(&mut self, tgid: u32) {
        self.procs.remove(&tgid);
        self.rejected.remove(&tgid);
    }

    /// Whether records of this process must be ignored (see REJECT_GRACE).
    pub fn is_rejected(&self, tgid: u32) -> bool {
        self.rejected.contains_key(&tgid)
    }

    fn reject(&mut self, tgid: u32) {
        if self.rejected.len() >= 1024 {
            let now = Instant::now();
            self.rejected
                .retain(|_, t| now.duration_since(*t) < REJECT_GRACE);
        }
        self.rejected.insert(tgid, Instant::now());
    }

    /// Who `tgid` is, read from /proc the first time it is asked.
    pub fn info(&mut self, tgid: u32) -> Arc<ProcInfo> {
        if let Some(i) = self.procs.get(&tgid) {
            return i.clone();
        }
        let info = Arc::new(ProcInfo::from_proc(tgid, None, None));
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
