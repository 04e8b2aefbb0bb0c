//! Loading `[hub] ca`, `cert` and `key`: good files load; bad ones are config errors
//! that name the key and the file.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use till360_agent::config::HubLink;
use till360_agent::uplink::client_config;

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    other_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let agent_key = KeyPair::generate().unwrap();
    let agent_params = CertificateParams::new(vec!["S001-T01".to_string()]).unwrap();
    let agent_cert = agent_params.signed_by(&agent_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: agent_cert.pem(),
        key_pem: agent_key.serialize_pem(),
        other_key_pem: KeyPair::generate().unwrap().serialize_pem(),
    }
}

fn hub(dir: &Path) -> HubLink {
    HubLink {
        addresses: vec!["127.0.0.1:4433".into()],
        server_name: "localhost".into(),
        ca: dir.join("ca.pem"),
        cert: dir.join("agent.pem"),
        key: dir.join("agent.key"),
        batch_max: 500,
        window: 2000,
        origin: "agent.toml".into(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn setup() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    write(dir.path(), "ca.pem", &pki.ca_pem);
    write(dir.path(), "agent.pem", &pki.cert_pem);
    write(dir.path(), "agent.key", &pki.key_pem);
    (dir, pki)
}

fn error(hub: &HubLink) -> String {
    match client_config(hub) {
        Ok(_) => panic!("expected a TLS config error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_files_load() {
    let (dir, _) = setup();
    client_config(&hub(dir.path())).expect("valid CA, cert and key");
}

#[test]
fn missing_ca_names_key_and_path() {
    let (dir, _) = setup();
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    let e = error(&hub(dir.path()));
    let path = dir.path().join("ca.pem");
    assert!(
        e.starts_with(&format!("agent.toml: [hub] ca: {}: ", path.display())),
        "{e}"
    );
}

#[test]
fn ca_without_a_certificate_is_refused() {
    let (dir, pki) = setup();
    write(dir.path(), "ca.pem", &pki.key_pem);
    let e = error(&hub(dir.path()));
    assert!(e.starts_with("agent.toml: [hub] ca: "), "{e}");
    write(dir.path(), "ca.pem", "not pem at all\n");
    let e = error(&hub(dir.path()));
    assert!(e.starts_with("agent.toml: [hub] ca: "), "{e}");
}

#[test]
fn cert_file_holding_a_key_is_refused() {
    let (dir, pki) = setup();
    write(dir.path(), "agent.pem", &pki.key_pem);
    let e = error(&hub(dir.path()));
    assert!(e.starts_with("agent.toml: [hub] cert: "), "{e}");
}

#[test]
fn missing_or_wrong_key_is_refused() {
    let (dir, pki) = setup();
    write(dir.path(), "agent.key", &pki.cert_pem);
    let e = error(&hub(dir.path()));
    assert!(e.starts_with("agent.toml: [hub] key: "), "{e}");

    write(dir.path(), "agent.key", &pki.other_key_pem);
    let e = error(&hub(dir.path()));
    assert!(
        e.starts_with("agent.toml: [hub] key: ") && e.contains("does not fit [hub] cert"),
        "{e}"
    );

    std::fs::remove_file(dir.path().join("agent.key")).unwrap();
    let e = error(&hub(dir.path()));
    assert!(e.starts_with("agent.toml: [hub] key: "), "{e}");
}
