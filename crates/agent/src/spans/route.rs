//! `http.route` for requests without a user-given route: the path with its
//! identifier-like segments collapsed, so that /users/123 and /users/456
//! share one route and metric labels stay bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use crate::config::export::{RouteSettings, UnmatchedRoutes};

/// Collapses numbers, UUIDs, hex ids, random tokens (base64, base64url,
/// JWTs) and e-mail addresses to `*`: they make routes unbounded, and the
/// tokens and addresses are often secrets or personal data.
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
    // An address (raw or percent-encoded @).
    if seg.contains('@') || seg.contains("%40") {
        return true;
    }
    let hexish = b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    if hexish && digits > 0 && b.len() >= 8 {
        return true; // deadbeef01, UUIDs
    }
    let token_chars = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'~' | b'%'));
    if !token_chars {
        return false;
    }
    // Long tokens mostly of digits (session ids, numeric keys).
    if b.len() >= 20 && digits * 5 >= b.len() {
        return true;
    }
    // A JWT: three base64url parts, the header a JSON object (`eyJ`).
    if seg.starts_with("eyJ") && seg.split('.').count() == 3 && b.len() >= 24 {
        return true;
    }
    b.len() >= 16 && random_looking(b)
}

/// Whether a run of base64/base64url-like text looks random rather than
/// written: random text switches between lower case, upper case and
/// digits at most characters, words and names rarely do (`hello-world-2024`
/// switches once, `aZ3kQ9pL2m` at every character). Separators (`-`, `_`,
/// `.`) start a new word and are not counted as switches; `=` padding ends
/// base64.
fn random_looking(b: &[u8]) -> bool {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
    }
    let class = |c: u8| match c {
        b'a'..=b'z' => Some(Class::Lower),
        b'A'..=b'Z' => Some(Class::Upper),
        b'0'..=b'9' => Some(Class::Digit),
        _ => None,
    };
    let (mut alnum, mut switches, mut kinds) = (0usize, 0usize, [false; 3]);
    let mut prev: Option<Class> = None;
    for &c in b {
        let k = class(c);
        if let Some(k) = k {
            alnum += 1;
            kinds[k as usize] = true;
            // An upper-case letter starting a lower-case word (CamelCase)
            // is how names are written, not a switch.
            let camel = prev == Some(Class::Upper) && k == Class::Lower;
            if prev.is_some_and(|p| p != k) && !camel {
                switches += 1;
            }
        }
        prev = k;
    }
    let mixed = kinds.iter().filter(|k| **k).count() >= 2;
    mixed && alnum >= 16 && switches * 4 >= alnum
}

/// The value a route takes once a service has used up its cap, and the
/// route of every unmatched path in `wildcard` mode.
pub const OVERFLOW_ROUTE: &str = "/**";

/// Paths remembered per service before its path cache starts over.
const PATH_CACHE: usize = 4096;
/// Paths remembered over all services (keys are up to `--capture-bytes`
/// long) before every path cache starts over.
const MAX_CACHED_PATHS: usize = 16384;
/// Services remembered before the route table starts over.
const MAX_SERVICES: usize = 4096;
/// Most user patterns (each is tried once per distinct path).
pub const MAX_PATTERNS: usize = 1024;

/// A slot under a cap (a route, a database label pair) unused for the
/// ageing time is given back, so that junk seen once cannot hold a
/// service's cap forever. The default is the Prometheus series TTL: by
/// then the slot's series have left `/metrics` too, so a service never
/// shows more than its cap of live values.
pub const DEFAULT_SLOT_TTL: Duration = Duration::from_secs(300);
/// Ageing is counted in epochs of a quarter of the TTL (at least 1 s), so
/// time is read once per reader drain, not per request.
const EPOCHS_PER_TTL: u64 = 4;

/// The coarse clock of slot ageing: advanced by the reader at each drain.
#[derive(Debug, Clone, Copy)]
pub struct Ageing {
    pub ttl: Duration,
    origin: Instant,
    epoch_len: Duration,
    /// Current epoch (starts at 1: 0 means "never used").
    pub now: u64,
}

impl Ageing {
    pub fn new(ttl: Duration) -> Self {
        Ageing {
            ttl,
            origin: Instant::now(),
            epoch_len: (ttl / EPOCHS_PER_TTL as u32).max(Duration::from_secs(1)),
            now: 1,
        }
    }

