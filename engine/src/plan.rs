//! Step three of three: a decoded [`Recipe`] compiled into a [`Plan`], a petgraph DAG of stages whose
//! kinds, parameters, inputs and files are all checked. Everything a user can get wrong in a recipe is
//! reported here at the latest, all problems of the file at once.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::LabeledSpan;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value;
use yiflow_dsl::{ExecutorDecl, Recipe, RecipeError, RecipeErrors, Sink, StageDecl, did_you_mean};

use crate::{DecodeCx, Registry, Stage};

/// A checked recipe, ready to schedule.
#[derive(Clone)]
pub struct Plan {
    pub recipe: Arc<Recipe>,
    /// Stages in recipe order; [`PlannedStage::index`] is the position here.
    pub stages: Vec<PlannedStage>,
    /// Edges point from an upstream stage to the stage that reads it.
    pub graph: DiGraph<usize, ()>,
    /// Stage indices in a topological order (upstream first; ties in recipe order).
    pub order: Vec<usize>,
}

/// One stage of a plan.
#[derive(Clone)]
pub struct PlannedStage {
    pub index: usize,
    pub name: String,
    pub decl: StageDecl,
    pub kind: Arc<dyn Stage>,
    /// Canonical, defaults-filled parameters from the kind's decoder.
    pub params: Value,
    /// Upstream stages, by index, in the order written.
    pub inputs: Vec<usize>,
    /// Stages reading this one, by index.
    pub dependents: Vec<usize>,
    /// Files the `files` globs matched, relative to the recipe's folder, sorted.
    pub files: Vec<PathBuf>,
    /// The executor in effect (the stage's own or the recipe's).
    pub executor: ExecutorDecl,
}

impl std::fmt::Debug for PlannedStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedStage")
            .field("name", &self.name)
            .field("kind", &self.kind.kind())
            .field("params", &self.params)
            .field("inputs", &self.inputs)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("recipe", &self.recipe.name)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Compiles a parsed recipe; `sink` holds the problems parsing found already.
    pub fn compile(
        recipe: Recipe,
        mut sink: Sink,
        registry: &Registry,
    ) -> Result<Plan, RecipeErrors> {
        let recipe = Arc::new(recipe);
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut unique: Vec<&StageDecl> = Vec::new();
        for decl in &recipe.stages {
            if let Some(&first) = by_name.get(decl.name.value.as_str()) {
                sink.push(RecipeError::DuplicateStage {
                    name: decl.name.value.clone(),
                    span: decl.name.span,
                    first: unique[first].name.span,
                });
            } else {
                by_name.insert(&decl.name.value, unique.len());
                unique.push(decl);
            }
        }

        let cx = DecodeCx { recipe: &recipe };
        let mut stages = Vec::with_capacity(unique.len());
        for (index, decl) in unique.iter().enumerate() {
            let Some(kind) = registry.get(&decl.kind.value).cloned() else {
                if !decl.kind.value.is_empty() {
                    sink.push(RecipeError::UnknownKind {
                        kind: decl.kind.value.clone(),
                        span: decl.kind.span,
                        help: did_you_mean(
                            &decl.kind.value,
                            registry.names(),
                            "no stage kinds are registered",
                        ),
                    });
                }
                continue;
            };
            cx.check_body(decl, kind.children(), &mut sink);
            let params = kind.decode(decl, &cx, &mut sink);
            let mut inputs = Vec::new();
            for input in &decl.inputs {
                match by_name.get(input.value.as_str()) {
                    Some(&i) if !inputs.contains(&i) => inputs.push(i),
                    Some(_) => {}
                    None => sink.push(RecipeError::UnknownInput {
                        stage: decl.name.value.clone(),
                        input: input.value.clone(),
                        span: input.span,
                        help: did_you_mean(
                            &input.value,
                            unique
                                .iter()
                                .map(|s| s.name.value.as_str())
                                .filter(|n| *n != decl.name.value),
                            "this recipe has no other stages",
                        ),
                    }),
                }
            }
            let files = resolve_files(&recipe.dir, decl, &mut sink);
            stages.push(PlannedStage {
                index,
                name: decl.name.value.clone(),
                decl: (*decl).clone(),
                kind,
                params,
                inputs,
                dependents: Vec::new(),
                files,
                executor: decl
                    .executor
                    .clone()
                    .unwrap_or_else(|| recipe.executor.clone()),
            });
        }

        // Indices must be positions in `stages`, which skipped stages of unknown kind.
        if stages.len() != unique.len() {
            return Err(into_errors(&recipe, sink));
        }

        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
        for stage in &stages {
            for &up in &stage.inputs {
                graph.add_edge(nodes[up], nodes[stage.index], ());
            }
        }
        for cycle in cycles(&graph) {
            sink.push(cycle_error(&cycle, &stages));
        }
        if !sink.is_empty() {
            return Err(into_errors(&recipe, sink));
        }
        let order = toposort(&graph, None)
            .expect("cycles were reported above")
            .into_iter()
            .map(|n| graph[n])
            .collect();
        for i in 0..stages.len() {
            for up in stages[i].inputs.clone() {
                stages[up].dependents.push(i);
            }
        }
        Ok(Plan {
            recipe,
            stages,
            graph,
            order,
        })
    }

    pub fn stage(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stages to run for `--only`: the named ones and everything upstream of them.
    pub fn with_upstream(&self, names: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = names.to_vec();
        while let Some(i) = todo.pop() {
            if seen.insert(i) {
                todo.extend(&self.stages[i].inputs);
            }
        }
        seen
    }

    /// The named stage and everything downstream of it.
    pub fn with_downstream(&self, start: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            if seen.insert(i) {
                todo.extend(&self.stages[i].dependents);
            }
        }
        seen
    }
}

