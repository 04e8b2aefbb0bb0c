//! Devices that come and go, over real ptys and sockets: a scanner replugged under a new
//! node behind the same symlink, a scanner plugged in after the start, a printer away
//! for five seconds while the POS keeps printing, a tcp:9100 printer whose listener
//! restarts, a POS replugged while the printer stays connected, and an absent printer
//! answering status requests (DLE EOT n, ink and peeler status too) as off line.
//!
//! Ports are configured through symlinks in a tempdir (as `/dev/serial/by-id/...` in a
//! shop). Before a pty is closed its link is pointed elsewhere, so the agent can never
//! open a node number the kernel hands to another test's pty meanwhile.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common;

use common::{Pty, GIVE_UP};
use till360_agent::config::AgentConfig;
use till360_agent::ports::PortSpec;
use till360_agent::proxy::{Proxy, TapEvent};
use till360_agent::runtime::RunningAgent;
use till360_shared::card::with_check_digit;
use till360_shared::EventKind;

const STATUS_REQUEST: [u8; 3] = [0x10, 0x04, 0x01];
/// DLE EOT 1 from an off-line printer: bits 1 and 4 fixed, bit 3 off-line.
const OFFLINE: u8 = 0x1A;
/// DLE EOT 7 1 (ink status A) and DLE EOT 8 3 (peeler status) from an off-line printer:
/// only the fixed bits, nothing wrong (these statuses have no off-line bit).
const INK_AND_PEELER_FINE: u8 = 0x12;

/// Points `link` at `target`, atomically (as udev replaces a by-id link).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

fn link_spec(link: &Path) -> PortSpec {
    PortSpec::Path {
        path: link.to_path_buf(),
        baud: 115_200,
    }
}

