//! The membership and lease checks every backend passes.

use std::time::Duration;

use super::at;
use crate::api::RotationStage;
use crate::domain::rotation::RotationUpdate;
use crate::store::cluster::{Beat, ClusterStore, Fence, Joined, LEADER};
use crate::store::{NewRotation, RotationStore};

fn beat(node: &str, instance: &str, host: &str) -> Beat {
    Beat {
        node: node.into(),
        instance: instance.into(),
        host: host.into(),
        pid: 42,
        version: "0.1.0".into(),
        started_at: at(0),
        revision: 3,
        ttl: Duration::from_secs(10),
        webhook: Some("127.0.0.1:19090".into()),
        running: 2,
    }
}

pub(crate) fn membership(c: &dyn ClusterStore) {
    let a = beat("a", "i1", "h1");
    assert_eq!(c.join(&a, at(0)).expect("join"), Joined::Joined);
    assert!(
        c.heartbeat(
            &Beat {
                revision: 4,
                ..a.clone()
            },
            at(1_000)
        )
        .expect("beat")
    );
    let nodes = c.nodes().expect("nodes");
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(
        (n.node.as_str(), n.revision, n.heartbeat_at),
        ("a", 4, at(1_000))
    );
    assert_eq!(n.ttl, Duration::from_secs(10));
    assert_eq!(n.webhook.as_deref(), Some("127.0.0.1:19090"));
    assert_eq!(n.running, 2);
    assert!(
        n.live(at(10_999)) && !n.live(at(11_000)),
        "dead after its TTL"
    );

    // Another host's daemon with the same id is refused while "a" lives, not after.
    let other = beat("a", "i2", "h2");
    match c.join(&other, at(5_000)).expect("join") {
        Joined::Taken { host, heartbeat_at } => {
            assert_eq!((host.as_str(), heartbeat_at), ("h1", at(1_000)));
        }
        j => panic!("{j:?}"),
    }
    // The same host (a restart after kill -9) takes its id back at once; the old instance's
    // heartbeats no longer count.
    let again = beat("a", "i3", "h1");
    assert_eq!(c.join(&again, at(5_000)).expect("join"), Joined::Joined);
    assert!(
        !c.heartbeat(&a, at(6_000)).expect("beat"),
        "the old instance lost the id"
    );
    assert!(c.heartbeat(&again, at(6_000)).expect("beat"));

    // A clean stop leaves the count of live nodes at once; a later join clears it.
    c.leave("a", "i3", at(7_000)).expect("leave");
    let n = &c.nodes().expect("nodes")[0];
    assert_eq!(n.stopped_at, Some(at(7_000)));
    assert!(!n.live(at(7_001)));
    let b = beat("b", "j1", "h2");
    assert_eq!(c.join(&b, at(8_000)).expect("join"), Joined::Joined);
    assert_eq!(
        c.nodes()
            .expect("nodes")
            .iter()
            .map(|n| n.node.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Rows of nodes gone (stopped, or silent) before the bound are forgotten; others stay.
    assert_eq!(c.forget(at(7_500)).expect("forget"), 1);
    assert_eq!(c.nodes().expect("nodes")[0].node, "b");
}

pub(crate) fn lease(c: &dyn ClusterStore) {
    let ttl = Duration::from_secs(10);
    assert_eq!(c.lease(LEADER).expect("lease"), None);
    assert_eq!(c.acquire(LEADER, "a", ttl, at(0)).expect("a"), Some(1));
    // Renewing keeps the token; another holder is refused until the lease expires.
    assert_eq!(c.acquire(LEADER, "a", ttl, at(1_000)).expect("a"), Some(1));
    assert_eq!(c.acquire(LEADER, "b", ttl, at(10_999)).expect("b"), None);
    let l = c.lease(LEADER).expect("lease").expect("held");
    assert_eq!((l.holder.as_str(), l.token), ("a", 1));
    assert_eq!((l.acquired_at, l.expires_at), (at(0), at(11_000)));
    // Expired: "b" takes it with the next token, and "a" cannot renew it.
    assert_eq!(c.acquire(LEADER, "b", ttl, at(11_000)).expect("b"), Some(2));
    assert_eq!(c.acquire(LEADER, "a", ttl, at(11_001)).expect("a"), None);
    // A stale fence releases nothing; the holder's release lets "a" in at once.
    let stale = Fence {
        holder: "a".into(),
        token: 1,
    };
    c.release(LEADER, &stale, at(12_000)).expect("release");
    assert_eq!(c.acquire(LEADER, "a", ttl, at(12_000)).expect("a"), None);
    let held = Fence {
        holder: "b".into(),
        token: 2,
    };
    c.release(LEADER, &held, at(12_000)).expect("release");
    assert_eq!(c.acquire(LEADER, "a", ttl, at(12_000)).expect("a"), Some(3));
    // The same holder taking its own expired lease again gets a new token: whatever it
    // started under the old one is fenced off.
    assert_eq!(c.acquire(LEADER, "a", ttl, at(30_000)).expect("a"), Some(4));
}

/// A cron fire's task is created only under the lease it names, and once per instant.
pub(crate) fn cron_fires_are_fenced_and_once(
    tasks: &dyn crate::store::TaskStore,
    c: &dyn ClusterStore,
) {
    use crate::api::TaskState;
    use crate::store::{NewTask, StoreError};
    let ttl = Duration::from_secs(10);
    let now = chrono::Utc::now();
    let token = c.acquire(LEADER, "a", ttl, now).expect("a").expect("free");
    let fire = |fence: Fence, at_ms: i64| NewTask {
        project: "default".into(),
        workflow: "w".into(),
        workspace: "default".into(),
        workspace_root: "/tmp".into(),
        workflow_spec: serde_json::json!({"steps": []}),
        goal: None,
        payload: None,
        origin: "trigger/nightly".into(),
        trigger: Some("nightly".into()),
        scheduled_at: Some(at(at_ms)),
        state: TaskState::Pending,
        reason: None,
        held: true,
        worktree: false,
        fence: Some(fence),
    };
    let ours = Fence {
        holder: "a".into(),
        token,
    };
    let first = tasks.create(&fire(ours.clone(), 0), now).expect("fired");
    // The same instant again (a new leader that did not see the first fire recorded): refused,
    // naming the task it made.
    match tasks.create(&fire(ours.clone(), 0), now) {
        Err(StoreError::AlreadyFired { task }) => assert_eq!(task, first.id),
        other => panic!("{other:?}"),
    }
    // Another instant under the same lease fires.
    tasks
        .create(&fire(ours.clone(), 60_000), now)
        .expect("next instant");
    // "b" takes the expired lease: "a"'s fires are fenced off, and nothing is written.
    let later = now + chrono::Duration::seconds(11);
    let theirs = c
        .acquire(LEADER, "b", ttl, later)
        .expect("b")
        .expect("expired");
    assert_eq!(theirs, token + 1);
    let before = tasks
        .list(&crate::api::TaskQuery::default(), None)
        .expect("list")
        .len();
    assert!(matches!(
        tasks.create(&fire(ours, 120_000), later),
        Err(StoreError::Fenced)
    ));
    let stale = Fence {
        holder: "b".into(),
        token,
    };
    assert!(matches!(
        tasks.create(&fire(stale, 120_000), later),
        Err(StoreError::Fenced)
    ));
    let after = tasks
        .list(&crate::api::TaskQuery::default(), None)
        .expect("list")
        .len();
    assert_eq!(before, after, "a fenced fire writes nothing");
    let b = Fence {
        holder: "b".into(),
        token: theirs,
    };
    tasks
        .create(&fire(b, 120_000), later)
        .expect("the new leader fires");
}

/// A staged rotation's row is its lock: the node that started it holds it, another node is
/// refused while the holder lives and granted it once the holder's heartbeat expired (or it
/// stopped); an unowned rotation goes to whoever claims it; an ended one to nobody.
pub(crate) fn rotation_claims(r: &dyn RotationStore, c: &dyn ClusterStore) {
    let (a, b) = (beat("a", "ia", "ha"), beat("b", "ib", "hb"));
    assert_eq!(c.join(&a, at(0)).expect("join"), Joined::Joined);
    assert_eq!(c.join(&b, at(0)).expect("join"), Joined::Joined);
    let new = |node| NewRotation {
        project: "default",
        store: "hooks",
        key: "github",
        provider: "script",
        old_fingerprint: "fp-old".into(),
        started_at: at(0),
        node,
    };
    let id = r.create(&new("a")).expect("create");
    assert!(r.claim(id, "a", at(1_000)).expect("claim"), "its own");
    assert!(!r.claim(id, "b", at(1_000)).expect("claim"), "a lives");
    assert!(c.heartbeat(&a, at(5_000)).expect("beat"));
    assert!(c.heartbeat(&b, at(14_000)).expect("beat"));
    assert!(
        !r.claim(id, "b", at(14_999)).expect("claim"),
        "a's heartbeat is young"
    );
    assert!(
        r.claim(id, "b", at(15_000)).expect("claim"),
        "a's heartbeat expired"
    );
    // b holds it now: a, come back, is refused while b lives.
    assert!(c.heartbeat(&a, at(15_000)).expect("beat"));
    assert!(!r.claim(id, "a", at(15_000)).expect("claim"), "b lives");
    assert!(r.claim(id, "b", at(15_000)).expect("claim"), "b holds it");
    // A holder that stopped cleanly gives it up at once.
    c.leave("b", "ib", at(16_000)).expect("leave");
    assert!(r.claim(id, "a", at(16_000)).expect("claim"), "b stopped");
    // A holder without a nodes row (forgotten) holds nothing.
    let other = r.create(&new("gone")).expect("create");
    assert!(
        r.claim(other, "b", at(16_000)).expect("claim"),
        "no such node"
    );
    // An ended rotation is nobody's to claim, nor one that does not exist.
    r.update(
        id,
        RotationStage::Done,
        &RotationUpdate::default(),
        at(17_000),
    )
    .expect("update");
    assert!(!r.claim(id, "a", at(17_000)).expect("claim"), "it ended");
    assert!(
        !r.claim(id + 1_000, "a", at(17_000)).expect("claim"),
        "none"
    );
}
