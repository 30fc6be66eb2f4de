//! House rules checked as tests: every Rust file says what it is for in a `//!` line, only
//! `src/registry/` talks to the network, only the binary knows clap, and no function in `src/`
//! is longer than [`MAX_FN_LINES`].

use std::path::{Path, PathBuf};

/// The longest a function in `src/` may be, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 120;

/// Functions longer than [`MAX_FN_LINES`] today: file, function, and its length now. The list
/// may only shrink: an entry fails the test when its function grows, and when it is no longer
/// too long (then the entry goes).
const LONG_FNS: &[(&str, &str, usize)] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir` (relative to the workspace root), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root().join(dir))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let mut missing = Vec::new();
    for dir in ["src", "tests", "xtask/src"] {
        for path in rust_files(dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.starts_with("//!") {
                missing.push(relative(&path));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

/// Words in code (comments and string literals aside) under `src/` outside `allowed`.
fn uses_outside(words: &[&str], allowed: &str) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files("src") {
        let rel = relative(&path);
        if rel.starts_with(allowed) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for (n, line) in code.lines().enumerate() {
            for word in words {
                if contains_word(line, word) {
                    found.push(format!("{rel}:{}: {word}", n + 1));
                }
            }
        }
    }
    found
}

/// Whether `word` occurs in `line` with no identifier character on either side.
fn contains_word(line: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    line.match_indices(word).any(|(i, _)| {
        !ident(line[..i].chars().next_back()) && !ident(line[i + word.len()..].chars().next())
    })
}

#[test]
fn only_the_registry_client_touches_the_network() {
    let found = uses_outside(
        &[
            "reqwest",
            "hyper",
            "tokio::net",
            "socket2",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "ToSocketAddrs",
        ],
        "src/registry/",
    );
    assert!(
        found.is_empty(),
        "network code outside src/registry/: {found:#?}"
    );
}

#[test]
fn only_the_binary_knows_clap() {
    let found = uses_outside(&["clap"], "src/bin/");
    assert!(found.is_empty(), "clap outside src/bin/: {found:#?}");
}

/// The library's layers, lowest first, and what each may import (besides itself).
const LAYERS: &[(&str, &[&str])] = &[
    ("src/oci/", &[]),
    (
        "src/bundle/",
        &["oci", "parallel", "progress", "error_chain"],
    ),
    ("src/signing", &["oci"]),
    (
        "src/registry/",
        &["oci", "bundle", "progress", "error_chain"],
    ),
    ("src/values/", &["oci", "bundle"]),
    ("src/egress/", &["oci", "bundle", "values", "parallel"]),
    (
        "src/images/",
        &["oci", "bundle", "values", "egress", "parallel", "progress"],
    ),
];

#[test]
fn imports_only_go_downwards() {
    let mut upward = Vec::new();
    for path in rust_files("src") {
        let file = relative(&path);
        let Some((layer, allowed)) = LAYERS.iter().find(|(l, _)| file.starts_with(l)) else {
            continue;
        };
        let own = layer.trim_start_matches("src/").trim_end_matches('/');
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let module: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if module != own && !allowed.contains(&module.as_str()) {
                    upward.push(format!("{file}:{}: crate::{module}", n + 1));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering: {upward:#?}"
    );
}

#[test]
fn functions_are_short() {
    let mut too_long = Vec::new();
    for path in rust_files("src") {
        let rel = relative(&path);
        for f in functions(&std::fs::read_to_string(&path).unwrap()) {
            if f.lines > MAX_FN_LINES {
                too_long.push((rel.clone(), f.name, f.lines));
            }
        }
    }
    let mut problems = Vec::new();
    for (file, name, lines) in &too_long {
        match LONG_FNS.iter().find(|(f, n, _)| f == file && n == name) {
            None => problems.push(format!(
                "{file}: fn {name} has {lines} lines (at most {MAX_FN_LINES}): split it"
            )),
            Some((_, _, was)) if lines > was => problems.push(format!(
                "{file}: fn {name} grew from {was} to {lines} lines (at most {MAX_FN_LINES})"
            )),
            Some(_) => {}
        }
    }
    for (file, name, was) in LONG_FNS {
        if !too_long.iter().any(|(f, n, _)| f == file && n == name) {
            problems.push(format!(
                "{file}: fn {name} (was {was} lines) is no longer over {MAX_FN_LINES} lines or is \
                 gone: remove it from LONG_FNS"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A function found in source text.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    /// Lines from the `fn` keyword to the closing brace, both included.
    lines: usize,
}

/// Every function with a body in `text` (nested ones too), by brace matching on the text with
/// comments and literals blanked out.
fn functions(text: &str) -> Vec<Function> {
    let code: Vec<char> = code_only(text).chars().collect();
    let line_at = |i: usize| code[..i].iter().filter(|&&c| c == '\n').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < code.len() {
        let starts_fn = code[i] == 'f'
            && code[i + 1] == 'n'
            && code[i + 2].is_whitespace()
            && (i == 0 || !(code[i - 1].is_alphanumeric() || code[i - 1] == '_'));
        if !starts_fn {
            i += 1;
            continue;
        }
        let name: String = code[i + 2..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // The body starts at the first `{` outside parentheses and angle brackets; a `;`
        // first means a declaration without a body.
        let mut j = i + 2;
        let mut depth = 0i32;
        while j < code.len() {
            match code[j] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '{' if depth == 0 => break,
                ';' if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if j < code.len() && code[j] == '{' {
            let mut braces = 0;
            let mut k = j;
            while k < code.len() {
                match code[k] {
                    '{' => braces += 1,
                    '}' => {
                        braces -= 1;
                        if braces == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            out.push(Function {
                name,
                lines: line_at(k.min(code.len() - 1)) - line_at(i) + 1,
            });
        }
        i += 2;
    }
    out
}

/// `text` with comments, string literals and char literals replaced by spaces (line breaks
/// kept), so that braces and words in them do not count.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < c.len() {
        let rest = &c[i..];
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment_len(rest)
        } else if let Some(n) = raw_string_len(rest, i > 0 && is_ident(c[i - 1])) {
            n
        } else if rest[0] == '"' {
            quoted_len(rest, '"')
        } else if rest[0] == '\'' {
            char_literal_len(rest).unwrap_or(0)
        } else {
            0
        };
        if end == 0 {
            out.push(rest[0]);
            i += 1;
        } else {
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Length of a (nested) block comment starting at `s[0]`.
fn block_comment_len(s: &[char]) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i + 1 < s.len() {
        if s[i] == '/' && s[i + 1] == '*' {
            depth += 1;
            i += 2;
        } else if s[i] == '*' && s[i + 1] == '/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// Length of a string literal with escapes, opening quote at `s[0]`.
fn quoted_len(s: &[char], quote: char) -> usize {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            ch if ch == quote => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// Length of a raw string (`r"…"`, `r#"…"#`, `br#"…"#`) starting at `s[0]`, if one does.
fn raw_string_len(s: &[char], after_ident: bool) -> Option<usize> {
    if after_ident {
        return None;
    }
    let start = match s {
        ['r', ..] => 1,
        ['b', 'r', ..] => 2,
        _ => return None,
    };
    let hashes = s[start..].iter().take_while(|&&ch| ch == '#').count();
    if s.get(start + hashes) != Some(&'"') {
        return None;
    }
    let body = start + hashes + 1;
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    (body..s.len())
        .find(|&i| s[i..].starts_with(&close))
        .map(|i| i + close.len())
        .or(Some(s.len()))
}

/// Length of a char literal (`'x'`, `'\n'`, `'\u{1F600}'`) at `s[0]`; `None` for a lifetime.
fn char_literal_len(s: &[char]) -> Option<usize> {
    match s {
        ['\'', '\\', ..] => Some(quoted_len(s, '\'')),
        ['\'', _, '\'', ..] => Some(3),
        _ => None,
    }
}

#[test]
fn the_function_finder_sees_through_literals_and_comments() {
    let text = "fn a() {\n    let s = \"}{\";\n    let c = '}';\n    // }\n    /* { /* } */ */\n    let r = r#\"}\"#;\n}\nfn b<'x>(v: &'x [u8; 2]) -> u8 { v[0] }\nfn decl();\n";
    assert_eq!(
        functions(text),
        vec![
            Function {
                name: "a".into(),
                lines: 7
            },
            Function {
                name: "b".into(),
                lines: 1
            },
        ]
    );
    assert!(contains_word("use reqwest::Client;", "reqwest"));
    assert!(!contains_word("let reqwests = 1;", "reqwest"));
}
