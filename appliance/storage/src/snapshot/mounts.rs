//! Which mount a path is on, from `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// One line of mountinfo, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The "mount source": a device, or a ZFS dataset's name.
    pub source: String,
}

/// The mount `path` (absolute, canonical) is on: the longest mount point above it, the
/// last one mounted winning.
pub fn containing(path: &Path) -> std::io::Result<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    containing_in(&text, path).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no mount holds this path")
    })
}

fn containing_in(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(mount) = parse_line(line) else {
            continue;
        };
        if !path.starts_with(&mount.mount_point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| mount.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(mount);
        }
    }
    best
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = unescape(left.split(' ').nth(4)?);
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let source = unescape(right.next()?);
    Some(Mount {
        mount_point: PathBuf::from(mount_point),
        fstype,
        source,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:45 / /var/lib/contextvault rw,noatime shared:20 - btrfs /dev/sda4 rw,space_cache=v2
41 22 0:46 / /tmp/my\\040pool rw shared:21 - fuse.zfs tank/vault rw,user_id=0
";

    #[test]
    fn the_longest_mount_point_wins() {
        let m = containing_in(SAMPLE, Path::new("/var/lib/contextvault/postgres")).unwrap();
        assert_eq!(m.fstype, "btrfs");
        assert_eq!(m.mount_point, Path::new("/var/lib/contextvault"));
        let m = containing_in(SAMPLE, Path::new("/var/lib/contextvaultx")).unwrap();
        assert_eq!(m.fstype, "ext4");
        let m = containing_in(SAMPLE, Path::new("/tmp/my pool")).unwrap();
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("fuse.zfs", "tank/vault")
        );
    }
}
