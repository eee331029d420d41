//! The replay window's cache: the delivery ids seen most recently, per (project, trigger), each
//! until the trigger's tolerance has passed. It answers a delivery repeated while the first is
//! still being handled (no IO), and the common retry of a recent id; the authority is the
//! store's record ([`ReplayStore`]): the server asks it about every id the cache does not hold,
//! and the task's commit refuses a second task for a recorded id. So the window is exact for any
//! number of ids and across restarts, while this cache stays the same size after ten thousand
//! deliveries as after a million.
//!
//! Each id is kept as a 128-bit keyed digest of (project, trigger, id) — two SipHash digests
//! under keys drawn at random for each cache, which a sender cannot aim collisions at — with its
//! expiry in milliseconds, 24 bytes in the map and 24 in the expiry queue; at most
//! [`RECENT_CAPACITY`] of them, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::SeenDelivery;

/// Delivery ids the cache holds (about 0.6 MiB full).
pub(super) const RECENT_CAPACITY: usize = 8_192;

/// (project, trigger, delivery id).
pub(super) type DeliveryKey = (String, String, String);

/// What the cache keeps of a [`DeliveryKey`].
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
            seen: HashMap::with_capacity(RECENT_CAPACITY),
            order: VecDeque::with_capacity(RECENT_CAPACITY),
        }
    }
}

impl Replay {
    /// Records `key`; false if it is held and has not expired. True does not mean the id is new:
    /// the store is asked next.
    pub(super) fn first_time(&mut self, key: DeliveryKey, window: Duration) -> bool {
        let now = self.millis(Instant::now());
        while let Some((k, until)) = self.order.front() {
            if *until > now && self.order.len() < RECENT_CAPACITY {
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
        self.seen.insert(digest, until);
        self.order.push_back((digest, until));
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

    /// `at` as milliseconds since the cache's base (0 for an earlier instant).
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
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
    fn the_cache_holds_at_most_its_capacity_and_forgets_the_oldest_first() {
        let mut r = Replay::default();
        let window = Duration::from_secs(600);
        for n in 0..RECENT_CAPACITY + 10 {
            assert!(r.first_time(key(&format!("id-{n}")), window));
        }
        assert!(r.len() <= RECENT_CAPACITY);
        assert!(!r.first_time(key(&format!("id-{}", RECENT_CAPACITY + 9)), window));
        assert!(r.first_time(key("id-0"), window), "the oldest id made room");
    }
}
