use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

const N: u64 = 10_000;

fn payload(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn index_of(p: &[u8]) -> u64 {
    u64::from_be_bytes(p.try_into().expect("8-byte test payload"))
}

/// Feeds `N` datagrams one way, 1 ms apart, and drains everything.
fn run(plan: &mut FaultPlan, direction: Direction) -> Vec<Release> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..N {
        let now = t0 + Duration::from_millis(i);
        plan.handle_datagram(direction, 7, payload(i), now);
        while let Some(r) = plan.poll_release(now) {
            out.push(r);
        }
    }
    let end = t0 + Duration::from_secs(3600);
    while let Some(r) = plan.poll_release(end) {
        out.push(r);
    }
    out
}

fn within(actual: u64, percent: u64, tolerance: u64) -> bool {
    let expected = N * percent / 100;
    actual.abs_diff(expected) <= N * tolerance / 100
}

#[test]
fn loss_and_duplication_rates_hold_over_ten_thousand_datagrams() {
    let faults = DirectionFaults {
        loss_percent: 30,
        duplicate_percent: 10,
        ..DirectionFaults::default()
    };
    let mut plan = FaultPlan::symmetric(42, faults);
    let out = run(&mut plan, Direction::ToHub);
    let c = plan.counters().to_hub;
    assert_eq!(c.received, N);
    assert!(within(c.dropped, 30, 2), "dropped {}", c.dropped);
    assert_eq!(c.blackholed, 0);
    // Duplication applies to the datagrams that survived the loss.
    let survivors = N - c.dropped;
    let dup_expected = survivors / 10;
    assert!(
        c.duplicated.abs_diff(dup_expected) <= survivors / 50,
        "duplicated {} of {survivors}",
        c.duplicated
    );
    assert_eq!(out.len() as u64, survivors + c.duplicated);
    assert_eq!(c.released, out.len() as u64);
    assert_eq!(plan.counters().to_agent, DirectionCounters::default());
}

#[test]
fn order_is_preserved_with_no_faults() {
    let mut plan = FaultPlan::new(1);
    let out = run(&mut plan, Direction::ToAgent);
    let got: Vec<u64> = out.iter().map(|r| index_of(&r.payload)).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(out
        .iter()
        .all(|r| r.direction == Direction::ToAgent && r.flow == 7));
}

#[test]
fn order_is_preserved_with_a_fixed_delay() {
    let mut plan = FaultPlan::symmetric(
        1,
        DirectionFaults {
            delay: Duration::from_millis(25),
            ..DirectionFaults::default()
        },
    );
    let t0 = Instant::now();
    plan.handle_datagram(Direction::ToHub, 0, payload(0), t0);
    plan.handle_datagram(Direction::ToHub, 0, payload(1), t0);
    assert_eq!(plan.poll_release(t0 + Duration::from_millis(24)), None);
    assert_eq!(plan.next_release_at(), Some(t0 + Duration::from_millis(25)));
    let late = t0 + Duration::from_millis(25);
    let a = plan.poll_release(late).expect("first due");
    let b = plan.poll_release(late).expect("second due");
    assert_eq!((index_of(&a.payload), index_of(&b.payload)), (0, 1));
}

#[test]
fn reordering_lets_later_datagrams_overtake_held_ones() {
    let mut plan = FaultPlan::symmetric(
        9,
        DirectionFaults {
            reorder_percent: 20,
            reorder_window: Duration::from_millis(10),
            ..DirectionFaults::default()
        },
    );
    let out = run(&mut plan, Direction::ToHub);
    let got: Vec<u64> = out.iter().map(|r| index_of(&r.payload)).collect();
    let overtaken = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(overtaken > 0, "nothing was reordered");
    assert!(within(plan.counters().to_hub.held_back, 20, 2));
    // Reordering loses nothing and adds nothing.
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>());
}

