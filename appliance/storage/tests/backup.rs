//! `cv_storage::backup` against the real `restic`, with a local folder and with a REST
//! server (`rclone serve restic`) on loopback as the repository.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cv_storage::backup::{
    BackupError, BackupKey, BackupSummary, HOST, Progress, Repository, Restic,
};

/// A string that appears as-is in one backed-up file, and so would appear in the
/// repository if restic did not encrypt.
const MARKER: &[u8] = b"CV-BACKUP-MARKER-7d1f2c9a-plaintext-must-not-leak";

/// The installed binary `name`, or a failure that says how to install it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/install-deps --test"))
}

fn restic(repository: Repository, key: BackupKey, cache: &Path) -> Restic {
    Restic::new(tool("restic"), repository, key, cache)
}

fn key(secret: &str) -> BackupKey {
    BackupKey::from_secret(secret.to_owned()).unwrap()
}

/// A few files: the marker as-is, random bytes, an empty file, a nested folder.
fn write_source(dir: &Path) {
    fs::create_dir_all(dir.join("notes/2026")).unwrap();
    let mut marker_file = b"A note.\n".to_vec();
    marker_file.extend_from_slice(MARKER);
    marker_file.extend_from_slice(b"\nThe end.\n");
    fs::write(dir.join("notes/marker.txt"), marker_file).unwrap();
    let mut random = vec![0u8; 300_000];
    rand::fill(&mut random[..]);
    fs::write(dir.join("notes/2026/random.bin"), random).unwrap();
    fs::write(dir.join("notes/2026/empty"), b"").unwrap();
    fs::write(dir.join("top.txt"), "top-level file\n").unwrap();
    // Not among the paths backed up.
    fs::write(dir.join("left-out.txt"), "not backed up\n").unwrap();
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_owned();
                out.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_marker_absent(repository_dir: &Path) {
    let all = files(repository_dir);
    assert!(
        all.len() > 3,
        "the repository holds files: {:?}",
        all.keys()
    );
    for (path, bytes) in all {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{} holds the plaintext marker",
            path.display()
        );
    }
}

/// init (twice), backup, snapshots, restore and compare; returns the summary.
fn round_trip(restic: &Restic, work: &Path) -> BackupSummary {
    restic.init().unwrap();
    restic.init().expect("init is idempotent");
    assert!(restic.snapshots().unwrap().is_empty());

    let source = work.join("source");
    write_source(&source);
    let mut reports: Vec<Progress> = Vec::new();
    let summary = restic
        .backup(
            &source,
            &["notes", "top.txt"],
            &["vault", "daily"],
            &mut |p| reports.push(p),
        )
        .unwrap();
    assert!(!reports.is_empty() || !summary.snapshot_id.is_empty());
    assert!(!summary.snapshot_id.is_empty());
    assert_eq!(summary.total_files_processed, 4);
    assert_eq!(summary.files_new, 4);
    assert!(summary.total_bytes_processed >= 300_000);
    assert!(summary.data_added >= 300_000);
    assert_eq!(summary.error_count, 0);

    let snapshots = restic.snapshots().unwrap();
    assert_eq!(snapshots.len(), 1);
    let snapshot = &snapshots[0];
    assert!(snapshot.id.starts_with(&summary.snapshot_id));
    assert!(snapshot.id.starts_with(&snapshot.short_id));
    assert_eq!(snapshot.hostname, HOST);
    assert_eq!(snapshot.tags, ["vault", "daily"]);
    let mut paths = snapshot.paths.clone();
    paths.sort();
    assert_eq!(paths.len(), 2);
    assert!(paths[0].ends_with("/notes") && paths[1].ends_with("/top.txt"));
    let age = jiff::Timestamp::now().duration_since(snapshot.time);
    assert!(age.as_secs() < 600, "snapshot time {}", snapshot.time);

    // A second backup: nothing new, and snapshots come oldest first.
    let second = restic
        .backup(
            &source,
            &["notes", "top.txt"],
            &["vault", "daily"],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(second.files_new, 0);
    let snapshots = restic.snapshots().unwrap();
    assert_eq!(snapshots.len(), 2);
    assert!(snapshots[0].time <= snapshots[1].time);
    assert!(snapshots[1].id.starts_with(&second.snapshot_id));
    assert_eq!(snapshots[1].tags, ["vault", "daily"]);

    // The snapshot holds relative paths: they land straight under the target.
    let mut expected = files(&source);
    expected.remove(Path::new("left-out.txt"));
    let target = work.join("restored");
    restic.restore(&snapshots[0].id, &target).unwrap();
    assert_eq!(files(&target), expected);
    let latest = work.join("restored-latest");
    fs::create_dir(&latest).unwrap();
    restic.restore("latest", &latest).unwrap();
    assert_eq!(files(&latest), expected);

    // Restoring over existing files is refused, before restic runs.
    let err = restic.restore("latest", &target).unwrap_err();
    assert!(matches!(err, BackupError::TargetNotEmpty { .. }), "{err:?}");
    assert!(err.to_string().contains("empty folder"), "{err}");
    let err = restic.restore("--help", &work.join("other")).unwrap_err();
    assert!(matches!(err, BackupError::InvalidRequest(_)), "{err:?}");

    summary
}

#[test]
fn local_repository_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let secret = BackupKey::generate();
    let restic = restic(
        Repository::Local(repo_dir.clone()),
        key(secret.reveal()),
        &work.path().join("cache"),
    );
    round_trip(&restic, work.path());
    assert_marker_absent(&repo_dir);

    restic.forget_prune(7, 4, 12).unwrap();
    assert_eq!(restic.snapshots().unwrap().len(), 1, "one a day is kept");
    assert_marker_absent(&repo_dir);
    let err = restic.forget_prune(0, 0, 0).unwrap_err();
    assert!(matches!(err, BackupError::InvalidRequest(_)), "{err:?}");
}

