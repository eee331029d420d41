//! Apply, measured two ways:
//! - in process: parse + validate of the secret-rotation bundle and of a 100-document file;
//! - end to end: a whole `orchestrator apply -f FILE` CLI process against a real release-built
//!   daemon on a temporary data dir (each iteration changes the manifest, so every apply commits
//!   and fsyncs), for 1 resource and for 100 SecretStores in one file.
//!
//! It also prints the daemon's resident memory right after start (idle) and after the runs.
//! Run: `cargo bench --bench apply`.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Daemon, rss_kib};

use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator::domain::manifest::{Spec, parse_documents};
use orchestrator::domain::snapshot::Snapshot;
use orchestrator::domain::validate::{resolve_root_path, validate_apply};

fn bundle_text() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/secret-rotation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("bundle dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("read");
            (p, t)
        })
        .collect()
}

fn secret_stores(n: usize, round: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata:\n  name: store-{i}\nspec:\n  data:\n    github: \"value-{i}-{round}-abcdefghijklmnopqrstuvwxyz\"\n    slack: \"slack-{i}-{round}-0123456789\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn parse_and_validate(sources: &[(PathBuf, String)]) -> usize {
    let mut docs = Vec::new();
    for (path, text) in sources {
        let (mut parsed, problems) = parse_documents(&path.display().to_string(), text);
        assert!(problems.is_empty());
        for d in &mut parsed {
            if let Spec::Workspace(w) = &mut d.manifest.spec {
                w.root_path = resolve_root_path(&w.root_path, path.parent().expect("dir"));
            }
        }
        docs.extend(parsed);
    }
    let problems = validate_apply(&mut docs, &Snapshot::default(), None);
    assert!(problems.is_empty());
    docs.len()
}

fn in_process(c: &mut Criterion) {
    let bundle = bundle_text();
    let hundred = vec![(PathBuf::from("/tmp/hundred.yaml"), secret_stores(100, 0))];
    let mut g = c.benchmark_group("parse_validate");
    g.bench_function("secret_rotation_bundle", |b| {
        b.iter(|| parse_and_validate(&bundle))
    });
    g.bench_function("100_documents", |b| b.iter(|| parse_and_validate(&hundred)));
    g.finish();
}

fn cli_apply(socket: &Path, file: &Path) {
    let st = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("--socket")
        .arg(socket)
        .args(["apply", "-f"])
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("run cli");
    assert!(st.success());
}

fn end_to_end(c: &mut Criterion) {
    let d = Daemon::start();
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(d.pid());
    eprintln!(
        "daemon RSS idle after start: {idle} KiB ({:.1} MiB)",
        idle as f64 / 1024.0
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("cli_apply");
    g.sample_size(50);

    let one = dir.path().join("one.yaml");
    let mut round = 0usize;
    g.bench_function("1_resource", |b| {
        b.iter_batched(
            || {
                round += 1;
                std::fs::write(
                    &one,
                    format!("apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata:\n  name: t\nspec:\n  prompt: \"round {round}\"\n"),
                )
                .expect("write");
            },
            |()| cli_apply(&d.socket, &one),
            criterion::BatchSize::PerIteration,
        )
    });

    let hundred = dir.path().join("hundred.yaml");
    g.bench_function("100_secretstores", |b| {
        b.iter_batched(
            || {
                round += 1;
                std::fs::write(&hundred, secret_stores(100, round)).expect("write");
            },
            |()| cli_apply(&d.socket, &hundred),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
    let after = rss_kib(d.pid());
    eprintln!(
        "daemon RSS after the apply benches: {after} KiB ({:.1} MiB)",
        after as f64 / 1024.0
    );
}

criterion_group!(benches, in_process, end_to_end);
criterion_main!(benches);
