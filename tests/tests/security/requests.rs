//! Hostile requests from clients: upload paths and work directories that climb out with
//! `..` or symlinks, daemon control variables in the environment. They are tried through
//! rnx (which may refuse them itself) and raw over gRPC (so the server's own checks are
//! tested too).

use std::collections::HashMap;
use std::path::Path;

use joblet_api_proto::{FileUpload, RunJobRequest};
use joblet_tests::hostile::{assert_lines, nonce, sh_job};
use joblet_tests::{System, require_root};

use super::common::job_count;

/// Sends `req` (command `true` unless set) as a raw RunJob; returns the refusal as
/// `(gRPC code, message)`, or panics if the server accepted it.
fn refused(sys: &System, what: &str, mut req: RunJobRequest) -> (tonic::Code, String) {
    if req.command.is_empty() {
        req.command = "true".into();
    }
    let g = sys.grpc();
    match g.run(g.jobs().run_job(req)) {
        Ok(r) => panic!("{what} was accepted: job {}", r.into_inner().job_uuid),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// Panics unless `req` is refused with INVALID_ARGUMENT and a message naming `name`.
fn assert_invalid_naming(sys: &System, what: &str, req: RunJobRequest, name: &str) {
    let (code, message) = refused(sys, what, req);
    assert_eq!(code, tonic::Code::InvalidArgument, "{what}: {message}");
    assert!(
        message.contains(name),
        "{what}: the refusal does not name {name:?}: {message}"
    );
}

fn env(key: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_owned(), value.to_owned())])
}

/// Case: upload paths that climb out of the work directory (`..`, absolute, `.`, empty
/// parts), sent raw to the server: refused naming the path; no file appears on the host; no
/// job is made.
#[test]
fn upload_paths_escaping_the_work_directory_are_refused() {
    require_root!();
    let tag = nonce();
    let target = format!("/tmp/joblet-evil-{tag}");
    let sys = System::start();
    let jobs = job_count(&sys);
    let paths = [
        format!("../../../../../..{target}"),
        target.clone(),
        format!("sub/../../../../../..{target}"),
        format!("./{tag}"),
        format!("sub//{tag}"),
    ];
    for p in &paths {
        let req = RunJobRequest {
            uploads: vec![FileUpload {
                path: p.clone(),
                content: b"pwned".to_vec(),
                mode: 0o4755,
                is_directory: false,
            }],
            ..Default::default()
        };
        assert_invalid_naming(&sys, &format!("upload {p:?}"), req, p);
    }
    assert!(
        !Path::new(&target).exists(),
        "the upload was written to {target}"
    );
    assert_eq!(job_count(&sys), jobs, "a refused request made a job");
    sys.stop();
}

/// Case: a work directory with `..` and the daemon's control variables, sent raw: refused
/// by the server naming the path or the variable.
#[test]
fn raw_requests_with_dotdot_work_dirs_or_control_variables_are_refused() {
    require_root!();
    let sys = System::start();
    let jobs = job_count(&sys);
    for dir in ["/work/../etc", "../etc", "/work/./x"] {
        let req = RunJobRequest {
            work_dir: dir.into(),
            ..Default::default()
        };
        assert_invalid_naming(&sys, &format!("work_dir {dir:?}"), req, dir);
    }
    for key in ["JOB_ID", "JOBLET_MODE", "JOBLET_SPAWNER_SOCKET"] {
        let req = RunJobRequest {
            environment: env(key, "x"),
            ..Default::default()
        };
        assert_invalid_naming(&sys, &format!("environment {key}"), req, key);
        let req = RunJobRequest {
            secret_environment: env(key, "x"),
            ..Default::default()
        };
        assert_invalid_naming(&sys, &format!("secret environment {key}"), req, key);
    }
    assert_eq!(job_count(&sys), jobs, "a refused request made a job");
    sys.stop();
}

/// Case: `rnx job run --work-dir=/work/../etc` (and friends): refused naming the path.
#[test]
fn work_dirs_climbing_out_are_refused_by_rnx() {
    require_root!();
    let sys = System::start();
    let jobs = job_count(&sys);
    for dir in ["/work/../etc", "/work/../../", "../etc", "/work/./.."] {
        let flag = format!("--work-dir={dir}");
        let out = sys.rnx(&["job", "run", &flag, "true"]);
        assert_ne!(out.code, 0, "{flag} was accepted: {}", out.stdout);
        assert!(
            out.stderr.contains(dir),
            "{flag}: the refusal does not name the path: {}",
            out.stderr
        );
    }
    assert_eq!(job_count(&sys), jobs, "a refused request made a job");
    sys.stop();
}