#[test]
fn local_repository_wrong_key() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let cache = work.path().join("cache");
    let right = restic(
        Repository::Local(repo_dir.clone()),
        BackupKey::generate(),
        &cache,
    );
    right.init().unwrap();

    let wrong_key = BackupKey::generate();
    let wrong_secret = wrong_key.reveal().to_owned();
    let wrong = restic(Repository::Local(repo_dir.clone()), wrong_key, &cache);
    for err in [wrong.init().unwrap_err(), wrong.snapshots().unwrap_err()] {
        assert!(matches!(err, BackupError::WrongKey { .. }), "{err:?}");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "the backup key does not open the repository at {}",
                repo_dir.display()
            )
        );
        assert!(!format!("{err:?}").contains(&wrong_secret));
    }
}

#[test]
fn local_repository_not_set_up() {
    let work = tempfile::tempdir().unwrap();
    let restic = restic(
        Repository::Local(work.path().join("nothing-here")),
        BackupKey::generate(),
        &work.path().join("cache"),
    );
    let err = restic.snapshots().unwrap_err();
    assert!(matches!(err, BackupError::NotInitialised { .. }), "{err:?}");
}

#[test]
fn backup_refuses_paths_outside_the_source() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    write_source(&source);
    let restic = restic(
        Repository::Local(work.path().join("repo")),
        BackupKey::generate(),
        &work.path().join("cache"),
    );
    restic.init().unwrap();
    for paths in [
        &["/etc"][..],
        &["../source"],
        &["notes/../../x"],
        &[""],
        &[],
        &["missing"],
    ] {
        let err = restic.backup(&source, paths, &[], &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidRequest(_)),
            "{paths:?}: {err:?}"
        );
    }
    let err = restic
        .backup(&source, &["notes"], &["a,b"], &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, BackupError::InvalidRequest(_)), "{err:?}");
    // A file whose name looks like an option is still a path.
    fs::write(source.join("--dry-run"), "x").unwrap();
    let summary = restic
        .backup(&source, &["--dry-run"], &[], &mut |_| {})
        .unwrap();
    assert_eq!(summary.total_files_processed, 1);
}

