//! Tidy tests: rules about the source tree that the compiler does not check, run by
//! `cargo test -p xtask` (and so by `cargo test --workspace`). In the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`: each rule reads `src/` as text, and each failure
//! names the file, the line and what to do.
//!
//! - Module dependencies follow the stage order ([`LEVELS`]): the production code of a
//!   top-level module of `src/` refers (`crate::…`, `super::…`) only to modules of its
//!   level or below, and neither the top-level modules nor the submodules of one module refer
//!   to each other in a circle. Unit tests (`#[cfg(test)]`) are left out: a test may
//!   build its input with a later stage.
//! - Every `.rs` file under `src/` starts with a `//!` module doc.
//! - `SystemTime::now` appears only in `src/main.rs`: one clock read, at the edge.
//! - `"blobs/sha256"` appears only under `src/oci/`: one module knows the layout.
//! - Every public error type that implements `diag::Diagnose` is one `src/main.rs` looks
//!   for along an error chain, so its hint reaches the user.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of the library by level, bottom to top, as in
/// `docs/architecture.md`. A module may refer to modules of its own level (without a
/// circle) or below, never above. `main.rs` and `cli/` are the binary, above everything,
/// and are not listed.
const LEVELS: &[&[&str]] = &[
    // Core, below every stage.
    CORE,
    // Services on top of core (narrowed in `ONLY`).
    &["registry", "ledger"],
    // Stages, in pipeline order.
    &["recipe"],
    &["debian", "base"],
    &["resolve"],
    &["layers"],
    &["image"],
    &["attest"],
    &["output"],
    &["disk"],
    // After the stages: the registry-shared layer cache, the warm rebuild, the driver.
    &["remote_cache", "warm"],
    &["build"],
    // The readers, which may use the driver (`verify --rebuild`).
    &["inspect", "verify", "trace", "diff"],
    // After the readers: what checks a registry against the ledger, and the service,
    // which verifies and records.
    &["audit", "serve"],
    // The fuzzing entry points, which reach the readers of every level.
    &["fuzzing"],
];

const CORE: &[&str] = &["digest", "diag", "elf", "oci", "keys", "snapshot"];

/// Modules held to less than their level allows: the registry client uses only core;
/// the ledger uses core and the registry client.
const ONLY: &[(&str, &[&str])] = &[
    ("registry", CORE),
    (
        "ledger",
        &["digest", "diag", "oci", "keys", "snapshot", "registry"],
    ),
];

/// The top-level modules `module` may refer to; `None` if it is not in [`LEVELS`].
fn allowed(module: &str) -> Option<Vec<&'static str>> {
    if let Some((_, only)) = ONLY.iter().find(|(m, _)| *m == module) {
        return Some(only.to_vec());
    }
    let level = LEVELS.iter().position(|l| l.contains(&module))?;
    Some(
        LEVELS[..=level]
            .iter()
            .flat_map(|l| l.iter().copied())
            .collect(),
    )
}

/// The binary: `main.rs` and the CLI may refer to anything.
const BINARY: &[&str] = &["main", "cli"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../src")
}

/// A source file: its path relative to `src/`, its module path (`["layers", "cache"]`;
/// a `mod.rs` is its directory's module), its text, and its production code: the text
/// with `#[cfg(test)]` items blanked (line numbers kept), since a unit test may call
/// on a later stage to set up its input.
struct SourceFile {
    rel: String,
    module: Vec<String>,
    text: String,
    production: String,
}

fn source_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = src_dir();
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_string)
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            // A file that is a test module (`#[cfg(test)] mod tests;`) is all test code.
            let production = if module.last().is_some_and(|m| m == "tests") {
                String::new()
            } else {
                without_tests(&text)
            };
            SourceFile {
                rel,
                module,
                text,
                production,
            }
        })
        .collect()
}

/// `text` with each `#[cfg(test)]` item (a `mod tests { ... }` or `mod tests;`) replaced
/// by empty lines.
fn without_tests(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut depth = 0usize;
    let mut opened = false;
    for line in text.lines() {
        if !skipping && line.trim() == "#[cfg(test)]" {
            (skipping, depth, opened) = (true, 0, false);
        }
        if !skipping {
            out.push(line);
            continue;
        }
        out.push("");
        depth += line.matches('{').count();
        opened |= depth > 0;
        depth = depth.saturating_sub(line.matches('}').count());
        let ends_without_body = !opened && line.trim_end().ends_with(';');
        if (opened && depth == 0) || ends_without_body {
            skipping = false;
        }
    }
    out.join("\n")
}

