//! Step one of three: KDL text to a [`Recipe`]. Syntax errors stop here (nothing below can be trusted);
//! every other problem is collected so that later steps can add theirs and all are reported together.

use std::path::PathBuf;

use kdl::{KdlDocument, KdlNode};

use crate::stage_decl::COMMON_CHILDREN;
use crate::syntax::syntax_errors;
use crate::{
    Devices, ExecutorDecl, ModelDecl, NodeExt, Recipe, RecipeError, RecipeErrors, Sink, SlurmDecl,
    Spanned, StageDecl, did_you_mean,
};

const TOP_LEVEL: &[&str] = &["recipe", "model", "stage"];
const RECIPE_CHILDREN: &[&str] = &["workspace", "devices", "executor", "seed"];
const SLURM_CHILDREN: &[&str] = &["partition", "time", "account", "qos", "sbatch-args"];

impl Recipe {
    /// Parses recipe text. `file_name` is how the file is named in diagnostics, `dir` the recipe's
    /// folder (absolute). Returns the recipe and the problems found so far, or every syntax error.
    pub fn parse(
        file_name: &str,
        text: &str,
        dir: PathBuf,
    ) -> Result<(Recipe, Sink), RecipeErrors> {
        let doc = KdlDocument::parse(text)
            .map_err(|e| RecipeErrors::new(file_name, text, syntax_errors(text, e)))?;

        let mut sink = Sink::new();
        let stem = std::path::Path::new(file_name)
            .file_stem()
            .map_or_else(|| "recipe".to_owned(), |s| s.to_string_lossy().into_owned());
        let mut recipe = Recipe {
            name: stem,
            file_name: file_name.to_owned(),
            text: text.to_owned(),
            dir,
            workspace: Spanned::new(".yiflow".to_owned(), (0, 0).into()),
            devices: Devices::Auto,
            executor: ExecutorDecl::Local,
            seed: 0,
            models: Vec::new(),
            stages: Vec::new(),
        };

        let mut seen_recipe: Option<&KdlNode> = None;
        for node in doc.nodes() {
            match node.node_name() {
                "recipe" => {
                    if let Some(first) = seen_recipe {
                        sink.push(RecipeError::DuplicateSetting {
                            setting: "recipe".to_owned(),
                            context: "the file".to_owned(),
                            span: node.name_span(),
                            first: first.name_span(),
                            help: "a recipe file has one `recipe` block: merge the two".to_owned(),
                        });
                        continue;
                    }
                    seen_recipe = Some(node);
                    decode_recipe_block(node, &mut recipe, &mut sink);
                }
                "model" => {
                    node.check_entries(1, &[], &mut sink);
                    if node.positional().is_empty() {
                        sink.push(RecipeError::MissingValue {
                            what: "the name of the model".to_owned(),
                            span: node.name_span(),
                            help: "write `model NAME { ... }`; stages refer to it as `model NAME`"
                                .to_owned(),
                        });
                    } else if let Some(name) = node.arg_spanned::<String>(0, &mut sink) {
                        recipe.models.push(ModelDecl {
                            name,
                            node: node.clone(),
                        });
                    }
                }
                "stage" => {
                    if let Some(stage) = decode_stage(node, &mut sink) {
                        recipe.stages.push(stage);
                    }
                }
                other => sink.push(RecipeError::UnknownChild {
                    child: other.to_owned(),
                    context: "a recipe file".to_owned(),
                    span: node.name_span(),
                    help: did_you_mean(other, TOP_LEVEL.iter().copied(), ""),
                }),
            }
        }
        Ok((recipe, sink))
    }
}

