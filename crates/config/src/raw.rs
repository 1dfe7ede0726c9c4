//! The routing file exactly as written: serde structs that mirror the TOML, every
//! value kept with its span so validation can point at it. Nothing here is trusted.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub log_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub listen: RawListen,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub backends: BTreeMap<String, Spanned<RawBackend>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub http: Option<Spanned<String>>,
    pub https: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_connections: Option<Spanned<toml::Value>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub body_read_timeout: Option<Spanned<String>>,
    pub max_request_body: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub token_file: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    pub watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    pub workers: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub url: Spanned<String>,
    pub timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<toml::Value>>,
    pub protocol: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub retry: Option<bool>,
    pub outlier: Option<RawOutlier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlier {
    pub consecutive_failures: Option<Spanned<toml::Value>>,
    pub ejection: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    #[serde(rename = "match", default)]
    pub matcher: Option<Spanned<RawMatch>>,
    pub split: Spanned<Vec<Spanned<RawSplit>>>,
    /// `"random"`, `{ header = "..." }` or `{ cookie = "..." }`; read by hand so a
    /// mistake gets a message better than serde's "did not match any variant".
    pub split_by: Option<Spanned<toml::Value>>,
    pub hash_seed: Option<Spanned<toml::Value>>,
    pub max_request_body: Option<Spanned<String>>,
    pub shadow: Option<Spanned<RawShadow>>,
    pub compare: Option<Spanned<RawCompare>>,
    pub rollout: Option<Spanned<RawRollout>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollout {
    pub candidate: Spanned<String>,
    pub steps: Spanned<Vec<Spanned<toml::Value>>>,
    pub min_step: Option<Spanned<String>>,
    pub max_step: Option<Spanned<String>>,
    pub on_inconclusive: Option<Spanned<String>>,
    pub alpha: Option<Spanned<toml::Value>>,
    pub shadow_first: Option<Spanned<String>>,
    pub state_file: Option<Spanned<String>>,
    pub decision_log: Option<Spanned<String>>,
    pub errors: Option<RawErrorGate>,
    pub latency: Option<RawLatencyGate>,
    pub predictions: Option<Spanned<RawPredictionGate>>,
    pub hooks: Option<RawHooks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawErrorGate {
    pub rel_margin: Option<Spanned<toml::Value>>,
    pub abs_margin: Option<Spanned<toml::Value>>,
    pub hard_max: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatencyGate {
    pub tail: Option<Spanned<toml::Value>>,
    pub rel_margin: Option<Spanned<toml::Value>>,
    pub abs_margin: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPredictionGate {
    pub max_divergence: Option<Spanned<toml::Value>>,
    pub max_label_flip: Option<Spanned<toml::Value>>,
    pub critical: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    pub notify: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShadow {
    pub backend: Spanned<String>,
    pub percent: Option<Spanned<toml::Value>>,
    pub max_in_flight: Option<Spanned<toml::Value>>,
    pub max_body: Option<Spanned<String>>,
    pub divergence_log: Option<Spanned<String>>,
    pub divergence_log_per_sec: Option<Spanned<toml::Value>>,
    pub divergence_log_max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompare {
    pub mode: Option<Spanned<String>>,
    pub select: Option<Spanned<RawSelect>>,
    pub abs_tolerance: Option<Spanned<toml::Value>>,
    pub rel_tolerance: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub threshold: Option<Spanned<toml::Value>>,
    pub noise_percent: Option<Spanned<toml::Value>>,
    pub alert_divergence: Option<Spanned<toml::Value>>,
}

/// `compare.select`: one JSON pointer or a list of them. Read by hand rather than as
/// a `toml::Value`, so that each listed pointer keeps its own span (a mistake in the
/// second of three is pointed at, not the list) and anything else gets a message
/// that says what `select` must be, not serde's "did not match any variant".
#[derive(Debug)]
pub(crate) enum RawSelect {
    /// `select = "/predictions"`.
    One(String),
    /// `select = ["/outputs/probability", "/outputs/label"]`, each item as written.
    Many(Vec<Spanned<toml::Value>>),
    /// Neither: a number, a table, a boolean, a date.
    Other(toml::Value),
}

impl<'de> Deserialize<'de> for RawSelect {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawSelectVisitor)
    }
}

struct RawSelectVisitor;

impl<'de> serde::de::Visitor<'de> for RawSelectVisitor {
    type Value = RawSelect;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON pointer or a list of them")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSelect, E> {
        Ok(RawSelect::One(v.to_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawSelect, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<toml::Value>>()? {
            items.push(item);
        }
        Ok(RawSelect::Many(items))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSelect, E> {
        Ok(RawSelect::Other(toml::Value::Integer(v)))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawSelect, E> {
        Ok(RawSelect::Other(toml::Value::Float(v)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawSelect, E> {
        Ok(RawSelect::Other(toml::Value::Boolean(v)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawSelect, A::Error> {
        // A table, or a date (which toml's serde form carries as a one-key map).
        let value = toml::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(RawSelect::Other(value))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub path_prefix: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSplit {
    pub backend: Spanned<String>,
    /// Read as any value so "-5", 2.5 and "5" each get a message that says what a
    /// weight must be.
    pub weight: Spanned<toml::Value>,
}
