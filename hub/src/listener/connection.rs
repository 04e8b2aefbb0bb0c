//! The IO of one agent connection: read bytes, feed the frame decoder, let the
//! [`HubSession`] decide, perform its steps. Never panics on what the peer sends.
//! Besides the peer's frames, the connection wakes on a new erasure version or digest
//! refresh and sends the agent what it has not got yet. Digest pages go out one frame
//! per turn of the loop, between reads, so a big first download never holds up the
//! agent's ingest; QUIC flow control paces them.

use std::time::Duration;

use quinn::{Connection, Incoming, RecvStream, SendStream};
use rustls_pki_types::CertificateDer;
use till360_shared::campaign::Digest;
use till360_shared::chain::ChainHash;
use till360_shared::codec::{encode_frame, FrameDecoder};
use till360_shared::wire::{CouponVerdict, Message, Refusal, TillHealth};
use till360_shared::{CardNumber, Timestamp};
use tokio::sync::watch;

use super::campaigns::CampaignFeed;
use super::digests::DigestFeed;
use super::erasures::ErasureFeed;
use super::redeemed::RedeemedFeed;
use super::revocation::{Gate, Kick, Ticket};
use super::session::{HubSession, Reply, Step};
use tracing::Instrument;

use super::till_guard::{CardAnswer, TillGuard, TillGuards};
use super::Downlinks;
use crate::digests::customers_since;
use crate::pki::{identity_from_cert_der, CertIdentity};
use crate::store::{StoreError, StoreWriter, TillClock};

/// QUIC application close codes.
pub const CLOSE_DONE: u32 = 0;
pub const CLOSE_REFUSED: u32 = 1;
pub const CLOSE_SHUTDOWN: u32 = 2;

/// How long a peer gets to receive our last frame before the close.
const LINGER: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 64 * 1024;
/// Events gathered from buffered `Events` frames into one commit.
const MAX_GATHERED_EVENTS: usize = 5_000;

/// `stop` turning true ends the connection between two frames: a batch being committed
/// is committed and acknowledged first (the hub's SIGTERM).
pub async fn serve(
    incoming: Incoming,
    writer: StoreWriter,
    downlinks: Downlinks,
    gate: Gate,
    stop: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(err) => {
            tracing::info!("{remote}: handshake refused: {err}");
            return;
        }
    };
    let cert = match certificate_identity(&conn) {
        Ok(cert) => cert,
        Err(reason) => {
            tracing::warn!("{remote}: {reason}");
            conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
            return;
        }
    };
    let agent = cert.agent.clone();
    // Every line about this till, in text and JSON logs, names its store and till.
    let span = tracing::info_span!("till", store = %agent.store, till = %agent.till);
    serve_agent(remote, conn, cert, writer, downlinks, gate, stop)
        .instrument(span)
        .await;
}

/// The rest of [`serve`], once the certificate names the till.
async fn serve_agent(
    remote: std::net::SocketAddr,
    conn: Connection,
    cert: CertIdentity,
    writer: StoreWriter,
    downlinks: Downlinks,
    gate: Gate,
    stop: watch::Receiver<bool>,
) {
    let agent = cert.agent.clone();
    // Revoked or fenced certificates never reach the session.
    let ticket = match gate.admit(cert).await {
        Ok(ticket) => ticket,
        Err(kick) => {
            tracing::warn!(
                "{remote}: agent {agent} refused ({:?}): {}",
                kick.reason,
                kick.detail
            );
            super::revocation::refuse(conn, kick).await;
            return;
        }
    };
    let (send, recv) = match conn.accept_bi().await {
        Ok(streams) => streams,
        Err(err) => {
            tracing::debug!("{remote} ({agent}): closed before opening a stream: {err}");
            return;
        }
    };
    tracing::info!("{remote}: agent {agent} connected");
    let _connected = crate::metrics::ConnectedTill::new();
    let mut link = Link {
        conn,
        send,
        recv,
        writer,
        erasures: downlinks.erasures,
        campaigns: downlinks.campaigns,
        digests: downlinks.digests,
        redeemed: downlinks.redeemed,
        clock_skewed: false,
        tills: downlinks.tills,
        session: HubSession::new(agent.clone()),
        ticket,
        stop,
    };
    match link.run().await {
        Ok(()) => tracing::info!("{remote}: agent {agent} finished"),
        Err(reason) => tracing::info!("{remote}: agent {agent} disconnected: {reason}"),
    }
}

fn certificate_identity(conn: &Connection) -> Result<CertIdentity, String> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no client certificate")?;
    let leaf = certs.first().ok_or("empty client certificate chain")?;
    identity_from_cert_der(leaf).map_err(|e| e.to_string())
}

