//! `vcluster-store`: the revisioned key-value store every tenant control plane keeps its
//! objects in.
//!
//! Start reading at [`Store`]: it is the whole contract (etcd's semantics: one revision
//! counter, compare-and-swap on a key's `mod_revision`, ordered watches from any retained
//! revision, compaction, leases). Two backends implement it:
//!
//! - [`Embedded`] (`embedded/`): one redb file, a single writer thread with group commit,
//!   MVCC history on disk and a bounded in-memory watch window. The default on one machine.
//! - [`Etcd`] (`etcd.rs`): a real etcd cluster through `etcd-client`, with watches that
//!   resume after a dropped connection.
//!
//! [`Scoped`] confines a caller to a key prefix (one per tenant) and [`Compactor`] applies a
//! retention policy to any [`Backend`]. The conformance suite in `tests/conformance.rs` runs
//! the same checks against both backends.

mod compactor;
mod embedded;
mod error;
mod etcd;
mod kv;
mod scoped;
mod store;

pub use compactor::{CompactionPolicy, Compactor};
pub use embedded::{Embedded, EmbeddedOptions};
pub use error::{Error, Result};
pub use etcd::{Etcd, EtcdOptions};
pub use kv::{
    Compare, Condition, Counted, Deleted, Event, EventKind, KeyValue, LeaseId, MAX_REQUEST_BYTES,
    Op, RangePage, RangeRequest, Revision, Txn, TxnOutcome, WatchStream, prefix_end,
};
pub use scoped::{Scoped, tenant_key, tenant_prefix};
pub use store::{Backend, Store};
