//! The rest of JobService against the real system (issue 4, "Jobs"): uploads, scheduling
//! (on time, across a full restart, with its secret), CancelJob, DeleteAllJobs, job
//! metrics, and secrets that no API, audit line or database file ever shows.
//!
//! `rnx` drives what it offers; a raw gRPC client ([`joblet_tests::grpc`]) sends what rnx
//! would refuse itself (hostile paths, setuid modes) or cannot express (exact schedules).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use joblet_api_proto::{
    CancelJobRequest, DeleteAllJobsRequest, FileUpload, GetJobMetricsRequest, GetJobStatusRequest,
    JobMetricsEvent, RunJobRequest, StopJobRequest, StreamJobMetricsRequest,
};
use joblet_tests::grpc::Grpc;
use joblet_tests::{Job, System, require_root};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Code;

const S: i64 = 1_000_000_000;

fn now_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix_s: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_s)
        .expect("time")
        .format(&Rfc3339)
        .expect("format")
}

/// Runs a job through the raw client; panics on refusal.
fn grpc_run(grpc: &Grpc, req: RunJobRequest) -> Job {
    let resp = grpc
        .run(grpc.jobs().run_job(req))
        .unwrap_or_else(|e| panic!("RunJob refused: {e:?}"))
        .into_inner();
    Job { id: resp.job_uuid }
}

fn scheduled_in(command: &str, args: &[&str], secs: i64) -> RunJobRequest {
    RunJobRequest {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        schedule: rfc3339(now_s() + secs),
        ..Default::default()
    }
}

fn grpc_status(grpc: &Grpc, job: &Job) -> joblet_api_proto::GetJobStatusResponse {
    grpc.run(grpc.jobs().get_job_status(GetJobStatusRequest {
        uuid: job.id.clone(),
    }))
    .unwrap_or_else(|e| panic!("GetJobStatus {}: {e:?}", job.id))
    .into_inner()
}

fn listed_ids(sys: &System) -> Vec<String> {
    let out = sys.rnx(&["--json", "job", "list"]).expect_ok("job list");
    let mut ids: Vec<String> = out
        .json()
        .as_array()
        .expect("list is an array")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
}

/// Every regular file below `dir` (stated's database lives there).
fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

fn staged_entries(sys: &System) -> usize {
    let dir = sys.config_path(&["supervisor", "dataDir"]).join("uploads");
    std::fs::read_dir(dir).map_or(0, |rd| rd.count())
}

#[test]
fn uploads_land_in_work_with_their_modes() {
    require_root!();
    let sys = System::start();
    let src = sys.dir.path().join("upload-src");
    std::fs::create_dir_all(src.join("data/deep")).expect("mkdir");
    let put = |rel: &str, body: &[u8], mode: u32| {
        let p = src.join(rel);
        std::fs::write(&p, body).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    put("run.sh", b"#!/bin/sh\necho from-run-sh\n", 0o755);
    put("data/input.txt", b"payload-123\n", 0o640);
    put("data/deep/x.bin", &[0u8, 1, 2, 3], 0o600);
    std::fs::set_permissions(src.join("data"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    let src_arg = format!("--upload-dir={}", src.display());
    let (st, out) = sys.run_to_end(&[
        &src_arg,
        "sh",
        "-c",
        "stat -c '%a %n' /work/run.sh /work/data /work/data/input.txt /work/data/deep/x.bin \
         && cat /work/data/input.txt && /work/run.sh",
    ]);
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}\n{}", sys.log_text());
    for line in [
        "755 /work/run.sh",
        "750 /work/data",
        "640 /work/data/input.txt",
        "600 /work/data/deep/x.bin",
        "payload-123",
        "from-run-sh",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} missing in:\n{out}"
        );
    }
    let uploads = st["uploads"].to_string();
    assert!(uploads.contains("data/input.txt"), "status uploads: {st}");

    // Modes arrive minus setuid/setgid/sticky, even from a client that sends them.
    let grpc = sys.grpc();
    let job = grpc_run(
        &grpc,
        RunJobRequest {
            command: "stat".into(),
            args: vec!["-c".into(), "%a".into(), "/work/suid".into()],
            uploads: vec![FileUpload {
                path: "suid".into(),
                content: b"#!/bin/sh\n".to_vec(),
                mode: 0o6755,
                is_directory: false,
            }],
            ..Default::default()
        },
    );
    let st = sys.wait_done(&job, Duration::from_secs(60));
    assert_eq!(st["status"], "COMPLETED", "{st}");
    assert_eq!(String::from_utf8_lossy(&sys.logs(&job)).trim(), "755");

    assert_eq!(staged_entries(&sys), 0, "staged uploads left behind");
    drop(grpc);
    sys.stop();
}

