//! client-go's `EventCorrelator`, as pure bookkeeping for whoever records events (the
//! controllers, the node simulator): repeats of one event within [`WINDOW`] are counted into
//! the event written first (its name, `count`, `firstTimestamp`, `lastTimestamp`), and each
//! speaker (a source and the object it speaks about) may record [`BURST`] occurrences at
//! once, then one more every [`REFILL`] (its spam filter; a repeat spends a token too). Both
//! caches forget their least recently used entries beyond their capacity, as client-go's
//! LRU caches do. Writing the events is the caller's.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use jiff::{SignedDuration, Timestamp};

/// How long after its last occurrence an event is still added to rather than written anew.
pub const WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// How many occurrences one speaker may record at once, and how long it takes to earn one
/// more.
pub const BURST: f64 = 25.0;
pub const REFILL: SignedDuration = SignedDuration::from_mins(5);
/// The size of client-go's caches.
pub const REMEMBERED: usize = 4096;

/// A map that forgets its least recently used entries beyond `capacity`, as client-go's
/// LRU caches do.
struct Lru<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    /// Each key by its last use, oldest first.
    by_use: BTreeMap<u64, K>,
    uses: u64,
}

impl<K: Clone + Eq + Hash, V> Lru<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            uses: 0,
        }
    }

    /// The value of `key`, made by `make` if there is none, and now the most recently used.
    fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.uses += 1;
        let used = self.uses;
        match self.entries.get_mut(&key) {
            Some((_, last)) => {
                self.by_use.remove(last);
                *last = used;
            }
            None => {
                self.entries.insert(key.clone(), (make(), used));
            }
        }
        self.by_use.insert(used, key.clone());
        // The key just used is the newest, so it is never the one forgotten.
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        &mut self.entries.get_mut(&key).expect("just used").0
    }
}

/// What to write for an occurrence: the event's name, its count so far and its first and
/// last timestamps. A count of 1 is a new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub name: String,
    pub count: i32,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// A speaker's token bucket: `BURST` occurrences at once, then one more every `REFILL`.
struct Tokens {
    left: f64,
    at: Timestamp,
}

/// What client-go's `EventCorrelator` keeps: the events written lately, by `K` (what makes
/// two occurrences the same event), and each speaker's (`S`) tokens.
pub struct Correlator<K, S> {
    events: Lru<K, Tally>,
    tokens: Lru<S, Tokens>,
}

impl<K: Clone + Eq + Hash, S: Clone + Eq + Hash> Correlator<K, S> {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: Lru::new(capacity),
            tokens: Lru::new(capacity),
        }
    }

    /// Counts an occurrence at `at` of the event `key`, said by `speaker`, about the object
    /// named `object`; nothing to write if the speaker has said too much lately. As with
    /// client-go's spam filter, every occurrence spends a token, a repeat too.
    pub fn observe(&mut self, key: K, speaker: S, object: &str, at: Timestamp) -> Option<Tally> {
        let tokens = self.tokens.entry(speaker, || Tokens { left: BURST, at });
        let earned = at.duration_since(tokens.at).as_secs_f64() / REFILL.as_secs_f64();
        tokens.left = (tokens.left + earned.max(0.0)).min(BURST);
        tokens.at = at;
        if tokens.left < 1.0 {
            return None;
        }
        tokens.left -= 1.0;
        let fresh = || Tally {
            name: format!("{object}.{:x}", at.as_nanosecond()),
            count: 0,
            first: at,
            last: at,
        };
        let tally = self.events.entry(key, fresh);
        if at.duration_since(tally.last) > WINDOW {
            *tally = fresh();
        }
        tally.count += 1;
        tally.last = at;
        Some(tally.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("a time")
    }

    #[test]
    fn repeats_count_into_the_first_event_within_the_window() {
        let mut c: Correlator<&str, &str> = Correlator::new(16);
        let first = c
            .observe("pulled", "kubelet/web", "web", at(0))
            .expect("said");
        assert_eq!(first.count, 1);
        let again = c
            .observe("pulled", "kubelet/web", "web", at(60))
            .expect("said");
        assert_eq!((again.name.as_str(), again.count), (first.name.as_str(), 2));
        assert_eq!((again.first, again.last), (at(0), at(60)));
        let later = c
            .observe("pulled", "kubelet/web", "web", at(60 + 601))
            .expect("said");
        assert_eq!(later.count, 1, "past the window: a new event");
        assert_ne!(later.name, first.name);
    }

    #[test]
    fn a_speaker_gets_a_burst_then_one_per_refill() {
        let mut c: Correlator<u32, &str> = Correlator::new(64);
        let said = (0..40)
            .filter(|i| c.observe(*i, "rs/web", "web", at(0)).is_some())
            .count();
        assert_eq!(said, 25);
        assert!(c.observe(100, "rs/web", "web", at(100)).is_none());
        assert!(c.observe(101, "rs/web", "web", at(301)).is_some());
        assert!(
            c.observe(0, "rs/db", "db", at(0)).is_some(),
            "another speaker"
        );
    }

    #[test]
    fn caches_forget_the_least_recently_used() {
        let mut c: Correlator<u32, u32> = Correlator::new(2);
        let first = c.observe(1, 1, "a", at(0)).expect("said");
        c.observe(2, 2, "b", at(1));
        c.observe(1, 1, "a", at(2)); // 1 is used again: 2 is the oldest
        c.observe(3, 3, "c", at(3));
        assert_eq!((c.events.entries.len(), c.events.by_use.len()), (2, 2));
        assert_eq!(c.observe(1, 1, "a", at(4)).expect("said").name, first.name);
        assert_eq!(
            c.observe(2, 2, "b", at(5)).expect("said").count,
            1,
            "2 was forgotten"
        );
    }
}
