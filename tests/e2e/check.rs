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

/// A divergence log whose folder is missing (or read-only, as a ConfigMap mount
/// is) is said by `check`, not found later as `write_error` counts.
#[test]
fn check_warns_when_a_file_veer_writes_cannot_be_written() {
    let (out, _) = crate::check_toml(
        r#"
log_dir = "/nonexistent-veer-logs"

[backends.v1]
url = "http://127.0.0.1:8001"
[backends.v2]
url = "http://127.0.0.1:8002"

[[routes]]
name = "churn"
split = [ { backend = "v1", weight = 1 } ]
[routes.shadow]
backend = "v2"
divergence_log = "divergences.jsonl"
"#,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("warning: route churn's divergence log /nonexistent-veer-logs/divergences.jsonl cannot be written: its folder /nonexistent-veer-logs does not exist"),
        "{stderr}"
    );
}

/// The file `crates/config` tests its five mistakes with: the built binary reports
/// each at its place, in file order, and nothing else (no duplicate key for the
/// misspelt `[[route]]`, no warning that follows from another mistake).
#[test]
fn check_reports_every_mistake_at_once_and_nothing_else() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/config/testdata/five-mistakes.toml");
    let out = Command::new(VEER)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run veer check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    let headlines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(file.as_str()))
        .collect();
    assert_eq!(
        headlines,
        [
            ":6:11: error: invalid timeout \"2x\" for backend \"churn-v1\"; expected a duration above zero such as \"2s\" or \"500ms\"",
            ":14:35: error: unknown key `wieght` in split of route \"churn\"; did you mean `weight`?",
            ":14:62: error: unknown backend \"churn-v9\" in route \"churn\"; expected one of: churn-v1, churn-v2",
            ":18:11: error: invalid shadow.percent 150 in route \"churn\"; expected a number from 0 to 100",
            ":20:1: error: unknown table `[[route]]`; did you mean `[[routes]]`?",
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("20 | [[route]]\n   | ^^^^^^^^^"),
        "the caret is under the header: {stderr}"
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

/// A rollout whose state file says otherwise than the routing file's split: `veer
/// check` says what the rollout did.
#[test]
fn check_notes_a_rollout_that_moved_past_its_file() {
    let dir = std::env::temp_dir().join(format!("veer-e2e-check-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test folder");
    let config = dir.join("veer.toml");
    std::fs::write(
        &config,
        r#"
[backends.v1]
url = "http://127.0.0.1:8001"
[backends.v2]
url = "http://127.0.0.1:8002"
[[routes]]
name = "churn"
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
[routes.rollout]
candidate = "v2"
steps = [5, 50, 100]
state_file = "churn-rollout.json"
"#,
    )
    .expect("write the routing file");
    let check = || {
        let out = Command::new(VEER)
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("run veer check");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let strategy = "churn: canary 95/5 by random draw (v1/v2) + rollout of v2 over 5/50/100%\n";
    assert_eq!(check(), strategy, "no state file yet: nothing to note");
    let state = |candidate: &str| {
        format!(
            r#"{{"route": "churn", "candidate": "{candidate}", "url": "http://127.0.0.1:8002/", "steps": [5, 50, 100],
               "progress": {{"phase": "promoted", "step": 2, "weight": 100}}, "saved_at": "2026-11-30T00:00:00Z"}}"#
        )
    };
    std::fs::write(dir.join("churn-rollout.json"), state("v2")).expect("write the state");
    assert_eq!(
        check(),
        format!("{strategy}  rollout promoted v2 to 100 %; the file still says 5\n")
    );
    // The state of another rollout (another candidate) is not this one's.
    std::fs::write(dir.join("churn-rollout.json"), state("v3")).expect("write the state");
    assert_eq!(check(), strategy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `veer check --format json`: one object for CI, with the strategies, or with every
/// error and warning at its position; the exit code as in text.
#[test]
fn check_speaks_json_for_ci() {
    let run = |path: &Path| {
        let out = Command::new(VEER)
            .args(["check", "--format", "json", "--config"])
            .arg(path)
            .output()
            .expect("run veer check");
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
        (out.status.success(), answer)
    };
    let canary = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/canary.toml");
    let (ok, answer) = run(&canary);
    assert!(ok);
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["routes"][1]["name"], "churn");
    assert_eq!(
        answer["routes"][1]["strategy"],
        "canary 95/5 by cookie uid (churn-v1/churn-v2)"
    );
    assert_eq!(answer["errors"], serde_json::json!([]));
    // `--log-format json` asks for machine-readable output too.
    let out = Command::new(VEER)
        .args(["check", "--log-format", "json", "--config"])
        .arg(&canary)
        .output()
        .expect("run veer check");
    let same: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(same, answer);

    let file =
        std::env::temp_dir().join(format!("veer-e2e-check-json-{}.toml", std::process::id()));
    // A warning leaves the file valid, and is listed with its place.
    std::fs::write(
        &file,
        "log_dir = \"/nonexistent-veer-logs\"\n[backends.v1]\nurl = \"http://127.0.0.1:8001\"\n[backends.v2]\nurl = \"http://127.0.0.1:8002\"\n[[routes]]\nname = \"churn\"\nsplit = [ { backend = \"v1\", weight = 1 } ]\n[routes.shadow]\nbackend = \"v2\"\ndivergence_log = \"d.jsonl\"\n",
    )
    .expect("write the routing file");
    let (ok, answer) = run(&file);
    assert!(ok, "{answer:#}");
    assert_eq!(answer["ok"], true);
    let warning = &answer["warnings"][0];
    assert_eq!(warning["severity"], "warning", "{answer:#}");
    assert!(warning["line"].as_u64().is_some(), "{answer:#}");
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("route churn's divergence log")),
        "{answer:#}"
    );

    std::fs::write(
        &file,
        "[backends.v1]\nurl = \"http://127.0.0.1:8001\"\n[backends.v2]\nurl = \"http://127.0.0.1:8002\"\n",
    )
    .expect("write the routing file");
    let (ok, answer) = run(&file);
    let _ = std::fs::remove_file(&file);
    assert!(!ok, "{answer:#}");
    assert_eq!(answer["ok"], false);
    let error = &answer["errors"][0];
    assert_eq!(error["severity"], "error");
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("no [[routes]]")),
        "{answer:#}"
    );
}

/// Text logs sent anywhere but a terminal carry no colour codes: a log file or a
/// collector reads plain text.
#[test]
fn text_logs_to_a_pipe_are_plain() {
    let out = Command::new(VEER)
        .args(["run", "--config", "/nonexistent/veer.toml"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run veer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot read the routing file"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in: {stderr:?}");
}
