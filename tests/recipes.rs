//! The recipes shipped in recipes/ stay valid: `yiflow check` accepts them as a user would run them.

use std::path::Path;
use std::process::Command;

fn check(recipe: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yiflow"))
        .args(["check".as_ref(), recipe.as_os_str()])
        .env("NO_COLOR", "1")
        .output()
        .expect("yiflow runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read recipes") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_quickstart_recipe_is_valid() {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/quickstart.kdl");
    let (code, stderr) = check(&recipe);
    assert_eq!(code, 0, "{stderr}");
}

/// The GPU-scale recipe reads corpora the repository does not ship: with them in place (empty files
/// stand in here) it is valid, and without them `check` names the globs that match nothing.
#[test]
fn the_yi_lightning_recipe_is_valid_once_its_data_is_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes"),
        dir.path(),
    );
    let recipe = dir.path().join("yi-lightning.kdl");
    let (code, stderr) = check(&recipe);
    assert_eq!(code, 2, "data/ is missing, so check must fail: {stderr}");
    assert!(stderr.contains("data/web/*.jsonl.gz"), "{stderr}");

    for file in [
        "data/web/part-0.jsonl.gz",
        "data/web/part-0.parquet",
        "data/books/part-0.jsonl.gz",
        "data/code/part-0.jsonl.gz",
        "data/zh/part-0.jsonl.gz",
        "data/evals/gsm8k.jsonl",
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"").expect("placeholder");
    }
    let (code, stderr) = check(&recipe);
    assert_eq!(code, 0, "{stderr}");
}
