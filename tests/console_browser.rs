//! The marketer's console in real headless Chromium against the demo system (a hub with
//! the back office imported and two tills on virtual ports that played a morning and an
//! afternoon of coupon redemptions): sign in, search a card and check the 360° page
//! against the API, change a consent, erase a customer, read a campaign's KPIs and
//! lift, download a mailing list, see a till go silent, all at desktop and phone width.
//! Screenshots of every page land in `target/tmp/browser/console/`.

use std::time::{Duration, Instant};

use serde_json::Value;
use till360::demo::{DemoOptions, DemoSystem};

use crate::harness::browser::{screenshot_dir, Browser};

const TOKEN: &str = "console-test-token-5f2c1e";
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

fn api(system: &DemoSystem, path: &str) -> (u16, Value) {
    let response = tokio::task::block_in_place(|| system.api().get(path, HTTP_TIMEOUT))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (response.status, response.json().unwrap_or(Value::Null))
}

/// Screenshots of the whole page at `width`: on a desktop one image as tall as the page
/// (up to 5,000 px); on a phone the page in screens of 1,400 px (`-1`, `-2`, ...), as
/// one scrolls it. The viewport is set back to `width` x 900 afterwards.
async fn screenshot_page(browser: &Browser, name: &str, width: u32) {
    browser.set_size(width, 900).await;
    let height = browser
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .as_u64()
        .unwrap_or(900)
        .clamp(400, 5000) as u32;
    if width >= 800 {
        browser.set_size(width, height).await;
        browser.screenshot(name).await;
    } else {
        const SCREEN: u32 = 1400;
        browser.set_size(width, SCREEN.min(height)).await;
        for part in 0..height.div_ceil(SCREEN).min(4) {
            browser
                .execute(
                    "window.scrollTo(0, arguments[0]); return null;",
                    vec![Value::from(part * SCREEN)],
                )
                .await;
            browser.screenshot(&format!("{name}-{}", part + 1)).await;
        }
        browser
            .execute("window.scrollTo(0, 0); return null;", vec![])
            .await;
    }
    browser.set_size(width, 900).await;
}

/// The page fits its width: nothing but tables (inside their scrolling wrappers) is
/// wider than the viewport.
async fn assert_fits(browser: &Browser, what: &str) {
    let overflow = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (scroll, inner) = (overflow[0].as_u64(), overflow[1].as_u64());
    assert!(
        scroll <= inner,
        "{what}: the page is wider than the viewport ({overflow})"
    );
}

async fn both_widths(browser: &Browser, url: &str, name: &str) {
    browser.goto(url).await;
    screenshot_page(browser, &format!("{name}-1280"), 1280).await;
    browser.set_size(390, 844).await;
    assert_fits(browser, name).await;
    screenshot_page(browser, &format!("{name}-390"), 390).await;
    browser.set_size(1280, 900).await;
}

/// The `data-state` of the till row `selector` selects (`null` if none).
async fn till_state(browser: &Browser, selector: String) -> Value {
    let script = format!(
        "const r = document.querySelector(\"{selector}\"); return r ? r.dataset.state : null;"
    );
    browser.execute(&script, vec![]).await
}

/// The focused element's class and text.
async fn focused(browser: &Browser) -> Value {
    browser
        .execute(
            "const e = document.activeElement; return e.className + '|' + e.textContent.trim();",
            vec![],
        )
        .await
}

