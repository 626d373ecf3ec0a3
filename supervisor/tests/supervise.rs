//! The supervisor managing real processes: the real `joblet` binary runs the test helper under
//! the four helper names (the real helpers are tested end to end by the workspace suite).
//! Root only: the helpers are started under their own uids.

mod common;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{HELPERS, Instance, SOCKETS, alive, ppid, replace_once, skip_unless_root, wait_for};
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn connects(path: &Path) -> bool {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).is_ok()
}

fn uid_of(report: &BTreeMap<String, String>) -> u32 {
    report["Uid"].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn helpers_start_with_their_identity_fds_and_sockets_then_stop_in_order() {
    if skip_unless_root() {
        return;
    }
    let mut inst = Instance::new(|t| t);
    inst.start();
    let sup = inst.pid();
    let r: BTreeMap<&str, _> = HELPERS
        .iter()
        .map(|h| (*h, inst.wait_report(h, |_| true)))
        .collect();

    // Identities: three unprivileged users sharing one group, the spawner root.
    let (api, persistd, stated) = (
        uid_of(&r["joblet-api"]),
        uid_of(&r["joblet-persistd"]),
        uid_of(&r["joblet-stated"]),
    );
    assert!(api != 0 && persistd != 0 && stated != 0);
    assert!(api != persistd && persistd != stated && api != stated);
    let group = r["joblet-api"]["Groups"].parse::<u32>().unwrap();
    for h in ["joblet-api", "joblet-persistd", "joblet-stated"] {
        let rep = &r[h];
        let uid = uid_of(rep);
        assert_eq!(
            rep["Uid"],
            format!("{uid} {uid} {uid} {uid}"),
            "{h}: real/effective/saved/fs"
        );
        assert_eq!(
            rep["Gid"],
            format!("{group} {group} {group} {group}"),
            "{h}"
        );
        assert_eq!(rep["Groups"], group.to_string(), "{h}");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(rep[cap], "0000000000000000", "{h} {cap}");
        }
    }
    let spawner = &r["joblet-spawner"];
    assert_eq!(uid_of(spawner), 0);
    assert_ne!(
        spawner["CapEff"], "0000000000000000",
        "the spawner keeps its capabilities"
    );
    assert_eq!(spawner["CapAmb"], "0000000000000000");

    // Every helper: started by us, hardened, minimal environment, exactly its fds.
    for (h, fds) in [
        ("joblet-stated", "0,1,2,3,4"),
        ("joblet-persistd", "0,1,2,3,4,5"),
        ("joblet-spawner", "0,1,2,3,4"),
        ("joblet-api", "0,1,2,3,4"),
    ] {
        let rep = &r[h];
        assert_eq!(rep["ppid"], sup.to_string(), "{h}");
        assert_eq!(rep["argv"], format!("{h} --settings-fd 3"), "{h}");
        assert_eq!(rep["fds"], fds, "{h}");
        assert_eq!(rep["env"], "PATH", "{h}");
        assert_eq!(rep["NoNewPrivs"], "1", "{h}");
        assert_eq!(rep["pdeathsig"], "15", "{h}");
        assert_eq!(
            rep["SigBlk"], "0000000000000000",
            "{h}: signal mask inherited"
        );
        assert_eq!(rep["settings"], "ok", "{h}");
    }
    // Listeners and peer uids as the channel map says.
    let run = inst.dir.join("run");
    assert_eq!(
        r["joblet-stated"]["listen.4"],
        format!("state,SeqPacket,true,{}", run.join("stated.sock").display())
    );
    assert_eq!(
        r["joblet-persistd"]["listen.4"],
        format!(
            "output,SeqPacket,true,{}",
            run.join("persistd-output.sock").display()
        )
    );
    assert_eq!(
        r["joblet-persistd"]["listen.5"],
        format!(
            "logs,SeqPacket,true,{}",
            run.join("persistd.sock").display()
        )
    );
    assert_eq!(
        r["joblet-spawner"]["listen.4"],
        format!(
            "spawner,SeqPacket,true,{}",
            run.join("spawner.sock").display()
        )
    );
    let tcp = &r["joblet-api"]["listen.4"];
    assert!(tcp.starts_with("tcp,Stream,true,127.0.0.1:"), "{tcp}");
    let port = tcp.rsplit(':').next().unwrap();
    assert_eq!(r["joblet-api"]["address"], format!("127.0.0.1:{port}"));
    std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    for h in ["joblet-stated", "joblet-persistd", "joblet-spawner"] {
        assert_eq!(r[h]["api_uid"], api.to_string(), "{h}");
    }
    assert_eq!(r["joblet-persistd"]["spawner_uid"], "0");
    assert_eq!(r["joblet-api"]["key_is_pem"], "true");

    // Directories and sockets: narrowest owner and mode.
    assert_eq!(owner_mode(&run), (0, group, 0o750));
    assert_eq!(owner_mode(&run.join("spawner")), (0, 0, 0o700));
    assert_eq!(owner_mode(&inst.dir.join("state")), (stated, group, 0o700));
    assert_eq!(owner_mode(&inst.dir.join("logs")), (persistd, group, 0o700));
    assert_eq!(owner_mode(&inst.dir.join("data")), (api, group, 0o700));
    assert_eq!(
        owner_mode(&inst.dir.join("audit/audit.log")),
        (api, group, 0o600)
    );
    for s in SOCKETS {
        let p = run.join(s);
        assert!(
            std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_socket(),
            "{s}"
        );
        assert_eq!(owner_mode(&p), (0, group, 0o660), "{s}");
        assert!(connects(&p), "{s}");
    }
    assert!(inst.log_text().contains("cgroup v"), "{}", inst.log_text());

    // Stop: in order, everything gone, exit 0.
    inst.signal(Signal::SIGTERM);
    let status = inst.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", inst.log_text());
    inst.wait_notice("STOPPING=1", Duration::from_secs(1));
    let stopped = |h: &str| -> u128 {
        std::fs::read_to_string(inst.helper_dir(h).join("stopped"))
            .unwrap_or_else(|_| panic!("{h} got no SIGTERM:\n{}", inst.log_text()))
            .parse()
            .unwrap()
    };
    let order = [
        "joblet-spawner",
        "joblet-api",
        "joblet-persistd",
        "joblet-stated",
    ];
    for pair in order.windows(2) {
        assert!(
            stopped(pair[0]) < stopped(pair[1]),
            "{} before {}",
            pair[0],
            pair[1]
        );
    }
    for h in HELPERS {
        let pid: u32 = r[h]["pid"].parse().unwrap();
        assert!(!alive(pid), "{h} ({pid}) still alive");
    }
    for s in SOCKETS {
        assert!(!run.join(s).exists(), "{s} left behind");
    }
}

