//! The module graph has no cycles between top-level modules: lower layers (store,
//! the event log, the feed) never import the services built on them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Top-level module → the other top-level modules it names as `crate::…`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let named = graph.entry(module.clone()).or_default();
        for (index, _) in text.match_indices("crate::") {
            let rest = &text[index + "crate::".len()..];
            let target: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$crate::store::…` inside the store's own macro and `crate::with_backend` (a
            // macro exported at the root) are not imports of another module.
            if !target.is_empty() && target != module && target != "with_backend" {
                named.insert(target);
            }
        }
        // `use crate::{a, b}` names several at once.
        for (index, _) in text.match_indices("use crate::{") {
            let rest = &text[index + "use crate::{".len()..];
            let list = &rest[..rest.find('}').unwrap_or(0)];
            for item in list.split(',') {
                let target: String =
                    item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !target.is_empty() && target != module {
                    named.insert(target);
                }
            }
        }
    }
    graph
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = imports();
    assert!(graph.contains_key("store") && graph.contains_key("events"), "the scan found the modules: {graph:?}");
    let mut cycles = Vec::new();
    for (module, named) in &graph {
        for other in named {
            if module < other && graph.get(other).is_some_and(|back| back.contains(module)) {
                cycles.push(format!("{module} <-> {other}"));
            }
        }
    }
    assert!(cycles.is_empty(), "modules importing each other: {cycles:?}");
}

#[test]
fn the_store_imports_no_service() {
    let graph = imports();
    let store = &graph["store"];
    let allowed: BTreeSet<String> = ["config", "model"].iter().map(|s| (*s).to_owned()).collect();
    let extra: Vec<&String> = store.difference(&allowed).collect();
    assert!(extra.is_empty(), "store imports {extra:?}");
}

#[test]
fn the_model_is_a_leaf() {
    let graph = imports();
    assert!(graph["model"].is_empty(), "model imports {:?}", graph["model"]);
}
