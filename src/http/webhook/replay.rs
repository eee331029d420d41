//! The replay window: the delivery ids seen recently, per (project, trigger), each until the
//! trigger's tolerance has passed. The in-memory map is the first check of every delivery (no IO
//! on the hot path); its durable half is the store's [`ReplayStore`]: a delivery that creates a
//! task is recorded in the task's own commit, and each incarnation of the server loads the
//! unexpired ids before it serves, so a restart does not forget them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::{ReplayStore, SeenDelivery, StoreError};

/// Delivery ids remembered for replay detection.
pub(super) const REPLAY_CAPACITY: usize = 100_000;

/// (project, trigger, delivery id).
pub(super) type DeliveryKey = (String, String, String);

/// Delivery ids seen recently, with their expiry.
#[derive(Default)]
pub(super) struct Replay {
    seen: HashMap<DeliveryKey, Instant>,
    order: VecDeque<(DeliveryKey, Instant)>,
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
            replay.insert((d.project, d.trigger, d.id), at + left);
        }
        Ok(replay)
    }

    /// Records `key`; false if it was already seen and has not expired.
    pub(super) fn first_time(&mut self, key: DeliveryKey, window: Duration) -> bool {
        let now = Instant::now();
        while let Some((k, until)) = self.order.front() {
            if *until > now && self.order.len() < REPLAY_CAPACITY {
                break;
            }
            if self.seen.get(k) == Some(until) {
                self.seen.remove(k);
            }
            self.order.pop_front();
        }
        if self.seen.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        self.insert(key, now + window);
        true
    }

    /// How many ids it holds.
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets `key`: its delivery created no task, so a retry of it is not a replay.
    pub(super) fn forget(&mut self, key: &DeliveryKey) {
        self.seen.remove(key);
    }

    fn insert(&mut self, key: DeliveryKey, until: Instant) {
        self.seen.insert(key.clone(), until);
        self.order.push_back((key, until));
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
        let until = |r: &Replay, id: &str| r.seen[&key(id)] - at;
        assert!(until(&r, "early") <= Duration::from_secs(100));
        assert!(until(&r, "late") > Duration::from_secs(290));
    }
}
