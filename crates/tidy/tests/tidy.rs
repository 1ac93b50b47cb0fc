//! Tidy: enforces rules that reviews would otherwise have to catch, over the whole tree.
//!
//! - every Rust file opens with a `//!` line saying what it is for;
//! - the pure crates never depend on tokio and never read the clock or global randomness;
//! - tests never use `#[ignore]`, `#[should_panic]` or `assert!(true)`;
//! - library code has no `.unwrap()`, and `.expect(` only with a comment proving it safe.

use std::fs;
use std::path::{Path, PathBuf};

/// Crates that must stay sans-IO: no tokio, no clock, no global randomness.
const PURE_CRATES: &[&str] = &["wire", "routing", "sim", "crdt", "heal", "session"];

/// Source patterns a pure crate must not contain.
const IMPURE_PATTERNS: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::rng",
    "tokio",
    "std::net::",
    "std::thread::spawn",
];

/// Marker that allows one clock read in a pure crate: the simulator measures its own wall time.
const WALL_CLOCK_ALLOWANCE: &str = "tidy: wall-clock measurement only";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "fuzz", "bench"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} Rust files; is the walk broken?",
        files.len()
    );
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let offenders: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            let first = text
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(
        offenders.is_empty(),
        "files without a leading `//!` line: {offenders:#?}"
    );
}

#[test]
fn pure_crates_do_no_io_and_read_no_clock() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    for krate in PURE_CRATES {
        let dir = root.join("crates").join(krate);
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("pure crate manifest");
        let dependencies = manifest.split("[dev-dependencies]").next().unwrap_or("");
        if dependencies.contains("tokio") {
            offenders.push(format!("crates/{krate}/Cargo.toml depends on tokio"));
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for path in files {
            let text = fs::read_to_string(&path).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for pattern in IMPURE_PATTERNS {
                    if code.contains(pattern) && !line.contains(WALL_CLOCK_ALLOWANCE) {
                        offenders.push(format!("{}:{}: {pattern}", relative(&path), number + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "pure crates must not do I/O or read clocks: {offenders:#?}"
    );
}

#[test]
fn tests_cannot_be_silenced() {
    let banned = ["#[ignore", "#[should_panic", "assert!(true"];
    let mut offenders = Vec::new();
    for path in all_rust_files() {
        if path.ends_with("tidy.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            for pattern in banned {
                if line.contains(pattern) {
                    offenders.push(format!("{}:{}: {pattern}", relative(&path), number + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "silenced or empty tests: {offenders:#?}"
    );
}

/// Library code: files under `crates/*/src`, up to the first `#[cfg(test)]`.
#[test]
fn library_code_does_not_unwrap() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let mut offenders = Vec::new();
    for path in files {
        let text = relative(&path);
        if !text.contains("/src/") || text.starts_with("crates/tidy/") {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = source
            .lines()
            .take_while(|line| !line.contains("#[cfg(test)]"))
            .collect();
        for (index, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".unwrap()") {
                offenders.push(format!("{}:{}: unwrap", text, index + 1));
            }
            if code.contains(".expect(") {
                let justified = lines[index.saturating_sub(3)..=index]
                    .iter()
                    .any(|l| l.contains("//"));
                if !justified {
                    offenders.push(format!(
                        "{}:{}: expect without a comment saying why it holds",
                        text,
                        index + 1
                    ));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code must not panic on errors: {offenders:#?}"
    );
}
