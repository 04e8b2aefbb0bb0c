//! Till keys (derived from the hub's master secret) and the truncated MAC they make.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Domain tags keep the key derivation and the code MAC from ever colliding with other
/// uses of the same secrets.
const KEY_TAG: &[u8] = b"till360/coupon-till-key/v1";
const MAC_TAG: &[u8] = b"till360/coupon-code/v1";

/// One till's coupon signing key (32 bytes). The hub derives it; the agent receives it
/// over the downlink. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct TillKey([u8; 32]);

impl TillKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first `bits` (at most 32) bits of HMAC-SHA256 over the payload.
    pub(super) fn mac(&self, payload: u64, bits: u32) -> u32 {
        let mut mac = hmac(&self.0);
        mac.update(MAC_TAG);
        mac.update(&payload.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let first = u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]]);
        first >> (32 - bits.clamp(1, 32))
    }
}

impl std::fmt::Debug for TillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TillKey(..)")
    }
}

/// The coupon key of till `till` in store `store`: HMAC-SHA256 keyed with the master
/// secret (at least 32 random bytes) over a domain tag and the length-prefixed names, so
/// `("S1", "23")` and `("S12", "3")` get different keys.
pub fn derive_till_key(master: &[u8], store: &str, till: &str) -> TillKey {
    let mut mac = hmac(master);
    mac.update(KEY_TAG);
    for part in [store, till] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    TillKey(mac.finalize().into_bytes().into())
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Compares without an early exit, so timing says nothing about where a MAC differs.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

const CARD_KEY_TAG: &[u8] = b"till360/card-key/v1";
const DIGEST_KEY_TAG: &[u8] = b"till360/digest-key/v1";
const CUSTOMER_KEY_TAG: &[u8] = b"till360/customer-key/v1";

/// The key of the keyed hash that pseudonymises card numbers in the digests the tills
/// of `store` hold. One per store, so the key on one till's disk does not give the card
/// keys of the other stores (the hub's digest feed is per store already).
pub fn derive_digest_key(master: &[u8], store: &str) -> [u8; 32] {
    let mut mac = hmac(master);
    mac.update(DIGEST_KEY_TAG);
    mac.update(&(store.len() as u64).to_be_bytes());
    mac.update(store.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A card number pseudonymised for the till's digest cache: the first 16 bytes of
/// HMAC-SHA256 under the digest key. The till computes it from a scanned card; the card
/// number itself is never stored with the digest.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CardKey(pub [u8; 16]);

impl CardKey {
    pub fn of(digest_key: &[u8; 32], card: &crate::card::CardNumber) -> CardKey {
        let mut mac = hmac(digest_key);
        mac.update(CARD_KEY_TAG);
        mac.update(card.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&tag[..16]);
        CardKey(key)
    }
}

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardKey(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// The pseudonymous customer key of a profile (the control-group key in digests): 16
/// hex digits of HMAC-SHA256 under the master secret, stable for the profile id on
/// every till and store, and meaningless without the secret.
pub fn derive_customer_key(master: &[u8], profile_id: &str) -> String {
    let mut mac = hmac(master);
    mac.update(CUSTOMER_KEY_TAG);
    mac.update(profile_id.as_bytes());
    let tag = mac.finalize().into_bytes();
    tag[..8].iter().map(|b| format!("{b:02x}")).collect()
}
