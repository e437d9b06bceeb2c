//! Crash safety of captures: the vault service is SIGKILLed in the middle of a burst of
//! `POST /api/v1/capture`. Every capture that was acknowledged is there after the
//! restart, whole (an item row and its first version), and readable once the owner
//! unlocks; nothing is half-written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cv_testkit::{TestAppliance, is_alive};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

/// Concurrent clients in the burst.
const CLIENTS: usize = 8;
/// Acknowledged captures before the kill.
const ACKED_BEFORE_KILL: usize = 150;
/// Acknowledged captures, of requests sent after the kill, before the burst stops.
const ACKED_AFTER_RESTART: usize = 50;
/// How many notes `/notes` shows (its `PAGE_SIZE`).
const NOTES_PAGE: usize = 100;
/// One request may wait this long: through the outage, a connection queued on the
/// listening socket (which the supervisor keeps open) waits for the new service.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

const WORDS: [&str; 16] = [
    "heron", "otter", "lichen", "basalt", "juniper", "quartz", "plover", "fennel", "cobalt",
    "tundra", "marram", "sorrel", "kestrel", "granite", "bramble", "estuary",
];

/// What became of one capture request.
#[derive(Debug)]
enum Outcome {
    /// `201 {"id": …}`: the capture was acknowledged.
    Acked(String),
    /// An answer that was not a 2xx (503 while the service starts, say).
    Refused(u16),
    /// No complete answer: connection refused or reset, a timeout, a 2xx whose body
    /// was cut off (the client never learnt an id, so it was not acknowledged).
    Failed(String),
}

#[derive(Debug)]
struct Attempt {
    text: String,
    /// Sent after the SIGKILL: only the restarted service can have answered it.
    sent_after_kill: bool,
    outcome: Outcome,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    killed: AtomicBool,
    acked_before_kill: AtomicUsize,
    acked_after_kill: AtomicUsize,
    in_flight: AtomicUsize,
}

/// A client of its own per task (its own connection), trusting the appliance's CA.
fn burst_client(app: &TestAppliance) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

fn random_word(task: usize, n: usize) -> &'static str {
    let h = std::collections::hash_map::RandomState::new().hash_one((task, n));
    WORDS[(h % WORDS.len() as u64) as usize]
}

/// A failed request in a few words, to count failures by kind: what reqwest was doing
/// and the innermost cause ("connection reset by peer", …).
fn failure_kind(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let doing = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("{doing}: {cause}")
}

/// Posts captures one after the other until told to stop; returns every attempt.
async fn post_until_stopped(
    client: reqwest::Client,
    url: String,
    token: String,
    task: usize,
    shared: Arc<Shared>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut n = 0;
    while !shared.stop.load(SeqCst) {
        n += 1;
        // Unique per attempt; the space after the number keeps "1-1 " from matching
        // inside "1-10 ".
        let text = format!("burst {task}-{n} {}", random_word(task, n));
        let sent_after_kill = shared.killed.load(SeqCst);
        shared.in_flight.fetch_add(1, SeqCst);
        let outcome = match client
            .post(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "text": text, "tags": ["burst"] }))
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                let status = resp.status().as_u16();
                match resp.json::<serde_json::Value>().await {
                    Ok(body) => match body["id"].as_str() {
                        Some(id) if status == 201 => Outcome::Acked(id.to_owned()),
                        _ => Outcome::Failed(format!("unexpected {status} answer: {body}")),
                    },
                    Err(e) => {
                        Outcome::Failed(format!("{status}, body cut off: {}", failure_kind(&e)))
                    }
                }
            }
            Ok(resp) => Outcome::Refused(resp.status().as_u16()),
            Err(e) => Outcome::Failed(failure_kind(&e)),
        };
        shared.in_flight.fetch_sub(1, SeqCst);
        let failed = match &outcome {
            Outcome::Acked(_) if sent_after_kill => {
                shared.acked_after_kill.fetch_add(1, SeqCst);
                false
            }
            Outcome::Acked(_) => {
                shared.acked_before_kill.fetch_add(1, SeqCst);
                false
            }
            Outcome::Refused(_) | Outcome::Failed(_) => true,
        };
        attempts.push(Attempt {
            text,
            sent_after_kill,
            outcome,
        });
        if failed {
            // Keep trying through the outage, without spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    attempts
}

