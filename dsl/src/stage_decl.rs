//! A `stage NAME kind=KIND { ... }` declaration: the settings every kind shares, decoded, and the
//! kind-specific children kept as KDL nodes for the kind's own decoder.

use kdl::KdlNode;
use miette::SourceSpan;

use crate::{ExecutorDecl, Spanned};

impl StageDecl {
    /// The children every stage kind accepts.
    pub const COMMON: &[&str] = COMMON_CHILDREN;
}

/// The children every stage kind accepts.
pub const COMMON_CHILDREN: &[&str] = &[
    "input", "files", "gpus", "retries", "cpus", "memory", "executor",
];

/// One stage of a recipe.
#[derive(Debug, Clone)]
pub struct StageDecl {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    /// Upstream stages whose artifacts this stage reads.
    pub inputs: Vec<Spanned<String>>,
    /// Globs (relative to the recipe's folder) of external files the stage depends on.
    pub files: Vec<Spanned<String>>,
    /// Whole devices taken from the recipe's pool while the stage runs.
    pub gpus: u32,
    /// Where `gpus` was set, if it was.
    pub gpus_span: Option<SourceSpan>,
    /// How many times a failed run is tried again.
    pub retries: u32,
    /// CPU cores requested from a cluster scheduler.
    pub cpus: Option<u32>,
    /// Memory requested from a cluster scheduler ("64G").
    pub memory: Option<String>,
    /// Overrides the recipe's executor for this stage.
    pub executor: Option<ExecutorDecl>,
    /// Kind-specific children, decoded by the kind.
    pub body: Vec<KdlNode>,
    /// The whole `stage` node.
    pub span: SourceSpan,
}
