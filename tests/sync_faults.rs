//! Sync over a hostile network: two tills behind one UDP fault proxy (loss,
//! duplication, reordering, a blackholed hub, a rebound address) while agents and the
//! hub are SIGKILLed and restarted. The total-queue check compares what the tills
//! printed with what the hub committed: lost = duplicated = unexpected = 0. Every wait
//! is bounded; nothing asserts on timing.

use crate::harness;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{
    drained, journal_status, journal_status_in, journaled_events, printed_keys, read_log,
    visits_at, Proc, Site, Till, DEADLINE,
};
use till360::faults::{DirectionFaults, FaultPlan, FaultProxy, ReceiptKey, TotalQueue};
use till360::rig::{wait_until, PlayOptions};
use till360::sim::{Morning, MorningPlan, ReceiptStyle, StoreSetup, Suffix, Visit};

/// Receipts in the torture test (both tills together).
const TORTURE_RECEIPTS: usize = 2_000;
/// Bound for the whole torture run's printing (the tills wait on each other's
/// phases; a stuck till must fail the test, not hang it).
const PRINTING_BOUND: Duration = Duration::from_secs(240);
/// The shortest blackhole in the torture test.
const BLACKHOLE_AT_LEAST: Duration = Duration::from_secs(10);
/// Bound for everything to reach the hub once printing is done.
const DRAIN_BOUND: Duration = Duration::from_secs(120);

/// As fast as a till can go while keeping `play_visit`'s ordering rules: the scan is
/// read before the receipt starts and the cut is at the printer before the next scan.
fn fast_pacing() -> PlayOptions {
    PlayOptions {
        max_chunk: 256,
        scan_gap: Duration::from_millis(15),
        customer_gap: Duration::ZERO,
        timeout: DEADLINE,
    }
}

fn two_tills_via(site: &Site, proxy: &FaultProxy, seed: u64) -> Vec<Till> {
    vec![
        site.till_via(
            "S001",
            ReceiptStyle::Supermarket,
            Suffix::Cr,
            seed,
            proxy.addr(),
        ),
        site.till_via(
            "S002",
            ReceiptStyle::Boutique,
            Suffix::CrLf,
            seed + 1,
            proxy.addr(),
        ),
    ]
}

/// One till's part of a run: its visits, before which of them to SIGKILL and restart
/// its agent, and the stretch that must be played inside the blackhole.
struct TillScript {
    till: Till,
    agent: Proc,
    visits: Vec<Visit>,
    kill_before: Vec<usize>,
    /// Visits from `.0` up to `.1` are played only while the hub is blackholed: the till
    /// waits at `.0` until the blackhole is on, and the blackhole is lifted only once
    /// every till has reached `.1` (the run's `at(0.50)`). A kill in this stretch hits
    /// an agent whose unacknowledged events must come from its journal.
    blackholed: (usize, usize),
}

/// Plays the script; `played` counts finished visits. Kills happen between receipts,
/// once the journal holds everything printed so far (a receipt counts as recorded once
/// journaled: Principle 2). Returns how many kills hit the agent inside the blackhole
/// with events still unacknowledged.
fn run_script(
    site: &Site,
    mut s: TillScript,
    played: &AtomicUsize,
    blackhole: &AtomicBool,
) -> (Till, Proc, usize) {
    let options = fast_pacing();
    let mut journaled = 0u64;
    let mut kills_in_blackhole = 0;
    for (i, visit) in s.visits.iter().enumerate() {
        if i == s.blackholed.0 {
            let on = wait_until(DEADLINE, || blackhole.load(Ordering::SeqCst).then_some(()));
            assert!(
                on.is_some(),
                "{}: the blackhole never came",
                s.till.setup.store
            );
        }
        if s.kill_before.contains(&i) {
            let recorded = wait_until(DEADLINE, || {
                journal_status(&s.till)
                    .filter(|st| st.last_seq >= journaled)
                    .map(|_| ())
            });
            assert!(
                recorded.is_some(),
                "{}: journal never reached seq {journaled}:\n{}",
                s.till.setup.store,
                read_log(&s.agent.log)
            );
            if (s.blackholed.0..s.blackholed.1).contains(&i) {
                let status = journal_status(&s.till);
                let pending = status.map_or(0, |st| st.last_seq - st.acked_seq);
                if blackhole.load(Ordering::SeqCst) && pending > 0 {
                    kills_in_blackhole += 1;
                }
            }
            s.agent.kill();
            s.agent = site.start_agent(&s.till);
        }
        s.till.play_with(visit, &options);
        journaled += journaled_events(visit);
        played.fetch_add(1, Ordering::SeqCst);
    }
    (s.till, s.agent, kills_in_blackhole)
}

