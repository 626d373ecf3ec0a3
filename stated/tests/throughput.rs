//! Writes per second through the real server and protocol: 1,000 jobs × 3 writes each
//! (Create, RUNNING, COMPLETED), every write durable before it is answered.
//!
//! Prints its figures: `cargo test -p joblet-stated --release --test throughput -- --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::job::JobState;

const JOBS: u64 = 1_000;

fn job_writes(n: u64) -> [ToState; 3] {
    [
        create(n),
        move_to(n, JobState::Running, 10 + n, None),
        move_to(n, JobState::Completed, 20 + n, Some(exited(0))),
    ]
}

/// Every job ended up COMPLETED, and nothing else is there.
async fn check_all_completed(place: &Place, base: u64) {
    let ours: std::collections::HashSet<_> = (base..base + JOBS).map(id).collect();
    let mut c = client(place).await;
    let mut after = None;
    let mut count = 0;
    loop {
        let FromState::Records { records, more } = call(&mut c, ToState::List { after }).await
        else {
            panic!("List must answer Records");
        };
        for r in &records {
            assert_eq!(r.state, JobState::Completed, "{}", r.id);
        }
        count += records.iter().filter(|r| ours.contains(&r.id)).count();
        after = records.last().map(|r| r.id.clone());
        if !more {
            break;
        }
    }
    assert_eq!(count as u64, JOBS);
}

fn report(name: &str, writes: u64, commits: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "stated throughput [{name}]: {writes} writes in {secs:.3} s = {:.0} writes/s \
         ({:.0} jobs/s), {commits} commits ({:.1} writes per commit)",
        writes as f64 / secs,
        writes as f64 / secs / 3.0,
        writes as f64 / commits.max(1) as f64,
    );
}

/// `conns` connections, each taking its share of jobs one request at a time.
async fn request_reply(place: &Place, server: &TestServer, conns: u64, base: u64) {
    let commits = server.commits();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let mut conn = client(place).await;
        tasks.spawn(async move {
            for n in (base..base + JOBS).filter(|n| n % conns == c) {
                for w in job_writes(n) {
                    assert_done(call(&mut conn, w).await);
                }
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    report(
        &format!("{conns} connections, request/reply"),
        JOBS * 3,
        server.commits() - commits,
        started,
    );
}

/// One connection, every write sent without waiting for the previous reply.
async fn pipelined(place: &Place, server: &TestServer, base: u64) {
    let commits = server.commits();
    let started = Instant::now();
    let (tx, mut rx) = client(place).await.split();
    let sending = tokio::spawn(async move {
        for n in base..base + JOBS {
            for w in job_writes(n) {
                tx.send(&w, &[]).await.unwrap();
            }
        }
    });
    for _ in 0..JOBS * 3 {
        assert_done(rx.recv::<FromState>().await.unwrap().msg);
    }
    sending.await.unwrap();
    report(
        "1 connection, pipelined",
        JOBS * 3,
        server.commits() - commits,
        started,
    );
}

#[tokio::test]
async fn thousand_jobs_three_writes_each() {
    let place = Place::new();
    let server = TestServer::start(&place, me());
    request_reply(&place, &server, 1, 0).await;
    check_all_completed(&place, 0).await;
    request_reply(&place, &server, 16, 10_000).await;
    check_all_completed(&place, 10_000).await;
    pipelined(&place, &server, 20_000).await;
    check_all_completed(&place, 20_000).await;
    server.stop().await;
}