    /// Follows `now`; true when the epoch changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let e = 1
            + (now.saturating_duration_since(self.origin).as_nanos()
                / self.epoch_len.as_nanos().max(1)) as u64;
        let changed = e != self.now;
        self.now = e;
        changed
    }

    /// A slot last used in `epoch` is free to go.
    pub fn expired(&self, epoch: u64) -> bool {
        epoch.saturating_add(EPOCHS_PER_TTL) < self.now
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("route pattern `{pattern}`: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(Box<str>),
    /// `{name}`, `:name` or `*`: exactly one non-empty segment.
    Param,
    /// A trailing `*` or `**`: one or more segments.
    Rest,
}

/// A user route pattern: `/users/{id}`, `/users/:id/orders`, `/files/*`.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: Arc<str>,
    segs: Vec<Seg>,
    literals: usize,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |why| PatternError {
            pattern: text.to_string(),
            why,
        };
        let body = text
            .strip_prefix('/')
            .ok_or_else(|| err("must start with `/`"))?;
        if text.contains(['?', '#']) {
            return Err(err("must be a path, without `?` or `#`"));
        }
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let mut segs = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let seg = match *p {
                "" if last => break, // trailing slash
                "" => return Err(err("has an empty segment (`//`)")),
                "**" if last => Seg::Rest,
                "**" => return Err(err("`**` is only allowed as the last segment")),
                "*" if last && i > 0 => Seg::Rest,
                "*" => Seg::Param,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => Seg::Param,
                p if p.starts_with(':') && p.len() > 1 => Seg::Param,
                p if p.contains(['{', '}']) => {
                    return Err(err("a `{name}` parameter must be a whole segment"));
                }
                p => Seg::Literal(p.into()),
            };
            segs.push(seg);
        }
        let literals = segs.iter().filter(|s| matches!(s, Seg::Literal(_))).count();
        Ok(Pattern {
            text: Arc::from(text),
            segs,
            literals,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let body = path.strip_prefix('/').unwrap_or(path);
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = body.split('/').filter(|p| !p.is_empty());
        for seg in &self.segs {
            match seg {
                Seg::Rest => return parts.next().is_some(),
                Seg::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Seg::Literal(l) => {
                    if parts.next() != Some(&**l) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// More literal segments win; then the longer pattern (a trailing `*`
    /// loses to an exact length).
    fn specificity(&self) -> (usize, usize, bool) {
        (
            self.literals,
            self.segs.len(),
            !matches!(self.segs.last(), Some(Seg::Rest)),
        )
    }
}

/// The most specific of `patterns` matching `path`; on a tie the first.
fn best_match<'a>(patterns: &'a [Pattern], path: &str) -> Option<&'a Pattern> {
    let mut best: Option<&Pattern> = None;
    for p in patterns.iter().filter(|p| p.matches(path)) {
        if best.is_none_or(|b| p.specificity() > b.specificity()) {
            best = Some(p);
        }
    }
    best
}

/// What a request's path turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `http.route`, and whether it was folded by the cap.
    Route(Arc<str>, bool),
    /// The path matches an ignored pattern: no span, no metric.
    Ignored,
    /// No route: a 404 on a path no pattern names (see
    /// [`Routes::route_with_status`]).
    Unrouted,
}

#[derive(Default)]
struct ServiceRoutes {
    /// Distinct routes admitted, at most `max`, with the epoch each was
    /// last used in.
    routes: HashMap<Arc<str>, u64>,
    /// Path -> decision already made in an epoch, so a repeated path costs
    /// a lookup and a reference count, not pattern matching and an
    /// allocation; decided again in a later epoch (which keeps its route's
    /// slot in use, and lets a folded path in once a slot is free).
    by_path: HashMap<Box<str>, (Decision, u64)>,
    /// Epoch unused routes were last looked for (once per epoch at most).
    aged: u64,
}

/// Routes per service: user patterns first, then the unmatched mode,
/// decided once per distinct path; and a cap on distinct routes (so on span
/// names, `METHOD route`) beyond which they fold into `/**`.
pub struct Routes {
    max: usize,
    patterns: Vec<Pattern>,
    ignored: Vec<Pattern>,
    unmatched: UnmatchedRoutes,
    services: HashMap<Box<str>, ServiceRoutes>,
    /// Entries in every service's path cache together.
    cached_paths: usize,
    overflow: Arc<str>,
    ageing: Ageing,
}

impl Routes {
    pub fn new(settings: &RouteSettings) -> Result<Self, PatternError> {
        let compile = |list: &[String]| -> Result<Vec<Pattern>, PatternError> {
            if list.len() > MAX_PATTERNS {
                return Err(PatternError {
                    pattern: format!("({} patterns)", list.len()),
                    why: "too many patterns (at most 1024)",
                });
            }
            list.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(Routes {
            max: settings.max_per_service.max(1),
            patterns: compile(&settings.patterns)?,
            ignored: compile(&settings.ignored)?,
            unmatched: settings.unmatched,
            services: HashMap::default(),
            cached_paths: 0,
            overflow: Arc::from(OVERFLOW_ROUTE),
            ageing: Ageing::new(DEFAULT_SLOT_TTL),
        })
    }

    /// Gives back a route's slot once unused for `ttl` (default
    /// `DEFAULT_SLOT_TTL`).
    pub fn with_slot_ttl(mut self, ttl: Duration) -> Self {
        self.ageing = Ageing::new(ttl);
        self
    }

    /// Advances the ageing clock (the reader calls it at each drain).
    pub fn tick(&mut self, now: Instant) {
        self.ageing.tick(now);
    }

    /// How long an unused route keeps its slot.
    pub fn slot_ttl(&self) -> Duration {
        self.ageing.ttl
    }

    /// Distinct routes a service may have (other families use the same
    /// cap on their metric names).
    pub fn max_routes(&self) -> usize {
        self.max
    }

    /// The route of a server response's `path`: as [`route`](Self::route),
    /// except that a 404 on a path no user pattern names gets no route
    /// (an OpenTelemetry SDK sets none on 404s, and a path scanner would
    /// otherwise fill the service's cap with routes that do not exist).
    pub fn route_with_status(&mut self, service: &str, path: &str, status: u16) -> Decision {
        if status == 404
            && best_match(&self.ignored, path).is_none()
            && best_match(&self.patterns, path).is_none()
        {
            return Decision::Unrouted;
        }
        self.route(service, path)
    }

    /// The route of `path` for `service`.
    pub fn route(&mut self, service: &str, path: &str) -> Decision {
        if !self.services.contains_key(service) {
            // Services come and go with processes: start over rather than
            // grow without bound (routes are re-learnt from the next paths).
            if self.services.len() >= MAX_SERVICES {
                self.services.clear();
                self.cached_paths = 0;
            }
            self.services
                .insert(service.into(), ServiceRoutes::default());
        }
        let Some(svc) = self.services.get_mut(service) else {
            return Decision::Route(self.overflow.clone(), true);
        };
        let epoch = self.ageing.now;
        if let Some((d, e)) = svc.by_path.get(path)
            && *e == epoch
        {
            return d.clone();
        }
        let decision = if best_match(&self.ignored, path).is_some() {
            Decision::Ignored
        } else {
            let candidate: Arc<str> = match best_match(&self.patterns, path) {
                Some(p) => p.text.clone(),
                None => match self.unmatched {
                    UnmatchedRoutes::Heuristic => Arc::from(heuristic(path)),
                    UnmatchedRoutes::Path => Arc::from(
                        path.split(['?', '#'])
                            .next()
                            .filter(|p| !p.is_empty())
                            .unwrap_or("/"),
                    ),
                    UnmatchedRoutes::Wildcard => self.overflow.clone(),
                },
            };
            if svc.routes.len() >= self.max
                && !svc.routes.contains_key(&candidate)
                && svc.aged != epoch
            {
                // Full: give back the slots of routes unused for the TTL.
                svc.aged = epoch;
                let ageing = self.ageing;
                svc.routes.retain(|_, used| !ageing.expired(*used));
            }
            match svc.routes.get_key_value(&candidate) {
                Some((r, _)) => {
                    let r = r.clone();
                    svc.routes.insert(r.clone(), epoch);
                    Decision::Route(r, false)
                }
                None if Arc::ptr_eq(&candidate, &self.overflow) => {
                    Decision::Route(candidate, false)
                }
                None if svc.routes.len() >= self.max => {
                    Decision::Route(self.overflow.clone(), true)
                }
                None => {
                    svc.routes.insert(candidate.clone(), epoch);
                    Decision::Route(candidate, false)
                }
            }
        };
        if svc.by_path.len() >= PATH_CACHE {
            self.cached_paths -= svc.by_path.len();
            svc.by_path.clear();
        }
        if svc
            .by_path
            .insert(path.into(), (decision.clone(), epoch))
            .is_none()
        {
            self.cached_paths += 1;
        }
        if self.cached_paths >= MAX_CACHED_PATHS {
            // Decisions are cheap to redo; the routes admitted stay.
            for s in self.services.values_mut() {
                s.by_path.clear();
            }
            self.cached_paths = 0;
        }
        decision
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

    /// Tokens, keys, JWTs and addresses fold; words, names, versions and
    /// file names stay.
    #[test]
    fn folds_high_entropy_segments() {
        for (path, route) in [
            ("/reset/Xk9fQ2mZ7bLwP4tR8sVn3cYh6dJ1gA5e", "/reset/*"),
            ("/share/aGVsbG8td29ybGQtc2VjcmV0LXRva2Vu", "/share/*"),
            ("/dl/dGhpcyBpcyBhIHNlY3JldA==", "/dl/*"),
            ("/k/k3j4h5g6f7d8s9a0q1w2", "/k/*"),
            ("/u/john.doe@example.com/profile", "/u/*/profile"),
            ("/u/jane%40example.org", "/u/*"),
            (
                "/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "/t/*",
            ),
            ("/invite/8f14e45f-ceea-467f-a0e6-3c5c2b8e4a1d", "/invite/*"),
        ] {
            assert_eq!(heuristic(path), route, "{path}");
        }
        for path in [
            "/api/v1/users",
            "/static/main.css",
            "/blog/hello-world-2024",
            "/docs/getting-started-with-kubernetes",
            "/products/MacBookPro16",
            "/UserProfileSettings/notifications",
            "/images/logo_white_2x.png",
            "/wiki/Special:RecentChanges",
            "/api/v2/orders/summary",
            "/assets/fonts/RobotoMono-Regular.woff2",
            "/downloads/ratatosk-linux-amd64.tar.gz",
        ] {
            assert_eq!(heuristic(path), path, "{path}");
        }
    }

    fn settings(
        patterns: &[&str],
        ignored: &[&str],
        unmatched: UnmatchedRoutes,
        max: usize,
    ) -> RouteSettings {
        RouteSettings {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            ignored: ignored.iter().map(|s| s.to_string()).collect(),
            unmatched,
            max_per_service: max,
        }
    }

    fn route_of(r: &mut Routes, svc: &str, path: &str) -> (String, bool) {
        match r.route(svc, path) {
            Decision::Route(route, folded) => (route.to_string(), folded),
            Decision::Ignored => ("<ignored>".into(), false),
            Decision::Unrouted => ("<none>".into(), false),
        }
    }

    #[test]
    fn a_404_on_an_unknown_path_mints_no_route() {
        let s = settings(
            &["/known/{id}"],
            &["/health"],
            UnmatchedRoutes::Heuristic,
            2,
        );
        let mut r = Routes::new(&s).unwrap();
        for i in 0..50 {
            assert_eq!(
                r.route_with_status("svc", &format!("/scan{i}.php"), 404),
                Decision::Unrouted
            );
        }
        // The cap is untouched: the first real route still fits.
        assert_eq!(route_of(&mut r, "svc", "/real"), ("/real".into(), false));
        // A pattern still names its 404s; ignored paths stay ignored.
        assert!(matches!(
            r.route_with_status("svc", "/known/7", 404),
            Decision::Route(ref x, _) if &**x == "/known/{id}"
        ));
        assert_eq!(
            r.route_with_status("svc", "/health", 404),
            Decision::Ignored
        );
    }

    #[test]
    fn caps_routes_per_service() {
        let mut r = Routes::new(&settings(&[], &[], UnmatchedRoutes::Heuristic, 2)).unwrap();
        let mut route = |svc: &str, path: &str| route_of(&mut r, svc, path);
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

    #[test]
    fn junk_routes_give_their_slots_back_after_the_ttl() {
        let ttl = Duration::from_secs(40);
        let mut r = Routes::new(&settings(&[], &[], UnmatchedRoutes::Path, 2))
            .unwrap()
            .with_slot_ttl(ttl);
        let t0 = Instant::now();
        assert_eq!(route_of(&mut r, "a", "/junk1"), ("/junk1".into(), false));
        assert_eq!(route_of(&mut r, "a", "/real"), ("/real".into(), false));
        assert_eq!(route_of(&mut r, "a", "/new"), (OVERFLOW_ROUTE.into(), true));
        // /real keeps being used; /junk1 is not.
        for s in [15, 30, 45] {
            r.tick(t0 + Duration::from_secs(s));
            assert_eq!(route_of(&mut r, "a", "/real"), ("/real".into(), false));
        }
        assert_eq!(
            route_of(&mut r, "a", "/new"),
            (OVERFLOW_ROUTE.into(), true),
            "not yet a TTL"
        );
        r.tick(t0 + Duration::from_secs(61));
        assert_eq!(route_of(&mut r, "a", "/real"), ("/real".into(), false));
        // The folded path is decided again and takes /junk1's slot.
        assert_eq!(route_of(&mut r, "a", "/new"), ("/new".into(), false));
        assert_eq!(
            route_of(&mut r, "a", "/junk2"),
            (OVERFLOW_ROUTE.into(), true)
        );
    }

    #[test]
    fn user_patterns_win_most_specific_first() {
        let s = settings(
            &[
                "/users/{id}",
                "/users/:id/orders",
                "/users/me",
                "/files/*",
                "/a/*/c",
            ],
            &["/health", "/metrics/**"],
            UnmatchedRoutes::Heuristic,
            100,
        );
        let mut r = Routes::new(&s).unwrap();
        let mut route = |path: &str| route_of(&mut r, "svc", path).0;
        assert_eq!(route("/users/42"), "/users/{id}");
        assert_eq!(route("/users/42/"), "/users/{id}");
        assert_eq!(route("/users/42?x=1"), "/users/{id}");
        assert_eq!(route("/users/me"), "/users/me", "literal beats parameter");
        assert_eq!(route("/users/7/orders"), "/users/:id/orders");
        assert_eq!(route("/users"), "/users", "a parameter needs a segment");
        assert_eq!(
            route("/files/a/b/c.txt"),
            "/files/*",
            "trailing * takes the rest"
        );
        assert_eq!(route("/files"), "/files");
        assert_eq!(route("/a/b/c"), "/a/*/c");
        assert_eq!(route("/a/b/d"), "/a/b/d");
        assert_eq!(route("/orders/123"), "/orders/*", "heuristic for the rest");
        assert_eq!(route("/health"), "<ignored>");
        assert_eq!(route("/metrics/x/y"), "<ignored>");
        assert_eq!(route("/metrics"), "/metrics", "** needs one segment");
    }

    #[test]
    fn path_caches_are_bounded_over_all_services() {
        let mut r = Routes::new(&settings(&[], &[], UnmatchedRoutes::Heuristic, 100)).unwrap();
        for i in 0..(MAX_CACHED_PATHS * 2) {
            let svc = format!("svc{}", i % 50);
            let (route, _) = route_of(&mut r, &svc, &format!("/u/{i}"));
            assert_eq!(route, "/u/*");
            assert!(r.cached_paths < MAX_CACHED_PATHS);
            let total: usize = r.services.values().map(|s| s.by_path.len()).sum();
            assert_eq!(total, r.cached_paths);
        }
    }

    #[test]
    fn unmatched_modes() {
        let mut r = Routes::new(&settings(&["/k/{id}"], &[], UnmatchedRoutes::Path, 100)).unwrap();
        assert_eq!(route_of(&mut r, "s", "/users/12?q").0, "/users/12");
        assert_eq!(route_of(&mut r, "s", "/k/12").0, "/k/{id}");
        let mut r =
            Routes::new(&settings(&["/k/{id}"], &[], UnmatchedRoutes::Wildcard, 1)).unwrap();
        assert_eq!(route_of(&mut r, "s", "/users/12"), ("/**".into(), false));
        assert_eq!(route_of(&mut r, "s", "/k/1"), ("/k/{id}".into(), false));
        assert_eq!(
            route_of(&mut r, "s", "/zz"),
            ("/**".into(), false),
            "wildcard is not a fold"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["users", "/a//b", "/a/**/b", "/a/x{id}", "/a?b"] {
            let e = Pattern::parse(bad).unwrap_err();
            assert_eq!(e.pattern, bad);
        }
        assert!(Pattern::parse("/").unwrap().matches("/"));
        assert!(!Pattern::parse("/").unwrap().matches("/x"));
    }
}
