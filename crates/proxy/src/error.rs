//! What can go wrong on a request's way, where it went wrong, and the answer the
//! client gets for it: a status and a short JSON body.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::upload::ClientFault;

/// A request that veer answers itself instead of with a backend's response. Each
/// variant says where it went wrong (downstream: the client; upstream: the backend)
/// and keeps its cause as its `source`; [`ProxyError::message`] adds the innermost
/// cause for the people reading the answer and the log.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Downstream: no route's match took the request.
    #[error("no route matches {method} {path}")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// Downstream: the client's request body broke a limit or its framing. Never
    /// counted against a backend.
    #[error(transparent)]
    ClientBody(ClientFault),
    /// Downstream: the request head is ambiguous (two Hosts, a Host that
    /// contradicts the HTTP/2 `:authority`), so it is refused, not guessed.
    #[error("{problem}")]
    BadRequest {
        /// Stable code: `duplicate_host`, `conflicting_host`.
        kind: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Upstream: the backend's answer cannot be relayed (an unrequested `101`).
    #[error("backend \"{backend}\" answered what veer cannot relay: {problem}")]
    BadAnswer {
        /// Backend name.
        backend: String,
        /// What was wrong with the answer.
        problem: &'static str,
    },
    /// Upstream: the backend could not be connected to.
    #[error("backend \"{backend}\" is unreachable")]
    Unreachable {
        /// Backend name.
        backend: String,
        /// The connect error.
        #[source]
        source: UpstreamError,
    },
    /// Upstream: connected, but the exchange broke (reset, closed early, bad HTTP).
    #[error("backend \"{backend}\" failed")]
    Upstream {
        /// Backend name.
        backend: String,
        /// What broke.
        #[source]
        source: UpstreamError,
    },
    /// Local: veer is out of file descriptors and cannot open a connection; not the
    /// backend's fault (raise the fd limit, or lower `limits.max_connections`).
    #[error("veer is out of sockets")]
    OutOfSockets {
        /// The connect error (EMFILE or ENFILE).
        #[source]
        source: UpstreamError,
    },
    /// Upstream: the backend has `max_connections` requests in flight already.
    #[error("backend \"{backend}\" is at its max_connections; retry shortly")]
    Saturated {
        /// Backend name.
        backend: String,
    },
    /// Upstream: no response head within the backend's timeout.
    #[error("backend \"{backend}\" did not answer within {timeout:?}")]
    Timeout {
        /// Backend name.
        backend: String,
        /// The budget it exceeded.
        timeout: Duration,
    },
}

/// Whose doing a refused request is: what it is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client's (a 4xx): `veer_client_errors_total`, never a backend.
    Client,
    /// The backend's: its series and its outlier detection.
    Backend,
    /// veer's own (out of sockets): logged, counted against no one.
    Veer,
}

/// Why an exchange with a backend produced no answer head.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, unresolvable, timed out, or the TLS handshake failed.
    #[error("cannot connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Connected, but the exchange broke (reset, closed early, bad HTTP, or the
    /// client's body failed on the way).
    #[error("the exchange broke")]
    Exchange(#[source] hyper::Error),
    /// The HTTP/2 client's error (connect failures included).
    #[error(transparent)]
    H2(hyper_util::client::legacy::Error),
}

impl UpstreamError {
    /// True when no connection was made: nothing of the request reached the backend.
    pub fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Connect(_) => true,
            UpstreamError::Exchange(_) => false,
            UpstreamError::H2(e) => e.is_connect(),
        }
    }
}

/// The innermost error's message: "Connection refused (os error 111)" rather than
/// hyper-util's "client error (Connect)".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

