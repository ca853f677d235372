//! The store contract, checked the same way against both backends: the embedded redb store
//! and a real etcd. Each test below is instantiated once per backend by `conformance!`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use vcluster_store::{
    CompactionPolicy, Compactor, Compare, Condition, Error, EventKind, MAX_REQUEST_BYTES, Op,
    RangeRequest, Scoped, Store, Txn, TxnOutcome,
};

/// `shared` tests may run beside others on one etcd (each in its own prefix); `alone` tests
/// compact, revoke leases or count revisions, and get an etcd of their own.
macro_rules! conformance {
    (shared: [$($shared:ident),* $(,)?], alone: [$($alone:ident),* $(,)?]) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $shared() { super::$shared(super::Fixture::embedded()).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $alone() { super::$alone(super::Fixture::embedded()).await; })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $shared() { super::$shared(super::Fixture::etcd_shared().await).await; })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $alone() { super::$alone(super::Fixture::etcd_alone().await).await; })*
        }
    };
}

conformance!(
    shared: [
        crud_round_trip,
        typed_errors,
        reads_at_past_revisions,
        paginated_range_is_one_snapshot,
        prefixes_with_ff_bytes,
        multi_key_transactions,
        writes_over_the_request_limit_are_refused,
        compare_and_swap_races,
        watch_histories_match_the_acknowledged_writes,
        watch_from_a_past_revision_replays_exactly_what_followed,
        tenants_are_confined_to_their_prefix,
    ],
    alone: [
        every_write_is_one_revision,
        compaction_discards_history,
        the_compactor_applies_its_policy,
        leases_expire_and_revoke,
    ]
);

const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

async fn crud_round_trip(f: Fixture) {
    let s = &f.store;
    let created = s.create(b("a"), b("1"), None).await.expect("create");
    assert_eq!(
        (created.version, created.create_revision),
        (1, created.mod_revision)
    );
    assert_eq!(s.get(b"a").await.expect("get"), Some(created.clone()));

    let updated = s
        .update(b("a"), b("2"), Some(created.mod_revision), None)
        .await
        .expect("update");
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.version, 2);
    assert_eq!(s.get(b"a").await.expect("get"), Some(updated.clone()));

    let unconditional = s.update(b("a"), b("3"), None, None).await.expect("update");
    assert_eq!(unconditional.version, 3);

    let deleted = s
        .delete(b("a"), Some(unconditional.mod_revision))
        .await
        .expect("delete");
    assert_eq!(deleted.prev, unconditional);
    assert!(deleted.revision > unconditional.mod_revision);
    assert_eq!(s.get(b"a").await.expect("get"), None);
    assert!(s.current_revision().await.expect("revision") >= deleted.revision);

    // A re-created key starts a new life: version 1, a new create revision.
    let again = s.create(b("a"), b("4"), None).await.expect("re-create");
    assert_eq!(again.version, 1);
    assert!(again.create_revision > deleted.revision);
}