#[test]
fn nothing_passes_in_a_blackhole_and_queued_datagrams_are_dropped() {
    let mut plan = FaultPlan::symmetric(
        3,
        DirectionFaults {
            delay: Duration::from_millis(5),
            ..DirectionFaults::default()
        },
    );
    let t0 = Instant::now();
    plan.handle_datagram(Direction::ToHub, 0, payload(0), t0);
    plan.set_blackhole(true);
    for i in 1..100 {
        plan.handle_datagram(Direction::ToHub, 0, payload(i), t0);
        plan.handle_datagram(Direction::ToAgent, 0, payload(i), t0);
    }
    assert_eq!(plan.poll_release(t0 + Duration::from_secs(60)), None);
    let c = plan.counters();
    assert_eq!((c.to_hub.dropped, c.to_agent.dropped), (100, 99));
    assert_eq!((c.to_hub.blackholed, c.to_agent.blackholed), (100, 99));
    plan.set_blackhole(false);
    plan.handle_datagram(Direction::ToHub, 0, payload(500), t0);
    let r = plan
        .poll_release(t0 + Duration::from_millis(5))
        .expect("passes once lifted");
    assert_eq!(index_of(&r.payload), 500);
}

#[test]
fn duplicates_are_exact_copies() {
    let mut plan = FaultPlan::symmetric(
        5,
        DirectionFaults {
            duplicate_percent: 100,
            jitter: Duration::from_millis(3),
            ..DirectionFaults::default()
        },
    );
    let t0 = Instant::now();
    let datagram: Vec<u8> = (0..=255u8).collect();
    plan.handle_datagram(Direction::ToAgent, 3, datagram.clone(), t0);
    let later = t0 + Duration::from_secs(1);
    let a = plan.poll_release(later).expect("original");
    let b = plan.poll_release(later).expect("copy");
    assert_eq!(plan.poll_release(later), None);
    assert_eq!(a, b);
    assert_eq!(a.payload, datagram);
    assert_eq!(plan.counters().to_agent.duplicated, 1);
}

#[test]
fn the_same_seed_makes_the_same_decisions() {
    let faults = DirectionFaults::hostile();
    let mut a = FaultPlan::symmetric(77, faults.clone());
    let mut b = FaultPlan::symmetric(77, faults.clone());
    let mut c = FaultPlan::symmetric(78, faults);
    let order = |out: Vec<Release>| out.iter().map(|r| index_of(&r.payload)).collect::<Vec<_>>();
    let (ra, rb, rc) = (
        order(run(&mut a, Direction::ToHub)),
        order(run(&mut b, Direction::ToHub)),
        order(run(&mut c, Direction::ToHub)),
    );
    assert_eq!(ra, rb);
    assert_ne!(ra, rc);
}

#[test]
fn total_queue_counts_lost_duplicated_and_unexpected() {
    let k = |no: &str| ReceiptKey::new("S001", "T01", no);
    let printed = vec![k("1"), k("2"), k("3"), k("4")];
    let at_hub = vec![k("1"), k("2"), k("2"), k("4"), k("9")];
    let q = TotalQueue::count(printed.clone(), at_hub);
    assert_eq!(q.lost, vec![k("3")]);
    assert_eq!(q.duplicated, vec![(k("2"), 2)]);
    assert_eq!(q.unexpected, vec![k("9")]);
    assert_eq!((q.printed, q.at_hub), (4, 5));
    assert!(!q.is_exactly_once());
    let exact = TotalQueue::count(printed.clone(), printed);
    assert!(exact.is_exactly_once(), "{exact}");
    // The same number at another till is another receipt.
    let other_till = TotalQueue::count(vec![k("1")], vec![ReceiptKey::new("S001", "T02", "1")]);
    assert_eq!(other_till.lost.len(), 1);
    assert_eq!(other_till.unexpected.len(), 1);
}

/// A deadlock guard for reads that must succeed, not a timing assertion: a datagram that
/// should arrive may take long on a loaded machine. Nothing asserts that a datagram did
/// *not* arrive within a window (that only says "not yet"); those checks send a marker
/// and expect it to be the next datagram instead.
const GIVE_UP: Duration = Duration::from_secs(20);

/// A stand-in hub socket (the tests answer by hand).
fn echo_hub() -> (UdpSocket, SocketAddr) {
    let hub = UdpSocket::bind("127.0.0.1:0").expect("bind hub");
    hub.set_read_timeout(Some(GIVE_UP)).expect("timeout");
    let addr = hub.local_addr().expect("addr");
    (hub, addr)
}

fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

