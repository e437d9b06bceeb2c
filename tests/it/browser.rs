//! End to end in a real browser: headless Chromium, trusting the appliance's local CA,
//! walks through first-run setup, the home page, logout and login on a phone-sized
//! screen. The other tests speak HTTP directly; this one proves that the pages, their
//! forms, cookies and redirects work in a browser, and that the layout fits a phone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cv_testkit::TestAppliance;
use cv_testkit::browser::Browser;
use cv_testkit::eventually;

use crate::support::*;

/// An iPhone 12–15's viewport in CSS pixels.
const PHONE_WIDTH: u32 = 390;
const PHONE_HEIGHT: u32 = 844;

/// How long a form submission may take to land on the next page (setup and login hash
/// the passphrase with Argon2id, which takes a while on a loaded test machine).
pub(crate) const NAVIGATION: Duration = Duration::from_secs(30);

/// A blank or failed screenshot of a page with text and form fields is a few KB; a real
/// one is well above this.
const MIN_SCREENSHOT_BYTES: usize = 10 * 1024;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Screenshots are kept after the run, for a person to look at.
pub(crate) fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-artifacts")
        .join(name)
}

/// The path of a URL (`/dashboard` of `https://localhost:1234/dashboard?x`).
pub(crate) fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_default()
}

pub(crate) async fn wait_for_path(browser: &Browser, path: &str) {
    browser.wait_for_path(path, NAVIGATION).await;
}

pub(crate) async fn screenshot(browser: &Browser, name: &str) {
    let path = artifact(name);
    browser.screenshot(&path).await;
    let png = std::fs::read(&path).unwrap();
    assert!(
        png.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        png.len() > MIN_SCREENSHOT_BYTES,
        "{} is only {} bytes: the page looks blank",
        path.display(),
        png.len()
    );
    println!("screenshot: {}", path.display());
}

/// Horizontal scrolling on a phone means something is wider than the screen.
pub(crate) async fn assert_fits_phone(browser: &Browser) {
    let width = browser
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .as_u64()
        .unwrap();
    if width <= u64::from(PHONE_WIDTH) {
        return;
    }
    // Name the culprits: the elements whose right edge is past the screen's.
    let viewport = browser.execute("return window.innerWidth", vec![]).await;
    let wide = browser
        .execute(
            "return [...document.body.querySelectorAll('*')]
                .filter(e => e.getBoundingClientRect().right > arguments[0])
                .slice(0, 10)
                .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                    + ' right=' + Math.round(e.getBoundingClientRect().right))",
            vec![PHONE_WIDTH.into()],
        )
        .await;
    panic!(
        "{} is {width} CSS px wide on a {PHONE_WIDTH} px screen (it scrolls sideways; \
         window.innerWidth {viewport}); too wide: {wide}",
        browser.current_url().await
    );
}

/// What every visited page must be: no wider than a phone, and without serious or
/// critical accessibility violations (axe-core's rules; they are listed on failure).
pub(crate) async fn check_page(browser: &Browser) {
    assert_fits_phone(browser).await;
    browser.assert_accessible().await;
    assert_nav_marks_the_page(browser).await;
}

/// A signed-in page's navigation links to the account, and marks exactly one entry as
/// the current page (a page without the navigation, such as login, passes).
async fn assert_nav_marks_the_page(browser: &Browser) {
    let nav = browser
        .execute(
            "const nav = document.querySelector('nav.nav');
             if (!nav || !nav.querySelector('form[action=\\'/logout\\']')) return null;
             return {
                 account: !!nav.querySelector('a[href=\\'/account\\']'),
                 current: [...nav.querySelectorAll('a[aria-current=page]')]
                     .map(a => a.getAttribute('href')),
             };",
            vec![],
        )
        .await;
    if nav.is_null() {
        return;
    }
    let url = browser.current_url().await;
    assert_eq!(
        nav["account"], true,
        "no Account entry in the navigation of {url}"
    );
    assert_eq!(
        nav["current"].as_array().map(Vec::len),
        Some(1),
        "the navigation of {url} should mark one entry as the current page: {nav}"
    );
}

