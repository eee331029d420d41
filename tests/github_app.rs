//! GitHub App installation tokens with the `github-app` provider (issue 15, part 4), end to end
//! against a fake GitHub on loopback. The fake checks the App JWT as GitHub does — the RS256
//! signature with the App's public key (with *ring*, not the code under test), `iat` in the
//! past, `exp` at most 10 minutes ahead, `iss` the App's id — and answers
//! `POST /app/installations/{id}/access_tokens` with a one-hour token. The App's key pair is a
//! test-only fixture (`tests/fixtures/README.md`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use orchestrator::domain::manifest::fingerprint;
use sha2::Digest;

use crate::common::{TestDaemon, eventually};
use crate::fake_http::{FakeServer, Request};

pub(crate) const APP_ID: u64 = 12345;
pub(crate) const INSTALLATION: u64 = 77;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fake GitHub's state (also the GitHub of `integrations.rs`).
#[derive(Default)]
pub(crate) struct Github {
    /// Tokens minted, newest last, with their expiry.
    pub(crate) minted: Vec<(String, DateTime<Utc>)>,
    /// Why JWTs were refused.
    refused: Vec<String>,
}

/// The App's public key as *ring* takes it (PKCS#1 `RSAPublicKey` DER).
pub(crate) fn public_key() -> Vec<u8> {
    let pem = std::fs::read_to_string(fixture("github-app-test-only.public-key.pem")).expect("pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

/// Why GitHub would refuse `jwt`, if it would.
fn check_jwt(jwt: &str, key: &[u8]) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not three parts".into());
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64.decode(header).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let signature = b64.decode(signature).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "bad signature".to_owned())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(claims).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let now = Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(i64::MAX),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if !(now - 120..=now - 50).contains(&iat) {
        return Err(format!("iat {iat} is not about 60 s before {now}"));
    }
    if exp <= now || exp > now + 600 {
        return Err(format!("exp {exp} is not within 10 minutes after {now}"));
    }
    if claims["iss"] != APP_ID {
        return Err(format!("iss {}", claims["iss"]));
    }
    Ok(())
}

