//! Who may use the admin listener, decided from the request head before any endpoint
//! runs.
//!
//! The admin port can reload the config and shows it, so three checks stand in front
//! of it, in this order:
//!
//! 1. **`Host`**, against DNS rebinding: a web page whose name an attacker re-points
//!    at 127.0.0.1 reaches the admin port from the victim's browser, but its requests
//!    still carry the attacker's name. Only IP literals, `localhost` and the names in
//!    `[admin] hosts` pass (probes and Prometheus use the pod IP). 421 otherwise.
//! 2. **`Origin` and `Sec-Fetch-Site`**, against cross-site requests: a form or a
//!    `text/plain` fetch on any web page can POST `/-/reload` without a CORS
//!    preflight. A browser says where such a request comes from; anything but the
//!    admin listener's own origin is refused with 403.
//! 3. **The bearer token**, when `[admin] token_file` is set: every path but
//!    [`OPEN_PATHS`] needs `Authorization: Bearer <token>`. 401 otherwise.
//!
//! [`check`] is pure (settings and request head in, verdict out), so each rule is a
//! unit test. Nothing here puts a header value or the token into an answer or a log.

use std::net::{IpAddr, Ipv6Addr};

use http::{header, HeaderMap, StatusCode, Uri};

/// The access settings of the serving config generation.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token every path but [`OPEN_PATHS`] requires; `None` when none is set.
    pub token: Option<String>,
    /// `Host` names accepted besides IP literals and `localhost`, lowercase.
    pub hosts: Vec<String>,
}

/// Paths that need no token (the `Host` and `Origin` checks still apply):
/// - `/livez`, `/readyz`: kubelet probes carry no credentials, and tell nothing.
/// - `/metrics`: Prometheus discovers pods by annotation and scrapes them without
///   a per-target secret; the series hold counts labelled with config names only.
/// - `/`: the dashboard's page itself, the same static file in every install with
///   no figure in it. It has to load without a token to ask for one: a browser sends
///   no bearer header when it navigates. The figures it shows come from `/stats`
///   and `/config`, which require the token.
pub const OPEN_PATHS: [&str; 4] = ["/livez", "/readyz", "/metrics", "/"];

/// Why a request was refused: each a status and a stable `error` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request names the server by a name that is not allowed: 421.
    HostNotAllowed,
    /// A browser sent it from another origin: 403.
    CrossOrigin,
    /// A token is configured and the request did not carry it: 401.
    Unauthorized,
}

impl Refusal {
    /// The answer's status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
            Refusal::CrossOrigin => StatusCode::FORBIDDEN,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `error` code of the JSON answer.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::HostNotAllowed => "host_not_allowed",
            Refusal::CrossOrigin => "cross_origin",
            Refusal::Unauthorized => "unauthorized",
        }
    }

    /// What to do about it; fixed text, never an echo of the request.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::HostNotAllowed => {
                "the Host header must be an IP address, localhost, or a name listed in [admin] hosts"
            }
            Refusal::CrossOrigin => {
                "the admin listener answers no cross-origin request; call it from its own origin or without a browser"
            }
            Refusal::Unauthorized => {
                "send the token of [admin] token_file as \"Authorization: Bearer <token>\""
            }
        }
    }
}

