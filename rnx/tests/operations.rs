//! The real `rnx` binary against the in-test server: cancel, delete-all, metrics, the
//! monitor commands, and the upload progress bar.

mod support;

use std::sync::atomic::Ordering;

use serde_json::Value;
use support::Setup;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn cancel_ends_a_scheduled_job_and_refuses_others() {
    let s = Setup::new();
    let id = s.submit(&["--schedule=1h", "backup.sh"]);
    assert_eq!(s.server.jobs()[&id].status, "SCHEDULED");

    let viewer = s.rnx(&["--node=viewer", "job", "cancel", &id]);
    assert_eq!(viewer.code, 4, "{viewer:?}");

    let cancel = s.rnx(&["job", "cancel", &id[..8]]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert_eq!(
        cancel.stdout,
        format!("Scheduled job canceled successfully:\nID: {id}\nStatus: CANCELED\n")
    );
    assert_eq!(s.server.jobs()[&id].status, "CANCELED");

    let again = s.rnx(&["--json", "job", "cancel", &id]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again
            .stderr
            .contains("only a SCHEDULED job can be canceled"),
        "{again:?}"
    );
    assert!(again.stdout.is_empty(), "{again:?}");

    let other = s.submit(&["--schedule=2h", "report.sh"]);
    let json = s.rnx(&["--json", "job", "cancel", &other]);
    assert_eq!(json.code, 0, "{json:?}");
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["canceled"], true);
    assert_eq!(v["job_id"], other.as_str());
    assert_eq!(v["status"], "CANCELED");
    assert!(v["message"].as_str().unwrap().contains("CANCELED"));

    let missing = s.rnx(&["job", "cancel", "ffffffff"]);
    assert_eq!(missing.code, 3, "{missing:?}");
}

#[test]
fn cancel_falls_back_to_stop_on_servers_without_cancel_job() {
    let s = Setup::new();
    s.server
        .state
        .cancel_unimplemented
        .store(true, Ordering::Relaxed);
    let scheduled = s.submit(&["--schedule=1h", "backup.sh"]);
    let cancel = s.rnx(&["job", "cancel", &scheduled]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert!(cancel.stdout.contains("Status: CANCELED"), "{cancel:?}");

    let running = s.submit(&["sleep", "60"]);
    let refused = s.rnx(&["job", "cancel", &running]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "Error: job {running} is RUNNING, not SCHEDULED: only a scheduled job can be \
             canceled; stop it with `rnx job stop {running}`"
        )
    );
    assert_eq!(s.server.jobs()[&running].status, "RUNNING");
}