#[test]
fn killed_and_crashing_helpers_are_restarted_on_the_same_socket() {
    if skip_unless_root() {
        return;
    }
    let mut inst = Instance::new(|t| t);
    inst.start();
    let socket = inst.dir.join("run/persistd.sock");
    let ino = std::fs::metadata(&socket).unwrap().ino();

    // SIGKILL: restarted, with the very same listening socket.
    let first = inst.wait_report("joblet-persistd", |_| true);
    let old_pid: i32 = first["pid"].parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), Signal::SIGKILL).unwrap();
    let second = inst.wait_report("joblet-persistd", |r| r["pid"] != first["pid"]);
    assert_eq!(second["listen.5"], first["listen.5"]);
    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        ino,
        "socket was recreated"
    );
    assert!(connects(&socket));
    assert_eq!(second["ppid"], inst.pid().to_string());

    // A helper that keeps exiting is restarted again and again, at growing delays capped
    // at maxBackoff (100ms doubling to 400ms here).
    let dir = inst.helper_dir("joblet-stated");
    std::fs::write(dir.join("exit-code"), "3").unwrap();
    let pid: i32 = inst.wait_report("joblet-stated", |_| true)["pid"]
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let starts = || {
        std::fs::read_to_string(dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = starts();
    let t0 = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || (starts() >= before + 6)
            .then_some(()))
        .is_some(),
        "only {} restarts:\n{}",
        starts() - before,
        inst.log_text()
    );
    // 6 starts at 100+200+400+400+400 ms of backoff at least.
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    let log = inst.log_text();
    assert!(log.contains("exit code 3"), "{log}");
    assert!(log.contains("killed by SIGKILL"), "{log}");
    assert!(log.contains("restart_in_ms=400"), "{log}");

    // Once it stops crashing it stays up: after the pending restart (at most maxBackoff),
    // the latest start is the one that keeps running.
    std::fs::remove_file(dir.join("exit-code")).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let latest = || -> u32 {
        let r = common::parse_report(&std::fs::read_to_string(dir.join("report")).unwrap());
        r["pid"].parse().unwrap()
    };
    let up = latest();
    assert!(alive(up), "stated did not come back:\n{}", inst.log_text());
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(latest(), up, "stated kept restarting");
    assert!(alive(up));

    inst.signal(Signal::SIGTERM);
    assert!(inst.wait_exit(Duration::from_secs(30)).success());
    assert!(!alive(up));
}

