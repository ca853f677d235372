//! The data types of the store contract: key-values, transactions, ranges and watch events.

use std::collections::HashSet;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::{Error, Result};

/// A store revision. The store has one counter; every committed write bumps it by one, and
/// every key-value records the revisions it was created and last modified at. Revisions only
/// go up, which is what Kubernetes' `resourceVersion` relies on.
pub type Revision = u64;

/// The id of a lease: keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = u64;

/// One key with its value and the revisions that describe its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
    /// The number of writes since the key was created: 1 after the create.
    pub version: u64,
    pub lease: Option<LeaseId>,
}

/// What happened to a key at one revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value. For a delete, the key with `mod_revision` set to the
    /// deletion's revision and every other field empty.
    pub kv: KeyValue,
    /// The key-value just before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision this change was committed at.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events in revision order. It ends after yielding an error; a
/// [`Error::Compacted`] item means the requested history is gone and the caller must re-list.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A condition a transaction checks before it applies its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Bytes,
    pub condition: Condition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist.
    Absent,
    /// The key exists.
    Exists,
    /// The key exists and was last modified at exactly this revision.
    ModRevision(Revision),
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Bytes,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    /// Deleting a key that does not exist is a no-op.
    Delete { key: Bytes },
}

impl Op {
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }

    /// The bytes the operation carries: its key and the value it writes.
    fn size(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        }
    }
}

/// The most a transaction may carry in keys and values: etcd's default
/// `--max-request-bytes` (1.5 MiB) less 1 KiB for what etcd's framing adds (field tags and
/// lengths, the compares, the raft header), so that etcd never sees a write it would refuse.
/// The embedded store refuses the same writes: what one backend stores, the other does.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024 - 1024;

/// A multi-key transaction: if every compare holds, all operations are applied atomically at
/// one new revision; otherwise nothing is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Checks what both backends reject the same way: empty keys, one key written twice and
    /// a transaction over [`MAX_REQUEST_BYTES`].
    pub(crate) fn validate(&self) -> Result<()> {
        let size = self.compares.iter().map(|c| c.key.len()).sum::<usize>()
            + self.ops.iter().map(Op::size).sum::<usize>();
        if size > MAX_REQUEST_BYTES {
            return Err(Error::TooLarge {
                limit: MAX_REQUEST_BYTES,
            });
        }
        let mut seen = HashSet::with_capacity(self.ops.len());
        for key in self.compares.iter().map(|c| &c.key) {
            if key.is_empty() {
                return Err(Error::InvalidArgument("empty key".into()));
            }
        }
        for op in &self.ops {
            if op.key().is_empty() {
                return Err(Error::InvalidArgument("empty key".into()));
            }
            if !seen.insert(op.key()) {
                return Err(Error::InvalidArgument(
                    "a transaction writes the same key twice".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The result of a transaction that was evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held and the operations were applied at `revision` (the unchanged
    /// current revision if no operation changed anything). `prev` holds, per operation, the
    /// key-value it replaced or deleted.
    Committed {
        revision: Revision,
        prev: Vec<Option<KeyValue>>,
    },
    /// A compare failed; nothing was written. `current` holds, per compare, the key's
    /// current key-value.
    Failed { current: Vec<Option<KeyValue>> },
}

/// A read of the keys under a prefix, in key order, at one consistent revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: Bytes,
    /// Continue after this key (exclusive): the last key of the previous page.
    pub start_after: Option<Bytes>,
    /// At most this many key-values; `None` for all.
    pub limit: Option<usize>,
    /// Read at this past revision; `None` for the latest. A paginated read passes the
    /// revision of its first page to every later page.
    pub revision: Option<Revision>,
    /// Count the keys after the page too ([`RangePage::remaining`]): etcd counts them with
    /// every range, the embedded store has to scan them, so it is asked for only where the
    /// number is wanted (a limited LIST's `remainingItemCount`).
    pub count_remaining: bool,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(start) = &self.start_after
            && !start.starts_with(&self.prefix)
        {
            return Err(Error::InvalidArgument(
                "the continuation key is outside the prefix".into(),
            ));
        }
        if self.limit == Some(0) {
            return Err(Error::InvalidArgument("limit must be positive".into()));
        }
        Ok(())
    }
}

/// One page of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// Whether keys remain after the last one returned.
    pub more: bool,
    /// How many keys of the range follow the last one returned, when the request asked
    /// (`count_remaining`); 0 otherwise.
    pub remaining: u64,
    /// The revision the page was read at.
    pub revision: Revision,
}

/// The number of keys under a prefix at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub count: u64,
    pub revision: Revision,
}

/// What a successful delete removed, and the revision of the deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub prev: KeyValue,
    pub revision: Revision,
}

/// The first key after every key that starts with `prefix`, or `None` when no such key
/// exists (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn txn_rejects_a_key_written_twice_and_empty_keys() {
        let put = |k: &'static str| Op::Put {
            key: Bytes::from(k),
            value: Bytes::new(),
            lease: None,
        };
        let twice = Txn {
            compares: vec![],
            ops: vec![put("a"), Op::Delete { key: "a".into() }],
        };
        assert!(matches!(twice.validate(), Err(Error::InvalidArgument(_))));
        let empty = Txn {
            compares: vec![],
            ops: vec![put("")],
        };
        assert!(matches!(empty.validate(), Err(Error::InvalidArgument(_))));
        let fine = Txn {
            compares: vec![],
            ops: vec![put("a"), put("b")],
        };
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn txn_counts_every_key_and_value_against_the_request_limit() {
        let txn = |value: usize| Txn {
            compares: vec![Compare {
                key: Bytes::from("k"),
                condition: Condition::Absent,
            }],
            ops: vec![Op::Put {
                key: Bytes::from("k"),
                value: Bytes::from(vec![0; value]),
                lease: None,
            }],
        };
        assert!(txn(MAX_REQUEST_BYTES - 2).validate().is_ok());
        assert!(matches!(
            txn(MAX_REQUEST_BYTES - 1).validate(),
            Err(Error::TooLarge {
                limit: MAX_REQUEST_BYTES
            })
        ));
    }
}
