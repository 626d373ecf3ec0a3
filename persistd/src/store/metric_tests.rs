//! Metric sample store tests on real files.

use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use joblet_ipc_proto::channel::logs::MetricSample;
use joblet_ipc_proto::job::JobId;

use super::metric_log::MetricLog;
use super::*;

const JOB: &str = "5a1e0c3d-0000-4000-8000-00000000000a";

fn job() -> JobId {
    JobId::parse(JOB).unwrap()
}

fn sample(i: u64) -> MetricSample {
    MetricSample {
        at_ns: 1_000_000 + i * 10,
        cpu_usage_ns: i * 1_000,
        cpu_percent: (i % 100) as f64,
        memory_bytes: 4096 * i,
        memory_limit: 64 << 20,
        io_read_bytes: i,
        io_write_bytes: 2 * i,
        pids: 1 + i % 3,
        net_rx_bytes: 0,
        net_tx_bytes: 0,
    }
}

fn open(dir: &Path, keep: u64) -> Arc<MetricLog> {
    MetricLog::open_keeping(dir, &job(), false, keep)
        .unwrap()
        .log
}

fn reopen(dir: &Path, keep: u64) -> (Arc<MetricLog>, u64) {
    let o = MetricLog::open_keeping(dir, &job(), false, keep).unwrap();
    (o.log, o.dropped_bytes)
}

/// Every sample kept, with the sequence number of the first.
fn all(log: &MetricLog) -> (u64, Vec<MetricSample>) {
    let mut out = Vec::new();
    let mut seq = 0;
    let mut first = None;
    loop {
        let (from, batch) = log.read_batch(seq, usize::MAX).unwrap();
        if batch.is_empty() {
            return (first.unwrap_or(from), out);
        }
        first.get_or_insert(from);
        seq = from + batch.len() as u64;
        out.extend(batch);
    }
}

fn file(dir: &Path) -> PathBuf {
    dir.join("metrics")
}

#[test]
fn appends_and_reads_by_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 100);
    for i in 0..10 {
        assert_eq!(log.append(&sample(i)).unwrap(), i);
    }
    let p = log.progress();
    assert_eq!((p.first_seq, p.next_seq, p.closed), (0, 10, false));
    assert_eq!(all(&log), (0, (0..10).map(sample).collect()));
    let (from, part) = log.read_batch(7, 2).unwrap();
    assert_eq!((from, part), (7, vec![sample(7), sample(8)]));
    assert_eq!(log.read_batch(10, 5).unwrap(), (10, vec![]));
    assert_eq!(log.last(), Some(sample(9)));
    let mode = std::fs::metadata(file(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(file(dir.path())).unwrap().len(),
        10 * SAMPLE_RECORD_LEN as u64
    );
}

#[test]
fn a_torn_tail_is_cut_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 100);
        for i in 0..5 {
            log.append(&sample(i)).unwrap();
        }
    }
    // A record cut short by a crash in the middle of its write.
    let whole = super::sample_record::encode(5, &sample(5));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file(dir.path()))
        .unwrap();
    f.write_all(&whole[..50]).unwrap();
    let (log, dropped) = reopen(dir.path(), 100);
    assert_eq!(dropped, 50);
    assert_eq!(all(&log), (0, (0..5).map(sample).collect()));
    assert_eq!(log.last(), Some(sample(4)));
    assert_eq!(log.append(&sample(5)).unwrap(), 5);
    drop(log);
    let (log, dropped) = reopen(dir.path(), 100);
    assert_eq!(dropped, 0, "recovery is idempotent");
    assert_eq!(all(&log).1.len(), 6);
}

#[test]
fn a_zero_filled_or_out_of_sequence_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 100);
        for i in 0..4 {
            log.append(&sample(i)).unwrap();
        }
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file(dir.path()))
        .unwrap();
    let rec = SAMPLE_RECORD_LEN as u64;
    // A valid record that does not continue the sequence, then space the file system
    // allocated but never filled.
    f.write_all_at(&super::sample_record::encode(42, &sample(42)), 4 * rec)
        .unwrap();
    f.write_all_at(&vec![0u8; 3 * SAMPLE_RECORD_LEN], 5 * rec)
        .unwrap();
    let (log, dropped) = reopen(dir.path(), 100);
    assert_eq!(dropped, 4 * rec);
    assert_eq!(all(&log), (0, (0..4).map(sample).collect()));
}

