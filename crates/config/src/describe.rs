//! The effective config as JSON, for the admin `/config` endpoint.

use serde_json::{json, Value};

use crate::{CompareMode, Config, Inconclusive, Match, Protocol, SplitBy};

/// What `/config` shows in place of a value that may be a secret.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// Every route with its strategy, match, split, shadow and compare settings, and
    /// every backend, as served (defaults filled in).
    pub fn describe(&self) -> Value {
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|route| {
                let split: Vec<Value> = route
                    .split
                    .iter()
                    .map(|s| json!({ "backend": self.backend(s.backend).name, "weight": s.weight }))
                    .collect();
                let shadow = route.shadow.as_ref().map(|s| {
                    json!({
                        "backend": self.backend(s.backend).name,
                        "percent": s.percent,
                        "max_in_flight": s.max_in_flight,
                        "max_body": s.max_body,
                        "divergence_log": s.divergence_log.as_ref().map(|l| json!({
                            "path": l.path.display().to_string(),
                            "per_sec": l.per_sec,
                            "max_bytes": l.max_bytes,
                        })),
                    })
                });
                let c = &route.compare;
                let rollout = route.rollout.as_ref().map(|r| {
                    json!({
                        "candidate": self.backend(r.candidate).name,
                        "steps": r.steps,
                        "min_step_seconds": r.min_step.as_secs_f64(),
                        "max_step_seconds": r.max_step.as_secs_f64(),
                        "on_inconclusive": match r.on_inconclusive {
                            Inconclusive::Pause => "pause",
                            Inconclusive::Rollback => "rollback",
                        },
                        "alpha": r.alpha,
                        "shadow_first_seconds": r.shadow_first.map(|d| d.as_secs_f64()),
                        "state_file": r.state_file.as_ref().map(|p| p.display().to_string()),
                        "decision_log": r.decision_log.as_ref().map(|p| p.display().to_string()),
                        "errors": {
                            "rel_margin": r.errors.rel_margin,
                            "abs_margin": r.errors.abs_margin,
                            "hard_max": r.errors.hard_max,
                        },
                        "latency": {
                            "tail": r.latency.tail,
                            "rel_margin": r.latency.rel_margin,
                            "abs_margin": r.latency.abs_margin,
                        },
                        "predictions": r.predictions.map(|p| json!({
                            "max_divergence": p.max_divergence,
                            "max_label_flip": p.max_label_flip,
                            "critical": p.critical,
                        })),
                        // A notification URL may carry a token in its path or query.
                        "notify": r.notify.as_ref().map(|_| REDACTED),
                    })
                });
                json!({
                    "name": route.name,
                    "strategy": route.strategy(self).to_string(),
                    "match": describe_match(&route.matcher),
                    "split": split,
                    "split_by": match &route.split_by {
                        SplitBy::Random => json!("random"),
                        SplitBy::Header(h) => json!({ "header": h.as_str() }),
                        SplitBy::Cookie(name) => json!({ "cookie": name }),
                    },
                    "hash_seed": route.hash_seed,
                    "max_request_body": route.max_request_body,
                    "shadow": shadow,
                    "compare": {
                        "mode": match c.mode {
                            CompareMode::Status => "status",
                            CompareMode::Exact => "exact",
                            CompareMode::Json => "json",
                        },
                        "select": c.select,
                        "abs_tolerance": c.abs_tolerance,
                        "rel_tolerance": c.rel_tolerance,
                        "ignore": c.ignore,
                        "max_body": c.max_body,
                        "threshold": c.threshold,
                        "noise_percent": c.noise_percent,
                        "alert_divergence": c.alert_divergence,
                    },
                    "rollout": rollout,
                })
            })
            .collect();
        let backends: Vec<Value> = self
            .backends
            .iter()
            .map(|b| {
                json!({
                    "name": b.name,
                    // Userinfo is refused at validation, so the url has no secret in it.
                    "url": b.url.to_string(),
                    "protocol": match b.protocol {
                        Protocol::Http1 => "http1",
                        Protocol::H2 => "h2",
                    },
                    "timeout_seconds": b.timeout.as_secs_f64(),
                    "connect_timeout_seconds": b.connect_timeout.as_secs_f64(),
                    "max_connections": b.max_connections,
                    "retry": b.retry,
                    "ca": b.tls.ca.as_ref().map(|p| p.display().to_string()),
                    "client_cert": b.tls.client_cert.as_ref().map(|(c, _)| c.display().to_string()),
                    "outlier": {
                        "consecutive_failures": b.outlier.consecutive_failures,
                        "ejection_seconds": b.outlier.ejection.as_secs_f64(),
                    },
                })
            })
            .collect();
        let l = &self.limits;
        json!({
            "listen": {
                "http": self.listen.http.to_string(),
                "https": self.listen.https.map(|a| a.to_string()),
                "admin": self.listen.admin.to_string(),
            },
            "tls": self.tls.as_ref().map(|t| json!({
                "cert": t.cert.display().to_string(),
                "key": t.key.display().to_string(),
            })),
            "limits": {
                "max_connections": l.max_connections,
                "header_read_timeout_seconds": l.header_read_timeout.as_secs_f64(),
                "idle_timeout_seconds": l.idle_timeout.as_secs_f64(),
                "body_read_timeout_seconds": l.body_read_timeout.as_secs_f64(),
                "max_request_body": l.max_request_body,
                "drain_timeout_seconds": l.drain_timeout.as_secs_f64(),
            },
            "admin": {
                "token_file": self.admin.token_file.as_ref().map(|p| p.display().to_string()),
                "hosts": self.admin.hosts,
            },
            "reload": { "watch": self.watch },
            "runtime": { "workers": self.runtime.workers.map_or(json!("one per core"), |n| json!(n.get())) },
            "log_dir": self.log_dir.display().to_string(),
            "backends": backends,
            "routes": routes,
        })
    }
}

fn describe_match(m: &Match) -> Value {
    let headers: serde_json::Map<String, Value> = m
        .headers
        .iter()
        // The values may be secrets (an API key a route matches on): names only.
        .map(|(k, _)| (k.to_string(), json!(REDACTED)))
        .collect();
    json!({
        "path_prefix": m.path_prefix,
        "path": m.path,
        "host": m.host,
        "method": m.method.as_ref().map(|x| x.as_str()),
        "headers": headers,
    })
}
