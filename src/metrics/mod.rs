//! The daemon's Prometheus metrics: one [`Metrics`] registry per daemon, handed (through the
//! actor registry, `actors::runtime::Registry::metrics`) to the handlers and actors that count,
//! and encoded in the Prometheus text format by the admin listener's `GET /metrics`
//! (`http::admin`). README's "Metrics" section lists every family.
//!
//! Names follow the Prometheus conventions: the `orchestrator_` prefix, base units (seconds),
//! `_total` on counters. Label sets are types: an operator-chosen name (project, trigger, key,
//! workflow, step) is a [`Name`] and only appears in a [`Capped`] family, which holds at most
//! [`CAP`] label sets and folds further ones into `other`; every other label is a closed set
//! (an enum, or a `&'static str` the code spells). No task id, delivery id or secret value is
//! ever a label: no label set has a field that could hold one.
//!
//! Recording is cheap on the hot path: a known label set costs one read lock and one hash
//! lookup (benches/metrics.rs measures it against a webhook delivery).

mod capped;
mod labels;

use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use capped::{CAP, Capped, Fold, Name, OTHER};
use labels::{
    ActorType, Exit, KeyVerified, RotationStage, SchemeOnly, StepLabels, TaskFinished,
    TriggerLabels, Version, WebhookRequest,
};
pub use labels::{ExitClass, SchemeLabel, WebhookOutcome};

use crate::domain::signature::Scheme;
use crate::domain::workflow::TaskState;

/// The `Content-Type` of [`Metrics::encode`]'s text: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Histograms<S> = Capped<S, Histogram, fn() -> Histogram>;

/// One daemon's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Mutex<Registry>,
    webhook_requests: Capped<WebhookRequest, Counter>,
    verification_seconds: Family<SchemeOnly, Histogram, fn() -> Histogram>,
    verifications: Capped<KeyVerified, Counter>,
    cron_fires: Capped<TriggerLabels, Counter>,
    cron_missed: Capped<TriggerLabels, Counter>,
    cron_skipped: Capped<TriggerLabels, Counter>,
    fire_lateness: Histogram,
    tasks_finished: Capped<TaskFinished, Counter>,
    step_seconds: Histograms<StepLabels>,
    agent_exits: Family<Exit, Counter>,
    actor_restarts: Family<ActorType, Counter>,
    mailbox_depth: Family<ActorType, Gauge>,
    rotation_stages: Family<RotationStage, Counter>,
    /// The task writer's commit histogram, once the store handed it over.
    store_commits: OnceLock<()>,
}

fn verification_buckets() -> Histogram {
    // 1 µs … 0.26 s: one HMAC over a small body takes about a microsecond.
    Histogram::new(exponential_buckets(1e-6, 4.0, 10))
}