impl ProxyError {
    /// The client fault inside an upstream error, taken out of it; `source` must
    /// hold one ([`ClientFault::find`]).
    pub(crate) fn client_fault(source: UpstreamError) -> ProxyError {
        // The fault is owned deep inside hyper's error: rebuild it from what it says.
        match ClientFault::find(&source) {
            Some(ClientFault::TooLarge { limit }) => {
                ProxyError::ClientBody(ClientFault::TooLarge { limit: *limit })
            }
            Some(ClientFault::Stalled { timeout }) => {
                ProxyError::ClientBody(ClientFault::Stalled { timeout: *timeout })
            }
            // The broken framing stays in the chain, as the innermost cause.
            Some(ClientFault::Broken(_)) | None => {
                ProxyError::ClientBody(ClientFault::Broken(source.into()))
            }
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::ClientBody(ClientFault::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(ClientFault::Stalled { .. }) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientBody(ClientFault::Broken(_)) => StatusCode::BAD_REQUEST,
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Unreachable { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadAnswer { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Saturated { .. } | ProxyError::OutOfSockets { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Stable machine-readable kind, the `error` field of the body.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::ClientBody(ClientFault::TooLarge { .. }) => "request_body_too_large",
            ProxyError::ClientBody(ClientFault::Stalled { .. }) => "request_body_timeout",
            ProxyError::ClientBody(ClientFault::Broken(_)) => "bad_request_body",
            ProxyError::Unreachable { .. } => "backend_unreachable",
            ProxyError::BadRequest { kind, .. } => kind,
            ProxyError::Upstream { .. } | ProxyError::BadAnswer { .. } => "backend_failed",
            ProxyError::Timeout { .. } => "backend_timeout",
            ProxyError::Saturated { .. } => "backend_saturated",
            ProxyError::OutOfSockets { .. } => "out_of_sockets",
        }
    }

    /// Whose doing this is.
    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::BadRequest { .. } => Blame::Client,
            ProxyError::OutOfSockets { .. } => Blame::Veer,
            ProxyError::Unreachable { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadAnswer { .. }
            | ProxyError::Saturated { .. }
            | ProxyError::Timeout { .. } => Blame::Backend,
        }
    }

    /// True for a refusal at a limit (a saturated backend, no sockets left): a
    /// sign of overload, not of a failure.
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            ProxyError::Saturated { .. } | ProxyError::OutOfSockets { .. }
        )
    }

    /// The backend involved, if any.
    pub fn backend(&self) -> Option<&str> {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::BadRequest { .. }
            | ProxyError::OutOfSockets { .. } => None,
            ProxyError::Unreachable { backend, .. }
            | ProxyError::BadAnswer { backend, .. }
            | ProxyError::Upstream { backend, .. }
            | ProxyError::Timeout { backend, .. }
            | ProxyError::Saturated { backend } => Some(backend),
        }
    }

    /// What happened, with its innermost cause when it has one: "backend \"v1\" is
    /// unreachable: Connection refused (os error 111)".
    pub fn message(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {}", root_cause(cause)),
            None => self.to_string(),
        }
    }

    /// `{"error": kind, "message": ..., "backend": ..., "request_id": ...}`.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response<Bytes> {
        let mut body = serde_json::json!({
            "error": self.kind(),
            "message": self.message(),
            "request_id": String::from_utf8_lossy(request_id.as_bytes()),
        });
        if let Some(backend) = self.backend() {
            body["backend"] = backend.into();
        }
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(crate::headers::REQUEST_ID.clone(), request_id.clone());
        if matches!(
            self,
            ProxyError::Saturated { .. } | ProxyError::OutOfSockets { .. }
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A whole HTTP/1.1 answer veer writes on a raw connection, one it closes after
/// (a refused connection, a request head that never came): `status`, a JSON body
/// `{"error": kind, "message": message}`, its exact length, and `extra` header lines
/// (each ending in CRLF).
pub(crate) fn raw_answer(status: StatusCode, kind: &str, message: &str, extra: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": kind, "message": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nconnection: close\r\n{extra}content-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_answer_declares_the_length_of_its_body() {
        let answer = raw_answer(
            StatusCode::REQUEST_TIMEOUT,
            "request_header_timeout",
            "late",
            "retry-after: 1\r\n",
        );
        let text = String::from_utf8(answer).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nretry-after: 1\r\n"));
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("a content-length");
        assert_eq!(declared, body.len());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).expect("json")["error"],
            "request_header_timeout"
        );
    }
}
