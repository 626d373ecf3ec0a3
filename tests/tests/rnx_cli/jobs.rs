//! `job run|list|status|log|stop|delete` and `run --follow` against the real system, in
//! both output forms.

use std::time::Duration;

use joblet_tests::require_root;
use serde_json::Value;

use crate::support::{self, Checks, rnx, run_job, wait_done};

#[test]
fn run_status_log_list_in_text_and_json() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();

    let run = rnx(
        &sys,
        &[
            "job",
            "run",
            "--max-cpu=50",
            "--max-memory=64",
            "-e",
            "MODE=prod",
            "--env=SECOND=2",
            "-s",
            "TOKEN=hunter2",
            "--",
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; echo mode=$MODE token=$TOKEN",
        ],
    );
    c.exit(
        "job run",
        &run,
        0,
        &[
            "Job submitted:\nID: ",
            "Command: sh -c echo out-line;",
            "Status: ",
            "Environment: 2 variables set",
            "Secret Environment: 1 variables set",
        ],
    );
    let Some(id) = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ID: "))
        .map(str::to_owned)
    else {
        c.that(false, format!("no ID line: {}", run.stdout));
        return c.finish(sys);
    };
    let job = joblet_tests::Job { id: id.clone() };
    let done = wait_done(&mut c, &sys, &job, Duration::from_secs(60));
    c.that(
        done["status"] == "COMPLETED",
        format!("status json: {done}"),
    );

    // Status by a unique prefix, text: sections, masked secret, exit code, end reason.
    let st = rnx(&sys, &["job", "status", &id[..8]]);
    c.exit(
        "job status <prefix>",
        &st,
        0,
        &[
            &format!("Job ID: {id}"),
            "Status: COMPLETED",
            "Timing:",
            "Resource Limits:",
            "Max CPU: 50%",
            "Max Memory: 64 MB",
            "MODE=prod",
            "TOKEN=*** (secret)",
            "Exit Code: 0",
            "End Reason: exited",
        ],
    );
    c.that(!st.stdout.contains("hunter2"), "status shows the secret");

    // Status, JSON: Joblet's keys.
    let v = c.json(
        "job status --json",
        &rnx(&sys, &["--json", "job", "status", &id]).stdout,
    );
    c.that(v["uuid"] == id.as_str(), format!("uuid: {v}"));
    c.that(v["exitCode"] == 0, format!("exitCode: {v}"));
    c.that(
        v["maxCPU"] == 50 && v["maxMemory"] == 64,
        format!("limits: {v}"),
    );
    c.that(
        v["environment"]["MODE"] == "prod",
        format!("environment: {v}"),
    );
    c.that(
        v["secretEnvironment"]["TOKEN"] == "***",
        format!("secret: {v}"),
    );
    c.that(v["endReason"] == "exited", format!("endReason: {v}"));
    for key in [
        "command",
        "args",
        "startTime",
        "endTime",
        "nodeId",
        "workDir",
    ] {
        c.that(
            v.get(key).is_some(),
            format!("status json lacks {key}: {v}"),
        );
    }

    // The log: both streams, and the job saw its secret.
    let log = rnx(&sys, &["job", "log", &id]);
    c.exit(
        "job log",
        &log,
        0,
        &["out-line\n", "err-line\n", "mode=prod token=hunter2\n"],
    );
    let json_log = rnx(&sys, &["job", "log", &id, "--json"]);
    c.exit("job log --json", &json_log, 0, &[]);
    let mut joined = String::new();
    for line in json_log.stdout.lines() {
        let chunk = c.json("log line", line);
        c.that(
            chunk["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            format!("chunk timestamp: {chunk}"),
        );
        joined.push_str(chunk["data"].as_str().unwrap_or(""));
    }
    c.that(
        joined == log.stdout,
        format!("json chunks {joined:?} != {:?}", log.stdout),
    );

    // The list, text and JSON.
    let list = rnx(&sys, &["job", "list"]);
    c.exit(
        "job list",
        &list,
        0,
        &[&id, "COMPLETED", "sh -c echo out-line;"],
    );
    let header = list.stdout.lines().next().unwrap_or("");
    c.that(
        ["ID", "NODE ID", "STATUS", "START TIME", "COMMAND"]
            .iter()
            .all(|h| header.contains(h)),
        format!("list header: {header}"),
    );
    let listed = c.json(
        "job list --json",
        &rnx(&sys, &["job", "list", "--json"]).stdout,
    );
    let entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|j| j["id"] == id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    c.that(entry["status"] == "COMPLETED", format!("listed: {entry}"));
    c.that(entry["command"] == "sh", format!("listed command: {entry}"));
    c.that(
        entry.get("environment").is_none(),
        "list must not carry environments",
    );
    c.that(
        !listed.to_string().contains("hunter2"),
        "list shows the secret",
    );

    c.finish(sys);
}

