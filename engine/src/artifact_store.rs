//! Artifacts by content: a stage writes into a fresh folder under `tmp/`, and [`ArtifactStore::commit`]
//! hashes what it wrote, makes it read-only and renames it to `artifacts/<content hash>/` in one step,
//! so a folder there is always complete. Identical outputs share one folder, which is what lets a
//! rerun that produced the same bytes leave its dependents cached. [`ArtifactStore::verify`] notices an
//! artifact edited, deleted or added to behind the engine's back, with a `stat` per file when nothing
//! changed.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::file_hasher::{hash_reader, mtime_ns};
use crate::{FileEntry, Manifest, StoreError};

/// The folder of complete artifacts, `<ws>/artifacts`.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// What [`ArtifactStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Every file is there, unchanged, and nothing else.
    Intact,
    /// The artifact's folder is gone.
    Missing,
    /// What differs, one line each: `path (deleted)`, `path (added)`, `path (changed)`, ...
    Modified(Vec<String>),
}

/// A file or folder met while walking an artifact.
enum Found {
    File(Metadata),
    /// Something an artifact may not hold, and what it is.
    Other(&'static str),
}

impl ArtifactStore {
    pub fn new(root: PathBuf) -> Self {
        ArtifactStore { root }
    }

    /// The `artifacts/` folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact with this content hash lives (whether or not it exists).
    pub fn path(&self, content_hash: &str) -> PathBuf {
        self.root.join(content_hash)
    }

    /// Every regular file below `dir`, sorted by path, with its blake3, size, executable bit and
    /// stamp. Symbolic links and special files are refused: an artifact must not depend on anything
    /// outside it.
    pub fn scan(dir: &Path) -> Result<Vec<FileEntry>, StoreError> {
        Ok(scan_tree(dir)?.0)
    }

