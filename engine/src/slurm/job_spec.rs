//! One stage as a Slurm batch job: what it asks `sbatch` for, and the script it runs, which hands the
//! command the GPUs Slurm gave the job the way a local run hands it the engine's (`CUDA_VISIBLE_DEVICES`
//! with the physical indices, `YIFLOW_DEVICES` renumbered from `cuda:0`, as `StageIo::to_env` does).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::SlurmError;

/// One stage as a batch job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmJobSpec {
    /// The job's name in `squeue`.
    pub name: String,
    /// The shell line the job runs (`sh -c`), as a local run would.
    pub command: String,
    /// Where the batch script is written before `sbatch` reads it (`sbatch` keeps its own copy).
    pub script_path: PathBuf,
    /// The job's working directory, on a filesystem the nodes share.
    pub workdir: PathBuf,
    /// The job's output (stdout and stderr together), on a filesystem the nodes share.
    pub stdout_path: PathBuf,
    pub partition: Option<String>,
    /// Time limit in any format `sbatch --time` takes (`"04:00:00"`, `"1-00:00:00"`, minutes).
    pub time: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Whole GPUs (`--gres=gpu:N`); 0 hides every GPU from the job.
    pub gpus: u32,
    pub cpus: Option<u32>,
    /// Memory for the job in `sbatch --mem` syntax (`"64G"`).
    pub memory: Option<String>,
    /// More `sbatch` arguments, after ours so they win.
    pub extra_args: Vec<String>,
    /// Environment of the command, on top of what the job inherits from the submitting process.
    pub env: Vec<(String, String)>,
}

impl SlurmJobSpec {
    /// The batch script: exports the spec's environment, sets `CUDA_VISIBLE_DEVICES` and
    /// `YIFLOW_DEVICES` (`cuda:0,cuda:1,...`, one per GPU, as the process sees them) to the GPUs Slurm
    /// gave the job, then runs the command.
    pub fn batch_script(&self) -> Result<String, SlurmError> {
        let mut script = format!(
            "#!/bin/sh\n# Batch job `{}` written by yiflow; sbatch keeps a copy at submission.\n\n",
            self.name.replace('\n', " ")
        );
        // Read before the exports below, which may carry the engine's own (empty) device list.
        script.push_str(
            "# Slurm's gres/gpu plugin sets CUDA_VISIBLE_DEVICES (renumbered from 0 under cgroup device\n\
             # constraints); SLURM_JOB_GPUS and GPU_DEVICE_ORDINAL are fallbacks for sites where it does not.\n\
             yiflow_gpus=${CUDA_VISIBLE_DEVICES-${SLURM_JOB_GPUS-${GPU_DEVICE_ORDINAL-}}}\n",
        );
        if self.gpus == 0 {
            script.push_str("yiflow_gpus=\n");
        }
        for (name, value) in &self.env {
            if !is_shell_name(name) {
                return Err(SlurmError::EnvName {
                    job: self.name.clone(),
                    name: name.clone(),
                });
            }
            let _ = writeln!(script, "export {name}={}", sh_quote(value));
        }
        script.push_str(
            "export CUDA_VISIBLE_DEVICES=\"$yiflow_gpus\"\n\
             YIFLOW_DEVICES=\n\
             yiflow_n=0\n\
             yiflow_ifs=$IFS; IFS=,\n\
             for yiflow_gpu in $yiflow_gpus; do\n\
             \x20   YIFLOW_DEVICES=\"${YIFLOW_DEVICES:+$YIFLOW_DEVICES,}cuda:$yiflow_n\"\n\
             \x20   yiflow_n=$((yiflow_n + 1))\n\
             done\n\
             IFS=$yiflow_ifs\n\
             export YIFLOW_DEVICES\n\
             unset yiflow_gpus yiflow_gpu yiflow_ifs yiflow_n\n\n",
        );
        let _ = writeln!(script, "exec /bin/sh -c {}", sh_quote(&self.command));
        Ok(script)
    }

    /// The arguments of `sbatch`, the script last.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name={}", self.name),
            format!("--chdir={}", self.workdir.display()),
            format!("--output={}", output_pattern(&self.stdout_path)),
            // The engine writes a header (and notes) into the same log before and while the job runs.
            "--open-mode=append".to_owned(),
            "--nodes=1".to_owned(),
            "--ntasks=1".to_owned(),
            // The engine retries NODE_FAIL and PREEMPTED itself, into a fresh output folder; a job
            // that Slurm requeued would rerun into the half-written one.
            "--no-requeue".to_owned(),
        ];
        let optional = [
            ("--partition", &self.partition),
            ("--time", &self.time),
            ("--account", &self.account),
            ("--qos", &self.qos),
            ("--mem", &self.memory),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                args.push(format!("{flag}={value}"));
            }
        }
        if self.gpus > 0 {
            args.push(format!("--gres=gpu:{}", self.gpus));
        }
        if let Some(cpus) = self.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        args.extend(self.extra_args.iter().cloned());
        args.push(self.script_path.display().to_string());
        args
    }
}

