//! The shared actor layer: every orchestrator actor is a [`Behaviour`] run by the generic
//! [`Instrumented`] ractor actor, which counts messages received and handled, measures handling
//! time, keeps a bounded ring of recent messages (time, kind, duration, outcome), answers
//! `inspect` with a state summary the behaviour reports about itself, and can be failed on
//! purpose (`actors kill`) so that supervision can be watched.
//!
//! ractor has no interceptor hook and no mailbox length, so the counters live here: [`Addr`] is the
//! handle other code uses to send to an actor; it counts what it enqueues, and the queue depth is
//! enqueued minus received. Statistics are kept per actor *name* in a process-wide registry, so
//! they survive restarts (the supervisor bumps `restarts`).
//!
//! Messages are recorded by kind only ([`Message::kind`], a variant name), never by content, so a
//! secret value cannot reach a trace.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::api::{StatsSummary, TraceEntry, TraceOutcome};
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::broadcast;

mod registry;
pub use registry::Registry;

/// How many recent messages each actor remembers.
pub const TRACE_RING: usize = 64;

/// A message type that can name its variants for traces.
pub trait Message: Send + 'static {
    /// The variant name (`Apply`, `Fire`), never the payload.
    fn kind(&self) -> &'static str;
}

/// The clock of the message path: quanta reads the CPU's time-stamp counter (a few ns, against
/// ~20 ns for `Instant::now`), calibrated once per process.
fn clock() -> &'static quanta::Clock {
    static CLOCK: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);
    &CLOCK
}

/// One handled message as the ring stores it: no allocation unless the message failed.
struct Slot {
    /// Raw clock reading when handling ended.
    end: u64,
    kind: &'static str,
    nanos: u64,
    error: Option<Box<str>>,
}

/// A fixed ring of the last [`TRACE_RING`] messages.
struct Ring {
    slots: Vec<Slot>,
    next: usize,
}

impl Ring {
    fn push(&mut self, slot: Slot) {
        if self.slots.len() < TRACE_RING {
            self.slots.push(slot);
        } else {
            self.slots[self.next] = slot;
        }
        self.next = (self.next + 1) % TRACE_RING;
    }

    /// Oldest first.
    fn ordered(&self) -> impl Iterator<Item = &Slot> {
        let (newer, older) = self.slots.split_at(self.next.min(self.slots.len()));
        older.iter().chain(newer.iter())
    }
}

/// Live statistics of one named actor (kept across restarts). The sender side (`enqueued`) sits
/// on its own cache line so that senders on other cores do not slow the actor down.
pub struct Stats {
    pub name: String,
    pub actor_type: &'static str,
    enqueued: CachePadded<AtomicU64>,
    received: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    restarts: AtomicU64,
    /// Raw clock reading of the last handled message (0: none).
    last_message: AtomicU64,
    /// Raw clock reading and wall time of the current incarnation's start.
    started: Mutex<(u64, DateTime<Utc>)>,
    ring: Mutex<Ring>,
    followers: std::sync::atomic::AtomicBool,
    /// Created on the first `subscribe`: most actors are never followed, and a broadcast
    /// channel preallocates its slots.
    follow: Mutex<Option<broadcast::Sender<TraceEntry>>>,
}

