//! Raw TOML → typed [`Config`], collecting every error on the way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use toml::Spanned;

use crate::document::{self, Corrections};
use crate::raw::{
    RawAdmin, RawBackend, RawCompare, RawConfig, RawErrorGate, RawLatencyGate, RawLimits,
    RawListen, RawMatch, RawOutlier, RawPredictionGate, RawRollout, RawRoute, RawSelect, RawShadow,
    RawSplit, RawTls,
};
use crate::{
    defaults, AdminAccess, Backend, BackendId, BackendTls, Compare, CompareMode, Config,
    Diagnostic, Diagnostics, DivergenceLog, ErrorGate, Inconclusive, LatencyGate, Limits, Listen,
    Loaded, Match, Outlier, PredictionGate, Protocol, Rollout, Route, Runtime, Severity, Shadow,
    SplitBy, Tls, WeightedBackend,
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
        loaded
            .config
            .resolve_paths(path.parent().unwrap_or(Path::new("")));
        let unwritable = crate::writable::unwritable(&loaded.config, &file);
        loaded.warnings.extend(unwritable);
        Ok(loaded)
    }

    /// Makes every relative path absolute the way the file means it: files veer reads
    /// against `folder` (the config file's), files it writes against `log_dir`
    /// (itself against `folder`).
    fn resolve_paths(&mut self, folder: &Path) {
        let read = |p: &mut PathBuf| *p = folder.join(&*p);
        self.log_dir = folder.join(&self.log_dir);
        if let Some(tls) = self.tls.as_mut() {
            read(&mut tls.cert);
            read(&mut tls.key);
        }
        if let Some(token) = self.admin.token_file.as_mut() {
            read(token);
        }
        for backend in &mut self.backends {
            if let Some(ca) = backend.tls.ca.as_mut() {
                read(ca);
            }
            if let Some((cert, key)) = backend.tls.client_cert.as_mut() {
                read(cert);
                read(key);
            }
        }
        let log_dir = self.log_dir.clone();
        for shadow in self.routes.iter_mut().filter_map(|r| r.shadow.as_mut()) {
            if let Some(log) = shadow.divergence_log.as_mut() {
                log.path = log_dir.join(&log.path);
            }
        }
        for rollout in self.routes.iter_mut().filter_map(|r| r.rollout.as_mut()) {
            for written in [&mut rollout.state_file, &mut rollout.decision_log] {
                if let Some(path) = written.as_mut() {
                    *path = log_dir.join(&*path);
                }
            }
        }
    }

    /// Validates `source`, the text of the routing file `file` (used in messages only).
    pub fn from_toml(file: &str, source: &str) -> Result<Loaded, Diagnostics> {
        let reading = document::read(source);
        let mut v = Validator {
            file,
            source,
            corrections: &reading.corrections,
            found: Vec::new(),
            divergence_logs: Vec::new(),
            rollout_files: Vec::new(),
            secrets: Vec::new(),
            unresolved_backend: false,
            unclear_matchers: Vec::new(),
        };
        for unknown in &reading.unknown {
            v.push(
                Severity::Error,
                unknown.span.clone(),
                unknown.message.clone(),
            );
            v.secrets.extend(unknown.values.iter().cloned());
        }
        for misread in reading.misread {
            v.push(Severity::Error, misread.span, misread.message);
        }
        let config = reading.raw.map(|raw| v.config(raw));
        v.hide_secrets();
        // In file order, as a reader fixes them (stable: findings at one place keep
        // the order they were found in).
        v.found.sort_by_key(|d| (d.line, d.column));
        match config {
            Some(config) if !v.found.iter().any(|d| d.severity == Severity::Error) => Ok(Loaded {
                config,
                warnings: v.found,
            }),
            _ => Err(Diagnostics(v.found)),
        }
    }
}

struct Validator<'a> {
    file: &'a str,
    /// The file as written: what findings show and count positions in.
    source: &'a str,
    /// Maps spans of the raw config (read from the file with its misspelt keys
    /// corrected) back to `source`.
    corrections: &'a Corrections,
    found: Vec<Diagnostic>,
    /// Divergence logs seen so far, with the route that named each.
    divergence_logs: Vec<(String, DivergenceLog)>,
    /// Rollout state files and decision logs seen so far, with the route of each.
    rollout_files: Vec<(PathBuf, String)>,
    /// Spans (in `source`) of values that may be secrets (header values a route
    /// matches on, URLs with credentials or a query, values of unknown keys): never
    /// shown in any finding's source line.
    secrets: Vec<Range<usize>>,
    /// A route named a backend that does not exist: which backend it meant is
    /// unknown, so none is called unused.
    unresolved_backend: bool,
    /// Routes (by index) whose match had a mistake: what they match is unclear, so
    /// they are not said to hide the routes after them.
    unclear_matchers: Vec<usize>,
}

/// A table the file may give, told apart from one it gave wrongly, so that a setting
/// that depends on it is judged only against one that was understood.
#[derive(Clone, Copy)]
enum Given<T> {
    /// Not in the file.
    Absent,
    /// In the file, with a mistake already reported.
    Wrong,
    /// In the file and understood.
    Valid(T),
}

