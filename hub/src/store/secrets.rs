//! Secrets every hub of one database shares: the coupon master secret (a code printed
//! under hub A must verify on hub B) and the QUIC stateless-reset key (a till whose hub
//! died is told at once by whichever hub its packets reach). The database holds them,
//! so a second hub needs no file copied by hand; each hub also keeps its copy in its
//! `data_dir` (backups, and the hub that was there first brings its own).

use super::sql::{Sql, SqlExt};
use super::StoreError;
use crate::sql_params;

/// The secret named `name` the hubs of this database share. `local` is this hub's copy
/// (its `data_dir` file), if it has one: the first hub to get here stores its copy (or
/// `fresh()` when it has none); every later hub must hold the same or none. A different
/// local copy is an error: codes (or resets) under one would not verify under the other.
pub fn shared(
    db: &dyn Sql,
    name: &str,
    local: Option<&[u8]>,
    fresh: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let read = |db: &dyn Sql| -> Result<Option<Vec<u8>>, StoreError> {
        db.query_value::<Vec<u8>>(
            "SELECT value FROM hub_secrets WHERE name = ?1",
            sql_params![name],
        )
    };
    let stored = match read(db)? {
        Some(value) => value,
        None => {
            let candidate = local.map(<[u8]>::to_vec).unwrap_or_else(fresh);
            // Two hubs starting together: one insert wins, both read the winner.
            db.execute(
                "INSERT INTO hub_secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                sql_params![name, candidate],
            )?;
            read(db)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the shared secret {name} vanished as it was stored"
                ))
            })?
        }
    };
    if let Some(local) = local {
        if local != stored.as_slice() {
            return Err(StoreError::Corrupt(format!(
                "this hub's {name} differs from the one the database holds (another hub's): \
                 what one hub signs the other could not check; remove this hub's file to \
                 take the database's, or restore the matching database"
            )));
        }
    }
    Ok(stored)
}

/// Forgets the shared secret `name` (an operator replacing the QUIC reset key removes
/// every hub's copy and the database's; the next hub to start brings a new one).
pub fn forget(db: &dyn Sql, name: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM hub_secrets WHERE name = ?1", sql_params![name])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    #[test]
    fn the_first_hub_stores_its_secret_and_the_others_take_it() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let db: &dyn Sql = &*conn;
            let first = shared(db, "coupon-master.key", Some(&[1u8; 32]), || vec![9; 32]).unwrap();
            assert_eq!(first, vec![1u8; 32], "the first hub's own copy");
            let second = shared(db, "coupon-master.key", None, || vec![2; 32]).unwrap();
            assert_eq!(second, vec![1u8; 32], "a new hub takes the database's");
            let err = shared(db, "coupon-master.key", Some(&[3u8; 32]), || vec![4; 32])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("coupon-master.key") && err.contains("differs"),
                "{err}"
            );
            let fresh = shared(db, "quic-reset.key", None, || vec![5; 32]).unwrap();
            assert_eq!(fresh, vec![5u8; 32], "none anywhere: a fresh one, stored");
            assert_eq!(
                shared(db, "quic-reset.key", None, || vec![6; 32]).unwrap(),
                vec![5u8; 32]
            );
        });
    }

    #[test]
    fn a_forgotten_secret_is_replaced_by_the_next_hubs_copy() {
        for_each_engine(|db| {
            let conn = db.get().unwrap();
            let db: &dyn Sql = &*conn;
            let old = shared(db, "quic-reset.key", Some(&[1u8; 32]), || vec![9; 32]).unwrap();
            assert_eq!(old, vec![1u8; 32]);
            forget(db, "quic-reset.key").unwrap();
            let new = shared(db, "quic-reset.key", None, || vec![2; 32]).unwrap();
            assert_eq!(new, vec![2u8; 32], "a new secret, not the forgotten one");
        });
    }

    #[test]
    fn hubs_starting_together_agree_on_one_secret() {
        for_each_engine(|db| {
            for round in 0..10u8 {
                let name = format!("secret-{round}");
                let got: Vec<Vec<u8>> = std::thread::scope(|s| {
                    let hubs: Vec<_> = (0..3u8)
                        .map(|hub| {
                            let (db, name) = (db.clone(), name.clone());
                            s.spawn(move || {
                                let conn = db.get().unwrap();
                                shared(&*conn, &name, None, || vec![hub; 32]).unwrap()
                            })
                        })
                        .collect();
                    hubs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                assert!(
                    got.windows(2).all(|w| w[0] == w[1]),
                    "round {round}: {got:?}"
                );
            }
        });
    }
}
