//! The API's routes and handlers, and `run`, which serves them until shutdown.

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::{get, post};
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
        .route("/api/v1/crdt", get(crdt))
        .route("/api/v1/datagrams", get(take_all_datagrams))
        .route("/api/v1/datagrams/{port}", get(take_port_datagrams))
        .route("/api/v1/datagrams/{node}/{port}", post(send_datagram))
        .route("/api/v1/kv", get(crate::kv::list_or_watch))
        .route(
            "/api/v1/kv/{*key}",
            get(crate::kv::get_key)
                .put(crate::kv::put_key)
                .delete(crate::kv::delete_key)
                .post(crate::kv::cas_key),
        )
        .route("/api/v1/raft", get(crate::kv::raft_status))
        .route(
            "/api/v1/raft/voters/{node}",
            post(crate::kv::add_voter).delete(crate::kv::remove_voter),
        )
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

async fn crdt(State(handle): State<NodeHandle>) -> Result<Json<node::CrdtView>, ApiError> {
    Ok(Json(ask(handle.crdt()).await?))
}

async fn send_datagram(
    State(handle): State<NodeHandle>,
    Path((node, port)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<node::SendOutcome>, ApiError> {
    let to: wire::NodeId = node
        .parse()
        .map_err(|error| ApiError::BadRequest(format!("node {node:?}: {error}")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("port {port:?} is not 0..65535")))?;
    if body.len() > node::dataplane::MAX_APP_PAYLOAD {
        return Err(ApiError::TooLarge(format!(
            "{} bytes; a datagram carries at most {}",
            body.len(),
            node::dataplane::MAX_APP_PAYLOAD
        )));
    }
    match ask(handle.send_datagram(to, port, body.to_vec())).await? {
        node::SendOutcome::NoRoute => Err(ApiError::NoRoute(format!("no route to node {to}"))),
        node::SendOutcome::TooBig => Err(ApiError::TooLarge(
            "larger than the link carries".to_string(),
        )),
        outcome => Ok(Json(outcome)),
    }
}

async fn take_all_datagrams(
    State(handle): State<NodeHandle>,
) -> Result<Json<Vec<node::DatagramView>>, ApiError> {
    Ok(Json(ask(handle.take_datagrams(None)).await?))
}

async fn take_port_datagrams(
    State(handle): State<NodeHandle>,
    Path(port): Path<String>,
) -> Result<Json<Vec<node::DatagramView>>, ApiError> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("port {port:?} is not 0..65535")))?;
    Ok(Json(ask(handle.take_datagrams(Some(port))).await?))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}
