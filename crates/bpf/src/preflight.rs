//! What the kernel and our privileges must offer before anything is loaded,
//! each failure named in one line.

use std::ffi::CString;
use std::fs;
use std::path::Path;

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";

// Capability bit numbers (linux/capability.h).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_CHECKPOINT_RESTORE: u32 = 40;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The oldest kernel the programs load on: bpf_core_cast() (the
/// bpf_rdonly_cast kfunc, 6.2) in every capture path; bpf_task_pt_regs()
/// and attach cookies are 5.15, the ring buffer 5.8.
const MIN_KERNEL: (u32, u32) = (6, 2);

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("this build supports x86_64 only (syscall numbers and registers are x86_64's)")]
    Arch,
    #[error(
        "kernel BTF is missing ({BTF_PATH}): the kernel needs CONFIG_DEBUG_INFO_BTF=y; nothing can be captured"
    )]
    NoBtf,
    #[error("missing privilege: need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root")]
    Privilege,
    #[error(
        "kernel {found} is too old: need >= 6.2 (the programs read kernel structs through the bpf_rdonly_cast kfunc of 6.2, besides the BPF ring buffer and tp_btf); nothing can be captured"
    )]
    Kernel { found: String },
    #[error("could not read {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the agent runs in a PID namespace of its own ({why}): it needs the host's (Kubernetes: hostPID: true; docker/podman: --pid=host), since the kernel reports host process ids and /proc must show the same ones"
    )]
    PidNamespace { why: String },
    #[error("mounting tracefs on {TRACEFS} failed")]
    Mount(#[source] std::io::Error),
}

/// Checks architecture, BTF, privileges and kernel version.
pub fn preflight() -> Result<(), PreflightError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(PreflightError::Arch);
    }
    if !Path::new(BTF_PATH).exists() {
        return Err(PreflightError::NoBtf);
    }
    pid_namespace()?;
    let cap_eff = effective_capabilities()?;
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(PreflightError::Privilege);
    }
    let release =
        fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|source| PreflightError::Io {
            what: "/proc/sys/kernel/osrelease",
            source,
        })?;
    let release = release.trim();
    if kernel_version(release) < MIN_KERNEL {
        return Err(PreflightError::Kernel {
            found: release.to_string(),
        });
    }
    Ok(())
}

/// The effective capability set (CapEff of /proc/self/status).
fn effective_capabilities() -> Result<u64, PreflightError> {
    let status = fs::read_to_string("/proc/self/status").map_err(|source| PreflightError::Io {
        what: "/proc/self/status",
        source,
    })?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0))
}

/// The capabilities the agent uses beyond CAP_BPF and CAP_PERFMON (which
/// `preflight` requires), each absent one with what degrades without it:
/// one log line each at start (docs/deployment.md lists the set). `tls`:
/// TLS capture is on (the uprobes and the calibration child need more).
pub fn missing_capabilities(tls: bool) -> Vec<MissingCapability> {
    let eff = effective_capabilities().unwrap_or(0);
    missing_from(eff, tls)
}

/// Whether the networking program types (sockops, sk_msg) may be loaded:
/// the kernel asks CAP_NET_ADMIN, or CAP_SYS_ADMIN, besides CAP_BPF.
pub fn net_capable() -> bool {
    let eff = effective_capabilities().unwrap_or(0);
    eff & (1u64 << CAP_NET_ADMIN | 1u64 << CAP_SYS_ADMIN) != 0
}

/// A capability the agent runs without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingCapability {
    pub name: &'static str,
    /// What works differently without it.
    pub degrades: &'static str,
    /// Whether capture loses something (else only a defence is weaker).
    pub loses_capture: bool,
}

fn missing_from(eff: u64, tls: bool) -> Vec<MissingCapability> {
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut out = Vec::new();
    // CAP_SYS_ADMIN does not stand in for it in ptrace_may_access.
    if !has(CAP_SYS_PTRACE) {
        out.push(MissingCapability {
            name: "CAP_SYS_PTRACE",
            degrades: "/proc/PID/maps, environ, exe and fd of processes of other users cannot be read: they are not found by port or executable, get no TLS probes and no OTEL_* service names",
            loses_capture: true,
        });
    }
    if !tls {
        return out;
    }
    if !admin {
        out.push(MissingCapability {
            name: "CAP_SYS_ADMIN",
            degrades: "no uprobe can be attached (perf_event_open of the uprobe PMU fails with EACCES without it, measured on Linux 6.18), so HTTPS stays unparsed; the calibration child would also share the host's network namespace (its seccomp filter still denies network sockets)",
            loses_capture: true,
        });
    }
    if !has(CAP_CHECKPOINT_RESTORE) && !admin {
        out.push(MissingCapability {
            name: "CAP_CHECKPOINT_RESTORE",
            degrades: "files to probe are opened by name inside the process's root (openat2, device and inode checked) instead of as the mapping's own file (/proc/PID/map_files)",
            loses_capture: false,
        });
    }
    if !(has(CAP_SETUID) && has(CAP_SETGID)) {
        out.push(MissingCapability {
            name: "CAP_SETUID and CAP_SETGID",
            degrades: "the calibration child cannot become nobody, so no OpenSSL layout is learned: OpenSSL libraries get the per-call probes instead of decryption from their secrets",
            loses_capture: true,
        });
    }
    if !has(CAP_SETPCAP) {
        out.push(MissingCapability {
            name: "CAP_SETPCAP",
            degrades: "the calibration child cannot empty its capability bounding set (it still drops to nobody with no new privileges and its seccomp filter)",
            loses_capture: false,
        });
    }
    out
}

