//! End-to-end tests of `yiflow run`, `plan`, `status` and `log` on real recipes of command stages.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Project, alive, ran, wait_for};

const DIAMOND: &str = r#"
recipe diamond { workspace ".yiflow"; devices "cpu" }
stage a kind=command { run "echo a >> marks.a; echo A > $YIFLOW_OUT/a.txt" }
stage b kind=command { input a; run "echo b >> marks.b; cat $YIFLOW_IN_a/a.txt > $YIFLOW_OUT/b.txt" }
stage c kind=command {
    input a
    files "data.txt"
    run "echo c >> marks.c; cat data.txt $YIFLOW_IN_a/a.txt > $YIFLOW_OUT/c.txt"
}
stage d kind=command { input b c; run "echo d >> marks.d; cat $YIFLOW_IN_b/b.txt $YIFLOW_IN_c/c.txt > $YIFLOW_OUT/d.txt" }
"#;

fn diamond() -> Project {
    let p = Project::new(DIAMOND);
    p.write("data.txt", "data v1\n");
    p
}

fn verdicts(p: &Project) -> Vec<(String, String, Vec<String>)> {
    p.plan_json()
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["stage"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
                v["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn artifact_of(p: &Project, stage: &str) -> std::path::PathBuf {
    let status = p.yiflow("status", &[]);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{stage} ")))
        .expect("stage line");
    let short = line.split_whitespace().nth(3).expect("hash column");
    let dir = p.path().join(".yiflow/artifacts");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(short)
        })
        .expect("artifact folder")
}

#[test]
fn first_run_then_nothing_to_do() {
    let p = diamond();
    let first = p.yiflow("run", &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(ran(&first), ["a", "b", "c", "d"]);
    assert!(first.stderr.contains("4 ran, 0 cached"), "{}", first.stderr);

    let again = p.yiflow("run", &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    assert!(again.stderr.contains("0 ran, 4 cached"), "{}", again.stderr);
    for m in ["marks.a", "marks.b", "marks.c", "marks.d"] {
        assert_eq!(p.count_lines(m), 1, "{m} ran more than once");
    }
    assert!(verdicts(&p).iter().all(|(_, s, _)| s == "cached"));
    let d = artifact_of(&p, "d");
    assert_eq!(
        std::fs::read_to_string(d.join("d.txt")).unwrap(),
        "A\ndata v1\nA\n"
    );
}

#[test]
fn editing_a_stage_reruns_it_and_its_dependents_only() {
    let p = diamond();
    assert_eq!(p.yiflow("run", &[]).code, 0);
    // Formatting, comments and stage order never matter.
    let shuffled = DIAMOND.replace(
        "stage a kind=command",
        "// a comment\nstage   a   kind=command",
    );
    p.set_recipe(&shuffled);
    assert!(
        verdicts(&p).iter().all(|(_, s, _)| s == "cached"),
        "{:?}",
        verdicts(&p)
    );

    p.set_recipe(&DIAMOND.replace(
        "cat data.txt $YIFLOW_IN_a/a.txt",
        "cat data.txt data.txt $YIFLOW_IN_a/a.txt",
    ));
    let v = verdicts(&p);
    assert_eq!(v[0].1, "cached");
    let c = v.iter().find(|x| x.0 == "c").unwrap();
    assert_eq!(c.1, "run");
    assert!(c.2[0].starts_with("param `run` "), "{:?}", c.2);
    let d = v.iter().find(|x| x.0 == "d").unwrap();
    assert_eq!(
        (d.1.as_str(), d.2.clone()),
        ("run", vec!["upstream `c` will run".to_owned()])
    );

    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["c", "d"]);
}

#[test]
fn identical_output_keeps_dependents_cached() {
    let p = diamond();
    assert_eq!(p.yiflow("run", &[]).code, 0);
    // b's command changes but writes the same bytes: d stays cached (early cut-off).
    p.set_recipe(&DIAMOND.replace("echo b >> marks.b;", "echo b >> marks.b; true;"));
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["b"]);
    assert!(run.stderr.contains("output unchanged"), "{}", run.stderr);
    assert_eq!(p.count_lines("marks.d"), 1);
}

#[test]
fn a_changed_file_reruns_the_stages_that_declare_it() {
    let p = diamond();
    assert_eq!(p.yiflow("run", &[]).code, 0);
    p.write("data.txt", "data v2\n");
    let v = verdicts(&p);
    let c = v.iter().find(|x| x.0 == "c").unwrap();
    assert_eq!(c.2, ["file `data.txt` changed"]);
    let run = p.yiflow("run", &[]);
    assert_eq!(ran(&run), ["c", "d"]);
}

