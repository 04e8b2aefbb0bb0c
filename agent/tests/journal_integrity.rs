//! The journal's integrity and disk use against real SQLite files: the hash chain
//! (what an SQL edit leaves behind, erasures re-linked), quarantined rows, WAL
//! checkpoints, the disk quota and a full disk.

use rusqlite::Connection;
use till360_agent::journal::{Journal, JournalError, JOURNAL_FILE};
use till360_shared::card::with_check_digit;
use till360_shared::chain::{self, ChainHash, GENESIS};
use till360_shared::codec;
use till360_shared::{
    AgentId, CardNumber, Currency, Event, EventKind, Receipt, ReceiptLine, Timestamp,
};

fn agent() -> AgentId {
    AgentId::new("S001", "T01")
}

fn card(n: u64) -> CardNumber {
    CardNumber::parse(&with_check_digit(&format!("2401{n:08}")).unwrap()).unwrap()
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_unix_ms(1_764_060_000_000 + n as i64 * 1000, 60)
}

fn receipt(n: u64, cents: i64) -> EventKind {
    EventKind::Receipt(Receipt {
        receipt_no: Some(format!("R{n}")),
        printed_at: None,
        completed_at: at(n),
        card: Some(card(n % 3)),
        card_last4: Some(card(n % 3).last4().to_string()),
        lines: vec![ReceiptLine {
            description: format!("Kaffee {n}"),
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
    })
}

/// The chain a hub computes over what it receives, from `base`.
fn chain_over(base: ChainHash, events: &[Event]) -> ChainHash {
    events
        .iter()
        .fold(base, |prev, e| chain::link(&prev, e).unwrap())
}

/// Every pending event with its stored link, and whether each link is the chain over
/// the events before it (from `base`).
fn links_verify(j: &Journal, base: ChainHash) -> bool {
    let linked = j.read_linked(j.acked_seq() + 1, usize::MAX).unwrap();
    let mut prev = base;
    for (event, link) in &linked {
        prev = chain::link(&prev, event).unwrap();
        if prev != *link {
            return false;
        }
    }
    prev == j.chain_head().unwrap()
}

/// A tempdir on tmpfs when there is one: many fsyncs, no timing in the assertion.
fn scratch_dir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

#[test]
fn an_sql_edited_receipt_no_longer_matches_its_stored_link() {
    let dir = tempfile::tempdir().unwrap();
    let honest_head = {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=5 {
            j.append(at(n), receipt(n, 250)).unwrap();
        }
        assert!(
            links_verify(&j, GENESIS),
            "appends link over the event as sent"
        );
        j.chain_head().unwrap()
    };
    // Someone lowers receipt 3's total with an SQLite tool: a valid, re-encoded event.
    let edited = receipt(3, 1);
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute(
            "UPDATE events SET payload = ?1 WHERE seq = 3",
            [codec::to_bytes(&edited).unwrap()],
        )
        .unwrap();
    }
    let j = Journal::open(dir.path(), &agent()).unwrap();
    let linked = j.read_linked(1, 10).unwrap();
    assert_eq!(
        linked[2].0.kind, edited,
        "the edited event is what would be sent"
    );
    assert_eq!(
        linked[4].1, honest_head,
        "the stored link (the uplink's claim) is still the honest one"
    );
    let events: Vec<Event> = linked.into_iter().map(|(e, _)| e).collect();
    assert_ne!(
        chain_over(GENESIS, &events),
        honest_head,
        "a hub recomputing the chain over what it receives sees the edit"
    );
    assert_eq!(
        j.status().unwrap().quarantined,
        0,
        "an edit is no corruption"
    );
}

#[test]
fn erasures_relink_the_tail_so_an_honest_journal_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    for n in 1..=9 {
        j.append(at(n), receipt(n, 100 + n as i64)).unwrap();
    }
    j.ack(3).unwrap();
    let keyring = till360_shared::coupon::Keyring {
        digest_key: [0x42; 32],
        ..Default::default()
    };
    j.store_campaigns(&till360_agent::hub_link::CampaignState {
        version: 1,
        set: Default::default(),
        keyring: keyring.clone(),
        catalog: vec![],
    })
    .unwrap();
    let before = j.chain_head().unwrap();
    let outcome = j
        .apply_erasures(&[keyring.card_key(&card(1))], 1)
        .unwrap()
        .expect("applied");
    assert!(outcome.events_pseudonymised > 0);
    assert_ne!(
        j.chain_head().unwrap(),
        before,
        "rewritten events change the chain"
    );

    // The chain base at the acked seq is the honest link there: recompute it.
    let base = {
        let dir2 = tempfile::tempdir().unwrap();
        let mut fresh = Journal::open(dir2.path(), &agent()).unwrap();
        for n in 1..=3 {
            fresh.append(at(n), receipt(n, 100 + n as i64)).unwrap();
        }
        fresh.chain_head().unwrap()
    };
    assert!(
        links_verify(&j, base),
        "every stored link re-linked over the rewritten tail"
    );
    let pending = j.read_from(4, 100).unwrap();
    assert_eq!(chain_over(base, &pending), j.chain_head().unwrap());
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert!(links_verify(&j, base), "the re-link was committed");
}

