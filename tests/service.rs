//! Running as a systemd service, over real processes: the hub and the agent (`till360 hub
//! run`, `till360 agent run`) told by `NOTIFY_SOCKET` and `WATCHDOG_USEC` that systemd
//! runs them, a unix datagram socket in the test's folder standing in for systemd; and
//! SIGTERM, how systemd stops them, while tills are printing.

use crate::harness;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{journal_status, read_log, visits_at, Proc, Site, DEADLINE};
use till360::http_client::http_get;
use till360::rig::wait_until;
use till360::sim::{Morning, MorningPlan, ReceiptStyle, Scan, StoreSetup, Suffix, Visit};
use till360_hub::store::Store;

/// What systemd's `WatchdogSec=1s` hands a service: it must feed every 0.5 s.
const WATCHDOG_USEC: &str = "1000000";

/// How long a SIGTERMed hub or agent may take to exit (systemd's own bound is
/// `TimeoutStopSec=30s` in the units).
const STOP_BOUND: Duration = Duration::from_secs(10);

/// systemd's end of the notify socket.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(dir: &Path) -> (NotifySocket, String) {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        (NotifySocket { socket }, path.display().to_string())
    }

    /// The next datagram's lines, or `None` if none comes before `deadline`.
    fn next_before(&self, deadline: Instant, proc: &mut Proc) -> Option<Vec<String>> {
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            proc.assert_running();
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    return Some(text.lines().map(str::to_string).collect());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
        None
    }

    /// Waits for a datagram holding `line`; returns every line seen on the way.
    fn wait_for(&self, line: &str, proc: &mut Proc) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let Some(lines) = self.next_before(deadline, proc) else {
                panic!(
                    "{} never sent {line}; got {seen:?}; log:\n{}",
                    proc.name,
                    read_log(&proc.log)
                );
            };
            let found = lines.iter().any(|l| l == line);
            seen.extend(lines);
            if found {
                return seen;
            }
        }
    }

    /// Asserts that WATCHDOG=1 keeps coming: `feeds` of them, none more than `gap` after
    /// the one before.
    fn assert_fed(&self, feeds: usize, gap: Duration, proc: &mut Proc) {
        let mut last = Instant::now();
        for fed in 0..feeds {
            let lines = self
                .next_before(last + gap, proc)
                .unwrap_or_else(|| panic!("{}: watchdog not fed ({fed} feeds so far)", proc.name));
            assert!(
                lines.iter().any(|l| l == "WATCHDOG=1"),
                "{}: expected WATCHDOG=1, got {lines:?}",
                proc.name
            );
            last = Instant::now();
        }
    }
}

fn notify_env(socket: &str) -> [(&str, &str); 2] {
    [("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", WATCHDOG_USEC)]
}

/// The hub says READY=1 only once it serves (its HTTP health answers at that moment:
/// the store is open and both listeners are bound), then feeds the watchdog at half of
/// WATCHDOG_USEC, and on SIGTERM says STOPPING=1 and exits 0 within the bound.
#[test]
fn hub_tells_systemd_it_is_ready_feeds_the_watchdog_and_stops() {
    let site = Site::new();
    let (notify, socket) = NotifySocket::bind(site.path());
    let config = site.hub.config.display().to_string();
    let mut hub = site.spawn_with_env(
        "hub",
        &["hub", "run", "--config", &config],
        &notify_env(&socket),
    );
    let before = notify.wait_for("READY=1", &mut hub);
    assert!(
        !before.iter().any(|l| l == "WATCHDOG=1"),
        "no watchdog feed before READY=1: {before:?}"
    );
    let health = http_get(site.hub.http, "/api/v1/health", Duration::from_secs(5))
        .expect("the HTTP API answers when the hub says it is ready");
    assert_eq!(health.status, 200);

    // Fed every 0.5 s; 2 s between two feeds leaves room for a loaded machine and is
    // still well short of what a hung loop would show.
    notify.assert_fed(5, Duration::from_secs(2), &mut hub);

    let status = hub.terminate(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "the hub did not exit within {STOP_BOUND:?} of SIGTERM:\n{}",
            read_log(&hub.log)
        )
    });
    assert!(status.success(), "hub exit: {status}");
    let mut stopping = false;
    while let Some(lines) = notify.next_before(Instant::now(), &mut hub) {
        stopping |= lines.iter().any(|l| l == "STOPPING=1");
    }
    // Drain what is queued (the process is gone: recv no longer blocks on it).
    let mut buf = [0u8; 4096];
    while let Ok(n) = notify.socket.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "the hub said STOPPING=1 before it exited");
}

