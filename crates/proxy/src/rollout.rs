//! Rollouts as the proxy runs them. The pure [`veer_rollout`] crate decides; this
//! module feeds it counts and carries its decisions out.
//!
//! - Each route with `[routes.rollout]` has a [`RolloutState`] in the registry, keyed
//!   by the route and the rollout's [`Identity`] (the candidate's name and URL, and
//!   the steps): a reload that keeps them keeps the progress, a changed candidate or
//!   changed steps start a new rollout. The state is written to `state_file` on every
//!   change, and read back when veer starts, so a restart resumes its step.
//! - A compiled route's [`CompiledRollout`] holds the plan (the other settings apply
//!   in place) and the series it reads: the candidate's and the baseline's requests,
//!   the shadow's and the noise floor's comparisons. Their running totals, minus what
//!   they were when the step began, are the step's [`Observation`].
//! - The weights a request sees come from the state when a snapshot is compiled
//!   ([`effective_split`]): the candidate gets its step's share, the baseline the
//!   rest in the file's proportions. A decision that changes them recompiles the
//!   snapshot through the reload lock ([`crate::Routes`]), so the change is one
//!   atomic swap.
//! - [`drive`] judges every rollout every [`JUDGE_EVERY`], and within [`POLL`] of a
//!   candidate failure; a person's command comes through `Routes::rollout_command`.
//!   Every action is recorded once: a log line, `veer_rollout_decisions_total`, the
//!   decision log, the last [`HISTORY`] in memory for `GET /rollouts`, and the
//!   optional notification, which never holds a decision up.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::tls::{self, TlsFiles};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use veer_config::{BackendTls, Config, Rollout, Route, WeightedBackend};
use veer_rollout::{latency, Action, Arms, Command, Decision, Noise, Observation, Phase, Progress};
use veer_telemetry::{
    ComparisonCounts, ComparisonSeries, ExchangeCounts, ExchangeSeries, Telemetry,
};

/// How often every rollout is judged (the contract: every 5 s).
pub const JUDGE_EVERY: Duration = Duration::from_secs(5);

/// How often candidates' failure counts are looked at, so a failure is judged at
/// once (within this) rather than at the next 5-second mark.
pub const POLL: Duration = Duration::from_millis(100);

/// A route's `hold` decisions are recorded at most this often: a rollout waiting for
/// traffic would otherwise write one every 5 s.
pub const HOLD_RECORD_EVERY: Duration = Duration::from_secs(60);

/// How many recent actions `GET /rollouts` lists, across routes.
pub const HISTORY: usize = 100;

/// A notification that takes longer than this is given up, logged and counted.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// What starts a rollout over when it changes: the candidate (by name and URL) and
/// its steps. Every other setting applies in place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Identity {
    candidate: String,
    url: String,
    steps: Vec<u8>,
}

impl Identity {
    pub(crate) fn of(config: &Config, rollout: &Rollout) -> Identity {
        let candidate = config.backend(rollout.candidate);
        Identity {
            candidate: candidate.name.clone(),
            url: candidate.url.to_string(),
            steps: rollout.steps.clone(),
        }
    }
}

/// One route's rollout progress, kept across reloads by the registry.
pub(crate) struct RolloutState {
    route: String,
    identity: Identity,
    tracked: Mutex<Tracked>,
    /// Held from a decision to its record, weights swapped in between, so a
    /// person's command and veer's judgement are recorded in the order they were
    /// taken, and never before requests see them. Taken before `tracked`, and
    /// before the reload lock; a reload (which reads `tracked`) never takes it.
    serial: Mutex<()>,
}

/// Where a rollout stands and what it saw when its step began.
struct Tracked {
    progress: Progress,
    /// Read back from `state_file` when veer started, not begun anew.
    resumed: bool,
    /// The `start` record is written at the first look, with the step's counts.
    started: bool,
    step_began: Instant,
    at_step_start: Readings,
    /// The step's "slow" cutoff, fixed once the baseline has enough requests in
    /// the step (see `veer_rollout::latency::cutoff`).
    cutoff: Option<usize>,
    /// Candidate failures at the last judgement: a new one is judged at once.
    failures_seen: u64,
    judged_at: Option<Instant>,
    hold_recorded_at: Option<Instant>,
    /// The last judgement, for `GET /rollouts` and the signal gauges.
    latest: Option<Decision>,
}