fn agent_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind agent");
    s.set_read_timeout(Some(GIVE_UP)).expect("timeout");
    s
}

#[test]
fn proxy_forwards_both_ways_per_agent_and_rebinds() {
    let (hub, hub_addr) = echo_hub();
    let proxy = FaultProxy::start(hub_addr, FaultPlan::new(1)).expect("proxy");
    let agents = [agent_socket(), agent_socket()];
    let mut seen_by_hub = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        let msg = vec![i as u8, 1, 2, 3];
        agent.send_to(&msg, proxy.addr()).expect("send");
        let (got, from) = recv(&hub).expect("the hub gets the datagram");
        assert_eq!(got, msg);
        seen_by_hub.push(from);
        hub.send_to(&[9, i as u8], from).expect("answer");
        let (back, via) = recv(agent).expect("the agent gets the answer");
        assert_eq!(back, vec![9, i as u8]);
        assert_eq!(via, proxy.addr());
    }
    assert_ne!(seen_by_hub[0], seen_by_hub[1], "one upstream per agent");
    let ports = proxy.upstream_ports();
    assert_eq!(ports.len(), 2);

    assert!(proxy.rebind(Duration::from_secs(5)), "rebind done");
    let moved = proxy.upstream_ports();
    assert_eq!(moved.len(), 2);
    assert!(
        moved.iter().all(|p| !ports.contains(p)),
        "{ports:?} → {moved:?}"
    );
    agents[0].send_to(b"after", proxy.addr()).expect("send");
    let (got, from) = recv(&hub).expect("forwarded after rebind");
    assert_eq!(got, b"after");
    assert_eq!(from.port(), moved[0]);
    hub.send_to(b"reply", from).expect("answer");
    assert_eq!(recv(&agents[0]).map(|r| r.0), Some(b"reply".to_vec()));

    let c = proxy.counters();
    assert_eq!((c.to_hub.received, c.to_hub.released), (3, 3));
    assert_eq!((c.to_agent.received, c.to_agent.released), (3, 3));
}

#[test]
fn proxy_blackhole_drops_until_lifted() {
    let (hub, hub_addr) = echo_hub();
    let proxy = FaultProxy::start(hub_addr, FaultPlan::new(2)).expect("proxy");
    let agent = agent_socket();
    proxy.set_blackhole(true);
    for _ in 0..5 {
        agent.send_to(b"lost", proxy.addr()).expect("send");
    }
    // Lift only once the proxy has read all five, or one could pass after.
    wait_for_received(&proxy, 5);
    proxy.set_blackhole(false);
    agent.send_to(b"kept", proxy.addr()).expect("send");
    // The proxy forwards in order: had a "lost" passed, it would arrive first.
    assert_eq!(
        recv(&hub).map(|r| r.0),
        Some(b"kept".to_vec()),
        "nothing passes a blackhole"
    );
    let c = proxy.counters().to_hub;
    assert_eq!((c.received, c.dropped, c.released), (6, 5, 1));
}

#[test]
fn proxy_with_full_loss_passes_nothing_and_counts_it() {
    let (hub, hub_addr) = echo_hub();
    let proxy = FaultProxy::start(hub_addr, FaultPlan::new(3)).expect("proxy");
    proxy.set_loss(Direction::ToHub, 100);
    let agent = agent_socket();
    for _ in 0..20 {
        agent.send_to(b"x", proxy.addr()).expect("send");
    }
    wait_for_received(&proxy, 20);
    assert_eq!(proxy.counters().to_hub.dropped, 20);
    proxy.set_loss(Direction::ToHub, 0);
    agent.send_to(b"marker", proxy.addr()).expect("send");
    assert_eq!(
        recv(&hub).map(|r| r.0),
        Some(b"marker".to_vec()),
        "none of the lost datagrams reached the hub"
    );
}

/// Waits until the proxy has read `n` datagrams towards the hub (they may still be in
/// the kernel's buffer right after sending).
fn wait_for_received(proxy: &FaultProxy, n: u64) {
    let deadline = Instant::now() + GIVE_UP;
    while proxy.counters().to_hub.received < n {
        assert!(
            Instant::now() < deadline,
            "the proxy read {} of {n} datagrams",
            proxy.counters().to_hub.received
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