/// Whether the request with this `uri` and `headers` may reach the admin endpoint
/// at its path: the first check it fails, in the order of the module's doc.
pub fn check(access: &Access, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
    let host = request_host(uri, headers)?;
    if !host.is_none_or(|h| allowed_host(access, h)) {
        return Err(Refusal::HostNotAllowed);
    }
    // An absolute-form target names the server too; it must pass as well.
    if let Some(authority) = uri.authority() {
        if !allowed_host(access, authority.as_str()) {
            return Err(Refusal::HostNotAllowed);
        }
    }
    let cross_origin = headers
        .get_all(header::ORIGIN)
        .iter()
        .any(|origin| !same_origin(origin.as_bytes(), host));
    let cross_site = headers
        .get_all("sec-fetch-site")
        .iter()
        .any(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_origin || cross_site {
        return Err(Refusal::CrossOrigin);
    }
    match &access.token {
        Some(token) if !OPEN_PATHS.contains(&uri.path()) => match bearer(headers) {
            Some(given) if same_secret(given, token.as_bytes()) => Ok(()),
            _ => Err(Refusal::Unauthorized),
        },
        _ => Ok(()),
    }
}

/// The name the request gives for the server: its one `Host` header, or the
/// authority of the target (HTTP/2's `:authority`), or none (HTTP/1.0). Two `Host`
/// headers, or one that is not text, are refused: which one a check reads would
/// be a guess.
fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Result<Option<&'a str>, Refusal> {
    let mut values = headers.get_all(header::HOST).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::HostNotAllowed),
        (Some(_), Some(_)) => Err(Refusal::HostNotAllowed),
        (None, _) => Ok(uri.authority().map(|a| a.as_str())),
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) is an IP literal,
/// `localhost` or one of the configured names, ignoring case.
fn allowed_host(access: &Access, host: &str) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || access.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The name of a `Host` value without its port and IPv6 brackets, or `None` when the
/// value is malformed (a port that is not 1–5 digits, brackets around no IPv6).
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, rest) = bracketed.split_once(']')?;
            v6.parse::<Ipv6Addr>().ok()?;
            (v6, rest)
        }
        None => match host.find(':') {
            Some(colon) => host.split_at(colon),
            None => (host, ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => {
            (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => port.is_empty(),
    };
    (port_ok && !name.is_empty()).then_some(name)
}

/// Whether an `Origin` value is `http://HOST` or `https://HOST` for the request's own
/// `host`. `null` (sandboxed frames, redirects, `file:` pages) never is.
fn same_origin(origin: &[u8], host: Option<&str>) -> bool {
    let (Some(host), Ok(origin)) = (host, std::str::from_utf8(origin)) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Equality that reads every byte whatever the first difference, so the time taken
/// does not tell an attacker how much of a guess was right (only its length).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, hosts: &[&str]) -> Access {
        Access {
            token: token.map(str::to_owned),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// The verdict on `path` with these headers.
    fn verdict(access: &Access, path: &str, headers: &[(&str, &str)]) -> Result<(), Refusal> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                value.parse().expect("a header value"),
            );
        }
        check(access, &path.parse().expect("a path"), &map)
    }

    #[test]
    fn ip_literals_localhost_and_listed_names_pass_the_host_check() {
        let open = access(None, &["veer", "veer-metrics.ml.svc"]);
        for host in [
            "127.0.0.1",
            "127.0.0.1:9901",
            "10.1.2.3:9901",
            "[::1]",
            "[::1]:9901",
            "[fe80::1]:80",
            "localhost",
            "LocalHost:9901",
            "veer:9901",
            "VEER",
            "veer-metrics.ml.svc:9901",
        ] {
            assert_eq!(
                verdict(&open, "/config", &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn other_names_and_malformed_hosts_are_misdirected() {
        let open = access(None, &["veer"]);
        for host in [
            "rebind.evil.example",
            "rebind.evil.example:9901",
            "veer.evil.example",
            "localhost.evil.example",
            "sub.localhost",
            "::1",
            "[localhost]",
            "[::1",
            "127.0.0.1:",
            "127.0.0.1:99999x",
            "veer:9901:1",
            "",
            ":9901",
        ] {
            assert_eq!(
                verdict(&open, "/config", &[("host", host)]),
                Err(Refusal::HostNotAllowed),
                "{host:?}"
            );
        }
        // Every path, the probes and the scrape included.
        for path in OPEN_PATHS {
            assert_eq!(
                verdict(&open, path, &[("host", "rebind.evil.example")]),
                Err(Refusal::HostNotAllowed),
                "{path}"
            );
        }
    }

    #[test]
    fn a_request_without_host_passes_and_two_hosts_do_not() {
        let open = access(None, &[]);
        assert_eq!(verdict(&open, "/config", &[]), Ok(()));
        assert_eq!(
            verdict(
                &open,
                "/config",
                &[("host", "127.0.0.1"), ("host", "evil.example")]
            ),
            Err(Refusal::HostNotAllowed)
        );
    }

    #[test]
    fn an_absolute_target_is_checked_like_the_host_header() {
        let open = access(None, &[]);
        assert_eq!(
            verdict(
                &open,
                "http://rebind.evil.example/config",
                &[("host", "127.0.0.1")]
            ),
            Err(Refusal::HostNotAllowed)
        );
        // HTTP/2 carries the name in the target alone.
        assert_eq!(verdict(&open, "http://127.0.0.1:9901/config", &[]), Ok(()));
    }

    #[test]
    fn only_the_listeners_own_origin_may_send_a_browser_request() {
        let open = access(None, &[]);
        let host = ("host", "127.0.0.1:9901");
        for origin in ["http://127.0.0.1:9901", "https://127.0.0.1:9901"] {
            assert_eq!(
                verdict(&open, "/-/reload", &[host, ("origin", origin)]),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "null",
            "http://evil.example",
            "http://127.0.0.1:9902",
            "http://127.0.0.1",
            "http://127.0.0.1:9901/",
            "ftp://127.0.0.1:9901",
            // Browsers serialize the scheme in lowercase (RFC 6454).
            "HTTP://127.0.0.1:9901",
            "127.0.0.1:9901",
        ] {
            for path in ["/-/reload", "/config", "/metrics", "/livez"] {
                assert_eq!(
                    verdict(&open, path, &[host, ("origin", origin)]),
                    Err(Refusal::CrossOrigin),
                    "{origin} {path}"
                );
            }
        }
        // No Host to compare with: no origin is the same.
        assert_eq!(
            verdict(&open, "/config", &[("origin", "http://127.0.0.1:9901")]),
            Err(Refusal::CrossOrigin)
        );
    }

    #[test]
    fn a_cross_site_fetch_is_refused_even_without_origin() {
        let open = access(None, &[]);
        let host = ("host", "localhost:9901");
        assert_eq!(
            verdict(&open, "/config", &[host, ("sec-fetch-site", "cross-site")]),
            Err(Refusal::CrossOrigin)
        );
        for site in ["same-origin", "none"] {
            assert_eq!(
                verdict(&open, "/config", &[host, ("sec-fetch-site", site)]),
                Ok(()),
                "{site}"
            );
        }
    }

    #[test]
    fn with_a_token_every_path_but_the_open_ones_needs_it() {
        let locked = access(Some("s3cret-token"), &[]);
        let host = ("host", "127.0.0.1:9901");
        for path in ["/config", "/stats", "/-/reload", "/nope"] {
            for auth in [
                None,
                Some("Bearer wrong-token!"),
                Some("Bearer s3cret-toke"),
                Some("Bearer s3cret-token-and-more"),
                Some("Basic s3cret-token"),
                Some("s3cret-token"),
                Some("Bearer"),
            ] {
                let mut headers = vec![host];
                headers.extend(auth.map(|a| ("authorization", a)));
                assert_eq!(
                    verdict(&locked, path, &headers),
                    Err(Refusal::Unauthorized),
                    "{path} {auth:?}"
                );
            }
            for auth in [
                "Bearer s3cret-token",
                "bearer s3cret-token",
                "Bearer  s3cret-token ",
            ] {
                assert_eq!(
                    verdict(&locked, path, &[host, ("authorization", auth)]),
                    Ok(()),
                    "{path} {auth}"
                );
            }
        }
        for path in OPEN_PATHS {
            assert_eq!(verdict(&locked, path, &[host]), Ok(()), "{path}");
        }
        // Without a token configured, nothing asks for one.
        assert_eq!(verdict(&access(None, &[]), "/config", &[host]), Ok(()));
    }

    #[test]
    fn host_is_checked_before_origin_and_origin_before_the_token() {
        let locked = access(Some("t"), &[]);
        assert_eq!(
            verdict(
                &locked,
                "/config",
                &[("host", "evil.example"), ("origin", "http://other.example")]
            ),
            Err(Refusal::HostNotAllowed)
        );
        assert_eq!(
            verdict(
                &locked,
                "/config",
                &[
                    ("host", "127.0.0.1"),
                    ("origin", "null"),
                    ("authorization", "Bearer t")
                ]
            ),
            Err(Refusal::CrossOrigin)
        );
    }

    #[test]
    fn secrets_compare_equal_only_when_every_byte_is() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
    }
}
