//! Property tests of the frame decoder: whatever bytes arrive, decoding returns a value or an
//! error and never panics; valid messages survive a round trip; a corrupted valid frame is
//! either refused or decodes to some valid message (never a panic, never an invalid JobId).

use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogRange, ToPersistLogs};
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::channel::spawner::{FromSpawner, SpawnerRequest, ToSpawner};
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::codec::{self, decode, encode};
use joblet_ipc_proto::handshake::{Hello, HelloReply};
use joblet_ipc_proto::job::{EnvVar, JobId, JobSpec, LaunchSpec, Limits, Stream};
use joblet_ipc_proto::{MAX_FRAME_LEN, MAX_LOG_RANGE};
use proptest::prelude::*;

/// Runs every decoder of every channel on `frame`.
fn decode_all(frame: &[u8]) {
    let _ = decode::<Hello>(frame);
    let _ = decode::<HelloReply>(frame);
    let _ = decode::<ToSpawner>(frame);
    let _ = decode::<FromSpawner>(frame);
    let _ = decode::<ToPersistOutput>(frame);
    let _ = decode::<FromPersistOutput>(frame);
    let _ = decode::<ToPersistLogs>(frame);
    let _ = decode::<FromPersistLogs>(frame);
    let _ = decode::<ToState>(frame);
    let _ = decode::<FromState>(frame);
}

fn job_id() -> impl Strategy<Value = JobId> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        .prop_map(|s| JobId::parse(&s).expect("strategy yields valid ids"))
}

fn launch() -> impl Strategy<Value = LaunchSpec> {
    (
        "[a-z/]{1,20}",
        prop::collection::vec(".{0,20}", 0..5),
        prop::collection::vec(("[A-Z_]{1,8}", ".{0,16}"), 0..4),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(command, args, env, cpu, mem)| LaunchSpec {
            spec: JobSpec {
                command,
                args,
                env: env.into_iter().map(|(k, v)| EnvVar::new(k, v)).collect(),
                limits: Limits {
                    cpu_percent: cpu,
                    memory_mb: mem,
                    ..Default::default()
                },
                ..Default::default()
            },
            secret_env: vec![],
            has_upload_dir: false,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&frame);
    }

    #[test]
    fn start_job_round_trips(id in any::<u64>(), job in job_id(), l in launch()) {
        let msg = ToSpawner { id, request: SpawnerRequest::StartJob { job: job.clone(), launch: l.clone() } };
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        let back: ToSpawner = decode(&buf).unwrap();
        prop_assert_eq!(back.id, id);
        match back.request {
            SpawnerRequest::StartJob { job: j, launch: l2 } => {
                prop_assert_eq!(j, job);
                prop_assert_eq!(l2, l);
            }
            other => prop_assert!(false, "decoded to {:?}", other),
        }
    }

    #[test]
    fn corrupted_frames_never_panic(
        job in job_id(),
        l in launch(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        encode(&ToSpawner { id: 1, request: SpawnerRequest::StartJob { job, launch: l } }, &mut buf).unwrap();
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        decode_all(&buf);
        decode_all(&buf[..cut.index(buf.len())]);
    }

    #[test]
    fn log_ranges_round_trip_and_bad_ones_are_refused(
        first_seq in any::<u64>(),
        chunks in any::<u64>(),
        offset in 0u64..(1 << 40),
        len in any::<u32>(),
    ) {
        let r = LogRange {
            first_seq,
            last_seq: first_seq.wrapping_add(chunks),
            stream: Stream::Stderr,
            at_ns: 5,
            offset,
            len,
        };
        let msg = FromPersistLogs::Range(r);
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        let back = decode::<FromPersistLogs>(&buf).unwrap();
        prop_assert!(matches!(back, FromPersistLogs::Range(b) if b == r));
        let valid = len >= 1 && len as usize <= MAX_LOG_RANGE && r.last_seq >= first_seq;
        prop_assert_eq!(codec::check(&back, 0).is_ok(), valid);
    }
}

#[test]
fn a_hostile_length_prefix_does_not_allocate_or_panic() {
    // An Error whose message claims 2^63 bytes but carries four.
    let mut frame = vec![5u8, 6]; // FromPersistLogs::Error, RemoteErrorKind::Internal
    frame.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    frame.extend([1, 2, 3, 4]);
    assert!(decode::<FromPersistLogs>(&frame).is_err());
}

#[test]
fn a_frame_over_the_limit_is_refused_before_parsing() {
    let frame = vec![0u8; MAX_FRAME_LEN + 1];
    assert!(decode::<Hello>(&frame).is_err());
}
