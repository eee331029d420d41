//! Rules that concern one resource alone: names and keys, Workspace paths, SecretStore data and
//! rotation settings, agent commands and environment, workflow steps and loops, trigger schedules,
//! schemes and filters. Each rule reports a field path, a message and, where one helps, a hint.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::domain::diagnostic::did_you_mean;
use crate::domain::manifest::{
    AgentSpec, EventSpec, LoopMode, PromptDelivery, SecretStoreSpec, Spec, StepScope, TriggerSpec,
    WorkflowSpec,
};
use crate::domain::render;
use crate::domain::rotation::WORKING_DIR;
use crate::domain::schedule::Schedule;
use crate::domain::signature::Scheme;

// ---------------------------------------------------------------------------------------------
// Names, keys and paths
// ---------------------------------------------------------------------------------------------

/// Longest accepted name (SPEC §3).
const MAX_NAME: usize = 63;

/// Environment variables the daemon sets for every agent; an agent's `env` may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "ORCHESTRATOR_SOCKET",
    "ORCHESTRATOR_TASK_ID",
    "ORCHESTRATOR_STEP_ID",
    "ORCHESTRATOR_PROJECT",
    "ORCH_PROMPT",
    "ORCH_PROMPT_FILE",
];

/// Why a resource or project name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {name:?} is {} characters long; the limit is {MAX_NAME}", .name.len())]
    TooLong { name: String },
    #[error(
        "invalid name {name:?}: use 1-63 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
    )]
    Invalid { name: String },
}

