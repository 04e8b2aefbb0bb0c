//! Revocation and fencing over real QUIC on 127.0.0.1: a revoked or superseded
//! certificate is refused at connect and cut while connected; oversize frames and other
//! protocol versions close only their own connection; the `ca revoke` command.

use crate::common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use common::{Agent, Site};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use till360_hub::cli::main_with_args;
use till360_hub::listener::{CLOSE_REFUSED, REVOCATION_POLL};
use till360_hub::pki::{self, identity_from_cert_der, IssuedCert, RevocationList};
use till360_hub::server;
use till360_hub::synthetic::Generator;
use till360_shared::codec::encode_frame;
use till360_shared::wire::{Message, Refusal, MAX_FRAME_LEN, PROTOCOL_VERSION};
use till360_shared::AgentId;

fn run(args: &[&str]) -> ExitCode {
    main_with_args(
        std::iter::once("till360-hub")
            .chain(args.iter().copied())
            .map(OsString::from),
    )
}

fn hello(agent: &AgentId) -> Message {
    Message::Hello {
        agent: agent.clone(),
        journal_last_seq: 0,
        software: "test-agent".into(),
    }
}

/// Issues a certificate for `store/till` into its own folder `name` (so an older one
/// stays usable, as on a cloned till).
fn issue(site: &Site, store: &str, till: &str, name: &str) -> (PathBuf, IssuedCert) {
    let out = site.dir.path().join("certs").join(name);
    let issued = pki::issue_agent(&site.pki(), store, till, &out).unwrap();
    (out, issued)
}

async fn connect(site: &Site, hub: std::net::SocketAddr, dir: &Path) -> Agent {
    Agent::connect(hub, &site.pki().join("ca.pem"), Some(dir))
        .await
        .unwrap()
}

