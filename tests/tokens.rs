//! API token refresh with the `oauth2` provider (issue 15, part 4), end to end against a fake
//! OAuth 2.0 platform on loopback. The fake issues 3-second access tokens and a new refresh
//! token on every refresh, each refresh token good for one use (Slack's token rotation does
//! the same with 12-hour tokens); it answers refusals either as Slack does (HTTP 200,
//! `{"ok": false, "error": …}`) or as RFC 6749 says (HTTP 400, `invalid_grant`). Agents started
//! every second by a cron trigger print when they ran and a hash of the token they were given;
//! the test checks each against the tokens the platform issued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use orchestrator::domain::manifest::fingerprint;
use sha2::Digest;

use crate::common::{TestDaemon, eventually};
use crate::fake_http::{FakeServer, Request};

pub(crate) const CLIENT_ID: &str = "4711.0815";
pub(crate) const CLIENT_SECRET: &str = "client-secret-7c1e0a9f3b5d";

/// The fake platform's state (also the Slack of `integrations.rs`).
pub(crate) struct Platform {
    lifetime: chrono::Duration,
    /// Refusals as Slack sends them (HTTP 200, `ok: false`), else as RFC 6749 says.
    slack: bool,
    /// The client authenticates with HTTP Basic (else with form fields).
    basic: bool,
    /// Refresh tokens not used yet.
    fresh: HashSet<String>,
    /// Refresh tokens used once already.
    spent: HashSet<String>,
    /// Every access token issued, by the hex SHA-256 of its value: (issued, expires).
    issued: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    /// The newest access and refresh token.
    pub(crate) last: (String, String),
    pub(crate) refreshes: u64,
    refused: Vec<String>,
    n: u64,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl Platform {
    pub(crate) fn new(lifetime_secs: i64, slack: bool, basic: bool) -> Arc<Mutex<Platform>> {
        Arc::new(Mutex::new(Platform {
            lifetime: chrono::Duration::seconds(lifetime_secs),
            slack,
            basic,
            fresh: HashSet::new(),
            spent: HashSet::new(),
            issued: HashMap::new(),
            last: (String::new(), String::new()),
            refreshes: 0,
            refused: Vec::new(),
            n: 0,
        }))
    }

    /// A new access and refresh token, as an authorization (or a refresh) hands them out.
    pub(crate) fn grant(&mut self) -> (String, String) {
        self.n += 1;
        let salt = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let access = format!("xoxe.xoxp-1-{}-{salt:x}", self.n);
        let refresh = format!("xoxe-1-{}-{salt:x}", self.n);
        let now = Utc::now();
        self.issued
            .insert(sha256_hex(&access), (now, now + self.lifetime));
        self.fresh.insert(refresh.clone());
        self.last = (access.clone(), refresh.clone());
        (access, refresh)
    }

    /// Every refresh token stops working (the user revoked the app).
    fn revoke(&mut self) {
        let fresh: Vec<String> = self.fresh.drain().collect();
        self.spent.extend(fresh);
    }

    fn refuse(&mut self, error: &str) -> (u16, String) {
        self.refused.push(error.to_owned());
        if self.slack {
            (200, format!(r#"{{"ok": false, "error": "{error}"}}"#))
        } else {
            (
                400,
                format!(
                    r#"{{"error": "{error}", "error_description": "the refresh token is not valid"}}"#
                ),
            )
        }
    }

    pub(crate) fn handle(&mut self, req: &Request) -> (u16, String) {
        if req.method != "POST" || req.path != "/api/oauth.v2.access" {
            return (404, r#"{"ok": false, "error": "unknown_method"}"#.into());
        }
        let (id, secret) = if self.basic {
            let creds = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let (id, secret) = creds.split_once(':').unwrap_or(("", ""));
            (
                crate::fake_http::url_decode(id),
                crate::fake_http::url_decode(secret),
            )
        } else {
            (
                req.field("client_id").unwrap_or_default(),
                req.field("client_secret").unwrap_or_default(),
            )
        };
        if id != CLIENT_ID || secret != CLIENT_SECRET {
            return self.refuse("invalid_client");
        }
        if req.field("grant_type").as_deref() != Some("refresh_token") {
            return self.refuse("unsupported_grant_type");
        }
        let presented = req.field("refresh_token").unwrap_or_default();
        if !self.fresh.remove(&presented) {
            return self.refuse(if self.slack {
                "invalid_refresh_token"
            } else {
                "invalid_grant"
            });
        }
        self.spent.insert(presented);
        self.refreshes += 1;
        let (access, refresh) = self.grant();
        let secs = self.lifetime.num_seconds();
        let body = if self.slack {
            format!(
                r#"{{"ok": true, "app_id": "A0KRD7HC3", "access_token": "{access}", "token_type": "user", "scope": "chat:write", "expires_in": {secs}, "refresh_token": "{refresh}", "team": {{"id": "T9TK3CUKW"}}}}"#
            )
        } else {
            format!(
                r#"{{"access_token": "{access}", "token_type": "Bearer", "expires_in": {secs}, "refresh_token": "{refresh}"}}"#
            )
        };
        (200, body)
    }
}

fn start_platform(p: &Arc<Mutex<Platform>>) -> FakeServer {
    let p = p.clone();
    FakeServer::start(move |req| p.lock().expect("lock").handle(req))
}

/// The client's store and the token's store, with the tokens an authorization handed out.
fn apply_stores(d: &TestDaemon, fake: &FakeServer, access: &str, refresh: &str, extra: &str) {
    d.apply(&format!(
        r#"apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: oauth-client}}
spec: {{data: {{client_id: "{CLIENT_ID}", client_secret: "{CLIENT_SECRET}"}}}}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: api-token}}
spec:
  data: {{access_token: "{access}", refresh_token: "{refresh}"}}
  rotation:
    key: access_token
    provider: oauth2
    settings: {{tokenUrl: "{}/api/oauth.v2.access"{extra}}}
    credentials: {{fromRef: oauth-client, key: client_secret}}
"#,
        fake.url()
    ));
}

fn describe(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["describe", "secretstore", "api-token", "-o", "json"])
        .json()
}

fn key_fingerprint(desc: &serde_json::Value, key: &str) -> Option<String> {
    desc["keys"]
        .as_array()?
        .iter()
        .find(|k| k["key"] == key)
        .and_then(|k| k["fingerprint"].as_str().map(str::to_owned))
}

/// The agents, the workflow they run and the cron trigger that starts one every second.
const AGENTS: &str = r#"apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: token-user}
spec:
  command: "sh -c 'printf \"at=%s hash=%s\\n\" \"$(date +%s%N)\" \"$(printf %s \"$API_TOKEN\" | sha256sum | cut -c1-64)\"'"
  capabilities: [call-api]
  promptDelivery: env
  env: [{name: API_TOKEN, refValue: {name: api-token, key: access_token}}]
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: call}
spec: {prompt: "call the API"}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: use-token}
spec:
  steps: [{id: call, template: call, required_capability: call-api}]
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: every-second}
spec:
  cron: {schedule: "* * * * * *"}
  concurrencyPolicy: Allow
  action: {workflow: use-token, workspace: default}
