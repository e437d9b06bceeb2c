//! Snapshots of the data directory on real btrfs (a loop device) and real ZFS (zfs-fuse):
//! a scheduled snapshot during a capture burst, retention over a simulated month, a
//! restore of a deleted item (and its audit record), a power cut during a snapshot, and a
//! failing migration rolled back to the snapshot taken before it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cv_storage::snapshot::{self, Kind, Retention, SnapshotBackend, SnapshotId, Wanted};
use cv_testkit::scratch_fs::{BtrfsScratch, ZfsScratch};
use cv_testkit::{Launch, TestAppliance};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

/// A file system that can take snapshots, for one test.
enum Scratch {
    Btrfs(BtrfsScratch),
    Zfs(ZfsScratch),
}

impl Scratch {
    fn new(kind: &str) -> Scratch {
        match kind {
            "btrfs" => Scratch::Btrfs(BtrfsScratch::new(1024)),
            _ => Scratch::Zfs(ZfsScratch::new(1024)),
        }
    }

    fn mount(&self) -> &Path {
        match self {
            Scratch::Btrfs(b) => &b.mount,
            Scratch::Zfs(z) => &z.mount,
        }
    }
}

/// The ids `snapshot list` prints, oldest first.
fn listed(app: &TestAppliance) -> Vec<String> {
    admin_ok(app, &["snapshot", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(ToOwned::to_owned))
        .collect()
}

/// After a restore of a snapshot taken before `item` was deleted: the owner logs in
/// again and reads it (`text` in it), the activity log shows the restore, and a snapshot
/// of the present was taken first.
async fn assert_restored(app: &TestAppliance, item: &str, text: &str) {
    let owner = owner_client(app).await;
    assert_eq!(status_of(app, &owner, &format!("/items/{item}")).await, 200);
    assert!(
        text_of(app, &owner, &format!("/items/{item}"))
            .await
            .contains(text)
    );
    let activity = text_of(app, &owner, "/account/activity").await;
    assert!(activity.contains("Snapshot restored"), "{activity}");
    assert!(
        listed(app).iter().any(|id| id.ends_with("-restore")),
        "a snapshot of the present before the restore"
    );
}

// ---- retention over a simulated month, on each backend ----

fn month_of_schedule(backend: &dyn SnapshotBackend) {
    let retention = Retention {
        hourly: 6,
        daily: 7,
        weekly: 3,
        monthly: 2,
        other_days: 3,
    };
    let start: jiff::Timestamp = "2026-11-02T00:30:00Z".parse().unwrap();
    let hours = 31 * 24;
    let mut manual = Vec::new();
    for h in 0..hours {
        let now = start
            .checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap();
        let ids: Vec<SnapshotId> = backend.list().unwrap().into_iter().map(|s| s.id).collect();
        let due = retention.due(now, &ids);
        if !due.is_empty() {
            backend
                .create(&SnapshotId::new(now, &due), "scheduled")
                .unwrap();
        }
        // A manual snapshot on day 10 (expired by the end) and on the last day (kept).
        if h == 10 * 24 + 5 || h == hours - 20 {
            let id = SnapshotId::new(
                now.checked_add(jiff::SignedDuration::from_mins(7)).unwrap(),
                &[Kind::Manual],
            );
            backend.create(&id, "by hand").unwrap();
            manual.push(id);
        }
        let ids: Vec<SnapshotId> = backend.list().unwrap().into_iter().map(|s| s.id).collect();
        for id in retention.expired(now, &ids) {
            backend.destroy(&id).unwrap();
        }
    }
    let end = start
        .checked_add(jiff::SignedDuration::from_hours(hours - 1))
        .unwrap();
    // What must be left, computed from the calendar rather than from the retention code:
    // the snapshots taken at the last 6 hour marks, the last 7 midnights, the last 3
    // Monday midnights, the last 2 first-of-month midnights (the first snapshot, at the
    // start, counts as every class), and the recent manual one.
    let at = |s: &str| -> jiff::Timestamp { s.parse().unwrap() };
    let mut expected: Vec<jiff::Timestamp> = Vec::new();
    for h in 0..6 {
        expected.push(
            end.checked_sub(jiff::SignedDuration::from_hours(h))
                .unwrap(),
        );
    }
    for d in 26..=32 {
        // 2026-11-26 .. 2026-12-02: the last 7 days before the end (2026-12-02T23:30Z).
        let day = jiff::civil::date(2026, 11, 1)
            .checked_add(jiff::Span::new().days(d - 1))
            .unwrap();
        expected.push(
            day.at(0, 30, 0, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp(),
        );
    }
    expected.retain(|t| *t <= end);
    // Mondays: 2026-11-16, 11-23, 11-30; months: 2026-11-02 (the start) and 12-01.
    for t in [
        "2026-11-16T00:30:00Z",
        "2026-11-23T00:30:00Z",
        "2026-11-30T00:30:00Z",
        "2026-11-02T00:30:00Z",
        "2026-12-01T00:30:00Z",
    ] {
        expected.push(at(t));
    }
    let mut expected: Vec<String> = expected
        .into_iter()
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .collect();
    expected.push(manual[1].as_str()[..16].to_owned());
    expected.sort();
    expected.dedup();
    let kept: Vec<String> = backend
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.id.as_str()[..16].to_owned())
        .collect();
    assert_eq!(kept, expected, "what is left after a month");
    // The reasons travelled with the snapshots.
    let reasons: Vec<String> = backend
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "by hand"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "scheduled"), "{reasons:?}");
}