impl Validator<'_> {
    /// Records a finding at `span` of the raw config.
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let span = self.corrections.original(span);
        self.push(Severity::Error, span, message);
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        let span = self.corrections.original(span);
        self.push(Severity::Warning, span, message);
    }

    /// Records a finding at `span` of the file as written.
    fn push(&mut self, severity: Severity, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::new(severity, self.file, self.source, span, message);
        self.found.push(d);
    }

    /// Keeps the value at `span` of the raw config out of every finding.
    fn secret(&mut self, span: Range<usize>) {
        let span = self.corrections.original(span);
        self.secrets.push(span);
    }

    /// How many errors are recorded so far: a check that builds on settings runs
    /// only if none was recorded while reading them, so one mistake is reported
    /// once, not again as a misleading consequence of its fallback.
    fn errors(&self) -> usize {
        self.found
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Masks every secret in the source lines findings show, whichever finding
    /// shows the line (another key's mistake on the same line, say).
    fn hide_secrets(&mut self) {
        for secret in &self.secrets {
            let at = Diagnostic::new(Severity::Error, self.file, self.source, secret.clone(), "");
            for d in self.found.iter_mut().filter(|d| d.line == at.line) {
                d.mask(at.column, at.underline);
            }
        }
    }

    /// Builds the config, recording errors as it goes; the result is only meaningful
    /// when no error was recorded.
    fn config(&mut self, raw: RawConfig) -> Config {
        let https_span = raw.listen.https.as_ref().map(|h| h.span());
        let listen = self.listen(raw.listen);
        let tls_span = raw.tls.as_ref().map(|t| t.span());
        let tls = raw.tls.map(|t| self.tls(t.into_inner()));
        match (https_span, tls_span) {
            (Some(span), None) => self.error(
                span,
                "listen.https needs a [tls] table with cert and key; add one or remove listen.https",
            ),
            (None, Some(span)) => self.warning(
                span,
                "[tls] has no effect without listen.https; add listen.https = \"0.0.0.0:8443\"",
            ),
            _ => {}
        }
        let limits = self.limits(raw.limits);
        let admin = self.admin(raw.admin);
        let log_dir = raw
            .log_dir
            .map_or_else(PathBuf::new, |d| PathBuf::from(d.into_inner()));
        let mut backends = Vec::new();
        let mut backend_spans = Vec::new();
        for (name, spanned) in raw.backends {
            let span = spanned.span();
            backend_spans.push(span.clone());
            backends.push(self.backend(name, span, spanned.into_inner()));
        }
        let mut config = Config {
            listen,
            tls,
            limits,
            admin,
            watch: raw.reload.watch.unwrap_or(false),
            runtime: Runtime {
                workers: raw.runtime.workers.and_then(|w| {
                    let n = self.whole("runtime.workers", "", &w, 1..=defaults::MAX_WORKERS);
                    std::num::NonZeroUsize::new(usize::try_from(n).unwrap_or(1))
                }),
            },
            log_dir,
            backends,
            routes: Vec::new(),
        };
        let mut route_spans: Vec<Range<usize>> = Vec::new();
        // Where each name was first seen, as a byte offset: turned into a line only
        // for a duplicate, so a 1,000-route file is not scanned 1,000 times.
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        for spanned in raw.routes {
            let span = spanned.span();
            let raw_route = spanned.into_inner();
            let name_span = raw_route.name.span();
            if let Some(&offset) = first_seen.get(raw_route.name.get_ref()) {
                let line = self.source[..offset.min(self.source.len())]
                    .matches('\n')
                    .count()
                    + 1;
                let msg = format!(
                    "duplicate route name \"{}\" (first defined on line {line}); route names must be unique",
                    raw_route.name.get_ref()
                );
                self.error(name_span.clone(), msg);
            } else {
                let at = self.corrections.original(name_span.clone());
                first_seen.insert(raw_route.name.get_ref().clone(), at.start);
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
        let https = raw
            .https
            .map(|a| self.address(Some(a), defaults::HTTP_LISTEN));
        Listen {
            http: self.address(raw.http, defaults::HTTP_LISTEN),
            https,
            admin: self.address(raw.admin, defaults::ADMIN_LISTEN),
        }
    }

    fn tls(&mut self, raw: RawTls) -> Tls {
        Tls {
            cert: self.file_path("tls.cert", raw.cert),
            key: self.file_path("tls.key", raw.key),
        }
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let d = Limits::default();
        let timeout = |v: &mut Self, field: &str, raw: Option<Spanned<String>>, fallback| {
            raw.map_or(fallback, |t| {
                v.duration(&format!("limits.{field}"), "", &t, fallback)
            })
        };
        Limits {
            max_connections: raw.max_connections.map_or(d.max_connections, |m| {
                self.whole("limits.max_connections", "", &m, 1..=1_000_000) as usize
            }),
            header_read_timeout: timeout(
                self,
                "header_read_timeout",
                raw.header_read_timeout,
                d.header_read_timeout,
            ),
            idle_timeout: timeout(self, "idle_timeout", raw.idle_timeout, d.idle_timeout),
            body_read_timeout: timeout(
                self,
                "body_read_timeout",
                raw.body_read_timeout,
                d.body_read_timeout,
            ),
            max_request_body: raw.max_request_body.map_or(d.max_request_body, |b| {
                self.body_size("limits.max_request_body", "", &b, d.max_request_body)
            }),
            drain_timeout: timeout(self, "drain_timeout", raw.drain_timeout, d.drain_timeout),
        }
    }

    fn admin(&mut self, raw: RawAdmin) -> AdminAccess {
        let hosts = raw
            .hosts
            .into_iter()
            .filter_map(|h| {
                let host = h.get_ref();
                if host.is_empty() || host.contains([':', '/', ' ']) {
                    let msg = format!(
                        "invalid admin.hosts entry \"{host}\"; expected a bare host name such as \"veer-admin.models.svc\" (no scheme, port or path)"
                    );
                    self.error(h.span(), msg);
                    return None;
                }
                Some(host.to_ascii_lowercase())
            })
            .collect();
        AdminAccess {
            token_file: raw
                .token_file
                .map(|t| self.file_path("admin.token_file", t)),
            hosts,
        }
    }

    /// A file veer reads: any path, relative ones against the config file's folder.
    fn file_path(&mut self, field: &str, raw: Spanned<String>) -> PathBuf {
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                format!("{field} is empty; expected a file path"),
            );
        }
        PathBuf::from(raw.into_inner())
    }

    /// A file veer writes: relative, inside `log_dir`, never climbing out with `..`.
    fn written_path(&mut self, field: &str, raw: Spanned<String>) -> PathBuf {
        let path = PathBuf::from(raw.get_ref());
        let inside = !raw.get_ref().is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            let msg = format!(
                "{field} \"{}\" must be a relative path inside log_dir (no leading \"/\", no \"..\"); set the top-level log_dir to choose the folder",
                raw.get_ref()
            );
            self.error(raw.span(), msg);
        }
        path
    }

    // The setting helpers below name the setting as `key` and where it is as
    // `within` (" for backend \"a\"", " in route \"r\"", or ""), so every message
    // reads "invalid KEY VALUE WITHIN; expected ...".

    fn duration(
        &mut self,
        key: &str,
        within: &str,
        raw: &Spanned<String>,
        fallback: Duration,
    ) -> Duration {
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if !d.is_zero() && d <= defaults::MAX_DURATION => d,
            Ok(d) if !d.is_zero() => {
                let msg = format!(
                    "{key} \"{}\"{within} is too long; at most 1 day",
                    raw.get_ref()
                );
                self.error(raw.span(), msg);
                fallback
            }
            _ => {
                let msg = format!(
                    "invalid {key} \"{}\"{within}; expected a duration above zero such as \"2s\" or \"500ms\"",
                    raw.get_ref()
                );
                self.error(raw.span(), msg);
                fallback
            }
        }
    }

    fn whole(
        &mut self,
        key: &str,
        within: &str,
        raw: &Spanned<toml::Value>,
        range: std::ops::RangeInclusive<i64>,
    ) -> i64 {
        match raw.get_ref() {
            toml::Value::Integer(i) if range.contains(i) => *i,
            other => {
                let msg = format!(
                    "invalid {key} {other}{within}; expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                );
                self.error(raw.span(), msg);
                *range.start()
            }
        }
    }

    /// A body-size setting: a size above zero and at most [`defaults::MAX_BODY_LIMIT`].
    fn body_size(&mut self, key: &str, within: &str, raw: &Spanned<String>, fallback: u64) -> u64 {
        match raw.get_ref().parse::<bytesize::ByteSize>() {
            Ok(size) if (1..=defaults::MAX_BODY_LIMIT).contains(&size.as_u64()) => size.as_u64(),
            Ok(size) if size.as_u64() > defaults::MAX_BODY_LIMIT => {
                let msg = format!(
                    "{key} \"{}\"{within} is too large; at most 1GiB (veer may hold a body in memory)",
                    raw.get_ref()
                );
                self.error(raw.span(), msg);
                fallback
            }
            _ => {
                let msg = format!(
                    "invalid {key} \"{}\"{within}; expected a size such as \"1MiB\" or \"512KiB\"",
                    raw.get_ref()
                );
                self.error(raw.span(), msg);
                fallback
            }
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
        let within = format!(" for backend \"{name}\"");
        let timeout = raw.timeout.map_or(defaults::BACKEND_TIMEOUT, |t| {
            self.duration("timeout", &within, &t, defaults::BACKEND_TIMEOUT)
        });
        let connect_timeout = raw.connect_timeout.map_or(defaults::CONNECT_TIMEOUT, |t| {
            self.duration("connect_timeout", &within, &t, defaults::CONNECT_TIMEOUT)
        });
        let max_connections = raw
            .max_connections
            .map_or(defaults::BACKEND_MAX_CONNECTIONS, |m| {
                self.whole("max_connections", &within, &m, 1..=1_000_000) as usize
            });
        let protocol = match raw.protocol {
            None => Protocol::Http1,
            Some(p) => match p.get_ref().as_str() {
                "http1" => Protocol::Http1,
                "h2" => Protocol::H2,
                other => {
                    let msg = format!(
                        "invalid protocol \"{other}\"{within}; expected \"http1\" or \"h2\" (HTTP/2, for gRPC)"
                    );
                    self.error(p.span(), msg);
                    Protocol::Http1
                }
            },
        };
        let tls = self.backend_tls(&name, url.as_ref(), raw.ca, raw.client_cert, raw.client_key);
        let outlier = self.outlier(&within, raw.outlier);
        Backend {
            name,
            url: url.unwrap_or_else(|| Uri::from_static("http://invalid/")),
            timeout,
            connect_timeout,
            max_connections,
            protocol,
            tls,
            retry: raw.retry.unwrap_or(true),
            outlier,
        }
    }

    /// `url` is `None` when it was wrong: its scheme says nothing then, so the TLS
    /// settings are not judged against it.
    fn backend_tls(
        &mut self,
        name: &str,
        url: Option<&Uri>,
        ca: Option<Spanned<String>>,
        cert: Option<Spanned<String>>,
        key: Option<Spanned<String>>,
    ) -> BackendTls {
        let plain = url.is_some_and(|url| url.scheme_str() == Some("http"));
        for field in [&ca, &cert, &key].into_iter().flatten() {
            if plain {
                let msg = format!(
                    "backend \"{name}\" is http://, so its TLS settings (ca, client_cert, client_key) would never be used; use an https:// url or remove them"
                );
                self.error(field.span(), msg);
                break;
            }
        }
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((
                self.file_path("client_cert", c),
                self.file_path("client_key", k),
            )),
            (Some(one), None) | (None, Some(one)) => {
                let msg = format!(
                    "backend \"{name}\" needs both client_cert and client_key for mutual TLS, or neither"
                );
                self.error(one.span(), msg);
                None
            }
            (None, None) => None,
        };
        BackendTls {
            ca: ca.map(|c| self.file_path("ca", c)),
            client_cert,
        }
    }

    fn outlier(&mut self, within: &str, raw: Option<RawOutlier>) -> Outlier {
        let mut outlier = Outlier {
            consecutive_failures: defaults::OUTLIER_CONSECUTIVE_FAILURES,
            ejection: defaults::OUTLIER_EJECTION,
        };
        let Some(raw) = raw else { return outlier };
        if let Some(n) = raw.consecutive_failures {
            outlier.consecutive_failures =
                self.whole("outlier.consecutive_failures", within, &n, 1..=10_000) as u32;
        }
        if let Some(e) = raw.ejection {
            outlier.ejection =
                self.duration("outlier.ejection", within, &e, defaults::OUTLIER_EJECTION);
        }
        outlier
    }

    /// The backend's URL, or `None` once its error is recorded.
    fn backend_url(&mut self, name: &str, raw: &Spanned<String>) -> Option<Uri> {
        let text = raw.get_ref();
        if text.contains(['@', '?']) {
            self.secret(raw.span());
        }
        if text.contains('@') {
            // Userinfo: never echo the credentials back into a log or an answer.
            let msg = format!(
                        "invalid url for backend \"{name}\": it carries user:password@ (not shown); veer would send it in Host and show it in logs; expected http://HOST:PORT or https://HOST:PORT"
                    );
            self.error(raw.span(), msg);
            return None;
        }
        let problem = match text.parse::<Uri>() {
            Err(e) => format!("it does not parse ({e})"),
            Ok(uri) => match (uri.scheme_str(), uri.authority(), uri.path_and_query()) {
                (Some("http" | "https"), Some(_), pq) if pq.is_none_or(|pq| pq.as_str() == "/") => {
                    let mut parts = uri.into_parts();
                    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
                    match Uri::from_parts(parts) {
                        Ok(uri) => return Some(uri),
                        Err(_) => "it does not parse".to_owned(),
                    }
                }
                (Some("http" | "https"), Some(_), _) => "it has a path or query".to_owned(),
                _ => "it lacks the http:// or https:// scheme or the host".to_owned(),
            },
        };
        // A query may carry a key: such a url is not echoed.
        let shown = if text.contains('?') {
            String::new()
        } else {
            format!(" \"{text}\"")
        };
        let msg = format!(
            "invalid url{shown} for backend \"{name}\": {problem}; expected http://HOST:PORT or https://HOST:PORT"
        );
        self.error(raw.span(), msg);
        None
    }

    fn route(&mut self, config: &Config, raw: RawRoute) -> Route {
        let limits = config.limits;
        let name = raw.name.get_ref().clone();
        if !is_label_safe(&name) {
            self.error(
                raw.name.span(),
                format!("invalid route name \"{name}\"; {LABEL_RULE}"),
            );
        }
        let before = self.errors();
        let matcher = match raw.matcher {
            Some(m) => self.matcher(&name, m.into_inner()),
            None => Match::default(),
        };
        if self.errors() > before {
            self.unclear_matchers.push(config.routes.len());
        }
        let before = self.errors();
        let split = self.split(config, &name, raw.split);
        let split_understood = self.errors() == before;
        let split_by = raw
            .split_by
            .map_or(SplitBy::Random, |s| self.split_by(&name, s));
        let hash_seed = raw
            .hash_seed
            .map_or(defaults::HASH_SEED, |s| self.hash_seed(&name, s));
        let max_request_body = raw.max_request_body.map_or(limits.max_request_body, |b| {
            let within = format!(" in route \"{name}\"");
            self.body_size("max_request_body", &within, &b, limits.max_request_body)
        });
        // A shadow given but wrong (an unknown backend) is no missing shadow: what
        // depends on it is not judged, so its one mistake is reported once.
        let shadow_given = raw.shadow.is_some();
        let shadow = raw
            .shadow
            .and_then(|s| self.shadow(config, &name, s.into_inner()));
        let compare = match raw.compare {
            Some(c) => {
                let span = c.span();
                let before = self.errors();
                let compare = self.compare(&name, c.into_inner());
                // The noise floor compares the live backend with itself: no shadow needed.
                let understood = self.errors() == before;
                if !shadow_given && understood && compare.noise_percent == 0.0 {
                    self.warning(
                        span,
                        format!("[routes.compare] of route \"{name}\" has no effect without a [routes.shadow] or a noise_percent"),
                    );
                }
                compare
            }
            None => Compare::default(),
        };
        let rollout = raw.rollout.and_then(|r| {
            let split = split_understood.then_some(split.as_slice());
            let shadow = match (shadow_given, shadow.as_ref()) {
                (true, None) => Given::Wrong,
                (_, Some(shadow)) => Given::Valid(shadow),
                (false, None) => Given::Absent,
            };
            self.rollout(config, &name, split, shadow, r.into_inner())
        });
        Route {
            name,
            matcher,
            split,
            split_by,
            hash_seed,
            max_request_body,
            shadow,
            compare,
            rollout,
        }
    }

    /// `[routes.rollout]`: its candidate must be the last backend of the split (so
    /// raising it only moves users onto it), and its prediction gate needs a shadow
    /// to that candidate. `split` is `None` when it had a mistake of its own (its
    /// candidate's place is not judged then), and a wrong `shadow` is not judged
    /// either.
    fn rollout(
        &mut self,
        config: &Config,
        route: &str,
        split: Option<&[WeightedBackend]>,
        shadow: Given<&Shadow>,
        raw: RawRollout,
    ) -> Option<Rollout> {
        let within = in_route(route);
        let name = raw.candidate.get_ref();
        let candidate = match config.backend_id(name) {
            None => {
                let msg = format!(
                    "unknown rollout.candidate \"{name}\"{within}; expected the last backend of the route's split"
                );
                self.error(raw.candidate.span(), msg);
                self.unresolved_backend = true;
                None
            }
            Some(id)
                if split.is_some_and(|split| {
                    split.len() < 2 || split.last().map(|s| s.backend) != Some(id)
                }) =>
            {
                let msg = format!(
                    "rollout.candidate \"{name}\"{within} must be the last backend of the route's split, after at least one baseline backend (so raising its weight only moves users onto it)"
                );
                self.error(raw.candidate.span(), msg);
                None
            }
            Some(id) => Some(id),
        };
        let steps = self.steps(&within, raw.steps);
        let before = self.errors();
        let min_step = raw.min_step.map_or(defaults::ROLLOUT_MIN_STEP, |d| {
            self.duration("rollout.min_step", &within, &d, defaults::ROLLOUT_MIN_STEP)
        });
        let max_step = match raw.max_step {
            Some(d) => {
                let max =
                    self.duration("rollout.max_step", &within, &d, defaults::ROLLOUT_MAX_STEP);
                // Compared only as written: a wrong one stands in as its default.
                if max < min_step && self.errors() == before {
                    let msg = format!(
                        "rollout.max_step \"{}\"{within} is shorter than min_step; a step could never advance",
                        d.get_ref()
                    );
                    self.error(d.span(), msg);
                }
                max
            }
            None => defaults::ROLLOUT_MAX_STEP.max(min_step),
        };
        let on_inconclusive = match raw.on_inconclusive {
            None => Inconclusive::Pause,
            Some(o) => match o.get_ref().as_str() {
                "pause" => Inconclusive::Pause,
                "rollback" => Inconclusive::Rollback,
                other => {
                    let msg = format!(
                        "invalid rollout.on_inconclusive \"{other}\"{within}; expected \"pause\" or \"rollback\""
                    );
                    self.error(o.span(), msg);
                    Inconclusive::Pause
                }
            },
        };
        let alpha = raw.alpha.map_or(defaults::ROLLOUT_ALPHA, |a| {
            let alpha = self.number(
                route,
                "rollout.alpha",
                &a,
                0.0..=0.5,
                defaults::ROLLOUT_ALPHA,
            );
            if alpha == 0.0 {
                let msg = format!(
                    "invalid rollout.alpha 0{within}; expected a number above 0 and at most 0.5"
                );
                self.error(a.span(), msg);
            }
            alpha
        });
        // A wrong shadow is not said to be missing: its own error says what to fix.
        let lacks_shadow_to_candidate = match shadow {
            Given::Valid(s) => Some(s.backend) != candidate,
            Given::Absent => true,
            Given::Wrong => false,
        };
        let predictions = raw.predictions.map(|p| {
            if candidate.is_some() && lacks_shadow_to_candidate {
                let msg = format!(
                    "[routes.rollout.predictions]{within} needs a [routes.shadow] with backend = \"{name}\": predictions are judged on mirrored traffic"
                );
                self.error(p.span(), msg);
            }
            let unmirrored = matches!(shadow, Given::Valid(s) if s.percent == 0.0);
            if !lacks_shadow_to_candidate && unmirrored && raw.shadow_first.is_none() {
                let msg = format!(
                    "[routes.rollout.predictions]{within} judges mirrored pairs, but shadow.percent is 0: every step would wait for them until max_step"
                );
                self.warning(p.span(), msg);
            }
            self.prediction_gate(route, p.into_inner())
        });
        let shadow_first = raw.shadow_first.map(|d| {
            if predictions.is_none() {
                let msg = format!(
                    "rollout.shadow_first{within} needs [routes.rollout.predictions] (and a [routes.shadow] to the candidate): the shadow phase ends when the prediction gate passes"
                );
                self.error(d.span(), msg);
            }
            self.duration("rollout.shadow_first", &within, &d, defaults::ROLLOUT_MIN_STEP)
        });
        let state_file = raw
            .state_file
            .map(|p| self.rollout_file(route, "rollout.state_file", p));
        let decision_log = raw
            .decision_log
            .map(|p| self.rollout_file(route, "rollout.decision_log", p));
        let errors = self.error_gate(route, raw.errors);
        let latency = self.latency_gate(route, raw.latency);
        let notify = raw
            .hooks
            .and_then(|h| h.notify)
            .map(|n| self.notify_url(route, &n));
        Some(Rollout {
            candidate: candidate?,
            steps,
            min_step,
            max_step,
            on_inconclusive,
            alpha,
            shadow_first,
            state_file,
            decision_log,
            errors,
            latency,
            predictions,
            notify,
        })
    }

    /// A file one rollout writes: inside `log_dir`, and no other route's.
    fn rollout_file(&mut self, route: &str, field: &str, raw: Spanned<String>) -> PathBuf {
        let span = raw.span();
        let path = self.written_path(field, raw);
        let taken = self
            .rollout_files
            .iter()
            .find(|(seen, _)| *seen == path)
            .map(|(_, other)| other.clone());
        match taken {
            Some(other) => {
                let msg = format!(
                    "{field} \"{}\" of route \"{route}\" is already written by route \"{other}\"; give each rollout its own file",
                    path.display()
                );
                self.error(span, msg);
            }
            None => self.rollout_files.push((path.clone(), route.to_owned())),
        }
        path
    }

    /// Rising whole percentages from 1 to 100, the last one 100 (promoted).
    fn steps(&mut self, within: &str, raw: Spanned<Vec<Spanned<toml::Value>>>) -> Vec<u8> {
        let span = raw.span();
        let mut unreadable = false;
        let mut steps: Vec<u8> = Vec::new();
        for step in raw.into_inner() {
            match step.get_ref() {
                toml::Value::Integer(p) if (1..=100).contains(p) => {
                    let p = *p as u8;
                    if steps.last().is_some_and(|last| *last >= p) {
                        let msg = format!(
                            "rollout.steps{within} must rise: {p} comes after {}",
                            steps.last().copied().unwrap_or_default()
                        );
                        self.error(step.span(), msg);
                    }
                    steps.push(p);
                }
                other => {
                    let msg = format!(
                        "invalid rollout step {other}{within}; expected a whole percentage from 1 to 100"
                    );
                    self.error(step.span(), msg);
                    unreadable = true;
                }
            }
        }
        if unreadable {
            // A wrong step (1000 for 100, say) is reported; what the list would be
            // without it is no second mistake.
        } else if steps.len() == 1 && steps[0] == 100 {
            let msg = format!(
                "rollout.steps{within} has no step below 100; list the weights to pass through, such as [5, 25, 50, 100]"
            );
            self.error(span, msg);
        } else if steps.last() != Some(&100) {
            let msg = format!(
                "rollout.steps{within} must end with 100 (the step that promotes the candidate), such as [5, 25, 50, 100]"
            );
            self.error(span, msg);
        }
        steps
    }

    /// A number setting given in the file: validated into `value` (which keeps its
    /// default when the setting is absent or wrong, the error recorded).
    fn set_number(
        &mut self,
        route: &str,
        key: &str,
        raw: Option<Spanned<toml::Value>>,
        range: std::ops::RangeInclusive<f64>,
        value: &mut f64,
    ) {
        if let Some(raw) = raw {
            *value = self.number(route, key, &raw, range, *value);
        }
    }

    fn error_gate(&mut self, route: &str, raw: Option<RawErrorGate>) -> ErrorGate {
        let mut gate = ErrorGate {
            rel_margin: defaults::ROLLOUT_ERRORS_REL_MARGIN,
            abs_margin: defaults::ROLLOUT_ERRORS_ABS_MARGIN,
            hard_max: defaults::ROLLOUT_ERRORS_HARD_MAX,
        };
        let Some(raw) = raw else { return gate };
        let key = "rollout.errors";
        self.set_number(
            route,
            &format!("{key}.rel_margin"),
            raw.rel_margin,
            0.0..=10.0,
            &mut gate.rel_margin,
        );
        self.set_number(
            route,
            &format!("{key}.abs_margin"),
            raw.abs_margin,
            0.0..=1.0,
            &mut gate.abs_margin,
        );
        self.set_number(
            route,
            &format!("{key}.hard_max"),
            raw.hard_max,
            0.0..=1.0,
            &mut gate.hard_max,
        );
        gate
    }

    fn latency_gate(&mut self, route: &str, raw: Option<RawLatencyGate>) -> LatencyGate {
        let mut gate = LatencyGate {
            tail: defaults::ROLLOUT_LATENCY_TAIL,
            rel_margin: defaults::ROLLOUT_LATENCY_REL_MARGIN,
            abs_margin: defaults::ROLLOUT_LATENCY_ABS_MARGIN,
        };
        let Some(raw) = raw else { return gate };
        let key = "rollout.latency";
        self.set_number(
            route,
            &format!("{key}.tail"),
            raw.tail,
            0.5..=0.999,
            &mut gate.tail,
        );
        self.set_number(
            route,
            &format!("{key}.rel_margin"),
            raw.rel_margin,
            0.0..=10.0,
            &mut gate.rel_margin,
        );
        self.set_number(
            route,
            &format!("{key}.abs_margin"),
            raw.abs_margin,
            0.0..=1.0,
            &mut gate.abs_margin,
        );
        gate
    }

    fn prediction_gate(&mut self, route: &str, raw: RawPredictionGate) -> PredictionGate {
        let mut gate = PredictionGate {
            max_divergence: defaults::ROLLOUT_MAX_DIVERGENCE,
            max_label_flip: defaults::ROLLOUT_MAX_LABEL_FLIP,
            critical: raw.critical.unwrap_or(false),
        };
        let key = "rollout.predictions";
        self.set_number(
            route,
            &format!("{key}.max_divergence"),
            raw.max_divergence,
            0.0..=1.0,
            &mut gate.max_divergence,
        );
        self.set_number(
            route,
            &format!("{key}.max_label_flip"),
            raw.max_label_flip,
            0.0..=1.0,
            &mut gate.max_label_flip,
        );
        gate
    }

    /// `[routes.rollout.hooks] notify`: an http(s) URL without credentials in it.
    fn notify_url(&mut self, route: &str, raw: &Spanned<String>) -> Uri {
        let parsed = raw.get_ref().parse::<Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.as_str().contains('@'))
        });
        parsed.unwrap_or_else(|| {
            self.secret(raw.span());
            let msg = format!(
                "invalid rollout.hooks.notify{}; expected an http:// or https:// URL without user:password",
                in_route(route)
            );
            self.error(raw.span(), msg);
            Uri::from_static("http://invalid/")
        })
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
            self.unresolved_backend = true;
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
                self.whole("shadow.max_in_flight", &in_route(route), &m, 1..=1_000_000) as usize
            });
        let max_body = raw.max_body.map_or(defaults::SHADOW_MAX_BODY, |b| {
            self.body_size(
                "shadow.max_body",
                &in_route(route),
                &b,
                defaults::SHADOW_MAX_BODY,
            )
        });
        let log_span = raw.divergence_log.as_ref().map(|p| p.span());
        let divergence_log = raw.divergence_log.map(|path| DivergenceLog {
            path: self.written_path("shadow.divergence_log", path),
            per_sec: raw
                .divergence_log_per_sec
                .map_or(defaults::DIVERGENCE_LOG_PER_SEC, |r| {
                    let key = "shadow.divergence_log_per_sec";
                    self.whole(key, &in_route(route), &r, 1..=100_000) as u32
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
        if let Some(select) = raw.select {
            compare.select = self.select(route, select);
        }
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
            compare.max_body = self.body_size(
                "compare.max_body",
                &in_route(route),
                &b,
                defaults::COMPARE_MAX_BODY,
            );
        }
        compare.threshold = raw
            .threshold
            .map(|t| self.number(route, "compare.threshold", &t, 0.0..=1.0, 0.5));
        if let Some(p) = raw.noise_percent {
            compare.noise_percent =
                self.number(route, "compare.noise_percent", &p, 0.0..=100.0, 0.0);
        }
        if let Some(a) = raw.alert_divergence {
            compare.alert_divergence = self.number(
                route,
                "compare.alert_divergence",
                &a,
                0.0..=1.0,
                defaults::COMPARE_ALERT_DIVERGENCE,
            );
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

    /// `compare.select`: one JSON pointer or a list of them, each checked by
    /// [`Self::pointer`]. A pointer listed twice, or inside another listed one, is an
    /// error: its part would be compared, and its differences counted, twice.
    fn select(&mut self, route: &str, raw: Spanned<RawSelect>) -> Vec<String> {
        const FIELD: &str = "compare.select";
        let span = raw.span();
        let items = match raw.into_inner() {
            RawSelect::One(pointer) => vec![Spanned::new(span, pointer)],
            RawSelect::Many(items) => items
                .into_iter()
                .filter_map(|item| {
                    let span = item.span();
                    match item.into_inner() {
                        toml::Value::String(pointer) => Some(Spanned::new(span, pointer)),
                        other => {
                            let msg = format!(
                                "invalid {FIELD} item {other} in route \"{route}\"; expected a JSON pointer such as \"/predictions\""
                            );
                            self.error(span, msg);
                            None
                        }
                    }
                })
                .collect(),
            RawSelect::Other(other) => {
                let msg = format!(
                    "invalid {FIELD} {other} in route \"{route}\"; expected a JSON pointer such as \"/predictions\" or a list of them"
                );
                self.error(span, msg);
                return Vec::new();
            }
        };
        let mut select: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let span = item.span();
            let pointer = self.pointer(route, FIELD, item);
            let overlapping = select
                .iter()
                .find(|other| inside(&pointer, other) || inside(other, &pointer));
            if let Some(other) = overlapping {
                let shown = |p: &str| match p {
                    "" => "\"\" (the whole body)".to_owned(),
                    p => format!("\"{p}\""),
                };
                let msg = if *other == pointer {
                    format!(
                        "{FIELD} lists {} twice in route \"{route}\"; list each part once",
                        shown(&pointer)
                    )
                } else {
                    let relation = if inside(&pointer, other) {
                        "lies inside"
                    } else {
                        "holds"
                    };
                    format!(
                        "{FIELD} {} in route \"{route}\" {relation} {}, also listed; list one or the other (a part inside another would be compared twice)",
                        shown(&pointer),
                        shown(other),
                    )
                };
                self.error(span, msg);
                continue;
            }
            select.push(pointer);
        }
        select
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
            self.secret(value.span());
            let header = HeaderName::from_bytes(name.as_bytes());
            let parsed = HeaderValue::from_str(value.get_ref());
            match (header, parsed) {
                (Ok(h), Ok(v)) => m.headers.push((h, v)),
                _ => {
                    let msg = format!(
                        "invalid header match \"{name}\" in route \"{route}\" (value not shown); expected a header name and a visible ASCII value"
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
        let mut bad_weight = false;
        for entry in entries {
            let entry = entry.into_inner();
            let weight = self.weight(route, &entry.weight).unwrap_or_else(|| {
                bad_weight = true;
                0
            });
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
                self.unresolved_backend = true;
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
        } else if !bad_weight && split.len() == listed && split.iter().all(|s| s.weight == 0) {
            self.error(
                span,
                format!("the weights of route \"{route}\" sum to 0; at least one backend needs a weight above 0"),
            );
        }
        split
    }

    /// A weight, or `None` once its error is recorded (so the route's split is not
    /// also reported as summing to 0).
    fn weight(&mut self, route: &str, raw: &Spanned<toml::Value>) -> Option<u64> {
        match raw.get_ref() {
            toml::Value::Integer(w) if (0..=defaults::MAX_WEIGHT as i64).contains(w) => {
                Some(*w as u64)
            }
            other => {
                let written_as = match other {
                    toml::Value::Float(_) => " (written as a float: drop the decimal point)",
                    _ => "",
                };
                let msg = format!(
                    "invalid weight {other} in route \"{route}\"; expected a whole number from 0 to {}{written_as}",
                    defaults::MAX_WEIGHT
                );
                self.error(raw.span(), msg);
                None
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
        let matchers: Vec<&Match> = config.routes.iter().map(|r| &r.matcher).collect();
        // An earlier route whose match had a mistake lost a condition with it, so it
        // would seem to take requests it was meant to leave.
        let covering = Match::first_covering(&matchers, |j| !self.unclear_matchers.contains(&j));
        for (i, (later, earlier)) in config.routes.iter().zip(covering).enumerate() {
            if let Some(earlier) = earlier.map(|j| &config.routes[j]) {
                let msg = format!(
                    "route \"{}\" can never match: the earlier route \"{}\" takes every request it would; move it above \"{}\" or narrow the earlier match",
                    later.name, earlier.name, earlier.name
                );
                self.warning(spans[i].clone(), msg);
            }
        }
        if config.routes.is_empty() {
            // A file that routes nothing is an outage, not a setting: with a reload
            // sidecar, one botched edit would answer every prediction 404.
            self.error(
                0..0,
                "no [[routes]]: every request would be answered 404 no_route; add at least one [[routes]] table",
            );
        }
    }

    fn warn_unused(&mut self, config: &Config, spans: &[Range<usize>]) {
        if self.unresolved_backend {
            return;
        }
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

/// Where a route's setting is, for messages: ` in route "NAME"`.
fn in_route(route: &str) -> String {
    format!(" in route \"{route}\"")
}

/// Names become metric label values and a response header: keep them plain.
const LABEL_RULE: &str = "expected 1 to 64 of the characters a-z A-Z 0-9 . _ -";

fn is_label_safe(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether the JSON pointer `inner` is `outer` or lies inside it (`""`, the whole
/// body, holds every pointer).
fn inside(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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

    /// "line:col: severity: message" of every finding, errors and warnings, in the
    /// order reported, for the whole file `source`.
    fn findings(source: &str) -> Vec<String> {
        let found = match Config::from_toml("veer.toml", source) {
            Ok(loaded) => loaded.warnings,
            Err(e) => e.0,
        };
        found
            .iter()
            .map(|d| {
                let kind = match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                format!("{}:{}: {kind}: {}", d.line, d.column, d.message)
            })
            .collect()
    }

    #[test]
    fn a_misspelt_key_is_pointed_at_with_the_key_it_was_meant_as() {
        let e =
            first_error("[[routes]]\nname = \"r\"\nsplt = [ { backend = \"v1\", weight = 1 } ]\n");
        assert_eq!(
            e,
            "veer.toml:10:1: error: unknown key `splt` in route \"r\"; did you mean `split`?\n   |\n10 | splt = [ { backend = \"v1\", weight = 1 } ]\n   | ^^^^"
        );
    }

    #[test]
    fn wieght_is_weight_and_what_it_holds_is_still_checked() {
        let route = |first: &str| {
            format!("{BACKENDS}[[routes]]\nname = \"r\"\nsplit = [ {first}, {{ backend = \"v2\", weight = 1 }} ]\n")
        };
        assert_eq!(
            findings(&route(r#"{ backend = "v1", wieght = 1 }"#)),
            ["10:29: error: unknown key `wieght` in split of route \"r\"; did you mean `weight`?"],
            "and no missing `weight`"
        );
        assert_eq!(
            findings(&route(r#"{ backend = "v1", wieght = -1 }"#)),
            [
                "10:29: error: unknown key `wieght` in split of route \"r\"; did you mean `weight`?",
                "10:38: error: invalid weight -1 in route \"r\"; expected a whole number from 0 to 1000000",
            ]
        );
        // Beside a `weight`, the typo was not meant as it.
        assert_eq!(
            findings(&route(r#"{ backend = "v1", weight = 1, wieght = 2 }"#)),
            ["10:41: error: unknown key `wieght` in split of route \"r\"; expected one of `backend`, `weight`"]
        );
    }

    #[test]
    fn a_key_like_no_known_one_lists_the_keys_of_its_table_and_hides_its_value() {
        let err = load("[[routes]]\nname = \"r\"\nsplit = [ { backend = \"v1\", weight = 1 } ]\nheaders = { \"x-api-key\" = \"sk-live-123\" }\n")
            .expect_err("rejected");
        let unknown = err.errors().next().expect("an error").to_string();
        assert_eq!(
            unknown,
            "veer.toml:11:1: error: unknown key `headers` in route \"r\"; expected one of `name`, `match`, `split`, `split_by`, `hash_seed`, `max_request_body`, `shadow`, `compare`, `rollout`\n   |\n11 | headers = { \"x-api-key\" = ************* }\n   | ^^^^^^^"
        );
        let shown = err.to_string();
        assert!(!shown.contains("sk-live-123"), "{shown}");
    }

    #[test]
    fn a_route_table_written_route_is_reported_at_its_header_and_nothing_else() {
        // The second route's `[routes.shadow]` would land on the first route, which has
        // one: a duplicate key, were `[[route]]` not read as meant.
        let two_routes = format!(
            "{BACKENDS}[[routes]]\nname = \"a\"\nmatch = {{ path = \"/a\" }}\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n[routes.shadow]\nbackend = \"v2\"\n\n\
             [[route]]\nname = \"b\"\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n[routes.shadow]\nbackend = \"v2\"\n"
        );
        assert_eq!(
            findings(&two_routes),
            ["15:1: error: unknown table `[[route]]`; did you mean `[[routes]]`?"]
        );
        // The only route: no "no [[routes]]", and what the route holds is checked.
        let only = format!(
            "{BACKENDS}[[route]]\nname = \"b\"\nsplit = [ {{ backend = \"v9\", weight = 1 }} ]\n[routes.shadow]\nbackend = \"v2\"\n"
        );
        assert_eq!(
            findings(&only),
            [
                "8:1: error: unknown table `[[route]]`; did you mean `[[routes]]`?",
                "10:23: error: unknown backend \"v9\" in route \"b\"; expected one of: v1, v2",
            ]
        );
    }

    #[test]
    fn misspelt_headers_are_suggested_in_the_brackets_their_key_takes() {
        let found = findings(&format!(
            "[lsten]\nhttp = \"127.0.0.1:8080\"\n{BACKENDS}[rout]\nname = \"r\"\n\
             split = [ {{ backend = \"v1\", weight = 1 }}, {{ backend = \"v2\", weight = 1 }} ]\n\
             [routes.shadw]\nbackend = \"v2\"\n[routes.rollout]\ncandidate = \"v2\"\nsteps = [50, 100]\n\
             [routes.rollout.erors]\nhard_max = 2\n"
        ));
        assert_eq!(
            found,
            [
                "1:1: error: unknown table `[lsten]`; did you mean `[listen]`?",
                "10:1: error: unknown table `[rout]`; did you mean `[[routes]]`?",
                "13:1: error: unknown table `[routes.shadw]` in route \"r\"; did you mean `[routes.shadow]`?",
                "18:1: error: unknown table `[routes.rollout.erors]` in route \"r\"; did you mean `[routes.rollout.errors]`?",
                "19:12: error: invalid rollout.errors.hard_max 2 in route \"r\"; expected a number from 0 to 1",
            ],
            "each table read as meant, so what it holds is checked"
        );
    }

    #[test]
    fn five_mistakes_of_five_kinds_are_all_reported_and_nothing_else() {
        let found = findings(include_str!("../testdata/five-mistakes.toml"));
        assert_eq!(
            found,
            [
                "6:11: error: invalid timeout \"2x\" for backend \"churn-v1\"; expected a duration above zero such as \"2s\" or \"500ms\"",
                "14:35: error: unknown key `wieght` in split of route \"churn\"; did you mean `weight`?",
                "14:62: error: unknown backend \"churn-v9\" in route \"churn\"; expected one of: churn-v1, churn-v2",
                "18:11: error: invalid shadow.percent 150 in route \"churn\"; expected a number from 0 to 100",
                "20:1: error: unknown table `[[route]]`; did you mean `[[routes]]`?",
            ]
        );
    }

    #[test]
    fn an_unknown_shadow_backend_is_one_error_not_also_a_missing_shadow() {
        let found = findings(&format!(
            "{BACKENDS}[[routes]]\nname = \"r\"\nsplit = [ {{ backend = \"v1\", weight = 95 }}, {{ backend = \"v2\", weight = 5 }} ]\n\
             [routes.shadow]\nbackend = \"v9\"\n[routes.compare]\nmode = \"json\"\n\
             [routes.rollout]\ncandidate = \"v2\"\nsteps = [5, 100]\npredictions = {{ max_divergence = 0.1 }}\n"
        ));
        assert_eq!(
            found,
            ["12:11: error: unknown shadow backend \"v9\" in route \"r\"; expected one of: v1, v2"]
        );
    }

    #[test]
    fn every_value_of_the_wrong_type_is_reported_with_the_other_mistakes() {
        let file = "[listen]\nhttp = \"127.0.0.1:8080\"\nadmin = 9901\n\n\
                    [backends.v1]\nurl = \"http://127.0.0.1:8001\"\ntimeout = 5\n\n\
                    [[routes]]\nname = \"r\"\nsplit = [ { backend = \"v9\", weight = 1 } ]\nwieght = 3\n";
        let found = findings(file);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("3:9: error: invalid type: integer `9901`, expected a string"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("7:11: error: invalid type: integer `5`, expected a string"),
            "{found:#?}"
        );
        assert!(
            found[2].starts_with("11:23: error: unknown backend \"v9\""),
            "{found:#?}"
        );
        assert!(
            found[3].starts_with("12:1: error: unknown key `wieght`"),
            "{found:#?}"
        );

        // A required value of the wrong type ends the reading there: its absence is
        // not reported again as a missing field.
        let required = "[backends.v1]\nurl = 8001\ntimeout = 5\n\n\
                        [[routes]]\nname = \"r\"\nsplit = [ { backend = \"v1\", weight = 1 } ]\n";
        let found = findings(required);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found
                .iter()
                .all(|f| f.contains("invalid type") && !f.contains("missing field")),
            "{found:#?}"
        );
        let weight = "[backends.v1]\nurl = \"http://127.0.0.1:8001\"\n\n\
                      [[routes]]\nname = \"r\"\nsplit = [ { backend = \"v1\", weight = \"ten\" } ]\n";
        let found = findings(weight);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("6:38: error: invalid weight \"ten\""),
            "{found:#?}"
        );
    }

    #[test]
    fn one_mistake_is_reported_once_not_again_as_its_consequence() {
        let route = |body: &str| format!("{BACKENDS}[[routes]]\nname = \"r\"\n{body}");
        // A split that lost a backend: the candidate's place in it is not judged, and
        // no backend is called unused (the unknown name may have meant it).
        assert_eq!(
            findings(&route(
                "split = [ { backend = \"v3\", weight = 95 }, { backend = \"v2\", weight = 5 } ]\n[routes.rollout]\ncandidate = \"v2\"\nsteps = [5, 100]\n"
            )),
            ["10:23: error: unknown backend \"v3\" in route \"r\"; expected one of: v1, v2"]
        );
        // A match that could not be read says nothing of which routes it hides.
        assert_eq!(
            findings(&format!(
                "{BACKENDS}[[routes]]\nname = \"a\"\nmatch = {{ method = \"P OST\" }}\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n\
                 [[routes]]\nname = \"b\"\nmatch = {{ path = \"/b\" }}\nsplit = [ {{ backend = \"v2\", weight = 1 }} ]\n"
            )),
            ["10:20: error: invalid method \"P OST\" in route \"a\"; expected an HTTP method such as \"POST\""]
        );
        // A wrong url has no scheme to judge the TLS settings by.
        assert_eq!(
            findings("[backends.a]\nurl = \"https://user:pw@x:1\"\nca = \"ca.pem\"\n[[routes]]\nname = \"r\"\nsplit = [ { backend = \"a\", weight = 1 } ]\n")
                .len(),
            1
        );
        // A wrong min_step or step stands in as its default, which is not compared.
        assert_eq!(
            findings(&route(
                "split = [ { backend = \"v1\", weight = 95 }, { backend = \"v2\", weight = 5 } ]\n[routes.rollout]\ncandidate = \"v2\"\nsteps = [5, 50, 1000]\nmin_step = \"soon\"\nmax_step = \"1m\"\n"
            )),
            [
                "13:17: error: invalid rollout step 1000 in route \"r\"; expected a whole percentage from 1 to 100",
                "14:12: error: invalid rollout.min_step \"soon\" in route \"r\"; expected a duration above zero such as \"2s\" or \"500ms\"",
            ]
        );
        // A wrong noise_percent is not a missing one.
        assert_eq!(
            findings(&route(
                "split = [ { backend = \"v1\", weight = 1 }, { backend = \"v2\", weight = 0 } ]\ncompare = { noise_percent = 500 }\n"
            )),
            ["11:29: error: invalid compare.noise_percent 500 in route \"r\"; expected a number from 0 to 100"]
        );
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
                "veer.toml:10:56: error: unknown backend \"nope\" in route \"a\"; expected one of: v1, v2",
                "veer.toml:10:73: error: invalid weight 2.5 in route \"a\"; expected a whole number from 0 to 1000000 (written as a float: drop the decimal point)",
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
url = "https://user:hunter2@x:1"
[backends.b]
url = "http://x:1/base"
[backends.c]
url = "10.0.0.1:80"
timeout = "soon"

[[routes]]
name = "r"
split = [ { backend = "a", weight = 1 } ]
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
        assert!(lines[1].contains("backend \"a\": it carries user:password@"));
        assert!(lines[2].contains("backend \"b\": it has a path or query"));
        assert!(lines[3].contains("backend \"c\": it lacks the http:// or https:// scheme"));
        assert!(lines[4].starts_with("11:11 invalid timeout \"soon\" for backend \"c\""));
        assert!(
            !err.to_string().contains("hunter2"),
            "credentials are never echoed: {err}"
        );
    }

    #[test]
    fn edge_settings_load_with_their_defaults_filled_in() {
        let src = r#"
log_dir = "state"

[listen]
https = "127.0.0.1:8443"

[tls]
cert = "tls/veer.crt"
key = "tls/veer.key"

[limits]
max_connections = 100
header_read_timeout = "2s"
max_request_body = "1MiB"

[admin]
token_file = "admin-token"
hosts = ["Veer-Admin.models.svc"]

[reload]
watch = true

[backends.v2]
url = "https://models.svc:8443"
protocol = "h2"
ca = "tls/ca.pem"
client_cert = "tls/c.crt"
client_key = "tls/c.key"
connect_timeout = "250ms"
max_connections = 8
retry = false
outlier = { consecutive_failures = 3, ejection = "10s" }

[[routes]]
name = "grpc"
max_request_body = "4KiB"
split = [ { backend = "v2", weight = 1 } ]
shadow = { backend = "v2", divergence_log = "logs/d.jsonl" }
"#;
        let dir = Path::new("/etc/veer");
        let loaded =
            Config::from_file_bytes(&dir.join("veer.toml"), src.as_bytes()).expect("loads");
        let c = &loaded.config;
        assert_eq!(c.listen.https, Some("127.0.0.1:8443".parse().unwrap()));
        let tls = c.tls.as_ref().expect("tls");
        assert_eq!(tls.cert, dir.join("tls/veer.crt"));
        assert_eq!(c.limits.max_connections, 100);
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.idle_timeout, defaults::IDLE_TIMEOUT);
        assert_eq!(
            c.admin.token_file.as_deref(),
            Some(dir.join("admin-token").as_path())
        );
        assert_eq!(c.admin.hosts, ["veer-admin.models.svc"]);
        assert!(c.watch);
        let b = &c.backends[0];
        assert_eq!(b.protocol, Protocol::H2);
        assert_eq!(b.tls.ca.as_deref(), Some(dir.join("tls/ca.pem").as_path()));
        assert_eq!(b.connect_timeout, Duration::from_millis(250));
        assert_eq!((b.max_connections, b.retry), (8, false));
        assert_eq!(b.outlier.consecutive_failures, 3);
        let route = &c.routes[0];
        assert_eq!(route.max_request_body, 4096);
        let log = route
            .shadow
            .as_ref()
            .and_then(|s| s.divergence_log.as_ref());
        assert_eq!(
            log.map(|l| l.path.clone()),
            Some(dir.join("state/logs/d.jsonl"))
        );
    }

    #[test]
    fn edge_settings_that_cannot_work_are_explained() {
        let src = r#"
[listen]
https = "127.0.0.1:8443"

[limits]
max_request_body = "16EiB"
idle_timeout = "never"

[backends.a]
url = "http://x:1"
ca = "ca.pem"
protocol = "h3"

[[routes]]
name = "r"
match = { headers = { "x-api-key" = "s\u0001cret" } }
split = [ { backend = "a", weight = 1e6 } ]
shadow = { backend = "a", divergence_log = "../../etc/cron.d/x", max_body = "2GiB" }
"#;
        let err = Config::from_toml("f.toml", src).expect_err("rejected");
        let lines: Vec<String> = err
            .errors()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        let expect = [
            "3:9 listen.https needs a [tls] table",
            "6:20 limits.max_request_body \"16EiB\" is too large; at most 1GiB",
            "7:16 invalid limits.idle_timeout \"never\"",
            "11:6 backend \"a\" is http://, so its TLS settings",
            "12:12 invalid protocol \"h3\" for backend \"a\"",
            "16:37 invalid header match \"x-api-key\" in route \"r\" (value not shown)",
            "17:37 invalid weight 1000000.0 in route \"r\"; expected a whole number from 0 to 1000000 (written as a float",
            "18:44 shadow.divergence_log \"../../etc/cron.d/x\" must be a relative path inside log_dir",
            "18:77 shadow.max_body \"2GiB\" in route \"r\" is too large",
        ];
        assert_eq!(lines.len(), expect.len(), "{lines:#?}");
        for (line, expected) in lines.iter().zip(expect) {
            assert!(line.starts_with(expected), "{line}\n  expected: {expected}");
        }
        assert!(!err.to_string().contains("cret"), "{err}");
    }

    #[test]
    fn secrets_stay_hidden_when_another_mistake_shares_their_line() {
        let src = r#"
[backends.a]
url = "http://127.0.0.1:1/?api_key=hunter2"

[[routes]]
name = "r"
match = { headers = { "x-api-key" = "sk-live-123" }, path_prefix = "no-slash" }
split = [ { backend = "a", weight = 1 } ]
"#;
        let err = Config::from_toml("f.toml", src).expect_err("rejected");
        let shown = err.to_string();
        assert!(shown.contains("path_prefix \"no-slash\""), "{shown}");
        assert!(
            !shown.contains("sk-live-123") && !shown.contains("hunter2"),
            "{shown}"
        );
        let prefix = err
            .errors()
            .find(|d| d.message.contains("no-slash"))
            .expect("found");
        let caret_at = prefix.source_line.chars().skip(prefix.column - 1);
        assert!(
            caret_at.collect::<String>().starts_with("\"no-slash\""),
            "the caret still points at it"
        );
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
                "backend \"v2\" is not used by any route",
                "route \"churn\" can never match: the earlier route \"all\" takes every request it would; move it above \"all\" or narrow the earlier match",
            ]
        );
        let w = loaded.warnings[1].to_string();
        assert!(w.starts_with("veer.toml:13:1: warning:"), "{w}");
    }

    #[test]
    fn unreadable_file_is_an_error_not_a_panic() {
        let err = Config::load(Path::new("/nonexistent/veer.toml")).expect_err("missing");
        assert!(err
            .to_string()
            .starts_with("/nonexistent/veer.toml:1:1: error: cannot read"));
    }

    #[test]
    fn a_rollout_loads_with_its_defaults_and_turns_the_canary_into_a_rollout() {
        let loaded = load(
            r#"
[[routes]]
name = "churn"
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
shadow = { backend = "v2" }
compare = { threshold = 0.5, noise_percent = 5 }

[routes.rollout]
candidate = "v2"
steps = [5, 25, 50, 100]
min_step = "10s"
shadow_first = "30s"
state_file = "churn-rollout.json"
decision_log = "churn-decisions.jsonl"
errors = { hard_max = 0.1 }
predictions = { critical = true }
hooks = { notify = "http://127.0.0.1:9/hook" }
"#,
        )
        .expect("valid");
        let route = &loaded.config.routes[0];
        let rollout = route.rollout.as_ref().expect("a rollout");
        assert_eq!(rollout.candidate, BackendId(1));
        assert_eq!(rollout.steps, [5, 25, 50, 100]);
        assert_eq!(rollout.min_step, Duration::from_secs(10));
        assert_eq!(rollout.max_step, defaults::ROLLOUT_MAX_STEP);
        assert_eq!(rollout.shadow_first, Some(Duration::from_secs(30)));
        assert_eq!(rollout.errors.hard_max, 0.1);
        assert_eq!(
            rollout.errors.abs_margin,
            defaults::ROLLOUT_ERRORS_ABS_MARGIN
        );
        assert_eq!(rollout.latency.tail, defaults::ROLLOUT_LATENCY_TAIL);
        let predictions = rollout.predictions.expect("a prediction gate");
        assert!(predictions.critical);
        assert_eq!(predictions.max_divergence, defaults::ROLLOUT_MAX_DIVERGENCE);
        assert_eq!(route.compare.threshold, Some(0.5));
        assert_eq!(route.compare.noise_percent, 5.0);
        assert_eq!(
            route.strategy(&loaded.config).to_string(),
            "canary 95/5 by random draw (v1/v2) + shadow 100% → v2 + rollout of v2 over 5/25/50/100%"
        );
    }

    #[test]
    fn rollout_mistakes_are_all_explained() {
        let found = headlines(
            r#"
[[routes]]
name = "a"
split = [ { backend = "v2", weight = 5 }, { backend = "v1", weight = 95 } ]
[routes.rollout]
candidate = "v2"
steps = [25, 5, 50]
min_step = "5m"
max_step = "1m"
on_inconclusive = "panic"
alpha = 0
shadow_first = "1m"
state_file = "../state.json"

[[routes]]
name = "b"
match = { path = "/b" }
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
[routes.rollout]
candidate = "v2"
steps = [50, 100]
decision_log = "same.jsonl"
predictions = {}
[[routes]]
name = "c"
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
[routes.rollout]
candidate = "v2"
steps = [50, 100]
decision_log = "same.jsonl"
hooks = { notify = "ftp://x" }
"#,
        );
        let expected = [
            "veer.toml:13:13: error: rollout.candidate \"v2\" in route \"a\" must be the last backend of the route's split, after at least one baseline backend (so raising its weight only moves users onto it)",
            "veer.toml:14:9: error: rollout.steps in route \"a\" must end with 100 (the step that promotes the candidate), such as [5, 25, 50, 100]",
            "veer.toml:14:14: error: rollout.steps in route \"a\" must rise: 5 comes after 25",
            "veer.toml:16:12: error: rollout.max_step \"1m\" in route \"a\" is shorter than min_step; a step could never advance",
            "veer.toml:17:19: error: invalid rollout.on_inconclusive \"panic\" in route \"a\"; expected \"pause\" or \"rollback\"",
            "veer.toml:18:9: error: invalid rollout.alpha 0 in route \"a\"; expected a number above 0 and at most 0.5",
            "veer.toml:19:16: error: rollout.shadow_first in route \"a\" needs [routes.rollout.predictions] (and a [routes.shadow] to the candidate): the shadow phase ends when the prediction gate passes",
            "veer.toml:20:14: error: rollout.state_file \"../state.json\" must be a relative path inside log_dir (no leading \"/\", no \"..\"); set the top-level log_dir to choose the folder",
            "veer.toml:30:15: error: [routes.rollout.predictions] in route \"b\" needs a [routes.shadow] with backend = \"v2\": predictions are judged on mirrored traffic",
            "veer.toml:37:16: error: rollout.decision_log \"same.jsonl\" of route \"c\" is already written by route \"b\"; give each rollout its own file",
            "veer.toml:38:20: error: invalid rollout.hooks.notify in route \"c\"; expected an http:// or https:// URL without user:password",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn a_prediction_gate_with_nothing_mirrored_is_a_warning() {
        let loaded = load(
            r#"
[[routes]]
name = "r"
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
shadow = { backend = "v2", percent = 0 }
[routes.rollout]
candidate = "v2"
steps = [50, 100]
predictions = { max_divergence = 0.1 }
"#,
        )
        .expect("valid, with a warning");
        let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("judges mirrored pairs, but shadow.percent is 0")),
            "{warnings:?}"
        );
    }

    #[test]
    fn runtime_workers_is_a_whole_number_of_threads_or_one_per_core() {
        let route = "[[routes]]\nname = \"all\"\nsplit = [ { backend = \"v1\", weight = 1 } ]\n";
        let workers = |n: &str| {
            load(&format!("{route}[runtime]\nworkers = {n}\n"))
                .map(|l| l.config.runtime.workers.map(std::num::NonZeroUsize::get))
        };
        assert_eq!(workers("1").expect("valid"), Some(1));
        assert_eq!(workers("64").expect("valid"), Some(64));
        let unset = load(route).expect("valid");
        assert_eq!(unset.config.runtime.workers, None, "one per core");
        for bad in ["0", "2000", "\"4\"", "1.5"] {
            let found = headlines(&format!("{route}[runtime]\nworkers = {bad}\n"));
            assert_eq!(
                found,
                [format!("veer.toml:12:11: error: invalid runtime.workers {bad}; expected a whole number from 1 to 1024")]
            );
        }
    }

    #[test]
    fn a_file_that_routes_nothing_is_an_error() {
        let found = headlines("");
        assert_eq!(
            found,
            ["veer.toml:1:1: error: no [[routes]]: every request would be answered 404 no_route; add at least one [[routes]] table"]
        );
    }

    /// A route mirrored to v2 whose `[routes.compare]` is `compare` (TOML, one line).
    fn compared(compare: &str) -> String {
        format!(
            r#"
[[routes]]
name = "churn"
split = [ {{ backend = "v1", weight = 1 }} ]
shadow = {{ backend = "v2" }}
compare = {compare}
"#
        )
    }

    #[test]
    fn compare_select_is_one_pointer_or_a_list_of_them() {
        let select = |compare: &str| {
            let loaded = load(&compared(compare)).expect("valid");
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
            let shown = loaded.config.describe()["routes"][0]["compare"]["select"].clone();
            let select = loaded.config.routes[0].compare.select.clone();
            assert_eq!(shown, serde_json::json!(select), "/config shows the list");
            select
        };
        assert_eq!(
            select(r#"{ select = "/outputs/label" }"#),
            ["/outputs/label"]
        );
        assert_eq!(
            select(r#"{ select = ["/outputs/probability", "/outputs/label"] }"#),
            ["/outputs/probability", "/outputs/label"]
        );
        assert_eq!(
            select(r#"{ select = "" }"#),
            [""],
            "the whole body, as written"
        );
        assert!(select("{ select = [] }").is_empty(), "the whole body");
        assert!(
            select("{ abs_tolerance = 0.1 }").is_empty(),
            "the whole body"
        );
    }

    #[test]
    fn compare_alert_divergence_is_a_share_with_a_default() {
        let alert = |compare: &str| {
            load(&compared(compare)).expect("valid").config.routes[0]
                .compare
                .alert_divergence
        };
        assert_eq!(alert("{}"), defaults::COMPARE_ALERT_DIVERGENCE);
        assert_eq!(alert("{ alert_divergence = 0.02 }"), 0.02);
        assert_eq!(alert("{ alert_divergence = 1 }"), 1.0);
        for (value, col) in [("1.5", 32), ("-0.1", 32), ("\"5%\"", 32)] {
            assert_eq!(
                headlines(&compared(&format!("{{ alert_divergence = {value} }}"))),
                [format!("veer.toml:13:{col}: error: invalid compare.alert_divergence {value} in route \"churn\"; expected a number from 0 to 1")]
            );
        }
    }

    #[test]
    fn compare_select_mistakes_point_at_the_value_or_the_item() {
        let found = |compare: &str| headlines(&compared(compare));
        assert_eq!(
            found("{ select = 5 }"),
            ["veer.toml:13:22: error: invalid compare.select 5 in route \"churn\"; expected a JSON pointer such as \"/predictions\" or a list of them"]
        );
        assert_eq!(
            found(r#"{ select = { outputs = "label" } }"#),
            ["veer.toml:13:22: error: invalid compare.select { outputs = \"label\" } in route \"churn\"; expected a JSON pointer such as \"/predictions\" or a list of them"]
        );
        assert_eq!(
            found(r#"{ select = ["x"] }"#),
            ["veer.toml:13:23: error: invalid compare.select \"x\" in route \"churn\"; expected a JSON pointer such as \"/predictions\" (RFC 6901)"]
        );
        assert_eq!(
            found(r#"{ select = "outputs/label" }"#),
            ["veer.toml:13:22: error: invalid compare.select \"outputs/label\" in route \"churn\"; expected a JSON pointer such as \"/predictions\" (RFC 6901)"]
        );
        // Every mistake in the list, each at its item.
        assert_eq!(
            found(
                r#"{ select = ["/outputs/label", 1, "/outputs/label", "/outputs/label/data", "/outputs/probability"] }"#
            ),
            [
                "veer.toml:13:41: error: invalid compare.select item 1 in route \"churn\"; expected a JSON pointer such as \"/predictions\"",
                "veer.toml:13:44: error: compare.select lists \"/outputs/label\" twice in route \"churn\"; list each part once",
                "veer.toml:13:62: error: compare.select \"/outputs/label/data\" in route \"churn\" lies inside \"/outputs/label\", also listed; list one or the other (a part inside another would be compared twice)",
            ]
        );
        assert_eq!(
            found(r#"{ select = ["/predictions", ""] }"#),
            ["veer.toml:13:39: error: compare.select \"\" (the whole body) in route \"churn\" holds \"/predictions\", also listed; list one or the other (a part inside another would be compared twice)"]
        );
    }

    #[test]
    fn a_pointer_lies_inside_itself_and_its_parents_only() {
        assert!(inside("/outputs/label", "/outputs"));
        assert!(!inside("/outputs", "/outputs/label"));
        assert!(inside("/a", "/a"));
        assert!(inside("/a", ""));
        assert!(!inside("/outputs/labels", "/outputs/label"));
        assert!(!inside("/outputs/probability", "/outputs/label"));
    }

    #[test]
    fn gate_numbers_out_of_range_name_their_key() {
        let found = headlines(
            r#"
[[routes]]
name = "r"
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
shadow = { backend = "v2" }
[routes.rollout]
candidate = "v2"
steps = [50, 100]
errors = { hard_max = 2 }
latency = { tail = 0.2 }
predictions = { max_label_flip = -1 }
"#,
        );
        assert_eq!(
            found,
            [
                "veer.toml:16:23: error: invalid rollout.errors.hard_max 2 in route \"r\"; expected a number from 0 to 1",
                "veer.toml:17:20: error: invalid rollout.latency.tail 0.2 in route \"r\"; expected a number from 0.5 to 0.999",
                "veer.toml:18:34: error: invalid rollout.predictions.max_label_flip -1 in route \"r\"; expected a number from 0 to 1",
            ]
        );
    }
}
