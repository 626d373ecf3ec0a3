//! The real server on a temporary socket, driven with the real protocol.

mod common;

use std::collections::HashSet;

use common::*;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::{JobId, JobState};
use joblet_ipc_proto::{IpcError, RemoteErrorKind};
use serde::{Deserialize, Serialize};

fn error_kind(reply: &FromState) -> RemoteErrorKind {
    match reply {
        FromState::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_message(reply: &FromState) -> String {
    match reply {
        FromState::Error(e) => e.message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn every_request_and_its_errors() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let mut c = client(&place).await;

    assert_done(call(&mut c, create(1)).await);
    let dup = call(&mut c, create(1)).await;
    assert_eq!(error_kind(&dup), RemoteErrorKind::AlreadyExists);

    match call(&mut c, ToState::Get { job: id(1) }).await {
        FromState::Record(r) => assert_eq!(r, record(1)),
        other => panic!("{other:?}"),
    }
    let missing = call(&mut c, ToState::Get { job: id(2) }).await;
    assert_eq!(error_kind(&missing), RemoteErrorKind::NotFound);

    assert_done(call(&mut c, move_to(1, JobState::Running, 10, None)).await);
    // Repeats are harmless.
    assert_done(call(&mut c, move_to(1, JobState::Running, 11, None)).await);
    let illegal = call(&mut c, move_to(1, JobState::Initializing, 12, None)).await;
    assert_eq!(error_kind(&illegal), RemoteErrorKind::FailedPrecondition);
    assert!(
        error_message(&illegal).contains("from RUNNING to INITIALIZING"),
        "{illegal:?}"
    );
    let no_outcome = call(&mut c, move_to(1, JobState::Completed, 13, None)).await;
    assert_eq!(error_kind(&no_outcome), RemoteErrorKind::InvalidArgument);

    let running = call(&mut c, ToState::Delete { job: id(1) }).await;
    assert_eq!(error_kind(&running), RemoteErrorKind::FailedPrecondition);
    assert_done(call(&mut c, move_to(1, JobState::Completed, 20, Some(exited(0)))).await);
    match call(&mut c, ToState::Get { job: id(1) }).await {
        FromState::Record(r) => {
            assert_eq!(
                (r.state, r.started_ns, r.ended_ns),
                (JobState::Completed, 10, 20)
            );
            assert_eq!(r.outcome, Some(exited(0)));
        }
        other => panic!("{other:?}"),
    }

    assert_done(call(&mut c, create(0x10001)).await);
    match call(
        &mut c,
        ToState::Resolve {
            prefix: id(1).as_str()[..9].into(),
        },
    )
    .await
    {
        FromState::Resolved(j) => assert_eq!(j, id(1)),
        other => panic!("{other:?}"),
    }
    let ambiguous = call(&mut c, ToState::Resolve { prefix: "0".into() }).await;
    assert_eq!(error_kind(&ambiguous), RemoteErrorKind::InvalidArgument);
    assert!(
        error_message(&ambiguous).contains("ambiguous prefix, 2 jobs match"),
        "{ambiguous:?}"
    );
    let none = call(&mut c, ToState::Resolve { prefix: "f".into() }).await;
    assert_eq!(error_kind(&none), RemoteErrorKind::NotFound);
    let hostile = call(
        &mut c,
        ToState::Resolve {
            prefix: "../".into(),
        },
    )
    .await;
    assert_eq!(error_kind(&hostile), RemoteErrorKind::InvalidArgument);

    match call(&mut c, ToState::List { after: None }).await {
        FromState::Records { records, more } => {
            let ids: Vec<JobId> = records.into_iter().map(|r| r.id).collect();
            assert_eq!(ids, vec![id(1), id(0x10001)]);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    match call(&mut c, ToState::List { after: Some(id(1)) }).await {
        FromState::Records { records, more } => {
            assert_eq!(records.len(), 1);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }

    assert_done(call(&mut c, ToState::Delete { job: id(1) }).await);
    let gone = call(&mut c, ToState::Get { job: id(1) }).await;
    assert_eq!(error_kind(&gone), RemoteErrorKind::NotFound);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn listing_big_records_spans_frames() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let mut c = client(&place).await;
    for n in 0..12 {
        let mut r = record(n);
        r.spec.args = vec!["y".repeat(50 * 1024)];
        assert_done(call(&mut c, ToState::Create { record: r }).await);
    }
    let mut seen = HashSet::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        // Each reply decodes within the frame limit, or recv would fail.
        let FromState::Records { records, more } = call(&mut c, ToState::List { after }).await
        else {
            panic!("List must answer Records");
        };
        pages += 1;
        assert!(
            !records.is_empty() && records.len() <= 2,
            "{}",
            records.len()
        );
        after = records.last().map(|r| r.id.clone());
        seen.extend(records.into_iter().map(|r| r.id));
        if !more {
            break;
        }
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(pages, 6);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_with_their_effects() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let (tx, mut rx) = client(&place).await.split();
    let script = vec![
        create(7),
        ToState::Get { job: id(7) },
        move_to(7, JobState::Running, 5, None),
        ToState::Get { job: id(7) },
        ToState::Delete { job: id(7) },
        move_to(7, JobState::Stopped, 6, Some(exited(143))),
        ToState::Delete { job: id(7) },
        ToState::Get { job: id(7) },
        create(7),
        ToState::List { after: None },
    ];
    // Everything is sent before any reply is read.
    for request in &script {
        tx.send(request, &[]).await.unwrap();
    }
    let mut replies = Vec::new();
    for _ in &script {
        replies.push(rx.recv::<FromState>().await.unwrap().msg);
    }
    let state_of = |reply: &FromState| match reply {
        FromState::Record(r) => r.state,
        other => panic!("{other:?}"),
    };
    assert!(matches!(replies[0], FromState::Done));
    assert_eq!(state_of(&replies[1]), JobState::Initializing);
    assert!(matches!(replies[2], FromState::Done));
    assert_eq!(state_of(&replies[3]), JobState::Running);
    assert_eq!(error_kind(&replies[4]), RemoteErrorKind::FailedPrecondition);
    assert!(matches!(replies[5], FromState::Done));
    assert!(matches!(replies[6], FromState::Done));
    assert_eq!(error_kind(&replies[7]), RemoteErrorKind::NotFound);
    assert!(matches!(replies[8], FromState::Done));
    match &replies[9] {
        FromState::Records { records, .. } => {
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].state, JobState::Initializing);
        }
        other => panic!("{other:?}"),
    }
    drop((tx, rx));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_connections_all_durable_after_restart() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let mut c = client(&place).await;
    for n in 0..100 {
        assert_done(call(&mut c, create(n)).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..5u64 {
        let pipe = client(&place).await;
        tasks.spawn(async move {
            let (tx, mut rx) = pipe.split();
            let jobs: Vec<u64> = (conn * 20..conn * 20 + 20).collect();
            for &n in &jobs {
                tx.send(&move_to(n, JobState::Running, 100 + n, None), &[])
                    .await
                    .unwrap();
            }
            for _ in &jobs {
                assert_done(rx.recv::<FromState>().await.unwrap().msg);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    drop(c);
    server.stop().await;

    let server = TestServer::start(&place, me());
    let mut c = client(&place).await;
    for n in 0..100 {
        match call(&mut c, ToState::Get { job: id(n) }).await {
            FromState::Record(r) => {
                assert_eq!((r.state, r.started_ns), (JobState::Running, 100 + n));
            }
            other => panic!("{other:?}"),
        }
    }
    drop(c);
    server.stop().await;
}

/// A message the state channel does not have: variant 7 of an enum stated reads as `ToState`.
#[derive(Debug, Serialize, Deserialize)]
enum NotToState {
    V0,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
}

impl Message for NotToState {
    fn name(&self) -> &'static str {
        "NotToState"
    }
}

#[tokio::test]
async fn a_malformed_frame_closes_only_its_connection() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let mut good = client(&place).await;
    assert_done(call(&mut good, create(1)).await);

    let mut bad = client(&place).await;
    bad.send(&NotToState::V7, &[]).await.unwrap();
    let err = bad.recv::<FromState>().await.err().unwrap();
    assert!(matches!(err, IpcError::Closed), "{err}");

    // The daemon and the other connection carry on.
    assert_done(call(&mut good, move_to(1, JobState::Running, 1, None)).await);
    let mut fresh = client(&place).await;
    assert!(matches!(
        call(&mut fresh, ToState::Get { job: id(1) }).await,
        FromState::Record(_)
    ));
    drop((good, fresh));
    server.stop().await;
}

#[tokio::test]
async fn other_uids_are_refused() {
    let place = Place::new();
    let server = TestServer::start(&place, me() + 1);
    let err = joblet_ipc_proto::tokio::connect(place.socket(), joblet_ipc_proto::Channel::State)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not allowed"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn stopping_closes_open_connections() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    let mut c = client(&place).await;
    assert_done(call(&mut c, create(1)).await);
    server.stop().await;
    let err = c.recv::<FromState>().await.err().unwrap();
    assert!(matches!(err, IpcError::Closed), "{err}");
}
