//! The admin endpoints' view of the running proxy.

use veer_proxy::Routes;
use veer_telemetry::admin::{Access, AdminHooks, ReloadFailure, ReloadFuture};
use veer_telemetry::exporter::Gauges;
use veer_telemetry::names;

/// [`AdminHooks`] over the proxy's routes.
pub struct Hooks {
    routes: Routes,
}

impl Hooks {
    /// Hooks reading and reloading `routes`.
    pub fn new(routes: Routes) -> Hooks {
        Hooks { routes }
    }
}

impl AdminHooks for Hooks {
    /// Generation, weights, ejections and build info from the serving snapshot: a route or
    /// backend removed by a reload is gone from the next scrape.
    fn gauges(&self) -> String {
        let snapshot = self.routes.load();
        let config = snapshot.config();
        let mut g = Gauges::default();
        g.family(
            names::CONFIG_GENERATION,
            "Generation of the serving config: 1 at start, +1 per successful reload.",
        )
        .series(names::CONFIG_GENERATION, &[], snapshot.generation() as f64);
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
            names::BACKEND_EJECTED,
            "1 while outlier detection keeps a backend out of rotation (its share goes to the route's other backends), else 0.",
        );
        for (backend, ejected) in snapshot.ejections() {
            g.series(
                names::BACKEND_EJECTED,
                &[("backend", backend)],
                f64::from(u8::from(ejected)),
            );
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
        let source = snapshot.source();
        let mut described = snapshot.config().describe();
        described["generation"] = snapshot.generation().into();
        described["source"] = serde_json::json!({
            "file": source.file,
            "sha256": source.sha256,
            "loaded_at": humantime::format_rfc3339_seconds(source.loaded_at).to_string(),
        });
        described
    }

    fn stats(&self) -> serde_json::Value {
        self.routes.stats()
    }

    fn reload(&self) -> ReloadFuture {
        let routes = self.routes.clone();
        Box::pin(async move {
            match routes.reload().await {
                Ok(reloaded) => Ok(reloaded.generation),
                Err(error) if error.is_refusal() => Err(ReloadFailure::Refused(error.to_string())),
                Err(error) => Err(ReloadFailure::Failed(error.to_string())),
            }
        })
    }

    /// The token read for the serving generation and its `[admin] hosts`.
    fn access(&self) -> Access {
        let snapshot = self.routes.load();
        Access {
            token: snapshot.admin_token().map(str::to_owned),
            hosts: snapshot.config().admin.hosts.clone(),
        }
    }
}
