//! `veer check`: every shipped example passes; a broken file names file:line:col.

use std::path::Path;
use std::process::Command;

use crate::VEER;

#[test]
fn every_example_config_checks_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new(VEER)
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run veer check");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{}: {stderr}", path.display());
        assert!(
            stderr.is_empty(),
            "{} has warnings: {stderr}",
            path.display()
        );
        assert!(
            stdout.lines().count() >= 1
                && stdout
                    .lines()
                    .all(|l| l.contains(": basic") || l.contains(": canary")),
            "{stdout}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example configs");
}

#[test]
fn check_prints_each_routes_strategy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/canary.toml");
    let out = Command::new(VEER)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run veer check");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "churn-testers: basic → churn-v2\nchurn: canary 95/5 by cookie uid (churn-v1/churn-v2)\ndefault: basic → churn-v1\n"
    );
}

#[test]
fn a_broken_file_exits_1_with_file_line_col_and_the_reason() {
    let (out, path) = crate::check_toml(
        "[backends.v1]\nurl = \"http://127.0.0.1:1\"\n\n[[routes]]\nname = \"r\"\nsplit = [ { backend = \"v1\", weight = 1.5 } ]\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("{path}:6:38: error: invalid weight 1.5 in route \"r\"; expected a whole number from 0 to 1000000 (written as a float: drop the decimal point)")
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RawConfig"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = Command::new(VEER)
        .args(["check", "--config", "/nonexistent/veer.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("/nonexistent/veer.toml:1:1: error: cannot read the routing file"));
}
