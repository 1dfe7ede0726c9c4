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

/// Every kustomization folder: the base and each overlay.
fn kustomizations() -> Vec<PathBuf> {
    files(&root().join("deploy/kubernetes"), &["kustomization.yaml"])
        .into_iter()
        .filter_map(|k| k.parent().map(Path::to_path_buf))
        .collect()
}

/// What `kubectl apply -k DIR` would send: `kubectl kustomize DIR`'s YAML. `None`
/// (the test skips) when kubectl is not installed, or carries a kustomize older
/// than v4, which does not read the `patches:` field (Debian's kubectl 1.20 does).
fn render(dir: &Path) -> Option<String> {
    let version = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()?;
    let kustomize = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Kustomize Version: v")?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    if kustomize.is_none_or(|major| major < 4) {
        return None;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("YAML is text"))
}

/// Each rendered object of `yaml`.
fn objects(yaml: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| serde_yaml_ng::Value::deserialize(document).expect("rendered YAML"))
        .collect()
}

/// A Kubernetes quantity in bytes: "40Mi", "1Gi", "64M", "1000".
fn quantity_bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(
        quantity
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(quantity.len()),
    );
    let scale: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("unit {other} in {quantity}"),
    };
    number.parse::<u64>().expect("a whole number") * scale
}

#[test]
fn every_kustomization_renders_and_validates_against_the_openapi_schemas() {
    let folders = kustomizations();
    assert!(folders.len() >= 3, "base and overlays: {folders:?}");
    for folder in folders {
        let Some(yaml) = render(&folder) else {
            crate::skipped("kustomize render: kubectl with kustomize v4 or later is not installed (the machine image carries kubectl 1.32)");
            return;
        };
        let rendered = std::env::temp_dir().join(format!(
            "veer-rendered-{}-{}.yaml",
            std::process::id(),
            folder.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&rendered, &yaml).expect("write the render");
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&rendered)
            .output();
        let _ = std::fs::remove_file(&rendered);
        let Ok(out) = out else {
            crate::skipped("manifest validation: kubernetes-validate is not installed (pip install kubernetes-validate; .ci/run installs it)");
            return;
        };
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !report.contains("ERROR"),
            "{}: kubernetes-validate:\n{report}",
            folder.display()
        );
    }
}

