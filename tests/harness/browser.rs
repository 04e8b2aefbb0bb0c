//! Headless Chromium driven through WebDriver (`chromedriver` on a free loopback port, a
//! child process killed on drop), for tests that look at the hub's pages as a person does.
//!
//! Both come from Debian's packages: `apt-get install -y chromium chromium-driver`. Without
//! them [`Browser::start`] says so loudly on stderr and returns `None` (the test returns
//! early), unless `TILL360_REQUIRE_BROWSER=1`, set by CI, which makes it fail instead.
//!
//! Every call is bounded by [`BROWSER_DEADLINE`] and panics with what it was doing, as the
//! rest of the harness does.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;
use till360::rig::free_tcp_addr;

/// How long any one browser step (start, page load, script, element lookup) may take.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(30);

/// Set to `1` (CI does) to fail instead of skipping when Chromium is not installed.
pub const REQUIRE_BROWSER_ENV: &str = "TILL360_REQUIRE_BROWSER";

/// Where Debian's `chromium` wrapper script execs the browser itself. The wrapper only
/// adds flags from /etc/chromium.d (and in a container whose /dev/shm shows up twice its
/// `[` test prints an error), so the binary is preferred when it is there.
const DEBIAN_CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";

/// A fresh folder for the screenshots of `test`: `target/tmp/browser/<test>`, kept after
/// the run for a look.
pub fn screenshot_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it.
    pub same_site: Option<String>,
}

/// A headless Chromium session. Dropping it ends chromedriver and the browser.
pub struct Browser {
    client: Client,
    driver: Child,
    driver_log: PathBuf,
    out_dir: PathBuf,
    /// The browser's fresh profile; removed after the processes are gone.
    profile: TempDir,
}

/// The first executable file among `names` on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Chromium binary: Debian's, else `chromium` (or another Chrome) on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    let debian = Path::new(DEBIAN_CHROMIUM_BINARY);
    if is_executable(debian) {
        return Some(debian.to_path_buf());
    }
    on_path(&["chromium", "chromium-browser", "google-chrome"]).or_else(|| {
        let usr_bin = Path::new("/usr/bin/chromium");
        is_executable(usr_bin).then(|| usr_bin.to_path_buf())
    })
}

