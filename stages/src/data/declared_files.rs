//! Recipe-side checks for the files a data stage reads (source globs, eval sets, blocklists): they are
//! relative to the recipe's folder, must exist, and must be covered by the stage's `files` globs so that
//! the stage's fingerprint changes when they do.

use std::path::{Path, PathBuf};

use yiflow_dsl::{RecipeError, Sink, Spanned, StageDecl};

/// The files `pattern` (relative to `dir` unless absolute) matches, sorted; directories are skipped.
pub fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = absolute_pattern(dir, pattern);
    let paths = glob::glob(&full).map_err(|e| e.msg.to_owned())?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn absolute_pattern(dir: &Path, pattern: &str) -> String {
    if Path::new(pattern).is_absolute() {
        pattern.to_owned()
    } else {
        format!(
            "{}/{pattern}",
            glob::Pattern::escape(&dir.to_string_lossy())
        )
    }
}

/// True when some `files` glob of the stage matches `file` (or a folder above it).
fn covered(dir: &Path, stage: &StageDecl, file: &Path) -> bool {
    stage.files.iter().any(|f| {
        let folder = if Path::new(&f.value).is_absolute() {
            PathBuf::from(&f.value)
        } else {
            dir.join(&f.value)
        };
        file.starts_with(&folder)
            || glob::Pattern::new(&absolute_pattern(dir, &f.value))
                .is_ok_and(|p| p.matches_path(file))
    })
}

/// Checks one path or glob a stage setting names: valid, matching at least one file, and covered by
/// the stage's `files`. `what` names the setting in messages (e.g. "eval file").
pub fn check(
    dir: &Path,
    stage: &StageDecl,
    pattern: &Spanned<String>,
    what: &str,
    sink: &mut Sink,
) {
    let files = match expand(dir, &pattern.value) {
        Ok(files) => files,
        Err(msg) => {
            sink.push(RecipeError::InvalidValue {
                message: format!("`{}` is not a valid glob: {msg}", pattern.value),
                span: pattern.span,
                label: "invalid glob".to_owned(),
                help: "globs use `*`, `?`, `**` and `[...]`, relative to the recipe's folder"
                    .to_owned(),
            });
            return;
        }
    };
    if files.is_empty() {
        sink.push(RecipeError::GlobNoMatch {
            pattern: pattern.value.clone(),
            span: pattern.span,
            help: format!(
                "the {what} is looked up relative to the recipe's folder ({}); check the spelling",
                dir.display()
            ),
        });
        return;
    }
    if let Some(missing) = files.iter().find(|f| !covered(dir, stage, f)) {
        let shown = missing
            .strip_prefix(dir)
            .unwrap_or(missing)
            .display()
            .to_string();
        sink.push(RecipeError::InvalidValue {
            message: format!("{what} `{shown}` is not listed under the stage's `files`"),
            span: pattern.span,
            label: "not covered by `files`".to_owned(),
            help: format!(
                "add `files \"{}\"` to stage `{}` so that a change to the file reruns the stage",
                pattern.value, stage.name.value
            ),
        });
    }
}
