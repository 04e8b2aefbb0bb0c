//! `till360-agent check --config agent.toml`: everything a start would check, without
//! opening a port or creating a file, every problem reported (not only the first), each
//! naming the file, the key and the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::RootCertStore;
use serde::Serialize;

use crate::config::{AgentConfig, ConfigError, HubLink};
use crate::ports::PortSpec;

/// One problem with a config file or a file it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    /// `key`, `[section] key` or `[section]`; empty when the whole file is at fault.
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    /// `FILE: key `KEY`: REASON`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        // One line a problem, also for a multi-line reason (a regex error).
        let lines: Vec<&str> = self
            .reason
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        write!(f, "{}", lines.join(" "))
    }
}

/// EX_CONFIG from sysexits.h: the configuration is wrong.
pub const EXIT_CONFIG: u8 = 78;

/// How many times a bad key is taken out to look for the next problem.
const MAX_CONFIG_PROBLEMS: usize = 64;

/// Every problem with `config_path` and the files, devices and folders it names.
pub fn check_agent(config_path: &Path) -> Vec<Problem> {
    let problem = |key: &str, reason: String| Problem {
        file: config_path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let text = match std::fs::read_to_string(config_path) {
        Ok(text) => text,
        Err(e) => return vec![problem("", format!("cannot read: {e}"))],
    };
    let mut table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        // Not TOML at all: the loader's message says where.
        Err(_) => return config_problems(AgentConfig::from_toml_str(&text, config_path)),
    };
    // The loader stops at the first problem: take the key at fault out and load again,
    // until the file loads or a problem cannot be taken out. A required key taken out
    // comes back as a placeholder, so the checks after it still run (and skip it).
    let mut problems = Vec::new();
    let mut candidate = text;
    let mut config = None;
    let mut removed: Option<String> = None;
    let mut placeheld: Vec<String> = Vec::new();
    for _ in 0..MAX_CONFIG_PROBLEMS {
        match AgentConfig::from_toml_str(&candidate, config_path) {
            Ok(loaded) => {
                config = Some(loaded);
                break;
            }
            Err(err) => {
                let found = config_problems(Err(err));
                let Some(found) = found.into_iter().next() else {
                    break;
                };
                if let Some(field) = missing_field(&found.reason) {
                    // The required key the step before took out: already reported.
                    let Some(key) = removed.take().filter(|k| key_name(k) == field) else {
                        if problems.is_empty() {
                            problems.push(found);
                        }
                        break;
                    };
                    if placeheld.contains(&key) || !put_placeholder(&mut table, &key) {
                        break;
                    }
                    placeheld.push(key);
                } else {
                    if placeheld.contains(&found.key) {
                        // Its placeholder does not fit either: nothing more to learn.
                        break;
                    }
                    let key = found.key.clone();
                    let taken = remove_key(&mut table, &key);
                    problems.push(found);
                    if !taken {
                        break;
                    }
                    removed = Some(key);
                }
                match toml::to_string(&table) {
                    Ok(text) => candidate = text,
                    Err(_) => break,
                }
            }
        }
    }
    let Some(config) = config else {
        return problems;
    };
    // A placeholder's checks would only find the placeholder.
    let mut report = |key: &str, reason: String| {
        if !placeheld.iter().any(|k| k == key) {
            problems.push(problem(key, reason));
        }
    };

    if let Err(e) = crate::layout::Layout::load(&config.pos.layout) {
        report("[pos] layout", e.to_string());
    }
    let mut ports = vec![
        ("[pos] port", &config.pos.port),
        ("[printer] port", &config.printer.port),
    ];
    if let Some(scanner) = &config.scanner {
        ports.push(("[scanner] port", &scanner.port));
        if let Some(forward) = &scanner.forward_to {
            ports.push(("[scanner] forward_to", forward));
        }
    }
    for (key, port) in ports {
        // `tcp://` addresses were parsed by the loader; devices must be there.
        if let PortSpec::Path { path, .. } = port {
            if let Err(e) = std::fs::metadata(path) {
                report(key, format!("{}: {e}", path.display()));
            }
        }
    }
    if let Some(hub) = &config.hub {
        for (key, reason) in tls_problems(hub) {
            report(key, reason);
        }
    }
    if let Err(reason) = writable_folder(&config.data_dir) {
        report("data_dir", reason);
    }
    problems
}

fn config_problems(loaded: Result<AgentConfig, ConfigError>) -> Vec<Problem> {
    match loaded {
        Ok(_) => Vec::new(),
        Err(ConfigError::Read { file, source }) => vec![Problem {
            file: file.into(),
            key: String::new(),
            reason: format!("cannot read: {source}"),
        }],
        Err(ConfigError::Invalid { file, key, reason }) => vec![Problem {
            file: file.into(),
            // The loader's key ends with ": " when there is one.
            key: key.trim_end_matches(": ").to_string(),
            reason,
        }],
    }
}

/// The field a serde "missing field `name`" message names.
fn missing_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// `name` of `name` or `[section] name`.
fn key_name(key: &str) -> &str {
    let name = key.rsplit(']').next().unwrap_or(key).trim();
    name.split_whitespace().next().unwrap_or(name)
}

/// A placeholder that passes the loader's own checks of an id, a path or an address.
const PLACEHOLDER: &str = "placeholder";

/// Puts [`PLACEHOLDER`] where `key` (`name` or `[section] name`) was taken out.
fn put_placeholder(table: &mut toml::Table, key: &str) -> bool {
    let value = toml::Value::String(PLACEHOLDER.into());
    match key
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
    {
        Some((section, _)) => match table.get_mut(section.trim()) {
            Some(toml::Value::Table(inner)) => {
                inner.insert(key_name(key).to_string(), value);
                true
            }
            _ => false,
        },
        None => {
            table.insert(key_name(key).to_string(), value);
            true
        }
    }
}

