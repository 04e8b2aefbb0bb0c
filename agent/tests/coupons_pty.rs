//! Coupons through the whole agent over real ptys, without a hub: the journal holds a
//! campaign set (as the uplink would have stored it). A big basket gets its coupon
//! printed right before the cut and journaled with the receipt's seq; on the next
//! receipt a scanned own-store code is redeemed and a forged one refused.

use std::io::Write;
use std::path::Path;

use crate::common;

use chrono::NaiveDate;
use common::{Pty, GIVE_UP};
use till360_agent::config::AgentConfig;
use till360_agent::hub_link::CampaignState;
use till360_agent::journal::Journal;
use till360_agent::runtime::RunningAgent;
use till360_shared::campaign::{Campaign, CampaignSet, Settings, Trigger};
use till360_shared::coupon::{derive_digest_key, derive_till_key, mint, CouponFields, Keyring};
use till360_shared::event::Verification;
use till360_shared::{AgentId, Event, EventKind};

const MASTER: &[u8] = b"coupon pty test master, 32 bytes+";
const CUT: &[u8] = b"\x1dV\x00";

fn config(dir: &Path, scanner: &Pty, pos: &Pty, printer: &Pty) -> AgentConfig {
    // A generous budget: this test is about what is printed, not how fast.
    let coupons = "[coupons]\nbudget_ms = 1000\ncolumns = 32\nexpiry_label = \"Geldig t/m\"\n";
    common::agent_config(dir, &scanner.path, &pos.path, &printer.path, coupons)
}

fn campaign_state() -> CampaignState {
    let own = derive_till_key(MASTER, "S001", "T01");
    let neighbour = derive_till_key(MASTER, "S001", "T02");
    CampaignState {
        version: 3,
        set: CampaignSet {
            version: 3,
            campaigns: vec![Campaign {
                id: "big-basket".into(),
                name: "Bedankt!".into(),
                trigger: Trigger::BasketTotal {
                    min_total_cents: 5000,
                },
                offer: "5 euro korting vanaf 25 euro".into(),
                valid_days: 14,
                control_percent: 0,
                max_per_customer: 1,
                cap_days: 30,
                stores: None,
                segments: None,
                priority: 0,
                // No hub in this test: the till is offline.
                offline: true,
            }],
            settings: Settings::default(),
        },
        keyring: Keyring {
            till_number: 1,
            till_key: *own.as_bytes(),
            store_tills: vec![(1, *own.as_bytes()), (2, *neighbour.as_bytes())],
            campaign_numbers: vec![("big-basket".into(), 7)],
            digest_key: derive_digest_key(MASTER, "S001"),
        },
        catalog: Vec::new(),
    }
}

async fn wait_for_seq(agent: &RunningAgent, seq: u64) {
    let mut rx = agent.journal_seq();
    tokio::time::timeout(GIVE_UP, rx.wait_for(|s| *s >= seq))
        .await
        .expect("journal did not reach the seq")
        .unwrap();
}

fn events(agent: &RunningAgent) -> Vec<Event> {
    let journal = agent.journal().expect("journal is open");
    let journal = journal.lock().unwrap();
    journal.read_from(1, 100).unwrap()
}

/// Reads the printer until its output ends with `end`.
fn read_until(printer: &mut Pty, end: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !out.ends_with(end) {
        out.extend(printer.read_exactly(1));
    }
    out
}

/// Code128 set C data of a 24-digit code, as the coupon's barcode carries it.
fn barcode_of(code: &str) -> Vec<u8> {
    let mut data = b"{C".to_vec();
    data.extend(
        code.as_bytes()
            .chunks(2)
            .map(|p| (p[0] - b'0') * 10 + (p[1] - b'0')),
    );
    data
}

