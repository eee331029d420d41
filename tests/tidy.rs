//! Repository-wide rules: the domain layer stays pure, and every example manifest parses and
//! validates.

use std::path::Path;

use orchestrator::domain::manifest::parse_documents;
use orchestrator::domain::snapshot::Snapshot;
use orchestrator::domain::validate::{resolve_root_path, validate_apply};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn domain_is_pure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty());
    let forbidden = [
        "tokio::",
        "warp::",
        "ractor::",
        "reqwest::",
        "rusqlite::",
        "std::fs",
        "std::net",
        "std::process",
        "Utc::now",
        "Local::now",
        "SystemTime::now",
        "Instant::now",
    ];
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} uses {word}: the domain layer must not do IO or read the clock",
                f.display()
            );
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_manifest_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut bundles: Vec<_> = std::fs::read_dir(&root)
        .expect("manifests/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    bundles.sort();
    assert!(!bundles.is_empty(), "manifests/ holds no bundle");
    for bundle in bundles {
        let mut files = Vec::new();
        yaml_files(&bundle, &mut files);
        files.sort();
        let mut docs = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read manifest");
            let (mut parsed, problems) = parse_documents(&f.display().to_string(), &text);
            assert!(problems.is_empty(), "{}: {problems:#?}", f.display());
            for d in &mut parsed {
                if let orchestrator::domain::manifest::Spec::Workspace(w) = &mut d.manifest.spec {
                    let base = f.parent().expect("parent");
                    w.root_path = resolve_root_path(&w.root_path, base);
                }
            }
            docs.extend(parsed);
        }
        let problems = validate_apply(&mut docs, &Snapshot::default(), None);
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(shown.is_empty(), "bundle {}: {shown:#?}", bundle.display());
    }
}

/// The CLI talks to the daemon only through the control API's wire types: it never links the
/// daemon's wiring, its store, its HTTP handlers or its process management (the names both
/// sides need, such as the socket's file name, live in `layout`).
#[test]
fn the_cli_never_sees_the_daemons_insides() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli.rs");
    let text = std::fs::read_to_string(&cli).expect("read src/cli.rs");
    for layer in [
        "crate::daemon",
        "crate::store",
        "crate::task_store",
        "crate::trigger_store",
        "crate::http",
        "crate::process",
        "crate::rotation",
    ] {
        assert!(
            !text.contains(layer),
            "src/cli.rs uses {layer}: the CLI may use only api, domain and layout"
        );
    }
}

/// Every SQL statement lives in `src/store/`: nothing else names rusqlite, so a second backend
/// plugs in behind the store's traits without touching a caller. The store itself sits below
/// the actors: it uses the wire types, the domain and the data dir's layout, never the layers
/// that hold it.
#[test]
fn sql_lives_only_in_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = root.join("src/store");
    let mut files = Vec::new();
    for dir in ["src", "actors", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        if f.starts_with(&store) {
            for layer in [
                "crate::actors",
                "crate::http",
                "crate::rotation",
                "crate::process",
                "crate::daemon",
                "crate::cli",
            ] {
                assert!(
                    !text.contains(layer),
                    "{} uses {layer}: the store may use only api, domain and layout",
                    f.display()
                );
            }
        } else if !f.ends_with("tests/tidy.rs") {
            assert!(
                !text.contains("rusqlite"),
                "{} names rusqlite: SQL belongs in src/store/ behind its traits",
                f.display()
            );
        }
    }
}

/// The actors sit below the HTTP edge: nothing under `actors/` names `crate::http` (the
/// WebhookActor is handed its serve fn by the daemon). The edge sits below the daemon's wiring:
/// nothing under `src/http/` names `crate::daemon` (what a handler needs of it, such as the root
/// supervisor's name, arrives in its context).
#[test]
fn layers_import_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, layer, why) in [
        ("actors", "crate::http", "actors never import the HTTP edge"),
        (
            "src/http",
            "crate::daemon",
            "the HTTP edge never imports the daemon's wiring",
        ),
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} holds no Rust file");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            assert!(!text.contains(layer), "{} uses {layer}: {why}", f.display());
        }
    }
}