async fn typed_errors(f: Fixture) {
    let s = &f.store;
    let kv = s.create(b("k"), b("v"), None).await.expect("create");
    assert!(matches!(
        s.create(b("k"), b("again"), None).await,
        Err(Error::AlreadyExists { key }) if key == b("k")
    ));
    assert!(matches!(
        s.update(b("missing"), b("v"), None, None).await,
        Err(Error::NotFound { key }) if key == b("missing")
    ));
    assert!(matches!(
        s.update(b("missing"), b("v"), Some(3), None).await,
        Err(Error::NotFound { .. })
    ));
    let newer = s.update(b("k"), b("v2"), None, None).await.expect("update");
    match s
        .update(b("k"), b("stale"), Some(kv.mod_revision), None)
        .await
    {
        Err(Error::Conflict { current }) => assert_eq!(*current, newer),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match s.delete(b("k"), Some(kv.mod_revision)).await {
        Err(Error::Conflict { current }) => assert_eq!(current.mod_revision, newer.mod_revision),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        s.delete(b("missing"), None).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        s.get(b"k").await.expect("get").map(|kv| kv.value),
        Some(b("v2"))
    );
    assert!(matches!(
        s.create(Bytes::new(), b("v"), None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.create(b("leased"), b("v"), Some(0x7fff_0000_dead)).await,
        Err(Error::LeaseNotFound(0x7fff_0000_dead))
    ));
    assert_eq!(
        s.get(b"leased").await.expect("get"),
        None,
        "a refused write wrote nothing"
    );
}

async fn reads_at_past_revisions(f: Fixture) {
    let s = &f.store;
    let v1 = s.create(b("k"), b("1"), None).await.expect("create");
    let v2 = s.update(b("k"), b("2"), None, None).await.expect("update");
    let gone = s.delete(b("k"), None).await.expect("delete");
    assert_eq!(
        s.get_at(b"k", Some(v1.mod_revision)).await.expect("get"),
        Some(v1.clone())
    );
    assert_eq!(
        s.get_at(b"k", Some(v2.mod_revision)).await.expect("get"),
        Some(v2)
    );
    assert_eq!(
        s.get_at(b"k", Some(gone.revision)).await.expect("get"),
        None
    );
    assert_eq!(
        s.get_at(b"k", Some(v1.mod_revision - 1))
            .await
            .expect("get"),
        None
    );
    let current = s.current_revision().await.expect("revision");
    assert!(matches!(
        s.get_at(b"k", Some(current + 1000)).await,
        Err(Error::FutureRevision { requested, .. }) if requested == current + 1000
    ));
    let page = s
        .range(RangeRequest {
            revision: Some(v1.mod_revision),
            ..RangeRequest::prefix("k")
        })
        .await
        .expect("range");
    assert_eq!(
        (page.kvs, page.revision),
        (vec![v1.clone()], v1.mod_revision)
    );
}

async fn paginated_range_is_one_snapshot(f: Fixture) {
    let s = &f.store;
    for i in 0..25 {
        s.create(b(&format!("p/{i:02}")), b(&i.to_string()), None)
            .await
            .expect("create");
    }
    // Neighbours that a prefix range must not include.
    s.create(b("p0"), b("x"), None).await.expect("create");
    s.create(b("o/1"), b("x"), None).await.expect("create");

    let first = s
        .range(RangeRequest {
            limit: Some(10),
            count_remaining: true,
            ..RangeRequest::prefix("p/")
        })
        .await
        .expect("range");
    assert_eq!(first.kvs.len(), 10);
    assert!(first.more);
    assert_eq!(
        first.remaining, 15,
        "the keys after the page, neighbours not counted"
    );

    // Changes after the first page must not show in the later ones.
    s.delete(b("p/15"), None).await.expect("delete");
    s.update(b("p/20"), b("changed"), None, None)
        .await
        .expect("update");
    s.create(b("p/99"), b("new"), None).await.expect("create");

    let mut all = first.kvs.clone();
    let mut last = first;
    while last.more {
        last = s
            .range(RangeRequest {
                start_after: Some(
                    last.kvs
                        .last()
                        .expect("a page with more is not empty")
                        .key
                        .clone(),
                ),
                limit: Some(10),
                revision: Some(last.revision),
                count_remaining: true,
                ..RangeRequest::prefix("p/")
            })
            .await
            .expect("next page");
        all.extend(last.kvs.iter().cloned());
        // Counted at the first page's revision too: the later delete and create do not show.
        assert_eq!(last.remaining, 25 - all.len() as u64);
    }
    let keys: Vec<Bytes> = all.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<Bytes> = (0..25).map(|i| b(&format!("p/{i:02}"))).collect();
    assert_eq!(keys, expected);
    assert_eq!(all[20].value, b("20"));

    let now = s.range(RangeRequest::prefix("p/")).await.expect("range");
    assert_eq!(now.kvs.len(), 25, "24 old keys and p/99");
    let uncounted = s
        .range(RangeRequest {
            limit: Some(10),
            ..RangeRequest::prefix("p/")
        })
        .await
        .expect("range");
    assert_eq!(uncounted.remaining, 0, "counted only when asked");
    assert_eq!(s.count(b"p/").await.expect("count").count, 25);
    assert!(matches!(
        s.range(RangeRequest {
            start_after: Some(b("q/1")),
            ..RangeRequest::prefix("p/")
        })
        .await,
        Err(Error::InvalidArgument(_))
    ));
}

async fn prefixes_with_ff_bytes(f: Fixture) {
    let s = &f.store;
    for key in [&b"p\xff"[..], b"p\xff\xff", b"p\xff\x00", b"q", b"p"] {
        s.create(Bytes::copy_from_slice(key), b("v"), None)
            .await
            .expect("create");
    }
    let page = s
        .range(RangeRequest::prefix(&b"p\xff"[..]))
        .await
        .expect("range");
    let keys: Vec<&[u8]> = page.kvs.iter().map(|kv| &kv.key[..]).collect();
    assert_eq!(keys, vec![&b"p\xff"[..], b"p\xff\x00", b"p\xff\xff"]);
    assert_eq!(s.count(b"p").await.expect("count").count, 4);
}

async fn multi_key_transactions(f: Fixture) {
    let s = &f.store;
    let a = s.create(b("a"), b("1"), None).await.expect("create");
    let txn = |a_rev| Txn {
        compares: vec![
            Compare {
                key: b("a"),
                condition: Condition::ModRevision(a_rev),
            },
            Compare {
                key: b("b"),
                condition: Condition::Absent,
            },
        ],
        ops: vec![
            Op::Put {
                key: b("a"),
                value: b("2"),
                lease: None,
            },
            Op::Put {
                key: b("b"),
                value: b("1"),
                lease: None,
            },
            Op::Delete { key: b("never") },
        ],
    };
    let TxnOutcome::Committed { revision, prev } = s.txn(txn(a.mod_revision)).await.expect("txn")
    else {
        panic!("the compares held");
    };
    assert_eq!(prev, vec![Some(a.clone()), None, None]);
    let (na, nb) = (
        s.get(b"a").await.expect("get").expect("a exists"),
        s.get(b"b").await.expect("get").expect("b exists"),
    );
    assert_eq!(
        (na.mod_revision, nb.mod_revision),
        (revision, revision),
        "one revision"
    );

    // The same transaction again: a's revision moved on and b exists, so nothing is written.
    let TxnOutcome::Failed { current } = s.txn(txn(a.mod_revision)).await.expect("txn") else {
        panic!("the compares failed");
    };
    assert_eq!(current, vec![Some(na.clone()), Some(nb.clone())]);
    assert_eq!(s.get(b"a").await.expect("get"), Some(na));

    let twice = Txn {
        compares: vec![],
        ops: vec![Op::Delete { key: b("a") }, Op::Delete { key: b("a") }],
    };
    assert!(matches!(s.txn(twice).await, Err(Error::InvalidArgument(_))));
}

async fn writes_over_the_request_limit_are_refused(f: Fixture) {
    let s = &f.store;
    let key = b("big");
    // Near the limit (the key may carry a test prefix), and at it with the key past it.
    let fits = Bytes::from(vec![b'x'; MAX_REQUEST_BYTES - 4096]);
    let over = Bytes::from(vec![b'x'; MAX_REQUEST_BYTES]);
    assert!(matches!(
        s.create(key.clone(), over.clone(), None).await,
        Err(Error::TooLarge {
            limit: MAX_REQUEST_BYTES
        })
    ));
    assert_eq!(s.get(&key).await.expect("get"), None, "nothing was written");
    let kv = s
        .create(key.clone(), fits, None)
        .await
        .expect("under the limit");
    assert!(matches!(
        s.update(key.clone(), over, Some(kv.mod_revision), None)
            .await,
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(s.get(&key).await.expect("get"), Some(kv));
}

async fn compare_and_swap_races(f: Fixture) {
    let s = &f.store;
    s.create(b("counter"), b("0"), None).await.expect("create");
    let (tasks, each) = (8, 25);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                let mut kv = s.get(b"counter").await.expect("get").expect("exists");
                loop {
                    let n: u64 = std::str::from_utf8(&kv.value)
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    match s
                        .update(
                            b("counter"),
                            b(&(n + 1).to_string()),
                            Some(kv.mod_revision),
                            None,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { current }) => {
                            conflicts += 1;
                            kv = *current;
                        }
                        Err(e) => panic!("update failed: {e:#}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.expect("task");
    }
    let kv = s.get(b"counter").await.expect("get").expect("exists");
    assert_eq!(
        kv.value,
        b(&(tasks * each).to_string()),
        "no increment lost"
    );
    assert_eq!(kv.version, (tasks * each + 1) as u64);
    assert!(
        conflicts > 0,
        "the writers never raced; the test proves nothing"
    );
}

async fn watch_histories_match_the_acknowledged_writes(f: Fixture) {
    let s = f.store.clone();
    let start = s.current_revision().await.expect("revision");
    let mut from_start = s.watch(b"m/", start).await.expect("watch");
    let mut handles = Vec::new();
    for seed in 0..4 {
        handles.push(tokio::spawn(random_writer(
            s.clone(),
            b("m/"),
            seed,
            150,
            12,
            false,
        )));
    }
    // Writes outside the prefix must not reach the watcher.
    s.create(b("n/outside"), b("x"), None)
        .await
        .expect("create");
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.expect("writer"));
    }
    let until = max_revision(&acked);
    let events = collect_until(&mut from_start, until, WATCH_TIMEOUT).await;
    check_history(&events, &acked, start, &HashMap::new(), true);

    // A watcher started afterwards from a revision in the middle sees exactly the rest,
    // with previous values consistent with the state at that revision. (For the embedded
    // store, the middle is far older than its 64-revision window: this is a disk replay.)
    let mut revisions: Vec<_> = acked.iter().map(|a| a.revision).collect();
    revisions.sort_unstable();
    let middle = revisions[revisions.len() / 2];
    let state = s
        .range(RangeRequest {
            revision: Some(middle),
            ..RangeRequest::prefix("m/")
        })
        .await
        .expect("range");
    let initial = state
        .kvs
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    let mut late = s.watch(b"m/", middle).await.expect("watch");
    let events = collect_until(&mut late, until, WATCH_TIMEOUT).await;
    check_history(&events, &acked, middle, &initial, true);
}

async fn watch_from_a_past_revision_replays_exactly_what_followed(f: Fixture) {
    let s = &f.store;
    let mut revisions = Vec::new();
    for i in 0..200 {
        let kv = s
            .create(b(&format!("r/{i:03}")), b("v"), None)
            .await
            .expect("create");
        revisions.push(kv.mod_revision);
    }
    let after = revisions[49];
    let mut stream = s.watch(b"r/", after).await.expect("watch");
    let events = collect_until(&mut stream, revisions[199], WATCH_TIMEOUT).await;
    let got: Vec<_> = events.iter().map(|e| e.revision()).collect();
    assert_eq!(got, revisions[50..].to_vec());
    assert!(
        events
            .iter()
            .all(|e| e.kind == EventKind::Put && e.prev.is_none())
    );

    // A live event follows the replayed ones, and a watch with nothing new stays quiet.
    let live = s.create(b("r/live"), b("v"), None).await.expect("create");
    let events = collect_until(&mut stream, live.mod_revision, WATCH_TIMEOUT).await;
    assert_eq!(events.len(), 1);
    let mut quiet = s.watch(b"r/", live.mod_revision).await.expect("watch");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), quiet.next())
            .await
            .is_err(),
        "a watch from the current revision delivered an event that never happened"
    );
}

