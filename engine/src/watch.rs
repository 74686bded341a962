//! Watch mode (`yiflow run --watch`): run, then keep watching the recipe's folder; on an edit of the
//! recipe or of a declared file, re-plan, stop the running stages whose fingerprint changed, and run
//! exactly what changed and what depends on it. An edit that makes the recipe invalid prints the
//! diagnostics and keeps watching.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Control, DevicePool, EngineError, Plan, Programs, Registry, Reporter, RunOptions, RunSummary,
    Scheduler, Workspace, load_plan,
};

/// How the scheduler is configured for each run of a watch session, by stage name (indices change
/// when the recipe is edited).
#[derive(Debug, Clone, Default)]
pub struct NamedOptions {
    pub jobs: usize,
    pub only: Vec<String>,
    pub force: Vec<String>,
    pub keep_going: bool,
}

impl NamedOptions {
    /// Resolves the stage names against a plan; unknown names are dropped (they were checked at start).
    pub fn resolve(&self, plan: &Plan) -> RunOptions {
        let find = |names: &[String]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|n| plan.stage(n).map(|s| s.index))
                .collect()
        };
        RunOptions {
            jobs: self.jobs,
            only: find(&self.only),
            force: find(&self.force),
            keep_going: self.keep_going,
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Runs `plan`, then re-plans and reruns on every relevant change until `cancel` fires.
pub async fn watch(
    recipe_path: &Path,
    registry: &Registry,
    mut plan: Arc<Plan>,
    ws: Arc<Workspace>,
    programs: Programs,
    reporter: Arc<Reporter>,
    opts: NamedOptions,
    cancel: CancellationToken,
) -> Result<i32, EngineError> {
    let (tx, mut changes) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(
        Duration::from_millis(200),
        None,
        move |result: DebounceEventResult| {
            if let Ok(events) = result {
                let paths: Vec<PathBuf> = events.into_iter().flat_map(|e| e.event.paths).collect();
                let _ = tx.send(paths);
            }
        },
    )
    .map_err(|e| {
        EngineError::io(
            "watch",
            &plan.recipe.dir,
            std::io::Error::other(e.to_string()),
        )
    })?;
    debouncer
        .watch(&plan.recipe.dir, RecursiveMode::Recursive)
        .map_err(|e| {
            EngineError::io(
                "watch",
                &plan.recipe.dir,
                std::io::Error::other(e.to_string()),
            )
        })?;
    let workspace_dir = ws.root().to_path_buf();
    let relevant = |paths: &[PathBuf]| {
        paths.iter().any(|p| {
            !p.starts_with(&workspace_dir)
                && !p
                    .components()
                    .any(|c| matches!(c.as_os_str().to_str(), Some(".git" | "target")))
        })
    };

    loop {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let pool = DevicePool::new(&plan.recipe.devices)?;
        let scheduler = Scheduler::new(
            plan.clone(),
            ws.clone(),
            programs.clone(),
            reporter.clone(),
            pool,
            opts.resolve(&plan),
        )?;
        let run_cancel = cancel.child_token();
        let mut running = tokio::spawn(scheduler.run(run_cancel, control_rx));
        // While the run goes on, feed it new plans; once it ends, wait for the next change.
        let summary: RunSummary = loop {
            tokio::select! {
                joined = &mut running => break joined.unwrap_or_default(),
                Some(paths) = changes.recv() => {
                    if !relevant(&paths) { continue; }
                    if let Some(new_plan) = reload(recipe_path, registry, &reporter) {
                        let _ = control_tx.send(Control::Replan(Arc::new(new_plan)));
                    }
                }
            }
        };
        if summary.interrupted {
            reporter.line(&summary.line());
            return Ok(130);
        }
        if let Some(new_plan) = summary.replan.clone() {
            reporter.line(&format!("change detected: {}; re-planning", summary.line()));
            plan = new_plan;
            continue;
        }
        reporter.line(&summary.line());
        let last = summary.exit_code();
        reporter.line("watching for changes (Ctrl-C to stop)");
        // Idle: wait for a change that yields a valid plan.
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(last),
                Some(paths) = changes.recv() => {
                    if !relevant(&paths) { continue; }
                    if let Some(new_plan) = reload(recipe_path, registry, &reporter) {
                        plan = Arc::new(new_plan);
                        reporter.line("change detected: re-planning");
                        break;
                    }
                }
            }
        }
    }
}

fn reload(recipe_path: &Path, registry: &Registry, reporter: &Reporter) -> Option<Plan> {
    match load_plan(recipe_path, registry) {
        Ok(plan) => Some(plan),
        Err(error) => {
            reporter.line(&format!("{:?}", miette::Report::new(error)));
            reporter.line("the recipe is invalid: fix it and save; still watching");
            None
        }
    }
}