pub(crate) fn handle(gh: &Mutex<Github>, key: &[u8], req: &Request) -> (u16, String) {
    if req.method != "POST"
        || req.path != format!("/app/installations/{INSTALLATION}/access_tokens")
    {
        return (404, r#"{"message": "Not Found"}"#.into());
    }
    if req.header("accept") != Some("application/vnd.github+json") {
        return (415, r#"{"message": "Unsupported Media Type"}"#.into());
    }
    let jwt = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut gh = gh.lock().expect("lock");
    if let Err(why) = check_jwt(jwt, key) {
        gh.refused.push(why);
        return (
            401,
            r#"{"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"}"#
                .into(),
        );
    }
    let token = format!(
        "ghs_{}{:x}",
        gh.minted.len() + 1,
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let expires = (Utc::now() + chrono::Duration::hours(1))
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expires_at: DateTime<Utc> = expires.parse().expect("time");
    gh.minted.push((token.clone(), expires_at));
    (
        201,
        format!(
            r#"{{"token": "{token}", "expires_at": "{expires}", "permissions": {{"contents": "read"}}, "repository_selection": "selected"}}"#
        ),
    )
}

fn describe(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["describe", "secretstore", "gh-token", "-o", "json"])
        .json()
}

fn key_fingerprint(desc: &serde_json::Value, key: &str) -> Option<String> {
    desc["keys"]
        .as_array()?
        .iter()
        .find(|k| k["key"] == key)
        .and_then(|k| k["fingerprint"].as_str().map(str::to_owned))
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

#[test]
fn installation_tokens_are_minted_with_a_signed_jwt_land_in_the_store_and_survive_a_restart() {
    let gh = Arc::new(Mutex::new(Github::default()));
    let fake = {
        let (gh, key) = (gh.clone(), public_key());
        FakeServer::start(move |req| handle(&gh, &key, req))
    };
    let mut d = TestDaemon::start();
    // The App's private key goes in with `secret set --from-file`, as the README says.
    d.apply("apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: github-app}\nspec: {data: {}}\n");
    let pem = fixture("github-app-test-only.private-key.pem");
    d.cli(&[
        "secret",
        "set",
        "github-app",
        "private_key",
        "--from-file",
        pem.to_str().expect("path"),
    ])
    .ok();
    // The token's key is not in `data`: the first refresh creates it. An agent may reference
    // it all the same.
    let bundle = format!(
        r#"apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: gh-token}}
spec:
  rotation:
    key: token
    provider: github-app
    settings: {{appId: {APP_ID}, installationId: {INSTALLATION}, apiUrl: "{}"}}
    credentials: {{fromRef: github-app, key: private_key}}
---
{}---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: clone}}
spec:
  steps: [{{id: clone, template: clone, required_capability: git}}]
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {{name: clone}}
spec: {{prompt: clone}}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: git}}
spec:
  command: "sh -c 'printf \"hash=%s\\n\" \"$(printf %s \"$GH_TOKEN\" | sha256sum | cut -c1-64)\"'"
  capabilities: [git]
  promptDelivery: env
  env: [{{name: GH_TOKEN, refValue: {{name: gh-token, key: token}}}}]
"#,
        fake.url(),
        d.workspace()
    );
    d.apply(&bundle);

    let desc = eventually(Duration::from_secs(20), "the installation token", || {
        let desc = describe(&d);
        // Scheduled: the refresh has ended (its commit is visible a moment before).
        (key_fingerprint(&desc, "token").is_some() && desc["token"]["state"] == "scheduled")
            .then_some(desc)
    });
    let (token, expires) = gh
        .lock()
        .expect("lock")
        .minted
        .last()
        .cloned()
        .expect("minted");
    assert!(gh.lock().expect("lock").refused.is_empty());
    assert_eq!(key_fingerprint(&desc, "token"), Some(fingerprint(&token)));
    let status = &desc["token"];
    assert_eq!(status["provider"], "github-app");
    assert_eq!(status["state"], "scheduled", "{desc:#}");
    assert_eq!(time(&status["expiresAt"]), expires);
    // Refreshed 10 % of its hour ahead: 6 minutes before it expires.
    let ahead = expires - time(&status["refreshesAt"]);
    assert!(
        (359..=361).contains(&ahead.num_seconds()),
        "refreshes {ahead} ahead"
    );
    let record = &desc["rotations"][0];
    assert_eq!(record["stage"], "done", "{record:#}");
    assert_eq!(record["provider"], "github-app");
    assert_eq!(record["newFingerprint"], fingerprint(&token));

    // Re-applying the bundle keeps the token and its expiry (they are in no manifest).
    d.apply(&bundle);
    let again = describe(&d);
    assert_eq!(key_fingerprint(&again, "token"), Some(fingerprint(&token)));
    assert_eq!(time(&again["token"]["expiresAt"]), expires);
    assert_eq!(gh.lock().expect("lock").minted.len(), 1);

    // An agent gets the token at spawn.
    let run = d.cli(&["task", "create", "--workflow", "clone", "--wait"]);
    let id = run
        .ok()
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .unwrap_or_else(|| panic!("no task id in {:?}", run.stdout))
        .to_owned();
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    let want = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    assert!(logs.contains(&format!("hash={want}")), "{logs}");

    // The expiry is kept in the store: a restarted daemon re-arms the same refresh and does not
    // mint a token it does not need. On demand, one more is minted.
    d.restart();
    let after = describe(&d);
    assert_eq!(time(&after["token"]["expiresAt"]), expires);
    assert_eq!(after["token"]["refreshesAt"], status["refreshesAt"]);
    let out = d.cli(&["secret", "rotate", "gh-token"]).ok().to_owned();
    assert!(out.contains("secretstore/gh-token key token"), "{out}");
    let minted = gh.lock().expect("lock").minted.clone();
    assert_eq!(minted.len(), 2, "minted {minted:?}");
    let desc = describe(&d);
    assert_eq!(
        key_fingerprint(&desc, "token"),
        Some(fingerprint(&minted[1].0))
    );
    let reasons: Vec<String> = desc["rotations"]
        .as_array()
        .expect("rotations")
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(reasons[0].starts_with("refresh on demand"), "{reasons:#?}");
    assert!(reasons[1].contains("expiry was not known"), "{reasons:#?}");

    // A key that is not the App's: GitHub refuses the JWT, the token in the store stays.
    let other = fixture("other-app-test-only.private-key.pem");
    d.cli(&[
        "secret",
        "set",
        "github-app",
        "private_key",
        "--from-file",
        other.to_str().expect("path"),
    ])
    .ok();
    let err = d.cli(&["secret", "rotate", "gh-token"]).fails().to_owned();
    assert!(err.contains("answered HTTP 401"), "{err}");
    assert!(
        err.contains("A JSON web token could not be decoded"),
        "{err}"
    );
    assert!(
        err.contains("check settings.appId, the private key"),
        "{err}"
    );
    assert_eq!(
        gh.lock().expect("lock").refused,
        vec!["bad signature".to_owned()]
    );
    assert_eq!(
        key_fingerprint(&describe(&d), "token"),
        Some(fingerprint(&minted[1].0))
    );

    let log = d.log();
    for (t, _) in &minted {
        assert!(!log.contains(t.as_str()), "a token is in the daemon log");
        assert!(!err.contains(t.as_str()));
    }
    assert!(
        !log.contains("PRIVATE KEY"),
        "the private key is in the log"
    );
}
