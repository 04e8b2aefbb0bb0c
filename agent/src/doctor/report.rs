//! The doctor's findings per port, as text for people and as JSON for scripts (pure).

#![deny(clippy::disallowed_methods)]

use std::fmt::Write as _;

use serde::Serialize;

use super::probe::{EscPosSummary, Preview, PrinterStatus, ScannerGuess};
use crate::instance::LockHolder;

/// Which configured port a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Scanner,
    /// `[scanner] forward_to`: the POS's scanner input.
    ScannerForward,
    Pos,
    Printer,
}

impl Role {
    /// The config key that names this port, as config errors spell it.
    pub fn key(self) -> &'static str {
        match self {
            Role::Scanner => "[scanner] port",
            Role::ScannerForward => "[scanner] forward_to",
            Role::Pos => "[pos] port",
            Role::Printer => "[printer] port",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::Scanner => "scanner",
            Role::ScannerForward => "scanner forward",
            Role::Pos => "pos",
            Role::Printer => "printer",
        }
    }
}

/// Whether a port could be opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum OpenState {
    Opened,
    Missing,
    Busy,
    /// The agent runs with this config (its data folder's lock is held): the doctor
    /// leaves its ports alone rather than steal bytes from a working till.
    HeldByAgent {
        pid: Option<u32>,
    },
    Failed(String),
}

impl std::fmt::Display for OpenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenState::Opened => f.write_str("opened"),
            OpenState::Missing => f.write_str("no such device"),
            OpenState::Busy => f.write_str("in use by another process (is the agent running?)"),
            OpenState::HeldByAgent { pid: Some(pid) } => write!(
                f,
                "held by the agent running with this config (pid {pid}); stop it to examine the port"
            ),
            OpenState::HeldByAgent { pid: None } => f.write_str(
                "held by the agent running with this config; stop it to examine the port",
            ),
            OpenState::Failed(reason) => write!(f, "cannot open: {reason}"),
        }
    }
}

/// The printer's answer to `DLE EOT 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrinterProbe {
    /// `false` when the request could not be written (the reason is in `PortReport::error`).
    pub request_sent: bool,
    /// `None`: no reply within the listening time.
    pub reply: Option<PrinterStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortReport {
    pub role: Role,
    pub key: &'static str,
    pub port: String,
    pub open: OpenState,
    /// Bytes received while listening.
    pub bytes: u64,
    pub preview: Option<Preview>,
    /// A read or write failure after the port opened (the device went away).
    pub error: Option<String>,
    pub scanner: Option<ScannerGuess>,
    pub pos: Option<EscPosSummary>,
    pub printer: Option<PrinterProbe>,
}

impl PortReport {
    pub fn new(role: Role, port: String, open: OpenState) -> Self {
        Self {
            role,
            key: role.key(),
            port,
            open,
            bytes: 0,
            preview: None,
            error: None,
            scanner: None,
            pos: None,
            printer: None,
        }
    }

    pub fn opened(&self) -> bool {
        self.open == OpenState::Opened
    }

    /// `[printer] port: /dev/ttyUSB1: no such device`.
    pub fn problem(&self) -> Option<String> {
        (!self.opened()).then(|| format!("{}: {}: {}", self.key, self.port, self.open))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    pub config: String,
    pub seconds: u64,
    pub ports: Vec<PortReport>,
    /// The agent already running with this config's data folder, if any.
    pub agent_running: Option<LockHolder>,
    /// Every port opened.
    pub ok: bool,
}

impl DoctorReport {
    pub fn new(
        config: String,
        seconds: u64,
        ports: Vec<PortReport>,
        agent_running: Option<LockHolder>,
    ) -> Self {
        let ok = ports.iter().all(PortReport::opened);
        Self {
            config,
            seconds,
            ports,
            agent_running,
            ok,
        }
    }

