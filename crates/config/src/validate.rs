//! Raw TOML → typed [`Config`], collecting every error on the way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use http::{HeaderName, HeaderValue, Method, Uri};
use toml::Spanned;

use crate::raw::{
    RawBackend, RawCompare, RawConfig, RawListen, RawMatch, RawRoute, RawShadow, RawSplit,
};
use crate::{
    defaults, Backend, BackendId, Compare, CompareMode, Config, Diagnostic, Diagnostics,
    DivergenceLog, Listen, Loaded, Match, Route, Severity, Shadow, SplitBy, WeightedBackend,
};

impl Config {
    /// Reads and validates the routing file at `path`. Relative file paths in it
    /// (divergence logs) are taken relative to the file's own folder, so the config
    /// means the same whatever directory veer is started from.
    pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
        match std::fs::read(path) {
            Ok(bytes) => Config::from_file_bytes(path, &bytes),
            Err(e) => Err(Diagnostics(vec![Diagnostic::whole_file(
                &path.display().to_string(),
                format!("cannot read the routing file: {e}"),
            )])),
        }
    }

    /// Validates `bytes`, already read from the routing file at `path`, as
    /// [`Config::load`] does: a caller that also hashes or keeps the bytes validates
    /// exactly what it read.
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded, Diagnostics> {
        let file = path.display().to_string();
        let source = std::str::from_utf8(bytes).map_err(|e| {
            Diagnostics(vec![Diagnostic::whole_file(
                &file,
                format!("the routing file is not UTF-8 text: {e}"),
            )])
        })?;
        let mut loaded = Config::from_toml(&file, source)?;
        let folder = path.parent().unwrap_or(Path::new(""));
        for shadow in loaded
            .config
            .routes
            .iter_mut()
            .filter_map(|r| r.shadow.as_mut())
        {
            if let Some(log) = shadow.divergence_log.as_mut() {
                log.path = folder.join(&log.path);
            }
        }
        Ok(loaded)
    }

    /// Validates `source`, the text of the routing file `file` (used in messages only).
    pub fn from_toml(file: &str, source: &str) -> Result<Loaded, Diagnostics> {
        let mut v = Validator {
            file,
            source,
            found: Vec::new(),
            divergence_logs: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                v.error(span, e.message().trim_end());
                return Err(Diagnostics(v.found));
            }
        };
        let config = v.config(raw);
        if v.found.iter().any(|d| d.severity == Severity::Error) {
            return Err(Diagnostics(v.found));
        }
        Ok(Loaded {
            config,
            warnings: v.found,
        })
    }
}