/// Connects and says hello; expects a welcome.
async fn welcomed(site: &Site, hub: std::net::SocketAddr, dir: &Path, id: &AgentId) -> Agent {
    let mut agent = connect(site, hub, dir).await;
    assert_eq!(
        agent.call(&hello(id)).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    agent
}

fn revoke(pki: &Path, store: &str, till: &str, extra: &[&str]) -> ExitCode {
    let pki = pki.to_str().unwrap();
    let mut args = vec![
        "ca", "revoke", "--dir", pki, "--store", store, "--till", till,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The refusal the hub sent, and the close that followed with the same reason.
async fn expect_refused(
    agent: &mut Agent,
    reply: Result<Message, String>,
    expected: Refusal,
) -> String {
    let detail = match reply {
        Ok(Message::Refused { reason, detail }) => {
            assert_eq!(reason, expected, "{detail}");
            detail
        }
        other => panic!("expected Refused {expected:?}, got {other:?}"),
    };
    match agent.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_REFUSED.into());
            let reason = String::from_utf8_lossy(&close.reason).to_string();
            assert!(reason.starts_with(&format!("{expected:?}")), "{reason}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    detail
}

/// Sends `count` receipts and expects their ack: the connection still writes.
async fn still_writes(agent: &mut Agent, id: &AgentId, count: u64) {
    let mut gen = Generator::new(7, 20, 50);
    let events: Vec<_> = (1..=count).map(|seq| gen.receipt(id, seq)).collect();
    assert_eq!(
        agent.call(&Message::Events(events)).await,
        Ok(Message::Ack { acked_seq: count })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_revoked_before_connecting_is_refused_and_a_reissued_one_works() {
    let site = Site::new();
    let stolen = AgentId::new("S1", "T1");
    let other = AgentId::new("S1", "T2");
    let (stolen_dir, _) = issue(&site, "S1", "T1", "stolen");
    let (other_dir, _) = issue(&site, "S1", "T2", "other");
    assert_eq!(
        revoke(
            &site.pki(),
            "S1",
            "T1",
            &["--reason", "stolen from the shop"]
        ),
        ExitCode::SUCCESS
    );
    let list = std::fs::read(site.pki().join(pki::REVOKED_FILE)).unwrap();
    // Idempotent: revoking again changes nothing.
    assert_eq!(revoke(&site.pki(), "S1", "T1", &[]), ExitCode::SUCCESS);
    assert_eq!(
        std::fs::read(site.pki().join(pki::REVOKED_FILE)).unwrap(),
        list
    );

    let hub = site.start().await;
    let mut agent = connect(&site, hub.quic_addr(), &stolen_dir).await;
    let reply = agent.call(&hello(&stolen)).await;
    let detail = expect_refused(&mut agent, reply, Refusal::Revoked).await;
    assert!(detail.contains("stolen from the shop"), "{detail}");

    let mut unaffected = welcomed(&site, hub.quic_addr(), &other_dir, &other).await;
    still_writes(&mut unaffected, &other, 2).await;

    // The replacement till gets a new certificate (epoch 2): not covered by the list.
    let (new_dir, issued) = issue(&site, "S1", "T1", "replacement");
    assert_eq!(issued.epoch, 2);
    let mut replacement = welcomed(&site, hub.quic_addr(), &new_dir, &stolen).await;
    still_writes(&mut replacement, &stolen, 3).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_till_is_cut_when_revoked() {
    let site = Site::new();
    let hub = site.start().await;
    let target = AgentId::new("S1", "T1");
    let other = AgentId::new("S1", "T2");
    let (target_dir, _) = issue(&site, "S1", "T1", "target");
    let (other_dir, _) = issue(&site, "S1", "T2", "other");
    let mut connected = welcomed(&site, hub.quic_addr(), &target_dir, &target).await;
    let mut unaffected = welcomed(&site, hub.quic_addr(), &other_dir, &other).await;
    still_writes(&mut connected, &target, 1).await;

    assert_eq!(
        revoke(&site.pki(), "S1", "T1", &["--reason", "lost"]),
        ExitCode::SUCCESS
    );
    // The hub rereads the list every REVOCATION_POLL: the refusal comes unasked,
    // well within the client's step timeout.
    assert!(REVOCATION_POLL * 3 < common::STEP);
    let pushed = connected.recv().await;
    let detail = expect_refused(&mut connected, pushed, Refusal::Revoked).await;
    assert!(detail.contains("lost"), "{detail}");

    still_writes(&mut unaffected, &other, 2).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_serial_spares_the_tills_other_certificates() {
    let site = Site::new();
    let id = AgentId::new("S2", "T1");
    let (first_dir, first) = issue(&site, "S2", "T1", "first");
    let der = CertificateDer::from_pem_file(first_dir.join("agent.pem")).unwrap();
    let read = identity_from_cert_der(&der).unwrap();
    assert_eq!(
        (read.epoch, read.serial.as_str()),
        (1, first.serial.as_str())
    );

    let (second_dir, second) = issue(&site, "S2", "T1", "second");
    assert_ne!(first.serial, second.serial);
    // Written with colons and upper case, as people copy serials.
    let spelled = first
        .serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_string())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        revoke(&site.pki(), "S2", "T1", &["--serial", &spelled]),
        ExitCode::SUCCESS
    );
    let hub = site.start().await;
    let mut revoked = connect(&site, hub.quic_addr(), &first_dir).await;
    let reply = revoked.call(&hello(&id)).await;
    expect_refused(&mut revoked, reply, Refusal::Revoked).await;
    let mut current = welcomed(&site, hub.quic_addr(), &second_dir, &id).await;
    still_writes(&mut current, &id, 1).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprovisioned_till_fences_the_old_certificate_also_after_a_restart() {
    let site = Site::new();
    let id = AgentId::new("S3", "T1");
    let (old_dir, old) = issue(&site, "S3", "T1", "old");
    assert_eq!(old.epoch, 1);
    let hub = site.start().await;
    let mut old_conn = welcomed(&site, hub.quic_addr(), &old_dir, &id).await;

    // Re-provisioning: a new certificate for the same till, the old one still around.
    let (new_dir, new) = issue(&site, "S3", "T1", "new");
    assert_eq!(new.epoch, 2);
    let mut new_conn = welcomed(&site, hub.quic_addr(), &new_dir, &id).await;
    let pushed = old_conn.recv().await;
    let detail = expect_refused(&mut old_conn, pushed, Refusal::Fenced).await;
    assert!(detail.contains("epoch 1"), "{detail}");
    still_writes(&mut new_conn, &id, 2).await;

    // The clone tries again with the old certificate: refused before it can write.
    let mut clone = connect(&site, hub.quic_addr(), &old_dir).await;
    let reply = clone.call(&hello(&id)).await;
    expect_refused(&mut clone, reply, Refusal::Fenced).await;
    drop(new_conn);
    hub.shutdown().await;

    // The epoch seen is kept in the hub's database.
    let hub = site.start().await;
    let mut clone = connect(&site, hub.quic_addr(), &old_dir).await;
    let reply = clone.call(&hello(&id)).await;
    expect_refused(&mut clone, reply, Refusal::Fenced).await;
    let mut current = connect(&site, hub.quic_addr(), &new_dir).await;
    assert_eq!(
        current.call(&hello(&id)).await,
        Ok(Message::Welcome { acked_seq: 2 })
    );
    still_writes(&mut current, &id, 3).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_header_is_refused_at_once_and_closes_only_its_connection() {
    let site = Site::new();
    let hub = site.start().await;
    let good_id = AgentId::new("S4", "T1");
    let bad_id = AgentId::new("S4", "T2");
    let (good_dir, _) = issue(&site, "S4", "T1", "good");
    let (bad_dir, _) = issue(&site, "S4", "T2", "bad");
    let mut good = welcomed(&site, hub.quic_addr(), &good_dir, &good_id).await;
    let mut bad = welcomed(&site, hub.quic_addr(), &bad_dir, &bad_id).await;

    // Only the 6 header bytes of a frame declaring MAX_FRAME_LEN + 1: the refusal
    // comes without the body ever being sent, so nothing was buffered for it.
    let mut header = ((MAX_FRAME_LEN as u32) + 1).to_be_bytes().to_vec();
    header.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bad.send_raw(&header).await.unwrap();
    let reply = bad.recv().await;
    let detail = expect_refused(&mut bad, reply, Refusal::ProtocolError).await;
    assert!(
        detail.contains(&(MAX_FRAME_LEN + 1).to_string())
            && detail.contains(&MAX_FRAME_LEN.to_string()),
        "{detail}"
    );

    still_writes(&mut good, &good_id, 3).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_gets_a_clear_refusal_and_close() {
    let site = Site::new();
    let hub = site.start().await;
    let id = AgentId::new("S5", "T1");
    let (dir, _) = issue(&site, "S5", "T1", "till");
    let mut agent = connect(&site, hub.quic_addr(), &dir).await;
    // A well-formed hello from a till speaking another version.
    let mut frame = encode_frame(&hello(&id)).unwrap();
    let theirs = PROTOCOL_VERSION + 7;
    frame[4..6].copy_from_slice(&theirs.to_be_bytes());
    agent.send_raw(&frame).await.unwrap();
    let reply = agent.recv().await;
    let detail = expect_refused(&mut agent, reply, Refusal::ProtocolError).await;
    assert!(
        detail.contains(&format!("version {theirs}"))
            && detail.contains(&PROTOCOL_VERSION.to_string()),
        "{detail}"
    );
    // The same till with the right version is welcome.
    let mut fixed = welcomed(&site, hub.quic_addr(), &dir, &id).await;
    still_writes(&mut fixed, &id, 1).await;
    hub.shutdown().await;
}

#[test]
fn ca_revoke_errors_are_clear_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-pki");
    assert_eq!(revoke(&missing, "S1", "T1", &[]), ExitCode::FAILURE);
    assert!(!missing.exists());
    let err = pki::revoke(&missing, "S1", "T1", None, "").unwrap_err();
    assert!(err.to_string().contains("no-such-pki/ca.pem"), "{err}");

    let dir = tmp.path().join("pki");
    pki::init_ca(&dir, &["localhost".into()], &[], false).unwrap();
    assert_eq!(revoke(&dir, "S 1", "T1", &[]), ExitCode::FAILURE);
    assert_eq!(
        revoke(&dir, "S1", "T1", &["--serial", "not-hex"]),
        ExitCode::FAILURE
    );
    assert!(!dir.join(pki::REVOKED_FILE).exists());

    // A damaged list is reported by name and left as it is.
    let list = dir.join(pki::REVOKED_FILE);
    std::fs::write(&list, "[[revoked]]\nstore = 5\n").unwrap();
    let err = pki::revoke(&dir, "S1", "T1", None, "").unwrap_err();
    assert!(
        err.to_string().contains(&list.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "[[revoked]]\nstore = 5\n"
    );

    // A till never issued from this PKI: revoked through epoch 0 (older certificates).
    std::fs::remove_file(&list).unwrap();
    assert_eq!(revoke(&dir, "S1", "T9", &[]), ExitCode::SUCCESS);
    let parsed = RevocationList::load(&list).unwrap();
    assert_eq!(parsed.entries().len(), 1);
    assert_eq!(parsed.entries()[0].through_epoch, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_revocation_list_stops_the_hub_from_starting() {
    let site = Site::new();
    let list = site.pki().join(pki::REVOKED_FILE);
    std::fs::write(
        &list,
        "[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"zz\"\n",
    )
    .unwrap();
    let err = match server::start(site.config()).await {
        Ok(hub) => {
            hub.shutdown().await;
            panic!("the hub started with a damaged revocation list");
        }
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains(&list.display().to_string()), "{err}");
    assert!(err.contains("revoked[0].serial"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_damaged_while_running_keeps_the_previous_revocations() {
    let site = Site::new();
    let id = AgentId::new("S6", "T1");
    let (dir, _) = issue(&site, "S6", "T1", "till");
    assert_eq!(revoke(&site.pki(), "S6", "T1", &[]), ExitCode::SUCCESS);
    let hub = site.start().await;
    std::fs::write(site.pki().join(pki::REVOKED_FILE), "not toml [[").unwrap();
    // The watcher has seen (and rejected) the damaged file: only then does the refusal
    // below show that the previous list was kept.
    let deadline = tokio::time::Instant::now() + REVOCATION_POLL * 20;
    while hub.revocation_list_rejections() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the damaged list was never read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut agent = connect(&site, hub.quic_addr(), &dir).await;
    let reply = agent.call(&hello(&id)).await;
    expect_refused(&mut agent, reply, Refusal::Revoked).await;
    hub.shutdown().await;
}
