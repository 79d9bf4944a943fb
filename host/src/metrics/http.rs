//! The metrics endpoint: `GET /metrics` answers the node's metrics in the OpenMetrics
//! text format (axum over hyper; everything else is 404).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::{CONTENT_TYPE, MetricsError, NodeMetrics};

/// The endpoint's routes.
pub fn router(metrics: Arc<NodeMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<NodeMetrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!("metrics scrape failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

/// Binds the endpoint's port (so a taken port fails the node's start, not later).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Serve {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `metrics` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<NodeMetrics>) -> Result<(), MetricsError> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    axum::serve(listener, router(metrics))
        .await
        .map_err(|source| MetricsError::Serve { addr, source })
}