/// The running totals a rollout reads, all at one moment.
#[derive(Debug, Clone, Default)]
struct Readings {
    /// Which series they were summed from: a reload that changes the set (a
    /// baseline backend removed, a shadow added) makes the step's counts start
    /// again from that moment rather than subtract unrelated sums.
    members: Vec<usize>,
    baseline: ExchangeCounts,
    candidate: ExchangeCounts,
    shadow: ComparisonCounts,
    noise: Option<ComparisonCounts>,
}

/// What `state_file` holds.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    route: String,
    #[serde(flatten)]
    identity: Identity,
    progress: Progress,
    saved_at: String,
}

impl RolloutState {
    /// The state of a rollout of `route` as `identity`: read back from `state_file`
    /// when it holds this very rollout, else begun anew under `plan`.
    pub(crate) fn new(route: &str, identity: Identity, plan: &Rollout) -> RolloutState {
        let saved = plan
            .state_file
            .as_deref()
            .and_then(|path| read_state(path, route, &identity));
        let resumed = saved.is_some();
        let progress = saved.unwrap_or_else(|| Progress::start(plan));
        RolloutState {
            route: route.to_owned(),
            identity,
            tracked: Mutex::new(Tracked {
                progress,
                resumed,
                started: false,
                step_began: Instant::now(),
                at_step_start: Readings::default(),
                cutoff: None,
                failures_seen: 0,
                judged_at: None,
                hold_recorded_at: None,
                latest: None,
            }),
            serial: Mutex::new(()),
        }
    }

    fn serialised(&self) -> std::sync::MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The candidate's weight now and whether every request is mirrored to it (the
    /// shadow phase, or a pause of it): what a compiled snapshot's split is made
    /// from.
    pub(crate) fn serving(&self) -> (u8, bool) {
        serving(&self.lock().progress)
    }
}

/// What requests see of `progress`: the candidate's weight, and whether every
/// request is mirrored to it.
fn serving(progress: &Progress) -> (u8, bool) {
    let shadow = progress.phase == Phase::Shadow
        || (progress.phase == Phase::Paused && progress.resume_to == Some(Phase::Shadow));
    (progress.weight, shadow)
}

/// Progress saved in `path` for this rollout, if it is there and readable; anything
/// else (another rollout's file, a torn or foreign file) begins anew, logged.
fn read_state(path: &Path, route: &str, identity: &Identity) -> Option<Progress> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(route, path = %path.display(), error = %e, "rollout state unreadable; the rollout begins anew");
            return None;
        }
    };
    match serde_json::from_str::<StateFile>(&text) {
        Ok(saved) if saved.route == route && saved.identity == *identity => Some(saved.progress),
        Ok(_) => {
            tracing::info!(route, path = %path.display(), "rollout state is of another candidate or steps; the rollout begins anew");
            None
        }
        Err(e) => {
            tracing::warn!(route, path = %path.display(), error = %e, "rollout state is not valid; the rollout begins anew");
            None
        }
    }
}

/// The progress a route's `state_file` holds for the rollout `config` describes, if
/// any: what `veer check` compares with the file's split.
pub fn saved_progress(config: &Config, route: &Route) -> Option<Progress> {
    let rollout = route.rollout.as_ref()?;
    let path = rollout.state_file.as_deref()?;
    read_state(path, &route.name, &Identity::of(config, rollout))
}

/// Writes `progress` to `path` whole: to a temporary file first, renamed over the
/// old one, so a crash never leaves half a state behind.
fn save_state(path: &Path, state: &RolloutState, progress: &Progress) {
    let saved = StateFile {
        route: state.route.clone(),
        identity: state.identity.clone(),
        progress: *progress,
        saved_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let write = || -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&saved).map_err(std::io::Error::other)?;
        // A name of its own (not `with_extension`: `a.json` and `a.state` would
        // share one), hidden, in the same folder so the rename is atomic.
        let name = path
            .file_name()
            .map_or("state".into(), |n| n.to_string_lossy());
        let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself is durable once the folder is.
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(folder) => std::fs::File::open(folder)?.sync_all(),
            None => Ok(()),
        }
    };
    if let Err(e) = write() {
        tracing::error!(route = state.route, path = %path.display(), error = %e, "cannot save the rollout state; a restart would begin this rollout anew");
    }
}