/// Takes `key` (`name`, `[section] name` or `[section]`) out of `table`; false when
/// there is nothing to take out.
fn remove_key(table: &mut toml::Table, key: &str) -> bool {
    let key = key.trim();
    if key.is_empty() {
        return false;
    }
    match key.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((section, name)) => {
            let (section, name) = (section.trim(), name.trim());
            if name.is_empty() {
                return table.remove(section).is_some();
            }
            // Only the first word: the loader may say `[pos] codepage_map "x"`.
            let name = name.split_whitespace().next().unwrap_or(name);
            match table.get_mut(section) {
                Some(toml::Value::Table(inner)) => inner.remove(name).is_some(),
                _ => false,
            }
        }
        None => table
            .remove(key.split_whitespace().next().unwrap_or(key))
            .is_some(),
    }
}

/// `[hub] ca cert key`: readable PEM, the key fits the certificate, the certificate is
/// in its validity period and signed by the CA.
fn tls_problems(hub: &HubLink) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let certs = |key: &'static str, path: &Path, problems: &mut Vec<(&'static str, String)>| {
        let loaded = CertificateDer::pem_file_iter(path)
            .map_err(|e| e.to_string())
            .and_then(|iter| {
                iter.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => {
                problems.push((key, format!("{}: no CERTIFICATE found", path.display())));
                None
            }
            Err(e) => {
                problems.push((key, format!("{}: {e}", path.display())));
                None
            }
        }
    };
    let ca = certs("[hub] ca", &hub.ca, &mut problems);
    let leaf = certs("[hub] cert", &hub.cert, &mut problems);
    let key = PrivateKeyDer::from_pem_file(&hub.key)
        .map_err(|e| problems.push(("[hub] key", format!("{}: {e}", hub.key.display()))))
        .ok();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if let (Some(leaf), Some(key)) = (&leaf, key) {
        match provider.key_provider.load_private_key(key) {
            Err(e) => problems.push(("[hub] key", format!("{}: {e}", hub.key.display()))),
            Ok(signing_key) => {
                let certified = rustls::sign::CertifiedKey::new(leaf.clone(), signing_key);
                if let Err(e) = certified.keys_match() {
                    problems.push((
                        "[hub] key",
                        format!(
                            "{} does not fit {}: {e}",
                            hub.key.display(),
                            hub.cert.display()
                        ),
                    ));
                }
            }
        }
    }
    let Some(leaf) = leaf else {
        return problems;
    };
    let in_period = match validity_problem(&leaf[0]) {
        Some(why) => {
            problems.push(("[hub] cert", format!("{}: {why}", hub.cert.display())));
            false
        }
        None => true,
    };
    let (Some(ca), true) = (ca, in_period) else {
        return problems;
    };
    let mut roots = RootCertStore::empty();
    for cert in ca {
        if let Err(e) = roots.add(cert) {
            problems.push(("[hub] ca", format!("{}: {e}", hub.ca.display())));
            return problems;
        }
    }
    let verified =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())
            .and_then(|verifier| {
                verifier
                    .verify_client_cert(&leaf[0], &leaf[1..], UnixTime::now())
                    .map_err(|e| e.to_string())
            });
    if let Err(e) = verified {
        problems.push((
            "[hub] cert",
            format!(
                "{}: not valid under {}: {e}",
                hub.cert.display(),
                hub.ca.display()
            ),
        ));
    }
    problems
}

/// Why `cert` is not valid now (expired, or not yet valid), if it is not.
fn validity_problem(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) => parsed,
        Err(e) => return Some(format!("not an X.509 certificate: {e}")),
    };
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        Some(format!("the certificate expired on {}", validity.not_after))
    } else if now < validity.not_before {
        Some(format!(
            "the certificate is not valid before {}",
            validity.not_before
        ))
    } else {
        None
    }
}

/// The journal's folder: it exists and is writable, or the nearest folder above it
/// that exists is (the agent creates the rest).
fn writable_folder(dir: &Path) -> Result<(), String> {
    let mut at = Some(dir);
    while let Some(candidate) = at {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        if candidate.exists() {
            if !candidate.is_dir() {
                return Err(format!("{} is not a folder", candidate.display()));
            }
            // access(2) W_OK: what this user may do, without creating anything.
            let c_path = std::ffi::CString::new(candidate.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: a valid NUL-terminated path; access only reads it.
            let allowed = unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0;
            return if allowed {
                Ok(())
            } else {
                Err(format!(
                    "{}: not writable: {}",
                    candidate.display(),
                    std::io::Error::last_os_error()
                ))
            };
        }
        at = candidate.parent();
    }
    Err(format!("{}: no folder above it exists", dir.display()))
}

/// Prints every problem, one a line, then a summary (`FILE: ok`, or the count); the
/// exit code is 0 without problems, 78 (EX_CONFIG, as `vector validate`) with some.
pub fn print_report(
    config_path: &Path,
    problems: &[Problem],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<u8> {
    if json {
        let report = serde_json::json!({
            "file": config_path,
            "ok": problems.is_empty(),
            "errors": problems.len(),
            "problems": problems,
        });
        writeln!(out, "{report}")?;
    } else {
        for problem in problems {
            writeln!(out, "{problem}")?;
        }
        match problems.len() {
            0 => writeln!(out, "{}: ok", config_path.display())?,
            1 => writeln!(out, "{}: 1 error", config_path.display())?,
            n => writeln!(out, "{}: {n} errors", config_path.display())?,
        }
    }
    Ok(if problems.is_empty() { 0 } else { EXIT_CONFIG })
}
