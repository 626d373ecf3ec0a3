//! Listing in pages that fit a reply frame.

use super::*;

/// Lists everything page by page, checking each page would fit in a reply frame.
pub(super) fn list_all(store: &Store) -> (Vec<JobRecord>, Vec<usize>) {
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    let mut buf = Vec::new();
    loop {
        let page = store.list(after.as_ref()).unwrap();
        let reply = FromState::Records {
            records: page.records.clone(),
            more: page.more,
        };
        codec::encode(&reply, &mut buf).expect("page must fit in a frame");
        assert!(buf.len() <= MAX_FRAME_LEN);
        sizes.push(page.records.len());
        after = page.records.last().map(|r| r.id.clone());
        all.extend(page.records);
        if !page.more {
            return (all, sizes);
        }
        assert!(after.is_some(), "a page with more must not be empty");
    }
}

#[tokio::test]
async fn list_pages_small_records_in_id_order() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    // Created out of order, listed in id order.
    let mut pending = Vec::new();
    for n in (0..3000u64).rev() {
        pending.push(
            store
                .submit(WriteOp::Create(Box::new(record(n, JobState::Initializing))))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.outcome().await.unwrap();
    }
    let (all, sizes) = list_all(&store);
    assert_eq!(all.len(), 3000);
    let ids: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert!(sizes.len() > 1, "3000 records need several pages");
    // Pages are full, not a record at a time.
    assert!(sizes[0] > 500, "first page held only {}", sizes[0]);
    close(store, writer);
}

/// A record whose spec takes about `spec_bytes`.
fn big_record(n: u64, spec_bytes: usize) -> JobRecord {
    let mut r = record(n, JobState::Initializing);
    r.spec.args = vec!["x".repeat(spec_bytes)];
    r
}

fn encoded_len(r: &JobRecord) -> usize {
    postcard::to_allocvec(r).unwrap().len()
}

#[tokio::test]
async fn list_pages_records_near_the_frame_limit() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    // Spec sizes close to the 96 KiB spec limit: only one fits per page.
    for n in 0..4 {
        store
            .write(WriteOp::Create(Box::new(big_record(n, 90 * 1024))))
            .await
            .unwrap();
    }
    // Middle-sized: three per page at most.
    for n in 10..19 {
        store
            .write(WriteOp::Create(Box::new(big_record(n, 40 * 1024))))
            .await
            .unwrap();
    }
    // One exactly at the record limit: a big spec plus an outcome message filling the rest.
    let exact = id(30);
    let mut last = big_record(30, 95 * 1024);
    store
        .write(WriteOp::Create(Box::new(last.clone())))
        .await
        .unwrap();
    store
        .write(move_to(&exact, JobState::Running, 1, None))
        .await
        .unwrap();
    last.state = JobState::Failed;
    last.started_ns = 1;
    last.ended_ns = 2;
    let mut fill = MAX_RECORD_LEN - encoded_len(&last);
    loop {
        last.outcome = Some(exited(1, "m".repeat(fill)));
        if encoded_len(&last) <= MAX_RECORD_LEN {
            break;
        }
        fill -= 1;
    }
    assert!(encoded_len(&last) > MAX_RECORD_LEN - 3);
    store
        .write(move_to(&exact, JobState::Failed, 2, last.outcome.clone()))
        .await
        .unwrap();
    assert_eq!(store.get(&exact).unwrap(), last);
    // One byte more is refused, and the job stays as it was.
    let over = id(31);
    store
        .write(WriteOp::Create(Box::new(big_record(31, 95 * 1024))))
        .await
        .unwrap();
    store
        .write(move_to(&over, JobState::Running, 1, None))
        .await
        .unwrap();
    let err = store
        .write(move_to(
            &over,
            JobState::Failed,
            2,
            Some(exited(1, "m".repeat(fill + 1))),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert_eq!(kind(&err), RemoteErrorKind::InvalidArgument);
    assert_eq!(store.get(&over).unwrap().state, JobState::Running);

    let (all, sizes) = list_all(&store);
    assert_eq!(all.len(), 4 + 9 + 2);
    let listed: HashSet<_> = all.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed.len(), all.len(), "a record was listed twice");
    assert!(sizes.iter().all(|&s| (1..=3).contains(&s)), "{sizes:?}");
    assert_eq!(sizes[..4], [1, 1, 1, 1]);
    // A page never holds a record that could have gone on the one before: each page plus the
    // next page's first record would not fit.
    let mut start = 0;
    for pair in sizes.windows(2) {
        let page: usize = all[start..start + pair[0]].iter().map(encoded_len).sum();
        let next = encoded_len(&all[start + pair[0]]);
        assert!(page + next > MAX_RECORD_LEN, "page at {start} was not full");
        start += pair[0];
    }
    close(store, writer);
}
