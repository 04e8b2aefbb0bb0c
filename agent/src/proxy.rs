//! The POS ↔ printer pass-through (DESIGN.md principle 1: the till never waits for us).
//!
//! Two dedicated OS threads per session: POS → printer (read the POS, write the same
//! bytes to the printer at once, then hand a copy to the tap) and printer → POS (status
//! replies to DLE EOT, GS r, GS a go back unchanged). No parsing, no journal, no async on
//! this path: the tap is an unbounded channel, so a slow or dead consumer never holds
//! up a byte. When either device goes away, the session ends, both ports are reopened
//! with a backoff, and bytes the printer did not take are written first on the new one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::ports::{reopen_backoff, write_fully, Port, PortError, PortSpec};

const CHUNK: usize = 4096;

/// A running proxy; [`Proxy::stop`] ends it within a read timeout or so.
pub struct Proxy {
    running: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts proxying between `pos` and `printer`, copying POS bytes to `tap` after
    /// they reached the printer. Ports are opened (and reopened) by the proxy's thread.
    pub fn start<T: From<Vec<u8>> + Send + 'static>(
        pos: PortSpec,
        printer: PortSpec,
        tap: Sender<T>,
    ) -> std::io::Result<Proxy> {
        let running = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&running);
        let supervisor = std::thread::Builder::new()
            .name("pos-to-printer".into())
            .spawn(move || supervise(pos, printer, Some(tap), flag))?;
        Ok(Proxy {
            running,
            supervisor: Some(supervisor),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(handle) = self.supervisor.take() {
            if handle.join().is_err() {
                tracing::error!("proxy thread panicked");
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.halt();
    }
}

fn supervise<T: From<Vec<u8>>>(
    pos_spec: PortSpec,
    printer_spec: PortSpec,
    mut tap: Option<Sender<T>>,
    running: Arc<AtomicBool>,
) {
    let keep_going = || running.load(Ordering::SeqCst);
    // POS bytes read but not yet accepted by the printer; written first after a reopen.
    let mut unsent: Vec<u8> = Vec::new();
    let mut attempt = 0u32;
    while keep_going() {
        let ports = pos_spec
            .open()
            .and_then(|pos| Ok((pos, printer_spec.open()?)));
        let (pos, printer) = match ports {
            Ok(ports) => ports,
            Err(e) => {
                if attempt == 0 {
                    tracing::error!("proxy: {e}; retrying");
                } else {
                    tracing::debug!("proxy: {e}; retrying");
                }
                reopen_backoff(attempt, &keep_going);
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        tracing::info!("proxy: {} -> {}", pos.name(), printer.name());
        match run_session(pos, printer, &mut unsent, &mut tap, &running) {
            Ok(()) => {
                attempt = 0;
            }
            Err(e) => {
                tracing::warn!("proxy: {e}; reopening");
                reopen_backoff(attempt, &keep_going);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Runs one session until a device goes away (`Err`) or `running` turns false (`Ok`).
fn run_session<T: From<Vec<u8>>>(
    mut pos: Box<dyn Port>,
    mut printer: Box<dyn Port>,
    unsent: &mut Vec<u8>,
    tap: &mut Option<Sender<T>>,
    running: &Arc<AtomicBool>,
) -> Result<(), PortError> {
    let session_over = Arc::new(AtomicBool::new(false));
    let clone_err = |port: &dyn Port, source| PortError::Io {
        port: port.name().to_string(),
        source,
    };
    let printer_reader = printer
        .try_clone_port()
        .map_err(|e| clone_err(printer.as_ref(), e))?;
    let pos_writer = pos
        .try_clone_port()
        .map_err(|e| clone_err(pos.as_ref(), e))?;
    let replies = {
        let running = Arc::clone(running);
        let session_over = Arc::clone(&session_over);
        std::thread::Builder::new()
            .name("printer-to-pos".into())
            .spawn(move || {
                let result = relay_replies(printer_reader, pos_writer, &running, &session_over);
                session_over.store(true, Ordering::SeqCst);
                result
            })
            .map_err(|e| clone_err(pos.as_ref(), e))?
    };

    let keep_going = || running.load(Ordering::SeqCst) && !session_over.load(Ordering::SeqCst);
    let result = (|| {
        if !unsent.is_empty() {
            let bytes = std::mem::take(unsent);
            forward(printer.as_mut(), bytes, unsent, tap, &keep_going)?;
        }
        let mut buf = vec![0u8; CHUNK];
        while keep_going() {
            let Some(n) = pos.read_chunk(&mut buf)? else {
                continue;
            };
            forward(
                printer.as_mut(),
                buf[..n].to_vec(),
                unsent,
                tap,
                &keep_going,
            )?;
        }
        Ok(())
    })();
    session_over.store(true, Ordering::SeqCst);
    let replies_result = replies.join().unwrap_or_else(|_| {
        Err(PortError::Gone {
            port: printer.name().to_string(),
            reason: "reply thread panicked".into(),
        })
    });
    if !running.load(Ordering::SeqCst) {
        // Stopping: whatever interrupted the session is not a device problem.
        return Ok(());
    }
    result?;
    // The POS side ran until the reply side ended the session: report why.
    replies_result?;
    Ok(())
}

/// Writes POS bytes to the printer, then copies them to the tap. What the printer did
/// not take stays in `unsent` for the next session.
fn forward<T: From<Vec<u8>>>(
    printer: &mut dyn Port,
    bytes: Vec<u8>,
    unsent: &mut Vec<u8>,
    tap: &mut Option<Sender<T>>,
    keep_going: &dyn Fn() -> bool,
) -> Result<(), PortError> {
    match write_fully(printer, &bytes, keep_going) {
        Ok(()) => {
            send_to_tap(tap, bytes);
            Ok(())
        }
        Err((written, e)) => {
            if written > 0 {
                send_to_tap(tap, bytes[..written].to_vec());
            }
            unsent.extend_from_slice(&bytes[written..]);
            Err(e)
        }
    }
}

fn send_to_tap<T: From<Vec<u8>>>(tap: &mut Option<Sender<T>>, bytes: Vec<u8>) {
    if let Some(sender) = tap {
        if sender.send(T::from(bytes)).is_err() {
            // The receipt reader is gone; printing goes on without it.
            tracing::error!("proxy: receipt tap closed; printing continues without capture");
            *tap = None;
        }
    }
}

fn relay_replies(
    mut printer: Box<dyn Port>,
    mut pos: Box<dyn Port>,
    running: &AtomicBool,
    session_over: &AtomicBool,
) -> Result<(), PortError> {
    let keep_going = || running.load(Ordering::SeqCst) && !session_over.load(Ordering::SeqCst);
    let mut buf = vec![0u8; CHUNK];
    while keep_going() {
        let Some(n) = printer.read_chunk(&mut buf)? else {
            continue;
        };
        write_fully(pos.as_mut(), &buf[..n], &keep_going).map_err(|(_, e)| e)?;
    }
    Ok(())
}
