//! Lowering: validated manifests become typed values once, when a snapshot is built, so that the
//! actors and handlers that use them never parse a manifest string again (ripgrep's
//! `HiArgs::from_low_args`, rust-analyzer's "fully resolved view").
//!
//! Per resource: a Trigger's cron expression becomes a [`Schedule`] in its zone and its webhook
//! block a [`WebhookPlan`] (the [`Scheme`] decided, the tolerance defaulted, the CEL condition
//! compiled); an Agent's command is split into words and its `env` entries become
//! [`EnvSource`]s; a Workflow's steps become [`Step::Template`] or [`Step::Command`] with their
//! command split. [`Snapshot`](super::snapshot::Snapshot) keeps these beside the resources and
//! resolves what crosses resources (a webhook's keys from its SecretStore) into typed lookups.
//!
//! Validation has already refused anything that does not lower, so a [`LowerError`] here means a
//! resource stored by an older version no longer lowers: the snapshot keeps it (it can still be
//! read and deleted), records the problem, and the parts that need the lowered form refuse to
//! use it with the problem as the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use thiserror::Error;

use super::filter::{Filter, FilterError};
use super::manifest::{AgentSpec, EnvEntry, Spec, TriggerSpec, WorkflowSpec};
use super::render::{self, RenderError};
use super::rotation::NEXT_SUFFIX;
use super::schedule::{Schedule, ScheduleError};
use super::signature::{self, Scheme, SignatureError};

/// Why a stored resource does not lower.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LowerError {
    #[error("cron schedule {expr:?}: {source}")]
    Schedule { expr: String, source: ScheduleError },
    #[error("webhook scheme: {0}")]
    Scheme(SignatureError),
    #[error("filter condition: {0}")]
    Filter(FilterError),
    #[error("command of {what}: {source}")]
    Command { what: String, source: RenderError },
    #[error("env entry {index} has an invalid shape")]
    EnvShape { index: usize },
    #[error("step {step:?} has neither a template nor a command")]
    StepShape { step: String },
}

/// The lowered form of one resource, for the kinds that have one.
#[derive(Debug, Clone)]
pub enum Lowered {
    Trigger(LoweredTrigger),
    Agent(LoweredAgent),
    Workflow(LoweredWorkflow),
}

/// A Trigger: its schedule and/or its webhook verification plan.
#[derive(Debug, Clone)]
pub struct LoweredTrigger {
    pub schedule: Option<Arc<Schedule>>,
    pub webhook: Option<Arc<WebhookPlan>>,
}

/// How a webhook trigger verifies and filters a delivery.
#[derive(Debug)]
pub struct WebhookPlan {
    pub scheme: Scheme,
    /// The header the signature travels in, when the trigger names one.
    pub signature_header: Option<String>,
    /// Timestamp tolerance of the timestamped schemes (and the replay window), in seconds.
    pub tolerance_secs: u64,
    /// The SecretStore whose keys verify.
    pub store: String,
    /// The keys of that store allowed to verify; `None`: every key.
    pub keys: Option<Vec<String>>,
    /// The compiled `filter.condition`.
    pub filter: Option<Filter>,
}

impl WebhookPlan {
    /// Whether store key `k` may verify deliveries of this trigger: every key when the trigger
    /// lists none, else a listed key or a rotation's staging value of one (`<key>.next`).
    pub fn allows(&self, k: &str) -> bool {
        self.keys
            .as_deref()
            .is_none_or(|listed| key_listed(listed, k))
    }
}

/// Whether store key `k` is one of the `listed` keys — or a rotation's staging value of one
/// (`<key>.next`), which must verify wherever the key it replaces does.
pub fn key_listed(listed: &[String], k: &str) -> bool {
    listed
        .iter()
        .any(|l| l == k || k.strip_suffix(NEXT_SUFFIX).is_some_and(|base| base == l))
}