/// The split requests see while the candidate (the split's last backend) has
/// `percent`: the candidate that share, the baseline backends the rest in the
/// proportions the file gives them (equal shares if the file gives them none).
pub(crate) fn effective_split(split: &[WeightedBackend], percent: u8) -> Vec<WeightedBackend> {
    let Some((candidate, baseline)) = split.split_last() else {
        return split.to_vec();
    };
    let percent = u64::from(percent.min(100));
    let total: u64 = baseline.iter().map(|b| b.weight).sum();
    let weight_of = |b: &WeightedBackend| if total == 0 { 1 } else { b.weight };
    let total = if total == 0 {
        baseline.len() as u64
    } else {
        total
    };
    let mut effective: Vec<WeightedBackend> = baseline
        .iter()
        .map(|b| WeightedBackend {
            backend: b.backend,
            weight: weight_of(b) * (100 - percent),
        })
        .collect();
    effective.push(WeightedBackend {
        backend: candidate.backend,
        weight: total * percent,
    });
    effective
}

/// A route's rollout as a compiled snapshot holds it: the state, the settings of
/// this generation, and the series the step's counts come from.
#[derive(Clone)]
pub(crate) struct CompiledRollout {
    pub(crate) state: Arc<RolloutState>,
    pub(crate) plan: Rollout,
    /// The candidate's share in the file's split, percent: where a new rollout
    /// starts from, for its record.
    pub(crate) file_weight: u8,
    pub(crate) candidate: Arc<ExchangeSeries>,
    pub(crate) baseline: Vec<Arc<ExchangeSeries>>,
    /// Comparisons of the shadow, when it mirrors to the candidate.
    pub(crate) shadow: Option<Arc<ComparisonSeries>>,
    /// The noise floor's comparisons of the baseline backends, when
    /// `compare.noise_percent` is above 0.
    pub(crate) noise: Vec<Arc<ComparisonSeries>>,
}

impl CompiledRollout {
    fn read(&self) -> Readings {
        let mut baseline = ExchangeCounts::default();
        for series in &self.baseline {
            baseline.add(&series.totals());
        }
        let id = |series: &ExchangeSeries| series as *const ExchangeSeries as usize;
        let mut members: Vec<usize> = self.baseline.iter().map(|s| id(s)).collect();
        members.push(id(&self.candidate));
        members.extend(self.shadow.iter().map(|s| Arc::as_ptr(s) as usize));
        members.extend(self.noise.iter().map(|s| Arc::as_ptr(s) as usize));
        Readings {
            members,
            baseline,
            candidate: self.candidate.totals(),
            shadow: self.shadow.as_ref().map(|s| s.totals()).unwrap_or_default(),
            noise: (!self.noise.is_empty()).then(|| {
                self.noise
                    .iter()
                    .map(|s| s.totals())
                    .fold(ComparisonCounts::default(), |sum, n| sum.plus(&n))
            }),
        }
    }

    /// What the step saw between `then` (its start) and `now`, "slow" meaning above
    /// the step's `cutoff` (fixed here once the baseline has enough requests).
    fn observe(&self, now: &Readings, then: &Readings, cutoff: &mut Option<usize>) -> Observation {
        let baseline = now.baseline.since(&then.baseline);
        let candidate = now.candidate.since(&then.candidate);
        if cutoff.is_none() {
            *cutoff = latency::cutoff(&baseline.latency, self.plan.latency.tail);
        }
        let shadow = now.shadow.since(&then.shadow);
        let noise = now.noise.map(|n| n.since(&then.noise.unwrap_or_default()));
        Observation {
            errors: Arms {
                baseline: baseline.errors(),
                candidate: candidate.errors(),
            },
            slow: latency::slow_above(&baseline.latency, &candidate.latency, *cutoff),
            divergence: shadow.divergence,
            label_flips: shadow.label_flips,
            noise: noise.map(|n| Noise {
                divergence: n.divergence,
                label_flips: n.label_flips,
            }),
        }
    }