/// `sbatch --output` expands `%j` and friends; `%%` is a literal `%`, and a backslash anywhere turns
/// every expansion off.
fn output_pattern(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains('\\') {
        text
    } else {
        text.replace('%', "%%")
    }
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Single-quotes `text` for `sh`.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn spec(dir: &Path) -> SlurmJobSpec {
        SlurmJobSpec {
            name: "yiflow:train".to_owned(),
            command: "echo \"$GREETING\" \"$CUDA_VISIBLE_DEVICES\" \"$YIFLOW_DEVICES\"; exit 7"
                .to_owned(),
            script_path: dir.join("jobs/train.sh"),
            workdir: dir.to_owned(),
            stdout_path: dir.join("logs/train-%j.log"),
            gpus: 2,
            env: vec![
                ("GREETING".to_owned(), "it's $HOME, \"quoted\"".to_owned()),
                ("CUDA_VISIBLE_DEVICES".to_owned(), String::new()),
            ],
            ..SlurmJobSpec::default()
        }
    }

    /// Runs the batch script with `sh`, as slurmstepd would, with Slurm's variables `slurm_env`.
    fn run_script(spec: &SlurmJobSpec, slurm_env: &[(&str, &str)]) -> (String, Option<i32>) {
        let script = spec.batch_script().unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&script)
            .env_remove("CUDA_VISIBLE_DEVICES");
        command
            .env_remove("SLURM_JOB_GPUS")
            .env_remove("GPU_DEVICE_ORDINAL");
        command.envs(slurm_env.iter().copied());
        let output = command.output().unwrap();
        (
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            output.status.code(),
        )
    }

    #[test]
    fn batch_script_exports_env_and_uses_the_gpus_slurm_gave() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        // Slurm's own CUDA_VISIBLE_DEVICES wins over the spec's and over SLURM_JOB_GPUS.
        let (out, code) = run_script(
            &spec,
            &[("CUDA_VISIBLE_DEVICES", "0,1"), ("SLURM_JOB_GPUS", "4,5")],
        );
        assert_eq!(out, "it's $HOME, \"quoted\" 0,1 cuda:0,cuda:1");
        assert_eq!(code, Some(7));
        // Fallbacks when Slurm did not set it.
        let (out, _) = run_script(&spec, &[("SLURM_JOB_GPUS", "1,3")]);
        assert!(out.ends_with(" 1,3 cuda:0,cuda:1"), "{out}");
        let (out, _) = run_script(&spec, &[("GPU_DEVICE_ORDINAL", "2")]);
        assert!(out.ends_with(" 2 cuda:0"), "{out}");
        // A job without GPUs sees none, whatever it inherited.
        let cpu_only = SlurmJobSpec { gpus: 0, ..spec };
        let (out, _) = run_script(&cpu_only, &[("CUDA_VISIBLE_DEVICES", "0")]);
        assert_eq!(out, "it's $HOME, \"quoted\"");
    }

    #[test]
    fn batch_script_refuses_env_names_the_shell_cannot_export() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        spec.env.push(("BAD-NAME".to_owned(), "x".to_owned()));
        let error = spec.batch_script().unwrap_err();
        assert_eq!(
            error.to_string(),
            "export `BAD-NAME` in job `yiflow:train`: not a shell variable name"
        );
    }

    #[test]
    fn sbatch_args_carry_the_requests_and_escape_percent() {
        let dir = Path::new("/shared/ws");
        let mut spec = spec(dir);
        spec.partition = Some("gpu".to_owned());
        spec.time = Some("04:00:00".to_owned());
        spec.account = Some("llm".to_owned());
        spec.qos = Some("high".to_owned());
        spec.cpus = Some(8);
        spec.memory = Some("64G".to_owned());
        spec.extra_args = vec!["--exclusive".to_owned()];
        let args = spec.sbatch_args();
        for expected in [
            "--parsable",
            "--job-name=yiflow:train",
            "--chdir=/shared/ws",
            "--output=/shared/ws/logs/train-%%j.log",
            "--partition=gpu",
            "--time=04:00:00",
            "--account=llm",
            "--qos=high",
            "--mem=64G",
            "--gres=gpu:2",
            "--cpus-per-task=8",
            "--no-requeue",
            "--open-mode=append",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing from {args:?}"
            );
        }
        assert_eq!(
            &args[args.len() - 2..],
            ["--exclusive", "/shared/ws/jobs/train.sh"]
        );
        let cpu_only = SlurmJobSpec { gpus: 0, ..spec };
        assert!(
            !cpu_only
                .sbatch_args()
                .iter()
                .any(|a| a.starts_with("--gres"))
        );
        assert_eq!(output_pattern(Path::new(r"C:\x%j")), r"C:\x%j");
    }
}
