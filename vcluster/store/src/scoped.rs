//! A view of a store confined to one key prefix: how a tenant gets its own keyspace.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::{
    Compare, Counted, Error, Event, KeyValue, LeaseId, Op, RangePage, RangeRequest, Result,
    Revision, Store, Txn, TxnOutcome, WatchStream,
};

/// The prefix of a tenant's keys: `/tenants/<name>/`. Names are DNS labels (lowercase
/// letters, digits and `-`, at most 63), so no name contains the `/` that ends the prefix,
/// and tenant `a` never sees the keys of tenant `ab`.
pub fn tenant_prefix(tenant: &str) -> Result<Bytes> {
    let valid = vcluster_core::names::is_dns_label(tenant);
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "tenant name {tenant:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
        )));
    }
    Ok(Bytes::from(format!("/tenants/{tenant}/")))
}

/// The inverse of [`tenant_prefix`]: a key of the whole store → the tenant whose prefix it
/// is under and the key inside that prefix (what the tenant's [`Scoped`] view calls it).
pub fn tenant_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix("/tenants/")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash + 1..]))
}

/// Every key a caller passes is taken relative to `prefix`, and every key returned is
/// stripped of it: nothing outside the prefix can be named, read, written or watched.
/// Compaction and lease revocation reach every key, so a view does not offer them (it is a
/// [`Store`], not a [`crate::Backend`]).
#[derive(Clone)]
pub struct Scoped {
    inner: Arc<dyn Store>,
    prefix: Bytes,
}

impl Scoped {
    /// A view of the keys under `prefix`, which must end with `/` so that no other view's
    /// prefix can extend it.
    pub fn new(inner: Arc<dyn Store>, prefix: impl Into<Bytes>) -> Result<Self> {
        let prefix = prefix.into();
        if !prefix.ends_with(b"/") {
            return Err(Error::InvalidArgument(
                "a scope prefix must end with '/'".into(),
            ));
        }
        Ok(Self { inner, prefix })
    }

    /// The view of one tenant's keys.
    pub fn tenant(inner: Arc<dyn Store>, tenant: &str) -> Result<Self> {
        Self::new(inner, tenant_prefix(tenant)?)
    }

    pub fn prefix(&self) -> &Bytes {
        &self.prefix
    }

    fn wrap(&self, key: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
        out.freeze()
    }

    fn strip(prefix: &Bytes, key: &Bytes) -> Bytes {
        key.slice(prefix.len().min(key.len())..)
    }

    fn strip_kv(prefix: &Bytes, mut kv: KeyValue) -> KeyValue {
        kv.key = Self::strip(prefix, &kv.key);
        kv
    }

    fn strip_err(&self, e: Error) -> Error {
        let p = &self.prefix;
        match e {
            Error::AlreadyExists { key } => Error::AlreadyExists {
                key: Self::strip(p, &key),
            },
            Error::NotFound { key } => Error::NotFound {
                key: Self::strip(p, &key),
            },
            Error::Conflict { current } => Error::Conflict {
                current: Box::new(Self::strip_kv(p, *current)),
            },
            e => e,
        }
    }
}

#[async_trait]
impl Store for Scoped {
    async fn get_at(&self, key: &[u8], revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let kv = self.inner.get_at(&self.wrap(key), revision).await;
        let kv = kv.map_err(|e| self.strip_err(e))?;
        Ok(kv.map(|kv| Self::strip_kv(&self.prefix, kv)))
    }

    async fn range(&self, request: RangeRequest) -> Result<RangePage> {
        request.validate()?;
        let request = RangeRequest {
            prefix: self.wrap(&request.prefix),
            start_after: request.start_after.map(|k| self.wrap(&k)),
            ..request
        };
        let mut page = self.inner.range(request).await?;
        page.kvs = page
            .kvs
            .into_iter()
            .map(|kv| Self::strip_kv(&self.prefix, kv))
            .collect();
        Ok(page)
    }

    async fn count(&self, prefix: &[u8]) -> Result<Counted> {
        self.inner.count(&self.wrap(prefix)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let txn = Txn {
            compares: txn
                .compares
                .into_iter()
                .map(|c| Compare {
                    key: self.wrap(&c.key),
                    condition: c.condition,
                })
                .collect(),
            ops: txn
                .ops
                .into_iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => Op::Put {
                        key: self.wrap(&key),
                        value,
                        lease,
                    },
                    Op::Delete { key } => Op::Delete {
                        key: self.wrap(&key),
                    },
                })
                .collect(),
        };
        let p = &self.prefix;
        let strip_all = |kvs: Vec<Option<KeyValue>>| {
            kvs.into_iter()
                .map(|kv| kv.map(|kv| Self::strip_kv(p, kv)))
                .collect()
        };
        Ok(
            match self.inner.txn(txn).await.map_err(|e| self.strip_err(e))? {
                TxnOutcome::Committed { revision, prev } => TxnOutcome::Committed {
                    revision,
                    prev: strip_all(prev),
                },
                TxnOutcome::Failed { current } => TxnOutcome::Failed {
                    current: strip_all(current),
                },
            },
        )
    }

    async fn watch(&self, prefix: &[u8], after: Revision) -> Result<WatchStream> {
        let stream = self.inner.watch(&self.wrap(prefix), after).await?;
        let p = self.prefix.clone();
        Ok(Box::pin(stream.map(move |item| {
            item.map(|event| Event {
                kind: event.kind,
                kv: Self::strip_kv(&p, event.kv),
                prev: event.prev.map(|kv| Self::strip_kv(&p, kv)),
            })
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn grant_lease(&self, ttl_seconds: u64) -> Result<LeaseId> {
        self.inner.grant_lease(ttl_seconds).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_prefixes_end_with_the_separator_and_reject_bad_names() {
        assert_eq!(tenant_prefix("a").ok(), Some(Bytes::from("/tenants/a/")));
        for bad in ["", "A", "a/b", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(tenant_prefix(bad).is_err(), "{bad:?} was accepted");
        }
        let a = tenant_prefix("a").expect("valid");
        let ab = tenant_prefix("ab").expect("valid");
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
    }

    #[test]
    fn tenant_keys_split_back_into_tenant_and_key() {
        let full = [
            &tenant_prefix("a").expect("valid")[..],
            b"/apps/deployments/dev/web",
        ]
        .concat();
        assert_eq!(tenant_key(&full), Some(("a", "/apps/deployments/dev/web")));
        assert_eq!(tenant_key(b"/vcluster/identities/a"), None);
    }
}