struct Validator<'a> {
    file: &'a str,
    source: &'a str,
    found: Vec<Diagnostic>,
    /// Divergence logs seen so far, with the route that named each.
    divergence_logs: Vec<(String, DivergenceLog)>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::new(Severity::Error, self.file, self.source, span, message);
        self.found.push(d);
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::new(Severity::Warning, self.file, self.source, span, message);
        self.found.push(d);
    }

    /// Builds the config, recording errors as it goes; the result is only meaningful
    /// when no error was recorded.
    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = self.listen(raw.listen);
        let mut backends = Vec::new();
        let mut backend_spans = Vec::new();
        for (name, spanned) in raw.backends {
            let span = spanned.span();
            backend_spans.push(span.clone());
            backends.push(self.backend(name, span, spanned.into_inner()));
        }
        let mut config = Config {
            listen,
            backends,
            routes: Vec::new(),
        };
        let mut route_spans: Vec<Range<usize>> = Vec::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        for spanned in raw.routes {
            let span = spanned.span();
            let raw_route = spanned.into_inner();
            let name_span = raw_route.name.span();
            if let Some(line) = first_seen.get(raw_route.name.get_ref()) {
                let msg = format!(
                    "duplicate route name \"{}\" (first defined on line {line}); route names must be unique",
                    raw_route.name.get_ref()
                );
                self.error(name_span.clone(), msg);
            } else {
                let line = self.source[..name_span.start.min(self.source.len())]
                    .matches('\n')
                    .count()
                    + 1;
                first_seen.insert(raw_route.name.get_ref().clone(), line);
            }
            let route = self.route(&config, raw_route);
            config.routes.push(route);
            route_spans.push(span);
        }
        self.warn_unreachable(&config, &route_spans);
        self.warn_unused(&config, &backend_spans);
        config
    }

    fn listen(&mut self, raw: RawListen) -> Listen {
        Listen {
            http: self.address(raw.http, defaults::HTTP_LISTEN),
            admin: self.address(raw.admin, defaults::ADMIN_LISTEN),
        }
    }

    fn address(&mut self, raw: Option<Spanned<String>>, default: SocketAddr) -> SocketAddr {
        let Some(raw) = raw else { return default };
        raw.get_ref().parse().unwrap_or_else(|_| {
            let msg = format!(
                "invalid listen address \"{}\"; expected IP:PORT such as \"0.0.0.0:8080\" or \"[::1]:8080\"",
                raw.get_ref()
            );
            self.error(raw.span(), msg);
            default
        })
    }

    fn backend(&mut self, name: String, span: Range<usize>, raw: RawBackend) -> Backend {
        if !is_label_safe(&name) {
            self.error(
                span,
                format!("invalid backend name \"{name}\"; {LABEL_RULE}"),
            );
        }
        let url = self.backend_url(&name, &raw.url);
        let timeout = match raw.timeout {
            None => defaults::BACKEND_TIMEOUT,
            Some(t) => match humantime::parse_duration(t.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    let msg = format!(
                        "invalid timeout \"{}\" for backend \"{name}\"; expected a duration above zero such as \"2s\" or \"500ms\"",
                        t.get_ref()
                    );
                    self.error(t.span(), msg);
                    defaults::BACKEND_TIMEOUT
                }
            },
        };
        Backend { name, url, timeout }
    }

    fn backend_url(&mut self, name: &str, raw: &Spanned<String>) -> Uri {
        let text = raw.get_ref();
        let problem = match text.parse::<Uri>() {
            Err(e) => Some(format!("it does not parse ({e})")),
            Ok(uri) => match (uri.scheme_str(), uri.authority(), uri.path_and_query()) {
                (Some("http"), Some(_), pq) if pq.is_none_or(|pq| pq.as_str() == "/") => {
                    let mut parts = uri.into_parts();
                    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
                    if let Ok(uri) = Uri::from_parts(parts) {
                        return uri;
                    }
                    Some("it does not parse".to_owned())
                }
                (Some("https"), ..) => Some("https backends are not supported yet".to_owned()),
                (Some("http"), Some(_), _) => Some("it has a path or query".to_owned()),
                _ => Some("it lacks the http:// scheme or the host".to_owned()),
            },
        };
        if let Some(problem) = problem {
            let msg = format!(
                "invalid url \"{text}\" for backend \"{name}\": {problem}; expected http://HOST:PORT"
            );
            self.error(raw.span(), msg);
        }
        Uri::from_static("http://invalid/")
    }

    fn route(&mut self, config: &Config, raw: RawRoute) -> Route {
        let name = raw.name.get_ref().clone();
        if !is_label_safe(&name) {
            self.error(
                raw.name.span(),
                format!("invalid route name \"{name}\"; {LABEL_RULE}"),
            );
        }
        let matcher = match raw.matcher {
            Some(m) => self.matcher(&name, m.into_inner()),
            None => Match::default(),
        };
        let split = self.split(config, &name, raw.split);
        let split_by = raw
            .split_by
            .map_or(SplitBy::Random, |s| self.split_by(&name, s));
        let hash_seed = raw
            .hash_seed
            .map_or(defaults::HASH_SEED, |s| self.hash_seed(&name, s));
        let shadow = raw
            .shadow
            .and_then(|s| self.shadow(config, &name, s.into_inner()));
        let compare = match raw.compare {
            Some(c) => {
                if shadow.is_none() {
                    self.warning(
                        c.span(),
                        format!("[routes.compare] of route \"{name}\" has no effect without a [routes.shadow]"),
                    );
                }
                self.compare(&name, c.into_inner())
            }
            None => Compare::default(),
        };
        Route {
            name,
            matcher,
            split,
            split_by,
            hash_seed,
            shadow,
            compare,
        }
    }

    fn shadow(&mut self, config: &Config, route: &str, raw: RawShadow) -> Option<Shadow> {
        let name = raw.backend.get_ref();
        let Some(backend) = config.backend_id(name) else {
            let known: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
            let msg = format!(
                "unknown shadow backend \"{name}\" in route \"{route}\"; expected one of: {}",
                known.join(", ")
            );
            self.error(raw.backend.span(), msg);
            return None;
        };
        let percent = raw.percent.map_or(defaults::SHADOW_PERCENT, |p| {
            self.number(
                route,
                "shadow.percent",
                &p,
                0.0..=100.0,
                defaults::SHADOW_PERCENT,
            )
        });
        let max_in_flight = raw
            .max_in_flight
            .map_or(defaults::SHADOW_MAX_IN_FLIGHT, |m| {
                self.count(route, "shadow.max_in_flight", &m, 1..=1_000_000) as usize
            });
        let max_body = raw.max_body.map_or(defaults::SHADOW_MAX_BODY, |b| {
            self.size(route, "shadow.max_body", &b, defaults::SHADOW_MAX_BODY)
        });
        let log_span = raw.divergence_log.as_ref().map(|p| p.span());
        let divergence_log = raw.divergence_log.map(|path| DivergenceLog {
            path: path.into_inner().into(),
            per_sec: raw
                .divergence_log_per_sec
                .map_or(defaults::DIVERGENCE_LOG_PER_SEC, |r| {
                    self.count(route, "shadow.divergence_log_per_sec", &r, 1..=100_000) as u32
                }),
            max_bytes: raw
                .divergence_log_max
                .map_or(defaults::DIVERGENCE_LOG_MAX, |m| {
                    self.size(
                        route,
                        "shadow.divergence_log_max",
                        &m,
                        defaults::DIVERGENCE_LOG_MAX,
                    )
                }),
        });
        if let (Some(log), Some(span)) = (&divergence_log, log_span) {
            self.one_writer_per_log(route, log, span);
        }
        Some(Shadow {
            backend,
            percent,
            max_in_flight,
            max_body,
            divergence_log,
        })
    }

    /// Routes may share a divergence log, but one file has one rate and one size.
    fn one_writer_per_log(&mut self, route: &str, log: &DivergenceLog, span: Range<usize>) {
        let other = self
            .divergence_logs
            .iter()
            .find(|(_, seen)| seen.path == log.path && seen != log)
            .map(|(other, _)| other.clone());
        match other {
            Some(other) => self.error(
                span,
                format!(
                    "route \"{route}\" writes divergence log \"{}\" with other divergence_log_per_sec or divergence_log_max than route \"{other}\"; routes sharing a log must give it the same settings",
                    log.path.display()
                ),
            ),
            None => self.divergence_logs.push((route.to_owned(), log.clone())),
        }
    }

    fn compare(&mut self, route: &str, raw: RawCompare) -> Compare {
        let mut compare = Compare::default();
        if let Some(mode) = raw.mode {
            compare.mode = match mode.get_ref().as_str() {
                "status" => CompareMode::Status,
                "exact" => CompareMode::Exact,
                "json" => CompareMode::Json,
                other => {
                    let msg = format!(
                        "invalid compare.mode \"{other}\" in route \"{route}\"; expected \"status\", \"exact\" or \"json\""
                    );
                    self.error(mode.span(), msg);
                    CompareMode::Json
                }
            };
        }
        compare.select = raw.select.map(|p| self.pointer(route, "compare.select", p));
        compare.ignore = raw
            .ignore
            .into_iter()
            .map(|p| self.pointer(route, "compare.ignore", p))
            .collect();
        if let Some(t) = raw.abs_tolerance {
            compare.abs_tolerance =
                self.number(route, "compare.abs_tolerance", &t, 0.0..=f64::MAX, 0.0);
        }
        if let Some(t) = raw.rel_tolerance {
            compare.rel_tolerance = self.number(route, "compare.rel_tolerance", &t, 0.0..=1.0, 0.0);
        }
        if let Some(b) = raw.max_body {
            compare.max_body = self.size(route, "compare.max_body", &b, defaults::COMPARE_MAX_BODY);
        }
        compare
    }

    fn number(
        &mut self,
        route: &str,
        field: &str,
        raw: &Spanned<toml::Value>,
        range: std::ops::RangeInclusive<f64>,
        fallback: f64,
    ) -> f64 {
        let value = match raw.get_ref() {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match value {
            Some(v) if range.contains(&v) => v,
            _ => {
                let upper = if *range.end() == f64::MAX {
                    "up".to_owned()
                } else {
                    format!("to {}", range.end())
                };
                let msg = format!(
                    "invalid {field} {} in route \"{route}\"; expected a number from {} {upper}",
                    raw.get_ref(),
                    range.start()
                );
                self.error(raw.span(), msg);
                fallback
            }
        }
    }

    fn count(
        &mut self,
        route: &str,
        field: &str,
        raw: &Spanned<toml::Value>,
        range: std::ops::RangeInclusive<i64>,
    ) -> i64 {
        match raw.get_ref() {
            toml::Value::Integer(i) if range.contains(i) => *i,
            other => {
                let msg = format!(
                    "invalid {field} {other} in route \"{route}\"; expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                );
                self.error(raw.span(), msg);
                *range.start()
            }
        }
    }

    fn size(&mut self, route: &str, field: &str, raw: &Spanned<String>, fallback: u64) -> u64 {
        match raw.get_ref().parse::<bytesize::ByteSize>() {
            Ok(size) if size.as_u64() > 0 => size.as_u64(),
            _ => {
                let msg = format!(
                    "invalid {field} \"{}\" in route \"{route}\"; expected a size such as \"1MiB\" or \"512KiB\"",
                    raw.get_ref()
                );
                self.error(raw.span(), msg);
                fallback
            }
        }
    }

    fn pointer(&mut self, route: &str, field: &str, raw: Spanned<String>) -> String {
        let p = raw.get_ref();
        if !p.is_empty() && !p.starts_with('/') {
            let msg = format!(
                "invalid {field} \"{p}\" in route \"{route}\"; expected a JSON pointer such as \"/predictions\" (RFC 6901)"
            );
            self.error(raw.span(), msg);
        }
        raw.into_inner()
    }

    fn matcher(&mut self, route: &str, raw: RawMatch) -> Match {
        let mut m = Match::default();
        for (field, value, slot) in [
            ("path_prefix", raw.path_prefix, &mut m.path_prefix),
            ("path", raw.path, &mut m.path),
        ] {
            if let Some(p) = value {
                if !p.get_ref().starts_with('/') {
                    let msg = format!(
                        "{field} \"{}\" in route \"{route}\" must start with \"/\"",
                        p.get_ref()
                    );
                    self.error(p.span(), msg);
                }
                *slot = Some(p.into_inner());
            }
        }
        if let Some(host) = raw.host {
            let h = host.get_ref();
            if h.is_empty() || h.contains([':', '/', ' ']) {
                let msg = format!(
                    "invalid host \"{h}\" in route \"{route}\"; expected a bare host name such as \"api.example.com\" (no scheme, port or path)"
                );
                self.error(host.span(), msg);
            }
            m.host = Some(h.to_ascii_lowercase());
        }
        if let Some(method) = raw.method {
            match Method::from_bytes(method.get_ref().to_ascii_uppercase().as_bytes()) {
                Ok(parsed) => m.method = Some(parsed),
                Err(_) => {
                    let msg = format!(
                        "invalid method \"{}\" in route \"{route}\"; expected an HTTP method such as \"POST\"",
                        method.get_ref()
                    );
                    self.error(method.span(), msg);
                }
            }
        }
        for (name, value) in raw.headers.unwrap_or_default() {
            let header = HeaderName::from_bytes(name.as_bytes());
            let parsed = HeaderValue::from_str(value.get_ref());
            match (header, parsed) {
                (Ok(h), Ok(v)) => m.headers.push((h, v)),
                _ => {
                    let msg = format!(
                        "invalid header match \"{name}\" = \"{}\" in route \"{route}\"; expected a header name and a visible ASCII value",
                        value.get_ref()
                    );
                    self.error(value.span(), msg);
                }
            }
        }
        m
    }

    fn split(
        &mut self,
        config: &Config,
        route: &str,
        raw: Spanned<Vec<Spanned<RawSplit>>>,
    ) -> Vec<WeightedBackend> {
        let span = raw.span();
        let entries = raw.into_inner();
        let listed = entries.len();
        let mut split: Vec<WeightedBackend> = Vec::new();
        for entry in entries {
            let entry = entry.into_inner();
            let weight = self.weight(route, &entry.weight);
            let name = entry.backend.get_ref();
            let Some(backend) = config.backend_id(name) else {
                let known: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
                let expected = if known.is_empty() {
                    "no backends are defined; add a [backends.NAME] table".to_owned()
                } else {
                    format!("expected one of: {}", known.join(", "))
                };
                let msg = format!("unknown backend \"{name}\" in route \"{route}\"; {expected}");
                self.error(entry.backend.span(), msg);
                continue;
            };
            if split.iter().any(|s| s.backend == backend) {
                let msg = format!(
                    "backend \"{name}\" appears twice in the split of route \"{route}\"; list each backend once"
                );
                self.error(entry.backend.span(), msg);
                continue;
            }
            split.push(WeightedBackend { backend, weight });
        }
        if listed == 0 {
            self.error(
                span,
                format!("route \"{route}\" has an empty split; expected at least one {{ backend = \"NAME\", weight = N }}"),
            );
        } else if split.len() == listed && split.iter().all(|s| s.weight == 0) {
            self.error(
                span,
                format!("the weights of route \"{route}\" sum to 0; at least one backend needs a weight above 0"),
            );
        }
        split
    }

    fn weight(&mut self, route: &str, raw: &Spanned<toml::Value>) -> u64 {
        match raw.get_ref() {
            toml::Value::Integer(w) if (0..=defaults::MAX_WEIGHT as i64).contains(w) => *w as u64,
            other => {
                let msg = format!(
                    "invalid weight {other} in route \"{route}\"; expected a whole number from 0 to {}",
                    defaults::MAX_WEIGHT
                );
                self.error(raw.span(), msg);
                0
            }
        }
    }

    fn split_by(&mut self, route: &str, raw: Spanned<toml::Value>) -> SplitBy {
        let parsed = match raw.get_ref() {
            toml::Value::String(s) if s == "random" => Some(SplitBy::Random),
            toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
                Some((kind, toml::Value::String(name))) if kind == "header" => {
                    HeaderName::from_bytes(name.as_bytes())
                        .ok()
                        .map(SplitBy::Header)
                }
                Some((kind, toml::Value::String(name))) if kind == "cookie" => {
                    let ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b));
                    ok.then(|| SplitBy::Cookie(name.clone()))
                }
                _ => None,
            },
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            let msg = format!(
                "invalid split_by {} in route \"{route}\"; expected \"random\", {{ header = \"x-user-id\" }} or {{ cookie = \"uid\" }}",
                raw.get_ref()
            );
            self.error(raw.span(), msg);
            SplitBy::Random
        })
    }

    fn hash_seed(&mut self, route: &str, raw: Spanned<toml::Value>) -> u64 {
        match raw.get_ref() {
            toml::Value::Integer(s) if *s >= 0 => *s as u64,
            other => {
                let msg = format!(
                    "invalid hash_seed {other} in route \"{route}\"; expected a whole number of 0 or more"
                );
                self.error(raw.span(), msg);
                defaults::HASH_SEED
            }
        }
    }

    fn warn_unreachable(&mut self, config: &Config, spans: &[Range<usize>]) {
        for (i, later) in config.routes.iter().enumerate() {
            if let Some(earlier) = config.routes[..i]
                .iter()
                .find(|e| e.matcher.covers(&later.matcher))
            {
                let msg = format!(
                    "route \"{}\" can never match: the earlier route \"{}\" takes every request it would; move it above \"{}\" or narrow the earlier match",
                    later.name, earlier.name, earlier.name
                );
                self.warning(spans[i].clone(), msg);
            }
        }
        if config.routes.is_empty() {
            self.warning(0..0, "no [[routes]]: every request will be answered 404");
        }
    }

    fn warn_unused(&mut self, config: &Config, spans: &[Range<usize>]) {
        for (i, backend) in config.backends.iter().enumerate() {
            let used = config.routes.iter().any(|r| {
                r.split.iter().any(|s| s.backend == BackendId(i))
                    || r.shadow.as_ref().is_some_and(|s| s.backend == BackendId(i))
            });
            if !used {
                let msg = format!("backend \"{}\" is not used by any route", backend.name);
                self.warning(spans[i].clone(), msg);
            }
        }
    }
}

