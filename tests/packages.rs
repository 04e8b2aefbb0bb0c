//! The `.deb` packages and the systemd units (packaging/): `cargo deb` builds both
//! packages from the debug binaries (`--profile dev --no-build --no-strip`: a release
//! build inside a test would take minutes; `cargo deb -p till360-hub` without those flags
//! makes the real one), `dpkg-deb` shows what they hold, `dpkg --root` unpacks them into
//! a throwaway root, and `systemd-analyze verify` checks the units against the unpacked
//! binaries. Without cargo-deb or systemd-analyze a test says SKIPPED, unless
//! `TILL360_REQUIRE_PACKAGING=1` (as `.ci/run` sets), which makes it fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PACKAGES: [&str; 2] = ["till360-hub", "till360-agent"];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `true` if `program --version` runs; otherwise SKIPPED (or a failure when packaging
/// is required).
fn tool_present(program: &str, args: &[&str], install: &str) -> bool {
    if Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let required = std::env::var("TILL360_REQUIRE_PACKAGING").is_ok_and(|v| v.trim() == "1");
    assert!(
        !required,
        "TILL360_REQUIRE_PACKAGING=1 but `{program}` is missing ({install})"
    );
    eprintln!(
        "*** SKIPPED: `{program}` is missing ({install}; set TILL360_REQUIRE_PACKAGING=1 to \
         make this a failure) ***"
    );
    false
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

/// Builds the agent's and the hub's debug binaries (this test binary's build does not)
/// and packages both into `out`; returns the `.deb` paths in [`PACKAGES`] order.
fn build_packages(out: &Path) -> Vec<PathBuf> {
    run(cargo().current_dir(workspace()).args([
        "build",
        "-p",
        "till360-hub",
        "-p",
        "till360-agent",
        "--bins",
    ]));
    PACKAGES
        .iter()
        .map(|package| {
            let made = run(cargo()
                .current_dir(workspace())
                .args([
                    "deb",
                    "-p",
                    package,
                    "--profile",
                    "dev",
                    "--no-build",
                    "--no-strip",
                    "--fast",
                    "-o",
                ])
                .arg(out));
            let path = text(&made)
                .lines()
                .rev()
                .find(|l| l.trim_end().ends_with(".deb"))
                .map(|l| PathBuf::from(l.trim()))
                .unwrap_or_else(|| panic!("cargo deb names no .deb: {}", text(&made)));
            assert!(path.is_file(), "{} exists", path.display());
            path
        })
        .collect()
}

/// The entries of `dpkg-deb -c`: (mode string, path without the leading `.`).
fn contents(deb: &Path) -> Vec<(String, String)> {
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)));
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mode = fields.next()?.to_string();
            let path = fields.last()?.trim_start_matches('.').to_string();
            Some((mode, path))
        })
        .collect()
}

fn mode_of<'a>(entries: &'a [(String, String)], path: &str) -> &'a str {
    entries
        .iter()
        .find(|(_, p)| p == path)
        .map(|(mode, _)| mode.as_str())
        .unwrap_or_else(|| panic!("{path} is not in the package: {entries:?}"))
}

fn control_file(deb: &Path, name: &str) -> String {
    text(&run(Command::new("dpkg-deb").arg("-I").arg(deb).arg(name)))
}

/// Both packages hold the binary in /usr/bin, their config under /etc/till360 marked a
/// conffile (and not readable by others), their unit in /lib/systemd/system and a
/// postinst that creates the user and the data folder; they depend on libc and passwd
/// (useradd). Unpacked with `dpkg --root` into a throwaway root, the units pass
/// `systemd-analyze verify` against the unpacked binaries.
#[test]
fn packages_hold_binary_configs_units_and_scripts_and_their_units_verify() {
    if !tool_present(
        "cargo-deb",
        &["--version"],
        "cargo install cargo-deb --locked",
    ) {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let debs = build_packages(out.path());
    for (package, deb) in PACKAGES.iter().zip(&debs) {
        let role = package.trim_start_matches("till360-");
        let entries = contents(deb);
        assert!(mode_of(&entries, &format!("/usr/bin/{package}")).starts_with("-rwxr-xr-x"));
        let config = format!("/etc/till360/{role}.toml");
        assert_eq!(mode_of(&entries, &config), "-rw-r-----", "{config}");
        let unit = format!("/lib/systemd/system/{package}.service");
        mode_of(&entries, &unit);
        mode_of(
            &entries,
            &format!("/usr/share/doc/{package}/examples/{role}.toml"),
        );

        let conffiles = control_file(deb, "conffiles");
        assert!(
            conffiles.lines().any(|l| l.trim() == config),
            "{config} is a conffile: {conffiles}"
        );
        let control = control_file(deb, "control");
        assert!(
            control.contains(&format!("Package: {package}")),
            "{control}"
        );
        let depends = control
            .lines()
            .find(|l| l.starts_with("Depends:"))
            .unwrap_or_else(|| panic!("no Depends: {control}"));
        assert!(
            depends.contains("libc6") && depends.contains("passwd"),
            "{depends}"
        );
        let postinst = control_file(deb, "postinst");
        for needed in [
            "useradd --system",
            &format!("/var/lib/till360/{role}"),
            "getent passwd till360",
        ] {
            assert!(
                postinst.contains(needed),
                "postinst has {needed}:\n{postinst}"
            );
        }
        if role == "agent" {
            assert!(
                postinst.contains("usermod -a -G dialout till360"),
                "{postinst}"
            );
            assert!(
                conffiles.contains("/etc/till360/receipts/supermarket.toml"),
                "the receipt layouts are conffiles: {conffiles}"
            );
        }
        for script in ["prerm", "postrm"] {
            assert!(
                control_file(deb, script).starts_with("#!/bin/sh"),
                "{script}"
            );
        }
    }

    // A throwaway root with an empty dpkg database. Unpacking runs no maintainer script
    // (the packages have no preinst): the host's users stay untouched.
    let root = tempfile::tempdir().expect("temp root");
    let admin = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).expect("dpkg info");
    std::fs::create_dir_all(admin.join("updates")).expect("dpkg updates");
    std::fs::write(admin.join("status"), "").expect("dpkg status");
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.path().display()))
        .args([
            "--force-not-root",
            "--force-depends",
            "--log=/dev/null",
            "--unpack",
        ])
        .args(&debs));
    let status = std::fs::read_to_string(admin.join("status")).expect("dpkg status");
    for package in PACKAGES {
        assert!(
            status.contains(&format!("Package: {package}\nStatus: install ok unpacked")),
            "{package} unpacked: {status}"
        );
        assert!(root.path().join("usr/bin").join(package).is_file());
    }
    // Unpacked, not configured: dpkg keeps a new conffile beside its name until then.
    for config in ["hub.toml", "agent.toml", "receipts/supermarket.toml"] {
        let path = root.path().join("etc/till360").join(config);
        let pending = path.with_file_name(format!(
            "{}.dpkg-new",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ));
        assert!(
            path.is_file() || pending.is_file(),
            "{} unpacked",
            path.display()
        );
    }
    verify_units(root.path());
}

