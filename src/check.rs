//! `veer check`: validate a routing file without serving it.

use std::path::Path;
use std::process::ExitCode;

use veer_config::{Config, Route};
use veer_rollout::Phase;

/// How `veer check` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Strategies on stdout, warnings and errors on stderr, with source lines.
    Text,
    /// One JSON object on stdout: `ok`, `routes` (name, strategy, note), `warnings`
    /// and `errors` (severity, file, line, column, message).
    Json,
}

/// Prints each route's strategy and exits 0, or prints every error and exits 1.
/// Warnings go to stderr either way (in `json`, everything is in the one object).
pub fn check(path: &Path, format: Format) -> ExitCode {
    if format == Format::Json {
        return check_json(path);
    }
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

/// `veer check --format json`: the same verdict as one JSON object, exit code alike.
fn check_json(path: &Path) -> ExitCode {
    let findings = |list: &[veer_config::Diagnostic]| -> Vec<serde_json::Value> {
        list.iter().map(veer_config::Diagnostic::to_json).collect()
    };
    let (answer, ok) = match Config::load(path) {
        Ok(loaded) => {
            let routes: Vec<serde_json::Value> = loaded
                .config
                .routes
                .iter()
                .map(|route| {
                    serde_json::json!({
                        "name": route.name,
                        "strategy": route.strategy(&loaded.config).to_string(),
                        "note": rollout_note(&loaded.config, route),
                    })
                })
                .collect();
            let answer = serde_json::json!({
                "file": path.display().to_string(),
                "ok": true,
                "routes": routes,
                "warnings": findings(&loaded.warnings),
                "errors": [],
            });
            (answer, true)
        }
        Err(found) => {
            let (errors, warnings): (Vec<_>, Vec<_>) = found
                .0
                .iter()
                .cloned()
                .partition(|d| d.severity == veer_config::Severity::Error);
            let answer = serde_json::json!({
                "file": path.display().to_string(),
                "ok": false,
                "routes": [],
                "warnings": findings(&warnings),
                "errors": findings(&errors),
            });
            (answer, false)
        }
    };
    println!("{answer:#}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
