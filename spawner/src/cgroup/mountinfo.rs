//! Where the cgroup hierarchies are and where we are in them: `/proc/self/mountinfo` and
//! `/proc/self/cgroup`, parsed into plain values (the parsers are pure, for unit tests).

use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::files;

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The directory of the filesystem that is mounted (for cgroups: the cgroup shown at the
    /// mount point, `/` unless a sub-cgroup was bind-mounted or a cgroup namespace is in use).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// One line of `/proc/self/cgroup`: a hierarchy's controllers (empty for v2 and for named
/// hierarchies) and our path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Membership {
    pub hierarchy_id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

pub(super) const MOUNTINFO: &str = "/proc/self/mountinfo";
pub(super) const SELF_CGROUP: &str = "/proc/self/cgroup";

pub(crate) fn read_mounts() -> Result<Vec<Mount>, CgroupError> {
    Ok(parse_mountinfo(&files::read(Path::new(MOUNTINFO))?))
}

pub(super) fn read_memberships() -> Result<Vec<Membership>, CgroupError> {
    Ok(parse_proc_cgroup(&files::read(Path::new(SELF_CGROUP))?))
}

/// Parses mountinfo; lines that do not have the documented shape are skipped (the kernel
/// writes this file, but a line we cannot read is no reason to refuse the others).
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let root = l.nth(3)?;
    let mount_point = l.next()?;
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let _source = r.next()?;
    let super_options = r.next().unwrap_or("");
    Some(Mount {
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype: fstype.to_owned(),
        super_options: super_options.split(',').map(str::to_owned).collect(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy_id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let ours = controllers
                .split(',')
                .filter(|c| !c.is_empty() && !c.starts_with("name="));
            let controllers = ours.map(str::to_owned).collect();
            Some(Membership {
                hierarchy_id,
                controllers,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The controllers a v1 mount carries (its super options minus flags such as `rw`,
/// `name=systemd` or `clone_children`), restricted to the ones we know.
pub(super) fn v1_controllers(m: &Mount, known: &[&'static str]) -> Vec<&'static str> {
    let mounted = |k: &&str| m.super_options.iter().any(|o| o == k);
    known.iter().copied().filter(mounted).collect()
}

/// The directory of the cgroup at `own` (a path from `/proc/self/cgroup`) in the hierarchy
/// mounted as `m`; `None` when our cgroup is not visible under that mount.
pub(super) fn own_dir(m: &Mount, own: &str) -> Option<PathBuf> {
    let own = Path::new(own);
    let rel = own.strip_prefix(&m.root).ok()?;
    let plain = |c: std::path::Component| matches!(c, std::path::Component::Normal(_));
    rel.components().all(plain).then(|| m.mount_point.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/vdb rw
garbage line
";

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let m = parse_mountinfo(HOST);
        assert_eq!(m.len(), 6);
        assert_eq!(m[1].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(
            v1_controllers(&m[1], &["cpu", "cpuacct", "memory"]),
            ["cpu", "cpuacct"]
        );
        assert_eq!(m[2].fstype, "cgroup", "optional field shared:7 skipped");
        assert!(v1_controllers(&m[3], &["cpu", "memory"]).is_empty());
        assert_eq!(m[4].fstype, "cgroup2");
        assert_eq!(m[5].mount_point, Path::new("/mnt/with space"));
    }

    #[test]
    fn unescapes_only_valid_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("a\\9zz"), "a\\9zz");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let c = parse_proc_cgroup("9:name=systemd:/\n2:cpu,cpuacct:/a/b\n0::/x:y\n");
        assert_eq!(c.len(), 3);
        assert!(c[0].controllers.is_empty());
        assert_eq!(c[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(c[1].path, "/a/b");
        assert_eq!(c[2].hierarchy_id, 0);
        assert_eq!(c[2].path, "/x:y", "colons in paths are kept");
    }

    #[test]
    fn own_dir_follows_the_mount_root() {
        let m = Mount {
            root: "/".into(),
            mount_point: "/sys/fs/cgroup/memory".into(),
            fstype: "cgroup".into(),
            super_options: vec!["memory".into()],
        };
        assert_eq!(
            own_dir(&m, "/process_api/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            own_dir(&m, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        let sub = Mount {
            root: "/machine/ct1".into(),
            ..m.clone()
        };
        assert_eq!(
            own_dir(&sub, "/machine/ct1/inner"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/inner"))
        );
        assert_eq!(own_dir(&sub, "/elsewhere"), None);
        assert_eq!(own_dir(&m, "/a/../b"), None);
    }
}
