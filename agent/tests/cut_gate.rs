//! The cut gate: bytes before a cut leave at once, a cut waits at most its budget for a
//! coupon block, and the printer gets exactly the POS bytes plus the blocks decided in time.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use till360_agent::escpos::gate::{
    CutGate, CutId, CutOutcome, GateOutput, RejectReason, ReleasedCut, DEFAULT_BUDGET,
};
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const DLE: u8 = 0x10;
const BUDGET: Duration = Duration::from_millis(50);
const BLOCK: &[u8] = b"\x1b@--- COUPON ---\n\x1b@";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every cut command the gate must hold.
fn cut_forms() -> Vec<Vec<u8>> {
    let mut forms = vec![vec![ESC, b'i'], vec![ESC, b'm']];
    for m in [0u8, 1, 48, 49] {
        forms.push(vec![GS, b'V', m]);
    }
    for m in [65u8, 66, 97, 98, 103, 104] {
        forms.push(vec![GS, b'V', m, 3]);
    }
    forms
}

fn receipt(cut: &[u8]) -> (Vec<u8>, usize) {
    let mut stream = b"Brood 2,49\nTOTAAL 2,49\n\n".to_vec();
    let cut_at = stream.len();
    stream.extend_from_slice(cut);
    stream.extend_from_slice(b"next receipt\n");
    (stream, cut_at)
}

fn with_block_at(stream: &[u8], at: usize, block: &[u8]) -> Vec<u8> {
    let mut out = stream[..at].to_vec();
    out.extend_from_slice(block);
    out.extend_from_slice(&stream[at..]);
    out
}

/// Feeds `stream` in one chunk at `now`; the gate must not hold a cut afterwards.
fn assert_passes_ungated(name: &str, stream: &[u8]) {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let out = gate.feed(stream, now);
    assert_eq!(out.held_cuts, vec![], "{name}");
    assert_eq!(out.forward, stream, "{name}");
    assert_eq!(gate.poll_timeout(), None, "{name}");
    assert_eq!(gate.held_bytes(), 0, "{name}");
}

#[test]
fn bytes_before_the_cut_leave_in_the_same_feed_call() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let (stream, cut_at) = receipt(&[GS, b'V', 0]);

    let out = gate.feed(&stream, now);
    assert_eq!(
        out.forward,
        &stream[..cut_at],
        "everything before the cut, at once"
    );
    assert_eq!(out.held_cuts.len(), 1);
    let cut = out.held_cuts[0];
    assert_eq!(cut.offset(), cut_at as u64);
    assert_eq!(cut.seq(), 0);
    assert!(!cut.partial());
    assert_eq!(gate.held_bytes(), stream.len() - cut_at);

    // Bytes after the held cut queue behind it.
    let out = gate.feed(b"more\n", now + ms(1));
    assert_eq!(out.forward, b"");
    assert_eq!(gate.held_bytes(), stream.len() - cut_at + 5);
}

#[test]
fn a_decided_block_goes_right_before_the_cut_and_the_rest_follows() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let (stream, cut_at) = receipt(&[ESC, b'i']);
    let out = gate.feed(&stream, now);
    let mut printed = out.forward;
    let [cut] = out.held_cuts[..] else {
        panic!("one cut held: {:?}", out.held_cuts);
    };
    assert_eq!(gate.poll_timeout(), Some(now + BUDGET));
    let out = gate.feed(b"", now + ms(1));
    assert!(out.held_cuts.is_empty(), "a cut is announced once");

    let out = gate.on_decision(cut, Some(BLOCK.to_vec()), now + ms(49));
    assert_eq!(out.rejected, None);
    assert_eq!(
        out.released,
        vec![ReleasedCut {
            cut,
            outcome: CutOutcome::CouponPrinted
        }]
    );
    printed.extend_from_slice(&out.forward);
    assert_eq!(printed, with_block_at(&stream, cut_at, BLOCK));
    assert_eq!(gate.held_bytes(), 0);
    assert_eq!(gate.poll_timeout(), None);

    // Nothing is held any more: the next bytes pass at once.
    assert_eq!(gate.feed(b"x\n", now + ms(50)).forward, b"x\n");
}