#[test]
fn shutdown_kills_a_helper_that_ignores_sigterm_and_reaps_orphans() {
    if skip_unless_root() {
        return;
    }
    let mut inst =
        Instance::new(|t| replace_once(&t, "stopTimeout: \"3s\"", "stopTimeout: \"1s\""));
    // Created before start: the helpers look for them as they start.
    let spawner_dir = inst.helper_dir("joblet-spawner");
    std::fs::create_dir_all(&spawner_dir).unwrap();
    std::fs::write(spawner_dir.join("orphan"), "").unwrap();
    std::fs::create_dir_all(inst.dir.join("data")).unwrap();
    std::fs::write(inst.dir.join("data/ignore-term"), "").unwrap();
    inst.start();
    let sup = inst.pid();
    let orphan: u32 = inst.wait_report("joblet-spawner", |r| r.contains_key("orphan"))["orphan"]
        .parse()
        .unwrap();
    // Its parent shell exited: the orphan is ours now (child subreaper).
    assert_eq!(
        wait_for(Duration::from_secs(5), || (ppid(orphan) == Some(sup))
            .then_some(())),
        Some(()),
        "orphan {orphan} was not re-parented to joblet"
    );
    let api: u32 = inst.wait_report("joblet-api", |_| true)["pid"]
        .parse()
        .unwrap();

    let t0 = Instant::now();
    inst.signal(Signal::SIGTERM);
    let status = inst.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}:\n{}", inst.log_text());
    let took = t0.elapsed();
    // The api ignored SIGTERM: it got SIGKILL after its 1 s; the orphan got SIGTERM.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let log = inst.log_text();
    assert!(
        log.contains("did not stop in time; sending SIGKILL"),
        "{log}"
    );
    assert!(log.contains("ending leftover processes"), "{log}");
    assert!(!alive(api), "api survived");
    assert!(!alive(orphan), "orphan survived");
    assert!(!inst.helper_dir("joblet-api").join("stopped").exists());
}

