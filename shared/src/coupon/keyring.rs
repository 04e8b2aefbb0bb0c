//! What a till needs to mint and check coupon codes, sent by the hub with the campaign
//! set: its own number and key, the keys of its store's tills (own-store codes are
//! checked offline), the campaign numbers codes carry, and the card-key secret digests
//! are pseudonymised with.

use serde::{Deserialize, Serialize};

use super::key::{CardKey, TillKey};
use crate::card::CardNumber;

/// A till's coupon keyring. `Debug` never shows a key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    /// This till's number in coupon codes (hub-assigned, 0..=8191).
    pub till_number: u16,
    /// This till's signing key.
    pub till_key: [u8; 32],
    /// Every till of this store the hub knows (this one included): number and key.
    pub store_tills: Vec<(u16, [u8; 32])>,
    /// Campaign id → its number in coupon codes (hub-assigned, 0..=4095), for every
    /// campaign of the set.
    pub campaign_numbers: Vec<(String, u16)>,
    /// Key of the keyed hash that pseudonymises cards in this store's digests
    /// ([`CardKey::of`]; per store, see `derive_digest_key`).
    pub digest_key: [u8; 32],
}

impl Keyring {
    pub fn till_key(&self) -> TillKey {
        TillKey::from_bytes(self.till_key)
    }

    /// The key of till `number` if it belongs to this store.
    pub fn store_till_key(&self, number: u16) -> Option<TillKey> {
        if number == self.till_number {
            return Some(self.till_key());
        }
        self.store_tills
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, key)| TillKey::from_bytes(*key))
    }

    pub fn campaign_number(&self, campaign_id: &str) -> Option<u16> {
        self.campaign_numbers
            .iter()
            .find(|(id, _)| id == campaign_id)
            .map(|(_, n)| *n)
    }

    pub fn campaign_id(&self, number: u16) -> Option<&str> {
        self.campaign_numbers
            .iter()
            .find(|(_, n)| *n == number)
            .map(|(id, _)| id.as_str())
    }

    /// The pseudonymous key of `card` in this store's digests (and erasures).
    pub fn card_key(&self, card: &CardNumber) -> CardKey {
        CardKey::of(&self.digest_key, card)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("till_number", &self.till_number)
            .field(
                "store_tills",
                &self.store_tills.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("campaign_numbers", &self.campaign_numbers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coupon::derive_till_key;
    use crate::coupon::key::{derive_customer_key, derive_digest_key};

    fn card(code: &str) -> CardNumber {
        CardNumber::parse(code).unwrap()
    }

    #[test]
    fn finds_store_keys_and_campaign_numbers_and_hides_keys() {
        let own = derive_till_key(b"master secret of at least 32 bytes!", "S1", "T1");
        let other = derive_till_key(b"master secret of at least 32 bytes!", "S1", "T2");
        let ring = Keyring {
            till_number: 3,
            till_key: *own.as_bytes(),
            store_tills: vec![(3, *own.as_bytes()), (9, *other.as_bytes())],
            campaign_numbers: vec![("big-basket".into(), 0), ("birthday".into(), 7)],
            digest_key: derive_digest_key(b"master secret of at least 32 bytes!", "S1"),
        };
        assert_eq!(
            ring.store_till_key(9).map(|k| *k.as_bytes()),
            Some(*other.as_bytes())
        );
        assert_eq!(
            ring.store_till_key(3).map(|k| *k.as_bytes()),
            Some(*own.as_bytes())
        );
        assert!(ring.store_till_key(4).is_none());
        assert_eq!(ring.campaign_number("birthday"), Some(7));
        assert_eq!(ring.campaign_id(0), Some("big-basket"));
        assert_eq!(ring.campaign_id(1), None);
        let shown = format!("{ring:?}");
        assert!(!shown.contains("till_key"), "{shown}");
        assert!(!shown.contains("digest_key"), "{shown}");
    }

    #[test]
    fn card_keys_depend_on_the_card_and_the_secret() {
        let a = derive_digest_key(b"one master secret, 32 bytes long..", "S1");
        let b = derive_digest_key(b"another master secret, 32 bytes...", "S1");
        let c1 = card("4006381333931");
        let c2 = card("96385074");
        assert_eq!(CardKey::of(&a, &c1), CardKey::of(&a, &c1));
        assert_ne!(CardKey::of(&a, &c1), CardKey::of(&a, &c2));
        assert_ne!(CardKey::of(&a, &c1), CardKey::of(&b, &c1));
        // Per store: a till of S1 holds no key that finds S12's (or S2's) digests.
        let other_store = derive_digest_key(b"one master secret, 32 bytes long..", "S12");
        assert_ne!(CardKey::of(&a, &c1), CardKey::of(&other_store, &c1));
        let k1 = derive_customer_key(b"m", "p-1");
        assert_eq!(k1.len(), 16);
        assert_eq!(k1, derive_customer_key(b"m", "p-1"));
        assert_ne!(k1, derive_customer_key(b"m", "p-2"));
        assert_ne!(k1, derive_customer_key(b"n", "p-1"));
    }
}
