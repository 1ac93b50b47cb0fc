//! The key-value and Raft routes: `/api/v1/kv...` and `/api/v1/raft...`.
//!
//! Values travel as raw bytes (request and response bodies of single keys); listings, watches
//! and compare-and-swap bodies are JSON with bytes in standard base64. Keys in the path are
//! UTF-8, percent-encoded; prefixes in the query string are percent-encoded bytes.

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use node::NodeHandle;
use node::kvhost::{ClientReply, ClientRequest, KvEntry, KvFailure, KvHost, RaftView};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Default page of a listing.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Header carrying the revision of a value read or written.
pub const REVISION_HEADER: &str = "x-kv-revision";

/// Header carrying the lease of a value read.
pub const LEASE_HEADER: &str = "x-kv-lease";

/// A stored entry as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// The key, base64.
    pub key: String,
    /// The value, base64.
    pub value: String,
    /// Revision of the write that stored it.
    pub revision: u64,
    /// Lease it is attached to.
    pub lease: Option<u64>,
}

impl From<KvEntry> for EntryView {
    fn from(entry: KvEntry) -> Self {
        EntryView {
            key: BASE64.encode(&entry.key),
            value: BASE64.encode(&entry.value),
            revision: entry.revision,
            lease: entry.lease,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListView {
    /// Entries in key order.
    pub items: Vec<EntryView>,
    /// Base64 key to pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Answer to a put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutView {
    /// Revision of the write.
    pub revision: u64,
    /// Lease the key is attached to.
    pub lease: Option<u64>,
}

/// Answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteView {
    /// Whether the key existed.
    pub existed: bool,
    /// Revision of the delete.
    pub revision: u64,
}

/// Body of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasBody {
    /// Required current value, base64; `null` means "the key must be absent".
    pub expected: Option<String>,
    /// New value, base64.
    pub new: String,
}

/// Answer to a compare-and-swap (status 200 when it succeeded, 409 when the comparison
/// failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasView {
    /// Whether the new value was written.
    pub succeeded: bool,
    /// The value now stored, base64 (`null`: absent).
    pub current: Option<String>,
    /// Revision of the operation.
    pub revision: u64,
    /// Why it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLine {
    /// `put`, `delete`, `reset` (state replaced by a snapshot: re-list) or `lagged` (events
    /// were lost: re-list; the stream ends).
    pub kind: String,
    /// The key, base64 (put and delete).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    /// The value, base64 (put).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
    /// Revision of the change.
    pub revision: u64,
}

fn kv(handle: &NodeHandle) -> Result<&KvHost, ApiError> {
    handle.kv().ok_or(ApiError::Kv(KvFailure::Disabled))
}

/// Query parameters, percent-decoded to bytes.
fn params(raw: Option<String>) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let mut out = HashMap::new();
    let Some(raw) = raw else {
        return Ok(out);
    };
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8(percent_decode(name)?)
            .map_err(|_| ApiError::BadRequest("query parameter name is not UTF-8".into()))?;
        out.insert(name, percent_decode(value)?);
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("bad percent-encoding in {text:?}"))
                    })?;
                out.push(hex);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    Ok(out)
}

fn flag(params: &HashMap<String, Vec<u8>>, name: &str) -> Result<bool, ApiError> {
    match params.get(name).map(Vec::as_slice) {
        None => Ok(false),
        Some(b"" | b"true" | b"1") => Ok(true),
        Some(b"false" | b"0") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{name}={} is not true or false",
            String::from_utf8_lossy(other)
        ))),
    }
}

fn number(params: &HashMap<String, Vec<u8>>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|text| {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name}={} is not a whole number",
                        String::from_utf8_lossy(text)
                    ))
                })
        })
        .transpose()
}