async fn tenants_are_confined_to_their_prefix(f: Fixture) {
    let a = Arc::new(Scoped::tenant(f.store.clone(), "a").expect("tenant a"));
    let ab = Arc::new(Scoped::tenant(f.store.clone(), "ab").expect("tenant ab"));
    let start = f.store.current_revision().await.expect("revision");
    let mut a_watch = a.watch(b"", start).await.expect("watch");

    let mine = a.create(b("x"), b("a's"), None).await.expect("create");
    assert_eq!(mine.key, b("x"), "keys come back relative to the tenant");
    ab.create(b("x"), b("ab's"), None).await.expect("create");
    ab.create(b("y"), b("ab's"), None).await.expect("create");
    let last = a.create(b("z"), b("a's"), None).await.expect("create");

    let page = a.range(RangeRequest::prefix("")).await.expect("range");
    let keys: Vec<Bytes> = page.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("x"), b("z")]);
    assert_eq!(a.count(b"").await.expect("count").count, 2);
    assert_eq!(a.get(b"y").await.expect("get"), None);
    assert!(matches!(
        a.create(b("x"), b("again"), None).await,
        Err(Error::AlreadyExists { key }) if key == b("x")
    ));
    let events = collect_until(&mut a_watch, last.mod_revision, WATCH_TIMEOUT).await;
    let seen: Vec<Bytes> = events.iter().map(|e| e.kv.key.clone()).collect();
    assert_eq!(
        seen,
        vec![b("x"), b("z")],
        "tenant a saw another tenant's events"
    );
    assert_eq!(
        ab.get(b"x").await.expect("get").map(|kv| kv.value),
        Some(b("ab's"))
    );
}

