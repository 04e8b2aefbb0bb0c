//! Control groups: a stable, platform-independent split of customers per campaign.
//!
//! Every till and the hub must put the same customer in the same group for the same
//! campaign, across versions and machines, so the hash is specified here (FNV-1a 64 with
//! a final avalanche) rather than borrowed from `std` (whose `DefaultHasher` may change
//! between Rust releases).

/// FNV-1a, 64 bit, over `data`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The murmur3 64-bit finaliser: FNV-1a alone leaves the low decimal digits of similar
/// keys (`card-0001`, `card-0002`, …) correlated, and the split uses `% 100`.
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Who is split into treated and control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlSubject<'a> {
    /// A known customer: the digest's pseudonymous customer key. The same customer is in
    /// the same group for a campaign at every till, every visit.
    Customer(&'a str),
    /// An anonymous basket (no card): there is no person to keep in a group, so each
    /// receipt is split on its own key (store/till/receipt), which still gives the hub a
    /// treated-vs-control comparison per receipt.
    Receipt(&'a str),
}

/// The subject's bucket in `0..100` for `campaign_id`. The tag byte keeps a customer key
/// and a receipt key with the same text apart; the 0 byte separates id from key (ids
/// never contain it).
pub fn control_bucket(campaign_id: &str, subject: ControlSubject<'_>) -> u8 {
    let (tag, key) = match subject {
        ControlSubject::Customer(k) => (b'c', k),
        ControlSubject::Receipt(k) => (b'r', k),
    };
    let mut bytes = Vec::with_capacity(campaign_id.len() + key.len() + 2);
    bytes.extend_from_slice(campaign_id.as_bytes());
    bytes.push(0);
    bytes.push(tag);
    bytes.extend_from_slice(key.as_bytes());
    // `% 100` of a u64 is below 100, so the cast never truncates.
    (avalanche(fnv1a64(&bytes)) % 100) as u8
}

/// Whether the subject is in the campaign's control group (gets a logged would-have
/// instead of a printed coupon): `bucket < control_percent`.
pub fn in_control_group(
    campaign_id: &str,
    subject: ControlSubject<'_>,
    control_percent: u8,
) -> bool {
    control_bucket(campaign_id, subject) < control_percent
}
