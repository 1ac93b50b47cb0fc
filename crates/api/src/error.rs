//! `ApiError` and the single mapping from errors to HTTP status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use node::HandleError;
use node::kvhost::KvFailure;

/// Why a request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The node's loop refused or could not take the request.
    #[error(transparent)]
    Node(#[from] HandleError),
    /// The node's loop did not answer within `REQUEST_TIMEOUT`.
    #[error("the node did not answer in time")]
    Timeout,
    /// No such route.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (a bad node id or port in the path).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is larger than the endpoint accepts.
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// The mesh has no route to the node.
    #[error("no route: {0}")]
    NoRoute(String),
    /// A key-value request failed.
    #[error(transparent)]
    Kv(#[from] KvFailure),
    /// The feature is off or its backend is busy (the healing loop, its database).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A configuration reload was refused: the file, line and reason; the node keeps the
    /// set it had.
    #[error("reload refused: {0}; the node keeps its previous checks and playbooks")]
    ReloadRefused(node::healing::ReloadRefused),
}

impl From<&ApiError> for StatusCode {
    /// The one place that decides which status code an error gets.
    fn from(error: &ApiError) -> StatusCode {
        match error {
            ApiError::Node(HandleError::Busy | HandleError::Stopped) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoRoute(_) => StatusCode::BAD_GATEWAY,
            ApiError::Kv(failure) => match failure {
                KvFailure::Disabled => StatusCode::NOT_FOUND,
                KvFailure::NotLeader { .. }
                | KvFailure::NotMember
                | KvFailure::Unavailable(_)
                | KvFailure::ShuttingDown
                | KvFailure::Corrupted(_)
                // The node cannot write now (a full disk, an I/O error): retry later or
                // through another node; the message says why.
                | KvFailure::Storage(_)
                | KvFailure::Indeterminate(_) => StatusCode::SERVICE_UNAVAILABLE,
                KvFailure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                KvFailure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                KvFailure::BadRequest(_) => StatusCode::BAD_REQUEST,
                KvFailure::Rejected(reason) if reason.contains("store full") => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                KvFailure::Rejected(_) | KvFailure::Membership(_) => StatusCode::CONFLICT,
            },
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from(&self);
        let body = match &self {
            ApiError::Kv(failure) => serde_json::json!({
                "error": self.to_string(),
                "retryable": failure.is_retryable(),
            }),
            ApiError::ReloadRefused(refused) => serde_json::json!({
                "error": self.to_string(),
                "file": refused.file,
                "line": refused.line,
                "reason": refused.reason,
            }),
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        (status, Json(body)).into_response()
    }
}
