//! The daemon's live set of secrets. The set changes while agents run: `secret set`, `apply`, a
//! rotation creating `<key>.next`, or the agent itself applying a value. [`SecretRegistry`] is the
//! daemon's one live set: the SecretStoreActor updates it *before* it commits the change that makes
//! a value a secret, and every [`StreamRedactor`] of a live run consults it at each chunk, so no
//! output read after the commit escapes. A value removed from the store stays hidden while any run
//! that may have seen it is still running (fail closed): each run holds a lease on the registry
//! ([`Secrets`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use zeroize::Zeroize;

use super::{Redactor, StreamRedactor, StreamState};

/// What one run must hide: a fixed set, or a lease on the daemon's [`SecretRegistry`] that
/// follows every change while the run is live. Cheap to clone; the lease ends when the last
/// clone (the run's last stream) is dropped.
#[derive(Clone)]
pub struct Secrets(Source);

#[derive(Clone)]
enum Source {
    Fixed(Arc<Redactor>),
    Live(Arc<Lease>),
}

impl Secrets {
    /// A set that never changes.
    pub fn fixed(redactor: Arc<Redactor>) -> Secrets {
        Secrets(Source::Fixed(redactor))
    }

    /// The set as it is now.
    pub fn redactor(&self) -> Arc<Redactor> {
        match &self.0 {
            Source::Fixed(redactor) => Arc::clone(redactor),
            Source::Live(lease) => lease.registry.published().1,
        }
    }

    /// Starts redacting one stream of chunks.
    pub fn stream(&self) -> StreamRedactor {
        let (version, redactor) = match &self.0 {
            Source::Fixed(redactor) => (0, Arc::clone(redactor)),
            Source::Live(lease) => lease.registry.published(),
        };
        StreamRedactor {
            secrets: self.clone(),
            redactor,
            version,
            pending: Vec::new(),
            state: StreamState::default(),
        }
    }

    pub(super) fn registry(&self) -> Option<&SecretRegistry> {
        match &self.0 {
            Source::Fixed(_) => None,
            Source::Live(lease) => Some(&lease.registry),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Fixed(redactor) => write!(f, "Secrets(fixed, {redactor:?})"),
            Source::Live(lease) => write!(f, "Secrets(live since change {})", lease.start),
        }
    }
}

/// The daemon's live set of secret values: what every running agent's output is redacted with.
///
/// The SecretStoreActor calls [`update`](SecretRegistry::update) with the values of the next
/// snapshot before it commits it, and again with the current values if the commit fails. A run
/// takes a [`lease`](SecretRegistry::lease) before it reads the snapshot it starts from. A value
/// the store no longer holds is *retained* (still redacted) while a lease is live that started
/// at or before the change that removed it: such a run may have been given the value. The
/// bound is inclusive because the snapshot a run reads can be one change behind the registry
/// (the change being committed); a retained value is dropped when those runs have ended.
pub struct SecretRegistry {
    state: Mutex<RegistryState>,
    /// The redactor for the current and retained values, and its version.
    current: RwLock<(u64, Arc<Redactor>)>,
    /// The version in `current`, read by every stream at every chunk.
    pub(super) version: AtomicU64,
}

struct RegistryState {
    /// Counts the updates that changed the set of values.
    change: u64,
    values: BTreeSet<Value>,
    /// Values removed from the store, with the change that removed them.
    retained: BTreeMap<Value, u64>,
    /// Live leases: how many started at each change.
    leases: BTreeMap<u64, usize>,
}

impl RegistryState {
    /// Drops the retained values no live lease may have seen; true if any went.
    fn prune(&mut self) -> bool {
        let oldest = self.leases.keys().next().copied();
        let before = self.retained.len();
        self.retained
            .retain(|_, removed_at| oldest.is_some_and(|start| start <= *removed_at));
        self.retained.len() != before
    }
}

/// One secret value, wiped from memory when dropped; no `Debug`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Value(Vec<u8>);

impl Drop for Value {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// What [`SecretRegistry::stats`] reports: counts only, never values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryStats {
    /// Values the store holds.
    pub values: usize,
    /// Values removed from the store but still redacted for runs that may have seen them.
    pub retained: usize,
    /// Live runs (leases).
    pub leases: usize,
    /// Changes of the set since the daemon started.
    pub changes: u64,
}

impl SecretRegistry {
    /// An empty registry.
    pub fn new() -> SecretRegistry {
        SecretRegistry {
            state: Mutex::new(RegistryState {
                change: 0,
                values: BTreeSet::new(),
                retained: BTreeMap::new(),
                leases: BTreeMap::new(),
            }),
            current: RwLock::new((0, Arc::new(Redactor::none()))),
            version: AtomicU64::new(0),
        }
    }

    /// Makes `values` the store's secret values. Every live stream uses the new set from its next
    /// chunk on; when this returns, no stream can decide output with an older set. Values that
    /// were in the set and are not in `values` are retained for the live leases. Empty values
    /// are ignored; an update that changes nothing costs only the comparison.
    pub fn update<I, S>(&self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let next: BTreeSet<Value> = values
            .into_iter()
            .filter(|v| !v.as_ref().is_empty())
            .map(|v| Value(v.as_ref().to_vec()))
            .collect();
        let mut state = self.lock();
        if next == state.values {
            return;
        }
        state.change += 1;
        let change = state.change;
        let previous = std::mem::replace(&mut state.values, next);
        let RegistryState {
            values, retained, ..
        } = &mut *state;
        for value in previous {
            if !values.contains(&value) {
                retained.insert(value, change);
            }
        }
        retained.retain(|value, _| !values.contains(value));
        state.prune();
        self.rebuild(&state);
    }