fn decode_recipe_block(node: &KdlNode, recipe: &mut Recipe, sink: &mut Sink) {
    node.check_entries(1, &[], sink);
    if let Some(name) = node.opt_arg::<String>(0, sink) {
        recipe.name = name;
    }
    node.check_children("the `recipe` block", RECIPE_CHILDREN, sink);
    check_unique(node.child_nodes(), "the `recipe` block", &[], sink);
    for child in node.child_nodes() {
        match child.node_name() {
            "workspace" => {
                child.check_entries(1, &[], sink);
                if let Some(ws) = child.arg_spanned::<String>(0, sink) {
                    recipe.workspace = ws;
                }
            }
            "devices" => {
                child.check_entries(usize::MAX, &[], sink);
                let list = child.args::<String>(sink);
                recipe.devices = match list.as_slice() {
                    [] => {
                        sink.push(RecipeError::MissingValue {
                            what: "the value of `devices`".to_owned(),
                            span: child.name_span(),
                            help: "write `devices auto`, `devices \"cpu\"` or a list such as `devices \"cuda:0\" \"cuda:1\"`".to_owned(),
                        });
                        Devices::Auto
                    }
                    [one] if one.value == "auto" => Devices::Auto,
                    [one] if one.value == "cpu" => Devices::Cpu,
                    _ => {
                        for d in &list {
                            if !is_cuda_device(&d.value) {
                                sink.push(RecipeError::InvalidValue {
                                    message: format!("`{}` is not a device", d.value),
                                    span: d.span,
                                    label: "not a device".to_owned(),
                                    help: "use `auto`, `cpu`, or CUDA devices written `cuda:N`"
                                        .to_owned(),
                                });
                            }
                        }
                        Devices::List(list)
                    }
                };
            }
            "executor" => {
                if let Some(executor) = decode_executor(child, sink) {
                    recipe.executor = executor;
                }
            }
            "seed" => {
                child.check_entries(1, &[], sink);
                if let Some(seed) = child.arg::<u64>(0, sink) {
                    recipe.seed = seed;
                }
            }
            _ => {}
        }
    }
}

