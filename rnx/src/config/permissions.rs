//! The config file holds a private key: say so when others can read it.

use std::path::Path;

/// A warning for the user when `path` is open to group or others, else `None`.
#[cfg(unix)]
pub fn exposure_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;

    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    mode_warning(path, mode)
}

/// Windows ACLs have no cheap equivalent of the Unix mode bits; nothing to check here.
#[cfg(not(unix))]
pub fn exposure_warning(_path: &Path) -> Option<String> {
    None
}

#[cfg_attr(not(unix), allow(dead_code))]
fn mode_warning(path: &Path, mode: u32) -> Option<String> {
    if mode & 0o077 == 0 {
        return None;
    }
    Some(format!(
        "warning: {} is accessible by group/others (mode {:04o}) but holds a private key; \
         restrict it with: chmod 600 {}",
        path.display(),
        mode & 0o7777,
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_modes_give_no_warning() {
        assert_eq!(mode_warning(Path::new("c.yml"), 0o100600), None);
        assert_eq!(mode_warning(Path::new("c.yml"), 0o100400), None);
    }

    #[test]
    fn group_or_world_access_is_warned_with_the_fix() {
        for mode in [0o100644, 0o100640, 0o100604, 0o100660] {
            let w = mode_warning(Path::new("c.yml"), mode).unwrap();
            assert!(w.contains("chmod 600 c.yml"), "{w}");
            assert!(w.contains(&format!("{:04o}", mode & 0o7777)), "{w}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn real_file_modes_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rnx-config.yml");
        std::fs::write(&path, "nodes: {}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(exposure_warning(&path).is_some());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(exposure_warning(&path).is_none());
    }
}
