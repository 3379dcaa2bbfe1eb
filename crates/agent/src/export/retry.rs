//! When to retry an OTLP export, and how long to wait (the OTLP
//! specification's rules: retryable gRPC codes and HTTP statuses, the
//! server's `Retry-After`/`RetryInfo`, exponential backoff with jitter,
//! bounded overall), plus a rate limiter for the warnings failures log.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tonic::Code;

/// The outcome of one failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth another attempt; `after` is the server's own delay.
    Retryable {
        kind: String,
        after: Option<Duration>,
        detail: String,
    },
    /// The data itself or the setup is refused: another attempt would
    /// fail the same way.
    Permanent { kind: String, detail: String },
}

impl Failure {
    pub fn kind(&self) -> &str {
        match self {
            Failure::Retryable { kind, .. } | Failure::Permanent { kind, .. } => kind,
        }
    }
}

/// OTLP/gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
/// UNAVAILABLE and DATA_LOSS are retryable; RESOURCE_EXHAUSTED only when
/// the server says when to come back (RetryInfo), i.e. it can recover.
pub fn grpc_retryable(code: Code, has_retry_info: bool) -> bool {
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => has_retry_info,
        _ => false,
    }
}

/// OTLP/HTTP: 429, 502, 503 and 504 are retryable; every other failure
/// status is not.
pub fn http_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Total time one batch may spend in retries: a few export timeouts,
/// within sane limits.
pub fn retry_budget(timeout: Duration) -> Duration {
    (timeout * 3).clamp(Duration::from_secs(5), Duration::from_secs(60))
}

/// Exponential backoff with jitter: 0.5–1× of 500 ms, 1 s, 2 s, … capped
/// at 5 s, so agents that failed together do not retry together.
pub struct Backoff {
    next: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        d.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// What to do after a failure at `elapsed` into a batch's budget.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    RetryAfter(Duration),
    GiveUp,
}

pub fn decide(
    failure: &Failure,
    backoff: &mut Backoff,
    elapsed: Duration,
    budget: Duration,
) -> Next {
    let Failure::Retryable { after, .. } = failure else {
        return Next::GiveUp;
    };
    // The server's delay when it gave one (never below our first step: a
    // `Retry-After: 0` must not make a busy loop), else ours.
    let ours = backoff.next_delay();
    let wait = after.map_or(ours, |a| a.max(FIRST_BACKOFF));
    // The server's value may be anything: compare without adding.
    if wait >= budget.saturating_sub(elapsed) {
        Next::GiveUp
    } else {
        Next::RetryAfter(wait)
    }
}

/// Logs a kind of failure the first time, then at most once per
/// `interval`, with how many were not logged meanwhile.
pub struct LogLimiter {
    interval: Duration,
    /// Kinds are few (status codes, error classes); bounded anyway.
    seen: HashMap<String, (Instant, u64)>,
}

const MAX_LOG_KINDS: usize = 256;

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            seen: HashMap::new(),
        }
    }

    /// Some(number suppressed since the last log) when this one should be
    /// logged.
    pub fn allow(&mut self, kind: &str) -> Option<u64> {
        let now = Instant::now();
        if let Some((last, suppressed)) = self.seen.get_mut(kind) {
            if now.duration_since(*last) < self.interval {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(n);
        }
        if self.seen.len() >= MAX_LOG_KINDS {
            self.seen.clear();
        }
        self.seen.insert(kind.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_per_otlp_spec() {
        for c in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(grpc_retryable(c, false), "{c:?}");
        }
        for c in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unauthenticated,
        ] {
            assert!(!grpc_retryable(c, false), "{c:?}");
        }
        assert!(!grpc_retryable(Code::ResourceExhausted, false));
        assert!(grpc_retryable(Code::ResourceExhausted, true));
    }

    #[test]
    fn http_statuses() {
        for s in [429, 502, 503, 504] {
            assert!(http_retryable(s));
        }
        for s in [400, 401, 403, 404, 413, 500, 501] {
            assert!(!http_retryable(s));
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_at_the_budget() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(250) && d[0] <= Duration::from_millis(500));
        assert!(d[1] >= Duration::from_millis(500) && d[1] <= Duration::from_secs(1));
        assert!(d[5] >= Duration::from_millis(2500) && d[5] <= Duration::from_secs(5));

        let retry = Failure::Retryable {
            kind: "unavailable".into(),
            after: Some(Duration::from_secs(2)),
            detail: String::new(),
        };
        let budget = Duration::from_secs(10);
        assert_eq!(
            decide(&retry, &mut b, Duration::from_secs(1), budget),
            Next::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            decide(&retry, &mut b, Duration::from_secs(9), budget),
            Next::GiveUp
        );
        // A receiver's extreme values: no busy loop, no overflow.
        let after = |d| Failure::Retryable {
            kind: "unavailable".into(),
            after: Some(d),
            detail: String::new(),
        };
        assert_eq!(
            decide(&after(Duration::ZERO), &mut b, Duration::ZERO, budget),
            Next::RetryAfter(FIRST_BACKOFF)
        );
        assert_eq!(
            decide(
                &after(Duration::MAX),
                &mut b,
                Duration::from_secs(2),
                budget
            ),
            Next::GiveUp
        );
        let permanent = Failure::Permanent {
            kind: "400".into(),
            detail: String::new(),
        };
        assert_eq!(
            decide(&permanent, &mut b, Duration::ZERO, budget),
            Next::GiveUp
        );
        assert_eq!(
            retry_budget(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_budget(Duration::from_millis(100)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn log_limiter() {
        let mut l = LogLimiter::new(Duration::from_secs(60));
        assert_eq!(l.allow("503"), Some(0));
        assert_eq!(l.allow("503"), None);
        assert_eq!(l.allow("400"), Some(0));
        let mut l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow("x"), Some(0));
        assert_eq!(l.allow("x"), Some(0));
    }
}
