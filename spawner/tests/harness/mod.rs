//! Spawner test harness: runs the real `joblet-spawner` binary as a child process, with its settings in
//! a sealed memfd and its listener inherited exactly as the supervisor does; a persistd
//! stand-in that speaks the real `Channel::Output` protocol and reads the pipes; and a client
//! on `Channel::Spawner`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::blocking::{SeqListener, SeqSocket};
use joblet_ipc_proto::channel::output::{CgroupDir, FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::channel::spawner::{
    FromSpawner, SpawnedJob, SpawnerEvent, SpawnerReply, SpawnerRequest, ToSpawner,
};
use joblet_ipc_proto::handshake::Hello;
use joblet_ipc_proto::job::{JobId, JobOutcome, JobSpec, LaunchSpec};
use joblet_ipc_proto::settings::{
    Enforcement, Listen, LogFormat, Logging, SpawnerSettings, UserNamespaces,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh job id.
pub fn new_job_id() -> JobId {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    JobId::parse(&format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
    .unwrap()
}

pub fn sh(script: &str) -> JobSpec {
    JobSpec {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..Default::default()
    }
}

pub fn launch(spec: JobSpec) -> LaunchSpec {
    LaunchSpec {
        spec,
        secret_env: vec![],
        has_upload_dir: false,
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("spawner-{tag}-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the persistd stand-in read for one job.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub done: bool,
    pub attaches: u32,
}

/// The cgroup directory fds of each job, as Watch delivered them (the latest per job).
pub type Watches = Arc<Mutex<HashMap<JobId, Vec<(CgroupDir, OwnedFd)>>>>;

/// A persistd stand-in on a real `Channel::Output` socket.
pub struct Persistd {
    pub outputs: Arc<Mutex<HashMap<JobId, Captured>>>,
    pub watches: Watches,
    pub path: PathBuf,
}

impl Persistd {
    pub fn start(path: PathBuf) -> Persistd {
        let listener = SeqListener::bind(&path).unwrap();
        let outputs: Arc<Mutex<HashMap<JobId, Captured>>> = Default::default();
        let watches: Watches = Default::default();
        let current: Arc<Mutex<Option<Arc<SeqSocket>>>> = Default::default();
        let (o, c, w) = (outputs.clone(), current.clone(), watches.clone());
        std::thread::spawn(move || {
            loop {
                let sock = match listener.accept() {
                    Ok(Some(s)) => s,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                sock.set_nonblocking(false).unwrap();
                let sock = Arc::new(sock);
                let (o, c, w) = (o.clone(), c.clone(), w.clone());
                std::thread::spawn(move || serve(sock, o, c, w));
            }
        });
        Persistd {
            outputs,
            watches,
            path,
        }
    }

    pub fn output(&self, job: &JobId) -> Captured {
        self.outputs
            .lock()
            .unwrap()
            .get(job)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `job` wrote `line` on stdout (a job ready for what the test does next).
    pub fn wait_line(&self, job: &JobId, line: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let out = self.output(job).stdout;
            if String::from_utf8_lossy(&out).lines().any(|l| l == line) {
                return;
            }
            assert!(Instant::now() < end, "job never printed {line:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until both streams of `job` reached end of file.
    pub fn wait_drained(&self, job: &JobId, timeout: Duration) -> Captured {
        let end = Instant::now() + timeout;
        loop {
            let c = self.output(job);
            if c.done || Instant::now() > end {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(
    sock: Arc<SeqSocket>,
    outputs: Arc<Mutex<HashMap<JobId, Captured>>>,
    current: Arc<Mutex<Option<Arc<SeqSocket>>>>,
    watches: Watches,
) {
    let mut buf = Vec::new();
    let Ok((hello, _)) = sock.recv::<Hello>(&mut buf) else {
        return;
    };
    if sock.answer_hello(&hello, Channel::Output, &[0]).is_err() {
        return;
    }
    *current.lock().unwrap() = Some(sock.clone());
    while let Ok((msg, mut fds)) = sock.recv::<ToPersistOutput>(&mut buf) {
        let job = match msg {
            ToPersistOutput::Watch { job, dirs } => {
                let dirs = dirs.into_iter().zip(fds).collect();
                watches.lock().unwrap().insert(job, dirs);
                continue;
            }
            ToPersistOutput::Attach { job, .. } => job,
        };
        let _ = sock.send(&FromPersistOutput::Attached { job: job.clone() }, &[]);
        let known = {
            let mut map = outputs.lock().unwrap();
            let entry = map.entry(job.clone()).or_default();
            entry.attaches += 1;
            entry.attaches > 1
        };
        if known {
            // Already reading it: like persistd, close the duplicates; confirm if done.
            if outputs.lock().unwrap()[&job].done {
                let _ = sock.send(&FromPersistOutput::Drained { job }, &[]);
            }
            continue;
        }
        let err = fds.pop().unwrap();
        let out = fds.pop().unwrap();
        let (o, c) = (outputs.clone(), current.clone());
        std::thread::spawn(move || {
            let read_all = |fd: OwnedFd,
                            which: fn(&mut Captured) -> &mut Vec<u8>,
                            o: Arc<Mutex<HashMap<JobId, Captured>>>,
                            job: JobId| {
                let mut f = std::fs::File::from(fd);
                let mut chunk = [0u8; 4096];
                loop {
                    match f.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => which(o.lock().unwrap().get_mut(&job).unwrap())
                            .extend_from_slice(&chunk[..n]),
                    }
                }
            };
            let (o2, j2) = (o.clone(), job.clone());
            let t = std::thread::spawn(move || read_all(err, |c| &mut c.stderr, o2, j2));
            read_all(out, |c| &mut c.stdout, o.clone(), job.clone());
            let _ = t.join();
            o.lock().unwrap().get_mut(&job).unwrap().done = true;
            if let Some(s) = c.lock().unwrap().clone() {
                let _ = s.send(&FromPersistOutput::Drained { job }, &[]);
            }
        });
    }
}

/// The spawner binary under test, with everything it needs in one temp dir.
pub struct Harness {
    pub dir: TempDir,
    pub settings: SpawnerSettings,
    pub listener: OwnedFd,
    pub child: Option<Child>,
    pub persistd: Persistd,
    pub host_secret_dir: PathBuf,
}

/// V2 when `/sys/fs/cgroup` is itself a cgroup2 mount (the guest), V1 otherwise (this host).
pub fn cgroup_mode() -> joblet_ipc_proto::settings::CgroupMode {
    use joblet_ipc_proto::settings::CgroupMode;
    let fs = nix::sys::statfs::statfs("/sys/fs/cgroup").expect("statfs /sys/fs/cgroup");
    match fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        true => CgroupMode::V2,
        false => CgroupMode::V1,
    }
}

impl Harness {
    pub fn start() -> Harness {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut SpawnerSettings)) -> Harness {
        let dir = TempDir::new("harness");
        let sock = dir.0.join("spawner.sock");
        let listener = SeqListener::bind(&sock).unwrap();
        let listener: OwnedFd = listener_fd(listener);
        let persistd = Persistd::start(dir.0.join("persistd-output.sock"));
        let host_secret_dir = dir.0.join("host-secret");
        std::fs::create_dir(&host_secret_dir).unwrap();
        let mut settings = SpawnerSettings {
            logging: Logging {
                level: "joblet_spawner=debug,info".into(),
                format: LogFormat::Text,
            },
            listen: vec![Listen::Ipc {
                channel: Channel::Spawner,
                fd: 4,
            }],
            api_uid: 0,
            output_socket: persistd.path.clone(),
            state_dir: dir.0.join("state"),
            job_uid: 65534,
            job_gid: 65534,
            allowed_mounts: [
                "/usr",
                "/bin",
                "/lib",
                "/lib64",
                "/sbin",
                "/etc/alternatives",
            ]
            .map(PathBuf::from)
            .to_vec(),
            cgroup_root: "/sys/fs/cgroup".into(),
            cgroup_mode: cgroup_mode(),
            cgroup_base: format!("joblet-test-{}-{}", std::process::id(), unique()),
            default_pids_max: 256,
            default_disk_mb: 16,
            stop_grace_ms: 500,
            // As the supervisor configures them by default: every boundary on.
            userns: UserNamespaces {
                enabled: true,
                host_base: 2_000_000 + (std::process::id() % 1000) * 16 * 65536,
                range: 65536,
                slots: 16,
            },
            landlock: Enforcement::BestEffort,
        };
        tweak(&mut settings);
        let mut h = Harness {
            dir,
            settings,
            listener,
            child: None,
            persistd,
            host_secret_dir,
        };
        h.spawn();
        h
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.0.join("spawner.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.0.join("spawner.log")
    }

    /// Starts (or restarts) the spawner process.
    pub fn spawn(&mut self) {
        let bytes = postcard::to_allocvec(&self.settings).unwrap();
        // SAFETY: memfd_create with a valid name; the returned fd is ours.
        let raw = unsafe {
            libc::memfd_create(
                c"spawner-settings".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        assert!(raw >= 0);
        // SAFETY: `raw` is a new fd nothing else owns.
        let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut f = std::fs::File::from(memfd);
        f.write_all(&bytes).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        let memfd = OwnedFd::from(f);
        let (settings_fd, listener_fd) = (memfd.as_raw_fd(), self.listener.as_raw_fd());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_joblet-spawner"));
        cmd.args(["--settings-fd", "3"])
            .stderr(log)
            .stdout(std::process::Stdio::null());
        // SAFETY: the closure runs between fork and exec and only calls fcntl and dup2, which
        // are async-signal-safe; both source fds are open in the parent. Both are first
        // copied above 10: either may itself be fd 3 or 4, which a direct dup2 would overwrite
        // before copying it (the spawner then found the settings memfd as its listener).
        unsafe {
            cmd.pre_exec(move || {
                let settings = libc::fcntl(settings_fd, libc::F_DUPFD, 10);
                let listener = libc::fcntl(listener_fd, libc::F_DUPFD, 10);
                if settings < 0
                    || listener < 0
                    || libc::dup2(settings, 3) < 0
                    || libc::dup2(listener, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().unwrap());
        drop(memfd);
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Connects on `Channel::Spawner`. The listener is ours, so a connection is accepted by
    /// the kernel even when the spawner died: the hello reply is awaited with a timeout.
    pub fn client(&self) -> Client {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, UnixAddr, connect, setsockopt, socket, sockopt,
        };
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        );
        let fd = fd.unwrap();
        let tv = nix::sys::time::TimeVal::new(30, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &tv).unwrap();
        connect(fd.as_raw_fd(), &UnixAddr::new(&self.socket_path()).unwrap()).unwrap();
        let sock = SeqSocket::from_fd(fd);
        sock.send(&Hello::new(Channel::Spawner), &[]).unwrap();
        match sock.recv::<joblet_ipc_proto::handshake::HelloReply>(&mut Vec::new()) {
            Ok((joblet_ipc_proto::handshake::HelloReply::Accepted, _)) => Client::new(sock),
            other => panic!("no hello from the spawner: {other:?}\n{}", self.log()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the spawner with SIGTERM and checks it exits 0 within `timeout`.
    pub fn shutdown(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("spawner running");
        // SAFETY: signalling our own child by pid; it has not been reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                panic!("spawner did not stop in time\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every cgroup directory of our base that still exists.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mut left = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            for ctrl in ctrls
                .split(',')
                .filter(|c| !c.is_empty() && !c.starts_with("name="))
            {
                let p = Path::new("/sys/fs/cgroup")
                    .join(ctrl)
                    .join(path.trim_start_matches('/'))
                    .join(&self.settings.cgroup_base);
                if p.exists() {
                    left.push(p);
                }
            }
        }
        left
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let c = self.child.as_ref().expect("spawner running");
        // SAFETY: signalling our own unreaped child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }

    /// Processes started by this harness's spawners (shims keep the spawner's stderr, our log
    /// file) that are still alive.
    pub fn leftover_processes(&self) -> Vec<i32> {
        let log = self.log_path();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/fd/2")).is_ok_and(|p| p == log))
            .collect()
    }

    /// Shuts down and checks that nothing is left: no process, no cgroup, no job record.
    pub fn finish(mut self) {
        let st = self.shutdown(Duration::from_secs(30));
        assert!(st.success(), "spawner exit status {st}\n{}", self.log());
        let end = Instant::now() + Duration::from_secs(5);
        while !self.leftover_processes().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.leftover_processes().is_empty(),
            "leftover processes {:?}\n{}",
            self.leftover_processes(),
            self.log()
        );
        assert!(
            self.leftover_cgroups().is_empty(),
            "leftover cgroups {:?}\n{}",
            self.leftover_cgroups(),
            self.log()
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.0.display().to_string();
        assert!(!mounts.contains(&dir), "leftover mounts under {dir}");
        let jobs = self.settings.state_dir.join("jobs");
        let left: Vec<_> = std::fs::read_dir(&jobs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "leftover job records {left:?}\n{}",
            self.log()
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- spawner log ----\n{}", self.log());
        }
    }
}

fn listener_fd(l: SeqListener) -> OwnedFd {
    // SeqListener has no into_fd; duplicate its fd and let the listener close its own copy.
    let fd = nix::unistd::dup(&l).unwrap();
    drop(l);
    fd
}

/// A frontend stand-in on `Channel::Spawner`.
pub struct Client {
    pub sock: SeqSocket,
    next_id: u64,
    pub events: Vec<SpawnerEvent>,
    buf: Vec<u8>,
}

impl Client {
    fn new(sock: SeqSocket) -> Client {
        let tv = nix::sys::time::TimeVal::new(0, 100_000);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .unwrap();
        Client {
            sock,
            next_id: 1,
            events: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Receives one frame, or None after the socket's short timeout.
    pub fn recv_one(&mut self) -> Option<FromSpawner> {
        match self.sock.recv::<FromSpawner>(&mut self.buf) {
            Ok((m, _)) => Some(m),
            Err(e) if e.would_block() => None,
            Err(e) => panic!("client recv: {e}"),
        }
    }

    pub fn call(&mut self, request: SpawnerRequest, timeout: Duration) -> SpawnerReply {
        self.call_with_fds(request, &[], timeout)
    }

    pub fn call_with_fds(
        &mut self,
        request: SpawnerRequest,
        fds: &[std::os::fd::BorrowedFd<'_>],
        timeout: Duration,
    ) -> SpawnerReply {
        let id = self.send(request, fds);
        self.wait_reply(id, timeout)
    }

    /// Sends a request without waiting; returns its id for [`Client::wait_reply`].
    pub fn send(&mut self, request: SpawnerRequest, fds: &[std::os::fd::BorrowedFd<'_>]) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.sock.send(&ToSpawner { id, request }, fds).unwrap();
        id
    }

    /// The reply to request `id`; other replies are dropped, events kept.
    pub fn wait_reply(&mut self, id: u64, timeout: Duration) -> SpawnerReply {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            match self.recv_one() {
                Some(FromSpawner::Reply { id: got, reply }) if got == id => return reply,
                Some(FromSpawner::Reply { .. }) => {}
                Some(FromSpawner::Event(e)) => self.events.push(e),
                None => {}
            }
        }
        panic!("no reply to request {id} in {timeout:?}");
    }

    /// StartJob, and ReleaseJob right behind it (as a frontend whose record of the job is
    /// already durable does); returns StartJob's reply.
    fn start_released(
        &mut self,
        job: &JobId,
        launch: LaunchSpec,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> SpawnerReply {
        let start = SpawnerRequest::StartJob {
            job: job.clone(),
            launch,
        };
        let id = self.send(start, fds);
        self.send(SpawnerRequest::ReleaseJob { job: job.clone() }, &[]);
        self.wait_reply(id, Duration::from_secs(30))
    }

    pub fn start(&mut self, job: &JobId, spec: JobSpec) -> SpawnerReply {
        self.start_released(job, launch(spec), &[])
    }

    /// StartJob with a staged upload directory.
    pub fn start_upload(
        &mut self,
        job: &JobId,
        spec: JobSpec,
        dir: std::os::fd::BorrowedFd<'_>,
    ) -> SpawnerReply {
        let mut launch = launch(spec);
        launch.has_upload_dir = true;
        self.start_released(job, launch, &[dir])
    }

    pub fn start_ok(&mut self, job: &JobId, spec: JobSpec) -> (u32, u64) {
        match self.start(job, spec) {
            SpawnerReply::Started { pid, started_ns } => (pid, started_ns),
            other => panic!("start failed: {other:?}"),
        }
    }

    pub fn stop(&mut self, job: &JobId, grace_ms: u32) -> SpawnerReply {
        self.call(
            SpawnerRequest::StopJob {
                job: job.clone(),
                grace_ms,
            },
            Duration::from_secs(10),
        )
    }

    pub fn ack(&mut self, job: &JobId) {
        let r = self.call(
            SpawnerRequest::AckExit { job: job.clone() },
            Duration::from_secs(10),
        );
        assert!(matches!(r, SpawnerReply::Acked), "{r:?}");
    }

    pub fn list(&mut self) -> Vec<SpawnedJob> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            match self.call(
                SpawnerRequest::ListJobs {
                    after: after.clone(),
                },
                Duration::from_secs(10),
            ) {
                SpawnerReply::Jobs { jobs, more } => {
                    after = jobs.last().map(|j| j.job.clone());
                    all.extend(jobs);
                    if !more {
                        return all;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Waits for the exit event of `job`.
    pub fn wait_exit(&mut self, job: &JobId, timeout: Duration) -> JobOutcome {
        let end = Instant::now() + timeout;
        loop {
            if let Some(o) = self.events.iter().find_map(
                |SpawnerEvent::Exited {
                     job: j, outcome, ..
                 }| (j == job).then(|| outcome.clone()),
            ) {
                return o;
            }
            assert!(
                Instant::now() < end,
                "no exit event for {job} in {timeout:?}"
            );
            if let Some(FromSpawner::Event(e)) = self.recv_one() {
                self.events.push(e);
            }
        }
    }

    /// Waits for the exit, acknowledges it, and waits until the spawner released the job.
    pub fn finish_job(&mut self, job: &JobId, timeout: Duration) -> JobOutcome {
        let o = self.wait_exit(job, timeout);
        self.ack(job);
        let end = Instant::now() + Duration::from_secs(10);
        while self.list().iter().any(|j| &j.job == job) {
            assert!(Instant::now() < end, "job {job} not released after ack");
            std::thread::sleep(Duration::from_millis(20));
        }
        o
    }
}

/// Pids of the live children of `parent` whose command name is `comm`.
pub fn children(parent: i32, comm: &str) -> Vec<i32> {
    let stat = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            stat(pid).is_some_and(|s| {
                let (name, rest) = s.rsplit_once(')').unwrap_or_default();
                let fields: Vec<&str> = rest.split_whitespace().collect();
                name.ends_with(&format!("({comm}"))
                    && fields.first() != Some(&"Z")
                    && fields.get(1) == Some(&parent.to_string().as_str())
            })
        })
        .collect();
    out.sort_unstable();
    out
}
