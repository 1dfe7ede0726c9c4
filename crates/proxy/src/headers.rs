//! Header rewriting between client and backend: hop-by-hop headers removed both ways
//! (RFC 9110 §7.6.1), forwarding headers and a request id added upstream.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

/// `x-request-id`: kept when the client sent one, generated otherwise.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-veer-backend`: which backend answered, on every proxied response.
pub(crate) static VEER_BACKEND: HeaderName = HeaderName::from_static("x-veer-backend");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
/// `Upgrade` goes too: veer does not tunnel upgraded connections.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names beats eight removals.
    let is_hop = |name: &HeaderName| HOP_BY_HOP.contains(name) || name == header::UPGRADE;
    match headers.keys().filter(|n| is_hop(n)).count() {
        0 => return,
        // Most backends' answers: `connection: keep-alive` alone, naming no header.
        1 if names_no_header(headers) => {
            headers.remove(header::CONNECTION);
            return;
        }
        _ => {}
    }
    // Removed by name, only those present: most answers carry just
    // `connection: keep-alive`, whose one token is a hop-by-hop header already listed.
    let mut present: Vec<HeaderName> = headers.keys().filter(|n| is_hop(n)).cloned().collect();
    present.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|token| !token.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok()),
    );
    for name in &present {
        headers.remove(name);
    }
}

/// True when `headers` has a `Connection` whose tokens are all options
/// (`keep-alive`, `close`), none of them a header to remove with it.
fn names_no_header(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONNECTION).iter().peekable();
    values.peek().is_some()
        && values.all(|v| {
            v.as_bytes().split(|b| *b == b',').all(|token| {
                let token = token.trim_ascii();
                token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
            })
        })
}

/// Refuses a request head that names its host ambiguously, so two parties could
/// route it differently: two `Host` headers, or (HTTP/2, or an absolute-form URI) a
/// `Host` that contradicts the authority. (Both `Content-Length` and
/// `Transfer-Encoding` never get here: hyper drops the length, frames by the
/// chunked encoding and closes the connection after, as RFC 9112 §6.1 asks.)
pub(crate) fn check_head<B>(req: &http::Request<B>) -> Result<(), crate::ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(crate::ProxyError::BadRequest {
            kind: "duplicate_host",
            problem: "the request has two Host headers",
        });
    }
    match (first, req.uri().authority()) {
        (Some(host), Some(authority)) if !same_host(host.as_bytes(), authority.as_str()) => {
            Err(crate::ProxyError::BadRequest {
                kind: "conflicting_host",
                problem: "the Host header contradicts the request's authority",
            })
        }
        _ => Ok(()),
    }
}

/// True when a `Host` value and an authority name the same host, case aside; their
/// ports must agree only when both give one (`example.com` is `example.com:443`).
fn same_host(host: &[u8], authority: &str) -> bool {
    fn split(text: &[u8]) -> (&[u8], Option<&[u8]>) {
        // The port follows the last ':' after an IPv6 literal's closing bracket.
        let from = text.iter().position(|b| *b == b']').unwrap_or(0);
        match text[from..].iter().rposition(|b| *b == b':') {
            Some(i) => (&text[..from + i], Some(&text[from + i + 1..])),
            None => (text, None),
        }
    }
    let (host, host_port) = split(host);
    let (name, port) = split(authority.as_bytes());
    host.eq_ignore_ascii_case(name)
        && match (host_port, port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// The client end of a connection, prepared once per connection rather than per
/// request.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    /// The client's IP, ready for `x-forwarded-for`.
    pub(crate) ip: HeaderValue,
}

impl Downstream {
    /// Prepares the headers a connection from `addr` contributes.
    pub(crate) fn new(addr: SocketAddr) -> Downstream {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Downstream { ip }
    }
}

/// The client's request id, or a fresh random one (128 bits, hex).
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&REQUEST_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let bits = rand::random::<u128>();
            let mut id = [0u8; 32];
            for (i, digit) in id.iter_mut().enumerate() {
                *digit = HEX[((bits >> (4 * (31 - i))) & 0xf) as usize];
            }
            HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("unknown"))
        }
    }
}

/// Prepares a client request's headers for the backend: hop-by-hop removed, `Host`
/// set to the backend's (as nginx does; the client's travels on in
/// `x-forwarded-host`), `x-forwarded-for` extended with the client's address,
/// `x-forwarded-proto` set and the request id set. `authority` is the request URI's,
/// which HTTP/2 clients send instead of `Host`.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    peer: &Downstream,
    authority: Option<&Authority>,
    upstream_host: &HeaderValue,
    id: &HeaderValue,
) {
    // `te: trailers` is the one TE value that travels: gRPC servers ask for it.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    remove_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Only veer marks a request as a mirror.
    headers.remove(&crate::shadow::VEER_SHADOW);
    let original_host = headers
        .insert(header::HOST, upstream_host.clone())
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(prior) => {
            let joined = [prior.as_bytes(), b", ", peer.ip.as_bytes()].concat();
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer.ip.clone())
        }
        None => peer.ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.insert(REQUEST_ID.clone(), id.clone());
}