/// The submit buttons of the login and logout forms (by the form's action, since
/// a page may hold more than one form).
pub(crate) const LOGIN_SUBMIT: &str = "form[action='/login'] [type=submit]";
const LOGOUT: &str = "form[action='/logout'] [type=submit]";

async fn log_out(browser: &Browser) {
    browser.click(LOGOUT).await;
    wait_for_path(browser, "/login").await;
}

/// Logs in as the owner from the login page; the home page, with the capture box, is
/// the start page.
async fn log_in(browser: &Browser) {
    browser.type_into("input[name=name]", OWNER).await;
    browser
        .type_into("input[name=passphrase]", OWNER_PASS)
        .await;
    browser.click(LOGIN_SUBMIT).await;
    wait_for_path(browser, "/home").await;
}

/// The home page (also at the dashboard's old address).
async fn assert_home(browser: &Browser) {
    let text = browser.text("body").await;
    assert!(
        text.contains(OWNER),
        "the home page names the signed-in user:\n{text}"
    );
    assert!(
        text.contains("unlocked"),
        "logging in unlocks the vault:\n{text}"
    );
    browser
        .find("form[action='/notes'] textarea[name=text]")
        .await;
}

/// Whether the current page has an element matching `css`, without waiting for one.
async fn has(browser: &Browser, css: &str) -> bool {
    browser
        .execute(
            "return !!document.querySelector(arguments[0])",
            vec![css.into()],
        )
        .await
        == serde_json::Value::Bool(true)
}

/// Whether this machine can run the browser tests; without one they are skipped, loudly
/// (and fail where the README's test script requires a browser).
fn browser_available() -> bool {
    match Browser::availability() {
        Ok(()) => true,
        Err(reason) => {
            // The README's test script installs the browser and sets this, so there a
            // missing browser is a failure rather than a silent skip.
            if std::env::var("CV_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("CV_REQUIRE_BROWSER=1 but {reason}");
            }
            println!("skipped: {reason}");
            false
        }
    }
}

/// Starts the appliance (`app`) and a phone-sized browser trusting its CA; `None` when
/// this machine has no browser (and then the appliance is not started).
pub(crate) async fn on_a_phone(
    app: impl Future<Output = TestAppliance>,
) -> Option<(TestAppliance, Browser)> {
    if !browser_available() {
        return None;
    }
    let app = app.await;
    let browser = Browser::start(&app.ca_pem(), PHONE_WIDTH, PHONE_HEIGHT).await;
    Some((app, browser))
}

