//! The campaign set a hub serves: loaded from `campaigns` at start, versioned by
//! content, listed by `GET /api/v1/campaigns`; a broken file or a campaign aimed at a
//! sensitive category stops the hub at start with the file named.

use crate::common;

use common::{http_get, Site};
use till360_hub::server;

fn with_campaigns(site: &Site, text: &str) {
    std::fs::write(site.dir.path().join("campaigns.toml"), text).unwrap();
    let config = site.dir.path().join("hub.toml");
    let mut hub = std::fs::read_to_string(&config).unwrap();
    hub.insert_str(0, "campaigns = \"campaigns.toml\"\n");
    std::fs::write(&config, hub).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_set_is_served_with_a_stable_version() {
    let site = Site::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/campaigns.toml"),
    )
    .unwrap();
    with_campaigns(&site, &example);
    let hub = site.start().await;
    let (status, list) = http_get(hub.http_addr(), "/api/v1/campaigns").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().expect("an array").clone();
    let ids: Vec<&str> = list.iter().filter_map(|c| c["id"].as_str()).collect();
    let tables = example
        .lines()
        .filter(|l| l.trim_start().starts_with("[[campaign]]"))
        .count();
    assert_eq!(ids.len(), tables, "{ids:?}");
    assert!(ids.contains(&"big-basket"), "{ids:?}");
    // The content version, as `till360-agent status` shows the set it holds: 12 hex
    // digits of the set's content hash.
    let version = list[0]["version"].as_str().expect("version").to_string();
    assert_eq!(version.len(), 12, "{version}");
    assert!(version
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let campaigns = site.dir.path().join("campaigns.toml");
    let served = site.with_db(|db| till360_hub::campaigns::load(&campaigns, db).unwrap());
    assert_eq!(version, served.content_version());
    hub.shutdown().await;

    // The same file gives the same version after a restart.
    let hub = site.start().await;
    let (_, again) = http_get(hub.http_addr(), "/api/v1/campaigns").await;
    assert_eq!(again[0]["version"].as_str(), Some(version.as_str()));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_campaigns_file_serves_an_empty_list() {
    let site = Site::new();
    let hub = site.start().await;
    let (status, list) = http_get(hub.http_addr(), "/api/v1/campaigns").await;
    assert_eq!((status, list), (200, serde_json::json!([])));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_campaign_file_stops_the_hub_naming_it() {
    let site = Site::new();
    with_campaigns(
        &site,
        "[[campaign]]\nid = \"x\"\nname = \"X\"\ntrigger = \"moon_phase\"\noffer = \"?\"\nvalid_days = 7\n",
    );
    let err = match server::start(site.config()).await {
        Ok(_) => panic!("a hub with a broken campaign file started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("campaigns.toml") && err.contains("moon_phase"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_aimed_at_a_sensitive_category_stops_the_hub() {
    let site = Site::new();
    // The catalog says pharmacy is sensitive.
    site.with_db(|db| {
        let now = till360_shared::Timestamp::from_unix_ms(1_764_000_000_000, 0);
        let csv = "sku,description,category,sensitive\n8710000000031,Pregnancy test,pharmacy,yes\n";
        till360_hub::import::products(db, csv.as_bytes(), now).unwrap()
    });
    with_campaigns(
        &site,
        "[[campaign]]\nid = \"pharma\"\nname = \"Health\"\ntrigger = \"basket_category\"\n\
         category = \"pharmacy\"\noffer = \"10% off\"\nvalid_days = 7\n",
    );
    let err = match server::start(site.config()).await {
        Ok(_) => panic!("a hub targeting a sensitive category started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("campaigns.toml") && err.contains("pharma") && err.contains("sensitive"),
        "{err}"
    );
}