#[test]
fn hostile_upload_paths_are_refused_by_name() {
    require_root!();
    let sys = System::start();
    let grpc = sys.grpc();
    let before = listed_ids(&sys);
    for bad in [
        "../../etc/joblet-upload-escape",
        "/etc/joblet-upload-escape",
        "a/../../x",
        "a//b",
    ] {
        let err = grpc
            .run(grpc.jobs().run_job(RunJobRequest {
                command: "true".into(),
                uploads: vec![FileUpload {
                    path: bad.into(),
                    content: b"pwned".to_vec(),
                    mode: 0o644,
                    is_directory: false,
                }],
                ..Default::default()
            }))
            .expect_err("hostile upload accepted");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(
            err.message().contains(bad),
            "{bad} not named: {}",
            err.message()
        );
    }
    // Two entries for one path, and a file below a file, are refused too.
    for (uploads, needle) in [
        (
            vec![("twice", false), ("twice", false)],
            "\"twice\" is given twice",
        ),
        (vec![("f", false), ("f/inner", false)], "uploaded as a file"),
    ] {
        let uploads = uploads
            .into_iter()
            .map(|(path, is_directory)| FileUpload {
                path: path.into(),
                content: Vec::new(),
                mode: 0o644,
                is_directory,
            })
            .collect();
        let err = grpc
            .run(grpc.jobs().run_job(RunJobRequest {
                command: "true".into(),
                uploads,
                ..Default::default()
            }))
            .expect_err("conflicting uploads accepted");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(needle), "{}", err.message());
    }
    assert!(!Path::new("/etc/joblet-upload-escape").exists());
    assert_eq!(listed_ids(&sys), before, "a refused request created a job");
    assert_eq!(staged_entries(&sys), 0, "staged uploads left behind");
    drop(grpc);
    sys.stop();
}

#[test]
fn a_scheduled_job_runs_on_time_and_scheduled_jobs_can_be_canceled() {
    require_root!();
    let sys = System::start();
    let grpc = sys.grpc();

    // Due on a whole second at least 3 s ahead; the job prints when it started.
    let due = now_s() + 4;
    let job = grpc_run(
        &grpc,
        RunJobRequest {
            command: "date".into(),
            args: vec!["+%s.%N".into()],
            schedule: rfc3339(due),
            ..Default::default()
        },
    );
    let st = grpc_status(&grpc, &job);
    assert_eq!(st.status, "SCHEDULED");
    assert_eq!(st.scheduled_time, rfc3339(due));
    assert_eq!(sys.status(&job)["status"], "SCHEDULED");
    let st = sys.wait_done(&job, Duration::from_secs(60));
    assert_eq!(st["status"], "COMPLETED", "{st}");
    let out = String::from_utf8_lossy(&sys.logs(&job)).into_owned();
    let started: f64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date said {out:?}"));
    let late = started - due as f64;
    eprintln!("the scheduled job started {late:+.3} s after its time");
    assert!(
        (-0.05..=1.0).contains(&late),
        "scheduled for {due}, started at {started} ({late:+.3} s)"
    );

    // CancelJob: a scheduled job ends CANCELED and never runs.
    let later = grpc_run(&grpc, scheduled_in("touch", &["/tmp/never"], 3600));
    let resp = grpc
        .run(grpc.jobs().cancel_job(CancelJobRequest {
            uuid: later.id[..8].to_owned(),
        }))
        .expect("cancel")
        .into_inner();
    assert_eq!(
        (resp.uuid.as_str(), resp.status.as_str()),
        (later.id.as_str(), "CANCELED")
    );
    let st = grpc_status(&grpc, &later);
    assert_eq!(st.status, "CANCELED");
    assert!(
        st.start_time.is_empty() && !st.end_time.is_empty(),
        "{st:?}"
    );
    let err = grpc
        .run(grpc.jobs().cancel_job(CancelJobRequest {
            uuid: later.id.clone(),
        }))
        .expect_err("canceled twice");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("CANCELED"), "{}", err.message());

    // StopJob on a scheduled job cancels it too (Joblet's rnx does that).
    let other = grpc_run(&grpc, scheduled_in("true", &[], 3600));
    let resp = grpc
        .run(grpc.jobs().stop_job(StopJobRequest {
            uuid: other.id.clone(),
        }))
        .expect("stop a scheduled job")
        .into_inner();
    assert_eq!(resp.status, "CANCELED");

    // A running job cannot be canceled; the refusal names its state.
    let running = sys.run_job(&["sleep", "300"]);
    let err = grpc
        .run(grpc.jobs().cancel_job(CancelJobRequest {
            uuid: running.id.clone(),
        }))
        .expect_err("canceled a running job");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("RUNNING"), "{}", err.message());
    sys.rnx(&["job", "stop", &running.id]).expect_ok("stop");
    sys.wait_done(&running, Duration::from_secs(30));
    let err = grpc
        .run(grpc.jobs().cancel_job(CancelJobRequest {
            uuid: "0000000".into(),
        }))
        .expect_err("unknown job");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        grpc_status(&grpc, &later).status,
        "CANCELED",
        "it ran after all"
    );
    drop(grpc);
    sys.stop();
}

