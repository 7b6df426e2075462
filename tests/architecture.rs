//! The layers of `src/` point one way (docs/design.md, "Layers"): this test reads the
//! `use crate::…` lines and inline `crate::x::…` paths of every `src/**/*.rs` file and
//! fails on an import the table forbids, naming the file, the import and the rule.
//!
//! A module may import modules of a lower layer only; two modules of the same layer do
//! not import each other (a module's own files, `crate::stats::…` inside `src/stats/`,
//! are one module). The crate root (`lib.rs`, `main.rs`) dispatches to everything and is
//! not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers from the bottom up; keep in step with the table in docs/design.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("0 primitives", &["text", "duration", "secret", "tls"]),
    (
        "1 shared vocabulary and infrastructure",
        &[
            "alert",
            "stats",
            "log",
            "http",
            "ha",
            "sdnotify",
            "timeinterval",
        ],
    ),
    (
        "2 vocabulary built on it",
        &["vocab", "silence", "scope", "heartbeat"],
    ),
    ("3 rules", &["rules", "route", "inhibit"]),
    ("4 config types", &["config"]),
    ("5 inputs, stores, texts", &["source", "state", "message"]),
    ("6 stages", &["engine", "notify", "error", "history"]),
    ("7 run pipeline", &["run"]),
    ("8 front-end parts", &["cli", "init", "ruletest"]),
    ("9 output formats", &["report", "recap"]),
    ("10 long-running front end", &["watch"]),
    ("11 commands", &["commands"]),
];

/// Edges the table forbids that the code still has, each with what removing it takes.
/// An entry that no longer matches an import fails the test too, so the list only
/// shrinks.
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

/// The module a file of `src/` belongs to: `src/notify/smtp.rs` → `notify`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    let first = relative.components().next().expect("a path");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a line names: `crate::x` anywhere (a `use` or an inline path), and
/// each `x` of `crate::{x::…, y}`. Comments are left out.
fn imports(line: &str) -> Vec<String> {
    let code = match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level names of the group: those at brace depth 0 after `{`.
            let mut depth = 0;
            let mut name = String::new();
            let mut expect_name = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if depth == 0 && expect_name && (c.is_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ if depth == 0 && expect_name && !name.is_empty() => {
                        found.push(std::mem::take(&mut name));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.push(name);
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

#[test]
fn imports_point_down_the_layer_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut known_seen = BTreeSet::new();
    for file in &files {
        let from = module_of(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let shown = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(file);
        let Some((from_layer, from_name)) = layer_of(&from) else {
            violations.push(format!(
                "{}: module `{from}` is in no layer: add it to LAYERS here and to the table in docs/design.md",
                shown.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (number, line) in text.lines().enumerate() {
            for to in imports(line) {
                if to == from || to == "self" || to == "super" {
                    continue;
                }
                let Some((to_layer, to_name)) = layer_of(&to) else {
                    violations.push(format!(
                        "{}:{}: imports `crate::{to}`, a module in no layer: add it to LAYERS and docs/design.md",
                        shown.display(),
                        number + 1
                    ));
                    continue;
                };
                if to_layer < from_layer {
                    continue;
                }
                if KNOWN.iter().any(|(f, t, _)| *f == from && *t == to) {
                    known_seen.insert((from.clone(), to.clone()));
                    continue;
                }
                let rule = if to_layer == from_layer {
                    format!("`{from}` and `{to}` are both in layer {from_name}, whose modules do not import each other")
                } else {
                    format!("`{from}` (layer {from_name}) may import only lower layers, and `{to}` is in layer {to_name}")
                };
                violations.push(format!(
                    "{}:{}: `{}` imports `crate::{to}`: {rule}",
                    shown.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    for (from, to, why) in KNOWN {
        if !known_seen.contains(&(from.to_string(), to.to_string())) {
            violations.push(format!(
                "the known exception {from} → {to} ({why}) is gone: remove it from KNOWN in tests/architecture.rs and docs/design.md"
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layer table (docs/design.md, \"Layers\"):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_reader_sees_every_form() {
    assert_eq!(imports("use crate::state::{Loaded, Lock};"), ["state"]);
    assert_eq!(
        imports("    let x = crate::secret::redact(&crate::text::one_line(s)); // crate::log"),
        ["secret", "text"]
    );
    assert_eq!(
        imports("use crate::{alert::Labels, vocab::{Notice, Notification}, log};"),
        ["alert", "vocab", "log"]
    );
    assert!(imports("/// see [`crate::engine::step`]").is_empty());
}
