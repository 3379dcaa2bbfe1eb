//! The Prometheus `/metrics` endpoint (OpenMetrics text from
//! prometheus-client; never hand-formatted).
//!
//! Anyone who can reach the port can scrape, so what a scrape may cost is
//! bounded: at most `MAX_CONNECTIONS` connections (more wait in the
//! kernel's backlog), each open at most `CONNECTION_LIFETIME`, at most
//! `MAX_CONCURRENT_SCRAPES` bodies being encoded at once (others get 503),
//! and a body of at most `MAX_BODY_BYTES` (encoding stops there: 503).
//! Refusals are counted in `ratatosk_prometheus_scrapes_refused_total`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::selfmon::ReasonLabel;

pub type SharedRegistry = Arc<Mutex<Registry>>;

/// Connections open at once; a scraper needs one.
const MAX_CONNECTIONS: usize = 16;
/// A connection is closed this long after it was accepted (a scraper
/// reconnects; a client that only holds the socket lets go of it).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Bodies encoded at once (each holds the registry lock in turn and up to
/// `MAX_BODY_BYTES`).
const MAX_CONCURRENT_SCRAPES: usize = 2;
/// Largest body: 50 000 label sets of a histogram would make well over
/// 100 MB, far past the agent's memory target.
pub const MAX_BODY_BYTES: usize = 8 << 20;

#[derive(Clone)]
struct Shared {
    registry: SharedRegistry,
    scrapes: Arc<Semaphore>,
    refused: Family<ReasonLabel, Counter>,
    max_body: usize,
}

/// A `fmt::Write` that fails once `max` bytes would be exceeded, so the
/// encoder stops instead of growing the body.
struct Bounded {
    body: String,
    max: usize,
    full: bool,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.body.len() + s.len() > self.max {
            self.full = true;
            return Err(std::fmt::Error);
        }
        self.body.push_str(s);
        Ok(())
    }
}

fn refuse(s: &Shared, reason: &'static str, text: &'static str) -> Response {
    s.refused.get_or_create(&ReasonLabel { reason }).inc();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        text,
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let Ok(_permit) = s.scrapes.try_acquire() else {
        return refuse(&s, "busy", "too many scrapes at once\n");
    };
    let mut out = Bounded {
        body: String::new(),
        max: s.max_body,
        full: false,
    };
    let encoded = match s.registry.lock() {
        Ok(r) => prometheus_client::encoding::text::encode(&mut out, &r),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "registry poisoned").into_response(),
    };
    if out.full {
        return refuse(
            &s,
            "body_limit",
            "metrics body over its limit (8 MiB): fewer series needed\n",
        );
    }
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out.body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds first (so a taken port fails start-up), then serves until
/// `shutdown` resolves.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(
    listener: TcpListener,
    registry: SharedRegistry,
    refused: Family<ReasonLabel, Counter>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Shared {
        registry,
        scrapes: Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
        refused,
        max_body: MAX_BODY_BYTES,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(|| async { "ratatosk: metrics at /metrics\n" }))
        .with_state(shared);
    let listener = Limited {
        inner: listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A listener that accepts only while fewer than `MAX_CONNECTIONS` of its
/// connections are open.
struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl Listener for Limited {
    type Io = LimitedConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed; should it be, accept unbounded
        // rather than spin.
        let permit = self.permits.clone().acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let conn = LimitedConn {
                        stream,
                        _permit: permit,
                        deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
                    };
                    return (conn, addr);
                }
                // Out of descriptors and the like: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: holds its slot, and fails once its lifetime is
/// over (hyper then closes it).
struct LimitedConn {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl LimitedConn {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "metrics connection lifetime over")
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn the_body_stops_at_its_bound() {
        let mut b = Bounded {
            body: String::new(),
            max: 10,
            full: false,
        };
        assert!(b.write_str("12345").is_ok());
        assert!(b.write_str("678901").is_err());
        assert!(b.full);
        assert_eq!(b.body, "12345");
    }

    #[tokio::test]
    async fn scrapes_past_the_concurrency_bound_are_refused_and_counted() {
        let shared = Shared {
            registry: Arc::new(Mutex::new(Registry::default())),
            scrapes: Arc::new(Semaphore::new(1)),
            refused: Family::default(),
            max_body: 1 << 20,
        };
        let held = shared.scrapes.clone().try_acquire_owned().unwrap();
        let r = metrics(State(shared.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        let r = metrics(State(shared.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
        let busy = shared
            .refused
            .get_or_create(&ReasonLabel { reason: "busy" })
            .get();
        assert_eq!(busy, 1);
    }

    #[tokio::test]
    async fn a_body_over_its_bound_is_refused_and_counted() {
        let mut reg = Registry::default();
        let c: Counter = Counter::default();
        reg.register("some_counter_with_a_long_name", "help text", c);
        let shared = Shared {
            registry: Arc::new(Mutex::new(reg)),
            scrapes: Arc::new(Semaphore::new(1)),
            refused: Family::default(),
            max_body: 16,
        };
        let r = metrics(State(shared.clone())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let n = shared
            .refused
            .get_or_create(&ReasonLabel {
                reason: "body_limit",
            })
            .get();
        assert_eq!(n, 1);
    }
}
