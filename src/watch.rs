//! `[reload] watch = true`: reload when the routing file's folder changes.
//!
//! The folder is watched, not the file: Kubernetes updates a mounted ConfigMap by
//! swapping its `..data` symlink, so the file itself never sees a write. Only events
//! about the routing file, `..data`, or a file the config reads (certificates, key,
//! token, CA) count, so the divergence logs veer writes next to the file (`log_dir`
//! defaults to its folder) never trigger a reload. Events within [`DEBOUNCE`] of
//! each other are one reload, and it goes through the same serialised path as
//! SIGHUP and `POST /-/reload`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use veer_config::Config;
use veer_proxy::Routes;

/// Editors and ConfigMap swaps write in several steps: one reload after they settle.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Starts watching the folder of `config` for the routes' sake; the watch lasts as
/// long as the returned watcher is kept.
pub fn start(config: &Path, routes: Routes) -> anyhow::Result<notify::RecommendedWatcher> {
    let folder = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let names = watched_names(config, routes.load().config());
    let (changed, mut changes) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with("..data"))
        });
        if relevant && !event.kind.is_access() {
            let _ = changed.send(());
        }
    })
    .context("start the file watcher")?;
    watcher
        .watch(&folder, RecursiveMode::NonRecursive)
        .with_context(|| format!("watch {}", folder.display()))?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Settle: swallow what arrives until the folder is quiet for DEBOUNCE.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
            tracing::info!("routing folder changed: reloading");
            // Logged and counted by the reload itself.
            let _ = routes.reload().await;
        }
    });
    tracing::info!(folder = %folder.display(), "watching the routing file's folder");
    Ok(watcher)
}

/// The file names whose change means a reload: the routing file and every file
/// its config reads that lives in the same folder.
fn watched_names(config_path: &Path, config: &Config) -> HashSet<OsString> {
    let folder = config_path.parent();
    let read = [
        config.tls.as_ref().map(|t| t.cert.as_path()),
        config.tls.as_ref().map(|t| t.key.as_path()),
        config.admin.token_file.as_deref(),
    ]
    .into_iter()
    .flatten()
    .chain(config.backends.iter().flat_map(|b| {
        let tls = &b.tls;
        let pair = tls.client_cert.as_ref();
        [
            tls.ca.as_deref(),
            pair.map(|(c, _)| c.as_path()),
            pair.map(|(_, k)| k.as_path()),
        ]
        .into_iter()
        .flatten()
    }));
    read.filter(|p| p.parent() == folder)
        .chain([config_path])
        .filter_map(|p| p.file_name().map(OsString::from))
        .collect()
}
