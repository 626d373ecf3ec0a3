//! runc: `runc run` of a bundle whose root is read-only binds (`/usr` and the merged-/usr
//! symlinks), with runc's own default spec otherwise (pid, net, ipc, uts and mount
//! namespaces, masked /proc paths, the device cgroup, three capabilities). One bundle per
//! program, since the command is part of `config.json`; a fresh container id per run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::{PeerError, Program, Sandbox};
use crate::isolation::Expect;

const NAME: &str = "runc";
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib64"];

pub struct Runc {
    dir: PathBuf,
    /// runc's default `config.json`, from `runc spec`.
    base_spec: Value,
    bundles: Mutex<BTreeMap<Program, PathBuf>>,
    next_id: AtomicU64,
}

fn prepare_error(reason: impl Into<String>) -> PeerError {
    PeerError::Prepare {
        peer: NAME,
        reason: reason.into(),
    }
}

impl Runc {
    /// Builds the shared root and reads runc's default spec, in `dir`.
    pub fn prepare(dir: &Path) -> Result<Runc, PeerError> {
        let rootfs = dir.join("rootfs");
        for d in ["usr", "proc", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))
                .map_err(|e| prepare_error(format!("create rootfs/{d}: {e}")))?;
        }
        for l in USR_LINKS {
            std::os::unix::fs::symlink(format!("usr/{l}"), rootfs.join(l))
                .map_err(|e| prepare_error(format!("symlink rootfs/{l}: {e}")))?;
        }
        let spec_dir = dir.join("spec");
        std::fs::create_dir_all(&spec_dir).map_err(|e| prepare_error(e.to_string()))?;
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&spec_dir)
            .output()
            .map_err(|e| prepare_error(format!("runc spec: {e}")))?;
        if !out.status.success() {
            return Err(prepare_error(format!(
                "runc spec: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = std::fs::read_to_string(spec_dir.join("config.json"))
            .map_err(|e| prepare_error(format!("read runc's default spec: {e}")))?;
        let base_spec =
            serde_json::from_str(&text).map_err(|e| prepare_error(format!("runc spec: {e}")))?;
        Ok(Runc {
            dir: dir.to_owned(),
            base_spec,
            bundles: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn state_root(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Container ids start with this, so leftovers can be found by name.
    pub fn id_prefix() -> String {
        format!("jbench-{}-", std::process::id())
    }

    fn bundle(&self, program: Program) -> Result<PathBuf, PeerError> {
        let mut bundles = self
            .bundles
            .lock()
            .map_err(|_| prepare_error("bundle table poisoned"))?;
        if let Some(b) = bundles.get(&program) {
            return Ok(b.clone());
        }
        let bundle = self.dir.join(format!("bundle-{}", program.key()));
        std::fs::create_dir_all(&bundle).map_err(|e| prepare_error(e.to_string()))?;
        let spec = bundle_spec(&self.base_spec, &self.dir.join("rootfs"), program);
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| prepare_error(e.to_string()))?;
        std::fs::write(bundle.join("config.json"), text)
            .map_err(|e| prepare_error(format!("write config.json: {e}")))?;
        bundles.insert(program, bundle.clone());
        Ok(bundle)
    }

    /// Containers, state and cgroups of ours that runc left behind.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.state_root()) {
            for e in rd.flatten() {
                found.push(format!("runc container state {}", e.path().display()));
            }
        }
        let prefix = Runc::id_prefix();
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let Ok(rd) = std::fs::read_dir(h.path()) else {
                    continue;
                };
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        found.push(format!("runc cgroup {}", e.path().display()));
                    }
                }
            }
        }
        found
    }
}

/// runc's default spec, made to run `program` in `rootfs` with `/usr` bound read-only.
fn bundle_spec(base: &Value, rootfs: &Path, program: Program) -> Value {
    let mut spec = base.clone();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(program.argv());
    spec["root"] = json!({ "path": rootfs, "readonly": true });
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        mounts.push(json!({
            "destination": "/usr", "type": "bind", "source": "/usr",
            "options": ["rbind", "ro", "nosuid", "nodev"]
        }));
        mounts.push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"]
        }));
    }
    spec
}

impl Sandbox for Runc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn command(&self, program: Program) -> Result<Command, PeerError> {
        let bundle = self.bundle(program)?;
        let id = format!(
            "{}{}",
            Runc::id_prefix(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = Command::new("runc");
        cmd.arg("--root")
            .arg(self.state_root())
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id);
        Ok(cmd)
    }

    fn expect(&self) -> Expect {
        Expect {
            pid_one: true,
            non_root: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{installed, probe, time_run};

    #[test]
    fn the_bundle_runs_the_program_read_only() {
        let base = json!({"process": {"terminal": true, "args": ["sh"]},
                          "root": {"path": "rootfs"}, "mounts": []});
        let spec = bundle_spec(&base, Path::new("/x/rootfs"), Program::True);
        assert_eq!(spec["process"]["args"], json!(["/bin/true"]));
        assert_eq!(spec["process"]["terminal"], json!(false));
        assert_eq!(spec["root"], json!({"path": "/x/rootfs", "readonly": true}));
        assert_eq!(spec["mounts"][0]["destination"], "/usr");
        assert!(
            spec["mounts"][0]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
    }

    #[test]
    fn runc_runs_isolated_and_cleans_up_when_installed() {
        if !nix::unistd::geteuid().is_root() || !installed("runc") {
            eprintln!("SKIPPED: needs root and runc (apt-get install runc)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let runc = Runc::prepare(dir.path()).unwrap();
        time_run(&runc, Program::True).unwrap();
        assert_eq!(probe(&runc).unwrap().pid, 1);
        assert_eq!(runc.leftovers(), Vec::<String>::new());
    }
}
