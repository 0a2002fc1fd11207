//! The README's Rust snippets compile as written, with the dependencies
//! listed beside them.
//!
//! Each ```rust block is preceded by `<!-- snippet: PATH -->`, naming a file
//! that `cargo test --all-features` builds (an example or a test). This test
//! checks, without building anything:
//!
//! - the block is that file word for word, after its leading `//!` lines;
//! - a ```toml block between the previous snippet and this one lists every
//!   crate the snippet names (`use axum::…`, `tokio::main`, …), and with a
//!   version requirement compatible with the one this crate builds against
//!   (so the README cannot say axum 0.7 while the code is for 0.8).

use std::collections::BTreeMap;
use std::path::Path;

/// The repository root: the README is the workspace's, and snippet paths
/// are relative to it.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

struct Snippet {
    path: String,
    code: String,
    /// Crate name (with `-`) → version requirement, from the toml block.
    listed: BTreeMap<String, String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `name = "1"` or `name = { version = "1", ... }` → (name, "1").
fn dependency_line(line: &str) -> Option<(String, String)> {
    let (name, spec) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.starts_with('[') || name.starts_with('#') {
        return None;
    }
    let spec = spec.trim();
    let version = if let Some(rest) = spec.strip_prefix('"') {
        rest.split('"').next()?
    } else {
        let at = spec.find("version")?;
        spec[at..].split('"').nth(1)?
    };
    Some((name.to_owned(), version.to_owned()))
}

fn snippets(readme: &str) -> Vec<Snippet> {
    let mut found = Vec::new();
    let mut listed = BTreeMap::new();
    let mut marker: Option<String> = None;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(path) = line
            .strip_prefix("<!-- snippet: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            marker = Some(path.to_owned());
        } else if line.starts_with("```toml") {
            for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                if let Some((name, version)) = dependency_line(line) {
                    listed.insert(name, version);
                }
            }
        } else if line.starts_with("```rust") {
            let code: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            let path = marker.take().unwrap_or_else(|| {
                panic!(
                    "a ```rust block without `<!-- snippet: PATH -->` before it:\n{}",
                    code.join("\n")
                )
            });
            found.push(Snippet {
                path,
                code: code.join("\n") + "\n",
                listed: std::mem::take(&mut listed),
            });
        } else if line.starts_with("```") {
            // Another block (sh, text): skip it whole.
            lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .for_each(drop);
        } else if !line.trim().is_empty() && marker.is_some() {
            panic!(
                "`<!-- snippet: … -->` must come right before its ```rust block, found {line:?}"
            );
        }
    }
    found
}

/// The file's code: everything after the leading `//!` lines and the blank
/// line that ends them.
fn code_of(file: &str) -> String {
    let mut lines = file.lines().peekable();
    while lines.peek().is_some_and(|l| l.starts_with("//!")) {
        lines.next();
    }
    while lines.peek().is_some_and(|l| l.trim().is_empty()) {
        lines.next();
    }
    lines.collect::<Vec<_>>().join("\n") + "\n"
}

/// The crates `code` names: the roots of its `use` statements, and of other
/// paths (`#[tokio::main]`, `axum::serve`) unless imported by a `use`.
fn crates_named(code: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut roots = Vec::new();
    let mut imported = Vec::new();
    let mut rest = Vec::new();
    let mut in_use = false;
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        if let Some(path) = line.trim_start().strip_prefix("use ") {
            roots.push(path.split("::").next().unwrap_or_default().to_owned());
            in_use = true;
        }
        if in_use {
            imported.extend(line.split(|c: char| !is_ident(c)).map(str::to_owned));
            in_use = !line.contains(';');
        } else {
            rest.push(line);
        }
    }
    for line in rest {
        let mut i = 0;
        while let Some(at) = line[i..].find("::") {
            let end = i + at;
            let start = line[..end]
                .rfind(|c: char| !is_ident(c))
                .map_or(0, |p| p + 1);
            // Not the tail of a path, nor a method's turbofish (`.get::<T>()`).
            if !line[..start].ends_with("::") && !line[..start].ends_with('.') {
                roots.push(line[start..end].to_owned());
            }
            i = end + 2;
        }
    }
    let mut crates: Vec<String> = roots
        .into_iter()
        .filter(|root| root.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter(|root| !["std", "core", "alloc", "crate", "self", "super"].contains(&root.as_str()))
        .filter(|root| !imported.contains(root) || code.contains(&format!("use {root}::")))
        .map(|root| root.replace('_', "-"))
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

/// Cargo's compatibility class of a requirement: `0.8.1` → `0.8`, `1.38` → `1`.
fn compat(version: &str) -> String {
    let version = version.trim_start_matches(['^', '=', '~']);
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        _ => String::new(),
    }
}

/// The requirements this crate itself builds against (dependencies, then
/// dev-dependencies, which override).
fn our_requirements() -> BTreeMap<String, String> {
    let manifest = read("crates/kendo-webhooks/Cargo.toml");
    let mut ours = BTreeMap::new();
    let mut section = "";
    for line in manifest.lines() {
        if line.starts_with('[') {
            section = line.trim();
        } else if section == "[dependencies]" || section == "[dev-dependencies]" {
            if let Some((name, version)) = dependency_line(line) {
                ours.insert(name, version);
            }
        }
    }
    ours.insert(
        "kendo-webhooks".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    ours
}

#[test]
fn every_rust_snippet_is_a_file_that_is_built() {
    let readme = read("README.md");
    let snippets = snippets(&readme);
    assert!(snippets.len() >= 3, "{} snippets", snippets.len());
    for snippet in &snippets {
        let file = code_of(&read(&snippet.path));
        assert_eq!(
            snippet.code, file,
            "README's snippet differs from {}; copy the file into the README",
            snippet.path
        );
    }
}

#[test]
fn every_crate_a_snippet_names_is_listed_beside_it_with_our_version() {
    let ours = our_requirements();
    for snippet in snippets(&read("README.md")) {
        let named = crates_named(&snippet.code);
        assert!(
            named.contains(&"kendo-webhooks".to_owned()),
            "{}",
            snippet.path
        );
        for name in named {
            let Some(listed) = snippet.listed.get(&name) else {
                panic!(
                    "{} uses `{name}`, which its ```toml block does not list: {:?}",
                    snippet.path, snippet.listed
                );
            };
            let our = ours
                .get(&name)
                .unwrap_or_else(|| panic!("we do not depend on {name}"));
            assert_eq!(
                compat(listed),
                compat(our),
                "{}: the README asks for {name} {listed}, this crate builds with {our}",
                snippet.path
            );
        }
    }
}

#[test]
fn the_path_scanner_finds_crate_roots_only() {
    let code = "use axum::{routing::post, Router};\nuse hyper::{\n    server::conn::http1,\n};\n\
        #[tokio::main]\nfn f() { std::env::var(x); Event::CallUploaded; http1::Builder::new(); r.get::<T>(); \
        http_body_util::Full::new(); } // no::comment\n";
    assert_eq!(
        crates_named(code),
        ["axum", "http-body-util", "hyper", "tokio"]
    );
}