#[test]
fn every_cut_command_is_gated() {
    for form in cut_forms() {
        let now = Instant::now();
        let mut gate = CutGate::new(BUDGET);
        let (stream, cut_at) = receipt(&form);
        let out = gate.feed(&stream, now);
        assert_eq!(out.forward, &stream[..cut_at], "{form:?}");
        assert_eq!(out.held_cuts.len(), 1, "{form:?}");
        let partial = matches!(form[..], [ESC, _] | [GS, b'V', 1 | 49 | 66 | 98 | 104, ..]);
        assert_eq!(out.held_cuts[0].partial(), partial, "{form:?}");
        let out = gate.on_decision(out.held_cuts[0], None, now + ms(10));
        assert_eq!(out.forward, &stream[cut_at..], "{form:?}");
        assert_eq!(out.released[0].outcome, CutOutcome::Declined);
    }
}

#[test]
fn gs_v_inside_raster_data_is_not_gated() {
    // GS v 0 m xL xH yL yH: 4 bytes wide, 2 rows, every row holding GS V 0 / GS V A n.
    let mut stream = b"logo\n".to_vec();
    stream.extend_from_slice(&[GS, b'v', b'0', 0, 4, 0, 2, 0]);
    stream.extend_from_slice(&[GS, b'V', 0, ESC, GS, b'V', 65, 3]);
    stream.extend_from_slice(b"after\n");
    assert_passes_ungated("raster", &stream);
}

#[test]
fn gs_v_inside_a_qr_payload_is_not_gated() {
    // GS ( k pL pH cn fn m d...: store QR data that contains GS V 0 and ESC i.
    let payload = [GS, b'V', 0, ESC, b'i', GS, b'V'];
    let len = 3 + payload.len();
    let mut stream = vec![GS, b'(', b'k', len as u8, 0, 49, 80, 48];
    stream.extend_from_slice(&payload);
    stream.extend_from_slice(b"after\n");
    assert_passes_ungated("qr", &stream);
}

#[test]
fn gs_v_inside_a_barcode_or_an_argument_is_not_gated() {
    // GS k 73 n: Code128 data holding GS V 0.
    let mut code128 = vec![GS, b'k', 73, 5, b'{', b'B', GS, b'V', 0];
    code128.extend_from_slice(b"\n");
    assert_passes_ungated("code128", &code128);
    // ESC ! n with n = GS, then "V" as text and a NUL.
    assert_passes_ungated("argument", &[ESC, b'!', GS, b'V', 0, b'\n']);
    // ESC ESC i: the second ESC is ESC's unknown code, so `i` is text.
    assert_passes_ungated("unknown command", &[ESC, ESC, b'i', b'\n']);
    // GS V with an unknown mode is not a cut (the parser says so; the printer ignores it).
    assert_passes_ungated("unknown cut mode", &[GS, b'V', 5, b'\n']);
}

#[test]
fn a_trailing_header_is_held_only_while_it_may_be_a_cut() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    // GS alone, then GS V: may still be a cut.
    assert_eq!(gate.feed(b"abc\x1d", now).forward, b"abc");
    assert_eq!(gate.held_bytes(), 1);
    assert_eq!(gate.feed(b"V", now).forward, b"");
    assert_eq!(gate.held_bytes(), 2);
    // GS V 5: not a cut after all, out it goes.
    assert_eq!(gate.feed(&[5], now).forward, &[GS, b'V', 5]);
    assert_eq!(gate.held_bytes(), 0);
    // GS V A waits for n, which makes it a cut.
    assert_eq!(gate.feed(&[GS, b'V', 65], now).forward, b"");
    let out = gate.feed(&[0], now);
    assert_eq!(out.forward, b"");
    assert_eq!(out.held_cuts.len(), 1);
    gate.on_decision(out.held_cuts[0], None, now);

    // Headers that cannot become a cut are forwarded even though incomplete.
    for header in [&[GS, b'('][..], &[ESC, b'('], &[DLE, 0x04], &[GS, b'k', 73]] {
        let mut gate = CutGate::new(BUDGET);
        assert_eq!(gate.feed(header, now).forward, header, "{header:?}");
    }
    // ESC alone may be ESC i.
    let mut gate = CutGate::new(BUDGET);
    assert_eq!(gate.feed(&[b'x', ESC], now).forward, b"x");
    assert_eq!(gate.feed(b"!", now).forward, &[ESC, b'!']);
}