/// `systemd-analyze verify` on each unpacked unit, its ExecStart pointed at the unpacked
/// binary (verify checks that the command exists, and /usr/bin has none here).
fn verify_units(root: &Path) {
    if !tool_present("systemd-analyze", &["--version"], "apt-get install systemd") {
        return;
    }
    let units = tempfile::tempdir().expect("units dir");
    for package in PACKAGES {
        let name = format!("{package}.service");
        let unit = std::fs::read_to_string(root.join("lib/systemd/system").join(&name))
            .expect("unpacked unit");
        let installed = format!("ExecStart=/usr/bin/{package} ");
        assert!(
            unit.contains(&installed),
            "{name} starts /usr/bin/{package}"
        );
        let binary = root.join("usr/bin").join(package);
        let unit = unit.replace(&installed, &format!("ExecStart={} ", binary.display()));
        for (key, value) in [
            ("Type", "notify"),
            ("WatchdogSec", "30s"),
            ("Restart", "on-failure"),
            ("RestartSec", "2"),
            ("User", "till360"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("PrivateTmp", "yes"),
            ("ProtectHome", "yes"),
        ] {
            let line = format!("{key}={value}");
            assert!(unit.lines().any(|l| l == line), "{name} has {line}");
        }
        let role = package.trim_start_matches("till360-");
        let data = format!("ReadWritePaths=/var/lib/till360/{role}");
        assert!(unit.lines().any(|l| l == data), "{name} has {data}");
        if role == "agent" {
            assert!(
                unit.lines()
                    .any(|l| l.starts_with("SupplementaryGroups=") && l.contains("dialout")),
                "{name} runs in group dialout"
            );
        }
        let path = units.path().join(&name);
        std::fs::write(&path, unit).expect("unit copy");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // verify also reports problems in other units of the host: only ours count.
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(package)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {name}: {}\n{stderr}",
            out.status
        );
    }
}

/// The configs the packages install parse as the hub and the agent read them, and keep
/// their data where the units let them write (`ReadWritePaths=`).
#[test]
fn packaged_configs_parse_and_keep_their_data_where_the_units_allow() {
    let packaging = workspace().join("packaging");
    let hub = till360_hub::config::HubConfig::load(packaging.join("etc/hub.toml"))
        .expect("packaging/etc/hub.toml");
    let agent = till360_agent::config::AgentConfig::load(&packaging.join("etc/agent.toml"))
        .expect("packaging/etc/agent.toml");
    for (package, data_dir) in [
        ("till360-hub", hub.data_dir.clone()),
        ("till360-agent", agent.data_dir.clone()),
    ] {
        let unit =
            std::fs::read_to_string(packaging.join(format!("{package}.service"))).expect("unit");
        let writable = format!("ReadWritePaths={}", data_dir.display());
        assert!(
            unit.lines().any(|l| l == writable),
            "{package}.service has {writable}"
        );
    }
    // The layout the agent's config names is shipped beside it (/etc/till360/receipts/).
    let layout = agent
        .pos
        .layout
        .strip_prefix(packaging.join("etc"))
        .map(Path::to_path_buf);
    let shipped = workspace()
        .join("config")
        .join(layout.expect("layout under /etc/till360"));
    assert!(shipped.is_file(), "{} is shipped", shipped.display());
}
