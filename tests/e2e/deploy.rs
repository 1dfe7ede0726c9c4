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

/// veer's admin port, as the shipped files use it.
const ADMIN_PORT: &str = "9901";

/// The value of a `key: value` YAML line (list dash, quotes and a trailing comment
/// taken off), when `line` is one for `key`.
fn yaml_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim().trim_start_matches("- ");
    let value = line.strip_prefix(key)?.strip_prefix(':')?;
    let value = value.split(" #").next().unwrap_or_default().trim();
    Some(value.trim_matches('"').trim_matches('\''))
}

/// The admin listener (reload, config, dashboard) is reached by pod IP and loopback
/// only: no Service port, host port or host network exposes it, and Prometheus finds
/// it through the pod annotations instead.
#[test]
fn kubernetes_keeps_the_admin_port_off_services_and_host_ports() {
    let mut services = 0;
    for manifest in files(&root().join("deploy/kubernetes"), &[".yaml"]) {
        let text = std::fs::read_to_string(&manifest).expect("readable");
        for document in text.split("\n---") {
            let lines: Vec<&str> = document.lines().collect();
            for line in &lines {
                assert!(
                    yaml_value(line, "hostPort").is_none()
                        && yaml_value(line, "hostNetwork") != Some("true"),
                    "{}: {line}",
                    manifest.display()
                );
            }
            if !lines
                .iter()
                .any(|l| yaml_value(l, "kind") == Some("Service"))
            {
                continue;
            }
            services += 1;
            for line in &lines {
                for key in ["port", "targetPort", "nodePort"] {
                    let value = yaml_value(line, key);
                    assert!(
                        value != Some(ADMIN_PORT) && value != Some("admin"),
                        "{} exposes the admin port: {line}",
                        manifest.display()
                    );
                }
            }
        }
    }
    assert!(services >= 1, "the client Service is checked");

    let deployment = std::fs::read_to_string(root().join("deploy/kubernetes/base/deployment.yaml"))
        .expect("the Deployment");
    let annotation = |key: &str| {
        deployment
            .lines()
            .find_map(|l| yaml_value(l, key))
            .unwrap_or_else(|| panic!("no {key} annotation"))
            .to_owned()
    };
    assert_eq!(annotation("prometheus.io/scrape"), "true");
    assert_eq!(annotation("prometheus.io/port"), ADMIN_PORT);
    assert_eq!(annotation("prometheus.io/path"), "/metrics");
    assert!(
        deployment.contains(&format!("containerPort: {ADMIN_PORT}")),
        "the probes' named port"
    );
}

/// Compose publishes client traffic only; its Prometheus scrapes veer by service
/// name, so the shipped veer.toml must accept that `Host`: run veer on it and scrape
/// the way Prometheus does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_publishes_no_admin_port_and_its_prometheus_may_scrape() {
    let compose =
        std::fs::read_to_string(root().join("deploy/compose/compose.yaml")).expect("compose");
    let mut in_ports: Option<usize> = None;
    let mut published = Vec::new();
    for line in compose.lines() {
        let indent = line.len() - line.trim_start().len();
        if in_ports.is_some_and(|at| indent <= at && !line.trim().is_empty()) {
            in_ports = None;
        }
        if yaml_value(line, "ports") == Some("") {
            in_ports = Some(indent);
        } else if in_ports.is_some() && line.trim().starts_with("- ") {
            published.push(
                line.trim()
                    .trim_start_matches("- ")
                    .trim_matches('"')
                    .to_owned(),
            );
        }
        assert!(
            yaml_value(line, "network_mode") != Some("host"),
            "host networking publishes every port: {line}"
        );
    }
    assert!(published.contains(&"8080:8080".to_owned()), "{published:?}");
    for mapping in &published {
        let container = mapping.rsplit(':').next().unwrap_or_default();
        assert_ne!(
            container.trim_end_matches("/tcp"),
            ADMIN_PORT,
            "compose publishes the admin port: {mapping}"
        );
    }

    let scrape = std::fs::read_to_string(root().join("deploy/compose/prometheus.yml"))
        .expect("compose prometheus.yml");
    let target = scrape
        .lines()
        .find_map(|l| yaml_value(l, "targets"))
        .and_then(|t| t.trim_matches(['[', ']']).split(',').next())
        .map(|t| t.trim().trim_matches('"').to_owned())
        .expect("a scrape target");
    assert_eq!(target, format!("veer:{ADMIN_PORT}"));

    // The shipped file, on loopback ports of this machine.
    let toml = std::fs::read_to_string(root().join("deploy/compose/veer.toml"))
        .expect("compose veer.toml")
        .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"")
        .replace("\"0.0.0.0:9901\"", "\"127.0.0.1:0\"");
    let veer = crate::start(&toml);
    let admin = veer_testkit::TestClient::new(veer.admin_addr());
    let scraped = admin
        .get("/metrics", &[("host", &target)])
        .await
        .expect("answer");
    assert_eq!(scraped.status, 200, "{}", scraped.text());
    let rebound = admin
        .get("/metrics", &[("host", "rebind.evil.example")])
        .await
        .expect("answer");
    assert_eq!(rebound.status, 421);
}
