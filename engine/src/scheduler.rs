//! The scheduler: runs a [`Plan`] as a DAG of stage processes. Ready stages are resolved from the cache
//! or launched, up to `-j` at once and each with the whole devices it asks for; a failure stops its
//! dependents (and, without `--keep-going`, the launching of anything new); Ctrl-C stops running stages
//! and records no partial artifact. Early cut-off falls out of content addressing: a rerun that produces
//! the same bytes gives dependents the same fingerprint, so they stay cached.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn};

use yiflow_dsl::ExecutorDecl;

use crate::local_executor::{ExitOutcome, Programs, run_local};
use crate::stage_key::{Prepared, hash_files, prepare};
use crate::stage_run::{Job, RunSetup, StageRun, commit, prepare_run};
use crate::{
    DevicePool, EngineError, JobEvent, Manifest, Plan, Reporter, RunState, Slurm, SlurmExecutor,
    StageRecord, Workspace, local_only,
};

/// What `yiflow run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stages at once.
    pub jobs: usize,
    /// Stage indices selected with `--only` (with their upstream); empty = all.
    pub only: Vec<usize>,
    /// Stage indices to run even when cached.
    pub force: Vec<usize>,
    pub keep_going: bool,
}

/// Messages to a running scheduler (from watch mode).
#[derive(Debug)]
pub enum Control {
    /// The recipe or a file changed: stop stages whose fingerprint is no longer wanted, launch nothing
    /// new, and return so that the caller can run the new plan.
    Replan(Arc<Plan>),
}

/// A stage that failed, for the summary.
#[derive(Debug, Clone)]
pub struct Failure {
    pub stage: String,
    pub detail: String,
    pub log: Option<String>,
}

/// How a run went.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub ran: Vec<String>,
    pub cached: Vec<String>,
    pub failed: Vec<Failure>,
    pub skipped: Vec<String>,
    pub cancelled: Vec<String>,
    pub elapsed: Duration,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Stopped early for a replan (watch mode).
    pub replan: Option<Arc<Plan>>,
}

impl RunSummary {
    /// 0 all succeeded, 1 a stage failed, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else {
            i32::from(!self.failed.is_empty() || !self.skipped.is_empty())
        }
    }

    /// One line: `3 ran, 7 cached, 1 failed in 2.3s`.
    pub fn line(&self) -> String {
        let mut parts = vec![
            format!("{} ran", self.ran.len()),
            format!("{} cached", self.cached.len()),
        ];
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("{} not run", self.skipped.len()));
        }
        if !self.cancelled.is_empty() {
            parts.push(format!("{} stopped", self.cancelled.len()));
        }
        format!(
            "{} in {}",
            parts.join(", "),
            crate::format_duration(self.elapsed)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Waiting for inputs.
    Waiting,
    /// Key being computed.
    Preparing,
    /// Waiting for a slot or devices.
    Queued,
    Running,
    /// Artifact in hand.
    Done(String),
    Failed,
    Skipped,
    Cancelled,
}

/// A stage run in flight.
struct Attempt {
    run_dir: PathBuf,
    log: String,
    started_at: u64,
    started: Instant,
    devices: Vec<String>,
    cancel: CancellationToken,
    /// Content hash of the stage's previous artifact, to say when a rerun changed nothing.
    previous: Option<String>,
    /// Runs as a Slurm job (and so counts against neither `-j` nor the device pool).
    slurm: bool,
}

/// Where Slurm stages' tasks send their job events.
type JobEvents = mpsc::UnboundedSender<(usize, JobEvent)>;

enum Event {
    Prepared(usize, Result<Prepared, EngineError>),
    Exited(usize, std::io::Result<ExitOutcome>),
    Committed(usize, Result<Manifest, EngineError>),
}

/// Runs one plan against one workspace.
pub struct Scheduler {
    plan: Arc<Plan>,
    ws: Arc<Workspace>,
    programs: Programs,
    reporter: Arc<Reporter>,
    pool: DevicePool,
    opts: RunOptions,