#[test]
fn a_cut_split_across_chunks_is_gated_at_every_split() {
    for form in cut_forms() {
        let (stream, cut_at) = receipt(&form);
        let expected = with_block_at(&stream, cut_at, BLOCK);
        for first in 0..=stream.len() {
            for second in first..=stream.len() {
                let chunks = [&stream[..first], &stream[first..second], &stream[second..]];
                let now = Instant::now();
                let mut gate = CutGate::new(BUDGET);
                let mut printed = Vec::new();
                let mut held = Vec::new();
                let mut fed = 0;
                for chunk in chunks {
                    let out = gate.feed(chunk, now);
                    fed += chunk.len();
                    printed.extend_from_slice(&out.forward);
                    held.extend(out.held_cuts);
                    // Nothing before the cut is kept back once its chunk is fed.
                    assert_eq!(
                        printed,
                        &stream[..fed.min(cut_at)],
                        "{form:?} split at {first}, {second}"
                    );
                }
                assert_eq!(held.len(), 1, "{form:?} split at {first}, {second}");
                assert_eq!(held[0].offset(), cut_at as u64);
                let out = gate.on_decision(held[0], Some(BLOCK.to_vec()), now + ms(1));
                printed.extend_from_slice(&out.forward);
                assert_eq!(printed, expected, "{form:?} split at {first}, {second}");
            }
        }
    }
}

#[test]
fn a_decision_after_the_budget_is_dropped_and_the_cut_leaves_unchanged() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let (stream, cut_at) = receipt(&[GS, b'V', 1]);
    let out = gate.feed(&stream, now);
    let cut = out.held_cuts[0];
    let mut printed = out.forward;

    let out = gate.on_decision(cut, Some(BLOCK.to_vec()), now + BUDGET);
    let rejected = out.rejected.expect("late decision rejected");
    assert_eq!(rejected.reason, RejectReason::Late);
    assert!(rejected.dropped_block);
    assert_eq!(
        out.released,
        vec![ReleasedCut {
            cut,
            outcome: CutOutcome::TimedOut
        }]
    );
    printed.extend_from_slice(&out.forward);
    assert_eq!(printed, stream, "no block, nothing lost");
    assert!(!printed.windows(BLOCK.len()).any(|w| w == BLOCK));
    assert_eq!(cut_at as u64, cut.offset());

    // Asked again: the cut is gone.
    let out = gate.on_decision(cut, Some(BLOCK.to_vec()), now + ms(51));
    assert_eq!(out.rejected.map(|r| r.reason), Some(RejectReason::Stale));
    assert_eq!(out.forward, b"");
}

#[test]
fn the_timeout_releases_the_cut_unchanged_at_its_deadline() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let (stream, cut_at) = receipt(&[ESC, b'm']);
    let out = gate.feed(&stream, now + ms(5));
    assert_eq!(gate.poll_timeout(), Some(now + ms(55)));
    let cut = out.held_cuts[0];

    let early = gate.handle_timeout(now + ms(54));
    assert_eq!(early, GateOutput::default(), "not yet");
    let out = gate.handle_timeout(now + ms(55));
    assert_eq!(out.forward, &stream[cut_at..]);
    assert_eq!(out.released[0].cut, cut);
    assert_eq!(out.released[0].outcome, CutOutcome::TimedOut);
    assert_eq!(gate.poll_timeout(), None);
    assert_eq!(gate.held_bytes(), 0);
}

#[test]
fn feeding_after_a_missed_timeout_releases_the_cut_first() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let (stream, _) = receipt(&[GS, b'V', 0]);
    let mut printed = gate.feed(&stream, now).forward;
    let out = gate.feed(b"late\n", now + ms(80));
    assert_eq!(out.released[0].outcome, CutOutcome::TimedOut);
    printed.extend_from_slice(&out.forward);
    let mut all = stream.clone();
    all.extend_from_slice(b"late\n");
    assert_eq!(printed, all);
}