    /// Judges the rollout if it is due (or starts it, at its first look), applies
    /// what was decided to its state, and says what to record and whether the
    /// weights changed.
    fn look(&self, now: Instant) -> Option<Applied> {
        let mut tracked = self.state.lock();
        let readings = self.read();
        let mut applied = Applied::default();
        self.ensure_started(&mut tracked, &readings, now, &mut applied);
        if readings.members != tracked.at_step_start.members {
            tracked.at_step_start = readings.clone();
            tracked.cutoff = None;
            tracing::info!(
                route = self.state.route,
                "the rollout's series changed with a reload; the step's counts start again"
            );
        }
        let failures = readings.candidate.failed;
        let due = tracked
            .judged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= JUDGE_EVERY)
            || failures != tracked.failures_seen;
        if !due {
            return applied.worth_carrying_out().then_some(applied);
        }
        tracked.failures_seen = failures;
        tracked.judged_at = Some(now);
        let mut cutoff = tracked.cutoff;
        let seen = self.observe(&readings, &tracked.at_step_start, &mut cutoff);
        tracked.cutoff = cutoff;
        let age = now.saturating_duration_since(tracked.step_began);
        let decision = veer_rollout::judge(&self.plan, &tracked.progress, &seen, age);
        self.apply(&mut tracked, &decision, &readings, now, &mut applied);
        // A settled rollout is judged with no signals: keep the numbers of the
        // verdict that settled it on show.
        if !decision.signals.is_empty() || tracked.latest.is_none() {
            tracked.latest = Some(decision.clone());
        }
        let recorded = match decision.action {
            Action::Hold => {
                let quiet = tracked
                    .hold_recorded_at
                    .is_some_and(|at| now.saturating_duration_since(at) < HOLD_RECORD_EVERY);
                let settled = matches!(
                    tracked.progress.phase,
                    Phase::Promoted | Phase::RolledBack | Phase::Paused
                );
                if !quiet && !settled {
                    tracked.hold_recorded_at = Some(now);
                }
                !quiet && !settled
            }
            _ => true,
        };
        if recorded {
            applied.decisions.push(decision);
        }
        applied.worth_carrying_out().then_some(applied)
    }

    /// Writes the `start` record at the rollout's first look (a person's command
    /// may come first), with the step's counts from then.
    fn ensure_started(
        &self,
        tracked: &mut Tracked,
        readings: &Readings,
        now: Instant,
        applied: &mut Applied,
    ) {
        if tracked.started {
            return;
        }
        tracked.started = true;
        tracked.step_began = now;
        tracked.at_step_start = readings.clone();
        applied.decisions.push(self.start(tracked));
        applied.save = Some(tracked.progress);
    }

    /// A person's command, applied; or why it does not apply now.
    fn command(&self, command: Command) -> Result<Applied, veer_rollout::Refused> {
        let mut tracked = self.state.lock();
        let readings = self.read();
        let now = Instant::now();
        let mut applied = Applied::default();
        self.ensure_started(&mut tracked, &readings, now, &mut applied);
        let mut decision = veer_rollout::command(&self.plan, &tracked.progress, command)?;
        // A person acts on what the last judgement showed: its numbers go on record.
        if decision.signals.is_empty() {
            if let Some(latest) = &tracked.latest {
                decision.signals = latest.signals.clone();
            }
        }
        self.apply(&mut tracked, &decision, &readings, now, &mut applied);
        applied.decisions.push(decision);
        Ok(applied)
    }

    /// Takes `decision`'s progress, restarting the step when it says so; notes in
    /// `applied` what to save and whether the weights requests see have changed.
    fn apply(
        &self,
        tracked: &mut Tracked,
        decision: &Decision,
        readings: &Readings,
        now: Instant,
        applied: &mut Applied,
    ) {
        if decision.new_step {
            tracked.step_began = now;
            tracked.at_step_start = readings.clone();
            tracked.cutoff = None;
            tracked.hold_recorded_at = None;
        }
        if decision.progress == tracked.progress {
            return;
        }
        applied.reweigh |= serving(&decision.progress) != serving(&tracked.progress);
        tracked.progress = decision.progress;
        applied.save = Some(tracked.progress);
    }

    /// Saves `progress` to the state file, if there is one. Called under the serial
    /// lock, not the state's: a slow disk never holds up a scrape or a reload.
    fn save(&self, progress: &Progress) {
        if let Some(path) = &self.plan.state_file {
            save_state(path, &self.state, progress);
        }
    }

    /// The record of a rollout's first look: begun (from the file's weight), or
    /// resumed from its state file.
    fn start(&self, tracked: &Tracked) -> Decision {
        if !tracked.resumed {
            return veer_rollout::begin(&self.plan, self.file_weight);
        }
        let progress = tracked.progress;
        let reason = format!(
            "resumed from {} at {}% ({}); the step's counts and clock start again",
            self.plan
                .state_file
                .as_deref()
                .map_or("the state file".into(), |p| p.display().to_string()),
            progress.weight,
            progress.phase.label()
        );
        Decision {
            action: Action::Start,
            actor: veer_rollout::Actor::Veer,
            from: progress.weight,
            to: progress.weight,
            progress,
            new_step: true,
            reason,
            signals: Vec::new(),
        }
    }

    /// How the rollout stands, for `GET /rollouts`.
    fn status(&self, route: &str, candidate: &str, now: Instant) -> serde_json::Value {
        let tracked = self.state.lock();
        let progress = &tracked.progress;
        serde_json::json!({
            "route": route,
            "candidate": candidate,
            "steps": self.plan.steps,
            "phase": progress.phase.label(),
            "weight": progress.weight,
            "step": progress.step,
            "step_age_seconds": now.saturating_duration_since(tracked.step_began).as_secs_f64(),
            "min_step_seconds": self.plan.min_step.as_secs_f64(),
            "max_step_seconds": self.plan.max_step.as_secs_f64(),
            "signals": tracked.latest.as_ref().map(|d| d.signals.clone()).unwrap_or_default(),
            "reason": tracked.latest.as_ref().map(|d| d.reason.clone()),
        })
    }

    /// The weight, phase and verdicts now, for the rollout gauges.
    fn gauge(&self, route: &str) -> RolloutGauge {
        let tracked = self.state.lock();
        RolloutGauge {
            route: route.to_owned(),
            weight: tracked.progress.weight,
            phase: tracked.progress.phase,
            verdicts: tracked
                .latest
                .iter()
                .flat_map(|d| d.signals.iter())
                .map(|s| (s.signal.label(), s.verdict.label()))
                .collect(),
        }
    }
}