    /// Starts a run's view of the set: it sees every later change, and keeps every value it
    /// could have seen until the returned [`Secrets`] and all its clones are dropped. Take it
    /// before reading the snapshot the run starts from.
    pub fn lease(self: &Arc<Self>) -> Secrets {
        let mut state = self.lock();
        let start = state.change;
        *state.leases.entry(start).or_default() += 1;
        Secrets(Source::Live(Arc::new(Lease {
            registry: Arc::clone(self),
            start,
        })))
    }

    /// Counts, for introspection.
    pub fn stats(&self) -> RegistryStats {
        let state = self.lock();
        RegistryStats {
            values: state.values.len(),
            retained: state.retained.len(),
            leases: state.leases.values().sum(),
            changes: state.change,
        }
    }

    pub(super) fn published(&self) -> (u64, Arc<Redactor>) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.0, Arc::clone(&current.1))
    }

    /// Builds the redactor for the current and retained values and publishes it. Called with the
    /// state locked, so versions follow the order of changes.
    fn rebuild(&self, state: &RegistryState) {
        let redactor = Arc::new(Redactor::new(
            state
                .values
                .iter()
                .chain(state.retained.keys())
                .map(|v| v.0.as_slice()),
        ));
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let version = current.0 + 1;
        *current = (version, redactor);
        self.version.store(version, Ordering::Release);
    }

    /// The state, also after a panic elsewhere: it is consistent between statements.
    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for SecretRegistry {
    fn default() -> SecretRegistry {
        SecretRegistry::new()
    }
}

impl fmt::Debug for SecretRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.stats();
        f.debug_struct("SecretRegistry")
            .field("values", &stats.values)
            .field("retained", &stats.retained)
            .field("leases", &stats.leases)
            .finish()
    }
}

/// One run's hold on the registry; dropping it lets go of the values only it kept.
struct Lease {
    registry: Arc<SecretRegistry>,
    /// The registry's change count when the run started.
    start: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if let Entry::Occupied(mut live) = state.leases.entry(self.start) {
            *live.get_mut() -= 1;
            if *live.get() == 0 {
                live.remove();
            }
        }
        if state.prune() {
            self.registry.rebuild(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::redact::MARK;

    /// A live stream: the chunks it has not decided yet are decided with the newest set.
    #[test]
    fn a_live_stream_follows_the_registry() {
        let registry = Arc::new(SecretRegistry::new());
        registry.update(["abc"]);
        let run = registry.lease();
        let mut stream = run.stream();
        let mut out = stream.push(b"hello wab");
        assert_eq!(out, b"hello w");
        // The set grows while the run is live: the held-back "ab" is decided by the new set.
        registry.update(["abc", "ab-live-secret"]);
        out.extend(stream.push(b"-live-secret! abc"));
        // The store drops both values: this run may have seen them, so they stay hidden.
        registry.update(Vec::<&str>::new());
        out.extend(stream.push(b" ab-live-secret abc."));
        out.extend(stream.finish());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "hello w[REDACTED]! [REDACTED] [REDACTED] [REDACTED]."
        );
        assert_eq!(
            registry.stats(),
            RegistryStats {
                values: 0,
                retained: 2,
                leases: 1,
                changes: 3
            }
        );
        // A run that starts now may still have been handed the snapshot before the removal.
        let later = registry.lease();
        assert_eq!(later.redactor().redact_str("abc"), MARK);
        drop((run, stream));
        assert_eq!(later.redactor().redact_str("abc"), MARK);
        // Once every run that may have seen them has ended, removed values are forgotten.
        registry.update(["new"]);
        let fresh = registry.lease();
        drop(later);
        assert_eq!(
            fresh.redactor().redact_str("abc orld-secret new"),
            "abc orld-secret [REDACTED]"
        );
        assert_eq!(registry.stats().retained, 0);
        // A value that comes back is a current value again, not a retained one.
        registry.update(["new", "abc"]);
        registry.update(["abc"]);
        assert_eq!(
            fresh.redactor().redact_str("abc new"),
            "[REDACTED] [REDACTED]"
        );
        drop(fresh);
        assert_eq!(
            registry.lease().redactor().redact_str("abc new"),
            "[REDACTED] new"
        );
        let shown = format!("{registry:?} {:?}", registry.lease());
        assert!(!shown.contains("abc"), "{shown}");
    }

    /// An update that changes nothing does not rebuild, and a run without secrets passes
    /// output straight through.
    #[test]
    fn unchanged_updates_keep_the_set() {
        let registry = Arc::new(SecretRegistry::new());
        let run = registry.lease();
        let mut stream = run.stream();
        assert_eq!(stream.push(b"plain"), b"plain");
        registry.update(["s1", "", "s2"]);
        let before = registry.stats();
        registry.update(["s2", "s1", "s1"]);
        assert_eq!(registry.stats(), before);
        assert_eq!(before.values, 2);
        assert_eq!(stream.push(b" s1 s2 s"), b" [REDACTED] [REDACTED] ");
        assert_eq!(stream.finish(), b"s");
    }
}
