//! A journal edited on the till (with an SQLite tool, while the hub was away) is noticed
//! by the hub through the journal's hash chain; an untouched till stays "ok". Real
//! parts: agents and hub as child processes, ptys, QUIC on 127.0.0.1, SQLite files.

use crate::harness;

use harness::{journal_status, visits_at, Site, Till, DEADLINE};
use rusqlite::Connection;
use serde_json::Value;
use till360::rig::wait_until;
use till360::sim::{Morning, MorningPlan, ReceiptStyle, StoreSetup, Suffix};
use till360_agent::journal::JOURNAL_FILE;
use till360_shared::codec;
use till360_shared::EventKind;

/// Adds one euro to the total of the first receipt in `till`'s journal; returns its seq.
fn raise_a_total(till: &Till) -> i64 {
    let conn = Connection::open(till.data_dir.join(JOURNAL_FILE)).expect("open the journal");
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, payload FROM events WHERE kind = 'receipt' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let (seq, payload) = rows.into_iter().next().expect("a journaled receipt");
    let mut kind: EventKind = codec::from_bytes(&payload).expect("a receipt payload");
    let EventKind::Receipt(receipt) = &mut kind else {
        panic!("not a receipt: {kind:?}")
    };
    receipt.total_cents += 100;
    conn.execute(
        "UPDATE events SET payload = ?1 WHERE seq = ?2",
        rusqlite::params![codec::to_bytes(&kind).unwrap(), seq],
    )
    .unwrap();
    seq
}

fn chains(site: &Site) -> Option<Vec<(String, Value)>> {
    let agents = site.get("/api/v1/agents")?.json()?;
    Some(
        agents
            .as_array()?
            .iter()
            .map(|a| {
                (
                    a["store"].as_str().unwrap_or("").to_string(),
                    a["chain"].clone(),
                )
            })
            .collect(),
    )
}

#[test]
fn a_journal_edited_on_the_till_is_reported_by_the_hub_and_an_honest_one_is_not() {
    let site = Site::new();
    let mut plan = MorningPlan::new(77, 16);
    plan.misread_percent = 0;
    let morning = Morning::generate(&plan, &StoreSetup::demo_stores());
    let mut tills = [
        site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 1),
        site.till("S002", ReceiptStyle::Boutique, Suffix::CrLf, 2),
    ];

    // The hub is away: everything stays in the journals.
    let mut agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    for (i, till) in tills.iter_mut().enumerate() {
        for visit in visits_at(&morning, i) {
            till.play(&visit);
        }
    }
    let journaled: Vec<u64> = tills
        .iter()
        .map(|t| {
            wait_until(DEADLINE, || {
                let s = journal_status(t)?;
                (s.last_seq > 0).then_some(s.last_seq)
            })
            .expect("journaled")
        })
        .collect();
    for agent in &mut agents {
        agent.kill();
    }
    // Someone edits S001's journal on the till.
    let edited_seq = raise_a_total(&tills[0]);

    let _hub = site.start_hub();
    let _agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    let mut last = Vec::new();
    let reported = wait_until(DEADLINE, || {
        let high_water = site.hub_high_water()?;
        let synced = tills.iter().zip(&journaled).all(|(t, n)| {
            high_water.get(&(t.setup.store.clone(), t.setup.till.clone())) >= Some(n)
        });
        last = chains(&site)?;
        synced.then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("the hub never had both journals; chains {last:?}"));

    let chain_of = |store: &str| {
        reported
            .iter()
            .find(|(s, _)| s == store)
            .map(|(_, c)| c.clone())
            .unwrap_or(Value::Null)
    };
    let s001 = chain_of("S001");
    let broken_at = s001["broken_at_seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("S001's edit must be reported, got {s001}"));
    assert!(
        broken_at >= edited_seq,
        "reported at seq {broken_at}, edited seq {edited_seq}"
    );
    assert_eq!(chain_of("S002"), Value::String("ok".into()));
}