#[test]
fn a_second_decision_for_the_same_cut_is_rejected() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let mut stream = b"one\n\x1bi".to_vec();
    stream.extend_from_slice(b"two\n\x1bi");
    let out = gate.feed(&stream, now);
    let [first, second] = out.held_cuts[..] else {
        panic!("two cuts held: {:?}", out.held_cuts);
    };
    // Decide the second while the first is still held: it waits, decided.
    let out = gate.on_decision(second, Some(BLOCK.to_vec()), now + ms(1));
    assert_eq!(out.forward, b"");
    assert_eq!(out.rejected, None);
    let out = gate.on_decision(second, None, now + ms(2));
    assert_eq!(
        out.rejected.map(|r| (r.reason, r.dropped_block)),
        Some((RejectReason::AlreadyDecided, false))
    );
    let out = gate.on_decision(first, None, now + ms(3));
    assert_eq!(
        out.released.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        vec![CutOutcome::Declined, CutOutcome::CouponPrinted]
    );
    assert_eq!(out.forward, with_block_at(&stream[4..], 6, BLOCK));
    assert_eq!(out.released[1].cut, second);
}

#[test]
fn each_cut_has_its_own_budget_and_cuts_leave_in_order() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let mut printed = gate.feed(b"one\n\x1bi", now).forward;
    assert_eq!(printed, b"one\n");
    let out = gate.feed(b"two\n\x1bitail", now + ms(30));
    assert_eq!(out.forward, b"", "queued behind the first cut");
    let second = out.held_cuts[0];
    assert_eq!(second.seq(), 1);
    assert_eq!(gate.poll_timeout(), Some(now + BUDGET));

    // The first times out; the second is still within its own budget.
    let out = gate.handle_timeout(now + BUDGET);
    assert_eq!(out.forward, b"\x1bitwo\n");
    printed.extend_from_slice(&out.forward);
    assert_eq!(gate.poll_timeout(), Some(now + ms(80)));
    let out = gate.on_decision(second, Some(BLOCK.to_vec()), now + ms(79));
    printed.extend_from_slice(&out.forward);
    assert_eq!(
        printed,
        with_block_at(b"one\n\x1bitwo\n\x1bitail", 10, BLOCK)
    );
}

#[test]
fn too_many_held_bytes_release_everything_unchanged() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET).with_max_held_bytes(64);
    let (stream, cut_at) = receipt(&[GS, b'V', 0]);
    let out = gate.feed(&stream, now);
    let cut = out.held_cuts[0];
    let mut printed = out.forward;
    assert_eq!(printed, &stream[..cut_at]);

    let flood = vec![b'x'; 64];
    let out = gate.feed(&flood, now + ms(1));
    assert_eq!(
        out.released,
        vec![ReleasedCut {
            cut,
            outcome: CutOutcome::Overflow
        }]
    );
    printed.extend_from_slice(&out.forward);
    let mut all = stream.clone();
    all.extend_from_slice(&flood);
    assert_eq!(printed, all);
    assert_eq!(gate.held_bytes(), 0);
    let out = gate.on_decision(cut, Some(BLOCK.to_vec()), now + ms(2));
    assert_eq!(out.rejected.map(|r| r.reason), Some(RejectReason::Stale));
    assert_eq!(out.forward, b"", "a released cut never gets its block");

    // The gate keeps working after an overflow.
    let out = gate.feed(&[ESC, b'i'], now + ms(3));
    assert_eq!(out.held_cuts.len(), 1);
}

#[test]
fn release_all_hands_over_every_held_byte() {
    let now = Instant::now();
    let mut gate = CutGate::new(DEFAULT_BUDGET);
    let (stream, _) = receipt(&[GS, b'V', 0]);
    let mut printed = gate.feed(&stream, now).forward;
    printed.extend(gate.feed(&[GS], now).forward);
    let out = gate.release_all();
    assert_eq!(out.released[0].outcome, CutOutcome::Flushed);
    printed.extend_from_slice(&out.forward);
    let mut all = stream.clone();
    all.push(GS);
    assert_eq!(printed, all);
    assert_eq!(gate.held_bytes(), 0);
    // The cut completed by the next byte was already begun on the printer: it passes.
    let out = gate.feed(&[b'V', 0], now);
    assert_eq!(out.forward, &[b'V', 0]);
    assert!(out.held_cuts.is_empty());
}

