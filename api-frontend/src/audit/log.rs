//! The audit log writer: a dedicated thread appends the lines handed to it through a bounded
//! channel, so no request handler ever blocks on the disk.
//!
//! If a line cannot be written (disk full, file gone bad) or the channel overflows, the log
//! turns unhealthy and the gate refuses calls until a write succeeds again: Joblet runs
//! audited or not at all.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::event::AuditEvent;

/// Lines that may wait for the writer before the log counts as stuck.
const QUEUE_LEN: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("the audit log {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("the audit log {path} belongs to uid {owner}, not to this daemon (uid {me})")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("cannot start the audit writer thread: {0}")]
    Thread(io::Error),
}

/// Where lines go: a file in production, anything that can fail in tests.
pub trait AuditSink: Write + Send {
    /// Makes written lines durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl AuditSink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

type Opener = Box<dyn FnMut() -> io::Result<Box<dyn AuditSink>> + Send>;

enum Msg {
    Line(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// A handle for recording audit events; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
    /// Lines that could not be queued or written, since start (for Prometheus).
    failures: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (creating it 0600 if needed) the append-only audit file and starts its writer.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = open_audit_file(path)?;
        let path = path.to_owned();
        let mut first = Some(file);
        let opener: Opener = Box::new(move || {
            let file = match first.take() {
                Some(f) => f,
                None => open_audit_file(&path).map_err(io::Error::other)?,
            };
            Ok(Box::new(file) as Box<dyn AuditSink>)
        });
        AuditLog::start(opener)
    }

    /// Starts a writer over any sink (the opener is called again after a failed write).
    pub fn with_sink(
        opener: impl FnMut() -> io::Result<Box<dyn AuditSink>> + Send + 'static,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::start(Box::new(opener))
    }

    fn start(opener: Opener) -> Result<AuditLog, AuditError> {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let healthy = Arc::new(AtomicBool::new(true));
        let failures = Arc::new(AtomicU64::new(0));
        let writer_health = healthy.clone();
        let writer_failures = failures.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run_writer(rx, opener, writer_health, writer_failures))
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            tx,
            healthy,
            failures,
        })
    }

    /// Queues one event. Never blocks; an overflowing queue marks the log unhealthy.
    pub fn record(&self, event: AuditEvent) {
        tracing::debug!(target: "audit", event = ?event.event, peer = %event.peer,
            method = event.method.as_deref().unwrap_or(""), decision = ?event.decision,
            code = event.code.unwrap_or(""), job = event.job.as_deref().unwrap_or(""), "audit");
        if let Err(e) = self.tx.try_send(Msg::Line(Box::new(event))) {
            self.healthy.store(false, Ordering::SeqCst);
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit record could not be queued; refusing calls until the audit log catches up");
        }
    }

    /// Lines lost since start: not queued (overflow) or not written (write or sync failed).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// False after a failed write, until a write succeeds again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Waits until every line queued before this call is written (or `limit` passes).
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(())))
    }
}

/// Opens the audit file for appending without following a symlink, creating it 0600, and
/// checks it is a regular file of ours with no group or other access.
fn open_audit_file(path: &Path) -> Result<File, AuditError> {
    let open_err = |source| AuditError::Open {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.file_type().is_file() {
        return Err(AuditError::NotRegular {
            path: path.to_owned(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(AuditError::WrongOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(open_err)?;
    }
    Ok(file)
}

fn run_writer(
    mut rx: mpsc::Receiver<Msg>,
    mut opener: Opener,
    healthy: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) {
    let mut sink: Option<Box<dyn AuditSink>> = None;
    while let Some(msg) = rx.blocking_recv() {
        let mut batch = vec![msg];
        // Drain what is already queued so one sync covers the whole batch.
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut flushes = Vec::new();
        // None: no line in this batch, so nothing to learn about the log's health.
        let mut ok: Option<bool> = None;
        for msg in batch {
            match msg {
                Msg::Line(ev) => {
                    let written = write_line(&mut sink, &mut opener, &ev.to_line());
                    if !written {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    ok = Some(ok.unwrap_or(true) && written);
                }
                Msg::Flush(done) => flushes.push(done),
            }
        }
        if ok.is_some()
            && let Some(s) = sink.as_mut()
            && let Err(e) = s.sync()
        {
            tracing::error!(error = %e, "audit log sync failed");
            failures.fetch_add(1, Ordering::Relaxed);
            sink = None;
            ok = Some(false);
        }
        if let Some(ok) = ok {
            healthy.store(ok, Ordering::SeqCst);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn write_line(sink: &mut Option<Box<dyn AuditSink>>, opener: &mut Opener, line: &[u8]) -> bool {
    if sink.is_none() {
        match opener() {
            Ok(s) => *sink = Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the audit log");
                return false;
            }
        }
    }
    let Some(s) = sink.as_mut() else {
        return false;
    };
    // One write of the whole line on an O_APPEND file: lines never interleave.
    match s.write_all(line) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "audit log write failed; refusing calls until it works");
            *sink = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink whose writes fail while `broken` is set, recording what it accepted.
    struct TestSink {
        broken: Arc<AtomicBool>,
        lines: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for TestSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(libc_enospc()));
            }
            self.lines.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl AuditSink for TestSink {
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn libc_enospc() -> i32 {
        nix::errno::Errno::ENOSPC as i32
    }

    fn event() -> AuditEvent {
        AuditEvent::auth_failed("127.0.0.1:1", "test".into())
    }

    #[tokio::test]
    async fn failed_writes_make_the_log_unhealthy_until_one_succeeds() {
        let broken = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (b, l) = (broken.clone(), lines.clone());
        let log = AuditLog::with_sink(move || {
            Ok(Box::new(TestSink {
                broken: b.clone(),
                lines: l.clone(),
            }) as Box<dyn AuditSink>)
        })
        .unwrap();
        log.record(event());
        assert!(log.flush(Duration::from_secs(5)).await);
        assert!(log.is_healthy());
        assert_eq!(
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            1
        );

        assert_eq!(log.failures(), 0);
        broken.store(true, Ordering::SeqCst);
        log.record(event());
        assert!(log.flush(Duration::from_secs(5)).await);
        assert!(!log.is_healthy());
        assert_eq!(log.failures(), 1);

        broken.store(false, Ordering::SeqCst);
        log.record(event());
        assert!(log.flush(Duration::from_secs(5)).await);
        assert!(log.is_healthy());
        assert_eq!(
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn file_is_created_private_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"earlier\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.record(event());
        assert!(log.flush(Duration::from_secs(5)).await);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("earlier\n{"), "{text}");
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn symlinks_and_non_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"").unwrap();
        let link = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            open_audit_file(&link),
            Err(AuditError::Open { .. })
        ));
        assert!(matches!(
            open_audit_file(Path::new("/dev/null")),
            Err(AuditError::NotRegular { .. }) | Err(AuditError::WrongOwner { .. })
        ));
    }
}
