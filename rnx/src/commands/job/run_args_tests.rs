use super::*;
use crate::error::Exit;

fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

fn run(s: &[&str]) -> RunArgs {
    match parse(&words(s)) {
        Ok(Parsed::Run(r)) => *r,
        other => panic!("{s:?} gave {other:?}"),
    }
}

fn err(s: &[&str]) -> CliError {
    match parse(&words(s)) {
        Err(e) => e,
        Ok(p) => panic!("{s:?} parsed as {p:?}"),
    }
}

#[test]
fn flags_before_the_command_and_none_after() {
    let r = run(&[
        "--max-cpu=50",
        "--max-memory=512",
        "python3",
        "app.py",
        "--max-cpu=9",
        "-e",
        "X=1",
    ]);
    assert_eq!(r.max_cpu, 50);
    assert_eq!(r.max_memory, 512);
    assert_eq!(r.command, "python3");
    assert_eq!(r.args, words(&["app.py", "--max-cpu=9", "-e", "X=1"]));
    assert!(r.env.is_empty());
}

#[test]
fn double_dash_starts_the_command() {
    let r = run(&["--max-iobps=1000", "--", "-weird", "--json"]);
    assert_eq!(r.max_iobps, 1000);
    assert_eq!(r.command, "-weird");
    assert_eq!(r.args, words(&["--json"]));
    assert!(!r.json);
}

#[test]
fn env_forms() {
    let r = run(&[
        "-e",
        "A=1",
        "--env=B=2",
        "--env",
        "C=x=y",
        "-e=D=",
        "-s",
        "TOKEN=t",
        "--secret-env=K=v",
        "-s=Z=z",
        "env",
    ]);
    let env: Vec<(&str, &str)> = r
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "1"), ("B", "2"), ("C", "x=y"), ("D", "")]);
    let secrets: Vec<&str> = r.secret_env.keys().map(String::as_str).collect();
    assert_eq!(secrets, ["K", "TOKEN", "Z"]);
    assert_eq!(r.secret_env["TOKEN"], "t");
}

#[test]
fn value_flags_accept_both_spellings() {
    let r = run(&[
        "--network",
        "none",
        "--volume=a",
        "--volume",
        "b",
        "--runtime=python-3.11",
        "--work-dir",
        "/work/x",
        "--timeout=2h30m",
        "--cpu-cores=0-1,4",
        "--schedule",
        "5min",
        "--upload=f.txt",
        "--upload-dir",
        "d",
        "--gpu=1",
        "--gpu-memory=8GB",
        "true",
    ]);
    assert_eq!(r.network, "none");
    assert_eq!(r.volumes, words(&["a", "b"]));
    assert_eq!(r.runtime, "python-3.11");
    assert_eq!(r.work_dir, "/work/x");
    assert_eq!(r.timeout, "2h30m");
    assert_eq!(r.cpu_cores, "0-1,4");
    assert_eq!(r.schedule, "5min");
    assert_eq!(r.uploads, [PathBuf::from("f.txt")]);
    assert_eq!(r.upload_dirs, [PathBuf::from("d")]);
    assert_eq!((r.gpu_count, r.gpu_memory_mb), (1, 8192));
    assert_eq!(r.command, "true");
}

#[test]
fn global_flags_inline_and_follow() {
    let r = run(&["--config=/c.yml", "--node", "prod", "--json", "-f", "echo"]);
    assert_eq!(r.config, Some(PathBuf::from("/c.yml")));
    assert_eq!(r.node.as_deref(), Some("prod"));
    assert!(r.json && r.follow);
    assert!(run(&["--follow", "echo"]).follow);
}

#[test]
fn bad_values_name_the_flag_and_exit_7() {
    for (args, flag) in [
        (&["--max-cpu=abc", "x"][..], "--max-cpu"),
        (&["--max-memory=-5", "x"][..], "--max-memory"),
        (&["--max-iobps=99999999999", "x"][..], "--max-iobps"),
        (&["--cpu-cores=0-a", "x"][..], "--cpu-cores"),
        (&["--cpu-cores=3-1", "x"][..], "--cpu-cores"),
        (&["--timeout=10", "x"][..], "--timeout"),
        (&["--timeout=1day", "x"][..], "--timeout"),
        (&["-e", "1BAD=x", "x"][..], "--env"),
        (&["-e", "NOEQ", "x"][..], "--env"),
        (&["-s", "secretvalue", "x"][..], "--secret-env"),
        (&["--network=", "x"][..], "--network"),
        (&["--gpu-memory=lots", "x"][..], "--gpu-memory"),
    ] {
        let e = err(args);
        assert_eq!(e.exit(), Exit::InvalidArgument, "{args:?}: {e}");
        assert!(e.to_string().starts_with(flag), "{args:?}: {e}");
    }
    assert!(
        !err(&["-s", "secretvalue", "x"])
            .to_string()
            .contains("secretvalue")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--frobnicate", "x"][..],
        &["-x", "ls"][..],
        &["--max-cpu"][..],
        &[][..],
        &["--max-cpu=5"][..],
        &["--"][..],
        &["--json=yes", "x"][..],
    ] {
        let e = err(args);
        assert_eq!(e.exit(), Exit::Usage, "{args:?}: {e}");
    }
    assert_eq!(
        err(&["--frobnicate=1", "x"])
            .to_string()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>(),
        ["unknown", "flag:", "--frobnicate"]
    );
}

#[test]
fn help_before_the_command_only() {
    assert_eq!(
        parse(&words(&["--max-cpu=5", "--help"])).unwrap(),
        Parsed::Help
    );
    assert_eq!(parse(&words(&["-h"])).unwrap(), Parsed::Help);
    assert_eq!(run(&["grep", "-h", "x"]).args, words(&["-h", "x"]));
}

#[test]
fn last_value_wins_and_repeats_are_warned() {
    let r = run(&[
        "--max-cpu=10",
        "--max-cpu=20",
        "-e",
        "A=1",
        "-e",
        "A=2",
        "-e",
        "PATH=/x",
        "x",
    ]);
    assert_eq!(r.max_cpu, 20);
    assert_eq!(r.env["A"], "2");
    assert!(
        r.warnings.iter().any(|w| w.contains("A given twice")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("PATH")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn zero_means_server_default_and_sizes_parse() {
    let r = run(&["--max-cpu=0", "--gpu-memory=1024MB", "x"]);
    assert_eq!(r.max_cpu, 0);
    assert_eq!(r.gpu_memory_mb, 1024);
    assert_eq!(run(&["--gpu-memory=2048", "x"]).gpu_memory_mb, 2048);
    assert_eq!(run(&["--gpu-memory=2g", "x"]).gpu_memory_mb, 2048);
}
