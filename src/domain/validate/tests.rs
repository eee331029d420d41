//! Unit tests of validation: a bundle applied first, then documents checked against it for names,
//! projects, local rules, references (also within one apply), deletes and unusable webhooks.

use std::path::Path;

use super::*;
use crate::domain::manifest::parse_documents;

const BUNDLE: &str = r#"
apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {name: default}
spec: {root_path: /tmp}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: rotate-secrets}
spec: {prompt: "rotate for {goal}"}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: rotator}
spec: {command: "sh ./rotate.sh {prompt}", capabilities: [plan]}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: secret-rotation}
spec:
  steps:
    - {id: rotate, template: rotate-secrets, required_capability: plan}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: hooks}
spec: {data: {github: s3cr3t}}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: weekly}
spec:
  cron: {schedule: "0 2 * * 0", timezone: Asia/Tokyo}
  action: {workflow: secret-rotation, workspace: default}
"#;

/// Validates `text` on top of BUNDLE already applied and returns rendered problems.
fn problems(text: &str) -> Vec<String> {
    let (mut base, p) = parse_documents("bundle.yaml", BUNDLE);
    assert!(p.is_empty(), "{p:?}");
    assert!(validate_apply(&mut base, &Snapshot::default(), None).is_empty());
    let snapshot = Snapshot::default().apply(&Snapshot::default().plan(
        &base.iter().map(|d| d.manifest.clone()).collect::<Vec<_>>(),
        chrono::DateTime::UNIX_EPOCH,
    ));
    let (mut docs, parse) = parse_documents("f.yaml", text);
    assert!(parse.is_empty(), "{parse:?}");
    validate_apply(&mut docs, &snapshot, None)
        .iter()
        .map(|d| d.to_string())
        .collect()
}

fn check(spec_doc: &str, want: &[&str]) {
    let text = format!("apiVersion: orchestrator.dev/v2\n{spec_doc}");
    let got = problems(&text);
    assert_eq!(got.len(), want.len(), "got {got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.contains(w), "{g:?} should contain {w:?}");
    }
}

#[test]
fn good_resources_pass() {
    check(
        "kind: Trigger\nmetadata: {name: t2}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &[],
    );
    check(
        "kind: Trigger\nmetadata: {name: hook}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks, keys: [github]}, scheme: github}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &[],
    );
}

#[test]
fn names_and_projects() {
    check(
        "kind: StepTemplate\nmetadata: {name: Bad_Name}\nspec: {prompt: p}\n",
        &["metadata.name: invalid name \"Bad_Name\""],
    );
    check(
        "kind: StepTemplate\nmetadata: {name: -x}\nspec: {prompt: p}\n",
        &["invalid name"],
    );
    check(
        &format!(
            "kind: StepTemplate\nmetadata: {{name: {}}}\nspec: {{prompt: p}}\n",
            "a".repeat(64)
        ),
        &["is 64 characters long"],
    );
    check(
        "kind: StepTemplate\nmetadata: {name: a}\nspec: {prompt: p}\n---\napiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: a}\nspec: {prompt: q}\n",
        &[
            "document 2 (steptemplate/a): metadata.name: duplicate StepTemplate \"a\" (hint: already declared in f.yaml document 1",
        ],
    );
}

#[test]
fn dangling_references() {
    check(
        "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: secret-rotatoin, workspace: nope}\n",
        &[
            "f.yaml:6: document 1 (trigger/t): spec.action.workflow: Workflow \"secret-rotatoin\" not found in project \"default\" (hint: did you mean \"secret-rotation\"?)",
            "spec.action.workspace: Workspace \"nope\" not found",
        ],
    );
    check(
        "kind: Trigger\nmetadata: {name: t}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks, keys: [gitlab]}}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &[
            "spec.event.webhook.secret.keys[0]: SecretStore \"hooks\" has no key \"gitlab\" (hint: its keys are github)",
        ],
    );
    check(
        "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, template: nope, required_capability: code}\n",
        &[
            "spec.steps[0].template: StepTemplate \"nope\" not found",
            "no agent in project \"default\" has capability \"code\"",
        ],
    );
    check(
        "kind: Agent\nmetadata: {name: a}\nspec:\n  command: x {prompt}\n  env:\n    - fromRef: missing\n    - {name: T, refValue: {name: hooks, key: nope}}\n",
        &[
            "spec.env[0].fromRef: no SecretStore or EnvStore named \"missing\"",
            "spec.env[1].refValue: SecretStore \"hooks\" has no key \"nope\"",
        ],
    );
}

#[test]
fn references_in_the_same_apply_resolve() {
    check(
        "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, template: t2, required_capability: code}\n---\napiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: t2}\nspec: {prompt: p}\n---\napiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: coder}\nspec: {command: 'c {prompt}', capabilities: [code]}\n",
        &[],
    );
}