/// The initial PID namespace's inode number (PROC_PID_INIT_INO, fixed
/// since Linux 3.8).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// The BPF programs see host (initial-namespace) process ids; /proc, the
/// agent's own pid (excluded from capture) and every pid it names must be
/// the same numbers. In a container without the host PID namespace they
/// are not: the agent would trace itself and misname processes, so it
/// refuses. Two checks: the agent's PID namespace is the initial one, and
/// /proc is mounted for it (`/proc/self` is the agent's own pid).
fn pid_namespace() -> Result<(), PreflightError> {
    let io = |what, source| PreflightError::Io { what, source };
    let ns = fs::read_link("/proc/self/ns/pid").map_err(|e| io("/proc/self/ns/pid", e))?;
    let ns = ns.to_string_lossy();
    if pid_ns_inode(&ns) != Some(PROC_PID_INIT_INO) {
        return Err(PreflightError::PidNamespace {
            why: format!("its PID namespace is {ns}, not the host's"),
        });
    }
    let me = fs::read_link("/proc/self").map_err(|e| io("/proc/self", e))?;
    if me.to_str() != Some(std::process::id().to_string().as_str()) {
        return Err(PreflightError::PidNamespace {
            why: "/proc is mounted for another PID namespace".to_string(),
        });
    }
    Ok(())
}

/// N of `pid:[N]`.
fn pid_ns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// (major, minor) of the running kernel; (0, 0) when it cannot be read.
pub(crate) fn running_kernel() -> (u32, u32) {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| kernel_version(r.trim()))
        .unwrap_or((0, 0))
}

/// (major, minor) of a kernel release string such as `6.1.0-18-amd64`;
/// (0, 0) when it does not start with numbers.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// Mounts tracefs where it is expected if it is not there yet. The capture
/// programs attach through BTF and do not need it, but it is what operators
/// and tools (bpftool, perf) reach for when inspecting a running agent.
/// Returns whether a mount was made.
pub fn ensure_tracefs() -> Result<bool, PreflightError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(false);
    }
    let src = CString::new("tracefs").map_err(|e| PreflightError::Mount(e.into()))?;
    let dst = CString::new(TRACEFS).map_err(|e| PreflightError::Mount(e.into()))?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PreflightError::Mount(std::io::Error::last_os_error()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_named() {
        let all = u64::MAX;
        assert!(missing_from(all, true).is_empty());
        let bpf_only = 1 << CAP_BPF | 1 << CAP_PERFMON;
        let names: Vec<&str> = missing_from(bpf_only, true)
            .iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "CAP_SYS_PTRACE",
                "CAP_SYS_ADMIN",
                "CAP_CHECKPOINT_RESTORE",
                "CAP_SETUID and CAP_SETGID",
                "CAP_SETPCAP",
            ]
        );
        // Plaintext only: CAP_SYS_PTRACE is all that matters.
        let names: Vec<&str> = missing_from(bpf_only, false)
            .iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["CAP_SYS_PTRACE"]);
        let documented = bpf_only
            | 1 << CAP_SYS_ADMIN
            | 1 << CAP_SYS_PTRACE
            | 1 << CAP_SETUID
            | 1 << CAP_SETGID
            | 1 << CAP_SETPCAP;
        assert_eq!(missing_from(documented, true), []);
    }

    #[test]
    fn pid_namespace_links() {
        assert_eq!(pid_ns_inode("pid:[4026531836]"), Some(PROC_PID_INIT_INO));
        assert_eq!(pid_ns_inode("pid:[4026532001]"), Some(4026532001));
        assert_eq!(pid_ns_inode("net:[4026531836]"), None);
    }

    #[test]
    fn kernel_versions_against_the_minimum() {
        assert_eq!(kernel_version("6.18.0-rc3"), (6, 18));
        assert_eq!(kernel_version("6.1.0-18-amd64"), (6, 1));
        assert!(kernel_version("6.1.0-18-amd64") < MIN_KERNEL);
        assert!(kernel_version("5.15.0-91-generic") < MIN_KERNEL);
        assert!(kernel_version("6.2.0") >= MIN_KERNEL);
        assert!(kernel_version("10.0") >= MIN_KERNEL);
        assert_eq!(kernel_version("garbage"), (0, 0));
    }
}
