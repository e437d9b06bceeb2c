//! Headless Chromium driven through ChromeDriver, for end-to-end tests of the web pages.
//!
//! A small client of the W3C WebDriver protocol (<https://www.w3.org/TR/webdriver2/>)
//! over reqwest: JSON in, JSON out, nothing a heavier crate would add for the few
//! commands these tests need.
//!
//! The browser trusts the appliance's local CA the way a user's would: the CA goes into
//! the NSS database of a fresh `$HOME` (Chromium on Linux reads its user trust store from
//! `$HOME/.pki/nssdb`). Certificate errors are never ignored, so a test also proves the
//! appliance's TLS setup is acceptable to a real browser.
//!
//! Every WebDriver call has a timeout, so a wedged browser fails a test instead of
//! hanging it. Methods panic with context (the page source where it helps): a failed
//! step should fail the test loudly.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The key under which WebDriver returns an element reference (fixed by the spec).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The longest one WebDriver call may take on the client side.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// ChromeDriver's own page-load limit; below [`CALL_TIMEOUT`] so that a slow page comes
/// back as a WebDriver error (with a message) rather than a client timeout.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(25);

/// How long `find` waits for an element to appear (WebDriver's implicit wait), which
/// covers the moment between a click and the next page's load.
const IMPLICIT_WAIT: Duration = Duration::from_secs(5);

/// How long ChromeDriver may take to listen after it is started.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Chromium's narrowest window; a narrower screen is emulated as a phone.
const MIN_DESKTOP_WIDTH: u32 = 500;

/// The nickname of the appliance's CA in the browser's NSS database.
const CA_NICKNAME: &str = "contextvault-test-ca";

/// The programs the browser tests need, found on `PATH`.
#[derive(Debug, Clone)]
struct Programs {
    chromium: PathBuf,
    chromedriver: PathBuf,
    certutil: PathBuf,
    /// axe-core's `axe.min.js`, run in every page a test checks for accessibility.
    axe: PathBuf,
}

impl Programs {
    fn find() -> Result<Programs, String> {
        let missing = |what: &str, package: &str| {
            format!(
                "{what} is not installed (Debian package {package}; scripts/install-deps --test installs it)"
            )
        };
        Ok(Programs {
            chromium: on_path(&["chromium", "chromium-browser"])
                .ok_or_else(|| missing("chromium", "chromium"))?,
            chromedriver: on_path(&["chromedriver"])
                .ok_or_else(|| missing("chromedriver", "chromium-driver"))?,
            certutil: on_path(&["certutil"]).ok_or_else(|| missing("certutil", "libnss3-tools"))?,
            axe: axe_path()?,
        })
    }
}

/// `$CV_AXE_JS`, or `target/axe/axe.min.js` of the workspace, where `scripts/fetch-axe`
/// (called by `scripts/test`) puts the pinned axe-core.
fn axe_path() -> Result<PathBuf, String> {
    let path = match std::env::var_os("CV_AXE_JS") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/axe/axe.min.js"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "axe-core is not at {} (scripts/fetch-axe downloads it; scripts/test calls it)",
            path.display()
        ))
    }
}

/// One rule axe-core found broken on a page, with the elements that break it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AxeViolation {
    /// The rule (`color-contrast`, `label`, ...): <https://dequeuniversity.com/rules/axe/4.14/>.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    pub help: String,
    /// CSS selectors of the offending elements.
    pub targets: Vec<String>,
}

impl fmt::Display for AxeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} at {}",
            self.id,
            self.impact,
            self.help,
            self.targets.join(", ")
        )
    }
}

/// The first of `names` that is a file in a directory of `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A WebDriver command that failed.
#[derive(Debug)]
pub struct WebDriverError {
    /// The spec's error code (`no such element`, `insecure certificate`, ...), or
    /// `transport` when ChromeDriver could not be reached or answered garbage.
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

impl WebDriverError {
    fn transport(message: impl fmt::Display) -> WebDriverError {
        WebDriverError {
            error: "transport".into(),
            message: message.to_string(),
        }
    }
}

/// The User-Agent of Safari on an iPhone, for phone-sized sessions.
const PHONE_USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
/// A desktop Chromium's User-Agent.
const DESKTOP_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    /// `None` once the session has been shut down.
    chromedriver: Option<Child>,
    driver_port: u16,
    session: String,
    /// `http://127.0.0.1:PORT/session/ID`, the prefix of every session command.
    base: String,
    http: reqwest::Client,
    /// `$HOME` of ChromeDriver and Chromium: the NSS database, the profile, the logs.
    home: TempDir,
    /// The source of axe-core, injected into a page before it is checked.
    axe_source: String,
}