// ---- The invariant, over random streams, chunkings and decision schedules ----

/// Bytes that tend to form (or fake) cuts.
fn tricky_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(GS),
        Just(ESC),
        Just(b'V'),
        Just(b'i'),
        Just(b'm'),
        Just(0u8),
        Just(65u8),
        Just(b'\n'),
        any::<u8>(),
    ]
}

fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[A-Za-z0-9 ,.]{0,20}\n".prop_map(String::into_bytes),
        3 => prop::sample::select(cut_forms()),
        // Raster: x by y bytes of tricky data.
        1 => (1u8..4, 1u8..4, prop::collection::vec(tricky_byte(), 16)).prop_map(|(x, y, data)| {
            let mut bytes = vec![GS, b'v', b'0', 0, x, 0, y, 0];
            bytes.extend_from_slice(&data[..usize::from(x) * usize::from(y)]);
            bytes
        }),
        // QR data store with a tricky payload.
        1 => prop::collection::vec(tricky_byte(), 0..12).prop_map(|payload| {
            let mut bytes = vec![GS, b'(', b'k', (payload.len() + 3) as u8, 0, 49, 80, 48];
            bytes.extend_from_slice(&payload);
            bytes
        }),
        // Code128 with tricky data.
        1 => prop::collection::vec(tricky_byte(), 0..12).prop_map(|data| {
            let mut bytes = vec![GS, b'k', 73, data.len() as u8];
            bytes.extend_from_slice(&data);
            bytes
        }),
        // A one-byte argument that happens to be GS or ESC.
        1 => tricky_byte().prop_map(|n| vec![ESC, b'!', n]),
        // Anything at all.
        1 => prop::collection::vec(tricky_byte(), 0..8),
    ]
}

fn pos_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(segment(), 0..16).prop_map(|segments| segments.concat())
}

/// What the decider does for one cut.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Never,
    Decide { after_ms: u64, block: bool },
}

fn plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        1 => Just(Plan::Never),
        4 => (0u64..80, any::<bool>()).prop_map(|(after_ms, block)| Plan::Decide { after_ms, block }),
    ]
}

fn coupon_for(seq: u64) -> Vec<u8> {
    format!("\x1b@[COUPON {seq}]\n\x1b@").into_bytes()
}

fn reference_cuts(stream: &[u8]) -> Vec<u64> {
    let mut parser = EscPosParser::new(CodePage::Cp437);
    parser.feed(stream);
    std::iter::from_fn(|| parser.poll())
        .filter_map(|e| match e {
            PrintEvent::Cut { offset, .. } => Some(offset),
            _ => None,
        })
        .collect()
}

struct Run {
    printed: Vec<u8>,
    held: Vec<(CutId, Instant)>,
    released: Vec<(ReleasedCut, Instant)>,
}

/// A notice (the `n`th queued): 0xFF marks it, a byte the streams it is tested with
/// never carry.
fn notice_for(n: usize) -> Vec<u8> {
    vec![0xFF, b'N', n as u8, b'\n', 0xFF]
}

