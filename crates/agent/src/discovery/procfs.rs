//! Small readers over /proc for process discovery. Failures mean "gone or
//! not ours to read" and yield None/empty: a process can exit at any time.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

/// Every process id currently in /proc.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The executable path of a process (`/proc/PID/exe`), without the
/// " (deleted)" suffix the kernel adds for replaced binaries.
pub fn exe(pid: u32) -> Option<PathBuf> {
    let p = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = p.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => p,
    })
}

pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Most of a process's environment read: an unlimited stack lets it be
/// hundreds of MB, read on the reader thread. Variables past it are not
/// seen (OTEL_* come early in practice).
const MAX_ENVIRON: u64 = 1 << 20;

/// A process's environment as it was at exec (`/proc/PID/environ`), up to
/// MAX_ENVIRON bytes.
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut buf = Vec::new();
    f.take(MAX_ENVIRON).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Most `OTEL_RESOURCE_ATTRIBUTES` entries kept per process, and the
/// longest key or value: the variable is the process's to fill.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 64;
pub const MAX_ATTRIBUTE_BYTES: usize = 256;

/// What an OpenTelemetry SDK in the process would read of its own
/// environment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, values percent-encoded),
    /// bounded; oversized or malformed entries are skipped.
    pub resource_attributes: Vec<(String, String)>,
}

impl OtelEnv {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.resource_attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the OpenTelemetry variables from a NUL-separated environment.
pub fn otel_env(environ: &[u8]) -> OtelEnv {
    let var = |name: &str| {
        environ.split(|&b| b == 0).find_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            (k == name && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    let mut resource_attributes = Vec::new();
    if let Some(attrs) = var("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in attrs.split(',') {
            if resource_attributes.len() >= MAX_RESOURCE_ATTRIBUTES {
                break;
            }
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), percent_decode(v.trim()));
            if k.is_empty()
                || v.is_empty()
                || k.len() > MAX_ATTRIBUTE_BYTES
                || v.len() > MAX_ATTRIBUTE_BYTES
            {
                continue;
            }
            // Later entries of a repeated key win, as in the SDKs.
            resource_attributes.retain(|(old, _): &(String, String)| old != k);
            resource_attributes.push((k.to_string(), v));
        }
    }
    OtelEnv {
        // Bounded like the attributes: it becomes a label and a key.
        service_name: var("OTEL_SERVICE_NAME").filter(|n| n.len() <= MAX_ATTRIBUTE_BYTES),
        resource_attributes,
    }
}

/// The parent process id (`/proc/PID/stat`, after the command name).
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Socket inodes open in a process.
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let target = fs::read_link(e.ok()?.path()).ok()?;
        let s = target.to_str()?;
        s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Network namespace identity of a process.
pub fn netns(pid: u32) -> Option<u64> {
    let l = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let s = l.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Listening TCP sockets (inode -> local port) in the network namespace of
/// `pid`, from its /proc/PID/net/tcp and tcp6.
/// Read line by line: a host with many sockets has files of tens of MB.
pub fn listening_sockets(pid: u32) -> HashMap<u64, u16> {
    use std::io::BufRead;
    let mut out = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(f) = fs::File::open(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        let mut header = true;
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if !std::mem::take(&mut header)
                && let Some((inode, port)) = listener(&line)
            {
                out.insert(inode, port);
            }
            line.clear();
        }
    }
    out
}

/// Parses /proc/net/tcp{,6} text, keeping sockets in state LISTEN (0A).
#[cfg(test)]
pub fn parse_listeners(text: &str, out: &mut HashMap<u64, u16>) {
    out.extend(text.lines().skip(1).filter_map(listener));
}

/// One /proc/net/tcp{,6} line: (inode, local port) if it listens.
pub(crate) fn listener(line: &str) -> Option<(u64, u16)> {
    // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
    let mut f = line.split_whitespace();
    let local = f.nth(1)?;
    let state = f.nth(1)?;
    let inode = f.nth(5)?;
    if state != "0A" {
        return None;
    }
    let port = local
        .rsplit_once(':')
        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())?;
    let inode = inode.parse::<u64>().ok().filter(|&i| i != 0)?;
    Some((inode, port))
}

/// A file a process maps, opened once: what is analysed and probed is
/// this descriptor (through `/proc/self/fd/N`, which the kernel and libbpf
/// resolve to the open file, not to a name), so a process that renames or
/// swaps the path after its maps were read cannot substitute another file.
pub struct MappedFile {
    /// Kept open: `path` names it.
    _file: fs::File,
    path: PathBuf,
}

