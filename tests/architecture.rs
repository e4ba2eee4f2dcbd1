//! The rules ARCHITECTURE.md states about the module structure, checked on the source text:
//! no import cycles between top-level modules (of any length), and a pure core that neither
//! imports an I/O module nor touches files, sockets, processes or the async runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure core: plain data and functions of it.
const CORE: &[&str] = &["domain", "manifest", "resolver", "config", "text", "exit"];

/// Tokens that mean I/O (or the runtime that does it) when they appear in a core file.
const IO_TOKENS: &[&str] = &[
    "std::fs",
    "std::net::Tcp",
    "std::net::Udp",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
    "std::process::Command",
    "std::env::var",
    "std::io::Read",
    "std::io::Write",
    "File::",
    "tokio",
    "reqwest",
    "hyper",
    "rusqlite",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module of a file under `src/` (`src/daemon/owner.rs` -> `daemon`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let m = first.trim_end_matches(".rs").to_string();
    (m != "main" && m != "lib").then_some(m)
}

/// Every `crate::NAME` a text mentions (uses, paths, doc links alike).
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn graph() -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<PathBuf, String>,
) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut texts = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("read");
        let refs = references(&text);
        edges
            .entry(m.clone())
            .or_default()
            .extend(refs.into_iter().filter(|r| *r != m));
        texts.insert(f, text);
    }
    (edges, texts)
}

/// A cycle in `edges`, as `a -> b -> a`, if there is one (depth-first search, back edges).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if done.contains(m) {
            return None;
        }
        if let Some(i) = stack.iter().position(|s| s == m) {
            return Some(format!("{} -> {m}", stack[i..].join(" -> ")));
        }
        stack.push(m.to_string());
        for n in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycles_between_modules() {
    let (edges, _) = graph();
    assert_eq!(find_cycle(&edges), None, "import cycle between modules");
}

#[test]
fn the_core_does_no_io() {
    let (edges, texts) = graph();
    for m in CORE {
        let bad: Vec<&String> = edges
            .get(*m)
            .into_iter()
            .flatten()
            .filter(|r| !CORE.contains(&r.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "core module `{m}` uses non-core modules {bad:?}"
        );
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, text) in &texts {
        let Some(m) = module_of(&src, file) else {
            continue;
        };
        if !CORE.contains(&m.as_str()) {
            continue;
        }
        // Unit tests may use temp files; the rule is about the code the program runs.
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for t in IO_TOKENS {
                assert!(
                    !line.contains(t),
                    "{}:{}: `{t}` in the pure core: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn the_cycle_check_finds_long_cycles() {
    let e = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let edges: BTreeMap<_, _> = [e("a", "b"), e("b", "c"), e("c", "a")]
        .into_iter()
        .collect();
    assert_eq!(find_cycle(&edges).as_deref(), Some("a -> b -> c -> a"));
    let edges: BTreeMap<_, _> = [e("a", "b"), e("b", "c")].into_iter().collect();
    assert_eq!(find_cycle(&edges), None);
    assert!(references("use crate::daemon::x; [`crate::cli`]").contains("cli"));
}