async fn every_write_is_one_revision(f: Fixture) {
    let s = &f.store;
    let r0 = s.current_revision().await.expect("revision");
    let kv = s.create(b("a"), b("1"), None).await.expect("create");
    assert_eq!(kv.mod_revision, r0 + 1);
    let kv = s.update(b("a"), b("2"), None, None).await.expect("update");
    assert_eq!(kv.mod_revision, r0 + 2);
    // A transaction that changes nothing (deleting a missing key) does not move the revision.
    let noop = Txn {
        compares: vec![],
        ops: vec![Op::Delete { key: b("missing") }],
    };
    match s.txn(noop).await.expect("txn") {
        TxnOutcome::Committed { revision, prev } => {
            assert_eq!((revision, prev), (r0 + 2, vec![None]));
        }
        TxnOutcome::Failed { .. } => panic!("no compares to fail"),
    }
    assert_eq!(s.current_revision().await.expect("revision"), r0 + 2);
    let d = s.delete(b("a"), None).await.expect("delete");
    assert_eq!(d.revision, r0 + 3);
}

async fn compaction_discards_history(f: Fixture) {
    let s = &f.store;
    let v1 = s.create(b("k"), b("1"), None).await.expect("create");
    let v2 = s.update(b("k"), b("2"), None, None).await.expect("update");
    let other = s.create(b("gone"), b("x"), None).await.expect("create");
    s.delete(b("gone"), None).await.expect("delete");
    let v3 = s.update(b("k"), b("3"), None, None).await.expect("update");
    let v4 = s.update(b("k"), b("4"), None, None).await.expect("update");

    f.backend.compact(v3.mod_revision).await.expect("compact");
    let compacted = v3.mod_revision;
    let is_compacted =
        |e: &Error| matches!(e, Error::Compacted { compacted: c, .. } if *c == compacted);

    let e = s
        .get_at(b"k", Some(v2.mod_revision))
        .await
        .expect_err("compacted read");
    assert!(is_compacted(&e), "{e:?}");
    let e = s
        .range(RangeRequest {
            revision: Some(v1.mod_revision),
            ..RangeRequest::prefix("k")
        })
        .await
        .expect_err("compacted range");
    assert!(is_compacted(&e), "{e:?}");
    assert_eq!(
        s.get_at(b"k", Some(compacted))
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(b("3"))
    );
    assert_eq!(s.get_at(b"gone", Some(compacted)).await.expect("get"), None);
    assert_eq!(s.get(b"k").await.expect("get"), Some(v4.clone()));

    let mut old = s.watch(b"", other.mod_revision).await.expect("watch");
    match old.next().await {
        Some(Err(e)) => assert!(is_compacted(&e), "{e:?}"),
        other => panic!("a watch from before the compaction must fail, got {other:?}"),
    }
    let mut ok = s.watch(b"", compacted).await.expect("watch");
    let events = collect_until(&mut ok, v4.mod_revision, WATCH_TIMEOUT).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].prev.as_ref().map(|p| p.value.clone()),
        Some(b("3"))
    );

    // Compacting again to an older revision changes nothing and is not an error.
    f.backend
        .compact(v1.mod_revision)
        .await
        .expect("compact again");
    assert!(matches!(
        f.backend.compact(v4.mod_revision + 100).await,
        Err(Error::FutureRevision { .. })
    ));
}

