//! The supervisor keeps the stack alive and stops it cleanly.

use std::time::Duration;

use cv_testkit::{eventually, is_alive, uid_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_killed_postgres_is_restarted_and_pages_recover() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    assert_eq!(status_of(&app, &owner, "/dashboard").await, 200);
    let old = app.postgres_pid();
    sigkill(old);

    // While PostgreSQL is down the pages say so with a 503, not a crash.
    let unavailable = eventually(
        Duration::from_secs(30),
        "a 503 page while PostgreSQL is down",
        || async {
            let resp = owner.get(app.url("/dashboard")).send().await.ok()?;
            (resp.status() == 503).then_some(resp)
        },
    )
    .await;
    assert!(unavailable.headers().get("retry-after").is_some());
    let text = unavailable.text().await.unwrap().to_lowercase();
    assert!(
        text.contains("starting") || text.contains("recovering"),
        "{text}"
    );

    // Then it comes back by itself, with the same session, without restarting the
    // appliance.
    eventually(
        Duration::from_secs(60),
        "the dashboard to answer again",
        || async {
            let resp = owner.get(app.url("/dashboard")).send().await.ok()?;
            (resp.status() == 200).then_some(())
        },
    )
    .await;
    assert_ne!(app.postgres_pid(), old);
    // The supervisor marks PostgreSQL up once migrations have run again, and the
    // service caches its status for a second.
    let health = eventually(
        Duration::from_secs(30),
        "healthz to be 200 again",
        || async {
            let (status, health) = app.health().await;
            (status == 200).then_some(health)
        },
    )
    .await;
    assert!(
        health["components"]["postgres"]["restarts"]
            .as_u64()
            .unwrap()
            >= 1,
        "{health}"
    );
}

#[tokio::test]
async fn a_killed_vault_service_is_restarted() {
    let app = appliance_with_owner().await;
    let old = app.service_pid().expect("a vault service process");
    sigkill(old);
    let new = eventually(Duration::from_secs(60), "a new vault service", || async {
        let pid = app.service_pid()?;
        (pid != old).then_some(pid)
    })
    .await;
    eventually(
        Duration::from_secs(60),
        "healthz to be 200 again",
        || async { (app.health().await.0 == 200).then_some(()) },
    )
    .await;
    assert!(is_alive(new));
    // Sessions live in PostgreSQL: logging in works against the new process.
    owner_client(&app).await;
    let (_, health) = app.health().await;
    assert!(
        health["components"]["vault"]["restarts"].as_u64().unwrap() >= 1,
        "{health}"
    );
}

