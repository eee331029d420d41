//! Webhook load harness: a fixed number of keep-alive connections (16) sending for a fixed
//! time (5 s per scenario) against loopback, the load generator and the server on the same
//! machine. Three scenarios, measured in the same run:
//! - `bare warp`: a warp "hello" server (this bench binary started again as a separate process,
//!   with a 2-worker runtime like the daemon's) — the HTTP ceiling of this machine;
//! - `rejected`: deliveries with a wrong GitHub signature (1 KiB body) → 401;
//! - `accepted`: correctly signed deliveries with unique delivery ids → 202 once the task row
//!   is committed (`action.start: false`, `concurrencyPolicy: Allow`).
//!
//! Run: `cargo bench --bench webhook_load`. It prints requests/s, p50 and p99 per scenario and the
//! rejected/bare ratio.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use orchestrator::domain::signature::{Scheme, sign};
use support::load::{CONNECTIONS, DURATION, load, report};
use support::{Daemon, percentile_ms, workspace_manifest};

const SECRET: &str = "load-test-signing-secret";

/// Runs as the bare warp server when started with this variable set.
fn hello_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use warp::Filter;
        let route = warp::any().map(|| "hello".to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        warp::serve(route).incoming(listener).run().await;
    });
}

fn main() {
    if std::env::var_os("WEBHOOK_LOAD_HELLO_SERVER").is_some() {
        return hello_server();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` support
    }
    eprintln!(
        "load: {CONNECTIONS} connections, {} s per scenario, client and server on this machine",
        DURATION.as_secs()
    );

    let mut hello = Command::new(std::env::current_exe().expect("exe"))
        .env("WEBHOOK_LOAD_HELLO_SERVER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("hello server");
    let mut line = String::new();
    BufReader::new(hello.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("hello address");
    let hello_addr: SocketAddr = line.trim().parse().expect("address");
    let bare = report(
        "bare warp",
        &load(vec![format!("http://{hello_addr}/")], 200, |_| {
            (Vec::new(), Vec::new())
        }),
    );
    let _ = hello.kill();
    let _ = hello.wait();

    let d = Daemon::start();
    let ws = d.path("ws");
    d.apply(&format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{SECRET}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: load}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}\n  action: {{workflow: quick, workspace: default, start: false}}\n  concurrencyPolicy: Allow\n",
        workspace_manifest(&ws)
    ));
    let webhook = d.webhook.clone().expect("webhook address");
    let url = format!("http://{webhook}/webhook/load");
    let body: Vec<u8> = {
        let mut b = br#"{"action": "push", "pad": ""#.to_vec();
        b.resize(1024 - 2, b'x');
        b.extend_from_slice(br#""}"#);
        b
    };
    let forged_body = body.clone();
    let rejected = report(
        "rejected",
        &load(vec![url.clone()], 401, move |n| {
            (
                sign(
                    Scheme::Github,
                    None,
                    b"wrong-secret",
                    &forged_body,
                    0,
                    &format!("r-{n}"),
                ),
                forged_body.clone(),
            )
        }),
    );
    let accepted = load(vec![url], 202, move |n| {
        (
            sign(
                Scheme::Github,
                None,
                SECRET.as_bytes(),
                &body,
                0,
                &format!("a-{n}"),
            ),
            body.clone(),
        )
    });
    report("accepted", &accepted);
    eprintln!(
        "rejected / bare warp = {:.0} %; accepted p99 {:.2} ms",
        100.0 * rejected / bare,
        percentile_ms(accepted.latencies.clone(), 0.99)
    );
}
