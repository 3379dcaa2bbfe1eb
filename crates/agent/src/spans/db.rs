//! The database family (PostgreSQL, MySQL/MariaDB, Redis, and every
//! database or cache protocol after them): span names, error rule,
//! attributes (OpenTelemetry database semantic conventions, stable
//! `db.system.name`) and the cap on metric label values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_semantic_conventions::attribute as semconv;
use ratatosk_protocols::op::DbDetail;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::attrs::{SmallText, Value};
use super::route::{Ageing, DEFAULT_SLOT_TTL};
use super::{DbSpan, Span, SpanKind};

/// Metric label value of operations and collections past a service's cap.
pub const OTHER: &str = "_OTHER";

/// `SELECT accounts`; the operation alone when the collection is not
/// known; the system when nothing is.
pub fn name_parts(d: &DbDetail) -> (&str, &str) {
    match (d.operation.as_str(), d.collection.as_deref()) {
        ("", _) => (d.system.as_str(), ""),
        (op, Some(c)) => (op, c),
        (op, None) => (op, ""),
    }
}

/// A call failed when the server said so (SQLSTATE, error code, error
/// reply), or when no reply came.
pub fn is_error(s: &Span, d: &DbSpan) -> bool {
    d.db.is_error() || s.outcome == ratatosk_protocols::op::Outcome::NoResponse
}

/// `error.type`: the status code the server gave, else `no_response` for
/// a call the close left unanswered.
pub fn error_type<'a>(s: &Span, d: &'a DbSpan) -> Option<&'a str> {
    match &d.db.status_code {
        Some(code) => Some(code),
        None if is_error(s, d) => Some(super::http::failure_without_status(s)),
        None => None,
    }
}

/// The database attributes of `s`, in export order.
pub fn for_each_attribute(s: &Span, d: &DbSpan, f: &mut impl FnMut(&'static str, Value<'_>)) {
    let db = &d.db;
    f(semconv::DB_SYSTEM_NAME, Value::Str(db.system.as_str()));
    if !db.operation.is_empty() {
        f(semconv::DB_OPERATION_NAME, Value::Str(&db.operation));
    }
    if let Some(c) = &db.collection {
        f(semconv::DB_COLLECTION_NAME, Value::Str(c));
    }
    if let Some(n) = &db.namespace {
        f(semconv::DB_NAMESPACE, Value::Str(n));
    }
    if let Some(q) = &db.query_text {
        f(semconv::DB_QUERY_TEXT, Value::Str(q));
    }
    if db.query_truncated {
        f("ratatosk.db.query.truncated", Value::Bool(true));
    }
    if let Some(code) = &db.status_code {
        f(semconv::DB_RESPONSE_STATUS_CODE, Value::Str(code));
    }
    if let Some(rows) = db.returned_rows {
        f(
            semconv::DB_RESPONSE_RETURNED_ROWS,
            Value::Int(i64::try_from(rows).unwrap_or(i64::MAX)),
        );
    }
    if db.batch_size > 1 {
        f(
            semconv::DB_OPERATION_BATCH_SIZE,
            Value::Int(i64::from(db.batch_size)),
        );
    }
    if let Some(e) = error_type(s, d) {
        f(semconv::ERROR_TYPE, Value::Str(e));
    }
    let server_ip = SmallText::ip(s.server.ip());
    f(semconv::SERVER_ADDRESS, Value::Str(server_ip.as_str()));
    f(semconv::SERVER_PORT, Value::Int(i64::from(s.server.port())));
    let (peer, peer_port) = match s.kind {
        SpanKind::Server => (SmallText::ip(s.client.ip()), s.client.port()),
        SpanKind::Client => (server_ip, s.server.port()),
    };
    f(semconv::NETWORK_PEER_ADDRESS, Value::Str(peer.as_str()));
    f(semconv::NETWORK_PEER_PORT, Value::Int(i64::from(peer_port)));
}

/// Services remembered before the table starts over.
const MAX_SERVICES: usize = 4096;

/// Operation and collection of a call, as metric labels.
type LabelPair = (Arc<str>, Option<Arc<str>>);

/// Bounds the distinct (operation, collection) pairs per service that
/// become metric labels, as routes are bounded for HTTP: past the cap a
/// new pair is labelled `_OTHER` (spans keep their names).
pub struct DbNames {
    max_per_service: usize,
    /// Per service: the pairs admitted with the epoch each was last used
    /// in, and the epoch unused ones were last looked for.
    services: HashMap<Arc<str>, (HashMap<LabelPair, u64>, u64)>,
    ageing: Ageing,
    /// Interned label values (one allocation per distinct value).
    strings: HashSet<Arc<str>>,
}