#[test]
fn a_second_signal_kills_everything_at_once() {
    if skip_unless_root() {
        return;
    }
    let mut inst =
        Instance::new(|t| replace_once(&t, "stopTimeout: \"3s\"", "stopTimeout: \"60s\""));
    let spawner_dir = inst.helper_dir("joblet-spawner");
    std::fs::create_dir_all(&spawner_dir).unwrap();
    std::fs::write(spawner_dir.join("ignore-term"), "").unwrap();
    inst.start();
    let pids: Vec<u32> = HELPERS
        .iter()
        .map(|h| inst.wait_report(h, |_| true)["pid"].parse().unwrap())
        .collect();
    inst.signal(Signal::SIGTERM);
    // The same request twice in quick succession (as `timeout` delivers it) is not a second
    // signal.
    inst.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        inst.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "forced too early"
    );
    let t0 = Instant::now();
    inst.signal(Signal::SIGINT);
    let status = inst.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}:\n{}", inst.log_text());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(
        inst.log_text().contains("second stop signal"),
        "{}",
        inst.log_text()
    );
    for pid in pids {
        assert!(!alive(pid), "{pid} survived");
    }
    for s in SOCKETS {
        assert!(!inst.dir.join("run").join(s).exists(), "{s} left behind");
    }
}

#[test]
fn refuses_to_start_on_a_symlinked_or_foreign_directory() {
    if skip_unless_root() {
        return;
    }
    // A symlink where a helper's directory should be.
    let mut inst = Instance::new(|t| t);
    let elsewhere = inst.tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, inst.dir.join("state")).unwrap();
    inst.spawn();
    let status = inst.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let log = inst.log_text();
    assert!(log.contains("state is a symlink"), "{log}");
    assert_eq!(
        owner_mode(&elsewhere).0,
        0,
        "the symlink target was not taken over"
    );
    assert!(!inst.dir.join("run/stated.sock").exists());
    assert!(!inst.dir.join("state/report").exists(), "a helper started");

    // A directory owned by some other user.
    let mut inst = Instance::new(|t| t);
    let logs = inst.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    nix::unistd::chown(&logs, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
    inst.spawn();
    let status = inst.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let log = inst.log_text();
    assert!(log.contains("owned by uid 4242"), "{log}");
    assert_eq!(owner_mode(&logs).0, 4242);
}

#[test]
fn a_bad_config_stops_the_start_naming_the_key() {
    let inst = Instance::new(|t| replace_once(&t, "defaultPidsLimit: 1024", "defaultPidsLimit: 0"));
    for args in [&["check", "--config"][..], &["--config"][..]] {
        let out = std::process::Command::new(common::JOBLET)
            .args(args)
            .arg(&inst.config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cgroup.defaultPidsLimit"), "{err}");
    }
    // And `check` passes the config as `joblet init` wrote it.
    let good = Instance::new(|t| t);
    let out = std::process::Command::new(common::JOBLET)
        .args(["check", "--config"])
        .arg(&good.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (0 warnings)"));
}

#[test]
fn on_cgroup_v2_the_supervisor_leaves_its_cgroup_for_a_leaf() {
    if skip_unless_root() {
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let is_v2 = nix::sys::statfs::statfs(root)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !is_v2 {
        eprintln!("skipped: /sys/fs/cgroup is not cgroup2 here (run in the vmkit guest)");
        return;
    }
    // Stands for the cgroup systemd delegates to joblet.service.
    let name = format!("joblet-sup-test-{}", std::process::id());
    let service = root.join(&name);
    std::fs::create_dir(&service).unwrap();
    struct Rmdir(std::path::PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("supervisor"));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Rmdir(service.clone());

    let mut inst = Instance::new(|t| t);
    inst.spawn_in_cgroup(&service);
    inst.wait_notice("READY=1", Duration::from_secs(20));
    for h in HELPERS {
        let r = inst.wait_report(h, |_| true);
        assert_eq!(r["cgroup"], format!("/{name}/supervisor"), "{h}");
    }
    let procs = std::fs::read_to_string(service.join("cgroup.procs")).unwrap();
    assert!(
        procs.trim().is_empty(),
        "the delegated cgroup still holds {procs:?}"
    );
    assert!(
        inst.log_text().contains("moved into a leaf cgroup"),
        "{}",
        inst.log_text()
    );
    inst.signal(Signal::SIGTERM);
    assert!(inst.wait_exit(Duration::from_secs(30)).success());
}
