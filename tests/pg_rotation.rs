//! Rotation once (issue 17): two daemons, `a` and `b`, on one PostgreSQL database. A staged
//! rotation started on `a` waits in its test stage; `b`, started then, leaves it to `a` (its
//! row names `a`, who lives); `a` is `kill -9`ed; once `a`'s heartbeat is older than its TTL,
//! `b`'s periodic pass claims the rotation and finishes it from its recorded stage, without a
//! restart of anything.

use std::sync::atomic::Ordering;
use std::time::Duration;

use orchestrator::domain::manifest::fingerprint;

use crate::common::eventually;
use crate::postgres::{database, key_file, node};
use crate::rotation::{FakeGithub, OLD, deliver, setup};

#[test]
fn a_rotation_of_a_killed_node_goes_on_on_another_node() {
    let Some(db) = database("a_rotation_of_a_killed_node_goes_on") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let node = |id: &str| node(&db, &key, id);
    let mut a = node("a");
    let fake = FakeGithub::start();
    setup(&a, &fake, 120);
    fake.drop_pings.store(true, Ordering::Relaxed);
    let socket = a.socket.clone();
    let rotate = std::thread::spawn(move || {
        std::process::Command::new(crate::common::CLI)
            .args([
                "--socket",
                socket.to_str().expect("path"),
                "secret",
                "rotate",
                "webhook-secrets",
            ])
            .output()
    });
    eventually(Duration::from_secs(20), "the test stage", || {
        let desc = a
            .cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
            .json();
        (desc["rotations"][0]["stage"] == "test" && fake.secret() != OLD).then_some(())
    });
    let new = fake.secret();
    // b starts while a runs the rotation: b's start does not take it.
    let b = node("b");
    assert_eq!(deliver(&b, &new, 1), 202);
    assert!(
        !b.log().contains("resuming an interrupted rotation"),
        "b left a's rotation alone while a lives: {}",
        b.log()
    );
    fake.deliver_to(b.webhook.expect("webhook"), "/webhook/github-events");
    fake.drop_pings.store(false, Ordering::Relaxed);
    a.kill9();
    let _ = rotate.join();
    let done = eventually(Duration::from_secs(60), "b to finish a's rotation", || {
        let desc = b
            .cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
            .json();
        (desc["rotations"][0]["stage"] == "done").then_some(desc)
    });
    assert_eq!(done["rotations"][0]["newFingerprint"], fingerprint(&new));
    let log = b.log();
    assert_eq!(
        log.matches("resuming an interrupted rotation").count(),
        1,
        "b resumed it once, after a died: {log}"
    );
    assert_eq!(deliver(&b, &new, 2), 202);
    assert_eq!(deliver(&b, OLD, 3), 401);
}
