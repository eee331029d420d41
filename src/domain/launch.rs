//! What a step run starts, decided without IO: from the step's lowered action, the snapshot
//! current at its start (StepTemplates, agents, stores), the task's placeholder values, the base
//! environment and the run's file paths, [`launch`] builds a [`Launch`] — argv, environment,
//! stdin, the prompt file to write and the timeout — or a [`LaunchError`] naming what is missing.
//! The WorkflowActor does the rest: it creates the task directory, writes the prompt file, records
//! the run (then [`Launch::mark_run`]) and spawns the process.
//!
//! Rules (SPEC §6, README "How an agent is run"): a template step is run by the first enabled
//! agent (by name) with the step's capability; its prompt is the StepTemplate rendered with the
//! task's placeholders and reaches the agent as `{prompt}` in its argv (`arg`), on stdin, in
//! `ORCH_PROMPT` (`env`) or in a 0600 file named by `ORCH_PROMPT_FILE` and `{prompt_file}`
//! (`file`). The environment is the base environment, then the prompt variable, then the agent's
//! `env` resolved from the snapshot (a later entry replaces an earlier one of the same name; a
//! `fromRef` store key that is not a variable name is skipped and reported), then the
//! `ORCHESTRATOR_*` variables. The timeout is the step's, else the agent's, else 30 minutes; an
//! agent with `output: stream-json` has its stdout parsed with its guards (`maxTurns`,
//! `maxCostUsd`); a command step has no agent and renders its own words.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::lower::{EnvSource, LowerError, LoweredAgent, LoweredWorkflow, Step};
use super::manifest::{AgentOutput, Kind, PromptDelivery, Spec, StepSpec};
use super::render;
use super::snapshot::Snapshot;
use super::stream_json::Guards;
use super::validate::is_env_name;
use super::workflow::Position;

/// Step timeout when neither the step nor the agent sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The environment variable that marks every process of a step run with the run's id.
pub const RUN_ID_VAR: &str = "ORCHESTRATOR_RUN_ID";

/// Why a step run cannot start. The texts are the run's and the attempt's failure reason.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LaunchError {
    #[error("the task's workflow does not lower: {0}")]
    NotLowered(LowerError),
    #[error("step {0} of the workflow no longer exists")]
    StepGone(usize),
    #[error("step template {0:?} no longer exists")]
    TemplateGone(String),
    #[error("no enabled agent has capability {0:?}")]
    NoAgent(String),
    #[error("agent {agent:?}: {source}")]
    Env { agent: String, source: EnvError },
}

impl LaunchError {
    /// The agent the run was picked for, when it got that far.
    pub fn agent(&self) -> Option<&str> {
        match self {
            LaunchError::Env { agent, .. } => Some(agent),
            LaunchError::NotLowered(_)
            | LaunchError::StepGone(_)
            | LaunchError::TemplateGone(_)
            | LaunchError::NoAgent(_) => None,
        }
    }
}

/// Why an agent's `env` does not resolve in the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvError {
    #[error("store {0:?} no longer exists")]
    StoreGone(String),
    #[error("store {store:?} has no key {key:?} any more")]
    KeyGone { store: String, key: String },
}

/// A key of a `fromRef` store that is not an environment variable name: not passed to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub store: String,
    pub key: String,
}

/// The files of one step run: `<task-dir>/<step>-c<cycle>-a<attempt>.log` and `.prompt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    pub log: PathBuf,
    pub prompt: PathBuf,
}

impl RunFiles {
    pub fn new(task_dir: &Path, step: &str, pos: Position) -> RunFiles {
        let stem = format!("{step}-c{}-a{}", pos.cycle, pos.attempt);
        RunFiles {
            log: task_dir.join(format!("{stem}.log")),
            prompt: task_dir.join(format!("{stem}.prompt")),
        }
    }
}

/// The task as its placeholders see it.
#[derive(Debug, Clone, Copy)]
pub struct TaskVars<'a> {
    pub id: u64,
    pub project: &'a str,
    pub workflow: &'a str,
    pub goal: Option<&'a str>,
    pub workspace_root: &'a str,
    pub payload: Option<&'a str>,
    /// Where the payload is written (`{payload_file}` when the task has a payload).
    pub payload_file: &'a Path,
    pub prev_stdout: &'a str,
    /// The last output of each step that succeeded.
    pub outputs: &'a HashMap<String, String>,
}

