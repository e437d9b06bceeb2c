//! The appliance image in a VM: `image/run` started in a process group of its own (so a
//! power cut is one SIGKILL to the group), its serial console read line by line, and
//! commands run inside through the QEMU guest agent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// One run of the VM (one QEMU process): it may boot several times (a reboot keeps the
/// process), and it ends with a power-off or a power cut.
pub struct Vm {
    child: Option<Child>,
    serial: Arc<Mutex<String>>,
    agent: PathBuf,
    /// QEMU's monitor (image/run puts it beside the disk).
    monitor: PathBuf,
    pub port: u16,
    pub started: Instant,
}

/// What a command run in the VM did.
#[derive(Debug)]
pub struct Output {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Vm {
    /// Boots `image` with `disk` as the VM's drive (made over the image if missing),
    /// HTTPS forwarded to 127.0.0.1:`port`. The serial console goes to `log` too.
    pub fn start(image: &Path, disk: &Path, port: u16, log: &Path) -> Vm {
        let agent = disk.with_extension("agent.sock");
        let mut child = Command::new(repo().join("image/run"))
            .arg("--https-port")
            .arg(port.to_string())
            .arg("--disk")
            .arg(disk)
            .arg("--guest-agent")
            .arg(&agent)
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start image/run");
        let started = Instant::now();
        let serial = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let mut file = std::fs::File::create(log).expect("create the serial log");
        let sink = serial.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut buf = Vec::new();
            // Lines as they come; the console's bytes are not always UTF-8 (escape codes).
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let _ = file.write_all(&buf);
                let line = String::from_utf8_lossy(&buf).into_owned();
                sink.lock().unwrap().push_str(&line);
                buf.clear();
            }
        });
        let mut monitor = disk.as_os_str().to_owned();
        monitor.push(".monitor");
        Vm {
            child: Some(child),
            serial,
            agent,
            monitor: monitor.into(),
            port,
            started,
        }
    }

    /// Everything the serial console printed so far.
    pub fn serial(&self) -> String {
        self.serial.lock().unwrap().clone()
    }

    /// Waits until the console has printed a line matching `pattern` at least `count`
    /// times; returns the last match's first group (or the whole match).
    pub async fn wait_for_console(
        &mut self,
        pattern: &str,
        count: usize,
        timeout: Duration,
    ) -> String {
        let re = regex::Regex::new(pattern).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.serial();
            let found: Vec<_> = re.captures_iter(&text).collect();
            if found.len() >= count {
                let last = found.last().unwrap();
                return last
                    .get(1)
                    .unwrap_or_else(|| last.get(0).unwrap())
                    .as_str()
                    .to_owned();
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the console did not show /{pattern}/ ×{count} within {timeout:?}; it shows:\n{}",
                tail(&text, 60)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Fails the test if QEMU has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!(
                "the VM exited ({status}); its console:\n{}",
                tail(&self.serial(), 60)
            );
        }
    }

    /// Runs `script` with /bin/sh in the VM, as root, through the guest agent.
    pub async fn sh(&mut self, script: &str) -> Output {
        let agent = self.agent.clone();
        let script = script.to_owned();
        tokio::task::spawn_blocking(move || guest_exec(&agent, &script))
            .await
            .unwrap()
    }

    /// Like [`Vm::sh`], but the command must succeed; returns its standard output.
    pub async fn check(&mut self, script: &str) -> String {
        let out = self.sh(script).await;
        assert!(out.ok(), "in the VM, `{script}` failed: {out:?}");
        out.stdout
    }

    /// Starts `script` in the VM and does not wait for it (a reboot, say).
    pub async fn spawn(&mut self, script: &str) {
        let agent = self.agent.clone();
        let script = script.to_owned();
        tokio::task::spawn_blocking(move || {
            request(
                &agent,
                "guest-exec",
                json!({"path": "/bin/sh", "arg": ["-c", script]}),
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap();
    }

    /// What the VM's screen (VGA, tty1) shows, saved as a PNG.
    pub fn screenshot(&self, path: &Path) {
        let mut stream = UnixStream::connect(&self.monitor).expect("connect to QEMU's monitor");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let prompts = |stream: &mut UnixStream, n: usize| {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while seen.windows(6).filter(|w| w == b"(qemu)").count() < n {
                let got = std::io::Read::read(stream, &mut buf).expect("read QEMU's monitor");
                assert!(got > 0, "QEMU's monitor closed");
                seen.extend_from_slice(&buf[..got]);
            }
        };
        prompts(&mut stream, 1);
        stream
            .write_all(format!("screendump {} -f png\n", path.display()).as_bytes())
            .unwrap();
        prompts(&mut stream, 1);
        // The echo of the command comes before the next prompt; give QEMU a moment to
        // finish writing the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(path.exists(), "no screenshot at {}", path.display());
    }

    /// A hard power cut: QEMU and image/run are killed at once (SIGKILL to the group).
    pub fn power_cut(mut self) {
        let child = self.child.take().unwrap();
        kill_group(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = wait_child(child);
    }

    /// A clean power-off (image/run's SIGTERM: the ACPI power button); the VM must
    /// shut down by itself (image/run kills it after 90 s and exits non-zero).
    pub fn power_off(mut self) {
        let child = self.child.take().unwrap();
        kill_group_leader(&child, nix::sys::signal::Signal::SIGTERM);
        let status = wait_child(child);
        assert!(
            status.is_some_and(|s| s.success()),
            "the VM did not power off cleanly ({status:?}); its console:\n{}",
            tail(&self.serial(), 40)
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_group(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = wait_child(child);
        }
    }
}

fn kill_group(child: &Child, signal: nix::sys::signal::Signal) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, signal);
}

fn kill_group_leader(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
}

/// Waits for image/run to end (two minutes at most, then kills it); its exit status, or
/// None when it had to be killed.
fn wait_child(mut child: Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    kill_group(&child, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    None
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends one guest-agent command and returns its `return` value. The agent may not be up
/// yet (the VM is booting) or may have stale answers queued: each attempt opens the
/// socket afresh and synchronises with `guest-sync` and a fresh id first.
fn request(agent: &Path, command: &str, arguments: Value, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    let mut id: u64 = std::process::id().into();
    while Instant::now() < deadline {
        id += 1;
        match try_request(agent, command, &arguments, id) {
            Ok(value) => return value,
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("the guest agent did not answer {command} within {timeout:?}: {last_error}");
}

fn try_request(agent: &Path, command: &str, arguments: &Value, id: u64) -> Result<Value, String> {
    let mut stream = UnixStream::connect(agent).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let sync = json!({"execute": "guest-sync", "arguments": {"id": id}});
    stream
        .write_all(format!("{sync}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    // Skip whatever an earlier, abandoned exchange left, up to our sync's answer.
    loop {
        let line = read_line(&mut reader)?;
        if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["return"] == json!(id)) {
            break;
        }
    }
    let request = json!({"execute": command, "arguments": arguments});
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let line = read_line(&mut reader)?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
    match answer.get("return") {
        Some(value) => Ok(value.clone()),
        None => Err(format!("{command}: {answer}")),
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the agent closed the connection".into());
    }
    // The agent may send a 0xFF sync byte before an answer.
    Ok(String::from_utf8_lossy(&line)
        .trim_start_matches('\u{fffd}')
        .trim()
        .to_owned())
}

fn guest_exec(agent: &Path, script: &str) -> Output {
    let started = request(
        agent,
        "guest-exec",
        json!({"path": "/bin/sh", "arg": ["-c", script], "capture-output": true}),
        Duration::from_secs(600),
    );
    let pid = started["pid"].as_i64().expect("guest-exec returns a pid");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = request(
            agent,
            "guest-exec-status",
            json!({"pid": pid}),
            Duration::from_secs(60),
        );
        if status["exited"] == json!(true) {
            let decode = |key: &str| {
                status[key]
                    .as_str()
                    .map(|b| {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .unwrap_or_default();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .unwrap_or_default()
            };
            return Output {
                code: status["exitcode"].as_i64().unwrap_or(-1),
                stdout: decode("out-data"),
                stderr: decode("err-data"),
            };
        }
        assert!(
            Instant::now() < deadline,
            "`{script}` did not finish in the VM within 300 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
