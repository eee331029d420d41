//! The integration bundles of `manifests/integrations/` (issue 16, item 1), each applied as it is
//! to a fresh daemon, its secret set the way README.md's "Integrations" section says, and driven
//! with deliveries in its platform's real format: the platform's header names and body shapes
//! (GitHub push and pull_request JSON, a Slack event_callback, slash-command form and
//! interactivity form, a LINE delivery, a Stripe Event, a Standard Webhooks message), signed the
//! platform's way by this file (HMAC computed here, not with the daemon's own signer). Each test
//! checks that the bundle's script agent ran with the expected `{payload}` (it prints it), that
//! the filter lets through what the README says and no more, and that a wrong signature gets 401.
//! The token-refresh bundle is applied, then pointed at fake Slack and GitHub servers, and each
//! token is refreshed once and used by its agent.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use orchestrator::domain::manifest::fingerprint;
use sha2::Sha256;

use crate::common::{TestDaemon, eventually, manifests_dir};
use crate::fake_http::FakeServer;

// ---------------------------------------------------------------------------------------------
// The platforms' signatures, computed here.

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// What GitHub sends beside a JSON body: `X-Hub-Signature-256: sha256=<hex>`.
fn github_headers(secret: &str, body: &str, event: &str, delivery: &str) -> Vec<(String, String)> {
    let sig = hex::encode(hmac_sha256(secret.as_bytes(), body.as_bytes()));
    vec![
        ("User-Agent".into(), "GitHub-Hookshot/7a1b2c3".into()),
        ("X-GitHub-Event".into(), event.into()),
        ("X-GitHub-Delivery".into(), delivery.into()),
        ("X-GitHub-Hook-ID".into(), "123456789".into()),
        ("X-Hub-Signature-256".into(), format!("sha256={sig}")),
        ("Content-Type".into(), "application/json".into()),
    ]
}

/// Slack's v0 signature over `v0:{timestamp}:{body}`.
fn slack_headers(secret: &str, body: &str, timestamp: i64, form: bool) -> Vec<(String, String)> {
    let base = format!("v0:{timestamp}:{body}");
    let sig = hex::encode(hmac_sha256(secret.as_bytes(), base.as_bytes()));
    let content_type = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    vec![
        (
            "User-Agent".into(),
            "Slackbot 1.0 (+https://api.slack.com/robots)".into(),
        ),
        ("X-Slack-Request-Timestamp".into(), timestamp.to_string()),
        ("X-Slack-Signature".into(), format!("v0={sig}")),
        ("Content-Type".into(), content_type.into()),
    ]
}

/// LINE's `x-line-signature`: base64 HMAC-SHA256 of the body with the channel secret.
fn line_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    let sig = BASE64.encode(hmac_sha256(secret.as_bytes(), body.as_bytes()));
    vec![
        ("User-Agent".into(), "LineBotWebhook/2.0".into()),
        ("x-line-signature".into(), sig),
        (
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ),
    ]
}

/// Stripe's `v1` signature over `{t}.{body}`, keyed with the whole `whsec_…` string.
fn stripe_v1(secret: &str, body: &str, t: i64) -> String {
    hex::encode(hmac_sha256(
        secret.as_bytes(),
        format!("{t}.{body}").as_bytes(),
    ))
}

fn stripe_headers(signature: String) -> Vec<(String, String)> {
    vec![
        (
            "User-Agent".into(),
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
        ),
        ("Stripe-Signature".into(), signature),
        (
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ),
    ]
}

/// Standard Webhooks: `v1,<base64>` over `{id}.{timestamp}.{body}`, keyed with the base64
/// after `whsec_`.
fn standard_headers(secret: &str, id: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let sig = BASE64.encode(hmac_sha256(
        &key,
        format!("{id}.{timestamp}.{body}").as_bytes(),
    ));
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
        ("Content-Type".into(), "application/json".into()),
    ]
}

/// `application/x-www-form-urlencoded` encoding of one value, as browsers and Slack write it.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------------
// The daemon side.

/// The answer to a POST: status, headers (names lowercased) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The task an accepted delivery created: from the JSON body, or the header of a Slack
    /// form's empty answer.
    #[track_caller]
    fn task(&self) -> u64 {
        self.json()["task"]
            .as_u64()
            .or_else(|| self.header("x-orchestrator-task")?.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no task in {} {:?} {}",
                    self.status, self.headers, self.body
                )
            })
    }
}

