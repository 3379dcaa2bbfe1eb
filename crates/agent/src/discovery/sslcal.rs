//! Learning an OpenSSL build's struct layout by running it, in a child.
//!
//! `ratatosk_sslcal::calibrate` loads the library and runs handshakes
//! through it: that executes the library's code. Two rules keep a traced
//! process from choosing that code or making it matter:
//!
//! - Only a library root installed is run (`trusted_library`): the file
//!   and every directory above it (before and after resolving links) are
//!   owned by root and writable by no group or other user, and it is not
//!   on a FUSE mount. A libssl in /tmp, a home directory or an
//!   unprivileged container's layer is refused with one warning; such a
//!   library gets the per-call probes instead.
//! - It never runs in the agent: the agent re-executes itself (`ratatosk
//!   __sslcal PATH`) in a new process group and network namespace, with
//!   rlimits (CPU, address space, files, no file writes, no core), and the
//!   child drops every privilege (capability bounding set, uid/gid
//!   nobody, no supplementary groups, no new privileges) and installs a
//!   seccomp filter (no sockets but AF_UNIX pairs, no signals to others,
//!   no ptrace, no new namespaces or sessions) before it opens the
//!   library, prints the layout as one JSON line and exits. Its output is
//!   read without blocking, and the whole group is killed when it exits or
//!   at `TIMEOUT`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ratatosk_bpf::{SSL_NO_OFFSET as NO_OFFSET, SslLayout};
use ratatosk_sslcal::SslOffsets;

/// First argument that turns the binary into the calibration child.
pub const CHILD_ARG: &str = "__sslcal";

/// Generous: a calibration takes milliseconds, but a loaded host may
/// delay the child's start.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read from the child's output.
const MAX_OUTPUT: u64 = 64 * 1024;
/// The unprivileged user the child becomes (`nobody`).
const NOBODY: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{0}: only libraries root installed are run to learn their layout")]
    Untrusted(String),
    #[error("starting the calibration process failed")]
    Spawn(#[source] std::io::Error),
    #[error("the calibration process did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Child(String),
    #[error("the calibration process printed no layout ({0})")]
    Output(String),
    #[error("an offset learned is too large for the BPF layout: {0}")]
    Range(&'static str),
}

/// Whether `lib` may be run: see the module documentation. Returns the
/// path with links resolved (what the child loads) and its (device, inode).
pub fn trusted_library(lib: &Path) -> Result<(PathBuf, (u64, u64)), CalibrateError> {
    use std::os::unix::fs::MetadataExt;
    let untrusted = |why: String| Err(CalibrateError::Untrusted(why));
    if !lib.is_absolute() {
        return untrusted(format!("{} is not an absolute path", lib.display()));
    }
    let real = match std::fs::canonicalize(lib) {
        Ok(r) => r,
        Err(e) => return untrusted(format!("{}: {e}", lib.display())),
    };
    // The directories of the name as given (their links live there) and
    // of the resolved one; then the file itself.
    let mut dirs: Vec<&Path> = lib.ancestors().skip(1).collect();
    dirs.extend(real.ancestors().skip(1));
    for dir in dirs {
        let m = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) => return untrusted(format!("{}: {e}", dir.display())),
        };
        if let Some(why) = not_roots(&m) {
            return untrusted(format!("directory {} {why}", dir.display()));
        }
    }
    let f = match std::fs::File::open(&real) {
        Ok(f) => f,
        Err(e) => return untrusted(format!("{}: {e}", real.display())),
    };
    let m = f
        .metadata()
        .map_err(|e| CalibrateError::Untrusted(e.to_string()))?;
    if !m.file_type().is_file() {
        return untrusted(format!("{} is not a regular file", real.display()));
    }
    if let Some(why) = not_roots(&m) {
        return untrusted(format!("{} {why}", real.display()));
    }
    // A FUSE daemon serves whatever it likes whatever the owner says.
    // SAFETY: fstatfs fills the zeroed struct for a descriptor we own.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    use std::os::fd::AsRawFd;
    // SAFETY: as above.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut fs) } == 0 && fs.f_type == FUSE_SUPER_MAGIC {
        return untrusted(format!("{} is on a FUSE file system", real.display()));
    }
    Ok((real, (m.dev(), m.ino())))
}

