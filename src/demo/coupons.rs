//! The demo's coupons: the example campaign set on the hub, the codes the tills printed
//! during the morning, some of them redeemed in the afternoon at the other store, and
//! the campaign KPIs as the hub's API serves them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use till360_agent::escpos::{CodePage, EscPosParser, PrintEvent};
use till360_shared::coupon;

use super::system::DemoTill;
use crate::http_client::HubApi;
use crate::rig::{play_visit, PlayOptions};
use crate::sim::{PosSimulator, Scan, SimRng, Visit};

/// The annotated example set from `config/campaigns.toml`.
const EXAMPLE_CAMPAIGNS: &str = include_str!("../../config/campaigns.toml");

/// Writes the example campaign set next to `hub.toml` and names it there.
pub fn install_campaigns(dir: &Path, hub_config: &Path) -> anyhow::Result<()> {
    let campaigns = dir.join("campaigns.toml");
    std::fs::write(&campaigns, EXAMPLE_CAMPAIGNS)
        .with_context(|| format!("writing {}", campaigns.display()))?;
    let text = std::fs::read_to_string(hub_config)
        .with_context(|| format!("reading {}", hub_config.display()))?;
    // Top-level keys must come before the first [table].
    std::fs::write(
        hub_config,
        format!("campaigns = \"campaigns.toml\"\n{text}"),
    )
    .with_context(|| format!("writing {}", hub_config.display()))
}

/// The coupon codes in a printed stream: the human-readable line of each coupon block
/// (24 digits, grouped by four, with a valid check digit).
pub fn printed_codes(printed: &[u8]) -> Vec<String> {
    let mut parser = EscPosParser::new(CodePage::Cp858);
    parser.feed(printed);
    let mut codes = Vec::new();
    while let Some(event) = parser.poll() {
        if let PrintEvent::Line(line) = event {
            let digits: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if digits.len() == coupon::CODE_LEN && coupon::parse(&digits).is_ok() {
                codes.push(digits);
            }
        }
    }
    codes
}

/// Every second coupon printed at a till comes back in the afternoon at the OTHER
/// till (the hub checks it there), with a new basket. Returns how many were scanned.
pub fn redeem_in_the_afternoon(tills: &[DemoTill], seed: u64) -> anyhow::Result<usize> {
    let opening = chrono::Local::now().naive_local();
    let codes: Vec<Vec<String>> = tills
        .iter()
        .map(|t| printed_codes(&t.devices.printer.bytes()))
        .collect();
    let mut scanned = 0;
    for (from, codes) in codes.iter().enumerate() {
        let to = (from + 1) % tills.len();
        let till = &tills[to];
        let mut pos = PosSimulator::new(
            till.setup.style,
            &till.setup.store,
            opening,
            seed ^ (to as u64 + 7),
        );
        let mut rng = SimRng::new(seed ^ 0xAF7E_4000 ^ to as u64);
        for code in codes.iter().step_by(2) {
            let visit = Visit {
                store_index: to,
                card: None,
                scans: vec![Scan::Coupon(code.clone())],
                receipt: pos.next_receipt(None),
            };
            let cuts = till.devices.printer.cuts();
            play_visit(
                &till.devices,
                &visit,
                &mut rng,
                cuts,
                &PlayOptions::default(),
            )
            .with_context(|| format!("redeeming a coupon at {}", till.setup.store))?;
            scanned += 1;
        }
    }
    Ok(scanned)
}

/// Cents as euros with two decimals (`-0.50`, `1234.05`).
fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

fn get_json(api: &HubApi, path: &str) -> Option<serde_json::Value> {
    api.get(path, Duration::from_secs(5))
        .ok()
        .filter(|r| r.status == 200)
        .and_then(|r| r.json())
}

/// Waits until the hub has counted `redeemed` redemptions over all campaigns (or the
/// deadline passes); returns the campaigns as `GET /api/v1/campaigns` lists them.
pub fn wait_for_redemptions(
    api: &HubApi,
    redeemed: usize,
    deadline: Duration,
) -> anyhow::Result<serde_json::Value> {
    let until = Instant::now() + deadline;
    loop {
        let list = get_json(api, "/api/v1/campaigns").context("GET /api/v1/campaigns")?;
        let counted: i64 = list
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["redeemed"].as_i64()).sum())
            .unwrap_or(0);
        if counted >= redeemed as i64 || Instant::now() >= until {
            return Ok(list);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints one row of KPIs per campaign of `campaigns`.
pub fn print_kpis(api: &HubApi, campaigns: &serde_json::Value) {
    println!();
    println!(
        "{:<20} {:>6} {:>8} {:>8} {:>6} {:>5} {:>10} {:>12}",
        "campaign", "issued", "control", "redeemed", "rate", "dupl", "revenue", "uplift/cust"
    );
    for campaign in campaigns.as_array().into_iter().flatten() {
        let Some(id) = campaign["id"].as_str() else {
            continue;
        };
        let Some(k) = get_json(api, &format!("/api/v1/campaigns/{id}/kpis")) else {
            continue;
        };
        let cents = |v: &serde_json::Value| v.as_i64().map_or_else(|| "-".into(), euros);
        let count = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
        println!(
            "{:<20} {:>6} {:>8} {:>8} {:>5.0}% {:>5} {:>10} {:>12}",
            id,
            count(&k["issued"]),
            count(&k["control"]),
            count(&k["redeemed"]),
            k["redemption_rate"].as_f64().unwrap_or(0.0) * 100.0,
            count(&k["duplicate_redemptions"]),
            cents(&k["revenue_cents"]),
            cents(&k["uplift"]["uplift_cents_per_customer"]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use till360_shared::coupon::{derive_till_key, mint, CouponFields};

    #[test]
    fn finds_printed_codes_and_ignores_other_digit_lines() {
        let key = derive_till_key(b"demo master secret of 32 bytes..", "S001", "T01");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
        let code = mint(&key, &CouponFields::new(3, 1, day, 9).unwrap());
        let mut printed = b"TOTAAL 59,96\n".to_vec();
        printed.extend_from_slice(format!("{}\n", code.grouped()).as_bytes());
        // 24 digits whose check digit is wrong: not a coupon.
        printed.extend_from_slice(b"123456789012345678901234\n");
        assert_eq!(printed_codes(&printed), vec![code.as_str().to_string()]);
    }

    #[test]
    fn euros_keep_the_sign_of_small_amounts() {
        assert_eq!(euros(-50), "-0.50");
        assert_eq!(euros(123_405), "1234.05");
        assert_eq!(euros(0), "0.00");
    }
}
