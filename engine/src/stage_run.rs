//! One run of one stage on disk, before and after the scheduler starts it: the folder it writes into
//! (a fresh one under `tmp/`, or for a Slurm stage the job folder that outlives the engine), its
//! parameters file, checkpoint folder and log, the process or batch job to start, and after a
//! successful exit the move of its output into the artifact store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use yiflow_dsl::{ExecutorDecl, SlurmDecl};

use crate::artifact_store::remove_tree;
use crate::local_executor::{ProcessSpec, Programs};
use crate::stage_key::{Prepared, hash_files};
use crate::{
    EngineError, JobJournal, Launch, Manifest, Plan, PlannedStage, SlurmJobSpec, SlurmStage,
    StageIo, Workspace,
};

/// What a launched stage runs.
pub(crate) enum Job {
    Local(Box<ProcessSpec>),
    Slurm(Box<SlurmStage>),
}

/// What [`prepare_run`] needs.
pub(crate) struct RunSetup<'a> {
    pub ws: &'a Workspace,
    pub plan: &'a Plan,
    pub programs: &'a Programs,
    pub stage: &'a PlannedStage,
    pub prepared: &'a Prepared,
    /// Upstream stage name -> its artifact folder.
    pub inputs: BTreeMap<String, PathBuf>,
    pub devices: &'a [String],
    /// Drop checkpoints an earlier run of this fingerprint left, instead of resuming from them.
    pub fresh_training: bool,
}

/// A stage run ready to start.
pub(crate) struct StageRun {
    pub run_dir: PathBuf,
    /// The log, relative to the workspace.
    pub log: String,
    pub started_at: u64,
    pub job: Job,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sets up the folders, parameters and log of one run of `setup.stage` and says what to start.
pub(crate) fn prepare_run(setup: &RunSetup<'_>) -> Result<StageRun, EngineError> {
    let RunSetup {
        ws,
        plan,
        programs,
        stage,
        prepared,
        ..
    } = *setup;
    let slurm_decl = match &stage.executor {
        ExecutorDecl::Slurm(decl) => Some(decl),
        ExecutorDecl::Local => None,
    };
    // A Slurm stage works in a folder that outlives the engine (see `Workspace::slurm_job_dir`);
    // a journal there from a killed run of the same fingerprint is the job to re-attach to.
    let (run_dir, journal) = if slurm_decl.is_some() {
        let dir = ws.slurm_job_dir(&stage.name, &prepared.fingerprint);
        let journal = JobJournal::load(&dir)
            .filter(|j| j.fingerprint == prepared.fingerprint && j.stage == stage.name);
        if journal.is_none() {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io("clear", &dir, e))?;
            }
            let out = dir.join("out");
            std::fs::create_dir_all(&out).map_err(|e| EngineError::io("create", &out, e))?;
        }
        (dir, journal)
    } else {
        (ws.new_run_dir(&stage.name)?, None)
    };
    let params_file = run_dir.join("params.json");
    let params = serde_json::to_vec_pretty(&stage.params).unwrap_or_default();
    std::fs::write(&params_file, params).map_err(|e| EngineError::io("write", &params_file, e))?;
    // Only training kinds (in the worker) checkpoint; others need no folder.
    let launch = stage.kind.launch(&stage.params);
    let checkpoints = ws.checkpoints_dir(&prepared.fingerprint);
    if launch == Launch::Worker {
        if setup.fresh_training {
            remove_tree(&checkpoints)?;
        }
        std::fs::create_dir_all(&checkpoints)
            .map_err(|e| EngineError::io("create", &checkpoints, e))?;
    }
    let io = StageIo {
        stage: stage.name.clone(),
        kind: stage.kind.kind().to_owned(),
        out: run_dir.join("out"),
        inputs: setup.inputs.clone(),
        checkpoints,
        devices: setup.devices.to_vec(),
        seed: plan.recipe.seed,
        recipe_dir: plan.recipe.dir.clone(),
        params_file,
    };
    let (program, args, extra_env) = programs.command_for(&launch);
    let mut env = io.to_env();
    env.extend(extra_env);
    let log_dir = ws.logs_dir().join(&stage.name);
    std::fs::create_dir_all(&log_dir).map_err(|e| EngineError::io("create", &log_dir, e))?;
    let (log, started_at) = if let Some(journal) = &journal {
        (journal.log.clone(), journal.started_at)
    } else {
        let started_at = now_ms();
        let log_name = format!("{started_at}-{}.log", &prepared.fingerprint[..12]);
        let log_path = log_dir.join(&log_name);
        let header = format!(
            "# yiflow: stage `{}` (kind {}), fingerprint {}\n# command: {} {}\n",
            stage.name,
            stage.kind.kind(),
            prepared.fingerprint,
            program.display(),
            args.join(" ")
        );
        std::fs::write(&log_path, header).map_err(|e| EngineError::io("write", &log_path, e))?;
        (format!("logs/{}/{log_name}", stage.name), started_at)
    };
    let log_path = ws.root().join(&log);
    let job = match slurm_decl {
        Some(decl) => Job::Slurm(Box::new(SlurmStage {
            spec: job_spec(
                decl,
                stage,
                &launch,
                &program,
                &args,
                env,
                &run_dir,
                &log_path,
                &plan.recipe.dir,
            ),
            journal: JobJournal {
                job: crate::JobId(0),
                recipe: plan.recipe.name.clone(),
                stage: stage.name.clone(),
                fingerprint: prepared.fingerprint.clone(),
                log: log.clone(),
                started_at,
            },
            dir: run_dir.clone(),
        })),
        None => Job::Local(Box::new(ProcessSpec {
            program,
            args,
            env,
            cwd: plan.recipe.dir.clone(),
            log: log_path,
            executor: stage.executor.clone(),
        })),
    };
    Ok(StageRun {
        run_dir,
        log,
        started_at,
        job,
    })
}