/// Adds one to a counter that only one thread writes.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Keeps a value on its own cache line.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl Stats {
    fn new(name: String, actor_type: &'static str) -> Stats {
        Stats {
            name,
            actor_type,
            enqueued: CachePadded(AtomicU64::new(0)),
            received: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            started: Mutex::new((clock().raw(), Utc::now())),
            ring: Mutex::new(Ring {
                slots: Vec::new(),
                next: 0,
            }),
            followers: std::sync::atomic::AtomicBool::new(false),
            follow: Mutex::new(None),
        }
    }

    /// Called when a new incarnation starts: uptime restarts and messages queued for the old
    /// incarnation are forgotten.
    fn started(&self) {
        *lock(&self.started) = (clock().raw(), Utc::now());
        let received = self.received.load(Ordering::Relaxed);
        self.enqueued.store(received, Ordering::Relaxed);
    }

    pub fn note_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The wall time of a raw clock reading, relative to this incarnation's start.
    fn wall(&self, raw: u64) -> DateTime<Utc> {
        let (base_raw, base) = *lock(&self.started);
        let delta = clock().delta_as_nanos(base_raw, raw);
        base + chrono::Duration::nanoseconds(delta.min(i64::MAX as u64) as i64)
    }

    fn entry(&self, s: &Slot) -> TraceEntry {
        TraceEntry {
            actor: self.name.clone(),
            at: self.wall(s.end),
            kind: s.kind.to_owned(),
            duration_micros: s.nanos / 1000,
            outcome: match &s.error {
                None => TraceOutcome::Ok,
                Some(e) => TraceOutcome::Error(e.to_string()),
            },
        }
    }

    /// Only the actor's own task calls this (one incarnation at a time), so the counters are
    /// bumped with a plain load and store instead of a locked read-modify-write.
    fn record(&self, kind: &'static str, began: u64, error: Option<String>) {
        let end = clock().raw();
        bump(&self.handled);
        if error.is_some() {
            bump(&self.failed);
        }
        self.last_message.store(end, Ordering::Relaxed);
        let slot = Slot {
            end,
            kind,
            nanos: clock().delta_as_nanos(began, end),
            error: error.map(String::into_boxed_str),
        };
        if self.followers.load(Ordering::Relaxed)
            && let Some(tx) = lock(&self.follow).as_ref()
        {
            if tx.receiver_count() > 0 {
                let _ = tx.send(self.entry(&slot));
            } else {
                self.followers.store(false, Ordering::Relaxed);
            }
        }
        lock(&self.ring).push(slot);
    }

    /// The recent messages, oldest first.
    pub fn trace(&self) -> Vec<TraceEntry> {
        let ring = lock(&self.ring);
        ring.ordered().map(|s| self.entry(s)).collect()
    }

    /// A live stream of messages as they are handled.
    pub fn subscribe(&self) -> broadcast::Receiver<TraceEntry> {
        let rx = lock(&self.follow)
            .get_or_insert_with(|| broadcast::channel(256).0)
            .subscribe();
        self.followers.store(true, Ordering::Relaxed);
        rx
    }

    /// Messages sent to the actor and not yet received.
    pub fn queue_depth(&self) -> u64 {
        let received = self.received.load(Ordering::Relaxed);
        self.enqueued
            .load(Ordering::Relaxed)
            .saturating_sub(received)
    }

    pub fn summary(&self) -> StatsSummary {
        let (base_raw, started_at) = *lock(&self.started);
        let now = clock().raw();
        let received = self.received.load(Ordering::Relaxed);
        let enqueued = self.enqueued.load(Ordering::Relaxed);
        let last = self.last_message.load(Ordering::Relaxed);
        StatsSummary {
            actor_type: self.actor_type.to_owned(),
            started_at,
            uptime_millis: clock().delta_as_nanos(base_raw, now) / 1_000_000,
            restarts: self.restarts.load(Ordering::Relaxed),
            received,
            handled: self.handled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            queue_depth: enqueued.saturating_sub(received),
            last_message_age_millis: (last != 0)
                .then(|| clock().delta_as_nanos(last, now) / 1_000_000),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the data inconsistent (each
    // critical section is a single push or store), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every actor's mailbox carries: its own messages plus the introspection controls.
pub enum Envelope<M> {
    User(M),
    /// Reply with the behaviour's self-reported state summary.
    Inspect(RpcReplyPort<serde_json::Value>),
    /// Fail on purpose (`actors kill`), so that the supervisor restarts the actor.
    Fail(String),
}

/// The behaviour of one actor type, in ractor's vocabulary: `pre_start` builds the state from the
/// arguments (it runs again on every restart); `handle` is one `match` that calls one method of
/// the state per message; `handle_supervisor_evt` sees the children's events; `post_stop` runs
/// on a normal stop. [`Instrumented`] is the ractor [`Actor`] that calls them.
pub trait Behaviour: Sized + Send + Sync + 'static {
    type Msg: Message;
    type State: Send + 'static;
    type Args: Send + 'static;

    /// The actor type shown by `orchestrator actors` (`TriggerActor`).
    const TYPE: &'static str;

    /// Whether the actor's statistics go with it when it stops, however it stops: for actors
    /// that are never restarted under their name (an AgentActor runs one attempt), whose
    /// records would otherwise pile up with every task. Others keep theirs across restarts
    /// until their supervisor forgets them.
    const FORGET_ON_STOP: bool = false;

    fn pre_start(
        &self,
        me: Addr<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorProcessingErr>> + Send;

    fn handle(
        &self,
        me: &Addr<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send;

    /// A JSON summary of the state for `actors inspect` (never secret values).
    fn inspect(&self, state: &Self::State) -> serde_json::Value;

    /// A span every message of this actor is handled in (a WorkflowActor's `task{id}`), beside
    /// the span the sender's request carried in (ractor propagates the sender's span).
    fn span(&self, _state: &Self::State) -> Option<tracing::Span> {
        None
    }

    /// Supervision events of children. The default ignores them, which keeps a parent alive
    /// when a child stops (ractor's own default would stop the parent).
    fn handle_supervisor_evt(
        &self,
        _me: &Addr<Self::Msg>,
        _event: SupervisionEvent,
        _state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        async { Ok(()) }
    }

    /// Runs when the actor stops normally (not when it fails: cleanup that must survive a
    /// failure belongs in the state's `Drop`).
    fn post_stop(
        &self,
        _me: &Addr<Self::Msg>,
        _state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        async { Ok(()) }
    }
}

/// A handle to send to an actor; it keeps the enqueue count that gives the queue depth.
pub struct Addr<M> {
    actor: ActorRef<Envelope<M>>,
    stats: Arc<Stats>,
    registry: Registry,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Addr {
            actor: self.actor.clone(),
            stats: self.stats.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// The actor is gone (stopped, or restarting right now).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CallError {
    #[error("actor {0} is not running")]
    Gone(String),
    #[error("actor {0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

impl<M: Message> Addr<M> {
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The registry the actor lives in: where it finds its peers and spawns its children.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sends without waiting for an answer.
    pub fn cast(&self, msg: M) -> Result<(), CallError> {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        self.actor
            .cast(Envelope::User(msg))
            .map_err(|_| CallError::Gone(self.stats.name.clone()))
    }

    /// Sends a request and waits for its answer at most `timeout`.
    pub async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        match self
            .actor
            .call(|port| Envelope::User(build(port)), Some(timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            Ok(ractor::rpc::CallResult::Timeout) => {
                Err(CallError::Timeout(self.stats.name.clone(), timeout))
            }
            Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
                Err(CallError::Gone(self.stats.name.clone()))
            }
        }
    }

    /// Sends `msg()` after `delay` (a timer is a message).
    pub fn send_after(
        &self,
        delay: Duration,
        msg: impl FnOnce() -> M + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use tracing::Instrument;
        let addr = self.clone();
        // The timer's message carries the span that armed it.
        tokio::spawn(
            async move {
                tokio::time::sleep(delay).await;
                let _ = addr.cast(msg());
            }
            .instrument(tracing::Span::current()),
        )
    }

    /// Asks the actor for its state summary.
    pub async fn inspect(&self, timeout: Duration) -> Result<serde_json::Value, CallError> {
        self.registry.inspect_cell(&self.cell(), timeout).await
    }
}

/// A send-only handle that accepts `T` for an actor of another message type (ractor's
/// `DerivedActorRef`): a child reports to its parent through one without importing the parent's
/// message type. [`Addr::derive`] makes one; it sends through the parent's [`Addr`], so what it
/// sends counts in the parent's queue depth like any other message.
pub struct Recipient<T> {
    send: Arc<dyn Fn(T) -> Result<(), CallError> + Send + Sync>,
}

impl<T> Clone for Recipient<T> {
    fn clone(&self) -> Self {
        Recipient {
            send: self.send.clone(),
        }
    }
}

impl<T> Recipient<T> {
    /// Sends without waiting for an answer.
    pub fn cast(&self, msg: T) -> Result<(), CallError> {
        (self.send)(msg)
    }
}

impl<M: Message> Addr<M> {
    /// A [`Recipient`] of `T` that sends `wrap(t)` to this actor.
    pub fn derive<T>(&self, wrap: impl Fn(T) -> M + Send + Sync + 'static) -> Recipient<T> {
        let addr = self.clone();
        Recipient {
            send: Arc::new(move |t| addr.cast(wrap(t))),
        }
    }
}

/// Type-erased access to an actor's control messages, registered by name while it runs.
trait Probe: Send + Sync {
    fn inspect(
        &self,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<serde_json::Value, CallError>> + Send + '_>>;
    fn fail(&self, reason: &str) -> Result<(), CallError>;
    /// The actor behind it (a restarted actor's probe replaces its predecessor's).
    fn id(&self) -> ractor::ActorId;
}

impl<M: Message> Probe for Addr<M> {
    fn inspect(
        &self,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<serde_json::Value, CallError>> + Send + '_>>
    {
        Box::pin(async move {
            match self.actor.call(Envelope::Inspect, Some(timeout)).await {
                Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
                Ok(ractor::rpc::CallResult::Timeout) => {
                    Err(CallError::Timeout(self.stats.name.clone(), timeout))
                }
                _ => Err(CallError::Gone(self.stats.name.clone())),
            }
        })
    }

    fn fail(&self, reason: &str) -> Result<(), CallError> {
        self.actor
            .cast(Envelope::Fail(reason.to_owned()))
            .map_err(|_| CallError::Gone(self.stats.name.clone()))
    }

    fn id(&self) -> ractor::ActorId {
        self.actor.get_id()
    }
}

/// The ractor actor that runs a [`Behaviour`] with instrumentation.
pub struct Instrumented<B> {
    behaviour: B,
    registry: Registry,
    /// The name operators see (ractor registers it behind the registry's prefix).
    name: String,
}

pub struct InstrumentedState<B: Behaviour> {
    addr: Addr<B::Msg>,
    inner: B::State,
}

impl<B: Behaviour> Drop for InstrumentedState<B> {
    fn drop(&mut self) {
        // Only unregister our own incarnation: a restarted actor may already have replaced it.
        self.addr
            .registry
            .remove_probe(self.addr.name(), self.addr.actor.get_id());
        if B::FORGET_ON_STOP {
            self.addr
                .registry
                .forget_stats(self.addr.name(), &self.addr.stats);
        }
    }
}

impl<B: Behaviour> Actor for Instrumented<B> {
    type Msg = Envelope<B::Msg>;
    type State = InstrumentedState<B>;
    type Arguments = B::Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: B::Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        let stats = self.registry.stats_for(&self.name, B::TYPE);
        stats.started();
        let addr = Addr {
            actor: myself,
            stats,
            registry: self.registry.clone(),
        };
        let inner = self.behaviour.pre_start(addr.clone(), args).await?;
        self.registry
            .add_probe(self.name.clone(), Arc::new(addr.clone()));
        Ok(InstrumentedState { addr, inner })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let InstrumentedState { addr, inner } = state;
        let stats = &addr.stats;
        bump(&stats.received);
        let began = clock().raw();
        match msg {
            Envelope::User(m) => {
                let kind = m.kind();
                let result = match self.behaviour.span(inner) {
                    Some(span) => {
                        use tracing::Instrument;
                        self.behaviour.handle(addr, m, inner).instrument(span).await
                    }
                    None => self.behaviour.handle(addr, m, inner).await,
                };
                let error = result.as_ref().err().map(|e| e.to_string());
                stats.record(kind, began, error);
                result
            }
            Envelope::Inspect(reply) => {
                let _ = reply.send(self.behaviour.inspect(inner));
                stats.record("Inspect", began, None);
                Ok(())
            }
            Envelope::Fail(reason) => {
                let err = format!("failed on purpose: {reason}");
                stats.record("Fail", began, Some(err.clone()));
                Err(err.into())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.behaviour
            .handle_supervisor_evt(&state.addr, event, &mut state.inner)
            .await
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.behaviour
            .post_stop(&state.addr, &mut state.inner)
            .await
    }
}
