//! `--schedule`, `job cancel` and `job delete-all`.

use std::time::Duration;

use joblet_tests::require_root;
use serde_json::Value;

use crate::support::{self, Checks, listed_ids, rnx, run_job, wait_done, wait_for};

#[test]
fn scheduled_jobs_wait_run_on_time_or_are_canceled() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();

    // Text output of a scheduled submission.
    let out = rnx(&sys, &["job", "run", "--schedule=1h", "echo", "later"]);
    c.exit(
        "run --schedule=1h",
        &out,
        0,
        &["Job submitted:", "Status: SCHEDULED", "Scheduled: 1h ("],
    );
    let later = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ID: "))
        .map(|id| joblet_tests::Job { id: id.to_owned() });

    if let Some(job) = &later {
        let st = rnx(&sys, &["job", "status", &job.id]);
        c.exit(
            "status of a scheduled job",
            &st,
            0,
            &[
                "Status: SCHEDULED",
                "Scheduled Time:",
                "Time Until Execution:",
            ],
        );
        c.that(
            !st.stdout.contains("Exit Code:"),
            "a scheduled job shows an exit code",
        );
        let list = rnx(&sys, &["job", "list"]);
        c.exit("list shows it SCHEDULED", &list, 0, &[&job.id, "SCHEDULED"]);

        let cancel = rnx(&sys, &["job", "cancel", &job.id[..8]]);
        c.exit(
            "job cancel",
            &cancel,
            0,
            &[&format!(
                "Scheduled job canceled successfully:\nID: {}\nStatus: CANCELED",
                job.id
            )],
        );
        let st = support::status(&sys, job);
        c.that(st["status"] == "CANCELED", format!("after cancel: {st}"));
        let again = rnx(&sys, &["job", "cancel", &job.id]);
        c.exit("cancel a canceled job", &again, 1, &[&job.id]);
    }

    // JSON form of cancel.
    if let Some(job) = run_job(&mut c, &sys, &["--schedule=30min", "true"]) {
        let out = rnx(&sys, &["--json", "job", "cancel", &job.id]);
        c.exit("job cancel --json", &out, 0, &[]);
        let v = c.json("cancel json", &out.stdout);
        c.that(
            v["canceled"] == true && v["job_id"] == job.id.as_str() && v["status"] == "CANCELED",
            format!("cancel json: {v}"),
        );
        c.that(
            v["message"].is_string(),
            format!("cancel json message: {v}"),
        );
    }

    // A running job cannot be canceled; the message says how to stop it.
    if let Some(job) = run_job(&mut c, &sys, &["sleep", "300"]) {
        wait_for(&sys, &job, &["RUNNING"], Duration::from_secs(30));
        let out = rnx(&sys, &["job", "cancel", &job.id]);
        c.exit("cancel a running job", &out, 1, &[&job.id, "rnx job stop"]);
        rnx(&sys, &["job", "stop", &job.id]);
        wait_done(&mut c, &sys, &job, Duration::from_secs(30));
    }

    // A job due in two seconds waits, then runs on time.
    if let Some(job) = run_job(&mut c, &sys, &["--schedule=2s", "echo", "on-time"]) {
        let first = support::status(&sys, &job);
        c.that(
            first["status"] == "SCHEDULED",
            format!("before its time: {first}"),
        );
        let st = wait_done(&mut c, &sys, &job, Duration::from_secs(30));
        c.that(st["status"] == "COMPLETED", format!("scheduled job: {st}"));
        c.exit(
            "its log",
            &rnx(&sys, &["job", "log", &job.id]),
            0,
            &["on-time"],
        );
    }
    c.finish(sys);
}

#[test]
fn delete_all_removes_finished_jobs_only() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let mut finished = Vec::new();
    for word in ["a", "b"] {
        if let Some(job) = run_job(&mut c, &sys, &["echo", word]) {
            wait_done(&mut c, &sys, &job, Duration::from_secs(60));
            finished.push(job.id);
        }
    }
    if let Some(job) = run_job(&mut c, &sys, &["sh", "-c", "exit 2"]) {
        wait_done(&mut c, &sys, &job, Duration::from_secs(60));
        finished.push(job.id);
    }
    let running = run_job(&mut c, &sys, &["sleep", "300"]);
    let scheduled = run_job(&mut c, &sys, &["--schedule=1h", "true"]);
    let kept: Vec<String> = running
        .iter()
        .chain(scheduled.iter())
        .map(|j| j.id.clone())
        .collect();

    let out = rnx(&sys, &["job", "delete-all"]);
    c.exit(
        "job delete-all",
        &out,
        0,
        &[
            "Jobs deleted successfully:",
            &format!("Deleted count: {}\n", finished.len()),
            &format!("Skipped count: {} (running/scheduled)", kept.len()),
        ],
    );
    let left = listed_ids(&sys, &sys.admin);
    let mut sorted_kept = kept.clone();
    sorted_kept.sort();
    let mut sorted_left = left.clone();
    sorted_left.sort();
    c.that(
        sorted_left == sorted_kept,
        format!("left {left:?}, want only {kept:?}"),
    );
    for id in &finished {
        let out = rnx(&sys, &["job", "log", id]);
        c.exit("log of a deleted job", &out, 3, &["not found"]);
    }

    let json = rnx(&sys, &["--json", "job", "delete-all"]);
    c.exit("job delete-all --json", &json, 0, &[]);
    let v: Value = c.json("delete-all json", &json.stdout);
    c.that(
        v["success"] == true && v["deleted_count"] == 0 && v["skipped_count"] == kept.len(),
        format!("delete-all json: {v}"),
    );
    if let Some(job) = &running {
        rnx(&sys, &["job", "stop", &job.id]);
        wait_done(&mut c, &sys, job, Duration::from_secs(30));
    }
    if let Some(job) = &scheduled {
        rnx(&sys, &["job", "cancel", &job.id]);
    }
    c.finish(sys);
}
