//! Monitoring and operations against the real system (issue 4): MonitoringService through a
//! raw gRPC client, the Server-Sent Events endpoint on the TLS listener through `curl` with
//! the certificates of the generated client configs, and the Prometheus endpoint.

use std::collections::HashMap;
use std::net::TcpListener;

use std::process::Command;
use std::time::{Duration, Instant};

use joblet_api_proto::{EmptyRequest, StreamMetricsRequest};
use joblet_tests::grpc::Grpc;
use joblet_tests::sse::{Pems, curl, decode_logs, events, pems};
use joblet_tests::{System, clients, config, require_root};

/// The job: a pause (so a follower attaches while it runs), then interleaved stdout and
/// stderr lines with bytes that are not text, with a pause halfway (so the output is stored
/// in more than one chunk).
const SCRIPT: &str = "sleep 2; i=0; while [ $i -lt 300 ]; do printf 'out %d \\001\\377\\n' $i; \
                      printf 'err %d\\n' $i >&2; [ $i -eq 150 ] && sleep 1; i=$((i+1)); done";

fn expected_output() -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for i in 0..300 {
        out.extend_from_slice(format!("out {i} ").as_bytes());
        out.extend_from_slice(b"\x01\xff\n");
        err.extend_from_slice(format!("err {i}\n").as_bytes());
    }
    (out, err)
}