/// What each render applies holds together: every namespace it uses it creates (or
/// it uses none), its routing file passes `veer check`, and veer's log_dir is a
/// writable volume of the Deployment sized for two divergence logs (the file and
/// its rotated `.1`) of the routing file's divergence_log_max.
#[test]
fn each_rendered_kustomization_creates_its_namespace_and_a_log_volume_that_fits() {
    for folder in kustomizations() {
        let Some(yaml) = render(&folder) else {
            crate::skipped("kustomize render: kubectl with kustomize v4 or later is not installed (the machine image carries kubectl 1.32)");
            return;
        };
        let at = folder.display();
        let objects = objects(&yaml);
        let kind = |o: &serde_yaml_ng::Value| o["kind"].as_str().unwrap_or_default().to_owned();
        let created: Vec<&str> = objects
            .iter()
            .filter(|o| kind(o) == "Namespace")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        for object in &objects {
            if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                assert!(
                    created.contains(&namespace),
                    "{at}: {} {} is in namespace {namespace}, which the render does not create",
                    kind(object),
                    object["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
        }

        let toml = objects
            .iter()
            .filter(|o| kind(o) == "ConfigMap")
            .find_map(|o| o["data"]["veer.toml"].as_str())
            .unwrap_or_else(|| panic!("{at}: a ConfigMap with veer.toml"));
        let (out, _) = crate::check_toml(toml);
        assert!(
            out.status.success(),
            "{at}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = veer_config::Config::from_toml("veer.toml", toml)
            .expect("checked")
            .config;
        let logs: u64 = config
            .routes
            .iter()
            .filter_map(|r| r.shadow.as_ref()?.divergence_log.as_ref())
            .map(|log| 2 * log.max_bytes)
            .sum();
        assert!(
            logs > 0,
            "{at}: the shipped routing file keeps a divergence log"
        );
        let log_dir = config.log_dir.display().to_string();
        assert!(
            log_dir.starts_with('/'),
            "{at}: log_dir {log_dir:?} is absolute"
        );

        let deployment = objects
            .iter()
            .find(|o| kind(o) == "Deployment" && o["metadata"]["name"] == "veer")
            .unwrap_or_else(|| panic!("{at}: the veer Deployment"));
        let pod = &deployment["spec"]["template"]["spec"];
        let container = pod["containers"]
            .as_sequence()
            .and_then(|c| c.iter().find(|c| c["name"] == "veer"))
            .expect("the veer container");
        let mount = container["volumeMounts"]
            .as_sequence()
            .and_then(|m| m.iter().find(|m| m["mountPath"].as_str() == Some(&log_dir)))
            .unwrap_or_else(|| panic!("{at}: a volume mounted at log_dir {log_dir}"));
        assert_ne!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{at}: log_dir is writable"
        );
        let volume = pod["volumes"]
            .as_sequence()
            .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
            .expect("the mounted volume");
        let size = volume["emptyDir"]["sizeLimit"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: log_dir is an emptyDir with a sizeLimit"));
        assert!(
            quantity_bytes(size) >= logs,
            "{at}: sizeLimit {size} < {logs} bytes of divergence logs"
        );
    }
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

/// Where the build stage leaves the binary for the runtime stage to copy.
const BINARY: &str = "/usr/local/bin/veer";

#[test]
fn the_dockerfile_builds_what_exists_and_runs_veer_unprivileged() {
    let text =
        std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile at the root");
    // One instruction per logical line: a trailing `\` continues it.
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
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
    let built = &instructions[stages[0]..stages[1]];
    assert!(
        built.iter().any(|(k, v)| k == "RUN"
            && v.contains("cargo build --profile dist --locked --bin veer")
            && v.contains(&format!("cp target/dist/veer {BINARY}"))),
        "the build stage builds veer and keeps the binary out of its cache mount: {built:?}"
    );
    assert!(
        copied.starts_with(&format!("--from=build {BINARY}")),
        "{copied}"
    );
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

/// The shell commands in the Dockerfile's usage comment (`#   docker run …`), split
/// into words as a shell would.
fn usage_commands(program: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("a Dockerfile");
    text.lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter_map(|l| shlex::split(l.trim()))
        .filter(|words| words.first().is_some_and(|w| w == program))
        .collect()
}

/// What follows `flag` in `words`, each time it appears.
fn flag_values<'a>(words: &'a [String], flag: &str) -> Vec<&'a str> {
    words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

/// A demo model version, as `veer demo --backend-only` serves it in a container,
/// here on a loopback port of its own; killed when dropped.
struct DemoModel {
    child: std::process::Child,
    addr: String,
}

impl DemoModel {
    fn start(args: &[String]) -> DemoModel {
        use std::io::BufRead;
        let mut child = Command::new(crate::VEER)
            .args(args)
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run veer demo --backend-only");
        let stdout = child.stdout.take().expect("piped");
        let mut first = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut first);
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "the model listens where --bind says, and says so: {first:?}"
        );
        DemoModel { child, addr }
    }
}

impl Drop for DemoModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Dockerfile's usage comment, run as written with what only Docker does done by
/// hand: each container becomes a process on loopback (`--bind 127.0.0.1` added, as
/// this test may use loopback only; in a container the default, every interface, is
/// what veer reaches it on), a container name the address it listens on. The image's routing file must listen where `-p` publishes, route
/// to the containers by name, and write its logs in the folder the image makes
/// writable; the `curl` must get a prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_usage_comment_works_as_written() {
    let runs = usage_commands("docker");
    let image = runs
        .iter()
        .find(|w| w.get(1).is_some_and(|c| c == "build"))
        .and_then(|w| flag_values(w, "-t").first().map(|t| (*t).to_owned()))
        .expect("docker build -t IMAGE");
    let mut models = std::collections::HashMap::new();
    let mut veer_run = None;
    for words in runs.iter().filter(|w| w.get(1).is_some_and(|c| c == "run")) {
        let at = words
            .iter()
            .position(|w| *w == image)
            .unwrap_or_else(|| panic!("docker run of {image}: {words:?}"));
        let name = flag_values(words, "--name")
            .first()
            .map(|n| (*n).to_owned())
            .expect("each container is named");
        let args = &words[at + 1..];
        if args.is_empty() {
            veer_run = Some(words.clone());
        } else {
            assert_eq!(args[..2], ["demo", "--backend-only"], "{words:?}");
            let port = flag_values(args, "--port")[0].to_owned();
            let mut local = args.to_vec();
            let p = local.iter().position(|a| a == "--port").expect("--port") + 1;
            local[p] = "0".to_owned();
            models.insert(format!("http://{name}:{port}"), DemoModel::start(&local));
        }
    }
    let veer_run = veer_run.expect("a docker run of veer itself, with the image's CMD");
    let published = flag_values(&veer_run, "-p");
    assert!(
        published.contains(&"8080:8080") && published.contains(&"127.0.0.1:9901:9901"),
        "clients on 8080, the admin on the host's loopback only: {published:?}"
    );

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("COPY deploy/docker/veer.toml /etc/veer/veer.toml"),
        "the image carries the container routing file"
    );
    let shipped = std::fs::read_to_string(root().join("deploy/docker/veer.toml"))
        .expect("deploy/docker/veer.toml");
    for listen in ["http = \"0.0.0.0:8080\"", "admin = \"0.0.0.0:9901\""] {
        assert!(shipped.contains(listen), "inside a container: {listen}");
    }
    assert!(
        shipped.contains("log_dir = \"/var/lib/veer\"")
            && dockerfile.contains("chown 10001:10001 /var/lib/veer")
            && dockerfile.contains("USER 10001"),
        "the logs go to the folder the image gives veer's user"
    );

    let logs = std::env::temp_dir().join(format!("veer-container-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("a log folder");
    let mut toml = shipped
        .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"")
        .replace("\"0.0.0.0:9901\"", "\"127.0.0.1:0\"")
        .replace(
            "\"/var/lib/veer\"",
            &format!("{:?}", logs.display().to_string()),
        );
    for (url, model) in &models {
        assert!(toml.contains(url), "the routing file names {url}");
        toml = toml.replace(url, &format!("http://{}", model.addr));
    }
    assert_eq!(models.len(), 2, "both model versions run");
    let veer = crate::start(&toml);

    let curl = usage_commands("curl").pop().expect("a curl to try it");
    let header = flag_values(&curl, "-H")[0]
        .split_once(": ")
        .expect("a header");
    let body = flag_values(&curl, "-d")[0].to_owned();
    let url = curl
        .iter()
        .find(|w| w.starts_with("localhost:8080"))
        .expect("url");
    let client = veer_testkit::TestClient::new(veer.addr());
    let answer = client
        .send(
            http::Method::POST,
            &url["localhost:8080".len()..],
            &[header],
            bytes::Bytes::from(body),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.json()["predictions"].is_array(), "{}", answer.text());
    let _ = std::fs::remove_dir_all(&logs);
}
