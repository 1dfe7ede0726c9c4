//! The effective config as JSON, for the admin `/config` endpoint.

use serde_json::{json, Value};

use crate::{CompareMode, Config, Match, SplitBy};

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
                    },
                })
            })
            .collect();
        let backends: Vec<Value> = self
            .backends
            .iter()
            .map(|b| json!({ "name": b.name, "url": b.url.to_string(), "timeout_seconds": b.timeout.as_secs_f64() }))
            .collect();
        json!({
            "listen": { "http": self.listen.http.to_string(), "admin": self.listen.admin.to_string() },
            "backends": backends,
            "routes": routes,
        })
    }
}

fn describe_match(m: &Match) -> Value {
    let headers: serde_json::Map<String, Value> = m
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    json!({
        "path_prefix": m.path_prefix,
        "path": m.path,
        "host": m.host,
        "method": m.method.as_ref().map(|x| x.as_str()),
        "headers": headers,
    })
}
