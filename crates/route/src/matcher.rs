//! Does a request meet a route's `match` conditions?

use veer_config::Match;

use crate::RequestHead;

/// True when `head` (whose path is `path`, computed once per request by the caller)
/// meets every condition of `m` (an empty match takes everything).
pub fn matches(m: &Match, head: &RequestHead<'_>, path: &str) -> bool {
    m.path.as_deref().is_none_or(|p| p == path)
        && m.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        && m.method.as_ref().is_none_or(|method| method == head.method)
        && m.host.as_deref().is_none_or(|h| {
            head.host()
                .is_some_and(|actual| actual.eq_ignore_ascii_case(h))
        })
        && m.headers
            .iter()
            .all(|(name, value)| head.headers.get_all(name).iter().any(|v| v == value))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

    use super::*;

    fn check(
        m: &Match,
        method: Method,
        uri: &str,
        headers: &[(&'static str, &'static str)],
    ) -> bool {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_static(v));
        }
        let head = RequestHead {
            method: &method,
            uri: &uri,
            headers: &map,
        };
        matches(m, &head, uri.path())
    }

    #[test]
    fn prefix_is_a_plain_string_prefix_like_envoy() {
        let m = Match {
            path_prefix: Some("/v1/models/churn".into()),
            ..Match::default()
        };
        assert!(check(&m, Method::POST, "/v1/models/churn:predict", &[]));
        assert!(check(&m, Method::POST, "/v1/models/churn/x?q=1", &[]));
        assert!(!check(&m, Method::POST, "/v1/models/chur", &[]));
    }

    #[test]
    fn exact_path_ignores_query() {
        let m = Match {
            path: Some("/predict".into()),
            ..Match::default()
        };
        assert!(check(&m, Method::GET, "/predict?x=1", &[]));
        assert!(!check(&m, Method::GET, "/predict/", &[]));
    }

    #[test]
    fn host_is_matched_without_port_and_case() {
        let m = Match {
            host: Some("api.example.com".into()),
            ..Match::default()
        };
        assert!(check(
            &m,
            Method::GET,
            "/",
            &[("host", "API.example.com:8080")]
        ));
        assert!(check(&m, Method::GET, "http://api.example.com/", &[]));
        assert!(!check(
            &m,
            Method::GET,
            "/",
            &[("host", "other.example.com")]
        ));
        assert!(!check(&m, Method::GET, "/", &[]));
    }

    #[test]
    fn method_and_every_header_must_hold() {
        let m = Match {
            method: Some(Method::POST),
            headers: vec![(
                HeaderName::from_static("x-ab"),
                HeaderValue::from_static("b"),
            )],
            ..Match::default()
        };
        assert!(check(
            &m,
            Method::POST,
            "/",
            &[("x-ab", "a"), ("x-ab", "b")]
        ));
        assert!(!check(&m, Method::GET, "/", &[("x-ab", "b")]));
        assert!(!check(&m, Method::POST, "/", &[("x-ab", "a")]));
    }
}
