//! The digest feed's compaction through a running hub on 127.0.0.1 (either engine,
//! QUIC, the protocol-level test client applying frames as the agent's journal does):
//! removals older than `[digests] removal_retention_days` leave the feed; a till that
//! resumes from a version before them starts over with a reset, a till past them gets a
//! plain delta, and both end with exactly what a new till of the store gets.

use std::collections::BTreeMap;

use crate::common;
use crate::downlink_digests::{card, card_key, subscribed};

use chrono::Utc;
use common::{send_all, Site};
use till360_hub::sql_params;
use till360_hub::store::sql::SqlExt as _;
use till360_hub::store::{SqlStore, Store};
use till360_shared::campaign::Digest;
use till360_shared::coupon::CardKey;
use till360_shared::wire::Message;
use till360_shared::{AgentId, CardNumber, Event, EventKind, Timestamp};

const STORE: &str = "S001";
const DAY_MS: i64 = 86_400_000;

fn code(n: u32) -> String {
    till360_shared::card::with_check_digit(&format!("2401000200{n:02}")).unwrap()
}

fn receipt(agent: &AgentId, seq: u64, card: &CardNumber, days_ago: i64) -> Event {
    let at = Timestamp::from_unix_ms(Utc::now().timestamp_millis() - days_ago * DAY_MS, 60);
    common::one_line_receipt(agent, seq, Some(card), at, ("Tea", 450))
}

/// A till's digest cache as its journal keeps it.
#[derive(Debug, Clone, Default)]
struct Cache {
    version: u64,
    digests: BTreeMap<CardKey, Digest>,
    resets: usize,
}

/// One till of STORE (its own high-water mark, for the acks that end each sync).
struct Till {
    id: AgentId,
    acked: u64,
}

impl Till {
    fn new(name: &str) -> Self {
        Till {
            id: AgentId::new(STORE, name),
            acked: 0,
        }
    }

    /// Connects with `cache`'s version, applies every `Digests` frame until the cache
    /// holds the feed's newest row, then proves nothing else was queued. The erasure
    /// log is not this test's: its frames (all sent before the digests) are skipped.
    async fn sync(&mut self, site: &Site, hub: std::net::SocketAddr, cache: &mut Cache) {
        let newest = newest_row(site);
        let mut link = subscribed(site, hub, &self.id, self.acked, cache.version).await;
        while cache.version != newest {
            let (entries, up_to_version, reset) = match link.recv().await {
                Ok(Message::Erasures { .. }) => continue,
                Ok(Message::Digests {
                    entries,
                    up_to_version,
                    reset,
                }) => (entries, up_to_version, reset),
                other => panic!("expected digests, got {other:?}"),
            };
            // What the agent's uplink session checks.
            assert!(reset || up_to_version > cache.version, "the feed went back");
            if reset {
                cache.digests.clear();
                cache.resets += 1;
            }
            for entry in entries {
                match entry.digest {
                    Some(digest) => cache.digests.insert(entry.card_key, digest),
                    None => cache.digests.remove(&entry.card_key),
                };
            }
            cache.version = up_to_version;
        }
        self.acked += 1;
        // No digests frame is queued before the ack. Erasures may be: the hub learns of
        // an erase made outside it (`erase` below) when it next reads the erasure log,
        // which on a busy machine can be after the digests went out.
        let event = Event {
            agent: self.id.clone(),
            seq: self.acked,
            recorded_at: Timestamp::from_utc(Utc::now(), 0),
            kind: EventKind::Redacted,
        };
        link.send(&Message::Events(vec![event])).await.unwrap();
        loop {
            match link.recv().await {
                Ok(Message::Erasures { .. }) => continue,
                Ok(Message::Ack { acked_seq }) if acked_seq == self.acked => break,
                other => panic!("expected the ack of {}, got {other:?}", self.acked),
            }
        }
    }
}

/// The version of STORE's newest row.
fn newest_row(site: &Site) -> u64 {
    site.with_db(|db| {
        db.query_value::<i64>(
            "SELECT coalesce(max(version), 0) FROM digest_feed WHERE store = ?1",
            sql_params![STORE],
        )
        .unwrap()
        .unwrap() as u64
    })
}

/// (rows, removal rows) of STORE's feed.
fn feed_rows(site: &Site) -> (i64, i64) {
    site.with_db(|db| {
        let row = db
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE digest IS NULL) FROM digest_feed
                 WHERE store = ?1",
                sql_params![STORE],
            )
            .unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    })
}