"#;

#[test]
fn agents_started_every_second_always_get_an_unexpired_token() {
    let platform = Platform::new(3, true, true);
    let (access, refresh) = platform.lock().expect("lock").grant();
    let fake = start_platform(&platform);
    let d = TestDaemon::start();
    d.apply(&d.workspace());
    apply_stores(&d, &fake, &access, &refresh, "");

    // The expiry of the pasted token is not known: the daemon refreshes it at once.
    let first = eventually(Duration::from_secs(20), "the first refresh", || {
        let desc = describe(&d);
        desc["token"]["expiresAt"].is_string().then_some(desc)
    });
    assert!(platform.lock().expect("lock").refreshes >= 1);
    assert_eq!(first["token"]["key"], "access_token");
    assert_eq!(first["token"]["provider"], "oauth2");

    d.apply(AGENTS);
    let started = Instant::now();
    let tasks = eventually(Duration::from_secs(90), "20 s of agents", || {
        let v = d
            .cli(&["task", "list", "--trigger", "every-second", "-o", "json"])
            .json();
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        (started.elapsed() >= Duration::from_secs(20) && tasks.len() >= 15).then_some(tasks)
    });
    d.cli(&["trigger", "suspend", "every-second"]).ok();
    eprintln!(
        "{} agents in {:.1} s",
        tasks.len(),
        started.elapsed().as_secs_f64()
    );

    let mut seen = HashSet::new();
    for t in &tasks {
        let id = t["id"].to_string();
        let task = eventually(Duration::from_secs(30), "the task to finish", || {
            let v = d.cli(&["task", "show", &id, "-o", "json"]).json();
            let s = v["task"]["state"].as_str().unwrap_or("").to_owned();
            (s != "running" && s != "pending").then_some(v)
        });
        assert_eq!(task["task"]["state"], "succeeded", "{task:#}");
        let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
        let line = logs
            .lines()
            .find(|l| l.contains("at=") && l.contains("hash="))
            .unwrap_or_else(|| panic!("task {id} printed nothing: {logs}"));
        let at: i64 = line
            .split("at=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no time in {line:?}"));
        let at = DateTime::from_timestamp_nanos(at);
        let hash = line
            .split("hash=")
            .nth(1)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        let p = platform.lock().expect("lock");
        let (issued, expires) = p
            .issued
            .get(&hash)
            .unwrap_or_else(|| panic!("task {id} got a token the platform never issued"));
        assert!(
            at < *expires,
            "task {id} ran at {at} with a token that expired at {expires} (issued {issued})"
        );
        seen.insert(hash);
    }
    let p = platform.lock().expect("lock");
    assert!(
        p.refreshes >= 6,
        "only {} refreshes in 20 s of 3-second tokens",
        p.refreshes
    );
    assert!(p.refused.is_empty(), "refused: {:?}", p.refused);
    assert!(
        seen.len() >= 3,
        "the agents saw only {} tokens over 20 s",
        seen.len()
    );
    let (last_access, last_refresh) = p.last.clone();
    drop(p);

    // The store holds the newest pair; describe shows the expiry and the next refresh, and
    // the history shows each refresh with its fingerprints.
    let desc = eventually(
        Duration::from_secs(10),
        "the newest token in the store",
        || {
            let desc = describe(&d);
            let p = platform.lock().expect("lock");
            (key_fingerprint(&desc, "access_token") == Some(fingerprint(&p.last.0))).then_some(desc)
        },
    );
    let expires = desc["token"]["expiresAt"].as_str().expect("expiresAt");
    assert!(desc["token"]["issuedAt"].is_string(), "{desc:#}");
    assert!(
        key_fingerprint(&desc, "access_token.expires_at").is_some(),
        "{desc:#}"
    );
    let rotations = desc["rotations"].as_array().expect("rotations");
    assert!(rotations.len() >= 5, "{rotations:#?}");
    for r in rotations {
        assert_eq!(r["provider"], "oauth2");
        assert_eq!(r["stage"], "done", "{r:#}");
        assert!(r["newFingerprint"].is_string());
    }
    assert!(
        rotations[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("refresh token was rotated"),
        "{:#}",
        rotations[0]
    );
    let text = d
        .cli(&["describe", "secretstore", "api-token"])
        .ok()
        .to_owned();
    assert!(
        text.contains("Token:       access_token via oauth2"),
        "{text}"
    );
    assert!(text.contains("expires at:"), "{text}");
    assert!(text.contains("refreshes at:"), "{text}");
    assert!(text.contains("via oauth2: done"), "{text}");
    let _ = expires;

    // No value is anywhere to be read.
    let log = d.log();
    for secret in [&last_access, &last_refresh, &access, &refresh] {
        for (what, out) in [("describe", &text), ("daemon log", &log)] {
            assert!(!out.contains(secret.as_str()), "a token is in the {what}");
        }
    }
    assert!(
        !log.contains(CLIENT_SECRET),
        "the client secret is in the log"
    );

    // Slack refuses a revoked refresh token with HTTP 200 and `"ok": false`: a refusal all the
    // same, with the advice, and the values stay.
    platform.lock().expect("lock").revoke();
    // The next scheduled refresh is refused (none can succeed after that).
    eventually(Duration::from_secs(10), "a refused refresh", || {
        (!platform.lock().expect("lock").refused.is_empty()).then_some(())
    });
    let err = d.cli(&["secret", "rotate", "api-token"]).fails().to_owned();
    assert!(
        err.contains("answered HTTP 200: invalid_refresh_token"),
        "{err}"
    );
    assert!(err.contains("re-authorize the app"), "{err}");
    let (kept, _) = platform.lock().expect("lock").last.clone();
    assert_eq!(
        key_fingerprint(&describe(&d), "access_token"),
        Some(fingerprint(&kept))
    );
}