/// POST over a fresh connection (`Connection: close`), the answer read to the end.
fn post(addr: SocketAddr, path: &str, headers: &[(String, String)], body: &str) -> Answer {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no answer to POST {path}: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn bundle(name: &str) -> PathBuf {
    manifests_dir().join("integrations").join(name)
}

/// `orchestrator apply -f manifests/integrations/NAME/` (also with `--dry-run`).
fn apply_bundle(d: &TestDaemon, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["apply", "-f", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    d.cli(&args).ok().to_owned()
}

/// `orchestrator secret set STORE KEY < value`, as the README says.
fn secret_set(d: &TestDaemon, store: &str, key: &str, value: &str) {
    d.cli_stdin(&["secret", "set", store, key], &format!("{value}\n"))
        .ok();
}

/// What the bundle's script printed (the payload line checked already).
struct Printed {
    lines: Vec<String>,
}

/// Runs the delivery's task to its end and returns what its script agent printed, after
/// checking that the task succeeded, that `agent` ran it, and that the task's payload is
/// `want` (the text `{payload}` gives it).
#[track_caller]
fn ran_with(d: &TestDaemon, id: u64, agent: &str, want: &str) -> Printed {
    let detail = d.finished_task(id);
    assert_eq!(detail["task"]["state"], "succeeded", "{detail:#}");
    assert_eq!(detail["steps"][0]["agent"], agent, "{detail:#}");
    assert_eq!(detail["payload"].as_str(), Some(want), "{detail:#}");
    let logs = d.cli(&["task", "logs", &id.to_string()]).ok().to_owned();
    let lines: Vec<String> = logs
        .lines()
        .filter_map(|l| l.split_once(" out ").map(|(_, rest)| rest.to_owned()))
        .collect();
    let printed = lines
        .iter()
        .find_map(|l| l.strip_prefix("payload: "))
        .unwrap_or_else(|| panic!("the agent printed no payload:\n{logs}"))
        .to_owned();
    assert_eq!(printed, want, "the payload the agent got");
    Printed { lines }
}

/// Whether `jq` is on PATH (the scripts' summaries need it; the payload line does not).
fn has_jq() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v jq"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[track_caller]
fn assert_summary(printed: &Printed, want: &str) {
    if has_jq() {
        assert!(
            printed.lines.iter().any(|l| l == want),
            "no summary {want:?} in {:#?}",
            printed.lines
        );
    }
}

fn tasks_of(d: &TestDaemon, trigger: &str) -> usize {
    d.cli(&["task", "list", "--trigger", trigger, "-o", "json"])
        .json()["tasks"]
        .as_array()
        .map_or(0, Vec::len)
}

/// `apply` created `store` with `key` pending, and said how to set it.
#[track_caller]
fn assert_pending(out: &str, store: &str, key: &str) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("secretstore/{store} created:")))
        .unwrap_or_else(|| panic!("secretstore/{store} not created:\n{out}"));
    let want = format!("key {key} pending (no value yet: orchestrator secret set {store} {key})");
    assert!(line.contains(&want), "{want:?} missing:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// The webhook bundles.

const GITHUB_SECRET: &str = "gh-webhook-secret-4f1c9a7e";

fn github_push(reference: &str, deleted: bool) -> String {
    format!(
        r#"{{"ref":"{reference}","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","repository":{{"id":1296269,"name":"Hello-World","full_name":"octocat/Hello-World","private":false,"default_branch":"main"}},"pusher":{{"name":"octocat","email":"octocat@github.com"}},"sender":{{"login":"octocat","id":1}},"created":false,"deleted":{deleted},"forced":false,"base_ref":null,"compare":"https://github.com/octocat/Hello-World/compare/6113728f27ae...59b20b8d5c6f","commits":[{{"id":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","tree_id":"f9d2a07e9488b91af2641b26b9407fe22a451433","distinct":true,"message":"Fix the build on Windows","timestamp":"2026-05-01T12:00:00+09:00","url":"https://github.com/octocat/Hello-World/commit/59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","author":{{"name":"Mona Lisa","email":"mona@github.com","username":"octocat"}},"committer":{{"name":"GitHub","email":"noreply@github.com","username":"web-flow"}},"added":[],"removed":[],"modified":["build.ps1"]}}],"head_commit":{{"id":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","message":"Fix the build on Windows"}}}}"#
    )
}

fn github_pull_request(action: &str, base: &str) -> String {
    format!(
        r#"{{"action":"{action}","number":42,"pull_request":{{"url":"https://api.github.com/repos/octocat/Hello-World/pulls/42","id":1,"number":42,"state":"open","title":"Add a retry to the uploader","user":{{"login":"hubot","id":2}},"body":"Retries the upload three times.","head":{{"label":"hubot:retry","ref":"retry","sha":"a10867b14bb761a232cd80139fbd4c0d33264240"}},"base":{{"label":"octocat:{base}","ref":"{base}","sha":"6113728f27ae82c7b1a177c8d03f9e96e0adf246"}},"draft":false,"merged":false}},"repository":{{"id":1296269,"name":"Hello-World","full_name":"octocat/Hello-World"}},"sender":{{"login":"hubot","id":2}}}}"#
    )
}

#[test]
fn the_github_bundle_takes_pushes_to_main_and_pull_requests_against_it() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let dir = bundle("github");
    let out = apply_bundle(&d, &dir, &[]);
    assert_pending(&out, "github-webhook", "secret");
    for line in [
        "trigger/github created",
        "workflow/github-delivery created",
        "agent/github-script created",
        "agent/github-claude created",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let push = github_push("refs/heads/main", false);
    // Until the secret is set nothing verifies.
    let h = github_headers(GITHUB_SECRET, &push, "push", "d-0");
    assert_eq!(post(a, "/webhook/github", &h, &push).status, 401);

    secret_set(&d, "github-webhook", "secret", GITHUB_SECRET);
    // A push to main starts the task; the script gets the JSON GitHub sent, byte for byte.
    let h = github_headers(
        GITHUB_SECRET,
        &push,
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    );
    let answer = post(a, "/webhook/github", &h, &push);
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (202, Some("accepted")),
        "{}",
        answer.body
    );
    let printed = ran_with(&d, answer.task(), "github-script", &push);
    assert_summary(
        &printed,
        "push to refs/heads/main of octocat/Hello-World: 1 commit(s), head 59b20b8d5c6f by octocat",
    );
    // GitHub's redelivery of the same delivery starts nothing.
    let again = post(a, "/webhook/github", &h, &push);
    assert_eq!(
        (again.status, again.json()["status"].as_str()),
        (202, Some("duplicate"))
    );

    // A pull request opened against main.
    let pr = github_pull_request("opened", "main");
    let h = github_headers(
        GITHUB_SECRET,
        &pr,
        "pull_request",
        "9a7f0e12-cc78-11e3-8a1b-4c9367dc0958",
    );
    let answer = post(a, "/webhook/github", &h, &pr);
    assert_eq!(answer.status, 202, "{}", answer.body);
    let printed = ran_with(&d, answer.task(), "github-script", &pr);
    assert_summary(
        &printed,
        "pull request #42 opened: Add a retry to the uploader (retry -> main) by hubot",
    );

    // The same hook with content type application/x-www-form-urlencoded: `payload=` is the JSON.
    let pr = github_pull_request("synchronize", "main");
    let body = form(&[("payload", &pr)]);
    let mut h = github_headers(GITHUB_SECRET, &body, "pull_request", "b3c1-form");
    h.retain(|(k, _)| k != "Content-Type");
    h.push((
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let answer = post(a, "/webhook/github", &h, &body);
    assert_eq!(answer.status, 202, "{}", answer.body);
    ran_with(&d, answer.task(), "github-script", &pr);

    // What the filter leaves out: the ping, another branch, a tag, a deleted main, a pull
    // request that was closed or is against another base.
    let ping = r#"{"zen":"Design for failure.","hook_id":123456789,"hook":{"type":"Repository","id":123456789,"events":["push","pull_request"],"config":{"content_type":"json","insecure_ssl":"0","url":"https://hooks.example.com/webhook/github"}},"repository":{"id":1296269,"full_name":"octocat/Hello-World"},"sender":{"login":"octocat","id":1}}"#;
    let before = tasks_of(&d, "github");
    for (n, (event, body)) in [
        ("ping", ping.to_owned()),
        ("push", github_push("refs/heads/feature", false)),
        ("push", github_push("refs/tags/v1.0.0", false)),
        ("push", github_push("refs/heads/main", true)),
        ("pull_request", github_pull_request("closed", "main")),
        ("pull_request", github_pull_request("opened", "release")),
    ]
    .into_iter()
    .enumerate()
    {
        let h = github_headers(GITHUB_SECRET, &body, event, &format!("filtered-{n}"));
        let answer = post(a, "/webhook/github", &h, &body);
        assert_eq!(
            (answer.status, answer.json()["status"].as_str()),
            (202, Some("filtered")),
            "{event} {n}: {}",
            answer.body
        );
    }
    assert_eq!(tasks_of(&d, "github"), before);

    // Wrongly signed: another secret, or a body changed after signing.
    let h = github_headers("not-the-secret", &push, "push", "w-1");
    assert_eq!(post(a, "/webhook/github", &h, &push).status, 401);
    let h = github_headers(GITHUB_SECRET, &push, "push", "w-2");
    let forged = push.replace("Fix the build", "Break the build");
    let answer = post(a, "/webhook/github", &h, &forged);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, r#"{"error":"unauthorized"}"#)
    );
    assert_eq!(tasks_of(&d, "github"), before);
    assert!(!d.log().contains(GITHUB_SECRET));
}

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[test]
fn the_slack_bundle_answers_url_verification_and_takes_mentions_commands_and_interactions() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let out = apply_bundle(&d, &bundle("slack"), &[]);
    assert_pending(&out, "slack-signing", "signing_secret");
    let now = || Utc::now().timestamp();

    // Saving the Request URL: Slack sends url_verification, answered with its challenge once
    // the signing secret verifies it (before that, 401).
    let verification = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let h = slack_headers(SLACK_SECRET, verification, now(), false);
    assert_eq!(
        post(a, "/webhook/slack-events", &h, verification).status,
        401
    );
    secret_set(&d, "slack-signing", "signing_secret", SLACK_SECRET);
    let h = slack_headers(SLACK_SECRET, verification, now(), false);
    let answer = post(a, "/webhook/slack-events", &h, verification);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let h = slack_headers("another-apps-secret", verification, now(), false);
    assert_eq!(
        post(a, "/webhook/slack-events", &h, verification).status,
        401
    );
    assert_eq!(tasks_of(&d, "slack-events"), 0);

    // An app_mention event.
    let event = r#"{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{"type":"app_mention","user":"U123ABC456","text":"<@U0LAN0Z89> is it everything a river should be?","ts":"1515449522.000016","channel":"C123ABC456","event_ts":"1515449522.000016"},"type":"event_callback","event_id":"Ev123ABC456","event_time":1515449522,"authorizations":[{"enterprise_id":null,"team_id":"T123ABC456","user_id":"U0LAN0Z89","is_bot":true,"is_enterprise_install":false}],"is_ext_shared_channel":false,"event_context":"4-eyJldCI6ImFwcF9tZW50aW9uIn0"}"#;
    let h = slack_headers(SLACK_SECRET, event, now(), false);
    let answer = post(a, "/webhook/slack-events", &h, event);
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (202, Some("accepted")),
        "{}",
        answer.body
    );
    let id = answer.task();
    let printed = ran_with(&d, id, "slack-script", event);
    assert_summary(
        &printed,
        "mention by U123ABC456 in C123ABC456: <@U0LAN0Z89> is it everything a river should be?",
    );
    let argv = d.finished_task(id)["steps"][0]["argv"].clone();
    assert_eq!(argv[2], "event", "{argv}");
    // Slack's retry of the event (same event_id, a new signature) starts nothing.
    let mut h = slack_headers(SLACK_SECRET, event, now(), false);
    h.push(("X-Slack-Retry-Num".into(), "1".into()));
    h.push(("X-Slack-Retry-Reason".into(), "http_timeout".into()));
    let answer = post(a, "/webhook/slack-events", &h, event);
    assert_eq!(answer.json()["status"], "duplicate", "{}", answer.body);
    // Another event type is filtered.
    let message = event
        .replace("\"type\":\"app_mention\"", "\"type\":\"message\"")
        .replace("Ev123ABC456", "Ev999");
    let h = slack_headers(SLACK_SECRET, &message, now(), false);
    assert_eq!(
        post(a, "/webhook/slack-events", &h, &message).json()["status"],
        "filtered"
    );
    assert_eq!(tasks_of(&d, "slack-events"), 1);

    // A slash command: a form, answered 200 with an empty body (an acknowledgment, no reply
    // message); the task gets the fields as a JSON object of strings.
    let command = form(&[
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0001"),
        ("team_domain", "example"),
        ("channel_id", "C2147483705"),
        ("channel_name", "deploys"),
        ("user_id", "U2147483697"),
        ("user_name", "ana"),
        ("command", "/agent"),
        ("text", "deploy web to prod & tell #ops"),
        ("api_app_id", "A123ABC456"),
        ("is_enterprise_install", "false"),
        ("response_url", "https://hooks.slack.com/commands/1234/5678"),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ]);
    let h = slack_headers(SLACK_SECRET, &command, now(), true);
    let answer = post(a, "/webhook/slack-commands", &h, &command);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, ""),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("x-orchestrator-status"), Some("accepted"));
    let id = answer.task();
    let detail = d.finished_task(id);
    let payload: serde_json::Value =
        serde_json::from_str(detail["payload"].as_str().expect("payload")).expect("JSON");
    assert_eq!(payload["command"], "/agent");
    assert_eq!(payload["text"], "deploy web to prod & tell #ops");
    assert_eq!(
        payload["response_url"],
        "https://hooks.slack.com/commands/1234/5678"
    );
    assert_eq!(payload["is_enterprise_install"], "false");
    let printed = ran_with(&d, id, "slack-script", &payload.to_string());
    assert_summary(
        &printed,
        "/agent deploy web to prod & tell #ops from ana in deploys",
    );
    assert_eq!(d.finished_task(id)["steps"][0]["argv"][2], "command");
    // Another command is filtered, still acknowledged with 200.
    let other = command.replace("%2Fagent", "%2Fweather");
    let h = slack_headers(SLACK_SECRET, &other, now(), true);
    let answer = post(a, "/webhook/slack-commands", &h, &other);
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(answer.header("x-orchestrator-status"), Some("filtered"));
    assert_eq!(tasks_of(&d, "slack-commands"), 1);

    // A button click: a form whose one field `payload` holds the JSON, which is the payload.
    let click = r#"{"type":"block_actions","user":{"id":"U2147483697","username":"ana","name":"ana","team_id":"T0001"},"api_app_id":"A123ABC456","token":"gIkuvaNzQIHg97ATvDxqgjtO","container":{"type":"message","message_ts":"1548261231.000200","channel_id":"C2147483705","is_ephemeral":false},"trigger_id":"12466734323.1395872398","team":{"id":"T0001","domain":"example"},"channel":{"id":"C2147483705","name":"deploys"},"response_url":"https://hooks.slack.com/actions/T0001/123/abc","actions":[{"action_id":"approve","block_id":"deploy-42","text":{"type":"plain_text","text":"Approve","emoji":true},"value":"deploy-42","type":"button","action_ts":"1548426417.840180"}]}"#;
    let body = form(&[("payload", click)]);
    let h = slack_headers(SLACK_SECRET, &body, now(), true);
    let answer = post(a, "/webhook/slack-interactions", &h, &body);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, ""),
        "{:?}",
        answer.headers
    );
    let id = answer.task();
    let printed = ran_with(&d, id, "slack-script", click);
    assert_summary(&printed, "block_actions by ana: approve");
    assert_eq!(d.finished_task(id)["steps"][0]["argv"][2], "interaction");
    // A block_suggestion (an options request) is not one of the bundle's types.
    let suggestion = click.replace("block_actions", "block_suggestion");
    let body = form(&[("payload", &suggestion)]);
    let h = slack_headers(SLACK_SECRET, &body, now(), true);
    let answer = post(a, "/webhook/slack-interactions", &h, &body);
    assert_eq!(answer.header("x-orchestrator-status"), Some("filtered"));

    // Wrongly signed, or signed too long ago (beyond 300 s): 401 on every URL.
    for (path, body, form_body) in [
        ("/webhook/slack-events", event.to_owned(), false),
        ("/webhook/slack-commands", command.clone(), true),
        (
            "/webhook/slack-interactions",
            form(&[("payload", click)]),
            true,
        ),
    ] {
        let h = slack_headers("another-apps-secret", &body, now(), form_body);
        assert_eq!(post(a, path, &h, &body).status, 401, "{path}");
        let h = slack_headers(SLACK_SECRET, &body, now() - 600, form_body);
        assert_eq!(post(a, path, &h, &body).status, 401, "{path}: stale");
    }
    assert_eq!(tasks_of(&d, "slack-commands"), 1);
    assert_eq!(tasks_of(&d, "slack-interactions"), 1);
    assert!(!d.log().contains(SLACK_SECRET));
}

