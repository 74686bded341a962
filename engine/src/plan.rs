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
        let names: Vec<&str> = unique.iter().map(|s| s.name.value.as_str()).collect();
        let mut stages = Vec::with_capacity(unique.len());
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..unique.len()).map(|i| graph.add_node(i)).collect();
        for (index, decl) in unique.iter().enumerate() {
            // Inputs and files are checked whatever the kind, so that a mistyped kind hides nothing else.
            let inputs = resolve_inputs(&recipe, decl, &by_name, &names, &mut sink);
            for &up in &inputs {
                graph.add_edge(nodes[up], nodes[index], ());
            }
            let files = resolve_files(&recipe, decl, &mut sink);
            let Some(kind) = registry.get(&decl.kind.value).cloned() else {
                // An empty kind is a missing `kind=`, which parsing reported already.
                if !decl.kind.value.is_empty() {
                    sink.push(unknown_kind(decl, registry));
                }
                continue;
            };
            cx.check_body(decl, kind.children(), &mut sink);
            let params = kind.decode(decl, &cx, &mut sink);
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
        for cycle in cycles(&graph) {
            sink.push(cycle_error(&cycle, &unique));
        }
        // Every stage of unknown kind was reported, so a plan with all stages is one without errors.
        if !sink.is_empty() || stages.len() != unique.len() {
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

fn unknown_kind(decl: &StageDecl, registry: &Registry) -> RecipeError {
    let kinds: Vec<String> = registry.names().map(|k| format!("`{k}`")).collect();
    let help = if kinds.is_empty() {
        "no stage kinds are registered".to_owned()
    } else {
        let suggestion = did_you_mean(&decl.kind.value, registry.names(), "");
        let list = format!("yiflow's stage kinds are {}", kinds.join(", "));
        if suggestion.starts_with("did you mean") {
            format!("{suggestion} {list}")
        } else {
            list
        }
    };
    RecipeError::UnknownKind {
        kind: decl.kind.value.clone(),
        span: decl.kind.span,
        help,
    }
}

/// The stages a stage reads, by position in `names`, each once; unknown names are reported.
fn resolve_inputs(
    recipe: &Recipe,
    decl: &StageDecl,
    by_name: &HashMap<&str, usize>,
    names: &[&str],
    sink: &mut Sink,
) -> Vec<usize> {
    let mut inputs = Vec::new();
    for input in &decl.inputs {
        match by_name.get(input.value.as_str()) {
            Some(&i) if !inputs.contains(&i) => inputs.push(i),
            Some(_) => {}
            None => {
                // `input data/train.txt` is a common slip for `files`: say so when it looks like a path.
                let help = if input.value.contains('/') || recipe.dir.join(&input.value).exists() {
                    format!(
                        "`input` names stages; to depend on a file, write `files \"{}\"`",
                        input.value
                    )
                } else {
                    did_you_mean(
                        &input.value,
                        names.iter().copied().filter(|n| *n != decl.name.value),
                        "this recipe has no other stages",
                    )
                };
                sink.push(RecipeError::UnknownInput {
                    stage: decl.name.value.clone(),
                    input: input.value.clone(),
                    span: input.span,
                    help,
                });
            }
        }
    }
    inputs
}

/// Expands a stage's `files` globs against the recipe's folder. Directories stand for every file below.
fn resolve_files(recipe: &Recipe, decl: &StageDecl, sink: &mut Sink) -> Vec<PathBuf> {
    let dir = recipe.dir.as_path();
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
                help: no_match_help(recipe, &pattern.value),
            });
        }
    }
    files
        .into_iter()
        .map(|p| p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p))
        .collect()
}

