//! `till360-hub backup` while a hub ingests over real QUIC, and `restore` into an empty
//! site whose hub then serves the same profiles, with the same secrets.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use till360_hub::backup::{self, BackupError, DATABASE_MEMBER};
use till360_hub::config::HubConfig;
use till360_hub::server;
use till360_shared::wire::Message;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

use crate::common::{agent_entry, http_get, one_line_receipt, send_all, Agent, Site, STEP};

const T0: i64 = 1_764_060_000_000;

fn card(n: u64) -> CardNumber {
    let body = format!("2401{n:08}");
    CardNumber::parse(&till360_shared::card::with_check_digit(&body).unwrap()).unwrap()
}

/// A site folder with only a `hub.toml` on SQLite: the PKI files go under `tls/`, the
/// database beside the data folder (where `restore` must put them).
fn empty_site() -> (tempfile::TempDir, HubConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         ca = \"tls/ca.pem\"\ncert = \"tls/hub.pem\"\nkey = \"tls/hub.key\"\n\
         [database]\nurl = \"sqlite://db/hub.db\"\n",
    )
    .unwrap();
    let config = HubConfig::load(&path).unwrap();
    (dir, config)
}

/// Sends receipts of one card as `agent` in batches until `stop`, storing the last
/// acknowledged seq in `acked` after every batch.
async fn ingest_until(
    site: &Site,
    hub: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let agent = AgentId::new("S002", "T01");
    let dir = site.agent(&agent.store, &agent.till);
    let mut client = Agent::connect(hub, &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    let hello = Message::Hello {
        agent: agent.clone(),
        journal_last_seq: 0,
        software: "test".into(),
    };
    assert_eq!(
        client.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    let buyer = card(9_999);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<Event> = (seq + 1..=seq + 20)
            .map(|s| {
                let at = Timestamp::from_unix_ms(T0 + s as i64 * 1000, 0);
                one_line_receipt(&agent, s, Some(&buyer), at, ("Bread", 250))
            })
            .collect();
        seq += 20;
        assert_eq!(
            client.call(&Message::Events(batch)).await,
            Ok(Message::Ack { acked_seq: seq })
        );
        acked.store(seq, Ordering::SeqCst);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A card's profile as the hub serves it, without what each hub derives anew from the
/// events on its own schedule (traits, segments): those follow from the rest.
async fn profile(http: std::net::SocketAddr, card: &CardNumber) -> serde_json::Value {
    let (status, mut body) = http_get(http, &format!("/api/v1/profiles/by-card/{card}")).await;
    assert_eq!(status, 200, "{card}: {body}");
    let fields = body.as_object_mut().unwrap();
    fields.remove("traits");
    fields.remove("segments");
    body
}

/// Starts a hub on `config` and checks it serves `expected` (card, profile) as the
/// source did, and S002's receipts exactly up to the seq it acknowledges.
async fn check_restored(
    config: HubConfig,
    expected: &[(CardNumber, serde_json::Value)],
    acked_before: u64,
    acked_after: u64,
) {
    let hub = server::start(config).await.unwrap();
    let http = hub.http_addr();
    for (card, source) in expected {
        assert_eq!(&profile(http, card).await, source, "{card}");
    }
    let last_seq = agent_entry(http, "S002").await["last_seq"]
        .as_u64()
        .unwrap();
    assert!(
        (acked_before..=acked_after).contains(&last_seq),
        "{acked_before} <= {last_seq} <= {acked_after}"
    );
    let buyer = profile(http, &card(9_999)).await;
    assert_eq!(
        buyer["transactions"]["count"].as_u64(),
        Some(last_seq),
        "every receipt up to the acknowledged seq, none half: {buyer}"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_to_a_hub_with_the_same_profiles_and_secrets() {
    let site = Site::on_sqlite_for_migrate();
    let hub = site.start().await;
    let s1 = AgentId::new("S001", "T01");
    let cards: Vec<CardNumber> = (1..=30).map(card).collect();
    let events: Vec<Event> = cards
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let seq = 2 * i as u64 + 1;
            let at = Timestamp::from_unix_ms(T0 + i as i64 * 60_000, 60);
            [
                Event {
                    agent: s1.clone(),
                    seq,
                    recorded_at: at,
                    kind: EventKind::CardScanned { card: c.clone() },
                },
                one_line_receipt(&s1, seq + 1, Some(c), at, ("Milk", 100 + i as i64)),
            ]
        })
        .collect();
    send_all(&site, hub.quic_addr(), &s1, events).await;
    let mut expected = Vec::new();
    for c in &cards {
        expected.push((c.clone(), profile(hub.http_addr(), c).await));
    }

    // A till keeps ingesting over QUIC while both backups run.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let ingest = {
        let (stop, acked, quic) = (stop.clone(), acked.clone(), hub.quic_addr());
        let site = &site;
        async move { ingest_until(site, quic, stop, acked).await }
    };
    let work = async {
        let deadline = tokio::time::Instant::now() + STEP;
        while acked.load(Ordering::SeqCst) < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the till never got going"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let out = tempfile::tempdir().unwrap();
        let library = out.path().join("library.tar");
        let binary = out.path().join("binary.tar");
        let before_library = acked.load(Ordering::SeqCst);
        let (config, path) = (site.config(), library.clone());
        let summary =
            tokio::task::spawn_blocking(move || backup::backup(&config, &path, &mut |_| {}))
                .await
                .unwrap()
                .unwrap();
        let after_library = acked.load(Ordering::SeqCst);
        assert!(summary.manifest.members.contains_key(DATABASE_MEMBER));
        assert!(summary
            .manifest
            .members
            .contains_key("data/coupon-master.key"));
        assert_eq!(
            summary.manifest.schema_version,
            till360_hub::store::migrations::LATEST
        );

        let before_binary = acked.load(Ordering::SeqCst);
        let config_path = site.dir.path().join("hub.toml");
        let args = (config_path, binary.clone());
        let output = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_till360-hub"))
                .arg("backup")
                .arg("--config")
                .arg(&args.0)
                .arg("--out")
                .arg(&args.1)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let after_binary = acked.load(Ordering::SeqCst);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.is_empty(),
            "no bar when stderr is not a terminal: {stderr:?}"
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("binary.tar"),
            "{output:?}"
        );
        for archive in [&library, &binary] {
            assert_eq!(mode(archive), 0o600, "{}", archive.display());
            assert!(!PathBuf::from(format!("{}.tmp", archive.display())).exists());
        }
        assert!(
            after_binary > before_library,
            "the till ingested during the backups"
        );
        stop.store(true, Ordering::SeqCst);
        (
            out,
            library,
            binary,
            (before_library, after_library),
            (before_binary, after_binary),
        )
    };
    let ((), (out, library, binary, library_window, binary_window)) = tokio::join!(ingest, work);
    let master = std::fs::read(site.config().data_dir.join("coupon-master.key")).unwrap();
    hub.shutdown().await;

    // The library's archive, restored by the library.
    let (target, config) = empty_site();
    let summary = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || backup::restore(&config, &library, &mut |_| {}))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(summary.written[0], target.path().join("db/hub.db"));
    assert_eq!(
        std::fs::read_dir(target.path().join("db"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        vec![std::ffi::OsString::from("hub.db")],
        "no temporary file left"
    );
    let restored_master = std::fs::read(config.data_dir.join("coupon-master.key")).unwrap();
    assert_eq!(restored_master, master);
    assert_eq!(mode(&config.data_dir.join("coupon-master.key")), 0o600);
    assert_eq!(mode(&config.data_dir.join("quic-reset.key")), 0o600);
    assert_eq!(mode(&config.key), 0o600);
    assert_eq!(mode(&target.path().join("db/hub.db")), 0o600);
    assert_eq!(mode(&target.path().join("tls/ca.key")), 0o600);
    assert_eq!(mode(&config.ca), 0o644);
    assert_eq!(
        std::fs::read(&config.cert).unwrap(),
        std::fs::read(site.pki().join("hub.pem")).unwrap()
    );
    // A code printed under the old master secret verifies under the restored one.
    let issuer = AgentId::new("S001", "T01");
    let fields = till360_shared::coupon::CouponFields::new(
        3,
        7,
        chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        42,
    )
    .unwrap();
    let key = till360_shared::coupon::derive_till_key(&master, &issuer.store, &issuer.till);
    let code = till360_shared::coupon::mint(&key, &fields);
    let check = till360_hub::coupons::verify::check_code::<()>(
        &restored_master,
        code.as_str(),
        |_| Ok(Some(issuer.clone())),
        |_| Ok(Some("c1".to_string())),
    )
    .unwrap();
    assert!(
        matches!(
            check,
            till360_hub::coupons::verify::CodeCheck::Genuine { .. }
        ),
        "{check:?}"
    );
    check_restored(config, &expected, library_window.0, library_window.1).await;

    // The binary's archive, restored by the binary.
    let (_target, config) = empty_site();
    let output = tokio::task::spawn_blocking({
        let config_path = config.origin.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_till360-hub"))
                .arg("restore")
                .arg("--config")
                .arg(&config_path)
                .arg("--from")
                .arg(&binary)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    check_restored(config, &expected, binary_window.0, binary_window.1).await;
    drop(out);
}

/// A backup of a site whose hub ran once (secrets made, a few events), for the refusals.
async fn small_backup(out: &Path) -> Site {
    let site = Site::on_sqlite_for_migrate();
    let hub = site.start().await;
    let s1 = AgentId::new("S001", "T01");
    let at = Timestamp::from_unix_ms(T0, 0);
    send_all(
        &site,
        hub.quic_addr(),
        &s1,
        vec![one_line_receipt(&s1, 1, Some(&card(1)), at, ("Tea", 300))],
    )
    .await;
    hub.shutdown().await;
    let (config, path) = (site.config(), out.to_path_buf());
    tokio::task::spawn_blocking(move || backup::backup(&config, &path, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    site
}

fn restore(config: &HubConfig, from: &Path) -> Result<backup::RestoreSummary, BackupError> {
    backup::restore(config, from, &mut |_| {})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_folder_in_use_a_damaged_archive_and_existing_files() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("hub.tar");
    let _site = small_backup(&archive).await;

    // A data folder with anything in it is named and left alone.
    let (_target, config) = empty_site();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    std::fs::write(config.data_dir.join("notes.txt"), "mine").unwrap();
    let err = restore(&config, &archive).unwrap_err();
    assert!(
        matches!(err, BackupError::NotEmpty(ref d) if d == &config.data_dir),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&config.data_dir.display().to_string()),
        "{err}"
    );
    assert!(!config.ca.exists());

    // A PKI file already there is not overwritten.
    let (_target, config) = empty_site();
    std::fs::create_dir_all(config.key.parent().unwrap()).unwrap();
    std::fs::write(&config.key, "someone else's key").unwrap();
    let err = restore(&config, &archive).unwrap_err();
    assert!(
        matches!(err, BackupError::Exists(ref p) if p == &config.key),
        "{err}"
    );
    assert_eq!(std::fs::read(&config.key).unwrap(), b"someone else's key");
    assert!(!config.data_dir.exists());

    // One byte flipped inside the database member: the sha256 says so, nothing is written.
    let damaged = out.path().join("damaged.tar");
    let mut bytes = std::fs::read(&archive).unwrap();
    let offset = {
        let mut tar = tar::Archive::new(bytes.as_slice());
        let entry = tar
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some(DATABASE_MEMBER))
            .unwrap();
        entry.raw_file_position() as usize + 1000
    };
    bytes[offset] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let (target, config) = empty_site();
    let err = restore(&config, &damaged).unwrap_err();
    assert!(
        matches!(err, BackupError::Checksum { ref member, .. } if member == DATABASE_MEMBER),
        "{err}"
    );
    assert!(err.to_string().contains("sha256"), "{err}");
    let left: Vec<_> = walk(target.path());
    assert_eq!(
        left,
        vec![target.path().join("hub.toml")],
        "nothing restored"
    );

    // Not a backup at all.
    std::fs::write(&damaged, b"hello").unwrap();
    let err = restore(&config, &damaged).unwrap_err();
    assert!(matches!(err, BackupError::BadArchive { .. }), "{err}");

    // The binary says the same and exits non-zero.
    let output = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .args(["restore", "--config"])
        .arg(&config.origin)
        .arg("--from")
        .arg(&damaged)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a till360 hub backup"), "{stderr}");
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn on_postgresql_backup_and_restore_say_what_to_back_up_instead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n\
         [database]\nurl = \"postgres://till360@127.0.0.1:5432/till360\"\n",
    )
    .unwrap();
    let config = HubConfig::load(&path).unwrap();
    let out = dir.path().join("hub.tar");
    let err = backup::backup(&config, &out, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackupError::Postgres { .. }), "{text}");
    for needle in [
        "pg_dump",
        "hub_secrets",
        "coupon-master.key",
        "quic-reset.key",
        "ca.key",
        "hub.key",
        "revoked.toml",
        "epochs.toml",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!out.exists());
    let err = backup::restore(&config, &out, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("pg_dump"), "{err}");

    let output = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .args(["backup", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pg_dump"),
        "{output:?}"
    );
}