/// An element of the current page, as WebDriver refers to it.
#[derive(Debug)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    /// The selector it was found by, for error messages.
    css: String,
}

impl Browser {
    /// `Ok` when Chromium, ChromeDriver, certutil and axe-core are installed; otherwise
    /// the reason the browser tests cannot run.
    pub fn availability() -> Result<(), String> {
        Programs::find().map(|_| ())
    }

    /// Starts ChromeDriver on a free port and a headless Chromium session with a
    /// `width`×`height` (CSS px) viewport that trusts `ca_pem` (the appliance's local
    /// CA). Below 500 px wide, the session emulates a phone (mobile viewport, touch, and
    /// a phone's User-Agent).
    pub async fn start(ca_pem: &[u8], width: u32, height: u32) -> Browser {
        let programs =
            Programs::find().unwrap_or_else(|reason| panic!("cannot start a browser: {reason}"));
        let home = tempfile::Builder::new()
            .prefix("cv-browser-")
            .tempdir()
            .unwrap();
        trust_ca(&programs.certutil, home.path(), ca_pem);
        let axe_source = std::fs::read_to_string(&programs.axe)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", programs.axe.display()));

        let driver_port = crate::free_port();
        let log_path = home.path().join("chromedriver.log");
        let chromedriver = Command::new(&programs.chromedriver)
            .arg(format!("--port={driver_port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that shutting it down also reaches every
            // Chromium process it started, even if it dies without closing them.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", programs.chromedriver.display()));

        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .no_proxy()
            .build()
            .unwrap();
        let mut browser = Browser {
            chromedriver: Some(chromedriver),
            driver_port,
            session: String::new(),
            base: String::new(),
            http,
            home,
            axe_source,
        };
        browser.wait_driver_ready().await;

        let profile = browser.home.path().join("profile");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    // A certificate error must fail the test, never be clicked through.
                    "acceptInsecureCerts": false,
                    "goog:chromeOptions": {
                        "binary": programs.chromium,
                        "args": [
                            "--headless",
                            // Tests run as root in containers, where the sandbox cannot start.
                            "--no-sandbox",
                            "--disable-gpu",
                            // Keeps the browser on the TCP+TLS path the appliance serves.
                            "--disable-quic",
                            // No network calls of its own: the test machines are offline,
                            // and waiting for those only slows the test down.
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            // Containers often have a tiny /dev/shm, which crashes tabs.
                            "--disable-dev-shm-usage",
                            format!("--user-data-dir={}", profile.display()),
                            format!("--window-size={width},{height}"),
                        ],
                        // Chromium will not make a window narrower than 500 px, even
                        // headless, so a phone's screen is emulated: its CSS size, and
                        // for phone widths, a mobile viewport (honouring the page's
                        // `<meta name=viewport>`) with touch.
                        "mobileEmulation": {
                            "deviceMetrics": {
                                "width": width,
                                "height": height,
                                "pixelRatio": 1,
                                "mobile": width < MIN_DESKTOP_WIDTH,
                                "touch": width < MIN_DESKTOP_WIDTH,
                            },
                            // A phone says so, as Safari on an iPhone does.
                            "userAgent": if width < MIN_DESKTOP_WIDTH { PHONE_USER_AGENT } else { DESKTOP_USER_AGENT },
                        },
                    },
                },
            },
        });
        let created = browser
            .request(
                reqwest::Method::POST,
                &browser.driver_url("/session"),
                Some(capabilities),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "ChromeDriver could not start Chromium: {e}\n{}",
                    browser.driver_log()
                )
            });
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in ChromeDriver's answer: {created}"))
            .to_owned();
        browser.base = browser.driver_url(&format!("/session/{}", browser.session));
        browser
            .cmd(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({
                    "implicit": IMPLICIT_WAIT.as_millis() as u64,
                    "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                    "script": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                })),
            )
            .await
            .unwrap();
        browser
    }

    fn driver_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.driver_port)
    }

    /// The end of ChromeDriver's log, for failure messages.
    pub fn driver_log(&self) -> String {
        let text =
            std::fs::read_to_string(self.home.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("ChromeDriver log (last lines):\n{tail}")
    }

    /// Polls `GET /status` until ChromeDriver says it is ready.
    async fn wait_driver_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(status) = self
                .request(reqwest::Method::GET, &self.driver_url("/status"), None)
                .await
                && status["ready"] == Value::Bool(true)
            {
                return;
            }
            if let Some(Ok(Some(exit))) = self.chromedriver.as_mut().map(Child::try_wait) {
                panic!(
                    "ChromeDriver exited at start ({exit})\n{}",
                    self.driver_log()
                );
            }
            assert!(
                started.elapsed() < DRIVER_START_TIMEOUT,
                "ChromeDriver did not become ready within {DRIVER_START_TIMEOUT:?}\n{}",
                self.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends one WebDriver request and returns its `value`.
    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(WebDriverError::transport)?;
        let status = resp.status();
        let mut answer: Value = resp.json().await.map_err(WebDriverError::transport)?;
        let value = answer["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        Err(WebDriverError {
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// A command of this session (`path` is relative to `/session/ID`).
    async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        self.request(method, &format!("{}{path}", self.base), body)
            .await
    }

    /// Opens `url` and waits for it to load. Panics, saying so, when Chromium shows a
    /// certificate error instead of the page (the CA was not trusted).
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self
            .cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
        {
            if e.error == "insecure certificate" {
                panic!(
                    "Chromium does not trust the appliance's certificate at {url} ({e}): the local CA did not reach its NSS database"
                );
            }
            panic!("could not open {url}: {e}");
        }
        self.assert_no_certificate_error(url).await;
    }

    /// Chromium's interstitial for a bad certificate is titled "Privacy error".
    async fn assert_no_certificate_error(&self, url: &str) {
        let title = self.title().await;
        assert!(
            !title.contains("Privacy error"),
            "Chromium shows a certificate error for {url} instead of the page: the appliance's CA is not trusted or its certificate is not acceptable to a browser"
        );
    }

    pub async fn current_url(&self) -> String {
        self.value(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn title(&self) -> String {
        self.value(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn page_source(&self) -> String {
        self.value(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs a command that must succeed and returns its value.
    async fn value(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        self.cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {what} failed: {e}"))
    }

    /// The first element matching `css`, waiting up to the implicit wait for it.
    pub async fn try_find(&self, css: &str) -> Result<Element<'_>, WebDriverError> {
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        let id = found[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| WebDriverError::transport(format!("no element reference in {found}")))?;
        Ok(Element {
            browser: self,
            id: id.to_owned(),
            css: css.to_owned(),
        })
    }

    /// The first element matching `css`; panics with the page's URL and source when
    /// there is none.
    pub async fn find(&self, css: &str) -> Element<'_> {
        match self.try_find(css).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no element `{css}` ({e}) on {}:\n{}",
                self.current_url().await,
                self.page_source().await
            ),
        }
    }

    /// Fills in the first-run setup form (on `/setup`) and submits it: the setup code,
    /// the owner's name and passphrase (twice). The time zone keeps its default.
    pub async fn submit_setup(&self, setup_code: &str, name: &str, passphrase: &str) {
        self.type_into("input[name=setup_code]", setup_code).await;
        self.type_into("input[name=name]", name).await;
        self.type_into("input[name=passphrase]", passphrase).await;
        self.type_into("input[name=passphrase_confirm]", passphrase)
            .await;
        self.click("form[action='/setup'] [type=submit]").await;
    }

    /// Clears the field matching `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.type_text(text).await;
    }

    /// Clicks the element matching `css` (and waits for a navigation it starts).
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await;
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Emulates the system's dark (or light) colour scheme, `prefers-color-scheme`, for
    /// the pages that follow (through ChromeDriver's DevTools bridge, as WebDriver has
    /// no command for it).
    pub async fn prefer_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.value(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] },
            })),
        )
        .await;
    }

    /// The serious and critical accessibility violations axe-core finds in the current
    /// page (every rule axe-core runs by default: WCAG 2.x A and AA and best practices).
    /// axe-core is injected through WebDriver, which the page's CSP does not restrict,
    /// so the appliance serves no script for it.
    pub async fn accessibility_violations(&self) -> Vec<AxeViolation> {
        let loaded = self
            .execute("return typeof window.axe === 'object'", vec![])
            .await;
        if loaded != Value::Bool(true) {
            // The UMD bundle sets `window.axe` when there is no module system.
            self.execute(&self.axe_source, vec![]).await;
        }
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({
                    "script": "const done = arguments[arguments.length - 1];
                        axe.run(document, { resultTypes: ['violations'] })
                            .then(r => done(r.violations
                                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                                .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                    targets: v.nodes.map(n => n.target.join(' ')) }))))
                            .catch(e => done({ error: String(e) }));",
                    "args": [],
                })),
            )
            .await
            .unwrap_or_else(|e| panic!("axe.run failed: {e}"));
        if let Some(error) = found.get("error") {
            panic!("axe.run failed: {error}");
        }
        serde_json::from_value(found.clone())
            .unwrap_or_else(|e| panic!("axe.run returned {found}, not a list of violations: {e}"))
    }

    /// Panics, listing them, when the current page has serious or critical
    /// accessibility violations.
    pub async fn assert_accessible(&self) {
        let violations = self.accessibility_violations().await;
        if violations.is_empty() {
            return;
        }
        let list: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
        panic!(
            "{} has {} serious or critical accessibility violations (axe-core):\n{}",
            self.current_url().await,
            violations.len(),
            list.join("\n")
        );
    }

    /// Saves a PNG of the viewport at `path`, creating its directory.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.value(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the screenshot is not base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Polls the current URL until `predicate` accepts it; returns it. Panics with the
    /// page's URL and source after `timeout`.
    pub async fn wait_for_url(
        &self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let started = Instant::now();
        loop {
            let url = self.current_url().await;
            if predicate(&url) {
                self.assert_no_certificate_error(&url).await;
                return url;
            }
            if started.elapsed() > timeout {
                panic!(
                    "still on {url} after {timeout:?} (title {:?}):\n{}",
                    self.title().await,
                    self.page_source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's URL has the path `path` (`/dashboard`, whatever the host
    /// and query).
    pub async fn wait_for_path(&self, path: &str, timeout: Duration) -> String {
        self.wait_for_url(
            |url| reqwest::Url::parse(url).is_ok_and(|u| u.path() == path),
            timeout,
        )
        .await
    }

    /// Waits until the page's visible text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) {
        crate::eventually(timeout, &format!("the page to show {needle:?}"), || async {
            let text = self
                .execute(
                    "return document.body ? document.body.innerText : ''",
                    vec![],
                )
                .await;
            text.as_str()
                .is_some_and(|t| t.contains(needle))
                .then_some(())
        })
        .await;
    }

    /// Ends the session (Chromium exits) and stops ChromeDriver.
    pub async fn quit(mut self) {
        if let Err(e) = self.cmd(reqwest::Method::DELETE, "", None).await {
            eprintln!("closing the browser session failed: {e}");
        }
        self.stop_driver();
    }

    /// Kills ChromeDriver's process group (ChromeDriver and any Chromium left behind)
    /// and reaps ChromeDriver.
    fn stop_driver(&mut self) {
        if let Some(mut child) = self.chromedriver.take() {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Best-effort `DELETE /session/ID` without an async runtime (for `Drop`), so that
    /// Chromium exits cleanly before its process group is killed.
    fn delete_session_blocking(&self) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.driver_port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session, self.driver_port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            // ChromeDriver answers once Chromium is closed; the answer itself is unused.
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.chromedriver.is_some() && !self.session.is_empty() {
            self.delete_session_blocking();
        }
        self.stop_driver();
    }
}

impl Element<'_> {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        self.browser
            .cmd(method, &format!("/element/{}{path}", self.id), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {what} on `{}` failed: {e}", self.css))
    }

    pub async fn click(&self) {
        self.cmd(reqwest::Method::POST, "/click", Some(json!({})))
            .await;
    }

    /// Clears the field, then types `text` as key presses.
    pub async fn type_text(&self, text: &str) {
        self.cmd(reqwest::Method::POST, "/clear", Some(json!({})))
            .await;
        self.cmd(
            reqwest::Method::POST,
            "/value",
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The element's rendered text.
    pub async fn text(&self) -> String {
        self.cmd(reqwest::Method::GET, "/text", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute's value, if the element has it.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.cmd(reqwest::Method::GET, &format!("/attribute/{name}"), None)
            .await
            .as_str()
            .map(str::to_owned)
    }
}

/// Creates the NSS database in `home/.pki/nssdb` and adds the CA as trusted for TLS
/// servers (`C,,`: the SSL flags are the first of the three).
fn trust_ca(certutil: &Path, home: &Path, ca_pem: &[u8]) {
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let ca_file = home.join("ca.crt");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run(Command::new(certutil).args(["-d", &db, "-N", "--empty-password"]));
    run(Command::new(certutil)
        .args(["-d", &db, "-A", "-t", "C,,", "-n", CA_NICKNAME, "-i"])
        .arg(&ca_file));
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