/// The agent says READY=1 only once its scanner, POS and printer ports are open and its
/// journal is open (no hub runs: printing never waits for one), then feeds the watchdog.
#[test]
fn agent_tells_systemd_it_is_ready_once_its_ports_are_open_and_feeds_the_watchdog() {
    let site = Site::new();
    let till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 5);
    let (notify, socket) = NotifySocket::bind(site.path());
    let config = till.config.display().to_string();
    let mut agent = site.spawn_with_env(
        "agent-S001",
        &["agent", "run", "--config", &config],
        &notify_env(&socket),
    );
    let before = notify.wait_for("READY=1", &mut agent);
    assert!(
        !before.iter().any(|l| l.starts_with("STATUS=not up yet")),
        "ready with everything up: {before:?}"
    );
    // The lines each port's thread logs when it has opened its port, before the agent
    // counts it as open.
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    for opened in ["scanner: reading", "proxy: POS", "proxy: printer"] {
        assert!(
            log.contains(opened),
            "READY=1 came before `{opened}`:\n{log}"
        );
    }
    assert!(
        journal_status(&till).is_some(),
        "the journal exists when the agent says it is ready"
    );
    notify.assert_fed(5, Duration::from_secs(2), &mut agent);
    let status = agent
        .terminate(STOP_BOUND)
        .expect("the agent exits on SIGTERM");
    assert!(status.success(), "agent exit: {status}");
}

/// The hub's receipts table and the seqs it has committed for the till, read from its
/// store while no hub runs.
fn hub_high_water(site: &Site, store: &str, till: &str) -> u64 {
    let db = site.hub_database().expect("the hub's database");
    let sql = till360_hub::store::SqlStore::open(&db).expect("the hub's store");
    sql.agents()
        .expect("agents")
        .into_iter()
        .find(|a| a.store == store && a.till == till)
        .map_or(0, |a| a.last_seq)
}

