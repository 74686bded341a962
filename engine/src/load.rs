//! Reading a recipe file and taking it through all three steps (parse, decode, compile).

use std::path::{Path, PathBuf};

use yiflow_dsl::{Recipe, RecipeErrors};

use crate::{Plan, Registry};

/// Why a recipe could not be turned into a plan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("failed to read recipe {path}: {source}")]
    #[diagnostic(
        code(yiflow::recipe::unreadable),
        help("check the path; recipes are KDL files such as recipes/quickstart.kdl")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] RecipeErrors),
}

/// Reads, parses and compiles the recipe at `path`.
pub fn load_plan(path: &Path, registry: &Registry) -> Result<Plan, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let absolute = std::path::absolute(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let dir = dir.canonicalize().unwrap_or(dir);
    let (recipe, sink) = Recipe::parse(&path.display().to_string(), &text, dir)?;
    Ok(Plan::compile(recipe, sink, registry)?)
}
