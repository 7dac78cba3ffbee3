//! The store backends against the real thing: etcd at `LOAN_TEST_ETCD` and
//! a redb file in a temporary folder. Both run the same suite.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use loan_core::LoanStatus;
use loan_core::store::embedded::EmbeddedStore;
use loan_core::store::etcd::EtcdStore;
use loan_core::store::{Created, Finished, Idempotency, Store, StoreError};
use uuid::Uuid;

use common::{approved, etcd_endpoint, failed, loan, unique, within};

/// An etcd store under a prefix of its own, deleted when the test ends.
struct EtcdFixture {
    store: Arc<EtcdStore>,
    prefix: String,
}

impl EtcdFixture {
    async fn new() -> Self {
        let prefix = format!("{}/", unique("store"));
        let store = within(
            "connecting to etcd",
            EtcdStore::connect(&[etcd_endpoint()], &prefix),
        )
        .await
        .expect("etcd is running at LOAN_TEST_ETCD");
        EtcdFixture {
            store: Arc::new(store),
            prefix,
        }
    }
}

impl Drop for EtcdFixture {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be the one dropping
        // us: clean up from a thread with a runtime of its own.
        let prefix = self.prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the clean-up");
            runtime.block_on(async {
                let mut client = etcd_client::Client::connect([etcd_endpoint()], None)
                    .await
                    .expect("etcd for the clean-up");
                client
                    .delete(
                        prefix,
                        Some(etcd_client::DeleteOptions::new().with_prefix()),
                    )
                    .await
                    .expect("the test's keys deleted");
            });
        });
        let _ = cleanup.join();
    }
}

fn key(fingerprint: &str) -> Idempotency {
    Idempotency {
        key: unique("idempotency-key"),
        fingerprint: fingerprint.into(),
    }
}

// The suite, for any backend.

async fn round_trip(store: &dyn Store) {
    let record = loan();
    assert_eq!(store.create(&record, None).await.unwrap(), Created::New);
    assert_eq!(store.get(record.id).await.unwrap(), Some(record));
    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), None);
}

async fn creating_a_loan_twice_does_not_overwrite_it(store: &dyn Store) {
    let record = loan();
    store.create(&record, None).await.unwrap();
    store.finish(record.id, failed("gone")).await.unwrap();

    let err = store.create(&record, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    let stored = store.get(record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, LoanStatus::Failed);
}

async fn idempotency(store: &dyn Store) {
    let first = loan();
    let reuse = key("fingerprint-1");
    assert_eq!(
        store.create(&first, Some(&reuse)).await.unwrap(),
        Created::New
    );

    let retry = loan();
    assert_eq!(
        store.create(&retry, Some(&reuse)).await.unwrap(),
        Created::Existing {
            id: first.id,
            same_request: true
        }
    );
    assert_eq!(
        store.get(retry.id).await.unwrap(),
        None,
        "a retry stores nothing"
    );

    let other = Idempotency {
        key: reuse.key.clone(),
        fingerprint: "fingerprint-2".into(),
    };
    assert_eq!(
        store.create(&loan(), Some(&other)).await.unwrap(),
        Created::Existing {
            id: first.id,
            same_request: false
        }
    );

    let fresh = loan();
    assert_eq!(
        store
            .create(&fresh, Some(&key("fingerprint-1")))
            .await
            .unwrap(),
        Created::New,
        "another key is another request"
    );
}

async fn a_final_state_is_never_overwritten(store: &dyn Store) {
    let record = loan();
    store.create(&record, None).await.unwrap();

    let written = match store.finish(record.id, approved(1)).await.unwrap() {
        Finished::Written(written) => written,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(written.status, LoanStatus::Completed);
    assert_eq!(written.decision.as_ref().unwrap().attempts, 1);
    assert_eq!(store.get(record.id).await.unwrap(), Some(written.clone()));

    for outcome in [approved(2), failed("too late")] {
        assert_eq!(
            store.finish(record.id, outcome).await.unwrap(),
            Finished::AlreadyFinal(written.clone())
        );
    }
    assert_eq!(store.get(record.id).await.unwrap(), Some(written));

    assert_eq!(
        store.finish(Uuid::new_v4(), approved(1)).await.unwrap(),
        Finished::NotFound
    );
}

async fn racing_finishes_write_once(store: Arc<dyn Store>) {
    let record = loan();
    store.create(&record, None).await.unwrap();

    let racers: Vec<_> = (1..=8)
        .map(|attempts| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.finish(record.id, approved(attempts)).await })
        })
        .collect();
    let mut written = Vec::new();
    for racer in racers {
        match within("a racing finish", racer).await.unwrap().unwrap() {
            Finished::Written(record) => written.push(record),
            Finished::AlreadyFinal(_) => {}
            Finished::NotFound => panic!("the loan exists"),
        }
    }

    assert_eq!(written.len(), 1, "exactly one finish is written");
    assert_eq!(
        store.get(record.id).await.unwrap().as_ref(),
        Some(&written[0])
    );
}

async fn discard(store: &dyn Store) {
    let record = loan();
    let reservation = key("fingerprint-1");
    store.create(&record, Some(&reservation)).await.unwrap();

    store
        .discard(record.id, Some(&reservation.key))
        .await
        .unwrap();
    assert_eq!(store.get(record.id).await.unwrap(), None);
    assert!(!store.processing().await.unwrap().contains(&record.id));

    let again = loan();
    assert_eq!(
        store.create(&again, Some(&reservation)).await.unwrap(),
        Created::New,
        "a discarded loan's key is free again"
    );

    // A key that names another loan stays with it.
    let unrelated = loan();
    store.create(&unrelated, None).await.unwrap();
    store
        .discard(unrelated.id, Some(&reservation.key))
        .await
        .unwrap();
    assert_eq!(store.get(unrelated.id).await.unwrap(), None);
    assert_eq!(
        store.create(&loan(), Some(&reservation)).await.unwrap(),
        Created::Existing {
            id: again.id,
            same_request: true
        }
    );

    store.discard(Uuid::new_v4(), None).await.unwrap();
}

