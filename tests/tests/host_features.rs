//! A boundary the configuration asks for and the host lacks stops the system at its start,
//! naming the missing feature (issue 3), instead of running jobs without it or restarting a
//! helper forever; nothing of ours is left behind. One case turns user namespaces off
//! host-wide for a few seconds, so this is a test executable of its own (cargo runs test
//! executables one after another).

#![forbid(unsafe_code)]

use std::time::Duration;

use joblet_tests::{System, require_root};

const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
const REFUSAL_WAIT: Duration = Duration::from_secs(120);

/// A sysctl set for the life of the value, put back when dropped, also when the test fails.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    /// `None` when this host does not let even root change it (the CI and development VMs
    /// forbid writes to `user.*` sysctls; the cgroup v2 guest, a kernel of its own, allows
    /// them, and `scripts/test-v2.sh` runs this case there).
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = std::fs::read_to_string(path).expect("read the sysctl");
        match std::fs::write(path, value) {
            Ok(()) => Some(Sysctl { path, old }),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
            Err(e) => panic!("write {path}: {e}"),
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        std::fs::write(self.path, self.old.trim()).expect("restore the sysctl");
    }
}

/// The spawner's own check: jobs get user namespaces by default, and a kernel that allows
/// none makes the spawner refuse (exit status 78) and the supervisor stop with an error.
#[test]
fn disabled_user_namespaces_stop_the_system_naming_them() {
    require_root!();
    let refused = {
        let Some(_off) = Sysctl::set(MAX_USER_NAMESPACES, "0") else {
            eprintln!(
                "SKIPPED: this kernel refuses writes to {MAX_USER_NAMESPACES} (see Sysctl::set)"
            );
            return;
        };
        System::run_refused(|_| {}, REFUSAL_WAIT)
    };
    let (status, log) = refused;
    assert!(
        !status.success(),
        "joblet ran on without user namespaces:\n{log}"
    );
    assert!(
        log.contains("max_user_namespaces is 0"),
        "the log does not name the missing feature:\n{log}"
    );
    assert!(
        log.contains("refuses to run on this host"),
        "joblet did not say why it stopped:\n{log}"
    );
    // The same configuration runs once the feature is back.
    let sys = System::start();
    let (st, out) = sys.run_to_end(&["sh", "-c", "echo back"]);
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}");
    sys.stop();
}

/// The supervisor's own check: a cgroup controller the configuration enables and the host
/// has not (on cgroup v1: not mounted; on v2: not in `cgroup.controllers`).
#[test]
fn a_missing_cgroup_controller_stops_the_system_naming_it() {
    require_root!();
    let Some(missing) = absent_controller() else {
        eprintln!("SKIPPED: this host has every controller joblet knows");
        return;
    };
    let enable =
        format!(r#"enableControllers: ["memory", "cpu", "io", "pids", "cpuset", "{missing}"]"#);
    let (status, log) = System::run_refused(
        |cfg| {
            let line = cfg
                .lines()
                .find(|l| l.trim_start().starts_with("enableControllers:"))
                .expect("enableControllers in the generated config")
                .to_owned();
            let indent = &line[..line.len() - line.trim_start().len()];
            *cfg = cfg.replace(&line, &format!("{indent}{enable}"));
        },
        REFUSAL_WAIT,
    );
    assert!(!status.success(), "joblet ran without {missing}:\n{log}");
    assert!(
        log.contains(&format!("\"{missing}\"")),
        "the refusal does not name {missing}:\n{log}"
    );
}

/// A controller joblet accepts in `cgroup.enableControllers` that this host lacks.
fn absent_controller() -> Option<&'static str> {
    let candidates = ["hugetlb", "rdma", "misc"];
    if let Ok(v2) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        let have: Vec<&str> = v2.split_whitespace().collect();
        return candidates.into_iter().find(|c| !have.contains(c));
    }
    let table = std::fs::read_to_string("/proc/cgroups").expect("read /proc/cgroups");
    let mounted = |name: &str| {
        table.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&name) && f.get(1).is_some_and(|h| *h != "0")
        })
    };
    candidates.into_iter().find(|c| !mounted(c))
}
