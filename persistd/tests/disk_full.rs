//! A full disk stalls the pipe instead of dropping bytes (real tmpfs with a size limit).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use joblet_ipc_proto::channel::output::FromPersistOutput;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A tmpfs of our own, unmounted on drop even if the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> nix::Result<Tmpfs> {
        let opts = format!("size={size},mode=0700");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )?;
        Ok(Tmpfs(path.to_owned()))
    }

    fn resize(&self, size: &str) -> nix::Result<()> {
        let opts = format!("size={size}");
        mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn stored_bytes(chunks: &[ReadChunks]) -> usize {
    chunks.iter().map(|c| c.data.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stalls_the_job_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let tmpfs = match Tmpfs::mount(&data, "128k") {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "SKIPPED a_full_disk_stalls_the_job_and_loses_nothing: cannot mount tmpfs ({e}); needs root with CAP_SYS_ADMIN"
            );
            return;
        }
    };
    let server = TestServer::start(&data, dir.path()).await;
    let job = new_job();
    // About 400 KiB of output, written as fast as the pipe takes it.
    let lines = 40_000;
    let total: usize = (0..lines)
        .map(|i| {
            if i % 5 == 4 {
                format!("err-{i}\n")
            } else {
                format!("out-{i}\n")
            }
            .len()
        })
        .sum();
    let (pipes, writer) = start_job(lines, Duration::ZERO);
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));

    // The disk fills; storing stops short of the total and stays there, and the job is
    // blocked on its full pipe rather than having its output dropped.
    let mut last = 0;
    let mut steady = 0;
    while steady < 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = stored_bytes(&stored(&server.logs, &job).await);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    assert!(
        last < total,
        "everything fit; the test did not fill the disk"
    );
    assert!(
        !writer.is_finished(),
        "the job should be blocked on its full pipe"
    );

    // Space comes back: the pump's retry resumes where it stopped.
    tmpfs.resize("16m").unwrap();
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    writer.join().unwrap();
    let r = read(&server.logs, &job, 0, true).await;
    assert!(r.complete);
    assert_eq!(stored_bytes(&r.chunks), total);
    assert_all_lines(&r.chunks, lines);
    server.stop().await;
    drop(tmpfs);
}
