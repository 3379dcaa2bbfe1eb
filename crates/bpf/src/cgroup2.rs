//! A cgroup v2 hierarchy to attach the sockops program to. Sockets
//! record the v2 cgroup of the task that creates them, which is the v2
//! root when nothing uses v2 (a host with only v1 mounted): a hierarchy
//! the agent mounts itself reaches every socket from its root.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the agent mounts cgroup2 when none is mounted.
pub const OWN_MOUNT: &str = "/run/ratatosk/cgroup2";

/// A cgroup2 mount point; unmounted on drop when the agent mounted it.
pub struct Cgroup2 {
    pub path: PathBuf,
    mounted: bool,
}

impl Cgroup2 {
    /// The host's cgroup2 root, else one mounted at [`OWN_MOUNT`].
    pub fn find_or_mount() -> io::Result<Cgroup2> {
        if let Some(path) = mounted_cgroup2()? {
            return Ok(Cgroup2 {
                path,
                mounted: false,
            });
        }
        let path = PathBuf::from(OWN_MOUNT);
        fs::create_dir_all(&path)?;
        let target = c_path(&path)?;
        // SAFETY: NUL-terminated strings that outlive the call; no data.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Cgroup2 {
            path,
            mounted: true,
        })
    }

    /// Whether the agent mounted it (and will unmount it).
    pub fn own(&self) -> bool {
        self.mounted
    }
}

impl Drop for Cgroup2 {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if let Ok(target) = c_path(&self.path) {
            // SAFETY: a NUL-terminated path that outlives the call. Lazy:
            // a descriptor still open on it must not keep it mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_dir(&self.path);
    }
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The first cgroup2 mount point in this mount namespace.
fn mounted_cgroup2() -> io::Result<Option<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().find_map(cgroup2_of_line))
}

/// `36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw`:
/// the mount point when the filesystem type (after " - ") is cgroup2 and
/// it is the hierarchy's root.
fn cgroup2_of_line(line: &str) -> Option<PathBuf> {
    let (pre, post) = line.split_once(" - ")?;
    if post.split(' ').next()? != "cgroup2" {
        return None;
    }
    let mut f = pre.split(' ');
    let root = f.nth(3)?;
    let point = f.next()?;
    (root == "/").then(|| PathBuf::from(unescape(point)))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(oct).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cgroup2_root_only() {
        let l = "36 25 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(cgroup2_of_line(l), Some(PathBuf::from("/sys/fs/cgroup")));
        let v1 = "30 25 0:26 / /sys/fs/cgroup/cpu rw shared:10 - cgroup cgroup rw,cpu";
        assert_eq!(cgroup2_of_line(v1), None);
        let sub = "40 25 0:30 /a /mnt/x rw - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_of_line(sub), None);
        let esc = "41 25 0:30 / /mnt/a\\040b rw - cgroup2 none rw";
        assert_eq!(cgroup2_of_line(esc), Some(PathBuf::from("/mnt/a b")));
    }
}
