//! The secrets every hub of one database must hold alike, at start: the coupon master
//! secret (a code printed under hub A verifies on hub B) and the QUIC stateless-reset key
//! (a till whose hub died is reset by whichever hub its packets reach). The database is
//! where they are shared (`store::secrets`); each hub keeps a copy in its `data_dir`
//! (`coupon-master.key`, `quic-reset.key`) for backups. The first hub to start brings
//! its copy (or makes one); a hub without a copy takes the database's and writes it; a
//! hub whose copy differs refuses to start.

use std::path::Path;

use anyhow::Context as _;

use crate::campaigns::{MasterKey, MASTER_KEY_FILE};
use crate::listener::{read_reset_secret, save_reset_secret, RESET_KEY_FILE};
use crate::store::{secrets, Database};

/// The coupon master secret every hub of `db` holds.
pub fn coupon_master(db: &Database, data_dir: &Path) -> anyhow::Result<MasterKey> {
    let local = MasterKey::read(data_dir)?;
    let fresh = MasterKey::random(&data_dir.join(MASTER_KEY_FILE))?;
    let conn = db.get()?;
    let shared = secrets::shared(
        &*conn,
        MASTER_KEY_FILE,
        local.as_ref().map(|k| &k.as_bytes()[..]),
        || fresh.as_bytes().to_vec(),
    )
    .with_context(|| format!("{}", data_dir.join(MASTER_KEY_FILE).display()))?;
    let key = MasterKey::from_bytes(&shared).with_context(|| {
        format!(
            "the database's {MASTER_KEY_FILE} holds {} bytes, not 32",
            shared.len()
        )
    })?;
    if local.is_none() {
        key.save(data_dir)?;
    }
    Ok(key)
}

/// The QUIC stateless-reset secret every hub of `db` holds.
pub fn reset_secret(db: &Database, data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let local = read_reset_secret(data_dir)?;
    let mut fresh = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let conn = db.get()?;
    let shared = secrets::shared(
        &*conn,
        RESET_KEY_FILE,
        local.as_ref().map(|k| &k[..]),
        || fresh.to_vec(),
    )
    .with_context(|| format!("{}", data_dir.join(RESET_KEY_FILE).display()))?;
    let secret: [u8; 32] = shared.as_slice().try_into().with_context(|| {
        format!(
            "the database's {RESET_KEY_FILE} holds {} bytes, not 32",
            shared.len()
        )
    })?;
    if local.is_none() {
        save_reset_secret(data_dir, &secret)?;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;

    #[test]
    fn a_second_hub_takes_the_first_hubs_secrets_and_a_different_copy_is_refused() {
        for_each_engine(|db| {
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let master_a = coupon_master(db, a.path()).unwrap();
            let reset_a = reset_secret(db, a.path()).unwrap();
            // Hub B has no copies: it takes the database's and keeps them.
            let master_b = coupon_master(db, b.path()).unwrap();
            assert_eq!(master_b.as_bytes(), master_a.as_bytes());
            assert_eq!(reset_secret(db, b.path()).unwrap(), reset_a);
            assert_eq!(
                std::fs::read(b.path().join(MASTER_KEY_FILE)).unwrap(),
                master_a.as_bytes().to_vec()
            );
            // Restarting is the same.
            assert_eq!(
                coupon_master(db, a.path()).unwrap().as_bytes(),
                master_a.as_bytes()
            );
            // A hub with another key (a data_dir from elsewhere) refuses to start.
            let c = tempfile::tempdir().unwrap();
            MasterKey::from_bytes(&[7u8; 32])
                .unwrap()
                .save(c.path())
                .unwrap();
            let err = format!("{:#}", coupon_master(db, c.path()).unwrap_err());
            assert!(
                err.contains("differs") && err.contains(MASTER_KEY_FILE),
                "{err}"
            );
        });
    }

    #[test]
    fn an_existing_hub_brings_its_own_secrets_into_an_empty_database() {
        for_each_engine(|db| {
            let dir = tempfile::tempdir().unwrap();
            let old = MasterKey::load_or_create(dir.path()).unwrap();
            let old_reset = crate::listener::load_or_create_reset_secret(dir.path()).unwrap();
            assert_eq!(
                coupon_master(db, dir.path()).unwrap().as_bytes(),
                old.as_bytes()
            );
            assert_eq!(reset_secret(db, dir.path()).unwrap(), old_reset);
        });
    }
}
