//! `till360-hub check --config hub.toml`: everything a start would check, without
//! starting or creating anything, every problem reported (not only the first), each
//! naming the file, the key and the reason.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::RootCertStore;
use serde::Serialize;

use crate::config::{ConfigError, HubConfig};
use crate::listener::{self, TlsSetupError};

/// How bad a problem is: an error stops a start, a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem with a config file or a file it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: PathBuf,
    /// The key at fault; empty when the whole file is (it does not parse).
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    /// `FILE: key `KEY`: REASON` (warnings say so after the key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
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

impl Problem {
    fn error(file: &Path, key: &str, reason: impl ToString) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    fn from_config_error(err: ConfigError) -> Self {
        match err {
            ConfigError::Read { path, source } => {
                Problem::error(&path, "", format!("cannot read: {source}"))
            }
            ConfigError::Parse { path, message } => Problem::error(&path, "", message),
            ConfigError::Invalid { path, key, reason } => Problem::error(&path, &key, reason),
        }
    }
}

/// Every problem with `config_path` and the files, database and ports it names.
pub fn check_hub(config_path: &Path) -> Vec<Problem> {
    let (config, errors) = HubConfig::load_checked(config_path);
    let mut problems: Vec<Problem> = errors.into_iter().map(Problem::from_config_error).collect();
    let Some(config) = config else {
        return problems;
    };
    // Values already in error are stand-ins: checking them again would only mislead.
    let in_error: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    let fine = |key: &str| !in_error.iter().any(|k| k == key);
    let origin = config.origin.clone();
    let mut report =
        |key: &str, reason: String| problems.push(Problem::error(&origin, key, reason));

    let readable = |path: &Path| std::fs::File::open(path).map(|_| ());
    let mut tls_files_fine = true;
    for (key, path) in [
        ("ca", &config.ca),
        ("cert", &config.cert),
        ("key", &config.key),
    ] {
        if !fine(key) {
            tls_files_fine = false;
        } else if let Err(e) = readable(path) {
            tls_files_fine = false;
            report(key, format!("{}: {e}", path.display()));
        }
    }
    if fine("key") {
        for key_file in [
            config.key.clone(),
            config.data_dir.join(crate::campaigns::MASTER_KEY_FILE),
            config.data_dir.join(crate::listener::RESET_KEY_FILE),
        ] {
            if let Err(e) = crate::pki::check_key_file(&key_file) {
                report("key", e.to_string());
            }
        }
    }
    if tls_files_fine {
        for (key, reason) in tls_problems(&config.ca, &config.cert, &config.key) {
            report(key, reason);
        }
        let pki_dir = config.ca.parent().unwrap_or(Path::new("."));
        if let Err(e) = crate::pki::RevocationList::load(&crate::pki::revocation_list_path(pki_dir))
        {
            report("ca", format!("revocation list: {e}"));
        }
    }
    if let Err(e) = crate::segments::compile(&config.segments) {
        report("segment", e.to_string());
    }
    if let (Some(path), true) = (&config.campaigns, fine("campaigns")) {
        match std::fs::read_to_string(path) {
            Err(e) => report("campaigns", format!("{}: {e}", path.display())),
            Ok(text) => {
                if let Err(e) = till360_shared::campaign::CampaignSet::from_toml_str(&text, path) {
                    report("campaigns", format!("{}: {e}", path.display()));
                }
            }
        }
    }
    if fine("database.url") && fine("data_dir") {
        if let Err(reason) = crate::store::probe::probe(&config.database, config.database_timeout) {
            report("database.url", reason);
        }
    }
    for (key, addr, udp) in [
        ("listen", config.listen, true),
        ("http", config.http, false),
    ] {
        if fine(key) {
            if let Some(problem) = port_problem(&origin, key, addr, udp) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// The certificate against its key and the CA: PEM, key fits, signed by the CA, in its
/// validity period. Each problem with the key it is about.
fn tls_problems(ca: &Path, cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let reason = |err: TlsSetupError| match err {
        TlsSetupError::File { path, reason } => format!("{}: {reason}", path.display()),
        other => other.to_string(),
    };
    let ca_certs = listener::load_certs(ca).map_err(|e| problems.push(("ca", reason(e))));
    let certs = listener::load_certs(cert).map_err(|e| problems.push(("cert", reason(e))));
    let private_key = listener::load_key(key).map_err(|e| problems.push(("key", reason(e))));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if let (Ok(certs), Ok(private_key)) = (&certs, private_key) {
        match provider.key_provider.load_private_key(private_key) {
            Err(e) => problems.push(("key", format!("{}: {e}", key.display()))),
            Ok(signing_key) => {
                let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing_key);
                if let Err(e) = certified.keys_match() {
                    problems.push((
                        "key",
                        format!("{} does not fit {}: {e}", key.display(), cert.display()),
                    ));
                }
            }
        }
    }
    let Ok(certs) = certs else {
        return problems;
    };
    let leaf = &certs[0];
    let in_period = match validity_problem(leaf) {
        Some(why) => {
            problems.push(("cert", format!("{}: {why}", cert.display())));
            false
        }
        None => true,
    };
    let Ok(ca_certs) = ca_certs else {
        return problems;
    };
    // The period is reported above; the chain is checked only for a certificate in it
    // (an expired one fails the chain check for that reason alone).
    if in_period {
        let mut roots = RootCertStore::empty();
        for ca_cert in ca_certs {
            if let Err(e) = roots.add(ca_cert) {
                problems.push(("ca", format!("{}: {e}", ca.display())));
                return problems;
            }
        }
        let signed = rustls::server::ParsedCertificate::try_from(leaf).and_then(|parsed| {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &roots,
                &certs[1..],
                UnixTime::now(),
                provider.signature_verification_algorithms.all,
            )
        });
        if let Err(e) = signed {
            problems.push((
                "cert",
                format!("{}: not valid under {}: {e}", cert.display(), ca.display()),
            ));
        }
    }
    problems
}

/// Why `cert` is not valid now (expired, or not yet valid), if it is not.
pub fn validity_problem(cert: &CertificateDer<'_>) -> Option<String> {
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

/// A port that cannot be bound: in use is a warning (the running hub itself holds it),
/// anything else an error.
fn port_problem(file: &Path, key: &str, addr: SocketAddr, udp: bool) -> Option<Problem> {
    let bound = if udp {
        UdpSocket::bind(addr).map(drop)
    } else {
        TcpListener::bind(addr).map(drop)
    };
    let err = bound.err()?;
    let mut problem = Problem::error(file, key, format!("cannot listen on {addr}: {err}"));
    if err.kind() == std::io::ErrorKind::AddrInUse {
        problem.severity = Severity::Warning;
        problem.reason = format!("{addr} is in use (by a running hub?)");
    }
    Some(problem)
}

/// Prints every problem, one a line, then a summary (`FILE: ok`, or the counts); the
/// exit code is 0 without errors, 78 (EX_CONFIG, as `vector validate`) with some.
pub fn print_report(
    config_path: &Path,
    problems: &[Problem],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<u8> {
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    if json {
        let report = serde_json::json!({
            "file": config_path,
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "problems": problems,
        });
        writeln!(out, "{report}")?;
    } else {
        for problem in problems {
            writeln!(out, "{problem}")?;
        }
        let file = config_path.display();
        match (errors, warnings) {
            (0, 0) => writeln!(out, "{file}: ok")?,
            (0, w) => writeln!(out, "{file}: ok ({w} warning{})", plural(w))?,
            (e, w) => writeln!(
                out,
                "{file}: {e} error{}, {w} warning{}",
                plural(e),
                plural(w)
            )?,
        }
    }
    Ok(if errors == 0 { 0 } else { EXIT_CONFIG })
}

/// EX_CONFIG from sysexits.h: the configuration is wrong.
pub const EXIT_CONFIG: u8 = 78;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