/// An Agent: its command split into words (each still a template), and where its env comes from.
#[derive(Debug, Clone)]
pub struct LoweredAgent {
    pub words: Vec<String>,
    /// `resumeArgs`, split into words (each still a template).
    pub resume: Vec<String>,
    pub env: Vec<EnvSource>,
}

/// One agent `env` entry, in the shape validation accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// `{name, value}`.
    Value { name: String, value: String },
    /// `{fromRef: STORE}`: every key of a SecretStore or EnvStore.
    Store { store: String },
    /// `{name, refValue: {name: STORE, key: KEY}}`.
    Key {
        name: String,
        store: String,
        key: String,
    },
}

/// A Workflow: what each step runs, in `spec.steps` order.
#[derive(Debug, Clone)]
pub struct LoweredWorkflow {
    pub steps: Vec<Step>,
}

/// What one step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A StepTemplate's prompt, run by the first enabled agent with `capability`.
    Template {
        template: String,
        capability: String,
    },
    /// A command, split into words (each still a template).
    Command { words: Vec<String> },
}

/// Lowers one validated spec; `Ok(None)` for kinds that need no lowered form.
pub fn lower(spec: &Spec) -> Result<Option<Lowered>, LowerError> {
    lower_shared(spec, &Schedules::default())
}

/// Parsed schedules by expression and zone, so that the triggers of a snapshot share one
/// [`Schedule`] per distinct pair: 10,000 triggers commonly use a few hundred expressions, and
/// each is parsed once instead of once per trigger. Clones share the map; it holds the schedules
/// weakly, so one that no lowered trigger of any snapshot uses is freed, and [`Schedules::prune`]
/// drops its entry.
#[derive(Debug, Clone, Default)]
pub struct Schedules(Arc<Mutex<ScheduleMap>>);

/// Expression and zone → the schedule parsed from them, while some trigger holds it.
type ScheduleMap = HashMap<(String, Option<String>), Weak<Schedule>>;

impl Schedules {
    fn map(&self) -> std::sync::MutexGuard<'_, ScheduleMap> {
        // Every critical section is one lookup, insert or retain: a poisoned map is still whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, expr: &str, zone: Option<&str>) -> Result<Arc<Schedule>, ScheduleError> {
        let key = (expr.to_owned(), zone.map(str::to_owned));
        if let Some(s) = self.map().get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let s = Arc::new(Schedule::parse(expr, zone)?);
        self.map().insert(key, Arc::downgrade(&s));
        Ok(s)
    }

    /// Drops the entries of schedules no lowered trigger holds any more.
    pub fn prune(&self) {
        self.map().retain(|_, s| s.strong_count() > 0);
    }

    /// How many distinct schedules are in use.
    pub fn len(&self) -> usize {
        self.map().values().filter(|s| s.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the map holds (in use or not yet pruned).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.map().len()
    }
}

/// [`lower`], taking a Trigger's schedule from `schedules` when an equal one was parsed before.
pub fn lower_shared(spec: &Spec, schedules: &Schedules) -> Result<Option<Lowered>, LowerError> {
    Ok(match spec {
        Spec::Trigger(t) => Some(Lowered::Trigger(lower_trigger(t, schedules)?)),
        Spec::Agent(a) => Some(Lowered::Agent(lower_agent(a)?)),
        Spec::Workflow(w) => Some(Lowered::Workflow(lower_workflow(w)?)),
        Spec::Workspace(_) | Spec::StepTemplate(_) | Spec::SecretStore(_) | Spec::EnvStore(_) => {
            None
        }
    })
}