fn code_of(store: &str, till: &str, till_no: u16, expires: NaiveDate) -> String {
    let key = derive_till_key(MASTER, store, till);
    mint(&key, &CouponFields::new(7, till_no, expires, 5).unwrap())
        .as_str()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_are_printed_before_the_cut_journaled_and_redeemed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut journal =
            Journal::open(&dir.path().join("data"), &AgentId::new("S001", "T01")).unwrap();
        journal.store_campaigns(&campaign_state()).unwrap();
    }
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();
    let mut pos_out = pos.writer();

    // A big basket: the coupon goes right before the cut.
    let body: &[u8] = b"\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0012-0001\n\
Koffiebonen 1kg         59,99\n\
TOTAAL                  59,99\n\
PIN                     59,99\n\
\x1bd\x03";
    pos_out.write_all(&[body, CUT].concat()).unwrap();
    let printed = read_until(&mut printer, CUT);
    wait_for_seq(&agent, 2).await;
    let journaled = events(&agent);
    assert_eq!(journaled.len(), 2, "{journaled:#?}");
    let EventKind::Receipt(receipt) = &journaled[0].kind else {
        panic!("expected the receipt first: {journaled:#?}");
    };
    assert_eq!(receipt.total_cents, 5999);
    let EventKind::CouponIssued(issue) = &journaled[1].kind else {
        panic!("expected the printed coupon: {journaled:#?}");
    };
    assert_eq!(issue.campaign_id, "big-basket");
    assert_eq!(issue.receipt_seq, journaled[0].seq);
    let code = issue.code.clone().expect("a printed coupon has a code");
    assert!(printed.starts_with(body), "the receipt prints unchanged");
    let block = &printed[body.len()..printed.len() - CUT.len()];
    assert!(
        block
            .windows(barcode_of(&code).len())
            .any(|w| w == barcode_of(&code)),
        "the block before the cut carries the journaled code"
    );
    assert!(block.windows(8).any(|w| w == b"Bedankt!"));

    // Next customer: a coupon of the neighbouring till and a forged one.
    let today = issue.expires - chrono::Days::new(14);
    let neighbours = code_of("S001", "T02", 2, today);
    let forged = code_of("S999", "T02", 2, today);
    let mut scanner_out = scanner.writer();
    scanner_out
        .write_all(format!("{neighbours}\r{neighbours}\r{forged}\r").as_bytes())
        .unwrap();
    wait_for_seq(&agent, 3).await;
    let small = b"\x1b@Bon 0012-0002\nAppels                   1,98\nTOTAAL                   1,98\n\x1dV\x00";
    pos_out.write_all(small).unwrap();
    assert_eq!(
        read_until(&mut printer, CUT),
        small,
        "no coupon: byte-exact"
    );
    wait_for_seq(&agent, 5).await;
    let journaled = events(&agent);
    agent.shutdown().await;

    assert_eq!(journaled.len(), 5, "{journaled:#?}");
    match &journaled[2].kind {
        EventKind::CouponRefused { code, reason } => {
            assert_eq!(
                (code.as_str(), reason.as_str()),
                (forged.as_str(), "forged")
            );
        }
        other => panic!("expected the forged code refused, got {other:?}"),
    }
    assert!(matches!(&journaled[3].kind, EventKind::Receipt(r) if r.total_cents == 198));
    match &journaled[4].kind {
        EventKind::CouponRedeemed(redeemed) => {
            assert_eq!(redeemed.code, neighbours);
            assert_eq!(redeemed.receipt_seq, Some(journaled[3].seq));
            assert_eq!(redeemed.verified, Verification::OwnStore);
        }
        other => panic!("expected the redemption, got {other:?}"),
    }
}

/// A receipt the layout misread (its total line read as an item: the basket looks twice
/// as big) triggers no coupon: it is journaled `unbalanced` and printed unchanged
/// (issue 10 item 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_does_not_balance_triggers_no_coupon() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut journal =
            Journal::open(&dir.path().join("data"), &AgentId::new("S001", "T01")).unwrap();
        journal.store_campaigns(&campaign_state()).unwrap();
    }
    let scanner = Pty::new();
    let pos = Pty::new();
    let mut printer = Pty::new();
    let agent = RunningAgent::start(config(dir.path(), &scanner, &pos, &printer)).unwrap();
    let misread: &[u8] = b"\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0012-0001\n\
Koffiebonen 1kg         59,99\n\
TOTAAL EUR              59,99\n\
\x1bd\x03\x1dV\x00";
    pos.writer().write_all(misread).unwrap();
    assert_eq!(
        read_until(&mut printer, CUT),
        misread,
        "no coupon: byte-exact"
    );
    wait_for_seq(&agent, 1).await;
    let journaled = events(&agent);
    agent.shutdown().await;
    assert_eq!(journaled.len(), 1, "{journaled:#?}");
    match &journaled[0].kind {
        EventKind::Receipt(r) => assert!(r.unbalanced && r.total_cents == 11_998, "{r:#?}"),
        other => panic!("expected the receipt, got {other:?}"),
    }
}
