//! `http.route` for requests without a user-given route: the path with its
//! identifier-like segments collapsed, so that /users/123 and /users/456
//! share one route and metric labels stay bounded.

use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

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

/// Paths remembered per service before the path cache starts over.
const PATH_CACHE: usize = 4096;

#[derive(Default)]
struct ServiceRoutes {
    /// Distinct routes admitted, at most `max`.
    routes: HashSet<Arc<str>>,
    /// Path -> route already decided, so a repeated path costs a lookup
    /// and a reference count, not a heuristic pass and an allocation.
    by_path: HashMap<Box<str>, Arc<str>>,
}

/// Routes per service: the heuristic applied once per distinct path, and a
/// cap on distinct routes beyond which they fold into `/**`.
pub struct Routes {
    max: usize,
    services: HashMap<Box<str>, ServiceRoutes>,
    overflow: Arc<str>,
}

impl Routes {
    pub fn new(max: usize) -> Self {
        Routes {
            max,
            services: HashMap::default(),
            overflow: Arc::from(OVERFLOW_ROUTE),
        }
    }

    /// The route of `path` for `service`, and whether it was folded by the
    /// cap.
    pub fn route(&mut self, service: &str, path: &str) -> (Arc<str>, bool) {
        if !self.services.contains_key(service) {
            self.services
                .insert(service.into(), ServiceRoutes::default());
        }
        let Some(svc) = self.services.get_mut(service) else {
            return (self.overflow.clone(), true);
        };
        if let Some(r) = svc.by_path.get(path) {
            let folded = Arc::ptr_eq(r, &self.overflow);
            return (r.clone(), folded);
        }
        let candidate = heuristic(path);
        let route = match svc.routes.get(candidate.as_str()) {
            Some(r) => r.clone(),
            None if svc.routes.len() >= self.max => self.overflow.clone(),
            None => {
                let r: Arc<str> = Arc::from(candidate);
                svc.routes.insert(r.clone());
                r
            }
        };
        if svc.by_path.len() >= PATH_CACHE {
            svc.by_path.clear();
        }
        svc.by_path.insert(path.into(), route.clone());
        let folded = Arc::ptr_eq(&route, &self.overflow);
        (route, folded)
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
        let mut r = Routes::new(2);
        let mut route = |svc: &str, path: &str| {
            let (route, folded) = r.route(svc, path);
            (route.to_string(), folded)
        };
        assert_eq!(route("a", "/x"), ("/x".into(), false));
        assert_eq!(route("a", "/users/1"), ("/users/*".into(), false));
        // Another id: same route, no new slot taken.
        assert_eq!(route("a", "/users/2"), ("/users/*".into(), false));
        assert_eq!(route("a", "/y"), (OVERFLOW_ROUTE.into(), true));
        assert_eq!(
            route("a", "/y"),
            (OVERFLOW_ROUTE.into(), true),
            "cached as folded"
        );
        assert_eq!(route("a", "/x"), ("/x".into(), false));
        assert_eq!(route("b", "/y"), ("/y".into(), false));
    }
}