/// Awaits `step`, failing the test if it takes longer than [`BROWSER_DEADLINE`] or errs.
async fn bounded<T, E: std::fmt::Display>(
    what: impl std::fmt::Display,
    step: impl Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(BROWSER_DEADLINE, step).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("browser: {what}: {e}"),
        Err(_) => panic!("browser: {what}: no answer within {BROWSER_DEADLINE:?}"),
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session whose screenshots go to
    /// `out_dir` (created). `None`, said loudly on stderr, when either program is missing
    /// and `TILL360_REQUIRE_BROWSER=1` is not set; any other failure panics.
    pub async fn start(out_dir: &Path) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (find_chromium(), on_path(&["chromedriver"]))
        else {
            let message = "browser tests need chromium and chromium-driver \
                           (apt-get install -y chromium chromium-driver)";
            if std::env::var(REQUIRE_BROWSER_ENV).is_ok_and(|v| v.trim() == "1") {
                panic!("{message}; {REQUIRE_BROWSER_ENV}=1 makes that a failure");
            }
            eprintln!("=== SKIPPED: {message}; set {REQUIRE_BROWSER_ENV}=1 to fail instead ===");
            return None;
        };
        std::fs::create_dir_all(out_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", out_dir.display()));
        let profile = tempfile::Builder::new()
            .prefix("till360-chromium-")
            .tempdir()
            .expect("a temporary folder for the browser profile");

        let addr = free_tcp_addr().expect("a free port for chromedriver");
        let driver_log = out_dir.join("chromedriver.log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={}", addr.port()))
            .arg(format!("--log-path={}", driver_log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: on drop the group goes, browser processes included.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        // From here on a panic drops the guard, which ends chromedriver.
        let mut partial = DriverGuard(Some(driver));

        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            if let Some(child) = partial.0.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "chromedriver exited ({status}) before answering:\n{}",
                        super::read_log(&driver_log)
                    );
                }
            }
            // Listening is ready: it binds once it can take sessions. (Its /status answers
            // keep the connection open, which a `Connection: close` client waits out.)
            let ready =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await
                    .is_ok_and(|connected| connected.is_ok());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on {addr} not ready within {BROWSER_DEADLINE:?}:\n{}",
                super::read_log(&driver_log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-gpu",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = bounded(
            format!("opening a session on chromedriver {addr}"),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://{addr}")),
        )
        .await;
        let driver = partial.0.take().expect("chromedriver is running");
        let browser = Browser {
            client,
            driver,
            driver_log,
            out_dir: out_dir.to_path_buf(),
            profile,
        };
        let timeouts = TimeoutConfiguration::new(
            Some(BROWSER_DEADLINE),
            Some(BROWSER_DEADLINE),
            Some(Duration::ZERO),
        );
        bounded(
            "setting the timeouts",
            browser.client.update_timeouts(timeouts),
        )
        .await;
        Some(browser)
    }

    /// The underlying WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Sets the viewport (what `window.innerWidth` and `innerHeight` show) to `width` x
    /// `height` CSS pixels: the window is resized, then grown by whatever the window has
    /// beyond its viewport.
    pub async fn set_size(&self, width: u32, height: u32) {
        let what = format!("setting the viewport to {width}x{height}");
        bounded(&what, self.client.set_window_size(width, height)).await;
        let (inner_w, inner_h) = self.viewport().await;
        if (inner_w, inner_h) != (width, height) {
            // The window's frame: what it has beyond its viewport.
            let window = |want: u32, inner: u32| want + want.saturating_sub(inner);
            bounded(
                &what,
                self.client
                    .set_window_size(window(width, inner_w), window(height, inner_h)),
            )
            .await;
        }
        let viewport = self.viewport().await;
        assert_eq!(
            viewport,
            (width, height),
            "the browser's viewport after resizing the window"
        );
    }

    /// `(window.innerWidth, window.innerHeight)`.
    pub async fn viewport(&self) -> (u32, u32) {
        let size = self
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let px = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_else(|| panic!("the viewport is not in pixels: {size}"))
        };
        (px(&size[0]), px(&size[1]))
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        bounded(format!("opening {url}"), self.client.goto(url)).await;
    }

    /// The page's URL now.
    pub async fn current_url(&self) -> String {
        bounded("reading the current URL", self.client.current_url())
            .await
            .to_string()
    }

    /// Saves a PNG of the viewport as `<out_dir>/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = bounded(
            format!("taking the screenshot {name}"),
            self.client.screenshot(),
        )
        .await;
        let path = self.out_dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// The first element `css` selects, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(BROWSER_DEADLINE)
            .for_element(Locator::Css(css));
        match tokio::time::timeout(BROWSER_DEADLINE + Duration::from_secs(1), found).await {
            Ok(Ok(element)) => element,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".to_string(),
                };
                panic!(
                    "browser: no {css:?} on {} within {BROWSER_DEADLINE:?}: {why}",
                    self.current_url().await
                )
            }
        }
    }

    /// Every element `css` selects now (no wait: empty when there is none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        bounded(
            format!("finding all {css:?}"),
            self.client.find_all(Locator::Css(css)),
        )
        .await
    }

    /// Whether `css` selects anything now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The rendered text of the first element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        bounded(format!("reading the text of {css:?}"), element.text()).await
    }

    /// The whole page's rendered text.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Replaces the value of the input `css` selects with `value`, as typed.
    pub async fn fill(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        bounded(format!("clearing {css:?}"), element.clear()).await;
        bounded(format!("typing into {css:?}"), element.send_keys(value)).await;
    }

    /// Marks the current document, so [`Self::wait_for_new_page`] can tell when another
    /// one has replaced it.
    async fn mark_page(&self) {
        self.execute("window.__till360_old_page = true; return null;", vec![])
            .await;
    }

    /// Waits until the marked document was replaced by a new one that has loaded.
    async fn wait_for_new_page(&self, what: &str) {
        let deadline = std::time::Instant::now() + BROWSER_DEADLINE;
        loop {
            let state = self
                .client
                .execute(
                    "return window.__till360_old_page === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            if matches!(state, Ok(Value::String(ref s)) if s == "complete") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: no new page within {BROWSER_DEADLINE:?} (last state {state:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits the form `css` selects and waits for the page it leads to.
    pub async fn submit_and_wait(&self, css: &str) {
        self.mark_page().await;
        self.submit(css).await;
        self.wait_for_new_page(&format!("submitting {css:?}")).await;
    }

    /// Clicks the link or button `css` selects and waits for the page it leads to.
    pub async fn click_and_wait(&self, css: &str) {
        self.mark_page().await;
        self.click(css).await;
        self.wait_for_new_page(&format!("clicking {css:?}")).await;
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        bounded(format!("clicking {css:?}"), element.click()).await;
    }

    /// Submits the form `css` selects with its submit button, as a person does.
    pub async fn submit(&self, css: &str) {
        self.find(css).await;
        let form = bounded(
            format!("finding the form {css:?}"),
            self.client.form(Locator::Css(css)),
        )
        .await;
        bounded(format!("submitting {css:?}"), form.submit()).await;
    }

    /// Runs `script` (a function body: `arguments` are `args`, `return` gives the value).
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        bounded(
            format!("running the script {script:?}"),
            self.client.execute(script, args),
        )
        .await
    }

    /// `fetch(url)` from the page, with its cookies (`credentials: 'same-origin'`):
    /// `(status, body)`.
    pub async fn fetch_text(&self, url: &str) -> (u16, String) {
        const FETCH: &str = "const [url, done] = arguments;\
            fetch(url, {credentials: 'same-origin'})\
              .then(r => r.text().then(body => done({status: r.status, body})))\
              .catch(e => done({error: String(e)}));";
        let answer = bounded(
            format!("fetching {url} from the page"),
            self.client.execute_async(FETCH, vec![json!(url)]),
        )
        .await;
        if let Some(error) = answer.get("error") {
            panic!("fetching {url} from the page failed: {error}");
        }
        let status = answer["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fetching {url}: no status in {answer}"));
        let body = answer["body"].as_str().unwrap_or_default().to_string();
        (status, body)
    }

    /// The cookies the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        bounded("reading the cookies", self.client.get_all_cookies())
            .await
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                path: c.path().map(str::to_string),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect()
    }

    /// Ends the session (chromedriver closes the browser), then chromedriver.
    pub async fn close(self) {
        // A session that does not close in time still goes with the process group.
        let _ = tokio::time::timeout(BROWSER_DEADLINE, self.client.clone().close()).await;
    }

    /// chromedriver's log, for a failure message.
    pub fn driver_log(&self) -> String {
        super::read_log(&self.driver_log)
    }
}

/// Kills chromedriver's process group (browser processes included) and reaps it.
fn end_driver(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // The group this harness made for its own chromedriver (see `process_group(0)`).
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// chromedriver before its session exists: killed if the start panics.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            end_driver(child);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The profile folder (a field) is removed after this, once nothing writes to it.
        end_driver(&mut self.driver);
    }
}
