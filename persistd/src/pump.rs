//! Reading one job's output pipes into its log until both reach end of file.
//!
//! The pipes are watched with tokio's `AsyncFd`; when one is readable, the store splices from
//! it. If storing fails (disk full, I/O error), the pump stops reading — the job then blocks
//! on its full pipe — and retries with backoff: bytes are never dropped.

use std::future::pending;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tracing::{debug, info, warn};

use crate::store::{Append, LogWriter, STREAMS};

/// The read ends of a job's stdout and stderr pipes.
pub struct Pipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("{which} fd is not a pipe")]
    NotAPipe { which: &'static str },
    #[error("{which} fd is not a pipe's read end (it is open for writing)")]
    NotReadEnd { which: &'static str },
    #[error("cannot inspect the {which} fd: {source}")]
    Inspect {
        which: &'static str,
        source: nix::Error,
    },
    #[error("cannot watch the {which} pipe: {source}")]
    Watch {
        which: &'static str,
        source: io::Error,
    },
    #[error("waiting for pipe data failed: {0}")]
    Wait(io::Error),
    #[error("the task making the output durable failed: {0}")]
    Finish(tokio::task::JoinError),
}

type Watched = [Option<AsyncFd<OwnedFd>>; 2];

/// The fds as handed over, checked and registered with the runtime. Must run inside it.
pub fn watch(pipes: Pipes) -> Result<Watched, PumpError> {
    Ok([
        Some(watch_one(pipes.stdout, "stdout")?),
        Some(watch_one(pipes.stderr, "stderr")?),
    ])
}

/// Checks that `fd` is a pipe's read end and makes it non-blocking.
///
/// `O_NONBLOCK` is a flag of the open file description, which the spawner's copy shares; the
/// spawner never reads its copy, so the flag changes nothing for it.
fn watch_one(fd: OwnedFd, which: &'static str) -> Result<AsyncFd<OwnedFd>, PumpError> {
    let inspect = |source| PumpError::Inspect { which, source };
    let st = fstat(&fd).map_err(inspect)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err(PumpError::NotAPipe { which });
    }
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(inspect)?);
    if flags & OFlag::O_ACCMODE != OFlag::O_RDONLY {
        return Err(PumpError::NotReadEnd { which });
    }
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(inspect)?;
    register(fd).map_err(|source| PumpError::Watch { which, source })
}

/// Registers a pipe with the runtime's reactor. The crate's only `unsafe`: tokio made the
/// registration unsafe because it cannot check I/O safety itself.
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open fd that it alone closes, and only on drop; its
    // `as_raw_fd` always returns that same number. Moved into the `AsyncFd`, it stays open
    // and refers to the same open file description until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Moves everything from both pipes into the log, then makes it durable and complete.
/// Returns once the end record is on disk; the caller then reports `Drained`.
pub async fn run(mut writer: LogWriter, mut pipes: Watched) -> Result<(), PumpError> {
    let job = writer.job().clone();
    let mut backoff = Backoff::default();
    while pipes.iter().any(Option::is_some) {
        let (i, mut guard) = next_readable(&pipes).await.map_err(PumpError::Wait)?;
        let stream = STREAMS[i];
        let mut eof = false;
        match writer.append_from_pipe(stream, guard.get_inner().as_fd()) {
            Ok(Append::Stored { .. }) => backoff.reset(),
            Ok(Append::WouldBlock) => guard.clear_ready(),
            Ok(Append::Eof) => eof = true,
            Err(error) => {
                drop(guard);
                let delay = backoff.next_delay();
                warn!(%job, ?stream, %error, retry_in_ms = delay.as_millis() as u64,
                    "storing output failed; the pipe is not read until a retry succeeds");
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        if eof {
            drop(guard);
            pipes[i] = None;
            debug!(%job, ?stream, "pipe reached end of file");
        }
    }
    finish(writer).await?;
    info!(%job, "output complete and durable");
    Ok(())
}

/// Waits until one of the open pipes is readable.
async fn next_readable(pipes: &Watched) -> io::Result<(usize, AsyncFdReadyGuard<'_, OwnedFd>)> {
    async fn readable(fd: &Option<AsyncFd<OwnedFd>>) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        match fd {
            Some(fd) => fd.readable().await,
            None => pending().await,
        }
    }
    let [out, err] = pipes;
    tokio::select! {
        g = readable(out) => g.map(|g| (0, g)),
        g = readable(err) => g.map(|g| (1, g)),
    }
}

/// Syncs the data and writes the end record off the runtime threads (fsync blocks), retrying
/// with backoff until it succeeds.
async fn finish(mut writer: LogWriter) -> Result<(), PumpError> {
    let mut backoff = Backoff::default();
    loop {
        let (w, result) = tokio::task::spawn_blocking(move || {
            let r = writer.finish();
            (writer, r)
        })
        .await
        .map_err(PumpError::Finish)?;
        writer = w;
        match result {
            Ok(()) => return Ok(()),
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(job = %writer.job(), %error, retry_in_ms = delay.as_millis() as u64,
                    "making the output durable failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn next_delay(&mut self) -> Duration {
        let d = Self::FIRST.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        d.min(Self::MAX)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        for _ in 0..100 {
            assert_eq!(b.next_delay(), Backoff::MAX);
        }
        b.reset();
        assert_eq!(b.next_delay(), Backoff::FIRST);
    }

    #[test]
    fn only_pipe_read_ends_are_accepted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let (r, w) = std::io::pipe().unwrap();
            let file = std::fs::File::open("/dev/null").unwrap();
            assert!(matches!(
                watch_one(OwnedFd::from(file), "stdout"),
                Err(PumpError::NotAPipe { .. })
            ));
            assert!(matches!(
                watch_one(OwnedFd::from(w), "stdout"),
                Err(PumpError::NotReadEnd { .. })
            ));
            let fd = watch_one(OwnedFd::from(r), "stdout").unwrap();
            let fl = OFlag::from_bits_truncate(fcntl(fd.get_ref(), FcntlArg::F_GETFL).unwrap());
            assert!(fl.contains(OFlag::O_NONBLOCK));
        });
    }
}
