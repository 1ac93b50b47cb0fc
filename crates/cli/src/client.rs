//! `ApiClient`: a small blocking client for a node's local HTTP API, used by `ctl`, the demo
//! and the integration tests.

use std::time::Duration;

use node::{PeerView, RouteView, StatusView};
use serde::de::DeserializeOwned;
use wire::NodeId;

/// Default API address, the same as `node_config.api.listen`'s default.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7401";

/// How long `ctl` waits for a node: it answers in milliseconds on loopback, so a node that
/// takes longer is wedged or the address is wrong.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body read. A routing table of 65,536 destinations is about 25 MB of JSON;
/// the cap keeps a wrong URL pointing at a huge file from filling memory.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Why a call to the node API failed. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http://host:port` URL.
    #[error("invalid API URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the URL.
    #[error("cannot reach the node API at {url}: {reason} (is `x0tta6bl4 run` running there?)")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The node answered with an error status.
    #[error("the node API at {url} answered {status}: {message}")]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The error message from the body, if any.
        message: String,
    },
    /// The answer was not the expected JSON (probably not an x0tta6bl4 node).
    #[error("{url} did not answer like an x0tta6bl4 node API: {reason}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// The decoding error.
        reason: String,
    },
}

/// A client for one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    agent: ureq::Agent,
}

impl ApiClient {
    /// A client for the API at `url` (e.g. `http://127.0.0.1:7401`), giving up on requests
    /// after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<ApiClient, ClientError> {
        let base = validate_url(url)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // The API is local: never route it through a proxy from the environment.
            .proxy(None)
            .build()
            .into();
        Ok(ApiClient { base, agent })
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/api/v1/status")
    }

    /// `GET /api/v1/peers`.
    pub fn peers(&self) -> Result<Vec<PeerView>, ClientError> {
        self.get("/api/v1/peers")
    }

    /// `GET /api/v1/routes`.
    pub fn routes(&self) -> Result<Vec<RouteView>, ClientError> {
        self.get("/api/v1/routes")
    }

    /// `GET /api/v1/identity`.
    pub fn identity(&self) -> Result<node::IdentityView, ClientError> {
        self.get("/api/v1/identity")
    }

    /// `GET /api/v1/crdt`.
    pub fn crdt(&self) -> Result<node::CrdtView, ClientError> {
        self.get("/api/v1/crdt")
    }

    /// `GET /health`; true if the node answered that it is ok.
    pub fn healthy(&self) -> bool {
        self.get::<serde_json::Value>("/health")
            .is_ok_and(|body| body["status"] == "ok")
    }

    /// Sends a datagram through the node to `to` at `port`.
    pub fn send_datagram(
        &self,
        to: &NodeId,
        port: u16,
        payload: &[u8],
    ) -> Result<node::SendOutcome, ClientError> {
        self.post(&format!("/api/v1/datagrams/{to}/{port}"), payload)
    }

    /// Takes the datagrams the node received (for `port`, or all).
    pub fn take_datagrams(
        &self,
        port: Option<u16>,
    ) -> Result<Vec<node::DatagramView>, ClientError> {
        match port {
            Some(port) => self.get(&format!("/api/v1/datagrams/{port}")),
            None => self.get("/api/v1/datagrams"),
        }
    }

    /// `PUT /api/v1/kv/{key}` with `value`; `query` is `""`, `"?ttl_ms=N"` or `"?lease=ID"`.
    pub fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        query: &str,
    ) -> Result<api::kv::PutView, ClientError> {
        let url = format!("{}/api/v1/kv/{}{query}", self.base, encode_key(key));
        let response = self
            .agent
            .put(&url)
            .send(value)
            .map_err(|error| self.call_error(&url, error))?;
        self.decode(url, response)
    }

    /// `GET /api/v1/kv/{key}`: the value and its revision, `None` if the key does not exist.
    pub fn kv_get(&self, key: &str, stale: bool) -> Result<Option<(Vec<u8>, u64)>, ClientError> {
        let query = if stale { "?stale=true" } else { "" };
        let url = format!("{}/api/v1/kv/{}{query}", self.base, encode_key(key));
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|error| self.call_error(&url, error))?;
        let status = response.status().as_u16();
        let revision = response
            .headers()
            .get(api::kv::REVISION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|error| ClientError::BadResponse {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        match status {
            200 => Ok(Some((body, revision))),
            404 if error_message(&body).starts_with("not found: key") => Ok(None),
            _ => Err(ClientError::Status {
                url,
                status,
                message: error_message(&body),
            }),
        }
    }

    /// `DELETE /api/v1/kv/{key}`.
    pub fn kv_delete(&self, key: &str) -> Result<api::kv::DeleteView, ClientError> {
        self.delete(&format!("/api/v1/kv/{}", encode_key(key)))
    }

    /// `POST /api/v1/kv/{key}`: compare-and-swap. A failed comparison is an answer (409),
    /// not an error.
    pub fn kv_cas(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<api::kv::CasView, ClientError> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let body = api::kv::CasBody {
            expected: expected.map(|e| engine.encode(e)),
            new: engine.encode(new),
        };
        let url = format!("{}/api/v1/kv/{}", self.base, encode_key(key));
        let mut response = self
            .agent
            .post(&url)
            .send_json(&body)
            .map_err(|error| self.call_error(&url, error))?;
        if response.status().as_u16() == 409 {
            let text =
                response
                    .body_mut()
                    .read_to_string()
                    .map_err(|error| ClientError::BadResponse {
                        url: url.clone(),
                        reason: error.to_string(),
                    })?;
            if let Ok(view) = serde_json::from_str::<api::kv::CasView>(&text) {
                return Ok(view);
            }
            return Err(ClientError::Status {
                url,
                status: 409,
                message: error_message(text.as_bytes()),
            });
        }
        self.decode(url, response)
    }

    /// `GET /api/v1/kv?prefix=...`.
    pub fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
        stale: bool,
    ) -> Result<api::kv::ListView, ClientError> {
        self.get(&format!(
            "/api/v1/kv?prefix={}&limit={limit}&stale={stale}",
            encode_key(prefix)
        ))
    }

    /// `GET /api/v1/kv?prefix=...&watch=true`: calls `each` for every change until the stream
    /// ends or `each` returns false. Not bounded by the client's timeout.
    pub fn kv_watch(
        &self,
        prefix: &str,
        mut each: impl FnMut(api::kv::WatchLine) -> bool,
    ) -> Result<(), ClientError> {
        use std::io::BufRead;
        let url = format!(
            "{}/api/v1/kv?prefix={}&watch=true",
            self.base,
            encode_key(prefix)
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .map_err(|error| self.call_error(&url, error))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.body_mut().read_to_vec().unwrap_or_default();
            return Err(ClientError::Status {
                url,
                status,
                message: error_message(&body),
            });
        }
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        for line in reader.lines() {
            let line = line.map_err(|error| ClientError::BadResponse {
                url: url.clone(),
                reason: error.to_string(),
            })?;
            let event: api::kv::WatchLine =
                serde_json::from_str(&line).map_err(|error| ClientError::BadResponse {
                    url: url.clone(),
                    reason: error.to_string(),
                })?;
            if !each(event) {
                break;
            }
        }
        Ok(())
    }

    /// `GET /api/v1/raft`.
    pub fn raft_status(&self) -> Result<node::kvhost::RaftView, ClientError> {
        self.get("/api/v1/raft")
    }

    /// `POST /api/v1/raft/voters/{node}` (`add`) or `DELETE` (remove).
    pub fn raft_voter(
        &self,
        node: &NodeId,
        add: bool,
    ) -> Result<node::kvhost::RaftView, ClientError> {
        let path = format!("/api/v1/raft/voters/{node}");
        if add {
            self.post(&path, b"")
        } else {
            self.delete(&path)
        }
    }

    /// Stored incidents, newest first (`query` is the URL query, e.g. `limit=20`).
    pub fn incidents(&self, query: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        self.get(&format!("/api/v1/incidents?{query}"))
    }

    /// Reloads the healing loop's checks and playbooks (`POST /api/v1/heal/reload`).
    pub fn reload_healing(&self) -> Result<serde_json::Value, ClientError> {
        self.post("/api/v1/heal/reload", b"")
    }

    /// One stored incident.
    pub fn incident(&self, record_id: i64) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/api/v1/incidents/{record_id}"))
    }

    /// GETs `path` and decodes the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .call()
            .map_err(|error| self.call_error(&url, error))?;
        self.decode(url, response)
    }

    /// DELETEs `path` and decodes the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .delete(&url)
            .call()
            .map_err(|error| self.call_error(&url, error))?;
        self.decode(url, response)
    }

    /// POSTs `body` to `path` and decodes the JSON answer.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .post(&url)
            .send(body)
            .map_err(|error| self.call_error(&url, error))?;
        self.decode(url, response)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        url: String,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|error| ClientError::BadResponse {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        if status != 200 {
            let message = error_message(body.as_bytes());
            return Err(ClientError::Status {
                url,
                status,
                message,
            });
        }
        serde_json::from_str(&body).map_err(|error| ClientError::BadResponse {
            url,
            reason: error.to_string(),
        })
    }

    fn call_error(&self, url: &str, error: ureq::Error) -> ClientError {
        let reason = match error {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::BadUri(reason) => {
                return ClientError::BadUrl {
                    url: url.to_string(),
                    reason,
                };
            }
            other => other.to_string(),
        };
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}

