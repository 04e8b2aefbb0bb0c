//! Two hub processes on one PostgreSQL database, each behind its own UDP fault proxy
//! (loss, duplication, reordering); two tills whose `[hub] address` lists both, so they
//! fail over. The hubs are SIGKILLed and restarted in turn while the tills print. The
//! total-queue check finds every printed receipt committed once (lost = duplicated =
//! unexpected = 0), every journal drains, and each card's profile is what one hub makes of
//! the same receipts (the simulation's expectation), read from either hub.

use crate::harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::{drained, printed_keys, read_log, visits_at, Proc, Site, Till, DEADLINE};
use till360::faults::{DirectionFaults, FaultPlan, FaultProxy, ReceiptKey, TotalQueue};
use till360::rig::{profile_differences, wait_until, PlayOptions};
use till360::sim::{Morning, MorningPlan, ReceiptStyle, StoreSetup, Suffix, Visit};

const RECEIPTS: usize = 600;
const DRAIN_BOUND: Duration = Duration::from_secs(120);

fn pacing() -> PlayOptions {
    PlayOptions {
        max_chunk: 256,
        scan_gap: Duration::from_millis(15),
        customer_gap: Duration::ZERO,
        timeout: DEADLINE,
    }
}

#[test]
fn two_hubs_on_one_database_survive_kills_and_failover_with_every_receipt_once() {
    let Some(site) = Site::on_postgres() else {
        return;
    };
    let started = Instant::now();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(11_011, RECEIPTS), &stores);
    let hub_b_files = site.another_hub("hub-b");
    let mut hub_a = site.start_hub();
    let mut hub_b = site.start_hub_from(&hub_b_files, "hub-b");
    let proxy_a = FaultProxy::start(
        site.hub.quic,
        FaultPlan::symmetric(11_012, DirectionFaults::hostile()),
    )
    .expect("fault proxy A");
    let proxy_b = FaultProxy::start(
        hub_b_files.quic,
        FaultPlan::symmetric(11_013, DirectionFaults::hostile()),
    )
    .expect("fault proxy B");
    // Each till prefers another hub, so both hubs commit batches from the start.
    let tills = vec![
        site.till_via_hubs(
            "S001",
            ReceiptStyle::Supermarket,
            Suffix::Cr,
            51,
            &[proxy_a.addr(), proxy_b.addr()],
        ),
        site.till_via_hubs(
            "S002",
            ReceiptStyle::Boutique,
            Suffix::CrLf,
            52,
            &[proxy_b.addr(), proxy_a.addr()],
        ),
    ];
    let visits: Vec<Vec<Visit>> = (0..tills.len()).map(|i| visits_at(&morning, i)).collect();
    let printed: Vec<ReceiptKey> = tills
        .iter()
        .zip(&visits)
        .flat_map(|(t, v)| printed_keys(t, v))
        .collect();
    let agents: Vec<Proc> = tills.iter().map(|t| site.start_agent(t)).collect();
    // Four stretches of each till's visits: both hubs up; hub A down; hub B down; both up
    // with hub A killed and restarted at once halfway.
    let stretches: Vec<[Vec<Visit>; 4]> = visits
        .iter()
        .map(|v| {
            let cut = |f: usize| f * v.len() / 20;
            [
                v[..cut(6)].to_vec(),
                v[cut(6)..cut(11)].to_vec(),
                v[cut(11)..cut(16)].to_vec(),
                v[cut(16)..].to_vec(),
            ]
        })
        .collect();
    let mut timeline = Vec::new();
    let mut mark = |what: &str| {
        timeline.push(format!("{:>6.1}s {what}", started.elapsed().as_secs_f64()));
    };
    let mut tills = tills;
    let play = |tills: &mut Vec<Till>, stretch: usize, midway: &mut dyn FnMut()| {
        std::thread::scope(|scope| {
            let halves: Vec<_> = tills
                .iter_mut()
                .zip(&stretches)
                .map(|(till, s)| {
                    let visits = &s[stretch];
                    let half = visits.len() / 2;
                    let (first, second) = visits.split_at(half);
                    (till, first, second)
                })
                .collect();
            let mut rest = Vec::new();
            let firsts: Vec<_> = halves
                .into_iter()
                .map(|(till, first, second)| {
                    rest.push(second);
                    scope.spawn(move || {
                        for visit in first {
                            till.play_with(visit, &pacing());
                        }
                        till
                    })
                })
                .collect();
            let tills_back: Vec<&mut Till> = firsts
                .into_iter()
                .map(|h| h.join().expect("till"))
                .collect();
            midway();
            let seconds: Vec<_> = tills_back
                .into_iter()
                .zip(rest)
                .map(|(till, second)| {
                    scope.spawn(move || {
                        for visit in second {
                            till.play_with(visit, &pacing());
                        }
                    })
                })
                .collect();
            for h in seconds {
                h.join().expect("till");
            }
        });
    };
    // Everything printed so far acknowledged: with one hub down, through the other one.
    let all_acked = |tills: &Vec<Till>, what: &str| {
        let acked = wait_until(DRAIN_BOUND, || {
            tills
                .iter()
                .all(|t| harness::journal_status(t).is_some_and(|s| s.acked_seq == s.last_seq))
                .then_some(())
        });
        assert!(acked.is_some(), "the tills did not sync {what}");
    };

    play(&mut tills, 0, &mut || {});
    mark("both hubs: first stretch printed");
    hub_a.kill();
    mark("hub A killed");
    play(&mut tills, 1, &mut || {});
    all_acked(&tills, "with hub A down");
    mark("second stretch printed and acknowledged through hub B");
    hub_a = site.start_hub();
    hub_b.kill();
    mark("hub A restarted, hub B killed");
    play(&mut tills, 2, &mut || {});
    all_acked(&tills, "with hub B down");
    mark("third stretch printed and acknowledged through hub A");
    hub_b = site.start_hub_from(&hub_b_files, "hub-b");
    mark("hub B restarted");
    play(&mut tills, 3, &mut || {
        hub_a.kill();
        hub_a = site.start_hub();
    });
    mark("last stretch printed (hub A killed and restarted halfway)");
    eprintln!("two hubs timeline:\n{}", timeline.join("\n"));

    let mut queue = TotalQueue::default();
    let settled = wait_until(DRAIN_BOUND, || {
        let at_hub = site.hub_receipts().ok()?;
        queue = TotalQueue::count(printed.iter().cloned(), at_hub);
        (queue.is_exactly_once() && drained(&site, &tills).is_ok()).then_some(())
    });
    let logs = || {
        let mut text = String::new();
        for p in [&hub_a, &hub_b].into_iter().chain(agents.iter()) {
            text.push_str(&format!("--- {} log:\n{}\n", p.name, read_log(&p.log)));
        }
        text
    };
    assert!(
        settled.is_some(),
        "total queue: {queue}; journals: {:?}\n{}",
        drained(&site, &tills),
        logs()
    );
    eprintln!(
        "two hubs: {queue}; proxy A to hub {:?}, proxy B to hub {:?}",
        proxy_a.counters().to_hub,
        proxy_b.counters().to_hub
    );
    assert!(
        proxy_a.counters().to_hub.released > 0 && proxy_b.counters().to_hub.released > 0,
        "both hubs took traffic"
    );
    // Each till failed over to the hub it did not prefer while its own was down.
    for (agent, other) in agents.iter().zip([proxy_b.addr(), proxy_a.addr()]) {
        let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
        assert!(
            log.contains(&format!("connected to {other}")),
            "{} never connected to the hub behind {other}:\n{}",
            agent.name,
            read_log(&agent.log)
        );
    }
    // The profiles equal one hub's, read from either hub.
    let expected: BTreeMap<_, _> = morning.expected_by_card();
    for http in [site.hub.http, hub_b_files.http] {
        let diffs = profile_differences(http, &expected);
        assert!(diffs.is_empty(), "hub at {http}: {diffs:?}\n{}", logs());
    }
}
