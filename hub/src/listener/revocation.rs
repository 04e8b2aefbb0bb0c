//! Who may stay connected: the [`Gate`] admits a connection by its certificate and can
//! cut it later. A certificate on the PKI's revocation list is refused `Revoked`, at
//! connect and — within [`REVOCATION_POLL`] of `ca revoke` — on an open connection. A
//! certificate with a lower epoch than the highest the hub has seen for its till is
//! refused `Fenced`: once a re-provisioned till connects, a clone holding the old
//! certificate can no longer write, and an old connection still open is closed.
//!
//! The decisions ([`admission`], [`revoked_among`], [`fenced_by`]) are pure; the gate
//! holds the state (list, epochs in the hub database's `till_epochs` through
//! `store::pki`, live connections).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use quinn::Connection;
use thiserror::Error;
use till360_shared::codec::encode_frame;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, Timestamp};
use tokio::sync::watch;

use super::connection::{refusal_text, CLOSE_REFUSED};
use crate::pki::{CertIdentity, PkiError, RevocationList};
use crate::store::{pki, Database, StoreError};

/// How often the hub looks at the revocation list for changes.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How long a refused agent gets to open its stream and read the refusal.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum GateError {
    #[error(transparent)]
    List(#[from] PkiError),
    #[error("{database}: till_epochs: {source}")]
    Db {
        database: String,
        source: StoreError,
    },
}

/// Why a connection is refused or cut: what the agent is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub reason: Refusal,
    pub detail: String,
}

/// Whether `cert` may connect, given the list and the highest epoch seen for its till.
pub fn admission(
    list: &RevocationList,
    highest_epoch: u64,
    cert: &CertIdentity,
) -> Result<(), Kick> {
    if let Some(entry) = list.revoking(cert) {
        return Err(Kick {
            reason: Refusal::Revoked,
            detail: entry.describe(),
        });
    }
    if cert.epoch < highest_epoch {
        return Err(fenced(cert, highest_epoch));
    }
    Ok(())
}

fn fenced(cert: &CertIdentity, newer: u64) -> Kick {
    Kick {
        reason: Refusal::Fenced,
        detail: format!(
            "certificate epoch {} of {} is older than epoch {newer}: the till was re-provisioned",
            cert.epoch, cert.agent
        ),
    }
}

/// The live connections (id, certificate) that `list` revokes, with what to tell them.
pub fn revoked_among<'a>(
    list: &RevocationList,
    live: impl IntoIterator<Item = (u64, &'a CertIdentity)>,
) -> Vec<(u64, Kick)> {
    live.into_iter()
        .filter_map(|(id, cert)| {
            let entry = list.revoking(cert)?;
            Some((
                id,
                Kick {
                    reason: Refusal::Revoked,
                    detail: entry.describe(),
                },
            ))
        })
        .collect()
}

/// The live connections of `newer`'s till with an older epoch.
pub fn fenced_by<'a>(
    newer: &CertIdentity,
    live: impl IntoIterator<Item = (u64, &'a CertIdentity)>,
) -> Vec<(u64, Kick)> {
    live.into_iter()
        .filter(|(_, cert)| cert.agent == newer.agent && cert.epoch < newer.epoch)
        .map(|(id, cert)| (id, fenced(cert, newer.epoch)))
        .collect()
}

/// The live connections `newer` replaces: one certificate identity (till and epoch)
/// has one live connection, the newest.
pub fn replaced_by<'a>(
    newer: &CertIdentity,
    live: impl IntoIterator<Item = (u64, &'a CertIdentity)>,
) -> Vec<(u64, Kick)> {
    live.into_iter()
        .filter(|(_, cert)| cert.agent == newer.agent && cert.epoch == newer.epoch)
        .map(|(id, _)| {
            (
                id,
                Kick {
                    reason: Refusal::Unavailable,
                    detail: "replaced by a newer connection with the same certificate".into(),
                },
            )
        })
        .collect()
}

/// Identifies a version of the list file: a rewrite (rename) or append changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

struct Live {
    cert: CertIdentity,
    kick: watch::Sender<Option<Kick>>,
}

struct State {
    list: RevocationList,
    list_stamp: Option<FileStamp>,
    epochs: HashMap<AgentId, u64>,
    db: Database,
    live: HashMap<u64, Live>,
    next_id: u64,
    /// Rereads of a changed list that failed (the previous list was kept).
    rejected_reads: u64,
}

