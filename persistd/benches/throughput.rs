//! Log throughput: a writer fills a pipe as fast as it can, persistd splices it into the store,
//! and a follower reads it back over the logs channel.
//!
//! `cargo bench -p joblet-persistd` (1 GiB); `PERSISTD_BENCH_MB=256` for a shorter run;
//! `PERSISTD_BENCH_PIPE_KB=1024` to enlarge the pipe (default: the kernel's 64 KiB).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::{Listener, connect};
use joblet_persistd::registry::Registry;
use joblet_persistd::server::{self, Listeners};
use nix::fcntl::{FcntlArg, fcntl};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let total_mb = env_usize("PERSISTD_BENCH_MB", 1024);
    let pipe_kb = env_usize("PERSISTD_BENCH_PIPE_KB", 64);
    let total = total_mb << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let me = nix::unistd::getuid().as_raw();
    let registry = Arc::new(Registry::open(&data).expect("open store"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let out_path = dir.path().join("out.sock");
        let logs_path = dir.path().join("logs.sock");
        let listeners = Listeners {
            output: Listener::bind(&out_path, Channel::Output, vec![me]).unwrap(),
            logs: Listener::bind(&logs_path, Channel::Logs, vec![me]).unwrap(),
        };
        let options = server::Options {
            metrics_interval: Duration::from_secs(5),
        };
        tokio::spawn(server::serve(
            registry,
            listeners,
            options,
            std::future::pending(),
        ));

        let job = JobId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let out_r = OwnedFd::from(out_r);
        let err_r = OwnedFd::from(err_r);
        if pipe_kb != 64 {
            fcntl(&out_r, FcntlArg::F_SETPIPE_SZ((pipe_kb << 10) as i32)).expect("pipe size");
        }

        let start = Instant::now();
        let writer = std::thread::spawn(move || {
            let buf = vec![b'x'; 64 << 10];
            let mut left = total;
            while left > 0 {
                let n = left.min(buf.len());
                out_w.write_all(&buf[..n]).unwrap();
                left -= n;
            }
            drop(err_w);
        });
        let mut spawner = connect(&out_path, Channel::Output).await.unwrap();
        let attach = ToPersistOutput::Attach {
            job: job.clone(),
            started_ns: 0,
        };
        spawner
            .send(&attach, &[out_r.as_fd(), err_r.as_fd()])
            .await
            .unwrap();
        let mut follower = connect(&logs_path, Channel::Logs).await.unwrap();
        let read = ToPersistLogs::Read {
            job,
            from_seq: 0,
            follow: true,
        };
        follower.send(&read, &[]).await.unwrap();

        let drained = tokio::spawn(async move {
            loop {
                if let FromPersistOutput::Drained { .. } = spawner.recv().await.unwrap().msg {
                    return start.elapsed();
                }
            }
        });
        let mut got = 0usize;
        let mut chunks = 0u64;
        let mut files: Vec<std::fs::File> = Vec::new();
        let mut buf = Vec::new();
        loop {
            let received = follower.recv::<FromPersistLogs>().await.unwrap();
            match received.msg {
                FromPersistLogs::Files => {
                    files = received.fds.into_iter().map(std::fs::File::from).collect();
                }
                // Read as the frontend does: one pread of the range.
                FromPersistLogs::Range(r) => {
                    let file = &files[joblet_persistd::store::stream_index(r.stream)];
                    buf.resize(r.len as usize, 0);
                    file.read_exact_at(&mut buf, r.offset).unwrap();
                    got += buf.len();
                    chunks += r.last_seq - r.first_seq + 1;
                }
                FromPersistLogs::End { complete, .. } => {
                    assert!(complete);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let followed = start.elapsed();
        let stored = drained.await.unwrap();
        writer.join().unwrap();
        assert_eq!(got, total, "follower saw every byte");
        let mbps = |d: Duration| total as f64 / (1 << 20) as f64 / d.as_secs_f64();
        println!(
            "persistd throughput, {total_mb} MiB, pipe {pipe_kb} KiB, {chunks} chunks \
             ({} KiB average)",
            total / chunks.max(1) as usize / 1024
        );
        println!(
            "  pipe -> store (Drained, fsynced): {:>8.1} MiB/s ({:.2} s)",
            mbps(stored),
            stored.as_secs_f64()
        );
        println!(
            "  pipe -> store -> follower (End):  {:>8.1} MiB/s ({:.2} s)",
            mbps(followed),
            followed.as_secs_f64()
        );
    });
}