/// Drives the gate through `chunks` (fed `gaps_ms` apart) with decisions per `plans`
/// and notices queued `notices_ms` after the start, in simulated time, until nothing is
/// pending; then releases whatever is left.
fn drive(chunks: &[&[u8]], gaps_ms: &[u64], plans: &[Plan], notices_ms: &[u64]) -> Run {
    let start = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    let mut run = Run {
        printed: Vec::new(),
        held: Vec::new(),
        released: Vec::new(),
    };
    let mut feeds = Vec::new();
    let mut t = start;
    for (i, chunk) in chunks.iter().enumerate() {
        t += ms(gaps_ms[i % gaps_ms.len()]);
        feeds.push((t, *chunk));
    }
    let mut feeds = feeds.into_iter().peekable();
    let mut notices: Vec<Instant> = notices_ms.iter().map(|n| start + ms(*n)).collect();
    notices.sort_unstable();
    let mut notices = notices.into_iter().enumerate().peekable();
    let mut decisions: Vec<(Instant, CutId, Option<Vec<u8>>)> = Vec::new();
    loop {
        let next_feed = feeds.peek().map(|(at, _)| *at);
        let next_decision = decisions.iter().map(|(at, ..)| *at).min();
        let next_timeout = gate.poll_timeout();
        let next_notice = notices.peek().map(|(_, at)| *at);
        let Some(now) = [next_feed, next_decision, next_timeout, next_notice]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        let out = if next_timeout == Some(now) {
            let out = gate.handle_timeout(now);
            assert!(
                gate.poll_timeout().is_none_or(|t| t > now),
                "the due timeout was handled"
            );
            out
        } else if next_notice == Some(now) {
            let (n, _) = notices.next().unwrap();
            gate.queue_notice(notice_for(n))
        } else if next_decision == Some(now) {
            let i = decisions.iter().position(|(at, ..)| *at == now).unwrap();
            let (_, cut, block) = decisions.remove(i);
            gate.on_decision(cut, block, now)
        } else {
            let (_, chunk) = feeds.next().unwrap();
            let out = gate.feed(chunk, now);
            // Latency: with no cut held, at most a cut's first bytes wait.
            assert!(gate.is_holding_cut() || gate.held_bytes() <= 3);
            out
        };
        for cut in &out.held_cuts {
            run.held.push((*cut, now));
            if let Plan::Decide { after_ms, block } = plans[cut.seq() as usize % plans.len()] {
                let block = block.then(|| coupon_for(cut.seq()));
                decisions.push((now + ms(after_ms), *cut, block));
            }
        }
        run.released
            .extend(out.released.iter().map(|released| (*released, now)));
        run.printed.extend_from_slice(&out.forward);
    }
    let out = gate.release_all();
    assert!(
        out.released.is_empty(),
        "every cut was decided or timed out"
    );
    run.printed.extend_from_slice(&out.forward);
    run
}

