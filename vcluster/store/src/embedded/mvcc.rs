//! The on-disk multi-version layout of the embedded backend and the operations on it.
//!
//! Every version of every key is one row of `kv`, keyed `(key, mod_revision)`, so the value
//! of a key at revision R is the last row of `(key, 0..=R)`; a delete writes a tombstone row.
//! `revs` lists the keys written at each revision, which is how a watch that starts before
//! the in-memory window replays history from disk and how compaction finds what to drop.

use bytes::Bytes;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use std::ops::Bound;

use crate::{
    Condition, Error, Event, EventKind, KeyValue, LeaseId, Op, RangeRequest, Result, Revision, Txn,
    TxnOutcome, prefix_end,
};

type VersionKey = (&'static [u8], u64);

pub(super) const KV: TableDefinition<'_, VersionKey, &[u8]> = TableDefinition::new("kv");
pub(super) const REVS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("revs");
pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// lease id → (ttl in seconds, expiry as unix milliseconds)
pub(super) const LEASES: TableDefinition<'_, u64, (u64, u64)> = TableDefinition::new("leases");
pub(super) const LEASE_KEYS: TableDefinition<'_, (u64, &[u8]), ()> =
    TableDefinition::new("lease_keys");

pub(super) const META_REVISION: &str = "revision";
pub(super) const META_COMPACTED: &str = "compacted";
pub(super) const META_NEXT_LEASE: &str = "next_lease";

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;
const PUT_HEADER: usize = 25;

fn encode_put(
    create_revision: Revision,
    version: u64,
    lease: Option<LeaseId>,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PUT_HEADER + value.len());
    out.push(TAG_PUT);
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&lease.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes one version row; `None` is a tombstone.
fn decode(key: &[u8], mod_revision: Revision, row: &[u8]) -> Result<Option<KeyValue>> {
    let corrupt = || Error::backend(Corrupt(mod_revision));
    match row.first() {
        Some(&TAG_TOMBSTONE) => Ok(None),
        Some(&TAG_PUT) if row.len() >= PUT_HEADER => {
            let word = |at: usize| -> Result<u64> {
                let bytes: [u8; 8] = row[at..at + 8].try_into().map_err(|_| corrupt())?;
                Ok(u64::from_be_bytes(bytes))
            };
            let lease = word(17)?;
            Ok(Some(KeyValue {
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(&row[PUT_HEADER..]),
                create_revision: word(1)?,
                mod_revision,
                version: word(9)?,
                lease: (lease != 0).then_some(lease),
            }))
        }
        _ => Err(corrupt()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt version row at revision {0}")]
struct Corrupt(Revision);

fn encode_keys(keys: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for key in keys {
        let len = u32::try_from(key.len()).expect("keys are far shorter than 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(key);
    }
    out
}

fn decode_keys(mut raw: &[u8]) -> Result<Vec<Bytes>> {
    let mut keys = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw
            .split_first_chunk::<4>()
            .ok_or_else(|| Error::backend(Corrupt(0)))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(Error::backend(Corrupt(0)));
        }
        keys.push(Bytes::copy_from_slice(&rest[..len]));
        raw = &rest[len..];
    }
    Ok(keys)
}

/// The key's value as of revision `at`.
pub(super) fn value_at(
    kv: &impl ReadableTable<VersionKey, &'static [u8]>,
    key: &[u8],
    at: Revision,
) -> Result<Option<KeyValue>> {
    match kv.range((key, 0u64)..=(key, at))?.next_back() {
        None => Ok(None),
        Some(row) => {
            let (k, v) = row?;
            decode(key, k.value().1, v.value())
        }
    }
}

/// Calls `visit` with each live key under the request's prefix as of revision `at`, in key
/// order, until it returns false.
pub(super) fn scan(
    kv: &impl ReadableTable<VersionKey, &'static [u8]>,
    request: &RangeRequest,
    at: Revision,
    mut visit: impl FnMut(KeyValue) -> bool,
) -> Result<()> {
    let end = prefix_end(&request.prefix);
    let lower = match &request.start_after {
        Some(start) => Bound::Excluded((&start[..], u64::MAX)),
        None => Bound::Included((&request.prefix[..], 0)),
    };
    let upper = match &end {
        Some(end) => Bound::Excluded((&end[..], 0)),
        None => Bound::Unbounded,
    };
    // Rows come grouped by key, oldest version first: remember the newest one at or before
    // `at` and emit it when the key changes.
    let mut pending: Option<(Vec<u8>, Revision, Vec<u8>)> = None;
    let emit = |pending: Option<(Vec<u8>, Revision, Vec<u8>)>,
                visit: &mut dyn FnMut(KeyValue) -> bool|
     -> Result<bool> {
        match pending {
            Some((key, rev, row)) => match decode(&key, rev, &row)? {
                Some(kv) => Ok(visit(kv)),
                None => Ok(true),
            },
            None => Ok(true),
        }
    };
    for row in kv.range::<(&[u8], u64)>((lower, upper))? {
        let (k, v) = row?;
        let (key, rev) = k.value();
        if pending
            .as_ref()
            .is_some_and(|(p, _, _)| p.as_slice() != key)
            && !emit(pending.take(), &mut visit)?
        {
            return Ok(());
        }
        if rev <= at {
            pending = Some((key.to_vec(), rev, v.value().to_vec()));
        }
    }
    emit(pending, &mut visit)?;
    Ok(())
}

/// The events of revisions `after+1 ..= until` under `prefix`, read back from disk.
pub(super) fn replay(
    kv: &impl ReadableTable<VersionKey, &'static [u8]>,
    revs: &impl ReadableTable<u64, &'static [u8]>,
    prefix: &[u8],
    after: Revision,
    until: Revision,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for row in revs.range(after + 1..=until)? {
        let (rev, keys) = row?;
        let rev = rev.value();
        for key in decode_keys(keys.value())? {
            if !key.starts_with(prefix) {
                continue;
            }
            let row = kv
                .get((&key[..], rev))?
                .ok_or_else(|| Error::backend(Corrupt(rev)))?;
            let now = decode(&key, rev, row.value())?;
            let prev = value_at(kv, &key, rev - 1)?;
            events.push(match now {
                Some(kv) => Event {
                    kind: EventKind::Put,
                    kv,
                    prev,
                },
                None => Event {
                    kind: EventKind::Delete,
                    kv: tombstone_kv(key, rev),
                    prev,
                },
            });
        }
    }
    Ok(events)
}

fn tombstone_kv(key: Bytes, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: None,
    }
}

/// The tables of one write transaction, and the writes the writer thread applies with them.
pub(super) struct Writer<'txn> {
    kv: Table<'txn, VersionKey, &'static [u8]>,
    revs: Table<'txn, u64, &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    leases: Table<'txn, u64, (u64, u64)>,
    lease_keys: Table<'txn, (u64, &'static [u8]), ()>,
    /// The revision of the last write applied in this transaction.
    pub(super) revision: Revision,
}