#[test]
fn follow_exits_with_the_jobs_code() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();

    let out = rnx(
        &sys,
        &[
            "job",
            "run",
            "-f",
            "--",
            "sh",
            "-c",
            "echo followed; exit 3",
        ],
    );
    c.exit(
        "run -f (exit 3)",
        &out,
        3,
        &["Job submitted:", "FAILED (exit code 3"],
    );
    c.that(
        out.stdout == "followed\n",
        format!("stdout is the job's: {:?}", out.stdout),
    );

    let ok = rnx(&sys, &["job", "run", "--follow", "echo", "fine"]);
    c.exit("run --follow (exit 0)", &ok, 0, &["fine"]);

    let json = rnx(
        &sys,
        &["--json", "job", "run", "-f", "sh", "-c", "echo j; exit 4"],
    );
    c.that(
        json.code == 4,
        format!("run -f --json exit {}: {}", json.code, json.stderr),
    );
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| c.json("follow line", l))
        .collect();
    c.that(
        lines.first().is_some_and(|f| f["job_uuid"].is_string()),
        format!("first line is the submission: {lines:?}"),
    );
    c.that(
        lines
            .last()
            .is_some_and(|l| l["exit_code"] == 4 && l["status"] == "FAILED"),
        format!("last line is the end: {lines:?}"),
    );
    c.finish(sys);
}

#[test]
fn stop_and_delete_refuse_what_they_cannot_do() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let Some(job) = run_job(&mut c, &sys, &["sleep", "300"]) else {
        return c.finish(sys);
    };
    support::wait_for(&sys, &job, &["RUNNING"], Duration::from_secs(30));

    let busy = rnx(&sys, &["job", "delete", &job.id]);
    c.exit("delete a running job", &busy, 1, &[&job.id, "RUNNING"]);

    let stop = rnx(&sys, &["job", "stop", &job.id]);
    c.exit(
        "job stop",
        &stop,
        0,
        &[&format!(
            "Job stopped successfully:\nID: {}\nStatus: ",
            job.id
        )],
    );
    let st = wait_done(&mut c, &sys, &job, Duration::from_secs(30));
    c.that(st["status"] == "STOPPED", format!("after stop: {st}"));

    let again = rnx(&sys, &["job", "stop", &job.id]);
    c.exit("stop a stopped job", &again, 1, &[&job.id, "not running"]);

    let json = rnx(&sys, &["--json", "job", "delete", &job.id]);
    c.exit("job delete --json", &json, 0, &[]);
    let v = c.json("delete json", &json.stdout);
    c.that(
        v["uuid"] == job.id.as_str() && v["success"] == true,
        format!("delete json: {v}"),
    );
    let gone = rnx(&sys, &["job", "status", &job.id]);
    c.exit(
        "status of a deleted job",
        &gone,
        3,
        &[&format!("job {} not found", job.id)],
    );

    // A second job, deleted in text form.
    if let Some(short) = run_job(&mut c, &sys, &["true"]) {
        wait_done(&mut c, &sys, &short, Duration::from_secs(30));
        let del = rnx(&sys, &["job", "delete", &short.id]);
        c.exit(
            "job delete",
            &del,
            0,
            &[&format!("Job deleted successfully:\nID: {}", short.id)],
        );
    }
    c.finish(sys);
}
