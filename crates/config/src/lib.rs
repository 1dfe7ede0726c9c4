//! veer's routing file: the TOML a user edits, read and checked before anything serves it.
//!
//! This is the first step on a request's way, taken once per (re)load rather than per
//! request: the file is parsed as a TOML `document` and checked against the keys the
//! raw structs declare (`schema`), so that every unknown key is reported (with "did you
//! mean" when a known key is close) rather than serde stopping at the first; then it is
//! deserialized into raw structs that mirror the TOML exactly ([`raw`],
//! `deny_unknown_fields`), and [`validate`]d into a different, typed [`Config`] in which
//! backend names are already resolved to [`BackendId`]s, durations and addresses are
//! parsed and weights are known to be usable. Every mistake found on the way becomes a
//! [`Diagnostic`] carrying `file:line:col` from the TOML spans; all of them are reported
//! at once, in file order, each once: a check that builds on a setting already reported
//! wrong is not made.
//!
//! ```
//! let toml = r#"
//! [backends.v1]
//! url = "http://127.0.0.1:8001"
//!
//! [[routes]]
//! name = "all"
//! split = [ { backend = "v1", weight = 1 } ]
//! "#;
//! let loaded = veer_config::Config::from_toml("veer.toml", toml).unwrap();
//! assert_eq!(loaded.config.routes[0].strategy(&loaded.config).to_string(), "basic → v1");
//! ```

pub mod defaults;
mod describe;
mod diagnostic;
mod document;
mod model;
mod raw;
mod schema;
mod strategy;
mod validate;
mod writable;

pub use describe::REDACTED;
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::{
    AdminAccess, Backend, BackendId, BackendTls, Compare, CompareMode, Config, DivergenceLog,
    ErrorGate, Inconclusive, LatencyGate, Limits, Listen, Loaded, Match, Outlier, PredictionGate,
    Protocol, Rollout, Route, Runtime, Shadow, SplitBy, Tls, WeightedBackend,
};
pub use strategy::{Live, Strategy};
