//! `http.route` for requests without a user-given route: the path with its
//! identifier-like segments collapsed, so that /users/123 and /users/456
//! share one route and metric labels stay bounded.

use std::collections::{HashMap, HashSet};

/// Collapses numbers, UUIDs, hex ids and long random tokens to `*`.
pub fn heuristic(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path == "/" {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if looks_like_id(seg) {
            out.push('*');
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn looks_like_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return true; // 123
    }
    let hexish = b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    if hexish && digits > 0 && b.len() >= 8 {
        return true; // deadbeef01, UUIDs
    }
    // Long tokens mixing letters and digits (session ids, base64 keys).
    let alnum = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.'));
    alnum && b.len() >= 20 && digits * 5 >= b.len()
}

/// The value a route takes once a service has used up its cap.
pub const OVERFLOW_ROUTE: &str = "/**";

/// Caps the distinct routes per service; later ones fold into `/**`.
pub struct RouteCap {
    max: usize,
    seen: HashMap<String, HashSet<String>>,
}

impl RouteCap {
    pub fn new(max: usize) -> Self {
        RouteCap {
            max,
            seen: HashMap::new(),
        }
    }

    /// Returns the route to use and whether it was folded.
    pub fn admit(&mut self, service: &str, route: String) -> (String, bool) {
        // Look up before inserting: no key allocation on the common path.
        if !self.seen.contains_key(service) {
            self.seen.insert(service.to_string(), HashSet::new());
        }
        let Some(set) = self.seen.get_mut(service) else {
            return (route, false);
        };
        if set.contains(&route) {
            return (route, false);
        }
        if set.len() >= self.max {
            return (OVERFLOW_ROUTE.to_string(), true);
        }
        set.insert(route.clone());
        (route, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_ids() {
        assert_eq!(heuristic("/"), "/");
        assert_eq!(heuristic(""), "/");
        assert_eq!(heuristic("/hello"), "/hello");
        assert_eq!(heuristic("/users/123/orders/9"), "/users/*/orders/*");
        assert_eq!(heuristic("/o/550e8400-e29b-41d4-a716-446655440000"), "/o/*");
        assert_eq!(heuristic("/blob/deadbeef0123"), "/blob/*");
        assert_eq!(heuristic("/s/aZ3kQ9pL2mX8vB4nC7dR1t"), "/s/*");
        assert_eq!(heuristic("/static/app.js"), "/static/app.js");
        assert_eq!(heuristic("/api/v2/items"), "/api/v2/items");
        assert_eq!(heuristic("/x?id=5"), "/x");
    }

    #[test]
    fn caps_routes_per_service() {
        let mut c = RouteCap::new(2);
        assert_eq!(c.admit("a", "/1".into()), ("/1".into(), false));
        assert_eq!(c.admit("a", "/2".into()), ("/2".into(), false));
        assert_eq!(c.admit("a", "/3".into()), (OVERFLOW_ROUTE.into(), true));
        assert_eq!(c.admit("a", "/1".into()), ("/1".into(), false));
        assert_eq!(c.admit("b", "/3".into()), ("/3".into(), false));
    }
}
