//! What every backend must do, as tests that take the stores and run the same checks on
//! each: `sqlite::conformance_tests` and `postgres::conformance_tests` call these on a fresh
//! database of their own.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::api::RotationStage;
use crate::domain::manifest::{Kind, fingerprint, parse_documents};
use crate::domain::rotation::RotationUpdate;
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{ResourceKey, Snapshot};
use crate::domain::trigger_plan::{EventKind, TriggerEvent, TriggerState};

mod cluster;
mod task_nodes;
pub(crate) use cluster::{cron_fires_are_fenced_and_once, lease, membership, rotation_claims};
pub(crate) use task_nodes::{a_dead_nodes_tasks_fail, tasks_name_their_node};

/// A whole millisecond (both backends keep at least that much of an instant).
pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000 + ms)
        .single()
        .expect("a valid instant")
}

pub(crate) fn secret_doc(values: &[(&str, &str)]) -> Vec<crate::domain::manifest::Manifest> {
    let data: String = values
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let text = format!(
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata:\n  name: hooks\n  project: default\nspec:\n  data:\n{data}"
    );
    let (docs, p) = parse_documents("f", &text);
    assert!(p.is_empty(), "{p:?}");
    docs.into_iter().map(|d| d.manifest).collect()
}

pub(crate) fn apply(
    store: &dyn ResourceStore,
    snap: &Snapshot,
    m: &[crate::domain::manifest::Manifest],
) -> Snapshot {
    let changes = snap.plan(m, at(0));
    let next = snap.apply(&changes);
    store
        .commit(&changes, next.revision, at(1), SetBy::Apply)
        .expect("commit");
    next
}

/// Two applies of a SecretStore: the values come back from the store, the history and the key
/// metadata say what changed (fingerprints only), and a stamp of a real delivery — never a
/// test — is "last verified at", cleared when the key's value changes.
pub(crate) fn desired_state_and_stamps(r: &dyn ResourceStore, v: &dyn VerificationStore) {
    assert_eq!(r.revision().expect("revision"), 0);
    let s1 = apply(
        r,
        &Snapshot::default(),
        &secret_doc(&[("old", "plain-old-value")]),
    );
    let stamp = |key: &str, ms: i64, proof: Proof| Verification {
        project: "default".into(),
        store: "hooks".into(),
        key: key.into(),
        trigger: "gh".into(),
        at: at(ms),
        proof,
    };
    v.record(&[stamp("old", 10, Proof::WebhookTest)])
        .expect("stamp");
    assert_eq!(
        v.last_verified("default", "hooks", "old").expect("read"),
        None
    );
    v.record(&[
        stamp("old", 20, Proof::Delivery),
        stamp("old", 15, Proof::Delivery),
    ])
    .expect("stamp");
    assert_eq!(
        v.last_verified("default", "hooks", "old").expect("read"),
        Some(at(20)),
        "an older stamp never replaces a newer one"
    );
    let s2 = apply(
        r,
        &s1,
        &secret_doc(&[("old", "plain-old-value"), ("new", "plain-new-value")]),
    );
    assert_eq!(r.revision().expect("revision"), 2);
    let loaded = r.load_snapshot().expect("load");
    assert_eq!(loaded.revision, 2);
    let data = &loaded.secret_store("default", "hooks").expect("store").data;
    assert_eq!(data["new"].expose(), "plain-new-value");
    assert_eq!(data["old"].expose(), "plain-old-value");
    assert_eq!(
        loaded
            .secret_store("default", "hooks")
            .and_then(|s| s.applied.clone()),
        s2.secret_store("default", "hooks")
            .and_then(|s| s.applied.clone()),
        "what the last apply declared survives"
    );
    let hist = r
        .history(&ResourceKey::new("default", Kind::SecretStore, "hooks"), 10)
        .expect("history");
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].revision, 2);
    assert_eq!(hist[0].detail["added"], serde_json::json!(["new"]));
    assert_eq!(
        hist[0].detail["keys"]["new"],
        fingerprint("plain-new-value")
    );
    let meta = r.key_meta("default", "hooks").expect("meta");
    assert_eq!(
        meta.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["new", "old"]
    );
    assert_eq!(meta[0].length, 15);
    assert_eq!(meta[0].set_by, Some(SetBy::Apply));
    assert_eq!(
        meta[1].last_verified_at,
        Some(at(20)),
        "an unchanged key keeps its stamp"
    );
    assert_eq!(meta[1].last_tested_at, Some(at(10)));
    assert_eq!(meta[1].last_tested_by.as_deref(), Some("webhook test"));
    // Changing the old key's value clears its stamps; deleting the store removes its keys.
    let s3 = apply(
        r,
        &s2,
        &secret_doc(&[("old", "another"), ("new", "plain-new-value")]),
    );
    let meta = r.key_meta("default", "hooks").expect("meta");
    assert_eq!(meta[1].last_verified_at, None);
    let deleted: Vec<_> = s3
        .iter()
        .map(|res| crate::domain::snapshot::Change {
            outcome: crate::domain::snapshot::Outcome::Deleted,
            resource: (**res).clone(),
            keys: Vec::new(),
        })
        .collect();
    r.commit(&deleted, 4, at(3), SetBy::Apply).expect("delete");
    assert!(r.key_meta("default", "hooks").expect("meta").is_empty());
    assert!(
        r.load_snapshot()
            .expect("load")
            .secret_store("default", "hooks")
            .is_none()
    );
}