impl DbNames {
    pub fn new(max_per_service: usize) -> Self {
        DbNames {
            max_per_service: max_per_service.max(1),
            services: HashMap::default(),
            strings: HashSet::default(),
            ageing: Ageing::new(DEFAULT_SLOT_TTL),
        }
    }

    /// Gives back a pair's slot once unused for `ttl`, as routes.
    pub fn with_slot_ttl(mut self, ttl: Duration) -> Self {
        self.ageing = Ageing::new(ttl);
        self
    }

    /// Advances the ageing clock (the reader calls it at each drain).
    pub fn tick(&mut self, now: Instant) {
        self.ageing.tick(now);
    }

    /// The labels of `d` in `service`, and whether they were folded.
    pub fn labels(&mut self, service: &str, d: &DbDetail) -> (Arc<str>, Option<Arc<str>>, bool) {
        let op = if d.operation.is_empty() {
            d.system.as_str()
        } else {
            &d.operation
        };
        self.pair(service, op, d.collection.as_deref())
    }

    /// The labels of any (name, sub-name) pair in `service` (an RPC
    /// method has no second part), and whether they were folded.
    pub fn pair(
        &mut self,
        service: &str,
        first: &str,
        second: Option<&str>,
    ) -> (Arc<str>, Option<Arc<str>>, bool) {
        let op = self.intern(first);
        let coll = second.map(|c| self.intern(c));
        if self.services.len() >= MAX_SERVICES && !self.services.contains_key(service) {
            self.services.clear();
            self.strings.clear();
        }
        let max = self.max_per_service;
        let epoch = self.ageing.now;
        let (set, aged) = self.services.entry(Arc::from(service)).or_default();
        let pair = (op, coll);
        if let Some(used) = set.get_mut(&pair) {
            *used = epoch;
            return (pair.0, pair.1, false);
        }
        if set.len() >= max && *aged != epoch {
            // Full: give back the slots of pairs unused for the TTL.
            *aged = epoch;
            let ageing = self.ageing;
            set.retain(|_, used| !ageing.expired(*used));
        }
        if set.len() >= max {
            let other = Arc::<str>::from(OTHER);
            return (other.clone(), pair.1.map(|_| other), true);
        }
        set.insert(pair.clone(), epoch);
        (pair.0, pair.1, false)
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(v) = self.strings.get(s) {
            return v.clone();
        }
        let v: Arc<str> = Arc::from(s);
        // The label sets above bound what is interned, except for values
        // folded away: clear rather than grow without end.
        if self.strings.len() >= MAX_SERVICES * 16 {
            self.strings.clear();
        }
        self.strings.insert(v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatosk_protocols::op::DbSystem;

    fn call(op: &str, coll: Option<&str>) -> DbDetail {
        DbDetail {
            operation: op.into(),
            collection: coll.map(Into::into),
            ..DbDetail::new(DbSystem::Postgresql)
        }
    }

    #[test]
    fn unused_label_pairs_give_their_slots_back() {
        let mut n = DbNames::new(1).with_slot_ttl(Duration::from_secs(4));
        let t0 = Instant::now();
        assert!(!n.labels("svc", &call("SELECT", Some("junk"))).2);
        assert!(n.labels("svc", &call("SELECT", Some("real"))).2);
        n.tick(t0 + Duration::from_secs(3));
        assert!(
            n.labels("svc", &call("SELECT", Some("real"))).2,
            "within TTL"
        );
        n.tick(t0 + Duration::from_secs(6));
        assert!(!n.labels("svc", &call("SELECT", Some("real"))).2);
        assert!(n.labels("svc", &call("SELECT", Some("junk"))).2);
    }

    #[test]
    fn names_and_the_label_cap() {
        assert_eq!(name_parts(&call("SELECT", Some("t"))), ("SELECT", "t"));
        assert_eq!(name_parts(&call("GET", None)), ("GET", ""));
        assert_eq!(name_parts(&call("", None)), ("postgresql", ""));
        let mut n = DbNames::new(2);
        assert!(!n.labels("svc", &call("SELECT", Some("a"))).2);
        assert!(!n.labels("svc", &call("SELECT", Some("b"))).2);
        assert!(!n.labels("svc", &call("SELECT", Some("a"))).2, "known pair");
        let (op, coll, folded) = n.labels("svc", &call("DELETE", Some("c")));
        assert!(folded);
        assert_eq!((&*op, coll.as_deref()), (OTHER, Some(OTHER)));
        assert!(
            !n.labels("other", &call("DELETE", Some("c"))).2,
            "per service"
        );
    }
}
