//! End to end over real parts: pty pairs as serial ports, the hub and agents as child
//! processes talking QUIC on 127.0.0.1, SQLite files in temp folders. Every wait is
//! bounded by `harness::DEADLINE`; nothing asserts on timing.

use crate::harness;

use std::collections::{BTreeMap, BTreeSet};

use harness::{visits_at, Site, Till, DEADLINE};
use till360::rig::wait_until;
use till360::sim::printer::STATUS_ONLINE;
use till360::sim::scanner::{card_number, garbage, with_bad_check_digit};
use till360::sim::{
    CardExpectation, Morning, MorningPlan, ReceiptStyle, Scan, SimRng, StoreSetup, Suffix, Visit,
};
use till360_agent::journal::Journal;
use till360_shared::AgentId;

fn two_stores() -> Vec<StoreSetup> {
    StoreSetup::demo_stores()
}

fn two_tills(site: &Site, seed: u64) -> Vec<Till> {
    vec![
        site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, seed),
        site.till("S002", ReceiptStyle::Boutique, Suffix::CrLf, seed + 1),
    ]
}

/// Plays each till's visits on its own thread (tills work at the same time).
fn play_all(tills: Vec<Till>, visits: Vec<Vec<Visit>>) -> Vec<Till> {
    let handles: Vec<_> = tills
        .into_iter()
        .zip(visits)
        .map(|(mut till, visits)| {
            std::thread::spawn(move || {
                for v in &visits {
                    till.play(v);
                }
                till
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("till thread"))
        .collect()
}

/// The visits of store `i`, split after `num/den` of them (for a kill or outage midway).
fn split_visits(morning: &Morning, i: usize, num: usize, den: usize) -> (Vec<Visit>, Vec<Visit>) {
    let v = visits_at(morning, i);
    let n = num * v.len() / den;
    (v[..n].to_vec(), v[n..].to_vec())
}

fn expectation_of(stores: &[StoreSetup], visits: &[Visit]) -> BTreeMap<String, CardExpectation> {
    Morning {
        stores: stores.to_vec(),
        visits: visits.to_vec(),
    }
    .expected_by_card()
}

/// (a) Logos, barcodes, QR codes and drawer kicks in random chunk sizes reach the
/// printer byte for byte, and the printer's status answers reach the POS. No hub is
/// running: printing must not depend on it.
#[test]
fn printer_receives_every_byte_and_status_reaches_pos() {
    let site = Site::new();
    let stores = two_stores();
    let mut plan = MorningPlan::new(101, 16);
    plan.carded_percent = 50;
    let morning = Morning::generate(&plan, &stores);
    let tills = two_tills(&site, 7);
    let _agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    let polls: usize = morning
        .visits
        .iter()
        .map(|v| v.receipt.status_polls())
        .sum();
    assert!(polls > 0, "the morning polls the printer status");
    let tills = play_all(tills, vec![visits_at(&morning, 0), visits_at(&morning, 1)]);
    for (i, till) in tills.iter().enumerate() {
        let sent: Vec<u8> = morning
            .visits_at(i)
            .flat_map(|v| v.receipt.bytes())
            .collect();
        let got = till.devices.printer.bytes();
        assert_eq!(got.len(), sent.len(), "{}: byte count", till.setup.store);
        assert!(got == sent, "{}: printer bytes differ", till.setup.store);
        assert_eq!(till.devices.printer.cuts(), morning.visits_at(i).count());
    }
    // Till::play checked each poll got an answer; check it is the printer's byte.
    let mut t = tills.into_iter().next().expect("a till");
    let mut pos =
        till360::sim::PosSimulator::new(ReceiptStyle::Supermarket, "S001", plan.opening, 5);
    pos.status_poll_percent = 100;
    let receipt = pos.next_receipt(None);
    let report = till360::sim::play_receipt(&t.devices.pos, &receipt, &mut t.rng, 8, DEADLINE)
        .expect("status answered");
    assert_eq!(report.status_replies, vec![STATUS_ONLINE]);
}

/// (b) Two stores, carded receipts: one profile per card with the right count, total and
/// stores. A scan with a bad check digit creates no profile.
#[test]
fn profiles_merge_receipts_from_two_stores() {
    let site = Site::new();
    let stores = two_stores();
    let mut morning = Morning::generate(&MorningPlan::new(202, 40), &stores);
    // A misread card nobody rescans: its receipt must stay anonymous.
    let unlucky = card_number(77_777_777);
    let mut last = morning.visits_at(0).last().expect("visits").clone();
    last.card = None;
    last.scans = vec![Scan::BadCheckDigit(with_bad_check_digit(&unlucky))];
    morning.visits.push(last.clone());
    // Line noise from the scanner before a good scan changes nothing.
    let noisy = morning
        .visits
        .iter_mut()
        .find(|v| v.card.is_some() && v.store_index == 1)
        .expect("a carded visit at S002");
    noisy
        .scans
        .insert(0, Scan::Garbage(garbage(&mut SimRng::new(9))));
    let expected = morning.expected_by_card();
    assert!(expected.values().any(|e| e.stores.len() == 2));
    assert!(!expected.contains_key(&unlucky));

    let hub = site.start_hub();
    let tills = two_tills(&site, 11);
    let agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    // Kept: dropping the devices would close the ptys under the agents.
    let _tills = play_all(tills, vec![visits_at(&morning, 0), visits_at(&morning, 1)]);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    site.wait_for_profiles(&expected, &logs);

    assert_eq!(
        site.status_of(&format!("/api/v1/profiles/by-card/{unlucky}")),
        Some(404)
    );
    let bad = with_bad_check_digit(&unlucky);
    let status = site.status_of(&format!("/api/v1/profiles/by-card/{bad}"));
    assert!(
        matches!(status, Some(400..=499)),
        "bad check digit: {status:?}"
    );
    let agents_json = site
        .get("/api/v1/agents")
        .and_then(|r| r.json())
        .expect("agents");
    let listed: BTreeSet<String> = agents_json
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["store"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, BTreeSet::from(["S001".into(), "S002".into()]));
}

/// (c) The hub is SIGKILLed while the tills keep printing, then restarted on the same
/// data_dir: every receipt is counted exactly once.
#[test]
fn hub_killed_and_restarted_counts_every_receipt_once() {
    let site = Site::new();
    let stores = two_stores();
    let morning = Morning::generate(&MorningPlan::new(303, 48), &stores);
    let expected = morning.expected_by_card();
    let (a1, a2) = split_visits(&morning, 0, 2, 3);
    let (b1, b2) = split_visits(&morning, 1, 2, 3);

    let mut hub = site.start_hub();
    let tills = two_tills(&site, 13);
    let agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    let printing = std::thread::spawn(move || play_all(tills, vec![a1, b1]));
    // Kill the hub once it has taken some events, while the tills keep printing.
    let synced = wait_until(DEADLINE, || {
        let agents = site.get("/api/v1/agents")?.json()?;
        let seqs: Vec<u64> = agents
            .as_array()?
            .iter()
            .filter_map(|a| a["last_seq"].as_u64())
            .collect();
        (seqs.len() == 2 && seqs.iter().all(|s| *s >= 3)).then_some(())
    });
    assert!(
        synced.is_some(),
        "the hub never got events:\n{}",
        harness::read_log(&hub.log)
    );
    hub.kill();
    let tills = printing.join().expect("printing thread");
    let hub = site.start_hub();
    // Kept: dropping the devices would close the ptys under the agents.
    let _tills = play_all(tills, vec![a2, b2]);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    site.wait_for_profiles(&expected, &logs);
}

/// (d) An agent SIGKILLed between receipts and restarted loses nothing and doubles
/// nothing.
#[test]
fn agent_killed_between_receipts_loses_and_doubles_nothing() {
    let site = Site::new();
    let stores = two_stores();
    let morning = Morning::generate(&MorningPlan::new(404, 40), &stores);
    let expected = morning.expected_by_card();
    let (a1, a2) = split_visits(&morning, 0, 1, 2);
    let (b1, b2) = split_visits(&morning, 1, 1, 2);
    let first_half: Vec<Visit> = a1.iter().chain(b1.iter()).cloned().collect();

    let hub = site.start_hub();
    let tills = two_tills(&site, 17);
    let mut agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    let tills = play_all(tills, vec![a1, b1]);
    // Between receipts: what was printed so far is journaled (the hub has it).
    site.wait_for_profiles(&expectation_of(&stores, &first_half), &[&hub]);
    for a in agents.iter_mut() {
        a.kill();
    }
    let agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    // Kept: dropping the devices would close the ptys under the agents.
    let _tills = play_all(tills, vec![a2, b2]);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    site.wait_for_profiles(&expected, &logs);
}

/// (e) An agent whose certificate comes from another CA is refused: its receipts never
/// reach the hub, and the hub keeps serving the good agent.
#[test]
fn agent_with_foreign_certificate_is_refused() {
    let site = Site::new();
    let good_stores = vec![two_stores().remove(0)];
    let good = Morning::generate(&MorningPlan::new(505, 20), &good_stores);
    let rogue_stores = vec![StoreSetup {
        store: "S003".into(),
        till: "T01".into(),
        style: ReceiptStyle::Boutique,
    }];
    let mut rogue_plan = MorningPlan::new(506, 10);
    rogue_plan.carded_percent = 100;
    let rogue = Morning::generate(&rogue_plan, &rogue_stores);
    let good_expected = good.expected_by_card();
    let rogue_cards: Vec<String> = rogue.expected_by_card().into_keys().collect();
    assert!(rogue_cards.iter().all(|c| !good_expected.contains_key(c)));

    // A CA of its own; it trusts the real hub's CA so only the hub's check can stop it.
    let rogue_pki = site.path().join("rogue-pki");
    till360_hub::pki::init_ca(&rogue_pki, &["localhost".to_string()], &[], false)
        .expect("rogue CA");
    let rogue_certs = site.path().join("rogue-certs");
    till360_hub::pki::issue_agent(&rogue_pki, "S003", "T01", &rogue_certs).expect("rogue cert");
    std::fs::copy(site.pki.join("ca.pem"), rogue_certs.join("ca.pem")).expect("copy ca");

    let mut hub = site.start_hub();
    let good_till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Lf, 19);
    let rogue_till =
        site.till_with_certs("S003", ReceiptStyle::Boutique, Suffix::Cr, 23, &rogue_certs);
    let good_agent = site.start_agent(&good_till);
    let rogue_agent = site.start_agent(&rogue_till);
    // The rogue prints first and keeps trying while the good till works.
    let tills = play_all(
        vec![rogue_till, good_till],
        vec![visits_at(&rogue, 0), visits_at(&good, 0)],
    );
    site.wait_for_profiles(&good_expected, &[&hub, &good_agent, &rogue_agent]);
    hub.assert_running();
    assert_eq!(site.status_of("/api/v1/health"), Some(200));
    for card in &rogue_cards {
        assert_eq!(
            site.status_of(&format!("/api/v1/profiles/by-card/{card}")),
            Some(404),
            "rogue card {card} reached the hub"
        );
    }
    let stores_listed = wait_until(DEADLINE, || {
        site.get("/api/v1/agents").and_then(|r| r.json())
    })
    .expect("agents list");
    assert!(
        !stores_listed.to_string().contains("S003"),
        "rogue agent listed: {stores_listed}"
    );
    drop(tills);
}

/// `till360 demo --exit` (what the CI smoke test runs) plays its morning, finds every
/// receipt at the hub and exits 0.
#[test]
fn demo_exits_zero_when_the_hub_has_everything() {
    let dir = tempfile::Builder::new()
        .prefix("till360-demo-test-")
        .tempdir()
        .expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_till360"))
        .args(["demo", "--receipts", "24", "--seed", "7", "--exit", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn demo");
    // Longer than the demo's own wait for the hub (2 minutes), so a demo that gives up
    // says why (what the hub is missing) before this test stops it.
    let deadline = std::time::Instant::now() + 3 * DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "demo failed ({status:?}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("\"profile_id\""),
        "profiles shown:\n{stdout}"
    );
    assert!(
        stdout.contains("/api/v1/agents"),
        "API URL shown:\n{stdout}"
    );
}

/// Events a visit journals: one per loyalty-card scan, one for the receipt.
fn journaled_events(visits: &[Visit]) -> u64 {
    visits
        .iter()
        .map(|v| {
            let cards = v
                .scans
                .iter()
                .filter(|s| matches!(s, Scan::Card(_)))
                .count();
            cards as u64 + 1
        })
        .sum()
}

/// The journal's last seq as the agent's `status` reads it (WAL lets a second
/// connection read while the agent runs).
fn journal_last_seq(till: &Till) -> Option<u64> {
    let agent = AgentId::new(till.setup.store.clone(), till.setup.till.clone());
    let journal = Journal::open_existing(&till.data_dir, &agent).ok()?;
    Some(journal.status().ok()?.last_seq)
}

/// (d') The agent SIGKILLed while its journal holds events the hub never acknowledged
/// (the hub is down), then everything restarted: the unacknowledged events reach the
/// hub exactly once, and the hub's high-water mark equals the journal's last seq.
#[test]
fn agent_killed_with_unacknowledged_events_loses_and_doubles_nothing() {
    let site = Site::new();
    let stores = two_stores();
    let morning = Morning::generate(&MorningPlan::new(505, 36), &stores);
    let expected = morning.expected_by_card();
    let (a1, a2) = split_visits(&morning, 0, 1, 2);
    let (b1, b2) = split_visits(&morning, 1, 1, 2);
    let pending = [journaled_events(&a1), journaled_events(&b1)];

    let mut hub = site.start_hub();
    let tills = two_tills(&site, 23);
    let mut agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    hub.kill();
    let tills = play_all(tills, vec![a1, b1]);
    for (till, want) in tills.iter().zip(pending) {
        let journaled = wait_until(DEADLINE, || {
            (journal_last_seq(till) == Some(want)).then_some(())
        });
        assert!(
            journaled.is_some(),
            "{}: journal at {:?}, expected {want}",
            till.setup.store,
            journal_last_seq(till)
        );
    }
    for a in agents.iter_mut() {
        a.kill();
    }
    let hub = site.start_hub();
    let agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    // Kept: dropping the devices would close the ptys under the agents.
    let tills = play_all(tills, vec![a2, b2]);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    site.wait_for_profiles(&expected, &logs);
    let hub_seqs = site
        .get("/api/v1/agents")
        .and_then(|r| r.json())
        .expect("agents");
    for till in &tills {
        let hub_seq = hub_seqs
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|x| x["store"] == till.setup.store.as_str())
                    .and_then(|x| x["last_seq"].as_u64())
            })
            .expect("the hub knows the agent");
        assert_eq!(
            Some(hub_seq),
            journal_last_seq(till),
            "{}: the hub's high water equals the journal's last seq",
            till.setup.store
        );
    }
}