#[test]
fn retention_keeps_exactly_the_configured_set_over_a_month_on_btrfs() {
    let fs = BtrfsScratch::new(256);
    let backend = snapshot::detect(&fs.mount, Wanted::Btrfs).unwrap();
    month_of_schedule(backend.as_ref());
}

#[test]
fn retention_keeps_exactly_the_configured_set_over_a_month_on_zfs() {
    let fs = ZfsScratch::new(256);
    let backend = snapshot::detect(&fs.mount, Wanted::Zfs).unwrap();
    month_of_schedule(backend.as_ref());
}

#[test]
fn the_backend_is_detected_and_a_mismatch_is_explained() {
    let fs = BtrfsScratch::new(256);
    assert_eq!(
        snapshot::detect(&fs.mount, Wanted::Auto).unwrap().kind(),
        snapshot::BackendKind::Btrfs
    );
    let err = snapshot::detect(&fs.mount, Wanted::Zfs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is on btrfs"), "{err}");
    // A plain directory inside it is not a subvolume: no snapshots, and why.
    let inner = fs.mount.join("inner");
    std::fs::create_dir(&inner).unwrap();
    let plain = snapshot::detect(&inner, Wanted::Auto).unwrap();
    assert_eq!(plain.kind(), snapshot::BackendKind::Plain);
    let why = plain
        .create(
            &SnapshotId::new(jiff::Timestamp::now(), &[Kind::Manual]),
            "",
        )
        .unwrap_err()
        .to_string();
    assert!(why.contains("not a subvolume"), "{why}");
    let err = snapshot::detect(&inner, Wanted::Btrfs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a subvolume"), "{err}");
}

// ---- a scheduled snapshot during a capture burst, then a restore ----

struct Burst {
    /// (sent at, latency, ok)
    samples: Vec<(Instant, Duration, bool)>,
}

async fn burst(
    client: reqwest::Client,
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> Burst {
    let mut samples = Vec::new();
    let mut n = 0;
    while !stop.load(SeqCst) {
        n += 1;
        let sent = Instant::now();
        let ok = client
            .post(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "text": format!("burst note {n}"), "tags": ["burst"] }))
            .send()
            .await
            .is_ok_and(|r| r.status() == 201);
        samples.push((sent, sent.elapsed(), ok));
    }
    Burst { samples }
}

/// The ids of the newest items, newest first (from the database).
async fn item_ids(app: &TestAppliance) -> Vec<String> {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl as _;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    let rows: Vec<Row> =
        diesel::sql_query("SELECT id::text AS id FROM items ORDER BY created_at DESC, id")
            .load(&mut conn)
            .await
            .unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

async fn scheduled_snapshot_burst_and_restore(kind: &str) {
    let fs = Scratch::new(kind);
    let app = TestAppliance::launch_on(&exe(), Launch::Dev, fs.mount()).await;
    create_member(&app, OWNER, OWNER_PASS);
    let token = create_token(&app, OWNER, "capture", "burst");

    // The first scheduled snapshot comes 10 s after the start; the burst runs across it.
    let stop = Arc::new(AtomicBool::new(false));
    let burst_task = {
        let stop = Arc::clone(&stop);
        let (client, url) = (app.client(), app.url("/api/v1/capture"));
        tokio::spawn(burst(client, url, token.clone(), stop))
    };
    let started = Instant::now();
    let (took_ms, seen) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no scheduled snapshot within 90 s"
        );
        let line = app
            .log()
            .into_iter()
            .find(|l| l.contains("snapshot taken") && l.contains("hourly"));
        if let Some(line) = line {
            let took: u64 = line
                .split("took_ms=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            break (took, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, SeqCst);
    let Burst { samples } = burst_task.await.unwrap();
    let window_start = seen - Duration::from_millis(took_ms + 100);
    let during: Vec<Duration> = samples
        .iter()
        .filter(|(sent, latency, _)| *sent + *latency >= window_start && *sent <= seen)
        .map(|(_, l, _)| *l)
        .collect();
    let mut others: Vec<Duration> = samples
        .iter()
        .filter(|(sent, latency, _)| !(*sent + *latency >= window_start && *sent <= seen))
        .map(|(_, l, _)| *l)
        .collect();
    others.sort();
    let failed = samples.iter().filter(|(_, _, ok)| !ok).count();
    let worst = during.iter().max().copied().unwrap_or_default();
    let median = others.get(others.len() / 2).copied().unwrap_or_default();
    println!(
        "{kind}: snapshot took {took_ms} ms; {} captures, {} during it, worst during {:?}, median otherwise {:?}",
        samples.len(),
        during.len(),
        worst,
        median
    );
    assert_eq!(failed, 0, "every capture of the burst succeeded");
    assert!(
        !during.is_empty(),
        "captures ran while the snapshot was taken"
    );
    assert!(
        worst.saturating_sub(median) < Duration::from_millis(100),
        "no capture paused over 100 ms while the snapshot was taken: worst {worst:?}, median {median:?}"
    );
    let ids = listed(&app);
    assert!(
        ids.iter()
            .any(|id| id.ends_with("-hourly.daily.weekly.monthly")),
        "{ids:?}"
    );

    // A restore brings back an item deleted after the snapshot.
    let owner = owner_client(&app).await;
    let resp = capture_note(&app, &owner, "the heron nests by the weir").await;
    assert_eq!(resp.status(), 303);
    let item = item_ids(&app).await[0].clone();
    let out = admin_ok(
        &app,
        &["snapshot", "create", "--reason", "before the heron goes"],
    );
    let snap = out.lines().last().unwrap().trim().to_owned();
    assert!(snap.ends_with("-manual"), "{out}");
    assert!(listed(&app).contains(&snap));
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{item}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        status_of(&app, &owner, &format!("/items/{item}")).await,
        404
    );

    let started = Instant::now();
    let out = admin_ok(&app, &["snapshot", "restore", &snap]);
    println!("{kind}: restore took {:?}", started.elapsed());
    assert!(out.contains(&format!("restored {snap}")), "{out}");
    app.wait_healthy(Duration::from_secs(60)).await;
    // The item is back, the restore is in the owner's audit log, the present was kept.
    assert_restored(&app, &item, "the heron nests by the weir").await;
    // Bad input: a clear error, a non-zero exit.
    for bad in ["nonsense", "20200101T000000Z-manual"] {
        let out = app.admin(&["snapshot", "restore", bad]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a snapshot id") || err.contains("no snapshot"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_snapshot_during_a_capture_burst_and_a_restore_on_btrfs() {
    scheduled_snapshot_burst_and_restore("btrfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_snapshot_during_a_capture_burst_and_a_restore_on_zfs() {
    scheduled_snapshot_burst_and_restore("zfs").await;
}

// ---- a power cut during a snapshot ----

#[tokio::test]
async fn a_power_cut_during_a_snapshot_leaves_a_working_appliance() {
    let fs = BtrfsScratch::new(1024);
    let mut app = TestAppliance::launch_on(&exe(), Launch::Dev, &fs.mount).await;
    create_member(&app, OWNER, OWNER_PASS);
    let owner = owner_client(&app).await;
    for n in 0..5 {
        let resp = capture_note(&app, &owner, &format!("before the cut {n}")).await;
        assert_eq!(resp.status(), 303);
    }
    let items_before = item_ids(&app).await;
    for delay_ms in [0, 40, 250] {
        let mut cli = std::process::Command::new(exe())
            .args(["admin", "--data-dir"])
            .arg(&app.data_dir)
            .args(["snapshot", "create", "--reason", "cut short"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // The whole tree at once, as a power cut would.
        for pid in app.process_tree() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = cli.wait();
        app.restart_after_kill(true).await;
        let ids = listed(&app);
        for id in &ids {
            let pg = fs
                .mount
                .join(".snapshots")
                .join(id)
                .join("postgres/PG_VERSION");
            assert!(pg.exists(), "snapshot {id} is complete");
        }
        println!(
            "cut {delay_ms} ms into a snapshot: {} snapshot(s) now",
            ids.len()
        );
        assert_eq!(item_ids(&app).await, items_before, "every item is there");
    }
    let owner = owner_client(&app).await;
    let resp = capture_note(&app, &owner, "after the cuts").await;
    assert_eq!(resp.status(), 303, "the vault takes captures again");
}

// ---- a failing migration ----

#[tokio::test]
async fn a_failing_migration_is_rolled_back_to_the_snapshot_taken_before_it() {
    let fs = BtrfsScratch::new(1024);
    let mut app = TestAppliance::launch_on(&exe(), Launch::Dev, &fs.mount).await;
    create_member(&app, OWNER, OWNER_PASS);
    // The newest two migrations undone, and the newest one made to fail when it runs
    // again (the table it creates is there already, another shape).
    let versions = psql(
        &app,
        "SELECT version FROM __diesel_schema_migrations ORDER BY version DESC LIMIT 2",
    );
    let versions: Vec<&str> = versions.lines().collect();
    assert_eq!(versions.len(), 2);
    psql(
        &app,
        &format!(
            "BEGIN; DROP TABLE getting_started; DROP TABLE settings; \
             DELETE FROM __diesel_schema_migrations WHERE version IN ('{}', '{}'); \
             CREATE TABLE getting_started (in_the_way integer); COMMIT;",
            versions[0], versions[1]
        ),
    );
    let status = app.stop(Duration::from_secs(60));
    assert!(status.success());
    app.restart_after_kill(false).await;

    // The first pending migration went through, the second failed: the database is back
    // as it was before the first, and the status, the log and the audit say so.
    let control = cv_control::ControlClient::new(app.layout().control_socket());
    let started = Instant::now();
    let problem = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no rollback reported"
        );
        if let Ok(status) = control.status().await {
            let pg = status
                .components
                .iter()
                .find(|c| c.name == "postgres")
                .cloned();
            if let Some(pg) = pg
                && pg.state == cv_control::ComponentState::Failed
                && let Some(e) = pg.last_error
            {
                break e;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(problem.contains("rolled back to snapshot"), "{problem}");
    assert_eq!(
        psql(
            &app,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'settings'"
        ),
        "0",
        "the migration that had succeeded is undone by the rollback"
    );
    assert_eq!(
        psql(
            &app,
            &format!(
                "SELECT count(*) FROM __diesel_schema_migrations WHERE version = '{}'",
                versions[1]
            )
        ),
        "0"
    );
    let audit = psql(
        &app,
        "SELECT count(*) FROM audit_events WHERE event = 'migration_rolled_back'",
    );
    assert_eq!(audit, "1");
    let ids = listed(&app);
    assert!(ids.iter().any(|id| id.ends_with("-migration")), "{ids:?}");
    assert!(
        app.log().iter().any(|l| l.contains("a migration failed")),
        "the log says it"
    );
}

// ---- snapshots and restore on the System page ----

const KEYS_NOTE: &str =
    "Deleting an item destroys its key, but snapshots taken before keep it until they expire.";

/// The System page's snapshot card, the list, a snapshot taken by hand, and a restore
/// from the dashboard: refused for a member and for a wrong passphrase, done for the
/// owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_are_taken_listed_and_restored_from_the_system_page() {
    let fs = BtrfsScratch::new(1024);
    let app = TestAppliance::launch_on(&exe(), Launch::Dev, &fs.mount).await;
    create_member(&app, OWNER, OWNER_PASS);
    add_member(&app, "max", "max's passphrase").await;
    let max = member_client(&app, "max", "max's passphrase").await;
    let owner = owner_client(&app).await;

    let system = text_of(&app, &owner, "/system").await;
    for text in [
        r#"id="snapshots""#,
        "<dd>btrfs</dd>",
        "Snapshots and restore",
        "Take a snapshot now",
    ] {
        assert!(system.contains(text), "{text} missing: {system}");
    }

    let resp = capture_note(&app, &owner, "the kingfisher perches on the sluice").await;
    assert_eq!(resp.status(), 303);
    let item = item_ids(&app).await[0].clone();

    // "Take a snapshot now", with a reason: back to the card, which names it.
    let resp = post_form(
        &app,
        &owner,
        "/system/snapshots/create",
        &[("reason", "before the kingfisher goes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert!(to.starts_with("/system?snapshot="), "{to}");
    let snap = to
        .trim_start_matches("/system?snapshot=")
        .trim_end_matches("#snapshots")
        .to_owned();
    assert!(snap.ends_with("-manual"), "{snap}");
    assert!(listed(&app).contains(&snap));
    let card = text_of(&app, &owner, &to).await;
    assert!(
        card.contains(&format!("Snapshot <code>{snap}</code> taken.")),
        "{card}"
    );
    let list = text_of(&app, &owner, "/system/snapshots").await;
    for text in [
        "taken by hand: before the kingfisher goes",
        &format!("href=\"/system/snapshots/{snap}/restore\""),
        KEYS_NOTE,
    ] {
        assert!(list.contains(text), "{text} missing: {list}");
    }

    // A member sees none of it and can do none of it.
    let restore_path = format!("/system/snapshots/{snap}/restore");
    for path in ["/system/snapshots", restore_path.as_str()] {
        assert_eq!(status_of(&app, &max, path).await, 403, "{path}");
    }
    let resp = post_form(&app, &max, "/system/snapshots/create", &[]).await;
    assert_eq!(resp.status(), 403);
    let resp = post_form(
        &app,
        &max,
        &restore_path,
        &[("passphrase", "max's passphrase")],
    )
    .await;
    assert_eq!(resp.status(), 403);

    // Ids that are not snapshots: 404, whatever their shape.
    for bad in [
        "nonsense",
        "20200101T000000Z-manual",
        "20261207T150000Z-sometimes",
    ] {
        let path = format!("/system/snapshots/{bad}/restore");
        assert_eq!(status_of(&app, &owner, &path).await, 404, "{path}");
        let resp = post_form(&app, &owner, &path, &[("passphrase", OWNER_PASS)]).await;
        assert_eq!(resp.status(), 404, "{path}");
    }

    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{item}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        status_of(&app, &owner, &format!("/items/{item}")).await,
        404
    );

    // The confirmation says what happens; a wrong passphrase restores nothing.
    let confirm = text_of(&app, &owner, &restore_path).await;
    for text in [
        "offline for about a minute",
        "Everyone is logged out",
        "undone",
        "A snapshot of the present is taken first",
        r#"type="password""#,
        KEYS_NOTE,
    ] {
        assert!(confirm.contains(text), "{text} missing: {confirm}");
    }
    let resp = post_form(
        &app,
        &owner,
        &restore_path,
        &[("passphrase", "a wrong guess")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("Wrong passphrase: nothing was restored."),
        "{body}"
    );
    assert!(body.contains(r#"type="password""#), "the form again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !listed(&app).iter().any(|id| id.ends_with("-restore")),
        "no restore was started"
    );
    assert_eq!(
        status_of(&app, &owner, &format!("/items/{item}")).await,
        404
    );

    // The owner's passphrase: the restore runs in the background, the page says so.
    let resp = post_form(&app, &owner, &restore_path, &[("passphrase", OWNER_PASS)]).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("Restoring"), "{body}");
    assert!(body.contains(r#"http-equiv="refresh""#), "{body}");
    let started = Instant::now();
    while !app.log().iter().any(|l| l.contains("snapshot restored")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no restore within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.wait_healthy(Duration::from_secs(120)).await;
    println!("restore from the System page took {:?}", started.elapsed());

    // Everyone is logged out, also from sessions the snapshot holds.
    assert_eq!(status_of(&app, &owner, "/home").await, 303);
    assert_eq!(status_of(&app, &max, "/home").await, 303);
    assert_restored(&app, &item, "the kingfisher perches on the sluice").await;
}

/// On a data directory that cannot take snapshots, the card says why and the page offers
/// no restore.
#[tokio::test]
async fn the_system_page_says_why_a_plain_data_directory_has_no_snapshots() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let system = text_of(&app, &owner, "/system").await;
    assert!(system.contains("No snapshots: "), "{system}");
    assert!(system.contains("cannot take snapshots"), "{system}");
    assert!(!system.contains("Take a snapshot now"));
    let list = text_of(&app, &owner, "/system/snapshots").await;
    assert!(list.contains("cannot take snapshots"), "{list}");
    assert!(list.contains(KEYS_NOTE));
    assert!(!list.contains("/restore"), "{list}");
    let path = "/system/snapshots/20261207T150000Z-manual/restore";
    assert_eq!(status_of(&app, &owner, path).await, 404);
}
