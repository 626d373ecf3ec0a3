//! `job metrics` and `monitor status|top|watch`, and `-v` (which asks the server).

use std::time::{Duration, Instant};

use joblet_tests::require_root;
use serde_json::Value;

use crate::support::{self, Checks, RNX_LIMIT, rnx, rnx_limited, run_job, wait_done};

#[test]
fn job_metrics_follow_a_running_job_then_replay() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let script = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 4";
    let Some(job) = run_job(&mut c, &sys, &["--max-memory=64", "sh", "-c", script]) else {
        return c.finish(sys);
    };

    // Live: streams until the job ends, then exits 0.
    let started = Instant::now();
    let live = rnx(&sys, &["job", "metrics", &job.id]);
    c.exit(
        "job metrics (running job)",
        &live,
        0,
        &[
            "=== Metrics at ",
            "CPU: ",
            "Memory:",
            "Limit: 64.0 MiB",
            "Disk I/O:",
            "Network:",
        ],
    );
    let blocks = live.stdout.matches("=== Metrics at ").count();
    c.that(
        blocks >= 2,
        format!("{blocks} samples of a ~5 s job sampled every second"),
    );
    let st = wait_done(&mut c, &sys, &job, Duration::from_secs(60));
    c.that(
        started.elapsed() >= Duration::from_secs(2),
        "metrics of a running job returned before the job ended",
    );
    c.that(st["status"] == "COMPLETED", format!("metrics job: {st}"));

    // Replay of a finished job, one JSON object per line.
    let json = rnx(&sys, &["--json", "job", "metrics", &job.id]);
    c.exit("job metrics --json (finished job)", &json, 0, &[]);
    let events: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| c.json("metrics line", l))
        .collect();
    c.that(
        events.len() >= 2,
        format!("replayed samples: {}", events.len()),
    );
    for e in &events {
        c.that(
            e["job_uuid"] == job.id.as_str() && e["memory_limit"] == 64_i64 << 20,
            format!("sample: {e}"),
        );
        c.that(
            e["cpu_percent"].as_f64().is_some_and(|p| p >= 0.0),
            format!("cpu: {e}"),
        );
    }
    let stamps: Vec<i64> = events
        .iter()
        .filter_map(|e| e["timestamp"].as_i64())
        .collect();
    c.that(
        stamps.windows(2).all(|w| w[0] < w[1]),
        format!("timestamps in order: {stamps:?}"),
    );
    let viewer = rnx_limited(&sys, &sys.viewer, &["job", "metrics", &job.id], RNX_LIMIT);
    c.exit("viewer reads metrics", &viewer, 0, &["=== Metrics at "]);
    c.finish(sys);
}

#[test]
fn monitor_status_top_watch_and_version() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let status = rnx(&sys, &["monitor", "status"]);
    c.exit(
        "monitor status",
        &status,
        0,
        &[
            "System Status - ",
            "Host Information:",
            "Hostname:",
            &hostname,
            "Joblet Server:",
            "CPU:",
            &format!("Cores:        {cores}"),
            "Memory:",
            "Disks:",
            "Network Interfaces:",
            "Processes:",
        ],
    );
    let v = c.json(
        "monitor status --json",
        &rnx(&sys, &["--json", "monitor", "status"]).stdout,
    );
    c.that(
        v["hostInfo"]["hostname"] == hostname.as_str(),
        format!("hostInfo: {}", v["hostInfo"]),
    );
    c.that(
        v["cpuInfo"]["cores"] == cores,
        format!("cpuInfo: {}", v["cpuInfo"]),
    );
    c.that(
        v["memoryInfo"]["total"].as_i64().is_some_and(|t| t > 0),
        format!("memoryInfo: {}", v["memoryInfo"]),
    );
    c.that(
        v["serverVersion"]["version"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        format!("serverVersion: {}", v["serverVersion"]),
    );
    c.that(
        v["processesInfo"]["totalProcesses"]
            .as_i64()
            .is_some_and(|n| n > 0),
        format!("processesInfo: {}", v["processesInfo"]),
    );

    let top = rnx(&sys, &["monitor", "top", "--filter=cpu,memory"]);
    c.exit(
        "monitor top --filter=cpu,memory",
        &top,
        0,
        &["System Metrics - ", "CPU: ", "Memory: "],
    );
    c.that(
        !top.stdout.contains("Processes:"),
        format!("filtered top: {}", top.stdout),
    );
    let all = rnx(&sys, &["monitor", "top"]);
    c.exit(
        "monitor top",
        &all,
        0,
        &["CPU: ", "Memory: ", "Disks", "I/O: ", "Processes: "],
    );
    let v = c.json(
        "monitor top --json --filter=process",
        &rnx(&sys, &["--json", "monitor", "top", "--filter", "process"]).stdout,
    );
    c.that(
        v.get("processesInfo").is_some() && v.get("cpuInfo").is_none(),
        format!("filtered json: {v}"),
    );

    let started = Instant::now();
    let watch = rnx(
        &sys,
        &[
            "monitor",
            "watch",
            "--interval=1",
            "--count=2",
            "--filter=cpu",
        ],
    );
    c.exit("monitor watch --count=2", &watch, 0, &["CPU: "]);
    c.that(
        watch.stdout.matches("System Metrics - ").count() == 2,
        format!("two updates: {}", watch.stdout),
    );
    c.that(
        started.elapsed() < Duration::from_secs(20),
        format!("two 1 s updates took {:?}", started.elapsed()),
    );
    let json = rnx(
        &sys,
        &[
            "--json",
            "monitor",
            "watch",
            "--interval",
            "1",
            "--count",
            "2",
        ],
    );
    c.exit("monitor watch --json", &json, 0, &[]);
    let frames: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| c.json("watch line", l))
        .collect();
    c.that(
        frames.len() == 2 && frames.iter().all(|f| f["cpuInfo"]["cores"] == cores),
        format!("watch frames: {frames:?}"),
    );
    if let Some((code, text)) = support::on_terminal(
        &sys,
        &sys.admin,
        &["monitor", "watch", "--interval=1", "--count=1", "--compact"],
    ) {
        c.that(
            code == 0,
            format!("watch on a terminal exit {code}: {text}"),
        );
        c.that(
            text.contains("\x1b[2J"),
            "watch on a terminal does not redraw",
        );
    }
    for bad in ["--interval=0", "--interval=x", "--filter=gpu", "--count=-1"] {
        let out = rnx(&sys, &["monitor", "watch", bad]);
        c.exit(
            &format!("monitor watch {bad}"),
            &out,
            7,
            &[bad.split('=').next().unwrap_or(bad)],
        );
    }

    let version = rnx(&sys, &["-v"]);
    c.exit("rnx -v", &version, 0, &["rnx 0.1.0", "joblet "]);
    c.that(
        !version.stdout.contains("unknown"),
        format!("server version: {}", version.stdout),
    );
    c.finish(sys);
}