/// What one look or command decided: the progress to save, whether the weights
/// must be swapped, and the decisions to record, in that order.
#[derive(Default)]
struct Applied {
    save: Option<Progress>,
    reweigh: bool,
    decisions: Vec<Decision>,
}

impl Applied {
    fn worth_carrying_out(&self) -> bool {
        self.save.is_some() || self.reweigh || !self.decisions.is_empty()
    }
}

/// One rollout's gauges: `veer_rollout_weight`, `veer_rollout_state` and
/// `veer_rollout_signal`.
#[derive(Debug, Clone)]
pub struct RolloutGauge {
    /// The route.
    pub route: String,
    /// The candidate's weight now, percent.
    pub weight: u8,
    /// Its state.
    pub phase: Phase,
    /// Each signal's verdict at the last judgement, as labels.
    pub verdicts: Vec<(&'static str, &'static str)>,
}

/// Why a person's command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No route of that name has a `[routes.rollout]`: 404.
    #[error("no rollout on route \"{0}\"")]
    NoSuchRollout(String),
    /// The command does not apply to where the rollout stands: 409.
    #[error(transparent)]
    Refused(#[from] veer_rollout::Refused),
    /// Carrying it out failed (it panicked): a bug, not the caller's fault.
    #[error("the command did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
}

/// Where decisions are recorded besides the log: the last [`HISTORY`] of them, and
/// the metric; one per process, shared by every route.
pub(crate) struct DecisionBook {
    history: Mutex<VecDeque<serde_json::Value>>,
    telemetry: Telemetry,
}