#[tokio::test]
async fn a_clean_shutdown_leaves_no_process_behind() {
    let mut app = appliance_with_owner().await;
    let tree = app.process_tree();
    assert!(
        tree.len() >= 3,
        "supervisor, PostgreSQL and the vault service: {tree:?}"
    );
    let status = app.stop(Duration::from_secs(60));
    assert!(status.success(), "the supervisor exited with {status}");
    eventually(
        Duration::from_secs(10),
        "every child to be gone",
        || async {
            let left: Vec<u32> = tree.iter().copied().filter(|p| is_alive(*p)).collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    assert!(
        !app.layout().pid_file().exists(),
        "a clean stop removes the pid file"
    );
    assert!(
        app.log()
            .iter()
            .any(|l| l.contains("supervisor stopped cleanly")),
        "the supervisor reports a clean stop"
    );
}

#[tokio::test]
async fn an_unclean_stop_is_reported_at_the_next_start() {
    let mut app = appliance_with_owner().await;
    let pid_file = app.layout().pid_file();
    let status = app.stop(Duration::from_secs(60));
    assert!(status.success());
    // Pretend the previous supervisor died without cleaning up.
    std::fs::write(&pid_file, "999999\n").unwrap();
    app.restart().await;
    assert!(
        app.log()
            .iter()
            .any(|l| l.contains("did not shut down cleanly")),
        "the restart reports the unclean stop"
    );
}

#[tokio::test]
async fn the_http_serving_process_is_not_root() {
    let app = appliance().await;
    let service = app.service_pid().unwrap();
    let supervisor_uid = uid_of(app.supervisor_pid()).unwrap();
    if supervisor_uid != 0 {
        println!("skipped: the tests do not run as root, so nothing runs as root to begin with");
        return;
    }
    let uid = uid_of(service).unwrap();
    assert_ne!(uid, 0, "the vault service runs as root");
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "contextvault");
    let pg_uid = uid_of(app.postgres_pid()).unwrap();
    assert_ne!(pg_uid, 0);
    assert_ne!(
        pg_uid, uid,
        "PostgreSQL and the service are different users"
    );
    // The same thing as `ps` shows it.
    let ps = std::process::Command::new("ps")
        .args(["-o", "user=", "-p", &service.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "contextvault");
}

/// `contextvault run --config` as systemd starts it: JSON logs, and the notify protocol
/// spoken on `NOTIFY_SOCKET` (READY=1 once everything is up, watchdog pings, STOPPING=1).
#[tokio::test]
async fn appliance_mode_logs_json_and_speaks_the_systemd_notify_protocol() {
    let dir = cv_testkit::shared_tempdir();
    let socket_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let launch = cv_testkit::Launch::Appliance {
        env: vec![
            ("NOTIFY_SOCKET".into(), socket_path.display().to_string()),
            // 2 s: the supervisor must ping every second.
            ("WATCHDOG_USEC".into(), "2000000".into()),
        ],
        extra: String::new(),
    };
    let mut app = cv_testkit::TestAppliance::launch(&exe(), launch).await;

    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let started = std::time::Instant::now();
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "notifications so far: {seen:?}"
        );
        let n = notify.recv(&mut buf).unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }

    let log = app.log();
    let line = log
        .iter()
        .find(|l| l.contains("supervisor starting"))
        .expect("a start line");
    let json: serde_json::Value =
        serde_json::from_str(line).expect("appliance logs are JSON lines");
    assert_eq!(json["mode"], "appliance");
    // The service (another process, another user) logs JSON too.
    let service_line = log
        .iter()
        .find(|l| l.contains("serving HTTPS"))
        .expect("the service's start line");
    let json: serde_json::Value =
        serde_json::from_str(service_line).expect("service logs are JSON lines");
    assert_eq!(json["target"], "cv_web");

    assert!(app.stop(Duration::from_secs(60)).success());
    let mut stopping = false;
    notify
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1 at shutdown");
}

#[tokio::test]
async fn an_appliance_whose_local_ai_cannot_start_is_unavailable() {
    // One worker, and no model for it: every start fails, so the AI is `failing`.
    let models = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let launch = cv_testkit::Launch::Appliance {
        env: vec![(
            "RUNTIME_DIRECTORY".into(),
            runtime.path().display().to_string(),
        )],
        extra: format!(
            "[workers]\ncount = 1\nmodels_dir = \"{}\"\n",
            models.path().display()
        ),
    };
    let app = cv_testkit::TestAppliance::launch_answering(&exe(), launch).await;
    // The service (and its worker pool) starts while PostgreSQL may still be starting:
    // wait until the AI is the only failure.
    let (code, health) = eventually(
        Duration::from_secs(60),
        "the AI to be the one failing component",
        || async {
            let (code, health) = app.health().await;
            (health["ai"]["state"] == "failing" && health["failing"] == serde_json::json!(["ai"]))
                .then_some((code, health))
        },
    )
    .await;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    // Every other part of the document is as before.
    assert_eq!(health["components"]["database"]["state"], "up");
    assert_eq!(health["components"]["vault"]["state"], "up");
    assert_eq!(health["ai"]["workers"], 1);
    assert_eq!(health["ai"]["ready"], 0);

    // The console says the same, from systemd's runtime directory.
    let console = console_status(&runtime.path().join("console.json"), |c| {
        c["components"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["name"] == "ai" && c["state"] == "failing")
        })
    })
    .await;
    assert_eq!(console["status"], "unavailable", "{console}");
    assert!(!app.layout().run_dir().join("console.json").exists());
}
