//! What `yiflow check` tells a user about a broken recipe, for one fixture per kind of mistake
//! (`tests/fixtures/invalid/*.kdl`), snapshot-tested so that the wording, spans and help lines are
//! reviewed like code. Valid fixtures (`tests/fixtures/valid/*.kdl`) must pass `check`.
//!
//! The report is rendered by the real binary, so it has to look the same on every machine: miette
//! wraps at the width of the first of stdout, stderr and stdin that is a terminal and at 80 columns
//! when none is (it ignores `COLUMNS`), so all three are pipes or null here; it draws unicode when
//! stderr is not a terminal, and colours and hyperlinks only when a terminal or `FORCE_COLOR`,
//! `CLICOLOR_FORCE` or `FORCE_HYPERLINK` asks for them. Paths in the report are the ones given on
//! the command line, relative to the fixtures folder the binary runs in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `yiflow ARGS...` in the fixtures folder with a deterministic rendering of diagnostics.
fn yiflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yiflow"))
        .args(args)
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "off")
        .env_remove("FORCE_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_HYPERLINK")
        .env_remove("NO_GRAPHICS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the yiflow binary runs")
}

/// `yiflow check invalid/NAME.kdl`: exit status 2, nothing on stdout, the report on stderr.
fn check_invalid(name: &str) -> String {
    let path = format!("invalid/{name}.kdl");
    let out = yiflow(&["check", &path]);
    let stderr = String::from_utf8(out.stderr).expect("the report is UTF-8");
    assert_eq!(
        out.status.code(),
        Some(2),
        "`yiflow check {path}` must fail:\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours or links in a piped report:\n{stderr}"
    );
    assert_every_problem_is_complete(&stderr);
    stderr
}

/// Each problem in a report has a code, a snippet with a label pointing into the file, and a help.
fn assert_every_problem_is_complete(report: &str) {
    let problems: Vec<&str> = report.split("\nError: ").skip(1).collect();
    assert!(!problems.is_empty(), "no problem in the report:\n{report}");
    let header = report.lines().nth(2).unwrap_or_default();
    let expected = if problems.len() == 1 {
        "1 problem in recipe".to_owned()
    } else {
        format!("{} problems in recipe", problems.len())
    };
    assert!(
        header.contains(&expected),
        "header `{header}` does not count {expected}"
    );
    for problem in problems {
        assert!(
            problem.starts_with("yiflow::recipe::"),
            "no code:\n{problem}"
        );
        assert!(
            problem.contains("╭─["),
            "no snippet of the file:\n{problem}"
        );
        assert!(problem.contains("╰── "), "no label:\n{problem}");
        assert!(problem.contains("\n  help: "), "no help line:\n{problem}");
    }
}

fn snapshot(name: &str) {
    let report = check_invalid(name);
    let mut settings = insta::Settings::clone_current();
    settings.set_description(format!("yiflow check invalid/{name}.kdl"));
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, report));
}

/// One test per fixture, so that each broken case shows up by name.
macro_rules! invalid_fixtures {
    ($($name:ident),* $(,)?) => {
        const INVALID: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                snapshot(stringify!($name));
            }
        )*
    };
}

invalid_fixtures!(
    kdl_syntax,
    kdl_values,
    unknown_kind,
    unknown_input,
    duplicate_stage,
    cycle,
    self_cycle,
    missing_value,
    wrong_type,
    unknown_child,
    glob_no_match,
    bad_devices,
    bad_executor,
    many_errors,
    duplicate_setting,
    extra_values,
    unknown_model,
    too_many_gpus,
);

fn kdl_files(folder: &str) -> BTreeSet<String> {
    std::fs::read_dir(fixtures().join(folder))
        .expect("fixtures folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".kdl").map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_invalid_fixture_has_a_snapshot_test() {
    let tested: BTreeSet<String> = INVALID.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(kdl_files("invalid"), tested);
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let report = check_invalid("many_errors");
    let codes: BTreeSet<&str> = report
        .split("\nError: ")
        .skip(1)
        .filter_map(|p| p.lines().next())
        .collect();
    assert!(codes.len() >= 6, "only {codes:?}");
    // Parsing, stage-kind decoding and compiling each found some; they are listed in file order
    // (of the first place each one points at).
    let lines: Vec<usize> = report
        .split("\nError: ")
        .skip(1)
        .filter_map(|problem| {
            let at = problem.split("╭─[invalid/many_errors.kdl:").nth(1)?;
            at.split(':').next()?.parse().ok()
        })
        .collect();
    assert_eq!(lines.len(), report.matches("\nError: ").count());
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "not in file order: {lines:?}"
    );
}

#[test]
fn valid_fixtures_pass_check() {
    let valid = kdl_files("valid");
    assert!(valid.len() >= 3, "{valid:?}");
    for name in valid {
        let path = format!("valid/{name}.kdl");
        let out = yiflow(&["check", &path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "`yiflow check {path}`:\n{stderr}"
        );
        assert!(stderr.is_empty(), "{stderr}");
        assert!(
            stdout.starts_with(&format!("{path}: recipe `")) && stdout.contains("is valid"),
            "{stdout}"
        );
    }
}

#[test]
fn check_leaves_no_workspace_behind() {
    let out = yiflow(&["check", "valid/diamond.kdl"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !fixtures().join("valid/.yiflow-diamond").exists(),
        "check only reads"
    );
}