#[test]
fn artifacts_changed_behind_the_engines_back_are_rebuilt() {
    let p = diamond();
    assert_eq!(p.yiflow("run", &[]).code, 0);
    let c = artifact_of(&p, "c");
    let file = c.join("c.txt");
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&file, perms).unwrap();
    std::fs::write(&file, "tampered\n").unwrap();
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("modified on disk"), "{}", run.stderr);
    assert_eq!(
        ran(&run),
        ["c"],
        "d stays cached: c's rebuilt output is the same as before"
    );
    let c = artifact_of(&p, "c");
    assert_eq!(
        std::fs::read_to_string(c.join("c.txt")).unwrap(),
        "data v1\nA\n"
    );

    // A deleted artifact folder is rebuilt too.
    let d = artifact_of(&p, "d");
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&d)
        .status()
        .unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    let run = p.yiflow("run", &[]);
    assert!(run.stderr.contains("deleted on disk"), "{}", run.stderr);
    assert_eq!(ran(&run), ["d"]);
}

#[test]
fn a_failure_stops_dependents_and_keep_going_finishes_other_branches() {
    let recipe = r#"
recipe f { devices "cpu" }
stage bad kind=command { run "echo oops >&2; exit 3" }
stage after kind=command { input bad; run "true" }
stage slow kind=command { run "sleep 0.3; echo ok > $YIFLOW_OUT/x" }
stage other kind=command { input slow; run "echo ok > $YIFLOW_OUT/y" }
"#;
    let p = Project::new(recipe);
    let run = p.yiflow("run", &["-j", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("FAILED  bad: exit code 3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("skipped after: `bad` failed"),
        "{}",
        run.stderr
    );
    assert!(
        !ran(&run).contains(&"other".to_owned()),
        "without --keep-going nothing new starts"
    );

    let run = p.yiflow("run", &["-j", "2", "--keep-going"]);
    assert_eq!(run.code, 1);
    assert_eq!(ran(&run), ["other"], "{}", run.stderr);
    let log = p.yiflow("log", &["bad"]);
    assert!(log.stdout.contains("oops"), "{}", log.stdout);
}

#[test]
fn retries_rerun_a_failed_stage() {
    let p = Project::new(
        r#"stage flaky kind=command { retries 2; run "echo x >> tries; test $(wc -l < tries) -ge 2 && echo ok > $YIFLOW_OUT/ok" }"#,
    );
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("retry   flaky: exit code 1 (attempt 2 of 3)"),
        "{}",
        run.stderr
    );
    assert_eq!(p.count_lines("tries"), 2);
}

#[test]
fn stages_run_in_parallel_up_to_jobs() {
    let stage = |n: &str| {
        format!(
            r#"stage {n} kind=command {{ run "date +%s.%N > {n}.start; sleep 0.5; date +%s.%N > {n}.end; touch $YIFLOW_OUT/x" }}"#
        )
    };
    let p = Project::new(&format!("{}\n{}\n", stage("p"), stage("q")));
    assert_eq!(p.yiflow("run", &["-j", "2"]).code, 0);
    let t = |f: &str| p.read(f).trim().parse::<f64>().unwrap();
    assert!(
        t("p.start") < t("q.end") && t("q.start") < t("p.end"),
        "the two stages overlapped"
    );

    let p = Project::new(&format!("{}\n{}\n", stage("p"), stage("q")));
    assert_eq!(p.yiflow("run", &["-j", "1"]).code, 0);
    let t = |f: &str| p.read(f).trim().parse::<f64>().unwrap();
    assert!(
        t("p.end") <= t("q.start") || t("q.end") <= t("p.start"),
        "-j 1 runs one at a time"
    );
}

#[test]
fn gpu_stages_fall_back_to_cpu_and_explicit_devices_are_strict() {
    let p = Project::new(
        r#"stage g kind=command { gpus 1; run "echo [$CUDA_VISIBLE_DEVICES] > $YIFLOW_OUT/dev" }"#,
    );
    let run = p.yiflow("run", &[]);
    if yiflow_engine_has_no_gpu() {
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.contains("runs on CPU"), "{}", run.stderr);
    }
    let p = Project::new(
        "recipe r { devices \"cuda:7\" }\nstage g kind=command { gpus 1; run \"true\" }",
    );
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cuda:7 is not present"),
        "{}",
        run.stderr
    );
}

fn yiflow_engine_has_no_gpu() -> bool {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .map_or(true, |o| !o.status.success())
}

#[test]
fn ctrl_c_stops_stages_and_records_nothing_partial() {
    let p = Project::new(
        r#"stage long kind=command { run "echo $$ > pid; echo partial > $YIFLOW_OUT/x; sleep 30" }"#,
    );
    let child = p.spawn_run(&[]);
    assert!(wait_for(Duration::from_secs(10), || !p
        .read("pid")
        .is_empty()));
    let pid: u32 = p.read("pid").trim().parse().unwrap();
    common::interrupt(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(10), || !alive(pid)),
        "the stage process was stopped"
    );
    let artifacts = p.path().join(".yiflow/artifacts");
    assert_eq!(
        std::fs::read_dir(&artifacts).map_or(0, Iterator::count),
        0,
        "no partial artifact"
    );
    let status = p.yiflow("status", &[]);
    assert!(status.stdout.contains("cancelled"), "{}", status.stdout);
}