/// Waits (bounded) until `done` holds, polling the burst's counters.
async fn wait_for(shared: &Shared, timeout: Duration, what: &str, done: impl Fn(&Shared) -> bool) {
    let started = Instant::now();
    while !done(shared) {
        if started.elapsed() > timeout {
            shared.stop.store(true, SeqCst);
            panic!(
                "timed out after {timeout:?} waiting for {what}: {} acknowledged before the kill, {} after",
                shared.acked_before_kill.load(SeqCst),
                shared.acked_after_kill.load(SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of the newest items, in the order `/notes` shows them.
async fn newest_item_ids(app: &TestAppliance, limit: usize) -> Vec<String> {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl as _;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    // The same order as cv_db::items::newest.
    let rows: Vec<Row> =
        diesel::sql_query("SELECT id::text AS id FROM items ORDER BY created_at DESC, id LIMIT $1")
            .bind::<diesel::sql_types::BigInt, _>(limit as i64)
            .load(&mut conn)
            .await
            .unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_acknowledged_before_a_sigkill_of_the_service_survive_it_whole() {
    let test_started = Instant::now();
    let app = appliance_with_owner().await;
    let token = create_token(&app, OWNER, "capture", "burst");
    let old_pid = app.service_pid().expect("a vault service process");

    let shared = Arc::new(Shared::default());
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            tokio::spawn(post_until_stopped(
                burst_client(&app),
                app.url("/api/v1/capture"),
                token.clone(),
                task,
                Arc::clone(&shared),
            ))
        })
        .collect();

    let burst_started = Instant::now();
    wait_for(
        &shared,
        Duration::from_secs(30),
        "captures before the kill",
        |s| s.acked_before_kill.load(SeqCst) >= ACKED_BEFORE_KILL,
    )
    .await;
    let in_flight_at_kill = shared.in_flight.load(SeqCst);
    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    // Marked once the signal is sent: a request marked "after" was sent to a dead
    // process's socket, so only the restarted service can have answered it.
    shared.killed.store(true, SeqCst);
    let killed_at = Instant::now();
    eprintln!(
        "crash: SIGKILL to the vault service (pid {old_pid}) after {:?} of burst, {} acknowledged, {in_flight_at_kill} requests in flight",
        burst_started.elapsed(),
        shared.acked_before_kill.load(SeqCst)
    );

    wait_for(
        &shared,
        Duration::from_secs(45),
        "captures after the restart",
        |s| s.acked_after_kill.load(SeqCst) >= ACKED_AFTER_RESTART,
    )
    .await;
    shared.stop.store(true, SeqCst);
    let mut attempts = Vec::new();
    for task in tasks {
        // Each task finishes its request in flight (bounded by REQUEST_TIMEOUT).
        attempts.extend(task.await.unwrap());
    }
    let burst_took = burst_started.elapsed();
    let outage_and_after = killed_at.elapsed();

    // The service was really restarted: a new process, the old one gone.
    let new_pid = app.service_pid().expect("a vault service process");
    assert_ne!(new_pid, old_pid, "the vault service was not restarted");
    assert!(!is_alive(old_pid), "the killed service is still alive");
    let (_, health) = app.health().await;
    assert!(
        health["components"]["vault"]["restarts"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{health}"
    );

    // Tally.
    let mut acked: HashMap<&str, &str> = HashMap::new(); // id → text
    let (mut acked_before, mut acked_after) = (0, 0);
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for a in &attempts {
        match &a.outcome {
            Outcome::Acked(id) => {
                assert!(
                    acked.insert(id, &a.text).is_none(),
                    "id {id} acknowledged twice"
                );
                if a.sent_after_kill {
                    acked_after += 1;
                } else {
                    acked_before += 1;
                }
            }
            Outcome::Refused(status) => *refused.entry(*status).or_default() += 1,
            Outcome::Failed(why) => *failures.entry(why.clone()).or_default() += 1,
        }
    }
    let errors = attempts.len() - acked.len();
    for status in refused.keys() {
        assert_eq!(
            *status, 503,
            "only 503 is an acceptable refusal while the service restarts: {refused:?}"
        );
    }

    // What the database holds: rows of `items` (id, owner_id, data_key,
    // data_key_sealed, version, …) and of `item_versions` (item_id, version, content, …).
    let dump = pg_dump(&app);
    let items = dump_rows(&dump, "items");
    let versions = dump_rows(&dump, "item_versions");
    let item_versions: HashMap<&str, &str> = items.iter().map(|r| (r[0], r[4])).collect();
    assert_eq!(item_versions.len(), items.len(), "duplicate item ids");
    let version_rows: HashSet<(&str, &str)> = versions.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(version_rows.len(), versions.len(), "duplicate version rows");

    eprintln!(
        "crash: attempted {}, acknowledged {} ({acked_before} sent before the kill, {acked_after} after), errors {errors} (refused {refused:?}, failed {failures:?}); rows: {} items, {} item_versions",
        attempts.len(),
        acked.len(),
        items.len(),
        versions.len(),
    );

    // Nothing half-written: every item has exactly its version-1 row, every version row
    // belongs to an item.
    for (id, version) in &item_versions {
        assert_eq!(*version, "1", "item {id} is at version {version}");
        assert!(
            version_rows.contains(&(*id, "1")),
            "item {id} has no version-1 row: half-written"
        );
    }
    for (item_id, version) in &version_rows {
        assert!(
            item_versions.contains_key(item_id),
            "version {version} of item {item_id} has no item row: half-written"
        );
    }
    assert_eq!(items.len(), versions.len());

    // Every acknowledged capture is there, whole.
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !item_versions.contains_key(*id) || !version_rows.contains(&(**id, "1")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged captures are missing after the restart: {missing:?}",
        missing.len()
    );
    // A request killed after its transaction committed but before its answer went out
    // leaves an item nobody acknowledged: that is fine (the client saw an error and may
    // retry), so the database holds at least what was acknowledged and at most what was
    // attempted.
    assert!(
        items.len() >= acked.len() && items.len() <= attempts.len(),
        "{} items for {} acknowledged and {} attempted captures",
        items.len(),
        acked.len(),
        attempts.len()
    );

    // Logging in unlocks the vault: the newest notes read back, none fails its
    // integrity check, and every acknowledged one among them shows its text.
    let owner = owner_client(&app).await;
    let resp = owner.get(app.url("/notes")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        !page.contains("failed its integrity check"),
        "a note failed its integrity check after the crash"
    );
    let shown: Vec<&str> = page
        .split(r#"<p class="note-text">"#)
        .skip(1)
        .map(|s| s.split("</p>").next().unwrap())
        .collect();
    assert_eq!(
        shown.len(),
        items.len().min(NOTES_PAGE),
        "the notes page shows every one of the newest notes"
    );
    let attempted_texts: HashSet<&str> = attempts.iter().map(|a| a.text.as_str()).collect();
    for text in &shown {
        assert!(
            attempted_texts.contains(text),
            "the page shows a note nobody sent: {text:?}"
        );
    }
    let shown: HashSet<&str> = shown.into_iter().collect();
    let newest = newest_item_ids(&app, NOTES_PAGE).await;
    let mut checked = 0;
    for id in &newest {
        if let Some(text) = acked.get(id.as_str()) {
            assert!(
                shown.contains(text),
                "acknowledged capture {id} ({text:?}) is not on the notes page"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "none of the newest notes was an acknowledged one"
    );

    eprintln!(
        "crash: {checked} of the newest {} notes were acknowledged captures, all shown; burst {burst_took:?} ({outage_and_after:?} from the kill), whole test {:?}",
        newest.len(),
        test_started.elapsed()
    );
}