#[tokio::test]
async fn setup_login_dashboard_logout_in_a_phone_sized_browser() {
    let Some((app, browser)) = on_a_phone(appliance()).await else {
        return;
    };

    // A fresh appliance sends everyone to first-run setup.
    browser.goto(&app.url("/")).await;
    wait_for_path(&browser, "/setup").await;
    check_page(&browser).await;
    browser
        .submit_setup(&app.setup_code(), OWNER, OWNER_PASS)
        .await;

    // Setup shows the vault's recovery key once (the URL is still /setup: the page is
    // the answer to the form), then leads on to the home page (at the dashboard's old address).
    let key = browser.text(".recovery-key").await;
    assert_eq!(
        key.split('-').count(),
        14,
        "a recovery key of 14 groups: {key}"
    );
    screenshot(&browser, "recovery-key-phone.png").await;
    check_page(&browser).await;
    browser.click("a[href='/dashboard']").await;
    wait_for_path(&browser, "/dashboard").await;
    assert_home(&browser).await;
    screenshot(&browser, "home-phone.png").await;
    check_page(&browser).await;

    // In the dark colour scheme too (its contrasts are checked on this page).
    browser.prefer_dark(true).await;
    assert_eq!(
        browser
            .execute(
                "return matchMedia('(prefers-color-scheme: dark)').matches",
                vec![]
            )
            .await,
        true
    );
    screenshot(&browser, "home-dark-phone.png").await;
    check_page(&browser).await;
    browser.prefer_dark(false).await;

    // The getting-started list: the certificate is ticked off by hand, then the list is
    // dismissed, for good.
    assert!(has(&browser, "#getting-started").await);
    browser
        .click("#getting-started .checklist-item form [type=submit]")
        .await;
    eventually(NAVIGATION, "the certificate step to be done", || async {
        (!has(&browser, "#getting-started .checklist-item form").await).then_some(())
    })
    .await;
    assert!(
        browser
            .text("#getting-started .checklist-item")
            .await
            .starts_with("done"),
    );
    check_page(&browser).await;
    browser.click("#getting-started > form [type=submit]").await;
    eventually(NAVIGATION, "the list to be dismissed", || async {
        (!has(&browser, "#getting-started").await).then_some(())
    })
    .await;

    // The appliance's components are on the owner's System page.
    browser.click("nav a[href='/system']").await;
    wait_for_path(&browser, "/system").await;
    let system = browser.text("main").await;
    assert!(system.to_lowercase().contains("postgres"), "{system}");
    screenshot(&browser, "system-phone.png").await;
    check_page(&browser).await;

    log_out(&browser).await;
    screenshot(&browser, "login-phone.png").await;
    check_page(&browser).await;

    log_in(&browser).await;
    assert_home(&browser).await;
    assert!(
        !has(&browser, "#getting-started").await,
        "dismissed for good"
    );
    check_page(&browser).await;

    // Capture a note from the phone; it is listed, decrypted, right away.
    browser.click("nav a[href='/notes']").await;
    wait_for_path(&browser, "/notes").await;
    browser
        .type_into(
            "textarea[name=text]",
            "Call the plumber about the kitchen tap",
        )
        .await;
    browser.click("form[action='/notes'] [type=submit]").await;
    wait_for_path(&browser, "/notes").await;
    let notes = browser.text(".notes").await;
    assert!(notes.contains("Call the plumber"), "{notes}");
    let current = browser.find("nav a[aria-current=page]").await;
    assert_eq!(current.attribute("href").await.as_deref(), Some("/notes"));
    screenshot(&browser, "notes-phone.png").await;
    check_page(&browser).await;

    // The other pages a person reaches from the navigation and the account page fit a
    // phone and have no serious accessibility violation either.
    for path in [
        "/account",
        "/account/activity",
        "/account/export",
        "/settings",
        "/system",
        "/system/snapshots",
        "/users",
        "/wireguard",
        "/trust",
        "/search?q=plumber",
        "/tasks",
        // An error page: a note that does not exist.
        "/items/00000000-0000-0000-0000-000000000000",
    ] {
        browser.goto(&app.url(path)).await;
        check_page(&browser).await;
    }
    browser.goto(&app.url("/home")).await;

    // After logout the session is gone: the dashboard sends the browser to login.
    log_out(&browser).await;
    browser.goto(&app.url("/dashboard")).await;
    wait_for_path(&browser, "/login").await;
    browser.goto(&app.url("/recover")).await;
    check_page(&browser).await;

    browser.quit().await;
}

/// Waits until the page's text contains `needle` (a form's answer can land on the path
/// the browser is already on, so the path alone does not say the new page is there).
pub(crate) async fn wait_for_text(browser: &Browser, needle: &str) {
    browser.wait_for_text(needle, NAVIGATION).await;
}