#[test]
fn a_file_without_one_valid_record_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(file(dir.path()), vec![0xffu8; 300]).unwrap();
    let (log, dropped) = reopen(dir.path(), 100);
    assert_eq!(dropped, 300);
    assert_eq!(log.progress().next_seq, 0);
    assert_eq!(log.append(&sample(0)).unwrap(), 0);
}

#[test]
fn only_the_newest_samples_are_kept_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let keep = 8;
    let log = open(dir.path(), keep);
    for i in 0..33 {
        log.append(&sample(i)).unwrap();
        let count = log.count();
        assert!(count <= keep + keep / 4, "{count} samples kept after {i}");
    }
    let (first, kept) = all(&log);
    assert_eq!(first + kept.len() as u64, 33);
    assert!(kept.len() as u64 >= keep);
    assert_eq!(kept, (first..33).map(sample).collect::<Vec<_>>());
    // Reading from a dropped sequence number starts at the oldest kept.
    assert_eq!(log.read_batch(0, 1).unwrap(), (first, vec![sample(first)]));
    drop(log);
    let (log, dropped) = reopen(dir.path(), keep);
    assert_eq!(dropped, 0);
    assert_eq!(all(&log), (first, kept));
    assert_eq!(log.append(&sample(33)).unwrap(), 33);
    assert!(!dir.path().join("metrics.tmp").exists());
}

#[test]
fn an_interrupted_copy_is_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 100);
        log.append(&sample(0)).unwrap();
    }
    std::fs::write(dir.path().join("metrics.tmp"), b"half a copy").unwrap();
    let (log, _) = reopen(dir.path(), 100);
    assert!(!dir.path().join("metrics.tmp").exists());
    assert_eq!(all(&log).1, vec![sample(0)]);
}

#[test]
fn close_tells_followers_and_survives_in_the_flag_passed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 100);
    let rx = log.subscribe();
    log.append(&sample(0)).unwrap();
    log.close().unwrap();
    assert!(rx.borrow().closed);
    drop(log);
    let closed = MetricLog::open(dir.path(), &job(), true).unwrap().log;
    assert!(closed.progress().closed);
}

#[test]
fn a_complete_job_opens_with_its_metrics_closed_and_trash_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    log.metrics().append(&sample(0)).unwrap();
    assert!(!log.metrics().progress().closed);
    match log.take_writer() {
        TakeWriter::Writer(mut w) => w.finish().unwrap(),
        _ => panic!("no writer"),
    }
    drop(log);
    let log = store.open_job(&job()).unwrap().log;
    assert!(log.metrics().progress().closed);
    assert_eq!(all(log.metrics()).1, vec![sample(0)]);

    let rx = log.metrics().subscribe();
    let trashed = store.trash_job(log.id(), Some(&log)).unwrap();
    assert!(rx.borrow().deleted);
    assert!(trashed.join("metrics").exists());
    Store::purge(&trashed).unwrap();
    assert!(!store.jobs_dir().join(JOB).exists());
}

#[test]
fn a_reader_racing_the_writer_sees_increasing_sequences_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 64);
    let total = 3000u64;
    let writer = std::thread::spawn({
        let log = log.clone();
        move || {
            for i in 0..total {
                log.append(&sample(i)).unwrap();
            }
        }
    });
    let mut seq = 0;
    let mut seen = 0u64;
    while seq < total {
        let (from, batch) = log.read_batch(seq, 7).unwrap();
        assert!(from >= seq, "went backwards");
        for (i, s) in batch.iter().enumerate() {
            // The sample's content says which it is: sequence and content agree.
            assert_eq!(*s, sample(from + i as u64));
        }
        seen += batch.len() as u64;
        seq = from + batch.len() as u64;
        if batch.is_empty() {
            std::thread::yield_now();
        }
    }
    writer.join().unwrap();
    assert!(seen >= 64);
}
