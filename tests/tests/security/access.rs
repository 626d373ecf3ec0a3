//! Clients without the right: a viewer trying to run, stop and delete; a certificate from
//! another CA; an unknown role from our own CA.

use std::time::Duration;

use joblet_tests::clients::{foreign_ca_client, our_ca_client};
use joblet_tests::{System, cgroupfs, host, require_root};

use joblet_tests::hostile::sh_job;

use super::common::{WAIT, job_count};

/// Case: a viewer certificate tries to run, stop, cancel and delete: every call is denied,
/// and the admin's running job is untouched.
#[test]
fn a_viewer_cannot_run_stop_or_delete() {
    require_root!();
    let sys = System::start();
    let job = sys.start_job(&[], &sh_job("sleep 600"));
    let jobs = job_count(&sys);
    let procs: Vec<host::Proc> = cgroupfs::procs(&sys, &job)
        .into_iter()
        .filter_map(|pid| host::descendants(pid).into_iter().next())
        .collect();
    assert!(!procs.is_empty(), "the job has no process");
    for args in [
        vec!["job", "run", "true"],
        vec!["job", "stop", &job.id],
        vec!["job", "cancel", &job.id],
        vec!["job", "delete", &job.id],
    ] {
        let out = sys.rnx_with(&sys.viewer, &args);
        assert_eq!(
            out.code, 4,
            "viewer {args:?} was not denied: {}",
            out.stderr
        );
        assert!(
            out.stderr.to_lowercase().contains("permission denied"),
            "viewer {args:?}: {}",
            out.stderr
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sys.status(&job)["status"],
        "RUNNING",
        "the viewer's stop took effect"
    );
    assert_eq!(job_count(&sys), jobs, "the viewer made or deleted a job");
    for p in procs {
        assert!(
            host::alive(p),
            "job process {} died after the viewer's calls",
            p.pid
        );
    }
    sys.rnx(&["job", "stop", &job.id]).expect_ok("admin stop");
    sys.wait_done(&job, WAIT);
    sys.stop();
}

/// Case: a client certificate from another CA (claiming the admin role) is refused at the
/// TLS layer, makes no job, and is audited; our CA with an unknown role gets nothing.
#[test]
fn certificates_from_another_ca_or_with_an_unknown_role_get_nothing() {
    require_root!();
    let sys = System::start();
    let jobs = job_count(&sys);
    let foreign = foreign_ca_client(&sys, "admin", "intruder");
    let out = sys.rnx_with(&foreign, &["job", "run", "true"]);
    assert_eq!(
        out.code, 6,
        "a foreign CA's admin must fail TLS: {}",
        out.stderr
    );
    let out = sys.rnx_with(&foreign, &["job", "list"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let stranger = our_ca_client(&sys, "root", "stranger");
    let out = sys.rnx_with(&stranger, &["job", "run", "true"]);
    assert_eq!(
        out.code, 4,
        "an unknown role must be denied: {}",
        out.stderr
    );
    assert_eq!(job_count(&sys), jobs, "a refused client made a job");
    let cfg = std::fs::read_to_string(&sys.config).expect("config");
    let audit_path = host::yaml_string(&cfg, &["audit", "path"]).expect("audit.path");
    let audit = std::fs::read_to_string(audit_path).expect("audit log");
    assert!(
        audit.to_lowercase().contains("auth_failed"),
        "the foreign certificate is not audited:\n{audit}"
    );
    sys.stop();
}