/// SIGTERM to the hub while a till syncs: it exits 0 within the bound, and every event
/// the till saw acknowledged is committed in the hub's store (it acknowledges only
/// after its commit); restarted, the hub gets the rest and holds every receipt printed.
#[test]
fn hub_stops_on_sigterm_in_time_with_every_acknowledged_batch_committed() {
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(1313, 60), &stores);
    let visits = visits_at(&morning, 0);
    let (first, rest) = visits.split_at(visits.len() / 3);
    let mut till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 13);
    let mut hub = site.start_hub();
    let _agent = site.start_agent(&till);
    for visit in first {
        till.play(visit);
    }
    let synced = wait_until(DEADLINE, || {
        journal_status(&till).filter(|st| st.acked_seq > 0 && st.acked_seq == st.last_seq)
    });
    assert!(synced.is_some(), "the hub acknowledges the first receipts");

    // The rest is printed while the hub stops: batches are in flight when SIGTERM comes.
    let rest = rest.to_vec();
    let printing = std::thread::spawn(move || {
        for visit in &rest {
            till.play(visit);
        }
        till
    });
    let wanted = wait_until(DEADLINE, || {
        journal_status_of_printing(&site)
            .filter(|seq| *seq > synced.as_ref().map_or(0, |s| s.last_seq))
    });
    assert!(
        wanted.is_some(),
        "the till journals more while the hub runs"
    );
    let status = hub.terminate(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "the hub did not exit within {STOP_BOUND:?} of SIGTERM:\n{}",
            read_log(&hub.log)
        )
    });
    assert!(
        status.success(),
        "hub exit: {status}\n{}",
        read_log(&hub.log)
    );
    let till = printing
        .join()
        .expect("the till prints while the hub is down");

    // The hub is gone: the till's acknowledged seq can no longer move.
    let acked = journal_status(&till).expect("journal").acked_seq;
    let committed = hub_high_water(&site, "S001", "T01");
    assert!(
        committed >= acked,
        "the till saw seq {acked} acknowledged but the hub committed only up to {committed}"
    );

    let _hub = site.start_hub();
    let drained = wait_until(DEADLINE, || {
        harness::drained(&site, std::slice::from_ref(&till)).ok()
    });
    assert!(
        drained.is_some(),
        "after the restart the hub has every event: {:?}",
        harness::drained(&site, std::slice::from_ref(&till))
    );
    let mut printed = harness::printed_keys(&till, &visits);
    let mut receipts = site.hub_receipts().expect("the hub's receipts");
    printed.sort();
    receipts.sort();
    assert_eq!(receipts, printed, "each printed receipt is on the hub once");
}

/// The last seq the S001 till's journal holds (the till itself is on another thread).
fn journal_status_of_printing(site: &Site) -> Option<u64> {
    harness::journal_status_in(&site.path().join("agent-S001-T01"), "S001", "T01")
        .map(|st| st.last_seq)
}

/// SIGTERM to the agent right after receipts were printed: the printer has every
/// receipt's bytes up to its cut (the proxy let each held cut go), the agent exits 0
/// within the bound, and its journal holds every receipt when it is read after the exit
/// (the till core journaled what it had before stopping).
#[test]
fn agent_stops_on_sigterm_with_every_printed_receipt_journaled() {
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(1314, 20), &stores);
    let visits = visits_at(&morning, 0);
    // No hub: every receipt stays in the journal (nothing is acknowledged and compacted).
    let mut till = site.till("S001", ReceiptStyle::Supermarket, Suffix::Cr, 14);
    let mut agent = site.start_agent(&till);
    for visit in &visits {
        // Returns once the printer has the receipt's cut.
        till.play(visit);
    }
    let status = agent.terminate(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "the agent did not exit within {STOP_BOUND:?} of SIGTERM:\n{}",
            read_log(&agent.log)
        )
    });
    assert!(
        status.success(),
        "agent exit: {status}\n{}",
        read_log(&agent.log)
    );
    let journaled: u64 = visits.iter().map(harness::journaled_events).sum();
    let st = journal_status(&till).expect("the journal after the exit");
    assert_eq!(
        st.last_seq,
        journaled,
        "every scan and receipt printed before SIGTERM is journaled:\n{}",
        read_log(&agent.log)
    );
}

/// SIGTERM to the agent while a receipt's cut is held: the till core is stuck (the test
/// holds the journal's write lock, so journaling the card scanned before the receipt
/// waits) and cannot decide the coupon, so the proxy holds the cut for its budget (1 s
/// here). The agent lets the held cut go to the printer at once, without the core, exits
/// 0 once the lock is gone, and its journal has the card and the receipt.
///
/// The hold lasts 1 s at most by design (a printer cannot wait longer); a test thread
/// slowed past it by a loaded machine finds the cut already released and tries again
/// with a fresh till, so the result does not depend on the machine's speed.
#[test]
fn agent_on_sigterm_prints_a_held_cut_and_journals_the_receipt() {
    const ATTEMPTS: usize = 5;
    let site = Site::new();
    let stores = StoreSetup::demo_stores();
    let morning = Morning::generate(&MorningPlan::new(1315, 40), &stores);
    let visit = visits_at(&morning, 0)
        .into_iter()
        .find(|v| v.scans.iter().any(|s| matches!(s, Scan::Card(_))))
        .expect("a carded visit");
    for attempt in 1..=ATTEMPTS {
        if sigterm_while_a_cut_is_held(&site, &visit, &format!("T{attempt:02}")) {
            return;
        }
        eprintln!("attempt {attempt}: the cut's budget ran out before SIGTERM could be sent");
    }
    panic!("in {ATTEMPTS} attempts the cut was never still held when the test looked");
}

