//! deploy/ and the Dockerfile: what can be checked on a machine without a Docker
//! engine or a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with one of `extensions`.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a deploy folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path, extensions));
        } else if extensions
            .iter()
            .any(|e| path.to_string_lossy().ends_with(e))
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn kubernetes_manifests_validate_against_the_openapi_schemas() {
    let manifests: Vec<PathBuf> = files(&root().join("deploy/kubernetes"), &[".yaml"])
        .into_iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    assert!(manifests.len() >= 6, "{manifests:?}");
    let Ok(out) = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg("--quiet")
        .args(&manifests)
        .output()
    else {
        crate::skipped("manifest validation: kubernetes-validate is not installed (pip install kubernetes-validate; .ci/run installs it)");
        return;
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate:\n{report}");
    assert!(!report.contains("ERROR"), "{report}");
}

#[test]
fn kustomizations_name_files_that_exist() {
    for kustomization in files(&root().join("deploy/kubernetes"), &["kustomization.yaml"]) {
        let folder = kustomization.parent().expect("a folder");
        let text = std::fs::read_to_string(&kustomization).expect("readable");
        let mut checked = 0;
        for line in text.lines() {
            let entry = line
                .trim()
                .trim_start_matches("- ")
                .trim_start_matches("path: ");
            if line.trim().starts_with("- ")
                && (entry.ends_with(".yaml") || entry.starts_with(".."))
                || line.trim().starts_with("- path:")
            {
                assert!(
                    folder.join(entry).exists(),
                    "{} names {entry}, which does not exist",
                    kustomization.display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 1, "{} lists nothing", kustomization.display());
    }
}

/// The routing files shipped in ConfigMaps and compose are real veer configs.
#[test]
fn every_shipped_routing_file_passes_veer_check() {
    let mut configs: Vec<(String, String)> = Vec::new();
    for manifest in files(&root().join("deploy/kubernetes"), &[".yaml"]) {
        let text = std::fs::read_to_string(&manifest).expect("readable");
        if let Some(at) = text.find("veer.toml: |\n") {
            let body: Vec<&str> = text[at..]
                .lines()
                .skip(1)
                .take_while(|l| l.is_empty() || l.starts_with("    "))
                .collect();
            let toml: String = body
                .iter()
                .map(|l| l.strip_prefix("    ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n");
            configs.push((manifest.display().to_string(), toml));
        }
    }
    for file in files(&root().join("deploy"), &[".toml"]) {
        configs.push((
            file.display().to_string(),
            std::fs::read_to_string(&file).expect("readable"),
        ));
    }
    assert!(
        configs.len() >= 3,
        "{:?}",
        configs.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    for (origin, toml) in configs {
        let (out, _) = crate::check_toml(&toml);
        assert!(
            out.status.success(),
            "{origin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("+ shadow"),
            "{origin} shadows its candidate"
        );
    }
}

#[test]
fn the_dockerfile_builds_what_exists_and_runs_veer_unprivileged() {
    let text =
        std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile at the root");
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('#')
                && l.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        })
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(
        instructions[stages[0]].1.ends_with("AS build"),
        "the first stage builds"
    );
    let last = &instructions[stages[stages.len() - 1]..];
    let user = last
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v.as_str());
    assert!(
        user.is_some_and(|u| u != "root" && u != "0"),
        "the runtime stage runs as a non-root user: {user:?}"
    );
    for (key, value) in &instructions {
        if key == "COPY" && !value.starts_with("--from") {
            let parts: Vec<&str> = value.split_whitespace().collect();
            for source in &parts[..parts.len() - 1] {
                assert!(
                    root().join(source).exists(),
                    "COPY {source}: no such path in the repository"
                );
            }
        }
    }
    let copied = last
        .iter()
        .find(|(k, v)| k == "COPY" && v.starts_with("--from=build"))
        .map(|(_, v)| v.clone())
        .expect("the binary is copied from the build stage");
    assert!(copied.contains("/src/target/release/veer"), "{copied}");
    let has = |key: &str, needle: &str| last.iter().any(|(k, v)| k == key && v.contains(needle));
    assert!(
        has("EXPOSE", "8080") && has("EXPOSE", "9901"),
        "client and admin ports exposed"
    );
    assert!(has("STOPSIGNAL", "SIGTERM"));
    assert!(has("ENTRYPOINT", "/usr/local/bin/veer"));
    assert!(
        !instructions.iter().any(|(k, _)| k == "HEALTHCHECK"),
        "Kubernetes probes check health, not the image"
    );
    assert!(
        text.contains("/etc/veer/veer.toml"),
        "config read from /etc/veer/veer.toml"
    );
}