    state: Vec<State>,
    selected: Vec<bool>,
    prepared: Vec<Option<Prepared>>,
    attempts: Vec<u32>,
    restarts: Vec<u32>,
    running: HashMap<usize, Attempt>,
    queue: Vec<usize>,
    tasks: JoinSet<Event>,
    /// The Slurm executor, when a selected stage runs under Slurm.
    slurm: Option<Arc<SlurmExecutor>>,
    /// Job events of Slurm stages, by stage index.
    job_events: (JobEvents, mpsc::UnboundedReceiver<(usize, JobEvent)>),
    /// The Slurm job id of each stage's current run.
    job_ids: Vec<Option<String>>,
    draining: bool,
    summary: RunSummary,
}

/// How often a stage is restarted because a declared file changed while it ran.
const MAX_RESTARTS: u32 = 3;

impl Scheduler {
    pub fn new(
        plan: Arc<Plan>,
        ws: Arc<Workspace>,
        programs: Programs,
        reporter: Arc<Reporter>,
        pool: DevicePool,
        mut opts: RunOptions,
    ) -> Result<Self, EngineError> {
        let n = plan.stages.len();
        let selected = if opts.only.is_empty() {
            vec![true; n]
        } else {
            let keep = plan.with_upstream(&opts.only);
            (0..n).map(|i| keep.contains(&i)).collect()
        };
        let mut uses_slurm = false;
        for stage in plan.stages.iter().filter(|s| selected[s.index]) {
            if matches!(stage.executor, ExecutorDecl::Slurm(_)) {
                // Slurm gives a job its GPUs; the local pool is not asked.
                uses_slurm = true;
                continue;
            }
            pool.check(&stage.name, stage.decl.gpus)?;
            if stage.decl.gpus > 0 && pool.cpu_fallback() {
                reporter.warn(&format!(
                    "no CUDA device found: stage `{}` (gpus {}) runs on CPU",
                    stage.name, stage.decl.gpus
                ));
            }
        }
        let slurm = if uses_slurm {
            let slurm = Slurm::new();
            let version = slurm.version()?;
            debug!(%version, "slurm executor");
            if let Some(why) = local_only(ws.root()) {
                reporter.warn(&format!(
                    "the workspace {} does not look shared with the cluster's nodes: {why}; Slurm jobs \
                     on another node would not find their inputs or write their outputs there (set \
                     `workspace` to a folder on a shared filesystem)",
                    ws.root().display()
                ));
            }
            Some(Arc::new(SlurmExecutor::new(slurm)))
        } else {
            None
        };
        opts.jobs = opts.jobs.max(1);
        Ok(Self {
            slurm,
            job_events: mpsc::unbounded_channel(),
            job_ids: vec![None; n],
            state: vec![State::Waiting; n],
            selected,
            prepared: vec![None; n],
            attempts: vec![0; n],
            restarts: vec![0; n],
            running: HashMap::new(),
            queue: Vec::new(),
            tasks: JoinSet::new(),
            draining: false,
            summary: RunSummary::default(),
            plan,
            ws,
            programs,
            reporter,
            pool,
            opts,
        })
    }

