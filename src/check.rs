//! `veer check`: validate a routing file without serving it.

use std::path::Path;
use std::process::ExitCode;

use veer_config::{Config, Route};
use veer_rollout::Phase;

/// Prints each route's strategy and exits 0, or prints every error and exits 1.
/// Warnings go to stderr either way.
pub fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            for route in &loaded.config.routes {
                println!("{}: {}", route.name, route.strategy(&loaded.config));
                if let Some(note) = rollout_note(&loaded.config, route) {
                    println!("  {note}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// What a route's rollout has done that its file does not say, from its state file:
/// "rollout promoted churn-v2 to 100 %; the file still says 5".
fn rollout_note(config: &Config, route: &Route) -> Option<String> {
    let rollout = route.rollout.as_ref()?;
    let progress = veer_proxy::saved_progress(config, route)?;
    let candidate = &config.backend(rollout.candidate).name;
    let total: u64 = route.split.iter().map(|s| s.weight).sum();
    let file_weight = route
        .split
        .last()
        .map_or(0, |s| (s.weight * 100).checked_div(total).unwrap_or(0));
    let done = match progress.phase {
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled back",
        Phase::Paused => "paused",
        Phase::Shadow => "is shadowing",
        Phase::Progressing => "set",
    };
    (u64::from(progress.weight) != file_weight).then(|| {
        format!(
            "rollout {done} {candidate} to {} %; the file still says {file_weight}",
            progress.weight
        )
    })
}