impl TaskVars<'_> {
    /// The value of placeholder `name` for step `step` at `pos`.
    pub fn var(&self, name: &str, step: &str, pos: Position) -> Option<Cow<'_, str>> {
        Some(match name {
            "goal" => Cow::Borrowed(self.goal.unwrap_or("")),
            "task_id" => Cow::Owned(self.id.to_string()),
            "workflow" => Cow::Borrowed(self.workflow),
            "workspace_root" => Cow::Borrowed(self.workspace_root),
            "cycle" => Cow::Owned(pos.cycle.to_string()),
            "payload" => Cow::Borrowed(self.payload.unwrap_or("")),
            "payload_file" => match self.payload {
                Some(_) => Cow::Owned(self.payload_file.display().to_string()),
                None => Cow::Borrowed(""),
            },
            "prev_stdout" => Cow::Borrowed(self.prev_stdout),
            "step_id" => Cow::Owned(step.to_owned()),
            "project" => Cow::Borrowed(self.project),
            other => {
                let step = render::output_step(other)?;
                Cow::Borrowed(self.outputs.get(step).map_or("", String::as_str))
            }
        })
    }
}

/// Everything a step run's start depends on.
#[derive(Debug, Clone, Copy)]
pub struct StepRun<'a> {
    pub task: TaskVars<'a>,
    pub step: &'a StepSpec,
    pub pos: Position,
    /// The task's workflow, lowered from the copy frozen at its creation.
    pub steps: Result<&'a LoweredWorkflow, &'a LowerError>,
    pub snapshot: &'a Snapshot,
    /// `PATH HOME USER LANG TERM` as the daemon has them.
    pub base_env: &'a [(String, String)],
    /// The control socket, handed to the agent as `ORCHESTRATOR_SOCKET`.
    pub socket: &'a Path,
    pub files: &'a RunFiles,
    /// The session a failed attempt of this step reported (stream-json): a retry resumes it
    /// when the agent has `resumeArgs`.
    pub resume_session: Option<&'a str>,
}

/// What to start for a step run.
#[derive(Clone, PartialEq)]
pub struct Launch {
    /// The agent that runs a template step; `None` for a command step.
    pub agent: Option<String>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    /// The prompt file to write (mode 0600) before the process starts, and its contents.
    pub prompt_file: Option<(PathBuf, String)>,
    pub timeout: Duration,
    /// Stop the run when it writes nothing for this long (the step's, else the agent's).
    pub idle_timeout: Option<Duration>,
    /// The agent prints stream-json (`output: stream-json`), read with these guards.
    pub stream: Option<Guards>,
    /// Store keys left out of the environment (the caller logs them).
    pub skipped: Vec<SkippedKey>,
}