impl MappedFile {
    /// `/proc/self/fd/N` for this descriptor: valid while `self` lives.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Why a mapped file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum MappedFileError {
    #[error("opening the mapped file failed")]
    Open(#[source] std::io::Error),
    #[error("it lives on a FUSE file system (a FUSE daemon can make opening or reading it hang)")]
    Fuse,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("the file opened is not the one mapped (device and inode differ: replaced or swapped)")]
    Replaced,
}

/// Opens the file `pid` maps at `range` (`start-end`, as in its maps), which
/// the maps named `path` with device `dev` (major << 32 | minor) and inode
/// `inode`. `/proc/PID/map_files/RANGE` opens the mapping's own file, not
/// a name (it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE); without it,
/// `path` is resolved inside the process's root (`openat2` with
/// RESOLVE_IN_ROOT, no magic links) and the result must be the same
/// (device, inode). O_NONBLOCK: a FIFO put under the name opens at once (and
/// is refused as not regular) instead of blocking the agent; FUSE mounts
/// are refused before opening, since their open goes to a user daemon.
pub fn open_mapped(
    pid: u32,
    range: &str,
    path: &str,
    dev: u64,
    inode: u64,
) -> Result<MappedFile, MappedFileError> {
    if mount_fstype(pid, dev).is_some_and(|t| t == "fuse" || t.starts_with("fuse.")) {
        return Err(MappedFileError::Fuse);
    }
    let by_mapping = match map_files_name(range) {
        Some(name) => open_nonblocking(&format!("/proc/{pid}/map_files/{name}")),
        None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
    };
    let file = match by_mapping {
        Ok(f) => f,
        // No CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE (EPERM), or the mapping
        // changed since the maps were read (ENOENT): by name, confined to
        // the process's root; the (device, inode) check below still holds.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::ENOENT)
            ) =>
        {
            open_in_root(pid, path).map_err(MappedFileError::Open)?
        }
        Err(e) => return Err(MappedFileError::Open(e)),
    };
    check_mapped(&file, dev, inode)?;
    use std::os::fd::AsRawFd;
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok(MappedFile { _file: file, path })
}

/// The map_files entry of a maps range: maps pads addresses to 8 hex
/// digits (`00400000-00c00000`, a non-PIE executable such as node), the
/// entry names do not (`400000-c00000`).
fn map_files_name(range: &str) -> Option<String> {
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    Some(format!("{start:x}-{end:x}"))
}

/// The opened file is a regular file and the one the mapping names.
fn check_mapped(file: &fs::File, dev: u64, inode: u64) -> Result<(), MappedFileError> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().map_err(MappedFileError::Open)?;
    if !m.file_type().is_file() {
        return Err(MappedFileError::NotRegular);
    }
    let st_dev = (u64::from(libc::major(m.dev())) << 32) | u64::from(libc::minor(m.dev()));
    if st_dev != dev || m.ino() != inode {
        return Err(MappedFileError::Replaced);
    }
    Ok(())
}

const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;

fn open_nonblocking(path: &str) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS & !libc::O_RDONLY)
        .open(path)
}

/// `path` (absolute, as the process sees it) resolved inside the process's
/// root directory: `..` and absolute symlinks stay inside it, magic links
/// (`/proc/…/fd/…`) are refused.
pub fn open_in_root(pid: u32, path: &str) -> std::io::Result<fs::File> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    // A handle on the directory, never read: O_PATH.
    let root = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root"))?;
    let rel = CString::new(path.trim_start_matches('/'))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain integers; all-zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = OPEN_FLAGS as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    use std::os::fd::AsRawFd;
    // SAFETY: openat2 reads `how` (of the size passed) and the
    // NUL-terminated `rel`, both alive across the call; it returns a new
    // descriptor this function then owns, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by the kernel, owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    Ok(fs::File::from(fd))
}

/// The file system type of the mount with device `dev` (major << 32 |
/// minor) in `pid`'s mount namespace, from its /proc/PID/mountinfo.
pub fn mount_fstype(pid: u32, dev: u64) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    mountinfo_fstype(&text, dev).map(str::to_string)
}