#[test]
fn a_garbage_row_is_quarantined_with_its_raw_bytes_and_the_chain_relinked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=6 {
            j.append(at(n), receipt(n, 300)).unwrap();
        }
    }
    let garbage = vec![0xde, 0xad, 0xbe, 0xef, 0xff, 0x00, 0x13];
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute("UPDATE events SET payload = ?1 WHERE seq = 4", [&garbage])
            .unwrap();
    }
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    // The uplink's read: never blocks, the bad row is read as its replacement.
    let events = j.read_from(1, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    let EventKind::Quarantined { reason } = &events[3].kind else {
        panic!("seq 4 should be quarantined: {:?}", events[3].kind);
    };
    assert!(!reason.is_empty());
    assert_eq!(events[3].recorded_at, at(4), "the row's time is kept");
    assert_eq!(events[4].kind, receipt(5, 300), "rows after it are intact");
    assert!(
        links_verify(&j, GENESIS),
        "the quarantine re-linked the tail"
    );

    let quarantined = j.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].seq, 4);
    let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let (raw, kind): (Vec<u8>, String) = conn
        .query_row(
            "SELECT payload, kind FROM quarantine WHERE seq = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(raw, garbage, "the raw bytes are kept");
    assert_eq!(kind, "receipt");
    drop(conn);

    let status = j.status().unwrap();
    assert_eq!(status.quarantined, 1);
    assert_eq!(status.pending, 6);
    // A second read finds nothing new to quarantine; an ack past it works.
    assert_eq!(j.read_from(1, 100).unwrap(), events);
    j.ack(6).unwrap();
    assert_eq!(
        j.status().unwrap().quarantined,
        1,
        "the quarantine outlives the ack"
    );
    assert_eq!(j.append(at(7), receipt(7, 1)).unwrap().seq, 7);
}

#[test]
fn an_out_of_range_offset_is_quarantined_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), &agent()).unwrap();
        for n in 1..=2 {
            j.append(at(n), receipt(n, 300)).unwrap();
        }
    }
    {
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.execute("UPDATE events SET offset_min = 99999 WHERE seq = 1", [])
            .unwrap();
    }
    let j = Journal::open(dir.path(), &agent()).unwrap();
    let events = j.read_from(1, 10).unwrap();
    assert!(matches!(events[0].kind, EventKind::Quarantined { .. }));
    assert_eq!(events[1].kind, receipt(2, 300));
    assert!(links_verify(&j, GENESIS));
}

#[test]
fn the_wal_stays_bounded_over_20000_appends_and_acks() {
    const BOUND: u64 = 2 << 20;
    let dir = scratch_dir();
    let wal = dir.path().join(format!("{JOURNAL_FILE}-wal"));
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    let mut largest = 0;
    for n in 1..=20_000u64 {
        j.append(at(n), receipt(n, 100)).unwrap();
        if n % 250 == 0 {
            j.ack(n - 50).unwrap();
        }
        if n % 50 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
    }
    j.ack(20_000).unwrap();
    assert!(
        largest <= BOUND,
        "the WAL reached {largest} bytes (bound {BOUND})"
    );
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "an ack truncates the WAL"
    );
    let status = j.status().unwrap();
    assert_eq!(status.pending, 0);
    assert!(
        status.bytes < 64 * 1024,
        "acknowledged events gave their space back: {} bytes",
        status.bytes
    );
}

#[test]
fn past_the_quota_the_journal_alarms_keeps_every_event_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    let empty = j.bytes().unwrap();
    j.set_max_bytes(empty + 64 * 1024);
    assert!(!j.quota_exceeded());
    let mut n = 0;
    while !j.quota_exceeded() {
        n += 1;
        assert!(n < 5000, "the quota alarm never fired");
        j.append(at(n), receipt(n, 100)).unwrap();
    }
    // Nothing is dropped past the quota.
    for _ in 0..50 {
        n += 1;
        j.append(at(n), receipt(n, 100)).unwrap();
    }
    let status = j.status().unwrap();
    assert!(status.quota_exceeded);
    assert!(status.bytes > status.max_bytes);
    assert_eq!(status.pending, n);
    assert_eq!(j.read_from(1, usize::MAX).unwrap().len() as u64, n);

    // The hub acknowledges everything: the space is given back and the alarm ends.
    j.ack(n).unwrap();
    assert!(!j.quota_exceeded(), "{} bytes", j.bytes().unwrap());
    assert!(!j.status().unwrap().quota_exceeded);
}

#[test]
fn a_full_journal_fails_appends_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), &agent()).unwrap();
    for n in 1..=3 {
        j.append(at(n), receipt(n, 100)).unwrap();
    }
    let pages = j.bytes().unwrap() / 4096;
    assert_eq!(j.limit_pages(pages).unwrap(), pages);
    let mut n = 3;
    let err = loop {
        n += 1;
        assert!(n < 10_000, "the page limit never filled the journal");
        match j.append(at(n), receipt(n, 100)) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(err, JournalError::Full { .. }), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    let recorded = n - 1;
    assert_eq!(j.last_seq(), recorded, "the failed event took no seq");
    assert_eq!(
        j.read_from(1, usize::MAX).unwrap().len() as u64,
        recorded,
        "nothing recorded before is lost"
    );
    assert!(links_verify(&j, GENESIS));

    // Space comes back (the hub acknowledged): appends work again, seqs gapless.
    j.ack(recorded).unwrap();
    let event = j.append(at(n), receipt(n, 100)).unwrap();
    assert_eq!(event.seq, recorded + 1);
    drop(j);
    let j = Journal::open(dir.path(), &agent()).unwrap();
    assert_eq!(j.last_seq(), recorded + 1);
}