fn is_cuda_device(text: &str) -> bool {
    text.strip_prefix("cuda:")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn decode_executor(node: &KdlNode, sink: &mut Sink) -> Option<ExecutorDecl> {
    node.check_entries(1, &[], sink);
    let kind = node.arg_spanned::<String>(0, sink)?;
    match kind.value.as_str() {
        "local" => {
            node.check_children("`executor local`", &[], sink);
            Some(ExecutorDecl::Local)
        }
        "slurm" => {
            node.check_children("`executor slurm`", SLURM_CHILDREN, sink);
            check_unique(node.child_nodes(), "`executor slurm`", &[], sink);
            let mut slurm = SlurmDecl {
                span: Some(node.span()),
                ..SlurmDecl::default()
            };
            for child in node.child_nodes() {
                let one = |sink: &mut Sink| {
                    child.check_entries(1, &[], sink);
                    child.arg::<String>(0, sink)
                };
                match child.node_name() {
                    "partition" => slurm.partition = one(sink),
                    "time" => slurm.time = one(sink),
                    "account" => slurm.account = one(sink),
                    "qos" => slurm.qos = one(sink),
                    "sbatch-args" => {
                        child.check_entries(usize::MAX, &[], sink);
                        slurm.sbatch_args = child
                            .args::<String>(sink)
                            .into_iter()
                            .map(|s| s.value)
                            .collect();
                    }
                    _ => {}
                }
            }
            Some(ExecutorDecl::Slurm(slurm))
        }
        other => {
            sink.push(RecipeError::InvalidValue {
                message: format!("unknown executor `{other}`"),
                span: kind.span,
                label: "not an executor".to_owned(),
                help: did_you_mean(other, ["local", "slurm"], ""),
            });
            None
        }
    }
}

fn decode_stage(node: &KdlNode, sink: &mut Sink) -> Option<StageDecl> {
    node.check_entries(1, &["kind"], sink);
    if node.positional().is_empty() {
        sink.push(RecipeError::MissingValue {
            what: "the name of the stage".to_owned(),
            span: node.name_span(),
            help: "write `stage NAME kind=KIND { ... }`; other stages read it with `input NAME`"
                .to_owned(),
        });
        return None;
    }
    let name = node.arg_spanned::<String>(0, sink)?;
    let kind = if let Some(kind) = node.prop_spanned::<String>("kind", sink) {
        kind
    } else {
        // A `kind=` of the wrong type was reported by `prop_spanned`; only a missing one is left.
        if !node
            .entries()
            .iter()
            .any(|e| e.name().is_some_and(|n| n.value() == "kind"))
        {
            sink.push(RecipeError::MissingValue {
                what: format!("the kind of stage `{}`", name.value),
                span: name.span,
                help: format!(
                    "write `stage {} kind=command {{ ... }}` (or another kind)",
                    name.value
                ),
            });
        }
        Spanned::new(String::new(), name.span)
    };
    let mut stage = StageDecl {
        name,
        kind,
        inputs: Vec::new(),
        files: Vec::new(),
        gpus: 0,
        gpus_span: None,
        retries: 0,
        cpus: None,
        memory: None,
        executor: None,
        body: Vec::new(),
        span: node.span(),
    };
    let common: Vec<KdlNode> = node
        .child_nodes()
        .iter()
        .filter(|c| COMMON_CHILDREN.contains(&c.node_name()))
        .cloned()
        .collect();
    check_unique(
        &common,
        &format!("stage `{}`", stage.name.value),
        &["input", "files"],
        sink,
    );
    for child in node.child_nodes() {
        if !COMMON_CHILDREN.contains(&child.node_name()) {
            stage.body.push(child.clone());
            continue;
        }
        let many = child.node_name() == "input" || child.node_name() == "files";
        child.check_entries(if many { usize::MAX } else { 1 }, &[], sink);
        match child.node_name() {
            "input" => stage.inputs.extend(child.args::<String>(sink)),
            "files" => stage.files.extend(child.args::<String>(sink)),
            "gpus" => {
                if let Some(gpus) = child.arg_spanned::<u32>(0, sink) {
                    stage.gpus = gpus.value;
                    stage.gpus_span = Some(gpus.span);
                }
            }
            "retries" => stage.retries = child.arg::<u32>(0, sink).unwrap_or(0),
            "cpus" => stage.cpus = child.arg::<u32>(0, sink),
            "memory" => stage.memory = child.arg::<String>(0, sink),
            "executor" => stage.executor = decode_executor(child, sink),
            _ => unreachable!("every common child is matched"),
        }
    }
    Some(stage)
}

/// Reports a child written twice in one block when it takes one value (all but `repeatable`), so that
/// a second `gpus` or `workspace` never silently wins over the first.
fn check_unique(children: &[KdlNode], context: &str, repeatable: &[&str], sink: &mut Sink) {
    for (i, child) in children.iter().enumerate() {
        let name = child.node_name();
        if repeatable.contains(&name) {
            continue;
        }
        if let Some(first) = children[..i].iter().find(|c| c.node_name() == name) {
            sink.push(RecipeError::DuplicateSetting {
                setting: name.to_owned(),
                context: context.to_owned(),
                span: child.name_span(),
                first: first.name_span(),
                help: format!("keep one `{name}`"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Recipe, Vec<RecipeError>) {
        let (recipe, sink) =
            Recipe::parse("test.kdl", text, PathBuf::from("/r")).expect("valid KDL");
        (recipe, sink.into_errors())
    }

    #[test]
    fn decodes_the_shared_grammar() {
        let (recipe, errors) = parse(
            r#"
            recipe demo { workspace "ws"; devices "cuda:0" "cuda:1"; seed 7
                executor slurm { partition "gpu"; time "01:00:00"; sbatch-args "--exclusive" } }
            model tiny { layers 2 }
            stage a kind=command { run "echo hi > $YIFLOW_OUT/x"; files "*.txt"; retries 2 }
            stage b kind=command { input a; gpus 1; executor local; run "cat $YIFLOW_IN_a/x" }
            "#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(recipe.name, "demo");
        assert_eq!(recipe.workspace_dir(), PathBuf::from("/r/ws"));
        assert_eq!(recipe.seed, 7);
        assert!(matches!(&recipe.devices, Devices::List(l) if l.len() == 2));
        assert!(
            matches!(&recipe.executor, ExecutorDecl::Slurm(s) if s.partition.as_deref() == Some("gpu"))
        );
        assert_eq!(recipe.models[0].name.value, "tiny");
        let a = recipe.stage("a").unwrap();
        assert_eq!(
            (
                a.kind.value.as_str(),
                a.retries,
                a.files.len(),
                a.body.len()
            ),
            ("command", 2, 1, 1)
        );
        let b = recipe.stage("b").unwrap();
        assert_eq!(b.inputs[0].value, "a");
        assert_eq!((b.gpus, b.executor.clone()), (1, Some(ExecutorDecl::Local)));
    }

    #[test]
    fn collects_every_problem() {
        let (_, errors) = parse(
            r#"
            recipe { devices "gpu0"; colour "red" }
            stage a { run "x" }
            stage b kind=command { gpus "two" }
            stagee c kind=command
            "#,
        );
        let codes: Vec<String> = errors
            .iter()
            .map(|e| miette::Diagnostic::code(e).unwrap().to_string())
            .collect();
        assert_eq!(
            codes,
            [
                "yiflow::recipe::unknown_child",
                "yiflow::recipe::invalid_value",
                "yiflow::recipe::missing_value",
                "yiflow::recipe::wrong_type",
                "yiflow::recipe::unknown_child",
            ]
        );
    }

    #[test]
    fn a_setting_written_twice_is_reported_at_both() {
        let text = "recipe { seed 1; seed 2 }\nstage a kind=command { gpus 1; input x; input y; gpus 2 }\nrecipe {}";
        let (_, errors) = parse(text);
        let found: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| match e {
                RecipeError::DuplicateSetting {
                    setting,
                    span,
                    first,
                    ..
                } => {
                    assert!(first.offset() < span.offset());
                    (
                        setting.as_str(),
                        &text[span.offset()..span.offset() + span.len()],
                    )
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // `input` may repeat; `seed`, `gpus` and the `recipe` block may not.
        assert_eq!(
            found,
            [("seed", "seed"), ("gpus", "gpus"), ("recipe", "recipe")]
        );
    }

    #[test]
    fn a_stage_or_model_without_a_name() {
        let (recipe, errors) = parse("stage kind=command { run \"x\" }\nmodel { layers 2 }");
        assert!(recipe.stages.is_empty() && recipe.models.is_empty());
        let what: Vec<&str> = errors
            .iter()
            .map(|e| match e {
                RecipeError::MissingValue { what, .. } => what.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(what, ["the name of the stage", "the name of the model"]);
    }

    #[test]
    fn a_report_lists_problems_in_file_order() {
        let text =
            "stage b kind=command { gpus \"x\" }\nrecipe { colour 1 }\nstage b kind=command {}";
        let (_, mut sink) = Recipe::parse("t.kdl", text, PathBuf::from("/r")).expect("valid KDL");
        // Found out of order, as parsing and compiling would add them.
        sink.push(RecipeError::DuplicateStage {
            name: "b".to_owned(),
            span: (text.rfind("b kind").unwrap(), 1).into(),
            first: (6, 1).into(),
        });
        let report = RecipeErrors::new("t.kdl", text, sink.into_errors());
        let offsets: Vec<usize> = report.errors.iter().map(RecipeError::offset).collect();
        assert_eq!(offsets.len(), 3);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
        // A duplicate sorts where the report first points: its first definition.
        assert!(matches!(
            report.errors[0],
            RecipeError::DuplicateStage { .. }
        ));
    }

    #[test]
    fn syntax_errors_are_reported_with_spans() {
        let err =
            Recipe::parse("bad.kdl", "stage a kind=command {\n", PathBuf::from("/")).unwrap_err();
        assert!(!err.errors.is_empty());
    }
}