/// Tab from the top of the page: the skip link first, then the navigation; every link
/// and button is reachable (nothing is taken out of the tab order, nothing reordered).
async fn assert_keyboard_first_stops(browser: &Browser) {
    const TAB: &str = "\u{E004}";
    browser
        .execute(
            "document.activeElement.blur(); window.scrollTo(0, 0); return null;",
            vec![],
        )
        .await;
    let body = browser.find("body").await;
    body.send_keys(TAB).await.expect("a Tab key");
    assert_eq!(focused(browser).await, Value::from("skip|Skip to content"));
    body.send_keys(TAB).await.expect("a Tab key");
    assert_eq!(focused(browser).await, Value::from("brand|Till360"));
    let unreachable = browser
        .execute(
            "return [...document.querySelectorAll('a, button, input, summary, [tabindex]')]\
               .filter(e => e.tabIndex !== 0 && e.type !== 'hidden').length;",
            vec![],
        )
        .await;
    assert_eq!(
        unreachable,
        Value::from(0),
        "links, buttons and fields are all in the tab order"
    );
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_works_through_the_console_in_chromium() {
    let Some(browser) = Browser::start(&screenshot_dir("console")).await else {
        return;
    };
    let mut system = DemoSystem::start(DemoOptions {
        receipts: 160,
        seed: 7,
        api_token: Some(TOKEN.into()),
        hub_toml_extra: "[console]\nsilent_after_seconds = 2\n".into(),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo system starts");
    let base = format!("http://{}", system.http_addr());
    browser.set_size(1280, 900).await;

    // Signed out: every page leads to the sign-in page, which shows nothing else.
    browser.goto(&format!("{base}/console/customers")).await;
    assert!(
        browser.current_url().await.contains("/console/sign-in"),
        "{}",
        browser.current_url().await
    );
    assert!(browser.exists("input#token").await);
    assert!(
        !browser.exists("nav").await,
        "no navigation before signing in"
    );
    screenshot_page(&browser, "sign-in-390", 390).await;
    browser.fill("input#token", "wrong-token").await;
    browser.submit_and_wait("form.sign-in").await;
    assert!(browser.exists("p.notice").await, "a wrong token is told");
    assert!(browser.current_url().await.contains("/console/sign-in"));
    browser.fill("input#token", TOKEN).await;
    browser.submit_and_wait("form.sign-in").await;
    assert_eq!(
        browser.current_url().await,
        format!("{base}/console/customers"),
        "back where the visitor wanted to go"
    );
    let session = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c.name == "till360_session")
        .expect("a session cookie");
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");

    // The overview's totals are the store's.
    both_widths(&browser, &format!("{base}/console/"), "overview").await;
    assert_keyboard_first_stops(&browser).await;
    let receipts_at_hub: u64 = system.morning().visits.len() as u64;
    let shown: u64 = browser
        .text("#total-transactions")
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(
        shown >= receipts_at_hub,
        "overview shows {shown} receipts, the morning had {receipts_at_hub}"
    );

    // A name prefix that several customers share lists them.
    let prefix: String = system.back_office().customers[0]
        .last_name
        .chars()
        .take(1)
        .collect();
    let sharing = system
        .back_office()
        .customers
        .iter()
        .filter(|c| {
            c.first_name
                .to_lowercase()
                .starts_with(&prefix.to_lowercase())
                || c.last_name
                    .to_lowercase()
                    .starts_with(&prefix.to_lowercase())
        })
        .count();
    browser.goto(&format!("{base}/console/customers")).await;
    browser.fill("input#q", &prefix).await;
    browser.submit_and_wait("form.search").await;
    if sharing > 1 {
        let rows = browser.find_all("#results tbody tr").await.len();
        assert_eq!(rows, sharing, "customers whose name starts with {prefix:?}");
        both_widths(&browser, &browser.current_url().await, "search").await;
    }

    // Search the busiest card; one match opens the 360° page.
    let (card, expected) = system
        .expected()
        .iter()
        .max_by_key(|(card, e)| (e.count, std::cmp::Reverse((*card).clone())))
        .map(|(c, e)| (c.clone(), e.clone()))
        .expect("carded receipts");
    browser.goto(&format!("{base}/console/customers")).await;
    browser.fill("input#q", &card).await;
    browser.submit_and_wait("form.search").await;
    let (status, profile) = api(&system, &format!("/api/v1/profiles/by-card/{card}"));
    assert_eq!(status, 200, "{profile}");
    let profile_id = text_of(&profile["profile_id"]);
    assert_eq!(
        browser.current_url().await,
        format!("{base}/console/customers/{profile_id}")
    );
    assert_eq!(browser.text("#profile-id").await, profile_id);
    let cards_shown = browser.text("#cards").await;
    for c in profile["cards"].as_array().unwrap() {
        assert!(cards_shown.contains(&text_of(c)), "{cards_shown} lacks {c}");
    }
    assert_eq!(
        browser.text("#customer-no").await,
        text_of(&profile["customer_no"])
    );
    assert_eq!(
        browser.text("#receipt-count").await,
        profile["transactions"]["count"].to_string()
    );
    assert!(profile["transactions"]["count"].as_u64().unwrap() >= expected.count);
    let coupons = browser.text("#coupons").await;
    assert!(
        coupons.contains(&format!("Issued {}", profile["coupons"]["issued"]))
            && coupons.contains(&format!("Redeemed {}", profile["coupons"]["redeemed"])),
        "{coupons} vs {}",
        profile["coupons"]
    );
    let segments_shown = browser.text("#segments").await;
    for s in profile["segments"].as_array().unwrap() {
        assert!(segments_shown.contains(&text_of(s)), "{segments_shown}");
    }
    let timeline_rows = browser.find_all("#timeline tbody tr").await.len();
    assert_eq!(timeline_rows, profile["timeline"].as_array().unwrap().len());
    for (purpose, consent) in profile["consents"].as_object().unwrap() {
        let state = browser
            .text(&format!(
                "#consents tr[data-purpose='{purpose}'] .consent-state"
            ))
            .await;
        let want = if consent["granted"] == Value::Bool(true) {
            "granted"
        } else {
            "withdrawn"
        };
        assert_eq!(state, want, "consent {purpose}");
    }
    if let Some(rfm) = profile["traits"]["rfm"].as_str() {
        assert_eq!(browser.text("dd[data-trait='rfm'] strong").await, rfm);
    }
    both_widths(&browser, &browser.current_url().await, "customer-360").await;

    // Export: the API's JSON, downloaded with the session.
    let (status, exported) = browser
        .fetch_text(&format!("/console/customers/{profile_id}/export"))
        .await;
    assert_eq!(status, 200, "{exported}");
    let exported: Value = serde_json::from_str(&exported).expect("JSON");
    let (_, api_export) = api(&system, &format!("/api/v1/profiles/{profile_id}/export"));
    assert_eq!(exported, api_export, "the console's export is the API's");

    // Change a consent: a confirmation first, then the change, recorded as the console's.
    let sms_granted = profile["consents"]["sms"]["granted"] == Value::Bool(true);
    browser
        .click_and_wait("#consents tr[data-purpose='sms'] button")
        .await;
    assert!(
        browser.exists("#consent-target").await,
        "a confirmation page"
    );
    let (_, unchanged) = api(&system, &format!("/api/v1/profiles/{profile_id}"));
    assert_eq!(
        unchanged["consents"]["sms"], profile["consents"]["sms"],
        "nothing changes before the confirmation"
    );
    screenshot_page(&browser, "consent-confirm-1280", 1280).await;
    browser.click_and_wait("button#confirm").await;
    assert!(browser.current_url().await.contains("changed=consent"));
    let (_, changed) = api(&system, &format!("/api/v1/profiles/{profile_id}"));
    assert_eq!(
        changed["consents"]["sms"]["granted"],
        Value::Bool(!sms_granted),
        "{}",
        changed["consents"]
    );
    assert_eq!(changed["consents"]["sms"]["source"], "console");

    // A campaign page shows the API's KPIs and its uplift, with its uncertainty.
    let (_, campaigns) = api(&system, "/api/v1/campaigns");
    let campaign = campaigns
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|c| c["issued"].as_u64())
        .expect("campaigns")
        .clone();
    let id = text_of(&campaign["id"]);
    browser.goto(&format!("{base}/console/campaigns")).await;
    browser
        .click_and_wait(&format!("tr[data-campaign='{id}'] a"))
        .await;
    let (_, kpis) = api(&system, &format!("/api/v1/campaigns/{id}/kpis"));
    for (css, key) in [
        ("#kpi-issued", "issued"),
        ("#kpi-control", "control"),
        ("#kpi-redeemed", "redeemed"),
        ("#kpi-duplicates", "duplicate_redemptions"),
        ("#kpi-forged", "forged_redemptions"),
    ] {
        assert_eq!(browser.text(css).await, kpis[key].to_string(), "{key}");
    }
    assert_eq!(
        browser.text("#treated-customers").await,
        kpis["uplift"]["treated_customers"].to_string()
    );
    assert_eq!(
        browser.text("#control-customers").await,
        kpis["uplift"]["control_customers"].to_string()
    );
    let certainty = browser
        .execute(
            "return document.querySelector('#certainty').dataset.certainty;",
            vec![],
        )
        .await;
    let smallest = kpis["uplift"]["treated_customers"]
        .as_u64()
        .min(kpis["uplift"]["control_customers"].as_u64())
        .unwrap();
    let want = if smallest < 30 { "too-few" } else { "interval" };
    assert_eq!(certainty, Value::from(want), "{kpis}");
    assert!(browser.exists("figure.chart svg").await);
    both_widths(&browser, &browser.current_url().await, "campaign").await;
    browser.goto(&format!("{base}/console/campaigns")).await;
    screenshot_page(&browser, "campaigns-1280", 1280).await;

    // The mailing list holds only members who consented to e-mail, the API's list.
    both_widths(&browser, &format!("{base}/console/segments"), "segments").await;
    let (status, csv) = browser
        .fetch_text("/console/segments/regulars/members.csv?channel=email")
        .await;
    assert_eq!(status, 200, "{csv}");
    let api_csv = tokio::task::block_in_place(|| {
        system.api().get(
            "/api/v1/segments/regulars/members.csv?channel=email",
            HTTP_TIMEOUT,
        )
    })
    .unwrap();
    assert_eq!(csv, api_csv.body, "the console's list is the API's");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let (_, members) = api(&system, "/api/v1/segments");
    let size = members
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "regulars")
        .map(|s| s["size"].as_u64().unwrap())
        .unwrap();
    assert!(!rows.is_empty(), "some regulars consented to e-mail");
    assert!(
        (rows.len() as u64) < size,
        "regulars without e-mail consent are left out ({} of {size})",
        rows.len()
    );
    for row in rows {
        let email = row.rsplit(',').next().unwrap();
        let (_, found) = api(&system, &format!("/api/v1/profiles/search?email={email}"));
        assert_eq!(
            found[0]["consents"]["email"]["granted"],
            Value::Bool(true),
            "{email} is on the list without consent"
        );
    }
    browser
        .goto(&format!("{base}/console/segments/regulars"))
        .await;
    screenshot_page(&browser, "segment-members-1280", 1280).await;

    // Erase a customer: a wrong confirmation erases nothing; the right one erases.
    let victim = system
        .back_office()
        .customers
        .iter()
        .find(|c| c.cards.first().is_some_and(|k| *k != card))
        .expect("another customer")
        .clone();
    let (_, victim_profile) = api(
        &system,
        &format!("/api/v1/profiles/by-card/{}", victim.cards[0]),
    );
    let victim_id = text_of(&victim_profile["profile_id"]);
    browser
        .goto(&format!("{base}/console/customers/{victim_id}"))
        .await;
    browser.fill("#confirm-erase", "not-the-id").await;
    browser.submit_and_wait("form.erase").await;
    let (status, _) = api(&system, &format!("/api/v1/profiles/{victim_id}"));
    assert_eq!(status, 200, "a wrong confirmation erases nothing");
    browser
        .goto(&format!("{base}/console/customers/{victim_id}"))
        .await;
    browser.fill("#confirm-erase", &victim_id).await;
    browser.submit_and_wait("form.erase").await;
    assert!(browser.exists("#erased").await);
    screenshot_page(&browser, "erased-1280", 1280).await;
    let (status, _) = api(&system, &format!("/api/v1/profiles/{victim_id}"));
    assert_eq!(status, 404, "the customer is erased");

    // Tills: both sync; one stopped goes silent.
    browser.goto(&format!("{base}/console/tills")).await;
    let till = &system.tills()[0];
    let selector = format!("tr[data-till='{}/{}']", till.store, till.till);
    assert_ne!(
        till_state(&browser, selector.clone()).await,
        Value::from("silent")
    );
    system.stop_till(0).await.expect("the till stops");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        browser.goto(&format!("{base}/console/tills")).await;
        if till_state(&browser, selector.clone()).await == "silent" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped till never went silent"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let other = &system.tills()[1];
    assert_ne!(
        till_state(
            &browser,
            format!("tr[data-till='{}/{}']", other.store, other.till)
        )
        .await,
        Value::from("silent"),
        "the running till is not silent"
    );
    both_widths(&browser, &format!("{base}/console/tills"), "tills").await;

    // Dutch, from the switch; the choice sticks.
    browser.click_and_wait("ul.lang a[lang='nl']").await;
    assert_eq!(browser.text("main h1").await, "Kassa's");
    browser.goto(&format!("{base}/console/")).await;
    assert_eq!(browser.text("main h1").await, "Overzicht");
    screenshot_page(&browser, "overview-nl-390", 390).await;

    // Signing out ends the session.
    browser.set_size(1280, 900).await;
    browser.submit_and_wait("header form").await;
    browser.goto(&format!("{base}/console/tills")).await;
    assert!(browser.current_url().await.contains("/console/sign-in"));

    browser.close().await;
    system.stop().await.expect("the demo system stops");
}