    /// The artifact's identity: blake3 over the sorted (path, executable, hash) of its files, so
    /// mtimes, inodes and the order given never matter.
    pub fn content_hash(files: &[FileEntry]) -> String {
        let mut sorted: Vec<&FileEntry> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"yiflow artifact v1\n");
        for file in sorted {
            // Length-prefixed, so no path can be confused with another path plus a hash.
            hasher.update(&(file.path.len() as u64).to_le_bytes());
            hasher.update(file.path.as_bytes());
            hasher.update(&[u8::from(file.executable)]);
            hasher.update(file.hash.as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }

    /// Moves the complete output folder `out_dir` (on the same file system, e.g. under `tmp/`) into
    /// the store, read-only, and returns its content hash and files (stamped as they are in the
    /// store). When the store already holds the same content, `out_dir` is deleted instead.
    pub fn commit(&self, out_dir: &Path) -> Result<(String, Vec<FileEntry>), StoreError> {
        let (entries, subdirs) = scan_tree(out_dir)?;
        let hash = Self::content_hash(&entries);
        fs::create_dir_all(&self.root).map_err(|e| StoreError::io("create", &self.root, e))?;
        let target = self.path(&hash);
        if fs::symlink_metadata(&target).is_ok() {
            return self.adopt_existing(out_dir, &hash, entries);
        }
        make_read_only(out_dir, &entries, &subdirs)?;
        // The top folder stays writable until it has moved: renaming a folder to a new parent
        // rewrites its `..` entry, which needs write permission on it.
        match fs::rename(out_dir, &target) {
            Ok(()) => {}
            // Two stages of one run produced the same bytes at the same moment.
            Err(_) if fs::symlink_metadata(&target).is_ok() => {
                return self.adopt_existing(out_dir, &hash, entries);
            }
            Err(e) => return Err(StoreError::io("move", out_dir, e)),
        }
        set_mode(&target, 0o555)?;
        Ok((hash, entries))
    }

    /// `target` already exists: keep it if it holds this content (and drop `out_dir`), or replace it.
    fn adopt_existing(
        &self,
        out_dir: &Path,
        hash: &str,
        entries: Vec<FileEntry>,
    ) -> Result<(String, Vec<FileEntry>), StoreError> {
        let target = self.path(hash);
        if let Ok(existing) = Self::scan(&target)
            && Self::content_hash(&existing) == hash
        {
            remove_tree(out_dir)?;
            return Ok((hash.to_owned(), existing));
        }
        tracing::warn!(
            "replacing {}: it does not hold the content its name says",
            target.display()
        );
        remove_tree(&target)?;
        let (_, subdirs) = scan_tree(out_dir)?;
        make_read_only(out_dir, &entries, &subdirs)?;
        fs::rename(out_dir, &target).map_err(|e| StoreError::io("move", out_dir, e))?;
        set_mode(&target, 0o555)?;
        Ok((hash.to_owned(), entries))
    }

    /// Whether the artifact of `manifest` is on disk exactly as recorded. A file whose size, mtime and
    /// inode match the manifest is trusted without reading it; one whose stamp changed is read, and
    /// passes if its content still hashes the same.
    pub fn verify(&self, manifest: &Manifest) -> Verify {
        self.check(manifest).0
    }

    /// [`ArtifactStore::verify`], and where a file's stamp changed but its content did not (the
    /// workspace was copied, or restored from a backup), the new stamp goes into `manifest`, so
    /// that storing it again makes the next check stat-only. Returns whether `manifest` changed.
    pub fn verify_restamp(&self, manifest: &mut Manifest) -> (Verify, bool) {
        let (verdict, restamped) = self.check(manifest);
        if verdict != Verify::Intact || restamped.is_empty() {
            return (verdict, false);
        }
        for (i, mtime_ns, ino) in restamped {
            manifest.files[i].mtime_ns = mtime_ns;
            manifest.files[i].ino = ino;
        }
        (verdict, true)
    }

    /// The verdict, and the (index, mtime, inode) of files that were read and found unchanged.
    fn check(&self, manifest: &Manifest) -> (Verify, Vec<(usize, i128, u64)>) {
        let dir = self.path(&manifest.content_hash);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return (Verify::Missing, Vec::new()),
            Err(e) if e.kind() == ErrorKind::NotFound => return (Verify::Missing, Vec::new()),
            Err(e) => {
                let problem = format!("cannot read {}: {e}", dir.display());
                return (Verify::Modified(vec![problem]), Vec::new());
            }
        }
        let mut found = match walk_metadata(&dir) {
            Ok(found) => found,
            Err(e) => return (Verify::Modified(vec![e.to_string()]), Vec::new()),
        };
        let mut problems = Vec::new();
        let mut restamped = Vec::new();
        for (i, entry) in manifest.files.iter().enumerate() {
            let meta = match found.remove(&entry.path) {
                None => {
                    problems.push(format!("{} (deleted)", entry.path));
                    continue;
                }
                Some(Found::Other(what)) => {
                    problems.push(format!("{} (now {what})", entry.path));
                    continue;
                }
                Some(Found::File(meta)) => meta,
            };
            if meta.len() != entry.size {
                problems.push(format!("{} (changed)", entry.path));
            } else if is_executable(&meta) != entry.executable {
                problems.push(format!("{} (permissions changed)", entry.path));
            } else if mtime_ns(&meta) == entry.mtime_ns && meta.ino() == entry.ino {
                // Unchanged stamp: trusted without a read.
            } else if content_matches(&dir.join(&entry.path), &entry.hash) {
                restamped.push((i, mtime_ns(&meta), meta.ino()));
            } else {
                problems.push(format!("{} (changed)", entry.path));
            }
        }
        problems.extend(found.into_keys().map(|path| format!("{path} (added)")));
        if problems.is_empty() {
            (Verify::Intact, restamped)
        } else {
            (Verify::Modified(problems), restamped)
        }
    }

