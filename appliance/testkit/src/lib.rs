//! Test helpers. [`TestAppliance`] starts the real `contextvault dev` binary (supervisor,
//! its own PostgreSQL cluster, the vault service) in a fresh data directory on free
//! ports, so every test has its own cluster and tests run in parallel.
//!
//! Tests call `.unwrap()`/`.expect()` freely: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub mod netns;
pub mod scratch_fs;
pub mod wg;

use cv_storage::DataLayout;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A directory under /tmp that the appliance's system users can enter (tempfile makes
/// 0700 directories, which PostgreSQL's user could not pass through).
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("cv-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes a benchmark's report to `<root>/target/bench/<name>-<unix seconds>.json`
/// (`root`: the workspace), says where, and returns the path.
pub fn save_bench_report(root: &Path, name: &str, report: &serde_json::Value) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report).unwrap()).unwrap();
    println!("saved {}", path.display());
    path
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creating system users concurrently races on /etc/passwd's lock; do it once, first.
fn ensure_users() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if nix::unistd::Uid::effective().is_root() {
            cv_storage::ensure_system_user("contextvault-pg").unwrap();
            cv_storage::ensure_system_user("contextvault").unwrap();
            cv_storage::ensure_system_user("contextvault-worker").unwrap();
        }
    });
}

/// How the appliance is started.
///
/// The WireGuard interface is off unless a test asks for it (`DevWith` with
/// `--wireguard-port`, or a `[wireguard]` table in `Appliance`'s `extra`): as root, every
/// appliance would otherwise try to bring up `cvwg0` on port 51820, and tests run in
/// parallel. Likewise `Appliance` runs no AI worker unless `extra` has a `[workers]`
/// table.
#[derive(Debug, Clone, Default)]
pub enum Launch {
    /// `contextvault dev --data-dir … --https-port … --http-port … --no-wireguard`
    #[default]
    Dev,
    /// `contextvault dev --data-dir … --https-port … --http-port …` and these arguments.
    DevWith(Vec<String>),
    /// `contextvault run --config FILE`, with a config written for the test, and extra
    /// environment variables (e.g. systemd's `NOTIFY_SOCKET`).
    /// `extra` is appended to the config (whole TOML tables).
    Appliance {
        env: Vec<(String, String)>,
        extra: String,
    },
}

/// A running appliance.
#[derive(Debug)]
pub struct TestAppliance {
    child: Option<Child>,
    launch: Launch,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub https_port: u16,
    pub http_port: u16,
    exe: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    /// The network namespace it runs in, if not the test's own.
    netns: Option<String>,
}

impl TestAppliance {
    /// Starts `exe dev` and waits until `/healthz` answers 200.
    pub async fn start(exe: &Path) -> TestAppliance {
        Self::launch(exe, Launch::Dev).await
    }

    /// Starts the appliance as described by `launch` and waits until it is healthy.
    pub async fn launch(exe: &Path, launch: Launch) -> TestAppliance {
        Self::launch_with(exe, launch, free_port(), free_port(), None).await
    }

    /// Like [`TestAppliance::launch`], inside network namespace `netns` (listening on
    /// every address there, not only loopback). Health is checked from inside it; reach
    /// it with [`netns::Netns::run_in`].
    pub async fn launch_in(
        exe: &Path,
        launch: Launch,
        netns: Option<&netns::Netns>,
    ) -> TestAppliance {
        Self::launch_with(exe, launch, free_port(), free_port(), netns).await
    }

    /// [`TestAppliance::launch`] on given ports (for a test CA that must know them
    /// before the appliance starts).
    pub async fn launch_on_ports(
        exe: &Path,
        launch: Launch,
        https_port: u16,
        http_port: u16,
    ) -> TestAppliance {
        Self::launch_with(exe, launch, https_port, http_port, None).await
    }

