//! The module map of `docs/architecture.md`, checked: which core modules each module's code
//! names (`crate::<module>` outside comments and unit tests), that none names a module
//! above it, and that no chain of them loops.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the core modules it may name. Anything not listed may not be named.
const ALLOWED: &[(&str, &[&str])] = &[
    ("sync", &[]),
    ("error", &[]),
    ("crash", &[]),
    ("os", &[]),
    ("layout", &["error", "sync"]),
    ("memory", &["error", "layout", "sync"]),
    ("peers", &["crash", "error", "layout", "memory", "sync"]),
    ("stats", &["error", "layout", "peers", "sync"]),
    ("telemetry", &["layout", "os", "sync"]),
    (
        "algo",
        &[
            "crash", "error", "layout", "memory", "peers", "stats", "sync",
        ],
    ),
    (
        "wait",
        &["crash", "error", "layout", "memory", "os", "peers", "sync"],
    ),
    ("config", &["error", "layout", "telemetry", "wait"]),
    (
        "shm",
        &[
            "config",
            "error",
            "layout",
            "memory",
            "os",
            "sync",
            "telemetry",
            "wait",
        ],
    ),
    (
        "channel",
        &[
            "algo",
            "config",
            "error",
            "layout",
            "memory",
            "os",
            "shm",
            "stats",
            "telemetry",
            "wait",
        ],
    ),
    (
        "spsc",
        &[
            "algo", "channel", "config", "error", "layout", "memory", "shm", "stats",
        ],
    ),
    (
        "mpmc",
        &[
            "algo", "channel", "config", "error", "layout", "memory", "shm", "stats", "wait",
        ],
    ),
    (
        "broadcast",
        &[
            "algo", "channel", "config", "error", "layout", "memory", "peers", "shm", "stats",
            "sync",
        ],
    ),
    ("raw", &["channel", "error"]),
    (
        "any",
        &[
            "broadcast",
            "channel",
            "config",
            "error",
            "layout",
            "mpmc",
            "os",
            "raw",
            "shm",
            "spsc",
            "stats",
            "wait",
        ],
    ),
    ("rpc", &["channel", "config", "error", "os", "spsc", "wait"]),
    (
        "testing",
        &[
            "algo",
            "broadcast",
            "channel",
            "config",
            "error",
            "layout",
            "memory",
            "peers",
            "stats",
            "sync",
            "telemetry",
            "wait",
        ],
    ),
];

/// The core modules the code of `src/<module>` (file or directory) names.
fn named_modules(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
            continue;
        }
        let rel = path.strip_prefix(src).unwrap();
        let name = rel.to_str().unwrap();
        if !name.ends_with(".rs") || name == "lib.rs" || name.ends_with("tests.rs") {
            continue;
        }
        let module = name.split('/').next().unwrap().trim_end_matches(".rs");
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(all(test").next().unwrap();
        let named = graph.entry(module.to_string()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for part in line.split("crate::").skip(1) {
                let target: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    named.insert(target);
                }
            }
        }
    }
    graph
}

#[test]
fn modules_name_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = named_modules(&src);
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (module, named) in &graph {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!("{module}: not in the module map"));
            continue;
        };
        for target in named {
            if !may.contains(target.as_str()) {
                wrong.push(format!("{module} names {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "upward or unlisted imports: {wrong:?}");
    // The map itself must be a hierarchy: follow every chain and find no loop.
    fn walk<'a>(at: &'a str, map: &BTreeMap<&'a str, BTreeSet<&'a str>>, path: &mut Vec<&'a str>) {
        assert!(!path.contains(&at), "import cycle: {path:?} -> {at}");
        path.push(at);
        for next in map.get(at).into_iter().flatten() {
            walk(next, map, path);
        }
        path.pop();
    }
    for module in allowed.keys() {
        walk(module, &allowed, &mut Vec::new());
    }
    // Not vacuous: the scan found the modules and their imports.
    assert!(graph.len() >= 15, "{graph:?}");
    assert!(graph["channel"].contains("algo"), "{graph:?}");
}
