//! The CA: files, permissions, identities in certificates, the `ca` commands.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use till360_hub::cli::main_with_args;
use till360_hub::pki::{self, agent_from_cert_der, PkiError};
use till360_shared::AgentId;
use x509_parser::extensions::GeneralName;

fn der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn run(args: &[&str]) -> ExitCode {
    main_with_args(
        std::iter::once("till360-hub")
            .chain(args.iter().copied())
            .map(OsString::from),
    )
}

#[test]
fn init_and_issue_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    pki::init_ca(
        &dir,
        &["hub.example".into()],
        &["10.1.2.3".parse().unwrap()],
        false,
    )
    .unwrap();
    for f in ["ca.pem", "ca.key", "hub.pem", "hub.key"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("hub.key")), 0o600);

    let hub_der = der(&dir.join("hub.pem"));
    let (_, hub) = x509_parser::parse_x509_certificate(&hub_der).unwrap();
    let sans = &hub
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(sans.contains(&GeneralName::DNSName("hub.example")));
    assert!(sans.contains(&GeneralName::IPAddress(&[10, 1, 2, 3])));
    let ca_der = der(&dir.join("ca.pem"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(hub.issuer(), ca.subject());

    let out = tmp.path().join("till");
    pki::issue_agent(&dir, "S001", "T01", &out).unwrap();
    assert_eq!(
        std::fs::read(out.join("ca.pem")).unwrap(),
        std::fs::read(dir.join("ca.pem")).unwrap()
    );
    assert_eq!(mode(&out.join("agent.key")), 0o600);
    let agent_der = der(&out.join("agent.pem"));
    assert_eq!(
        agent_from_cert_der(&agent_der),
        Ok(AgentId::new("S001", "T01"))
    );
    let (_, agent) = x509_parser::parse_x509_certificate(&agent_der).unwrap();
    let cn = agent
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cn, "S001/T01");
    assert_eq!(agent.issuer(), ca.subject());
    // The hub's certificate carries no agent identity.
    assert!(agent_from_cert_der(&hub_der).is_err());
}

#[test]
fn refuses_to_overwrite_a_ca_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    pki::init_ca(&dir, &["localhost".into()], &[], false).unwrap();
    let first = std::fs::read(dir.join("ca.pem")).unwrap();
    assert!(matches!(
        pki::init_ca(&dir, &["localhost".into()], &[], false),
        Err(PkiError::AlreadyExists(_))
    ));
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), first);
    pki::init_ca(&dir, &["localhost".into()], &[], true).unwrap();
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), first);
}

#[test]
fn refuses_bad_identities_and_missing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let out = tmp.path().join("out");
    assert!(matches!(
        pki::issue_agent(&dir, "S001", "T01", &out),
        Err(PkiError::Read { .. })
    ));
    pki::init_ca(&dir, &["localhost".into()], &[], false).unwrap();
    for (store, till) in [
        ("S:1", "T1"),
        ("S1", ""),
        ("S1", "T/1"),
        ("S1", &"x".repeat(33)),
    ] {
        assert!(
            matches!(
                pki::issue_agent(&dir, store, till, &out),
                Err(PkiError::BadIdentity { .. })
            ),
            "{store:?}/{till:?}"
        );
    }
    assert!(!out.exists(), "nothing written for a refused identity");
}

#[test]
fn ca_commands_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let dir_s = dir.to_str().unwrap();
    assert_eq!(run(&["ca", "init", "--dir", dir_s]), ExitCode::SUCCESS);
    let hub_der = der(&dir.join("hub.pem"));
    let (_, hub) = x509_parser::parse_x509_certificate(&hub_der).unwrap();
    let sans = &hub
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(
        sans.contains(&GeneralName::DNSName("localhost")),
        "{sans:?}"
    );
    assert!(
        sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
        "{sans:?}"
    );
    assert_eq!(
        run(&["ca", "init", "--dir", dir_s]),
        ExitCode::FAILURE,
        "overwrite refused"
    );

    let out = tmp.path().join("agent");
    let out_s = out.to_str().unwrap();
    let issue = [
        "ca", "issue", "--dir", dir_s, "--store", "S9", "--till", "T3", "--out", out_s,
    ];
    assert_eq!(run(&issue), ExitCode::SUCCESS);
    assert_eq!(
        agent_from_cert_der(&der(&out.join("agent.pem"))),
        Ok(AgentId::new("S9", "T3"))
    );

    let cfg = tmp.path().join("hub.toml");
    let cfg_s = cfg.to_str().unwrap();
    // A missing config for a real import is an error (1), not a usage error (2).
    assert_eq!(
        run(&["import", "customers", "x.csv", "--config", cfg_s]),
        ExitCode::FAILURE
    );
    assert_eq!(
        run(&["import", "nonsense", "x.csv", "--config", cfg_s]),
        ExitCode::from(2)
    );
    assert_eq!(run(&["frobnicate"]), ExitCode::from(2));
    // A missing config is an error, not a panic.
    assert_eq!(run(&["run", "--config", cfg_s]), ExitCode::FAILURE);
}

/// The hub refuses to start with a key file other users could read, naming the file
/// and its mode (issue 10 item 7): its TLS key and the secrets it keeps in data_dir.
#[tokio::test]
async fn a_key_file_others_can_read_stops_the_hub_at_start() {
    let site = crate::common::Site::new();
    let key = site.pki().join("hub.key");
    assert_eq!(mode(&key), 0o600);
    refused_with_mode(&site, &key, 0o644).await;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The coupon master secret the hub created (0600) is checked at every start too.
    site.start().await.shutdown().await;
    let master = site.dir.path().join("data/coupon-master.key");
    assert_eq!(mode(&master), 0o600);
    refused_with_mode(&site, &master, 0o604).await;
}

/// Gives `file` the mode `open` and checks the hub then refuses to start, naming both.
async fn refused_with_mode(site: &crate::common::Site, file: &Path, open: u32) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(open)).unwrap();
    let err = till360_hub::server::start(site.config())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&format!("{} has mode {open:04o}", file.display())),
        "{err}"
    );
}