/// A decision line to POST to a route's `notify` URL.
pub(crate) struct Notification {
    route: String,
    url: Uri,
    line: String,
}

impl DecisionBook {
    pub(crate) fn new(telemetry: Telemetry) -> DecisionBook {
        DecisionBook {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            telemetry,
        }
    }

    /// Records `decision` of `route` under `generation` everywhere it goes; its
    /// line, and its notification if the route asks for one.
    fn record(
        &self,
        route: &str,
        plan: &Rollout,
        generation: u64,
        decision: &Decision,
    ) -> (serde_json::Value, Option<Notification>) {
        let line = decision_line(route, generation, decision);
        let text = line.to_string();
        let action = decision.action.label();
        let actor = decision.actor.label();
        tracing::info!(
            route,
            action,
            actor,
            from = decision.from,
            to = decision.to,
            phase = decision.progress.phase.label(),
            reason = %decision.reason,
            "rollout decision"
        );
        self.telemetry.record_rollout_decision(route, action, actor);
        if let Some(path) = &plan.decision_log {
            if let Err(e) = append_line(path, &text) {
                tracing::error!(route, path = %path.display(), error = %e, "cannot write the rollout decision log");
            }
        }
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(line.clone());
        }
        let notification = plan.notify.clone().map(|url| Notification {
            route: route.to_owned(),
            url,
            line: text,
        });
        (line, notification)
    }

    /// The recorded actions, oldest first.
    pub(crate) fn history(&self) -> Vec<serde_json::Value> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.iter().cloned().collect()
    }
}

/// One decision-log line: when, which route and generation, then the decision.
fn decision_line(route: &str, generation: u64, decision: &Decision) -> serde_json::Value {
    let mut line = serde_json::json!({
        "at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "route": route,
        "generation": generation,
    });
    if let (Some(line), Ok(serde_json::Value::Object(fields))) =
        (line.as_object_mut(), serde_json::to_value(decision))
    {
        line.extend(fields);
    }
    line
}

fn append_line(path: &PathBuf, line: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Judges every rollout of `routes` for as long as the process runs.
pub async fn drive(routes: crate::Routes) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if !routes.load().has_rollouts() {
            continue;
        }
        let looking = routes.clone();
        match tokio::task::spawn_blocking(move || looking.look_at_rollouts()).await {
            Ok(notifications) => {
                for notification in notifications {
                    tokio::spawn(notify(notification, routes.telemetry().clone()));
                }
            }
            Err(panicked) => tracing::error!(error = %panicked, "judging the rollouts failed"),
        }
    }
}

/// POSTs one decision line; a failure is logged and counted, nothing else.
async fn notify(notification: Notification, telemetry: Telemetry) {
    let Notification { route, url, line } = notification;
    let failed = |problem: String| {
        tracing::warn!(route, %url, problem, "rollout notification not delivered");
        telemetry.record_notify_failure(&route);
    };
    let request = Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(line)));
    let request = match request {
        Ok(request) => request,
        Err(e) => return failed(e.to_string()),
    };
    let trust = BackendTls::default();
    let tls = match TlsFiles::read(&trust).and_then(|files| tls::client_config(&trust, &files)) {
        Ok(tls) => tls,
        Err(e) => return failed(e.to_string()),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let failure = match tokio::time::timeout(NOTIFY_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => None,
        Ok(Ok(response)) => Some(format!("answered {}", response.status())),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {NOTIFY_TIMEOUT:?}")),
    };
    if let Some(problem) = failure {
        failed(problem);
    }
}

impl crate::Routes {
    /// Looks at every rollout of the serving snapshot: judges those due, records
    /// what was decided, and swaps the weights in when they changed. Runs on a
    /// blocking thread (it writes files, and a swap recompiles).
    fn look_at_rollouts(&self) -> Vec<Notification> {
        let snapshot = self.load();
        let now = Instant::now();
        let mut notifications = Vec::new();
        for (route, rollout) in snapshot.rollouts() {
            let _serial = rollout.state.serialised();
            let Some(applied) = rollout.look(now) else {
                continue;
            };
            let (_, notes) = self.carry_out(route, rollout, snapshot.generation(), &applied);
            notifications.extend(notes);
        }
        notifications
    }