/// Trigger state round-trips; manual fires are counted apart; the history is newest first and
/// trimmed; a removed trigger is gone.
pub(crate) fn trigger_state(t: &dyn TriggerStore) {
    let state = TriggerState {
        generation: 3,
        last_scheduled: Some(at(1_000)),
        last_fire: Some(at(1_005)),
        last_task: Some(42),
        next_fire: Some(at(61_000)),
        fires: 7,
        skips: 1,
        missed: 2,
    };
    let event = |n: i64, kind: EventKind| TriggerEvent {
        at: at(n),
        kind,
        scheduled: Some(at(n - 5)),
        task: Some(n as u64),
        lateness_ms: Some(5.0),
        reason: None,
    };
    assert_eq!(t.get("default", "nightly").expect("get"), None);
    t.save(
        "default",
        "nightly",
        &state,
        Some(&event(1_005, EventKind::Fired)),
        at(1_006),
    )
    .expect("save");
    assert_eq!(
        t.get("default", "nightly").expect("get"),
        Some(state.clone())
    );
    t.manual_fire("default", "nightly", &event(2_000, EventKind::Fired))
        .expect("manual");
    t.manual_fire("default", "nightly", &event(2_100, EventKind::Skipped))
        .expect("manual");
    t.manual_fire("default", "fresh", &event(2_200, EventKind::Fired))
        .expect("manual on a trigger without state");
    let manual = t.manual_fires("default", "nightly").expect("manual");
    assert_eq!((manual.fires, manual.skips), (1, 1));
    assert_eq!(manual.last_fire, Some(at(2_000)));
    assert_eq!(manual.last_task, Some(2_000));
    assert_eq!(
        t.get("default", "nightly").expect("get"),
        Some(state.clone()),
        "manual fires leave the actor's columns alone"
    );
    let rows: Vec<SaveRow> = (0..(HISTORY_ROWS + 60))
        .map(|n| SaveRow {
            project: "default".into(),
            name: "nightly".into(),
            state: TriggerState {
                fires: n as u64,
                ..state.clone()
            },
            event: Some(event(10_000 + n, EventKind::Missed)),
        })
        .collect();
    t.save_many(&rows, at(20_000)).expect("save many");
    let events = t.events("default", "nightly", 10_000).expect("events");
    assert!(
        events.len() as i64 <= HISTORY_ROWS + 50,
        "trimmed: {}",
        events.len()
    );
    assert_eq!(events[0].at, at(10_000 + HISTORY_ROWS + 59), "newest first");
    assert_eq!(events[0].kind, EventKind::Missed);
    assert_eq!(events[0].lateness_ms, Some(5.0));
    let all = t.all().expect("all");
    assert_eq!(all.len(), 2);
    assert_eq!(all[&("default".into(), "fresh".into())].generation, 0);
    t.remove("default", "nightly").expect("remove");
    assert_eq!(t.get("default", "nightly").expect("get"), None);
    assert!(
        t.events("default", "nightly", 10)
            .expect("events")
            .is_empty()
    );
}