    /// Runs until every selected stage is done, failed or skipped, or until cancelled or replanned.
    pub async fn run(
        mut self,
        cancel: CancellationToken,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> RunSummary {
        let start = Instant::now();
        for &i in &self.plan.order.clone() {
            if self.selected[i] && self.plan.stages[i].inputs.is_empty() {
                self.spawn_prepare(i);
            }
        }
        let mut control_open = true;
        loop {
            self.launch_queued();
            if self.tasks.is_empty() {
                break;
            }
            let event = tokio::select! {
                // Job events first: one sent before its stage ended is handled before the end.
                biased;
                () = cancel.cancelled(), if !self.summary.interrupted => {
                    self.summary.interrupted = true;
                    self.draining = true;
                    for attempt in self.running.values() {
                        attempt.cancel.cancel();
                    }
                    continue;
                }
                message = control.recv(), if control_open => {
                    match message {
                        Some(Control::Replan(plan)) => self.replan(plan),
                        None => control_open = false,
                    }
                    continue;
                }
                Some((i, event)) = self.job_events.1.recv() => {
                    self.on_job_event(i, event);
                    continue;
                }
                Some(joined) = self.tasks.join_next() => match joined {
                    Ok(event) => event,
                    Err(e) => {
                        warn!("a scheduler task panicked: {e}");
                        continue;
                    }
                },
            };
            match event {
                Event::Prepared(i, result) => self.on_prepared(i, result),
                Event::Exited(i, result) => self.on_exited(i, result),
                Event::Committed(i, result) => self.on_committed(i, result),
            }
        }
        for i in 0..self.state.len() {
            if self.selected[i] && matches!(self.state[i], State::Waiting | State::Queued) {
                self.state[i] = State::Skipped;
                if self.summary.replan.is_none() && !self.summary.interrupted {
                    self.summary.skipped.push(self.plan.stages[i].name.clone());
                }
            }
        }
        if let Err(e) = self.ws.index().flush() {
            self.reporter
                .warn(&format!("failed to flush the index: {e}"));
        }
        self.summary.elapsed = start.elapsed();
        self.summary
    }

    fn name(&self, i: usize) -> &str {
        &self.plan.stages[i].name
    }

    fn spawn_prepare(&mut self, i: usize) {
        self.state[i] = State::Preparing;
        let stage = &self.plan.stages[i];
        let upstream: BTreeMap<String, String> = stage
            .inputs
            .iter()
            .map(|&u| {
                let State::Done(hash) = &self.state[u] else {
                    unreachable!("inputs are done")
                };
                (self.plan.stages[u].name.clone(), hash.clone())
            })
            .collect();
        let force = self.opts.force.contains(&i);
        let plan = self.plan.clone();
        let ws = self.ws.clone();
        self.tasks.spawn_blocking(move || {
            let stage = &plan.stages[i];
            Event::Prepared(
                i,
                prepare(&plan, stage, upstream, ws.index(), ws.artifacts(), force),
            )
        });
    }

    fn on_prepared(&mut self, i: usize, result: Result<Prepared, EngineError>) {
        let prepared = match result {
            Ok(p) => p,
            Err(e) => {
                self.fail(i, &e.to_string(), None);
                return;
            }
        };
        if let Some(manifest) = &prepared.cached {
            let hash = manifest.content_hash.clone();
            self.record_cached(i, &prepared, manifest);
            self.reporter.cached(self.name(i));
            self.summary.cached.push(self.name(i).to_owned());
            self.prepared[i] = Some(prepared);
            self.done(i, hash);
            return;
        }
        if let Some(note) = &prepared.note {
            self.reporter
                .warn(&format!("stage `{}` reruns: {note}", self.name(i)));
        }
        self.prepared[i] = Some(prepared);
        if self.draining {
            self.state[i] = State::Skipped;
            self.summary.skipped.push(self.name(i).to_owned());
            return;
        }
        self.state[i] = State::Queued;
        self.queue.push(i);
    }

    fn record_cached(&self, i: usize, prepared: &Prepared, manifest: &Manifest) {
        let index = self.ws.index();
        let recipe = &self.plan.recipe.name;
        let name = self.name(i);
        let unchanged = matches!(
            index.stage_record(recipe, name),
            Ok(Some(r)) if r.fingerprint == prepared.fingerprint
                && matches!(r.state, RunState::Succeeded | RunState::Cached)
        );
        if unchanged {
            return;
        }
        let record = StageRecord {
            recipe: recipe.clone(),
            stage: name.to_owned(),
            state: RunState::Cached,
            fingerprint: prepared.fingerprint.clone(),
            key: serde_json::to_value(&prepared.key).unwrap_or_default(),
            content_hash: Some(manifest.content_hash.clone()),
            started_at: manifest.started_at,
            duration_ms: manifest.duration_ms,
            log: manifest.log.clone(),
            detail: None,
            job_id: None,
        };
        if let Err(e) = index.put_stage_record(&record) {
            self.reporter
                .warn(&format!("failed to record stage `{name}`: {e}"));
        }
    }

    /// Launches queued stages while slots and devices allow, upstream-first.
    fn launch_queued(&mut self) {
        if self.draining {
            return;
        }
        let mut k = 0;
        while k < self.queue.len() {
            let i = self.queue[k];
            if matches!(self.plan.stages[i].executor, ExecutorDecl::Slurm(_)) {
                // Slurm queues the job itself: submitted at once, whatever `-j` says.
                self.queue.remove(k);
                self.launch(i, Vec::new());
                continue;
            }
            let local = self.running.values().filter(|a| !a.slurm).count();
            if local >= self.opts.jobs {
                k += 1;
                continue;
            }
            match self.pool.take(self.plan.stages[i].decl.gpus) {
                Some(devices) => {
                    self.queue.remove(k);
                    self.launch(i, devices);
                }
                None => k += 1,
            }
        }
    }

    fn launch(&mut self, i: usize, devices: Vec<String>) {
        let stage = &self.plan.stages[i];
        let prepared = self.prepared[i].as_ref().expect("prepared before queued");
        let _span = info_span!("stage", stage = %stage.name).entered();
        let inputs = stage
            .inputs
            .iter()
            .map(|&u| {
                let State::Done(hash) = &self.state[u] else {
                    unreachable!("inputs are done")
                };
                (
                    self.plan.stages[u].name.clone(),
                    self.ws.artifacts().path(hash),
                )
            })
            .collect();
        let result = prepare_run(&RunSetup {
            ws: &self.ws,
            plan: &self.plan,
            programs: &self.programs,
            stage,
            prepared,
            inputs,
            devices: &devices,
            // `--force` trains from scratch; retries within this run still resume.
            fresh_training: self.attempts[i] == 0 && self.opts.force.contains(&i),
        });
        let StageRun {
            run_dir,
            log,
            started_at,
            job,
        } = match result {
            Ok(r) => r,
            Err(e) => {
                self.pool.give_back(devices);
                self.fail(i, &e.to_string(), None);
                return;
            }
        };
        self.attempts[i] += 1;
        self.job_ids[i] = None;
        let previous = self
            .ws
            .index()
            .stage_record(&self.plan.recipe.name, &stage.name)
            .ok()
            .flatten()
            .and_then(|r| r.content_hash);
        self.record(i, RunState::Running, started_at, 0, Some(&log), None, None);
        let slurm = matches!(job, Job::Slurm(_));
        let detail = if slurm {
            "slurm".to_owned()
        } else {
            devices.join(",")
        };
        self.reporter.started(&stage.name, &detail);
        debug!(stage = %stage.name, "launching");
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        match job {
            Job::Local(spec) => {
                let programs = self.programs.clone();
                self.tasks.spawn(async move {
                    let outcome = run_local(&programs, &spec, &token).await;
                    Event::Exited(i, outcome)
                });
            }
            Job::Slurm(job) => {
                let executor = self.slurm.clone().expect("a Slurm stage has an executor");
                let events = self.job_events.0.clone();
                self.tasks.spawn(async move {
                    let report = move |event| {
                        // The scheduler outlives its tasks; a send fails only while it shuts down.
                        let _ = events.send((i, event));
                    };
                    let outcome = executor.run(*job, report, &token).await;
                    Event::Exited(i, Ok(outcome))
                });
            }
        }
        self.state[i] = State::Running;
        self.running.insert(
            i,
            Attempt {
                run_dir,
                log,
                started_at,
                started: Instant::now(),
                devices,
                cancel,
                previous,
                slurm,
            },
        );
    }

    /// What a Slurm stage's job did: its id and state go into the index (for `yiflow status`).
    fn on_job_event(&mut self, i: usize, event: JobEvent) {
        let Some(attempt) = self.running.get(&i) else {
            return;
        };
        let (started_at, log) = (attempt.started_at, attempt.log.clone());
        let name = self.name(i).to_owned();
        let detail = match event {
            JobEvent::Submitted { job, attached } => {
                self.job_ids[i] = Some(job.to_string());
                self.reporter.submitted(&name, &job.to_string(), attached);
                if attached {
                    format!("slurm job {job} re-attached")
                } else {
                    format!("slurm job {job} submitted")
                }
            }
            JobEvent::State { job, state } => {
                let state = state.to_string();
                self.reporter.job_state(&name, &job.to_string(), &state);
                format!("slurm job {job} {state}")
            }
            JobEvent::Resubmitting { job, reason } => {
                self.reporter.line(&format!(
                    "retry   {name}: slurm job {job}: {reason}; submitting it again"
                ));
                format!("slurm job {job}: {reason}; submitting it again")
            }
        };
        self.record(
            i,
            RunState::Running,
            started_at,
            0,
            Some(&log),
            Some(&detail),
            None,
        );
    }
    fn on_exited(&mut self, i: usize, result: std::io::Result<ExitOutcome>) {
        let outcome = match result {
            Ok(o) => o,
            Err(e) => ExitOutcome::Failed {
                detail: format!("failed to start: {e}"),
                retry: false,
            },
        };
        match outcome {
            ExitOutcome::Success => {
                let attempt = self.running.get(&i).expect("a running stage");
                let plan = self.plan.clone();
                let ws = self.ws.clone();
                let prepared = self.prepared[i].clone().expect("prepared");
                let out = attempt.run_dir.join("out");
                let (log, started_at, took) = (
                    attempt.log.clone(),
                    attempt.started_at,
                    attempt.started.elapsed(),
                );
                self.tasks.spawn_blocking(move || {
                    Event::Committed(
                        i,
                        commit(&plan, i, &ws, &prepared, &out, log, started_at, took),
                    )
                });
            }
            ExitOutcome::Cancelled => {
                let attempt = self.finish_attempt(i);
                self.record(
                    i,
                    RunState::Cancelled,
                    attempt.started_at,
                    attempt.started.elapsed().as_millis() as u64,
                    Some(&attempt.log),
                    Some("stopped"),
                    None,
                );
                self.reporter.cancelled(self.name(i));
                self.state[i] = State::Cancelled;
                self.summary.cancelled.push(self.name(i).to_owned());
            }
            ExitOutcome::Failed { detail, retry } => {
                let attempt = self.finish_attempt(i);
                let retries = self.plan.stages[i].decl.retries;
                let took = attempt.started.elapsed().as_millis() as u64;
                self.record(
                    i,
                    RunState::Failed,
                    attempt.started_at,
                    took,
                    Some(&attempt.log),
                    Some(&detail),
                    None,
                );
                if (retry || self.attempts[i] <= retries) && !self.draining {
                    self.reporter.retrying(
                        self.name(i),
                        &detail,
                        self.attempts[i] + 1,
                        retries + 1,
                    );
                    self.state[i] = State::Queued;
                    self.queue.insert(0, i);
                } else {
                    let log = self.ws.root().join(&attempt.log).display().to_string();
                    self.fail(i, &detail, Some(log));
                }
            }
        }
    }

    fn on_committed(&mut self, i: usize, result: Result<Manifest, EngineError>) {
        let attempt = self.finish_attempt(i);
        match result {
            Ok(manifest) => {
                let took = attempt.started.elapsed();
                self.record(
                    i,
                    RunState::Succeeded,
                    attempt.started_at,
                    took.as_millis() as u64,
                    Some(&attempt.log),
                    None,
                    Some(manifest.content_hash.clone()),
                );
                let same = attempt.previous.as_deref() == Some(manifest.content_hash.as_str());
                let note = if same { " - output unchanged" } else { "" };
                self.reporter.ran(self.name(i), took, note);
                self.summary.ran.push(self.name(i).to_owned());
                self.done(i, manifest.content_hash);
            }
            Err(EngineError::FileChanged { path }) if self.restarts[i] < MAX_RESTARTS => {
                self.restarts[i] += 1;
                self.record(
                    i,
                    RunState::Stale,
                    attempt.started_at,
                    0,
                    Some(&attempt.log),
                    Some(&format!("{path} changed while it ran")),
                    None,
                );
                self.reporter.retrying(
                    self.name(i),
                    &format!("`{path}` changed while it ran; result discarded"),
                    self.restarts[i] + 1,
                    MAX_RESTARTS + 1,
                );
                self.attempts[i] = self.attempts[i].saturating_sub(1);
                self.spawn_prepare_again(i);
            }
            Err(e) => {
                let state = if matches!(e, EngineError::FileChanged { .. }) {
                    RunState::Stale
                } else {
                    RunState::Failed
                };
                self.record(
                    i,
                    state,
                    attempt.started_at,
                    0,
                    Some(&attempt.log),
                    Some(&e.to_string()),
                    None,
                );
                self.fail(i, &e.to_string(), None);
            }
        }
    }

    fn spawn_prepare_again(&mut self, i: usize) {
        self.prepared[i] = None;
        self.spawn_prepare(i);
    }

    /// Ends the bookkeeping of a finished attempt: devices back, run folder removed.
    fn finish_attempt(&mut self, i: usize) -> Attempt {
        let attempt = self.running.remove(&i).expect("a running stage");
        self.pool.give_back(attempt.devices.clone());
        if attempt.run_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&attempt.run_dir)
        {
            debug!("could not remove {}: {e}", attempt.run_dir.display());
        }
        attempt
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        i: usize,
        state: RunState,
        started_at: u64,
        duration_ms: u64,
        log: Option<&str>,
        detail: Option<&str>,
        content_hash: Option<String>,
    ) {
        let Some(prepared) = &self.prepared[i] else {
            return;
        };
        let content_hash = content_hash.or_else(|| match &self.state[i] {
            State::Done(h) => Some(h.clone()),
            _ => None,
        });
        let record = StageRecord {
            recipe: self.plan.recipe.name.clone(),
            stage: self.name(i).to_owned(),
            state,
            fingerprint: prepared.fingerprint.clone(),
            key: serde_json::to_value(&prepared.key).unwrap_or_default(),
            content_hash,
            started_at,
            duration_ms,
            log: log.map(str::to_owned),
            detail: detail.map(str::to_owned),
            job_id: self.job_ids[i].clone(),
        };
        if let Err(e) = self.ws.index().put_stage_record(&record) {
            self.reporter
                .warn(&format!("failed to record stage `{}`: {e}", self.name(i)));
        }
    }

