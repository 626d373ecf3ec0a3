//! The settings behind job confinement and metrics, through the real `joblet` binary and the
//! test helper: what the spawner, persistd and the frontend receive, the Prometheus listener,
//! and the refusals that happen before anything starts (a job id span holding a helper's
//! uid, a required Landlock the kernel lacks).

mod common;

use std::time::Duration;

use common::{Instance, SOCKETS, replace_once, skip_unless_root};
use nix::sys::signal::Signal;

#[test]
fn configured_confinement_intervals_and_a_metrics_listener_reach_the_helpers() {
    if skip_unless_root() {
        return;
    }
    let mut inst = Instance::new(|t| {
        let t = replace_once(
            &t,
            "# bind_address: \"127.0.0.1:9090\"",
            "bind_address: \"127.0.0.1:0\"",
        );
        let t = replace_once(&t, "system_interval: \"10s\"", "system_interval: \"3s\"");
        let t = replace_once(
            &t,
            "job_metrics_interval: \"5s\"",
            "job_metrics_interval: \"250ms\"",
        );
        let t = replace_once(&t, "slots: 1024", "slots: 8");
        replace_once(&t, "landlock: \"best-effort\"", "landlock: \"off\"")
    });
    inst.start();
    let api = inst.wait_report("joblet-api", |_| true);
    // The Prometheus listener is the frontend's fd 5, after the gRPC one, listening on its own
    // free port.
    assert_eq!(api["fds"], "0,1,2,3,4,5");
    let grpc = &api["listen.4"];
    let metrics = &api["listen.5"];
    assert!(grpc.starts_with("tcp,Stream,true,127.0.0.1:"), "{grpc}");
    assert!(
        metrics.starts_with("metrics,Stream,true,127.0.0.1:"),
        "{metrics}"
    );
    let port = metrics.rsplit(':').next().unwrap();
    assert_ne!(port, grpc.rsplit(':').next().unwrap());
    std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    assert!(
        inst.log_text().contains("listening for Prometheus scrapes"),
        "{}",
        inst.log_text()
    );
    assert_eq!(api["system_interval_ms"], "3000");
    let persistd = inst.wait_report("joblet-persistd", |_| true);
    assert_eq!(persistd["metrics_interval_ms"], "250");
    assert_eq!(
        persistd["fds"], "0,1,2,3,4,5",
        "no metrics listener for persistd"
    );
    let spawner = inst.wait_report("joblet-spawner", |_| true);
    assert_eq!(spawner["userns"], "true,1879048192,65536,8");
    assert_eq!(spawner["landlock"], "Off");
    assert_eq!(spawner["fds"], "0,1,2,3,4");

    inst.signal(Signal::SIGTERM);
    assert!(inst.wait_exit(Duration::from_secs(30)).success());
    // The listener closed with the supervisor.
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn a_required_landlock_is_checked_against_the_kernel_at_start() {
    if skip_unless_root() {
        return;
    }
    use joblet_supervisor::host::landlock::{Availability, probe};
    let mut inst =
        Instance::new(|t| replace_once(&t, "landlock: \"best-effort\"", "landlock: \"required\""));
    match probe() {
        Availability::Abi(_) => {
            inst.start();
            let spawner = inst.wait_report("joblet-spawner", |_| true);
            assert_eq!(spawner["landlock"], "Required");
            inst.signal(Signal::SIGTERM);
            assert!(inst.wait_exit(Duration::from_secs(30)).success());
        }
        Availability::Missing(_) => {
            inst.spawn();
            assert!(!inst.wait_exit(Duration::from_secs(10)).success());
            let log = inst.log_text();
            assert!(log.contains("security.landlock is required"), "{log}");
            assert!(!inst.dir.join("run/spawner.sock").exists());
        }
    }
}

/// The config with `supervisor.users.api` set to `uid`.
fn with_api_uid(text: &str, uid: u32) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("    api: "))
        .expect("supervisor.users.api in the generated config");
    replace_once(text, &format!("\n{line}\n"), &format!("\n    api: {uid}\n"))
}

#[test]
fn a_job_id_span_holding_a_helper_uid_is_refused_before_anything_starts() {
    // Inside the default span: a job's root would be the frontend's user.
    let inst = Instance::new(|t| with_api_uid(&t, 1_879_048_200));
    let out = std::process::Command::new(common::JOBLET)
        .args(["check", "--config"])
        .arg(&inst.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("security.userNamespace: uid 1879048200 (supervisor.users.api)"),
        "{err}"
    );
    if skip_unless_root() {
        return;
    }
    let mut inst = inst;
    inst.spawn();
    assert!(!inst.wait_exit(Duration::from_secs(10)).success());
    let log = inst.log_text();
    assert!(log.contains("supervisor.users.api"), "{log}");
    for s in SOCKETS {
        assert!(!inst.dir.join("run").join(s).exists(), "{s} was created");
    }
    assert!(!inst.dir.join("data/report").exists(), "a helper started");

    // Moved out of the way, the same helper uid is fine.
    let moved = Instance::new(|t| {
        let t = with_api_uid(&t, 1_879_048_200);
        replace_once(&t, "hostBase: 1879048192", "hostBase: 1946157056")
    });
    let out = std::process::Command::new(common::JOBLET)
        .args(["check", "--config"])
        .arg(&moved.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