fn now() -> Timestamp {
    Timestamp::from_utc(chrono::Utc::now(), 0)
}

struct Link {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    writer: StoreWriter,
    erasures: ErasureFeed,
    campaigns: Option<CampaignFeed>,
    digests: DigestFeed,
    redeemed: RedeemedFeed,
    /// The till's clock was off beyond the limit at its last report (warned once).
    clock_skewed: bool,
    tills: TillGuards,
    session: HubSession,
    /// Resolves when the certificate is revoked or fenced while connected.
    ticket: Ticket,
    /// True once the hub is stopping.
    stop: watch::Receiver<bool>,
}

impl Link {
    /// Runs until the peer finishes, the connection drops, or the session refuses.
    async fn run(&mut self) -> Result<(), String> {
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut erasure_version = self.erasures.version();
        let mut erasure_version_open = true;
        let mut digest_generation = self.digests.generation();
        let mut digest_generation_open = true;
        let mut redeemed_version = self.redeemed.version();
        let mut redeemed_version_open = true;
        // A digest page may be due: true after a wake, false once up to date.
        let mut digests_due = true;
        // A step decoded while gathering batches, handled next.
        let mut pending: Option<Step> = None;
        // Stops the connection when the hub stops (its sender gone counts too).
        let mut stop = self.stop.clone();
        loop {
            loop {
                let step = match pending.take() {
                    Some(step) => step,
                    None => match self.next_step(&mut decoder) {
                        Some(step) => step,
                        None => break,
                    },
                };
                let reply = match step {
                    Step::Welcome {
                        journal_last_seq,
                        software,
                    } => {
                        let agent = self.session.agent().clone();
                        // Peer-chosen text: bounded and escaped before it reaches a log.
                        let software: String = software.chars().take(64).collect();
                        tracing::info!(
                            "agent {agent} ({}) journal at seq {journal_last_seq}",
                            software.escape_debug()
                        );
                        let high_water = self.writer.hello(agent, now()).await;
                        self.session.after_hello(high_water)
                    }
                    Step::Ingest(mut events) => {
                        // Batches already buffered behind this one join it: one commit and
                        // one ack for all (the agent pipelines up to its window).
                        let mut claims = Vec::new();
                        while events.len() < MAX_GATHERED_EVENTS {
                            match self.next_step(&mut decoder) {
                                Some(Step::Ingest(more)) => events.extend(more),
                                Some(Step::Chain { last_seq, hash }) => {
                                    claims.push((last_seq, hash))
                                }
                                Some(other) => {
                                    pending = Some(other);
                                    break;
                                }
                                None => break,
                            }
                        }
                        let agent = self.session.agent().clone();
                        let outcome = self.writer.ingest(agent, events, now()).await;
                        // Claims are checked once their events are committed; one for a
                        // seq before the gathered batch's last is ignored by the store.
                        for (last_seq, hash) in claims {
                            self.check_chain(last_seq, hash).await;
                        }
                        self.session.after_ingest(outcome)
                    }
                    Step::Chain { last_seq, hash } => {
                        self.check_chain(last_seq, hash).await;
                        continue;
                    }
                    Step::Health(health) => {
                        self.record_health(health).await;
                        continue;
                    }
                    Step::TillClock { unix_ms } => {
                        self.record_clock(unix_ms).await;
                        continue;
                    }
                    Step::Refuse { reason, detail } => Reply {
                        message: Message::Refused { reason, detail },
                        close: true,
                    },
                    Step::ErasuresApplied { up_to_version } => {
                        tracing::debug!(
                            "agent {}: erasures applied up to version {up_to_version}",
                            self.session.agent()
                        );
                        // A subscribe also lands here: the digest downlink may start.
                        digests_due = true;
                        continue;
                    }
                    Step::DigestRequest { card } => {
                        // Unanswered beyond the till's rate: it uses its cache.
                        if !self.admit() {
                            continue;
                        }
                        let digest = self.digest_for_till(card.clone()).await;
                        self.session.digest_reply(card, digest)
                    }
                    Step::CouponCheck { code } => {
                        if !self.admit() {
                            continue;
                        }
                        let today = chrono::Utc::now().date_naive();
                        let verdict = self.digests.coupon_verdict(code.clone(), today).await;
                        if let Ok(v) = &verdict {
                            let forged = *v == CouponVerdict::Forged;
                            self.guarded(|g, at| ((), g.code(!forged, at)));
                        }
                        self.session.coupon_reply(code, verdict)
                    }
                };
                self.send_reply(reply).await?;
            }
            // After a welcome, an applied batch or a new version: send what is newer.
            // The keyring first: a till recognises erased cards by its card keys.
            self.send_campaigns().await?;
            self.send_redeemed(&mut redeemed_version).await?;
            self.send_erasures(&mut erasure_version).await?;
            if digests_due {
                digests_due = self.send_digest_page().await?;
            }
            tokio::select! {
                // Reads first: the agent's frames never wait behind a digest download.
                // Only a revocation goes before them, so a busy agent cannot delay it.
                biased;
                kick = self.ticket.kicked() => return self.cut(kick).await,
                // Between frames: every batch read so far is committed and acknowledged.
                () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    self.linger_and_close(CLOSE_SHUTDOWN, "hub shutting down").await;
                    return Err("the hub is shutting down".to_string());
                }
                read = self.recv.read(&mut buf) => match read {
                    Ok(Some(n)) => decoder.feed(&buf[..n]),
                    Ok(None) => {
                        if decoder.buffered() > 0 {
                            tracing::warn!(
                                "agent {}: stream ended inside a frame ({} bytes)",
                                self.session.agent(),
                                decoder.buffered()
                            );
                        }
                        self.linger_and_close(CLOSE_DONE, "done").await;
                        return Ok(());
                    }
                    Err(err) => return Err(err.to_string()),
                },
                changed = erasure_version.changed(), if erasure_version_open => {
                    // The poller stopped (hub shutting down): no more pushes.
                    erasure_version_open = changed.is_ok();
                }
                changed = redeemed_version.changed(), if redeemed_version_open => {
                    redeemed_version_open = changed.is_ok();
                }
                changed = digest_generation.changed(), if digest_generation_open => {
                    digest_generation_open = changed.is_ok();
                    digests_due = true;
                }
                // Nothing to read right now: the next page of a download.
                () = std::future::ready(()), if digests_due => {}
            }
        }
    }

    /// The next buffered frame as a session step, `None` when a whole frame is not
    /// buffered yet. A bad frame becomes the session's refusal.
    fn next_step(&mut self, decoder: &mut FrameDecoder) -> Option<Step> {
        match decoder.poll() {
            Ok(Some(msg)) => Some(self.session.handle(msg)),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!("agent {}: bad frame: {err}", self.session.agent());
                Some(self.session.decode_error(&err))
            }
        }
    }

    /// Whether the till's request bucket lets this request through (see `till_guard`).
    fn admit(&mut self) -> bool {
        let admitted = self.guarded(|g, at| (g.admit(at), false));
        if !admitted {
            tracing::debug!(
                "agent {}: request over its rate, not answered",
                self.session.agent()
            );
        }
        admitted
    }

    /// Runs `f` on this till's guard at the hub's clock; `f`'s second value says the till
    /// just became a prober, which is logged.
    fn guarded<T>(&self, f: impl FnOnce(&mut TillGuard, i64) -> (T, bool)) -> T {
        let agent = self.session.agent();
        let at = now().unix_ms;
        let (out, probing) = self.tills.with(agent, at, |g| f(g, at));
        if probing {
            if let Some(p) = self.tills.probing(&agent.store, &agent.till) {
                tracing::warn!(
                    "agent {agent} is probing: {} unknown cards and {} forged codes since {}",
                    p.unknown_cards,
                    p.unknown_codes,
                    p.since
                );
            }
        }
        out
    }

    /// The answer to a digest request: what the card is to this till's store decides
    /// whether its digest is given (see `till_guard`).
    async fn digest_for_till(&mut self, card: CardNumber) -> Result<Option<Digest>, StoreError> {
        let since = customers_since(now(), self.tills.customer_months()).unix_ms;
        let store = self.session.agent().store.clone();
        let (standing, digest) = self.digests.digest_for_store(card, store, since).await?;
        Ok(match self.guarded(|g, at| g.card(standing, at)) {
            CardAnswer::Digest => digest,
            CardAnswer::NoDigest => None,
        })
    }

    /// Records a till's health report; a till in trouble is logged where on-call looks.
    async fn record_health(&mut self, health: TillHealth) {
        let agent = self.session.agent().clone();
        if health.quota_exceeded || health.quarantined > 0 {
            tracing::warn!(
                "agent {agent}: journal {} of {} bytes{}, {} quarantined rows, {} pending events",
                health.journal_bytes,
                health.journal_max_bytes,
                if health.quota_exceeded {
                    " (OVER QUOTA)"
                } else {
                    ""
                },
                health.quarantined,
                health.pending
            );
        }
        if let Err(err) = self.writer.health(agent.clone(), health, now()).await {
            tracing::warn!("agent {agent}: health report not recorded: {err}");
        }
    }

    /// Records how far the till's clock is off; beyond `[coupons] max_clock_skew_secs`
    /// it is logged at warn, once until it is back within (its timestamps are its own; the
    /// hub's commit order decides which redemption of a code counts).
    async fn record_clock(&mut self, till_unix_ms: i64) {
        let agent = self.session.agent().clone();
        let hub = now();
        let max_skew_ms =
            i64::try_from(self.redeemed.max_clock_skew().as_millis()).unwrap_or(i64::MAX);
        let clock = TillClock {
            skew_ms: till_unix_ms.saturating_sub(hub.unix_ms),
            max_skew_ms,
        };
        let skewed = clock.skew_ms.saturating_abs() > max_skew_ms;
        let was_skewed = std::mem::replace(&mut self.clock_skewed, skewed);
        if was_skewed && !skewed {
            tracing::info!("agent {agent}: clock is within the limit again");
        }
        if skewed && !was_skewed {
            tracing::warn!(
                "agent {agent}: clock is off by {} s ({}; [coupons] max_clock_skew_secs = {})",
                clock.skew_ms / 1000,
                if clock.skew_ms < 0 {
                    "behind the hub"
                } else {
                    "ahead of the hub"
                },
                max_skew_ms / 1000
            );
        }
        if let Err(err) = self.writer.clock(agent.clone(), clock, hub).await {
            tracing::warn!("agent {agent}: clock report not recorded: {err}");
        }
    }

    /// Sends the agent's store's redeemed codes it has not got yet, in bounded batches.
    /// A ledger that cannot be read ends the connection as `Unavailable` (the agent
    /// resumes from its version).
    async fn send_redeemed(&mut self, version: &mut watch::Receiver<u64>) -> Result<(), String> {
        let hub_max = *version.borrow_and_update();
        let store = self.session.agent().store.clone();
        // Codes past their expiry are never needed again (a day's grace for time zones).
        let today = chrono::Utc::now().date_naive() - chrono::Days::new(1);
        while let Some((after, limit)) = self.session.poll_redeemed(hub_max) {
            let rows = match self.redeemed.since(&store, after, today, limit).await {
                Ok(rows) => rows,
                Err(err) => {
                    let reply = self.session.redeemed_unavailable(err);
                    return self.send_reply(reply).await;
                }
            };
            let Some(message) = self.session.redeemed_frame(rows, hub_max) else {
                continue;
            };
            if let Message::Redeemed {
                codes,
                up_to_version,
            } = &message
            {
                tracing::debug!(
                    "agent {}: sending {} redeemed codes (up to version {up_to_version})",
                    self.session.agent(),
                    codes.len()
                );
            }
            self.send_reply(Reply {
                message,
                close: false,
            })
            .await?;
        }
        Ok(())
    }

    /// Checks a chain claim against the committed chain. A break is logged and recorded
    /// by the store; a failed check costs only this claim.
    async fn check_chain(&mut self, last_seq: u64, hash: ChainHash) {
        let agent = self.session.agent().clone();
        if let Err(err) = self.writer.chain_claim(agent, last_seq, hash, now()).await {
            tracing::warn!(
                "agent {}: chain claim at seq {last_seq} not checked: {err}",
                self.session.agent()
            );
        }
    }

    /// Sends the erasures the agent has not got yet, in bounded batches within the
    /// session's window. A log that cannot be read ends the connection as `Unavailable`
    /// (the agent reconnects and resumes from its applied version).
    async fn send_erasures(&mut self, version: &mut watch::Receiver<u64>) -> Result<(), String> {
        let hub_version = *version.borrow_and_update();
        while let Some((after, limit)) = self.session.poll_erasures(hub_version) {
            let store = self.session.agent().store.clone();
            let rows = match self.erasures.since(&store, after, limit).await {
                Ok(rows) => rows,
                Err(err) => {
                    let reply = self.session.erasures_unavailable(err);
                    return self.send_reply(reply).await;
                }
            };
            let Some(message) = self.session.erasure_frame(rows, hub_version) else {
                break;
            };
            if let Message::Erasures {
                card_keys,
                up_to_version,
            } = &message
            {
                tracing::info!(
                    "agent {}: sending {} erased card keys (up to version {up_to_version})",
                    self.session.agent(),
                    card_keys.len()
                );
            }
            self.send_reply(Reply {
                message,
                close: false,
            })
            .await?;
        }
        Ok(())
    }

    /// Sends the campaign set and the till's keyring once, if the agent subscribed with
    /// another version than this till's. No campaigns configured: nothing is sent.
    async fn send_campaigns(&mut self) -> Result<(), String> {
        let Some(feed) = self.campaigns.clone() else {
            return Ok(());
        };
        if !self.session.campaigns_pending() {
            return Ok(());
        }
        let agent = self.session.agent().clone();
        let framed = tokio::task::spawn_blocking(move || feed.frame_for(&agent))
            .await
            .map_err(|e| format!("campaign frame task failed: {e}"))?;
        let message = match framed {
            Ok(message) => message,
            Err(err) => {
                let reply = self.session.campaigns_unavailable(err);
                return self.send_reply(reply).await;
            }
        };
        let Message::Campaigns { version, set, .. } = &message else {
            return Ok(());
        };
        if !self.session.campaigns_due(*version) {
            return Ok(());
        }
        // Keys are never logged; the version and count are enough.
        tracing::info!(
            "agent {}: sending {} campaigns (version {}, till frame {version}) and its coupon keyring",
            self.session.agent(),
            set.campaigns.len(),
            set.content_version(),
        );
        self.session.campaigns_sent();
        self.send_reply(Reply {
            message,
            close: false,
        })
        .await
    }

    /// Sends at most one `Digests` frame of the agent's store's rows it has not got.
    /// Returns whether another page may follow. A feed that cannot be read ends the
    /// connection as `Unavailable` (the agent resumes from its version).
    async fn send_digest_page(&mut self) -> Result<bool, String> {
        if !self.session.digests_subscribed() {
            return Ok(false);
        }
        let store = self.session.agent().store.clone();
        let store_max = match self.digests.max_version(&store).await {
            Ok(max) => max,
            Err(err) => {
                let reply = self.session.digests_unavailable(err);
                self.send_reply(reply).await?;
                return Ok(false);
            }
        };
        let Some(poll) = self.session.poll_digests(store_max) else {
            return Ok(false);
        };
        let page = match self.digests.page(&store, poll.after, poll.limit).await {
            Ok(page) => page,
            Err(err) => {
                let reply = self.session.digests_unavailable(err);
                self.send_reply(reply).await?;
                return Ok(false);
            }
        };
        let Some(message) = self.session.digest_frame(page, store_max) else {
            return Ok(true);
        };
        if let Message::Digests {
            entries,
            up_to_version,
            reset,
        } = &message
        {
            // Counts only: digests are personal data.
            tracing::debug!(
                "agent {}: sending {} digests (up to version {up_to_version}, reset {reset})",
                self.session.agent(),
                entries.len()
            );
        }
        self.send_reply(Reply {
            message,
            close: false,
        })
        .await?;
        Ok(true)
    }

    async fn send_reply(&mut self, reply: Reply) -> Result<(), String> {
        if let Message::Refused { reason, detail } = &reply.message {
            crate::metrics::record_refusal(*reason);
            tracing::warn!(
                "agent {}: refused ({reason:?}): {detail}",
                self.session.agent()
            );
        }
        let frame = match encode_frame(&reply.message) {
            Ok(frame) => frame,
            Err(err) => {
                // Only a huge detail string could do this; the close reason still says why.
                tracing::error!("cannot encode {}: {err}", reply.message.name());
                Vec::new()
            }
        };
        self.send
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())?;
        if reply.close {
            let reason = match &reply.message {
                Message::Refused { reason, detail } => refusal_text(*reason, detail),
                other => other.name().to_string(),
            };
            self.linger_and_close(CLOSE_REFUSED, &reason).await;
            return Err(reason);
        }
        Ok(())
    }

    /// Ends a connection whose certificate was revoked or fenced: the refusal, then
    /// the close, even if the agent does not read (its window full).
    async fn cut(&mut self, kick: Kick) -> Result<(), String> {
        let reason = refusal_text(kick.reason, &kick.detail);
        let refusal = Reply {
            message: Message::Refused {
                reason: kick.reason,
                detail: kick.detail,
            },
            close: true,
        };
        let _ = tokio::time::timeout(LINGER * 2, self.send_reply(refusal)).await;
        self.conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
        Err(reason)
    }

    /// Finishes our side, gives the peer a moment to receive what was written (the last
    /// ack or the refusal), then closes; the close reason repeats it in case it did not.
    async fn linger_and_close(&mut self, code: u32, reason: &str) {
        let _ = self.send.finish();
        let _ = tokio::time::timeout(LINGER, self.send.stopped()).await;
        self.conn.close(code.into(), reason.as_bytes());
    }
}

pub(super) fn refusal_text(reason: Refusal, detail: &str) -> String {
    // QUIC close reasons must fit a packet.
    let mut text = format!("{reason:?}: {detail}");
    if text.len() > 512 {
        let mut cut = 512;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
