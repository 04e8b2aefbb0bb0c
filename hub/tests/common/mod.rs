//! Test helpers: a PKI in a tempdir, a hub on 127.0.0.1 ports, a minimal QUIC agent
//! client speaking the shared codec, and a raw HTTP/1.1 GET.
#![allow(dead_code)]

/// `[database] url` of a test hub for the engine `TILL360_TEST_ENGINE` chooses (see engine.rs).
pub mod engine;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use till360_hub::config::HubConfig;
use till360_hub::pki;
use till360_hub::server::{self, RunningHub};
use till360_hub::store::sql::{FromValue, Param, Row, SqlExt as _, ToParam};
use till360_shared::codec::{encode_frame, FrameDecoder};
use till360_shared::wire::{Message, ALPN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const STEP: Duration = Duration::from_secs(10);

/// Statement parameters for [`Site::execute`] and [`Site::query`]:
/// `args![id, 5_i64, blob]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$(till360_hub::store::sql::ToParam::to_param(&$value)),*]
    };
}

/// A temp folder with `pki/` (CA + hub cert) and a `hub.toml` using port 0.
pub struct Site {
    pub dir: tempfile::TempDir,
    /// The hub's database on the engine `TILL360_TEST_ENGINE` chooses (a fresh PostgreSQL
    /// database per site, dropped with it).
    pub database: engine::TestDatabase,
}

impl Site {
    pub fn new() -> Self {
        Self::on(engine::TestDatabase::for_test_engine())
    }

    /// A site whose hub runs on SQLite whatever `TILL360_TEST_ENGINE` says: the source
    /// of `till360-hub migrate` (migrate_cli).
    pub fn on_sqlite_for_migrate() -> Self {
        Self::on(engine::TestDatabase::sqlite())
    }

    /// A site whose hub runs on `database`.
    pub fn on(database: engine::TestDatabase) -> Self {
        let dir = tempfile::tempdir().unwrap();
        pki::init_ca(
            &dir.path().join("pki"),
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
            false,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("hub.toml"),
            format!(
                "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
                 ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n{}",
                database.toml()
            ),
        )
        .unwrap();
        Site { dir, database }
    }

    /// The hub's database, opened as the hub opens it (either engine).
    pub fn open_database(&self) -> till360_hub::store::Database {
        till360_hub::server::open_database(&self.config()).unwrap()
    }