fn into_errors(recipe: &Recipe, sink: Sink) -> RecipeErrors {
    RecipeErrors::new(&recipe.file_name, &recipe.text, sink.into_errors())
}

/// Expands a stage's `files` globs against the recipe's folder. Directories stand for every file below.
fn resolve_files(dir: &Path, decl: &StageDecl, sink: &mut Sink) -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    for pattern in &decl.files {
        let full = if Path::new(&pattern.value).is_absolute() {
            pattern.value.clone()
        } else {
            format!(
                "{}/{}",
                glob::Pattern::escape(&dir.to_string_lossy()),
                pattern.value
            )
        };
        let matches = match glob::glob(&full) {
            Ok(paths) => paths.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => {
                sink.push(RecipeError::InvalidValue {
                    message: format!("`{}` is not a valid glob: {}", pattern.value, e.msg),
                    span: pattern.span,
                    label: "invalid glob".to_owned(),
                    help: "globs use `*`, `?`, `**` and `[...]`, relative to the recipe's folder"
                        .to_owned(),
                });
                continue;
            }
        };
        let before = files.len();
        for path in matches {
            collect_files(&path, &mut files);
        }
        if files.len() == before && !matches_existing(&files, dir, &pattern.value) {
            sink.push(RecipeError::GlobNoMatch {
                pattern: pattern.value.clone(),
                span: pattern.span,
                help: format!(
                    "paths are relative to the recipe's folder ({}); check the spelling or create the file",
                    dir.display()
                ),
            });
        }
    }
    files
        .into_iter()
        .map(|p| p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p))
        .collect()
}

/// True when a pattern matched only files another pattern already listed (not a mistake).
fn matches_existing(files: &BTreeSet<PathBuf>, dir: &Path, pattern: &str) -> bool {
    let Ok(pattern) = glob::Pattern::new(pattern) else {
        return false;
    };
    files.iter().any(|f| {
        f.strip_prefix(dir)
            .is_ok_and(|rel| pattern.matches_path(rel))
    })
}

fn collect_files(path: &Path, files: &mut BTreeSet<PathBuf>) {
    if path.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                collect_files(&entry.path(), files);
            }
        }
    } else if path.exists() {
        files.insert(path.to_path_buf());
    }
}

/// Every cycle of the graph, each as the stage indices along it (first stage not repeated).
fn cycles(graph: &DiGraph<usize, ()>) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    for scc in tarjan_scc(graph) {
        let first = scc[0];
        if scc.len() == 1 && !graph.contains_edge(first, first) {
            continue;
        }
        // Walk inside the component from its smallest member until we are back at it.
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *members
            .iter()
            .min_by_key(|n| graph[**n])
            .expect("non-empty");
        let mut path = vec![start];
        let mut visited = BTreeSet::from([start]);
        let mut at = start;
        loop {
            let mut next: Vec<NodeIndex> = graph
                .neighbors(at)
                .filter(|n| members.contains(n))
                .collect();
            next.sort_by_key(|n| graph[*n]);
            if next.contains(&start) {
                break;
            }
            match next.into_iter().find(|n| !visited.contains(n)) {
                Some(n) => {
                    visited.insert(n);
                    path.push(n);
                    at = n;
                }
                None => break,
            }
        }
        found.push(path.into_iter().map(|n| graph[n]).collect());
    }
    found.sort();
    found
}

fn cycle_error(cycle: &[usize], stages: &[PlannedStage]) -> RecipeError {
    let mut names: Vec<&str> = cycle.iter().map(|&i| stages[i].name.as_str()).collect();
    names.push(names[0]);
    let spans = cycle
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let reader = &stages[cycle[(k + 1) % cycle.len()]];
            let input = reader
                .decl
                .inputs
                .iter()
                .find(|inp| inp.value == stages[i].name)
                .expect("edge comes from an input");
            LabeledSpan::new_with_span(
                Some(format!("`{}` reads `{}`", reader.name, stages[i].name)),
                input.span,
            )
        })
        .collect();
    RecipeError::Cycle {
        cycle: names.join(" -> "),
        spans,
    }
}
