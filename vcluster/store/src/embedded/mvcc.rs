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
/// The write-ahead log sequence number of the last batch applied.
pub(super) const META_WAL_SEQ: &str = "wal_seq";

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
    /// Every change made to the tables, for the write-ahead log (see `redo`).
    redo: Vec<u8>,
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
    /// Opens the tables for writing; `redo` is a buffer to reuse for the changes (cleared).
    pub(super) fn open(txn: &'txn WriteTransaction, mut redo: Vec<u8>) -> Result<Self> {
        redo.clear();
        let meta = txn.open_table(META)?;
        let revision = meta.get(META_REVISION)?.map_or(1, |v| v.value());
        Ok(Self {
            kv: txn.open_table(KV)?,
            revs: txn.open_table(REVS)?,
            leases: txn.open_table(LEASES)?,
            lease_keys: txn.open_table(LEASE_KEYS)?,
            meta,
            revision,
            redo,
        })
    }

    /// Whether this transaction changed anything yet.
    pub(super) fn has_changes(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Records the revision and the log sequence number of this batch; returns the revision
    /// and the changes made, to be logged.
    pub(super) fn finish(mut self, wal_seq: u64) -> Result<(Revision, Vec<u8>)> {
        self.set_meta(META_REVISION, self.revision)?;
        self.set_meta(META_WAL_SEQ, wal_seq)?;
        Ok((self.revision, self.redo))
    }

    /// Applies changes logged by an earlier [`Writer::finish`] again (crash recovery).
    pub(super) fn replay(&mut self, mut redo: &[u8]) -> Result<()> {
        use redo::*;
        while let Some(tag) = take_u8(&mut redo) {
            let bad = || Error::backend(Corrupt(0));
            match tag {
                KV_INSERT => {
                    let (key, rev, row) = (
                        take_bytes(&mut redo),
                        take_u64(&mut redo),
                        take_bytes(&mut redo),
                    );
                    self.kv.insert(
                        (key.ok_or_else(bad)?, rev.ok_or_else(bad)?),
                        row.ok_or_else(bad)?,
                    )?;
                }
                KV_REMOVE => {
                    let (key, rev) = (take_bytes(&mut redo), take_u64(&mut redo));
                    self.kv
                        .remove((key.ok_or_else(bad)?, rev.ok_or_else(bad)?))?;
                }
                REVS_INSERT => {
                    let (rev, keys) = (take_u64(&mut redo), take_bytes(&mut redo));
                    self.revs
                        .insert(rev.ok_or_else(bad)?, keys.ok_or_else(bad)?)?;
                }
                REVS_REMOVE => {
                    self.revs.remove(take_u64(&mut redo).ok_or_else(bad)?)?;
                }
                META_SET => {
                    let name = take_bytes(&mut redo).ok_or_else(bad)?;
                    let name = std::str::from_utf8(name).map_err(|_| bad())?;
                    self.meta
                        .insert(name, take_u64(&mut redo).ok_or_else(bad)?)?;
                }
                LEASE_INSERT => {
                    let (id, ttl, exp) = (
                        take_u64(&mut redo),
                        take_u64(&mut redo),
                        take_u64(&mut redo),
                    );
                    self.leases.insert(
                        id.ok_or_else(bad)?,
                        (ttl.ok_or_else(bad)?, exp.ok_or_else(bad)?),
                    )?;
                }
                LEASE_REMOVE => {
                    self.leases.remove(take_u64(&mut redo).ok_or_else(bad)?)?;
                }
                LEASE_KEY_INSERT | LEASE_KEY_REMOVE => {
                    let (id, key) = (take_u64(&mut redo), take_bytes(&mut redo));
                    let row = (id.ok_or_else(bad)?, key.ok_or_else(bad)?);
                    if tag == LEASE_KEY_INSERT {
                        self.lease_keys.insert(row, ())?;
                    } else {
                        self.lease_keys.remove(row)?;
                    }
                }
                _ => return Err(bad()),
            }
        }
        self.revision = self.meta(META_REVISION)?.max(1);
        Ok(())
    }

    fn set_meta(&mut self, name: &str, value: u64) -> Result<()> {
        self.meta.insert(name, value)?;
        redo::meta_set(&mut self.redo, name, value);
        Ok(())
    }

    fn kv_insert(&mut self, key: &[u8], rev: Revision, row: &[u8]) -> Result<()> {
        self.kv.insert((key, rev), row)?;
        redo::kv(&mut self.redo, redo::KV_INSERT, key, rev, Some(row));
        Ok(())
    }

    fn kv_remove(&mut self, key: &[u8], rev: Revision) -> Result<()> {
        self.kv.remove((key, rev))?;
        redo::kv(&mut self.redo, redo::KV_REMOVE, key, rev, None);
        Ok(())
    }

    fn lease_key(&mut self, insert: bool, lease: LeaseId, key: &[u8]) -> Result<()> {
        if insert {
            self.lease_keys.insert((lease, key), ())?;
        } else {
            self.lease_keys.remove((lease, key))?;
        }
        let tag = if insert {
            redo::LEASE_KEY_INSERT
        } else {
            redo::LEASE_KEY_REMOVE
        };
        redo::lease_key(&mut self.redo, tag, lease, key);
        Ok(())
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
                self.lease_key(false, old, key)?;
            }
            if let Some(new) = lease {
                self.lease_key(true, new, key)?;
            }
        }
        let row = encode_put(create_revision, version, lease, value);
        self.kv_insert(key, revision, &row)?;
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
            self.lease_key(false, lease, key)?;
        }
        self.kv_insert(key, revision, &[TAG_TOMBSTONE])?;
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
        let keys = encode_keys(&keys);
        self.revs.insert(revision, &keys[..])?;
        redo::revs(&mut self.redo, redo::REVS_INSERT, revision, Some(&keys));
        self.revision = revision;
        Ok(Some(Written { revision, events }))
    }

    /// Grants a lease expiring at `expires_ms` (unix milliseconds).
    pub(super) fn grant_lease(&mut self, ttl_seconds: u64, expires_ms: u64) -> Result<LeaseId> {
        let id = self.meta(META_NEXT_LEASE)?.max(1);
        self.set_meta(META_NEXT_LEASE, id + 1)?;
        self.leases.insert(id, (ttl_seconds, expires_ms))?;
        redo::lease(
            &mut self.redo,
            redo::LEASE_INSERT,
            id,
            Some((ttl_seconds, expires_ms)),
        );
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
        redo::lease(&mut self.redo, redo::LEASE_REMOVE, lease, None);
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
                    self.kv_remove(&key, old)?;
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
                    self.kv_remove(&key, rev)?;
                }
            }
            self.revs.remove(rev)?;
            redo::revs(&mut self.redo, redo::REVS_REMOVE, rev, None);
        }
        self.set_meta(META_COMPACTED, end)?;
        Ok(end == target)
    }
}

