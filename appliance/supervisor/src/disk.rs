//! The `disk-usage` task: measures the data directory for the dashboard. It runs as
//! root so it can read PostgreSQL's files, which the service user cannot.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cv_control::DiskUsage;

use crate::board::Component;
use crate::{Context, Stop, TaskResult};

/// Walking a large data directory costs I/O; once a minute is plenty for a dashboard.
const INTERVAL: Duration = Duration::from_secs(60);

pub async fn measure(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    // The first measurement waits (a little) for PostgreSQL, so that a fresh cluster's
    // files are counted rather than an empty directory for the first minute.
    for _ in 0..30 {
        if ctx.board.state(Component::Postgres).is_up() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.requested() => return Ok(()),
        }
    }
    loop {
        let root = ctx.layout.root().to_owned();
        match tokio::task::spawn_blocking(move || usage(&root)).await {
            Ok(Ok(disk)) => ctx.board.set_disk(disk),
            Ok(Err(e)) => tracing::warn!(error = %e, "measuring disk usage failed"),
            Err(e) => tracing::warn!(error = %e, "disk usage task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.requested() => return Ok(()),
        }
    }
}

/// Bytes allocated under `root` (like `du`: blocks, hard links once) and the
/// filesystem's size and free space.
pub fn usage(root: &Path) -> std::io::Result<DiskUsage> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            // st_blocks counts 512-byte units whatever the filesystem's block size
            // (stat(2)).
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    let vfs = nix::sys::statvfs::statvfs(root).map_err(std::io::Error::from)?;
    let frag = vfs.fragment_size();
    Ok(DiskUsage {
        data_dir_bytes: total,
        filesystem_bytes: vfs.blocks() * frag,
        available_bytes: vfs.blocks_available() * frag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b"), vec![1u8; 50_000]).unwrap();
        let usage = usage(dir.path()).unwrap();
        assert!(usage.data_dir_bytes >= 150_000, "{usage:?}");
        assert!(usage.filesystem_bytes >= usage.available_bytes);
    }
}