/// A rotation moves through its stages and is resumable until it is done; token refreshes are
/// bounded per token.
pub(crate) fn rotations(r: &dyn RotationStore) {
    let id = r
        .create(&NewRotation {
            project: "default",
            store: "hooks",
            key: "github",
            provider: "script",
            old_fingerprint: "fp-old".into(),
            started_at: at(0),
            node: "a",
        })
        .expect("create");
    assert_eq!(r.platform_set(id).expect("read"), Some(false));
    r.update(
        id,
        RotationStage::Test,
        &RotationUpdate {
            new_fingerprint: Some("fp-new".into()),
            platform_set: Some(true),
            set_at: Some(at(5)),
            ..Default::default()
        },
        at(5),
    )
    .expect("update");
    let got = r.get(id).expect("get");
    assert_eq!(got.stage, RotationStage::Test);
    assert_eq!(got.new_fingerprint.as_deref(), Some("fp-new"));
    assert_eq!(got.set_at, Some(at(5)));
    assert_eq!(got.started_at, at(0));
    assert_eq!(r.platform_set(id).expect("read"), Some(true));
    assert_eq!(r.unfinished().expect("unfinished").len(), 1);
    r.update(
        id,
        RotationStage::Done,
        &RotationUpdate {
            finished_at: Some(at(9)),
            ..Default::default()
        },
        at(9),
    )
    .expect("update");
    assert!(r.unfinished().expect("unfinished").is_empty());
    assert_eq!(
        r.get(id).expect("get").new_fingerprint.as_deref(),
        Some("fp-new")
    );
    for n in 0..(REFRESHES_KEPT + 5) {
        r.record_refresh(&FinishedRefresh {
            project: "default",
            store: "tokens",
            key: "api",
            provider: "oauth2",
            done: n % 2 == 0,
            reason: format!("refresh {n}"),
            old_fingerprint: None,
            new_fingerprint: Some(format!("fp-{n}")),
            started_at: at(n as i64),
            finished_at: at(n as i64 + 1),
        })
        .expect("refresh");
    }
    let history = r.history("default", "tokens", 1_000).expect("history");
    assert_eq!(history.len(), REFRESHES_KEPT);
    assert_eq!(
        history[0].reason.as_deref(),
        Some(format!("refresh {}", REFRESHES_KEPT + 4).as_str())
    );
    assert_eq!(r.platform_set(u64::MAX >> 1).expect("read"), None);
    assert!(r.get(u64::MAX >> 1).is_err());
}

fn delivery(trigger: &str, n: usize) -> NewDelivery {
    NewDelivery {
        project: "default".into(),
        trigger: trigger.into(),
        received_at: at(n as i64),
        status: 202,
        outcome: "accepted".into(),
        key: Some("github".into()),
        task: Some(n as u64),
        delivery_id: Some(format!("d-{n}")),
        payload_bytes: 9,
        payload: Some(format!("{{\"n\":{n}}}")),
    }
}

/// The delivery log keeps the newest rows per trigger, and the newest payloads among them.
pub(crate) fn delivery_log(d: &dyn DeliveryStore) {
    let total = DELIVERIES_KEPT + 50;
    let batch: Vec<_> = (0..total).map(|n| delivery("hook", n)).collect();
    for chunk in batch.chunks(300) {
        d.record(chunk).expect("recorded");
    }
    d.record(&[delivery("other", 7)]).expect("recorded");
    let rows = d.list("default", "hook", 10_000).expect("list");
    assert_eq!(rows.len(), DELIVERIES_KEPT, "older rows are trimmed");
    assert_eq!(
        rows[0].delivery.task,
        Some(total as u64 - 1),
        "newest first"
    );
    assert_eq!(rows[0].delivery.received_at, at(total as i64 - 1));
    assert!(rows.iter().all(|r| r.delivery.payload.is_none()));
    let kept = rows.iter().filter(|r| r.has_payload).count();
    assert_eq!(kept, PAYLOADS_KEPT, "only the newest keep their payload");
    assert!(rows[..PAYLOADS_KEPT].iter().all(|r| r.has_payload));
    let newest = d.get(rows[0].id).expect("get").expect("the row");
    assert_eq!(
        newest.delivery.payload.as_deref(),
        Some(format!("{{\"n\":{}}}", total - 1).as_str())
    );
    let old = d
        .get(rows[PAYLOADS_KEPT].id)
        .expect("get")
        .expect("the row");
    assert_eq!(old.delivery.payload, None);
    let other = d.list("default", "other", 10).expect("list");
    assert_eq!(other.len(), 1, "another trigger's rows are its own");
    assert_eq!(d.get(u64::MAX >> 1).expect("get"), None);
}
