//! End-to-end tests of the built `veer` binary: real processes, real loopback
//! sockets, readiness read from veer's log.

mod admin;
mod admin_access;
mod check;
mod chromium;
mod dashboard;
mod demo;
mod deploy;
mod errors;
mod grafana;
mod grpc;
mod reload;
mod rollout;
mod shadow;
mod split;

use veer_testkit::{Behavior, TestBackend, VeerProcess};

/// The binary under test, built by cargo for this test run.
pub const VEER: &str = env!("CARGO_BIN_EXE_veer");

/// A routing file with two backends, one route on `/v1/` and the given split.
pub fn two_versions(v1: &str, v2: &str, w1: u32, w2: u32, split_by: &str) -> String {
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.v1]
url = "{v1}"
timeout = "5s"

[backends.v2]
url = "{v2}"
timeout = "5s"

[[routes]]
name = "model"
match = {{ path_prefix = "/v1/" }}
split = [ {{ backend = "v1", weight = {w1} }}, {{ backend = "v2", weight = {w2} }} ]
split_by = {split_by}
hash_seed = 7
"#
    )
}

/// Starts veer on `config` or fails the test with veer's own words.
pub fn start(config: &str) -> VeerProcess {
    VeerProcess::start(VEER, config).unwrap_or_else(|e| panic!("veer did not start: {e}"))
}

/// Two backends answering `a` and `b`, for the two versions of [`two_versions`].
pub async fn two_backends() -> (TestBackend, TestBackend) {
    (
        TestBackend::start(Behavior::Fixed("a".into())).await,
        TestBackend::start(Behavior::Fixed("b".into())).await,
    )
}

/// A token file in a fresh temporary path, removed on drop.
pub struct TokenFile(std::path::PathBuf);

impl TokenFile {
    /// Writes `token` to a new file.
    pub fn new(token: &str) -> TokenFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "veer-admin-token-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let file = TokenFile(path);
        file.write(token);
        file
    }

    /// Replaces the token in the file.
    pub fn write(&self, token: &str) {
        std::fs::write(&self.0, format!("{token}\n")).expect("write the token file");
    }

    /// Where the file is, for `[admin] token_file`.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub use veer_testkit::skipped;

/// Runs `veer check` on `toml` written to a fresh file; the output, and the file name
/// veer was given (it appears in error messages).
pub fn check_toml(toml: &str) -> (std::process::Output, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "veer-check-{}-{}.toml",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, toml).expect("write the routing file");
    let out = std::process::Command::new(VEER)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run veer check");
    let _ = std::fs::remove_file(&path);
    (out, path.display().to_string())
}
