//! `veer`: a reverse proxy for rolling out ML model versions (basic, canary, shadow,
//! and rollouts it steps up or rolls back by itself).
//!
//! This binary is the wiring: the CLI, logging, signals and the listener; the work is
//! done by the crates under `crates/` (config → route → proxy).

mod admin;
mod check;
mod demo;
mod logging;
mod rollout;
mod run;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// veer — route, split and mirror traffic between versions of a model's backend.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the routing file; SIGHUP reloads it, SIGTERM/SIGINT drain and exit.
    Run {
        /// The routing file.
        #[arg(long, default_value = "config/veer.toml")]
        config: PathBuf,
    },
    /// Run two demo model versions, veer in front (canary + shadow), traffic and the
    /// dashboard, all in this process; nothing is downloaded.
    Demo(demo::DemoArgs),
    /// Show the rollouts of a running veer, or pause, resume, promote, abort or
    /// retry one (through its admin listener).
    Rollout(rollout::RolloutArgs),
    /// Validate the routing file and print each route's strategy.
    Check {
        /// The routing file.
        #[arg(long, default_value = "config/veer.toml")]
        config: PathBuf,
        /// `text` for people, `json` (strategies, warnings and errors) for CI.
        #[arg(long, value_enum, default_value_t = check::Format::Text)]
        format: check::Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, format } => {
            // `--log-format json` asks for machine-readable output too.
            let format = match cli.log_format {
                logging::Format::Json => check::Format::Json,
                logging::Format::Text => format,
            };
            check::check(&config, format)
        }
        Command::Rollout(args) => rollout::rollout(args),
        Command::Demo(args) => {
            // The demo prints its own summary; the log shows only what goes wrong.
            let _flush_on_exit = logging::init_with_default(cli.log_format, "warn");
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(demo::demo(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Said once, plainly: the demo's log shows only warnings and up.
                    eprintln!("veer demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let _flush_on_exit = logging::init(cli.log_format);
            match run::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