/// The `error` field of a JSON error body, or the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// Percent-encodes a key for a URL path or query (unreserved characters and `/` stay).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Accepts `http://host:port[/]` and returns it without the trailing slash.
fn validate_url(url: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| bad("not a URL; expected e.g. http://127.0.0.1:7401"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return Err(bad(
                "only http:// is supported (the API listens on loopback without TLS)",
            ));
        }
        None => return Err(bad("missing http://; expected e.g. http://127.0.0.1:7401")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad(
            "give only the node's base URL, e.g. http://127.0.0.1:7401",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            validate_url("http://127.0.0.1:7401/").unwrap(),
            "http://127.0.0.1:7401"
        );
        assert_eq!(
            validate_url("http://[::1]:7401").unwrap(),
            "http://[::1]:7401"
        );
        for (url, reason) in [
            ("127.0.0.1:7401", "missing http://"),
            ("https://127.0.0.1:7401", "only http://"),
            ("http://127.0.0.1:7401/api/v1", "base URL"),
            ("not a url at all", "not a URL"),
        ] {
            let error = validate_url(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn closed_port_is_unreachable_in_one_line() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            ApiClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
        let error = client.status().unwrap_err();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("cannot reach the node API") && !message.contains('\n'),
            "{message}"
        );
        assert!(!client.healthy());
    }
}
