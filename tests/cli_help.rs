//! The root binary's help names every command, the hub and agent passthroughs included.

use std::process::Command;

#[test]
fn the_root_help_lists_the_hub_and_agent_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_till360"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for command in ["demo", "loadgen", "hub", "agent"] {
        assert!(commands.contains(&command), "{command} in {help}");
    }
    // The passthrough still answers with the hub's own command line.
    let out = Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["hub", "--help"])
        .output()
        .unwrap();
    let hub_help = String::from_utf8(out.stdout).unwrap();
    assert!(hub_help.contains("till360-hub"), "{hub_help}");
    assert!(hub_help.contains("check"), "{hub_help}");
}
