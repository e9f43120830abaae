//! The contract every `KvStore` backend passes: the same functions run on the embedded store
//! and on a real etcd.

use std::sync::Arc;
use std::time::Duration;

use flashgate_coordinator::store::{embedded::EmbeddedStore, Guard, KvStore, Outcome, Write};

use crate::support::EtcdProcess;

fn put(k: &str, v: &str) -> Write {
    Write::Put(k.into(), v.as_bytes().to_vec())
}

async fn contract_basic(store: &dyn KvStore) {
    assert_eq!(store.get("a").await.unwrap(), None);
    assert!(store
        .commit(vec![Guard::Absent("a".into())], vec![put("a", "1")])
        .await
        .unwrap());
    // Absent no longer holds.
    assert!(!store
        .commit(vec![Guard::Absent("a".into())], vec![put("a", "2")])
        .await
        .unwrap());
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!(a.value, b"1");
    // Revision guard: right revision applies, stale one does not and writes nothing.
    assert!(store
        .commit(
            vec![Guard::Revision("a".into(), a.revision)],
            vec![put("a", "2"), put("b", "x")]
        )
        .await
        .unwrap());
    assert!(!store
        .commit(
            vec![Guard::Revision("a".into(), a.revision)],
            vec![put("a", "3"), put("c", "y")]
        )
        .await
        .unwrap());
    assert_eq!(store.get("a").await.unwrap().unwrap().value, b"2");
    assert_eq!(
        store.get("c").await.unwrap(),
        None,
        "a failed transaction wrote nothing"
    );
    // Revision of a missing key never holds.
    assert!(!store
        .commit(vec![Guard::Revision("zz".into(), 1)], vec![put("d", "1")])
        .await
        .unwrap());
    // Prefix listing, in key order, not leaking other prefixes.
    for k in ["p/2", "p/1", "q/1", "p/3"] {
        assert!(store.commit(vec![], vec![put(k, k)]).await.unwrap());
    }
    let keys: Vec<String> = store
        .list("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["p/1", "p/2", "p/3"]);
    // Delete.
    assert!(store
        .commit(vec![], vec![Write::Delete("p/2".into())])
        .await
        .unwrap());
    assert_eq!(store.list("p/").await.unwrap().len(), 2);
    assert!(store
        .commit(vec![Guard::Absent("p/2".into())], vec![])
        .await
        .unwrap());
}

/// `transact`: the revision it answers is the written keys' revision; a refusal reads back the
/// keys asked for. Then many at once on disjoint keys (etcd merges them into shared
/// transactions), one of them with a guard that fails: it alone is refused, with its own keys
/// read back, and every other one commits.
async fn contract_transact(store: Arc<dyn KvStore>) {
    let Outcome::Committed { revision } = store
        .transact(
            vec![Guard::Absent("t/a".into())],
            vec![put("t/a", "1")],
            vec![],
        )
        .await
        .unwrap()
    else {
        panic!("an absent key's guard holds");
    };
    assert_eq!(store.get("t/a").await.unwrap().unwrap().revision, revision);
    let refused = store
        .transact(
            vec![Guard::Revision("t/a".into(), revision - 1)],
            vec![put("t/a", "2")],
            vec!["t/a".into(), "t/none".into()],
        )
        .await
        .unwrap();
    let Outcome::Refused { current } = refused else {
        panic!("a stale revision's guard fails");
    };
    assert_eq!(current.len(), 2);
    assert_eq!(current[0].as_ref().unwrap().value, b"1");
    assert_eq!(current[0].as_ref().unwrap().revision, revision);
    assert_eq!(current[1], None);

    let mut tasks = Vec::new();
    for i in 0..48 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("t/many/{i}");
            let guard = if i == 17 {
                Guard::Revision("t/a".into(), revision - 1)
            } else {
                Guard::Absent(key.clone())
            };
            (
                i,
                store
                    .transact(vec![guard], vec![put(&key, "x")], vec!["t/a".into()])
                    .await
                    .unwrap(),
            )
        }));
    }
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        let stored = store.get(&format!("t/many/{i}")).await.unwrap();
        match outcome {
            Outcome::Committed { revision } => {
                assert_ne!(i, 17);
                assert_eq!(stored.unwrap().revision, revision);
            }
            Outcome::Refused { current } => {
                assert_eq!(i, 17, "only the stale guard fails");
                assert_eq!(current[0].as_ref().unwrap().value, b"1");
                assert_eq!(stored, None);
            }
        }
    }
}

