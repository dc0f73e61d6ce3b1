//! What the benches share: the generated store `cargo bench --bench detect`
//! builds, and fresh copies of it for benches that change what they open.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The store `cargo bench --bench detect` builds for `accounts` accounts
/// (with its accounts file beside it).
pub fn detect_store(accounts: u64) -> PathBuf {
    PathBuf::from(format!("bench-out/detect-people-{accounts}"))
}

/// A fresh copy of that store under `bench-out/NAME-N` (the copy of
/// each file in `files` too: `lull.db`, `accounts.toml`), so a bench never
/// changes the detect bench's store. Returns (source, copy).
pub fn copy_store(accounts: u64, name: &str, files: &[&str]) -> (PathBuf, PathBuf) {
    let src = detect_store(accounts);
    assert!(
        src.join("lull.db").exists(),
        "no store at {}: run `cargo bench --bench detect -- --phase build {accounts}` first",
        src.display()
    );
    let work = PathBuf::from(format!("bench-out/{name}-{accounts}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let ok = Command::new("cp")
        .arg("-r")
        .args(files.iter().map(|f| src.join(f)))
        .arg(&work)
        .status()
        .expect("cp");
    assert!(ok.success(), "copying {} failed", src.display());
    (src, work)
}

/// `path` as text, for format strings.
pub fn text(path: &Path) -> String {
    path.display().to_string()
}
