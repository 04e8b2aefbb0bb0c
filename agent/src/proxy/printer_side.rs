//! The printer side: opens the printer (again and again), writes the outbox to it and
//! relays its replies to the POS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::{log_notice, write_fully, Port, PortError, PortSpec, Reconnect};

use super::{Shared, CHUNK};

/// How long a stopping proxy may still print what it holds.
const FLUSH_GRACE: Duration = Duration::from_millis(500);
/// Longest sleep between reconnect checks, so a stop is seen promptly.
const IDLE_SLICE: Duration = Duration::from_millis(100);
/// How long a printer reply may take to reach the POS before it is dropped.
const REPLY_BUDGET: Duration = Duration::from_secs(1);

/// Why a connection ended.
enum End {
    Stopped,
    Lost(PortError),
    /// The reply side saw the printer go; its error says why.
    RepliesEnded,
}

pub(super) fn run(spec: PortSpec, shared: &Arc<Shared>) {
    let mut reconnect = Reconnect::new();
    while shared.running() {
        let now = Instant::now();
        if !reconnect.is_due(now) {
            std::thread::sleep(reconnect.wait(now).min(IDLE_SLICE));
            continue;
        }
        let opened = spec.open().and_then(|printer| {
            let reader = printer.try_clone_port().map_err(|source| PortError::Io {
                port: printer.name().to_string(),
                source,
            })?;
            Ok((printer, reader))
        });
        let (printer, reader) = match opened {
            Ok(ports) => ports,
            Err(e) => {
                shared.printer_absent.store(true, Ordering::SeqCst);
                if let Some(notice) = reconnect.open_failed(now) {
                    log_notice("proxy: printer", &spec.to_string(), &notice, &e);
                } else {
                    tracing::debug!("proxy: printer: {e}");
                }
                continue;
            }
        };
        let name = printer.name().to_string();
        match reconnect.opened(now) {
            Some(notice) => log_notice("proxy: printer", &name, &notice, &""),
            None => tracing::info!("proxy: printer {name}"),
        }
        let (end, replies_result) = run_connection(printer, reader, shared);
        let why = match end {
            End::Stopped => break,
            End::Lost(e) => e,
            End::RepliesEnded => match replies_result {
                Err(e) => e,
                Ok(()) => PortError::Gone {
                    port: name.clone(),
                    reason: "reply side ended".into(),
                },
            },
        };
        crate::metrics::record_device_lost("printer");
        if let Some(notice) = reconnect.lost(Instant::now()) {
            log_notice("proxy: printer", &name, &notice, &why);
        }
    }
    let left = shared.outbox.len();
    if left > 0 {
        tracing::warn!("proxy: stopping with {left} bytes the printer never got");
    }
}

/// Serves one open printer until it goes away or the proxy stops.
fn run_connection(
    printer: Box<dyn Port>,
    reader: Box<dyn Port>,
    shared: &Arc<Shared>,
) -> (End, Result<(), PortError>) {
    let name = printer.name().to_string();
    let connection_over = Arc::new(AtomicBool::new(false));
    let replies = {
        let shared = Arc::clone(shared);
        let connection_over = Arc::clone(&connection_over);
        std::thread::Builder::new()
            .name("printer-to-pos".into())
            .spawn(move || {
                let result = relay_replies(reader, &shared, &connection_over);
                connection_over.store(true, Ordering::SeqCst);
                result
            })
    };
    let replies = match replies {
        Ok(handle) => handle,
        Err(source) => return (End::Lost(PortError::Io { port: name, source }), Ok(())),
    };
    *shared.printer_writer() = Some(printer);
    shared.printer_absent.store(false, Ordering::SeqCst);
    shared.printer_online.store(true, Ordering::SeqCst);
    let end = write_outbox(shared, &connection_over);
    shared.printer_online.store(false, Ordering::SeqCst);
    if matches!(end, End::Lost(_) | End::RepliesEnded) {
        shared.printer_absent.store(true, Ordering::SeqCst);
    }
    shared.printer_writer().take();
    // Wakes a POS side waiting for room: with the printer gone it holds instead.
    shared.outbox.nudge();
    connection_over.store(true, Ordering::SeqCst);
    let replies_result = replies.join().unwrap_or_else(|_| {
        Err(PortError::Gone {
            port: name,
            reason: "reply thread panicked".into(),
        })
    });
    (end, replies_result)
}

fn write_outbox(shared: &Shared, connection_over: &AtomicBool) -> End {
    let mut grace_until: Option<Instant> = None;
    loop {
        if connection_over.load(Ordering::SeqCst) {
            return End::RepliesEnded;
        }
        if !shared.running() && shared.pos_finished.load(Ordering::SeqCst) {
            let until = *grace_until.get_or_insert_with(|| Instant::now() + FLUSH_GRACE);
            if shared.outbox.len() == 0 || Instant::now() >= until {
                return End::Stopped;
            }
        }
        if !shared.outbox.wait_for_bytes() {
            continue;
        }
        // Held from taking to written, so the POS side cannot write in between.
        let mut writer = shared.printer_writer();
        let Some(printer) = writer.as_mut() else {
            return End::RepliesEnded;
        };
        let bytes = shared.outbox.take(CHUNK);
        let keep_going = || {
            !connection_over.load(Ordering::SeqCst)
                && (shared.running() || grace_until.is_none_or(|until| Instant::now() < until))
        };
        if let Err((written, e)) = write_fully(printer.as_mut(), &bytes, &keep_going) {
            shared.outbox.put_back(&bytes[written..]);
            if connection_over.load(Ordering::SeqCst) {
                return End::RepliesEnded;
            }
            if !shared.running() {
                return End::Stopped;
            }
            return End::Lost(e);
        }
    }
}

fn relay_replies(
    mut printer: Box<dyn Port>,
    shared: &Shared,
    connection_over: &AtomicBool,
) -> Result<(), PortError> {
    let mut buf = vec![0u8; CHUNK];
    // Ends with the connection, not with `running`: at a shutdown the writer side still
    // flushes the held bytes (for up to its grace), and ending here first would read as
    // a printer that went away.
    while !connection_over.load(Ordering::SeqCst) {
        let Some(n) = printer.read_chunk(&mut buf)? else {
            continue;
        };
        let mut writer = shared.pos_writer();
        let Some(pos) = writer.as_mut() else {
            tracing::debug!("proxy: POS away; {n} reply bytes dropped");
            continue;
        };
        let until = Instant::now() + REPLY_BUDGET;
        let keep_going = || shared.running() && Instant::now() < until;
        if let Err((_, e)) = write_fully(pos.as_mut(), &buf[..n], &keep_going) {
            tracing::debug!("proxy: printer reply not delivered: {e}");
        }
    }
    Ok(())
}
