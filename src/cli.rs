//! Command-line interface. The doc comments here are the `--help` text, written for a terminal, not
//! rustdoc (hence no backticks).
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// yiflow runs the whole life of a large language model from one declarative KDL recipe: data
/// filtering, tokenizer, pretraining, fine-tuning, RLHF, export and serving, as a cached DAG of stages.
///
/// Every stage's artifact is cached by content: an unchanged stage never runs twice, and an edit reruns
/// exactly the stages it touched. Set RUST_LOG (e.g. RUST_LOG=yiflow=debug) for detailed logs.
#[derive(Debug, Parser)]
#[command(
    name = "yiflow",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a recipe and report every problem in it (exit 0 valid, 2 invalid).
    Check {
        /// The recipe file.
        recipe: PathBuf,
    },
    /// Show, per stage, whether it is cached or will run, and why.
    Plan {
        /// The recipe file.
        recipe: PathBuf,
        /// Also print each stage's fingerprint key (what its cache entry depends on).
        #[arg(long)]
        explain: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Run the stages that are not cached, in parallel where the DAG allows.
    ///
    /// Exit status: 0 when every stage succeeded, 1 when a stage failed, 2 for an invalid recipe or
    /// usage, 130 when interrupted.
    Run {
        /// The recipe file.
        recipe: PathBuf,
        /// How many stages may run at once (default: the number of cores).
        #[arg(short = 'j', long = "jobs", value_name = "N")]
        jobs: Option<usize>,
        /// Run only these stages (and what they need).
        #[arg(long, value_name = "STAGE", num_args = 1..)]
        only: Vec<String>,
        /// Run these stages even if cached (their dependents rerun only if the output changes).
        #[arg(long, value_name = "STAGE", num_args = 1..)]
        force: Vec<String>,
        /// When a stage fails, go on with every stage that does not depend on it.
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// Keep running: rerun what an edit of the recipe or a declared file touches.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Print the stage graph.
    Graph {
        /// The recipe file.
        recipe: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Show the last run of every stage: state, duration, artifact hash.
    Status {
        /// The recipe file.
        recipe: PathBuf,
    },
    /// Print the log of a stage's last run.
    Log {
        /// The recipe file.
        recipe: PathBuf,
        /// The stage.
        stage: String,
    },
    /// Delete artifacts, logs and checkpoints no stage refers to any more.
    Gc {
        /// The recipe file.
        recipe: PathBuf,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run one stage of a torch-free kind in this process (started by `yiflow run`).
    #[command(hide = true)]
    ExecStage,
    /// Run a stage's process in its own process group and stop the group when the engine goes away.
    #[command(hide = true)]
    Supervise {
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}
