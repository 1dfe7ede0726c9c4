//! The admin endpoints' view of the running proxy.

use veer_proxy::Routes;
use veer_telemetry::admin::AdminHooks;
use veer_telemetry::exporter::Gauges;
use veer_telemetry::names;

use crate::reload::Reloader;

/// [`AdminHooks`] over the proxy's routes and the routing file.
pub struct Hooks {
    routes: Routes,
    reloader: Reloader,
}

impl Hooks {
    /// Hooks reading `routes` and reloading through `reloader`.
    pub fn new(routes: Routes, reloader: Reloader) -> Hooks {
        Hooks { routes, reloader }
    }
}

impl AdminHooks for Hooks {
    /// Generation, weights and build info from the serving snapshot: a route or
    /// backend removed by a reload is gone from the next scrape.
    fn gauges(&self) -> String {
        let snapshot = self.routes.load();
        let config = snapshot.table.config();
        let mut g = Gauges::default();
        g.family(
            names::CONFIG_GENERATION,
            "Generation of the serving config: 1 at start, +1 per successful reload.",
        )
        .series(names::CONFIG_GENERATION, &[], snapshot.generation as f64);
        g.family(
            names::ROUTE_WEIGHT,
            "Live split weight of each backend of each route, as configured now.",
        );
        for route in &config.routes {
            for entry in &route.split {
                let backend = &config.backend(entry.backend).name;
                g.series(
                    names::ROUTE_WEIGHT,
                    &[("route", &route.name), ("backend", backend)],
                    entry.weight as f64,
                );
            }
        }
        g.family(
            names::BUILD_INFO,
            "Always 1; the version label says which veer is running.",
        )
        .series(
            names::BUILD_INFO,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        g.into_text()
    }

    fn config(&self) -> serde_json::Value {
        let snapshot = self.routes.load();
        let mut described = snapshot.table.config().describe();
        described["generation"] = snapshot.generation.into();
        described["source"] = serde_json::json!({
            "file": snapshot.source.file,
            "sha256": snapshot.source.sha256,
            "loaded_at": humantime::format_rfc3339_seconds(snapshot.source.loaded_at).to_string(),
        });
        described
    }

    fn reload(&self) -> Result<u64, String> {
        self.reloader.reload()
    }
}
