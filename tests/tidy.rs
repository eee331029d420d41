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
/// sides need, such as the socket's file name, live in `layout`), nor an HTTP stack with TLS.
#[test]
fn the_cli_never_sees_the_daemons_insides() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "src/cli/ holds no Rust file");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a CLI file");
        for (at, _) in text.match_indices("crate::") {
            let module: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                ["api", "domain", "layout", "cli"].contains(&module.as_str()),
                "{} uses crate::{module}: the CLI may use only api, domain and layout",
                f.display()
            );
        }
        for word in ["reqwest::", "warp::", "rustls", "rusqlite::", "ractor::"] {
            assert!(
                !text.contains(word),
                "{} uses {word}: the CLI binary must not link the daemon's stack",
                f.display()
            );
        }
    }
}