/// After a successful exit: check the declared files did not change, then move the output into the
/// artifact store, index it, and drop the run's checkpoints.
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit(
    plan: &Plan,
    i: usize,
    ws: &Workspace,
    prepared: &Prepared,
    out: &Path,
    log: String,
    started_at: u64,
    took: Duration,
) -> Result<Manifest, EngineError> {
    let stage = &plan.stages[i];
    let now = hash_files(ws.index(), &plan.recipe.dir, stage)?;
    if let Some((path, _)) = prepared
        .key
        .files
        .iter()
        .find(|(p, h)| now.get(*p) != Some(h))
    {
        return Err(EngineError::FileChanged { path: path.clone() });
    }
    let (content_hash, files) = ws.artifacts().commit(out)?;
    let manifest = Manifest {
        content_hash,
        files,
        stage: stage.name.clone(),
        kind: stage.kind.kind().to_owned(),
        fingerprint: prepared.fingerprint.clone(),
        key: serde_json::to_value(&prepared.key).unwrap_or_default(),
        started_at,
        duration_ms: took.as_millis() as u64,
        log: Some(log),
        metrics: serde_json::Value::Null,
    };
    ws.index().put_manifest(&manifest)?;
    // A finished training run's checkpoints are of no further use (the artifact holds the weights)
    // and they are large: removed here, off the scheduler's event loop.
    let checkpoints = ws.checkpoints_dir(&prepared.fingerprint);
    if let Err(e) = remove_tree(&checkpoints) {
        tracing::warn!("failed to remove the checkpoints of `{}`: {e}", stage.name);
    }
    Ok(manifest)
}

/// The batch job of a Slurm stage: the command a local run would start, with the stage's environment
/// except the device list, which the job script takes from what Slurm gave the job.
#[allow(clippy::too_many_arguments)]
fn job_spec(
    decl: &SlurmDecl,
    stage: &PlannedStage,
    launch: &Launch,
    program: &Path,
    args: &[String],
    env: Vec<(String, String)>,
    run_dir: &Path,
    log: &Path,
    workdir: &Path,
) -> SlurmJobSpec {
    let command = match launch {
        Launch::Shell { line, .. } => line.clone(),
        Launch::Internal | Launch::Worker => std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" "),
    };
    SlurmJobSpec {
        name: format!("yiflow:{}", stage.name),
        command,
        script_path: run_dir.join("job.sh"),
        workdir: workdir.to_owned(),
        stdout_path: log.to_owned(),
        partition: decl.partition.clone(),
        time: decl.time.clone(),
        account: decl.account.clone(),
        qos: decl.qos.clone(),
        gpus: stage.decl.gpus,
        cpus: stage.decl.cpus,
        memory: stage.decl.memory.clone(),
        // `sbatch-args "--exclusive --nice=10"`: one string may hold several arguments.
        extra_args: decl
            .sbatch_args
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_owned))
            .collect(),
        env: env
            .into_iter()
            .filter(|(name, _)| name != "CUDA_VISIBLE_DEVICES" && name != "YIFLOW_DEVICES")
            .collect(),
    }
}
