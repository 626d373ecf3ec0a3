//! Store tests on real pipes and real files.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use joblet_ipc_proto::MAX_LOG_CHUNK;
use joblet_ipc_proto::channel::logs::LogRange;
use joblet_ipc_proto::job::{JobId, Stream};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::*;

const JOB: &str = "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c";

fn job() -> JobId {
    JobId::parse(JOB).unwrap()
}

/// A pipe whose read end is non-blocking, as the pump uses it.
fn pipe() -> (OwnedFd, std::io::PipeWriter) {
    let (r, w) = std::io::pipe().unwrap();
    let r = OwnedFd::from(r);
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    (r, w)
}

fn writer_of(log: &Arc<JobLog>) -> LogWriter {
    match log.take_writer() {
        TakeWriter::Writer(w) => w,
        TakeWriter::Busy => panic!("writer busy"),
        TakeWriter::Complete => panic!("log complete"),
    }
}

/// Appends until the pipe is empty; returns the result that stopped it.
fn drain(w: &mut LogWriter, stream: Stream, pipe: &OwnedFd) -> Append {
    loop {
        match w.append_from_pipe(stream, pipe.as_fd()).unwrap() {
            Append::Stored { .. } => continue,
            other => return other,
        }
    }
}

/// Every stored chunk, as ranges with their bytes read the way a reader reads them: from the
/// read-only files.
fn read_all(log: &JobLog) -> Vec<(LogRange, Vec<u8>)> {
    read_from(log, 0, u64::MAX)
}

fn read_from(log: &JobLog, from: u64, max_chunks: u64) -> Vec<(LogRange, Vec<u8>)> {
    let files = log.open_data_readonly().unwrap();
    log.read_ranges(from, max_chunks)
        .unwrap()
        .into_iter()
        .map(|r| (r, range_bytes(&files, &r)))
        .collect()
}

fn range_bytes(files: &[std::fs::File; 2], r: &LogRange) -> Vec<u8> {
    let mut data = vec![0u8; r.len as usize];
    files[stream_index(r.stream)]
        .read_exact_at(&mut data, r.offset)
        .unwrap();
    data
}

fn stream_bytes(log: &JobLog, stream: Stream) -> Vec<u8> {
    read_all(log)
        .into_iter()
        .filter(|(r, _)| r.stream == stream)
        .flat_map(|(_, data)| data)
        .collect()
}

/// The index's records, straight from the file.
fn records(store: &Store) -> Vec<Record> {
    std::fs::read(index_path(store))
        .unwrap()
        .chunks_exact(RECORD_LEN)
        .map(|b| Record::decode(b.try_into().unwrap()).unwrap())
        .collect()
}

fn index_path(store: &Store) -> std::path::PathBuf {
    store.jobs_dir().join(JOB).join("index")
}

fn append_to(path: &Path, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    (&f).write_all(bytes).unwrap();
}

#[test]
fn appends_and_reads_by_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    let (out_r, mut out_w) = pipe();
    let (err_r, mut err_w) = pipe();

    out_w.write_all(b"first\n").unwrap();
    assert_eq!(drain(&mut w, Stream::Stdout, &out_r), Append::WouldBlock);
    err_w.write_all(b"oops\n").unwrap();
    assert_eq!(drain(&mut w, Stream::Stderr, &err_r), Append::WouldBlock);
    out_w.write_all(b"second\n").unwrap();
    assert_eq!(drain(&mut w, Stream::Stdout, &out_r), Append::WouldBlock);
    drop(out_w);
    assert_eq!(drain(&mut w, Stream::Stdout, &out_r), Append::Eof);

    assert_eq!(log.progress().chunks, 3);
    let all = read_all(&log);
    let got: Vec<(u64, u64, Stream, &[u8])> = all
        .iter()
        .map(|(r, data)| (r.first_seq, r.last_seq, r.stream, data.as_slice()))
        .collect();
    // Each stream switch starts a new range.
    assert_eq!(
        got,
        [
            (0, 0, Stream::Stdout, &b"first\n"[..]),
            (1, 1, Stream::Stderr, &b"oops\n"[..]),
            (2, 2, Stream::Stdout, &b"second\n"[..]),
        ]
    );
    // Reading from the middle is direct, and limits are honoured.
    let from_one = read_from(&log, 1, 1);
    assert_eq!(from_one.len(), 1);
    assert_eq!(from_one[0].1, b"oops\n");
    assert_eq!(log.read_ranges(2, 10).unwrap().len(), 1);
    assert!(log.read_ranges(3, 10).unwrap().is_empty());
    // Data files are plain concatenations of each stream.
    let stdout = std::fs::read(store.jobs_dir().join(JOB).join("stdout")).unwrap();
    assert_eq!(stdout, b"first\nsecond\n");
}

