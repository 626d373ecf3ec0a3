//! The two programs run for real: `joblet-bench` against the real system (built next to it by
//! `cargo build --workspace --bins`) with tiny iteration counts, and `joblet-surface` on this
//! workspace.

use std::path::Path;
use std::process::Command;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The system's binaries next to the benchmark, as `cargo build --workspace --bins` leaves them.
fn system_built() -> bool {
    let bench = Path::new(env!("CARGO_BIN_EXE_joblet-bench"));
    let dir = bench.parent().expect("binary directory");
    joblet_bench::bins::REQUIRED
        .iter()
        .all(|b| dir.join(b).is_file())
}

#[test]
fn bench_measures_every_phase_and_leaves_nothing() {
    if !root() {
        assert!(std::env::var("CI").is_err(), "CI runs as root");
        eprintln!("SKIPPED: needs root (namespaces, cgroups)");
        return;
    }
    if !system_built() {
        assert!(
            std::env::var("CI").is_err(),
            "CI builds the system first (cargo build --workspace --bins)"
        );
        eprintln!("SKIPPED: build the system first: cargo build --workspace --bins");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_joblet-bench"))
        .args(["--quick", "--runs", "2", "--only", "latency,logs,scale"])
        .args(["--log-mib", "4", "--scale-jobs", "4"])
        .output()
        .expect("run joblet-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "joblet-bench exited {}:\n{stdout}\n{stderr}",
        out.status
    );
    for heading in [
        "### Start-to-exit latency",
        "### Log throughput",
        "### Scale",
        "### Teardown after latency",
        "### Teardown after logs",
        "### Teardown after scale",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("after stop: no leftover").count(),
        3,
        "a phase left something:\n{stdout}"
    );
    assert!(stdout.contains("| ours: rnx job run --follow /bin/true"));
    assert!(!stdout.contains("NO FIGURES"), "{stdout}");
}

#[test]
fn surface_reports_the_spawner_and_the_supervisor() {
    let out = Command::new(env!("CARGO_BIN_EXE_joblet-surface"))
        .arg("--json")
        .output()
        .expect("run joblet-surface");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let spawner = &v[0];
    assert_eq!(spawner["binary"], "joblet-spawner");
    let lines = spawner["code"][0]["lines"].as_u64().unwrap();
    assert!(lines > 1000, "{lines}");
    assert!(
        lines < joblet_bench::surface::render::SPAWNER_LINE_BUDGET as u64,
        "the spawner has {lines} lines of Rust: over the budget promised to auditors"
    );
    assert!(
        spawner["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "StartJob")
    );
    assert!(
        spawner["linked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "joblet-ipc-proto")
    );
    assert_eq!(v[1]["binary"], "joblet");
    assert!(v[1]["requests"].as_array().unwrap().is_empty());
    assert!(v[1]["accepts_note"].is_string());
}