    fn done(&mut self, i: usize, hash: String) {
        self.state[i] = State::Done(hash);
        for d in self.plan.stages[i].dependents.clone() {
            if !self.selected[d] || self.state[d] != State::Waiting {
                continue;
            }
            let ready = self.plan.stages[d]
                .inputs
                .iter()
                .all(|&u| matches!(self.state[u], State::Done(_)));
            if ready && !self.draining {
                self.spawn_prepare(d);
            }
        }
    }

    fn fail(&mut self, i: usize, detail: &str, log: Option<String>) {
        self.reporter.failed(self.name(i), detail, log.as_deref());
        self.state[i] = State::Failed;
        self.summary.failed.push(Failure {
            stage: self.name(i).to_owned(),
            detail: detail.to_owned(),
            log,
        });
        let downstream = self.plan.with_downstream(i);
        for d in downstream.into_iter().filter(|&d| d != i) {
            if self.selected[d] && self.state[d] == State::Waiting {
                self.state[d] = State::Skipped;
                self.reporter
                    .skipped(self.name(d), &format!("`{}` failed", self.name(i)));
                self.summary.skipped.push(self.name(d).to_owned());
            }
        }
        if !self.opts.keep_going && !self.draining {
            self.draining = true;
            if !self.running.is_empty() {
                self.reporter.line("stopping: waiting for running stages to finish (use --keep-going to go on with other branches)");
            }
        }
    }

    /// Watch mode: cancel running stages whose fingerprint the new plan does not want, stop launching.
    fn replan(&mut self, plan: Arc<Plan>) {
        self.draining = true;
        for (&i, attempt) in &self.running {
            let old = self.prepared[i].as_ref().expect("prepared");
            let keep = plan.stage(&self.plan.stages[i].name).is_some_and(|stage| {
                let mut key = old.key.clone();
                stage.kind.kind().clone_into(&mut key.kind);
                key.version = stage.kind.version();
                key.params = stage.params.clone();
                key.seed = plan.recipe.seed;
                let inputs: Vec<&str> = stage
                    .inputs
                    .iter()
                    .map(|&u| plan.stages[u].name.as_str())
                    .collect();
                let same_inputs = inputs.len() == key.upstream.len()
                    && inputs.iter().all(|n| key.upstream.contains_key(*n));
                let files = hash_files(self.ws.index(), &plan.recipe.dir, stage).ok();
                same_inputs
                    && files.is_some_and(|f| f == key.files)
                    && key.fingerprint() == old.fingerprint
            });
            if !keep {
                attempt.cancel.cancel();
            }
        }
        self.summary.replan = Some(plan);
    }
}
