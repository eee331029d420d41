//! Apply merges like `kubectl apply` (issue 15, part 1): a SecretStore's keys are merged three
//! ways — what the last apply declared, the live values, the new manifest. A value set live (a
//! rotation, `secret set`) survives re-applying the file it came from; a key the file changes
//! wins and apply says so; `--dry-run` shows the key-level diff with fingerprints only; keys
//! declared `{keep: true}` hold no value in the file. Real daemon, real CLI, and a platform on
//! loopback that signs real deliveries to the webhook listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::domain::manifest::fingerprint;
use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{TestDaemon, eventually, manifests_dir, post};

const OLD: &str = "old-partner-signing-secret-0123456789";
const FRESH: &str = "fresh-value-from-the-file-9876543210";
const TOKEN: &str = "ghp_faketoken_abcdefghijklmnopqrstuvwxyz";

/// A delivery signed with `secret` (HMAC-SHA256) to `/webhook/{trigger}`; answers the status.
fn deliver(addr: SocketAddr, trigger: &str, secret: &str, scheme: Scheme) -> u16 {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let body = format!(r#"{{"n": {n}}}"#);
    let ts = chrono::Utc::now().timestamp();
    let headers = sign(
        scheme,
        None,
        secret.as_bytes(),
        body.as_bytes(),
        ts,
        &format!("delivery-{n}-{ts}"),
    );
    post(
        addr,
        &format!("/webhook/{trigger}"),
        &headers,
        body.as_bytes(),
    )
    .0
}

/// A platform outside the daemon: it signs deliveries with the secret it holds, takes a new one
/// when its settings file changes (what a `command` provider's set program or an agent writes
/// there stands in for the platform's API), and sends a signed delivery to the daemon's webhook
/// listener at once and then every 50 ms, as a platform with traffic does.
struct Platform {
    secret: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl Platform {
    fn start(addr: SocketAddr, settings: PathBuf, initial: &str, trigger: &'static str) -> Self {
        let secret = Arc::new(Mutex::new(initial.to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (secret.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut since_delivery = 0;
            while !st.load(Ordering::Relaxed) {
                let written = std::fs::read_to_string(&settings).unwrap_or_default();
                let (current, changed) = {
                    let mut current = s.lock().expect("lock");
                    let changed = !written.is_empty() && *current != written;
                    if changed {
                        current.clone_from(&written);
                    }
                    (current.clone(), changed)
                };
                if changed || since_delivery >= 5 {
                    deliver(addr, trigger, &current, Scheme::HmacSha256);
                    since_delivery = 0;
                }
                since_delivery += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Platform { secret, stop }
    }

    fn secret(&self) -> String {
        self.secret.lock().expect("lock").clone()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Applies the manifest file at `path` and returns the CLI's stdout.
fn apply_file(d: &TestDaemon, path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["apply", "-f", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    d.cli(&args).ok().to_owned()
}

fn keys(d: &TestDaemon, store: &str) -> Vec<serde_json::Value> {
    d.cli(&["describe", "secretstore", store, "-o", "json"])
        .json()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn assert_no_value(text: &str, values: &[&str]) {
    for v in values {
        assert!(!text.contains(v), "a secret value is shown:\n{text}");
    }
}

/// A store with a `command` rotation, its webhook trigger, and a workflow for the trigger.
fn hooks_manifest(d: &TestDaemon, platform: &Path, data: &str) -> String {
    format!(
        r#"{workspace}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  steps: [{{id: s, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {data}
  rotation:
    key: signing
    provider: command
    settings:
      set: "sh -c 'cat > {p}.tmp && mv {p}.tmp {p}'"
      testTimeoutSeconds: 30
    graceSeconds: 0
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: custom}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: hmac-sha256}}
  action: {{workflow: quick, workspace: default, start: false}}
"#,
        workspace = d.workspace(),
        p = platform.display()
    )
}

#[test]
fn a_rotated_key_survives_reapplying_its_manifest_and_a_changed_key_replaces_it() {
    let mut d = TestDaemon::start();
    let addr = d.webhook.expect("webhook");
    let settings = d.dir.path().join("platform-secret");
    let platform = Platform::start(addr, settings.clone(), OLD, "custom");
    let file = d.write(
        "bundle/hooks.yaml",
        &hooks_manifest(&d, &settings, &format!("{{signing: \"{OLD}\"}}")),
    );
    apply_file(&d, &file, &[]);
    assert_eq!(deliver(addr, "custom", OLD, Scheme::HmacSha256), 202);

    // A real rotation: the platform takes the new value and sends a delivery signed with it.
    let out = d.cli(&["secret", "rotate", "hooks"]).ok().to_owned();
    assert!(out.contains("key signing rotated with command"), "{out}");
    let rotated = platform.secret();
    assert_ne!(rotated, OLD);
    // What the last apply declared is durable: a restarted daemon merges the same way.
    drop(platform);
    d.restart();
    let addr = d.webhook.expect("webhook");

    // Re-applying the original file keeps the rotated value, and says why.
    let out = apply_file(&d, &file, &[]);
    assert!(
        out.contains("secretstore/hooks unchanged: key signing kept live (it was rotated at 20"),
        "{out}"
    );
    assert_eq!(deliver(addr, "custom", &rotated, Scheme::HmacSha256), 202);
    assert_eq!(deliver(addr, "custom", OLD, Scheme::HmacSha256), 401);
    let k = keys(&d, "hooks");
    assert_eq!(k.len(), 1, "{k:#?}");
    assert_eq!(k[0]["fingerprint"], fingerprint(&rotated));
    assert_eq!(k[0]["setBy"], "rotation");

    // The dry run of the same file shows the decision with fingerprints.
    let out = apply_file(&d, &file, &["--dry-run"]);
    assert!(
        out.contains("secretstore/hooks unchanged (dry run)"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("= signing"))
        .unwrap_or_else(|| panic!("no row for signing:\n{out}"));
    assert!(row.contains("kept live"), "{row}");
    assert!(row.contains(&fingerprint(&rotated)), "{row}");
    assert!(
        row.contains(&format!(
            "the manifest's {} is unchanged since the last apply",
            fingerprint(OLD)
        )),
        "{row}"
    );
    assert_no_value(&out, &[OLD, &rotated]);

    // Changing the key in the file replaces it: the dry run shows it first, changing nothing.
    let changed = hooks_manifest(&d, &settings, &format!("{{signing: \"{FRESH}\"}}"));
    std::fs::write(&file, changed).expect("edit the file");
    let out = apply_file(&d, &file, &["--dry-run"]);
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("~ signing"))
        .unwrap_or_else(|| panic!("no row for signing:\n{out}"));
    assert!(
        row.contains(&format!(
            "replaced   {} -> {}",
            fingerprint(&rotated),
            fingerprint(FRESH)
        )),
        "{row}"
    );
    assert!(row.contains("it was rotated at 20"), "{row}");
    let json = d
        .cli(&[
            "apply",
            "--dry-run",
            "-f",
            file.to_str().expect("path"),
            "-o",
            "json",
        ])
        .json();
    let store = json["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "hooks"))
        .cloned()
        .expect("the store's result");
    assert_eq!(store["outcome"], "configured");
    let diff = &store["keys"][0];
    assert_eq!(diff["key"], "signing");
    assert_eq!(diff["action"], "replaced");
    assert_eq!(diff["previous"], fingerprint(&rotated));
    assert_eq!(diff["fingerprint"], fingerprint(FRESH));
    assert_eq!(diff["liveSetBy"], "rotation");
    assert!(diff["liveSetAt"].is_string(), "{diff:#}");
    assert_no_value(&json.to_string(), &[OLD, &rotated, FRESH]);
    assert_eq!(
        deliver(addr, "custom", &rotated, Scheme::HmacSha256),
        202,
        "a dry run changes nothing"
    );

    let out = apply_file(&d, &file, &[]);
    assert!(
        out.contains("secretstore/hooks configured: key signing replaced (it was rotated at 20"),
        "{out}"
    );
    assert_eq!(deliver(addr, "custom", FRESH, Scheme::HmacSha256), 202);
    assert_eq!(deliver(addr, "custom", &rotated, Scheme::HmacSha256), 401);
    assert_eq!(keys(&d, "hooks")[0]["setBy"], "apply");

    // A key set live that no manifest declares stays; one the last apply declared and the file
    // no longer has goes.
    d.cli_stdin(&["secret", "set", "hooks", "extra"], "extra-live-value-55")
        .ok();
    let out = apply_file(&d, &file, &[]);
    assert!(
        out.contains("key extra kept live (in no manifest; set with `secret set` at 20"),
        "{out}"
    );
    assert_eq!(
        deliver(addr, "custom", "extra-live-value-55", Scheme::HmacSha256),
        202
    );
    let two = hooks_manifest(
        &d,
        &settings,
        &format!("{{signing: \"{FRESH}\", retired: \"retired-value-77\"}}"),
    );
    std::fs::write(&file, two).expect("edit");
    assert!(apply_file(&d, &file, &[]).contains("key retired added"));
    let one = hooks_manifest(&d, &settings, &format!("{{signing: \"{FRESH}\"}}"));
    std::fs::write(&file, one).expect("edit");
    let out = apply_file(&d, &file, &[]);
    assert!(out.contains("key retired removed"), "{out}");
    assert_eq!(
        deliver(addr, "custom", "retired-value-77", Scheme::HmacSha256),
        401
    );
    let names: Vec<String> = keys(&d, "hooks")
        .iter()
        .filter_map(|k| k["key"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["extra", "signing"]);

    // History says who changed what, by fingerprint.
    let desc = d.cli(&["describe", "secretstore", "hooks"]).ok().to_owned();
    assert!(desc.contains("configured by rotation keys:"), "{desc}");
    assert!(desc.contains("configured by secret-set keys:"), "{desc}");
    assert_no_value(
        &format!("{desc}{}", d.log()),
        &[
            OLD,
            &rotated,
            FRESH,
            "extra-live-value-55",
            "retired-value-77",
        ],
    );
}

#[test]
fn the_bundle_declares_its_keys_without_values_and_keeps_what_was_set_live() {
    let d = TestDaemon::start();
    let addr = d.webhook.expect("webhook");
    let bundle = manifests_dir().join("secret-rotation");
    let out = apply_file(&d, &bundle, &[]);
    for line in [
        "secretstore/webhook-secrets created: key github pending (no value yet: orchestrator secret set webhook-secrets github)",
        "secretstore/github-api created: key token pending (no value yet: orchestrator secret set github-api token)",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // A pending key holds no value: nothing verifies, not even a signature made with "".
    assert_eq!(deliver(addr, "github-events", "", Scheme::Github), 401);
    let desc = d
        .cli(&["describe", "secretstore", "webhook-secrets"])
        .ok()
        .to_owned();
    assert!(
        desc.contains("Pending keys") && desc.contains("secret set webhook-secrets github"),
        "{desc}"
    );
    assert_eq!(
        d.cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
            .json()["pending"],
        serde_json::json!(["github"])
    );

    // The README's quick start: set the values with the CLI.
    d.cli_stdin(&["secret", "set", "webhook-secrets", "github"], OLD)
        .ok();
    d.cli_stdin(&["secret", "set", "github-api", "token"], TOKEN)
        .ok();
    assert_eq!(deliver(addr, "github-events", OLD, Scheme::Github), 202);
    let out = apply_file(&d, &bundle, &[]);
    assert!(
        out.contains("secretstore/webhook-secrets unchanged"),
        "{out}"
    );
    assert!(!out.contains("pending"), "{out}");
    assert_eq!(deliver(addr, "github-events", OLD, Scheme::Github), 202);

    // A value changed live (as a rotation does) survives re-applying the bundle.
    let rotated = "rotated-github-webhook-secret-424242";
    d.cli_stdin(&["secret", "set", "webhook-secrets", "github"], rotated)
        .ok();
    let out = apply_file(&d, &bundle, &[]);
    assert!(
        out.contains("secretstore/webhook-secrets unchanged"),
        "{out}"
    );
    assert_eq!(deliver(addr, "github-events", rotated, Scheme::Github), 202);
    assert_eq!(deliver(addr, "github-events", OLD, Scheme::Github), 401);
    let out = apply_file(&d, &bundle, &["--dry-run"]);
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("= github"))
        .unwrap_or_else(|| panic!("no row for github:\n{out}"));
    assert!(
        row.contains("kept") && row.contains(&fingerprint(rotated)) && row.contains("{keep: true}"),
        "{row}"
    );
    assert_no_value(&out, &[OLD, rotated, TOKEN]);
}

/// The seed's flow, taken by an agent that only ever sees the new value: the bundle's
/// `rotate-secrets` prompt tells it to keep the old key with `{keep: true}` beside the new one,
/// switch the platform, wait for a delivery verified with the new key, then apply the new value
/// only. The agent is a script (a stand-in for an AI agent following the prompt); it has no
/// store value in its environment and no command can return one.
#[test]
fn an_agent_rotates_with_the_seed_flow_without_ever_seeing_the_old_value() {
    let d = TestDaemon::start();
    let addr = d.webhook.expect("webhook");
    let bundle = manifests_dir().join("secret-rotation");
    let prompt = std::fs::read_to_string(bundle.join("20-rotation.yaml")).expect("prompt");
    for step in [
        "KEY: {keep: true}",
        "KEY.next: \"NEW-SECRET\"",
        "last verified at",
        "with the new value only",
    ] {
        assert!(prompt.contains(step), "the prompt lacks {step:?}");
    }
    apply_file(&d, &bundle, &[]);
    let settings = d.dir.path().join("partner-settings");
    let platform = Platform::start(addr, settings.clone(), OLD, "partner-events");
    let seen = d.dir.path().join("seen-by-the-agent");
    let agent = d.write(
        "agent.sh",
        r#"set -eu
# Everything this agent is given or told goes to $SEEN too, for the test to inspect.
env > "$SEEN"
printf '%s\n' "$ORCH_PROMPT" >> "$SEEN"
case "$ORCH_PROMPT" in
  *"KEY: {keep: true}"*"KEY.next"*) ;;
  *) echo "the prompt does not teach the keep flow"; exit 9 ;;
esac
run() {
  if out=$("$@" 2>&1); then status=0; else status=$?; fi
  printf '%s\n' "$out" | tee -a "$SEEN"
  return "$status"
}
store() {
  run orchestrator apply -f - <<EOF
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: $STORE}
spec:
  data:
$1
EOF
}
umask 077
new=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
# b. keep the old key (without its value), add the new one beside it
store "    $KEY: {keep: true}
    $KEY.next: \"$new\""
# c. switch the platform, and wait for a delivery verified with the new key
printf '%s' "$new" > "$PLATFORM.tmp" && mv "$PLATFORM.tmp" "$PLATFORM"
i=0
until orchestrator describe secretstore "$STORE" -o json | tee -a "$SEEN" | tr -d ' \n' \
    | grep -q "\"key\":\"$KEY.next\"[^}]*\"lastVerifiedAt\":\""; do
  i=$((i + 1))
  if [ "$i" -gt 1500 ]; then
    store "    $KEY: {keep: true}"
    echo "failed: no delivery verified with $KEY.next"; exit 1
  fi
  sleep 0.02
done
# d. the new value only
store "    $KEY: \"$new\""
echo "rotated: secretstore/$STORE key $KEY"
"#,
    );
    let store_doc = "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: partner-hooks}\nspec:\n  data: {signing: {keep: true}}\n";
    d.apply(&format!(
        r#"{store_doc}---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: partner-events}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: partner-hooks, keys: [signing]}}, scheme: hmac-sha256}}
  action: {{workflow: github-event, workspace: default, start: false}}
  concurrencyPolicy: Allow
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: ai-rotator}}
spec:
  command: "sh {agent}"
  capabilities: [plan]
  promptDelivery: env
  timeout_secs: 120
  env:
    - {{name: STORE, value: partner-hooks}}
    - {{name: KEY, value: signing}}
    - {{name: PLATFORM, value: "{settings}"}}
    - {{name: SEEN, value: "{seen}"}}
"#,
        agent = agent.display(),
        settings = settings.display(),
        seen = seen.display(),
    ));
    d.cli_stdin(&["secret", "set", "partner-hooks", "signing"], OLD)
        .ok();
    assert_eq!(
        deliver(addr, "partner-events", OLD, Scheme::HmacSha256),
        202
    );

    // Deliveries signed with whatever the platform holds keep verifying through the rotation.
    let stop = AtomicBool::new(false);
    let (task, refused) = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            let mut refused = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let secret = platform.secret();
                let status = deliver(addr, "partner-events", &secret, Scheme::HmacSha256);
                if status != 202 && platform.secret() == secret {
                    refused.push(status);
                }
            }
            refused
        });
        let id = d
            .cli(&["trigger", "fire", "weekly-secret-rotation"])
            .ok()
            .trim()
            .to_owned();
        let task = eventually(Duration::from_secs(90), "the rotation task", || {
            let t = d.cli(&["task", "show", &id, "-o", "json"]).json();
            let state = t["task"]["state"].as_str().unwrap_or("").to_owned();
            matches!(state.as_str(), "succeeded" | "failed" | "cancelled").then_some(t)
        });
        stop.store(true, Ordering::Relaxed);
        (task, traffic.join().expect("traffic"))
    });
    let id = task["task"]["id"].to_string();
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    assert_eq!(task["task"]["state"], "succeeded", "{task:#}\n{logs}");
    assert!(refused.is_empty(), "deliveries refused: {refused:?}");
    for line in [
        "secretstore/partner-hooks configured: key signing.next added",
        "secretstore/partner-hooks configured: key signing replaced",
        "key signing.next removed",
        "rotated: secretstore/partner-hooks key signing",
    ] {
        assert!(logs.contains(line), "{line:?} missing:\n{logs}");
    }

    // The new key verifies, the old one is refused, and only the new one is left.
    let new = platform.secret();
    assert_ne!(new, OLD);
    assert_eq!(
        deliver(addr, "partner-events", &new, Scheme::HmacSha256),
        202
    );
    assert_eq!(
        deliver(addr, "partner-events", OLD, Scheme::HmacSha256),
        401
    );
    let k = keys(&d, "partner-hooks");
    assert_eq!(k.len(), 1, "{k:#?}");
    assert_eq!(k[0]["key"], "signing");
    assert_eq!(k[0]["fingerprint"], fingerprint(&new));
    // The file in git still says `{keep: true}`: re-applying it keeps the new key.
    let out = d.apply(store_doc);
    assert!(out.contains("secretstore/partner-hooks"), "{out}");
    assert_eq!(
        deliver(addr, "partner-events", &new, Scheme::HmacSha256),
        202
    );
    // The agent never had the old value: not in its environment, its prompt, or anything a
    // command answered it (which it all wrote down).
    let seen = std::fs::read_to_string(&seen).expect("what the agent saw");
    assert!(
        seen.contains("KEY: {keep: true}"),
        "the record is incomplete"
    );
    assert!(seen.contains("signing.next"), "the record is incomplete");
    assert_no_value(&seen, &[OLD]);
    assert_no_value(&logs, &[OLD, &new]);
}