/// One mountinfo text's type for device `dev`: `ID PARENT MAJ:MIN ROOT
/// POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER_OPTIONS`.
pub fn mountinfo_fstype(text: &str, dev: u64) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut f = line.split(' ');
        let (maj, min) = f.nth(2)?.split_once(':')?;
        let d = (maj.parse::<u64>().ok()? << 32) | min.parse::<u64>().ok()?;
        if d != dev {
            return None;
        }
        let (_, after) = line.split_once(" - ")?;
        after.split(' ').next()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_files_names_have_no_padding() {
        let name = |r: &str| map_files_name(r).unwrap_or_default();
        assert_eq!(name("00400000-00401000"), "400000-401000");
        assert_eq!(
            name("7f1c2a000000-7f1c2a021000"),
            "7f1c2a000000-7f1c2a021000"
        );
        assert_eq!(name("00000000-00001000"), "0-1000");
        assert_eq!(map_files_name("zz-1"), None);
    }

    #[test]
    fn parses_proc_net_tcp_listeners() {
        // Two listeners (ports 0x1F90 = 8080 and 0x1F91 = 8081) and one
        // established connection, as /proc/net/tcp prints them.
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:1F90 0100007F:D2F2 01 00000000:00000000 00:00000000 00000000     0        0 12347 1 0000000000000000 20 4 30 10 -1\n";
        let mut m = HashMap::new();
        parse_listeners(text, &mut m);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&12345], 8080);
        assert_eq!(m[&12346], 8081);
    }

    #[test]
    fn otel_env_as_an_sdk_would_read_it() {
        let env = b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,service.name=my%20shop,bad,service.name=shop\0";
        let o = otel_env(env);
        assert_eq!(o.service_name, None);
        assert_eq!(o.attribute("service.name"), Some("shop"));
        assert_eq!(o.attribute("deployment.environment"), Some("prod"));
        assert_eq!(o.resource_attributes.len(), 2);
        let o =
            otel_env(b"OTEL_SERVICE_NAME=checkout\0OTEL_RESOURCE_ATTRIBUTES=service.name=other\0");
        assert_eq!(o.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            otel_env(b"OTEL_SERVICE_NAME=\0HOME=/\0"),
            OtelEnv::default()
        );
        assert_eq!(otel_env(b""), OtelEnv::default());
    }

    #[test]
    fn resource_attributes_are_bounded() {
        let mut attrs: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        attrs.insert(0, format!("long={}", "x".repeat(MAX_ATTRIBUTE_BYTES + 1)));
        let env = format!("OTEL_RESOURCE_ATTRIBUTES={}\0", attrs.join(","));
        let o = otel_env(env.as_bytes());
        assert_eq!(o.resource_attributes.len(), MAX_RESOURCE_ATTRIBUTES);
        assert_eq!(o.attribute("long"), None);
    }

    #[test]
    fn map_files_names_are_unpadded() {
        assert_eq!(
            map_files_name("00400000-00c00000").as_deref(),
            Some("400000-c00000")
        );
        assert_eq!(
            map_files_name("7f0000020000-7f0000080000").as_deref(),
            Some("7f0000020000-7f0000080000")
        );
        assert_eq!(map_files_name("zz-1"), None);
        assert_eq!(map_files_name("100"), None);
    }

    #[test]
    fn mountinfo_types_by_device() {
        let text = "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    40 22 0:45 / /mnt/f rw,nosuid master:2 - fuse.sshfs host:/ rw\n\
                    41 22 0:46 / /x rw - tmpfs tmpfs rw\n";
        assert_eq!(mountinfo_fstype(text, 253 << 32 | 1), Some("ext4"));
        assert_eq!(mountinfo_fstype(text, 45), Some("fuse.sshfs"));
        assert_eq!(mountinfo_fstype(text, 7), None);
        assert_eq!(mountinfo_fstype("garbage\n1 2 x:y\n", 0), None);
    }

    /// The test binary's own executable mapping opens as itself (through
    /// map_files as root, by name inside the root otherwise); another
    /// inode, or a FIFO under the name, is refused without blocking.
    #[test]
    fn opens_the_mapped_file_and_nothing_else() {
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let line = maps.lines().find(|l| l.ends_with(exe)).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        let (maj, min) = f[3].split_once(':').unwrap();
        let dev =
            u64::from_str_radix(maj, 16).unwrap() << 32 | u64::from_str_radix(min, 16).unwrap();
        let inode: u64 = f[4].parse().unwrap();
        let me = std::process::id();
        let m = open_mapped(me, f[0], exe, dev, inode).unwrap();
        assert!(m.path().starts_with("/proc/self/fd/"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(m.path()).unwrap().ino(), inode);
        assert!(matches!(
            open_mapped(me, f[0], exe, dev, inode + 1),
            Err(MappedFileError::Replaced)
        ));
        // By name inside the root: the same file.
        let byname = open_in_root(me, exe).unwrap();
        assert!(check_mapped(&byname, dev, inode).is_ok());
        // A FIFO opens at once (O_NONBLOCK) and is not a regular file.
        let dir = std::env::temp_dir().join(format!("ratatosk-fifo-{me}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let fifo = dir.join("libssl.so.3");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path alive across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = open_in_root(me, fifo.to_str().unwrap()).unwrap();
        assert!(matches!(
            check_mapped(&f, dev, inode),
            Err(MappedFileError::NotRegular)
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert!(exe(me).is_some());
        assert!(netns(me).is_some());
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
    }
}
