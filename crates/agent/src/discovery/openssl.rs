//! Which files of the traced processes get the TLS uprobes: every mapped
//! `libssl*.so*` and the process's own executable — OpenSSL probes, or
//! the Go `crypto/tls` probes when the executable is a Go binary (Node
//! links OpenSSL statically and exports `SSL_read`/`SSL_write`; Go
//! binaries are static and carry their own TLS).
//!
//! A uprobe lives on a file's inode and fires in every process that maps
//! it, so each file is attached once, whichever process revealed it; the
//! BPF programs filter on the target set like the syscall path. Processes
//! are rescanned periodically because libraries are also loaded late
//! (Python imports `ssl` on demand): each at once when new, then less
//! often while its mappings show nothing new (`RescanSchedule`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ratatosk_bpf::{GoTlsProbes, OpensslProbes, SslLayout, TlsAttachError};
use rustc_hash::{FxHashMap, FxHashSet};
use tracing::{debug, info, warn};

use crate::discovery::donor::{DonorError, Donors};
use crate::discovery::gotls::{self, GoProbeError, GoProbed};
use crate::discovery::procfs;
use crate::discovery::sslcal::CalibrateError;
use crate::selfmon::{ReasonLabel, SelfMetrics};

/// Attaches probes to one file (the capture, or a fake in tests).
pub trait TlsAttach {
    /// OpenSSL probes by symbol name.
    fn openssl(&mut self, path: &Path) -> Result<OpensslProbes, TlsAttachError>;
    /// Go crypto/tls probes at the given offsets.
    fn go(&mut self, path: &Path, probes: &GoTlsProbes) -> Result<usize, TlsAttachError>;
    /// Learns the struct layout of the libssl at `host_path` (as the agent
    /// sees it) by running it; returns it with the library's version text.
    fn calibrate(&mut self, host_path: &Path) -> Result<(SslLayout, String), CalibrateError> {
        crate::discovery::sslcal::calibrate(host_path)
    }
    /// The connection probe on the OpenSSL at `path` (a library, or an
    /// executable that links it) whose layout is `layout`.
    fn openssl_handshake(
        &mut self,
        path: &Path,
        layout: &SslLayout,
        executable: bool,
    ) -> Result<(), TlsAttachError>;
    /// Whether `path` is a Go executable.
    fn is_go(&self, path: &Path) -> bool {
        crate::export::runtime::is_go_executable(path)
    }
}

