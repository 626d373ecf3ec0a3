//! Every kind of bad input gets a message naming what was wrong and its documented exit
//! code, and nothing is created by a refused request.

use std::time::Duration;

use joblet_tests::require_root;

use crate::support::{self, Checks, listed_ids, rnx, run_job, wait_done};

#[test]
fn unknown_ambiguous_and_malformed_job_ids() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let unknown = "0badc0de-0000-4000-8000-000000000000";
    for cmd in ["status", "log", "stop", "delete", "cancel", "metrics"] {
        let out = rnx(&sys, &["job", cmd, unknown]);
        c.exit(
            &format!("job {cmd} <unknown>"),
            &out,
            3,
            &[&format!("job {unknown} not found")],
        );
    }
    let out = rnx(&sys, &["job", "status", "../etc"]);
    c.exit("job status ../etc", &out, 7, &["invalid uuid", "../etc"]);

    // Jobs until two share a first hex digit (at most 17, by pigeonhole).
    let mut ids: Vec<String> = Vec::new();
    let shared = loop {
        let Some(job) = run_job(&mut c, &sys, &["true"]) else {
            return c.finish(sys);
        };
        let first = job.id[..1].to_string();
        if ids.iter().any(|i| i.starts_with(&first)) {
            break first;
        }
        ids.push(job.id);
    };
    let out = rnx(&sys, &["job", "status", &shared]);
    c.exit("ambiguous prefix", &out, 7, &["ambiguous", &shared]);
    // A prefix no job has: the first digit no listed id starts with.
    let listed = listed_ids(&sys, &sys.admin);
    if let Some(free) = "0123456789abcdef"
        .chars()
        .map(String::from)
        .find(|d| !listed.iter().any(|i| i.starts_with(d.as_str())))
    {
        let out = rnx(&sys, &["job", "status", &free]);
        c.exit(
            "unknown prefix",
            &out,
            3,
            &[&format!("job {free} not found")],
        );
    }
    c.finish(sys);
}

#[test]
fn bad_flags_limits_and_schedules_are_refused_by_name() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let before = listed_ids(&sys, &sys.admin);

    // Refused by rnx before any request: (flags, exit code, words the error must hold).
    let client_side: &[(&[&str], i32, &[&str])] = &[
        (
            &["--max-cpu=abc"],
            7,
            &["--max-cpu: 'abc' is not a whole number"],
        ),
        (&["--max-memory=-1"], 7, &["--max-memory: -1 is negative"]),
        (&["--max-iobps=1e9"], 7, &["--max-iobps:"]),
        (&["--max-cpu=99999999999"], 7, &["--max-cpu:", "too large"]),
        (&["--cpu-cores=3-1"], 7, &["--cpu-cores:", "3-1"]),
        (&["--cpu-cores=all"], 7, &["--cpu-cores:", "all"]),
        (&["--timeout=soon"], 7, &["--timeout:"]),
        (&["-e", "NOEQUALS"], 7, &["--env:", "NOEQUALS"]),
        (
            &["--schedule=whenever"],
            7,
            &["--schedule: 'whenever' is neither a time nor a delay"],
        ),
        (
            &["--schedule=9999h"],
            7,
            &["--schedule:", "between 1 second and 365 days"],
        ),
        (&["--bogus"], 2, &["unknown flag: --bogus"]),
    ];
    for (flags, code, needles) in client_side {
        let mut args = vec!["job", "run"];
        args.extend_from_slice(flags);
        args.push("true");
        let out = rnx(&sys, &args);
        c.exit(&format!("job run {flags:?}"), &out, *code, needles);
    }
    let usage: &[(&[&str], &str)] = &[
        (&["job", "run"], "missing the command"),
        (&["job", "run", "--max-cpu"], "--max-cpu needs a value"),
        (&["job", "list", "--bogus"], "--bogus"),
        (&["job", "frob"], "frob"),
        (&["job", "status"], "UUID"),
        (&["monitor", "top", "--bogus"], "--bogus"),
    ];
    for (args, needle) in usage {
        let out = rnx(&sys, args);
        c.exit(&format!("rnx {args:?}"), &out, 2, &[needle]);
    }

    // Refused by the server: a CPU this host does not have, paths that are not absolute
    // or climb out, and a GPU on a host without one.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let missing_cpu = format!("--cpu-cores={}", cpus + 7);
    let server_side: &[(&str, &[&str])] = &[
        (&missing_cpu, &["cpu"]),
        ("--work-dir=relative/dir", &["work"]),
        ("--work-dir=/work/../etc", &["work", ".."]),
        ("--gpu=1", &["GPU"]),
        ("--network=no such net", &["network"]),
    ];
    for (flag, needles) in server_side {
        let out = rnx(&sys, &["job", "run", flag, "true"]);
        c.exit(&format!("job run {flag}"), &out, 7, needles);
    }
    let after = listed_ids(&sys, &sys.admin);
    c.that(
        before == after,
        format!("refused requests created jobs: before {before:?}, after {after:?}"),
    );
    c.finish(sys);
}

#[test]
fn refused_uploads_name_the_path() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let before = listed_ids(&sys, &sys.admin);
    let dir = sys.dir.path().join("uploads-bad");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    std::fs::write(dir.join("outside.txt"), "secret").expect("write");
    std::fs::write(tree.join("ok.txt"), "ok").expect("write");

    let missing = format!("--upload={}", dir.join("nope.txt").display());
    let out = rnx(&sys, &["job", "run", &missing, "true"]);
    c.exit(
        "missing upload",
        &out,
        7,
        &["--upload: cannot read", "nope.txt"],
    );

    std::os::unix::fs::symlink("../outside.txt", tree.join("escape")).expect("symlink");
    let upload_dir = format!("--upload-dir={}", tree.display());
    let out = rnx(&sys, &["job", "run", &upload_dir, "true"]);
    c.exit(
        "link leading out of an upload",
        &out,
        7,
        &["--upload-dir: refusing", "escape", "outside"],
    );
    std::fs::remove_file(tree.join("escape")).expect("rm");

    nix::unistd::mkfifo(
        &tree.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let out = rnx(&sys, &["job", "run", &upload_dir, "true"]);
    c.exit("FIFO in an upload", &out, 7, &["refusing", "pipe", "FIFO"]);
    std::fs::remove_file(tree.join("pipe")).expect("rm");

    let huge = dir.join("huge.img");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(101 << 20))
        .expect("sparse file");
    let big = format!("--upload={}", huge.display());
    let out = rnx(&sys, &["job", "run", &big, "true"]);
    c.exit("upload over 100 MiB", &out, 7, &["100 MiB"]);

    let after = listed_ids(&sys, &sys.admin);
    c.that(
        before == after,
        format!("refused uploads created jobs: {after:?}"),
    );

    // `..` and absolute paths on the command line only name local files: what lands in the
    // workspace is the base name, never a path outside it.
    let dotted = format!("--upload={}", tree.join("..").join("outside.txt").display());
    let absolute = format!("--upload={}", tree.join("ok.txt").display());
    if let Some(job) = run_job(
        &mut c,
        &sys,
        &[&dotted, &absolute, "sh", "-c", "ls; cat outside.txt ok.txt"],
    ) {
        wait_done(&mut c, &sys, &job, Duration::from_secs(60));
        let log = rnx(&sys, &["job", "log", &job.id]);
        c.exit(
            "uploads by .. and absolute paths",
            &log,
            0,
            &["outside.txt\n", "ok.txt\n", "secretok"],
        );
    }
    c.finish(sys);
}