/// The lines of `text` that are code, numbered from 1: comment lines (`//`, `//!`,
/// `///`) are left out, so a doc link or a note naming a path is not a dependency.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

/// The code lines of `text` (see [`code_lines`]), with a brace group that spans lines
/// (`use crate::{` ... `};`) joined into its first line, numbered by that line.
fn statements(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = 0usize;
    for (line, code) in code_lines(text) {
        if open > 0 {
            let last = out.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(code.trim());
        } else {
            out.push((line, code.to_string()));
        }
        if open > 0 || code.trim_end().ends_with("::{") {
            open += code.matches('{').count();
            open = open.saturating_sub(code.matches('}').count());
        }
    }
    out
}

/// The module paths a line refers to through `crate::`, `super::` or `self::`, resolved
/// against `module` (the file's own module path); grouped imports (`crate::{a, b::c}`)
/// give one path per item.
fn referenced_paths(module: &[String], line: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in line.char_indices() {
        // A path starts here only if it is not the tail of a longer word or path.
        let before = line[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &line[start..];
        let (base, rest) = if let Some(r) = rest.strip_prefix("crate::") {
            (Vec::new(), r)
        } else if rest.starts_with("super::") {
            let mut base = module.to_vec();
            let mut r = rest;
            while let Some(next) = r.strip_prefix("super::") {
                base.pop();
                r = next;
            }
            (base, r)
        } else if let Some(r) = rest.strip_prefix("self::") {
            (module.to_vec(), r)
        } else {
            continue;
        };
        let mut rest = rest;
        for tail in use_tree(&mut rest) {
            let mut path = base.clone();
            path.extend(tail);
            found.push(path);
        }
    }
    found
}

/// The paths of a use tree at the start of `text`, consuming it: `a::b::C` ->
/// `[a, b, C]`; `a::{b, c::{D, E}}` -> `[a, b]`, `[a, c, D]`, `[a, c, E]`.
fn use_tree(text: &mut &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    loop {
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        if end > 0 {
            segments.push(text[..end].to_string());
            *text = &text[end..];
        }
        match text.strip_prefix("::") {
            Some(next) if end > 0 => *text = next,
            _ => break,
        }
        if text.starts_with('{') {
            break;
        }
    }
    let Some(group) = text.strip_prefix('{') else {
        return if segments.is_empty() {
            Vec::new()
        } else {
            vec![segments]
        };
    };
    *text = group;
    let mut paths = Vec::new();
    loop {
        *text = text.trim_start();
        if let Some(next) = text.strip_prefix('}') {
            *text = next;
            break;
        }
        let before = text.len();
        for tail in use_tree(text) {
            let mut path = segments.clone();
            path.extend(tail);
            paths.push(path);
        }
        *text = text.trim_start();
        if let Some(next) = text.strip_prefix(',') {
            *text = next;
        } else if text.len() == before || text.is_empty() {
            break;
        }
    }
    paths
}

/// One reference from a file to another module: where it is and what it names.
struct Reference {
    file: String,
    line: usize,
    text: String,
    from: Vec<String>,
    to: Vec<String>,
}

fn references(files: &[SourceFile]) -> Vec<Reference> {
    let mut out = Vec::new();
    for f in files {
        if f.module.is_empty() || BINARY.contains(&f.module[0].as_str()) {
            continue;
        }
        for (line, text) in statements(&f.production) {
            for to in referenced_paths(&f.module, &text) {
                if to.is_empty() {
                    continue;
                }
                out.push(Reference {
                    file: f.rel.clone(),
                    line,
                    text: text.trim().chars().take(120).collect(),
                    from: f.module.clone(),
                    to,
                });
            }
        }
    }
    out
}

/// A circle in `graph`, if it has one, as the nodes along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// Where each edge of a graph is first seen, for messages.
type Witnesses = BTreeMap<(String, String), String>;

fn cycle_message(cycle: &[String], witnesses: &Witnesses) -> String {
    cycle
        .windows(2)
        .map(|pair| {
            let at = &witnesses[&(pair[0].clone(), pair[1].clone())];
            format!("  {} -> {}   at {at}", pair[0], pair[1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn modules_refer_only_to_modules_below_them() {
    let files = source_files();
    let top_level: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.module.is_empty())
        .map(|f| f.module[0].clone())
        .collect();
    let mut problems = Vec::new();
    for m in &top_level {
        if allowed(m).is_none() && !BINARY.contains(&m.as_str()) {
            problems.push(format!(
                "src/{m}: a top-level module missing from LEVELS in xtask/src/tidy.rs: add \
                 it at its level, following docs/architecture.md"
            ));
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut witnesses = Witnesses::new();
    let mut reported = BTreeSet::new();
    for r in references(&files) {
        let (from, to) = (&r.from[0], &r.to[0]);
        if from == to || !top_level.contains(to) {
            continue;
        }
        let at = format!("src/{}:{}: {}", r.file, r.line, r.text);
        graph.entry(from.clone()).or_default().insert(to.clone());
        witnesses
            .entry((from.clone(), to.clone()))
            .or_insert_with(|| at.clone());
        if let Some(may) = allowed(from) {
            if !may.contains(&to.as_str()) && reported.insert((at.clone(), to.clone())) {
                problems.push(format!(
                    "{at}\n    `{from}` refers to `{to}`, which is not below it in the stage \
                     order. Move the shared piece down into a module `{from}` may use \
                     ({}), or invert the call; see LEVELS in xtask/src/tidy.rs.",
                    may.join(", ")
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(format!(
            "top-level modules refer to each other in a circle; move the shared piece down:\n{}",
            cycle_message(&cycle, &witnesses)
        ));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

#[test]
fn submodules_of_a_module_form_no_circle() {
    let files = source_files();
    // The submodules of each module that has a directory: `layers` -> {cache, tree, ...}.
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        for depth in 1..f.module.len() {
            children
                .entry(f.module[..depth].to_vec())
                .or_default()
                .insert(f.module[depth].clone());
        }
    }
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut witnesses: BTreeMap<Vec<String>, Witnesses> = BTreeMap::new();
    for r in references(&files) {
        // The deepest common parent of both ends: an edge between two of its children.
        let common = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
        if common == 0 || common >= r.from.len() || common >= r.to.len() {
            continue;
        }
        let parent = r.from[..common].to_vec();
        let (a, b) = (&r.from[common], &r.to[common]);
        if !children.get(&parent).is_some_and(|c| c.contains(b)) {
            continue; // an item of the parent, not a submodule
        }
        graphs
            .entry(parent.clone())
            .or_default()
            .entry(a.clone())
            .or_default()
            .insert(b.clone());
        witnesses
            .entry(parent)
            .or_default()
            .entry((a.clone(), b.clone()))
            .or_insert_with(|| format!("src/{}:{}: {}", r.file, r.line, r.text));
    }
    let mut problems = Vec::new();
    for (parent, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            problems.push(format!(
                "the submodules of `{}` refer to each other in a circle; move the shared \
                 piece into one of them (or into the parent), or pass it in:\n{}",
                parent.join("::"),
                cycle_message(&cycle, &witnesses[parent])
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

#[test]
fn every_module_starts_with_a_doc() {
    let problems: Vec<String> = source_files()
        .iter()
        .filter(|f| !f.text.starts_with("//!"))
        .map(|f| {
            format!(
                "src/{}:1: {}\n    every module starts with a `//!` doc: say what it takes \
                 and what it guarantees",
                f.rel,
                f.text.lines().next().unwrap_or("")
            )
        })
        .collect();
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

/// Code lines outside the files `allowed` accepts that contain `needle`.
fn misplaced(needle: &str, allowed: impl Fn(&str) -> bool, what_to_do: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for f in source_files().iter().filter(|f| !allowed(&f.rel)) {
        for (line, text) in code_lines(&f.text) {
            if text.contains(needle) {
                problems.push(format!(
                    "src/{}:{line}: {}\n    {what_to_do}",
                    f.rel,
                    text.trim()
                ));
            }
        }
    }
    problems
}

#[test]
fn only_main_reads_the_clock() {
    let problems = misplaced(
        "SystemTime::now",
        |rel| rel == "main.rs",
        "the clock is read once, in src/main.rs: take the time as a parameter \
         (an epoch or `now: u64`) instead",
    );
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

#[test]
fn only_oci_spells_the_blob_directory() {
    let problems = misplaced(
        "blobs/sha256",
        |rel| rel.starts_with("oci/"),
        "only src/oci/ knows where a layout keeps its blobs: go through `oci::layout` \
         (a blob path or a verified read) instead",
    );
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

/// The error types `main.rs` asks for a hint and a location: the names listed in its
/// `diagnosis()`.
fn diagnosed_in_main() -> BTreeSet<String> {
    let main = source_files()
        .into_iter()
        .find(|f| f.rel == "main.rs")
        .expect("src/main.rs exists");
    let start = main
        .production
        .find("first_of!(")
        .expect("src/main.rs lists the diagnosed error types in `first_of!(...)`");
    let list = &main.production[start..];
    let list = &list[..list.find(')').unwrap_or(list.len())];
    list.split(|c: char| c == ',' || c.is_whitespace() || c == '(')
        .filter_map(|path| path.rsplit("::").next())
        .filter(|name| name.starts_with(char::is_uppercase))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_public_error_with_a_hint_is_diagnosed_by_main() {
    let listed = diagnosed_in_main();
    let mut problems = Vec::new();
    for f in source_files().iter().filter(|f| f.rel != "main.rs") {
        for (line, text) in code_lines(&f.production) {
            let Some((_, rest)) = text.split_once("impl Diagnose for ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let public = [format!("pub enum {name} "), format!("pub struct {name} ")]
                .iter()
                .any(|decl| f.production.contains(decl.as_str()))
                || f.production.contains(&format!("pub struct {name};"))
                || f.production.contains(&format!("pub struct {name}("));
            if public && !listed.contains(&name) {
                problems.push(format!(
                    "src/{}:{line}: {name} has a hint or a location, but src/main.rs does not \
                     look for it\n    add `cairn::...::{name}` to `diagnosis()` in src/main.rs, \
                     so the CLI prints its `= help:` line",
                    f.rel
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> Vec<String> {
        path.split("::").map(str::to_string).collect()
    }

    #[test]
    fn paths_resolve_against_the_file_module() {
        let m = module("layers::cache");
        assert_eq!(
            referenced_paths(&m, "use crate::oci::compression::Compression;"),
            vec![module("oci::compression::Compression")]
        );
        assert_eq!(
            referenced_paths(&m, "use super::tree::{A, b::{C, D}};"),
            vec![
                module("layers::tree::A"),
                module("layers::tree::b::C"),
                module("layers::tree::b::D")
            ]
        );
        assert_eq!(
            referenced_paths(&m, "use super::super::digest::Sha256Digest;"),
            vec![module("digest::Sha256Digest")]
        );
        assert_eq!(
            referenced_paths(&m, "use crate::{digest::X, oci};"),
            vec![module("digest::X"), module("oci")]
        );
        assert_eq!(
            referenced_paths(&m, "let x = crate::image::f(a::crate::b);"),
            vec![module("image::f")]
        );
        assert!(referenced_paths(&m, "let supercrate = 1;").is_empty());
    }

    #[test]
    fn a_group_over_several_lines_is_one_statement() {
        let text = "//! Doc.\nuse crate::{\n    digest::X,\n    oci,\n};\nfn f() {\n}\n";
        let joined = statements(text);
        assert_eq!(
            joined[0],
            (2, "use crate::{ digest::X, oci, };".to_string())
        );
        assert_eq!(
            referenced_paths(&module("layers"), &joined[0].1),
            vec![module("digest::X"), module("oci")]
        );
    }

    #[test]
    fn test_modules_are_blanked_and_lines_kept() {
        let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::x;\n}\nfn b() {}\n#[cfg(test)]\nmod more;\nfn c() {}";
        assert_eq!(
            without_tests(text),
            "fn a() {}\n\n\n\n\nfn b() {}\n\n\nfn c() {}"
        );
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(find_cycle(&g), None);
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(
            find_cycle(&g),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}