#[tokio::test]
async fn capture_tag_edit_history_search_task_lock_and_back_on_a_phone() {
    let Some((app, browser)) = on_a_phone(appliance_with_owner()).await else {
        return;
    };
    browser.goto(&app.url("/login")).await;
    log_in(&browser).await;

    // The capture box on the home page: one field, optional tags, one button; it
    // confirms at once.
    check_page(&browser).await;
    browser
        .type_into("textarea[name=text]", "Ask Sam about the boat trailer")
        .await;
    browser.type_into("input[name=tags]", "boat").await;
    browser.click("form[action='/notes'] [type=submit]").await;
    wait_for_text(&browser, "Saved").await;
    screenshot(&browser, "capture-phone.png").await;

    // Open it from the list, tag it, edit it.
    browser.click("nav a[href='/notes']").await;
    wait_for_path(&browser, "/notes").await;
    browser.click(".notes .note-link").await;
    let item_url = browser.current_url().await;
    let item = path_of(&item_url);
    assert!(item.starts_with("/items/"), "{item}");
    browser
        .type_into(
            "textarea[name=text]",
            "Ask Sam about the **boat trailer** and the winter cover",
        )
        .await;
    browser.type_into("input[name=tags]", "boat, weekend").await;
    browser
        .click(&format!("form[action='{item}/edit'] [type=submit]"))
        .await;
    wait_for_text(&browser, "previous version is kept").await;
    let page = browser.text("main").await;
    assert!(
        page.contains("Saved") && page.contains("#weekend"),
        "{page}"
    );
    assert_eq!(browser.text(".markdown strong").await, "boat trailer");
    screenshot(&browser, "item-phone.png").await;
    check_page(&browser).await;

    // Its history: both versions, the change as a diff.
    browser.click(&format!("a[href='{item}/history']")).await;
    wait_for_path(&browser, &format!("{item}/history")).await;
    let history = browser.text("main").await;
    assert!(
        history.contains("Version 2") && history.contains("Version 1"),
        "{history}"
    );
    assert!(browser.text(".diff-added").await.contains("winter cover"));
    assert!(history.contains("tags added: weekend"), "{history}");
    screenshot(&browser, "history-phone.png").await;
    check_page(&browser).await;

    // Found by search, the word highlighted.
    browser.click("nav a[href='/search']").await;
    wait_for_path(&browser, "/search").await;
    browser.type_into("input[name=q]", "trailers").await;
    browser.click("form[action='/search'] [type=submit]").await;
    wait_for_text(&browser, "1 result").await;
    assert_eq!(browser.text(".notes mark").await, "trailer");
    // Results read as text, not Markdown: "**boat trailer**" shows as "boat trailer".
    let result = browser.text(".notes .note-text").await;
    assert!(
        result.contains("boat trailer") && !result.contains('*'),
        "{result}"
    );
    screenshot(&browser, "search-phone.png").await;
    check_page(&browser).await;

    // Made a task; it is on the task list.
    browser.click(".notes .note-link").await;
    wait_for_path(&browser, &item).await;
    browser
        .click(&format!("form[action='{item}/task'] [type=submit]"))
        .await;
    wait_for_text(&browser, "task: open").await;
    browser.click("nav a[href='/tasks']").await;
    wait_for_path(&browser, "/tasks").await;
    let tasks = browser.text(".notes").await;
    assert!(
        tasks.contains("boat trailer") && !tasks.contains('*'),
        "{tasks}"
    );
    screenshot(&browser, "tasks-phone.png").await;
    check_page(&browser).await;

    // A new API token is shown once, whole, and wraps rather than widen the page.
    browser.goto(&app.url("/account/tokens")).await;
    check_page(&browser).await;
    browser
        .type_into("input[name=name]", "iPhone shortcut")
        .await;
    browser
        .click("form[action='/account/tokens'] [type=submit]")
        .await;
    wait_for_text(&browser, "created").await;
    assert!(browser.text(".token").await.starts_with("cvt_"));
    screenshot(&browser, "token-phone.png").await;
    check_page(&browser).await;

    // Lock: nothing can be read; log out and in again: all of it is back, searchable.
    browser.goto(&app.url("/home")).await;
    check_page(&browser).await;
    browser
        .click("form[action='/vault/lock'] [type=submit]")
        .await;
    // The form posts and lands on the home page again: wait for the unlock form.
    eventually(NAVIGATION, "the vault to lock", || async {
        browser
            .try_find("form[action='/vault/unlock']")
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    check_page(&browser).await;
    browser.goto(&item_url).await;
    assert!(browser.text("main").await.contains("Your vault is locked"));
    check_page(&browser).await;
    browser.goto(&app.url("/home")).await;
    log_out(&browser).await;
    log_in(&browser).await;
    // The index is rebuilt in the background after the login; the page says so while
    // it runs and reloads itself.
    eventually(
        NAVIGATION,
        "the note to be found again after logging in",
        || async {
            browser.goto(&app.url("/search?q=cover")).await;
            browser
                .text("main")
                .await
                .contains("winter cover")
                .then_some(())
        },
    )
    .await;
    check_page(&browser).await;
    browser.quit().await;
}
