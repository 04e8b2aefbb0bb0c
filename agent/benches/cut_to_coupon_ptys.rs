//! Issue 4's latency figure through the RUNNING agent: cut byte in → coupon bytes out,
//! over real pseudo-terminals.
//!
//! Setup (not timed): a journal on disk holding the campaign state the hub would push
//! (50 campaigns, keyring, catalog) and 100,000 digests keyed by card key; three ptys
//! (scanner, POS, printer); a [`RunningAgent`] without `[hub]` on the supermarket layout.
//!
//! Per receipt (the generated receipts of `coupon_at_cut`, a warm-up first): the bench
//! paces the till core so a receipt never queues behind the previous one's journaling —
//! a carded receipt's card is scanned and the bench waits until the journal holds that
//! card scan (so the card belongs to this receipt); an anonymous receipt is preceded by
//! a forged coupon code, which the till core journals as refused, for the same reason.
//! Then the receipt goes to the POS pty in its random 1..=128-byte chunks. The clock
//! starts when the write of the chunk holding the cut's last byte returns and stops
//! when the reader thread on the printer pty has parsed that cut (the gate releases the
//! coupon block and the cut in one write). Every printed receipt is checked: the POS
//! bytes unchanged, or with exactly one block inserted right before the cut. At the end
//! the journal is audited: one receipt per receipt with its card and total, and every
//! printed coupon journaled with a code whose barcode is in the block.
//!
//! Baseline from the same run: the same receipts through two fresh ptys and a plain copy
//! thread (the agent's port layer, no gate, no till core). Also the agent with
//! `[coupons] enabled = false` (the proxy never holds a cut), and the one disk write in
//! the window of a printed coupon, `Journal::next_coupon_serial`, timed on its own.
//!
//! `cargo bench -p till360-agent --bench cut_to_coupon_ptys`. Deterministic input.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use till360_agent::config::AgentConfig;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_agent::journal::Journal;
use till360_agent::ports::{write_fully, PortSpec};
use till360_agent::runtime::RunningAgent;
use till360_shared::coupon::{mint, CouponFields, TillKey};
use till360_shared::wire::DigestEntry;
use till360_shared::{AgentId, CardNumber, EventKind};

mod support;

use support::{
    campaign_state, generate_campaigns, generate_digests, generate_receipt, report,
    GeneratedReceipt, Rng, CAMPAIGNS, CUT, ESC, GOAL, MAX_CHUNK, STORE, TILL, TILL_NUMBER,
};

const RECEIPTS: usize = 10_000;
const WARM_UP: usize = 200;
/// The agent's default `[coupons] budget_ms`: a decision later than this prints no coupon.
const BUDGET: Duration = Duration::from_millis(50);
/// A deadlock guard for waits, not a timing assertion.
const GIVE_UP: Duration = Duration::from_secs(20);
/// How long one readiness probe waits before it is sent again (opening a tty flushes
/// what was written to it before).
const PROBE_WAIT: Duration = Duration::from_millis(300);
const PROBES: u8 = 50;
/// How often the printer reader looks at the stop flag while nothing comes.
const POLL_MS: i32 = 200;

/// A pseudo-terminal pair in raw mode: the bench holds the master, the agent opens the
/// slave by its path.
struct Pty {
    master: File,
    /// Kept open so the pair lives as long as the bench.
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn new() -> anyhow::Result<Pty> {
        let pair = openpty(None, None).context("openpty")?;
        // Raw before any byte moves, or the line discipline echoes and translates.
        let mut termios = tcgetattr(&pair.slave).context("tcgetattr")?;
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).context("tcsetattr")?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd()))
            .context("pty slave path")?;
        Ok(Pty {
            master: File::from(pair.master),
            _slave: pair.slave,
            path,
        })
    }

    fn spec(&self) -> PortSpec {
        PortSpec::Path {
            path: self.path.clone(),
            baud: 115_200,
        }
    }
}

/// What the printer reader saw up to and including one cut.
struct Printed {
    /// When the read that completed the cut returned.
    at: Instant,
    bytes: Vec<u8>,
}