/// Names become metric label values and a response header: keep them plain.
const LABEL_RULE: &str = "expected 1 to 64 of the characters a-z A-Z 0-9 . _ -";

fn is_label_safe(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: &str = r#"
[backends.v1]
url = "http://127.0.0.1:8001"
timeout = "2s"

[backends.v2]
url = "http://127.0.0.1:8002"
"#;

    fn load(routes: &str) -> Result<Loaded, Diagnostics> {
        Config::from_toml("veer.toml", &format!("{BACKENDS}{routes}"))
    }

    fn first_error(routes: &str) -> String {
        let err = load(routes).expect_err("config should be rejected");
        let first = err.errors().next().expect("an error").to_string();
        first
    }

    /// "file:line:col: error: message" of every error, without the snippets.
    fn headlines(routes: &str) -> Vec<String> {
        let err = load(routes).expect_err("config should be rejected");
        err.errors()
            .map(|d| d.to_string().lines().next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_canary_loads_with_everything_resolved() {
        let loaded = load(
            r#"
[[routes]]
name = "churn"
match = { path_prefix = "/v1/models/churn", method = "post", headers = { "x-ab" = "b" } }
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
split_by = { header = "X-User-Id" }
hash_seed = 7
"#,
        )
        .expect("valid");
        let c = &loaded.config;
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(c.backends[0].timeout, std::time::Duration::from_secs(2));
        assert_eq!(c.backends[1].timeout, defaults::BACKEND_TIMEOUT);
        assert_eq!(c.backends[1].url, "http://127.0.0.1:8002/");
        let r = &c.routes[0];
        assert_eq!(r.matcher.method, Some(Method::POST));
        assert_eq!(
            r.split_by,
            SplitBy::Header(HeaderName::from_static("x-user-id"))
        );
        assert_eq!(r.hash_seed, 7);
        assert_eq!(
            r.strategy(c).to_string(),
            "canary 95/5 by header x-user-id (v1/v2)"
        );
        assert_eq!(c.listen.http, defaults::HTTP_LISTEN);
    }

    #[test]
    fn unknown_key_points_at_the_key_and_lists_what_is_expected() {
        let e = first_error("[[routes]]\nname = \"r\"\nsplt = []\n");
        assert!(
            e.starts_with("veer.toml:10:1: error: unknown field `splt`"),
            "{e}"
        );
        assert!(e.contains("expected one of"), "{e}");
    }

    #[test]
    fn unknown_backend_names_the_route_and_the_known_backends() {
        let e =
            first_error("[[routes]]\nname = \"r\"\nsplit = [ { backend = \"v3\", weight = 1 } ]\n");
        assert!(
            e.starts_with("veer.toml:10:23: error: unknown backend \"v3\" in route \"r\"; expected one of: v1, v2"),
            "{e}"
        );
        assert!(e.ends_with("^^^^"), "{e}");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let lines = headlines(
            r#"[[routes]]
name = "a"
split = [ { backend = "v1", weight = -5 }, { backend = "nope", weight = 2.5 } ]

[[routes]]
name = "a"
split = [ { backend = "v1", weight = 0 } ]
split_by = { header = "bad header" }
hash_seed = -1
"#,
        );
        assert_eq!(
            lines,
            [
                "veer.toml:10:38: error: invalid weight -5 in route \"a\"; expected a whole number from 0 to 1000000",
                "veer.toml:10:73: error: invalid weight 2.5 in route \"a\"; expected a whole number from 0 to 1000000",
                "veer.toml:10:56: error: unknown backend \"nope\" in route \"a\"; expected one of: v1, v2",
                "veer.toml:13:8: error: duplicate route name \"a\" (first defined on line 9); route names must be unique",
                "veer.toml:14:9: error: the weights of route \"a\" sum to 0; at least one backend needs a weight above 0",
                "veer.toml:15:12: error: invalid split_by { header = \"bad header\" } in route \"a\"; expected \"random\", { header = \"x-user-id\" } or { cookie = \"uid\" }",
                "veer.toml:16:13: error: invalid hash_seed -1 in route \"a\"; expected a whole number of 0 or more",
            ]
        );
    }

    #[test]
    fn routes_sharing_a_divergence_log_must_agree_on_its_settings() {
        let route = |name: &str, per_sec: u32| {
            format!(
                "[[routes]]\nname = \"{name}\"\nmatch = {{ path = \"/{name}\" }}\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n\
                 [routes.shadow]\nbackend = \"v2\"\ndivergence_log = \"d.jsonl\"\ndivergence_log_per_sec = {per_sec}\n"
            )
        };
        assert!(load(&format!("{}{}", route("a", 5), route("b", 5))).is_ok());
        let lines = headlines(&format!("{}{}", route("a", 5), route("b", 6)));
        assert_eq!(
            lines,
            ["veer.toml:22:18: error: route \"b\" writes divergence log \"d.jsonl\" with other divergence_log_per_sec or divergence_log_max than route \"a\"; routes sharing a log must give it the same settings"]
        );
    }

    #[test]
    fn file_bytes_that_are_not_text_are_an_error_naming_the_file() {
        let err = Config::from_file_bytes(Path::new("conf/veer.toml"), b"[listen]\xff")
            .expect_err("rejected");
        assert!(err.to_string().starts_with("conf/veer.toml"), "{err}");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn bad_urls_timeouts_and_listen_addresses_are_explained() {
        let src = r#"
[listen]
http = "localhost:80"

[backends.a]
url = "https://x:1"
[backends.b]
url = "http://x:1/base"
[backends.c]
url = "10.0.0.1:80"
timeout = "soon"
"#;
        let err = Config::from_toml("f.toml", src).expect_err("rejected");
        let lines: Vec<String> = err
            .errors()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("3:8 invalid listen address \"localhost:80\"; expected IP:PORT")
        );
        assert!(lines[1].contains("backend \"a\": https backends are not supported yet"));
        assert!(lines[2].contains("backend \"b\": it has a path or query"));
        assert!(lines[3].contains("backend \"c\": it lacks the http:// scheme or the host"));
        assert!(lines[4].starts_with("11:11 invalid timeout \"soon\" for backend \"c\""));
    }

    #[test]
    fn syntax_errors_carry_a_position_too() {
        let err = Config::from_toml("f.toml", "[listen\nhttp = 1").expect_err("rejected");
        let d = &err.0[0];
        assert_eq!((d.line, d.column), (1, 8), "{d}");
    }

    #[test]
    fn unreachable_routes_and_unused_backends_are_warnings() {
        let loaded = load(
            r#"
[[routes]]
name = "all"
split = [ { backend = "v1", weight = 1 } ]

[[routes]]
name = "churn"
match = { path_prefix = "/v1/models/churn" }
split = [ { backend = "v1", weight = 1 } ]
"#,
        )
        .expect("warnings do not reject");
        let messages: Vec<&str> = loaded.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "route \"churn\" can never match: the earlier route \"all\" takes every request it would; move it above \"all\" or narrow the earlier match",
                "backend \"v2\" is not used by any route",
            ]
        );
        let w = loaded.warnings[0].to_string();
        assert!(w.starts_with("veer.toml:13:1: warning:"), "{w}");
    }

    #[test]
    fn unreadable_file_is_an_error_not_a_panic() {
        let err = Config::load(Path::new("/nonexistent/veer.toml")).expect_err("missing");
        assert!(err
            .to_string()
            .starts_with("/nonexistent/veer.toml:1:1: error: cannot read"));
    }
}
