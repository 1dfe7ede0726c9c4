//! The Prometheus exposition: histogram buckets, and the gauge families derived from
//! the serving config at scrape time.

/// Config load buckets, 100 µs … 10 s: a small file loads in a millisecond, a file of
/// thousands of routes in tens.
pub const RELOAD_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0,
];

/// Request duration buckets, 1 ms … 10 s: model inference from a cached lookup to a
/// large batch. Explicit buckets (not summaries) so replicas can be summed.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Absolute deviation buckets, 0.0001 … 1: from float noise to a flipped probability.
pub const DEVIATION_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A gauge family rendered from current state at scrape time rather than recorded:
/// when a reload removes a route, its series are gone from the next scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    text: String,
}

impl Gauges {
    /// Starts a family with its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str) -> &mut Self {
        self.text
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        self
    }

    /// Adds one series of the current family.
    pub fn series(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if labels.is_empty() {
            self.text.push_str(&format!("{name} {value}\n"));
        } else {
            self.text
                .push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
        }
        self
    }

    /// The exposition text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// Label value escaping of the text format (`\`, `"` and newlines).
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_render_in_the_text_format() {
        let mut g = Gauges::default();
        g.family("veer_route_weight", "Weight.")
            .series(
                "veer_route_weight",
                &[("route", "r\"1"), ("backend", "v1")],
                95.0,
            )
            .family("veer_config_generation", "Generation.")
            .series("veer_config_generation", &[], 3.0);
        assert_eq!(
            g.into_text(),
            "# HELP veer_route_weight Weight.\n# TYPE veer_route_weight gauge\nveer_route_weight{route=\"r\\\"1\",backend=\"v1\"} 95\n\
             # HELP veer_config_generation Generation.\n# TYPE veer_config_generation gauge\nveer_config_generation 3\n"
        );
    }
}