/// Says where a pattern that matched nothing was looked for, naming the recipe's folder as the user
/// wrote it (never as an absolute path they did not type) and the first folder of the pattern that
/// does not exist, if any.
fn no_match_help(recipe: &Recipe, pattern: &str) -> String {
    let folder = match Path::new(&recipe.file_name).parent() {
        Some(p) if !p.as_os_str().is_empty() => format!("`{}`", p.display()),
        _ => "the current folder".to_owned(),
    };
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts
        .iter()
        .position(|p| p.contains(['*', '?', '[', '{']))
        .unwrap_or(parts.len() - 1);
    let mut at = PathBuf::new();
    for part in &parts[..literal] {
        at.push(part);
        if !recipe.dir.join(&at).is_dir() && !Path::new(pattern).is_absolute() {
            return format!(
                "there is no folder `{}` in the recipe's folder ({folder}), which `files` paths are relative to",
                at.display()
            );
        }
    }
    format!(
        "`files` paths are relative to the recipe's folder ({folder}): check the spelling, or create the file"
    )
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

/// The `input` of `reader` that names `upstream` (an edge of the graph comes from one).
fn input_span(reader: &StageDecl, upstream: &str) -> miette::SourceSpan {
    reader
        .inputs
        .iter()
        .find(|inp| inp.value == upstream)
        .expect("edge comes from an input")
        .span
}

fn cycle_error(cycle: &[usize], stages: &[&StageDecl]) -> RecipeError {
    if let [only] = cycle {
        let name = &stages[*only].name.value;
        return RecipeError::SelfCycle {
            name: name.clone(),
            span: input_span(stages[*only], name),
        };
    }
    let mut names: Vec<&str> = cycle
        .iter()
        .map(|&i| stages[i].name.value.as_str())
        .collect();
    names.push(names[0]);
    let spans = cycle
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let reader = stages[cycle[(k + 1) % cycle.len()]];
            let upstream = &stages[i].name.value;
            LabeledSpan::new_with_span(
                Some(format!("`{}` reads `{upstream}`", reader.name.value)),
                input_span(reader, upstream),
            )
        })
        .collect();
    RecipeError::Cycle {
        cycle: names.join(" -> "),
        spans,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;
    use yiflow_dsl::{NodeExt, Recipe, RecipeError, Sink, StageDecl};

    use super::*;
    use crate::Launch;

    /// A kind that takes `model NAME`, the way the ML kinds will.
    // TODO(lead): once a real kind takes `model NAME` (pretrain), add
    // tests/fixtures/invalid/unknown_model.kdl so the rendered report is snapshot-tested end to end.
    struct Train;

    impl Stage for Train {
        fn kind(&self) -> &'static str {
            "train"
        }
        fn summary(&self) -> &'static str {
            "trains a model (test kind)"
        }
        fn version(&self) -> u32 {
            1
        }
        fn children(&self) -> &'static [&'static str] {
            &["model"]
        }
        fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
            let name = stage
                .body
                .iter()
                .find(|n| n.node_name() == "model")
                .and_then(|n| n.arg_spanned::<String>(0, sink));
            if let Some(name) = &name {
                cx.model(name, sink);
            }
            json!({ "model": name.map(|n| n.value) })
        }
        fn launch(&self, _params: &Value) -> Launch {
            Launch::Internal
        }
    }

    fn compile(text: &str) -> Result<Plan, RecipeErrors> {
        let mut registry = Registry::new();
        registry.register(Train);
        let (recipe, sink) =
            Recipe::parse("t.kdl", text, PathBuf::from("/nonexistent")).expect("valid KDL");
        Plan::compile(recipe, sink, &registry)
    }

    fn at<'a>(text: &'a str, error: &RecipeError) -> &'a str {
        let offset = error.offset();
        let end = text[offset..]
            .find([' ', '\n', '}'])
            .map_or(text.len(), |e| offset + e);
        &text[offset..end]
    }

    #[test]
    fn an_unknown_model_is_reported_at_the_reference() {
        let text = "model tiny-moe { layers 2 }\nstage t kind=train { model tiny-mo }\n";
        let errors = compile(text).unwrap_err().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let RecipeError::UnknownModel { name, help, .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(
            (name.as_str(), help.as_str()),
            ("tiny-mo", "did you mean `tiny-moe`?")
        );
        assert_eq!(at(text, &errors[0]), "tiny-mo");

        let errors = compile("stage t kind=train { model big }")
            .unwrap_err()
            .errors;
        let RecipeError::UnknownModel { help, .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert!(help.contains("declare it with `model NAME"), "{help}");

        let plan = compile("model m {}\nstage t kind=train { model m }").expect("valid");
        assert_eq!(plan.stages[0].params["model"], "m");
    }

    #[test]
    fn an_unknown_kind_hides_no_other_problem() {
        let text =
            "stage a kind=trian { input b }\nstage b kind=train { input a; files \"nope/*\" }\n";
        let errors = compile(text).unwrap_err().errors;
        let codes: Vec<String> = errors
            .iter()
            .map(|e| {
                miette::Diagnostic::code(e)
                    .expect("every error has a code")
                    .to_string()
            })
            .collect();
        assert_eq!(
            codes,
            [
                "yiflow::recipe::unknown_kind",
                "yiflow::recipe::cycle",
                "yiflow::recipe::no_match"
            ]
        );
        let RecipeError::UnknownKind { help, .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(
            help,
            "did you mean `train`? yiflow's stage kinds are `train`"
        );
        let RecipeError::Cycle { cycle, spans } = &errors[1] else {
            panic!("{errors:?}")
        };
        assert_eq!((cycle.as_str(), spans.len()), ("a -> b -> a", 2));
        let RecipeError::GlobNoMatch { help, .. } = &errors[2] else {
            panic!("{errors:?}")
        };
        assert!(
            help.starts_with(
                "there is no folder `nope` in the recipe's folder (the current folder)"
            ),
            "{help}"
        );
    }

    #[test]
    fn a_path_given_as_input_points_to_files() {
        let errors = compile("stage a kind=train { input \"data/train.txt\" }")
            .unwrap_err()
            .errors;
        let RecipeError::UnknownInput { help, .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(
            help,
            "`input` names stages; to depend on a file, write `files \"data/train.txt\"`"
        );
    }
}