#[test]
fn keys_declared_without_a_value_count_as_keys() {
    // A rotation key, a credentials key and a trigger's key may each be declared `{keep: true}`.
    check(
        "kind: SecretStore\nmetadata: {name: hooks2}\nspec:\n  data: {github: {keep: true}}\n  rotation:\n    key: github\n    provider: github\n    settings: {repository: a/b, hookId: 1}\n    credentials: {fromRef: api, key: token}\n---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: api}\nspec: {data: {token: {keep: true}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: hook}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks2, keys: [github]}, scheme: github}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &[],
    );
    check(
        "kind: SecretStore\nmetadata: {name: hooks2}\nspec:\n  data: {gihub: {keep: true}}\n  rotation: {key: github, provider: command, settings: {set: x}}\n",
        &["rotation key \"github\" is not in data"],
    );
    // A pending key of a stored store (declared, no value yet) is one of its keys too.
    let (mut base, _) = parse_documents(
        "b.yaml",
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: pend}\nspec: {data: {k: {keep: true}}}\n",
    );
    assert!(validate_apply(&mut base, &Snapshot::default(), None).is_empty());
    let s0 = Snapshot::default();
    let manifests: Vec<_> = base.into_iter().map(|d| d.manifest).collect();
    let s = s0.apply(&s0.plan(&manifests, chrono::DateTime::UNIX_EPOCH));
    let store = s.secret_store("default", "pend").expect("created");
    assert!(store.data.is_empty(), "a pending key holds no value");
    assert_eq!(store.pending().collect::<Vec<_>>(), ["k"]);
    let (mut docs, _) = parse_documents(
        "f.yaml",
        &format!(
            "{BUNDLE}---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: pend, keys: [k]}}, scheme: github}}\n  action: {{workflow: secret-rotation, workspace: default}}\n"
        ),
    );
    let problems = validate_apply(&mut docs, &s, None);
    assert!(problems.is_empty(), "{problems:?}");
    // …and it verifies nothing: the trigger has no usable key.
    let manifests: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
    let s = s.apply(&s.plan(&manifests, chrono::DateTime::UNIX_EPOCH));
    assert!(s.webhook("default", "hook").expect("indexed").keys.is_err());
    assert_eq!(unverifiable_webhooks(&s).len(), 1);
}

#[test]
fn local_rules() {
    check(
        "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '0 2 * *'}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &["spec.cron.schedule:"],
    );
    check(
        "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '0 2 * * 0', timezone: Asia/Tokio}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &["spec.cron.timezone:"],
    );
    check(
        "kind: Agent\nmetadata: {name: a}\nspec: {command: \"claude -p '{prompt}\"}\n",
        &["spec.command: command cannot be split into arguments"],
    );
    check(
        "kind: Agent\nmetadata: {name: a}\nspec: {command: \"claude\"}\n",
        &["has no {prompt} placeholder"],
    );
    check(
        "kind: StepTemplate\nmetadata: {name: t}\nspec: {prompt: \"hi {secret}\"}\n",
        &["unknown placeholder {secret}"],
    );
    check(
        "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, command: 'echo', template: rotate-secrets}\n",
        &["has both `template` and `command`"],
    );
    check(
        "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps: []\n  loop: {mode: fixed}\n",
        &["at least one step", "needs max_cycles"],
    );
    check(
        "kind: Workspace\nmetadata: {name: w}\nspec: {root_path: rel/dir}\n",
        &["is not absolute"],
    );
    check(
        "kind: Trigger\nmetadata: {name: t}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks}, scheme: gitlab}\n  action: {workflow: secret-rotation, workspace: default}\n",
        &["spec.event.webhook.scheme:"],
    );
}

#[test]
fn delete_refuses_dangling_referrers() {
    let (mut base, _) = parse_documents("bundle.yaml", BUNDLE);
    assert!(validate_apply(&mut base, &Snapshot::default(), None).is_empty());
    let s0 = Snapshot::default();
    let s = s0.apply(&s0.plan(
        &base.iter().map(|d| d.manifest.clone()).collect::<Vec<_>>(),
        chrono::DateTime::UNIX_EPOCH,
    ));
    let key = |k, n: &str| ResourceKey::new("default", k, n);
    let got = validate_delete(&s, &[key(Kind::Workflow, "secret-rotation")]);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].to_string(),
        "trigger/weekly: spec.action.workflow: refers to workflow/secret-rotation, which this delete removes (hint: change or delete trigger/weekly first, or delete it in the same command)"
    );
    let got = validate_delete(&s, &[key(Kind::Agent, "rotator")]);
    assert!(
        got[0]
            .to_string()
            .contains("workflow/secret-rotation: spec.steps[0].required_capability"),
        "{}",
        got[0]
    );
    assert!(
        validate_delete(
            &s,
            &[
                key(Kind::Workflow, "secret-rotation"),
                key(Kind::Trigger, "weekly")
            ]
        )
        .is_empty()
    );
    assert!(validate_delete(&s, &[key(Kind::Trigger, "weekly")]).is_empty());
}

#[test]
fn root_path_resolution() {
    assert_eq!(
        resolve_root_path("../ws", Path::new("/srv/manifests")),
        "/srv/ws"
    );
    assert_eq!(resolve_root_path("/abs", Path::new("/srv")), "/abs");
    assert_eq!(resolve_root_path(".", Path::new("/srv/m")), "/srv/m");
}

#[test]
fn webhooks_without_a_usable_key_are_found() {
    let text = |value: &str| {
        format!(
            "{BUNDLE}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{value}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}}}\n  action: {{workflow: secret-rotation, workspace: default}}\n"
        )
    };
    let snapshot_of = |t: &str| {
        let (mut docs, p) = parse_documents("f", t);
        assert!(p.is_empty(), "{p:?}");
        let _ = validate_apply(&mut docs, &Snapshot::default(), None);
        let s0 = Snapshot::default();
        // The later SecretStore document replaces the bundle's one of the same name.
        let mut seen = std::collections::HashMap::new();
        for d in docs {
            seen.insert(
                (d.manifest.kind(), d.manifest.name().to_owned()),
                d.manifest,
            );
        }
        let manifests: Vec<_> = seen.into_values().collect();
        s0.apply(&s0.plan(&manifests, chrono::DateTime::UNIX_EPOCH))
    };
    assert!(unverifiable_webhooks(&snapshot_of(&text("s3cr3t"))).is_empty());
    let found = unverifiable_webhooks(&snapshot_of(&text("")));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].to_string().starts_with(
            "trigger/hook: spec.event.webhook.secret: the webhook server listens beyond loopback"
        ),
        "{}",
        found[0]
    );
}
