//! Starting a hub: everything is checked before anything is created, errors name the
//! file, key and reason, one hub per data folder, a busy port said once.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::common::Site;
use till360_hub::server;

fn rewrite_config(site: &Site, from: &str, to: &str) {
    let path = site.dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// `till360-hub check` as the binary runs it: blocking, off the test's runtime (on
/// PostgreSQL it connects with the synchronous client, which runs a runtime of its own).
fn check(site: &Site) -> ExitCode {
    let config = site.dir.path().join("hub.toml");
    tokio::task::block_in_place(|| {
        till360_hub::cli::main_with_args(
            ["till360-hub", "check", "--config", config.to_str().unwrap()].map(OsString::from),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_path_creates_nothing_and_names_the_key() {
    let site = Site::new();
    let data = site.dir.path().join("data");
    assert_eq!(check(&site), ExitCode::SUCCESS);
    assert!(!data.exists(), "check creates nothing");

    rewrite_config(&site, "cert = \"pki/hub.pem\"", "cert = \"pki/nope.pem\"");
    let err = format!("{:#}", server::start(site.config()).await.err().unwrap());
    assert!(err.contains("hub.toml: cert = \""), "{err}");
    assert!(err.contains("nope.pem\": "), "{err}");
    assert!(err.to_lowercase().contains("no such file"), "{err}");
    assert!(!data.exists(), "nothing created: {err}");
    assert_eq!(check(&site), ExitCode::from(78));
    assert!(!data.exists());

    // A key that does not belong to the certificate: named, before anything exists.
    let other = tempfile::tempdir().unwrap();
    till360_hub::pki::init_ca(
        other.path(),
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        false,
    )
    .unwrap();
    rewrite_config(&site, "cert = \"pki/nope.pem\"", "cert = \"pki/hub.pem\"");
    let foreign_key = other.path().join("hub.key");
    rewrite_config(
        &site,
        "key = \"pki/hub.key\"",
        &format!("key = \"{}\"", foreign_key.display()),
    );
    let err = format!("{:#}", server::start(site.config()).await.err().unwrap());
    assert!(err.contains("hub.toml: key = \""), "{err}");
    assert!(err.contains("does not fit"), "{err}");
    assert!(!data.exists(), "nothing created: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hub_on_the_same_data_dir_is_refused_naming_the_first() {
    let site = Site::new();
    let first = site.start().await;
    let err = format!("{:#}", server::start(site.config()).await.err().unwrap());
    assert!(err.contains("another hub is running"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("hub.lock"), "{err}");
    first.shutdown().await;
    // The lock goes with the hub.
    site.start().await.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_named_once() {
    let site = Site::new();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    rewrite_config(
        &site,
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{addr}\""),
    );
    let err = format!("{:#}", server::start(site.config()).await.err().unwrap());
    assert_eq!(err.matches("in use").count(), 1, "{err}");
    assert!(err.contains(&format!("udp {addr}")), "{err}");
    assert!(err.contains("hub.toml: listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_named_by_file_key_and_reason() {
    // A SQLite path that cannot be opened, on either test engine.
    let site = Site::on(crate::common::engine::TestDatabase::sqlite());
    // A file where the database's folder should be: the database cannot be opened.
    let blocker = site.dir.path().join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let text = std::fs::read_to_string(site.dir.path().join("hub.toml")).unwrap();
    std::fs::write(
        site.dir.path().join("hub.toml"),
        format!("{text}\n[database]\nurl = \"sqlite://blocker/hub.db\"\ntimeout_seconds = 2\n"),
    )
    .unwrap();
    let err = format!("{:#}", server::start(site.config()).await.err().unwrap());
    assert!(err.contains("hub.toml: database.url = \""), "{err}");
    assert!(err.contains("blocker/hub.db"), "{err}");
    assert!(err.contains("cannot open the database"), "{err}");

    // The import command says the same and imports nothing.
    let config = site.dir.path().join("hub.toml");
    let csv = site.dir.path().join("customers.csv");
    std::fs::write(&csv, "customer_no\nC1\n").unwrap();
    let code = till360_hub::cli::main_with_args(
        [
            "till360-hub",
            "import",
            "customers",
            csv.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]
        .map(OsString::from),
    );
    assert_eq!(code, ExitCode::FAILURE);
}

/// `[database] url = "postgres://..."`: the hub starts, ingests a till's batches over
/// QUIC, serves the profiles; restarted, it has lost nothing and merges a resend once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_postgresql_ingests_serves_and_restarts_with_nothing_lost_or_duplicated() {
    use crate::common::{engine::TestDatabase, http_get};
    use till360_shared::wire::Message;
    use till360_shared::AgentId;

    let Some(database) = TestDatabase::postgres_if_configured(
        "a_hub_on_postgresql_ingests_serves_and_restarts_with_nothing_lost_or_duplicated",
    ) else {
        return;
    };
    let site = Site::on(database);
    assert!(site
        .config()
        .database
        .to_string()
        .starts_with("postgres://"));
    let id = AgentId::new("S001", "T01");
    let mut gen = till360_hub::synthetic::Generator::new(11, 40, 100);
    let events: Vec<_> = (1..=8).map(|seq| gen.receipt(&id, seq)).collect();
    let hello = Message::Hello {
        agent: id.clone(),
        journal_last_seq: 8,
        software: "test-agent".into(),
    };
    async fn receipts_in_profiles(hub: std::net::SocketAddr) -> u64 {
        let (status, profiles) = http_get(hub, "/api/v1/profiles?limit=1000").await;
        assert_eq!(status, 200, "{profiles}");
        profiles
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["transactions"]["count"].as_u64().unwrap())
            .sum()
    }

    let hub = site.start().await;
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_eq!(
        agent.call(&Message::Events(events[0..5].to_vec())).await,
        Ok(Message::Ack { acked_seq: 5 })
    );
    assert_eq!(receipts_in_profiles(hub.http_addr()).await, 5);
    let (_, agents) = http_get(hub.http_addr(), "/api/v1/agents").await;
    assert_eq!(agents[0]["last_seq"], 5, "{agents}");
    let (status, _) = http_get(hub.http_addr(), "/api/v1/campaigns").await;
    assert_eq!(status, 200);
    drop(agent);
    hub.shutdown().await;
    assert!(
        !site.dir.path().join("data").join("hub.db").exists(),
        "the hub wrote no SQLite file"
    );

    // Restarted: the committed mark and the profiles are in the database.
    let hub = site.start().await;
    assert_eq!(receipts_in_profiles(hub.http_addr()).await, 5);
    let mut agent = site.connect(hub.quic_addr(), "S001", "T01").await;
    assert_eq!(
        agent.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 5 })
    );
    // A resend of an acknowledged batch with new events after it: the new ones only.
    assert_eq!(
        agent.call(&Message::Events(events[3..8].to_vec())).await,
        Ok(Message::Ack { acked_seq: 8 })
    );
    assert_eq!(receipts_in_profiles(hub.http_addr()).await, 8);
    hub.shutdown().await;
}
