//! A job is isolated and unprivileged, and its limits hold (issue 2, cases 1-3 and 8).

use std::time::{Duration, Instant};

use joblet_tests::{System, host, require_root};

/// Case 1: the shell is PID 1, only the job's processes are listed, the uid is 65534, the
/// hostname is not the host's, CapEff is 0 and NoNewPrivs is 1.
#[test]
fn the_job_is_pid_1_alone_unprivileged_and_named() {
    require_root!();
    let sys = System::start();
    let (st, out) = sys.run_to_end(&[
        "sh",
        "-c",
        "ps -e -o pid=,user=,comm=; echo UID=$(id -u); echo HOST=$(hostname); cat /proc/self/status",
    ]);
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}");
    let procs: Vec<(u32, String)> = out
        .lines()
        .take_while(|l| !l.starts_with("UID="))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().expect("pid"), f[f.len() - 1].to_owned())
        })
        .collect();
    assert_eq!(
        procs.iter().find(|(p, _)| *p == 1).map(|(_, c)| c.as_str()),
        Some("sh"),
        "PID 1 must be the shell: {procs:?}"
    );
    let names: Vec<&str> = procs.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        names.iter().all(|c| ["sh", "ps"].contains(c)) && procs.len() <= 3,
        "only the job's processes: {procs:?}"
    );
    assert!(out.contains("UID=65534"), "{out}");
    let host_name = nix::unistd::gethostname().expect("hostname");
    let job_host = line_value(&out, "HOST=");
    assert_ne!(job_host, host_name.to_string_lossy(), "hostname leaked");
    assert!(job_host.starts_with("job-"), "{job_host}");
    assert_eq!(status_line(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(status_line(&out, "CapPrm"), "0000000000000000", "{out}");
    assert_eq!(status_line(&out, "NoNewPrivs"), "1", "{out}");
    sys.stop();
}

/// Case 2: /usr is read-only; host files outside the allowed mounts are invisible; host
/// processes can be neither seen nor signalled.
#[test]
fn the_host_is_out_of_reach() {
    require_root!();
    let secret = tempfile::Builder::new()
        .prefix("joblet-e2e-secret-")
        .tempdir()
        .expect("tempdir");
    std::fs::write(secret.path().join("token"), "s3cr3t").expect("write");
    let victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn victim");
    let vpid = victim.id();
    let sys = System::start();
    let script = format!(
        "touch /usr/joblet-probe 2>/dev/null && echo USR=WRITABLE || echo USR=READONLY; \
         cat {dir}/token 2>/dev/null && echo SECRET=SEEN || echo SECRET=HIDDEN; \
         ls {dir} >/dev/null 2>&1 && echo DIR=SEEN || echo DIR=HIDDEN; \
         kill -9 {vpid} 2>/dev/null && echo KILL=DONE || echo KILL=REFUSED; \
         [ -e /proc/{vpid} ] && echo PROC=SEEN || echo PROC=HIDDEN; \
         echo NPROC=$(ls -d /proc/[0-9]* | wc -l)",
        dir = secret.path().display()
    );
    let (st, out) = sys.run_to_end(&["sh", "-c", &script]);
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}");
    for expected in [
        "USR=READONLY",
        "SECRET=HIDDEN",
        "DIR=HIDDEN",
        "KILL=REFUSED",
        "PROC=HIDDEN",
    ] {
        assert!(out.contains(expected), "expected {expected} in:\n{out}");
    }
    let nproc: u32 = line_value(&out, "NPROC=").parse().expect("count");
    assert!(nproc <= 4, "the job sees {nproc} processes:\n{out}");
    assert!(!std::path::Path::new("/usr/joblet-probe").exists());
    assert!(host::alive(host::Proc {
        pid: vpid as i32,
        start: host_start(vpid as i32),
    }));
    let mut victim = victim;
    victim.kill().ok();
    victim.wait().ok();
    sys.stop();
}

/// Case 3a: a job over --max-memory is killed and reported as OOM-killed.
#[test]
fn memory_limit_oom_kills_the_job_and_says_so() {
    require_root!();
    let sys = System::start();
    // `tail` keeps the current line in memory; /dev/zero never ends a line.
    let (st, out) = sys.run_to_end(&["--max-memory=32", "tail", "/dev/zero"]);
    assert_eq!(st["status"], "FAILED", "{st}\n{out}");
    assert_eq!(st["endReason"], "oom_killed", "{st}");
    assert_eq!(st["exitCode"], 137, "{st}");
    let human = sys.rnx(&["job", "status", &st["uuid"].as_str().unwrap()[..8]]);
    assert!(
        human.stdout.to_lowercase().contains("out of memory"),
        "{}",
        human.stdout
    );
    sys.stop();
}

/// Case 3b: a fork bomb stops at the pids limit and the host is unaffected.
#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    require_root!();
    let sys = System::start_with(|cfg| set_yaml(cfg, "defaultPidsLimit", "64"));
    // `exec` needs no fork, so PID 1 stays up while the bomb holds every pid of the limit.
    let job = sys.run_job(&["sh", "-c", "f() { f | f & }; f; exec sleep 300"]);
    let candidates: Vec<_> = host::cgroup_paths(&sys.cgroup_base)
        .into_iter()
        .map(|p| p.join(format!("job-{}", job.id)).join("pids.current"))
        .collect();
    let read_pids = || {
        candidates
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    let start = Instant::now();
    let mut peak = 0u32;
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(n) = read_pids() {
            peak = peak.max(n);
        }
        // The host can still fork.
        assert!(
            std::process::Command::new("true")
                .status()
                .expect("host fork")
                .success()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Which it was, if this fails: a job that ended early, or a cgroup not where expected.
    assert!(
        peak > 0,
        "never saw the job's pids.current in {candidates:?}; the job: {}",
        sys.status(&job)
    );
    assert!(peak <= 64, "pids.current reached {peak} over a limit of 64");
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop bomb");
    let st = sys.wait_done(&job, Duration::from_secs(30));
    assert!(st["status"] == "STOPPED", "{st}");
    sys.stop();
}

fn line_value(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{out}"))
        .trim()
        .to_owned()
}

fn status_line(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
        .trim()
        .to_owned()
}

fn host_start(pid: i32) -> u64 {
    host::descendants(pid)
        .first()
        .map(|p| p.start)
        .expect("process exists")
}

/// Sets `key: value` wherever `key:` appears in the generated YAML.
pub fn set_yaml(cfg: &mut String, key: &str, value: &str) {
    let mut found = false;
    *cfg = cfg
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with(&format!("{key}:")) {
                found = true;
                format!("{}{key}: {value}", &l[..l.len() - t.len()])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(found, "config has no {key}");
}