const LINE_SECRET: &str = "c8b3a1d25e2f4b0b9f31a7e65d3e0c11";

#[test]
fn the_line_bundle_takes_text_messages_and_passes_the_consoles_verify() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let out = apply_bundle(&d, &bundle("line"), &[]);
    assert_pending(&out, "line-channel", "channel_secret");
    secret_set(&d, "line-channel", "channel_secret", LINE_SECRET);

    // The console's Verify button: a delivery without events, which must get a 200.
    let verify = r#"{"destination":"Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","events":[]}"#;
    let answer = post(
        a,
        "/webhook/line",
        &line_headers(LINE_SECRET, verify),
        verify,
    );
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (200, Some("filtered")),
        "{}",
        answer.body
    );
    assert_eq!(tasks_of(&d, "line"), 0);

    // A user writes to the account.
    let message = r#"{"destination":"U1234567890abcdef1234567890abcdef","events":[{"type":"message","message":{"type":"text","id":"468789577898262530","quoteToken":"q3Plxr4AgKd5kHRhR0I5w9d64hZfXfXC1oX9BqX4xLkqBb8tZQJ","text":"Is the build green?"},"webhookEventId":"01H810YECXQQZ37VAXPF6H9E6T","deliveryContext":{"isRedelivery":false},"timestamp":1692251666727,"source":{"type":"user","userId":"U4af4980629"},"replyToken":"38ef843bde154d9b91c21320ffd17a0f","mode":"active"}]}"#;
    let answer = post(
        a,
        "/webhook/line",
        &line_headers(LINE_SECRET, message),
        message,
    );
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (200, Some("accepted")),
        "{}",
        answer.body
    );
    let printed = ran_with(&d, answer.task(), "line-script", message);
    assert_summary(
        &printed,
        "message from U4af4980629: Is the build green? (reply token 38ef843bde154d9b91c21320ffd17a0f)",
    );

    // A follow and a sticker are not text messages.
    for event in [
        r#"{"type":"follow","timestamp":1692251666727,"source":{"type":"user","userId":"U4af4980629"},"replyToken":"85cbe770fa8b4f45bbe077b1d4be4a36","mode":"active","webhookEventId":"01H810YECXQQZ37VAXPF6H9E6U","deliveryContext":{"isRedelivery":false},"follow":{"isUnblocked":false}}"#,
        r#"{"type":"message","message":{"type":"sticker","id":"1501597916","stickerId":"52002738","packageId":"11537","stickerResourceType":"ANIMATION"},"timestamp":1692251666727,"source":{"type":"user","userId":"U4af4980629"},"replyToken":"0f3779fba3b349968c5d07db31eab56f","mode":"active","webhookEventId":"01H810YECXQQZ37VAXPF6H9E6V","deliveryContext":{"isRedelivery":false}}"#,
    ] {
        let body =
            format!(r#"{{"destination":"U1234567890abcdef1234567890abcdef","events":[{event}]}}"#);
        let answer = post(a, "/webhook/line", &line_headers(LINE_SECRET, &body), &body);
        assert_eq!(
            (answer.status, answer.json()["status"].as_str()),
            (200, Some("filtered"))
        );
    }

    // Wrongly signed: another channel's secret, a body changed after signing.
    let answer = post(
        a,
        "/webhook/line",
        &line_headers("another-channel", message),
        message,
    );
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, r#"{"error":"unauthorized"}"#)
    );
    let forged = message.replace("green", "red");
    assert_eq!(
        post(
            a,
            "/webhook/line",
            &line_headers(LINE_SECRET, message),
            &forged
        )
        .status,
        401
    );
    assert_eq!(tasks_of(&d, "line"), 1);
}

