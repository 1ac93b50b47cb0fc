//! The API's routes and handlers, and `run`, which serves them until shutdown.

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::Response;
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
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/notices", get(notices))
        .route("/api/v1/heal/reload", post(reload_healing))
        .route("/api/v1/events", get(events))
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

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    /// `SERVICE_DOWN`, `NODE_FAILURE`, ...
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `open`, `resolved`, ...
    state: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<usize>,
    /// `local` (default): this node's incident database; `mesh`: the open and recently
    /// closed incidents of every node, from the replicated incident summaries.
    scope: Option<String>,
}

/// A stored incident with its times on the wall clock, so that tools can compare them with
/// when they injected a fault: the record keeps detection as `opened_wall_ms` and the other
/// times on the node's monotonic clock.
fn incident_json(record: &knowledge::IncidentRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or(serde_json::Value::Null);
    let detected = record.opened_wall_ms;
    let to_ms = |us: u64| i64::try_from(us / 1000).unwrap_or(i64::MAX);
    let first = detected.saturating_sub(to_ms(record.mttd_us));
    let resolved = record
        .resolved_us
        .map(|r| detected.saturating_add(to_ms(r.saturating_sub(record.detected_us))));
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("first_symptom_unix_ms".into(), first.into());
        fields.insert("detected_unix_ms".into(), detected.into());
        fields.insert("resolved_unix_ms".into(), resolved.into());
    }
    value
}

async fn incidents(
    State(handle): State<NodeHandle>,
    Query(query): Query<IncidentQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let mut filter = knowledge::IncidentFilter::default();
    if let Some(kind) = &query.kind {
        filter.kind = Some(heal::IncidentType::parse(kind).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "type {kind:?} is not an incident type such as SERVICE_DOWN"
            ))
        })?);
    }
    if let Some(state) = &query.state {
        filter.state = Some(knowledge::RecordState::parse(state).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state {state:?} is not an incident state such as open or resolved"
            ))
        })?);
    }
    if let Some(limit) = query.limit {
        filter.limit = limit.clamp(1, knowledge::record::MAX_QUERY_LIMIT);
    }
    match query.scope.as_deref() {
        None | Some("local") => {}
        Some("mesh") => {
            let kind = filter.kind.map(|k| k.as_str());
            let state = query.state.as_deref().map(str::to_ascii_lowercase);
            let views = ask(handle.mesh_incidents()).await?;
            let listed = views
                .into_iter()
                .filter(|v| kind.is_none_or(|k| v.incident.kind == k))
                .filter(|v| state.as_deref().is_none_or(|s| v.incident.state == s))
                .take(filter.limit)
                .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
                .collect();
            return Ok(Json(listed));
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "scope {other:?} is neither `local` nor `mesh`"
            )));
        }
    }
    let records = ask(handle.incidents(filter))
        .await?
        .map_err(ApiError::Unavailable)?;
    Ok(Json(records.iter().map(incident_json).collect()))
}

async fn incident(
    State(handle): State<NodeHandle>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record_id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("incident id {id:?} is not a number")))?;
    match ask(handle.incident(record_id))
        .await?
        .map_err(ApiError::Unavailable)?
    {
        Some(record) => Ok(Json(incident_json(&record))),
        None => Err(ApiError::NotFound(format!("incident {record_id}"))),
    }
}

/// `POST /api/v1/heal/reload`: reads node.yaml again and replaces the healing loop's checks
/// and playbooks, or answers 422 with the file, line and reason and keeps the previous set.
async fn reload_healing(
    State(handle): State<NodeHandle>,
) -> Result<Json<node::healing::ReloadOutcome>, ApiError> {
    match ask(handle.reload_healing()).await? {
        Ok(outcome) => Ok(Json(outcome)),
        Err(node::ReloadError::Disabled) => Err(ApiError::Unavailable(
            node::ReloadError::Disabled.to_string(),
        )),
        Err(node::ReloadError::Refused(refused)) => Err(ApiError::ReloadRefused(refused)),
    }
}

async fn notices(
    State(handle): State<NodeHandle>,
) -> Result<Json<Vec<node::healing::NoticeView>>, ApiError> {
    Ok(Json(ask(handle.notices()).await?))
}

/// `GET /api/v1/events`: a WebSocket carrying every healing event and action as one JSON
/// text message each. A client that falls more than the loop's backlog behind is sent
/// `{"type":"lagged","missed":N}` and continues with the newest events.
async fn events(
    State(handle): State<NodeHandle>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(receiver) = ask(handle.subscribe()).await? else {
        return Err(ApiError::Unavailable(
            "the healing loop is disabled (mapk.enabled: false)".to_string(),
        ));
    };
    Ok(upgrade.on_upgrade(move |socket| stream_events(socket, receiver)))
}

async fn stream_events(
    mut socket: WebSocket,
    mut receiver: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let text = tokio::select! {
            received = receiver.recv() => match received {
                Ok(text) => text.to_string(),
                Err(RecvError::Lagged(missed)) => format!("{{\"type\":\"lagged\",\"missed\":{missed}}}"),
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Clients only listen; anything but a close is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}