    /// Deletes the artifact with this content hash (nothing to do when it is gone).
    pub fn remove(&self, content_hash: &str) -> Result<(), StoreError> {
        let mut components = Path::new(content_hash).components();
        if !matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(StoreError::io(
                "remove",
                self.root.join(content_hash),
                std::io::Error::new(ErrorKind::InvalidInput, "not an artifact name"),
            ));
        }
        remove_tree(&self.path(content_hash))
    }

    /// Names of the folders in the store (content hashes, or leftovers that are not).
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read", &self.root, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read", &self.root, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// Files (hashed) and sub-folders below `dir`.
fn scan_tree(dir: &Path) -> Result<(Vec<FileEntry>, Vec<PathBuf>), StoreError> {
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = pending.pop() {
        for entry in fs::read_dir(&abs).map_err(|e| StoreError::io("read", &abs, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", &abs, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(StoreError::Unsupported {
                    what: "a file name that is not UTF-8",
                    path,
                });
            };
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| StoreError::io("read", &path, e))?;
            if kind.is_dir() {
                subdirs.push(path.clone());
                pending.push((path, rel));
            } else if kind.is_file() {
                files.push(hash_entry(&path, rel)?);
            } else {
                return Err(StoreError::Unsupported {
                    what: other_kind(kind),
                    path,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, subdirs))
}

fn hash_entry(path: &Path, rel: String) -> Result<FileEntry, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io("read", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| StoreError::io("read", path, e))?;
    let hash = hash_reader(&mut file, meta.len(), path)?;
    Ok(FileEntry {
        path: rel,
        size: meta.len(),
        hash,
        executable: is_executable(&meta),
        mtime_ns: mtime_ns(&meta),
        ino: meta.ino(),
    })
}

/// Metadata of everything below `dir`, by `/`-separated relative path, without reading files.
fn walk_metadata(dir: &Path) -> Result<BTreeMap<String, Found>, StoreError> {
    let mut found = BTreeMap::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = pending.pop() {
        for entry in fs::read_dir(&abs).map_err(|e| StoreError::io("read", &abs, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", &abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| StoreError::io("read", &path, e))?;
            if meta.is_dir() {
                pending.push((path, rel));
            } else if meta.is_file() {
                found.insert(rel, Found::File(meta));
            } else {
                found.insert(rel, Found::Other(other_kind(meta.file_type())));
            }
        }
    }
    Ok(found)
}

fn other_kind(kind: fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file (socket, fifo or device)"
    }
}

fn content_matches(path: &Path, hash: &str) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    hash_reader(&mut file, size, path).is_ok_and(|h| h == hash)
}

fn is_executable(meta: &Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| StoreError::io("change permissions of", path, e))
}

/// Files 0444 (0555 when executable) and sub-folders 0555; `dir` itself is left alone.
fn make_read_only(dir: &Path, files: &[FileEntry], subdirs: &[PathBuf]) -> Result<(), StoreError> {
    for file in files {
        let mode = if file.executable { 0o555 } else { 0o444 };
        set_mode(&dir.join(&file.path), mode)?;
    }
    for subdir in subdirs {
        set_mode(subdir, 0o555)?;
    }
    Ok(())
}

/// Deletes a file or folder tree, giving folders their write bit back first (artifacts are
/// read-only). Nothing to do when it is gone.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("remove", path, e)),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(|e| StoreError::io("remove", path, e));
    }
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        set_mode(&dir, 0o755)?;
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("read", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", &dir, e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    fs::remove_dir_all(path).map_err(|e| StoreError::io("remove", path, e))
}

