//! Encrypted off-box backups with restic, to a local repository and to a REST server on
//! loopback (`rclone serve restic`): made from a snapshot of a real appliance on btrfs,
//! restored onto a fresh box (with the command line, or from its setup page), where the
//! owner logs in and finds every item, tag, version and embedding; the repository holds
//! none of the vault's plaintext.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cv_testkit::scratch_fs::BtrfsScratch;
use cv_testkit::{Launch, TestAppliance};

use crate::api::{api_login, capture};
use crate::support::*;
use crate::workers::model_dir;

/// Words that appear only in the notes and tags captured here.
const MARKERS: [&str; 4] = [
    "quokka-lighthouse",
    "marmalade-zeppelin",
    "tangerine-obelisk",
    "periwinkle-sextant",
];

/// `rclone serve restic` on a loopback port, stopped when dropped.
struct RestServer {
    child: Child,
    port: u16,
}

impl RestServer {
    fn start(dir: &Path) -> RestServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("rclone")
            .args(["serve", "restic", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .env("RCLONE_CONFIG", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone cannot be run: run scripts/install-deps --test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rclone serve restic did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        RestServer { child, port }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What must come back, byte for byte: items (their data keys), every version (the
/// encrypted text and tags), the embeddings, the accounts.
fn vault_rows(app: &TestAppliance) -> Vec<String> {
    [
        "SELECT id || ' ' || version || ' ' || md5(data_key) FROM items ORDER BY id",
        "SELECT item_id || ' ' || version || ' ' || md5(content) FROM item_versions ORDER BY 1",
        "SELECT item_id || ' ' || version || ' ' || md5(ciphertext) FROM item_embeddings ORDER BY 1",
        "SELECT name || ' ' || role FROM users ORDER BY name",
    ]
    .iter()
    .map(|q| format!("{q}\n{}", psql(app, q)))
    .collect()
}

/// Every file under `dir`, read whole: none may contain a marker.
fn assert_no_plaintext(dir: &Path) {
    let mut stack = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                for marker in MARKERS {
                    assert!(
                        !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                        "{marker} in {}",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(files > 5, "the repository has its files ({files})");
}

/// How the new box is told to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Cli,
    SetupPage,
}

/// The setup code from the appliance's JSON log.
fn setup_code(app: &TestAppliance) -> String {
    app.log()
        .iter()
        .rev()
        .filter(|l| l.contains("setup_code"))
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["setup_code"].as_str().map(ToOwned::to_owned)
        })
        .expect("the appliance logged no setup code")
}

async fn restore_through_the_setup_page(new: &TestAppliance, repository: &str, key: &str) {
    let client = new.client();
    let code = setup_code(new);
    let post = |key: String| {
        let client = client.clone();
        let code = code.clone();
        async move {
            let csrf = csrf_for(new, &client, "/setup").await;
            client
                .post(new.url("/setup/restore"))
                .form(&[
                    ("setup_code", code.as_str()),
                    ("repository", repository),
                    ("key", key.as_str()),
                    ("snapshot", ""),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let resp = post("0".repeat(64)).await;
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("does not open"), "{page}");
    let resp = post(key.to_owned()).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.text().await.unwrap().contains("Restoring your vault"));
    // The page looks again until the vault is back (answers fail while it restarts).
    // The box then has the old box's identity: its CA, which the owner's devices trust.
    let started = Instant::now();
    let mut last = String::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the restore did not finish: {last}"
        );
        match new.client().get(new.url("/setup/restoring")).send().await {
            Ok(resp)
                if resp.status() == 303 && location(&resp).starts_with("/login?restored=1") =>
            {
                break;
            }
            Ok(resp) => last = format!("{} {}", resp.status(), location(&resp)),
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn backup_and_restore_onto_a_new_box(repository: &str, repo_dir: &Path, via: Via) {
    let Some(models) = model_dir() else {
        panic!("the model is missing: run scripts/fetch-model");
    };
    let extra = format!(
        "[workers]\nmodels_dir = \"{}\"\n\n[backup]\nrepository = \"{repository}\"\n",
        models.display()
    );
    let launch = Launch::Appliance {
        env: Vec::new(),
        extra,
    };
    let old_fs = BtrfsScratch::new(1024);
    let old = TestAppliance::launch_on(&exe(), launch.clone(), &old_fs.mount).await;
    create_member(&old, OWNER, OWNER_PASS);
    let session = api_login(&old, OWNER, OWNER_PASS).await;
    let mut ids = Vec::new();
    for (n, marker) in MARKERS.iter().enumerate() {
        let text = format!("note {n} about the {marker}");
        ids.push(capture(&old, &session, &text, &[marker, "backup"]).await);
    }
    // A second version of one item.
    let owner = owner_client(&old).await;
    let resp = post_form(
        &old,
        &owner,
        &format!("/items/{}/edit", ids[0]),
        &[
            ("version", "1"),
            ("text", "note 0, edited, about the quokka-lighthouse"),
            ("tags", "quokka-lighthouse, backup, edited"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    // Every item embedded (in the background, by the jailed worker).
    cv_testkit::eventually(Duration::from_secs(180), "every item embedded", || async {
        let n = psql(&old, "SELECT count(DISTINCT item_id) FROM item_embeddings");
        (n == MARKERS.len().to_string()).then_some(())
    })
    .await;
    let before = vault_rows(&old);

    let key = admin_ok(&old, &["backup", "init"]);
    let key = key.lines().last().unwrap().trim().to_owned();
    assert_eq!(key.len(), 64, "a 32-byte key in hex");
    let out = old.admin(&["backup", "init"]);
    assert!(
        !out.status.success(),
        "set up once; the key is not shown again"
    );
    let started = Instant::now();
    let out = admin_ok(&old, &["backup", "run"]);
    println!("{repository}: {} ({:?})", out.trim(), started.elapsed());
    let listed = admin_ok(&old, &["backup", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_no_plaintext(repo_dir);
    let status = cv_control::ControlClient::new(old.layout().control_socket())
        .status()
        .await
        .unwrap();
    let backup = status.backup.unwrap();
    assert!(
        backup.last_success_at.is_some() && backup.problem.is_none(),
        "the last backup is reported: {backup:?}"
    );
    // The old box is gone; the owner kept the key.
    drop(old);

    let new_fs = BtrfsScratch::new(1024);
    let new = TestAppliance::launch_on(&exe(), launch, &new_fs.mount).await;
    let key_file = new.dir.path().join("backup.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let started = Instant::now();
    let restore = |key_file: &Path| {
        new.admin(&[
            "backup",
            "restore",
            "--repository",
            repository,
            "--key-file",
            key_file.to_str().unwrap(),
        ])
    };
    match via {
        Via::Cli => {
            let wrong = new.dir.path().join("wrong.key");
            std::fs::write(&wrong, "0".repeat(64)).unwrap();
            let out = restore(&wrong);
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("does not open"), "{err}");
            let out = restore(&key_file);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Via::SetupPage => restore_through_the_setup_page(&new, repository, &key).await,
    }
    println!(
        "{repository}: restored ({via:?}) in {:?}",
        started.elapsed()
    );
    new.wait_healthy(Duration::from_secs(180)).await;
    assert_eq!(vault_rows(&new), before, "everything came back");
    let owner = owner_client(&new).await;
    for (id, marker) in ids.iter().zip(MARKERS) {
        let page = text_of(&new, &owner, &format!("/items/{id}")).await;
        assert!(page.contains(marker), "item {id} reads back");
    }
    let edited = text_of(&new, &owner, &format!("/items/{}", ids[0])).await;
    assert!(edited.contains("edited"), "its tags read back");
    let history = text_of(&new, &owner, &format!("/items/{}/history", ids[0])).await;
    assert!(
        history.contains("note 0 about the quokka-lighthouse"),
        "its first version reads back"
    );
    let activity = text_of(&new, &owner, "/account/activity").await;
    assert!(activity.contains("Restored from a backup"), "{activity}");
    // A box with an owner is not overwritten.
    let out = restore(&key_file);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has an owner already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_to_a_local_repository_restores_onto_a_new_box() {
    let dir = cv_testkit::shared_tempdir();
    let repo = dir.path().join("repo");
    backup_and_restore_onto_a_new_box(repo.to_str().unwrap(), &repo, Via::Cli).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_to_a_rest_server_restores_onto_a_new_box_from_its_setup_page() {
    let dir = cv_testkit::shared_tempdir();
    let server = RestServer::start(dir.path());
    let repository = format!("rest:http://127.0.0.1:{}/vault/", server.port);
    backup_and_restore_onto_a_new_box(&repository, dir.path(), Via::SetupPage).await;
}

/// The System page's Backups card and its "Back up now" button: refused (409) until the
/// backup key exists and for a member (403); for the owner, the backup runs in the
/// background and the card shows its success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_page_shows_backups_and_makes_one_on_request() {
    let dir = cv_testkit::shared_tempdir();
    let repo = dir.path().join("repo");
    let extra = format!("[backup]\nrepository = \"{}\"\n", repo.display());
    let launch = Launch::Appliance {
        env: Vec::new(),
        extra,
    };
    let fs = BtrfsScratch::new(1024);
    let app = TestAppliance::launch_on(&exe(), launch, &fs.mount).await;
    create_member(&app, OWNER, OWNER_PASS);
    add_member(&app, "max", "max's passphrase").await;
    let max = member_client(&app, "max", "max's passphrase").await;
    let owner = owner_client(&app).await;

    let system = text_of(&app, &owner, "/system").await;
    assert!(
        system.contains("Set up but no key yet: run `contextvault admin backup init`"),
        "{system}"
    );
    assert!(!system.contains("Back up now"));
    let resp = post_form(&app, &owner, "/system/backup/run", &[]).await;
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap().contains("no key yet"));

    admin_ok(&app, &["backup", "init"]);
    let resp = post_form(&app, &max, "/system/backup/run", &[]).await;
    assert_eq!(resp.status(), 403);
    // The service keeps the supervisor's status for a second.
    let system = cv_testkit::eventually(Duration::from_secs(10), "the key shown as made", || {
        let (app, owner) = (&app, &owner);
        async move {
            let page = text_of(app, owner, "/system").await;
            page.contains("Back up now").then_some(page)
        }
    })
    .await;
    assert!(system.contains(&repo.display().to_string()));

    let resp = post_form(&app, &owner, "/system/backup/run", &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/system#backups");
    let card = cv_testkit::eventually(Duration::from_secs(45), "the backup shown as made", || {
        let app = &app;
        let owner = &owner;
        async move {
            let page = text_of(app, owner, "/system").await;
            page.contains("Restic snapshot").then_some(page)
        }
    })
    .await;
    assert!(!card.contains("The last backup failed"), "{card}");
    assert!(card.contains("Back up now"), "{card}");
    let listed = admin_ok(&app, &["backup", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}