#[test]
fn a_scheduled_job_survives_a_full_restart_and_secrets_never_leak() {
    require_root!();
    let mut sys = System::start();
    let secret = format!("s3cret-{}-{}", std::process::id(), now_s());
    let secrets = HashMap::from([("API_TOKEN".to_owned(), secret.clone())]);
    let grpc = sys.grpc();
    let scheduled = grpc_run(
        &grpc,
        RunJobRequest {
            secret_environment: secrets.clone(),
            ..scheduled_in("sh", &["-c", "echo scheduled-got-$API_TOKEN"], 30)
        },
    );
    let immediate = grpc_run(
        &grpc,
        RunJobRequest {
            command: "sh".into(),
            args: vec!["-c".into(), "echo now-got-$API_TOKEN".into()],
            secret_environment: secrets,
            ..Default::default()
        },
    );
    sys.wait_done(&immediate, Duration::from_secs(60));

    let state_dir = sys.config_path(&["supervisor", "stateDir"]);
    let audit = sys.config_path(&["audit", "path"]);
    let check_no_leak = |sys: &System, grpc: &Grpc, when: &str| {
        for job in [&scheduled, &immediate] {
            let st = grpc_status(grpc, job);
            assert_eq!(
                st.secret_environment.get("API_TOKEN").map(String::as_str),
                Some("***"),
                "{when}: GetJobStatus"
            );
            let text = sys
                .rnx(&["--json", "job", "status", &job.id])
                .expect_ok("status")
                .stdout;
            assert!(
                !text.contains(&secret),
                "{when}: rnx job status shows the secret"
            );
        }
        let list = sys.rnx(&["--json", "job", "list"]).expect_ok("list").stdout;
        assert!(
            !list.contains(&secret),
            "{when}: rnx job list shows the secret"
        );
        let jobs = grpc
            .run(grpc.jobs().list_jobs(joblet_api_proto::EmptyRequest {}))
            .expect("ListJobs")
            .into_inner();
        assert!(
            jobs.jobs.iter().all(|j| j.secret_environment.is_empty()),
            "{when}: ListJobs carries secret environment"
        );
        assert!(
            !file_contains(&audit, secret.as_bytes()),
            "{when}: the audit log holds the secret"
        );
        let db_files = files_below(&state_dir);
        assert!(
            !db_files.is_empty(),
            "no stated files in {}",
            state_dir.display()
        );
        for f in db_files {
            assert!(
                !file_contains(&f, secret.as_bytes()),
                "{when}: {} holds the secret in clear",
                f.display()
            );
        }
    };
    check_no_leak(&sys, &grpc, "while scheduled");
    drop(grpc);

    // Debris of a crash in the staging area (no SCHEDULED job owns it) is swept at start.
    let data_dir = sys.config_path(&["supervisor", "dataDir"]);
    let stray = data_dir.join("uploads/00000000-0000-4000-8000-000000000000");
    std::fs::create_dir_all(stray.join("sub")).expect("stray dir");
    std::fs::write(stray.join("sub/leftover"), b"x").expect("stray file");
    let owner = std::fs::metadata(&data_dir).expect("data dir").uid();
    for p in [stray.parent().expect("uploads"), &stray, &stray.join("sub")] {
        nix::unistd::chown(p, Some(owner.into()), None).expect("chown");
    }
    nix::unistd::chown(&stray.join("sub/leftover"), Some(owner.into()), None).expect("chown");

    sys.restart();
    assert_eq!(
        sys.status(&scheduled)["status"],
        "SCHEDULED",
        "lost across the restart:\n{}",
        sys.log_text()
    );
    let st = sys.wait_done(&scheduled, Duration::from_secs(90));
    assert_eq!(st["status"], "COMPLETED", "{st}\n{}", sys.log_text());
    let out = String::from_utf8_lossy(&sys.logs(&scheduled)).into_owned();
    assert_eq!(
        out.trim(),
        format!("scheduled-got-{secret}"),
        "the job's secret"
    );
    let out = String::from_utf8_lossy(&sys.logs(&immediate)).into_owned();
    assert_eq!(out.trim(), format!("now-got-{secret}"));
    assert!(
        !stray.exists(),
        "stale staged uploads were not swept at start"
    );
    let grpc = sys.grpc();
    check_no_leak(&sys, &grpc, "after the run");
    drop(grpc);
    sys.stop();
}

