//! What every escape case shares: running a hostile job, and the host state every case
//! checks after its attack (the daemons are the same processes and still answer).

use std::time::Duration;

use joblet_tests::{System, host};
use serde_json::Value;

/// `supervisor.jobUser.uid` in the configuration `joblet init` writes.
pub const JOB_UID: u32 = 65534;

/// How long a hostile job may take; generous for the emulated cgroup v2 guest.
pub const WAIT: Duration = Duration::from_secs(240);

/// Runs a job to its end; returns its status and whole output.
pub fn run(sys: &System, flags: &[&str], argv: &[String]) -> (Value, String) {
    let job = sys.start_job(flags, argv);
    let st = sys.wait_done(&job, WAIT);
    (st, String::from_utf8_lossy(&sys.logs(&job)).into_owned())
}

/// Runs a probe job, which reports each refused attempt and then ends normally; returns
/// its output. A probe that crashed half-way fails here, not as a silent pass.
pub fn probe(sys: &System, argv: &[String]) -> String {
    let (st, out) = run(sys, &[], argv);
    assert_eq!(
        st["status"],
        "COMPLETED",
        "the probe job did not run to its end: {st}\n{out}\n{}",
        sys.log_text()
    );
    out
}

/// The supervisor and its helpers, by pid, before an attack.
pub struct Daemons {
    pids: Vec<(&'static str, i32)>,
}

const HELPERS: [&str; 4] = [
    "joblet-spawner",
    "joblet-api",
    "joblet-persistd",
    "joblet-stated",
];

impl Daemons {
    pub fn snap(sys: &System) -> Daemons {
        let mut pids = vec![("joblet", sys.supervisor_pid())];
        for name in HELPERS {
            let pid = sys
                .helper_pid(name)
                .unwrap_or_else(|| panic!("{name} not running:\n{}", sys.log_text()));
            pids.push((name, pid));
        }
        Daemons { pids }
    }

    pub fn pid(&self, name: &str) -> i32 {
        self.pids
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no daemon {name}"))
    }

    /// Every daemon is the same process as before (none died or was restarted) and the
    /// system still answers.
    pub fn assert_intact(&self, sys: &System) {
        for (name, pid) in &self.pids {
            assert_eq!(
                host::exe_name(*pid).as_deref(),
                Some(*name),
                "{name} (pid {pid}) is gone after the attack:\n{}",
                sys.log_text()
            );
        }
        for name in HELPERS {
            assert_eq!(
                sys.helper_pid(name),
                Some(self.pid(name)),
                "{name} was restarted during the attack:\n{}",
                sys.log_text()
            );
        }
        let list = sys.rnx(&["job", "list"]);
        assert!(list.ok(), "the system stopped answering: {}", list.stderr);
    }
}

/// How many jobs the system knows.
pub fn job_count(sys: &System) -> usize {
    sys.rnx(&["--json", "job", "list"])
        .expect_ok("job list")
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

/// Panics unless the job's verdict for `tag` is one of `refusals` (errno names such as
/// `EACCES`, or words such as `DENIED`); `OK` is never a refusal.
pub fn assert_refused(out: &str, tag: &str, refusals: &[&str]) {
    let got = joblet_tests::hostile::line_value(out, tag)
        .unwrap_or_else(|| panic!("the job did not report {tag}; its output:\n{out}"));
    assert!(
        got != "OK" && refusals.contains(&got),
        "{tag}={got}, expected one of {refusals:?}; the job's output:\n{out}"
    );
}