/// Case: override control variables with `--env`/`--secret-env` (`JOB_ID`, `JOBLET_*`):
/// refused; and a job's environment is exactly what was asked plus PATH, HOME, HOSTNAME
/// and JOB_ID, while `JOB_TYPE=runtime-build` (the Go original's root switch) is inert.
#[test]
fn control_variables_cannot_be_set_and_the_environment_is_exact() {
    require_root!();
    let sys = System::start();
    let jobs = job_count(&sys);
    for (flag, key) in [
        ("--env", "JOB_ID"),
        ("--env", "JOBLET_MODE"),
        ("--env", "JOBLET_SPAWNER_SOCKET"),
        ("--secret-env", "JOBLET_TOKEN"),
        ("--secret-env", "JOB_ID"),
    ] {
        let arg = format!("{flag}={key}=x");
        let out = sys.rnx(&["job", "run", &arg, "true"]);
        assert_ne!(out.code, 0, "{arg} was accepted");
        assert!(out.stderr.contains(key), "{arg}: {}", out.stderr);
    }
    assert_eq!(job_count(&sys), jobs, "a refused request made a job");
    let job = sys.start_job(
        &[
            "--env=GREETING=hi there",
            "--env=JOB_TYPE=runtime-build",
            "--secret-env=TOKEN=s3cr3t",
        ],
        &sh_job(
            "tr '\\0' '\\n' < /proc/1/environ | sort | sed 's/^/ENV /'; echo UID=$(id -u); \
             grep CapEff /proc/self/status | tr -d '\\t' | sed 's/:/=/'",
        ),
    );
    sys.wait_done(&job, super::common::WAIT);
    let out = String::from_utf8_lossy(&sys.logs(&job)).into_owned();
    let mut env: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ENV ")).collect();
    env.sort_unstable();
    let host = format!("HOSTNAME=job-{}", &job.id[..8]);
    let id = format!("JOB_ID={}", job.id);
    let mut want = vec![
        "GREETING=hi there",
        "HOME=/work",
        host.as_str(),
        id.as_str(),
        "JOB_TYPE=runtime-build",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TOKEN=s3cr3t",
    ];
    want.sort_unstable();
    assert_eq!(
        env, want,
        "the job's environment is not exactly the asked one:\n{out}"
    );
    assert_lines(&out, &["UID=65534", "CapEff=0000000000000000"]);
    sys.stop();
}

/// Case: symlinks in an upload directory (to a host secret, to `/etc`, climbing `..`):
/// rnx refuses the upload naming the link, so nothing of the host leaves it; no job is made.
#[test]
fn symlinks_out_of_an_upload_directory_are_refused() {
    require_root!();
    let secret_dir = tempfile::Builder::new()
        .prefix("joblet-e2e-secret-")
        .tempdir()
        .expect("tempdir");
    let secret_file = secret_dir.path().join("token");
    std::fs::write(&secret_file, format!("s3cr3t-{}", nonce())).expect("secret");
    let sys = System::start();
    let jobs = job_count(&sys);
    let links: [(&str, &Path); 3] = [
        ("leak", &secret_file),
        ("etc-link", Path::new("/etc")),
        ("sub/up", Path::new("../../../../../..")),
    ];
    for (name, target) in links {
        let up = tempfile::Builder::new()
            .prefix("joblet-e2e-upload-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(up.path().join("ok.txt"), "fine").expect("write");
        std::fs::create_dir(up.path().join("sub")).expect("mkdir");
        let link = up.path().join(name);
        std::os::unix::fs::symlink(target, &link).expect("symlink");
        let flag = format!("--upload-dir={}", up.path().display());
        let out = sys.rnx(&["job", "run", &flag, "true"]);
        assert_ne!(out.code, 0, "{name} -> {} was uploaded", target.display());
        assert!(
            out.stderr.contains(&link.display().to_string()),
            "the refusal does not name {}: {}",
            link.display(),
            out.stderr
        );
    }
    assert_eq!(job_count(&sys), jobs, "a refused upload made a job");
    sys.stop();
}
