//! The layers the README draws, kept by a test: core ← adapters ← engine ← app (handler, CLI,
//! dev, composition root). The core is its own crate (`crates/rotator-core`), so the compiler
//! already keeps it from importing anything above it; these tests keep the main crate's
//! modules in their layers (a module may import its own layer or lower ones, never a higher
//! one), keep the top-level module graph free of cycles, and keep the core crate free of I/O
//! crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. Every top-level module of `src/` must be listed: a new one has to be placed.
const LAYERS: &[(&str, &[&str])] = &[
    // Re-exported from rotator-core at their old paths.
    ("core", &["cloud", "secret", "policy", "planner", "domain"]),
    ("adapters", &["transport", "azure"]),
    // `notify` is the webhook implementation of the engine's `Notifier` port.
    ("engine", &["engine", "notify"]),
    (
        "app",
        &[
            "settings",
            "statuspage",
            "compose",
            "handler",
            "cli",
            "dev",
            "package",
        ],
    ),
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// `src/engine/usecase/rotate.rs` → `engine`; `src/notify.rs` → `notify`; the crate roots → `None`.
fn module_of(rel: &str) -> Option<String> {
    let rel = rel.strip_prefix("src/")?;
    if rel == "lib.rs" || rel == "main.rs" {
        return None;
    }
    let first = rel.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The top-level modules a file names through `crate::`, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// Every import that goes up a layer or names a module no layer lists, and the module graph.
fn check(files: &[(String, String)]) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let Some(from_layer) = layer(&from) else {
            problems.push(format!(
                "{path}: module {from} is in no layer; add it to LAYERS"
            ));
            continue;
        };
        for to in imports(text) {
            if to == from {
                continue;
            }
            match layer(&to) {
                None => problems.push(format!("{path}: crate::{to} is in no layer")),
                Some(l) if l > from_layer => problems.push(format!(
                    "{path}: {from} ({}) imports crate::{to} ({}), a higher layer",
                    LAYERS[from_layer].0, LAYERS[l].0
                )),
                Some(_) => {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    (problems, graph)
}

/// The engine's ports: the traits the engine calls Azure and storage through.
const PORTS: &str = "src/engine/ports.rs";

/// Every adapter module (`crate::azure`, `crate::transport`) the ports file names: the ports
/// must speak only domain types (core's `domain`, `planner`, `policy`, `secret`), so no client
/// type can leak into the engine through a trait signature.
fn port_problems(files: &[(String, String)]) -> Vec<String> {
    let adapters = layer("azure");
    files
        .iter()
        .filter(|(path, _)| path == PORTS)
        .flat_map(|(path, text)| {
            imports(text)
                .into_iter()
                .filter(|m| layer(m) == adapters)
                .map(move |m| format!("{path}: a port names crate::{m} (an adapter type)"))
        })
        .collect()
}

/// One cycle of the module graph, if any (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer_and_the_module_graph_has_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), root, &mut files);
    assert!(files.len() > 40, "found {} source files", files.len());
    let (problems, graph) = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    assert!(files.iter().any(|(p, _)| p == PORTS), "{PORTS} moved");
    let ports = port_problems(&files);
    assert!(ports.is_empty(), "{}", ports.join("\n"));
}

#[test]
fn the_check_catches_a_port_naming_an_adapter_type() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let problems = port_problems(&[
        file(
            PORTS,
            "use crate::azure::graph::ListedApp;\nuse crate::domain::TokenIdentity;",
        ),
        file(
            "src/engine/azure_ports.rs",
            "use crate::azure::graph::GraphClient;",
        ),
    ]);
    assert_eq!(
        problems,
        vec![format!(
            "{PORTS}: a port names crate::azure (an adapter type)"
        )]
    );
    let fine = port_problems(&[file(
        PORTS,
        "// not crate::azure::graph::ListedApp\nuse crate::domain::ListedApp;",
    )]);
    assert!(fine.is_empty(), "{fine:?}");
}

#[test]
fn the_check_catches_a_back_edge_and_a_cycle() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let (problems, _) = check(&[
        file("src/azure/graph.rs", "use crate::engine::Engine;"),
        file(
            "src/azure/web.rs",
            "// see crate::handler\nuse crate::policy::Policy;",
        ),
        file("src/widgets.rs", "use crate::cloud::Cloud;"),
    ]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("azure (adapters) imports crate::engine (engine)"));
    assert!(problems[1].contains("module widgets is in no layer"));
    let (problems, graph) = check(&[
        file("src/cli/mod.rs", "use crate::handler::x;"),
        file("src/handler/mod.rs", "use crate::cli::y;"),
    ]);
    assert!(problems.is_empty());
    assert!(cycle(&graph).is_some_and(|c| c.len() == 3), "{graph:?}");
}

/// The core crate's manifest names no I/O crate: nothing in it can do I/O but read a file.
#[test]
fn the_core_crate_depends_on_no_io_crate() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/rotator-core/Cargo.toml"
    ))
    .unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("rotator-core has a [dependencies] table");
    for io in [
        "tokio",
        "reqwest",
        "axum",
        "hyper",
        "azure_",
        "async-trait",
        "tracing",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(io)),
            "rotator-core depends on {io}"
        );
    }
}