/// Prepares a backend response's headers for the client. A response with both
/// `Transfer-Encoding` and `Content-Length` was framed by the former (RFC 9112
/// §6.3): the length goes, or the client would cut the de-chunked body short.
pub(crate) fn to_downstream(headers: &mut HeaderMap, backend: &HeaderValue, id: &HeaderValue) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    remove_hop_by_hop(headers);
    headers.insert(VEER_BACKEND.clone(), backend.clone());
    if !headers.contains_key(&REQUEST_ID) {
        headers.insert(REQUEST_ID.clone(), id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn a_connection_of_options_alone_goes_and_one_naming_a_header_takes_it_along() {
        let mut h = map(&[("connection", "Keep-Alive"), ("x-keep", "yes")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        let mut h = map(&[
            ("connection", "close"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn forwarding_headers_extend_what_the_client_sent() {
        let mut h = map(&[("x-forwarded-for", "10.1.1.1"), ("host", "api.example.com")]);
        let id = HeaderValue::from_static("abc");
        let client = Downstream::new("127.0.0.1:5000".parse().unwrap());
        let backend = HeaderValue::from_static("10.0.0.11:8000");
        to_upstream(&mut h, &client, None, &backend, &id);
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h["host"], "10.0.0.11:8000");
    }

    #[test]
    fn http2_authority_becomes_the_forwarded_host() {
        let mut h = HeaderMap::new();
        let client = Downstream::new("[::1]:5000".parse().unwrap());
        let authority = Authority::from_static("api.example.com:443");
        let (id, backend) = (
            HeaderValue::from_static("abc"),
            HeaderValue::from_static("b:1"),
        );
        to_upstream(&mut h, &client, Some(&authority), &backend, &id);
        assert_eq!(h["x-forwarded-host"], "api.example.com:443");
        assert_eq!(h["x-forwarded-for"], "::1");
    }

    #[test]
    fn te_trailers_travels_and_other_te_values_do_not() {
        let client = Downstream::new("127.0.0.1:5000".parse().unwrap());
        let v = HeaderValue::from_static("b:1");
        let mut grpc = map(&[("te", "trailers")]);
        to_upstream(&mut grpc, &client, None, &v, &v);
        assert_eq!(grpc["te"], "trailers");
        let mut other = map(&[("te", "gzip")]);
        to_upstream(&mut other, &client, None, &v, &v);
        assert!(!other.contains_key("te"));
    }

    #[test]
    fn a_client_cannot_mark_its_request_as_a_mirror() {
        let mut h = map(&[("x-veer-shadow", "1")]);
        let client = Downstream::new("127.0.0.1:5000".parse().unwrap());
        let v = HeaderValue::from_static("b:1");
        to_upstream(&mut h, &client, None, &v, &v);
        assert!(!h.contains_key("x-veer-shadow"));
    }

    #[test]
    fn a_chunked_answer_loses_its_content_length() {
        let mut h = map(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        let v = HeaderValue::from_static("v1");
        to_downstream(&mut h, &v, &v);
        assert!(!h.contains_key("content-length") && !h.contains_key("transfer-encoding"));
    }

    #[test]
    fn ambiguous_hosts_are_refused() {
        let request = |uri: &str, hosts: &[&'static str]| {
            let mut req = http::Request::builder().uri(uri);
            for h in hosts {
                req = req.header("host", *h);
            }
            req.body(()).unwrap()
        };
        assert!(check_head(&request("/x", &["a"])).is_ok());
        assert!(check_head(&request("http://A:1/x", &["a:1"])).is_ok());
        let kind = |r| match check_head(&r) {
            Err(crate::ProxyError::BadRequest { kind, .. }) => kind,
            _ => "accepted",
        };
        assert_eq!(kind(request("/x", &["a", "b"])), "duplicate_host");
        assert_eq!(kind(request("http://a/x", &["evil"])), "conflicting_host");
        assert_eq!(kind(request("http://a:1/x", &["a:2"])), "conflicting_host");
        assert!(check_head(&request(
            "https://api.example.com:443/x",
            &["API.example.com"]
        ))
        .is_ok());
        assert!(check_head(&request("http://[::1]:8080/x", &["[::1]"])).is_ok());
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        assert_eq!(request_id(&map(&[("x-request-id", "r-1")])), "r-1");
        let fresh = request_id(&map(&[]));
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&map(&[])));
    }
}
