//! Fuzz target bodies (feature `fuzzing`, used by ../../fuzz): the parsers
//! of the agent a traced process or a peer feeds: ring-buffer records
//! (kernel-written, but carrying the process's bytes), the route heuristic
//! and matcher (paths come from requests), and the /proc readers
//! (environ, maps, net/tcp, mountinfo: the process writes its environment
//! and names its files). Each checks its invariants with assertions.

use crate::config::export::{RouteSettings, UnmatchedRoutes};
use crate::decode::{Record, decode};
use crate::discovery::{openssl, procfs};
use crate::spans::route::{Decision, Pattern, Routes, heuristic};

/// One ring-buffer record: decodes or is refused, never panics; a data
/// record's payload lies inside the record.
pub fn record(data: &[u8]) {
    match decode(data) {
        Ok(Record::Data(d)) => {
            assert!(d.payload.len() <= data.len());
            // The segments stand for the record exactly: every captured
            // byte once, and the bytes moved (a walked HTTP/2 record's
            // table is checked at decode).
            let (captured, moved) = d
                .segments()
                .fold((0usize, 0u64), |(c, m), s| (c + s.data.len(), m + s.len));
            assert_eq!(captured, d.payload.len());
            assert_eq!(moved, d.len);
            let _ = d.tuple.decode();
            let _ = format!("{d:?}");
        }
        Ok(Record::Exec { comm, filename, .. }) => {
            assert!(comm.len() + filename.len() <= data.len());
        }
        Ok(Record::TlsKeys(k)) => {
            // Debug never shows the secrets.
            let shown = format!("{k:?}");
            assert!(!shown.contains(&format!("{:?}", k.client_secret)));
        }
        Ok(other) => {
            let _ = format!("{other:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Route heuristic and matcher. Input: byte 0 picks the unmatched mode
/// and how many of the first lines are user patterns (`byte0 >> 2 & 7`);
/// the other lines are request paths.
pub fn route(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let npat = usize::from((head >> 2) & 7);
    let patterns: Vec<String> = lines.by_ref().take(npat).map(str::to_string).collect();
    for p in &patterns {
        if let Ok(pat) = Pattern::parse(p) {
            let _ = pat.matches(p);
        }
    }
    let settings = RouteSettings {
        patterns: patterns.clone(),
        ignored: patterns.iter().take(1).cloned().collect(),
        unmatched: match head & 3 {
            0 => UnmatchedRoutes::Heuristic,
            1 => UnmatchedRoutes::Path,
            _ => UnmatchedRoutes::Wildcard,
        },
        max_per_service: 8,
    };
    let mut routes = Routes::new(&settings).ok();
    for path in lines {
        let h = heuristic(path);
        // Folding is per segment: never more segments, and stable.
        assert!(
            h.split('/').count() <= path.split('/').count().max(2),
            "{path:?} -> {h:?}"
        );
        assert_eq!(heuristic(&h), h, "{path:?}");
        if let Some(r) = routes.as_mut() {
            match r.route("svc", path) {
                Decision::Route(route, _) => assert!(!route.is_empty()),
                Decision::Ignored => {}
                Decision::Unrouted => unreachable!("only a 404 is unrouted: {path:?}"),
            }
            // A 404 is unrouted unless a pattern or the ignore list names it.
            let _ = r.route_with_status("svc", path, 404);
        }
    }
}

/// The /proc text readers over arbitrary bytes: environ (NUL-separated),
/// maps, net/tcp and mountinfo lines.
pub fn proc_text(data: &[u8]) {
    let env = procfs::otel_env(data);
    assert!(env.resource_attributes.len() <= procfs::MAX_RESOURCE_ATTRIBUTES);
    for (k, v) in &env.resource_attributes {
        assert!(k.len() <= procfs::MAX_ATTRIBUTE_BYTES && v.len() <= procfs::MAX_ATTRIBUTE_BYTES);
    }
    let text = String::from_utf8_lossy(data);
    let exe = text.lines().next();
    for c in openssl::candidates(&text, exe) {
        assert!(c.path.starts_with('/') && text.contains(c.path.as_str()));
        assert!(c.range.len() < text.len());
    }
    for line in text.lines() {
        if let Some((inode, _port)) = procfs::listener(line) {
            assert_ne!(inode, 0);
        }
    }
    let dev = data
        .iter()
        .take(8)
        .fold(0u64, |a, b| a << 8 | u64::from(*b));
    let _ = procfs::mountinfo_fstype(&text, dev);
}