/// Erases the card holder as `DELETE /api/v1/profiles/{id}` does.
fn erase(site: &Site, n: u32) {
    let config = site.config();
    let master = config
        .data_dir
        .join(till360_hub::campaigns::MASTER_KEY_FILE);
    let master: [u8; 32] = std::fs::read(master).unwrap().try_into().unwrap();
    common::engine::blocking(|| {
        let database = till360_hub::server::open_database(&config).unwrap();
        let mut store = SqlStore::open(&database).unwrap();
        store.set_coupon_master(&master).unwrap();
        let profile = store.profile_by_card(&card(&code(n))).unwrap().unwrap();
        let now = Timestamp::from_utc(Utc::now(), 0);
        store.erase_profile(&profile.profile_id, now).unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_away_past_the_retention_starts_over_and_ends_with_the_stores_digests() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    // Only the test refreshes (and so compacts): no timer runs in between.
    text.push_str("[digests]\nrefresh_seconds = 86400\nremoval_retention_days = 7\n");
    std::fs::write(&config, text).unwrap();
    let hub = site.start().await;
    let addr = hub.quic_addr();
    // Each batch of visits comes from a new till of the store (`send_all` starts at 1).
    let visits = |till: &str, cards: &[(u32, i64)]| {
        let shop = AgentId::new(STORE, till);
        let events = (1..)
            .zip(cards)
            .map(|(seq, &(n, days_ago))| receipt(&shop, seq, &card(&code(n)), days_ago))
            .collect::<Vec<_>>();
        (shop, events)
    };

    // Six customers; a till takes them all.
    let (shop, first) = visits("T11", &[(0, 9), (1, 9), (2, 9), (3, 9), (4, 9), (5, 9)]);
    send_all(&site, addr, &shop, first).await;
    // They consent to personalisation: a visit changes what their tills hold.
    site.with_db(|db| {
        db.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             SELECT profile_id, 'personalization', 1, 'test', 0 FROM profiles",
            sql_params![],
        )
        .unwrap()
    });
    assert_eq!(hub.refresh_digests().await.unwrap().changed, 6);
    let mut away = Till::new("T02");
    let mut long_gone = Cache::default();
    away.sync(&site, addr, &mut long_gone).await;
    assert_eq!(long_gone.digests.len(), 6);

    // Two are erased, one comes back, one is new: two removals.
    erase(&site, 0);
    erase(&site, 1);
    let (shop, second) = visits("T12", &[(2, 5), (6, 5)]);
    send_all(&site, addr, &shop, second).await;
    let s = hub.refresh_digests().await.unwrap();
    assert_eq!((s.changed, s.removed, s.compacted), (2, 2, 0));

    // Before any compaction, the till from the first sync gets a plain delta.
    let mut before = long_gone.clone();
    away.sync(&site, addr, &mut before).await;
    assert_eq!(before.resets, long_gone.resets, "no reset: a delta");
    assert!(!before.digests.contains_key(&card_key(&site, &code(0))));
    // Another till is up to date now.
    let mut recent_till = Till::new("T03");
    let mut recent = Cache::default();
    recent_till.sync(&site, addr, &mut recent).await;
    let recent_resets = recent.resets;

    // A week and a day later (the removals' time moved back); meanwhile one more
    // customer is erased and one comes back.
    site.with_db(|db| {
        db.execute(
            "UPDATE digest_feed SET removed_at_ms = removed_at_ms - 8 * 86400000
             WHERE store = ?1 AND digest IS NULL",
            sql_params![STORE],
        )
        .unwrap()
    });
    erase(&site, 3);
    let (shop, third) = visits("T13", &[(4, 1)]);
    send_all(&site, addr, &shop, third).await;
    let s = hub.refresh_digests().await.unwrap();
    assert_eq!((s.changed, s.removed, s.compacted), (1, 1, 2));
    // Three removals were made; only the one within the week is left.
    assert_eq!(feed_rows(&site), (5, 1));

    // What a new till of the store gets.
    let mut new_till = Till::new("T04");
    let mut fresh = Cache::default();
    new_till.sync(&site, addr, &mut fresh).await;
    let mut keys: Vec<CardKey> = fresh.digests.keys().copied().collect();
    keys.sort();
    let mut want: Vec<CardKey> = [2, 4, 5, 6]
        .iter()
        .map(|&n| card_key(&site, &code(n)))
        .collect();
    want.sort();
    assert_eq!(keys, want, "the store's current customers");

    // The till away since the first sync is behind the dropped removals: it starts
    // over and ends with the same digests.
    let mut resumed = long_gone.clone();
    away.sync(&site, addr, &mut resumed).await;
    assert_eq!(resumed.resets, long_gone.resets + 1, "one reset");
    assert_eq!(resumed.digests, fresh.digests);
    // The till that synced after them gets a delta and ends the same.
    recent_till.sync(&site, addr, &mut recent).await;
    assert_eq!(recent.resets, recent_resets, "no reset: a delta");
    assert_eq!(recent.digests, fresh.digests);
    // So does the first till resuming from its second sync (before the compaction,
    // after the removals it dropped).
    away.sync(&site, addr, &mut before).await;
    assert_eq!(before.resets, long_gone.resets, "no reset: a delta");
    assert_eq!(before.digests, fresh.digests);
    hub.shutdown().await;
}