impl State {
    fn kick(&self, kicks: Vec<(u64, Kick)>) {
        for (id, kick) in kicks {
            if let Some(live) = self.live.get(&id) {
                tracing::warn!(
                    "agent {}: closing its connection ({:?}): {}",
                    live.cert.agent,
                    kick.reason,
                    kick.detail
                );
                live.kick.send_replace(Some(kick));
            }
        }
    }

    fn live_certs(&self) -> impl Iterator<Item = (u64, &CertIdentity)> {
        self.live.iter().map(|(id, live)| (*id, &live.cert))
    }

    fn record_epoch(&mut self, agent: &AgentId, epoch: u64) -> Result<(), String> {
        let now = Timestamp::from_utc(chrono::Utc::now(), 0);
        self.db
            .get()
            .and_then(|conn| pki::record_till_epoch(&*conn, agent, epoch, now))
            .map_err(|e| format!("{}: till_epochs: {e}", self.db.name()))?;
        self.epochs.insert(agent.clone(), epoch);
        Ok(())
    }

    /// A sign of a cloned certificate: logged at warn and kept for `GET /api/v1/agents`.
    fn certificate_alert(&self, agent: &AgentId, reason: &str, detail: &str) {
        tracing::warn!("agent {agent}: {detail}");
        let now = Timestamp::from_utc(chrono::Utc::now(), 0);
        let recorded = self
            .db
            .get()
            .and_then(|conn| pki::record_certificate_alert(&*conn, agent, reason, detail, now));
        if let Err(err) = recorded {
            tracing::error!("{}: agent_alerts: {err}", self.db.name());
        }
    }
}