#[test]
fn a_revoked_refresh_token_fails_loudly_keeps_the_old_values_and_recovers_when_replaced() {
    // RFC 6749 answers this time (HTTP 400 invalid_grant), the client in the form body.
    let platform = Platform::new(3, false, false);
    let (access, refresh) = platform.lock().expect("lock").grant();
    let fake = start_platform(&platform);
    let d = TestDaemon::start();
    apply_stores(&d, &fake, &access, &refresh, ", clientAuth: body");
    eventually(Duration::from_secs(20), "the first refresh", || {
        (platform.lock().expect("lock").refreshes >= 1).then_some(())
    });

    // The user revokes the app: the next scheduled refresh is refused.
    platform.lock().expect("lock").revoke();
    let desc = eventually(Duration::from_secs(20), "a refused refresh", || {
        let desc = describe(&d);
        (desc["token"]["state"] == "blocked").then_some(desc)
    });
    let failed = &desc["rotations"][0];
    assert_eq!(failed["stage"], "failed", "{desc:#}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    for want in [
        "answered HTTP 400: invalid_grant",
        "re-authorize the app",
        "orchestrator secret set api-token refresh_token",
        "the old values are kept",
        "not retried until",
    ] {
        assert!(reason.contains(want), "{want:?} not in {reason:?}");
    }
    // The store still holds the last pair the platform issued.
    let (kept_access, kept_refresh) = platform.lock().expect("lock").last.clone();
    assert_eq!(
        key_fingerprint(&desc, "access_token"),
        Some(fingerprint(&kept_access))
    );
    assert_eq!(
        key_fingerprint(&desc, "refresh_token"),
        Some(fingerprint(&kept_refresh))
    );
    assert!(d.log().contains("token refresh failed"));
    let text = d
        .cli(&["describe", "secretstore", "api-token"])
        .ok()
        .to_owned();
    assert!(text.contains("(blocked)"), "{text}");

    // On demand it fails the same way, with the same advice, and exit status 1.
    let err = d.cli(&["secret", "rotate", "api-token"]).fails().to_owned();
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(err.contains("re-authorize"), "{err}");
    assert!(!err.contains(&kept_refresh) && !err.contains(&kept_access));
    assert_eq!(
        key_fingerprint(&describe(&d), "refresh_token"),
        Some(fingerprint(&kept_refresh))
    );

    // The operator re-authorizes and stores the new refresh token: refreshes go on.
    let (_, renewed) = platform.lock().expect("lock").grant();
    let before = platform.lock().expect("lock").refreshes;
    d.cli_stdin(&["secret", "set", "api-token", "refresh_token"], &renewed)
        .ok();
    let desc = eventually(Duration::from_secs(20), "refreshes again", || {
        let desc = describe(&d);
        (platform.lock().expect("lock").refreshes > before && desc["token"]["state"] == "scheduled")
            .then_some(desc)
    });
    assert_eq!(desc["rotations"][0]["stage"], "done", "{desc:#}");
}