    /// Appends `text` to the site's `hub.toml` (tables such as `[digests]` go last).
    pub fn append_config(&self, text: &str) {
        let path = self.dir.path().join("hub.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(text);
        std::fs::write(&path, config).unwrap();
    }

    /// The config of another hub on this site's database (either engine): its own
    /// `data_dir` and ports (`NAME/`), the site's CA and hub certificate, and the same
    /// tables the site's `hub.toml` ends with.
    pub fn another_hub_config(&self, name: &str) -> HubConfig {
        let url = match self.config().database {
            till360_hub::config::DatabaseUrl::Sqlite(path) => {
                format!("sqlite://{}", path.display())
            }
            till360_hub::config::DatabaseUrl::Postgres(_) => self.database.url().unwrap(),
        };
        let site = std::fs::read_to_string(self.dir.path().join("hub.toml")).unwrap();
        let tables = site.find("\n[").map_or("", |at| &site[at..]);
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "data_dir = \"{name}\"\nlisten = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
                 ca = \"pki/ca.pem\"\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\n\
                 database = {{ url = \"{url}\" }}\n{tables}"
            ),
        )
        .unwrap();
        HubConfig::load(path).unwrap()
    }

    /// Runs `f` on a connection of the hub's database (either engine), on a thread of
    /// its own: for tests that arrange or read rows the store has no function for.
    pub fn with_db<R: Send>(
        &self,
        f: impl FnOnce(&dyn till360_hub::store::sql::Sql) -> R + Send,
    ) -> R {
        engine::blocking(|| {
            let database = self.open_database();
            let conn = database.get().unwrap();
            f(&*conn)
        })
    }

    /// One statement on the hub's database (either engine; `?N` parameters, see
    /// [`args!`]): rows arranged as an import or another hub would write them.
    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> u64 {
        self.with_db(|db| {
            let params: Vec<&dyn ToParam> = params.iter().map(|p| p as &dyn ToParam).collect();
            db.execute(sql, &params)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// The rows of a query on the hub's database (either engine).
    pub fn query(&self, sql: &str, params: &[Param<'_>]) -> Vec<Row> {
        self.with_db(|db| {
            let params: Vec<&dyn ToParam> = params.iter().map(|p| p as &dyn ToParam).collect();
            db.query(sql, &params)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Column 0 of each row of a query.
    pub fn column<T: FromValue>(&self, sql: &str, params: &[Param<'_>]) -> Vec<T> {
        self.query(sql, params)
            .iter()
            .map(|row| row.get(0).unwrap())
            .collect()
    }

    /// An integer query (`SELECT count(*) ...`); none or NULL: 0.
    pub fn count(&self, sql: &str, params: &[Param<'_>]) -> i64 {
        self.column::<Option<i64>>(sql, params)
            .into_iter()
            .next()
            .flatten()
            .unwrap_or(0)
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn config(&self) -> HubConfig {
        HubConfig::load(self.dir.path().join("hub.toml")).unwrap()
    }

    /// Starts the hub and waits for its start-up traits run (on the still empty
    /// store), so no test races it.
    pub async fn start(&self) -> RunningHub {
        let hub = server::start(self.config()).await.unwrap();
        hub.recompute_traits().await.unwrap();
        hub
    }

    /// The erasure log's key material, from the master secret the hub created.
    pub fn suppression(&self) -> till360_hub::store::erasures::Suppression {
        let path = self
            .config()
            .data_dir
            .join(till360_hub::campaigns::MASTER_KEY_FILE);
        let master: [u8; 32] = std::fs::read(path).unwrap().try_into().unwrap();
        till360_hub::store::erasures::Suppression::from_master(&master)
    }

    /// Appends one erasure per card to the hub's erasure log directly in its database
    /// (as an erase through the API does, for stores S001 and S002) and returns the
    /// last version. The hub must have started once (it creates the master secret).
    pub fn record_erasures(&self, cards: &[till360_shared::CardNumber]) -> u64 {
        // On a thread of its own: async tests call it, and the PostgreSQL client must
        // not run on a runtime thread.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let suppression = self.suppression();
                    let database = self.open_database();
                    let conn = database.get().unwrap();
                    let now = till360_shared::Timestamp::from_unix_ms(1_764_060_000_000, 0);
                    let stores = ["S001".to_string(), "S002".to_string()];
                    till360_hub::store::sql::transaction(
                        &*conn,
                        till360_hub::store::sql::TxKind::Write,
                        |tx| {
                            let mut version = 0;
                            for card in cards {
                                let ids = [till360_hub::identity::Identifier::card(card)];
                                version = till360_hub::store::erasures::record_erasure(
                                    tx,
                                    &suppression,
                                    &ids,
                                    &stores,
                                    now,
                                )?;
                            }
                            Ok(version)
                        },
                    )
                    .unwrap()
                })
                .join()
                .unwrap()
        })
    }

    /// Issues an agent certificate from this site's CA into `agents/STORE-TILL/`.
    /// Connects to `hub` as `store/till` with a certificate issued by this site's CA.
    pub async fn connect(&self, hub: SocketAddr, store: &str, till: &str) -> Agent {
        let dir = self.agent(store, till);
        Agent::connect(hub, &dir.join("ca.pem"), Some(&dir))
            .await
            .unwrap()
    }

    pub fn agent(&self, store: &str, till: &str) -> PathBuf {
        let out = self
            .dir
            .path()
            .join("agents")
            .join(format!("{store}-{till}"));
        pki::issue_agent(&self.pki(), store, till, &out).unwrap();
        out
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A client endpoint trusting `ca_pem`, presenting the cert in `agent_dir` (if any).
pub fn client_endpoint(ca_pem: &Path, agent_dir: Option<&Path>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem) {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match agent_dir {
        Some(dir) => builder
            .with_client_auth_cert(
                certs(&dir.join("agent.pem")),
                PrivateKeyDer::from_pem_file(dir.join("agent.key")).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// A minimal agent uplink: one connection, one bidirectional stream.
pub struct Agent {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Agent {
    /// Connects and opens the stream; errors as text (handshake refusals land here or
    /// on the first read).
    pub async fn connect(
        hub: SocketAddr,
        ca_pem: &Path,
        agent_dir: Option<&Path>,
    ) -> Result<Agent, String> {
        let endpoint = client_endpoint(ca_pem, agent_dir);
        let connecting = endpoint
            .connect(hub, "localhost")
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(STEP, connecting)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        Ok(Agent {
            endpoint,
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(),
        })
    }

    pub async fn send(&mut self, msg: &Message) -> Result<(), String> {
        let frame = encode_frame(msg).map_err(|e| e.to_string())?;
        self.send_raw(&frame).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.send.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(quinn::WriteError::ConnectionLost(c)) => Err(format!("connection lost: {c}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends our sending side (the hub answers what it got, then closes).
    pub fn finish(&mut self) {
        self.send.finish().unwrap();
    }

    /// The next message from the hub; `Err` when the stream or connection ends first.
    pub async fn recv(&mut self) -> Result<Message, String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(msg) = self.decoder.poll().map_err(|e| e.to_string())? {
                return Ok(msg);
            }
            let read = tokio::time::timeout(STEP, self.recv.read(&mut buf))
                .await
                .map_err(|_| "no answer from the hub".to_string())?;
            match read {
                Ok(Some(n)) => self.decoder.feed(&buf[..n]),
                Ok(None) => return Err("stream finished".into()),
                Err(quinn::ReadError::ConnectionLost(c)) => {
                    return Err(format!("connection lost: {c}"))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Sends and waits for the answer.
    pub async fn call(&mut self, msg: &Message) -> Result<Message, String> {
        self.send(msg).await?;
        self.recv().await
    }

    /// Waits until the hub has closed the connection and returns why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        tokio::time::timeout(STEP, self.conn.closed())
            .await
            .expect("hub did not close the connection")
    }
}

/// Another process holding the database's write lock (an import, say) until released:
/// SQLite's one write lock (`BEGIN IMMEDIATE`); on PostgreSQL, writes to `profiles`
/// (`LOCK TABLE .. IN EXCLUSIVE MODE`: reads go on, as on SQLite).
pub struct WriteBlocker {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WriteBlocker {
    /// Returns once the lock is held.
    pub fn hold(site: &Site) -> Self {
        use till360_hub::store::sql::TxKind;
        use till360_hub::store::Engine;
        let config = site.config();
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let database = till360_hub::server::open_database(&config).unwrap();
            let conn = database.get().unwrap();
            conn.begin(TxKind::Write).unwrap();
            if conn.engine() == Engine::Postgres {
                conn.batch("LOCK TABLE profiles IN EXCLUSIVE MODE").unwrap();
            }
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
            conn.rollback().unwrap();
        });
        held.recv().expect("the blocker took the lock");
        Self { release, thread }
    }

    pub fn release(self) {
        let _ = self.release.send(());
        self.thread.join().unwrap();
    }
}

/// Grants `purpose` to the customer holding `card`, through the store (as `PUT
/// /api/v1/profiles/{id}/consents` does).
pub fn grant_consent(site: &Site, card: &till360_shared::CardNumber, purpose: &str) {
    use till360_hub::store::{ConsentChange, SqlStore, Store};
    let config = site.config();
    engine::blocking(|| {
        let database = till360_hub::server::open_database(&config).unwrap();
        let mut store = SqlStore::open(&database).unwrap();
        let profile = store.profile_by_card(card).unwrap().expect("a profile");
        let change = ConsentChange {
            purpose: purpose.to_string(),
            granted: true,
        };
        let at = till360_shared::Timestamp::from_unix_ms(0, 0);
        store
            .set_consents(&profile.profile_id, &[change], "test", at)
            .unwrap()
            .expect("the profile exists");
    });
}

/// `SELECT count(*) ...` (or any one integer; none or NULL: 0) on either engine.
pub fn count(db: &dyn till360_hub::store::sql::Sql, sql: &str) -> i64 {
    use till360_hub::store::sql::SqlExt as _;
    db.query_value::<Option<i64>>(sql, till360_hub::sql_params![])
        .unwrap()
        .flatten()
        .unwrap_or(0)
}

/// One raw HTTP/1.1 exchange over a fresh TCP connection: status, head and body.
pub async fn http_exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "helper expects a Content-Length body"
    );
    (status, head.to_string(), body.to_string())
}

async fn json_exchange(addr: SocketAddr, request: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http_exchange(addr, request).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("body {body:?}: {e}"));
    (status, json)
}

/// `GET path`; returns the status and the JSON body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    json_exchange(addr, &request).await
}

/// `POST path` without a body; the status and the JSON body.
pub async fn http_post(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    json_exchange(addr, &request).await
}

/// Sends `events` (seq 1..) as a fresh agent of `site` and checks the hub commits them:
/// Hello → Welcome 0, Events → Ack of the last seq.
pub async fn send_all(
    site: &Site,
    hub: SocketAddr,
    agent: &till360_shared::AgentId,
    events: Vec<till360_shared::Event>,
) {
    let dir = site.agent(&agent.store, &agent.till);
    let mut client = Agent::connect(hub, &dir.join("ca.pem"), Some(&dir))
        .await
        .unwrap();
    let last = events.last().unwrap().seq;
    let hello = Message::Hello {
        agent: agent.clone(),
        journal_last_seq: last,
        software: "test".into(),
    };
    assert_eq!(
        client.call(&hello).await,
        Ok(Message::Welcome { acked_seq: 0 })
    );
    assert_eq!(
        client.call(&Message::Events(events)).await,
        Ok(Message::Ack { acked_seq: last })
    );
}

/// The entry of `store` in `GET /api/v1/agents` (panics when it is not listed).
pub async fn agent_entry(hub: SocketAddr, store: &str) -> serde_json::Value {
    let (status, agents) = http_get(hub, "/api/v1/agents").await;
    assert_eq!(status, 200);
    agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["store"] == store))
        .cloned()
        .unwrap_or_else(|| panic!("agent of {store} not listed: {agents}"))
}

/// A receipt of one line (`description`, `cents`) at `at`, numbered `R{seq}`.
pub fn one_line_receipt(
    agent: &till360_shared::AgentId,
    seq: u64,
    card: Option<&till360_shared::CardNumber>,
    at: till360_shared::Timestamp,
    (description, cents): (&str, i64),
) -> till360_shared::Event {
    use till360_shared::{Currency, EventKind, Receipt, ReceiptLine};
    till360_shared::Event {
        agent: agent.clone(),
        seq,
        recorded_at: at,
        kind: EventKind::Receipt(Receipt {
            receipt_no: Some(format!("R{seq}")),
            printed_at: Some(at),
            completed_at: at,
            card: card.cloned(),
            card_last4: None,
            lines: vec![ReceiptLine {
                description: description.into(),
                sku: None,
                quantity_milli: 1000,
                unit_cents: Some(cents),
                amount_cents: cents,
                discount: false,
            }],
            total_cents: cents,
            currency: Currency::EUR,
            unbalanced: false,
            unmatched_lines: 0,
        }),
    }
}
