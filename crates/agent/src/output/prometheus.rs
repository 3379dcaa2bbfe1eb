//! The Prometheus `/metrics` endpoint (OpenMetrics text from
//! prometheus-client; never hand-formatted).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub type SharedRegistry = Arc<Mutex<Registry>>;

async fn metrics(State(registry): State<SharedRegistry>) -> Response {
    let mut body = String::new();
    let encoded = match registry.lock() {
        Ok(r) => prometheus_client::encoding::text::encode(&mut body, &r),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "registry poisoned").into_response(),
    };
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(|| async { "ratatosk: metrics at /metrics\n" }))
        .with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