/// Reads what arrives on a pty master within `wait` (nothing is fine).
fn read_within(pty: &mut Pty, wait: Duration) -> Vec<u8> {
    let mut pfd = libc::pollfd {
        fd: pty.master.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
    if ready <= 0 {
        return Vec::new();
    }
    let mut buf = [0u8; 256];
    match pty.master.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// DLE EOT 7 1 (ink status A): answered off line with [`INK_AND_PEELER_FINE`], which no
/// DLE EOT 1 answer is, so it marks the end of the polls' answers.
const INK_REQUEST: [u8; 4] = [0x10, 0x04, 0x07, 0x01];

/// Sends DLE EOT 1 until the POS hears "off line" (requests sent before the proxy knows
/// the printer is gone are held for the printer and never answered by the proxy), then an
/// ink status request: answers come in request order, so once its answer is read no
/// answer to an earlier poll is still on its way, however slow the machine (a fixed
/// window cannot promise that). Returns every byte the POS sent.
fn poll_until_offline(pos: &mut Pty) -> Vec<u8> {
    let give_up = Instant::now() + GIVE_UP;
    let mut sent = Vec::new();
    loop {
        assert!(Instant::now() < give_up, "the POS never heard 'off line'");
        pos.writer().write_all(&STATUS_REQUEST).unwrap();
        sent.extend_from_slice(&STATUS_REQUEST);
        // Only paces the polls: a late answer is read by the next round or below.
        let answer = read_within(pos, Duration::from_millis(300));
        assert!(
            answer.iter().all(|b| *b == OFFLINE),
            "only off-line answers: {answer:?}"
        );
        if !answer.is_empty() {
            break;
        }
    }
    pos.writer().write_all(&INK_REQUEST).unwrap();
    sent.extend_from_slice(&INK_REQUEST);
    loop {
        match pos.read_exactly(1)[0] {
            INK_AND_PEELER_FINE => return sent,
            other => assert_eq!(
                other, OFFLINE,
                "only off-line answers before the ink status"
            ),
        }
    }
}

fn receipt(no: u32) -> Vec<u8> {
    format!(
        "\x1b@\x1bt\x13SUPERMARKT\n\
Bon 0042-{no:04}\n\
Appels                   1,98 B\n\
TOTAAL                   1,98\n\
PIN                      1,98\n\
\x1bd\x03\x1dV\x00"
    )
    .into_bytes()
}

fn agent_config(dir: &Path, scanner: &Path, pos: &Path, printer: &Path) -> AgentConfig {
    common::agent_config(dir, scanner, pos, printer, "")
}

async fn wait_for_seq(agent: &RunningAgent, seq: u64) {
    let mut rx = agent.journal_seq();
    tokio::time::timeout(GIVE_UP, rx.wait_for(|s| *s >= seq))
        .await
        .expect("journal did not reach the seq")
        .unwrap();
}

fn journaled(agent: &RunningAgent) -> Vec<EventKind> {
    let journal = agent.journal().expect("journal is open");
    let journal = journal.lock().unwrap();
    journal
        .read_from(1, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn receipt_numbers(events: &[EventKind]) -> Vec<String> {
    events
        .iter()
        .filter_map(|kind| match kind {
            EventKind::Receipt(r) => r.receipt_no.clone(),
            _ => None,
        })
        .collect()
}

struct Links {
    dir: tempfile::TempDir,
}

impl Links {
    fn new() -> Self {
        Links {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn link(&self, name: &str, target: &Path) -> PathBuf {
        let link = self.dir.path().join(name);
        point(&link, target);
        link
    }
    fn nowhere(&self) -> PathBuf {
        self.dir.path().join("unplugged")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_replugged_under_a_new_node_is_read_through_the_same_symlink() {
    let links = Links::new();
    let first = Pty::new();
    let pos = Pty::new();
    let printer = Pty::new();
    let scanner_link = links.link("usb-Honeywell_1900-if00", &first.path);
    let config = agent_config(links.dir.path(), &scanner_link, &pos.path, &printer.path);
    let agent = RunningAgent::start(config).unwrap();

    let card1 = with_check_digit("240100000012").unwrap();
    let card2 = with_check_digit("240100000029").unwrap();
    first
        .writer()
        .write_all(format!("{card1}\r").as_bytes())
        .unwrap();
    wait_for_seq(&agent, 1).await;

    // Replugged: the kernel gives the scanner a new node; the by-id link follows it.
    let second = Pty::new();
    assert_ne!(second.path, first.path);
    point(&scanner_link, &second.path);
    drop(first);

    // Scanned until the agent has found the new node (a scan before that may be lost
    // with the unplug, as on a real till).
    let give_up = Instant::now() + GIVE_UP;
    loop {
        second
            .writer()
            .write_all(format!("{card2}\r").as_bytes())
            .unwrap();
        let reached = tokio::time::timeout(Duration::from_millis(300), async {
            agent.journal_seq().wait_for(|s| *s >= 2).await.is_ok()
        })
        .await;
        if reached == Ok(true) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "no scan captured after the replug"
        );
    }
    let events = journaled(&agent);
    agent.shutdown().await;
    let cards: Vec<String> = events
        .iter()
        .filter_map(|kind| match kind {
            EventKind::CardScanned { card } => Some(card.as_str().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(cards[0], card1);
    assert!(cards[1..].iter().all(|c| *c == card2), "{cards:?}");
    assert!(cards.len() >= 2, "{cards:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_plugged_in_after_the_start_is_read() {
    let links = Links::new();
    let pos = Pty::new();
    let printer = Pty::new();
    let scanner_link = links.link("usb-Honeywell_1900-if00", &links.nowhere());
    let config = agent_config(links.dir.path(), &scanner_link, &pos.path, &printer.path);
    let agent = RunningAgent::start(config).unwrap();

    // A receipt journaled: the agent runs without its scanner (whose thread started
    // first, so its first open has failed by now and it is on its retry schedule).
    pos.writer().write_all(&receipt(1)).unwrap();
    wait_for_seq(&agent, 1).await;

    let scanner = Pty::new();
    point(&scanner_link, &scanner.path);
    let card = with_check_digit("240100000012").unwrap();
    scanner
        .writer()
        .write_all(format!("{card}\r").as_bytes())
        .unwrap();
    wait_for_seq(&agent, 2).await;
    let events = journaled(&agent);
    agent.shutdown().await;
    assert!(
        matches!(&events[1], EventKind::CardScanned { card: c } if c.as_str() == card),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_away_for_five_seconds_gets_every_byte_and_receipts_are_journaled() {
    let links = Links::new();
    let scanner = Pty::new();
    let mut pos = Pty::new();
    let mut printer = Pty::new();
    let printer_link = links.link("usb-EPSON_TM-T88V-if00", &printer.path);
    let config = agent_config(links.dir.path(), &scanner.path, &pos.path, &printer_link);
    let agent = RunningAgent::start(config).unwrap();

    let first = receipt(1);
    pos.writer().write_all(&first).unwrap();
    assert!(printer.read_exactly(first.len()) == first);
    wait_for_seq(&agent, 1).await;

    // Unplugged.
    point(&printer_link, &links.nowhere());
    drop(printer);
    let away_since = Instant::now();

    // The POS keeps printing; it asks for status and hears "off line".
    let mut sent_while_away = poll_until_offline(&mut pos);
    // Ink status A and peeler status carry one more byte; DLE EOT 1 after them shows
    // that each got exactly one answer.
    let more_requests = b"\x10\x04\x07\x01\x10\x04\x08\x03\x10\x04\x01";
    pos.writer().write_all(more_requests).unwrap();
    sent_while_away.extend_from_slice(more_requests);
    assert_eq!(
        pos.read_exactly(3),
        [INK_AND_PEELER_FINE, INK_AND_PEELER_FINE, OFFLINE]
    );
    for no in 2..=4 {
        let bytes = receipt(no);
        pos.writer().write_all(&bytes).unwrap();
        sent_while_away.extend_from_slice(&bytes);
    }
    // Journaled while the printer is away.
    wait_for_seq(&agent, 4).await;
    let away_for = Duration::from_secs(5);
    std::thread::sleep(away_for.saturating_sub(away_since.elapsed()));

    // Back, under a new node: every byte, once, in order.
    let mut printer = Pty::new();
    point(&printer_link, &printer.path);
    let got = printer.read_exactly(sent_while_away.len());
    assert!(
        got == sent_while_away,
        "held bytes differ ({} bytes expected)",
        sent_while_away.len()
    );
    // And printing goes on as before.
    // Nothing printed twice: bytes arrive in order, so a repeat would come before the
    // next receipt's bytes (a quiet window would only say "not yet").
    for no in 5..=6 {
        let bytes = receipt(no);
        pos.writer().write_all(&bytes).unwrap();
        assert!(
            printer.read_exactly(bytes.len()) == bytes,
            "receipt {no} is next at the printer, nothing printed twice before it"
        );
    }
    wait_for_seq(&agent, 6).await;

    let events = journaled(&agent);
    agent.shutdown().await;
    assert_eq!(
        receipt_numbers(&events),
        [
            "0042-0001",
            "0042-0002",
            "0042-0003",
            "0042-0004",
            "0042-0005",
            "0042-0006"
        ]
    );
}

#[test]
fn an_absent_printer_answers_status_as_off_line_and_gets_the_held_bytes_later() {
    let links = Links::new();
    let mut pos = Pty::new();
    let printer_link = links.link("printer", &links.nowhere());
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), link_spec(&printer_link), tap_tx, None).unwrap();

    // Until the first attempt to open the printer has failed, requests wait for it.
    let polls = poll_until_offline(&mut pos);
    // DLE EOT 1..4, ink status A (7 1) and peeler status (8 3); a DLE ENQ and a DLE EOT 7
    // with an undefined `a` get no answer.
    let mut more = b"\x1b@held receipt\n".to_vec();
    more.extend_from_slice(b"\x10\x04\x01\x10\x04\x02\x10\x04\x07\x01\x10\x05\x02");
    more.extend_from_slice(b"\x10\x04\x03\x10\x04\x07\x03\x10\x04\x04\x10\x04\x08\x03");
    pos.writer().write_all(&more).unwrap();
    let sent = [polls, more].concat();
    assert_eq!(
        pos.read_exactly(6),
        [
            0x1A,
            0x52,
            INK_AND_PEELER_FINE,
            0x52,
            0x12,
            INK_AND_PEELER_FINE
        ],
        "printer status off line, off-line cause error, ink fine, recoverable error, \
         paper present, peeler fine"
    );
    let mut tapped = Vec::new();
    while tapped.len() < sent.len() {
        match tap_rx.recv_timeout(GIVE_UP).expect("tap fell silent") {
            TapEvent::Bytes(bytes) => tapped.extend(bytes),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        tapped, sent,
        "the tap sees the bytes while the printer is away"
    );

    // Plugged in: the held bytes arrive in order.
    let mut printer = Pty::new();
    point(&printer_link, &printer.path);
    assert!(printer.read_exactly(sent.len()) == sent);

    // Now the real printer answers; the proxy no longer does.
    pos.writer().write_all(&STATUS_REQUEST).unwrap();
    assert_eq!(printer.read_exactly(3), STATUS_REQUEST);
    printer.writer().write_all(&[0x16]).unwrap();
    assert_eq!(pos.read_exactly(1), [0x16], "the printer's own answer");
    // Once more: had the proxy answered too, its answer would come before the printer's.
    pos.writer().write_all(&STATUS_REQUEST).unwrap();
    assert_eq!(printer.read_exactly(3), STATUS_REQUEST);
    printer.writer().write_all(&[0x17]).unwrap();
    assert_eq!(
        pos.read_exactly(1),
        [0x17],
        "the printer's answer, none from the proxy"
    );
    proxy.stop();
}

/// Reads from a TCP printer connection until `end` has arrived; returns everything.
fn read_until_end(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(GIVE_UP)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = stream
            .read(&mut buf)
            .expect("printer connection fell silent");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn bind_again(address: &str) -> TcpListener {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        match TcpListener::bind(address) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < give_up => {
                eprintln!("rebinding {address}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot rebind {address}: {e}"),
        }
    }
}

#[test]
fn a_tcp_9100_printer_whose_listener_restarts_gets_the_held_bytes() {
    let mut pos = Pty::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let printer = PortSpec::parse(&format!("tcp://{address}"), 0, Path::new("/")).unwrap();
    let (tap_tx, _tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(pos.spec(), printer, tap_tx, None).unwrap();

    let (mut first, _) = listener.accept().unwrap();
    pos.writer().write_all(&receipt(1)).unwrap();
    assert_eq!(read_until_end(&mut first, &receipt(1)), receipt(1));

    // The printer restarts: connection and listener gone.
    drop(first);
    drop(listener);
    let polls = poll_until_offline(&mut pos);
    pos.writer().write_all(&receipt(2)).unwrap();

    let listener = bind_again(&address);
    let (mut second, _) = listener.accept().unwrap();
    let got = read_until_end(&mut second, &receipt(2));
    // Before it: status requests only. Those the POS sent before the proxy saw the
    // connection close may have gone into the closed socket; the held ones (the tail of
    // what was sent) are here.
    let before = &got[..got.len() - receipt(2).len()];
    assert!(!before.is_empty(), "the held status requests are delivered");
    assert!(
        polls.ends_with(before),
        "only the tail of the status requests before the held receipt: {before:?}"
    );
    pos.writer().write_all(&receipt(3)).unwrap();
    assert_eq!(read_until_end(&mut second, &receipt(3)), receipt(3));
    proxy.stop();
}

#[test]
fn a_replugged_pos_is_reopened_while_the_printer_stays_connected() {
    let links = Links::new();
    let first = Pty::new();
    let pos_link = links.link("usb-POS-if00", &first.path);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let printer = PortSpec::Tcp {
        address: listener.local_addr().unwrap().to_string(),
    };
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let proxy = Proxy::start(link_spec(&pos_link), printer, tap_tx, None).unwrap();
    let (mut connection, _) = listener.accept().unwrap();
    listener.set_nonblocking(true).unwrap();

    first.writer().write_all(&receipt(1)).unwrap();
    assert_eq!(read_until_end(&mut connection, &receipt(1)), receipt(1));

    let mut second = Pty::new();
    point(&pos_link, &second.path);
    drop(first);
    // The printer's replies reach the new POS once the proxy has opened it.
    let give_up = Instant::now() + GIVE_UP;
    loop {
        connection.write_all(&[0x16]).unwrap();
        if !read_within(&mut second, Duration::from_millis(300)).is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the new POS node was never opened"
        );
    }
    second.writer().write_all(&receipt(2)).unwrap();
    assert_eq!(read_until_end(&mut connection, &receipt(2)), receipt(2));
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the printer connection was kept, not reopened"
    );
    // The tap saw both receipts, once each.
    let mut tapped = Vec::new();
    let both = [receipt(1), receipt(2)].concat();
    while tapped.len() < both.len() {
        match tap_rx.recv_timeout(GIVE_UP).expect("tap fell silent") {
            TapEvent::Bytes(bytes) => tapped.extend(bytes),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tapped, both);
    proxy.stop();
}
