//! Shared steps of the tests.

use std::path::PathBuf;

use cv_testkit::TestAppliance;

pub const OWNER: &str = "olivia";
pub const OWNER_PASS: &str = "correct horse battery staple";

/// The binary cargo built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_contextvault"))
}

pub async fn appliance() -> TestAppliance {
    TestAppliance::start(&exe()).await
}

/// An appliance with an owner account created by the admin CLI.
pub async fn appliance_with_owner() -> TestAppliance {
    let app = appliance().await;
    create_member(&app, OWNER, OWNER_PASS);
    app
}

/// The passphrase `add_member` has the admin CLI give an account before its holder
/// renews it to their own.
pub fn given_passphrase(pass: &str) -> String {
    format!("given to {pass}")
}

/// A household member who chose their own passphrase: made with the admin CLI (with
/// [`given_passphrase`]), then renewed to `pass` over the API as its holder would at
/// their first login. Returns the recovery key of the renewed vault.
pub async fn add_member(app: &TestAppliance, name: &str, pass: &str) -> String {
    create_member(app, name, &given_passphrase(pass));
    let resp = app
        .client()
        .post(app.url("/api/v1/account/renew"))
        .json(&serde_json::json!({
            "user": name,
            "passphrase": given_passphrase(pass),
            "new_passphrase": pass,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "renewing {name}");
    let body: serde_json::Value = resp.json().await.unwrap();
    body["recovery_key"].as_str().unwrap().to_owned()
}

/// Creates an account with the admin CLI: the owner when it is the first, otherwise a
/// member who must renew their passphrase before logging in (see [`add_member`]).
pub fn create_member(app: &TestAppliance, name: &str, pass: &str) {
    let out = app.create_user(name, pass, false);
    assert!(
        out.status.success(),
        "create-user failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_in(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf"\s+value="([^"]+)""#).unwrap();
    let re2 = regex::Regex::new(r#"value="([^"]+)"\s+name="csrf""#).unwrap();
    re.captures(html)
        .or_else(|| re2.captures(html))
        .unwrap_or_else(|| panic!("no csrf field in page:\n{html}"))[1]
        .to_owned()
}

/// GETs `path` and returns the csrf token of its form.
pub async fn csrf_for(app: &TestAppliance, client: &reqwest::Client, path: &str) -> String {
    let resp = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    csrf_in(&resp.text().await.unwrap())
}

/// Logs in through the form; returns the response to the POST.
pub async fn login(
    app: &TestAppliance,
    client: &reqwest::Client,
    name: &str,
    pass: &str,
) -> reqwest::Response {
    let csrf = csrf_for(app, client, "/login").await;
    client
        .post(app.url("/login"))
        .form(&[("name", name), ("passphrase", pass), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

/// Logs in as the owner and checks it worked.
pub async fn owner_client(app: &TestAppliance) -> reqwest::Client {
    member_client(app, OWNER, OWNER_PASS).await
}

/// Logs in as account `name` and checks it worked.
pub async fn member_client(app: &TestAppliance, name: &str, pass: &str) -> reqwest::Client {
    let client = app.client();
    let resp = login(app, &client, name, pass).await;
    assert_eq!(
        resp.status(),
        303,
        "login failed: {}",
        resp.text().await.unwrap()
    );
    client
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The status of `GET path`.
pub async fn status_of(app: &TestAppliance, client: &reqwest::Client, path: &str) -> u16 {
    client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The body of `GET path`.
pub async fn text_of(app: &TestAppliance, client: &reqwest::Client, path: &str) -> String {
    client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The recovery key shown on a page (14 groups of 4 characters).
pub fn recovery_key_in(html: &str) -> String {
    let re = regex::Regex::new(r"\b[0-9A-Z]{4}(?:-[0-9A-Z]{4}){13}\b").unwrap();
    re.find(html)
        .unwrap_or_else(|| panic!("no recovery key in page:\n{html}"))
        .as_str()
        .to_owned()
}

/// The owner's (the only) stored vault key bundle, read from the appliance's database.
pub async fn stored_bundle(app: &TestAppliance) -> cv_crypto::vault::KeyBundle {
    bundle_of(app, OWNER).await
}

/// The stored vault key bundle of account `name`.
pub async fn bundle_of(app: &TestAppliance, name: &str) -> cv_crypto::vault::KeyBundle {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl as _;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        bundle: Vec<u8>,
    }
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    let row: Row = diesel::sql_query(
        "SELECT bundle FROM vault_keys JOIN users ON users.id = vault_keys.user_id WHERE users.name = $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result(&mut conn)
    .await
    .unwrap();
    cv_crypto::vault::KeyBundle::from_bytes(&row.bundle).unwrap()
}

/// `pg_dump` of the appliance's whole database, as text: what a stolen disk or a
/// careless backup would reveal.
pub fn pg_dump(app: &TestAppliance) -> String {
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .arg("--host")
        .arg(app.layout().postgres_socket_dir())
        .args(["--username", "postgres", "--no-password", cv_db::DATABASE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Posts a note through the capture form.
pub async fn capture_note(
    app: &TestAppliance,
    client: &reqwest::Client,
    text: &str,
) -> reqwest::Response {
    let csrf = csrf_for(app, client, "/notes").await;
    client
        .post(app.url("/notes"))
        .form(&[("text", text), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

/// The data rows of `table` in a `pg_dump`, each split into its tab-separated columns.
pub fn dump_rows<'a>(dump: &'a str, table: &str) -> Vec<Vec<&'a str>> {
    let header = format!("COPY public.{table} ");
    dump.lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| *l != "\\.")
        .map(|l| l.split('\t').collect())
        .collect()
}

/// Creates an API token with the admin CLI; returns it.
pub fn create_token(app: &TestAppliance, user: &str, scope: &str, name: &str) -> String {
    let out = std::process::Command::new(exe())
        .args(["admin", "--data-dir"])
        .arg(&app.data_dir)
        .args([
            "create-token",
            "--user",
            user,
            "--scope",
            scope,
            "--name",
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api_token_in(&String::from_utf8_lossy(&out.stdout))
}

/// The API token (`cvt_…`) shown in `text`.
pub fn api_token_in(text: &str) -> String {
    regex::Regex::new(r"cvt_[A-Za-z0-9_-]{43}")
        .unwrap()
        .find(text)
        .unwrap_or_else(|| panic!("no API token in:\n{text}"))
        .as_str()
        .to_owned()
}

/// The id of the first token in a `/account/tokens` page (from its revoke form).
pub fn token_id_in(page: &str) -> String {
    regex::Regex::new(r#"/account/tokens/([0-9a-f-]{36})/revoke"#)
        .unwrap()
        .captures(page)
        .unwrap_or_else(|| panic!("no token to revoke in page:\n{page}"))[1]
        .to_owned()
}

/// The first item id linked from `page`.
pub fn first_item(page: &str) -> String {
    regex::Regex::new(r#"/items/([0-9a-f-]{36})"#)
        .unwrap()
        .captures(page)
        .unwrap_or_else(|| panic!("no item link in page:\n{page}"))[1]
        .to_owned()
}

/// How many items a `pg_dump` holds.
pub fn items_in_dump(dump: &str) -> usize {
    dump_rows(dump, "items").len()
}

/// Posts a signed-in form to `path`, with the session's CSRF token added.
pub async fn post_form(
    app: &TestAppliance,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = csrf_for(app, client, "/capture").await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", &csrf));
    client.post(app.url(path)).form(&form).send().await.unwrap()
}

/// Locks the signed-in account's vault ("Lock now").
pub async fn lock(app: &TestAppliance, client: &reqwest::Client) {
    let resp = post_form(app, client, "/vault/lock", &[]).await;
    assert_eq!(resp.status(), 303);
}

/// Unlocks the signed-in account's vault with its passphrase.
pub async fn unlock(app: &TestAppliance, client: &reqwest::Client, pass: &str) {
    let resp = post_form(app, client, "/vault/unlock", &[("passphrase", pass)]).await;
    assert_eq!(resp.status(), 303);
}

/// `console.json` at `path` once `check` accepts it (the supervisor looks every 3 s).
pub async fn console_status(
    path: &std::path::Path,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    cv_testkit::eventually(
        std::time::Duration::from_secs(30),
        &format!("{} as expected", path.display()),
        || async {
            let text = std::fs::read(path).ok()?;
            let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
            check(&json).then_some(json)
        },
    )
    .await
}

/// `contextvault admin ARGS` on the appliance, which must succeed; its standard output.
pub fn admin_ok(app: &TestAppliance, args: &[&str]) -> String {
    let out = app.admin(args);
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One SQL statement as the superuser on the appliance's database (stopping at the first
/// error, which fails the test); the rows unaligned, one per line.
pub fn psql(app: &TestAppliance, sql: &str) -> String {
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .arg("--host")
        .arg(app.layout().postgres_socket_dir())
        .args([
            "--username",
            "postgres",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-At", "-c", sql, cv_db::DATABASE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