#[test]
fn contiguous_chunks_of_a_stream_are_one_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    let (r, mut wr) = pipe();
    for line in ["a\n", "bb\n", "ccc\n"] {
        wr.write_all(line.as_bytes()).unwrap();
        drain(&mut w, Stream::Stdout, &r);
    }
    assert_eq!(log.progress().chunks, 3);
    let all = read_all(&log);
    assert_eq!(all.len(), 1);
    let (range, data) = &all[0];
    assert_eq!((range.first_seq, range.last_seq, range.offset), (0, 2, 0));
    assert_eq!(data, b"a\nbb\nccc\n");
    // Its time is its last chunk's.
    match records(&store)[2] {
        Record::Chunk { at_ns, .. } => assert_eq!(range.at_ns, at_ns),
        other => panic!("{other:?}"),
    }
}

#[test]
fn readers_get_their_own_read_only_files_and_never_a_replaced_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let [out, err] = log.open_data_readonly().unwrap();
    for f in [&out, &err] {
        assert!(f.write_at(b"x", 0).is_err(), "a reader's file is writable");
        let flags = fcntl(f, FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "a reader's file is inherited");
    }
    // A file put where the data file was is not the log's: refused, never served.
    let stdout = store.jobs_dir().join(JOB).join("stdout");
    std::fs::remove_file(&stdout).unwrap();
    std::fs::write(&stdout, b"planted").unwrap();
    let e = log.open_data_readonly().unwrap_err();
    assert!(e.to_string().contains("not the file"), "{e}");
    // A symlink is not followed.
    std::fs::remove_file(&stdout).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &stdout).unwrap();
    assert!(log.open_data_readonly().is_err());
}

#[test]
fn a_record_never_exceeds_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    let (r, mut wr) = pipe();
    // Let the pipe hold more than one chunk so a single splice could take it all.
    fcntl(&r, FcntlArg::F_SETPIPE_SZ(4 * MAX_LOG_CHUNK as i32)).unwrap();
    let payload: Vec<u8> = (0..3 * MAX_LOG_CHUNK + 17).map(|i| i as u8).collect();
    wr.write_all(&payload).unwrap();
    drop(wr);
    assert_eq!(drain(&mut w, Stream::Stdout, &r), Append::Eof);
    let records = records(&store);
    assert!(records.len() >= 4);
    assert!(records.iter().all(|r| matches!(r,
        Record::Chunk { len, .. } if *len as usize <= MAX_LOG_CHUNK)));
    // One range covers them all: contiguous, one stream, under a range's maximum.
    let ranges = log.read_ranges(0, u64::MAX).unwrap();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].len as usize, payload.len());
    assert_eq!(stream_bytes(&log, Stream::Stdout), payload);
}

#[test]
fn recovers_from_a_torn_index_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        let log = store.open_job(&job()).unwrap().log;
        let mut w = writer_of(&log);
        let (r, mut wr) = pipe();
        for line in ["a\n", "b\n"] {
            wr.write_all(line.as_bytes()).unwrap();
            drain(&mut w, Stream::Stdout, &r);
        }
    }
    // A record cut off after 13 bytes, as a crash in the middle of its write leaves it.
    let good = Record::Chunk {
        stream: Stream::Stdout,
        offset: 4,
        len: 2,
        at_ns: 1,
    }
    .encode();
    append_to(&index_path(&store), &good[..13]);

    let opened = store.open_job(&job()).unwrap();
    assert_eq!(opened.report.dropped_index_bytes, 13);
    assert_eq!(opened.report.tail_records, 0);
    assert_eq!(opened.log.progress().chunks, 2);
    assert_eq!(std::fs::metadata(index_path(&store)).unwrap().len(), 64);
    assert_eq!(stream_bytes(&opened.log, Stream::Stdout), b"a\nb\n");

    // The recovered log keeps growing where it stopped.
    let mut w = writer_of(&opened.log);
    let (r, mut wr) = pipe();
    wr.write_all(b"c\n").unwrap();
    drain(&mut w, Stream::Stdout, &r);
    assert_eq!(stream_bytes(&opened.log, Stream::Stdout), b"a\nb\nc\n");
}

