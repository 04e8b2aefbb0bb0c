//! Headless Chromium against a real hub (`till360 hub run`): the browser harness opens a
//! page, reads its text, sizes the viewport as a phone and as a desktop and saves a
//! screenshot of each under `target/tmp/browser/`.

use crate::harness::browser::{screenshot_dir, Browser};
use crate::harness::Site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reads_the_hubs_health_at_phone_and_desktop_widths() {
    let Some(browser) = Browser::start(&screenshot_dir("smoke")).await else {
        return;
    };
    let site = Site::new();
    // The hub's start waits on its own (blocking) poll.
    let _hub = tokio::task::block_in_place(|| site.start_hub());

    let url = format!("http://{}/api/v1/health", site.hub.http);
    browser.goto(&url).await;
    assert_eq!(browser.current_url().await, url);
    let text = browser.page_text().await;
    assert!(
        text.contains(r#""status":"ok""#),
        "the health page as the browser shows it: {text:?}"
    );

    for (name, width, height) in [("health-phone", 390, 844), ("health-desktop", 1280, 900)] {
        browser.set_size(width, height).await;
        let inner_width = browser.execute("return window.innerWidth;", vec![]).await;
        assert_eq!(
            inner_width,
            serde_json::json!(width),
            "{name}: window.innerWidth"
        );
        let png = browser.screenshot(name).await;
        let bytes = std::fs::read(&png).expect("the screenshot was written");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            png.display()
        );
        // The IHDR chunk: width and height of the image, big-endian, at bytes 16..24.
        let size = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(
            (size(16), size(20)),
            (width, height),
            "{}: the screenshot is the viewport",
            png.display()
        );
    }

    // The page's own fetch sees the same document.
    let (status, body) = browser.fetch_text("/api/v1/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    browser.close().await;
}