fn lower_trigger(t: &TriggerSpec, schedules: &Schedules) -> Result<LoweredTrigger, LowerError> {
    let schedule =
        match &t.cron {
            Some(c) => Some(schedules.get(&c.schedule, c.timezone.as_deref()).map_err(
                |source| LowerError::Schedule {
                    expr: c.schedule.clone(),
                    source,
                },
            )?),
            None => None,
        };
    let webhook = match &t.event {
        Some(ev) => {
            let w = &ev.webhook;
            let scheme = match w.scheme.as_deref() {
                Some(s) => Scheme::parse(s).map_err(LowerError::Scheme)?,
                None => Scheme::infer(w.signature_header.as_deref()),
            };
            let filter = match ev.filter.as_ref().and_then(|f| f.condition.as_deref()) {
                Some(c) => Some(Filter::compile(c).map_err(LowerError::Filter)?),
                None => None,
            };
            Some(Arc::new(WebhookPlan {
                scheme,
                signature_header: w.signature_header.clone(),
                tolerance_secs: w
                    .tolerance_seconds
                    .unwrap_or(signature::DEFAULT_TOLERANCE_SECS),
                store: w.secret.from_ref.clone(),
                keys: w.secret.keys.clone(),
                filter,
            }))
        }
        None => None,
    };
    Ok(LoweredTrigger { schedule, webhook })
}

fn lower_agent(a: &AgentSpec) -> Result<LoweredAgent, LowerError> {
    let words = render::split_command(&a.command).map_err(|source| LowerError::Command {
        what: "the agent".into(),
        source,
    })?;
    let env = a
        .env
        .iter()
        .enumerate()
        .map(|(index, e)| env_source(e).ok_or(LowerError::EnvShape { index }))
        .collect::<Result<_, _>>()?;
    let resume = match &a.resume_args {
        Some(r) => render::split_command(r).map_err(|source| LowerError::Command {
            what: "the agent's resumeArgs".into(),
            source,
        })?,
        None => Vec::new(),
    };
    Ok(LoweredAgent { words, resume, env })
}

fn env_source(e: &EnvEntry) -> Option<EnvSource> {
    match (&e.name, &e.value, &e.from_ref, &e.ref_value) {
        (Some(name), Some(value), None, None) => Some(EnvSource::Value {
            name: name.clone(),
            value: value.clone(),
        }),
        (None, None, Some(store), None) => Some(EnvSource::Store {
            store: store.clone(),
        }),
        (Some(name), None, None, Some(rv)) => Some(EnvSource::Key {
            name: name.clone(),
            store: rv.name.clone(),
            key: rv.key.clone(),
        }),
        _ => None,
    }
}

