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
        "src/faults/plan.rs",
        "src/faults/total_queue.rs",
        "hub/src/digests/build.rs",
        "agent/src/layout/matcher.rs",
        "agent/src/checkout.rs",
        "agent/src/coupons",
        "hub/src/profile.rs",
        "hub/src/listener/session.rs",
        "hub/src/spreadsheet.rs",
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
        // Unit tests at the bottom of a file may use the real world.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
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
