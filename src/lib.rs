//! Till360 root package: simulated till hardware on virtual serial ports, the
//! `demo` command, and passthroughs to the agent and hub command lines.

pub mod demo;
pub mod faults;
pub mod http_client;
pub mod loadgen;
pub mod loopback_ports;
pub mod rig;
pub mod sim;
pub mod simulation;