/// The admission state shared by the accept loop, every connection and the watcher.
#[derive(Clone)]
pub struct Gate {
    list_path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Gate {
    /// Reads the revocation list at `list_path` (missing: nothing revoked; unreadable:
    /// an error, the hub does not start) and the epochs seen from the hub's database.
    /// Blocking.
    pub fn open(list_path: &Path, db: Database) -> Result<Gate, GateError> {
        let list_stamp = stamp(list_path);
        let list = RevocationList::load(list_path)?;
        let epochs = db
            .get()
            .and_then(|conn| pki::till_epochs(&*conn))
            .map_err(|source| GateError::Db {
                database: db.name().to_string(),
                source,
            })?;
        if !list.entries().is_empty() {
            tracing::info!(
                "revocation list {}: {} entries",
                list_path.display(),
                list.entries().len()
            );
        }
        Ok(Gate {
            list_path: list_path.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                list,
                list_stamp,
                epochs,
                db,
                live: HashMap::new(),
                next_id: 0,
                rejected_reads: 0,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tills with a live connection to this hub now, with the epoch of its
    /// certificate (the console's till list).
    pub fn connected(&self) -> BTreeMap<AgentId, u64> {
        let state = self.lock();
        let mut out = BTreeMap::new();
        for live in state.live.values() {
            let epoch = out.entry(live.cert.agent.clone()).or_insert(0);
            *epoch = live.cert.epoch.max(*epoch);
        }
        out
    }

    /// The revocation list as last read.
    pub fn revocations(&self) -> Vec<crate::pki::revocations::Revoked> {
        self.lock().list.entries().to_vec()
    }

    /// The highest epoch seen for `agent` (0: none).
    pub fn highest_epoch(&self, agent: &AgentId) -> u64 {
        self.lock().epochs.get(agent).copied().unwrap_or(0)
    }

    /// Admits `cert` or says why not. A higher epoch than seen is recorded (in the DB
    /// first) and closes the till's older connections. Blocking: may write the DB.
    pub fn admit_blocking(&self, cert: CertIdentity) -> Result<Ticket, Kick> {
        let mut state = self.lock();
        let highest = state.epochs.get(&cert.agent).copied().unwrap_or(0);
        if let Err(kick) = admission(&state.list, highest, &cert) {
            if kick.reason == Refusal::Fenced {
                state.certificate_alert(
                    &cert.agent,
                    "old_epoch",
                    &format!(
                        "a connection with an old certificate (a clone?): {}",
                        kick.detail
                    ),
                );
            }
            return Err(kick);
        }
        if cert.epoch > highest {
            state
                .record_epoch(&cert.agent, cert.epoch)
                .map_err(|detail| {
                    tracing::error!("agent {}: {detail}", cert.agent);
                    Kick {
                        reason: Refusal::Unavailable,
                        detail: "the hub cannot record the certificate epoch".into(),
                    }
                })?;
            if highest > 0 {
                tracing::info!(
                    "agent {}: certificate epoch {} replaces epoch {highest}",
                    cert.agent,
                    cert.epoch
                );
            }
            let kicks = fenced_by(&cert, state.live_certs());
            state.kick(kicks);
        }
        let replaced = replaced_by(&cert, state.live_certs());
        if !replaced.is_empty() {
            state.certificate_alert(
                &cert.agent,
                "duplicate_connection",
                &format!(
                    "two live connections with the certificate of epoch {}: the newer replaces \
                     the older (once: the till reconnected; again and again: a cloned certificate)",
                    cert.epoch
                ),
            );
            state.kick(replaced);
        }
        let id = state.next_id;
        state.next_id += 1;
        let (kick, kicked) = watch::channel(None);
        state.live.insert(id, Live { cert, kick });
        Ok(Ticket {
            id,
            state: Arc::clone(&self.state),
            kicked,
        })
    }

    /// How many rereads of a changed list failed (each kept the previous list).
    pub fn rejected_reads(&self) -> u64 {
        self.lock().rejected_reads
    }

    /// [`Self::admit_blocking`] off the async threads.
    pub async fn admit(&self, cert: CertIdentity) -> Result<Ticket, Kick> {
        let gate = self.clone();
        match tokio::task::spawn_blocking(move || gate.admit_blocking(cert)).await {
            Ok(admitted) => admitted,
            Err(err) => Err(Kick {
                reason: Refusal::Unavailable,
                detail: format!("admission failed: {err}"),
            }),
        }
    }

    /// Rereads the revocation list if the file changed and cuts the connections it now
    /// revokes. A list that cannot be read keeps the previous one (logged): a typo in
    /// the file must not un-revoke anything. Returns whether a new list took effect.
    pub fn reload(&self) -> bool {
        let now_stamp = stamp(&self.list_path);
        if self.lock().list_stamp == now_stamp {
            return false;
        }
        let loaded = RevocationList::load(&self.list_path);
        let mut state = self.lock();
        state.list_stamp = now_stamp;
        match loaded {
            Ok(list) => {
                tracing::info!(
                    "revocation list {} reread: {} entries",
                    self.list_path.display(),
                    list.entries().len()
                );
                let kicks = revoked_among(&list, state.live_certs());
                state.list = list;
                state.kick(kicks);
                true
            }
            Err(err) => {
                tracing::error!("{err}: keeping the previous revocation list");
                state.rejected_reads += 1;
                false
            }
        }
    }

    /// Rereads the list every `every` until `stop` turns true.
    pub async fn watch(self, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let gate = self.clone();
                    if let Err(err) = tokio::task::spawn_blocking(move || gate.reload()).await {
                        tracing::error!("revocation list reload failed: {err}");
                    }
                }
            }
        }
    }
}

/// An admitted connection; dropping it unregisters the connection.
pub struct Ticket {
    id: u64,
    state: Arc<Mutex<State>>,
    kicked: watch::Receiver<Option<Kick>>,
}

impl Ticket {
    /// Resolves when the connection must be cut (revoked or fenced); pending otherwise.
    pub async fn kicked(&mut self) -> Kick {
        let kick = match self.kicked.wait_for(Option::is_some).await {
            Ok(kick) => kick.clone(),
            // The sender lives as long as this ticket is registered.
            Err(_) => None,
        };
        match kick {
            Some(kick) => kick,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.live.remove(&self.id);
    }
}

/// Refuses a connection at its start: lets the agent open its stream and read the
/// `Refused` frame, then closes with the same reason (which the agent sees even if it
/// never opened a stream).
pub async fn refuse(conn: Connection, kick: Kick) {
    let text = refusal_text(kick.reason, &kick.detail);
    crate::metrics::record_refusal(kick.reason);
    let delivered = tokio::time::timeout(REFUSAL_LINGER, async {
        let (mut send, _recv) = conn.accept_bi().await.ok()?;
        let frame = encode_frame(&Message::Refused {
            reason: kick.reason,
            detail: kick.detail,
        })
        .ok()?;
        send.write_all(&frame).await.ok()?;
        send.finish().ok()?;
        send.stopped().await.ok()
    })
    .await;
    if delivered.is_err() {
        tracing::debug!("refusal not read before the close: {text}");
    }
    conn.close(CLOSE_REFUSED.into(), text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(till: &str, epoch: u64) -> CertIdentity {
        CertIdentity {
            agent: AgentId::new("S1", till),
            epoch,
            serial: format!("{till}{epoch}")
                .to_ascii_lowercase()
                .replace('t', "a"),
        }
    }

    fn list(text: &str) -> RevocationList {
        RevocationList::parse(Path::new("revoked.toml"), text).unwrap()
    }

    const T1_THROUGH_1: &str =
        "[[revoked]]\nstore = \"S1\"\ntill = \"T1\"\nserial = \"all\"\nthrough_epoch = 1\nreason = \"stolen\"\n";

    #[test]
    fn admission_refuses_revoked_then_fenced() {
        let revoked = list(T1_THROUGH_1);
        let kick = admission(&revoked, 0, &cert("T1", 1)).unwrap_err();
        assert_eq!(kick.reason, Refusal::Revoked);
        assert!(kick.detail.contains("stolen"), "{}", kick.detail);
        assert_eq!(admission(&revoked, 0, &cert("T1", 2)), Ok(()));
        assert_eq!(admission(&revoked, 2, &cert("T2", 2)), Ok(()));
        let kick = admission(&revoked, 3, &cert("T1", 2)).unwrap_err();
        assert_eq!(kick.reason, Refusal::Fenced);
        assert_eq!(
            admission(&RevocationList::default(), 0, &cert("T1", 0)),
            Ok(())
        );
    }

    #[test]
    fn a_new_list_cuts_only_the_connections_it_revokes() {
        let live = [cert("T1", 1), cert("T1", 2), cert("T2", 1)];
        let kicks = revoked_among(
            &list(T1_THROUGH_1),
            live.iter().enumerate().map(|(i, c)| (i as u64, c)),
        );
        assert_eq!(kicks.len(), 1);
        assert_eq!(kicks[0].0, 0);
        assert_eq!(kicks[0].1.reason, Refusal::Revoked);
    }

    #[test]
    fn a_newer_epoch_fences_older_connections_of_its_till_only() {
        let live = [cert("T1", 1), cert("T1", 3), cert("T2", 1), cert("T1", 2)];
        let mut ids: Vec<u64> = fenced_by(
            &cert("T1", 3),
            live.iter().enumerate().map(|(i, c)| (i as u64, c)),
        )
        .into_iter()
        .map(|(id, kick)| {
            assert_eq!(kick.reason, Refusal::Fenced);
            id
        })
        .collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![0, 3]);
    }

    #[test]
    fn the_gate_records_epochs_and_cuts_on_a_list_change() {
        let dir = tempfile::tempdir().unwrap();
        let list_path = dir.path().join("revoked.toml");
        let db = Database::open(
            &crate::config::DatabaseUrl::Sqlite(dir.path().join("hub.db")),
            &crate::store::DatabaseOptions::default(),
        )
        .unwrap();
        let gate = Gate::open(&list_path, db.clone()).unwrap();
        let old = gate.admit_blocking(cert("T1", 1)).unwrap();
        let other = gate.admit_blocking(cert("T2", 1)).unwrap();
        let _new = gate.admit_blocking(cert("T1", 2)).unwrap();
        assert_eq!(
            old.kicked.borrow().as_ref().map(|k| k.reason),
            Some(Refusal::Fenced)
        );
        assert!(other.kicked.borrow().is_none());
        assert_eq!(
            gate.admit_blocking(cert("T1", 1)).err().map(|k| k.reason),
            Some(Refusal::Fenced)
        );
        // The epoch survives a restart (a new gate on the same DB).
        drop(gate);
        let gate = Gate::open(&list_path, db.clone()).unwrap();
        assert_eq!(gate.highest_epoch(&AgentId::new("S1", "T1")), 2);
        let t2 = gate.admit_blocking(cert("T2", 1)).unwrap();

        assert!(!gate.reload(), "no file, no change");
        std::fs::write(
            &list_path,
            "[[revoked]]\nstore = \"S1\"\ntill = \"T2\"\nserial = \"all\"\n",
        )
        .unwrap();
        assert!(gate.reload());
        assert_eq!(
            t2.kicked.borrow().as_ref().map(|k| k.reason),
            Some(Refusal::Revoked)
        );
        // A damaged file keeps the previous list.
        std::fs::write(&list_path, "[[revoked]]\nstore = 1\n").unwrap();
        assert!(!gate.reload());
        assert_eq!(
            gate.admit_blocking(cert("T2", 1)).err().map(|k| k.reason),
            Some(Refusal::Revoked)
        );
    }
}