    /// One line per port that did not open. Ports held by the agent running with this
    /// config are not a problem: that is how it should be.
    pub fn problems(&self) -> Vec<String> {
        if self.agent_running.is_some() {
            return Vec::new();
        }
        self.ports.iter().filter_map(PortReport::problem).collect()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self.agent_running {
            Some(LockHolder { pid: Some(pid) }) => {
                let _ = writeln!(
                    out,
                    "{}: an agent is running with this config (pid {pid}); ports not examined",
                    self.config
                );
            }
            Some(LockHolder { pid: None }) => {
                let _ = writeln!(
                    out,
                    "{}: an agent is running with this config; ports not examined",
                    self.config
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: listened {} s on each port",
                    self.config, self.seconds
                );
            }
        }
        if self.agent_running.is_some() {
            // Said once above: each port only named.
            for port in &self.ports {
                let _ = writeln!(
                    out,
                    "{} ({}): {}: left to the agent",
                    port.role.label(),
                    port.key,
                    port.port
                );
            }
            return out;
        }
        for port in &self.ports {
            port_text(&mut out, port);
        }
        let opened = self.ports.iter().filter(|p| p.opened()).count();
        let _ = writeln!(
            out,
            "result: {opened} of {} ports opened{}",
            self.ports.len(),
            if self.ok { "" } else { " (see above)" }
        );
        out
    }
}

fn port_text(out: &mut String, port: &PortReport) {
    let _ = writeln!(
        out,
        "{} ({}): {}: {}",
        port.role.label(),
        port.key,
        port.port,
        port.open
    );
    if !port.opened() {
        return;
    }
    let _ = writeln!(out, "  bytes seen: {}", port.bytes);
    if let Some(p) = &port.preview {
        let more = if p.truncated { " ..." } else { "" };
        let _ = writeln!(out, "  hex: {}{more}", p.hex);
        let _ = writeln!(out, "  text: {}{more}", p.text);
    }
    if let Some(e) = &port.error {
        let _ = writeln!(out, "  error: {e}");
    }
    if let Some(s) = &port.scanner {
        scanner_text(out, s);
    }
    if let Some(pos) = &port.pos {
        pos_text(out, pos);
    }
    if let Some(printer) = &port.printer {
        let reply = match (&printer.request_sent, &printer.reply) {
            (false, _) => "not sent".to_string(),
            (true, Some(status)) => status.to_string(),
            (true, None) => "no reply".to_string(),
        };
        let _ = writeln!(out, "  status (DLE EOT 1): {reply}");
    }
}

fn scanner_text(out: &mut String, s: &ScannerGuess) {
    let framing = match (s.framing, s.matches_config) {
        (Some(f), Some(true)) => format!("{f} (matches [scanner] suffix {})", s.configured),
        (Some(f), _) => format!(
            "{f} (differs from [scanner] suffix {}: set suffix = \"{f}\")",
            s.configured
        ),
        (None, _) if s.trailing > 0 => {
            "none seen (bytes without a suffix: check the scanner's suffix setting)".into()
        }
        (None, _) => "none seen (nothing scanned)".into(),
    };
    let _ = writeln!(out, "  framing: {framing}");
    let aim = match &s.aim {
        Some(id) => format!("yes ({id})"),
        None => "no".into(),
    };
    let _ = writeln!(out, "  AIM identifier: {aim}");
    let _ = writeln!(out, "  scans: {}", s.scans);
    for scan in &s.first_scans {
        let _ = writeln!(out, "    {scan}");
    }
    if s.trailing > 0 && s.framing.is_some() {
        let _ = writeln!(out, "  incomplete scan at the end: {} bytes", s.trailing);
    }
}

fn pos_text(out: &mut String, pos: &EscPosSummary) {
    let _ = writeln!(
        out,
        "  ESC/POS: {} ({} commands, {} text lines, {} cuts, {} status requests, {} diagnostics{})",
        if pos.looks_like_escpos { "yes" } else { "no" },
        pos.commands,
        pos.lines,
        pos.cuts,
        pos.status_requests,
        pos.diagnostics,
        if pos.ends_in_command {
            ", ends inside a command"
        } else {
            ""
        }
    );
    for line in &pos.first_lines {
        let _ = writeln!(out, "    | {line}");
    }
    for d in &pos.first_diagnostics {
        let _ = writeln!(out, "    ? {d}");
    }
}