#[test]
fn bad_oauth2_settings_are_refused_at_apply() {
    let d = TestDaemon::start();
    let run = d.cli_stdin(
        &["apply", "-f", "-"],
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: t}\nspec:\n  data: {access_token: a}\n  rotation: {key: access_token, provider: oauth2, settings: {tokenUrl: \"ftp://x\", refreshBefore: soon, clientAuth: header}}\n",
    );
    let err = run.fails();
    for want in [
        "tokenUrl must be an http(s) URL",
        "refreshBefore must be a positive number of seconds",
        "clientAuth must be `basic` or `body`",
        "oauth2 rotation needs credentials",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(d.cli(&["get", "secretstore", "t"]).code != 0);
    let run = d.cli_stdin(
        &["apply", "-f", "-"],
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: g}\nspec:\n  rotation: {key: token, provider: github-app, settings: {installationId: abc, refreshBefore: 0}}\n",
    );
    let err = run.fails();
    for want in [
        "missing setting `appId`",
        "installationId must be a number",
        "refreshBefore must be a positive number",
        "github-app rotation needs credentials with the App's private key",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn the_readme_flow_declares_the_keys_sets_the_values_and_the_token_refreshes() {
    let platform = Platform::new(3600, true, true);
    let (access, refresh) = platform.lock().expect("lock").grant();
    let fake = start_platform(&platform);
    let d = TestDaemon::start();
    // The bundle holds no secret: every key is declared with `{keep: true}`.
    let bundle = format!(
        r#"apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: oauth-client}}
spec:
  data: {{client_id: {{keep: true}}, client_secret: {{keep: true}}}}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: api-token}}
spec:
  data: {{access_token: {{keep: true}}, refresh_token: {{keep: true}}}}
  rotation:
    key: access_token
    provider: oauth2
    settings: {{tokenUrl: "{}/api/oauth.v2.access"}}
    credentials: {{fromRef: oauth-client, key: client_secret}}
"#,
        fake.url()
    );
    d.apply(&bundle);
    for (store, key, value) in [
        ("oauth-client", "client_id", CLIENT_ID),
        ("oauth-client", "client_secret", CLIENT_SECRET),
        ("api-token", "access_token", access.as_str()),
        ("api-token", "refresh_token", refresh.as_str()),
    ] {
        d.cli_stdin(&["secret", "set", store, key], value).ok();
    }
    let desc = eventually(Duration::from_secs(20), "the first refresh", || {
        let desc = describe(&d);
        (desc["token"]["state"] == "scheduled" && desc["token"]["expiresAt"].is_string())
            .then_some(desc)
    });
    let (new_access, new_refresh) = platform.lock().expect("lock").last.clone();
    assert_ne!(new_access, access);
    assert_eq!(
        key_fingerprint(&desc, "access_token"),
        Some(fingerprint(&new_access))
    );
    // The bundle applied again keeps the refreshed pair and its expiry.
    d.apply(&bundle);
    let again = describe(&d);
    assert_eq!(
        key_fingerprint(&again, "refresh_token"),
        Some(fingerprint(&new_refresh))
    );
    assert_eq!(again["token"]["expiresAt"], desc["token"]["expiresAt"]);
}
