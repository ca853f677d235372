use bytes::Bytes;

use crate::{KeyValue, LeaseId, Revision};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed. The first group are answers the caller acts on (they map to
/// Kubernetes' 409, 404 and 410); the last group are failures of the backend itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key already exists")]
    AlreadyExists { key: Bytes },

    #[error("key not found")]
    NotFound { key: Bytes },

    /// A compare-and-swap lost: the key was modified after the revision the caller read.
    /// `current` is the key-value as it is now, so the caller can retry without a read.
    #[error("the key was modified at revision {}", current.mod_revision)]
    Conflict { current: Box<KeyValue> },

    /// The history needed (a read at, or a watch after, `requested`) has been compacted;
    /// `compacted` is the oldest revision still available.
    #[error("revision {requested} has been compacted (oldest available revision is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),

    /// A write larger than the store takes ([`crate::MAX_REQUEST_BYTES`] on both backends);
    /// nothing was written.
    #[error("the request is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },

    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// The backend could not be reached; for a write, its outcome is unknown.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error("store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error("store is closed")]
    Closed,
}

impl Error {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Backend(Box::new(e))
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::backend(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);
