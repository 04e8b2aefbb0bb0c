//! The whole agent without a hub, over real ptys: a card scan and a printed receipt
//! end up in the journal, and the printer gets every byte.

use std::io::Write;
use std::path::Path;

use crate::common;

use common::{Pty, GIVE_UP};
use till360_agent::config::AgentConfig;
use till360_agent::runtime::RunningAgent;
use till360_shared::card::with_check_digit;
use till360_shared::EventKind;

fn config(dir: &Path, scanner: &Pty, pos: &Pty, printer: &Pty) -> AgentConfig {
    common::agent_config(dir, &scanner.path, &pos.path, &printer.path, "")
}

async fn wait_for_seq(agent: &RunningAgent, seq: u64) {
    let mut rx = agent.journal_seq();
    tokio::time::timeout(GIVE_UP, rx.wait_for(|s| *s >= seq))
        .await
        .expect("journal did not reach the seq")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_receipt_are_journaled_while_printing_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();

    // Noise on the scanner is dropped; the loyalty card is journaled.
    let card = with_check_digit("240100000012").unwrap();
    let mut scanner_out = scanner.master.try_clone().unwrap();
    scanner_out
        .write_all(b"\x01\x02garbage\r4006381333931\r")
        .unwrap();
    scanner_out
        .write_all(format!("{card}\r").as_bytes())
        .unwrap();
    wait_for_seq(&agent, 1).await;

    let receipt: &[u8] = b"\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0012-3456\n\
Halfvolle melk 1L        1,29\n\
2 x 0,99\n\
Appels                   1,98 B\n\
TOTAAL                   3,27\n\
PIN                      3,27\n\
\x1bd\x03\x1dV\x00";
    let mut pos_out = pos.master.try_clone().unwrap();
    let printed = std::thread::spawn({
        let receipt = receipt.to_vec();
        move || {
            let got = printer.read_exactly(receipt.len());
            (got, printer)
        }
    });
    pos_out.write_all(receipt).unwrap();
    let (got, _printer) = printed.join().unwrap();
    assert_eq!(got, receipt, "the printer gets the POS bytes unchanged");
    wait_for_seq(&agent, 2).await;

    let events = {
        let journal = agent.journal().expect("journal is open");
        let journal = journal.lock().unwrap();
        journal.read_from(1, 10).unwrap()
    };
    agent.shutdown().await;

    assert_eq!(events.len(), 2, "{events:#?}");
    match &events[0].kind {
        EventKind::CardScanned { card: scanned } => assert_eq!(scanned.as_str(), card),
        other => panic!("expected a card scan, got {other:?}"),
    }
    match &events[1].kind {
        EventKind::Receipt(r) => {
            assert_eq!(r.receipt_no.as_deref(), Some("0012-3456"));
            assert_eq!(r.total_cents, 327);
            assert_eq!(r.lines.len(), 2);
            assert_eq!(r.card.as_ref().map(|c| c.as_str()), Some(card.as_str()));
        }
        other => panic!("expected a receipt, got {other:?}"),
    }
    let status = till360_agent::journal::Journal::open(&dir.path().join("data"), &events[0].agent)
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(
        (status.last_seq, status.pending),
        (2, 2),
        "nothing acked without a hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_goes_on_while_the_journal_cannot_open_and_receipts_are_journaled_later() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the data folder should be: the journal cannot be created.
    let blocker = dir.path().join("data");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();
    assert!(agent.journal().is_none(), "the journal cannot be open yet");

    let receipt: &[u8] = b"\x1b@Bon 0099-0001\nAppels                   1,98\nTOTAAL                   1,98\n\x1dV\x00";
    let mut pos_out = pos.master.try_clone().unwrap();
    let printed = std::thread::spawn({
        let n = receipt.len();
        move || printer.read_exactly(n)
    });
    pos_out.write_all(receipt).unwrap();
    assert_eq!(
        printed.join().unwrap(),
        receipt,
        "printing does not wait for the journal"
    );
    assert!(
        agent.journal().is_none(),
        "still no journal while the disk is unusable"
    );

    std::fs::remove_file(&blocker).unwrap();
    wait_for_seq(&agent, 1).await;
    let events = {
        let journal = agent
            .journal()
            .expect("journal opened after the disk came back");
        let journal = journal.lock().unwrap();
        journal.read_from(1, 10).unwrap()
    };
    agent.shutdown().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    match &events[0].kind {
        EventKind::Receipt(r) => {
            assert_eq!(r.receipt_no.as_deref(), Some("0099-0001"));
            assert_eq!(r.total_cents, 198);
        }
        other => panic!("expected the receipt printed while the journal was down, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_stops_printing_and_journaling_resumes_when_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();
    let journal = agent.journal().expect("journal is open");
    // The disk is full: the journal cannot grow by a single page.
    journal.lock().unwrap().limit_pages(1).unwrap();

    // Receipts with many lines: their rows need new pages the "disk" does not have.
    let receipt = |no: u32| {
        let mut r = format!("\x1b@Bon 0007-{no:04}\n");
        for i in 0..60 {
            r.push_str(&format!(
                "Artikel nummer {i:03} met een lange naam   1,00\n"
            ));
        }
        r.push_str("TOTAAL                  60,00\n\x1dV\x00");
        r.into_bytes()
    };
    let mut pos_out = pos.master.try_clone().unwrap();
    let full: Vec<Vec<u8>> = (1..=20).map(receipt).collect();
    let expected: Vec<u8> = full.concat();
    let printed = std::thread::spawn({
        let n = expected.len();
        move || {
            let got = printer.read_exactly(n);
            (got, printer)
        }
    });
    for r in &full {
        pos_out.write_all(r).unwrap();
    }
    let (got, mut printer) = printed.join().unwrap();
    assert_eq!(
        got, expected,
        "every byte printed while the journal is full"
    );
    let stuck_at = *agent.journal_seq().borrow();
    assert!(
        stuck_at < 20,
        "the full journal could not take every receipt (took {stuck_at})"
    );

    // Space is back: the next receipt is journaled.
    journal.lock().unwrap().limit_pages(1_000_000).unwrap();
    let next = receipt(21);
    let printed = std::thread::spawn({
        let n = next.len();
        move || printer.read_exactly(n)
    });
    pos_out.write_all(&next).unwrap();
    assert_eq!(printed.join().unwrap(), next);
    // Receipts still queued for the till core when space came back are journaled too;
    // receipt 21 comes after them.
    let journaled_21 = |j: &till360_agent::journal::Journal| {
        j.read_from(1, 100).unwrap().iter().any(|e| {
            matches!(&e.kind, EventKind::Receipt(r) if r.receipt_no.as_deref() == Some("0007-0021"))
        })
    };
    let deadline = std::time::Instant::now() + GIVE_UP;
    while !journaled_21(&journal.lock().unwrap()) {
        assert!(
            std::time::Instant::now() < deadline,
            "receipt 21 was not journaled after the disk came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    agent.shutdown().await;
}

/// A receipt whose total line the layout misses (here `TOTAAL EUR`, read as an item)
/// would double its total: it is journaled flagged `unbalanced`, with its unmatched
/// lines counted, and `status` counts it; scans that are neither a card nor a coupon
/// are counted too (issue 10 items 20, 21).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_does_not_balance_is_flagged_and_unrecognised_scans_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();

    // A product barcode, a card with a bad check digit, then a card (journaled): the
    // first two are counted before the card's event is.
    let card = with_check_digit("240100000012").unwrap();
    let mut bad = card.clone().into_bytes();
    bad[12] = b'0' + (bad[12] - b'0' + 1) % 10;
    let mut scanner_out = scanner.master.try_clone().unwrap();
    scanner_out.write_all(b"4006381333931\r").unwrap();
    scanner_out.write_all(&bad).unwrap();
    scanner_out
        .write_all(format!("\r{card}\r").as_bytes())
        .unwrap();
    wait_for_seq(&agent, 1).await;

    let misread: &[u8] = b"\x1b@SUPERMARKT\n\
Bon 0012-0001\n\
Halfvolle melk 1L        1,29\n\
Kaas belegen            12,00\n\
TOTAAL EUR              13,29\n\
PIN                     13,29\n\
\x1dV\x00";
    let fine: &[u8] = b"\x1b@SUPERMARKT\n\
Bon 0012-0002\n\
Appels                   1,98\n\
TOTAAL                   1,98\n\
\x1dV\x00";
    let mut pos_out = pos.master.try_clone().unwrap();
    let n = misread.len() + fine.len();
    let printed = std::thread::spawn(move || printer.read_exactly(n));
    pos_out.write_all(misread).unwrap();
    pos_out.write_all(fine).unwrap();
    printed.join().unwrap();
    wait_for_seq(&agent, 3).await;

    let journal = agent.journal().expect("journal is open");
    let (events, status) = {
        let journal = journal.lock().unwrap();
        (journal.read_from(1, 10).unwrap(), journal.status().unwrap())
    };
    drop(journal);
    agent.shutdown().await;

    let receipts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Receipt(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(receipts.len(), 2, "{events:#?}");
    let (misread, fine) = (receipts[0], receipts[1]);
    assert!(misread.unbalanced, "{misread:#?}");
    assert_eq!(misread.total_cents, 2658, "the lines are kept as read");
    assert_eq!(misread.unmatched_lines, 1, "the shop's name");
    assert!(!fine.unbalanced, "{fine:#?}");
    assert_eq!(fine.total_cents, 198);
    assert_eq!(
        (status.unbalanced_receipts, status.unrecognised_scans),
        (1, 2),
        "{status:#?}"
    );
    let text = till360_agent::cli::status_text(&status);
    assert!(text.contains("unbalanced_receipts: 1\n"), "{text}");
    assert!(text.contains("unrecognised_scans: 2\n"), "{text}");
}
