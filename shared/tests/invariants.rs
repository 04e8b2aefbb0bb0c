//! Architecture invariant: shared stays free of IO. It may not depend on a runtime,
//! a database, a port or a network crate (ARCHITECTURE.md).

#[test]
fn shared_depends_on_no_io_crate() {
    let manifest = include_str!("../Cargo.toml");
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
    ];
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("shared has a [dependencies] table");
    let deps = deps.split("\n[").next().unwrap_or(deps);
    for line in deps.lines() {
        let name = line.split('=').next().unwrap_or("").trim();
        assert!(
            !forbidden.iter().any(|f| name.starts_with(f)),
            "shared/Cargo.toml depends on IO crate {name:?}"
        );
    }
}