/// Bytes in the files below `path` (0 when it is gone).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, SystemTime};

    use serde_json::Value;

    use super::*;

    fn store() -> (tempfile::TempDir, ArtifactStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path().join("artifacts"));
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        (dir, store)
    }

    /// A stage's output folder with a nested file and an executable.
    fn output(ws: &Path, name: &str, extra: &str) -> PathBuf {
        let out = ws.join("tmp").join(name);
        fs::create_dir_all(out.join("sub/deeper")).unwrap();
        fs::create_dir_all(out.join("empty")).unwrap();
        fs::write(out.join("a.txt"), format!("alpha{extra}")).unwrap();
        fs::write(out.join("sub/deeper/b.bin"), [0u8, 1, 2, 3]).unwrap();
        fs::write(out.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(out.join("run.sh"), Permissions::from_mode(0o755)).unwrap();
        out
    }

    fn manifest(hash: &str, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            content_hash: hash.to_owned(),
            files,
            stage: "s".into(),
            kind: "command".into(),
            fingerprint: "f".repeat(64),
            key: Value::Null,
            started_at: 0,
            duration_ms: 0,
            log: None,
            metrics: Value::Null,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Edits a stored (read-only) file in place, as a user with a text editor might.
    fn edit(path: &Path, content: &[u8], mtime: Option<SystemTime>) {
        fs::set_permissions(path, Permissions::from_mode(0o644)).unwrap();
        let mut file = File::options()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.write_all(content).unwrap();
        if let Some(mtime) = mtime {
            file.set_modified(mtime).unwrap();
        }
        let mode = if is_executable(&file.metadata().unwrap()) {
            0o555
        } else {
            0o444
        };
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn commit_then_verify_roundtrip() {
        let (ws, store) = store();
        let out = output(ws.path(), "run-1", "");
        let (hash, files) = store.commit(&out).unwrap();
        assert!(!out.exists(), "the output folder moved into the store");
        let dir = store.path(&hash);
        assert_eq!(hash.len(), 64);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "run.sh", "sub/deeper/b.bin"]);
        assert!(files[1].executable && !files[0].executable);
        assert_eq!(files[0].hash, blake3::hash(b"alpha").to_hex().to_string());
        assert_eq!(files[0].size, 5);
        for file in &files {
            let meta = fs::metadata(dir.join(&file.path)).unwrap();
            assert_eq!((mtime_ns(&meta), meta.ino()), (file.mtime_ns, file.ino));
        }
        assert_eq!(mode(&dir.join("a.txt")), 0o444);
        assert_eq!(mode(&dir.join("run.sh")), 0o555);
        assert_eq!(mode(&dir.join("sub/deeper")), 0o555);
        assert_eq!(mode(&dir), 0o555);
        assert_eq!(ArtifactStore::content_hash(&files), hash);
        assert_eq!(store.verify(&manifest(&hash, files)), Verify::Intact);
    }

    #[test]
    fn content_hash_ignores_stamps_and_order_but_not_the_executable_bit() {
        let entry = |path: &str, exec: bool, mtime_ns: i128| FileEntry {
            path: path.into(),
            size: 1,
            hash: "ab".repeat(32),
            executable: exec,
            mtime_ns,
            ino: mtime_ns as u64,
        };
        let a = [entry("x", false, 1), entry("y", true, 2)];
        let b = [entry("y", true, 9), entry("x", false, 7)];
        assert_eq!(
            ArtifactStore::content_hash(&a),
            ArtifactStore::content_hash(&b)
        );
        let c = [entry("x", true, 1), entry("y", true, 2)];
        assert_ne!(
            ArtifactStore::content_hash(&a),
            ArtifactStore::content_hash(&c)
        );
    }

    #[test]
    fn identical_outputs_share_one_folder() {
        let (ws, store) = store();
        let (first, files) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let second_out = output(ws.path(), "run-2", "");
        let (second, second_files) = store.commit(&second_out).unwrap();
        assert_eq!(first, second);
        assert!(!second_out.exists(), "the duplicate output was deleted");
        assert_eq!(files, second_files, "stamps are those of the stored files");
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&first));
        let (third, _) = store.commit(&output(ws.path(), "run-3", "!")).unwrap();
        assert_ne!(first, third);
        assert_eq!(store.list().unwrap().len(), 2);
    }

    #[test]
    fn a_same_size_edit_with_a_new_mtime_is_detected() {
        let (ws, store) = store();
        let (hash, files) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        edit(&store.path(&hash).join("a.txt"), b"ALPHA", Some(later));
        assert_eq!(
            store.verify(&manifest(&hash, files)),
            Verify::Modified(vec!["a.txt (changed)".into()])
        );
    }

    #[test]
    fn a_touched_but_unchanged_file_still_verifies_and_can_be_restamped() {
        let (ws, store) = store();
        let (hash, files) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        let path = store.path(&hash).join("a.txt");
        edit(&path, b"alpha", Some(later));
        let mut manifest = manifest(&hash, files);
        assert_eq!(store.verify(&manifest), Verify::Intact);

        assert_eq!(store.verify_restamp(&mut manifest), (Verify::Intact, true));
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(manifest.files[0].mtime_ns, mtime_ns(&meta));
        assert_eq!(store.verify_restamp(&mut manifest), (Verify::Intact, false));
        // Restamped, it is trusted by its stamp again: a same-size edit with the mtime put back
        // goes unread.
        edit(&path, b"ALPHA", Some(later));
        assert_eq!(store.verify(&manifest), Verify::Intact);
    }

    #[test]
    fn matching_stamps_are_trusted_without_reading() {
        let (ws, store) = store();
        let (hash, files) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let path = store.path(&hash).join("a.txt");
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        // Same size, inode and mtime: only a read could tell, and verify must not read.
        edit(&path, b"ALPHA", Some(mtime));
        assert_eq!(store.verify(&manifest(&hash, files)), Verify::Intact);
    }

    #[test]
    fn a_deleted_file_an_added_file_and_a_deleted_folder_are_detected() {
        let (ws, store) = store();
        let (hash, files) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let dir = store.path(&hash);
        let manifest = manifest(&hash, files);
        fs::set_permissions(dir.join("sub/deeper"), Permissions::from_mode(0o755)).unwrap();
        fs::remove_file(dir.join("sub/deeper/b.bin")).unwrap();
        assert_eq!(
            store.verify(&manifest),
            Verify::Modified(vec!["sub/deeper/b.bin (deleted)".into()])
        );
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("new.txt"), "surprise").unwrap();
        assert_eq!(
            store.verify(&manifest),
            Verify::Modified(vec![
                "sub/deeper/b.bin (deleted)".into(),
                "new.txt (added)".into()
            ])
        );
        store.remove(&hash).unwrap();
        assert!(!dir.exists());
        assert_eq!(store.verify(&manifest), Verify::Missing);
    }

    #[test]
    fn symlinks_are_refused_with_the_path() {
        let (ws, store) = store();
        let out = output(ws.path(), "run-1", "");
        std::os::unix::fs::symlink("/etc/hostname", out.join("link")).unwrap();
        let error = store.commit(&out).unwrap_err();
        assert!(matches!(error, StoreError::Unsupported { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("a symbolic link") && text.contains("run-1/link"),
            "{text}"
        );
        assert!(out.exists(), "a refused output stays where it was");
    }

    #[test]
    fn a_corrupt_folder_under_the_right_name_is_replaced() {
        let (ws, store) = store();
        let (hash, _) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        let dir = store.path(&hash);
        edit(&dir.join("a.txt"), b"bogus", None);
        let (again, files) = store.commit(&output(ws.path(), "run-2", "")).unwrap();
        assert_eq!(again, hash);
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(store.verify(&manifest(&hash, files)), Verify::Intact);
    }

    #[test]
    fn remove_deletes_read_only_trees_and_rejects_paths() {
        let (ws, store) = store();
        let (hash, _) = store.commit(&output(ws.path(), "run-1", "")).unwrap();
        assert!(tree_size(&store.path(&hash)) > 0);
        store.remove(&hash).unwrap();
        assert!(!store.path(&hash).exists());
        store.remove(&hash).unwrap();
        assert!(store.remove("../tmp").is_err());
        assert!(ws.path().join("tmp").exists());
    }
}
