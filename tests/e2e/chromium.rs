//! A real headless Chromium for the dashboard tests, two ways:
//! - [`dump_dom`]: the page as rendered once its scripts ran (`--dump-dom` with a
//!   virtual-time budget), for what the page says;
//! - [`Page`]: a page driven over the DevTools protocol, for what a page does at a
//!   given width (layout, clicks). The protocol runs over `--remote-debugging-pipe`
//!   (JSON messages ending in a NUL byte, read by Chromium on fd 3 and written on
//!   fd 4), so no port is opened and no WebSocket client is needed.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The browser binary (Debian package `chromium`; `.ci/run` installs it).
pub const CHROMIUM: &str = "chromium";

/// Whether Chromium can be started here.
pub fn installed() -> bool {
    Command::new(CHROMIUM).arg("--version").output().is_ok()
}

/// Flags every run gets: headless, no sandbox (containers), nothing fetched from
/// the network on the side.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A fresh profile folder: two Chromiums on one profile clash on its lock.
fn profile() -> std::path::PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "veer-chromium-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The page as Chromium renders it after its scripts ran.
pub fn dump_dom(url: &str) -> String {
    let profile = profile();
    let mut child = Command::new(CHROMIUM)
        .args(FLAGS)
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("chromium status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium output");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How long one DevTools command may take: a page load on a busy 2-core machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One page of a headless Chromium, driven over the DevTools protocol. The browser
/// is closed when the page is dropped.
pub struct Page {
    child: Child,
    commands: ChildStdin,
    replies: Receiver<Value>,
    session: String,
    next_id: u64,
    profile: std::path::PathBuf,
}

impl Page {
    /// Opens `url` in a viewport `width` × `height` CSS pixels.
    pub fn open(url: &str, width: u32, height: u32) -> Page {
        let profile = profile();
        // Chromium wants the protocol on fds 3 and 4: the shell moves the pipes of
        // stdin and stdout there, and gives Chromium /dev/null for those instead.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >/dev/null")
            .arg(CHROMIUM)
            .args(FLAGS)
            .arg("--remote-debugging-pipe")
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().expect("chromium's command pipe");
        let mut events = child.stdout.take().expect("chromium's reply pipe");
        let (send, replies) = channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n @ 1..) = events.read(&mut chunk) {
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if send.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut page = Page {
            child,
            commands,
            replies,
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = page.command("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = page.command(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        page.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        page.set_width(width, height);
        page.command("Page.navigate", json!({ "url": url }));
        page
    }

    /// Lays the page out in a viewport `width` × `height` CSS pixels.
    pub fn set_width(&mut self, width: u32, height: u32) {
        self.command(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
    }

    /// The value of a JavaScript expression in the page (a promise is awaited).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let answer = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(thrown) = answer.get("exceptionDetails") {
            panic!("{expression} threw: {thrown}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page.
    pub fn wait_for(&mut self, condition: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.evaluate(&format!("Boolean({condition})")) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "the page never showed {condition} within {within:?}:\n{}",
                self.evaluate("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command (to the page's session once attached) and returns its
    /// result; a protocol error fails the test.
    fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|e| panic!("chromium stopped listening ({method}): {e}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method} from chromium: {e}"));
            // Events (no id) and other commands' answers are not this one's.
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
        }
    }
}

impl Drop for Page {
    /// Asks the browser to close (its helper processes go with it), and kills it
    /// if it has not within a few seconds.
    fn drop(&mut self) {
        let close = json!({ "id": 0, "method": "Browser.close" }).to_string();
        let _ = self.commands.write_all(format!("{close}\0").as_bytes());
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
