//! A small ext4 filesystem on a loop device, mounted on the host, for io-limit tests: the
//! device is real (the kernel throttles it), and everything is detached at the end.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopMount {
    /// Where the filesystem is mounted (add it to `filesystem.allowedMounts`).
    pub dir: PathBuf,
    /// `/dev/loopN`.
    pub device: String,
    /// `MAJ:MIN` of the device, as cgroup io files name it.
    pub dev_numbers: String,
    image_dir: tempfile::TempDir,
    mounted: bool,
    attached: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A fresh directory outside `/tmp`: the spawner refuses allowed mounts under `/tmp` (the
/// job's own `/tmp` is there). `/var/tmp` on a normal host, `/run` where `/` is read-only
/// (the cgroup v2 guest).
fn outside_tmp_dir() -> tempfile::TempDir {
    for base in ["/var/tmp", "/run"] {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("joblet-e2e-loop-")
            .tempdir_in(base)
        {
            crate::host::chmod(dir.path(), 0o755);
            return dir;
        }
    }
    panic!("neither /var/tmp nor /run is writable for the loop device's mount point");
}

impl LoopMount {
    /// An image of `size_mib` MiB, attached, formatted ext4 and mounted (mode 0755).
    pub fn create(size_mib: u32) -> LoopMount {
        let image_dir = outside_tmp_dir();
        let image = image_dir.path().join("disk.img");
        let dir = image_dir.path().join("mnt");
        std::fs::create_dir(&dir).expect("mount point");
        let image_s = image.to_string_lossy().into_owned();
        run("truncate", &["-s", &format!("{size_mib}M"), &image_s]).expect("image");
        let device = run("losetup", &["--find", "--show", &image_s]).expect("attach a loop device");
        let mut lm = LoopMount {
            dir,
            device,
            dev_numbers: String::new(),
            image_dir,
            mounted: false,
            attached: true,
        };
        run("mkfs.ext4", &["-q", "-F", &lm.device]).expect("mkfs.ext4");
        let dir_s = lm.dir.to_string_lossy().into_owned();
        run("mount", &[&lm.device, &dir_s]).expect("mount the loop device");
        lm.mounted = true;
        crate::host::chmod(&lm.dir, 0o755);
        let rdev = std::fs::metadata(&lm.device)
            .expect("stat the loop device")
            .rdev();
        lm.dev_numbers = format!(
            "{}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        );
        lm
    }

    /// Writes `mib` MiB of random bytes to `name` (synced, readable by anyone).
    pub fn write_file(&self, name: &str, mib: u32) -> PathBuf {
        let path = self.dir.join(name);
        run(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", path.display()),
                "bs=1M",
                &format!("count={mib}"),
                "conv=fsync",
                "status=none",
            ],
        )
        .expect("write the test file");
        crate::host::chmod(&path, 0o644);
        path
    }

    /// Unmounts and detaches; returns what could not be undone.
    pub fn teardown(mut self) -> Vec<String> {
        self.undo()
    }

    fn undo(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.mounted {
            let dir = self.dir.to_string_lossy().into_owned();
            if let Err(e) = run("umount", &[&dir]) {
                errors.push(e);
                let _ = run("umount", &["-l", &dir]);
            }
            self.mounted = false;
        }
        if self.attached {
            if let Err(e) = run("losetup", &["-d", &self.device]) {
                errors.push(e);
            }
            self.attached = false;
        }
        let image = self.image_dir.path().join("disk.img");
        if let Ok(list) = run("losetup", &["-j", &image.to_string_lossy()])
            && !list.is_empty()
        {
            errors.push(format!("still attached: {list}"));
        }
        errors
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}