impl std::fmt::Debug for Launch {
    /// Names only: the environment, stdin and prompt may carry secret values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("agent", &self.agent)
            .field("argv.len", &self.argv.len())
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("prompt_file", &self.prompt_file.as_ref().map(|(p, _)| p))
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Launch {
    /// Marks every process of the run with its id (known once the run is recorded), so that
    /// crash recovery finds them even when the daemon died before it recorded the group.
    pub fn mark_run(&mut self, run_id: u64) {
        merge_env(&mut self.env, vec![(RUN_ID_VAR.into(), run_id.to_string())]);
    }
}

/// Decides what the step run `r` starts.
pub fn launch(r: &StepRun<'_>) -> Result<Launch, LaunchError> {
    let steps = r.steps.map_err(|e| LaunchError::NotLowered(e.clone()))?;
    let var = |name: &str| r.task.var(name, &r.step.id, r.pos);
    let mut env: Vec<(String, String)> = r.base_env.to_vec();
    let mut launch = match steps.steps.get(r.pos.step) {
        Some(Step::Template {
            template,
            capability,
        }) => {
            let project = r.task.project;
            let prompt_template = match r
                .snapshot
                .lookup(project, Kind::StepTemplate, template)
                .map(|t| &t.spec)
            {
                Some(Spec::StepTemplate(t)) => &t.prompt,
                _ => return Err(LaunchError::TemplateGone(template.clone())),
            };
            let agent = r
                .snapshot
                .agent_with(project, capability)
                .ok_or_else(|| LaunchError::NoAgent(capability.clone()))?;
            let agent_name = agent.name.to_owned();
            let prompt = render::render(prompt_template, var);
            let prompt_path = r.files.prompt.display().to_string();
            let mut stdin = None;
            let mut prompt_file = None;
            match agent.spec.prompt_delivery {
                PromptDelivery::Arg => {}
                PromptDelivery::Stdin => stdin = Some(prompt.clone().into_bytes()),
                PromptDelivery::Env => env.push(("ORCH_PROMPT".into(), prompt.clone())),
                PromptDelivery::File => {
                    prompt_file = Some((r.files.prompt.clone(), prompt.clone()));
                    env.push(("ORCH_PROMPT_FILE".into(), prompt_path.clone()));
                }
            }
            let mut skipped = Vec::new();
            let extra =
                agent_env(agent.lowered, project, r.snapshot, &mut skipped).map_err(|source| {
                    LaunchError::Env {
                        agent: agent_name.clone(),
                        source,
                    }
                })?;
            merge_env(&mut env, extra);
            let mut argv: Vec<String> = agent
                .lowered
                .words
                .iter()
                .map(|w| {
                    render::render(w, |n| match n {
                        "prompt" => Some(Cow::Borrowed(prompt.as_str())),
                        "prompt_file" => Some(Cow::Borrowed(prompt_path.as_str())),
                        other => var(other),
                    })
                })
                .collect();
            if let Some(session) = r.resume_session.filter(|_| r.pos.attempt > 1) {
                argv.extend(agent.lowered.resume.iter().map(|w| {
                    render::render(w, |n| (n == "session_id").then_some(Cow::Borrowed(session)))
                }));
            }
            let timeout = r
                .step
                .timeout_secs
                .or(agent.spec.timeout_secs)
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
            let idle_timeout = r
                .step
                .idle_timeout_secs
                .or(agent.spec.idle_timeout_secs)
                .map(Duration::from_secs);
            let stream = (agent.spec.output == AgentOutput::StreamJson).then_some(Guards {
                max_turns: agent.spec.max_turns,
                max_cost_usd: agent.spec.max_cost_usd,
            });
            Launch {
                agent: Some(agent_name),
                argv,
                env: Vec::new(),
                stdin,
                prompt_file,
                timeout,
                idle_timeout,
                stream,
                skipped,
            }
        }
        Some(Step::Command { words }) => Launch {
            agent: None,
            argv: words.iter().map(|w| render::render(w, var)).collect(),
            env: Vec::new(),
            stdin: None,
            prompt_file: None,
            timeout: r
                .step
                .timeout_secs
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            idle_timeout: r.step.idle_timeout_secs.map(Duration::from_secs),
            stream: None,
            skipped: Vec::new(),
        },
        None => return Err(LaunchError::StepGone(r.pos.step)),
    };
    merge_env(
        &mut env,
        vec![
            ("ORCHESTRATOR_SOCKET".into(), r.socket.display().to_string()),
            ("ORCHESTRATOR_TASK_ID".into(), r.task.id.to_string()),
            ("ORCHESTRATOR_STEP_ID".into(), r.step.id.clone()),
            ("ORCHESTRATOR_PROJECT".into(), r.task.project.to_owned()),
        ],
    );
    launch.env = env;
    Ok(launch)
}

/// Resolves an agent's `env` from the snapshot, in entry order; `fromRef` keys that are not
/// variable names go to `skipped`.
fn agent_env(
    agent: &LoweredAgent,
    project: &str,
    snapshot: &Snapshot,
    skipped: &mut Vec<SkippedKey>,
) -> Result<Vec<(String, String)>, EnvError> {
    let store_data = |name: &str| -> Result<Vec<(String, String)>, EnvError> {
        if let Some(s) = snapshot.secret_store(project, name) {
            return Ok(s
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect());
        }
        match snapshot
            .lookup(project, Kind::EnvStore, name)
            .map(|r| &r.spec)
        {
            Some(Spec::EnvStore(e)) => {
                Ok(e.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            _ => Err(EnvError::StoreGone(name.to_owned())),
        }
    };
    let mut out = Vec::new();
    for e in &agent.env {
        match e {
            EnvSource::Value { name, value } => out.push((name.clone(), value.clone())),
            EnvSource::Store { store } => {
                for (k, v) in store_data(store)? {
                    if is_env_name(&k) {
                        out.push((k, v));
                    } else {
                        skipped.push(SkippedKey {
                            store: store.clone(),
                            key: k,
                        });
                    }
                }
            }
            EnvSource::Key { name, store, key } => {
                let value = store_data(store)?
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .ok_or_else(|| EnvError::KeyGone {
                        store: store.clone(),
                        key: key.clone(),
                    })?;
                out.push((name.clone(), value));
            }
        }
    }
    Ok(out)
}

/// Adds `extra` to `env`, replacing variables of the same name.
pub fn merge_env(env: &mut Vec<(String, String)>, extra: Vec<(String, String)>) {
    for (k, v) in extra {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
}

#[cfg(test)]
mod tests;