const FUSE_SUPER_MAGIC: libc::c_long = 0x6573_5546;

/// Why a file or directory is not root's alone, if it is not.
fn not_roots(m: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    if m.uid() != 0 {
        Some("is not owned by root")
    } else if m.mode() & 0o022 != 0 {
        Some("is writable by its group or by everyone")
    } else {
        None
    }
}

/// Runs the calibration of `lib` in an unprivileged child and returns the
/// layout for the BPF side and the library's version text.
pub fn calibrate(lib: &Path) -> Result<(SslLayout, String), CalibrateError> {
    let (real, _) = trusted_library(lib)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(CHILD_ARG)
        .arg(&real)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: killed whole, descendants included.
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (setrlimit, unshare).
    unsafe {
        cmd.pre_exec(confine_before_exec);
    }
    let mut child = cmd.spawn().map_err(CalibrateError::Spawn)?;
    let pgid = child.id() as libc::pid_t;
    let mut out = Output::new(child.stdout.take());
    let mut err = Output::new(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        out.drain();
        err.drain();
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => break None,
        }
    };
    // Whatever it left behind goes with it; then what is already in the
    // pipes is read (a descendant can no longer hold them open).
    // SAFETY: signals the group this function created.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CalibrateError::Timeout(TIMEOUT));
    };
    let until = Instant::now() + Duration::from_millis(100);
    while (!out.done || !err.done) && Instant::now() < until {
        out.drain();
        err.drain();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (out, err) = (out.text(), err.text());
    if !status.success() {
        let msg = err.lines().last().unwrap_or("").trim();
        return Err(CalibrateError::Child(if msg.is_empty() {
            format!("the calibration process ended with {status}")
        } else {
            msg.to_string()
        }));
    }
    let line = out.lines().last().unwrap_or("");
    let offsets: SslOffsets =
        serde_json::from_str(line).map_err(|e| CalibrateError::Output(e.to_string()))?;
    Ok((layout(&offsets)?, offsets.version.clone()))
}

/// A child's output pipe, read without blocking, up to MAX_OUTPUT bytes.
struct Output {
    pipe: Option<std::fs::File>,
    bytes: Vec<u8>,
    done: bool,
}

