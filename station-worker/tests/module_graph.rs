//! No import cycle between the station's modules (the issue that split `station.rs` and
//! `actors/supervisor.rs`): reads `src/`, builds the graph "module A's code names something
//! defined in module B", and fails on any cycle.
//!
//! What counts: `use` items and `crate::` / `super::` / `self::` paths in code. What does not:
//! comments (intra-doc links), `mod` declarations, the `pub use` lines by which a folder's
//! `mod.rs` shows its children (a name reached through such a re-export is followed to the
//! module that defines it), and `#[cfg(test)]` test modules.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test binary: a panic is how it reports a failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root, `""` being the root (`lib.rs`).
type Module = String;

struct Source {
    /// Code without comments and test modules, `pub use` lines kept apart.
    code: String,
    /// `pub use` statements.
    reexports: Vec<String>,
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Splits a file into code and `pub use` statements, dropping comments and the trailing
/// `#[cfg(test)] mod tests { … }`.
fn read_source(path: &Path) -> Source {
    let text = std::fs::read_to_string(path).unwrap();
    // The test module closes the file, under its `#[cfg(…test…)]` line.
    let text = match text.find("\nmod tests {") {
        Some(at) => {
            let cfg = text[..at].rfind('\n').map_or(0, |l| l + 1);
            if text[cfg..at].starts_with("#[cfg(") && text[cfg..at].contains("test") {
                &text[..cfg]
            } else {
                &text[..at]
            }
        }
        None => &text,
    };
    let mut code = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    let mut kept = String::new();
    let mut reexports = Vec::new();
    for statement in split_statements(&code) {
        let trimmed = statement.trim_start();
        let item = trimmed
            .strip_prefix("#[cfg(feature = \"probe-rs\")]")
            .unwrap_or(trimmed)
            .trim_start();
        if item.starts_with("pub use ") {
            reexports.push(item.to_owned());
        } else if !(item.starts_with("mod ") || item.starts_with("pub mod ")) {
            kept.push_str(&statement);
        }
    }
    Source {
        code: kept,
        reexports,
    }
}

/// Cuts code at `;` and braces of top-level items, roughly: enough to find whole `use` items.
fn split_statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for c in code.chars() {
        current.push(c);
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ';' if depth == 0 => out.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    out.push(current);
    out
}

/// The paths a `use` tree names: `a::{b, c::{d}}` → `a::b`, `a::c::d`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        match tree.find('{') {
            None => out.push(format!("{prefix}{}", tree.split(" as ").next().unwrap())),
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap()];
                let mut depth = 0;
                let mut start = 0;
                let bytes = inner.as_bytes();
                for i in 0..=bytes.len() {
                    let end = i == bytes.len();
                    if !end {
                        match bytes[i] {
                            b'{' => depth += 1,
                            b'}' => depth -= 1,
                            _ => {}
                        }
                    }
                    if end || (bytes[i] == b',' && depth == 0) {
                        let part = &inner[start..i];
                        if !part.is_empty() {
                            go(&format!("{prefix}{head}"), part, out);
                        }
                        start = i + 1;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Every `crate::…` / `super::…` / `self::…` path in `code`.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for statement in split_statements(code) {
        let item = statement.trim_start();
        let item = item.strip_prefix("pub(crate) ").unwrap_or(item);
        if let Some(tree) = item.strip_prefix("use ") {
            out.extend(expand_use(tree.trim_end_matches(';')));
            continue;
        }
        let bytes = statement.as_bytes();
        for start in ["crate::", "super::", "self::"] {
            let mut from = 0;
            while let Some(at) = statement[from..].find(start) {
                let at = from + at;
                let boundary = at == 0
                    || !(bytes[at - 1].is_ascii_alphanumeric()
                        || bytes[at - 1] == b'_'
                        || bytes[at - 1] == b':');
                let mut end = at;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'_'
                        || bytes[end] == b':')
                {
                    end += 1;
                }
                if boundary {
                    out.push(statement[at..end].trim_end_matches(':').to_owned());
                }
                from = end.max(at + 1);
            }
        }
    }
    out
}

/// Resolves `path`, written in module `from`, to (module, first name after it).
fn resolve(from: &str, path: &str, modules: &BTreeSet<Module>) -> Option<(Module, Option<String>)> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").map(str::to_owned).collect()
    };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("self") => {
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop()?;
            }
        }
        _ => return None,
    }
    // The longest prefix that is a module.
    let mut module = base.clone();
    let mut rest = segments.as_slice();
    while let Some((first, tail)) = rest.split_first() {
        let mut candidate = module.clone();
        candidate.push((*first).to_owned());
        if modules.contains(&candidate.join("::")) {
            module = candidate;
            rest = tail;
        } else {
            break;
        }
    }
    Some((module.join("::"), rest.first().map(|s| (*s).to_owned())))
}

#[test]
fn station_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        name != "main.rs" && name != "tests.rs" && name != "mock.rs"
    });
    let sources: BTreeMap<Module, Source> = files
        .iter()
        .map(|f| (module_of(&src, f), read_source(f)))
        .collect();
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();

    // Re-exports: (module, name) → the module it comes from.
    let mut reexported: BTreeMap<(Module, String), Module> = BTreeMap::new();
    for (module, source) in &sources {
        for statement in &source.reexports {
            let tree = statement
                .trim_start_matches("pub use ")
                .trim_end_matches(';');
            for path in expand_use(tree) {
                let path = if path.starts_with("crate::")
                    || path.starts_with("super::")
                    || path.starts_with("self::")
                {
                    path
                } else {
                    format!("self::{path}")
                };
                if let Some((target, Some(_))) = resolve(module, &path, &modules) {
                    let name = path.rsplit("::").next().unwrap().to_owned();
                    reexported.insert((module.clone(), name), target);
                }
            }
        }
    }
    let follow = |mut module: Module, name: Option<String>| {
        let mut seen = 0;
        while let Some(next) = name
            .as_ref()
            .and_then(|n| reexported.get(&(module.clone(), n.clone())))
        {
            module = next.clone();
            seen += 1;
            assert!(seen < 16, "re-export loop at {module}");
        }
        module
    };

    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, source) in &sources {
        for path in paths_in(&source.code) {
            if let Some((target, name)) = resolve(module, &path, &modules) {
                let target = follow(target, name);
                if &target != module && !target.is_empty() {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    assert!(
        edges
            .get("station::supervisor")
            .is_some_and(|e| e.contains("provisioning::outbox")),
        "the graph sees through re-exports: {edges:#?}"
    );

    // Any cycle: depth-first search with an explicit path.
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        cycles: &mut Vec<Vec<Module>>,
    ) {
        if let Some(at) = path.iter().position(|m| m == node) {
            cycles.push(path[at..].to_vec());
            return;
        }
        if !done.insert(node.clone()) {
            return;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in &modules {
        visit(module, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "import cycles between station modules: {cycles:#?}"
    );
}