#[test]
fn a_locked_workspace_is_reported_and_readers_keep_working() {
    let p = Project::new(
        r#"
stage first kind=command { run "echo 1 > $YIFLOW_OUT/x" }
stage long kind=command { input first; run "echo started; touch started; sleep 30" }
"#,
    );
    let mut child = p.spawn_run(&[]);
    assert!(wait_for(Duration::from_secs(10), || p
        .path()
        .join("started")
        .exists()));
    let second = p.yiflow("run", &[]);
    assert_eq!(second.code, 2);
    assert!(
        second.stderr.contains(&format!("pid {}", child.id())),
        "{}",
        second.stderr
    );

    // status, plan and log read a snapshot while the run holds the database.
    let running = || {
        let status = p.yiflow("status", &[]);
        assert_eq!(status.code, 0, "{}", status.stderr);
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("long") && l.contains("running"))
    };
    assert!(
        wait_for(Duration::from_secs(5), running),
        "status shows the running stage"
    );
    let status = p.yiflow("status", &[]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("first") && l.contains("succeeded")),
        "{}",
        status.stdout
    );
    let plan = p.yiflow("plan", &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("cached  first"), "{}", plan.stdout);
    let log = p.yiflow("log", &["long"]);
    assert!(log.stdout.contains("started"), "{}", log.stdout);

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_engine_leaves_a_workspace_the_next_run_uses() {
    let p = Project::new(
        r#"
stage first kind=command { run "echo 1 >> marks.first; echo 1 > $YIFLOW_OUT/x" }
stage long kind=command { input first; run "echo $$ > pid; echo 1 >> marks.long; sleep 30; echo done > $YIFLOW_OUT/y" }
"#,
    );
    let mut child = p.spawn_run(&[]);
    assert!(wait_for(Duration::from_secs(10), || !p
        .read("pid")
        .is_empty()));
    let pid: u32 = p.read("pid").trim().parse().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !alive(pid)),
        "the supervisor stopped the orphaned stage"
    );

    p.set_recipe(&p.read("recipe.kdl").replace("sleep 30", "sleep 0"));
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("took over the workspace lock"),
        "{}",
        run.stderr
    );
    assert_eq!(ran(&run), ["long"]);
    assert_eq!(
        p.count_lines("marks.first"),
        1,
        "the completed stage stayed cached"
    );
}

#[test]
fn a_file_edited_while_its_stage_runs_is_not_recorded_as_fresh() {
    let p = Project::new(
        r#"stage s kind=command { files "input.txt"; run "cp input.txt $YIFLOW_OUT/copy; touch started; sleep 1" }"#,
    );
    p.write("input.txt", "one\n");
    let child = p.spawn_run(&[]);
    assert!(wait_for(Duration::from_secs(10), || p
        .path()
        .join("started")
        .exists()));
    p.write("input.txt", "two\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("`input.txt` changed while it ran; result discarded"),
        "{stderr}"
    );
    let a = artifact_of(&p, "s");
    assert_eq!(std::fs::read_to_string(a.join("copy")).unwrap(), "two\n");
}

#[test]
fn usage_errors_exit_2() {
    let p = diamond();
    let run = p.yiflow("run", &["--only", "dd"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("did you mean `d`?"), "{}", run.stderr);
    let missing = Project::new("");
    let out = missing.command(&["run", "nope.kdl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read recipe nope.kdl"));
}

#[test]
fn only_and_force() {
    let p = diamond();
    let run = p.yiflow("run", &["--only", "b"]);
    assert_eq!(ran(&run), ["a", "b"]);
    let run = p.yiflow("run", &["--force", "a"]);
    assert_eq!(ran(&run), ["a", "c", "d"], "{}", run.stderr);
    assert_eq!(
        p.count_lines("marks.b"),
        1,
        "b: a's forced rerun gave the same output"
    );
}

#[test]
fn a_new_file_matching_a_glob_reruns_the_stage() {
    let p = Project::new(
        r#"stage all kind=command { files "data/*.txt"; run "cat data/*.txt > $YIFLOW_OUT/all" }"#,
    );
    p.write("data/a.txt", "a\n");
    assert_eq!(ran(&p.yiflow("run", &[])), ["all"]);
    let again = p.yiflow("run", &[]);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    p.write("data/b.txt", "b\n");
    let run = p.yiflow("run", &[]);
    assert_eq!(ran(&run), ["all"], "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(artifact_of(&p, "all").join("all")).unwrap(),
        "a\nb\n"
    );
}

#[test]
fn env_settings_and_input_names_reach_the_command() {
    let p = Project::new(
        r#"
stage raw-data kind=command { run "echo raw > $YIFLOW_OUT/x" }
stage use kind=command {
    input raw-data
    env GREETING="hello world" LEVEL="3"
    run "echo \"$GREETING $LEVEL $(cat $YIFLOW_IN_raw_data/x)\" > $YIFLOW_OUT/y"
}
"#,
    );
    let run = p.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(artifact_of(&p, "use").join("y")).unwrap(),
        "hello world 3 raw\n"
    );
    p.set_recipe(&p.read("recipe.kdl").replace("LEVEL=\"3\"", "LEVEL=\"4\""));
    let v = verdicts(&p);
    assert_eq!(v[1].2, ["param `env.LEVEL` \"3\" -> \"4\""]);
}
