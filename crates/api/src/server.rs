//! The API's routes and handlers, and `run`, which serves them until shutdown.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use axum::{Json, Router};
use node::{NodeHandle, PeerView, RouteView, StatusView};
use tokio::net::TcpListener;

use crate::ApiError;
use crate::listener::LimitedListener;

/// How long a handler waits for the node's loop. The loop answers between packets within
/// microseconds; a loop that takes this long is wedged, and the client is better served by
/// an error than by a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `shutdown` completes, then finishes open requests.
pub async fn run(
    listener: TcpListener,
    handle: NodeHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(api = %format!("http://{address}"), "API listening");
    }
    axum::serve(LimitedListener::new(listener), app(handle))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The routes, for serving or for driving in tests.
pub fn app(handle: NodeHandle) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/status", get(status))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/routes", get(routes))
        .route("/api/v1/identity", get(identity))
        .fallback(not_found)
        .with_state(handle)
}

async fn ask<T, F>(request: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, node::HandleError>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ApiError::Timeout),
    }
}

async fn health(State(handle): State<NodeHandle>) -> Result<Json<serde_json::Value>, ApiError> {
    let status = ask(handle.status()).await?;
    Ok(Json(
        serde_json::json!({ "status": "ok", "node_id": status.node_id }),
    ))
}

async fn status(State(handle): State<NodeHandle>) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(ask(handle.status()).await?))
}

async fn peers(State(handle): State<NodeHandle>) -> Result<Json<Vec<PeerView>>, ApiError> {
    Ok(Json(ask(handle.peers()).await?))
}

async fn routes(State(handle): State<NodeHandle>) -> Result<Json<Vec<RouteView>>, ApiError> {
    Ok(Json(ask(handle.routes()).await?))
}

async fn identity(State(handle): State<NodeHandle>) -> Result<Json<node::IdentityView>, ApiError> {
    Ok(Json(ask(handle.identity()).await?))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}
