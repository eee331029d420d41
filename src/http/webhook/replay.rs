//! The replay window: the delivery ids seen recently, per (project, trigger), each until the
//! trigger's tolerance has passed. The in-memory map is the first check of every delivery (no IO
//! on the hot path); its durable half is the store's [`ReplayStore`]: a delivery that creates a
//! task is recorded in the task's own commit, and each incarnation of the server loads the
//! unexpired ids before it serves, so a restart does not forget them.
//!
//! The map holds up to [`REPLAY_CAPACITY`] ids, so its memory is bounded by what it holds, not by
//! the ids' lengths: each id is kept as a 128-bit keyed digest of (project, trigger, id) — two
//! SipHash digests under keys drawn at random for each window, which a sender cannot aim
//! collisions at — with its expiry in milliseconds, 24 bytes in the map and 24 in the expiry
//! queue.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::{ReplayStore, SeenDelivery, StoreError};

/// Delivery ids remembered for replay detection.
pub(super) const REPLAY_CAPACITY: usize = 100_000;

/// (project, trigger, delivery id).
pub(super) type DeliveryKey = (String, String, String);

/// What the window keeps of a [`DeliveryKey`].
type Digest = [u64; 2];

/// Delivery ids seen recently, with their expiry (milliseconds since `base`).
pub(super) struct Replay {
    keys: [RandomState; 2],
    base: Instant,
    seen: HashMap<Digest, u64>,
    order: VecDeque<(Digest, u64)>,
}

impl Default for Replay {
    fn default() -> Replay {
        Replay {
            keys: [RandomState::new(), RandomState::new()],
            base: Instant::now(),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl Replay {
    /// The window the store remembers at `now`: its unexpired ids, oldest expiry first.
    pub(super) fn load(
        store: &dyn ReplayStore,
        now: DateTime<Utc>,
        at: Instant,
    ) -> Result<Replay, StoreError> {
        let mut replay = Replay::default();
        let mut records = store.seen(now, REPLAY_CAPACITY)?;
        records.reverse();
        for d in records {
            let left = (d.expires_at - now).to_std().unwrap_or(Duration::ZERO);
            let digest = replay.digest(&(d.project, d.trigger, d.id));
            replay.insert(digest, replay.millis(at + left));
        }
        Ok(replay)
    }

    /// Records `key`; false if it was already seen and has not expired.
    pub(super) fn first_time(&mut self, key: DeliveryKey, window: Duration) -> bool {
        let now = self.millis(Instant::now());
        while let Some((k, until)) = self.order.front() {
            if *until > now && self.order.len() < REPLAY_CAPACITY {
                break;
            }
            if self.seen.get(k) == Some(until) {
                self.seen.remove(k);
            }
            self.order.pop_front();
        }
        let digest = self.digest(&key);
        if self.seen.get(&digest).is_some_and(|until| *until > now) {
            return false;
        }
        let until = now.saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        self.insert(digest, until);
        true
    }

    /// How many ids it holds.
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets `key`: its delivery created no task, so a retry of it is not a replay.
    pub(super) fn forget(&mut self, key: &DeliveryKey) {
        let digest = self.digest(key);
        self.seen.remove(&digest);
    }

    fn digest(&self, key: &DeliveryKey) -> Digest {
        [self.keys[0].hash_one(key), self.keys[1].hash_one(key)]
    }

    /// `at` as milliseconds since the window's base (0 for an earlier instant).
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, digest: Digest, until: u64) {
        self.seen.insert(digest, until);
        self.order.push_back((digest, until));
    }
}

/// What the store records of a delivery that was seen at `now` for `window`.
pub(super) fn record(key: &DeliveryKey, now: DateTime<Utc>, window: Duration) -> SeenDelivery {
    let (project, trigger, id) = key.clone();
    SeenDelivery {
        project,
        trigger,
        id,
        expires_at: now + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn key(id: &str) -> DeliveryKey {
        ("p".to_string(), "t".to_string(), id.to_string())
    }

    #[test]
    fn replay_window() {
        let mut r = Replay::default();
        assert!(r.first_time(key("id-1"), Duration::from_secs(60)));
        assert!(!r.first_time(key("id-1"), Duration::from_secs(60)));
        assert!(r.first_time(key("id-2"), Duration::from_secs(60)));
        // A forgotten id (its task could not be created) is new again.
        r.forget(&key("id-2"));
        assert!(r.first_time(key("id-2"), Duration::from_secs(60)));
        // An expired id is new again.
        let mut r = Replay::default();
        assert!(r.first_time(key("id-1"), Duration::ZERO));
        assert!(r.first_time(key("id-1"), Duration::ZERO));
        // The same id under another trigger is another delivery.
        let mut r = Replay::default();
        assert!(r.first_time(key("id-1"), Duration::from_secs(60)));
        let other = ("p".to_string(), "u".to_string(), "id-1".to_string());
        assert!(r.first_time(other, Duration::from_secs(60)));
    }

    #[test]
    fn the_window_holds_at_most_its_capacity_and_forgets_the_oldest_first() {
        let mut r = Replay::default();
        let window = Duration::from_secs(600);
        for n in 0..REPLAY_CAPACITY + 10 {
            assert!(r.first_time(key(&format!("id-{n}")), window));
        }
        assert!(r.len() <= REPLAY_CAPACITY);
        assert!(!r.first_time(key(&format!("id-{}", REPLAY_CAPACITY + 9)), window));
        assert!(r.first_time(key("id-0"), window), "the oldest id made room");
    }

    /// A store that answers with fixed records (and remembers what it was asked).
    struct Fixed(Vec<SeenDelivery>, Mutex<Vec<usize>>);

    impl ReplayStore for Fixed {
        fn seen(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SeenDelivery>, StoreError> {
            self.1.lock().expect("lock").push(limit);
            Ok(self
                .0
                .iter()
                .filter(|d| d.expires_at > now)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn a_loaded_window_knows_what_the_store_recorded_until_it_expires() {
        let now = Utc::now();
        let window = Duration::from_secs(300);
        let store = Fixed(
            vec![
                record(&key("late"), now, window),
                record(&key("early"), now - chrono::Duration::seconds(200), window),
                record(&key("gone"), now - chrono::Duration::seconds(400), window),
            ],
            Mutex::new(Vec::new()),
        );
        let at = Instant::now();
        let mut r = Replay::load(&store, now, at).expect("load");
        assert_eq!(*store.1.lock().expect("lock"), [REPLAY_CAPACITY]);
        assert!(
            !r.first_time(key("late"), window),
            "a recorded id is a replay"
        );
        assert!(!r.first_time(key("early"), window));
        assert!(r.first_time(key("gone"), window), "an expired id is not");
        // Each id keeps the expiry the store gave it, not a fresh window.
        let until = |r: &Replay, id: &str| r.seen[&r.digest(&key(id))] - r.millis(at);
        assert!(until(&r, "early") <= 100_000);
        assert!(until(&r, "late") > 290_000);
    }
}
