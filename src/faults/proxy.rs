//! The IO edge of the fault proxy: UDP sockets on 127.0.0.1 and one thread that moves
//! datagrams through a [`FaultPlan`]. Agents send to [`FaultProxy::addr`]; each agent
//! source address gets its own upstream socket towards the hub, so the hub sees one
//! peer per agent, and [`FaultProxy::rebind`] can move all of them to new ports.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::plan::{Direction, DirectionFaults, FaultCounters, FaultPlan, Release};

/// The longest the IO thread sleeps without looking at the control switches.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// Largest UDP payload.
const DATAGRAM_MAX: usize = 65_536;

struct Shared {
    plan: Mutex<FaultPlan>,
    stop: AtomicBool,
    rebinds_requested: AtomicU64,
    rebinds_done: AtomicU64,
    upstream_ports: Mutex<Vec<u16>>,
}

impl Shared {
    fn plan(&self) -> MutexGuard<'_, FaultPlan> {
        // The plan holds no invariant a panicking holder could break halfway.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fault proxy; stops (and joins its thread) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    hub: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `hub` under `plan`.
    pub fn start(hub: SocketAddr, plan: FaultPlan) -> io::Result<FaultProxy> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        front.set_nonblocking(true)?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            plan: Mutex::new(plan),
            stop: AtomicBool::new(false),
            rebinds_requested: AtomicU64::new(0),
            rebinds_done: AtomicU64::new(0),
            upstream_ports: Mutex::new(Vec::new()),
        });
        let io = ProxyIo {
            front,
            hub,
            flows: Vec::new(),
            by_agent: HashMap::new(),
            shared: Arc::clone(&shared),
            rebinds_done: 0,
        };
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || io.run())?;
        Ok(FaultProxy {
            addr,
            hub,
            shared,
            thread: Some(thread),
        })
    }

    /// Where agents send (their `[hub] address`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn hub(&self) -> SocketAddr {
        self.hub
    }

    pub fn set_blackhole(&self, on: bool) {
        self.shared.plan().set_blackhole(on);
    }

    pub fn set_loss(&self, direction: Direction, percent: u64) {
        self.shared.plan().set_loss(direction, percent);
    }

    pub fn set_faults(&self, direction: Direction, faults: DirectionFaults) {
        self.shared.plan().set_faults(direction, faults);
    }

    pub fn counters(&self) -> FaultCounters {
        self.shared.plan().counters()
    }

    /// The local ports of the upstream sockets, one per agent seen so far.
    pub fn upstream_ports(&self) -> Vec<u16> {
        self.shared
            .upstream_ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces every upstream socket with one on a new port, so the hub sees each
    /// agent at a new address (QUIC connection migration). Returns once the IO thread
    /// has done it, or `false` if it did not within `timeout`.
    pub fn rebind(&self, timeout: Duration) -> bool {
        let wanted = self.shared.rebinds_requested.fetch_add(1, Ordering::SeqCst) + 1;
        let deadline = Instant::now() + timeout;
        while self.shared.rebinds_done.load(Ordering::SeqCst) < wanted {
            if Instant::now() >= deadline || self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Flow {
    agent: SocketAddr,
    upstream: UdpSocket,
}

struct ProxyIo {
    front: UdpSocket,
    hub: SocketAddr,
    flows: Vec<Flow>,
    by_agent: HashMap<SocketAddr, usize>,
    shared: Arc<Shared>,
    rebinds_done: u64,
}

impl ProxyIo {
    fn run(mut self) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        while !self.shared.stop.load(Ordering::SeqCst) {
            let requested = self.shared.rebinds_requested.load(Ordering::SeqCst);
            if requested > self.rebinds_done {
                self.rebind_all();
                self.rebinds_done = requested;
                self.shared.rebinds_done.store(requested, Ordering::SeqCst);
            }
            self.wait_readable();
            let now = Instant::now();
            self.read_front(&mut buf, now);
            self.read_upstreams(&mut buf, now);
            self.send_due(Instant::now());
        }
    }

    /// Sleeps until a socket is readable, the next datagram is due, or `MAX_WAIT`.
    fn wait_readable(&self) {
        let now = Instant::now();
        let wait = self
            .shared
            .plan()
            .next_release_at()
            .map_or(MAX_WAIT, |at| at.saturating_duration_since(now))
            .min(MAX_WAIT);
        // Rounded up: a zero timeout for a release a few µs away would spin.
        let ms = wait.as_micros().div_ceil(1000);
        let timeout = PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX));
        let mut fds = Vec::with_capacity(self.flows.len() + 1);
        fds.push(PollFd::new(self.front.as_fd(), PollFlags::POLLIN));
        for f in &self.flows {
            fds.push(PollFd::new(f.upstream.as_fd(), PollFlags::POLLIN));
        }
        // An error (EINTR) only means we look at the sockets sooner.
        let _ = nix::poll::poll(&mut fds, timeout);
    }

    fn read_front(&mut self, buf: &mut [u8], now: Instant) {
        loop {
            match self.front.recv_from(buf) {
                Ok((n, from)) => {
                    let Some(flow) = self.flow_for(from) else {
                        continue;
                    };
                    self.shared.plan().handle_datagram(
                        Direction::ToHub,
                        flow,
                        buf[..n].to_vec(),
                        now,
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!("fault proxy: reading from agents: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn read_upstreams(&mut self, buf: &mut [u8], now: Instant) {
        for (flow, f) in self.flows.iter().enumerate() {
            loop {
                match f.upstream.recv_from(buf) {
                    // Only the hub's answers go back; anything else on this port is noise.
                    Ok((n, from)) if from == self.hub => self.shared.plan().handle_datagram(
                        Direction::ToAgent,
                        flow as u64,
                        buf[..n].to_vec(),
                        now,
                    ),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            tracing::debug!("fault proxy: reading from the hub: {e}");
                        }
                        break;
                    }
                }
            }
        }
    }

    fn send_due(&mut self, now: Instant) {
        loop {
            let Some(release) = self.shared.plan().poll_release(now) else {
                return;
            };
            self.send(&release);
        }
    }

    fn send(&self, release: &Release) {
        let Some(flow) = usize::try_from(release.flow)
            .ok()
            .and_then(|i| self.flows.get(i))
        else {
            return;
        };
        // A lost send is just more loss: QUIC retransmits.
        let sent = match release.direction {
            Direction::ToHub => flow.upstream.send_to(&release.payload, self.hub),
            Direction::ToAgent => self.front.send_to(&release.payload, flow.agent),
        };
        if let Err(e) = sent {
            tracing::debug!("fault proxy: sending {:?}: {e}", release.direction);
        }
    }

    /// The flow of an agent address, created (with its upstream socket) on first sight.
    fn flow_for(&mut self, agent: SocketAddr) -> Option<u64> {
        if let Some(i) = self.by_agent.get(&agent) {
            return Some(*i as u64);
        }
        let upstream = match new_upstream() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("fault proxy: no upstream socket for {agent}: {e}");
                return None;
            }
        };
        let i = self.flows.len();
        self.flows.push(Flow { agent, upstream });
        self.by_agent.insert(agent, i);
        self.publish_ports();
        Some(i as u64)
    }

    fn rebind_all(&mut self) {
        for f in &mut self.flows {
            match new_upstream() {
                Ok(s) => f.upstream = s,
                Err(e) => tracing::warn!("fault proxy: rebinding for {}: {e}", f.agent),
            }
        }
        self.publish_ports();
    }

    fn publish_ports(&self) {
        let ports = self
            .flows
            .iter()
            .filter_map(|f| f.upstream.local_addr().ok().map(|a| a.port()))
            .collect();
        *self
            .shared
            .upstream_ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ports;
    }
}

fn new_upstream() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_nonblocking(true)?;
    Ok(s)
}