impl Output {
    fn new(p: Option<impl Into<std::os::fd::OwnedFd>>) -> Output {
        use std::os::fd::AsRawFd;
        let pipe = p.map(|p| std::fs::File::from(p.into()));
        if let Some(f) = &pipe {
            // SAFETY: fcntl on a pipe descriptor this struct owns.
            unsafe {
                let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Output {
            done: pipe.is_none(),
            pipe,
            bytes: Vec::new(),
        }
    }

    /// Reads what is there now; EOF marks it done; past MAX_OUTPUT the rest
    /// is read and dropped so the child never blocks writing.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.done {
            let Some(p) = &mut self.pipe else { return };
            match p.read(&mut buf) {
                Ok(0) => self.done = true,
                Ok(n) => {
                    let room = (MAX_OUTPUT as usize).saturating_sub(self.bytes.len());
                    self.bytes
                        .extend_from_slice(buf.get(..n.min(room)).unwrap_or(&[]));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => self.done = true,
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Most CPU seconds and address space of the child: a calibration takes
/// milliseconds and a few MiB.
const CHILD_CPU_SECONDS: libc::rlim_t = 10;
const CHILD_ADDRESS_SPACE: libc::rlim_t = 1 << 30;
/// Descriptors: the calibration duplicates its sockets to numbers near 900
/// so they stand out in memory, and the limit caps the number too.
const CHILD_FILES: libc::rlim_t = 1024;

/// In the forked child, before exec: limits and a network namespace of
/// its own (no interface but a down loopback). Only async-signal-safe
/// calls. A failing unshare (no CAP_SYS_ADMIN) is not fatal: the seccomp
/// filter the child installs denies network sockets anyway.
fn confine_before_exec() -> std::io::Result<()> {
    let limit = |res, v: libc::rlim_t| {
        let l = libc::rlimit {
            rlim_cur: v,
            rlim_max: v,
        };
        // SAFETY: setrlimit reads the struct passed.
        if unsafe { libc::setrlimit(res, &l) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    limit(libc::RLIMIT_CPU, CHILD_CPU_SECONDS)?;
    limit(libc::RLIMIT_AS, CHILD_ADDRESS_SPACE)?;
    limit(libc::RLIMIT_NOFILE, CHILD_FILES)?;
    limit(libc::RLIMIT_FSIZE, 0)?;
    limit(libc::RLIMIT_CORE, 0)?;
    // SAFETY: unshare takes flags only.
    unsafe {
        libc::unshare(libc::CLONE_NEWNET);
    }
    Ok(())
}

fn layout(o: &SslOffsets) -> Result<SslLayout, CalibrateError> {
    // Offsets past 64 KiB would mean a wrong calibration, not a struct.
    let off = |v: u32, name: &'static str| {
        if v < 0x10000 {
            Ok(v)
        } else {
            Err(CalibrateError::Range(name))
        }
    };
    Ok(SslLayout {
        ssl_rbio: off(o.ssl_rbio, "ssl_rbio")?,
        bio_method: off(o.bio_method, "bio_method")?,
        bio_method_type: off(o.bio_method_type, "bio_method_type")?,
        bio_num: off(o.bio_num, "bio_num")?,
        bio_type_socket: o.bio_type_socket as u32,
        ssl_version: off(o.ssl_version, "ssl_version")?,
        ssl_client_app_secret: off(o.ssl_client_app_secret, "ssl_client_app_secret")?,
        ssl_server_app_secret: off(o.ssl_server_app_secret, "ssl_server_app_secret")?,
        ssl_session: off(o.ssl_session, "ssl_session")?,
        session_master_key: off(o.session_master_key, "session_master_key")?,
        valid: 1,
        client_random_via: match o.ssl_client_random.and_then(|r| r.via) {
            Some(via) => off(via, "ssl_client_random")?,
            None => NO_OFFSET,
        },
        client_random: match o.ssl_client_random {
            Some(r) => off(r.at, "ssl_client_random")?,
            None => NO_OFFSET,
        },
        _pad: 0,
    })
}

/// The child's whole life: drop privileges, calibrate, print.
pub fn child_main(lib: &str) -> ExitCode {
    if let Err(e) = drop_privileges() {
        eprintln!("cannot drop privileges before loading the library: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = seccomp::install() {
        eprintln!("cannot install the seccomp filter before loading the library: {e}");
        return ExitCode::FAILURE;
    }
    match ratatosk_sslcal::calibrate(Path::new(lib)) {
        Ok(o) => match serde_json::to_string(&o) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("encoding the layout failed: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn drop_privileges() -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain syscalls on the calling (single-threaded) process with
    // valid arguments; no memory is shared with the kernel beyond them.
    unsafe {
        if libc::geteuid() == 0 {
            // No capability can come back through an exec either; the
            // bounding set only shrinks (needs CAP_SETPCAP, which root has).
            for cap in 0..=libc::c_ulong::from(CAP_LAST_CAP) {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            check(libc::setgroups(0, std::ptr::null()))?;
        }
        check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
        check(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    // SAFETY: as above.
    if unsafe { libc::geteuid() } == 0 {
        return Err(std::io::Error::other("still root after setresuid"));
    }
    // setresuid away from root cleared the permitted and effective sets;
    // check it rather than trust it.
    let status = std::fs::read_to_string("/proc/self/status")?;
    let held = status
        .lines()
        .filter(|l| {
            l.starts_with("CapPrm:") || l.starts_with("CapEff:") || l.starts_with("CapAmb:")
        })
        .any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|v| !v.trim_start_matches('0').is_empty())
        });
    if held {
        return Err(std::io::Error::other("capabilities remain after setresuid"));
    }
    Ok(())
}

/// Highest capability number known (CAP_CHECKPOINT_RESTORE, Linux 5.9);
/// dropping unknown higher ones fails harmlessly.
const CAP_LAST_CAP: u8 = 63;

/// The child's system-call filter (x86_64 and aarch64): network sockets,
/// signals to other processes (it runs as `nobody`, like nginx's workers),
/// ptrace and other processes' memory, new namespaces, sessions and
/// process groups (which would escape the group kill) fail with EPERM.
mod seccomp {
    use libc::{sock_filter, sock_fprog};

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    // Elsewhere no filter is known: the calibration refuses to run.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const AUDIT_ARCH: u32 = 0;

    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    /// seccomp_data: nr at 0, arch at 4, args[0] (low half) at 16.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARG0: u32 = 16;
    /// CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}.
    const CLONE_NEW_ANY: u32 = 0x7E02_0000;

    fn stmt(code: u32, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }

    fn load(off: u32) -> sock_filter {
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, off)
    }

    fn ret(k: u32) -> sock_filter {
        stmt(libc::BPF_RET | libc::BPF_K, k)
    }

    pub fn program() -> Vec<sock_filter> {
        let denied = [
            libc::SYS_kill,
            libc::SYS_tkill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
            libc::SYS_pidfd_send_signal,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_getfd,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_setsid,
            libc::SYS_setpgid,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_execve,
            libc::SYS_execveat,
        ];
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let mut p = vec![
            load(ARCH),
            jeq(AUDIT_ARCH, 1, 0),
            ret(RET_KILL_PROCESS),
            load(NR),
        ];
        // x32 system calls (nr | 0x40000000) on x86_64: none wanted.
        #[cfg(target_arch = "x86_64")]
        p.extend([
            sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: 0x4000_0000,
            },
            ret(RET_KILL_PROCESS),
        ]);
        for nr in denied {
            p.push(jeq(nr as u32, 0, 1));
            p.push(ret(eperm));
        }
        // clone3 passes its flags in memory a filter cannot read: ENOSYS
        // makes the C library fall back to clone, whose flags it can.
        p.push(jeq(libc::SYS_clone3 as u32, 0, 1));
        p.push(ret(RET_ERRNO | libc::ENOSYS as u32));
        p.extend([
            jeq(libc::SYS_clone as u32, 0, 4),
            load(ARG0),
            sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: CLONE_NEW_ANY,
            },
            ret(eperm),
            ret(RET_ALLOW),
        ]);
        // socket(): AF_UNIX only (the calibration's socketpair is its own
        // system call and stays allowed).
        p.extend([
            jeq(libc::SYS_socket as u32, 0, 4),
            load(ARG0),
            jeq(libc::AF_UNIX as u32, 0, 1),
            ret(RET_ALLOW),
            ret(RET_ERRNO | libc::EACCES as u32),
            ret(RET_ALLOW),
        ]);
        p
    }

    pub fn install() -> std::io::Result<()> {
        if AUDIT_ARCH == 0 {
            return Err(std::io::Error::other("no filter for this architecture"));
        }
        let mut prog = program();
        let fprog = sock_fprog {
            len: u16::try_from(prog.len()).map_err(std::io::Error::other)?,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: the kernel copies the program during the call; `prog`
        // outlives it. NO_NEW_PRIVS was set by drop_privileges.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const sock_fprog,
                0,
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root's libssl runs; a copy in /tmp (world-writable directory), or
    /// one a user owns in a root directory, does not.
    #[test]
    fn only_root_installed_libraries_are_run() {
        let system = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if system.exists() {
            let (real, _) = trusted_library(system).unwrap();
            assert!(real.is_absolute());
        }
        let dir = std::env::temp_dir().join(format!("ratatosk-untrusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let lib = dir.join("libssl.so.3");
        std::fs::write(&lib, b"\x7fELF not really").unwrap();
        let err = calibrate(&lib).unwrap_err();
        assert!(matches!(err, CalibrateError::Untrusted(_)), "{err}");
        assert!(err.to_string().contains("writable"), "{err}");
        // A user's file in a directory only root writes.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = std::ffi::CString::new(lib.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path alive across the call.
        unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
        // SAFETY: plain getter.
        if unsafe { libc::geteuid() } == 0 {
            let why = trusted_library(&lib).unwrap_err().to_string();
            assert!(why.contains("writable") || why.contains("owned"), "{why}");
        }
        assert!(trusted_library(Path::new("relative/libssl.so")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_seccomp_program_is_well_formed() {
        let p = seccomp::program();
        assert!(p.len() < 100);
        // Every jump lands inside the program.
        for (i, ins) in p.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < p.len(), "{i}");
            }
        }
        assert_eq!(
            u32::from(p.last().unwrap().code),
            libc::BPF_RET | libc::BPF_K
        );
    }
}
