//! The admin endpoints' view of the running proxy.

use veer_proxy::{RolloutError, RolloutGauge, Routes};
use veer_rollout::{Command, Phase, Verdict};
use veer_telemetry::admin::{
    self, Access, AdminHooks, ReloadFailure, ReloadFuture, RolloutFailure, RolloutFuture,
};
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
        let mut g = Gauges::default();
        g.family(
            names::CONFIG_GENERATION,
            "Generation of the serving config: 1 at start, +1 per successful reload.",
        )
        .series(names::CONFIG_GENERATION, &[], snapshot.generation() as f64);
        g.family(
            names::ROUTE_WEIGHT,
            "Live split weight of each backend of each route, as served now: the file's, or for a rollout the candidate's step and the rest to the baseline.",
        );
        for (route, backend, weight) in snapshot.weights() {
            g.series(
                names::ROUTE_WEIGHT,
                &[("route", route), ("backend", backend)],
                weight as f64,
            );
        }
        rollout_gauges(&mut g, &self.routes.rollout_gauges());
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
                Ok(reloaded) => Ok(admin::Reloaded {
                    generation: reloaded.generation,
                    warnings: reloaded.warnings.iter().map(ToString::to_string).collect(),
                }),
                Err(error) if error.is_refusal() => Err(ReloadFailure::Refused(error.to_string())),
                Err(error) => Err(ReloadFailure::Failed(error.to_string())),
            }
        })
    }

    fn rollouts(&self) -> serde_json::Value {
        self.routes.rollouts()
    }

    fn rollout_command(&self, route: &str, command: &str) -> RolloutFuture {
        let routes = self.routes.clone();
        let route = route.to_owned();
        let command = command.parse::<Command>();
        Box::pin(async move {
            let command = command.map_err(|e| RolloutFailure::NotFound(e.to_string()))?;
            routes
                .rollout_command(&route, command)
                .await
                .map_err(|error| match error {
                    RolloutError::NoSuchRollout(_) => RolloutFailure::NotFound(error.to_string()),
                    RolloutError::Refused(_) => RolloutFailure::Refused(error.to_string()),
                    RolloutError::Interrupted(_) => RolloutFailure::Failed(error.to_string()),
                })
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

/// `veer_rollout_weight`, `veer_rollout_state` (every state, 1 for the current one)
/// and `veer_rollout_signal` (1 for each signal's current verdict).
fn rollout_gauges(g: &mut Gauges, rollouts: &[RolloutGauge]) {
    if rollouts.is_empty() {
        return;
    }
    g.family(
        names::ROLLOUT_WEIGHT,
        "The rollout candidate's weight now, in percent.",
    );
    for r in rollouts {
        g.series(
            names::ROLLOUT_WEIGHT,
            &[("route", &r.route)],
            f64::from(r.weight),
        );
    }
    g.family(
        names::ROLLOUT_STATE,
        "1 for the rollout's current state (shadow, progressing, paused, promoted, rolled_back), 0 for the others.",
    );
    for r in rollouts {
        for phase in Phase::ALL {
            let now = f64::from(u8::from(phase == r.phase));
            g.series(
                names::ROLLOUT_STATE,
                &[("route", &r.route), ("state", phase.label())],
                now,
            );
        }
    }
    g.family(
        names::ROLLOUT_SIGNAL,
        "1 for each rollout signal's verdict at the last judgement (pass, hold, fail), 0 for the other verdicts.",
    );
    for r in rollouts {
        for (signal, now) in &r.verdicts {
            for verdict in [Verdict::Pass, Verdict::Hold, Verdict::Fail].map(Verdict::label) {
                g.series(
                    names::ROLLOUT_SIGNAL,
                    &[
                        ("route", &r.route),
                        ("signal", signal),
                        ("verdict", verdict),
                    ],
                    f64::from(u8::from(verdict == *now)),
                );
            }
        }
    }
}