/// Many tasks increment one counter by compare-and-swap: none is lost.
async fn contract_cas_race(store: Arc<dyn KvStore>) {
    store
        .commit(vec![], vec![put("counter", "0")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                loop {
                    let current = store.get("counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(current.value).unwrap().parse().unwrap();
                    if store
                        .commit(
                            vec![Guard::Revision("counter".into(), current.revision)],
                            vec![put("counter", &(n + 1).to_string())],
                        )
                        .await
                        .unwrap()
                    {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get("counter").await.unwrap().unwrap().value, b"200");
}

/// One leader at a time; a waiting candidate is elected once the leader resigns.
async fn contract_election(store: Arc<dyn KvStore>) {
    let ttl = Duration::from_secs(2);
    let first = store.election("contract-election", "first", ttl);
    let second = store.election("contract-election", "second", ttl);
    let leading = tokio::time::timeout(Duration::from_secs(10), first.campaign())
        .await
        .expect("an uncontested campaign is elected")
        .unwrap();
    let waiting = tokio::spawn(async move { second.campaign().await.map(|l| (second, l)) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second candidate was elected while the first leads"
    );
    leading.resign().await;
    let (_second, mut now_leading) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting candidate is elected once the leader resigns")
        .unwrap()
        .unwrap();
    // It keeps leadership while nobody takes it away.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), now_leading.lost())
            .await
            .is_err(),
        "leadership was lost for no reason"
    );
    // Another election is separate.
    let other = store.election("contract-other", "first", ttl);
    tokio::time::timeout(Duration::from_secs(10), other.campaign())
        .await
        .expect("another election does not wait for this one")
        .unwrap()
        .resign()
        .await;
    now_leading.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    contract_basic(store.as_ref()).await;
    contract_cas_race(store.clone()).await;
    contract_transact(store.clone()).await;
    contract_election(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_passes_the_contract() {
    let etcd = EtcdProcess::start();
    let store = Arc::new(etcd.store("/contract/").await);
    contract_basic(store.as_ref()).await;
    contract_cas_race(store.clone()).await;
    contract_transact(store.clone()).await;
    contract_election(store).await;
}

/// An etcd leader whose lease is gone (expired, or revoked by an operator) learns it has lost
/// leadership, and the next candidate is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leadership_is_lost_with_its_lease() {
    let etcd = EtcdProcess::start();
    let store: Arc<dyn KvStore> = Arc::new(etcd.store("/lost/").await);
    let ttl = Duration::from_secs(2);
    let mut leading = store
        .election("leader", "first", ttl)
        .campaign()
        .await
        .unwrap();
    let second = store.election("leader", "second", ttl);
    let waiting = tokio::spawn(async move { second.campaign().await.map(|l| (second, l)) });
    let mut client = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    let leader = client.leader("/lost/leader").await.unwrap();
    let kv = leader.kv().unwrap();
    assert_eq!(kv.value_str().unwrap(), "first");
    client.lease_revoke(kv.lease()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), leading.lost())
        .await
        .expect("the leader notices");
    assert!(!reason.is_empty());
    leading.resign().await;
    let (_second, next) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the next candidate is elected")
        .unwrap()
        .unwrap();
    let leader = client.leader("/lost/leader").await.unwrap();
    assert_eq!(leader.kv().unwrap().value_str().unwrap(), "second");
    next.resign().await;
}

/// Acknowledged commits survive a crash; a torn final record is dropped, never half-applied;
/// revisions never go back after a reopen.
#[tokio::test]
async fn embedded_store_is_crash_safe() {
    let dir = tempfile::tempdir().unwrap();
    let revision = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        contract_basic(&store).await;
        store.get("a").await.unwrap().unwrap().revision
    };
    let log = dir.path().join("flashgate.log");
    // Simulate a crash in the middle of appending a transaction of two writes.
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store
            .commit(vec![], vec![put("torn1", "x"), put("torn2", "y")])
            .await
            .unwrap());
    }
    let after = std::fs::read(&log).unwrap();
    // The last record is the two-write transaction; cut it short.
    let cut = after.len() - 5;
    std::fs::write(&log, &after[..cut]).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get("torn1").await.unwrap(),
        None,
        "a torn transaction is not applied"
    );
    assert_eq!(
        store.get("torn2").await.unwrap(),
        None,
        "… not even in part"
    );
    assert_eq!(
        store.get("a").await.unwrap().unwrap().value,
        b"2",
        "committed data survives"
    );
    assert_eq!(store.list("p/").await.unwrap().len(), 2);
    assert!(store.commit(vec![], vec![put("later", "1")]).await.unwrap());
    assert!(store.get("later").await.unwrap().unwrap().revision > revision);
    drop(store);
    // Garbage appended after a good log (a crash mid-length-field) is dropped too.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0xFF, 0xFF]);
    std::fs::write(&log, bytes).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get("later").await.unwrap().unwrap().value, b"1");
}

/// etcd's own durability: data committed before a SIGKILL is there after restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_survives_an_etcd_crash() {
    let mut etcd = EtcdProcess::start();
    let store = etcd.store("/crash/").await;
    assert!(store
        .commit(
            vec![Guard::Absent("k".into())],
            vec![put("k", "v"), put("k2", "v2")]
        )
        .await
        .unwrap());
    etcd.crash_and_restart();
    let store = etcd.store("/crash/").await;
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v");
    assert_eq!(store.get("k2").await.unwrap().unwrap().value, b"v2");
}
