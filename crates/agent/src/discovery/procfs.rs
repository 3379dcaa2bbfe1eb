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
fn listener(line: &str) -> Option<(u64, u16)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_own_process() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert!(exe(me).is_some());
        assert!(netns(me).is_some());
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
    }
}