const STRIPE_SECRET: &str = "whsec_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";

fn stripe_event(id: &str, kind: &str, object: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"event","api_version":"2024-06-20","created":1714564800,"data":{{"object":{object}}},"livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"type":"{kind}"}}"#
    )
}

#[test]
fn the_stripe_bundle_checks_the_signature_and_its_tolerance() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let out = apply_bundle(&d, &bundle("stripe"), &[]);
    assert_pending(&out, "stripe-webhook", "endpoint_secret");
    secret_set(&d, "stripe-webhook", "endpoint_secret", STRIPE_SECRET);
    let now = Utc::now().timestamp();

    let checkout = stripe_event(
        "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "checkout.session.completed",
        r#"{"id":"cs_test_a1b2c3d4","object":"checkout.session","amount_total":2000,"currency":"usd","customer":"cus_NffrFeUfNV2Hib","mode":"payment","payment_status":"paid","status":"complete"}"#,
    );
    let sig = format!("t={now},v1={}", stripe_v1(STRIPE_SECRET, &checkout, now));
    let answer = post(a, "/webhook/stripe", &stripe_headers(sig), &checkout);
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (202, Some("accepted")),
        "{}",
        answer.body
    );
    let printed = ran_with(&d, answer.task(), "stripe-script", &checkout);
    assert_summary(
        &printed,
        "checkout.session.completed evt_1NG8Du2eZvKYlo2CUI79vXWy: checkout.session cs_test_a1b2c3d4 (test mode)",
    );
    // Stripe's retry of the same event (a new signature, the same `evt_` id) is a duplicate.
    let first = answer.task();
    let later = now + 1;
    let sig = format!(
        "t={later},v1={}",
        stripe_v1(STRIPE_SECRET, &checkout, later)
    );
    let again = post(a, "/webhook/stripe", &stripe_headers(sig), &checkout);
    assert_eq!(
        (
            again.status,
            again.json()["status"].as_str(),
            again.json()["task"].as_u64()
        ),
        (202, Some("duplicate"), Some(first)),
        "{}",
        again.body
    );

    // Within the tolerance (signed 200 s ago), and with the secret rolled: two v1 signatures,
    // the old secret's among them.
    let failed = stripe_event(
        "evt_1PqRsT2eZvKYlo2C0aBcDeFg",
        "invoice.payment_failed",
        r#"{"id":"in_1PqRsS2eZvKYlo2C","object":"invoice","customer":"cus_NffrFeUfNV2Hib","amount_due":4200,"attempt_count":2}"#,
    );
    let t = now - 200;
    let sig = format!(
        "t={t},v1={},v1={},v0={}",
        stripe_v1("whsec_the_rolled_new_secret_0000000", &failed, t),
        stripe_v1(STRIPE_SECRET, &failed, t),
        "6ffbb59b2300aabc0000000000000000000000000000000000000000000000ff"
    );
    let answer = post(a, "/webhook/stripe", &stripe_headers(sig), &failed);
    assert_eq!(answer.status, 202, "{}", answer.body);
    ran_with(&d, answer.task(), "stripe-script", &failed);

    // Beyond the 300 s tolerance: refused, however well signed (a replay).
    for t in [now - 400, now + 400] {
        let sig = format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, &checkout, t));
        assert_eq!(
            post(a, "/webhook/stripe", &stripe_headers(sig), &checkout).status,
            401,
            "t={t}"
        );
    }
    // Wrongly signed, or signed for another timestamp than the header says.
    let sig = format!(
        "t={now},v1={}",
        stripe_v1("whsec_not_this_endpoint", &checkout, now)
    );
    assert_eq!(
        post(a, "/webhook/stripe", &stripe_headers(sig), &checkout).status,
        401
    );
    let sig = format!(
        "t={},v1={}",
        now - 1,
        stripe_v1(STRIPE_SECRET, &checkout, now)
    );
    assert_eq!(
        post(a, "/webhook/stripe", &stripe_headers(sig), &checkout).status,
        401
    );

    // An event type the endpoint does not handle is filtered (Stripe counts the 202 as delivered).
    let charge = stripe_event(
        "evt_3MtwBwLkdIwHu7ix28a3tqPa",
        "charge.succeeded",
        r#"{"id":"ch_3MtwBwLkdIwHu7ix","object":"charge","amount":2000}"#,
    );
    let sig = format!("t={now},v1={}", stripe_v1(STRIPE_SECRET, &charge, now));
    let answer = post(a, "/webhook/stripe", &stripe_headers(sig), &charge);
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (202, Some("filtered"))
    );
    assert_eq!(tasks_of(&d, "stripe"), 2);
    assert!(!d.log().contains(STRIPE_SECRET));
}

