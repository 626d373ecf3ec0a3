//! Uploads land in the work directory with their relative paths and modes; large ones show
//! a progress bar on a terminal; the server's size limit holds.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use joblet_tests::{System, require_root};

use crate::support::{self, Checks, rnx, run_job, wait_done};

#[test]
fn uploads_keep_paths_and_modes_and_show_progress() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let src = sys.dir.path().join("upload-src");
    let project = src.join("project");
    std::fs::create_dir_all(project.join("lib")).expect("mkdir");
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho ran-script\n").expect("write");
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::write(project.join("main.txt"), "main-content\n").expect("write");
    std::fs::write(project.join("lib").join("util.txt"), "util-content\n").expect("write");
    std::os::unix::fs::symlink("main.txt", project.join("alias.txt")).expect("symlink");

    let file = format!("--upload={}", src.join("run.sh").display());
    let dir = format!("--upload-dir={}", project.display());
    let script = "./run.sh; cat main.txt lib/util.txt alias.txt; \
                  stat -c '%a %n' run.sh lib; pwd";
    let run = rnx(&sys, &["job", "run", &file, &dir, "sh", "-c", script]);
    c.exit(
        "job run with uploads",
        &run,
        0,
        &["Uploading 4 files", "Files: 4 uploaded successfully"],
    );
    if let Some(id) = run.stdout.lines().find_map(|l| l.strip_prefix("ID: ")) {
        let job = joblet_tests::Job { id: id.to_owned() };
        let st = wait_done(&mut c, &sys, &job, Duration::from_secs(60));
        c.that(st["status"] == "COMPLETED", format!("upload job: {st}"));
        let uploads = st["uploads"].to_string();
        c.that(
            uploads.contains("run.sh") && uploads.contains("lib/util.txt"),
            format!("status lists the uploads: {uploads}"),
        );
        let log = rnx(&sys, &["job", "log", &job.id]);
        c.exit(
            "upload job log",
            &log,
            0,
            &[
                "ran-script\n",
                "main-content\nutil-content\nmain-content\n",
                "755 run.sh\n",
            ],
        );
    }

    // 3 MiB: a bar for reading and one for sending, on a terminal only.
    let big = sys.dir.path().join("big.bin");
    std::fs::write(&big, vec![0x5a_u8; 3 << 20]).expect("write");
    let upload_big = format!("--upload={}", big.display());
    let piped = rnx(
        &sys,
        &["job", "run", &upload_big, "sh", "-c", "wc -c big.bin"],
    );
    c.exit("large upload in a pipe", &piped, 0, &["Job submitted:"]);
    c.that(
        !piped.stderr.contains("Sending ["),
        format!("bar in a pipe: {}", piped.stderr),
    );
    match support::on_terminal(&sys, &sys.admin, &["job", "run", &upload_big, "true"]) {
        Some((code, text)) => {
            c.that(
                code == 0,
                format!("upload on a terminal exit {code}: {text}"),
            );
            c.that(
                text.contains("Reading [==============================] 100% 3.0/3.0 MiB"),
                format!("reading bar: {text:?}"),
            );
            c.that(
                text.contains("Sending [==============================] 100%"),
                format!("sending bar: {text:?}"),
            );
        }
        None => eprintln!("SKIPPED the terminal part: `script` (util-linux) is not installed"),
    }
    if let Some(id) = piped.stdout.lines().find_map(|l| l.strip_prefix("ID: ")) {
        let job = joblet_tests::Job { id: id.to_owned() };
        wait_done(&mut c, &sys, &job, Duration::from_secs(60));
        let log = rnx(&sys, &["job", "log", &job.id]);
        c.exit("large upload arrived whole", &log, 0, &["3145728 big.bin"]);
    }
    c.finish(sys);
}

#[test]
fn the_servers_upload_limit_is_enforced() {
    require_root!();
    let sys = System::start_with(|cfg| {
        let suite = support::suite_config(cfg);
        assert!(
            suite.contains("maxRecvMsgSize: 134217728"),
            "the generated config no longer sets grpc.maxRecvMsgSize:\n{suite}"
        );
        *cfg = suite.replace("maxRecvMsgSize: 134217728", "maxRecvMsgSize: 1048576");
    });
    let mut c = Checks::new();
    let big = sys.dir.path().join("two-mib.bin");
    std::fs::write(&big, vec![1u8; 2 << 20]).expect("write");
    let before = support::listed_ids(&sys, &sys.admin);
    let out = rnx(
        &sys,
        &["job", "run", &format!("--upload={}", big.display()), "true"],
    );
    c.that(
        out.code != 0,
        format!("a 2 MiB upload over a 1 MiB limit was accepted: {out:?}"),
    );
    c.that(
        out.stderr.to_lowercase().contains("upload") || out.stderr.contains("too large"),
        format!("the refusal says why: {}", out.stderr),
    );
    c.that(
        before == support::listed_ids(&sys, &sys.admin),
        "a refused upload created a job",
    );
    // Under the limit it works.
    let small = sys.dir.path().join("small.txt");
    std::fs::write(&small, "fits").expect("write");
    let upload_small = format!("--upload={}", small.display());
    if let Some(job) = run_job(&mut c, &sys, &[&upload_small, "cat", "small.txt"]) {
        wait_done(&mut c, &sys, &job, Duration::from_secs(60));
        c.exit(
            "small upload",
            &rnx(&sys, &["job", "log", &job.id]),
            0,
            &["fits"],
        );
    }
    c.finish(sys);
}