#[test]
fn indexes_data_whose_records_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        let log = store.open_job(&job()).unwrap().log;
        let mut w = writer_of(&log);
        let (r, mut wr) = pipe();
        wr.write_all(b"kept\n").unwrap();
        drain(&mut w, Stream::Stdout, &r);
    }
    // Spliced into the files, then the process died before writing the records; one tail
    // is larger than a frame, so it needs several records.
    let big: Vec<u8> = (0..MAX_LOG_CHUNK + 10)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    append_to(&store.jobs_dir().join(JOB).join("stdout"), b"lost-index\n");
    append_to(&store.jobs_dir().join(JOB).join("stderr"), &big);

    let opened = store.open_job(&job()).unwrap();
    assert_eq!(opened.report.tail_records, 3);
    assert_eq!(opened.log.progress().chunks, 4);
    assert_eq!(
        stream_bytes(&opened.log, Stream::Stdout),
        b"kept\nlost-index\n"
    );
    assert_eq!(stream_bytes(&opened.log, Stream::Stderr), big);
    // Opening again finds nothing left to repair: recovery is idempotent.
    drop(opened);
    let again = store.open_job(&job()).unwrap();
    assert!(!again.report.repaired(), "{:?}", again.report);
    assert_eq!(again.log.progress().chunks, 4);
}

#[test]
fn a_corrupt_middle_record_loses_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        let log = store.open_job(&job()).unwrap().log;
        let mut w = writer_of(&log);
        let (r, mut wr) = pipe();
        for line in ["1\n", "2\n", "3\n", "4\n"] {
            wr.write_all(line.as_bytes()).unwrap();
            drain(&mut w, Stream::Stdout, &r);
        }
    }
    let index = std::fs::OpenOptions::new()
        .write(true)
        .open(index_path(&store))
        .unwrap();
    index.write_all_at(&[0xff], RECORD_LEN as u64 + 3).unwrap();
    let opened = store.open_job(&job()).unwrap();
    // Records 1.. are dropped, and their bytes indexed again from the data file.
    assert_eq!(opened.report.dropped_index_bytes, 3 * RECORD_LEN as u64);
    assert!(opened.report.tail_records >= 1);
    assert_eq!(stream_bytes(&opened.log, Stream::Stdout), b"1\n2\n3\n4\n");
}

#[test]
fn the_end_record_marks_the_log_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    let (r, mut wr) = pipe();
    wr.write_all(b"done\n").unwrap();
    drop(wr);
    assert_eq!(drain(&mut w, Stream::Stdout, &r), Append::Eof);
    assert!(!log.progress().complete);
    w.finish().unwrap();
    drop(w);
    assert!(log.progress().complete);
    assert!(matches!(log.take_writer(), TakeWriter::Complete));
    drop(log);

    let opened = store.open_job(&job()).unwrap();
    let p = opened.log.progress();
    assert!(p.complete);
    assert_eq!(p.chunks, 1, "the end record is not a chunk");
    assert!(matches!(opened.log.take_writer(), TakeWriter::Complete));
    assert_eq!(read_all(&opened.log).len(), 1);
    // The index holds the chunk and the end record.
    let index = std::fs::read(index_path(&store)).unwrap();
    assert_eq!(index.len(), 2 * RECORD_LEN);
    let mut last = [0u8; RECORD_LEN];
    last.copy_from_slice(&index[RECORD_LEN..]);
    assert!(matches!(Record::decode(&last), Ok(Record::End { .. })));
}