#[test]
fn the_standard_webhooks_bundle_takes_invoice_events_once() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let out = apply_bundle(&d, &bundle("standard-webhooks"), &[]);
    assert_pending(&out, "standard-webhooks", "signing_secret");
    // The spec's example secret.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    secret_set(&d, "standard-webhooks", "signing_secret", secret);
    let now = Utc::now().timestamp();

    let paid = r#"{"type":"invoice.paid","timestamp":"2026-05-01T12:00:00.000Z","data":{"id":"inv_2KWPBgLlAfxdpx2AI54pPJ85f4W","customer":"cus_42","amount":4200,"currency":"eur"}}"#;
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let h = standard_headers(secret, id, now, paid);
    let answer = post(a, "/webhook/standard-webhooks", &h, paid);
    assert_eq!(
        (answer.status, answer.json()["status"].as_str()),
        (202, Some("accepted")),
        "{}",
        answer.body
    );
    let printed = ran_with(&d, answer.task(), "standard-webhook-script", paid);
    assert_summary(
        &printed,
        "invoice.paid at 2026-05-01T12:00:00.000Z: amount, currency, customer, id",
    );
    // The sender retries the same message: one task.
    let h = standard_headers(secret, id, Utc::now().timestamp(), paid);
    assert_eq!(
        post(a, "/webhook/standard-webhooks", &h, paid).json()["status"],
        "duplicate"
    );

    // Another event type is filtered.
    let user =
        r#"{"type":"user.created","timestamp":"2026-05-01T12:00:00.000Z","data":{"id":"user_1"}}"#;
    let h = standard_headers(secret, "msg_other", now, user);
    assert_eq!(
        post(a, "/webhook/standard-webhooks", &h, user).json()["status"],
        "filtered"
    );

    // Wrongly signed, stale, or with the id changed after signing.
    let wrong = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==";
    let h = standard_headers(wrong, "msg_w1", now, paid);
    assert_eq!(post(a, "/webhook/standard-webhooks", &h, paid).status, 401);
    let h = standard_headers(secret, "msg_w2", now - 600, paid);
    assert_eq!(post(a, "/webhook/standard-webhooks", &h, paid).status, 401);
    let mut h = standard_headers(secret, "msg_w3", now, paid);
    h[0].1 = "msg_w4".into();
    assert_eq!(post(a, "/webhook/standard-webhooks", &h, paid).status, 401);
    assert_eq!(tasks_of(&d, "standard-webhooks"), 1);
}

