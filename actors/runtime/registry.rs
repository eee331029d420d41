//! The actors of one daemon instance: the names they are registered under, their statistics and
//! their control probes.
//!
//! ractor's own registry is process-wide, so a [`Registry`] registers each actor under its name
//! behind a prefix of its own: two daemons started in one process, as the in-process tests do,
//! hold `tasks`, `secret-store` and `trigger/<project>/<name>` side by side. The first registry
//! of a process (the daemon's) has the empty prefix, so ractor's own log spans show the names
//! operators know; later ones use `"{n}|"`.
//! Everything that finds an actor by name (the control API, a parent looking up its child, the
//! shutdown path) asks the [`Registry`] it was given; an [`Addr`] carries the registry its actor
//! lives in, so a behaviour reaches its peers through `me.registry()`. The registry also carries
//! the daemon's [`Metrics`], so that whatever holds an [`Addr`] or a registry can count.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};

use crate::metrics::Metrics;

use super::{Addr, Behaviour, CallError, Envelope, Instrumented, Message, Probe, Stats};
use crate::api::ActorNode;

/// One daemon instance's actor names. Cloning shares it.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    /// What ractor's registry holds before each name.
    prefix: String,
    /// Per actor name, kept across restarts (the supervisor bumps `restarts`).
    stats: RwLock<HashMap<String, Arc<Stats>>>,
    /// Per running actor name: its inspect and fail controls.
    probes: RwLock<HashMap<String, Arc<dyn Probe>>>,
    /// The daemon's Prometheus metrics.
    metrics: Metrics,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registry").field(&self.0.prefix).finish()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Each critical section is a single lookup or insert, so a poisoned lock is still usable.
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// A registry whose names collide with no other registry of this process.
    pub fn new() -> Registry {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Registry(Arc::new(Inner {
            prefix: if n == 1 {
                String::new()
            } else {
                format!("{n}|")
            },
            stats: RwLock::new(HashMap::new()),
            probes: RwLock::new(HashMap::new()),
            metrics: Metrics::new(),
        }))
    }

    /// The metrics of the daemon this registry belongs to.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Messages waiting in the mailboxes of the actors that hold statistics, summed by type.
    pub fn queue_depths(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for s in read(&self.0.stats).values() {
            *out.entry(s.actor_type).or_insert(0) += s.queue_depth();
        }
        out
    }

    /// The name ractor registers `name` under.
    fn scoped(&self, name: &str) -> String {
        format!("{}{name}", self.0.prefix)
    }

    /// The name of an actor this registry spawned, as operators see it (`None` for an unnamed
    /// cell or, but for the first registry, a cell of another registry).
    pub fn name_of(&self, cell: &ActorCell) -> Option<String> {
        cell.get_name()?
            .strip_prefix(self.0.prefix.as_str())
            .map(str::to_owned)
    }

    /// The running actor named `name`, whatever its message type.
    pub fn cell(&self, name: &str) -> Option<ActorCell> {
        ractor::registry::where_is(self.scoped(name))
    }

    /// The statistics of the actor named `name`, if it ever ran.
    pub fn stats(&self, name: &str) -> Option<Arc<Stats>> {
        read(&self.0.stats).get(name).cloned()
    }

    pub(super) fn stats_for(&self, name: &str, actor_type: &'static str) -> Arc<Stats> {
        if let Some(s) = self.stats(name) {
            return s;
        }
        write(&self.0.stats)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Stats::new(name.to_owned(), actor_type)))
            .clone()
    }

    /// Forgets the statistics of an actor that was stopped for good (a finished task, a deleted
    /// trigger).
    pub fn forget(&self, name: &str) {
        write(&self.0.stats).remove(name);
    }

    /// Forgets `name`'s statistics if they are still `owner` (not a newer incarnation's).
    pub(super) fn forget_stats(&self, name: &str, owner: &Arc<Stats>) {
        let mut stats = write(&self.0.stats);
        if stats.get(name).is_some_and(|s| Arc::ptr_eq(s, owner)) {
            stats.remove(name);
        }
    }

    /// How many actor names hold statistics (bounded: finished actors are forgotten).
    pub fn len(&self) -> usize {
        read(&self.0.stats).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names that hold statistics, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.0.stats).keys().cloned().collect();
        names.sort();
        names
    }

    pub(super) fn add_probe(&self, name: String, probe: Arc<dyn Probe>) {
        write(&self.0.probes).insert(name, probe);
    }

    /// Removes `name`'s probe if it is still `owner`'s (a restarted actor may already have
    /// replaced it).
    pub(super) fn remove_probe(&self, name: &str, owner: ractor::ActorId) {
        let mut probes = write(&self.0.probes);
        if probes.get(name).is_some_and(|p| p.id() == owner) {
            probes.remove(name);
        }
    }

    fn probe(&self, name: &str) -> Option<Arc<dyn Probe>> {
        read(&self.0.probes).get(name).cloned()
    }

    /// The running actor named `name`, if any. Edges (HTTP handlers) resolve actors by name on
    /// every request because a restart replaces the actor reference.
    pub fn lookup<M: Message>(&self, name: &str) -> Option<Addr<M>> {
        let actor = ActorRef::<Envelope<M>>::where_is(self.scoped(name))?;
        Some(Addr {
            actor,
            stats: self.stats(name)?,
            registry: self.clone(),
        })
    }

    /// Like [`Registry::lookup`], waiting up to `wait` for an actor that is restarting.
    pub async fn resolve<M: Message>(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<Addr<M>, CallError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(a) = self.lookup(name) {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                return Err(CallError::Gone(name.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asks any instrumented actor of this registry for its state summary, knowing only its
    /// cell.
    pub async fn inspect_cell(
        &self,
        cell: &ActorCell,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let name = self.name_of(cell).unwrap_or_default();
        let Some(probe) = self.probe(&name) else {
            return Err(CallError::Gone(name));
        };
        probe.inspect(timeout).await
    }

    /// Fails any instrumented actor on purpose, knowing only its name.
    pub fn fail_by_name(&self, name: &str, reason: &str) -> Result<(), CallError> {
        self.probe(name)
            .ok_or_else(|| CallError::Gone(name.to_owned()))?
            .fail(reason)
    }

    /// Spawns `behaviour` as the actor `name`, supervised by `parent`.
    pub async fn spawn<B: Behaviour>(
        &self,
        name: String,
        behaviour: B,
        args: B::Args,
        parent: Option<ActorCell>,
    ) -> Result<Addr<B::Msg>, SpawnErr> {
        self.spawn_joinable(name, behaviour, args, parent)
            .await
            .map(|(a, _)| a)
    }

    /// Like [`Registry::spawn`], also returning the handle that completes when the actor has
    /// stopped.
    pub async fn spawn_joinable<B: Behaviour>(
        &self,
        name: String,
        behaviour: B,
        args: B::Args,
        parent: Option<ActorCell>,
    ) -> Result<(Addr<B::Msg>, tokio::task::JoinHandle<()>), SpawnErr> {
        let actor = Instrumented {
            behaviour,
            registry: self.clone(),
            name: name.clone(),
        };
        let scoped = Some(self.scoped(&name));
        let spawned = match parent {
            Some(p) => Actor::spawn_linked(scoped, actor, args, p).await,
            None => Actor::spawn(scoped, actor, args).await,
        };
        let (actor, join) = match spawned {
            Ok(s) => s,
            Err(e) => {
                if B::FORGET_ON_STOP {
                    // Its `pre_start` failed: nothing of it is left to drop.
                    self.forget(&name);
                }
                return Err(e);
            }
        };
        let addr = Addr {
            actor,
            stats: self.stats_for(&name, B::TYPE),
            registry: self.clone(),
        };
        Ok((addr, join))
    }

    /// Walks the supervision tree from `root`.
    pub fn tree(&self, root: &ActorCell) -> ActorNode {
        let name = self
            .name_of(root)
            .unwrap_or_else(|| root.get_id().to_string());
        let mut children: Vec<ActorNode> =
            root.get_children().iter().map(|c| self.tree(c)).collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        ActorNode {
            stats: self.stats(&name).map(|s| s.summary()),
            id: root.get_id().to_string(),
            status: format!("{:?}", root.get_status()),
            name,
            children,
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::{ActorProcessingErr, RpcReplyPort};

    use super::*;

    enum Msg {
        Get(RpcReplyPort<&'static str>),
    }

    impl Message for Msg {
        fn kind(&self) -> &'static str {
            "Get"
        }
    }

    /// Answers with the word it was started with.
    struct Echo;

    impl Behaviour for Echo {
        type Msg = Msg;
        type State = &'static str;
        type Args = &'static str;
        const TYPE: &'static str = "Echo";

        async fn pre_start(
            &self,
            _me: Addr<Msg>,
            word: &'static str,
        ) -> Result<&'static str, ActorProcessingErr> {
            Ok(word)
        }

        async fn handle(
            &self,
            _me: &Addr<Msg>,
            msg: Msg,
            word: &mut &'static str,
        ) -> Result<(), ActorProcessingErr> {
            let Msg::Get(reply) = msg;
            let _ = reply.send(word);
            Ok(())
        }

        fn inspect(&self, word: &&'static str) -> serde_json::Value {
            json(word)
        }
    }

    fn json(word: &str) -> serde_json::Value {
        serde_json::json!({ "word": word })
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn two_registries_hold_the_same_name_apart() {
        // Neither is the process's first registry (the one with the empty prefix).
        let _first = Registry::new();
        let (a, b) = (Registry::new(), Registry::new());
        let (ea, ja) = a
            .spawn_joinable("echo".into(), Echo, "a", None)
            .await
            .expect("a spawns");
        let (_eb, jb) = b
            .spawn_joinable("echo".into(), Echo, "b", None)
            .await
            .expect("b spawns the same name");
        for (r, word) in [(&a, "a"), (&b, "b")] {
            let addr = r.lookup::<Msg>("echo").expect("found in its registry");
            assert_eq!(addr.name(), "echo");
            assert_eq!(addr.call(Msg::Get, WAIT).await, Ok(word));
            let cell = r.cell("echo").expect("its cell");
            assert_eq!(r.name_of(&cell).as_deref(), Some("echo"));
            assert_eq!(r.inspect_cell(&cell, WAIT).await, Ok(json(word)));
            assert_eq!(r.tree(&cell).name, "echo");
        }
        // A cell of one registry has no name in the other.
        let cell = a.cell("echo").expect("a's cell");
        assert_eq!(b.name_of(&cell), None);

        // Stopped for good: the name, its probe and (once forgotten) its statistics are gone
        // from its registry only.
        ea.cell().stop(None);
        ja.await.expect("a stops");
        assert!(a.lookup::<Msg>("echo").is_none());
        assert_eq!(
            a.fail_by_name("echo", "test"),
            Err(CallError::Gone("echo".into()))
        );
        assert_eq!(
            read(&a.0.probes).len(),
            0,
            "the stopped actor's probe is removed"
        );
        assert_eq!(a.len(), 1, "statistics outlive the actor until forgotten");
        a.forget("echo");
        assert!(a.is_empty());
        assert!(b.lookup::<Msg>("echo").is_some());
        assert_eq!(read(&b.0.probes).len(), 1);

        b.fail_by_name("echo", "test")
            .expect("b's actor fails on purpose");
        jb.await.expect("b stops");
        assert_eq!(
            read(&b.0.probes).len(),
            0,
            "a failed actor's probe is removed too"
        );
    }
}
