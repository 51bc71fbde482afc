//! The runtime's modules import one another without a circle: reading
//! `use crate::…` paths (outside comments and test modules) of every
//! module under `src/`, no module reaches itself again. A circle is how a
//! hub that names everything (the node context once did) comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the library under `src/` (by its path, `node::config`),
/// with its source outside comments and its `#[cfg(test)] mod tests`.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let name = relative
                .with_extension("")
                .to_string_lossy()
                .replace("/mod", "")
                .replace('/', "::");
            let text = std::fs::read_to_string(&path).expect("a source file");
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => &text[..at],
                None => &text[..],
            };
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            found.insert(name, code.join("\n"));
        }
    }
    found
}

/// The modules `source` names through `crate::` paths, as found in
/// `names` (a path names the longest module it starts with).
fn imports(source: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
            .collect();
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            let candidate = parts.join("::");
            if names.contains(&candidate) {
                out.insert(candidate);
                break;
            }
            parts.pop();
        }
    }
    out
}

/// A circle of imports through `start`, if there is one (depth first).
fn circle_from(
    start: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == start) {
        let mut circle = path[at..].to_vec();
        circle.push(start.to_owned());
        return Some(circle);
    }
    if done.contains(start) {
        return None;
    }
    path.push(start.to_owned());
    for next in graph.get(start).into_iter().flatten() {
        if let Some(circle) = circle_from(next, graph, path, done) {
            return Some(circle);
        }
    }
    path.pop();
    done.insert(start.to_owned());
    None
}

#[test]
fn no_module_of_the_runtime_imports_itself_through_others() {
    let modules = modules();
    assert!(
        modules.contains_key("node::context") && modules.contains_key("cluster::transport"),
        "the modules were found: {:?}",
        modules.keys().collect::<Vec<_>>()
    );
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(name, source)| {
            // A module naming its parent counts: the parent's `mod`
            // declaration is no import, but the parent's own `use`s are.
            let targets = imports(source, &names)
                .into_iter()
                .filter(|t| t != name)
                .collect();
            (name.clone(), targets)
        })
        .collect();
    let mut done = BTreeSet::new();
    for name in graph.keys() {
        let circle = circle_from(name, &graph, &mut Vec::new(), &mut done);
        assert!(
            circle.is_none(),
            "an import circle: {}",
            circle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn the_reader_sees_a_circle_it_is_shown() {
    let names: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", "use crate::b::X;"),
        ("b", "use crate::c::{Y, Z};"),
        ("c", "fn f() { crate::a::g() }"),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), imports(s, &names)))
    .collect();
    let circle = circle_from("a", &graph, &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(circle.expect("a circle").join(" -> "), "a -> b -> c -> a");
}