/// Every webhook bundle beside the others in one project, and the rotation bundle too: all
/// apply at once and each trigger is reachable at its own path.
#[test]
fn every_bundle_applies_beside_the_others() {
    let d = TestDaemon::start();
    let a = d.webhook.expect("webhook");
    let out = apply_bundle(&d, &manifests_dir(), &[]);
    for trigger in [
        "github",
        "slack-events",
        "slack-commands",
        "slack-interactions",
        "line",
        "stripe",
        "standard-webhooks",
        "github-events",
    ] {
        assert!(
            out.contains(&format!("trigger/{trigger} created")),
            "{trigger}:\n{out}"
        );
        // Pending keys: refused, not unknown.
        let h = vec![("Content-Type".to_string(), "application/json".to_string())];
        assert_eq!(
            post(a, &format!("/webhook/{trigger}"), &h, "{}").status,
            401,
            "{trigger}"
        );
    }
    let again = apply_bundle(&d, &manifests_dir(), &[]);
    assert!(
        !again.contains("created") && !again.contains("configured"),
        "{again}"
    );
}

// ---------------------------------------------------------------------------------------------
// The token-refresh bundle.

/// A copy of the token-refresh bundle whose URLs point at the fakes, each replacement checked.
fn token_bundle_copy(d: &TestDaemon, slack: &str, github: &str) -> PathBuf {
    let from = bundle("token-refresh");
    let to = d.dir.path().join("token-refresh");
    std::fs::create_dir_all(&to).expect("mkdir");
    let replacements = [
        ("https://slack.com/api", format!("{slack}/api")),
        ("https://api.github.com", github.to_owned()),
        (
            "# apiUrl: https://github.example.com/api/v3   # GitHub Enterprise Server",
            format!("apiUrl: \"{github}\""),
        ),
        (
            "appId: 123456 ",
            format!("appId: {} ", crate::github_app::APP_ID),
        ),
        (
            "installationId: 7890123 ",
            format!("installationId: {} ", crate::github_app::INSTALLATION),
        ),
    ];
    let mut used = vec![false; replacements.len()];
    for entry in std::fs::read_dir(&from).expect("bundle").flatten() {
        let mut text = std::fs::read_to_string(entry.path()).expect("read");
        for (i, (a, b)) in replacements.iter().enumerate() {
            if text.contains(a) {
                used[i] = true;
                text = text.replace(a, b);
            }
        }
        std::fs::write(to.join(entry.file_name()), text).expect("write");
    }
    for ((a, _), used) in replacements.iter().zip(used) {
        assert!(used, "the bundle no longer holds {a:?}");
    }
    to
}

