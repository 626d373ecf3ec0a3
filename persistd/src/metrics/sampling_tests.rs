//! The watched set's rules on a real store, with directory sets that read zeros (no
//! cgroup needed; reading real cgroups is covered by `tests/metrics.rs`).

use std::sync::Arc;

use joblet_ipc_proto::job::JobId;

use super::cgroup::CgroupDirs;
use super::sampling::{Sampling, TickReport};
use crate::store::{JobLog, Store, TakeWriter};

fn job(n: u64) -> JobId {
    JobId::parse(&format!("5a3b1e00-0000-4000-8000-{n:012x}")).unwrap()
}

fn no_dirs() -> CgroupDirs {
    CgroupDirs::new(&[], vec![]).unwrap()
}

/// Completes the job's output, as its pump does when both pipes reach end of file.
fn finish_output(log: &Arc<JobLog>) {
    match log.take_writer() {
        TakeWriter::Writer(mut w) => w.finish().unwrap(),
        _ => panic!("no writer"),
    }
}

#[test]
fn a_watched_job_is_sampled_at_once_every_pass_and_once_more_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(1)).unwrap().log;
    let mut sampling = Sampling::new();
    sampling.watch(log.clone(), no_dirs(), 0);
    assert_eq!(log.metrics().count(), 1, "a first sample right away");
    for pass in 2..=4 {
        let report = sampling.sample_all();
        assert_eq!(
            report,
            TickReport {
                sampled: 1,
                ended: 0
            }
        );
        assert_eq!(log.metrics().count(), pass);
    }
    finish_output(&log);
    sampling.end(&log);
    assert_eq!(log.metrics().count(), 5, "the final sample");
    assert!(log.metrics().progress().closed);
    assert!(sampling.is_empty());
    // A Watch repeated after the end (a spawner reconnecting) samples nothing more.
    sampling.watch(log.clone(), no_dirs(), 0);
    assert_eq!(log.metrics().count(), 5);
    assert!(sampling.is_empty());
}

#[test]
fn a_watch_between_output_complete_and_end_keeps_the_final_sample() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(2)).unwrap().log;
    let mut sampling = Sampling::new();
    sampling.watch(log.clone(), no_dirs(), 0);
    finish_output(&log);
    sampling.watch(log.clone(), no_dirs(), 0);
    assert_eq!(sampling.len(), 1, "still watched until its end");
    sampling.end(&log);
    assert_eq!(log.metrics().count(), 3);
}

#[test]
fn a_job_that_ended_unwatched_gets_exactly_one_sample_from_a_late_watch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(3)).unwrap().log;
    let mut sampling = Sampling::new();
    finish_output(&log);
    sampling.end(&log);
    assert!(log.metrics().progress().closed);
    assert_eq!(log.metrics().count(), 0);
    sampling.watch(log.clone(), no_dirs(), 0);
    assert_eq!(log.metrics().count(), 1);
    assert!(sampling.is_empty());
    sampling.watch(log.clone(), no_dirs(), 0);
    assert_eq!(log.metrics().count(), 1);
}

#[test]
fn a_deleted_job_leaves_the_set_and_its_samples_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(4)).unwrap().log;
    let other = store.open_job(&job(5)).unwrap().log;
    let mut sampling = Sampling::new();
    sampling.watch(log.clone(), no_dirs(), 0);
    sampling.watch(other.clone(), no_dirs(), 0);
    let trashed = store.trash_job(log.id(), Some(&log)).unwrap();
    assert_eq!(
        sampling.sample_all(),
        TickReport {
            sampled: 1,
            ended: 1
        }
    );
    assert_eq!(sampling.len(), 1);
    Store::purge(&trashed).unwrap();
    assert_eq!(
        sampling.sample_all(),
        TickReport {
            sampled: 1,
            ended: 0
        }
    );
}

#[test]
fn the_first_sample_after_a_restart_continues_from_the_stored_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(6)).unwrap().log;
    let mut sampling = Sampling::new();
    sampling.watch(log.clone(), no_dirs(), 0);
    sampling.sample_all();
    drop((sampling, log));
    // A new process: the job is opened from disk and watched again.
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job(6)).unwrap().log;
    assert_eq!(log.metrics().count(), 2);
    let mut sampling = Sampling::new();
    sampling.watch(log.clone(), no_dirs(), 0);
    let (_, all) = log.metrics().read_batch(0, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].at_ns < w[1].at_ns));
}