    /// Saves the progress `applied` reached, swaps in the weights it moved (so a
    /// decision is on record only once requests see it), then records its decisions; their lines and
    /// notifications. The caller holds the rollout's serial lock.
    fn carry_out(
        &self,
        route: &str,
        rollout: &CompiledRollout,
        generation: u64,
        applied: &Applied,
    ) -> (Vec<serde_json::Value>, Vec<Notification>) {
        if let Some(progress) = &applied.save {
            rollout.save(progress);
        }
        if applied.reweigh {
            self.reweigh();
        }
        let mut lines = Vec::new();
        let mut notifications = Vec::new();
        for decision in &applied.decisions {
            let (line, notification) =
                self.decisions()
                    .record(route, &rollout.plan, generation, decision);
            lines.push(line);
            notifications.extend(notification);
        }
        (lines, notifications)
    }

    /// Carries out a person's `command` on `route`'s rollout, recorded with actor
    /// `operator`; the decision line, or why not.
    pub async fn rollout_command(
        &self,
        route: &str,
        command: Command,
    ) -> Result<serde_json::Value, RolloutError> {
        let routes = self.clone();
        let route = route.to_owned();
        let outcome = tokio::task::spawn_blocking(move || {
            let snapshot = routes.load();
            let Some((name, rollout)) = snapshot.rollouts().find(|(name, _)| *name == route) else {
                return Err(RolloutError::NoSuchRollout(route));
            };
            let _serial = rollout.state.serialised();
            let applied = rollout.command(command)?;
            Ok(routes.carry_out(name, rollout, snapshot.generation(), &applied))
        })
        .await
        .map_err(RolloutError::Interrupted)?;
        let (mut lines, notifications) = outcome?;
        for notification in notifications {
            tokio::spawn(notify(notification, self.telemetry().clone()));
        }
        Ok(lines.pop().unwrap_or_default())
    }

    /// Every rollout as it stands, and the last recorded actions: `GET /rollouts`.
    pub fn rollouts(&self) -> serde_json::Value {
        let snapshot = self.load();
        let now = Instant::now();
        let config = snapshot.config();
        let rollouts: Vec<serde_json::Value> = snapshot
            .rollouts()
            .map(|(route, rollout)| {
                let candidate = &config.backend(rollout.plan.candidate).name;
                rollout.status(route, candidate, now)
            })
            .collect();
        serde_json::json!({
            "generation": snapshot.generation(),
            "rollouts": rollouts,
            "history": self.decisions().history(),
        })
    }

    /// Each rollout's gauges now.
    pub fn rollout_gauges(&self) -> Vec<RolloutGauge> {
        self.load()
            .rollouts()
            .map(|(route, rollout)| rollout.gauge(route))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veer_config::BackendId;

    fn split(weights: &[u64]) -> Vec<WeightedBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| WeightedBackend {
                backend: BackendId(i),
                weight,
            })
            .collect()
    }

    fn shares(split: &[WeightedBackend]) -> Vec<f64> {
        let total: u64 = split.iter().map(|s| s.weight).sum();
        split
            .iter()
            .map(|s| s.weight as f64 * 100.0 / total as f64)
            .collect()
    }

    #[test]
    fn the_candidate_gets_its_step_and_the_baselines_the_rest_in_proportion() {
        assert_eq!(shares(&effective_split(&split(&[95, 5]), 25)), [75.0, 25.0]);
        assert_eq!(
            shares(&effective_split(&split(&[3, 1, 50]), 20)),
            [60.0, 20.0, 20.0]
        );
        assert_eq!(
            shares(&effective_split(&split(&[95, 5]), 100)),
            [0.0, 100.0]
        );
        assert_eq!(shares(&effective_split(&split(&[95, 5]), 0)), [100.0, 0.0]);
        // A file that gives the baselines nothing: they share the rest equally.
        assert_eq!(
            shares(&effective_split(&split(&[0, 0, 100]), 50)),
            [25.0, 25.0, 50.0]
        );
    }
}