async fn leases_expire_and_revoke(f: Fixture) {
    let s = &f.store;
    let start = s.current_revision().await.expect("revision");
    let mut watch = s.watch(b"", start).await.expect("watch");
    // etcd's shortest lease is about two seconds.
    let lease = s.grant_lease(2).await.expect("grant");
    let leased = s
        .create(b("event"), b("v"), Some(lease))
        .await
        .expect("create");
    assert_eq!(leased.lease, Some(lease));
    s.create(b("plain"), b("v"), None).await.expect("create");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while s.get(b"event").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leased key never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.get(b"plain").await.expect("get").is_some());
    let now = s.current_revision().await.expect("revision");
    let events = collect_until(&mut watch, now, WATCH_TIMEOUT).await;
    let expiry = events.last().expect("events");
    assert_eq!(
        (expiry.kind, expiry.kv.key.clone()),
        (EventKind::Delete, b("event"))
    );
    assert_eq!(expiry.prev.as_ref().and_then(|p| p.lease), Some(lease));

    let second = s.grant_lease(3600).await.expect("grant");
    s.create(b("x"), b("v"), Some(second))
        .await
        .expect("create");
    s.create(b("y"), b("v"), Some(second))
        .await
        .expect("create");
    f.backend.revoke_lease(second).await.expect("revoke");
    assert_eq!(s.get(b"x").await.expect("get"), None);
    assert_eq!(s.get(b"y").await.expect("get"), None);
    assert!(matches!(
        f.backend.revoke_lease(second).await,
        Err(Error::LeaseNotFound(id)) if id == second
    ));
    assert!(matches!(
        s.create(b("z"), b("v"), Some(second)).await,
        Err(Error::LeaseNotFound(_))
    ));
}

async fn the_compactor_applies_its_policy(f: Fixture) {
    let s = &f.store;
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            s.create(b(&format!("c/{i}")), b("v"), None)
                .await
                .expect("create")
                .mod_revision,
        );
    }
    let policy = CompactionPolicy {
        keep_revisions: Some(5),
        keep_for: None,
    };
    let task =
        tokio::spawn(Compactor::new(policy).run(f.backend.clone(), Duration::from_millis(50)));
    let oldest_kept = revisions[19] - 4;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match s.get_at(b"c/0", Some(oldest_kept - 1)).await {
            Err(Error::Compacted { compacted, .. }) => {
                assert_eq!(
                    compacted, oldest_kept,
                    "compacted past what the policy keeps"
                );
                break;
            }
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the compactor never ran"
            ),
            Err(e) => panic!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    // The five newest revisions stay readable.
    let kv = s.get_at(b"c/15", Some(oldest_kept)).await.expect("kept");
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(revisions[15]));
}
