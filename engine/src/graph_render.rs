//! `yiflow graph`: the stage DAG as Graphviz dot or a Mermaid flowchart.

use std::fmt::Write;

use crate::Plan;

fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz dot, one node per stage labelled with its kind, edges from upstream to reader.
pub fn to_dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=LR;\n    node [shape=box, style=rounded];\n",
        quote(&plan.recipe.name)
    );
    for stage in &plan.stages {
        let _ = writeln!(
            out,
            "    \"{}\" [label=\"{}\\n({})\"];",
            quote(&stage.name),
            quote(&stage.name),
            stage.kind.kind()
        );
    }
    for stage in &plan.stages {
        for &up in &stage.inputs {
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\";",
                quote(&plan.stages[up].name),
                quote(&stage.name)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart (stage names may hold characters Mermaid ids cannot, so ids are `s0`, `s1`, ...).
pub fn to_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for stage in &plan.stages {
        let _ = writeln!(
            out,
            "    s{}[\"{}<br/>({})\"]",
            stage.index,
            stage.name.replace('"', "#quot;"),
            stage.kind.kind()
        );
    }
    for stage in &plan.stages {
        for &up in &stage.inputs {
            let _ = writeln!(out, "    s{up} --> s{}", stage.index);
        }
    }
    out
}
