//! Runs the built `veer` binary and watches its JSON log.
//!
//! Readiness is read, not guessed: veer logs `listening` with the bound address once
//! its listener is up, and `config reloaded` / `config reload rejected` after each
//! SIGHUP, so tests wait on those lines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous for a debug binary on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<serde_json::Value>>,
    grew: Condvar,
}

/// A running `veer run`; killed on drop.
pub struct VeerProcess {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    config_path: PathBuf,
    log: Arc<Log>,
}

impl VeerProcess {
    /// Writes `config` to a fresh file and runs `bin run --config FILE --log-format
    /// json`, returning once veer reports its client listener bound.
    pub fn start(bin: &str, config: &str) -> Result<VeerProcess, String> {
        VeerProcess::start_limited(bin, config, None)
    }

    /// As [`VeerProcess::start`], with at most `max_fds` open files when given
    /// (`ulimit -n` in a shell that then becomes veer, so the pid is veer's).
    pub fn start_limited(
        bin: &str,
        config: &str,
        max_fds: Option<u32>,
    ) -> Result<VeerProcess, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let config_path = std::env::temp_dir().join(format!(
            "veer-test-{}-{}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;
        VeerProcess::launch(bin, config_path, max_fds)
    }

    /// Runs `bin run --config CONFIG_PATH --log-format json` on a routing file the
    /// caller wrote (in a folder of its own, say), as [`VeerProcess::start`] does.
    pub fn start_file(bin: &str, config_path: PathBuf) -> Result<VeerProcess, String> {
        VeerProcess::launch(bin, config_path, None)
    }

    fn launch(
        bin: &str,
        config_path: PathBuf,
        max_fds: Option<u32>,
    ) -> Result<VeerProcess, String> {
        let mut command = match max_fds {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                sh
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e}"))?;
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "fields": { "message": line } }));
                sink.lines.lock().expect("log lock").push(value);
                sink.grew.notify_all();
            }
        });
        let mut proc = VeerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            config_path,
            log,
        };
        let ready = proc.wait_for_log(0, "listening", READY_TIMEOUT)?;
        proc.addr = ready["fields"]["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("listening line without addr: {ready}"))?;
        let admin = proc.wait_for_log(0, "admin listening", READY_TIMEOUT)?;
        proc.admin = admin["fields"]["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("admin listening line without addr: {admin}"))?;
        Ok(proc)
    }

    /// The client listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process now, in bytes (`VmRSS` of `/proc/PID/status`);
    /// `None` where there is no procfs.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// The routing file veer was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// How many log lines have been read so far: pass it to [`Self::wait_for_log`] to
    /// wait only for lines logged after now.
    pub fn log_len(&self) -> usize {
        self.log.lines.lock().expect("log lock").len()
    }

    /// Every log message so far, for failure messages.
    pub fn log_messages(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .expect("log lock")
            .iter()
            .map(|l| {
                l["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Every log line so far, whole (message and fields), as veer wrote it.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log.lines.lock().expect("log lock").clone()
    }

    /// Waits for a log line at index `from` or later whose message is `message`.
    pub fn wait_for_log(
        &self,
        from: usize,
        message: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().expect("log lock");
        loop {
            if let Some(found) = lines
                .iter()
                .skip(from)
                .find(|l| l["fields"]["message"] == message)
            {
                return Ok(found.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                return Err(format!(
                    "no log line \"{message}\" within {timeout:?}; log:\n{}",
                    seen.join("\n")
                ));
            }
            lines = self.log.grew.wait_timeout(lines, left).expect("log lock").0;
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`).
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .map_err(|e| format!("run kill: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("kill -{name} failed: {status}"))
    }

    /// Rewrites the routing file, sends SIGHUP and waits for veer's verdict: the
    /// `config reloaded` line (Ok) or the `config reload rejected` line (Err).
    pub fn reload(&self, config: &str) -> Result<serde_json::Value, serde_json::Value> {
        std::fs::write(&self.config_path, config).expect("rewrite the routing file");
        let from = self.log_len();
        self.signal("HUP").expect("send SIGHUP");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let lines = self.log.lines.lock().expect("log lock");
            for line in lines.iter().skip(from) {
                match line["fields"]["message"].as_str() {
                    Some("config reloaded") => return Ok(line.clone()),
                    Some("config reload rejected") => return Err(line.clone()),
                    _ => {}
                }
            }
            assert!(
                !left.is_zero(),
                "no reload verdict within {READY_TIMEOUT:?}"
            );
            drop(self.log.grew.wait_timeout(lines, left).expect("log lock"));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!("still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}