/// Why a library gets the per-call probes instead of the connection probe.
#[derive(Debug, thiserror::Error)]
pub enum DecryptSetupError {
    #[error("it lives in another mount namespace (its layout is not learned there)")]
    OtherNamespace,
    #[error("its name no longer names the file mapped")]
    NotTheMappedFile,
    #[error("learning its struct layout failed")]
    Calibrate(#[from] CalibrateError),
    #[error(transparent)]
    Donor(#[from] DonorError),
    #[error(transparent)]
    Attach(#[from] TlsAttachError),
}

/// Most files given probes (each holds 8 uprobe links, or for Go 2 plus
/// one per RET of `Read`).
const MAX_ATTACHED: usize = 64;
/// Most files remembered as not probeable before the memory is cleared
/// (they are then looked at again once).
const MAX_REJECTED: usize = 4096;

/// A file mapped executable by a process: (device, inode) identify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub dev: u64,
    pub inode: u64,
    /// The first mapping of it (`start-end`, hex, as in the maps): the
    /// name of its /proc/PID/map_files entry.
    pub range: String,
    /// The path as the process sees it.
    pub path: String,
    /// Named like OpenSSL's library: failing to probe it is worth a warning.
    pub libssl: bool,
}

/// Executable mappings of `libssl*.so*` or of `exe`, once per file, from
/// the text of /proc/PID/maps.
pub fn candidates(maps: &str, exe: Option<&str>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for line in maps.lines() {
        let mut f = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(_off), Some(dev), Some(inode), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = path.trim_start();
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        let Some(dev) = parse_dev(dev) else { continue };
        let name = path.rsplit('/').next().unwrap_or(path);
        let libssl = name.starts_with("libssl") && name.contains(".so");
        if !libssl && exe != Some(path) {
            continue;
        }
        if out.iter().any(|c| c.dev == dev && c.inode == inode) {
            continue;
        }
        out.push(Candidate {
            dev,
            inode,
            range: range.to_string(),
            path: path.to_string(),
            libssl,
        });
    }
    out
}

/// `fd:01` (hex major:minor) as one number.
fn parse_dev(s: &str) -> Option<u64> {
    let (maj, min) = s.split_once(':')?;
    Some((u64::from_str_radix(maj, 16).ok()? << 32) | u64::from_str_radix(min, 16).ok()?)
}

/// The first re-read of a process's mappings; each read that finds no new
/// file doubles the wait, up to `RESCAN_MAX`.
const RESCAN_MIN: Duration = Duration::from_millis(500);
/// A library a scanned process loads late (Python imports `ssl` on
/// demand) is found within this.
const RESCAN_MAX: Duration = Duration::from_secs(2);
/// Tick jitter: a read due this close to now is done now rather than a
/// whole scan interval later.
const RESCAN_SLACK: Duration = Duration::from_millis(125);

/// When each process's mappings are read again. Reading /proc/PID/maps
/// costs ~100 µs of kernel time a process, and every tick re-read them all
/// (an idle agent spent ~1 ms/s on two nginx processes). A probed file
/// covers every process that maps it, so only a file never seen matters:
/// a new process, or one that exec'd another program, is read at once;
/// one whose mappings gave nothing new waits 0.5, 1, then 2 s.
#[derive(Default)]
struct RescanSchedule {
    /// Bounded by the processes of the last scan (others are dropped).
    procs: FxHashMap<u32, Rescan>,
}

struct Rescan {
    exe: Option<PathBuf>,
    next: Instant,
    interval: Duration,
}

impl RescanSchedule {
    /// Whether `pid`, running `exe`, is to be read now.
    fn due(&self, pid: u32, exe: Option<&Path>, now: Instant) -> bool {
        self.procs
            .get(&pid)
            .is_none_or(|r| r.exe.as_deref() != exe || now + RESCAN_SLACK >= r.next)
    }

    /// `pid` was read now; `found` tells whether it showed a file not seen
    /// before (which resets its wait).
    fn read(&mut self, pid: u32, exe: Option<&Path>, found: bool, now: Instant) {
        let r = self.procs.entry(pid).or_insert(Rescan {
            exe: None,
            next: now,
            interval: RESCAN_MIN,
        });
        if found || r.exe.as_deref() != exe {
            r.interval = RESCAN_MIN;
        }
        r.exe = exe.map(Path::to_path_buf);
        r.next = now + r.interval;
        r.interval = (r.interval * 2).min(RESCAN_MAX);
    }

    /// Forgets the processes not in this scan (exited, or unselected).
    fn retain(&mut self, live: &FxHashSet<u32>) {
        self.procs.retain(|pid, _| live.contains(pid));
    }
}

/// The files already looked at, and the attach decisions.
pub struct OpensslFiles {
    /// Decrypt OpenSSL libraries from their secrets when possible.
    decrypt: bool,
    attached: FxHashSet<(u64, u64)>,
    rejected: FxHashSet<(u64, u64)>,
    limit_warned: bool,
    metrics: SelfMetrics,
    /// Shared libssl files whose layout may be an executable's.
    donors: Donors,
    /// Layouts learned, by (device, inode) of the file (a donor is
    /// calibrated once).
    layouts: HashMap<(u64, u64), (SslLayout, String)>,
    rescans: RescanSchedule,
}

impl OpensslFiles {
    pub fn new(decrypt: bool, metrics: SelfMetrics) -> Self {
        OpensslFiles {
            decrypt,
            attached: FxHashSet::default(),
            rejected: FxHashSet::default(),
            limit_warned: false,
            metrics,
            donors: Donors::default(),
            layouts: HashMap::new(),
            rescans: RescanSchedule::default(),
        }
    }

    /// Looks at the executable mappings of `pids` and attaches the probes
    /// to every new OpenSSL file with `attach`.
    pub fn scan(&mut self, pids: impl IntoIterator<Item = u32>, attach: &mut dyn TlsAttach) {
        let known = self.attached.len() + self.rejected.len();
        let now = Instant::now();
        let mut live = FxHashSet::default();
        for pid in pids {
            live.insert(pid);
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            if !self.rescans.due(pid, exe.as_deref(), now) {
                continue;
            }
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue; // gone, or a kernel thread
            };
            let before = self.attached.len() + self.rejected.len();
            for c in candidates(&maps, exe.as_deref().and_then(Path::to_str)) {
                self.consider(pid, &c, attach);
            }
            let found = self.attached.len() + self.rejected.len() != before;
            self.rescans.read(pid, exe.as_deref(), found, now);
        }
        self.rescans.retain(&live);
        if self.attached.len() + self.rejected.len() != known {
            // Reading a large executable's symbols (node: ~100 MB, by
            // libbpf and the fingerprint) leaves megabytes of freed heap
            // that glibc keeps mapped; give them back.
            // SAFETY: malloc_trim only releases free memory of the heap.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    fn consider(&mut self, pid: u32, c: &Candidate, attach: &mut dyn TlsAttach) {
        if self.admit(c) {
            self.consider_opened(pid, c, attach);
        }
    }

    /// Whether `c` is new and within the limit (a file over it is
    /// remembered as rejected).
    fn admit(&mut self, c: &Candidate) -> bool {
        let key = (c.dev, c.inode);
        if self.attached.contains(&key) || self.rejected.contains(&key) {
            return false;
        }
        if self.attached.len() >= MAX_ATTACHED {
            self.count("limit");
            if !self.limit_warned {
                self.limit_warned = true;
                warn!(file = %c.path, limit = MAX_ATTACHED,
                    "TLS capture: too many OpenSSL files probed already; this one and later ones are not");
            }
            self.reject(key);
            return false;
        }
        true
    }

    fn consider_opened(&mut self, pid: u32, c: &Candidate, attach: &mut dyn TlsAttach) {
        let key = (c.dev, c.inode);
        // Opened once, as the mapping's own file: everything below reads
        // and probes this descriptor (/proc/self/fd/N), never the name,
        // which the process controls (it may swap a directory or a
        // symlink between reads).
        let file = match procfs::open_mapped(pid, &c.range, &c.path, c.dev, c.inode) {
            Ok(f) => f,
            Err(e) => {
                self.count("unsafe_file");
                warn!(file = %c.path, pid, reason = %chain(&e),
                    "TLS capture: not probing this file (its TLS traffic stays unparsed; plaintext capture continues)");
                self.reject(key);
                return;
            }
        };
        self.consider_file(pid, c, file.path(), attach);
    }

    /// `consider` for the file opened at `path` (`/proc/self/fd/N`).
    fn consider_file(&mut self, pid: u32, c: &Candidate, path: &Path, attach: &mut dyn TlsAttach) {
        let key = (c.dev, c.inode);
        if !c.libssl && attach.is_go(path) {
            self.consider_go(pid, c, path, attach);
            return;
        }
        if !c.libssl && self.decrypt {
            match self.try_borrow(path, attach) {
                Ok((donor, version)) => {
                    self.attached.insert(key);
                    self.count("attached");
                    info!(file = %c.path, pid, %version, layout_from = %donor.display(),
                        "TLS capture: OpenSSL connection probe attached (decrypting with the connections' secrets)");
                    return;
                }
                // No OpenSSL accessors: an ordinary executable, or one
                // whose OpenSSL hides them (the per-call probes decide).
                Err(DecryptSetupError::Donor(DonorError::Fingerprint(_))) => {}
                Err(e) => {
                    self.count("no_decrypt");
                    info!(file = %c.path, pid, reason = %chain(&e),
                        "TLS capture: cannot decrypt this executable's connections; probing its SSL_read/SSL_write calls instead");
                }
            }
        }
        if c.libssl && self.decrypt {
            match self.try_decrypt(pid, c, path, attach) {
                Ok(version) => {
                    self.attached.insert(key);
                    self.count("attached");
                    info!(file = %c.path, pid, %version,
                        "TLS capture: OpenSSL connection probe attached (decrypting with the connections' secrets)");
                    return;
                }
                Err(e @ DecryptSetupError::Calibrate(CalibrateError::Untrusted(_))) => {
                    // Once per file: it is then attached or rejected.
                    self.count("untrusted");
                    warn!(file = %c.path, pid, reason = %chain(&e),
                        "TLS capture: not running this library to learn its layout; probing its SSL_read/SSL_write calls instead");
                }
                Err(e) => {
                    self.count("no_decrypt");
                    info!(file = %c.path, pid, reason = %chain(&e),
                        "TLS capture: cannot decrypt this library's connections; probing its SSL_read/SSL_write calls instead");
                }
            }
        }
        match attach.openssl(path) {
            Ok(p) => {
                self.attached.insert(key);
                self.count("attached");
                info!(file = %c.path, pid, ex_functions = p.ex, "TLS capture: OpenSSL probes attached");
            }
            Err(TlsAttachError::NoSymbol(_)) if !c.libssl => {
                // An ordinary executable without OpenSSL inside.
                self.reject(key);
            }
            Err(e) => {
                self.count("failed");
                warn!(file = %c.path, pid, reason = %chain(&e),
                    "TLS capture: cannot probe this file (its TLS traffic stays unparsed; plaintext capture continues)");
                self.reject(key);
            }
        }
    }

    /// Calibration runs the file as the agent sees it, so only for a
    /// process in the agent's own mount namespace.
    fn try_decrypt(
        &mut self,
        pid: u32,
        c: &Candidate,
        path: &Path,
        attach: &mut dyn TlsAttach,
    ) -> Result<String, DecryptSetupError> {
        let ns = |p: String| std::fs::read_link(p).ok();
        let mine = ns("/proc/self/ns/mnt".to_string());
        if mine.is_none() || mine != ns(format!("/proc/{pid}/ns/mnt")) {
            return Err(DecryptSetupError::OtherNamespace);
        }
        let host = Path::new(&c.path);
        // The calibration loads the library by name: only a name root
        // alone controls (sslcal::trusted_library), and only if it still
        // names the file mapped and opened.
        let (_, (dev, inode)) = crate::discovery::sslcal::trusted_library(host)?;
        let dev = (u64::from(libc::major(dev)) << 32) | u64::from(libc::minor(dev));
        if (dev, inode) != (c.dev, c.inode) {
            return Err(DecryptSetupError::NotTheMappedFile);
        }
        let (layout, version) = self.layout_of(host, attach)?;
        attach.openssl_handshake(path, &layout, false)?;
        self.donors.calibrated(host);
        Ok(version)
    }

    /// The layout of `libssl` (as the agent sees it), calibrated once per
    /// file (by inode: a library upgraded in place is a new file).
    fn layout_of(
        &mut self,
        libssl: &Path,
        attach: &mut dyn TlsAttach,
    ) -> Result<(SslLayout, String), CalibrateError> {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(libssl).ok().map(|m| (m.dev(), m.ino()));
        if let Some(known) = id.and_then(|id| self.layouts.get(&id)) {
            return Ok(known.clone());
        }
        let learned = attach.calibrate(libssl)?;
        if let Some(id) = id
            && self.layouts.len() < MAX_ATTACHED * 2
        {
            self.layouts.insert(id, learned.clone());
        }
        Ok(learned)
    }

    /// OpenSSL linked into the executable at `path`: the connection probe
    /// with the layout of a donor libssl (see `donor`). Returns the donor
    /// and the version text.
    fn try_borrow(
        &mut self,
        path: &Path,
        attach: &mut dyn TlsAttach,
    ) -> Result<(PathBuf, String), DecryptSetupError> {
        let mut donors = std::mem::take(&mut self.donors);
        let found = donors.find(path, &mut |libssl| {
            self.layout_of(libssl, attach).ok().map(|(_, v)| v)
        });
        self.donors = donors;
        let donor = found?.libssl;
        let (layout, version) = self.layout_of(&donor, attach)?;
        attach.openssl_handshake(path, &layout, true)?;
        Ok((donor, version))
    }

    fn consider_go(&mut self, pid: u32, c: &Candidate, path: &Path, attach: &mut dyn TlsAttach) {
        let key = (c.dev, c.inode);
        match gotls::probe(path, &mut |p, probes| attach.go(p, probes)) {
            Ok(GoProbed {
                version,
                links,
                functions_from,
                layout_from,
            }) => {
                self.attached.insert(key);
                self.count("attached");
                info!(file = %c.path, pid, go = %version, uprobes = links, functions_from, layout_from,
                    "TLS capture: Go crypto/tls probes attached");
            }
            Err(e) => {
                self.count(match e {
                    GoProbeError::Analyze(ratatosk_goinfo::GoTlsError::NoCryptoTls) => "no_tls",
                    _ => "failed",
                });
                warn!(file = %c.path, pid, reason = %chain(&e),
                    "TLS capture: cannot probe this Go binary (its TLS traffic stays unparsed; plaintext capture continues)");
                self.reject(key);
            }
        }
    }

    fn reject(&mut self, key: (u64, u64)) {
        if self.rejected.len() >= MAX_REJECTED {
            debug!("forgetting files found not probeable");
            self.rejected.clear();
        }
        self.rejected.insert(key);
    }

    fn count(&self, reason: &'static str) {
        self.metrics
            .tls_files
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d4a0a00000-55d4a0a30000 r--p 00000000 fd:01 1311 /usr/sbin/nginx
55d4a0a30000-55d4a0b30000 r-xp 00030000 fd:01 1311 /usr/sbin/nginx
7f0000000000-7f0000020000 r--p 00000000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000020000-7f0000080000 r-xp 00020000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000100000-7f0000200000 r-xp 00020000 fd:01 3333 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000300000-7f0000310000 r-xp 00000000 00:1f 4444 /tmp/my lib/libssl.so.1.1
7f0000400000-7f0000410000 r-xp 00000000 fd:01 5555 /tmp/libssl.so.3 (deleted)
7f0000500000-7f0000510000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    /// A new process is read at once; one that shows nothing new waits
    /// 0.5, 1, then 2 s; a new file or another program resets the wait;
    /// processes gone from a scan are forgotten.
    #[test]
    fn rescans_back_off_until_something_changes() {
        let mut r = RescanSchedule::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let py = Some(Path::new("/usr/bin/python3"));
        assert!(r.due(1, py, t0));
        r.read(1, py, false, t0);
        assert!(!r.due(1, py, at(300)));
        assert!(r.due(1, py, at(400)), "within the tick slack of 500 ms");
        r.read(1, py, false, at(500));
        assert!(!r.due(1, py, at(1300)));
        assert!(r.due(1, py, at(1500)));
        r.read(1, py, false, at(1500));
        r.read(1, py, false, at(3500));
        assert!(!r.due(1, py, at(5300)), "capped at 2 s");
        assert!(r.due(1, py, at(5500)));
        // Another program in the same pid: read at once.
        assert!(r.due(1, Some(Path::new("/usr/sbin/nginx")), at(3600)));
        // A new file found: back to 0.5 s.
        r.read(1, py, true, at(5500));
        assert!(r.due(1, py, at(6000)));
        r.read(2, None, false, at(6000));
        r.retain(&[2].into_iter().collect());
        assert!(r.due(1, py, at(6000)) && !r.due(2, None, at(6100)));
        assert_eq!(r.procs.len(), 1);
    }

    #[test]
    fn finds_libssl_and_the_executable_once_each() {
        let c = candidates(MAPS, Some("/usr/sbin/nginx"));
        let paths: Vec<(&str, bool)> = c.iter().map(|c| (c.path.as_str(), c.libssl)).collect();
        assert_eq!(
            paths,
            vec![
                ("/usr/sbin/nginx", false),
                ("/usr/lib/x86_64-linux-gnu/libssl.so.3", true),
                ("/tmp/my lib/libssl.so.1.1", true),
            ]
        );
        assert_eq!(c[1].dev, 0xfd << 32 | 1);
        assert_eq!(c[1].inode, 2222);
        assert_eq!(c[2].dev, 0x1f);
    }

    #[test]
    fn each_file_is_attached_once_and_failures_are_remembered() {
        let mut files = OpensslFiles::new(false, SelfMetrics::default());
        let mut tried = Vec::new();
        let c = candidates(MAPS, Some("/usr/sbin/nginx"));
        struct Fake<'a>(&'a mut Vec<PathBuf>);
        impl TlsAttach for Fake<'_> {
            fn openssl(&mut self, p: &Path) -> Result<OpensslProbes, TlsAttachError> {
                self.0.push(p.to_path_buf());
                // nginx (inode 1311) holds no OpenSSL.
                if p.ends_with("1311") {
                    Err(TlsAttachError::NoSymbol("SSL_read"))
                } else {
                    Ok(OpensslProbes { ex: true })
                }
            }
            fn go(&mut self, _: &Path, _: &GoTlsProbes) -> Result<usize, TlsAttachError> {
                unreachable!("no Go binary here")
            }
            fn openssl_handshake(
                &mut self,
                _: &Path,
                _: &SslLayout,
                _: bool,
            ) -> Result<(), TlsAttachError> {
                unreachable!("decryption is off")
            }
            fn is_go(&self, _: &Path) -> bool {
                false
            }
        }
        let mut attach = Fake(&mut tried);
        for _ in 0..3 {
            for cand in &c {
                if !files.admit(cand) {
                    continue;
                }
                let fd_path = PathBuf::from(format!("/proc/self/fd/{}", cand.inode));
                files.consider_file(42, cand, &fd_path, &mut attach);
            }
        }
        assert_eq!(tried.len(), 3, "{tried:?}");
        assert_eq!(tried[1], PathBuf::from("/proc/self/fd/2222"));
        assert_eq!(files.attached.len(), 2);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(candidates("nonsense\n\n1 2 3\n", None).is_empty());
        assert!(candidates("a r-xp 0 zz:01 12 /libssl.so.3\n", None).is_empty());
    }
}