/// `finish` does not sync a stream that holds no bytes: what makes that safe is that an empty
/// data file lost in a crash comes back, empty, when the log is opened again.
#[test]
fn a_lost_empty_stream_file_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    w.finish().unwrap();
    drop((w, log));
    let stderr = store.jobs_dir().join(JOB).join("stderr");
    std::fs::remove_file(&stderr).unwrap();

    let opened = store.open_job(&job()).unwrap();
    let p = opened.log.progress();
    assert!(p.complete);
    assert_eq!(p.chunks, 0);
    assert_eq!(std::fs::metadata(&stderr).unwrap().len(), 0);
}

#[test]
fn the_writer_is_single_and_comes_back_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let mut w = writer_of(&log);
    assert!(log.is_attached());
    assert!(matches!(log.take_writer(), TakeWriter::Busy));
    let (r, mut wr) = pipe();
    wr.write_all(b"x").unwrap();
    drain(&mut w, Stream::Stdout, &r);
    drop(w);
    assert!(!log.is_attached());
    // The next writer continues at the same position.
    let mut w = writer_of(&log);
    wr.write_all(b"y").unwrap();
    drain(&mut w, Stream::Stdout, &r);
    assert_eq!(stream_bytes(&log, Stream::Stdout), b"xy");
    assert_eq!(log.progress().chunks, 2);
}

#[test]
fn a_reader_following_a_writer_sees_every_byte_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let lines = 2000;
    let expected: Vec<u8> = (0..lines)
        .flat_map(|i| format!("line-{i}\n").into_bytes())
        .collect();

    let (r, mut wr) = pipe();
    let producer = std::thread::spawn(move || {
        for i in 0..lines {
            wr.write_all(format!("line-{i}\n").as_bytes()).unwrap();
            if i % 100 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
    let mut w = writer_of(&log);
    let pump = std::thread::spawn(move || {
        let mut poll_fds = [nix::poll::PollFd::new(
            r.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        loop {
            match w.append_from_pipe(Stream::Stdout, r.as_fd()).unwrap() {
                Append::Stored { .. } => {}
                Append::WouldBlock => {
                    nix::poll::poll(&mut poll_fds, nix::poll::PollTimeout::NONE).unwrap();
                }
                Append::Eof => break,
            }
        }
        w.finish().unwrap();
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let files = log.open_data_readonly().unwrap();
    let got = rt.block_on(async {
        let mut rx = log.subscribe();
        let mut seq = 0;
        let mut got = Vec::new();
        loop {
            let p = *rx.borrow_and_update();
            for r in log.read_ranges(seq, 64).unwrap() {
                assert_eq!(r.first_seq, seq);
                seq = r.next_seq();
                got.extend_from_slice(&range_bytes(&files, &r));
            }
            if seq < p.chunks {
                continue;
            }
            if p.complete {
                break got;
            }
            rx.changed().await.unwrap();
        }
    });
    producer.join().unwrap();
    pump.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "follower saw a different byte sequence");
}

#[test]
fn store_dirs_are_private_and_foreign_entries_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::open(&data).unwrap();
    for d in [&data, &data.join("jobs"), &data.join("trash")] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", d.display());
    }
    std::fs::create_dir(data.join("jobs").join("not-a-job")).unwrap();
    store.open_job(&job()).unwrap();
    let mut opened = 0;
    let scan = store.open_all(|_| opened += 1).unwrap();
    assert_eq!(opened, 1);
    assert!(scan.failed.is_empty());
    assert_eq!(scan.foreign, vec![data.join("jobs").join("not-a-job")]);
    let job_dir = data.join("jobs").join(JOB);
    let mode = std::fs::metadata(&job_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn trashing_a_job_stops_readers_and_purge_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = store.open_job(&job()).unwrap().log;
    let rx = log.subscribe();
    let trashed = store.trash_job(log.id(), Some(&log)).unwrap();
    assert!(rx.borrow().deleted);
    assert!(!store.jobs_dir().join(JOB).exists());
    Store::purge(&trashed).unwrap();
    assert!(!trashed.exists());
    // A trash entry left by a crash is removed at the next start.
    let log = store.open_job(&job()).unwrap().log;
    let trashed = store.trash_job(log.id(), Some(&log)).unwrap();
    drop(store);
    let _store = Store::open(dir.path()).unwrap();
    assert!(!trashed.exists());
}