/// Reads the printer pty's master until `stop`, sending the bytes of each cut-ended
/// piece with the time its last read returned. The agent's own ESC/POS parser finds the
/// cuts, so barcode data that happens to look like a cut is not one.
struct PrinterReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    printed: Receiver<Printed>,
}

impl PrinterReader {
    fn start(master: File) -> anyhow::Result<PrinterReader> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, printed) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("printer-reader".into())
            .spawn(move || {
                let mut master = master;
                let mut parser = EscPosParser::new(CodePage::Cp858);
                let mut piece = Vec::with_capacity(4096);
                let mut buf = [0u8; 4096];
                while !flag.load(Ordering::SeqCst) {
                    let mut pfd = libc::pollfd {
                        fd: master.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    if unsafe { libc::poll(&mut pfd, 1, POLL_MS) } <= 0 {
                        continue;
                    }
                    let n = match master.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let at = Instant::now();
                    piece.extend_from_slice(&buf[..n]);
                    parser.feed(&buf[..n]);
                    while let Some(event) = parser.poll() {
                        if matches!(event, PrintEvent::Cut { .. }) {
                            let bytes = std::mem::take(&mut piece);
                            if tx.send(Printed { at, bytes }).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .context("starting the printer reader")?;
        Ok(PrinterReader {
            stop,
            thread: Some(thread),
            printed,
        })
    }

    fn next(&self, within: Duration) -> Result<Printed, RecvTimeoutError> {
        self.printed.recv_timeout(within)
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A cut without text (not journaled, nothing to decide) marked by `ESC ! n`, sent
/// until the printer side shows it: then the path POS → printer is open.
fn wait_until_printing(pos: &mut File, printer: &PrinterReader) -> anyhow::Result<()> {
    for n in 0..PROBES {
        let probe = [&[ESC, b'!', n][..], &CUT].concat();
        pos.write_all(&probe)
            .context("writing a probe to the POS pty")?;
        let deadline = Instant::now() + PROBE_WAIT;
        // Pty bytes stay in order: an older probe that was not flushed comes first.
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match printer.next(left) {
                Ok(printed) if printed.bytes == probe => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => bail!("the printer reader stopped"),
            }
        }
    }
    bail!("nothing reached the printer after {PROBES} probes")
}

/// The receipt as printed: the POS bytes, or the POS bytes with one block before the cut.
fn coupon_block_of<'a>(
    r: &GeneratedReceipt,
    printed: &'a [u8],
) -> anyhow::Result<Option<&'a [u8]>> {
    if printed == r.bytes.as_slice() {
        return Ok(None);
    }
    let body = &r.bytes[..r.bytes.len() - CUT.len()];
    ensure!(
        printed.len() > r.bytes.len() && printed.starts_with(body) && printed.ends_with(&CUT),
        "printed {} bytes that are not the receipt's {} (with or without a block before the cut)",
        printed.len(),
        r.bytes.len()
    );
    let block = &printed[body.len()..printed.len() - CUT.len()];
    // A coupon block starts from a printer reset (it restores the POS's modes after).
    ensure!(
        block.starts_with(&[ESC, b'@']),
        "inserted bytes are not a coupon block"
    );
    Ok(Some(block))
}

/// Latencies of one run and what was printed.
#[derive(Default)]
struct Run {
    all: Vec<Duration>,
    printed: Vec<Duration>,
    no_coupon: Vec<Duration>,
    /// Coupon block per receipt (warm-up included), for the journal audit.
    blocks: Vec<Option<Vec<u8>>>,
    over_budget: usize,
    elapsed: Duration,
}

impl Run {
    fn coupons(&self) -> usize {
        self.blocks.iter().filter(|b| b.is_some()).count()
    }
}

/// Writes one receipt in its chunks and times its cut: from the return of the write
/// holding the cut's last byte to the printer reader seeing that cut.
fn print_receipt(
    pos: &mut File,
    printer: &PrinterReader,
    r: &GeneratedReceipt,
) -> anyhow::Result<(Duration, Vec<u8>)> {
    let mut at = 0;
    for &len in &r.chunks {
        pos.write_all(&r.bytes[at..at + len])
            .context("writing to the POS pty")?;
        at += len;
    }
    let start = Instant::now();
    let printed = printer
        .next(GIVE_UP)
        .context("the receipt's cut never reached the printer")?;
    Ok((printed.at.saturating_duration_since(start), printed.bytes))
}

/// The agent under test with its ptys and journal.
struct AgentUnderTest {
    runtime: tokio::runtime::Runtime,
    agent: Option<RunningAgent>,
    scanner: File,
    pos: File,
    printer: PrinterReader,
    /// Keeps the ptys open while the agent runs.
    _ptys: [Pty; 3],
    /// Journal seqs up to here were looked at.
    checked_seq: u64,
    /// A well-formed own-store code with a wrong signature: journaled as refused at once.
    forged: String,
}

impl AgentUnderTest {
    fn start(
        dir: &Path,
        layout: &Path,
        coupons_enabled: bool,
        forged: String,
    ) -> anyhow::Result<Self> {
        let [scanner, pos, printer] = [Pty::new()?, Pty::new()?, Pty::new()?];
        let text = format!(
            r#"
store = "{STORE}"
till = "{TILL}"
data_dir = "data"

[scanner]
port = "{}"
suffix = "cr"

[pos]
port = "{}"
codepage = "cp858"
layout = "{}"

[printer]
port = "{}"

[cards]
prefixes = ["2403"]

[coupons]
enabled = {coupons_enabled}
budget_ms = {}
columns = 48
expiry_label = "Geldig t/m"
"#,
            scanner.path.display(),
            pos.path.display(),
            layout.display(),
            printer.path.display(),
            BUDGET.as_millis()
        );
        let config = AgentConfig::from_toml_str(&text, &dir.join("agent.toml"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let agent = {
            let _inside = runtime.enter();
            RunningAgent::start(config)?
        };
        let reader = PrinterReader::start(printer.master.try_clone()?)?;
        let mut this = AgentUnderTest {
            runtime,
            agent: Some(agent),
            scanner: scanner.master.try_clone()?,
            pos: pos.master.try_clone()?,
            printer: reader,
            _ptys: [scanner, pos, printer],
            checked_seq: 0,
            forged,
        };
        wait_until_printing(&mut this.pos, &this.printer)?;
        this.wait_until_scanning()?;
        Ok(this)
    }

    fn agent(&self) -> anyhow::Result<&RunningAgent> {
        self.agent.as_ref().context("the agent was stopped")
    }

    /// Sends the forged code until its refusal is journaled: the scanner port is open.
    fn wait_until_scanning(&mut self) -> anyhow::Result<()> {
        for _ in 0..PROBES {
            let scan = format!("{}\r", self.forged);
            self.scanner.write_all(scan.as_bytes())?;
            let forged = self.forged.clone();
            if self.wait_journaled(PROBE_WAIT, |k| is_refusal_of(k, &forged))? {
                return Ok(());
            }
        }
        bail!("no scan reached the journal after {PROBES} probes")
    }

    /// Waits (at most `within`) until the journal holds an event after the ones already
    /// looked at that `wanted` recognises. Everything queued before it is done then:
    /// the till core handles its inputs in order.
    fn wait_journaled(
        &mut self,
        within: Duration,
        wanted: impl Fn(&EventKind) -> bool,
    ) -> anyhow::Result<bool> {
        let agent = self.agent()?;
        let journal = agent.journal().context("the journal is not open")?;
        let mut seq = agent.journal_seq();
        let deadline = Instant::now() + within;
        let mut checked = self.checked_seq;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(false);
            };
            let changed = self.runtime.block_on(async {
                tokio::time::timeout(left, seq.wait_for(|s| *s > checked))
                    .await
                    .map(|r| r.is_ok())
            });
            match changed {
                Err(_) => return Ok(false),
                Ok(false) => bail!("the agent's journal seq is gone"),
                Ok(true) => {}
            }
            let events = journal
                .lock()
                .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?
                .read_from(checked + 1, 1000)?;
            for event in events {
                checked = event.seq;
                if wanted(&event.kind) {
                    self.checked_seq = checked;
                    return Ok(true);
                }
            }
            self.checked_seq = checked;
        }
    }

    /// Scans the receipt's card (or the forged code for an anonymous one) and waits
    /// until the till core has journaled it.
    fn pace(&mut self, card: Option<&CardNumber>) -> anyhow::Result<()> {
        let scan = match card {
            Some(card) => format!("{}\r", card.as_str()),
            None => format!("{}\r", self.forged),
        };
        self.scanner.write_all(scan.as_bytes())?;
        let forged = self.forged.clone();
        let journaled = self.wait_journaled(GIVE_UP, |kind| match (card, kind) {
            (Some(card), EventKind::CardScanned { card: scanned }) => scanned == card,
            (None, kind) => is_refusal_of(kind, &forged),
            _ => false,
        })?;
        ensure!(journaled, "the scan was not journaled within {GIVE_UP:?}");
        Ok(())
    }

    fn run(&mut self, receipts: &[GeneratedReceipt], warm_up: usize) -> anyhow::Result<Run> {
        let mut run = Run::default();
        let started = Instant::now();
        for (i, r) in receipts.iter().enumerate() {
            self.pace(r.card.as_ref())?;
            let (elapsed, printed) = print_receipt(&mut self.pos, &self.printer, r)?;
            let block = coupon_block_of(r, &printed).with_context(|| format!("receipt {i}"))?;
            run.blocks.push(block.map(<[u8]>::to_vec));
            if i < warm_up {
                continue;
            }
            run.all.push(elapsed);
            if block.is_some() {
                run.printed.push(elapsed);
            } else {
                run.no_coupon.push(elapsed);
            }
            if elapsed >= BUDGET {
                run.over_budget += 1;
            }
        }
        run.elapsed = started.elapsed();
        Ok(run)
    }

    fn shutdown(mut self) -> Option<Arc<Mutex<Journal>>> {
        let agent = self.agent.take()?;
        let journal = agent.journal();
        self.runtime.block_on(agent.shutdown());
        self.printer.stop();
        journal
    }
}

fn is_refusal_of(kind: &EventKind, forged: &str) -> bool {
    matches!(kind, EventKind::CouponRefused { code, .. } if code == forged)
}

/// What the journal says about the run.
#[derive(Default)]
struct Audit {
    receipts: usize,
    issued: usize,
    would_have: usize,
}

/// Checks the journal against the receipts sent and what was printed: one receipt event
/// per receipt, in order, with its card and total; coupons journaled exactly for the
/// receipts that got a block, each code's barcode in that block.
fn audit(
    journal: &Mutex<Journal>,
    receipts: &[GeneratedReceipt],
    blocks: &[Option<Vec<u8>>],
) -> anyhow::Result<Audit> {
    let journal = journal
        .lock()
        .map_err(|_| anyhow::anyhow!("journal lock poisoned"))?;
    let events = journal.read_from(1, usize::MAX)?;
    let mut audit = Audit::default();
    let mut receipt_seqs = Vec::with_capacity(receipts.len());
    let mut codes: HashMap<u64, Vec<String>> = HashMap::new();
    for event in &events {
        match &event.kind {
            EventKind::Receipt(journaled) => {
                let Some(r) = receipts.get(receipt_seqs.len()) else {
                    bail!("more receipts journaled than sent");
                };
                ensure!(
                    journaled.card == r.card && journaled.total_cents == r.total_cents,
                    "receipt {} journaled with card {:?} total {}, sent with {:?} {}",
                    receipt_seqs.len(),
                    journaled.card,
                    journaled.total_cents,
                    r.card,
                    r.total_cents
                );
                receipt_seqs.push(event.seq);
            }
            EventKind::CouponIssued(issue) => {
                let code = issue
                    .code
                    .clone()
                    .context("an issued coupon without a code")?;
                codes.entry(issue.receipt_seq).or_default().push(code);
            }
            EventKind::CouponWouldHave(_) => audit.would_have += 1,
            _ => {}
        }
    }
    ensure!(
        receipt_seqs.len() == receipts.len(),
        "{} receipts journaled, {} sent",
        receipt_seqs.len(),
        receipts.len()
    );
    for (i, (seq, block)) in receipt_seqs.iter().zip(blocks).enumerate() {
        let issued = codes.remove(seq).unwrap_or_default();
        match block {
            None => ensure!(
                issued.is_empty(),
                "receipt {i}: coupons journaled, none printed"
            ),
            Some(block) => {
                ensure!(
                    !issued.is_empty(),
                    "receipt {i}: a block printed, no coupon journaled"
                );
                for code in &issued {
                    let barcode = barcode_of(code)?;
                    ensure!(
                        block.windows(barcode.len()).any(|w| w == barcode),
                        "receipt {i}: coupon {code} is not in the printed block"
                    );
                }
            }
        }
        audit.issued += issued.len();
    }
    ensure!(
        codes.is_empty(),
        "coupons journaled for no receipt: {codes:?}"
    );
    audit.receipts = receipt_seqs.len();
    Ok(audit)
}

/// Code128 set C data of a coupon code, as the block's `GS k 73` barcode carries it.
fn barcode_of(code: &str) -> anyhow::Result<Vec<u8>> {
    ensure!(
        code.len().is_multiple_of(2) && code.bytes().all(|b| b.is_ascii_digit()),
        "coupon code {code:?} is not an even number of digits"
    );
    let mut data = b"{C".to_vec();
    data.extend(
        code.as_bytes()
            .chunks(2)
            .map(|p| (p[0] - b'0') * 10 + (p[1] - b'0')),
    );
    Ok(data)
}

/// The same receipts through two fresh ptys and one thread copying POS → printer with
/// the agent's port layer: what the ptys and a thread hop cost on their own.
fn run_baseline(receipts: &[GeneratedReceipt], warm_up: usize) -> anyhow::Result<Vec<Duration>> {
    let (pos, printer) = (Pty::new()?, Pty::new()?);
    // Opened here, before any byte is written: opening a tty flushes its input.
    let mut from = pos.spec().open()?;
    let mut to = printer.spec().open()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let copier = std::thread::Builder::new()
        .name("plain-copy".into())
        .spawn(move || -> anyhow::Result<()> {
            let keep_going = || !flag.load(Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            while keep_going() {
                if let Some(n) = from.read_chunk(&mut buf)? {
                    write_fully(to.as_mut(), &buf[..n], &keep_going).map_err(|(_, e)| e)?;
                }
            }
            Ok(())
        })?;
    let reader = PrinterReader::start(printer.master.try_clone()?)?;
    let mut writer = pos.master.try_clone()?;
    let mut times = Vec::with_capacity(receipts.len());
    for (i, r) in receipts.iter().enumerate() {
        let (elapsed, printed) = print_receipt(&mut writer, &reader, r)?;
        ensure!(
            printed == r.bytes,
            "baseline receipt {i}: copy is not exact"
        );
        if i >= warm_up {
            times.push(elapsed);
        }
    }
    stop.store(true, Ordering::SeqCst);
    match copier.join() {
        Ok(result) => result?,
        Err(_) => bail!("the copy thread panicked"),
    }
    reader.stop();
    Ok(times)
}

/// The one disk write inside the cut's window when a coupon prints: the journal's
/// committed serial (a fresh journal, one call per coupon printed in the run).
fn time_serials(data_dir: &Path, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let mut journal = Journal::open(data_dir, &AgentId::new(STORE, TILL))?;
    let today = chrono::Local::now().date_naive();
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        // Spread over campaigns and expiry days as the run's coupons are.
        let campaign = 1 + (i % CAMPAIGNS) as u16;
        let expires = today + chrono::Days::new(7 + (i % 24) as u64);
        let start = Instant::now();
        journal.next_coupon_serial(campaign, expires)?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// Journal with the campaign state and digest cache as the uplink would have stored them.
fn prepare_journal(
    data_dir: &Path,
    campaigns: &till360_shared::campaign::CampaignSet,
    digests: &HashMap<CardNumber, till360_shared::campaign::Digest>,
) -> anyhow::Result<()> {
    let state = campaign_state(campaigns);
    let entries: Vec<DigestEntry> = digests
        .iter()
        .map(|(card, digest)| DigestEntry {
            card_key: state.keyring.card_key(card),
            digest: Some(digest.clone()),
        })
        .collect();
    let mut journal = Journal::open(data_dir, &AgentId::new(STORE, TILL))?;
    journal.store_campaigns(&state)?;
    journal.apply_digests(&entries, 1, true)?;
    Ok(())
}

/// A code in this store's format for till 1, signed with a key that is not the till's.
fn forged_code() -> anyhow::Result<String> {
    let wrong = TillKey::from_bytes([0x5A; 32]);
    let expires = chrono::Local::now().date_naive() + chrono::Days::new(30);
    let fields = CouponFields::new(1, TILL_NUMBER, expires, 0)?;
    Ok(mint(&wrong, &fields).as_str().to_string())
}

fn p99(times: &[Duration]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    support::percentile_us(&sorted, 0.99)
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/receipts/supermarket.toml");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let campaigns = generate_campaigns(&mut rng);
    let digests = generate_digests(&mut rng, &campaigns);
    let receipts: Vec<GeneratedReceipt> = (0..WARM_UP + RECEIPTS)
        .map(|n| generate_receipt(&mut rng, n))
        .collect();
    let bytes: usize = receipts[WARM_UP..].iter().map(|r| r.bytes.len()).sum();
    let chunks: usize = receipts[WARM_UP..].iter().map(|r| r.chunks.len()).sum();
    println!(
        "cut_to_coupon_ptys: {RECEIPTS} receipts ({bytes} bytes in {chunks} chunks of \
         1..={MAX_CHUNK}) after a {WARM_UP}-receipt warm-up, {CAMPAIGNS} campaigns, {} \
         digests in the journal; clock: write of the chunk with the cut's last byte → \
         the printer pty's reader sees that cut",
        digests.len()
    );
    let forged = forged_code()?;

    let dir = tempfile::tempdir()?;
    let on_dir = dir.path().join("coupons-on");
    prepare_journal(&on_dir.join("data"), &campaigns, &digests)?;
    println!("setup: {:.1} s", started.elapsed().as_secs_f64());

    let mut agent = AgentUnderTest::start(&on_dir, &layout, true, forged.clone())?;
    let run = agent.run(&receipts, WARM_UP)?;
    let journal = agent
        .shutdown()
        .context("the agent's journal was never open")?;
    let audited = audit(&journal, &receipts, &run.blocks)?;
    drop(journal);
    println!(
        "agent, coupons on: {} receipts in {:.1} s (with pacing scans and journaling); \
         {} with a coupon printed ({} measured), {} coupons and {} would-have journaled \
         (warm-up included); {} at or over the {} ms budget",
        audited.receipts,
        run.elapsed.as_secs_f64(),
        run.coupons(),
        run.printed.len(),
        audited.issued,
        audited.would_have,
        run.over_budget,
        BUDGET.as_millis()
    );

    // The same store with coupons switched off: campaigns and digests held, none decided.
    let off_dir = dir.path().join("coupons-off");
    prepare_journal(&off_dir.join("data"), &campaigns, &digests)?;
    let mut agent = AgentUnderTest::start(&off_dir, &layout, false, forged)?;
    let off = agent.run(&receipts, WARM_UP)?;
    ensure!(
        off.coupons() == 0,
        "coupons printed with [coupons] enabled = false"
    );
    let journal = agent
        .shutdown()
        .context("the agent's journal was never open")?;
    let audited_off = audit(&journal, &receipts, &off.blocks)?;
    drop(journal);
    ensure!(
        audited_off.issued == 0 && audited_off.would_have == 0,
        "coupons journaled with [coupons] enabled = false"
    );
    println!(
        "agent, coupons off: {} receipts in {:.1} s",
        audited_off.receipts,
        off.elapsed.as_secs_f64()
    );

    let baseline = run_baseline(&receipts, WARM_UP)?;
    let serials = time_serials(&dir.path().join("serials"), run.printed.len())?;

    report("agent cut→coupon, all receipts", &run.all);
    report("agent cut→coupon, coupon printed", &run.printed);
    report("agent cut→coupon, no coupon", &run.no_coupon);
    report("journal next_coupon_serial alone", &serials);
    report("agent, [coupons] enabled = false", &off.all);
    report("baseline plain copy thread over ptys", &baseline);
    let p99 = p99(&run.all);
    let goal = GOAL.as_micros() as f64;
    println!(
        "goal p99 <= {goal:.0} us: {} (agent p99 {p99:.1} us)",
        if p99 <= goal { "met" } else { "NOT met" }
    );
    println!("bench ran in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
