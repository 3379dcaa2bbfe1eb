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

/// A process's environment as it was at exec (`/proc/PID/environ`).
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The service name an OpenTelemetry SDK in the process would use, from its
/// NUL-separated environment: `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, values percent-encoded).
pub fn service_name_from_env(environ: &[u8]) -> Option<String> {
    let var = |name: &str| {
        environ.split(|&b| b == 0).find_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            (k == name && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    if let Some(name) = var("OTEL_SERVICE_NAME") {
        return Some(name);
    }
    let attrs = var("OTEL_RESOURCE_ATTRIBUTES")?;
    attrs.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == "service.name" && !v.trim().is_empty()).then(|| percent_decode(v.trim()))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (c, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
pub fn listening_sockets(pid: u32) -> HashMap<u64, u16> {
    let mut out = HashMap::new();
    for file in ["tcp", "tcp6"] {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            parse_listeners(&text, &mut out);
        }
    }
    out
}

/// Parses /proc/net/tcp{,6} text, keeping sockets in state LISTEN (0A).
pub fn parse_listeners(text: &str, out: &mut HashMap<u64, u16>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
        let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let Some(port) = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if let Ok(inode) = inode.parse::<u64>()
            && inode != 0
        {
            out.insert(inode, port);
        }
    }
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
    fn service_name_as_an_sdk_would_pick_it() {
        let env = b"PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,service.name=my%20shop\0";
        assert_eq!(service_name_from_env(env).as_deref(), Some("my shop"));
        let env = b"OTEL_SERVICE_NAME=checkout\0OTEL_RESOURCE_ATTRIBUTES=service.name=other\0";
        assert_eq!(service_name_from_env(env).as_deref(), Some("checkout"));
        assert_eq!(service_name_from_env(b"OTEL_SERVICE_NAME=\0HOME=/\0"), None);
        assert_eq!(service_name_from_env(b""), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert!(exe(me).is_some());
        assert!(netns(me).is_some());
    }
}
