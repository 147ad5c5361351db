use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use weir_common::{OffsetsCheckpoint, TopicPartition};
use weir_tests::names::unique;
use weir_tests::{etcd, services};

fn checkpoint(next: i64, batch: u64) -> OffsetsCheckpoint {
    let mut next_offsets = BTreeMap::new();
    next_offsets.insert(TopicPartition::new("raw", 0), next);
    OffsetsCheckpoint { next_offsets, last_committed_batch: Some(batch) }
}

/// The write pattern every driver commit will use: "put the offsets only if the leader key has
/// not changed since I became leader". A deposed leader's write must be refused and leave the
/// stored offsets as the new leader wrote them.
#[tokio::test]
async fn write_guarded_by_leader_revision_refuses_a_stale_leader() {
    services::ensure();
    let mut client = etcd::client().await;
    let prefix = etcd::prefix(&unique("smoke-etcd"));
    let leader = format!("{prefix}leader");
    let offsets = format!("{prefix}offsets");

    // Driver A becomes leader and commits batch 1.
    let a_revision =
        client.put(leader.as_str(), "driver-a", None).await.unwrap().header().unwrap().revision();
    let guarded_put = |revision: i64, value: &OffsetsCheckpoint| {
        Txn::new()
            .when([Compare::mod_revision(leader.as_str(), CompareOp::Equal, revision)])
            .and_then([TxnOp::put(offsets.as_str(), value.encode(), None)])
    };
    let a_commit = client.txn(guarded_put(a_revision, &checkpoint(100, 1))).await.unwrap();
    assert!(a_commit.succeeded(), "the current leader's write goes through");

    // Driver B takes over (the leader key changes) and commits batch 2.
    let b_revision =
        client.put(leader.as_str(), "driver-b", None).await.unwrap().header().unwrap().revision();
    assert!(b_revision > a_revision);
    let b_commit = client.txn(guarded_put(b_revision, &checkpoint(200, 2))).await.unwrap();
    assert!(b_commit.succeeded());

    // Driver A, unaware it was deposed, tries to commit batch 2 its own way: refused.
    let stale = client.txn(guarded_put(a_revision, &checkpoint(150, 2))).await.unwrap();
    assert!(!stale.succeeded(), "a write guarded by a stale revision must be refused");

    let stored = client.get(offsets.as_str(), None).await.unwrap();
    let value = OffsetsCheckpoint::decode(stored.kvs()[0].value()).expect("a Weir checkpoint");
    assert_eq!(value, checkpoint(200, 2), "the new leader's offsets stand");

    client.delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix())).await.unwrap();
    let left = client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(left.count(), 0);
}
