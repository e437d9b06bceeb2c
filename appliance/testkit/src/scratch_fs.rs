//! File systems that can take snapshots, made for one test: btrfs on a loop device, and a
//! ZFS pool on a file through zfs-fuse (the kernel here loads no ZFS module; zfs-fuse
//! gives the real `zfs` and `zpool` commands). Each is destroyed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} cannot be run ({e}): run scripts/install-deps --test"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A btrfs file system on a loop device, mounted at [`BtrfsScratch::mount`].
#[derive(Debug)]
pub struct BtrfsScratch {
    _dir: tempfile::TempDir,
    pub mount: PathBuf,
}

impl BtrfsScratch {
    pub fn new(size_mib: u64) -> BtrfsScratch {
        let dir = crate::shared_tempdir();
        let image = dir.path().join("btrfs.img");
        let mount = dir.path().join("data");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mib * 1024 * 1024))
            .unwrap();
        std::fs::create_dir(&mount).unwrap();
        run("mkfs.btrfs", &["-q".as_ref(), image.as_os_str()]).unwrap();
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        )
        .unwrap();
        std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o755)).unwrap();
        BtrfsScratch { _dir: dir, mount }
    }
}

impl Drop for BtrfsScratch {
    fn drop(&mut self) {
        // Lazily: a process of a failed test may still hold a file there.
        let _ = run("umount", &["-l".as_ref(), self.mount.as_os_str()]);
    }
}

/// A ZFS pool on a file, its root dataset mounted at [`ZfsScratch::mount`].
#[derive(Debug)]
pub struct ZfsScratch {
    _dir: tempfile::TempDir,
    pub pool: String,
    pub mount: PathBuf,
}

impl ZfsScratch {
    pub fn new(size_mib: u64) -> ZfsScratch {
        ensure_zfs_daemon();
        let dir = crate::shared_tempdir();
        let file = dir.path().join("zpool.img");
        let mount = dir.path().join("data");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(size_mib.max(128) * 1024 * 1024))
            .unwrap();
        let pool = format!(
            "cvtest{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run(
            "zpool",
            &[
                "create".as_ref(),
                "-m".as_ref(),
                mount.as_os_str(),
                pool.as_ref(),
                file.as_os_str(),
            ],
        )
        .unwrap();
        std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o755)).unwrap();
        ZfsScratch {
            _dir: dir,
            pool,
            mount,
        }
    }
}

impl Drop for ZfsScratch {
    fn drop(&mut self) {
        for _ in 0..20 {
            if run(
                "zpool",
                &["destroy".as_ref(), "-f".as_ref(), self.pool.as_ref()],
            )
            .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Starts the zfs-fuse daemon unless one answers already.
pub fn ensure_zfs_daemon() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if answers() {
        return;
    }
    let started = Command::new("zfs-fuse")
        .args(["--pidfile", "/run/zfs-fuse.pid"])
        .status();
    match started {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("zfs-fuse exited with {s}"),
        Err(e) => panic!("zfs-fuse cannot be run ({e}): run scripts/install-deps --test"),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !answers() {
        assert!(
            Instant::now() < deadline,
            "zfs-fuse did not answer within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `path` is a mount point (for checks in tests).
pub fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(4) == Some(path.to_string_lossy().as_ref()))
    })
}
