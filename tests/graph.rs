//! `yiflow graph` on a valid recipe: the stage DAG as Graphviz dot and as a Mermaid flowchart,
//! snapshot-tested, and an invalid recipe refused with its diagnostics.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn graph(recipe: &str, format: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yiflow"))
        .args(["graph", recipe, "--format", format])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("the yiflow binary runs")
}

fn stdout_of(recipe: &str, format: &str) -> String {
    let out = graph(recipe, format);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn diamond_as_dot() {
    let dot = stdout_of("valid/diamond.kdl", "dot");
    // Every input of the recipe is an edge, from the stage read to the reader.
    for edge in [
        r#""source" -> "evens""#,
        r#""source" -> "odds""#,
        r#""evens" -> "join""#,
        r#""odds" -> "join""#,
    ] {
        assert!(dot.contains(edge), "{edge} missing:\n{dot}");
    }
    insta::assert_snapshot!("diamond_dot", dot);
}

#[test]
fn diamond_as_mermaid() {
    let mermaid = stdout_of("valid/diamond.kdl", "mermaid");
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    assert_eq!(mermaid.matches("-->").count(), 4, "{mermaid}");
    insta::assert_snapshot!("diamond_mermaid", mermaid);
}

#[test]
fn slurm_recipe_as_mermaid() {
    let mermaid = stdout_of("valid/slurm.kdl", "mermaid");
    insta::assert_snapshot!("slurm_mermaid", mermaid);
}

#[test]
fn an_invalid_recipe_has_no_graph() {
    let out = graph("invalid/cycle.kdl", "dot");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("yiflow::recipe::cycle"));
}
