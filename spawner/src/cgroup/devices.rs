//! Block devices behind a job's storage (for io limits), and the v1 device allow-list.

use std::{os::unix::fs::MetadataExt, path::Path};

use super::device_bpf::{self, ACC_MKNOD, ACC_READ, ACC_WRITE, DeviceKind};
use super::{error::CgroupError, files};

/// v1: puts the job device policy on our base in the devices hierarchy, before any job cgroup
/// is made under it: the kernel creates each child with a copy of its parent's list, so every
/// job's starts with exactly this one (jobs cannot write theirs). Left alone when already in
/// force (a restart): the kernel refuses to reset (`a`) the list of a cgroup with children.
pub(super) fn restrict_v1(base: &Path) -> Result<(), CgroupError> {
    // The kernel lists the rules in the order they were added, as we add them.
    let in_force = files::read(&base.join("devices.list"))?;
    if !in_force.lines().eq(v1_allow_list()) {
        files::write(&base.join("devices.deny"), "a")?;
        for rule in v1_allow_list() {
            files::write(&base.join("devices.allow"), &rule)?;
        }
    }
    Ok(())
}

/// The v1 devices-controller rules for the job's devices: the same table as the v2 device
/// program ([`device_bpf::ALLOWED`]), so both drivers allow exactly the nodes of the job's `/dev`.
pub(super) fn v1_allow_list() -> impl Iterator<Item = String> {
    device_bpf::ALLOWED.iter().map(|d| {
        let kind = match d.kind {
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
        };
        let minor = d.minor.map_or("*".to_owned(), |m| m.to_string());
        let acc = [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')];
        let granted = acc.iter().filter(|(b, _)| d.access & b != 0);
        let access: String = granted.map(|(_, c)| *c).collect();
        format!("{kind} {}:{minor} {access}", d.major)
    })
}

const SYS: &str = "/sys";

/// Whole-disk devices backing the filesystems of `paths`, without duplicates. Paths that do
/// not exist, or live on filesystems without a block device (tmpfs, overlay, proc, network
/// and other anonymous-device filesystems), contribute nothing.
pub(super) fn backing(paths: &[&Path]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::metadata(path) else {
            tracing::debug!(path = %path.display(), "no such path, no backing device");
            continue;
        };
        let dev = meta.dev();
        let major = u32::try_from(nix::sys::stat::major(dev)).unwrap_or(0);
        let minor = u32::try_from(nix::sys::stat::minor(dev)).unwrap_or(0);
        if major == 0 {
            continue;
        }
        if let Some(disk) = whole_disk(Path::new(SYS), major, minor)
            && !out.contains(&disk)
        {
            out.push(disk);
        }
    }
    out
}

/// The whole disk holding block device `major:minor`: the parent disk of a partition, the
/// device itself otherwise (disks, device-mapper, loop). `None` when sysfs does not know it
/// as a block device.
pub(super) fn whole_disk(sys: &Path, major: u32, minor: u32) -> Option<(u32, u32)> {
    let link = sys.join(format!("dev/block/{major}:{minor}"));
    let dir = std::fs::canonicalize(&link).ok()?;
    if !dir.join("partition").exists() {
        return Some((major, minor));
    }
    let parent = dir.parent()?;
    let text = std::fs::read_to_string(parent.join("dev")).ok()?;
    parse_dev(&text)
}

fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (ma, mi) = text.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_v1_list_is_the_device_table() {
        let rules: Vec<String> = v1_allow_list().collect();
        assert_eq!(rules.first().map(String::as_str), Some("c 1:3 rwm"));
        assert!(rules.contains(&"c 136:* rwm".to_owned()), "{rules:?}");
        assert_eq!(rules.len(), device_bpf::ALLOWED.len());
    }

    #[test]
    fn parses_dev_files() {
        assert_eq!(parse_dev("8:0\n"), Some((8, 0)));
        assert_eq!(parse_dev("8"), None);
    }

    /// A fake sysfs in a temporary directory, shaped as the kernel lays out a disk with one
    /// partition and a device-mapper device.
    #[test]
    fn maps_partitions_to_their_disk_in_a_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("cgroup-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let disk = root.join("devices/pci0/block/sda");
        std::fs::create_dir_all(disk.join("sda1")).unwrap();
        std::fs::write(disk.join("dev"), "8:0\n").unwrap();
        std::fs::write(disk.join("sda1/dev"), "8:1\n").unwrap();
        std::fs::write(disk.join("sda1/partition"), "1\n").unwrap();
        let dm = root.join("devices/virtual/block/dm-0");
        std::fs::create_dir_all(&dm).unwrap();
        std::fs::write(dm.join("dev"), "253:0\n").unwrap();
        std::fs::create_dir_all(root.join("dev/block")).unwrap();
        symlink(disk.join("sda1"), root.join("dev/block/8:1")).unwrap();
        symlink(&disk, root.join("dev/block/8:0")).unwrap();
        symlink(&dm, root.join("dev/block/253:0")).unwrap();

        assert_eq!(whole_disk(&root, 8, 1), Some((8, 0)));
        assert_eq!(whole_disk(&root, 8, 0), Some((8, 0)));
        assert_eq!(whole_disk(&root, 253, 0), Some((253, 0)));
        assert_eq!(whole_disk(&root, 9, 9), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
