//! End-to-end test of `yiflow run --watch`: edits rerun exactly what they touch; an invalid edit prints
//! the diagnostics and the watch goes on.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::Project;

const RECIPE: &str = r#"
recipe w { devices "cpu" }
stage a kind=command { run "echo a >> marks.a; echo A > $YIFLOW_OUT/a" }
stage b kind=command { input a; files "input.txt"; run "echo b >> marks.b; cat input.txt > $YIFLOW_OUT/b" }
stage c kind=command { input b; run "echo c >> marks.c; cat $YIFLOW_IN_b/b > $YIFLOW_OUT/c" }
"#;

/// Reads stderr lines of the watching process until one contains `needle`.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) {
        seen.push(line.clone());
        if line.contains(needle) {
            return true;
        }
    }
    false
}

#[test]
fn watch_reruns_exactly_what_an_edit_touches() {
    let p = Project::new(RECIPE);
    p.write("input.txt", "one\n");
    let mut child = p.spawn_run(&["--watch"]);
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    assert!(
        wait_line(&lines, "watching for changes", &mut seen),
        "{seen:#?}"
    );
    assert_eq!(
        (
            p.count_lines("marks.a"),
            p.count_lines("marks.b"),
            p.count_lines("marks.c")
        ),
        (1, 1, 1)
    );

    // A declared file changes: b and c rerun, a does not.
    p.write("input.txt", "two\n");
    assert!(
        wait_line(&lines, "watching for changes", &mut seen),
        "{seen:#?}"
    );
    assert_eq!(
        (
            p.count_lines("marks.a"),
            p.count_lines("marks.b"),
            p.count_lines("marks.c")
        ),
        (1, 2, 2)
    );

    // An invalid recipe: diagnostics, and the watch goes on.
    p.set_recipe(&RECIPE.replace("input b;", "input bb;"));
    assert!(wait_line(&lines, "still watching", &mut seen), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("did you mean `b`?")),
        "{seen:#?}"
    );

    // Fixed, with c's command edited: only c reruns.
    p.set_recipe(&RECIPE.replace("echo c >> marks.c;", "echo c >> marks.c; true;"));
    assert!(
        wait_line(&lines, "watching for changes", &mut seen),
        "{seen:#?}"
    );
    assert_eq!(
        (
            p.count_lines("marks.a"),
            p.count_lines("marks.b"),
            p.count_lines("marks.c")
        ),
        (1, 2, 3)
    );

    common::interrupt(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen:#?}");
}

#[test]
fn watch_stops_a_running_stage_whose_recipe_changed() {
    let p = Project::new(
        r#"stage slow kind=command { run "echo x >> marks; sleep 30; touch $YIFLOW_OUT/x" }"#,
    );
    let mut child = p.spawn_run(&["--watch"]);
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    assert!(common::wait_for(Duration::from_secs(10), || p
        .count_lines("marks")
        == 1));
    p.set_recipe(r#"stage slow kind=command { run "echo y >> marks; touch $YIFLOW_OUT/y" }"#);
    assert!(wait_line(&lines, "stopped slow", &mut seen), "{seen:#?}");
    assert!(
        wait_line(&lines, "watching for changes", &mut seen),
        "{seen:#?}"
    );
    assert_eq!(p.read("marks"), "x\ny\n");
    common::interrupt(child.id());
    child.wait().unwrap();
}
