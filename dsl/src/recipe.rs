//! The typed recipe: the `recipe` settings block, the `model` blocks and the `stage` declarations.

use std::path::PathBuf;

use miette::SourceSpan;

use crate::{ModelDecl, Spanned, StageDecl};

/// A decoded recipe file.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe's name (`recipe NAME`; the file stem when the block is absent).
    pub name: String,
    /// The name the file is reported under (the path as the user gave it).
    pub file_name: String,
    /// The recipe text, for rendering diagnostics found after parsing.
    pub text: String,
    /// The recipe's folder, absolute: the working directory of its stages and the base of its paths.
    pub dir: PathBuf,
    /// The workspace folder as written (relative to `dir` unless absolute).
    pub workspace: Spanned<String>,
    pub devices: Devices,
    pub executor: ExecutorDecl,
    pub seed: u64,
    pub models: Vec<ModelDecl>,
    pub stages: Vec<StageDecl>,
}

impl Recipe {
    /// The workspace folder, resolved against the recipe's folder.
    pub fn workspace_dir(&self) -> PathBuf {
        self.dir.join(&self.workspace.value)
    }

    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name.value == name)
    }

    pub fn model(&self, name: &str) -> Option<&ModelDecl> {
        self.models.iter().find(|m| m.name.value == name)
    }
}

/// Which devices GPU stages may take (`devices auto | "cpu" | "cuda:0" "cuda:1" ...`).
#[derive(Debug, Clone, PartialEq)]
pub enum Devices {
    /// Every CUDA device found at run time; none means GPU stages run on CPU with a warning.
    Auto,
    /// No GPU is used.
    Cpu,
    /// Exactly these devices; a missing one is an error.
    List(Vec<Spanned<String>>),
}

/// Where a stage's process runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExecutorDecl {
    #[default]
    Local,
    Slurm(SlurmDecl),
}

/// `executor slurm { partition "gpu"; time "04:00:00"; account "..."; qos "..."; sbatch-args "..." }`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlurmDecl {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub sbatch_args: Vec<String>,
    pub span: Option<SourceSpan>,
}
