//! Header rewriting between client and backend: hop-by-hop headers removed both ways
//! (RFC 9110 §7.6.1), forwarding headers and a request id added upstream.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `x-request-id`: kept when the client sent one, generated otherwise.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-veer-backend`: which backend answered, on every proxied response.
pub static VEER_BACKEND: HeaderName = HeaderName::from_static("x-veer-backend");
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
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The client's request id, or a fresh random one (128 bits, hex).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&REQUEST_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let id = format!("{:032x}", rand::random::<u128>());
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("unknown"))
        }
    }
}

/// Prepares a client request's headers for the backend: hop-by-hop removed,
/// `x-forwarded-for` extended with the client's address, `x-forwarded-proto` and
/// `x-forwarded-host` set, the request id set, and `Host` removed so the client
/// library sets it to the backend's authority (as nginx does; the original host
/// travels in `x-forwarded-host`).
pub fn to_upstream(headers: &mut HeaderMap, client: IpAddr, host: Option<&str>, id: &HeaderValue) {
    remove_hop_by_hop(headers);
    headers.remove(header::HOST);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client}"),
        None => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
    headers.insert(REQUEST_ID.clone(), id.clone());
}

/// Prepares a backend response's headers for the client.
pub fn to_downstream(headers: &mut HeaderMap, backend: &HeaderValue, id: &HeaderValue) {
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
        to_upstream(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            Some("api.example.com"),
            &id,
        );
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-request-id"], "abc");
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        assert_eq!(request_id(&map(&[("x-request-id", "r-1")])), "r-1");
        let fresh = request_id(&map(&[]));
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&map(&[])));
    }
}