    /// Like [`TestAppliance::launch`], with its data in `data_dir` (e.g. a scratch btrfs
    /// or ZFS mount from [`scratch_fs`]).
    pub async fn launch_on(exe: &Path, launch: Launch, data_dir: &Path) -> TestAppliance {
        let mut app = Self::unspawned(exe, launch, free_port(), free_port(), None);
        app.data_dir = data_dir.to_owned();
        app.spawn();
        app.wait_healthy(Duration::from_secs(90)).await;
        app
    }

    /// Starts the supervisor again after a SIGKILL of the whole tree (a power cut) or a
    /// stop: the old child is reaped first. Waits until it is healthy, or not at all.
    pub async fn restart_after_kill(&mut self, wait_healthy: bool) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log.lock().unwrap().clear();
        self.spawn();
        if wait_healthy {
            self.wait_healthy(Duration::from_secs(120)).await;
        }
    }

    /// Like [`TestAppliance::launch`], but waits only until `/healthz` answers, whatever
    /// its status: for a test of an appliance that is not healthy.
    pub async fn launch_answering(exe: &Path, launch: Launch) -> TestAppliance {
        let app = Self::spawned(exe, launch, free_port(), free_port(), None);
        app.wait_for_health(Duration::from_secs(90), |_| true).await;
        app
    }

    async fn launch_with(
        exe: &Path,
        launch: Launch,
        https_port: u16,
        http_port: u16,
        netns: Option<&netns::Netns>,
    ) -> TestAppliance {
        let app = Self::spawned(exe, launch, https_port, http_port, netns);
        app.wait_healthy(Duration::from_secs(90)).await;
        app
    }

    fn spawned(
        exe: &Path,
        launch: Launch,
        https_port: u16,
        http_port: u16,
        netns: Option<&netns::Netns>,
    ) -> TestAppliance {
        let mut app = Self::unspawned(exe, launch, https_port, http_port, netns);
        app.spawn();
        app
    }

    fn unspawned(
        exe: &Path,
        launch: Launch,
        https_port: u16,
        http_port: u16,
        netns: Option<&netns::Netns>,
    ) -> TestAppliance {
        ensure_users();
        let dir = shared_tempdir();
        let data_dir = dir.path().join("var");
        TestAppliance {
            child: None,
            launch,
            data_dir,
            dir,
            https_port,
            http_port,
            exe: exe.to_owned(),
            log: Arc::new(Mutex::new(Vec::new())),
            netns: netns.map(|ns| ns.name.clone()),
        }
    }

    /// Starts the supervisor again on the same data directory and ports (after
    /// [`TestAppliance::stop`]); the log starts afresh.
    pub async fn restart(&mut self) {
        self.log.lock().unwrap().clear();
        self.spawn();
        self.wait_healthy(Duration::from_secs(90)).await;
    }

    fn spawn(&mut self) {
        // `ip netns exec` execs the program: the child's pid is the supervisor's.
        let mut cmd = match &self.netns {
            None => Command::new(&self.exe),
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.exe);
                cmd
            }
        };
        // Where the console status goes is the test's choice (`Launch::Appliance`'s
        // env), not whatever the environment running the tests has.
        cmd.env_remove("RUNTIME_DIRECTORY");
        let bind = if self.netns.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        match &self.launch {
            Launch::Dev | Launch::DevWith(_) => {
                cmd.arg("dev")
                    .arg("--data-dir")
                    .arg(&self.data_dir)
                    .arg("--https-port")
                    .arg(self.https_port.to_string())
                    .arg("--http-port")
                    .arg(self.http_port.to_string())
                    .env("RUST_LOG", "info");
                match &self.launch {
                    Launch::DevWith(args) => {
                        cmd.args(args);
                    }
                    _ => {
                        cmd.arg("--no-wireguard");
                    }
                }
            }
            Launch::Appliance { env, extra } => {
                let wireguard_off = if extra.contains("[wireguard]") {
                    ""
                } else {
                    "\n[wireguard]\nenabled = false\n"
                };
                // An appliance whose local AI cannot start is not healthy (`/healthz`
                // answers 503): without a `[workers]` table (and the model it names), a
                // test's appliance runs none.
                let workers_off = if extra.contains("[workers]") {
                    ""
                } else {
                    "\n[workers]\ncount = 0\n"
                };
                let config = self.dir.path().join("config.toml");
                std::fs::write(
                    &config,
                    format!(
                        "version = 1\n\n[appliance]\ndata_dir = \"{}\"\n\n[network]\nbind = [\"{bind}\"]\nhttps_port = {}\nhttp_port = {}\n\n{extra}{wireguard_off}{workers_off}",
                        self.data_dir.display(),
                        self.https_port,
                        self.http_port
                    ),
                )
                .unwrap();
                cmd.arg("run")
                    .arg("--config")
                    .arg(&config)
                    .env_remove("RUST_LOG");
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
            }
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        let port = self.https_port;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[appliance :{port}] {line}");
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
    }

    /// Everything the appliance (supervisor and service) logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn layout(&self) -> DataLayout {
        DataLayout::new(&self.data_dir)
    }

    pub fn supervisor_pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// The local CA's certificate (PEM), which clients must trust.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.layout().tls_dir().join("ca.crt")).unwrap()
    }

    /// An HTTPS client that trusts only the appliance's CA, keeps cookies and does not
    /// follow redirects (tests look at them).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem()).unwrap())
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// The one-time setup code the supervisor logged.
    pub fn setup_code(&self) -> String {
        self.log()
            .iter()
            .rev()
            .find_map(|l| {
                let at = l.find("setup_code=")? + "setup_code=".len();
                Some(
                    l[at..]
                        .split_whitespace()
                        .next()?
                        .trim_matches('"')
                        .to_owned(),
                )
            })
            .expect("the appliance logged no setup code")
    }

    /// Polls `/healthz` until it answers 200.
    pub async fn wait_healthy(&self, timeout: Duration) {
        self.wait_for_health(timeout, |status| status == 200).await;
    }

    /// Polls `/healthz` until it answers with a status `accept` takes.
    async fn wait_for_health(&self, timeout: Duration, accept: fn(u16) -> bool) {
        let started = Instant::now();
        loop {
            let client = self.client_without_ca_if_missing();
            let url = self.url("/healthz");
            let healthy = async move {
                client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|resp| accept(resp.status().as_u16()))
            };
            let healthy = match &self.netns {
                None => healthy.await,
                Some(name) => netns::Netns::run_in_named(name, move || healthy).await,
            };
            if healthy {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the appliance did not become healthy within {timeout:?}; log:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn client_without_ca_if_missing(&self) -> reqwest::Client {
        if self.layout().tls_dir().join("ca.crt").exists() {
            self.client()
        } else {
            reqwest::Client::new()
        }
    }

    /// `GET /healthz` as JSON, with its status code.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let resp = self
            .client()
            .get(self.url("/healthz"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Runs `contextvault admin --data-dir … ARGS` (as the test process's user).
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.exe)
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Creates an account with the admin CLI (as the test process's user).
    pub fn create_user(&self, name: &str, passphrase: &str, admin: bool) -> std::process::Output {
        let file = self.dir.path().join(format!("pass-{name}"));
        std::fs::write(&file, format!("{passphrase}\n")).unwrap();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("admin")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("create-user")
            .arg(name)
            .arg("--passphrase-file")
            .arg(&file);
        if admin {
            cmd.arg("--admin");
        }
        cmd.output().unwrap()
    }

    /// PostgreSQL's postmaster pid, from its pid file.
    pub fn postgres_pid(&self) -> u32 {
        let text =
            std::fs::read_to_string(self.layout().postgres_data().join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// The vault service's pid: the supervisor's child running `serve`.
    pub fn service_pid(&self) -> Option<u32> {
        children_of(self.supervisor_pid())
            .into_iter()
            .find(|pid| cmdline(*pid).is_some_and(|c| c.contains("serve")))
    }

    /// The supervisor and every process below it.
    pub fn process_tree(&self) -> Vec<u32> {
        let mut all = vec![self.supervisor_pid()];
        let mut i = 0;
        while i < all.len() {
            all.extend(children_of(all[i]));
            i += 1;
        }
        all
    }

    /// A connection string to the appliance's own database, as its service role.
    pub fn database_url(&self) -> String {
        cv_storage::postgres::connection_string(
            &self.layout().postgres_socket_dir(),
            cv_db::SERVICE_ROLE,
            cv_db::DATABASE,
        )
    }

    /// Sends a signal to the supervisor.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.supervisor_pid() as i32), signal).unwrap();
    }

    /// SIGTERM, then waits for the supervisor to exit.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let child = self.child.as_mut().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "the supervisor did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestAppliance {
    fn drop(&mut self) {
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        let pids = if running { self.process_tree() } else { vec![] };
        if let Some(child) = &mut self.child
            && running
        {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Never leave a stray cluster behind a failed test.
            for pid in pids {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent pid of `pid`, if it is alive.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 4, after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The command line of `pid`, if it is alive.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// The real uid of `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a process is alive (and not a zombie).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rfind(')').and_then(|i| s[i + 2..].chars().next());
            state != Some('Z')
        })
        .unwrap_or(false)
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PostgreSQL cluster of its own, started by the same code the supervisor uses, for
/// tests that need only the database.
#[derive(Debug)]
pub struct TestCluster {
    _dir: tempfile::TempDir,
    spec: cv_storage::ClusterSpec,
    running: Option<cv_storage::RunningPostgres>,
}

impl TestCluster {
    pub async fn start() -> TestCluster {
        ensure_users();
        let dir = shared_tempdir();
        let me = cv_storage::OsUser::current().unwrap();
        let owner = if nix::unistd::Uid::effective().is_root() {
            cv_storage::OsUser::lookup("contextvault-pg")
                .unwrap()
                .unwrap()
        } else {
            me.clone()
        };
        let spec = cv_storage::ClusterSpec {
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            data_dir: dir.path().join("pg"),
            socket_dir: dir.path().join("run"),
            owner,
            socket_group: None,
            ident: vec![cv_storage::postgres::IdentEntry {
                os_user: me.name,
                role: cv_db::SERVICE_ROLE.to_owned(),
            }],
            // Durability is not what these tests check; fsync off makes them faster.
            settings: vec![("fsync".into(), "off".into())],
        };
        cv_storage::Cluster::init_if_needed(&spec).await.unwrap();
        let running = cv_storage::Cluster::start(&spec, Duration::from_secs(60))
            .await
            .unwrap();
        cv_db::provision(&spec.connection_string(cv_storage::postgres::SUPERUSER, "postgres"))
            .await
            .unwrap();
        TestCluster {
            _dir: dir,
            spec,
            running: Some(running),
        }
    }

    /// A connection string to `database` as the service role.
    pub fn url(&self, database: &str) -> String {
        self.spec.connection_string(cv_db::SERVICE_ROLE, database)
    }

    /// Creates a new, empty database owned by the service role; returns its URL.
    pub async fn fresh_database(&self) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "test_{}",
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        cv_db::create_database(
            &self
                .spec
                .connection_string(cv_storage::postgres::SUPERUSER, "postgres"),
            &name,
        )
        .await
        .unwrap();
        self.url(&name)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            // Immediate shutdown: the data is thrown away with the directory.
            let _ = kill(Pid::from_raw(running.pid() as i32), Signal::SIGQUIT);
            let started = Instant::now();
            while is_alive(running.pid()) && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
pub mod acme;
pub mod browser;