#[test]
fn delete_all_removes_finished_jobs_only() {
    require_root!();
    let sys = System::start();
    let grpc = sys.grpc();
    let finished: Vec<Job> = (0..3)
        .map(|i| {
            let job = sys.run_job(&["sh", "-c", &format!("echo {i}; exit {i}")]);
            sys.wait_done(&job, Duration::from_secs(60));
            job
        })
        .collect();
    let running = sys.run_job(&["sleep", "300"]);
    let scheduled = grpc_run(&grpc, scheduled_in("true", &[], 3600));
    let delete_all = || {
        grpc.run(grpc.jobs().delete_all_jobs(DeleteAllJobsRequest {}))
            .expect("DeleteAllJobs")
            .into_inner()
    };
    let r = delete_all();
    assert!(r.success, "{r:?}");
    assert_eq!((r.deleted_count, r.skipped_count), (3, 2), "{r:?}");
    assert!(r.message.contains("deleted 3"), "{}", r.message);
    let mut left = vec![running.id.clone(), scheduled.id.clone()];
    left.sort();
    assert_eq!(listed_ids(&sys), left);
    for j in &finished {
        let out = sys.rnx(&["job", "log", &j.id]);
        assert!(!out.ok(), "logs of a deleted job are still served");
    }
    let r = delete_all();
    assert_eq!((r.deleted_count, r.skipped_count), (0, 2), "{r:?}");

    sys.rnx(&["job", "stop", &running.id]).expect_ok("stop");
    sys.wait_done(&running, Duration::from_secs(30));
    grpc.run(grpc.jobs().cancel_job(CancelJobRequest {
        uuid: scheduled.id.clone(),
    }))
    .expect("cancel");
    let r = delete_all();
    assert_eq!((r.deleted_count, r.skipped_count), (2, 0), "{r:?}");
    assert!(listed_ids(&sys).is_empty());
    drop(grpc);
    sys.stop();
}

/// Reads a metrics stream until `enough` says so or `limit` passes.
fn collect_metrics(
    grpc: &Grpc,
    job: &Job,
    limit: Duration,
    enough: impl Fn(&[JobMetricsEvent]) -> bool,
) -> Vec<JobMetricsEvent> {
    grpc.run(async {
        let mut stream = grpc
            .jobs()
            .stream_job_metrics(StreamJobMetricsRequest {
                job_uuid: job.id.clone(),
            })
            .await
            .expect("StreamJobMetrics")
            .into_inner();
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        while !enough(&got) {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Ok(Ok(Some(ev))) => got.push(ev),
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(e)) => panic!("metrics stream failed: {e:?}"),
            }
        }
        got
    })
}

