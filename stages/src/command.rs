//! The `command` kind: any program, run by `sh -c` in the recipe's folder, with declared inputs
//! (`$YIFLOW_IN_<stage>`), files and environment, writing its outputs into `$YIFLOW_OUT`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use yiflow_dsl::{NodeExt, RecipeError, Sink, StageDecl};
use yiflow_engine::{DecodeCx, Launch, Stage};

/// `stage NAME kind=command { run "..."; env KEY="value" ... }`
pub struct Command;

impl Stage for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn summary(&self) -> &'static str {
        "runs a shell command that reads $YIFLOW_IN_<stage> and writes into $YIFLOW_OUT"
    }

    fn version(&self) -> u32 {
        1
    }

    fn children(&self) -> &'static [&'static str] {
        &["run", "env"]
    }

    fn decode(&self, stage: &StageDecl, _cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        let mut run: Option<String> = None;
        let mut env = BTreeMap::new();
        for node in &stage.body {
            match node.node_name() {
                "run" => {
                    node.check_entries(1, &[], sink);
                    if run.is_some() {
                        sink.push(RecipeError::InvalidValue {
                            message: format!("stage `{}` has more than one `run`", stage.name.value),
                            span: node.name_span(),
                            label: "second `run`".to_owned(),
                            help: "join the commands into one line with `&&`, or split them into stages".to_owned(),
                        });
                    }
                    run = node.arg::<String>(0, sink);
                }
                "env" => {
                    // Every property is a variable; only positional values are out of place.
                    let names: Vec<&str> = node
                        .entries()
                        .iter()
                        .filter_map(|e| e.name().map(yiflow_dsl::KdlIdentifier::value))
                        .collect();
                    node.check_entries(0, &names, sink);
                    for entry in node.entries() {
                        let Some(key) = entry.name() else { continue };
                        match entry.value().as_string() {
                            Some(v) => {
                                env.insert(key.value().to_owned(), v.to_owned());
                            }
                            None => sink.push(RecipeError::WrongType {
                                what: format!("environment variable `{}`", key.value()),
                                expected: "a string".to_owned(),
                                found: yiflow_dsl::KdlValue::to_string(entry.value()),
                                span: entry.span(),
                                help: format!("quote it: {}=\"{}\"", key.value(), entry.value()),
                            }),
                        }
                    }
                }
                _ => {}
            }
        }
        if run.is_none() && !stage.body.iter().any(|n| n.node_name() == "run") {
            sink.push(RecipeError::MissingValue {
                what: format!("the `run` line of stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add `run \"shell command\"` to the stage's block".to_owned(),
            });
        }
        json!({ "run": run.unwrap_or_default(), "env": env })
    }

    fn launch(&self, params: &Value) -> Launch {
        let env = params["env"]
            .as_object()
            .map(|vars| {
                vars.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Launch::Shell {
            line: params["run"].as_str().unwrap_or_default().to_owned(),
            env,
        }
    }
}
