//! `veer check`: validate a routing file without serving it.

use std::path::Path;
use std::process::ExitCode;

use veer_config::Config;

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
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
