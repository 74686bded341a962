//! One function per subcommand: load the recipe, call the engine, print, return the exit status.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use miette::Report;
use tokio_util::sync::CancellationToken;
use yiflow_dsl::did_you_mean;
use yiflow_engine::{
    Access, DevicePool, NamedOptions, Plan, Programs, Receipt, Reporter, RunState, Scheduler,
    StageIo, Status, Workspace, assess, format_duration, load_plan, receipt_key,
};

use crate::cli::{Command, GraphFormat, PlanFormat};

const OK: i32 = 0;
const FAILED: i32 = 1;
const INVALID: i32 = 2;

pub fn dispatch(command: Command) -> i32 {
    match command {
        Command::Check { recipe } => check(&recipe),
        Command::Plan {
            recipe,
            explain,
            format,
        } => plan(&recipe, explain, format),
        Command::Run {
            recipe,
            jobs,
            only,
            force,
            keep_going,
            watch,
        } => {
            let opts = NamedOptions {
                jobs: jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
                only,
                force,
                keep_going,
            };
            run(&recipe, opts, watch)
        }
        Command::Graph { recipe, format } => graph(&recipe, format),
        Command::Status { recipe } => status(&recipe),
        Command::Log { recipe, stage } => log(&recipe, &stage),
        Command::Gc { recipe, dry_run } => gc(&recipe, dry_run),
        Command::ExecStage | Command::Reap => unreachable!("handled in main"),
    }
}

fn load(path: &Path) -> Result<Plan, i32> {
    load_plan(path, &yiflow_stages::registry()).map_err(|e| {
        eprintln!("{:?}", Report::new(e));
        INVALID
    })
}

fn open(plan: &Plan, access: Access, command: &str) -> Result<Workspace, i32> {
    Workspace::open(&plan.recipe.workspace_dir(), access, command).map_err(|e| {
        eprintln!("error: {e}");
        INVALID
    })
}

fn check(path: &Path) -> i32 {
    match load(path) {
        Ok(plan) => {
            let gpu = plan.stages.iter().filter(|s| s.decl.gpus > 0).count();
            println!(
                "{}: recipe `{}` is valid ({} stages, {gpu} on GPUs)",
                path.display(),
                plan.recipe.name,
                plan.stages.len()
            );
            OK
        }
        Err(code) => code,
    }
}

fn plan(path: &Path, explain: bool, format: PlanFormat) -> i32 {
    let plan = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ws = match open(&plan, Access::Read, "yiflow plan") {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let verdicts = match assess(&plan, &ws, &[]) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return FAILED;
        }
    };
    if format == PlanFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verdicts).expect("verdicts serialise")
        );
        return OK;
    }
    let width = verdicts.iter().map(|v| v.stage.len()).max().unwrap_or(0);
    for v in &verdicts {
        let status = match v.status {
            Status::Cached => "cached",
            Status::Run => "run   ",
        };
        let line = format!("{status}  {:width$}  {}", v.stage, v.reasons.join("; "));
        println!("{}", line.trim_end());
        if explain {
            if let Some(fp) = &v.fingerprint {
                println!("        fingerprint {fp}");
            }
            if let Some(key) = &v.key {
                let text = serde_json::to_string_pretty(key).expect("keys serialise");
                for line in text.lines() {
                    println!("        {line}");
                }
            }
        }
    }
    let runs = verdicts.iter().filter(|v| v.status == Status::Run).count();
    println!("{runs} to run, {} cached", verdicts.len() - runs);
    if let Some(holder) = ws.live_holder() {
        println!(
            "(a run is in progress: pid {}, {})",
            holder.pid, holder.command
        );
    }
    OK
}

fn names_to_check(plan: &Plan, names: &[String], flag: &str) -> Result<(), i32> {
    for name in names {
        if plan.stage(name).is_none() {
            eprintln!(
                "error: {flag} names `{name}`, which is not a stage of this recipe; {}",
                did_you_mean(
                    name,
                    plan.stages.iter().map(|s| s.name.as_str()),
                    "it has no stages"
                )
            );
            return Err(INVALID);
        }
    }
    Ok(())
}

/// The no-op fast path: true (after reporting) when the recipe's receipt shows nothing can need to run.
fn nothing_to_run(path: &Path, key: &str, command: &str) -> bool {
    let started = std::time::Instant::now();
    let Ok(absolute) = std::path::absolute(path) else {
        return false;
    };
    let Some(receipt) = Receipt::load(&absolute, key) else {
        return false;
    };
    let Ok(ws) = Workspace::open(&receipt.workspace, Access::Write, command) else {
        return false;
    };
    if !receipt.still_holds(&ws) {
        return false;
    }
    let reporter = Reporter::new();
    if let Some(stale) = ws.took_over() {
        reporter.warn(&format!(
            "took over the workspace lock left by pid {} ({}), which is no longer running",
            stale.pid, stale.command
        ));
    }
    for stage in &receipt.stages {
        reporter.cached(&stage.name);
    }
    reporter.line(&format!(
        "0 ran, {} cached in {}",
        receipt.stages.len(),
        format_duration(started.elapsed())
    ));
    true
}