#[test]
fn delete_all_keeps_running_and_scheduled_jobs() {
    let s = Setup::new();
    let done = s.submit(&["echo", "x"]);
    let log = s.rnx(&["job", "log", &done]);
    assert_eq!(log.code, 0, "{log:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.server.jobs()[&done].status == "RUNNING" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let running = s.submit(&["sleep", "60"]);
    let scheduled = s.submit(&["--schedule=1h", "later"]);

    let viewer = s.rnx(&["--node=viewer", "job", "delete-all"]);
    assert_eq!(viewer.code, 4, "{viewer:?}");

    let all = s.rnx(&["job", "delete-all"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(
        all.stdout.starts_with(
            "Jobs deleted successfully:\nDeleted count: 1\nSkipped count: 2 (running/scheduled)\n"
        ),
        "{all:?}"
    );
    let left = s.server.jobs();
    assert!(left.contains_key(&running) && left.contains_key(&scheduled));
    assert!(!left.contains_key(&done));

    let json = s.rnx(&["job", "delete-all", "--json"]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["deleted_count"], 0);
    assert_eq!(v["skipped_count"], 2);
    assert_eq!(v["success"], true);
}

#[test]
fn metrics_print_blocks_or_json_lines_and_exit_3_without_samples() {
    let s = Setup::new();
    let id = s.submit(&["--max-memory=64", "sleep", "60"]);
    let text = s.rnx(&["job", "metrics", &id]);
    assert_eq!(text.code, 0, "{text:?}");
    assert_eq!(
        text.stdout.matches("=== Metrics at ").count(),
        2,
        "{text:?}"
    );
    for expected in [
        "CPU: 10.00%",
        "Current: 1.0 MiB",
        "Limit: 64.0 MiB (1.6% used)",
        "Disk I/O:",
        "Write: 4.0 KiB",
        "Network:",
    ] {
        assert!(
            text.stdout.contains(expected),
            "missing {expected}: {text:?}"
        );
    }

    let json = s.rnx(&["--json", "job", "metrics", &id]);
    assert_eq!(json.code, 0, "{json:?}");
    let events = json_lines(&json.stdout);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["cpu_percent"], 20.0);
    assert_eq!(events[0]["job_uuid"], id.as_str());
    assert_eq!(events[0]["memory_limit"], 64 << 20);

    let none = s.submit(&["nometrics"]);
    let empty = s.rnx(&["job", "metrics", &none]);
    assert_eq!(empty.code, 3, "{empty:?}");
    assert!(
        empty
            .stderr
            .contains(&format!("no metrics available for job {none}")),
        "{empty:?}"
    );
}

#[test]
fn monitor_status_and_top() {
    let s = Setup::new();
    let status = s.rnx(&["monitor", "status"]);
    assert_eq!(status.code, 0, "{status:?}");
    for expected in [
        "System Status - 2026-11-23T16:20:50Z",
        "Hostname:",
        "test-host",
        "Version:",
        "Load Average: 0.10, 0.20, 0.30",
        "busy --loop",
    ] {
        assert!(
            status.stdout.contains(expected),
            "missing {expected}: {status:?}"
        );
    }
    let json = s.rnx(&["monitor", "status", "--json"]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["hostInfo"]["hostname"], "test-host");
    assert_eq!(v["cpuInfo"]["cores"], 2);
    assert_eq!(v["processesInfo"]["totalProcesses"], 99);

    let top = s.rnx(&["monitor", "top", "--filter=cpu,process"]);
    assert_eq!(top.code, 0, "{top:?}");
    assert!(top.stdout.contains("CPU: 12.5% of 2 cores"), "{top:?}");
    assert!(top.stdout.contains("Top processes by CPU:"), "{top:?}");
    assert!(!top.stdout.contains("Memory:"), "{top:?}");
    let top_json = s.rnx(&["--json", "monitor", "top", "--filter", "memory"]);
    let v: Value = serde_json::from_str(&top_json.stdout).unwrap();
    assert!(
        v.get("memoryInfo").is_some() && v.get("cpuInfo").is_none(),
        "{v}"
    );

    let bad = s.rnx(&["monitor", "top", "--filter=gpu"]);
    assert_eq!(bad.code, 7, "{bad:?}");
    assert!(
        bad.stderr.contains("--filter: 'gpu' is not a metric type"),
        "{bad:?}"
    );
}

#[test]
fn monitor_watch_streams_until_count() {
    let s = Setup::new();
    let watch = s.rnx(&[
        "monitor",
        "watch",
        "--interval=2",
        "--filter=cpu",
        "--count=2",
    ]);
    assert_eq!(watch.code, 0, "{watch:?}");
    assert_eq!(
        watch.stdout.matches("System Metrics - ").count(),
        2,
        "{watch:?}"
    );
    assert!(watch.stdout.contains("CPU: 20.0% of 2 cores"), "{watch:?}");
    assert!(
        !watch.stdout.contains('\x1b'),
        "no escapes in a pipe: {watch:?}"
    );
    let request = s
        .server
        .state
        .watch_request
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(request.interval_seconds, 2);
    assert_eq!(request.metric_types, ["cpu"]);

    let json = s.rnx(&["--json", "monitor", "watch", "--count", "3", "--compact"]);
    assert_eq!(json.code, 0, "{json:?}");
    let frames = json_lines(&json.stdout);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2]["cpuInfo"]["usagePercent"], 30.0);

    for bad in ["--interval=0", "--interval=soon", "--count=0"] {
        let out = s.rnx(&["monitor", "watch", bad]);
        assert_eq!(out.code, 7, "{bad}: {out:?}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn large_uploads_show_progress_only_on_a_terminal() {
    let s = Setup::new();
    let big = s.dir.path().join("data.bin");
    std::fs::write(&big, vec![7u8; 3 << 20]).unwrap();
    let upload = format!("--upload={}", big.display());
    let piped = s.rnx(&["job", "run", &upload, "ls"]);
    assert_eq!(piped.code, 0, "{piped:?}");
    assert!(!piped.stderr.contains('['), "no bar in a pipe: {piped:?}");

    // `script` gives rnx a terminal.
    let Ok(script) = which("script") else {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    };
    let command = format!(
        "{} --config {} job run {} ls",
        env!("CARGO_BIN_EXE_rnx"),
        s.config.display(),
        upload
    );
    let out = std::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Reading [==============================] 100% 3.0/3.0 MiB"),
        "{text}"
    );
    assert!(
        text.contains("Sending [==============================] 100%"),
        "{text}"
    );
    assert!(text.contains("Job submitted:"), "{text}");
}

#[cfg(target_os = "linux")]
fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
