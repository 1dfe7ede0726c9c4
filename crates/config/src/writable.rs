//! The files veer writes (divergence logs, rollout state and decisions), checked at
//! load: a folder that is missing or read-only (a ConfigMap mount, say) is said when
//! the file is checked or loaded, not found later as a count of `write_error`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{Config, Diagnostic};

impl Config {
    /// Every file veer writes, with what it is for: "route churn's divergence log".
    pub fn written_files(&self) -> Vec<(String, &Path)> {
        let mut files = Vec::new();
        for route in &self.routes {
            if let Some(log) = route
                .shadow
                .as_ref()
                .and_then(|s| s.divergence_log.as_ref())
            {
                files.push((format!("route {}'s divergence log", route.name), &*log.path));
            }
            if let Some(rollout) = &route.rollout {
                for (what, path) in [
                    ("rollout state file", &rollout.state_file),
                    ("rollout decision log", &rollout.decision_log),
                ] {
                    if let Some(path) = path {
                        files.push((format!("route {}'s {what}", route.name), &**path));
                    }
                }
            }
        }
        files
    }
}

/// One warning per file veer could not write as things stand.
pub(crate) fn unwritable(config: &Config, file: &str) -> Vec<Diagnostic> {
    config
        .written_files()
        .into_iter()
        .filter_map(|(what, path)| {
            why_unwritable(path).map(|why| {
                Diagnostic::warning_about(
                    file,
                    format!(
                        "{what} {} cannot be written: {why}; set log_dir to a writable folder",
                        path.display()
                    ),
                )
            })
        })
        .collect()
}

/// Why `path` cannot be created or appended to by this process, if it cannot.
fn why_unwritable(path: &Path) -> Option<String> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.exists() {
        return Some(format!(
            "its folder {} does not exist (veer does not create it)",
            folder.display()
        ));
    }
    if !folder.is_dir() {
        return Some(format!("{} is not a folder", folder.display()));
    }
    let target = if path.exists() { path } else { &folder };
    let denied = |p: &Path| {
        let c = CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
        let refused = unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0;
        refused.then(std::io::Error::last_os_error)
    };
    denied(target).map(|e| format!("{}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose route logs into `log_dir`, loaded from a file in a folder of
    /// its own (removed when the returned guard drops).
    fn with_log(log_dir: &str) -> (tempfile::TempDir, Config) {
        let toml = format!(
            r#"
log_dir = "{log_dir}"

[backends.v1]
url = "http://127.0.0.1:8001"
[backends.v2]
url = "http://127.0.0.1:8002"

[[routes]]
name = "churn"
split = [ {{ backend = "v1", weight = 1 }} ]
[routes.shadow]
backend = "v2"
divergence_log = "divergences.jsonl"
"#
        );
        let dir = tempfile::Builder::new()
            .prefix("veer-writable-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("veer.toml");
        std::fs::write(&path, toml).expect("write the file");
        let loaded = Config::load(&path).expect("valid");
        (dir, loaded.config)
    }

    #[test]
    fn a_missing_folder_is_named() {
        let (_dir, config) = with_log("no/such/folder");
        let found = unwritable(&config, "veer.toml");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .starts_with("route churn's divergence log ")
                && found[0].message.contains("no/such/folder does not exist"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_writable_folder_is_not_mentioned() {
        let (_dir, config) = with_log(".");
        assert!(unwritable(&config, "veer.toml").is_empty());
    }

    #[test]
    fn a_folder_that_is_a_file_is_named() {
        let (_dir, config) = with_log("veer.toml");
        let found = unwritable(&config, "veer.toml");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("veer.toml is not a folder"),
            "{found:?}"
        );
    }
}