fn run(path: &Path, opts: NamedOptions, watch: bool) -> i32 {
    let command = format!("yiflow run {}", path.display());
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let key = receipt_key(&text, &yiflow_stages::registry());
    let whole = !watch && opts.only.is_empty() && opts.force.is_empty();
    if whole && nothing_to_run(path, &key, &command) {
        return OK;
    }
    let plan = match load(path) {
        Ok(p) => Arc::new(p),
        Err(code) => return code,
    };
    if let Err(code) = names_to_check(&plan, &opts.only, "--only")
        .and_then(|()| names_to_check(&plan, &opts.force, "--force"))
    {
        return code;
    }
    let ws = match open(
        &plan,
        Access::Write,
        &format!("yiflow run {}", path.display()),
    ) {
        Ok(ws) => Arc::new(ws),
        Err(code) => return code,
    };
    let reporter = Arc::new(Reporter::new());
    if let Some(stale) = ws.took_over() {
        reporter.warn(&format!(
            "took over the workspace lock left by pid {} ({}), which is no longer running",
            stale.pid, stale.command
        ));
    }
    let programs = match Programs::current() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find the yiflow executable: {e}");
            return FAILED;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
            }
            on_signal.cancel();
        });
        if watch {
            let registry = yiflow_stages::registry();
            return match yiflow_engine::watch(path, &registry, plan, ws, programs, reporter.clone(), opts, cancel).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    FAILED
                }
            };
        }
        let pool = match DevicePool::new(&plan.recipe.devices) {
            Ok(pool) => pool,
            Err(e) => {
                eprintln!("error: {e}");
                return INVALID;
            }
        };
        let ws_for_receipt = ws.clone();
        let scheduler = match Scheduler::new(plan.clone(), ws, programs, reporter.clone(), pool, opts.resolve(&plan)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return INVALID;
            }
        };
        let (_control, control_rx) = tokio::sync::mpsc::unbounded_channel();
        let summary = scheduler.run(cancel, control_rx).await;
        if whole && summary.exit_code() == OK
            && let (Ok(absolute), Some(receipt)) =
                (std::path::absolute(path), Receipt::of_run(&plan, &ws_for_receipt, key))
        {
            receipt.save(&absolute);
        }
        reporter.line(&summary.line());
        for failure in &summary.failed {
            let log = failure.log.as_deref().map(|l| format!(" (log: {l})")).unwrap_or_default();
            reporter.line(&format!("  failed: {}: {}{log}", failure.stage, failure.detail));
        }
        if summary.interrupted {
            reporter.line("interrupted: running stages were stopped; nothing partial was recorded");
        }
        summary.exit_code()
    })
}

fn graph(path: &Path, format: GraphFormat) -> i32 {
    match load(path) {
        Ok(plan) => {
            print!(
                "{}",
                match format {
                    GraphFormat::Dot => yiflow_engine::to_dot(&plan),
                    GraphFormat::Mermaid => yiflow_engine::to_mermaid(&plan),
                }
            );
            OK
        }
        Err(code) => code,
    }
}

fn status(path: &Path) -> i32 {
    let plan = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ws = match open(&plan, Access::Read, "yiflow status") {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let live = ws.live_holder().is_some();
    let width = plan
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:11}  {:>9}  {:12}  job",
        "stage", "state", "took", "artifact"
    );
    for &i in &plan.order {
        let name = &plan.stages[i].name;
        match ws.index().stage_record(&plan.recipe.name, name) {
            Ok(Some(r)) => {
                let state = match r.state {
                    RunState::Running if !live => "interrupted".to_owned(),
                    s => s.to_string(),
                };
                let hash = r
                    .content_hash
                    .as_deref()
                    .map_or("-", |h| &h[..12.min(h.len())]);
                let took = if r.state == RunState::Running {
                    "-".into()
                } else {
                    format_duration(std::time::Duration::from_millis(r.duration_ms))
                };
                let mut line = format!(
                    "{name:width$}  {state:11}  {took:>9}  {hash:12}  {}",
                    r.job_id.as_deref().unwrap_or("-")
                );
                if let Some(detail) = &r.detail {
                    let _ = write!(line, "  ({detail})");
                }
                println!("{line}");
            }
            Ok(None) => println!(
                "{name:width$}  {:11}  {:>9}  {:12}  -",
                "never run", "-", "-"
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return FAILED;
            }
        }
    }
    if let Some(holder) = ws.live_holder() {
        println!(
            "a run is in progress: pid {} ({})",
            holder.pid, holder.command
        );
    }
    OK
}

fn log(path: &Path, stage: &str) -> i32 {
    let plan = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = names_to_check(&plan, &[stage.to_owned()], "yiflow log") {
        return code;
    }
    let ws = match open(&plan, Access::Read, "yiflow log") {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let record = match ws.index().stage_record(&plan.recipe.name, stage) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!("stage `{stage}` has not run yet");
            return FAILED;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return FAILED;
        }
    };
    let Some(log) = record.log else {
        eprintln!("stage `{stage}` has no log");
        return FAILED;
    };
    let file = ws.root().join(&log);
    match std::fs::read(&file) {
        Ok(bytes) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes);
            OK
        }
        Err(e) => {
            eprintln!("error: failed to read {}: {e}", file.display());
            FAILED
        }
    }
}

fn gc(path: &Path, dry_run: bool) -> i32 {
    let plan = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ws = match open(&plan, Access::Write, "yiflow gc") {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    match ws.gc(dry_run) {
        Ok(report) => {
            println!("{report}");
            OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            FAILED
        }
    }
}

/// `yiflow exec-stage`: the process of a torch-free stage kind.
pub fn exec_stage() -> i32 {
    let result = (|| -> Result<(), yiflow_engine::ExecError> {
        let io = StageIo::from_env()?;
        let registry = yiflow_stages::registry();
        let kind = registry
            .get(&io.kind)
            .ok_or_else(|| format!("unknown stage kind `{}`", io.kind))?;
        let params = io.params()?;
        kind.execute(&params, &io)
    })();
    match result {
        Ok(()) => OK,
        Err(e) => {
            eprintln!("error: {e}");
            FAILED
        }
    }
}