#[test]
fn metrics_of_a_busy_job_show_its_cpu() {
    require_root!();
    let sys = System::start_with(|cfg| {
        *cfg = cfg.replace(
            "job_metrics_interval: \"5s\"",
            "job_metrics_interval: \"1s\"",
        );
    });
    let grpc = sys.grpc();
    let job = sys.run_job(&["sh", "-c", "while :; do :; done"]);
    let busy = |evs: &[JobMetricsEvent]| evs.iter().any(|e| e.cpu_percent > 20.0);
    let live = collect_metrics(&grpc, &job, Duration::from_secs(30), busy);
    assert!(
        busy(&live),
        "no busy sample in {live:?}\n{}",
        sys.log_text()
    );
    for e in &live {
        assert_eq!(e.job_uuid, job.id);
        assert!(e.memory_bytes > 0, "{e:?}");
        assert_eq!((e.gpu_percent, e.gpu_memory_bytes), (0.0, 0));
    }
    // Let the history span a sampling interval whatever the live read saw: the stop ends this
    // job at once (its PID 1 leaves SIGTERM at the default action, so the spawner kills it
    // without waiting out the grace period).
    std::thread::sleep(Duration::from_millis(1500));
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, Duration::from_secs(30));

    // History: every sample in time order; limits and ranges apply.
    let get = |start_time: i64, end_time: i64, limit: i32| -> Vec<JobMetricsEvent> {
        grpc.run(async {
            let mut s = grpc
                .jobs()
                .get_job_metrics(GetJobMetricsRequest {
                    job_uuid: job.id.clone(),
                    start_time,
                    end_time,
                    limit,
                })
                .await
                .expect("GetJobMetrics")
                .into_inner();
            let mut out = Vec::new();
            while let Some(e) = s.message().await.expect("GetJobMetrics stream") {
                out.push(e);
            }
            out
        })
    };
    let all = get(0, 0, 0);
    assert!(
        all.len() >= live.len(),
        "{} stored, {} seen live",
        all.len(),
        live.len()
    );
    assert!(
        all.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
        "out of order"
    );
    assert!(busy(&all));
    assert_eq!(get(0, 0, 1).len(), 1);
    let last = all.last().expect("samples").timestamp;
    assert!(get(last + 1, 0, 0).is_empty(), "samples after the last one");
    let first = all[0].timestamp;
    assert_eq!(get(first, first, 0).len(), 1, "a one-instant range");
    assert!(
        last - first >= S / 2,
        "samples span no time: {first}..{last}"
    );

    // Streaming a finished job gives its history and ends.
    let start = Instant::now();
    let again = collect_metrics(&grpc, &job, Duration::from_secs(20), |_| false);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "stream of a finished job did not end"
    );
    assert_eq!(again.len(), all.len());
    drop(grpc);
    sys.stop();
}

/// Reads a job's whole log: its bytes, and the `joblet-*` trailers the stream ended with.
fn read_log(grpc: &Grpc, job: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let read = grpc.run(async {
        let request = joblet_api_proto::GetJobLogsRequest { uuid: job.into() };
        let mut stream = grpc.jobs().get_job_logs(request).await?.into_inner();
        let mut output = Vec::new();
        while let Some(chunk) = stream.message().await? {
            output.extend(chunk.payload);
        }
        let trailers = stream.trailers().await?.unwrap_or_default();
        Ok::<_, tonic::Status>((output, trailers))
    });
    let (output, trailers) = read.expect("GetJobLogs");
    let mut ours: Vec<(String, String)> = trailers
        .into_headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("joblet-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    ours.sort();
    (output, ours)
}

/// A followed GetJobLogs ends with the job, not just with its output: its trailers carry the
/// final state, and as the stream ends one GetJobStatus (no polling) already shows it. Each
/// job closes its output 0.3 s before it exits, so a stream that ended with the output would
/// find it still RUNNING (and could tell no final state).
#[test]
fn a_followed_log_ends_once_the_job_has_ended() {
    require_root!();
    let sys = System::start();
    let grpc = sys.grpc();
    for i in 0..5 {
        let job = grpc_run(
            &grpc,
            RunJobRequest {
                command: "sh".into(),
                args: vec![
                    "-c".into(),
                    format!("sleep 0.2; echo run-{i}; exec >&- 2>&-; sleep 0.3; exit 7"),
                ],
                ..Default::default()
            },
        );
        let (output, trailers) = read_log(&grpc, &job.id);
        assert_eq!(output, format!("run-{i}\n").into_bytes());
        let told: Vec<(String, String)> = [
            ("joblet-end-detail", "exited with code 7"),
            ("joblet-end-reason", "exited"),
            ("joblet-exit-code", "7"),
            ("joblet-final-status", "FAILED"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        assert_eq!(trailers, told, "job {i}'s followed log");
        // A read of the ended job tells the same.
        assert_eq!(read_log(&grpc, &job.id), (output, told));
        let status = grpc_status(&grpc, &job);
        assert_eq!(
            status.status, "FAILED",
            "job {i} as its log ended: {status:?}"
        );
        assert_eq!(status.exit_code, 7, "job {i}: {status:?}");
    }
    // A job that closes its output and runs on: the stream ends (after a short wait for the
    // exit) without a final state, which the client must then ask for.
    let lingering = grpc_run(
        &grpc,
        RunJobRequest {
            command: "sh".into(),
            args: vec!["-c".into(), "echo bye; exec >&- 2>&-; sleep 3".into()],
            ..Default::default()
        },
    );
    assert_eq!(read_log(&grpc, &lingering.id), (b"bye\n".to_vec(), vec![]));
    assert_eq!(grpc_status(&grpc, &lingering).status, "RUNNING");
    sys.stop();
}
