//! The POS side: reads the POS, runs the gate, fills the outbox, feeds the tap, and
//! answers status requests for an absent printer. Reopens the POS port on its own.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ports::{log_notice, write_fully, Port, PortSpec, Reconnect};

use super::realtime::{offline_status, RealTimeRequest, StatusRequests};
use super::{Link, Shared, TapEvent, CHUNK, HELD_LIMIT};

/// Longest sleep while the POS is away, so decisions, stops and reopens are timely.
const IDLE_SLICE: Duration = Duration::from_millis(100);
/// How long an off-line answer may take to reach the POS.
const ANSWER_BUDGET: Duration = Duration::from_millis(200);

pub(super) fn run<T: From<TapEvent>>(spec: PortSpec, link: &mut Link<T>, shared: &Shared) {
    let mut side = PosSide {
        spec,
        pos: None,
        reconnect: Reconnect::new(),
        requests: StatusRequests::default(),
        refused: 0,
    };
    let mut buf = vec![0u8; CHUNK];
    while shared.running() {
        if side.pos.is_none() {
            side.try_open(shared);
        }
        if let Some(out) = link.gating.as_mut().map(|gating| gating.take_notices()) {
            if out.notices > 0 {
                tracing::info!("proxy: {} notice(s) for the cashier printed", out.notices);
            }
            side.deliver(&out.forward, shared);
        }
        if let Some(gating) = link.gating.as_mut().filter(|g| g.gate.is_holding_cut()) {
            let out = gating.wait_for_decision();
            side.deliver(&out.forward, shared);
            link.report_released(&out);
            continue;
        }
        let Some(pos) = side.pos.as_mut() else {
            std::thread::sleep(side.reconnect.wait(Instant::now()).min(IDLE_SLICE));
            continue;
        };
        let n = match pos.read_chunk(&mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                let name = pos.name().to_string();
                side.pos = None;
                *shared.pos_writer() = None;
                crate::metrics::record_device_lost("pos");
                if let Some(notice) = side.reconnect.lost(Instant::now()) {
                    log_notice("proxy: POS", &name, &notice, &e);
                }
                continue;
            }
        };
        let chunk = &buf[..n];
        crate::metrics::record_proxied(n);
        // A printer answers these the moment they arrive; an absent one through us.
        let requests = side.requests.feed(chunk);
        if !requests.is_empty() && shared.printer_absent.load(Ordering::SeqCst) {
            answer_offline(&requests, shared);
        }
        let out = link.gating.as_mut().map(|gating| gating.feed(chunk));
        side.deliver(out.as_ref().map_or(chunk, |out| &out.forward), shared);
        // Tapped after the hand-over: the till core sees a cut only once it is held (so
        // its decision has somewhere to go) and the bytes before it are on their way.
        link.send(TapEvent::Bytes(chunk.to_vec()));
        if let Some(out) = out {
            link.report_released(&out);
        }
    }
    // What the gate still holds goes out unchanged (decided blocks included).
    if let Some(gating) = link.gating.as_mut() {
        let out = gating.gate.release_all();
        side.deliver(&out.forward, shared);
        link.report_released(&out);
    }
    shared.pos_finished.store(true, Ordering::SeqCst);
    shared.outbox.nudge();
}

struct PosSide {
    spec: PortSpec,
    pos: Option<Box<dyn Port>>,
    reconnect: Reconnect,
    requests: StatusRequests,
    /// Bytes refused since the printer went away with the outbox full.
    refused: u64,
}

impl PosSide {
    fn try_open(&mut self, shared: &Shared) {
        let now = Instant::now();
        if !self.reconnect.is_due(now) {
            return;
        }
        let opened = self.spec.open().and_then(|pos| {
            let writer = pos
                .try_clone_port()
                .map_err(|source| crate::ports::PortError::Io {
                    port: pos.name().to_string(),
                    source,
                })?;
            Ok((pos, writer))
        });
        match opened {
            Ok((pos, writer)) => {
                match self.reconnect.opened(now) {
                    Some(notice) => log_notice("proxy: POS", pos.name(), &notice, &""),
                    None => tracing::info!("proxy: POS {}", pos.name()),
                }
                *shared.pos_writer() = Some(writer);
                self.pos = Some(pos);
            }
            Err(e) => {
                if let Some(notice) = self.reconnect.open_failed(now) {
                    log_notice("proxy: POS", &self.spec.to_string(), &notice, &e);
                } else {
                    tracing::debug!("proxy: POS: {e}");
                }
            }
        }
    }

    /// Hands bytes to the printer side; logs once when an absent printer's held bytes
    /// reach the limit.
    fn deliver(&mut self, bytes: &[u8], shared: &Shared) {
        let bytes = write_directly(bytes, shared);
        if bytes.is_empty() {
            return;
        }
        let refused = shared
            .outbox
            .push(bytes, &shared.printer_online, &|| shared.running());
        if refused == 0 {
            if self.refused > 0 && shared.printer_online() {
                tracing::warn!(
                    "proxy: printer back; {} bytes sent while it was away beyond the \
                     {HELD_LIMIT}-byte hold were not printed",
                    self.refused
                );
                self.refused = 0;
            }
            return;
        }
        if self.refused == 0 {
            tracing::error!(
                "proxy: printer absent with {HELD_LIMIT} bytes held; refusing POS bytes \
                 until it is back (the POS is told it is off line)"
            );
        }
        self.refused += refused as u64;
    }
}

/// Writes to the printer from this thread when nothing is queued before these bytes and
/// the printer side is not writing: one attempt, no waiting for the lock. Returns what
/// is left for the outbox (the printer side finds out itself if the printer is gone).
fn write_directly<'a>(bytes: &'a [u8], shared: &Shared) -> &'a [u8] {
    if bytes.is_empty() || !shared.printer_online() {
        return bytes;
    }
    let Ok(mut writer) = shared.printer_writer.try_lock() else {
        return bytes;
    };
    let Some(printer) = writer.as_mut() else {
        return bytes;
    };
    // Checked under the writer lock: the printer side takes bytes only while holding it.
    if shared.outbox.len() > 0 {
        return bytes;
    }
    match printer.write(bytes) {
        Ok(n) => &bytes[n..],
        Err(_) => bytes,
    }
}

fn answer_offline(requests: &[RealTimeRequest], shared: &Shared) {
    let answers: Vec<u8> = requests
        .iter()
        .filter_map(|request| offline_status(*request))
        .collect();
    if answers.is_empty() {
        return;
    }
    let mut writer = shared.pos_writer();
    let Some(pos) = writer.as_mut() else {
        return;
    };
    let until = Instant::now() + ANSWER_BUDGET;
    if let Err((_, e)) = write_fully(pos.as_mut(), &answers, &|| Instant::now() < until) {
        tracing::debug!("proxy: off-line status not answered: {e}");
    }
}
