//! The daemon's life: open the store, serve until SIGTERM/SIGINT (or until the writer dies),
//! then close everything in order so the database is closed cleanly.

use std::os::fd::OwnedFd;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::tokio::Listener;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::signal::unix::{SignalKind, signal};

use crate::server;
use crate::settings::Startup;
use crate::store::{OpenError, Store, WriterPanicked};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot use the inherited listening socket: {0}")]
    Listener(std::io::Error),
    #[error("cannot make the inherited listening socket non-blocking: {0}")]
    NonBlocking(nix::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the store's writer stopped unexpectedly; no write can be recorded")]
    WriterDied,
    #[error(transparent)]
    WriterPanicked(#[from] WriterPanicked),
}

/// Why serving ended.
enum Stop {
    Signal(&'static str),
    WriterDied,
}

pub fn run(startup: Startup) -> Result<(), DaemonError> {
    let Startup { settings, listener } = startup;
    set_nonblocking(&listener)?;
    let (store, writer) = Store::open(&settings.db_path)?;
    tracing::info!(db = %settings.db_path.display(), api_uid = settings.api_uid, "store open");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let served = runtime.block_on(async {
        let listener = Listener::from_fd(listener, Channel::State, vec![settings.api_uid])
            .map_err(DaemonError::Listener)?;
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let watcher = store.clone();
        let shutdown = async move {
            let stop = tokio::select! {
                _ = term.recv() => Stop::Signal("SIGTERM"),
                _ = int.recv() => Stop::Signal("SIGINT"),
                () = watcher.writer_stopped() => Stop::WriterDied,
            };
            let _ = stop_tx.send(stop);
        };
        tracing::info!("serving the state channel");
        server::serve(listener, store, shutdown).await;
        Ok::<_, DaemonError>(stop_rx.await.unwrap_or(Stop::WriterDied))
    });
    // Dropping the runtime waits for reads still running; with every store handle gone the
    // writer commits what is queued and ends, closing the database.
    drop(runtime);
    writer.join()?;
    match served? {
        Stop::Signal(name) => {
            tracing::info!(signal = name, "stopped cleanly");
            Ok(())
        }
        Stop::WriterDied => Err(DaemonError::WriterDied),
    }
}

/// The supervisor may hand over a blocking socket, and `Listener::from_fd` keeps it as it is:
/// a blocking accept after a spurious or stale readiness would then stall the whole runtime.
fn set_nonblocking(fd: &OwnedFd) -> Result<(), DaemonError> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(DaemonError::NonBlocking)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(DaemonError::NonBlocking)?;
    Ok(())
}