/// The changes committed at one revision.
pub(super) struct Written {
    pub(super) revision: Revision,
    pub(super) events: Vec<Event>,
}

/// A request's own answer (`Err` for a request that is refused, such as an unknown lease),
/// inside the outer `Result` that reports a storage failure aborting the whole batch.
pub(super) type Applied<T> = Result<(Result<T>, Option<Written>)>;

impl<'txn> Writer<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        let meta = txn.open_table(META)?;
        let revision = meta.get(META_REVISION)?.map_or(1, |v| v.value());
        Ok(Self {
            kv: txn.open_table(KV)?,
            revs: txn.open_table(REVS)?,
            leases: txn.open_table(LEASES)?,
            lease_keys: txn.open_table(LEASE_KEYS)?,
            meta,
            revision,
        })
    }

    pub(super) fn finish(mut self) -> Result<Revision> {
        self.meta.insert(META_REVISION, self.revision)?;
        Ok(self.revision)
    }

    pub(super) fn meta(&self, name: &str) -> Result<u64> {
        Ok(self.meta.get(name)?.map_or(0, |v| v.value()))
    }

    pub(super) fn txn(&mut self, txn: &Txn) -> Applied<TxnOutcome> {
        if let Err(e) = txn.validate() {
            return Ok((Err(e), None));
        }
        let mut current = Vec::with_capacity(txn.compares.len());
        let mut holds = true;
        for compare in &txn.compares {
            let kv = value_at(&self.kv, &compare.key, u64::MAX)?;
            holds &= match (compare.condition, &kv) {
                (Condition::Absent, kv) => kv.is_none(),
                (Condition::Exists, kv) => kv.is_some(),
                (Condition::ModRevision(rev), Some(kv)) => kv.mod_revision == rev,
                (Condition::ModRevision(_), None) => false,
            };
            current.push(kv);
        }
        if !holds {
            return Ok((Ok(TxnOutcome::Failed { current }), None));
        }
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
                && self.leases.get(*lease)?.is_none()
            {
                return Ok((Err(Error::LeaseNotFound(*lease)), None));
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        let mut prev = Vec::with_capacity(txn.ops.len());
        for op in &txn.ops {
            prev.push(match op {
                Op::Put { key, value, lease } => {
                    self.put(key, value, *lease, revision, &mut events)?
                }
                Op::Delete { key } => self.delete(key, revision, &mut events)?,
            });
        }
        let written = self.seal(revision, events)?;
        let revision = written.as_ref().map_or(self.revision, |w| w.revision);
        Ok((Ok(TxnOutcome::Committed { revision, prev }), written))
    }

    fn put(
        &mut self,
        key: &Bytes,
        value: &Bytes,
        lease: Option<LeaseId>,
        revision: Revision,
        events: &mut Vec<Event>,
    ) -> Result<Option<KeyValue>> {
        let prev = value_at(&self.kv, key, u64::MAX)?;
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (revision, 1),
        };
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != lease {
            if let Some(old) = old_lease {
                self.lease_keys.remove((old, &key[..]))?;
            }
            if let Some(new) = lease {
                self.lease_keys.insert((new, &key[..]), ())?;
            }
        }
        let row = encode_put(create_revision, version, lease, value);
        self.kv.insert((&key[..], revision), &row[..])?;
        events.push(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision,
                mod_revision: revision,
                version,
                lease,
            },
            prev: prev.clone(),
        });
        Ok(prev)
    }

    fn delete(
        &mut self,
        key: &Bytes,
        revision: Revision,
        events: &mut Vec<Event>,
    ) -> Result<Option<KeyValue>> {
        let Some(prev) = value_at(&self.kv, key, u64::MAX)? else {
            return Ok(None);
        };
        if let Some(lease) = prev.lease {
            self.lease_keys.remove((lease, &key[..]))?;
        }
        self.kv.insert((&key[..], revision), &[TAG_TOMBSTONE][..])?;
        events.push(Event {
            kind: EventKind::Delete,
            kv: tombstone_kv(key.clone(), revision),
            prev: Some(prev.clone()),
        });
        Ok(Some(prev))
    }

    /// Records the keys written at `revision`, if any were, and makes it the current one.
    fn seal(&mut self, revision: Revision, events: Vec<Event>) -> Result<Option<Written>> {
        if events.is_empty() {
            return Ok(None);
        }
        let keys: Vec<Bytes> = events.iter().map(|e| e.kv.key.clone()).collect();
        self.revs.insert(revision, &encode_keys(&keys)[..])?;
        self.revision = revision;
        Ok(Some(Written { revision, events }))
    }

    /// Grants a lease expiring at `expires_ms` (unix milliseconds).
    pub(super) fn grant_lease(&mut self, ttl_seconds: u64, expires_ms: u64) -> Result<LeaseId> {
        let id = self.meta(META_NEXT_LEASE)?.max(1);
        self.meta.insert(META_NEXT_LEASE, id + 1)?;
        self.leases.insert(id, (ttl_seconds, expires_ms))?;
        Ok(id)
    }

    /// The lease's expiry (unix milliseconds), if it exists.
    pub(super) fn lease_expiry(&self, lease: LeaseId) -> Result<Option<u64>> {
        Ok(self.leases.get(lease)?.map(|v| v.value().1))
    }

    /// Deletes the lease and, at one revision, every key attached to it.
    pub(super) fn revoke_lease(&mut self, lease: LeaseId) -> Applied<()> {
        if self.leases.remove(lease)?.is_none() {
            return Ok((Err(Error::LeaseNotFound(lease)), None));
        }
        let mut keys = Vec::new();
        for row in self
            .lease_keys
            .range::<(u64, &[u8])>((lease, &[][..])..(lease + 1, &[][..]))?
        {
            keys.push(Bytes::copy_from_slice(row?.0.value().1));
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        for key in &keys {
            self.delete(key, revision, &mut events)?;
        }
        let written = self.seal(revision, events)?;
        Ok((Ok(()), written))
    }

    /// Compacts up to `target`, at most `budget` revisions at a time; returns whether
    /// `target` has been reached. Each step is a complete compaction to the revision it
    /// reached, so a read is never served a half-compacted history.
    pub(super) fn compact_step(&mut self, target: Revision, budget: u64) -> Result<bool> {
        let compacted = self.meta(META_COMPACTED)?;
        if target <= compacted {
            return Ok(true);
        }
        let end = target.min(compacted.saturating_add(budget));
        let mut written = Vec::new();
        for row in self.revs.range(compacted + 1..=end)? {
            let (rev, keys) = row?;
            written.push((rev.value(), decode_keys(keys.value())?));
        }
        for (rev, keys) in written {
            for key in keys {
                // Every older version of the key is superseded by this one, which is at or
                // before `end`.
                let mut older = Vec::new();
                for row in self.kv.range((&key[..], 0u64)..(&key[..], rev))? {
                    older.push(row?.0.value().1);
                }
                for old in older {
                    self.kv.remove((&key[..], old))?;
                }
                // A deletion that is the key's last version up to `end` leaves nothing to
                // read at `end`: absence says the same.
                let tombstone = self
                    .kv
                    .get((&key[..], rev))?
                    .is_some_and(|row| row.value().first() == Some(&TAG_TOMBSTONE));
                let superseded = self
                    .kv
                    .range((&key[..], rev + 1)..=(&key[..], end))?
                    .next()
                    .is_some();
                if tombstone && !superseded {
                    self.kv.remove((&key[..], rev))?;
                }
            }
            self.revs.remove(rev)?;
        }
        self.meta.insert(META_COMPACTED, end)?;
        Ok(end == target)
    }
}
