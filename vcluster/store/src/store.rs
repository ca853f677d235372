//! The store contract. Backends implement the required methods; the single-key operations
//! the API server uses (create, update, delete) are built on [`Store::txn`] here, once, so
//! both backends map compare failures to the same typed errors.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Compare, Condition, Counted, Deleted, Error, KeyValue, LeaseId, Op, RangePage, RangeRequest,
    Result, Revision, Txn, TxnOutcome, WatchStream,
};

/// A revisioned key-value store with etcd's semantics. A [`crate::Scoped`] view implements it
/// too, so a tenant's control plane is written against this trait and never sees other keys.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's value at `revision` (`None`: the latest). Reading at a compacted revision
    /// fails with [`Error::Compacted`], past the current one with [`Error::FutureRevision`].
    async fn get_at(&self, key: &[u8], revision: Option<Revision>) -> Result<Option<KeyValue>>;

    /// Keys under a prefix in key order, at one consistent revision.
    async fn range(&self, request: RangeRequest) -> Result<RangePage>;

    /// How many keys exist under a prefix now.
    async fn count(&self, prefix: &[u8]) -> Result<Counted>;

    /// Applies a multi-key transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;

    /// Every change under `prefix` with a revision greater than `after`, in revision order,
    /// each exactly once, with its previous value. If `after` precedes the compacted
    /// revision, the stream's first item is [`Error::Compacted`].
    async fn watch(&self, prefix: &[u8], after: Revision) -> Result<WatchStream>;

    /// The revision of the last committed write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Grants a lease that expires `ttl_seconds` after it is granted; keys written with it
    /// are deleted then (Kubernetes events expire this way).
    async fn grant_lease(&self, ttl_seconds: u64) -> Result<LeaseId>;

    /// The key's latest value.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.get_at(key, None).await
    }

    /// Creates a key that must not exist.
    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                condition: Condition::Absent,
            }],
            ops: vec![Op::Put {
                key: key.clone(),
                value: value.clone(),
                lease,
            }],
        };
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, .. } => Ok(KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                lease,
            }),
            TxnOutcome::Failed { .. } => Err(Error::AlreadyExists { key }),
        }
    }

    /// Replaces an existing key's value. With `expected`, only if the key was last modified
    /// at that revision (compare-and-swap), else [`Error::Conflict`] with the current value.
    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Option<Revision>,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        let txn = Txn {
            compares: vec![guard(&key, expected)],
            ops: vec![Op::Put {
                key: key.clone(),
                value: value.clone(),
                lease,
            }],
        };
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, mut prev } => {
                let prev = prev.pop().flatten().ok_or_else(|| {
                    Error::backend(Inconsistent("an update found no previous value"))
                })?;
                Ok(KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                    version: prev.version + 1,
                    lease,
                })
            }
            TxnOutcome::Failed { current } => Err(compare_failure(key, current)),
        }
    }

    /// Deletes an existing key; with `expected`, only if it was last modified at that
    /// revision.
    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<Deleted> {
        let txn = Txn {
            compares: vec![guard(&key, expected)],
            ops: vec![Op::Delete { key: key.clone() }],
        };
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision, mut prev } => {
                let prev = prev.pop().flatten().ok_or_else(|| {
                    Error::backend(Inconsistent("a delete found no previous value"))
                })?;
                Ok(Deleted { prev, revision })
            }
            TxnOutcome::Failed { current } => Err(compare_failure(key, current)),
        }
    }
}

/// What only the owner of a whole backend may do: operations that reach every key, which
/// a tenant's [`crate::Scoped`] view must not offer.
#[async_trait]
pub trait Backend: Store {
    /// Discards the history before `revision`: reads at older revisions and watches from
    /// before it fail with [`Error::Compacted`] afterwards. Compacting to a revision at or
    /// below the last compaction is a no-op.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Revokes a lease now, deleting the keys attached to it at one revision.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
}

fn guard(key: &Bytes, expected: Option<Revision>) -> Compare {
    Compare {
        key: key.clone(),
        condition: match expected {
            Some(revision) => Condition::ModRevision(revision),
            None => Condition::Exists,
        },
    }
}

fn compare_failure(key: Bytes, mut current: Vec<Option<KeyValue>>) -> Error {
    match current.pop().flatten() {
        Some(current) => Error::Conflict {
            current: Box::new(current),
        },
        None => Error::NotFound { key },
    }
}

/// A backend answered in a way its own contract rules out.
#[derive(Debug, thiserror::Error)]
#[error("backend inconsistency: {0}")]
pub(crate) struct Inconsistent(pub(crate) &'static str);