/// Checks a resource or project name: 1–63 chars of `[a-z0-9-_.]`, starting alphanumeric.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > MAX_NAME {
        Err(NameError::TooLong {
            name: name.to_owned(),
        })
    } else if !ok_chars || !first_ok {
        Err(NameError::Invalid {
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// Why a key of SecretStore data is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key {0:?}: use 1-253 characters")]
    Length(String),
    #[error("invalid key {0:?}: use letters, digits, '-', '_' and '.'")]
    Characters(String),
}

/// Keys of SecretStore data: 1–253 chars of `[A-Za-z0-9._-]`.
fn check_data_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() || key.len() > 253 {
        return Err(KeyError::Length(key.to_owned()));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(KeyError::Characters(key.to_owned()));
    }
    Ok(())
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves a Workspace `root_path` against the directory of the manifest that declared it, and
/// normalizes `.` and `..` lexically (the path need not exist yet).
pub fn resolve_root_path(root: &str, base_dir: &Path) -> String {
    let joined = base_dir.join(root);
    let mut out = PathBuf::new();
    for comp in joined.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Per-kind rules
// ---------------------------------------------------------------------------------------------

/// A problem a local rule found: field path, message and optional hint.
pub(super) type Problem = (String, String, Option<String>);

fn problem(path: impl Into<String>, message: impl ToString) -> Problem {
    (path.into(), message.to_string(), None)
}

pub(super) fn problem_hint(
    path: impl Into<String>,
    message: impl ToString,
    hint: impl Into<String>,
) -> Problem {
    (path.into(), message.to_string(), Some(hint.into()))
}

/// Rules that concern one resource alone.
pub(super) fn local_problems(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    match spec {
        Spec::Workspace(w) => {
            if w.root_path.trim().is_empty() {
                out.push(problem_hint(
                    "spec.root_path",
                    "root_path is empty",
                    "give the workspace directory",
                ));
            } else if !Path::new(&w.root_path).is_absolute() {
                out.push(problem_hint(
                    "spec.root_path",
                    format!("root_path {:?} is not absolute", w.root_path),
                    "apply it with the CLI, which resolves it against the manifest's directory",
                ));
            }
        }
        Spec::EnvStore(e) => {
            for k in e.data.keys() {
                if !is_env_name(k) {
                    out.push(problem_hint(
                        format!("spec.data.{k}"),
                        format!("invalid key {k:?}"),
                        "EnvStore keys become environment variables: use [A-Za-z_][A-Za-z0-9_]*",
                    ));
                }
            }
        }
        Spec::SecretStore(s) => secret_store_problems(s, &mut out),
        Spec::StepTemplate(t) => {
            if t.prompt.trim().is_empty() {
                out.push(problem("spec.prompt", "prompt is empty"));
            }
            for name in render::placeholders(&t.prompt) {
                if !render::is_prompt_placeholder(name) {
                    out.push(problem_hint(
                        "spec.prompt",
                        format!("unknown placeholder {{{name}}}"),
                        format!(
                            "use one of {}, or {{<step_id>_output}}; write {{{{name}}}} for a literal {{name}}",
                            render::PROMPT_PLACEHOLDERS
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Spec::Agent(a) => agent_problems(a, &mut out),
        Spec::Workflow(w) => workflow_problems(w, &mut out),
        Spec::Trigger(t) => trigger_problems(t, &mut out),
    }
    out
}

fn secret_store_problems(s: &SecretStoreSpec, out: &mut Vec<Problem>) {
    for (k, v) in &s.data {
        if let Err(e) = check_data_key(k) {
            out.push(problem(format!("spec.data.{k}"), e));
        }
        if let Err(e) = crate::domain::limits::check_secret_value_content(v.expose()) {
            out.push(problem_hint(
                format!("spec.data.{k}"),
                e,
                "put the real value here, or write `{keep: true}` to keep the live value and set \
                 it with `orchestrator secret set` (the daemon never shows secret values)",
            ));
        }
    }
    for k in &s.keep {
        if let Err(e) = check_data_key(k) {
            out.push(problem(format!("spec.data.{k}"), e));
        }
    }
    let keys = s.key_names();
    if keys.len() > crate::domain::limits::MAX_SECRET_KEYS {
        out.push(problem_hint(
            "spec.data",
            format!(
                "{} keys; the limit is {}",
                keys.len(),
                crate::domain::limits::MAX_SECRET_KEYS
            ),
            "split the secrets over several SecretStores",
        ));
    }
    if let Some(r) = &s.rotation {
        if let Err(e) = check_data_key(&r.key) {
            out.push(problem("spec.rotation.key", e));
        }
        // A token provider creates its key on the first refresh.
        if !keys.contains(r.key.as_str()) && !crate::domain::token::is_token_provider(r.provider) {
            out.push(problem_hint(
                "spec.rotation.key",
                format!("rotation key {:?} is not in data", r.key),
                "rotation replaces an existing key: add it to `data` (with its value, or as \
                 `{keep: true}` to declare it without one) or fix the name",
            ));
        }
        rotation_settings_problems(r, out);
    }
}

/// The provider-specific `rotation.settings`.
fn rotation_settings_problems(r: &crate::domain::manifest::RotationSpec, out: &mut Vec<Problem>) {
    use crate::domain::manifest::RotationProvider;
    let (known, required): (&[&str], &[&str]) = match r.provider {
        RotationProvider::Github => (
            &["repository", "hookId", "apiUrl", "testTimeoutSeconds"],
            &["repository", "hookId"],
        ),
        RotationProvider::Command => (
            &["set", "test", "testTimeoutSeconds", WORKING_DIR],
            &["set"],
        ),
        RotationProvider::Manual => (&["testTimeoutSeconds"], &[]),
        RotationProvider::Oauth2 => (
            &[
                "tokenUrl",
                "refreshBefore",
                "clientAuth",
                "scope",
                "refreshTokenKey",
            ],
            &["tokenUrl"],
        ),
        RotationProvider::GithubApp => (
            &["appId", "installationId", "apiUrl", "refreshBefore"],
            &["appId", "installationId"],
        ),
    };
    for name in r.settings.keys() {
        if !known.contains(&name.as_str()) {
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("settings of this provider are {}", known.join(", ")),
            };
            out.push(problem_hint(
                format!("spec.rotation.settings.{name}"),
                format!("unknown setting `{name}`"),
                hint,
            ));
        }
    }
    for name in required {
        if !r.settings.contains_key(*name) {
            out.push(problem_hint(
                format!("spec.rotation.settings.{name}"),
                format!("missing setting `{name}`"),
                match *name {
                    "repository" => "add `repository: owner/name`",
                    "hookId" => "add `hookId:` with the repository webhook's id (Settings → Webhooks, or GET /repos/{owner}/{repo}/hooks)",
                    "tokenUrl" => "add `tokenUrl:` with the platform's token endpoint, e.g. https://slack.com/api/oauth.v2.access",
                    "appId" => "add `appId:` with the GitHub App's id (the App's settings page, \"App ID\")",
                    "installationId" => "add `installationId:` with the installation's id (GET /app/installations, or the number in the installation's settings URL)",
                    _ => "add `set:` with the program that puts the new value (read from stdin) at the platform",
                },
            ));
        }
    }
    let get = |n: &str| r.settings.get(n);
    if let Some(v) = get("repository")
        && v.as_str()
            .is_none_or(|s| s.split('/').filter(|p| !p.is_empty()).count() != 2)
    {
        out.push(problem_hint(
            "spec.rotation.settings.repository",
            "repository must be owner/name",
            "e.g. `repository: acme/api`",
        ));
    }
    if let Some(v) = get("hookId")
        && !(v.is_u64()
            || v.as_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
    {
        out.push(problem_hint(
            "spec.rotation.settings.hookId",
            "hookId must be a number",
            "e.g. `hookId: 123456789`",
        ));
    }
    if let Some(v) = get("apiUrl")
        && !v
            .as_str()
            .is_some_and(|s| s.starts_with("https://") || s.starts_with("http://"))
    {
        out.push(problem_hint(
            "spec.rotation.settings.apiUrl",
            "apiUrl must be an http(s) URL",
            "e.g. `apiUrl: https://github.example.com/api/v3`",
        ));
    }
    if let Some(v) = get("testTimeoutSeconds")
        && v.as_u64().is_none_or(|n| n == 0)
    {
        out.push(problem_hint(
            "spec.rotation.settings.testTimeoutSeconds",
            "testTimeoutSeconds must be a positive number",
            "e.g. `testTimeoutSeconds: 60`",
        ));
    }
    for name in ["set", "test"] {
        if let Some(v) = get(name) {
            match v.as_str().map(render::split_command) {
                Some(Ok(_)) => {}
                Some(Err(e)) => out.push(problem(
                    format!("spec.rotation.settings.{name}"),
                    e.to_string(),
                )),
                None => out.push(problem_hint(
                    format!("spec.rotation.settings.{name}"),
                    format!("{name} must be a command string"),
                    "e.g. `set: ./set-secret.sh`",
                )),
            }
        }
    }
    if let Some(v) = get(WORKING_DIR)
        && !v.as_str().is_some_and(|d| Path::new(d).is_absolute())
    {
        out.push(problem_hint(
            format!("spec.rotation.settings.{WORKING_DIR}"),
            format!("{WORKING_DIR} must be a directory path (absolute once applied)"),
            "leave it out to run the programs in the manifest's directory, or give a path relative to it",
        ));
    }
    token_settings_problems(r, out);
    if r.provider == RotationProvider::Github && r.credentials.is_none() {
        out.push(problem_hint(
            "spec.rotation.credentials",
            "github rotation needs credentials with an API token",
            "add `credentials: {fromRef: <SecretStore>, key: <key holding the token>}`",
        ));
    }
}

/// The settings of the token providers (`oauth2`, `github-app`).
fn token_settings_problems(r: &crate::domain::manifest::RotationSpec, out: &mut Vec<Problem>) {
    use crate::domain::manifest::RotationProvider;
    if !crate::domain::token::is_token_provider(r.provider) {
        return;
    }
    let get = |n: &str| r.settings.get(n);
    if let Err(e) = crate::domain::token::refresh_before(r) {
        out.push(problem_hint(
            "spec.rotation.settings.refreshBefore",
            e.to_string(),
            "e.g. `refreshBefore: 10m`; without it, 10 % of the token's lifetime (at least 60 s)",
        ));
    }
    if let Some(v) = get("tokenUrl")
        && !v
            .as_str()
            .is_some_and(|s| s.starts_with("https://") || s.starts_with("http://"))
    {
        out.push(problem_hint(
            "spec.rotation.settings.tokenUrl",
            "tokenUrl must be an http(s) URL",
            "e.g. `tokenUrl: https://slack.com/api/oauth.v2.access`",
        ));
    }
    if let Some(v) = get("clientAuth")
        && !matches!(v.as_str(), Some("basic" | "body"))
    {
        out.push(problem_hint(
            "spec.rotation.settings.clientAuth",
            "clientAuth must be `basic` or `body`",
            "`basic` (the default) sends the client id and secret as HTTP Basic auth (RFC 6749 \u{a7}2.3.1); `body` sends them as form fields",
        ));
    }
    for name in ["scope", "refreshTokenKey"] {
        if let Some(v) = get(name)
            && v.as_str().is_none_or(str::is_empty)
        {
            out.push(problem(
                format!("spec.rotation.settings.{name}"),
                format!("{name} must be a non-empty string"),
            ));
        }
    }
    if let Some(v) = get("refreshTokenKey").and_then(|v| v.as_str())
        && let Err(e) = check_data_key(v)
    {
        out.push(problem("spec.rotation.settings.refreshTokenKey", e));
    }
    for name in ["appId", "installationId"] {
        if let Some(v) = get(name)
            && !(v.is_u64()
                || v.as_str()
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
        {
            out.push(problem_hint(
                format!("spec.rotation.settings.{name}"),
                format!("{name} must be a number"),
                format!("e.g. `{name}: 123456`"),
            ));
        }
    }
    if r.credentials.is_none() {
        let (what, example) = match r.provider {
            RotationProvider::GithubApp => (
                "github-app rotation needs credentials with the App's private key (PEM)",
                "add `credentials: {fromRef: <SecretStore>, key: private_key}`",
            ),
            _ => (
                "oauth2 rotation needs credentials with the client secret (the same store holds `client_id`)",
                "add `credentials: {fromRef: <SecretStore>, key: client_secret}`",
            ),
        };
        out.push(problem_hint("spec.rotation.credentials", what, example));
    }
}

fn agent_problems(a: &AgentSpec, out: &mut Vec<Problem>) {
    super::output::output_problems(a, out);
    super::retry::idle_timeout(a.idle_timeout_secs, "spec.idle_timeout_secs", out);
    match render::split_command(&a.command) {
        Err(e) => out.push(problem_hint(
            "spec.command",
            e.to_string(),
            "the command is split like a shell would (quotes, backslashes) but never run by one",
        )),
        Ok(argv) => {
            if !render::placeholders(&argv[0]).is_empty() {
                out.push(problem_hint(
                    "spec.command",
                    "the program (first word) contains a placeholder",
                    "name the program literally; placeholders go in its arguments",
                ));
            }
            let used: Vec<&str> = argv.iter().flat_map(|a| render::placeholders(a)).collect();
            for name in &used {
                if !render::COMMAND_PLACEHOLDERS.contains(name)
                    && !render::is_prompt_placeholder(name)
                {
                    out.push(problem_hint(
                        "spec.command",
                        format!("unknown placeholder {{{name}}}"),
                        "use {prompt}, {prompt_file} or a prompt placeholder such as {task_id}",
                    ));
                }
            }
            let has = |p: &str| used.contains(&p);
            match a.prompt_delivery {
                PromptDelivery::Arg if !has("prompt") => out.push(problem_hint(
                    "spec.command",
                    "promptDelivery is arg but the command has no {prompt} placeholder",
                    "put {prompt} where the prompt goes, or set promptDelivery to stdin, file or env",
                )),
                PromptDelivery::File | PromptDelivery::Arg => {}
                PromptDelivery::Stdin | PromptDelivery::Env if has("prompt_file") => {
                    out.push(problem_hint(
                        "spec.command",
                        "{prompt_file} is only set when promptDelivery is file",
                        "set `promptDelivery: file`",
                    ))
                }
                PromptDelivery::Stdin | PromptDelivery::Env => {}
            }
        }
    }
    for (i, c) in a.capabilities.iter().enumerate() {
        if let Err(e) = check_name(c) {
            out.push(problem(
                format!("spec.capabilities[{i}]"),
                e.to_string().replace("name", "capability"),
            ));
        }
    }
    if a.timeout_secs == Some(0) {
        out.push(problem_hint(
            "spec.timeout_secs",
            "timeout_secs is 0",
            "use a positive number of seconds or leave it out",
        ));
    }
    let mut names = HashSet::new();
    for (i, e) in a.env.iter().enumerate() {
        let path = format!("spec.env[{i}]");
        let shape = (
            e.name.is_some(),
            e.value.is_some(),
            e.from_ref.is_some(),
            e.ref_value.is_some(),
        );
        match shape {
            (true, true, false, false) | (true, false, false, true) | (false, false, true, false) => {}
            _ => out.push(problem_hint(
                path.clone(),
                "an env entry must be exactly one of {name, value}, {fromRef} or {name, refValue}",
                "e.g. `- {name: LOG_LEVEL, value: debug}`, `- fromRef: my-envstore` or `- {name: TOKEN, refValue: {name: my-secrets, key: token}}`",
            )),
        }
        if let Some(name) = &e.name {
            if !is_env_name(name) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("invalid environment variable name {name:?}"),
                    "use [A-Za-z_][A-Za-z0-9_]*",
                ));
            } else if RESERVED_ENV.contains(&name.as_str()) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("{name} is set by the daemon for every agent"),
                    "choose another name",
                ));
            } else if !names.insert(name.clone()) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("{name} is set twice"),
                    "keep one entry",
                ));
            }
        }
    }
}

fn workflow_problems(w: &WorkflowSpec, out: &mut Vec<Problem>) {
    if w.steps.is_empty() {
        out.push(problem_hint(
            "spec.steps",
            "a workflow needs at least one step",
            "add a step with `id` and `template` or `command`",
        ));
    }
    let mut ids = HashSet::new();
    for (i, s) in w.steps.iter().enumerate() {
        let p = |f: &str| format!("spec.steps[{i}].{f}");
        let id_ok = !s.id.is_empty()
            && s.id.len() <= MAX_NAME
            && s.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !id_ok {
            out.push(problem_hint(
                p("id"),
                format!("invalid step id {:?}", s.id),
                "use 1-63 characters of letters, digits, '_' and '-'",
            ));
        } else if !ids.insert(s.id.as_str()) {
            out.push(problem_hint(
                p("id"),
                format!("duplicate step id {:?}", s.id),
                "step ids must be unique within a workflow",
            ));
        }
        match (&s.template, &s.command) {
            (Some(_), Some(_)) => out.push(problem_hint(
                format!("spec.steps[{i}]"),
                "a step has both `template` and `command`",
                "keep one: `template` runs an agent, `command` runs a program directly",
            )),
            (None, None) => out.push(problem_hint(
                format!("spec.steps[{i}]"),
                "a step needs `template` or `command`",
                "add `template: <StepTemplate>` (with `required_capability`) or `command: <program and arguments>`",
            )),
            (Some(_), None) if s.required_capability.is_none() => out.push(problem_hint(
                p("required_capability"),
                "a template step needs `required_capability` to pick its agent",
                "add `required_capability:` with a capability of one of your agents",
            )),
            (None, Some(c)) => match render::split_command(c) {
                Err(e) => out.push(problem(p("command"), e.to_string())),
                Ok(argv) => {
                    for name in argv.iter().flat_map(|a| render::placeholders(a)) {
                        if !render::is_prompt_placeholder(name) {
                            out.push(problem_hint(p("command"), format!("unknown placeholder {{{name}}}"), "use a prompt placeholder such as {goal} or {prev_stdout}"));
                        }
                    }
                }
            },
            (Some(_), None) => {}
        }
        if s.scope == StepScope::Item {
            out.push(problem_hint(
                p("scope"),
                "scope `item` is reserved and not supported yet",
                "use `scope: task`",
            ));
        }
        if s.timeout_secs == Some(0) {
            out.push(problem_hint(
                p("timeout_secs"),
                "timeout_secs is 0",
                "use a positive number of seconds or leave it out",
            ));
        }
        super::retry::step_timing(s, &format!("spec.steps[{i}]"), out);
        if s.retries.is_some_and(|r| r > 100) {
            out.push(problem_hint(
                p("retries"),
                "more than 100 retries",
                "use at most 100",
            ));
        }
    }
    if w.max_parallel == 0 {
        out.push(problem_hint(
            "spec.max_parallel",
            "max_parallel is 0",
            "use 1 or more",
        ));
    }
    match (w.loop_.mode, w.loop_.max_cycles) {
        (_, Some(0)) => out.push(problem_hint(
            "spec.loop.max_cycles",
            "max_cycles is 0",
            "use 1 or more",
        )),
        (LoopMode::Fixed, None) => out.push(problem_hint(
            "spec.loop.max_cycles",
            "loop mode `fixed` needs max_cycles",
            "add `max_cycles: N`",
        )),
        (LoopMode::Once, Some(n)) if n > 1 => out.push(problem_hint(
            "spec.loop.max_cycles",
            "loop mode `once` runs one cycle",
            "use `mode: fixed` to run several cycles",
        )),
        _ => {}
    }
}

fn trigger_problems(t: &TriggerSpec, out: &mut Vec<Problem>) {
    match (&t.cron, &t.event) {
        (Some(_), Some(_)) => out.push(problem_hint(
            "spec",
            "a trigger has both `cron` and `event`",
            "keep one: split it into two triggers",
        )),
        (None, None) => out.push(problem_hint(
            "spec",
            "a trigger needs `cron` or `event`",
            "add `cron: {schedule: \"0 2 * * 0\"}` or `event: {source: webhook, webhook: {...}}`",
        )),
        (Some(c), None) => {
            if let Err(e) = Schedule::parse(&c.schedule, c.timezone.as_deref()) {
                let path = if e.to_string().contains("time zone") {
                    "spec.cron.timezone"
                } else {
                    "spec.cron.schedule"
                };
                out.push(problem(path, e.to_string()));
            }
        }
        (None, Some(ev)) => {
            event_problems(ev, out);
            if t.starting_deadline_seconds.is_some() {
                out.push(problem_hint(
                    "spec.startingDeadlineSeconds",
                    "startingDeadlineSeconds applies to cron triggers only",
                    "remove it",
                ));
            }
        }
    }
}

fn event_problems(ev: &EventSpec, out: &mut Vec<Problem>) {
    let w = &ev.webhook;
    if let Some(s) = &w.scheme
        && let Err(e) = Scheme::parse(s)
    {
        out.push(problem("spec.event.webhook.scheme", e.to_string()));
    }
    if let Some(h) = &w.signature_header {
        let token = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            out.push(problem_hint(
                "spec.event.webhook.signatureHeader",
                format!("{h:?} is not a valid HTTP header name"),
                "use a header name such as X-Hub-Signature-256",
            ));
        }
    }
    if w.tolerance_seconds == Some(0) {
        out.push(problem_hint(
            "spec.event.webhook.toleranceSeconds",
            "toleranceSeconds is 0",
            "use a positive number of seconds (300 is usual)",
        ));
    }
    if w.secret.keys.as_ref().is_some_and(Vec::is_empty) {
        out.push(problem_hint(
            "spec.event.webhook.secret.keys",
            "keys is an empty list, so no request could ever verify",
            "list the store's keys to try, or leave `keys` out to try every key",
        ));
    }
    if let Some(c) = ev.filter.as_ref().and_then(|f| f.condition.as_ref()) {
        if c.trim().is_empty() {
            out.push(problem_hint(
                "spec.event.filter.condition",
                "condition is empty",
                "remove it or write a CEL expression",
            ));
        } else if let Err(e) = crate::domain::filter::Filter::compile(c) {
            out.push(problem_hint(
                "spec.event.filter.condition",
                e,
                "write a CEL expression over `payload`, e.g. payload.type == 'event_callback'",
            ));
        }
    }
}
