//! The campaign set and coupon key from the hub, stored in a real SQLite journal in a
//! tempdir: they survive a reopen, a newer set replaces the old one, `status` shows the
//! version and never the key, and an older journal is upgraded.

use rusqlite::Connection;
use till360_agent::cli::status_text;
use till360_agent::journal::{Journal, JOURNAL_FILE};
use till360_shared::campaign::CampaignSet;
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
        ..Keyring::default()
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
    let set = example_set(41);
    assert!(!set.campaigns.is_empty());
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        j.store_campaigns(41, &set, &ring(9)).unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaign_version().unwrap(), 41);
    assert_eq!(j.campaigns().unwrap(), Some((set, ring(9))));

    let newer = example_set(7);
    j.store_campaigns(7, &newer, &ring(3)).unwrap();
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaigns().unwrap(), Some((newer, ring(3))));
    assert_eq!(j.campaign_version().unwrap(), 7);
}

#[test]
fn status_shows_the_version_but_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    // A key whose bytes would be recognisable in any encoding.
    j.store_campaigns(12345, &example_set(12345), &ring(0xAB))
        .unwrap();
    let status = j.status().unwrap();
    assert_eq!(status.campaign_version, 12345);
    let text = status_text(&status);
    assert!(text.contains("campaign_version: 12345\n"), "{text}");
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("\"campaign_version\":12345"), "{json}");
    for shown in [&text, &json] {
        let lower = shown.to_lowercase();
        assert!(!lower.contains("abab"), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
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
    j.store_campaigns(5, &example_set(5), &ring(1)).unwrap();
    drop(j);
    let schema: i64 = Connection::open(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .query_row("SELECT schema_version FROM journal_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(schema, 3);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.campaign_version().unwrap(), 5);
}

#[test]
fn a_corrupt_stored_set_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    j.store_campaigns(5, &example_set(5), &ring(1)).unwrap();
    let side = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    side.execute("UPDATE campaigns SET campaign_set = x'ff'", [])
        .unwrap();
    let err = j.campaigns().unwrap_err();
    assert!(err.to_string().contains("campaign set is corrupt"), "{err}");
}