/// Waits until every till has played `fraction` of its visits (or a till thread ended,
/// which the join reports), bounded by `until`.
fn wait_progress(
    played: &[AtomicUsize],
    totals: &[usize],
    fraction: f64,
    until: Instant,
    finished: &dyn Fn() -> bool,
) {
    loop {
        let reached = played
            .iter()
            .zip(totals)
            .all(|(p, t)| p.load(Ordering::SeqCst) as f64 >= fraction * *t as f64);
        if reached || finished() || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each journal's last seq (0 if unreadable at this instant).
fn journal_seqs(journals: &[(PathBuf, String, String)]) -> Vec<u64> {
    journals
        .iter()
        .map(|(dir, store, till)| journal_status_in(dir, store, till).map_or(0, |s| s.last_seq))
        .collect()
}

/// Panics with what the run knows when the hub stopped catching up: the seqs it waited
/// for, the hub's high-water marks, the timeline and every process's log.
fn stuck(site: &Site, what: &str, wanted: &[u64], timeline: &[String]) -> ! {
    let mut msg = format!(
        "{what}: waited for journal seqs {wanted:?}; the hub has {:?}\ntimeline:\n{}\n",
        site.hub_high_water(),
        timeline.join("\n")
    );
    let mut logs: Vec<PathBuf> = std::fs::read_dir(site.path())
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    for log in logs {
        msg.push_str(&format!("--- {}:\n{}\n", log.display(), read_log(&log)));
    }
    panic!("{msg}");
}

/// `Some` once the hub's high-water mark of each journal is at least `seqs`.
fn hub_has(site: &Site, journals: &[(PathBuf, String, String)], seqs: &[u64]) -> Option<()> {
    let hub = site.hub_high_water()?;
    journals
        .iter()
        .zip(seqs)
        .all(|((_, store, till), seq)| {
            hub.get(&(store.clone(), till.clone()))
                .is_some_and(|h| h >= seq)
        })
        .then_some(())
}

/// Waits until the hub has every printed receipt exactly once and every journal is
/// drained (acked = last seq = the hub's high-water mark); returns the last count.
fn wait_for_drain(
    site: &Site,
    tills: &[Till],
    printed: &[ReceiptKey],
    bound: Duration,
) -> TotalQueue {
    let mut last = TotalQueue::default();
    let _ = wait_until(bound, || {
        let at_hub = site.hub_receipts().ok()?;
        last = TotalQueue::count(printed.iter().cloned(), at_hub);
        (last.is_exactly_once() && drained(site, tills).is_ok()).then_some(())
    });
    last
}

fn assert_exactly_once(site: &Site, tills: &[Till], queue: &TotalQueue, logs: &[&Proc]) {
    let drain = drained(site, tills);
    if !queue.is_exactly_once() || drain.is_err() {
        let mut msg = format!("total queue: {queue}\njournals: {drain:?}\n");
        for p in logs {
            msg.push_str(&format!("--- {} log:\n{}\n", p.name, read_log(&p.log)));
        }
        panic!("{msg}");
    }
}

/// 2,000 receipts through 30 % loss, 10 % duplication and reordering both ways; each
/// agent SIGKILLed three times, the hub twice, a blackholed "week" (a stretch of a few
/// hundred receipts journaled with no hub), one address rebinding. Nothing is lost,
/// nothing doubled, nothing invented, and every journal drains.
#[test]
fn two_thousand_receipts_survive_loss_kills_blackhole_and_rebind() {
    let started = Instant::now();
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let mut plan = MorningPlan::new(2_000_555, TORTURE_RECEIPTS);
    plan.misread_percent = 5;
    let morning = Morning::generate(&plan, &stores);
    assert_eq!(morning.visits.len(), TORTURE_RECEIPTS);

    let mut hub = site.start_hub();
    let proxy = FaultProxy::start(
        site.hub.quic,
        FaultPlan::symmetric(2_000_556, DirectionFaults::hostile()),
    )
    .expect("fault proxy");
    let tills = two_tills_via(&site, &proxy, 31);
    let scripts: Vec<TillScript> = tills
        .into_iter()
        .enumerate()
        .map(|(i, till)| {
            let visits = visits_at(&morning, i);
            let n = visits.len();
            let agent = site.start_agent(&till);
            TillScript {
                till,
                agent,
                // The second kill falls inside the blackhole: unacknowledged events die
                // with the agent and must come from the journal.
                kill_before: vec![n / 10, n * 2 / 5, n * 9 / 10],
                blackholed: (n * 3 / 10, n / 2),
                visits,
            }
        })
        .collect();
    let totals: Vec<usize> = scripts.iter().map(|s| s.visits.len()).collect();
    let printed: Vec<ReceiptKey> = scripts
        .iter()
        .flat_map(|s| printed_keys(&s.till, &s.visits))
        .collect();
    let journals: Vec<(PathBuf, String, String)> = scripts
        .iter()
        .map(|s| {
            let t = &s.till;
            (
                t.data_dir.clone(),
                t.setup.store.clone(),
                t.setup.till.clone(),
            )
        })
        .collect();
    let played: Vec<AtomicUsize> = totals.iter().map(|_| AtomicUsize::new(0)).collect();
    let blackhole = AtomicBool::new(false);

    let (tills, agents, kills_in_blackhole, timeline) = std::thread::scope(|scope| {
        let site = &site;
        let blackhole = &blackhole;
        let handles: Vec<_> = scripts
            .into_iter()
            .zip(&played)
            .map(|(s, p)| scope.spawn(move || run_script(site, s, p, blackhole)))
            .collect();
        let finished = || handles.iter().all(|h| h.is_finished());
        let until = started + PRINTING_BOUND;
        let at = |fraction: f64| wait_progress(&played, &totals, fraction, until, &finished);

        let printed_so_far = || {
            played
                .iter()
                .map(|p| p.load(Ordering::SeqCst))
                .sum::<usize>()
        };
        let mut timeline = Vec::new();
        let mut mark = |what: &str| {
            timeline.push(format!(
                "{:>6.1}s {:>4} printed: {what}",
                started.elapsed().as_secs_f64(),
                printed_so_far()
            ))
        };

        at(0.15);
        hub.kill();
        mark("hub killed");
        at(0.22);
        hub = site.start_hub();
        mark("hub restarted");
        // Before the tills' blackholed stretch (at 30 %, where they wait for it).
        at(0.25);
        proxy.set_blackhole(true);
        blackhole.store(true, Ordering::SeqCst);
        mark("blackhole on");
        // The "week": a few hundred receipts, and longer than the agents' idle timeout
        // (8 s) so the connection dies and the agent reconnects as after a real outage.
        let outage_from = Instant::now();
        at(0.50);
        std::thread::sleep(BLACKHOLE_AT_LEAST.saturating_sub(outage_from.elapsed()));
        let journaled_in_outage = journal_seqs(&journals);
        blackhole.store(false, Ordering::SeqCst);
        proxy.set_blackhole(false);
        mark("blackhole lifted");
        // Rebind live connections: first let the agents reconnect and catch up.
        let caught_up = wait_until(DEADLINE, || hub_has(site, &journals, &journaled_in_outage));
        if caught_up.is_none() {
            stuck(
                site,
                "the agents never caught up after the outage",
                &journaled_in_outage,
                &timeline,
            );
        }
        mark("agents caught up after the outage");
        at(0.58);
        let journaled_at_rebind = journal_seqs(&journals);
        assert!(proxy.rebind(DEADLINE), "the proxy rebinds");
        mark(&format!(
            "rebound upstream ports to {:?}",
            proxy.upstream_ports()
        ));
        // The hub keeps taking events from both agents at their new addresses.
        let synced = wait_until(DEADLINE, || hub_has(site, &journals, &journaled_at_rebind));
        if synced.is_none() {
            stuck(
                site,
                "no sync after the rebind",
                &journaled_at_rebind,
                &timeline,
            );
        }
        mark("hub has every event journaled before the rebind");
        at(0.78);
        hub.kill();
        mark("hub killed");
        at(0.85);
        hub = site.start_hub();
        mark("hub restarted");

        let mut tills = Vec::new();
        let mut agents = Vec::new();
        let mut kills_in_blackhole = Vec::new();
        for h in handles {
            let (till, agent, kills) = h.join().expect("till thread");
            tills.push(till);
            agents.push(agent);
            kills_in_blackhole.push(kills);
        }
        (tills, agents, kills_in_blackhole, timeline)
    });
    let printed_in = started.elapsed();

    eprintln!("torture timeline:\n{}", timeline.join("\n"));
    let queue = wait_for_drain(&site, &tills, &printed, DRAIN_BOUND);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    let c = proxy.counters();
    eprintln!(
        "torture: {queue}; printed in {printed_in:?}, drained at {:?}; \
         proxy to hub {:?}; to agents {:?}",
        started.elapsed(),
        c.to_hub,
        c.to_agent
    );
    assert_exactly_once(&site, &tills, &queue, &logs);
    assert!(
        c.to_hub.dropped > c.to_hub.blackholed && c.to_agent.duplicated > 0,
        "faults were applied"
    );
    assert_eq!(
        kills_in_blackhole,
        vec![1; kills_in_blackhole.len()],
        "each till's agent was killed inside the blackhole with events unacknowledged"
    );
}

/// A blackhole while receipts print (the tills never notice), then lifted: everything
/// arrives once and the journals drain.
#[test]
fn receipts_printed_during_a_blackhole_arrive_once_after_it_lifts() {
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(707, 80), &stores);
    let hub = site.start_hub();
    let proxy = FaultProxy::start(site.hub.quic, FaultPlan::new(708)).expect("fault proxy");
    let mut tills = two_tills_via(&site, &proxy, 41);
    let agents: Vec<_> = tills.iter().map(|t| site.start_agent(t)).collect();
    let (first, second): (Vec<_>, Vec<_>) = (0..tills.len())
        .map(|i| {
            let v = visits_at(&morning, i);
            let half = v.len() / 4;
            (v[..half].to_vec(), v[half..].to_vec())
        })
        .unzip();
    let printed: Vec<ReceiptKey> = tills
        .iter()
        .enumerate()
        .flat_map(|(i, t)| printed_keys(t, &visits_at(&morning, i)))
        .collect();

    // Connected first, so the outage hits a live connection.
    for (till, visits) in tills.iter_mut().zip(&first) {
        for v in visits {
            till.play_with(v, &fast_pacing());
        }
    }
    let connected = wait_until(DEADLINE, || drained(&site, &tills).ok());
    assert!(connected.is_some(), "{:?}", drained(&site, &tills));

    proxy.set_blackhole(true);
    std::thread::scope(|scope| {
        for (till, visits) in tills.iter_mut().zip(&second) {
            scope.spawn(move || {
                for v in visits {
                    till.play_with(v, &fast_pacing());
                }
            });
        }
    });
    let before_lift = site.hub_receipts().expect("hub database");
    let pending: u64 = tills
        .iter()
        .filter_map(|t| journal_status(t).map(|s| s.last_seq - s.acked_seq))
        .sum();
    assert!(pending > 0, "the blackhole kept events in the journals");
    assert!(before_lift.len() < printed.len());
    proxy.set_blackhole(false);

    let queue = wait_for_drain(&site, &tills, &printed, DRAIN_BOUND);
    let mut logs = vec![&hub];
    logs.extend(agents.iter());
    assert_exactly_once(&site, &tills, &queue, &logs);
    let c = proxy.counters();
    assert!(
        c.to_hub.blackholed > 0,
        "the blackhole dropped datagrams: {c:?}"
    );
}
