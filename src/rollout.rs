//! `veer rollout`: a person's view of and hand on the rollouts of a running veer,
//! through its admin endpoints (`GET /rollouts`, `POST /rollouts/ROUTE/COMMAND`),
//! under the same protection as a reload: the admin listener's address, and the
//! bearer token when `[admin] token_file` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// How long the admin endpoint may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// `veer rollout ...`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// What to do: show the rollouts, or act on one.
    #[arg(value_enum)]
    verb: Verb,
    /// The route whose rollout to act on (for `status`: only that one).
    route: Option<String>,
    /// The admin listener of the running veer.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// A file holding the admin bearer token (`[admin] token_file`); the
    /// `VEER_ADMIN_TOKEN` environment variable also works.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print the admin endpoint's JSON as it is.
    #[arg(long)]
    json: bool,
}

/// The verbs of `veer rollout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Verb {
    /// Where each rollout stands, its signals and its last actions.
    Status,
    /// Hold the candidate's weight; veer decides nothing until `resume`.
    Pause,
    /// Continue a paused rollout (its step starts again).
    Resume,
    /// Send all traffic to the candidate now.
    Promote,
    /// Send no traffic to the candidate now.
    Abort,
    /// Start a rolled-back (or paused) rollout again from its first step.
    Retry,
}

impl Verb {
    fn label(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Promote => "promote",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
        }
    }
}

/// Runs `veer rollout`, printing the outcome; failure when the command was not
/// carried out.
pub fn rollout(args: RolloutArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veer rollout {}: {e:#}", args.verb.label());
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &RolloutArgs) -> anyhow::Result<String> {
    let token = token(args)?;
    if args.verb == Verb::Status {
        let (_, all) = call(args.admin, Method::GET, "/rollouts", token.as_deref()).await?;
        return Ok(match args.json {
            true => format!("{all:#}\n"),
            false => status_text(&all, args.route.as_deref()),
        });
    }
    let Some(route) = &args.route else {
        anyhow::bail!("name the route: veer rollout {} ROUTE", args.verb.label());
    };
    let path = format!("/rollouts/{route}/{}", args.verb.label());
    let (status, answer) = call(args.admin, Method::POST, &path, token.as_deref()).await?;
    if status != StatusCode::OK {
        let message = answer["message"].as_str().unwrap_or("no message");
        anyhow::bail!("{status}: {message}");
    }
    Ok(match args.json {
        true => format!("{answer:#}\n"),
        false => decision_text(&answer),
    })
}

/// The token from `--token-file`, else `VEER_ADMIN_TOKEN`, if either is given.
fn token(args: &RolloutArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the token file {}", path.display()))?;
        return Ok(text.lines().next().map(|t| t.trim().to_owned()));
    }
    Ok(std::env::var("VEER_ADMIN_TOKEN").ok())
}

/// One request to the admin listener; its status and JSON body.
async fn call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let exchange = async {
        let stream = TcpStream::connect(admin)
            .await
            .with_context(|| format!("connect to veer's admin listener on {admin} (is veer running? --admin sets the address)"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, admin.to_string());
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::new()))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&body)
            .with_context(|| format!("the admin endpoint answered {status} with no JSON"))?;
        anyhow::Ok((status, json))
    };
    tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .with_context(|| format!("no answer from {admin} within {ANSWER_WITHIN:?}"))?
}

/// `churn: pause by operator, 25% → 25% (paused): reason`.
fn decision_text(line: &Value) -> String {
    format!(
        "{}: {} by {}, {}% → {}% ({}): {}\n",
        line["route"].as_str().unwrap_or("?"),
        line["action"].as_str().unwrap_or("?"),
        line["actor"].as_str().unwrap_or("?"),
        line["from"],
        line["to"],
        line["phase"].as_str().unwrap_or("?"),
        line["reason"].as_str().unwrap_or(""),
    )
}

/// Each rollout (or only `route`'s): where it stands, each signal's verdict with its
/// numbers, and its last few actions.
fn status_text(all: &Value, route: Option<&str>) -> String {
    let mut text = String::new();
    let empty = Vec::new();
    let rollouts = all["rollouts"].as_array().unwrap_or(&empty);
    let chosen: Vec<&Value> = rollouts
        .iter()
        .filter(|r| route.is_none_or(|name| r["route"] == name))
        .collect();
    if chosen.is_empty() {
        return match route {
            Some(name) => format!("no rollout on route \"{name}\"\n"),
            None => "no route has a [routes.rollout]\n".to_owned(),
        };
    }
    for r in chosen {
        let steps: Vec<String> = r["steps"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(ToString::to_string)
            .collect();
        text.push_str(&format!(
            "{}: {} {} at {}% (steps {}%), step age {:.0}s\n",
            r["route"].as_str().unwrap_or("?"),
            r["candidate"].as_str().unwrap_or("?"),
            r["phase"].as_str().unwrap_or("?"),
            r["weight"],
            steps.join("/"),
            r["step_age_seconds"].as_f64().unwrap_or(0.0),
        ));
        for s in r["signals"].as_array().unwrap_or(&empty) {
            text.push_str(&format!(
                "  {:<10} {:<4} candidate {}/{} bad, bound [{:.4}, {:.4}], pass needs ≤ {:.4}, fail above {:.4}{}\n",
                s["signal"].as_str().unwrap_or("?"),
                s["verdict"].as_str().unwrap_or("?").to_uppercase(),
                s["candidate"]["bad"],
                s["candidate"]["total"],
                s["lower"].as_f64().unwrap_or(0.0),
                s["upper"].as_f64().unwrap_or(1.0),
                s["limit"].as_f64().unwrap_or(0.0),
                s["fail_above"].as_f64().unwrap_or(1.0),
                s["needed"]
                    .as_u64()
                    .map(|n| format!(", ~{n} more to pass"))
                    .unwrap_or_default(),
            ));
        }
        if let Some(reason) = r["reason"].as_str() {
            text.push_str(&format!("  now: {reason}\n"));
        }
        let history = all["history"].as_array().unwrap_or(&empty);
        for line in history
            .iter()
            .filter(|l| l["route"] == r["route"])
            .rev()
            .take(5)
        {
            text.push_str(&format!("  {} ", line["at"].as_str().unwrap_or("?")));
            text.push_str(&decision_text(line));
        }
    }
    text
}