#[test]
fn missing_restic_says_what_to_install() {
    let work = tempfile::tempdir().unwrap();
    let restic = Restic::new(
        work.path().join("no-restic-here"),
        Repository::Local(work.path().join("repo")),
        BackupKey::generate(),
        work.path().join("cache"),
    );
    let err = restic.init().unwrap_err();
    assert!(matches!(err, BackupError::ResticMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("install the restic package"),
        "{err}"
    );
}

/// `rclone serve restic` on a loopback port, killed when dropped.
struct RestServer {
    child: Child,
    port: u16,
}

impl RestServer {
    fn start(dir: &Path) -> RestServer {
        let rclone = tool("rclone");
        let port = free_port();
        let child = Command::new(rclone)
            .args(["serve", "restic", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .env("RCLONE_CONFIG", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RestServer { child, port };
        wait_for_port(port);
        server
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rclone serve restic did not answer on port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rest_server_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    fs::create_dir(&served).unwrap();
    let server = RestServer::start(&served);
    let url = format!("rest:http://127.0.0.1:{}/", server.port);
    let repository = Repository::parse(&url).unwrap();
    assert_eq!(repository.as_restic_arg(), url);
    let restic = restic(
        repository,
        BackupKey::generate(),
        &work.path().join("cache"),
    );
    round_trip(&restic, work.path());
    assert!(served.join("config").is_file());
    assert_marker_absent(&served);

    let wrong = self::restic(
        Repository::parse(&url).unwrap(),
        BackupKey::generate(),
        &work.path().join("cache"),
    );
    let err = wrong.init().unwrap_err();
    assert!(matches!(err, BackupError::WrongKey { .. }), "{err:?}");
    assert!(err.to_string().contains("does not open"), "{err}");

    drop(server);
    let err = restic.snapshots().unwrap_err();
    assert!(matches!(err, BackupError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
}

#[test]
fn rest_credentials_never_shown() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("rest:http://owner:s3cret-pw@127.0.0.1:{port}/box/");
    let repository = Repository::parse(&url).unwrap();
    assert_eq!(repository.as_restic_arg(), url);
    let masked = format!("rest:http://owner:***@127.0.0.1:{port}/box/");
    assert_eq!(repository.to_string(), masked);
    assert!(!format!("{repository:?}").contains("s3cret-pw"));
    assert!(format!("{repository:?}").contains("owner:***@"));

    // Nothing listens there: the error names the repository, masked.
    let restic = restic(
        repository,
        BackupKey::generate(),
        &work.path().join("cache"),
    );
    assert!(!format!("{restic:?}").contains("s3cret-pw"));
    let err = restic.init().unwrap_err();
    assert!(matches!(err, BackupError::Unreachable { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    assert!(!format!("{err:?}").contains("s3cret-pw"), "{err:?}");

    let err = Repository::parse("rest:ftp://owner:s3cret-pw@host/").unwrap_err();
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}

#[test]
fn repository_parse_accepts_restic_spellings() {
    assert_eq!(
        Repository::parse("/mnt/usb/backups").unwrap(),
        Repository::Local("/mnt/usb/backups".into())
    );
    assert_eq!(
        Repository::parse("local:/srv/b").unwrap(),
        Repository::Local("/srv/b".into())
    );
    assert_eq!(
        Repository::parse("rest:https://backup.example:8000/vault/").unwrap(),
        Repository::Rest("https://backup.example:8000/vault/".into())
    );
    assert_eq!(
        Repository::parse("rest:http://10.0.0.2:8000").unwrap(),
        Repository::Rest("http://10.0.0.2:8000/".into())
    );
    assert_eq!(
        Repository::parse("sftp:alice@nas.local:/srv/restic").unwrap(),
        Repository::Sftp("alice@nas.local:/srv/restic".into())
    );
    assert_eq!(
        Repository::parse("sftp://alice@nas.local:2222//srv/restic").unwrap(),
        Repository::Sftp("//alice@nas.local:2222//srv/restic".into())
    );
    for (input, arg) in [
        ("/mnt/usb/backups", "/mnt/usb/backups"),
        ("rest:http://h:8000/p/", "rest:http://h:8000/p/"),
        ("sftp:u@h:/p", "sftp:u@h:/p"),
    ] {
        assert_eq!(Repository::parse(input).unwrap().as_restic_arg(), arg);
    }
}

#[test]
fn repository_parse_rejects_other_locations() {
    for input in [
        "",
        "backups",
        "./backups",
        "relative/path",
        "local:relative",
        "/mnt/../etc",
        "s3:s3.amazonaws.com/bucket",
        "b2:bucket:path",
        "rclone:remote:path",
        "azure:container:/",
        "rest:",
        "rest:ftp://host/",
        "rest:http://",
        "rest:http:///path",
        "rest:http://host/with space",
        "http://host:8000/",
        "sftp:",
        "sftp:host",
        "sftp:user@:/path",
        "sftp:-oProxyCommand=x:/path",
        "/mnt/usb\n/other",
    ] {
        let err = Repository::parse(input).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidRepository { .. }),
            "{input:?}: {err:?}"
        );
        assert!(err.to_string().contains("use an absolute path"), "{err}");
    }
}

#[test]
fn backup_key_debug_store_and_load() {
    let key = BackupKey::generate();
    let secret = key.reveal().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(secret, BackupKey::generate().reveal());
    assert_eq!(format!("{key:?}"), "BackupKey(..)");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.key");
    key.store(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{secret}\n"));
    assert_eq!(BackupKey::load(&path).unwrap().reveal(), secret);
    // Replacing a key leaves no temporary file behind.
    let other = BackupKey::generate();
    other.store(&path).unwrap();
    assert_eq!(BackupKey::load(&path).unwrap().reveal(), other.reveal());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    fs::write(&path, "typed-by-hand").unwrap();
    assert_eq!(BackupKey::load(&path).unwrap().reveal(), "typed-by-hand");
    fs::write(&path, "windows\r\n").unwrap();
    assert_eq!(BackupKey::load(&path).unwrap().reveal(), "windows");
    for bad in ["", "\n", " padded\n", "two\nlines\n"] {
        fs::write(&path, bad).unwrap();
        let err = BackupKey::load(&path).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidKey { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = BackupKey::load(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, BackupError::Io { .. }), "{err:?}");
}

/// What restic is started with, seen by a stand-in script in its place: the key arrives on
/// standard input only, the repository through the environment.
#[test]
fn key_reaches_restic_only_through_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let script = dir.path().join("restic");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {seen}/args\nenv > {seen}/env\n\
             cat \"$RESTIC_PASSWORD_FILE\" > {seen}/password\npwd > {seen}/cwd\necho '[]'\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(&seen).unwrap();
    let key = BackupKey::generate();
    let secret = key.reveal().to_owned();
    let cache = dir.path().join("cache");
    let restic = Restic::new(
        &script,
        Repository::parse("rest:https://owner:s3cret-pw@backup.example/").unwrap(),
        key,
        &cache,
    );
    assert!(restic.snapshots().unwrap().is_empty());

    let args = fs::read_to_string(seen.join("args")).unwrap();
    let env = fs::read_to_string(seen.join("env")).unwrap();
    assert_eq!(fs::read_to_string(seen.join("password")).unwrap(), secret);
    assert!(!args.contains(&secret) && !env.contains(&secret));
    assert!(!args.contains("s3cret-pw"), "{args}");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--cache-dir",
            cache.to_str().unwrap(),
            "snapshots",
            "--json"
        ]
    );
    assert!(cache.is_dir());
    let mut restic_env: Vec<&str> = env.lines().filter(|l| l.starts_with("RESTIC_")).collect();
    restic_env.sort();
    assert_eq!(
        restic_env,
        [
            "RESTIC_PASSWORD_FILE=/dev/stdin",
            "RESTIC_PROGRESS_FPS=1",
            "RESTIC_REPOSITORY=rest:https://owner:s3cret-pw@backup.example/",
        ]
    );
}
