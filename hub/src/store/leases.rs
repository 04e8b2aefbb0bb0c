//! Leases: a background job that must run once across several hubs on one database
//! (traits recompute, digest refresh and compaction) runs only on the hub holding its
//! lease. A lease is a row per job naming its holder and when it lapses; the holder
//! renews it each time it runs the job, and a hub that died stops renewing, so another
//! hub takes the job over once the lease has lapsed. On SQLite (one hub per file) the
//! first hub always holds it; the same code runs.

use std::time::Duration;

use super::sql::{Sql, SqlExt};
use super::{Database, StoreError};
use crate::sql_params;
use till360_shared::Timestamp;

/// One job's lease as one hub sees it: [`JobLease::hold`] before each run.
#[derive(Clone, Debug)]
pub struct JobLease {
    db: Database,
    job: &'static str,
    holder: String,
    ttl_ms: i64,
}

impl JobLease {
    /// `holder` names this hub (stable across its restarts, different from every other
    /// hub's: see `server::lease_holder`); `ttl` is how long the lease outlives this
    /// hub's last run or renewal, so how soon another hub takes the job over.
    pub fn new(db: Database, job: &'static str, holder: String, ttl: Duration) -> Self {
        Self {
            db,
            job,
            holder,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Whether this hub holds the job now, taking or renewing the lease. A database
    /// error counts as not holding it (the run would fail anyway); it is logged.
    pub fn hold(&self, now: Timestamp) -> bool {
        let held = self
            .db
            .get()
            .and_then(|conn| acquire(&*conn, self.job, &self.holder, now, self.ttl_ms));
        match held {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!("{} lease: cannot reach the database: {e}", self.job);
                false
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so another hub takes the job at once.
    pub fn release(&self) {
        if let Err(e) = self
            .db
            .get()
            .and_then(|conn| release(&*conn, self.job, &self.holder))
        {
            tracing::warn!("{} lease: cannot release it: {e}", self.job);
        }
    }
}

/// Takes or renews `job`'s lease for `holder` until `now + ttl_ms`: `true` when `holder`
/// holds it now (it was free, had lapsed, or was already `holder`'s), `false` when
/// another live hub holds it. One statement, so two hubs racing for a lapsed lease
/// cannot both win.
pub fn acquire(
    db: &dyn Sql,
    job: &str,
    holder: &str,
    now: Timestamp,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let until = now.unix_ms.saturating_add(ttl_ms);
    let changed = db.execute(
        "INSERT INTO job_leases (job, holder, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
         WHERE job_leases.holder = excluded.holder OR job_leases.expires_ms <= ?4",
        sql_params![job, holder, until, now.unix_ms],
    )?;
    Ok(changed == 1)
}

/// Gives `job`'s lease up if `holder` holds it (a hub shutting down cleanly), so another
/// hub takes the job at once instead of after the lease lapses.
pub fn release(db: &dyn Sql, job: &str, holder: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM job_leases WHERE job = ?1 AND holder = ?2",
        sql_params![job, holder],
    )?;
    Ok(())
}

/// Who holds `job`'s lease and until when (hub clock, ms), if anyone ever did.
pub fn holder(db: &dyn Sql, job: &str) -> Result<Option<(String, i64)>, StoreError> {
    db.query_opt(
        "SELECT holder, expires_ms FROM job_leases WHERE job = ?1",
        sql_params![job],
    )?
    .map(|row| Ok((row.get(0)?, row.get(1)?)))
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms, 0)
    }

    #[test]
    fn one_holder_at_a_time_and_a_lapsed_lease_moves_on() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let db: &dyn Sql = &*conn;
            assert!(acquire(db, "traits", "hub-a", at(1_000), 30_000).unwrap());
            assert!(!acquire(db, "traits", "hub-b", at(2_000), 30_000).unwrap());
            // The holder renews.
            assert!(acquire(db, "traits", "hub-a", at(20_000), 30_000).unwrap());
            assert!(!acquire(db, "traits", "hub-b", at(40_000), 30_000).unwrap());
            // Hub A stops renewing: once lapsed, hub B takes it and A no longer holds it.
            assert!(acquire(db, "traits", "hub-b", at(50_000), 30_000).unwrap());
            assert_eq!(
                holder(db, "traits").unwrap(),
                Some(("hub-b".to_string(), 80_000))
            );
            assert!(!acquire(db, "traits", "hub-a", at(51_000), 30_000).unwrap());
            // Another job is another lease.
            assert!(acquire(db, "digests", "hub-a", at(51_000), 30_000).unwrap());
            // A clean release hands the job over at once.
            release(db, "traits", "hub-a").unwrap();
            assert!(!acquire(db, "traits", "hub-a", at(52_000), 30_000).unwrap());
            release(db, "traits", "hub-b").unwrap();
            assert!(acquire(db, "traits", "hub-a", at(52_000), 30_000).unwrap());
        });
    }

    #[test]
    fn two_hubs_racing_for_a_lapsed_lease_never_both_win() {
        for_each_engine(|db| {
            db.get()
                .unwrap()
                .execute(
                    "INSERT INTO job_leases (job, holder, expires_ms) VALUES ('traits', 'dead', 0)",
                    sql_params![],
                )
                .unwrap();
            for round in 0..20i64 {
                let now = at(1_000 + round * 100_000);
                let wins: Vec<bool> = std::thread::scope(|s| {
                    let racers: Vec<_> = ["hub-a", "hub-b", "hub-c"]
                        .into_iter()
                        .map(|hub| {
                            let db = db.clone();
                            s.spawn(move || {
                                let conn = db.get().unwrap();
                                acquire(&*conn, "traits", hub, now, 50_000).unwrap()
                            })
                        })
                        .collect();
                    racers.into_iter().map(|r| r.join().unwrap()).collect()
                });
                assert_eq!(
                    wins.iter().filter(|w| **w).count(),
                    1,
                    "round {round}: {wins:?}"
                );
            }
        });
    }
}
