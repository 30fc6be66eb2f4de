//! House rules checked as tests: every Rust file says what it is for in a `//!` line.

use std::path::Path;

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for dir in ["src", "tests", "xtask/src"] {
        for e in walkdir::WalkDir::new(root.join(dir)) {
            let e = e.unwrap();
            if e.path().extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                if !text.starts_with("//!") {
                    missing.push(e.path().strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}
