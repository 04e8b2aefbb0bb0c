//! The architecture's invariants (ARCHITECTURE.md), held by a test rather than a hope:
//! dependencies point one way, `shared` has no IO, and the pure cores read no clock,
//! file, socket or database.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Dependency names in the `[dependencies]` table of a manifest (not dev-dependencies:
/// tests may use real ports and sockets).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let value: toml::Table = text.parse().unwrap();
    value
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn shared_depends_on_no_io_crate() {
    let forbidden = [
        "tokio",
        "rusqlite",
        "serialport",
        "quinn",
        "rustls",
        "axum",
        "postgres",
        "nix",
        "libc",
        "mio",
        "socket2",
        "hyper",
    ];
    for dep in dependencies(&root().join("shared/Cargo.toml")) {
        assert!(
            !forbidden.iter().any(|f| dep.starts_with(f)),
            "shared depends on IO crate {dep:?}"
        );
    }
}

#[test]
fn agent_and_hub_never_depend_on_each_other() {
    let agent = dependencies(&root().join("agent/Cargo.toml"));
    let hub = dependencies(&root().join("hub/Cargo.toml"));
    assert!(agent.contains(&"till360-shared".to_string()));
    assert!(hub.contains(&"till360-shared".to_string()));
    assert!(
        !agent.iter().any(|d| d == "till360-hub"),
        "agent depends on hub"
    );
    assert!(
        !hub.iter().any(|d| d == "till360-agent"),
        "hub depends on agent"
    );
}