/// The store must hold no other loan.
async fn processing(store: &dyn Store) {
    let waiting = [loan(), loan(), loan()];
    for record in &waiting {
        store.create(record, None).await.unwrap();
    }
    let done = loan();
    store.create(&done, None).await.unwrap();
    store.finish(done.id, failed("bureau down")).await.unwrap();

    let listed: HashSet<Uuid> = store.processing().await.unwrap().into_iter().collect();
    let expected: HashSet<Uuid> = waiting.iter().map(|record| record.id).collect();
    assert_eq!(listed, expected);
}

// etcd.

#[tokio::test]
async fn etcd_round_trip() {
    let fixture = EtcdFixture::new().await;
    round_trip(fixture.store.as_ref()).await;
}

#[tokio::test]
async fn etcd_creating_a_loan_twice_does_not_overwrite_it() {
    let fixture = EtcdFixture::new().await;
    creating_a_loan_twice_does_not_overwrite_it(fixture.store.as_ref()).await;
}

#[tokio::test]
async fn etcd_idempotency() {
    let fixture = EtcdFixture::new().await;
    idempotency(fixture.store.as_ref()).await;
}

#[tokio::test]
async fn etcd_a_final_state_is_never_overwritten() {
    let fixture = EtcdFixture::new().await;
    a_final_state_is_never_overwritten(fixture.store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_racing_finishes_write_once() {
    let fixture = EtcdFixture::new().await;
    for _ in 0..5 {
        racing_finishes_write_once(fixture.store.clone()).await;
    }
}

#[tokio::test]
async fn etcd_discard() {
    let fixture = EtcdFixture::new().await;
    discard(fixture.store.as_ref()).await;
}

#[tokio::test]
async fn etcd_processing() {
    let fixture = EtcdFixture::new().await;
    processing(fixture.store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_processing_reads_every_page() {
    // More loans than one page of the listing holds.
    let fixture = EtcdFixture::new().await;
    let loans: Vec<_> = (0..1100).map(|_| loan()).collect();
    within(
        "storing 1100 loans",
        futures::stream::iter(&loans)
            .map(|record| fixture.store.create(record, None))
            .buffer_unordered(64)
            .for_each(|created| async move {
                assert_eq!(created.unwrap(), Created::New);
            }),
    )
    .await;
    fixture
        .store
        .finish(loans[0].id, failed("bureau down"))
        .await
        .unwrap();

    let listed: HashSet<Uuid> = fixture
        .store
        .processing()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let expected: HashSet<Uuid> = loans[1..].iter().map(|record| record.id).collect();
    assert_eq!(listed.len(), 1099);
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn etcd_unreachable_fails_clearly_and_soon() {
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(&["http://127.0.0.1:1".to_owned()], "x/")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("could not reach etcd at http://127.0.0.1:1"),
        "{message}"
    );
    assert!(
        started.elapsed() < common::DEADLINE,
        "took {:?}",
        started.elapsed()
    );

    // A documentation address (RFC 5737): nothing answers there.
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(&["http://192.0.2.1:2379".to_owned()], "x/")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
    assert!(
        started.elapsed() < common::DEADLINE,
        "took {:?}",
        started.elapsed()
    );

    let err = EtcdStore::connect(&[], "x/").await.unwrap_err();
    assert!(err.to_string().contains("no etcd endpoint"), "{err}");
}

// The embedded store.

fn embedded() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("data")).unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn embedded_round_trip() {
    let (_dir, store) = embedded();
    round_trip(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_creating_a_loan_twice_does_not_overwrite_it() {
    let (_dir, store) = embedded();
    creating_a_loan_twice_does_not_overwrite_it(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_idempotency() {
    let (_dir, store) = embedded();
    idempotency(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_a_final_state_is_never_overwritten() {
    let (_dir, store) = embedded();
    a_final_state_is_never_overwritten(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_racing_finishes_write_once() {
    let (_dir, store) = embedded();
    for _ in 0..5 {
        racing_finishes_write_once(store.clone()).await;
    }
}

#[tokio::test]
async fn embedded_discard() {
    let (_dir, store) = embedded();
    discard(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_processing() {
    let (_dir, store) = embedded();
    processing(store.as_ref()).await;
}

#[tokio::test]
async fn embedded_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (waiting, done, reservation) = (loan(), loan(), key("fingerprint-1"));

    let store = EmbeddedStore::open(&data).unwrap();
    assert_eq!(store.path(), data.join("loans.redb"));
    store.create(&waiting, Some(&reservation)).await.unwrap();
    store.create(&done, None).await.unwrap();
    let Finished::Written(finished) = store.finish(done.id, approved(1)).await.unwrap() else {
        panic!("the loan was processing");
    };
    drop(store);

    let store = EmbeddedStore::open(&data).unwrap();
    assert_eq!(store.get(waiting.id).await.unwrap(), Some(waiting.clone()));
    assert_eq!(store.get(done.id).await.unwrap(), Some(finished));
    assert_eq!(store.processing().await.unwrap(), vec![waiting.id]);
    assert_eq!(
        store.create(&loan(), Some(&reservation)).await.unwrap(),
        Created::Existing {
            id: waiting.id,
            same_request: true
        }
    );
}

#[tokio::test]
async fn embedded_store_is_held_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("loans.redb"), "{err}");
}