fn describe(d: &TestDaemon, store: &str) -> serde_json::Value {
    d.cli(&["describe", "secretstore", store, "-o", "json"])
        .json()
}

fn key_fingerprint(desc: &serde_json::Value, key: &str) -> Option<String> {
    desc["keys"]
        .as_array()?
        .iter()
        .find(|k| k["key"] == key)
        .and_then(|k| k["fingerprint"].as_str().map(str::to_owned))
}

fn task_id(out: &str) -> String {
    out.split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .unwrap_or_else(|| panic!("no task id in {out:?}"))
        .to_owned()
}

#[test]
fn the_token_refresh_bundle_validates_refreshes_both_tokens_and_its_agents_use_them() {
    use crate::tokens::{CLIENT_ID, CLIENT_SECRET, Platform};

    // Fake Slack: the OAuth platform of tokens.rs, plus auth.test, which takes only the newest
    // access token.
    let platform = Platform::new(3600, true, true);
    let (installed_access, installed_refresh) = platform.lock().expect("lock").grant();
    let slack = {
        let p = platform.clone();
        FakeServer::start(move |req| {
            let mut p = p.lock().expect("lock");
            if req.path == "/api/auth.test" {
                let bearer = req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "));
                return if bearer == Some(p.last.0.as_str()) {
                    (200, r#"{"ok":true,"url":"https://example.slack.com/","team":"Example","user":"grace","team_id":"T12345678","user_id":"W12345678"}"#.into())
                } else {
                    (200, r#"{"ok":false,"error":"invalid_auth"}"#.into())
                };
            }
            p.handle(req)
        })
    };
    // Fake GitHub: the App token endpoint of github_app.rs, plus the installation's
    // repositories, which take only the newest installation token.
    let gh = Arc::new(Mutex::new(crate::github_app::Github::default()));
    let github = {
        let (gh, key) = (gh.clone(), crate::github_app::public_key());
        FakeServer::start(move |req| {
            if req.path.starts_with("/installation/repositories") {
                let newest = gh
                    .lock()
                    .expect("lock")
                    .minted
                    .last()
                    .map(|(t, _)| t.clone());
                let bearer = req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "));
                return match (bearer, newest) {
                    (Some(b), Some(t)) if b == t => (
                        200,
                        r#"{"total_count":2,"repositories":[{"full_name":"octocat/Hello-World"},{"full_name":"octocat/Spoon-Knife"}]}"#.into(),
                    ),
                    _ => (401, r#"{"message":"Bad credentials"}"#.into()),
                };
            }
            crate::github_app::handle(&gh, &key, req)
        })
    };

    let d = TestDaemon::start();
    let original = bundle("token-refresh");
    // The bundle as shipped: a dry run changes nothing, then the apply leaves every key pending.
    let dry = apply_bundle(&d, &original, &["--dry-run"]);
    assert!(
        dry.contains("secretstore/slack-token created (dry run)"),
        "{dry}"
    );
    assert!(
        dry.contains("no value yet: orchestrator secret set slack-token refresh_token"),
        "{dry}"
    );
    assert_eq!(
        d.cli(&["get", "secretstores", "-o", "json"]).json()["items"]
            .as_array()
            .map_or(0, Vec::len),
        0
    );
    let out = apply_bundle(&d, &original, &[]);
    assert_pending(&out, "slack-oauth-client", "client_id");
    assert_pending(&out, "slack-oauth-client", "client_secret");
    assert_pending(&out, "slack-token", "access_token");
    assert_pending(&out, "slack-token", "refresh_token");
    assert_pending(&out, "github-app", "private_key");
    for line in [
        "secretstore/github-app-token created",
        "envstore/token-refresh-apis created",
        "workflow/slack-token-check created",
        "workflow/github-token-check created",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }

    // The same bundle pointed at the fakes, and the values set as the README says.
    let copy = token_bundle_copy(&d, &slack.url(), &github.url());
    let out = apply_bundle(&d, &copy, &[]);
    assert!(out.contains("secretstore/slack-token configured"), "{out}");
    assert!(
        out.contains("secretstore/github-app-token configured"),
        "{out}"
    );
    secret_set(&d, "slack-oauth-client", "client_id", CLIENT_ID);
    secret_set(&d, "slack-oauth-client", "client_secret", CLIENT_SECRET);
    secret_set(&d, "slack-token", "access_token", &installed_access);
    secret_set(&d, "slack-token", "refresh_token", &installed_refresh);
    let pem = crate::github_app::fixture("github-app-test-only.private-key.pem");
    d.cli(&[
        "secret",
        "set",
        "github-app",
        "private_key",
        "--from-file",
        pem.to_str().expect("path"),
    ])
    .ok();

    // Each token is refreshed once and lands in its store.
    let slack_desc = eventually(Duration::from_secs(30), "the Slack token's refresh", || {
        let desc = describe(&d, "slack-token");
        let newest = platform.lock().expect("lock").last.0.clone();
        (desc["token"]["state"] == "scheduled"
            && key_fingerprint(&desc, "access_token") == Some(fingerprint(&newest)))
        .then_some(desc)
    });
    assert_eq!(slack_desc["token"]["provider"], "oauth2");
    assert!(
        slack_desc["token"]["expiresAt"].is_string(),
        "{slack_desc:#}"
    );
    assert_ne!(platform.lock().expect("lock").last.0, installed_access);
    let gh_desc = eventually(Duration::from_secs(30), "the installation token", || {
        let desc = describe(&d, "github-app-token");
        let newest = gh
            .lock()
            .expect("lock")
            .minted
            .last()
            .map(|(t, _)| fingerprint(t));
        (desc["token"]["state"] == "scheduled"
            && newest.is_some()
            && key_fingerprint(&desc, "token") == newest)
            .then_some(desc)
    });
    assert_eq!(gh_desc["token"]["provider"], "github-app");

    // The agents call the platforms with the refreshed tokens.
    let run = d.cli(&[
        "task",
        "create",
        "--workflow",
        "slack-token-check",
        "--wait",
    ]);
    let id = task_id(run.ok());
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    assert!(logs.contains("auth.test ok"), "{logs}");
    if has_jq() {
        assert!(
            logs.contains("auth.test ok: user grace (W12345678) in team Example (T12345678)"),
            "{logs}"
        );
    }
    let run = d.cli(&[
        "task",
        "create",
        "--workflow",
        "github-token-check",
        "--wait",
    ]);
    let id = task_id(run.ok());
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    if has_jq() {
        assert!(
            logs.contains(
                "installation reaches 2 repositories: octocat/Hello-World, octocat/Spoon-Knife"
            ),
            "{logs}"
        );
    } else {
        assert!(logs.contains("installation repositories"), "{logs}");
    }

    // One refresh each: the first, when the last value was set.
    assert_eq!(platform.lock().expect("lock").refreshes, 1);
    assert_eq!(gh.lock().expect("lock").minted.len(), 1);

    // Re-applying the bundle keeps the refreshed values; nothing secret is in the log.
    let out = apply_bundle(&d, &copy, &[]);
    assert!(out.contains("secretstore/slack-token unchanged"), "{out}");
    let desc = describe(&d, "slack-token");
    assert_eq!(
        key_fingerprint(&desc, "access_token"),
        key_fingerprint(&slack_desc, "access_token")
    );
    let log = d.log();
    let (access, refresh) = platform.lock().expect("lock").last.clone();
    for secret in [
        access.as_str(),
        refresh.as_str(),
        CLIENT_SECRET,
        installed_access.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret is in the daemon log");
    }
}
