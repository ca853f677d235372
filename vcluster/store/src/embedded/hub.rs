//! The in-memory watch window of the embedded backend.
//!
//! The writer thread appends each committed revision's events and then advances `head`.
//! Watchers pull: each keeps a cursor (the last revision it delivered), copies what the
//! window holds after it, and falls back to replaying from disk when its cursor is older
//! than the window. Nothing is pushed into per-watcher queues, so a slow watcher can't make
//! the writer wait or lose events; it only reads more from disk.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::mvcc::Written;
use crate::{Error, Event, Result, Revision};

/// How many revisions a watcher takes per step before it yields to others.
const STEP: u64 = 512;

pub(super) struct Hub {
    window: RwLock<Window>,
    head: watch::Sender<Revision>,
}

struct Window {
    revisions: VecDeque<Arc<Written>>,
    bytes: usize,
    max_revisions: usize,
    max_bytes: usize,
}

/// Where a watcher's next revisions are.
enum Next {
    Memory(Vec<Arc<Written>>),
    /// Not in the window: replay up to this revision from disk.
    Disk(Revision),
}

fn size(written: &Written) -> usize {
    written
        .events
        .iter()
        .map(|e| {
            e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len()) + 128
        })
        .sum()
}

impl Hub {
    pub(super) fn new(head: Revision, max_revisions: usize, max_bytes: usize) -> Self {
        Self {
            window: RwLock::new(Window {
                revisions: VecDeque::new(),
                bytes: 0,
                max_revisions: max_revisions.max(1),
                max_bytes,
            }),
            head: watch::Sender::new(head),
        }
    }

    /// Publishes committed revisions (in order) and then the new head.
    pub(super) fn publish(&self, written: Vec<Written>, head: Revision) {
        {
            let mut window = self.window.write().expect("watch window lock poisoned");
            for w in written {
                window.bytes += size(&w);
                window.revisions.push_back(Arc::new(w));
            }
            while window.revisions.len() > window.max_revisions
                || (window.bytes > window.max_bytes && window.revisions.len() > 1)
            {
                if let Some(old) = window.revisions.pop_front() {
                    window.bytes -= size(&old);
                }
            }
        }
        self.head.send_replace(head);
    }

    fn next(&self, cursor: Revision, head: Revision) -> Next {
        let window = self.window.read().expect("watch window lock poisoned");
        match window.revisions.front() {
            Some(first) if first.revision <= cursor + 1 => {
                let start = window.revisions.partition_point(|w| w.revision <= cursor);
                Next::Memory(
                    window
                        .revisions
                        .range(start..)
                        .take(STEP as usize)
                        .cloned()
                        .collect(),
                )
            }
            Some(first) => Next::Disk(first.revision - 1),
            None => Next::Disk(head),
        }
    }
}

/// Starts a watcher task delivering every event under `prefix` after `after`.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    prefix: Bytes,
    after: Revision,
    tx: mpsc::Sender<Result<Event>>,
) {
    let head = shared.hub.head.subscribe();
    tokio::spawn(run(Arc::downgrade(shared), head, prefix, after, tx));
}

async fn run(
    shared: Weak<Shared>,
    mut head: watch::Receiver<Revision>,
    prefix: Bytes,
    mut cursor: Revision,
    tx: mpsc::Sender<Result<Event>>,
) {
    loop {
        let target = *head.borrow_and_update();
        while cursor < target {
            // Hold the store only while reading, so dropping the store closes it.
            let step = match shared.upgrade() {
                None => Err(Error::Closed),
                Some(shared) => match shared.hub.next(cursor, target) {
                    Next::Memory(written) => Ok(written
                        .iter()
                        .map(|w| {
                            let events = w.events.iter().filter(|e| e.kv.key.starts_with(&prefix));
                            (w.revision, events.cloned().collect())
                        })
                        .collect::<Vec<(Revision, Vec<Event>)>>()),
                    Next::Disk(until) => {
                        let until = until.min(cursor + STEP);
                        shared
                            .replay(&prefix, cursor, until)
                            .map(|events| vec![(until, events)])
                    }
                },
            };
            let step = match step {
                Ok(step) => step,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for (revision, events) in step {
                for event in events {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                cursor = revision;
            }
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() {
                let _ = tx.send(Err(Error::Closed)).await;
                return;
            },
            () = tx.closed() => return,
        }
    }
}