fn known(params: &HashMap<String, Vec<u8>>, allowed: &[&str]) -> Result<(), ApiError> {
    for name in params.keys() {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {name:?} (accepted: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn unexpected(reply: ClientReply) -> ApiError {
    ApiError::Kv(KvFailure::Storage(format!("unexpected reply {reply:?}")))
}

/// `GET /api/v1/kv/{key}[?stale=true]`: the raw value.
pub async fn get_key(
    State(handle): State<NodeHandle>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(query)?;
    known(&params, &["stale"])?;
    let stale = flag(&params, "stale")?;
    let reply = kv(&handle)?
        .request(ClientRequest::Get {
            key: key.clone().into_bytes(),
            stale,
        })
        .await?;
    match reply {
        ClientReply::Get { entry: Some(entry) } => {
            let mut response = Response::new(Body::from(entry.value));
            let headers = response.headers_mut();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(REVISION_HEADER, HeaderValue::from(entry.revision));
            if let Some(lease) = entry.lease {
                headers.insert(LEASE_HEADER, HeaderValue::from(lease));
            }
            Ok(response)
        }
        ClientReply::Get { entry: None } => Err(ApiError::NotFound(format!("key {key:?}"))),
        other => Err(unexpected(other)),
    }
}

/// `PUT /api/v1/kv/{key}[?ttl_ms=N | ?lease=ID]`: body is the value.
pub async fn put_key(
    State(handle): State<NodeHandle>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<PutView>, ApiError> {
    let params = params(query)?;
    known(&params, &["ttl_ms", "lease"])?;
    let reply = kv(&handle)?
        .request(ClientRequest::Put {
            key: key.into_bytes(),
            value: body.to_vec(),
            lease: number(&params, "lease")?,
            ttl_ms: number(&params, "ttl_ms")?,
        })
        .await?;
    match reply {
        ClientReply::Put { revision, lease } => Ok(Json(PutView { revision, lease })),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/kv/{key}`.
pub async fn delete_key(
    State(handle): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<Json<DeleteView>, ApiError> {
    match kv(&handle)?
        .request(ClientRequest::Delete {
            key: key.into_bytes(),
        })
        .await?
    {
        ClientReply::Delete { existed, revision } => Ok(Json(DeleteView { existed, revision })),
        other => Err(unexpected(other)),
    }
}

fn decode_b64(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(text)
        .map_err(|error| ApiError::BadRequest(format!("{what} is not base64: {error}")))
}

/// `POST /api/v1/kv/{key}` with a [`CasBody`]: compare-and-swap.
pub async fn cas_key(
    State(handle): State<NodeHandle>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let cas: CasBody = serde_json::from_slice(&body).map_err(|error| {
        ApiError::BadRequest(format!(
            "a compare-and-swap body is {{\"expected\": base64 or null, \"new\": base64}}: {error}"
        ))
    })?;
    let expected = cas
        .expected
        .as_deref()
        .map(|text| decode_b64("expected", text))
        .transpose()?;
    let new = decode_b64("new", &cas.new)?;
    let expected_absent = expected.is_none();
    match kv(&handle)?
        .request(ClientRequest::Cas {
            key: key.into_bytes(),
            expected,
            new,
        })
        .await?
    {
        ClientReply::Cas {
            succeeded,
            current,
            revision,
        } => {
            let error = (!succeeded).then(|| match (&current, expected_absent) {
                (None, _) => "compare failed: the key does not exist".to_string(),
                (Some(_), true) => "compare failed: the key already exists".to_string(),
                (Some(_), false) => "compare failed: the key holds another value".to_string(),
            });
            let view = CasView {
                succeeded,
                current: current.map(|c| BASE64.encode(c)),
                revision,
                error,
            };
            let status = if succeeded {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            Ok((status, Json(view)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/kv?prefix=P[&after=K&limit=N&stale=true]` lists;
/// `GET /api/v1/kv?prefix=P&watch=true` streams changes as NDJSON [`WatchLine`]s.
pub async fn list_or_watch(
    State(handle): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(query)?;
    known(&params, &["prefix", "after", "limit", "stale", "watch"])?;
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    let host = kv(&handle)?;
    if flag(&params, "watch")? {
        return watch(host, &prefix);
    }
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_LIST_LIMIT as u64);
    let reply = host
        .request(ClientRequest::List {
            prefix,
            after: params.get("after").cloned(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            stale: flag(&params, "stale")?,
        })
        .await?;
    match reply {
        ClientReply::List { items, next } => Ok(Json(ListView {
            items: items.into_iter().map(EntryView::from).collect(),
            next: next.map(|n| BASE64.encode(n)),
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

fn watch(host: &KvHost, prefix: &[u8]) -> Result<Response, ApiError> {
    let watch = host.watch(prefix)?;
    let stream = futures_util::stream::unfold(Some(watch), |state| async move {
        let mut watch = state?;
        let (line, more) = match watch.next().await {
            Ok(kv::WatchEvent::Change {
                key,
                value,
                revision,
            }) => (
                WatchLine {
                    kind: if value.is_some() { "put" } else { "delete" }.to_string(),
                    key: Some(BASE64.encode(key)),
                    value: value.map(|v| BASE64.encode(v)),
                    revision,
                },
                true,
            ),
            Ok(kv::WatchEvent::Reset { revision }) => (
                WatchLine {
                    kind: "reset".to_string(),
                    key: None,
                    value: None,
                    revision,
                },
                true,
            ),
            Err(kv::WatchError::Lagged(_)) => (
                WatchLine {
                    kind: "lagged".to_string(),
                    key: None,
                    value: None,
                    revision: 0,
                },
                false,
            ),
            Err(kv::WatchError::Closed) => return None,
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        let next = more.then_some(watch);
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(bytes)), next))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// `GET /api/v1/raft`: the Raft status of a member (this node, or a voter when this node
/// holds no replica).
pub async fn raft_status(State(handle): State<NodeHandle>) -> Result<Json<RaftView>, ApiError> {
    raft(&handle, ClientRequest::Status).await
}

fn node_id(text: &str) -> Result<wire::NodeId, ApiError> {
    text.parse()
        .map_err(|error| ApiError::BadRequest(format!("node {text:?}: {error}")))
}

/// `POST /api/v1/raft/voters/{node}`: makes `node` a voter.
pub async fn add_voter(
    State(handle): State<NodeHandle>,
    Path(node): Path<String>,
) -> Result<Json<RaftView>, ApiError> {
    let node = node_id(&node)?;
    raft(&handle, ClientRequest::AddVoter { node }).await
}

/// `DELETE /api/v1/raft/voters/{node}`: takes `node` out of the voters.
pub async fn remove_voter(
    State(handle): State<NodeHandle>,
    Path(node): Path<String>,
) -> Result<Json<RaftView>, ApiError> {
    let node = node_id(&node)?;
    raft(&handle, ClientRequest::RemoveVoter { node }).await
}

async fn raft(handle: &NodeHandle, request: ClientRequest) -> Result<Json<RaftView>, ApiError> {
    match kv(handle)?.request(request).await? {
        ClientReply::Raft(view) => Ok(Json(view)),
        other => Err(unexpected(other)),
    }
}
