//! The campaign set, coupon keyring and catalog from the hub, stored in a real SQLite
//! journal in a tempdir: they survive a reopen, a newer set replaces the old one,
//! `status` shows the version and never a key, and older journals are upgraded.

use rusqlite::Connection;
use till360_agent::cli::status_text;
use till360_agent::hub_link::CampaignState;
use till360_agent::journal::{Journal, JournalError, JOURNAL_FILE};
use till360_shared::campaign::{CampaignSet, CatalogItem};
use till360_shared::coupon::Keyring;
use till360_shared::AgentId;

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn example_set(version: u64) -> CampaignSet {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/campaigns.toml"),
    )
    .unwrap();
    let mut set =
        CampaignSet::from_toml_str(&text, std::path::Path::new("campaigns.toml")).unwrap();
    set.version = version;
    set
}

fn ring(byte: u8) -> Keyring {
    Keyring {
        till_number: 3,
        till_key: [byte; 32],
        store_tills: vec![(3, [byte; 32]), (4, [byte ^ 0x0F; 32])],
        campaign_numbers: vec![("big-basket".into(), 1), ("birthday".into(), 2)],
        digest_key: [byte ^ 0x55; 32],
    }
}

fn catalog(n: usize) -> Vec<CatalogItem> {
    (0..n)
        .map(|i| CatalogItem {
            sku: format!("SKU{i}"),
            description: format!("Item {i}"),
            category: if i % 2 == 0 { "food" } else { "pharmacy" }.into(),
            sensitive: i % 2 == 1,
        })
        .collect()
}

fn state(version: u64, byte: u8, items: usize) -> CampaignState {
    CampaignState {
        version,
        set: example_set(version),
        keyring: ring(byte),
        catalog: catalog(items),
    }
}

#[test]
fn a_fresh_journal_holds_no_campaigns() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaign_version().unwrap(), 0);
    assert_eq!(j.campaigns().unwrap(), None);
    assert_eq!(j.status().unwrap().campaign_version, 0);
}

#[test]
fn stored_set_key_and_version_survive_a_reopen_and_a_newer_set_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = state(41, 9, 3);
    assert!(!first.set.campaigns.is_empty());
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        j.store_campaigns(&first).unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaign_version().unwrap(), 41);
    assert_eq!(j.campaigns().unwrap(), Some(first));

    // A rolled-back hub file may send a lower version: it replaces the set anyway.
    let newer = state(7, 3, 0);
    j.store_campaigns(&newer).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaigns().unwrap(), Some(newer));
    assert_eq!(j.campaign_version().unwrap(), 7);
}

#[test]
fn status_shows_the_version_but_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    // A key whose bytes would be recognisable in any encoding.
    j.store_campaigns(&state(12345, 0xAB, 2)).unwrap();
    let status = j.status().unwrap();
    assert_eq!(status.campaign_version, 12345);
    let text = status_text(&status);
    // The set's content version, the text the hub's `/api/v1/campaigns` shows as `version`
    // (not the frame's 19-digit number).
    let shown = state(12345, 0xAB, 2).set.content_version();
    assert_eq!(shown.len(), 12);
    assert!(
        text.contains(&format!("campaign_version: {shown}\n")),
        "{text}"
    );
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("\"campaign_version\":12345"), "{json}");
    assert!(
        json.contains(&format!("\"campaign_set\":\"{shown}\"")),
        "{json}"
    );
    for shown in [&text, &json] {
        let lower = shown.to_lowercase();
        // Till key 0xAB.., neighbour key 0xA4.., digest key 0xFE..
        for hex in ["abab", "a4a4", "fefe"] {
            assert!(!lower.contains(hex), "{shown}");
        }
        for dec in [
            "171, 171", "164, 164", "254, 254", "171,171", "164,164", "254,254",
        ] {
            assert!(!shown.contains(dec), "{shown}");
        }
        assert!(!lower.contains("key"), "{shown}");
    }
}

#[test]
fn a_schema_2_journal_is_upgraded_without_campaigns() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE journal_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 schema_version INTEGER NOT NULL,
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 last_seq INTEGER NOT NULL,
                 acked_seq INTEGER NOT NULL,
                 erasure_version INTEGER NOT NULL DEFAULT 0
             );
             INSERT INTO journal_meta VALUES (1, 2, 'S001', 'T01', 0, 0, 4);",
        )
        .unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 4);
    assert_eq!(j.campaigns().unwrap(), None);
    j.store_campaigns(&state(5, 1, 1)).unwrap();
    drop(j);
    let schema: i64 = Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .query_row("SELECT schema_version FROM journal_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(schema, 6);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaign_version().unwrap(), 5);
}

#[test]
fn a_corrupt_stored_set_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.store_campaigns(&state(5, 1, 2)).unwrap();
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    for column in ["campaign_set", "keyring", "catalog"] {
        side.execute(&format!("UPDATE campaigns SET {column} = x'ff'"), [])
            .unwrap();
        let err = j.campaigns().unwrap_err();
        assert!(
            matches!(err, JournalError::CorruptCampaigns { .. }),
            "{column}: {err}"
        );
        assert!(err.to_string().contains("campaign set is corrupt"), "{err}");
        // Put it back so the next column is the only bad one.
        j.store_campaigns(&state(5, 1, 2)).unwrap();
    }
    assert_eq!(j.campaigns().unwrap(), Some(state(5, 1, 2)));
}

#[test]
fn a_schema_3_journal_is_upgraded_and_drops_its_old_campaign_row() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE journal_meta (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 schema_version INTEGER NOT NULL,
                 store TEXT NOT NULL,
                 till TEXT NOT NULL,
                 last_seq INTEGER NOT NULL,
                 acked_seq INTEGER NOT NULL,
                 erasure_version INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE events (
                 seq INTEGER PRIMARY KEY,
                 recorded_at_ms INTEGER NOT NULL,
                 offset_min INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 payload BLOB NOT NULL
             );
             CREATE TABLE campaigns (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 version INTEGER NOT NULL,
                 campaign_set BLOB NOT NULL,
                 till_key BLOB NOT NULL
             );
             INSERT INTO journal_meta VALUES (1, 3, 'S001', 'T01', 0, 0, 6);
             INSERT INTO campaigns VALUES (1, 99, x'00', x'01');",
        )
        .unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.erasure_version().unwrap(), 6);
    // Version 0: the hub sends the whole state again at the next connect.
    assert_eq!(j.campaign_version().unwrap(), 0);
    assert_eq!(j.campaigns().unwrap(), None);
    assert_eq!(j.digest_version().unwrap(), 0);
    assert!(j.digests().unwrap().is_empty());
    let ours = state(8, 2, 4);
    j.store_campaigns(&ours).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaigns().unwrap(), Some(ours));
    let status = j.status().unwrap();
    assert_eq!((status.campaign_version, status.erasure_version), (8, 6));
}

#[test]
fn a_journal_from_a_newer_agent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path(), &agent()).unwrap());
    Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .execute("UPDATE journal_meta SET schema_version = 7", [])
        .unwrap();
    let err = Journal::open(dir.path(), &agent()).unwrap_err();
    assert!(
        matches!(err, JournalError::Schema { found: 7, .. }),
        "{err}"
    );
}