fn step_buckets() -> Histogram {
    // 10 ms … 11.6 h.
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

/// The buckets of the store's commit histogram: 100 µs … 6 s (an fsync is milliseconds).
pub fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.5, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered and `orchestrator_build_info` set.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("orchestrator");
        let webhook_requests = Capped::new(Family::default());
        r.register(
            "webhook_requests",
            "Webhook requests answered, by trigger, scheme and outcome",
            webhook_requests.family().clone(),
        );
        let verification_seconds =
            Family::new_with_constructor(verification_buckets as fn() -> Histogram);
        r.register(
            "webhook_verification_duration_seconds",
            "Time to check a delivery's signature against its trigger's keys, by scheme",
            verification_seconds.clone(),
        );
        let verifications = Capped::new(Family::default());
        r.register(
            "webhook_verifications",
            "Deliveries whose signature verified, by trigger and by the name of the key that verified it",
            verifications.family().clone(),
        );
        let cron_fires = Capped::new(Family::default());
        r.register(
            "cron_fires",
            "Cron fires that created a task, by trigger",
            cron_fires.family().clone(),
        );
        let cron_missed = Capped::new(Family::default());
        r.register(
            "cron_missed",
            "Cron fires missed (the daemon was down or busy past the fire), by trigger",
            cron_missed.family().clone(),
        );
        let cron_skipped = Capped::new(Family::default());
        r.register(
            "cron_skipped",
            "Cron fires that created no task (suspended, concurrency policy, or an error), by trigger",
            cron_skipped.family().clone(),
        );
        let fire_lateness = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
        ]);
        r.register(
            "cron_fire_lateness_seconds",
            "How long after its scheduled instant a cron fire ran",
            fire_lateness.clone(),
        );
        let tasks_finished = Capped::new(Family::default());
        r.register(
            "tasks_finished",
            "Tasks that ended, by workflow and final state",
            tasks_finished.family().clone(),
        );
        let step_seconds = Capped::new(Family::new_with_constructor(
            step_buckets as fn() -> Histogram,
        ));
        r.register(
            "step_duration_seconds",
            "Wall time of a step run's agent process, by workflow and step",
            step_seconds.family().clone(),
        );
        let agent_exits = Family::default();
        r.register(
            "agent_exits",
            "Agent processes that ended, by exit class (0, 1-127, 128-255, signal)",
            agent_exits.clone(),
        );
        let actor_restarts = Family::default();
        r.register(
            "actor_restarts",
            "Actors restarted by their supervisor, by actor type",
            actor_restarts.clone(),
        );
        let mailbox_depth = Family::default();
        r.register(
            "actor_mailbox_depth",
            "Messages waiting in actors' mailboxes at the scrape, summed by actor type",
            mailbox_depth.clone(),
        );
        let rotation_stages = Family::default();
        r.register(
            "rotation_stages",
            "Secret rotation stage outcomes, by stage and outcome",
            rotation_stages.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The daemon's version (always 1)", build);
        Metrics(Arc::new(Inner {
            registry: Mutex::new(r),
            webhook_requests,
            verification_seconds,
            verifications,
            cron_fires,
            cron_missed,
            cron_skipped,
            fire_lateness,
            tasks_finished,
            step_seconds,
            agent_exits,
            actor_restarts,
            mailbox_depth,
            rotation_stages,
            store_commits: OnceLock::new(),
        }))
    }

    /// The whole registry in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let registry = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }

    /// Registers the task writer's commit histogram (made with [`commit_histogram`]) as
    /// `orchestrator_store_commit_duration_seconds`; a second one is ignored.
    pub fn adopt_store_commits(&self, commits: Histogram) {
        if self.0.store_commits.set(()).is_ok() {
            self.0
                .registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .register(
                    "store_commit_duration_seconds",
                    "Time to write and fsync one group commit of new tasks",
                    commits,
                );
        }
    }

    /// A webhook request answered with `outcome`; `trigger` and `scheme` when its path named a
    /// webhook trigger.
    pub fn webhook_request(
        &self,
        trigger: Option<(&str, &str)>,
        scheme: Option<Scheme>,
        outcome: WebhookOutcome,
    ) {
        let (project, name) = trigger.unwrap_or(("", ""));
        let labels = WebhookRequest {
            project: Name::new(project),
            trigger: Name::new(name),
            scheme: SchemeLabel(scheme),
            outcome,
        };
        self.0.webhook_requests.with(labels, |c| {
            c.inc();
        });
    }

    /// One signature check of `scheme` took `seconds`.
    pub fn verification_took(&self, scheme: Scheme, seconds: f64) {
        self.0
            .verification_seconds
            .get_or_create(&SchemeOnly {
                scheme: SchemeLabel(Some(scheme)),
            })
            .observe(seconds);
    }

    /// A delivery to `trigger` verified with the key named `key` (the name, never the value).
    pub fn verified(&self, project: &str, trigger: &str, key: &str) {
        let labels = KeyVerified {
            project: Name::new(project),
            trigger: Name::new(trigger),
            key: Name::new(key),
        };
        self.0.verifications.with(labels, |c| {
            c.inc();
        });
    }

    /// What a cron fire of `trigger` added to its counts: `fires` tasks created, `skipped`
    /// fires without a task, `missed` fires.
    pub fn cron(&self, project: &str, trigger: &str, fires: u64, skipped: u64, missed: u64) {
        let labels = || TriggerLabels {
            project: Name::new(project),
            trigger: Name::new(trigger),
        };
        for (family, n) in [
            (&self.0.cron_fires, fires),
            (&self.0.cron_skipped, skipped),
            (&self.0.cron_missed, missed),
        ] {
            if n > 0 {
                family.with(labels(), |c| {
                    c.inc_by(n);
                });
            }
        }
    }

    /// A cron fire ran `seconds` after its scheduled instant.
    pub fn fire_lateness(&self, seconds: f64) {
        self.0.fire_lateness.observe(seconds.max(0.0));
    }

    /// A task of `workflow` ended in `state`.
    pub fn task_finished(&self, project: &str, workflow: &str, state: TaskState) {
        let labels = TaskFinished {
            project: Name::new(project),
            workflow: Name::new(workflow),
            state: labels::FinalState(state),
        };
        self.0.tasks_finished.with(labels, |c| {
            c.inc();
        });
    }

    /// A step run of `workflow`'s `step` took `seconds`.
    pub fn step_took(&self, project: &str, workflow: &str, step: &str, seconds: f64) {
        let labels = StepLabels {
            project: Name::new(project),
            workflow: Name::new(workflow),
            step: Name::new(step),
        };
        self.0
            .step_seconds
            .with(labels, |h| h.observe(seconds.max(0.0)));
    }

    /// An agent process ended: with an exit code, or (`None`) by a signal.
    pub fn agent_exited(&self, code: Option<i32>) {
        self.0
            .agent_exits
            .get_or_create(&Exit {
                class: ExitClass::of(code),
            })
            .inc();
    }

    /// A supervisor restarted an actor of `actor_type`.
    pub fn actor_restarted(&self, actor_type: &'static str) {
        self.0
            .actor_restarts
            .get_or_create(&ActorType { actor_type })
            .inc();
    }

    /// The mailbox depths of this moment, summed by actor type (types absent now are dropped).
    pub fn set_mailbox_depths(&self, depths: impl IntoIterator<Item = (&'static str, u64)>) {
        self.0.mailbox_depth.clear();
        for (actor_type, depth) in depths {
            self.0
                .mailbox_depth
                .get_or_create(&ActorType { actor_type })
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    /// A rotation's `stage` ended with `outcome` (both as the rotation's progress spells them).
    pub fn rotation_stage(&self, stage: &'static str, outcome: &'static str) {
        self.0
            .rotation_stages
            .get_or_create(&RotationStage { stage, outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests;