/// The encoding of table changes in the write-ahead log: a tag, then the row's fields
/// (integers little-endian, byte strings length-prefixed).
mod redo {
    pub(super) const KV_INSERT: u8 = 1;
    pub(super) const KV_REMOVE: u8 = 2;
    pub(super) const REVS_INSERT: u8 = 3;
    pub(super) const REVS_REMOVE: u8 = 4;
    pub(super) const META_SET: u8 = 5;
    pub(super) const LEASE_INSERT: u8 = 6;
    pub(super) const LEASE_REMOVE: u8 = 7;
    pub(super) const LEASE_KEY_INSERT: u8 = 8;
    pub(super) const LEASE_KEY_REMOVE: u8 = 9;

    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("rows are far shorter than 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }

    pub(super) fn kv(out: &mut Vec<u8>, tag: u8, key: &[u8], rev: u64, row: Option<&[u8]>) {
        out.push(tag);
        put_bytes(out, key);
        out.extend_from_slice(&rev.to_le_bytes());
        if let Some(row) = row {
            put_bytes(out, row);
        }
    }

    pub(super) fn revs(out: &mut Vec<u8>, tag: u8, rev: u64, keys: Option<&[u8]>) {
        out.push(tag);
        out.extend_from_slice(&rev.to_le_bytes());
        if let Some(keys) = keys {
            put_bytes(out, keys);
        }
    }

    pub(super) fn meta_set(out: &mut Vec<u8>, name: &str, value: u64) {
        out.push(META_SET);
        put_bytes(out, name.as_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn lease(out: &mut Vec<u8>, tag: u8, id: u64, row: Option<(u64, u64)>) {
        out.push(tag);
        out.extend_from_slice(&id.to_le_bytes());
        if let Some((ttl, expires)) = row {
            out.extend_from_slice(&ttl.to_le_bytes());
            out.extend_from_slice(&expires.to_le_bytes());
        }
    }

    pub(super) fn lease_key(out: &mut Vec<u8>, tag: u8, id: u64, key: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&id.to_le_bytes());
        put_bytes(out, key);
    }

    pub(super) fn take_u8(input: &mut &[u8]) -> Option<u8> {
        let (first, rest) = input.split_first()?;
        *input = rest;
        Some(*first)
    }

    pub(super) fn take_u64(input: &mut &[u8]) -> Option<u64> {
        let (word, rest) = input.split_first_chunk::<8>()?;
        *input = rest;
        Some(u64::from_le_bytes(*word))
    }

    pub(super) fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = input.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (bytes, rest) = rest.split_at(len);
        *input = rest;
        Some(bytes)
    }
}
