//! Helpers for the data kinds' tests: compile a recipe text in a folder and run one stage's `execute`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yiflow_dsl::Recipe;
use yiflow_engine::{Plan, StageIo};

/// Compiles `text` as a recipe in `dir`: the plan, or every problem's message.
pub fn compile(dir: &Path, text: &str) -> Result<Plan, Vec<String>> {
    let (recipe, sink) = Recipe::parse("test.kdl", text, dir.to_path_buf()).map_err(|e| {
        e.errors
            .iter()
            .map(|e| format!("{e} ({})", help_of(e)))
            .collect::<Vec<_>>()
    })?;
    Plan::compile(recipe, sink, &crate::registry()).map_err(|e| {
        e.errors
            .iter()
            .map(|e| format!("{e} ({})", help_of(e)))
            .collect()
    })
}

fn help_of(e: &yiflow_dsl::RecipeError) -> String {
    miette::Diagnostic::help(e)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// The canonical parameters of stage `name`.
pub fn params(dir: &Path, text: &str, name: &str) -> Value {
    let plan = compile(dir, text).unwrap_or_else(|e| panic!("recipe does not compile: {e:#?}"));
    plan.stage(name).unwrap().params.clone()
}

/// The problems compiling `text` reports, joined.
pub fn problems(dir: &Path, text: &str) -> String {
    match compile(dir, text) {
        Ok(_) => String::new(),
        Err(errors) => errors.join("\n"),
    }
}

/// A [`StageIo`] writing into `out`, reading `inputs`, in recipe folder `dir`.
pub fn io(dir: &Path, out: &Path, inputs: &[(&str, PathBuf)]) -> StageIo {
    std::fs::create_dir_all(out).unwrap();
    StageIo {
        stage: "test".to_owned(),
        kind: "test".to_owned(),
        out: out.to_path_buf(),
        inputs: inputs
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.clone()))
            .collect::<BTreeMap<_, _>>(),
        checkpoints: dir.join("checkpoints"),
        devices: Vec::new(),
        seed: 1234,
        recipe_dir: dir.to_path_buf(),
        params_file: dir.join("params.json"),
    }
}

/// Every document of an artifact folder, in order.
pub fn read_docs(dir: &Path) -> Vec<crate::data::Document> {
    let files = crate::data::DocumentFiles::find([dir]).unwrap();
    let mut docs = Vec::new();
    for batch in files.batches(1 << 20) {
        for raw in batch.unwrap() {
            docs.push(crate::data::Document::from_line(&raw.text.unwrap()).unwrap());
        }
    }
    docs
}

/// The stats.json of an artifact folder.
pub fn stats(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap()
}