/// One attempt of the test above on a fresh till `till_name`; `false` when the cut had
/// been released by its budget before the test could send SIGTERM.
fn sigterm_while_a_cut_is_held(site: &Site, visit: &Visit, till_name: &str) -> bool {
    let Some(Scan::Card(card)) = visit.scans.iter().find(|s| matches!(s, Scan::Card(_))) else {
        unreachable!("a carded visit");
    };
    // Coupons on (the default) with the longest budget: the cut is held up to 1 s.
    let till = site.till_named(
        "S001",
        till_name,
        ReceiptStyle::Supermarket,
        Suffix::Cr,
        15,
        Some((1000, 150)),
    );
    let mut agent = site.start_agent(&till);
    assert!(journal_status(&till).is_some(), "the journal is open");

    // The till core's next journal write waits for this lock (SQLite's busy timeout).
    let lock = rusqlite::Connection::open(till.data_dir.join("journal.db")).expect("journal");
    lock.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("the journal's write lock");

    let deadline = Instant::now() + DEADLINE;
    till.devices.scanner().scan(card).expect("scan");
    assert!(
        till.devices
            .scanner
            .wait_read_by_agent(deadline)
            .expect("scanner"),
        "the agent reads the scan"
    );
    let receipt = visit.receipt.bytes();
    let cut_at = receipt
        .windows(2)
        .rposition(|w| w == [0x1d, 0x56])
        .expect("the receipt ends with a cut (GS V)");
    let printed_before = till.devices.printer.byte_count();
    till.devices
        .pos
        .write_all_by(&receipt, deadline)
        .expect("the POS prints");
    // Everything up to the cut reaches the printer at once; the cut waits for a decision
    // the stuck core cannot make.
    let held = wait_until(DEADLINE, || {
        (till.devices.printer.byte_count() >= printed_before + cut_at).then_some(())
    });
    assert!(held.is_some(), "the printer gets the receipt up to its cut");
    if till.devices.printer.cuts() != 0 {
        // Too slow to catch the hold: let this till go.
        lock.execute_batch("COMMIT").expect("release the lock");
        agent.kill();
        return false;
    }
    let sent = Instant::now();
    agent.send_sigterm();
    assert!(
        till.devices.printer.wait_for_cuts(1, DEADLINE),
        "the held cut is printed after SIGTERM:\n{}",
        read_log(&agent.log)
    );
    eprintln!("cut printed {:?} after SIGTERM", sent.elapsed());
    let printed = till.devices.printer.bytes();
    assert_eq!(
        &printed[printed_before..],
        &receipt[..],
        "the printer has the receipt's bytes, cut included, unchanged"
    );

    // The core can write again: it journals what it has and the agent exits.
    lock.execute_batch("COMMIT").expect("release the lock");
    drop(lock);
    let status = agent.wait_exit(STOP_BOUND).unwrap_or_else(|| {
        panic!(
            "the agent did not exit within {STOP_BOUND:?} of SIGTERM:\n{}",
            read_log(&agent.log)
        )
    });
    assert!(status.success(), "agent exit: {status}");
    let st = journal_status(&till).expect("the journal after the exit");
    assert_eq!(
        st.last_seq,
        2,
        "the card and the receipt are journaled:\n{}",
        read_log(&agent.log)
    );
    true
}
