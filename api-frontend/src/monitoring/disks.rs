//! Disks: the real block filesystems mounted on the host (`/proc/self/mountinfo`), with
//! their sizes and inodes from `statvfs`.

use std::collections::HashSet;
use std::path::Path;

use joblet_api_proto::DiskMetrics;

use super::memory::{percent, to_i64};

/// Filesystems that live on a block device (or, for zfs, on a pool of them).
const BLOCK_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat", "ntfs",
    "ntfs3", "hfsplus", "zfs", "bcachefs", "nilfs2", "ocfs2", "gfs2",
];

/// Read-only images (snap packages, ISOs): always 100 % full, never interesting.
const IMAGE_FILESYSTEMS: &[&str] = &["squashfs", "iso9660", "udf", "erofs", "cramfs"];

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem's device.
    pub dev: String,
    /// The directory of the filesystem mounted here (`/` unless a bind mount of a subtree).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    if left.len() < 6 {
        return None;
    }
    Some(Mount {
        dev: left[2].to_owned(),
        root: unescape(left[3]),
        mount_point: unescape(left[4]),
        fstype: right.next()?.to_owned(),
        source: unescape(right.next()?),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_real_block_filesystem(m: &Mount) -> bool {
    let fstype = m.fstype.as_str();
    if IMAGE_FILESYSTEMS.contains(&fstype) {
        return false;
    }
    // Loop devices hold images and per-job filesystems, not the host's disks.
    if m.source.starts_with("/dev/loop") {
        return false;
    }
    BLOCK_FILESYSTEMS.contains(&fstype)
        || (m.source.starts_with("/dev/") && fstype != "devtmpfs" && fstype != "tmpfs")
}

/// The host's disks: one entry per filesystem (bind mounts and repeated mounts of the same
/// device are folded into the mount of its root, or else its first mount), by mount point.
pub fn block_filesystems(mounts: &[Mount]) -> Vec<&Mount> {
    let real: Vec<&Mount> = mounts
        .iter()
        .filter(|m| is_real_block_filesystem(m))
        .collect();
    let mut chosen: Vec<&Mount> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    // Mounts of a filesystem's root first, so a bind mount of a subdirectory never hides it.
    for m in real
        .iter()
        .filter(|m| m.root == "/")
        .chain(real.iter().filter(|m| m.root != "/"))
    {
        if seen.insert(m.dev.as_str()) {
            chosen.push(m);
        }
    }
    chosen.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    chosen
}

/// Sizes of one filesystem, as `statvfs` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may use (what `df` reports as available).
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
}

/// `statvfs` of a mount point. Fails for mount points the frontend may not traverse.
pub fn usage(path: &Path) -> std::io::Result<FsUsage> {
    let v = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between architectures
    Ok(FsUsage {
        fragment_size: u64::from(v.fragment_size()),
        blocks: u64::from(v.blocks()),
        blocks_free: u64::from(v.blocks_free()),
        blocks_available: u64::from(v.blocks_available()),
        files: u64::from(v.files()),
        files_free: u64::from(v.files_free()),
    })
}

/// The public disk message, with `df`'s arithmetic: used + available is what users see as
/// the size, so a disk with its reserve in use reads 100 %.
pub fn metrics(m: &Mount, u: &FsUsage) -> DiskMetrics {
    let total = u.blocks.saturating_mul(u.fragment_size);
    let used = u
        .blocks
        .saturating_sub(u.blocks_free)
        .saturating_mul(u.fragment_size);
    let available = u.blocks_available.saturating_mul(u.fragment_size);
    let inodes_used = u.files.saturating_sub(u.files_free);
    DiskMetrics {
        device: m.source.clone(),
        mount_point: m.mount_point.clone(),
        filesystem: m.fstype.clone(),
        total_bytes: to_i64(total),
        used_bytes: to_i64(used),
        free_bytes: to_i64(available),
        usage_percent: percent(used, used.saturating_add(available)),
        inodes_total: to_i64(u.files),
        inodes_used: to_i64(inodes_used),
        inodes_free: to_i64(u.files_free),
        inodes_usage_percent: percent(inodes_used, u.files),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
28 27 254:0 /var/lib/docker/x /etc/hosts rw,relatime - ext4 /dev/vda rw
29 27 0:25 / /tmp rw - tmpfs tmpfs rw
30 27 7:0 / /snap/core/1 ro shared:5 - squashfs /dev/loop0 ro
31 27 7:1 / /opt/joblet/jobs/x rw - ext4 /dev/loop1 rw
32 27 8:1 / /mnt/my\\040data rw master:2 - xfs /dev/sdb1 rw
33 27 0:40 /@home /home rw - btrfs /dev/sdc2 rw
34 27 0:40 /@ /srv rw - btrfs /dev/sdc2 rw
35 27 0:41 / /tank rw - zfs tank/data rw
36 27 0:42 / /proc rw - proc proc rw
37 27 0:43 / /merged rw - overlay overlay rw,lowerdir=/a
38 27 8:2 / /boot/efi rw - vfat /dev/sda1 rw
garbage line
39 27 8:3 / /short rw -
";

    #[test]
    fn picks_the_real_block_filesystems_once_each() {
        let mounts = parse_mountinfo(TRICKY);
        let chosen: Vec<(&str, &str, &str)> = block_filesystems(&mounts)
            .iter()
            .map(|m| (m.mount_point.as_str(), m.fstype.as_str(), m.source.as_str()))
            .collect();
        assert_eq!(
            chosen,
            vec![
                ("/", "ext4", "/dev/vda"),
                ("/boot/efi", "vfat", "/dev/sda1"),
                // Two subvolumes of one btrfs: the first mount stands for the filesystem.
                ("/home", "btrfs", "/dev/sdc2"),
                ("/mnt/my data", "xfs", "/dev/sdb1"),
                ("/tank", "zfs", "tank/data"),
            ]
        );
    }

    #[test]
    fn parses_the_captured_mountinfo() {
        let mounts = parse_mountinfo(include_str!("testdata/mountinfo"));
        assert!(mounts.len() > 10);
        let disks = block_filesystems(&mounts);
        assert_eq!(disks.len(), 1, "{disks:?}");
        assert_eq!(disks[0].mount_point, "/");
        assert_eq!(disks[0].source, "/dev/vda");
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape("back\\134slash"), "back\\slash");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("not\\999"), "not\\999");
        assert_eq!(unescape("\\777"), "\\777");
    }

    #[test]
    fn sizes_follow_df() {
        let m = &parse_mountinfo(TRICKY)[0];
        let u = FsUsage {
            fragment_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_available: 200,
            files: 100,
            files_free: 75,
        };
        let d = metrics(m, &u);
        assert_eq!(d.total_bytes, 4096 * 1000);
        assert_eq!(d.used_bytes, 4096 * 700);
        assert_eq!(d.free_bytes, 4096 * 200);
        assert_eq!(d.usage_percent, 77.78);
        assert_eq!(
            (d.inodes_total, d.inodes_used, d.inodes_free),
            (100, 25, 75)
        );
        assert_eq!(d.inodes_usage_percent, 25.0);
        let empty = metrics(m, &FsUsage::default());
        assert_eq!(
            (empty.usage_percent, empty.inodes_usage_percent),
            (0.0, 0.0)
        );
    }

    #[test]
    fn statvfs_of_the_root_filesystem() {
        let u = usage(Path::new("/")).unwrap();
        assert!(u.blocks > 0 && u.fragment_size > 0);
        assert!(usage(Path::new("/nonexistent/path")).is_err());
    }
}