fn audit_lines(sys: &System) -> Vec<serde_json::Value> {
    let path = sys.config_path(&["audit", "path"]);
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

#[test]
fn system_status_and_event_streams() {
    require_root!();
    let sys = System::start();

    // MonitoringService, as a viewer: a read.
    let viewer_grpc = Grpc::connect(&sys.address, &sys.viewer);
    let status = viewer_grpc
        .run(viewer_grpc.monitoring().get_system_status(EmptyRequest {}))
        .expect("GetSystemStatus")
        .into_inner();
    assert!(status.available);
    let host_info = status.host.expect("host");
    assert!(!host_info.hostname.is_empty() && !host_info.node_id.is_empty());
    assert!(!status.disks.is_empty(), "the root filesystem is a disk");
    assert!(status.processes.expect("processes").total_processes > 1);
    assert_eq!(
        status.server_version.expect("version").component,
        "joblet-api"
    );
    let mut stream = viewer_grpc
        .run(
            viewer_grpc
                .monitoring()
                .stream_system_metrics(StreamMetricsRequest {
                    interval_seconds: 1,
                    metric_types: vec!["cpu".into()],
                }),
        )
        .expect("StreamSystemMetrics")
        .into_inner();
    for _ in 0..2 {
        let m = viewer_grpc
            .run(stream.message())
            .expect("a metrics message")
            .expect("the stream goes on");
        assert!(m.cpu.is_some() && m.memory.is_none());
    }
    drop(stream);

    // A job's logs over SSE, followed from before its first byte, as a viewer over h2 and
    // as the admin over HTTP/1.1: byte-identical to what it wrote, and to `rnx job log`.
    let job = sys.run_job(&["sh", "-c", SCRIPT]);
    let url = format!(
        "https://{}/v1/jobs/{}/logs?follow=true",
        sys.address, job.id
    );
    let viewer = pems(&sys, &sys.viewer, "viewer");
    let admin = pems(&sys, &sys.admin, "admin");
    let admin_url = url.clone();
    let admin_pems = Pems {
        cert: admin.cert.clone(),
        key: admin.key.clone(),
        ca: admin.ca.clone(),
    };
    let admin_follow = std::thread::spawn(move || curl(&admin_pems, &admin_url, &["--http1.1"]));
    let followed = curl(&viewer, &url, &[]);
    assert!(
        followed.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let (expected_out, expected_err) = expected_output();
    let rnx_log = sys.logs(&job);
    for (who, output) in [
        ("viewer", followed),
        ("admin", admin_follow.join().unwrap()),
    ] {
        assert!(
            output.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (out, err, all, end) = decode_logs(&String::from_utf8_lossy(&output.stdout));
        assert!(
            out == expected_out,
            "{who}: stdout differs ({} bytes)",
            out.len()
        );
        assert!(
            err == expected_err,
            "{who}: stderr differs ({} bytes)",
            err.len()
        );
        assert!(all == rnx_log, "{who}: differs from rnx job log");
        assert_eq!(end["status"], "COMPLETED", "{who}: {end}");
        assert_eq!(end["exit_code"], 0);
        assert_eq!(end["job_uuid"], job.id.as_str());
    }

    // History of a finished job, without follow; resuming after an event id.
    let history = curl(&viewer, &url.replace("?follow=true", ""), &[]);
    let (out, _, _, _) = decode_logs(&String::from_utf8_lossy(&history.stdout));
    assert_eq!(out, expected_out);
    let chunk_ids = |text: &[u8]| -> Vec<String> {
        events(&String::from_utf8_lossy(text))
            .into_iter()
            .filter(|e| e.name != "end")
            .map(|e| e.id.expect("chunk id"))
            .collect()
    };
    let ids = chunk_ids(&history.stdout);
    assert!(ids.len() >= 2, "the output is in one chunk: {ids:?}");
    let resumed = curl(
        &viewer,
        &url,
        &["-H", &format!("Last-Event-ID: {}", ids[0])],
    );
    assert_eq!(
        chunk_ids(&resumed.stdout),
        ids[1..],
        "resumes right after the given event"
    );

    // Unknown job: a clear refusal, not an empty stream.
    let unknown = curl(
        &viewer,
        &format!("https://{}/v1/jobs/ffffffff/logs", sys.address),
        &["-w", "\n%{http_code}"],
    );
    let text = String::from_utf8_lossy(&unknown.stdout);
    assert!(text.ends_with("\n404"), "{text}");
    assert!(
        text.contains("NOT_FOUND") && text.contains("not found"),
        "{text}"
    );

    // A certificate from another CA is refused at the handshake, and audited.
    let stranger_config = clients::foreign_ca_client(&sys, "admin", "stranger");
    let stranger = pems(&sys, &stranger_config, "stranger");
    let refused = curl(&stranger, &url, &[]);
    assert!(!refused.status.success(), "a foreign certificate got in");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("event:"));

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = audit_lines(&sys);
        let viewer_read = lines.iter().any(|v| {
            v["method"] == "GetJobLogs"
                && v["role"] == "viewer"
                && v["decision"] == "allowed"
                && v["job"] == job.id.as_str()
        });
        let stranger_refused = lines.iter().any(|v| v["event"] == "auth_failed");
        if viewer_read && stranger_refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit log lacks the SSE read or the refusal: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sys.stop();
}

#[test]
fn job_metrics_stream_over_sse() {
    require_root!();
    // Job metrics sampled often enough for a short job to have some.
    let sys = System::start_with(|cfg| config::set(cfg, "job_metrics_interval", "\"250ms\""));
    let viewer = pems(&sys, &sys.viewer, "viewer");
    // JSON samples while the job runs (history, then live), then its end.
    let sleeper = sys.run_job(&["sleep", "2"]);
    let metrics = curl(
        &viewer,
        &format!("https://{}/v1/jobs/{}/metrics", sys.address, sleeper.id),
        &[],
    );
    let evs = events(&String::from_utf8_lossy(&metrics.stdout));
    let samples: Vec<serde_json::Value> = evs
        .iter()
        .filter(|e| e.name == "metric")
        .map(|e| serde_json::from_str(&e.data).expect("a metric is JSON"))
        .collect();
    assert!(!samples.is_empty(), "no metric events: {evs:?}");
    for m in &samples {
        assert_eq!(m["job_uuid"], sleeper.id.as_str());
        assert!(m["timestamp"].as_i64().is_some_and(|t| t > 0), "{m}");
        assert!(m["memory_bytes"].as_i64().is_some(), "{m}");
    }
    // Read from the job's own cgroup by persistd, which runs unprivileged: a counter it
    // could not read would be 0 in every sample.
    let used = |m: &serde_json::Value| m["memory_bytes"].as_i64().is_some_and(|b| b > 0);
    assert!(
        samples.iter().any(used),
        "no sample saw memory in use: {samples:?}"
    );
    let end = evs.last().expect("events");
    assert_eq!(end.name, "end", "{evs:?}");
    let end: serde_json::Value = serde_json::from_str(&end.data).expect("end is JSON");
    assert_eq!(end["status"], "COMPLETED", "{end}");
    sys.stop();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Turns the Prometheus listener on at `port` (the generated config leaves it off).
fn enable_metrics(cfg: &mut String, port: u16) {
    let setting = format!("  bind_address: \"127.0.0.1:{port}\"");
    let mut out = Vec::new();
    let mut added = false;
    for line in cfg.lines() {
        let t = line.trim_start();
        if t.starts_with("bind_address:") || t.starts_with("# bind_address:") {
            continue;
        }
        out.push(line.to_owned());
        if line.trim_end() == "monitoring:" {
            out.push(setting.clone());
            added = true;
        }
    }
    assert!(added, "the generated config has no monitoring section");
    *cfg = out.join("\n");
    cfg.push('\n');
}

/// `/metrics` as `series -> value`.
fn scrape(port: u16) -> (String, HashMap<String, f64>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let values = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let v = if v == "+Inf" {
                f64::INFINITY
            } else {
                v.parse().expect("number")
            };
            (series.to_owned(), v)
        })
        .collect();
    (text, values)
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[test]
fn prometheus_counters_move_after_jobs_run() {
    require_root!();
    let port = free_port();
    let sys = System::start_with(|cfg| enable_metrics(cfg, port));

    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let (_, m) = scrape(port);
        if value(&m, "joblet_state_store_up") == 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "stated never counted: {m:?}");
        std::thread::sleep(Duration::from_millis(200));
    };

    let failed = sys.run_job(&["sh", "-c", "exit 3"]);
    assert_eq!(
        sys.wait_done(&failed, Duration::from_secs(60))["status"],
        "FAILED"
    );
    let (done, _) = sys.run_to_end(&["echo", "counted"]);
    assert_eq!(done["status"], "COMPLETED");

    // A scrape shows the census of at most a second ago: wait for it to catch up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (text, after) = loop {
        let (text, m) = scrape(port);
        let ended = |state: &str| {
            let series = format!("joblet_jobs_finished_total{{state=\"{state}\"}}");
            value(&m, &series) - value(&before, &series)
        };
        if (ended("FAILED") >= 1.0 && ended("COMPLETED") >= 1.0) || Instant::now() > deadline {
            break (text, m);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let delta = |s: &str| value(&after, s) - value(&before, s);
    assert_eq!(delta("joblet_job_starts_total"), 2.0, "{text}");
    assert_eq!(
        delta("joblet_jobs_finished_total{state=\"FAILED\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        delta("joblet_jobs_finished_total{state=\"COMPLETED\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        delta("joblet_job_failures_total{reason=\"exited\"}"),
        1.0,
        "{text}"
    );
    assert!(
        value(&after, "joblet_jobs{state=\"COMPLETED\"}") >= 1.0,
        "{text}"
    );
    assert!(
        delta("joblet_rpc_duration_seconds_count{method=\"RunJob\",code=\"OK\"}") >= 2.0,
        "{text}"
    );
    assert_eq!(value(&after, "joblet_audit_log_healthy"), 1.0);
    // No authentication on this port: it must not show what jobs are or who runs them.
    for private in [failed.id.as_str(), "counted", "admin"] {
        assert!(!text.contains(private), "{private:?} exposed:\n{text}");
    }
    sys.stop();
}
