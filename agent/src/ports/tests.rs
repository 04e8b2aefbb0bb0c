//! Port tests against real files, ptys and sockets.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn parses_specs() {
    let base = Path::new("/etc/till360");
    assert_eq!(
        PortSpec::parse("tcp://10.0.0.5:9100", 9600, base).unwrap(),
        PortSpec::Tcp {
            address: "10.0.0.5:9100".into()
        }
    );
    assert!(PortSpec::parse("tcp://printer", 9600, base).is_err());
    assert_eq!(
        PortSpec::parse("/dev/ttyUSB0", 19200, base).unwrap(),
        PortSpec::Path {
            path: "/dev/ttyUSB0".into(),
            baud: 19200
        }
    );
    assert_eq!(
        PortSpec::parse("dev/pos", 9600, base).unwrap(),
        PortSpec::Path {
            path: "/etc/till360/dev/pos".into(),
            baud: 9600
        }
    );
}

#[test]
fn device_file_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lp0");
    std::fs::write(&path, b"").unwrap();
    let spec = PortSpec::parse(path.to_str().unwrap(), 9600, dir.path()).unwrap();
    let mut port = spec.open().unwrap();
    write_fully(port.as_mut(), b"hello", &|| true).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    // A device file with nothing to say is idle, not gone.
    let mut buf = [0u8; 8];
    assert!(matches!(port.read_chunk(&mut buf), Ok(None)));
}

#[test]
fn tcp_printer_round_trip() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spec = PortSpec::parse(&format!("tcp://{addr}"), 0, Path::new("/")).unwrap();
    let mut port = spec.open().unwrap();
    let (mut printer, _) = listener.accept().unwrap();
    write_fully(port.as_mut(), b"\x1b@receipt", &|| true).unwrap();
    let mut got = [0u8; 9];
    printer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"\x1b@receipt");
    let mut buf = [0u8; 4];
    assert!(
        matches!(port.read_chunk(&mut buf), Ok(None)),
        "timeout is idle"
    );
    printer.write_all(&[0x12]).unwrap();
    let mut reader = port.try_clone_port().unwrap();
    let n = loop {
        if let Some(n) = reader.read_chunk(&mut buf).unwrap() {
            break n;
        }
    };
    assert_eq!(&buf[..n], &[0x12]);
    drop(printer);
    let gone = loop {
        match reader.read_chunk(&mut buf) {
            Ok(None) => continue,
            other => break other,
        }
    };
    assert!(matches!(gone, Err(PortError::Gone { .. })), "{gone:?}");
}

#[test]
fn a_dead_port_is_tried_a_bounded_number_of_times() {
    // A minute of a port that never comes back, polled every millisecond as an eager
    // caller would: the schedule, not the caller, decides how often an open happens.
    let start = Instant::now();
    let mut schedule = Reconnect::new();
    assert_eq!(schedule.opened(start), None, "a first open is no recovery");
    assert_eq!(schedule.lost(start), Some(Notice::Lost));
    let mut attempts = Vec::new();
    let mut notices = 0;
    for ms in 0..60_000u64 {
        let now = start + Duration::from_millis(ms);
        if schedule.is_due(now) {
            attempts.push(ms);
            notices += usize::from(schedule.open_failed(now).is_some());
        }
    }
    assert_eq!(notices, 0, "the loss was the one log line of this outage");
    let in_first_second = attempts.iter().filter(|ms| **ms < 1000).count();
    assert!(in_first_second <= 4, "{attempts:?}");
    assert!(
        attempts.len() <= 40,
        "{} attempts in a minute",
        attempts.len()
    );
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= 100, "attempts too close: {pair:?}");
        assert!(
            pair[1] - pair[0] <= 2000,
            "attempts too far apart: {pair:?}"
        );
    }
    let back = schedule.opened(start + Duration::from_secs(61));
    assert_eq!(
        back,
        Some(Notice::Back {
            down_for: Duration::from_secs(61),
            attempts: attempts.len() as u32 + 1
        })
    );
}

#[test]
fn a_port_that_was_never_there_is_reported_once() {
    let start = Instant::now();
    let mut schedule = Reconnect::new();
    assert_eq!(schedule.open_failed(start), Some(Notice::Absent));
    let later = start + Duration::from_secs(10);
    assert!(schedule.is_due(later));
    assert_eq!(schedule.open_failed(later), None);
    assert!(matches!(schedule.opened(later), Some(Notice::Back { .. })));
    // The next outage is reported again.
    let much_later = later + Duration::from_secs(10);
    assert_eq!(schedule.lost(much_later), Some(Notice::Lost));
}

#[test]
fn a_flapping_port_keeps_its_backoff() {
    let mut now = Instant::now();
    let mut schedule = Reconnect::new();
    let mut waits = Vec::new();
    for _ in 0..8 {
        schedule.opened(now);
        // Dies at once, every time.
        schedule.lost(now + Duration::from_millis(1));
        waits.push(schedule.wait(now));
        now += schedule.wait(now) + Duration::from_millis(1);
    }
    assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
    assert_eq!(
        *waits.last().unwrap(),
        MAX_RECONNECT_DELAY + Duration::from_millis(1)
    );
}

#[test]
fn a_symlink_is_followed_again_at_each_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("lp-a");
    let second = dir.path().join("lp-b");
    std::fs::write(&first, b"").unwrap();
    std::fs::write(&second, b"").unwrap();
    let link = dir.path().join("by-id-printer");
    std::os::unix::fs::symlink(&first, &link).unwrap();
    let spec = PortSpec::parse(link.to_str().unwrap(), 9600, dir.path()).unwrap();

    let mut port = spec.open().unwrap();
    assert!(port.name().contains("lp-a"), "{}", port.name());
    write_fully(port.as_mut(), b"one", &|| true).unwrap();
    drop(port);

    // Replugged under another node: the same configured path finds it.
    let tmp = dir.path().join("by-id-printer.new");
    std::os::unix::fs::symlink(&second, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let mut port = spec.open().unwrap();
    write_fully(port.as_mut(), b"two", &|| true).unwrap();
    assert_eq!(std::fs::read(&first).unwrap(), b"one");
    assert_eq!(std::fs::read(&second).unwrap(), b"two");

    // A dangling link is a clear open error naming the configured path.
    std::fs::remove_file(&second).unwrap();
    let err = spec.open().err().expect("dangling link cannot open");
    assert!(matches!(err, PortError::Open { .. }), "{err}");
    assert!(err.to_string().contains("by-id-printer"), "{err}");
}

#[test]
fn a_plain_file_printer_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.prn");
    std::fs::write(&path, b"earlier ").unwrap();
    let spec = PortSpec::parse(path.to_str().unwrap(), 9600, dir.path()).unwrap();
    let mut port = spec.open().unwrap();
    let mut reader = port.try_clone_port().unwrap();
    write_fully(port.as_mut(), b"receipt", &|| true).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"earlier receipt");
    let mut buf = [0u8; 16];
    assert!(
        matches!(reader.read_chunk(&mut buf), Ok(None)),
        "our own bytes never come back as replies"
    );
}