/// Source files that must stay pure: no clock (now is an argument), no files, sockets,
/// runtimes or databases. `layout::Layout::load` is the one allowed file read, at the
/// edge of the layout module.
#[test]
fn pure_cores_do_no_io() {
    let pure = [
        "shared/src",
        "agent/src/escpos",
        "agent/src/scanner",
        "agent/src/ports/reconnect.rs",
        "agent/src/proxy/realtime.rs",
        "agent/src/proxy/outbox.rs",
        "agent/src/doctor/probe.rs",
        "agent/src/doctor/report.rs",
        "agent/src/uplink/pending.rs",
        "agent/src/uplink/health.rs",
        "agent/src/uplink/conversation.rs",
        "src/simulation/network.rs",
        "src/faults/plan.rs",
        "src/faults/total_queue.rs",
        "hub/src/digests/build.rs",
        "agent/src/layout/matcher.rs",
        "agent/src/checkout.rs",
        "agent/src/coupons",
        "agent/src/till_core",
        "hub/src/profile.rs",
        "hub/src/listener/session.rs",
        "hub/src/spreadsheet.rs",
        "hub/src/traits",
    ];
    let forbidden = [
        "Utc::now",
        "Local::now",
        "SystemTime",
        "Instant::now",
        "std::fs",
        "std::net",
        "tokio",
        "rusqlite",
        "serialport",
        "quinn::",
    ];
    let mut files = Vec::new();
    for p in pure {
        collect_rs(&root().join(p), &mut files);
    }
    assert!(files.len() >= 10, "pure core files not found: {files:?}");
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may use the real world; the code after a test module may not.
        let code = without_test_items(&text);
        for (i, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for f in forbidden {
                assert!(
                    !line.contains(f),
                    "{}:{}: pure core uses {f}: {line}",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}

fn collect_rs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            collect_rs(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every crate builds its integration tests as one binary (`autotests = false`), so a test file
/// that `tests/integration.rs` does not name would silently never run.
#[test]
fn every_integration_test_file_is_in_its_crates_test_binary() {
    for crate_dir in [".", "agent", "hub"] {
        let tests = root().join(crate_dir).join("tests");
        let listed = std::fs::read_to_string(tests.join("integration.rs")).unwrap();
        let manifest = std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("autotests = false") && manifest.contains("tests/integration.rs"),
            "{crate_dir}/Cargo.toml must build tests/integration.rs as its one test binary"
        );
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&tests).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let is_module =
                path.extension().is_some_and(|e| e == "rs") || path.join("mod.rs").is_file();
            if is_module && stem != "integration" && !listed.contains(&format!("\nmod {stem};\n")) {
                missing.push(path.display().to_string());
            }
        }
        assert!(
            missing.is_empty(),
            "not named in {crate_dir}/tests/integration.rs: {missing:?}"
        );
    }
}

/// A file's code without its `#[cfg(test)]` items (a test module may use anything).
fn without_test_items(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at its `;` (`mod tests;`, `use ...;`) or its matching `}`.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Lines of code (comments dropped) of the hub's non-test source files, by path
/// relative to `hub/src`.
fn hub_sources() -> Vec<(String, String)> {
    let src = root().join("hub/src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name == "tests.rs" || name == "test_support.rs" {
            continue;
        }
        let text = without_test_items(&std::fs::read_to_string(&file).unwrap());
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push((rel, code));
    }
    out
}

/// Only each engine's backend folder names its database crate (tests included: a test
/// that looks into the database does so through `store::sql`).
#[test]
fn database_crates_are_named_only_in_their_backend() {
    let src = root().join("hub/src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let backends = [
        ("rusqlite", "store/sqlite/"),
        ("postgres::", "store/postgres/"),
        ("tokio_postgres", "store/postgres/"),
    ];
    // `postgres::` as a crate path, not `store::postgres::` (the backend's own module).
    let names_crate = |line: &str, krate: &str| {
        line.match_indices(krate).any(|(at, _)| {
            let before = line[..at].chars().next_back();
            !matches!(before, Some(c) if c == ':' || c == '_' || c.is_alphanumeric())
        })
    };
    let mut offenders = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (krate, home) in backends {
                if names_crate(line, krate) && !rel.starts_with(home) {
                    offenders.push(format!("hub/src/{rel}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a database crate named outside its backend folder:\n{}",
        offenders.join("\n")
    );
}

/// The hub's top-level module a `crate::...` path names.
fn crate_references(code: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if rest.starts_with('{') {
            // `use crate::{a::b, c};`: every first segment inside the braces.
            let end = rest.find('}').unwrap_or(rest.len());
            let mut depth = 0;
            let mut segment_start = true;
            let inner = &rest[1..end];
            let mut word = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        segment_start = true;
                        continue;
                    }
                    _ => {}
                }
                if segment_start {
                    if c.is_alphanumeric() || c == '_' {
                        word.push(c);
                    } else if !word.is_empty() {
                        out.insert(std::mem::take(&mut word));
                        segment_start = false;
                    }
                }
            }
            if !word.is_empty() {
                out.insert(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.insert(word);
            }
        }
    }
    out
}

/// The hub's top-level module of a source file (`store/sqlite/mod.rs` -> `store`).
fn top_module(rel: &str) -> String {
    let first = rel.split('/').next().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// The models are plain functions over values: they import neither the store nor a
/// database crate.
#[test]
fn models_import_nothing_from_the_store() {
    let models = [
        "identity/",
        "profile.rs",
        "segments/",
        "coupons/",
        "digests/facts.rs",
        "digests/build.rs",
        "traits/",
    ];
    let mut offenders = Vec::new();
    for (rel, code) in hub_sources() {
        if !models.iter().any(|m| rel.starts_with(m)) {
            continue;
        }
        let refs = crate_references(&code);
        if refs.contains("store") {
            offenders.push(format!("hub/src/{rel} imports crate::store"));
        }
        for krate in ["rusqlite", "postgres::", "tokio_postgres"] {
            if code.contains(krate) {
                offenders.push(format!("hub/src/{rel} names {krate}"));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// No two top-level modules of the hub import each other, directly or around a circle
/// (test code aside): dependencies point one way, so each layer can be read alone.
#[test]
fn the_hubs_modules_import_each_other_in_no_circle() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
    for (rel, code) in hub_sources() {
        let from = top_module(&rel);
        if from == "lib" || from == "main" {
            continue;
        }
        for to in crate_references(&code) {
            if to != from && to != "sql_params" {
                why.entry((from.clone(), to.clone()))
                    .or_insert_with(|| rel.clone());
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge; report the circle with a file per step.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).unwrap();
                    let mut circle = path[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
                let steps: Vec<String> = circle
                    .windows(2)
                    .map(|w| {
                        format!(
                            "{} -> {} (hub/src/{})",
                            w[0],
                            w[1],
                            why[&(w[0].clone(), w[1].clone())]
                        )
                    })
                    .collect();
                panic!(
                    "the hub's modules import each other in a circle:\n{}",
                    steps.join("\n")
                );
            }
        }
    }
}

/// The pure-core check reads a whole file but its test items: code after a test module
/// (as in `shared/src/coupon/mod.rs` and `agent/src/scanner/mod.rs`) is read too.
#[test]
fn only_test_items_are_left_out_of_the_checks() {
    let text = "use a;\n#[cfg(test)]\nmod tests {\n    fn f() { g(); }\n}\nfn after() { tokio::spawn(x); }\n#[cfg(test)]\nmod more;\nconst Z: u8 = 1;\n";
    let code = without_test_items(text);
    assert!(code.contains("use a;"), "{code}");
    assert!(code.contains("fn after() { tokio::spawn(x); }"), "{code}");
    assert!(code.contains("const Z: u8 = 1;"), "{code}");
    assert!(!code.contains("fn f()"), "{code}");
    assert!(!code.contains("mod more"), "{code}");
}

/// The `pure` list of [`pure_cores_do_no_io`], read from this file: one list, so a module
/// added there is held by the lint check below as well.
fn pure_list() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("tests/architecture.rs")).unwrap();
    let start = text
        .find("let pure = [")
        .expect("the pure list in pure_cores_do_no_io");
    let list = &text[start..];
    let list = &list[..list.find("];").expect("the end of the pure list")];
    list.lines()
        .skip(1)
        .filter_map(|line| {
            let entry = line.trim().trim_end_matches(',');
            Some(entry.strip_prefix('"')?.strip_suffix('"')?.to_string())
        })
        .collect()
}

const DENY_DISALLOWED_METHODS: &str = "#![deny(clippy::disallowed_methods)]";

/// Whether the inner attributes at the top of `text` (after its `//!` comment) deny
/// `clippy::disallowed_methods`.
fn denies_disallowed_methods(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .take_while(|line| line.starts_with("#!["))
        .any(|line| line == DENY_DISALLOWED_METHODS)
}

/// Purity is held by clippy too: every module in the `pure` list (a folder by its
/// `lib.rs` or `mod.rs`) starts with `#![deny(clippy::disallowed_methods)]`, which turns
/// clippy.toml's clock, sleep, file and socket methods into errors there (the workspace
/// allows them elsewhere). A new pure module without the attribute fails here.
#[test]
fn every_pure_module_denies_the_disallowed_methods() {
    let pure = pure_list();
    assert!(pure.len() >= 10, "pure list not found: {pure:?}");
    for entry in &pure {
        let path = root().join(entry);
        let file = if path.is_dir() {
            ["lib.rs", "mod.rs"]
                .iter()
                .map(|name| path.join(name))
                .find(|file| file.is_file())
                .unwrap_or_else(|| panic!("{entry}: a pure folder without lib.rs or mod.rs"))
        } else {
            path
        };
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let denies = denies_disallowed_methods(&text);
        assert!(
            denies,
            "{}: a pure module starts with {DENY_DISALLOWED_METHODS} (after its //! comment)",
            file.display()
        );
    }
}

/// clippy.toml names the clock, sleep, file and socket methods (each with a reason), the
/// workspace allows the lint and every member takes the workspace's lints.
#[test]
fn clippy_toml_disallows_clock_sleep_file_and_socket_methods() {
    let text = std::fs::read_to_string(root().join("clippy.toml")).unwrap();
    let config: toml::Table = text.parse().unwrap();
    let entries = config["disallowed-methods"].as_array().unwrap();
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry["path"].as_str().unwrap();
        let reason = entry.get("reason").and_then(|r| r.as_str()).unwrap_or("");
        assert!(
            !reason.trim().is_empty(),
            "clippy.toml: {path} has no reason"
        );
        paths.push(path);
    }
    for method in [
        "std::time::SystemTime::now",
        "std::time::Instant::now",
        "chrono::Utc::now",
        "chrono::Local::now",
        "std::thread::sleep",
        "tokio::time::sleep",
        "std::fs::File::open",
        "std::fs::File::create",
        "std::fs::OpenOptions::open",
        "std::fs::read",
        "std::fs::read_to_string",
        "std::fs::write",
        "std::net::TcpStream::connect",
        "std::net::TcpListener::bind",
        "std::net::UdpSocket::bind",
        "rusqlite::Connection::open",
    ] {
        assert!(
            paths.contains(&method),
            "clippy.toml does not disallow {method}"
        );
    }
    let workspace: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        workspace["workspace"]["lints"]["clippy"]["disallowed_methods"].as_str(),
        Some("allow"),
        "Cargo.toml: [workspace.lints.clippy] disallowed_methods = \"allow\""
    );
    for member in [
        "Cargo.toml",
        "shared/Cargo.toml",
        "agent/Cargo.toml",
        "hub/Cargo.toml",
    ] {
        let manifest: toml::Table = std::fs::read_to_string(root().join(member))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            manifest
                .get("lints")
                .and_then(|l| l.get("workspace"))
                .and_then(|w| w.as_bool()),
            Some(true),
            "{member}: [lints] workspace = true (or clippy.toml's list bites nowhere, or everywhere)"
        );
    }
}
