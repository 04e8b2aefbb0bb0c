//! `till360 demo`: a hub and two tills (a supermarket and a boutique) in one process,
//! each till on three virtual serial ports, a morning of shopping played through them,
//! then the merged profiles as the hub's API shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::http_client::HubApi;
use crate::rig::fetch_profile;
use crate::sim::CardExpectation;

mod coupons;
mod system;

use system::Voice;
pub use system::{DemoOptions, DemoSystem, SYNC_DEADLINE};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder for the PKI, configs and data (default: a new temporary folder, kept).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many receipts the morning has.
    #[arg(long, default_value_t = 300)]
    pub receipts: usize,
    /// Seed of the simulation (the same seed plays the same morning).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop once everything is at the hub instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// The hub's `api_token`: the API then wants it as a bearer token and the console
    /// asks for it on its sign-in page (default: none; the hub answers loopback only).
    #[arg(long, value_name = "TOKEN")]
    pub api_token: Option<String>,
}

/// Runs the demo; `Ok` only if every receipt reached the hub exactly once.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let options = DemoOptions {
        dir: args.dir,
        receipts: args.receipts,
        seed: args.seed,
        api_token: args.api_token,
        verbose: true,
        ..DemoOptions::default()
    };
    let system = match DemoSystem::start(options).await {
        Ok(system) => system,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(e);
        }
    };
    let http = system.http_addr();
    println!();
    match system.api_token() {
        Some(token) => println!("console: {} (sign-in token: {token})", system.console_url()),
        None => println!("console: {}", system.console_url()),
    }
    println!("hub API: http://{http}/api/v1/agents");
    println!("         http://{http}/api/v1/profiles/by-card/{{card}}");
    println!("         http://{http}/api/v1/segments/{{id}}/members.csv?channel=email");

    if !args.exit {
        eprintln!("serving; press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    if let Err(e) = system.stop().await {
        eprintln!("{e:#}");
    }
    Ok(())
}

/// Recomputes traits and segments; verbose, prints the busiest customers' profiles and
/// the segment sizes as the API serves them.
async fn show_360(
    hub: &till360_hub::server::RunningHub,
    api: &HubApi,
    expected: &BTreeMap<String, CardExpectation>,
    voice: Voice,
) -> anyhow::Result<()> {
    let summary = hub
        .recompute_traits()
        .await
        .context("recomputing traits and segments")?;
    let sizes: Vec<String> = summary
        .segments
        .iter()
        .map(|(id, n)| format!("{id} {n}"))
        .collect();
    voice.say(format_args!(
        "traits recomputed for {} profiles ({} with purchases, {} on more than one day); \
         segments: {}",
        summary.profiles,
        summary.models.customers,
        summary.models.repeat_customers,
        sizes.join(", ")
    ));
    for note in &summary.models.notes {
        voice.say(format_args!("  model note: {note}"));
    }
    if !voice.verbose() {
        return Ok(());
    }
    let mut busiest: Vec<String> = {
        let mut cards: Vec<_> = expected.iter().collect();
        cards.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        cards.into_iter().map(|(card, _)| card.clone()).collect()
    };
    busiest.truncate(SHOWN_IN_TABLE);
    let api = api.clone();
    tokio::task::spawn_blocking(move || print_profiles(&api, &busiest))
        .await
        .context("printing the profiles")?
}

/// Rows in the table of busiest customers.
const SHOWN_IN_TABLE: usize = 10;

fn print_profiles(api: &HubApi, busiest: &[String]) -> anyhow::Result<()> {
    let Some(first) = busiest.first() else {
        println!("no loyalty customers this morning");
        return Ok(());
    };
    let mut profile = fetch_profile(api.clone(), first)
        .with_context(|| format!("no profile for the busiest card {first}"))?;
    let entries = trim_timeline(&mut profile);
    println!("The busiest customer, as the hub sees them (timeline: the newest receipt and");
    println!("the newest online order of {entries} entries):");
    println!("GET /api/v1/profiles/by-card/{first}");
    println!("{}", pretty(&profile));

    println!();
    println!("The {} busiest customers:", busiest.len());
    println!(
        "{:<13}  {:<7}  {:<20}  {:>5}  {:>6}  {:>9}  {:>4}  {:>3}  {:<19}  {:<26}  segments",
        "card",
        "cust.",
        "name",
        "store",
        "online",
        "spend EUR",
        "freq",
        "RFM",
        "consents",
        "favourite categories",
    );
    for card in busiest {
        match fetch_profile(api.clone(), card) {
            Some(p) => println!("{}", table_row(card, &p)),
            None => println!("{card:<13}  (no profile)"),
        }
    }
    println!(
        "store/online: receipts and web orders; freq: repeat purchase days; RFM: recency, \
         frequency, monetary quintiles (5 = best)"
    );

    println!();
    println!("GET /api/v1/segments");
    let segments = api
        .get("/api/v1/segments", Duration::from_secs(5))
        .context("GET /api/v1/segments")?;
    if segments.status != 200 {
        bail!("GET /api/v1/segments answered {}", segments.status);
    }
    let listing = segments.json().context("GET /api/v1/segments: not JSON")?;
    println!("{}", pretty(&listing));
    Ok(())
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Keeps the newest receipt and the newest order of the profile's timeline (newest
/// first, as served), so one profile fits on a screen; returns how many there were.
fn trim_timeline(profile: &mut serde_json::Value) -> usize {
    let Some(timeline) = profile
        .get_mut("timeline")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return 0;
    };
    let total = timeline.len();
    let mut seen = BTreeSet::new();
    timeline.retain(|entry| seen.insert(entry["kind"].as_str().unwrap_or("").to_string()));
    total
}

/// One line of the busiest-customers table.
fn table_row(card: &str, p: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let name = format!(
        "{} {}",
        text(&p["personal"]["first_name"]),
        text(&p["personal"]["last_name"])
    );
    let name = match name.trim() {
        "" => "(not in the CRM)".to_string(),
        n => clip(n, 20),
    };
    let channels = &p["channels"];
    let spend = channels["store"]["total_cents"].as_i64().unwrap_or(0)
        + channels["online"]["total_cents"].as_i64().unwrap_or(0);
    let traits = &p["traits"];
    let consents: Vec<&str> = [
        ("email", "email"),
        ("sms", "sms"),
        ("post", "post"),
        ("personalization", "pers"),
    ]
    .into_iter()
    .filter(|(purpose, _)| p["consents"][purpose]["granted"].as_bool() == Some(true))
    .map(|(_, short)| short)
    .collect();
    let consents = if consents.is_empty() {
        "-".to_string()
    } else {
        consents.join(" ")
    };
    let favourites: Vec<String> = traits["favourite_categories"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let segments: Vec<String> = p["segments"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    format!(
        "{card:<13}  {:<7}  {name:<20}  {:>5}  {:>6}  {:>9}  {:>4}  {:>3}  {consents:<19}  {:<26}  {}",
        p["customer_no"].as_str().unwrap_or("-"),
        channels["store"]["count"].as_u64().unwrap_or(0),
        channels["online"]["count"].as_u64().unwrap_or(0),
        till360_shared::money::format_cents(spend),
        traits["frequency"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |f| f.to_string()),
        traits["rfm"].as_str().unwrap_or("-"),
        clip(&favourites.join(", "), 26),
        if segments.is_empty() {
            "-".to_string()
        } else {
            segments.join(", ")
        },
    )
}

/// At most `width` characters, with an ellipsis when cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