/// Lowers a workflow spec: a task lowers the copy it was created with.
pub fn lower_workflow(w: &WorkflowSpec) -> Result<LoweredWorkflow, LowerError> {
    let steps = w
        .steps
        .iter()
        .map(|s| match (&s.template, &s.command) {
            (Some(template), _) => Ok(Step::Template {
                template: template.clone(),
                capability: s.required_capability.clone().unwrap_or_default(),
            }),
            (None, Some(command)) => render::split_command(command)
                .map(|words| Step::Command { words })
                .map_err(|source| LowerError::Command {
                    what: format!("step {:?}", s.id),
                    source,
                }),
            (None, None) => Err(LowerError::StepShape { step: s.id.clone() }),
        })
        .collect::<Result<_, _>>()?;
    Ok(LoweredWorkflow { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::parse_documents;

    fn spec(kind: &str, body: &str) -> Spec {
        let text = format!(
            "apiVersion: orchestrator.dev/v2\nkind: {kind}\nmetadata:\n  name: x\nspec:\n{body}"
        );
        let (mut docs, problems) = parse_documents("t.yaml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        docs.remove(0).manifest.spec
    }

    fn trigger(body: &str) -> LoweredTrigger {
        match lower(&spec("Trigger", body)) {
            Ok(Some(Lowered::Trigger(t))) => t,
            other => panic!("{other:?}"),
        }
    }

    const ACTION: &str = "  action:\n    workflow: w\n    workspace: ws\n";

    #[test]
    fn webhook_schemes_are_decided_once() {
        // (scheme, signatureHeader) → the scheme the server verifies with.
        let cases = [
            (Some("github"), None, Scheme::Github),
            (Some("slack"), None, Scheme::Slack),
            (None, Some("X-Hub-Signature-256"), Scheme::Github),
            (None, Some("Stripe-Signature"), Scheme::Stripe),
            (None, None, Scheme::HmacSha256),
        ];
        for (scheme, header, want) in cases {
            let mut w = String::from("      secret:\n        fromRef: s\n");
            if let Some(s) = scheme {
                w.push_str(&format!("      scheme: {s}\n"));
            }
            if let Some(h) = header {
                w.push_str(&format!("      signatureHeader: {h}\n"));
            }
            let t = trigger(&format!(
                "  event:\n    source: webhook\n    webhook:\n{w}{ACTION}"
            ));
            let plan = t.webhook.expect("a webhook plan");
            assert_eq!(plan.scheme, want, "{scheme:?} {header:?}");
            assert_eq!(plan.tolerance_secs, signature::DEFAULT_TOLERANCE_SECS);
            assert!(t.schedule.is_none());
        }
    }

    #[test]
    fn an_unknown_scheme_is_an_error_not_a_fallback() {
        let t = spec(
            "Trigger",
            &format!(
                "  event:\n    source: webhook\n    webhook:\n      secret:\n        fromRef: s\n      scheme: gitlab\n{ACTION}"
            ),
        );
        assert!(matches!(lower(&t), Err(LowerError::Scheme(_))));
    }

    #[test]
    fn cron_and_filter_are_compiled() {
        let t = trigger(&format!(
            "  cron:\n    schedule: \"0 2 * * 0\"\n    timezone: Asia/Tokyo\n{ACTION}"
        ));
        assert!(t.schedule.is_some() && t.webhook.is_none());
        let t = trigger(&format!(
            "  event:\n    source: webhook\n    webhook:\n      secret:\n        fromRef: s\n        keys: [github]\n    filter:\n      condition: payload.ref == 'refs/heads/main'\n{ACTION}"
        ));
        let plan = t.webhook.expect("plan");
        let filter = plan.filter.as_ref().expect("filter");
        let main = serde_json::json!({"ref": "refs/heads/main"});
        assert_eq!(filter.matches(&main), Ok(true));
        assert!(plan.allows("github") && plan.allows("github.next"));
        assert!(!plan.allows("slack") && !plan.allows("github.old"));
    }

    #[test]
    fn agent_env_entries_become_sources() {
        let a = spec(
            "Agent",
            "  command: claude -p '{prompt}'\n  env:\n    - {name: A, value: '1'}\n    - {fromRef: envs}\n    - {name: T, refValue: {name: sec, key: token}}\n",
        );
        let Ok(Some(Lowered::Agent(a))) = lower(&a) else {
            panic!("agent lowers")
        };
        assert_eq!(a.words, ["claude", "-p", "{prompt}"]);
        assert_eq!(
            a.env,
            [
                EnvSource::Value {
                    name: "A".into(),
                    value: "1".into()
                },
                EnvSource::Store {
                    store: "envs".into()
                },
                EnvSource::Key {
                    name: "T".into(),
                    store: "sec".into(),
                    key: "token".into()
                },
            ]
        );
        let bad = spec("Agent", "  command: x\n  env:\n    - {name: A}\n");
        assert_eq!(lower(&bad).err(), Some(LowerError::EnvShape { index: 0 }));
    }

    #[test]
    fn workflow_steps_are_templates_or_split_commands() {
        let w = spec(
            "Workflow",
            "  steps:\n    - {id: a, template: t, required_capability: code}\n    - {id: b, command: \"echo 'two words' {goal}\"}\n",
        );
        let Ok(Some(Lowered::Workflow(w))) = lower(&w) else {
            panic!("workflow lowers")
        };
        assert_eq!(
            w.steps,
            [
                Step::Template {
                    template: "t".into(),
                    capability: "code".into()
                },
                Step::Command {
                    words: vec!["echo".into(), "two words".into(), "{goal}".into()]
                },
            ]
        );
        let bad = spec(
            "Workflow",
            "  steps:\n    - {id: b, command: \"echo 'open\"}\n",
        );
        assert!(matches!(lower(&bad), Err(LowerError::Command { .. })));
    }
}