fn chunked<'a>(stream: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = splits.iter().map(|s| s % (stream.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for point in points {
        chunks.push(&stream[from..point]);
        from = point;
    }
    chunks.push(&stream[from..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_bytes_are_the_pos_bytes_plus_blocks_decided_in_time(
        stream in pos_stream(),
        splits in prop::collection::vec(any::<usize>(), 0..12),
        gaps_ms in prop::collection::vec(0u64..40, 1..6),
        plans in prop::collection::vec(plan(), 1..8),
    ) {
        let run = drive(&chunked(&stream, &splits), &gaps_ms, &plans, &[]);

        let cuts = reference_cuts(&stream);
        let held_offsets: Vec<u64> = run.held.iter().map(|(cut, _)| cut.offset()).collect();
        prop_assert_eq!(&held_offsets, &cuts, "every real cut, and only those, is held");

        let mut expected = Vec::new();
        let mut from = 0usize;
        for (seq, &offset) in cuts.iter().enumerate() {
            let offset = offset as usize;
            expected.extend_from_slice(&stream[from..offset]);
            from = offset;
            let outcome = match plans[seq % plans.len()] {
                Plan::Decide { after_ms, block: true } if ms(after_ms) < BUDGET => {
                    expected.extend_from_slice(&coupon_for(seq as u64));
                    CutOutcome::CouponPrinted
                }
                Plan::Decide { after_ms, block: false } if ms(after_ms) < BUDGET => {
                    CutOutcome::Declined
                }
                _ => CutOutcome::TimedOut,
            };
            let (cut, arrived) = run.held[seq];
            let released: Vec<_> = run.released.iter().filter(|(r, _)| r.cut == cut).collect();
            prop_assert_eq!(released.len(), 1, "cut {} released once", seq);
            let (released, at) = released[0];
            prop_assert_eq!(released.outcome, outcome, "cut {}", seq);
            prop_assert!(*at <= arrived + BUDGET, "cut {} held past its budget", seq);
        }
        expected.extend_from_slice(&stream[from..]);
        prop_assert_eq!(run.printed, expected);
    }

    #[test]
    fn without_coupons_the_printer_gets_exactly_the_pos_bytes(
        stream in prop::collection::vec(tricky_byte(), 0..400),
        splits in prop::collection::vec(any::<usize>(), 0..20),
        gaps_ms in prop::collection::vec(0u64..40, 1..6),
        plans in prop::collection::vec(
            prop_oneof![
                Just(Plan::Never),
                (0u64..80).prop_map(|after_ms| Plan::Decide { after_ms, block: false }),
            ],
            1..8,
        ),
    ) {
        let run = drive(&chunked(&stream, &splits), &gaps_ms, &plans, &[]);
        prop_assert_eq!(run.printed, stream);
    }

    #[test]
    fn printed_bytes_are_the_pos_bytes_plus_whole_notices_between_receipts(
        stream in pos_stream(),
        splits in prop::collection::vec(any::<usize>(), 0..12),
        gaps_ms in prop::collection::vec(0u64..40, 1..6),
        plans in prop::collection::vec(
            prop_oneof![
                Just(Plan::Never),
                (0u64..80).prop_map(|after_ms| Plan::Decide { after_ms, block: false }),
            ],
            1..8,
        ),
        notices_ms in prop::collection::vec(0u64..400, 0..5),
    ) {
        // 0xFF marks notices: the POS stream never carries it here.
        let stream: Vec<u8> = stream.iter().map(|&b| if b == 0xFF { 0xFE } else { b }).collect();
        let run = drive(&chunked(&stream, &splits), &gaps_ms, &plans, &notices_ms);

        // Where a notice may go: before any byte, or right after a cut command.
        let mut safe = vec![0usize];
        for offset in reference_cuts(&stream) {
            let at = offset as usize;
            let len = match stream[at + 1] {
                b'i' | b'm' => 2,
                _ if matches!(stream[at + 2], 0 | 1 | 48 | 49) => 3,
                _ => 4,
            };
            safe.push(at + len);
        }
        // Split the printer's bytes into POS bytes and notices.
        let mut pos_bytes = Vec::new();
        let mut found = Vec::new();
        let mut rest = &run.printed[..];
        while let Some(start) = rest.iter().position(|&b| b == 0xFF) {
            pos_bytes.extend_from_slice(&rest[..start]);
            let len = notice_for(0).len();
            prop_assert!(rest.len() >= start + len, "a notice cut short");
            let notice = &rest[start..start + len];
            prop_assert_eq!(notice, &notice_for(found.len())[..], "whole notices, in order");
            found.push(pos_bytes.len());
            rest = &rest[start + len..];
        }
        pos_bytes.extend_from_slice(rest);
        prop_assert_eq!(&pos_bytes, &stream, "the POS bytes are unchanged");
        for at in &found {
            prop_assert!(safe.contains(at), "a notice at offset {} is mid-receipt", at);
        }
        // Every notice is printed when the POS's last bytes end a receipt.
        if safe.last() == Some(&stream.len()) {
            prop_assert_eq!(found.len(), notices_ms.len());
        }
    }
}

#[test]
fn a_notice_waits_for_the_cut_and_goes_right_after_it() {
    let now = Instant::now();
    let mut gate = CutGate::new(BUDGET);
    // Idle before any byte: at once.
    let out = gate.queue_notice(b"N0".to_vec());
    assert_eq!((out.forward, out.notices), (b"N0".to_vec(), 1));
    // Mid-receipt: it waits.
    let out = gate.feed(b"Brood 2,49\n", now);
    assert_eq!(out.forward, b"Brood 2,49\n");
    let out = gate.queue_notice(b"N1".to_vec());
    assert_eq!((out.forward.len(), gate.pending_notices()), (0, 1));
    // The cut arrives with the next receipt's first bytes behind it.
    let out = gate.feed(b"TOTAAL\n\x1dV\x41\x03next", now);
    assert_eq!(out.forward, b"TOTAAL\n");
    let cut = out.held_cuts[0];
    let out = gate.on_decision(cut, Some(b"[C]".to_vec()), now);
    assert_eq!(out.forward, b"[C]\x1dV\x41\x03N1next");
    assert_eq!(out.notices, 1);
    // Idle again right after a cut: at once.
    let out = gate.feed(b"\n\x1bi", now);
    let cut = out.held_cuts[0];
    gate.on_decision(cut, None, now);
    let out = gate.queue_notice(b"N2".to_vec());
    assert_eq!(out.forward, b"N2");
}
