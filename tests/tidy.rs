//! Repository-wide rules: the layers of ARCHITECTURE.md's dependency rule import only what the
//! rule allows, SQL and child processes each live in one place, no library file outgrows 800
//! lines, the domain layer stays pure, errors are typed with their statuses given at the HTTP
//! edge, and every example manifest parses and validates.
//!
//! The rules that read source text check this checkout, or the tree named by
//! `ORCHESTRATOR_TIDY_ROOT` (how the README shows that they fail on an older tree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
    let root = tree().join("src/domain");
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

/// The bundles under `dir`: every directory that holds `*.yaml`/`*.yml` files itself
/// (`manifests/secret-rotation/`, `manifests/integrations/github/`, …), at any depth.
fn bundle_dirs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    if entries
        .iter()
        .any(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
    {
        out.push(dir.to_path_buf());
    }
    for p in entries.iter().filter(|p| p.is_dir()) {
        bundle_dirs(p, out);
    }
}

/// The documents of every manifest file under `dir`, as `apply -f DIR` reads them (name order,
/// recursively; a Workspace's relative `root_path` resolved against its file's directory).
fn bundle_documents(dir: &Path) -> Vec<orchestrator::domain::manifest::Document> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
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
    docs
}

/// Every bundle validates on its own, and all of them together (so that applying every
/// bundle into one project, `apply -f manifests/`, has no clash of names).
#[test]
fn every_example_manifest_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut bundles = Vec::new();
    bundle_dirs(&root, &mut bundles);
    let names: Vec<String> = bundles
        .iter()
        .filter_map(|b| b.strip_prefix(&root).ok())
        .map(|b| b.display().to_string())
        .collect();
    for want in [
        "secret-rotation",
        "integrations/github",
        "integrations/slack",
        "integrations/line",
        "integrations/stripe",
        "integrations/standard-webhooks",
        "integrations/token-refresh",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no bundle {want} in {names:?}"
        );
    }
    for bundle in bundles.iter().chain([&root]) {
        let mut docs = bundle_documents(bundle);
        assert!(!docs.is_empty(), "{}: no documents", bundle.display());
        let problems = validate_apply(&mut docs, &Snapshot::default(), None);
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(shown.is_empty(), "bundle {}: {shown:#?}", bundle.display());
    }
}

/// Every script a bundle's agent runs (`sh ./NAME.sh …`) is in the bundle, and is POSIX sh
/// that `sh -n` parses.
#[test]
fn every_bundle_script_is_shipped_and_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut bundles = Vec::new();
    bundle_dirs(&root, &mut bundles);
    for bundle in &bundles {
        let mut docs = bundle_documents(bundle);
        let _ = validate_apply(&mut docs, &Snapshot::default(), None);
        for d in &docs {
            let orchestrator::domain::manifest::Spec::Agent(a) = &d.manifest.spec else {
                continue;
            };
            let Some(script) = a
                .command
                .split_whitespace()
                .find_map(|w| w.strip_prefix("./"))
            else {
                continue;
            };
            let path = bundle.join(script);
            assert!(
                path.is_file(),
                "{}: {} is not in the bundle",
                d.manifest.metadata.name,
                path.display()
            );
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("run sh -n");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The tree the source rules read.
fn tree() -> PathBuf {
    std::env::var_os("ORCHESTRATOR_TIDY_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Every library file (`src/` without the binaries, and `actors/`), relative to the tree.
fn library_files() -> Vec<PathBuf> {
    let root = tree();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("actors"), &mut files);
    let mut out: Vec<PathBuf> = files
        .into_iter()
        .filter_map(|f| f.strip_prefix(&root).ok().map(Path::to_path_buf))
        .filter(|f| !f.starts_with("src/bin"))
        .collect();
    out.sort();
    out
}

fn read(rel: &Path) -> String {
    std::fs::read_to_string(tree().join(rel)).expect("read source file")
}

/// The text with `//` comments (doc comments included) cut off, so that a comment naming a
/// module is not a use of it.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The layer of the dependency rule a library file belongs to (`None`: the crate root and the
/// build script, which only declare).
fn layer_of(rel: &Path) -> Option<&'static str> {
    let s = rel.to_str()?;
    let top = s.strip_prefix("src/").map_or(s, |rest| rest);
    let first = top.split('/').next()?.trim_end_matches(".rs");
    if s.starts_with("actors/") {
        return Some("actors");
    }
    Some(match first {
        "lib" | "build" => return None,
        "task_store" | "trigger_store" => "store",
        "domain" => "domain",
        "api" => "api",
        "layout" => "layout",
        "metrics" => "metrics",
        "store" => "store",
        "process" => "process",
        "rotation" => "rotation",
        "http" => "http",
        "cli" => "cli",
        "daemon" => "daemon",
        "daemon_flags" => "daemon_flags",
        // A module the rule does not place (e.g. `redact` at the top): it may import nothing.
        _ => "unplaced",
    })
}

/// The layer a `crate::<module>` path names.
fn layer_named(module: &str) -> &str {
    match module {
        "task_store" | "trigger_store" => "store",
        "domain" | "api" | "layout" | "metrics" | "store" | "process" | "actors" | "rotation"
        | "http" | "cli" | "daemon" | "daemon_flags" => module,
        _ => "unplaced",
    }
}

/// What each layer may import, from ARCHITECTURE.md: data flows one way, edges → actors →
/// adapters → domain, with the wire types (`api`) beside the domain.
const RULE: [(&str, &[&str]); 12] = [
    ("domain", &["domain"]),
    ("api", &["api", "domain"]),
    ("layout", &["layout"]),
    // The Prometheus registry: counted in by the store, the actors, rotation and http; it knows
    // only the domain's closed sets (schemes, task states) it labels with.
    ("metrics", &["metrics", "domain"]),
    ("store", &["store", "api", "domain", "layout", "metrics"]),
    ("process", &["process", "domain"]),
    (
        "actors",
        &[
            "actors", "store", "process", "api", "domain", "layout", "metrics",
        ],
    ),
    (
        "rotation",
        &[
            "rotation", "actors", "store", "process", "api", "domain", "layout", "metrics",
        ],
    ),
    (
        "http",
        &[
            "http", "actors", "rotation", "store", "process", "api", "domain", "layout", "metrics",
        ],
    ),
    // The daemon's command line, plain clap: the CLI reads it to write the daemon's man page.
    ("daemon_flags", &["daemon_flags", "domain"]),
    ("cli", &["cli", "daemon_flags", "api", "domain", "layout"]),
    (
        "daemon",
        &[
            "daemon",
            "daemon_flags",
            "http",
            "actors",
            "rotation",
            "store",
            "process",
            "api",
            "domain",
            "layout",
            "metrics",
        ],
    ),
];

/// The crate modules a file's code names through `crate::`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// ARCHITECTURE.md's dependency rule, file by file: every `crate::` path a library file uses
/// names a layer its own layer may import. All violations are reported at once.
#[test]
fn every_layer_imports_only_what_the_rule_allows() {
    let rule: BTreeMap<&str, &[&str]> = RULE.into_iter().collect();
    let mut violations = Vec::new();
    for rel in library_files() {
        let Some(layer) = layer_of(&rel) else {
            continue;
        };
        let allowed = rule.get(layer).copied().unwrap_or(&[]);
        for module in crate_uses(&read(&rel)) {
            let named = layer_named(&module);
            if !allowed.contains(&named) {
                violations.push(format!(
                    "{} ({layer}) uses crate::{module} ({named}); {layer} may use only {}",
                    rel.display(),
                    allowed.join(", ")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the dependency rule of ARCHITECTURE.md is broken:\n{}",
        violations.join("\n")
    );
}

/// The binaries are thin: flags → `cli::run` or `daemon::run` → exit code.
#[test]
fn the_binaries_reach_only_the_cli_or_the_daemon() {
    let root = tree();
    for (bin, allowed) in [
        ("src/bin/orchestrator.rs", &["cli"][..]),
        (
            "src/bin/orchestratord.rs",
            &["daemon", "daemon_flags", "layout"][..],
        ),
    ] {
        let text = code(&std::fs::read_to_string(root.join(bin)).expect("read binary"));
        let mut rest = text.as_str();
        while let Some(i) = rest.find("orchestrator::") {
            rest = &rest[i + "orchestrator::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                allowed.contains(&name.as_str()),
                "{bin} uses orchestrator::{name}; it may use only {allowed:?}"
            );
        }
    }
}

/// Within `actors/`, files import each other without a cycle: a child reports to its parent
/// through a derived address, never by naming the parent's module.
#[test]
fn actor_files_import_each_other_without_cycles() {
    let root = tree().join("actors");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
        .filter(|n| n != "mod")
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(me) = f.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = code(&std::fs::read_to_string(f).expect("read actor file"));
        for n in &names {
            if n != me
                && (text.contains(&format!("super::{n}::"))
                    || text.contains(&format!("super::{n}::{{"))
                    || text.contains(&format!("use super::{n};"))
                    || text.contains(&format!("crate::actors::{n}")))
            {
                edges.entry(me.to_owned()).or_default().insert(n.clone());
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in &names {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "actor files import each other in a cycle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// Every SQL statement lives in `src/store/`: nothing else names rusqlite, so a second backend
/// plugs in behind the store's traits without touching a caller.
#[test]
fn sql_lives_only_in_the_store() {
    let root = tree();
    let mut files = Vec::new();
    for dir in ["src", "actors", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut violations = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap_or(&f);
        if rel.starts_with("src/store") || rel.ends_with("tests/tidy.rs") {
            continue;
        }
        if code(&std::fs::read_to_string(&f).expect("read")).contains("rusqlite") {
            violations.push(rel.display().to_string());
        }
    }
    assert!(
        violations.is_empty(),
        "rusqlite outside src/store/ (SQL belongs behind the store's traits): {violations:?}"
    );
}

/// Every HTTP client is built by `rotation::http_client`, which installs the TLS crypto provider
/// first: reqwest is built without one (it would link aws-lc), and a client built before a
/// provider is installed panics.
#[test]
fn http_clients_are_built_only_where_tls_is_set_up() {
    let root = tree();
    let mut files = Vec::new();
    for dir in ["src", "actors", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut violations = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap_or(&f);
        if rel.ends_with("tests/tidy.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&f).expect("read"));
        let allowed = usize::from(rel.ends_with("src/rotation/mod.rs"));
        let built = [
            "reqwest::Client::builder(",
            "reqwest::Client::new(",
            "ClientBuilder::new(",
        ]
        .iter()
        .map(|b| text.matches(b).count())
        .sum::<usize>();
        if built > allowed {
            violations.push(rel.display().to_string());
        }
    }
    assert!(
        violations.is_empty(),
        "HTTP clients built outside rotation::http_client (use it): {violations:?}"
    );
}

/// Every child process is started, waited for and signalled in `src/process/`: spawning,
/// process groups, signals and `/proc` scans have one home, where their cleanup lives in `Drop`.
#[test]
fn child_processes_live_only_in_process() {
    let words = [
        "std::process",
        "tokio::process",
        "Stdio",
        "nix::sys::signal",
        "killpg",
        "setpgid",
        "process_group(",
        "\"/proc",
    ];
    let mut violations = Vec::new();
    for rel in library_files() {
        if rel.starts_with("src/process") || rel == Path::new("src/process.rs") {
            continue;
        }
        let text = code(&read(&rel));
        for w in words {
            if text.contains(w) {
                violations.push(format!("{} uses {w}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "child processes and signals belong in src/process/:\n{}",
        violations.join("\n")
    );
}

/// A file holds one concept: none of the library's files is longer than 800 lines (tests
/// included; a large test module goes to a sibling `tests.rs`).
#[test]
fn no_library_file_exceeds_800_lines() {
    let long: Vec<String> = library_files()
        .into_iter()
        .filter_map(|rel| {
            let n = read(&rel).lines().count();
            (n > 800).then(|| format!("{} has {n} lines", rel.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along their concepts (ARCHITECTURE.md's tree shows where):\n{}",
        long.join("\n")
    );
}

/// The CLI binary links no part of the daemon's stack: no HTTP server, TLS, SQL or actor runtime,
/// in the CLI or in the daemon's flags it reads (their `crate::` imports are checked by the layer
/// table above).
#[test]
fn the_cli_links_no_daemon_stack() {
    let mut violations = Vec::new();
    for rel in library_files() {
        if !matches!(layer_of(&rel), Some("cli" | "daemon_flags")) {
            continue;
        }
        let text = code(&read(&rel));
        for word in ["reqwest::", "warp::", "rustls", "rusqlite::", "ractor::"] {
            if text.contains(word) {
                violations.push(format!("{} uses {word}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the CLI binary must not link the daemon's stack:\n{}",
        violations.join("\n")
    );
}

/// The text before the file's `#[cfg(test)]` unit tests (they sit at the bottom of a file), or
/// nothing for a test file of its own (`tests.rs`, `tests/…`).
fn library_code(rel: &Path) -> String {
    if rel.iter().any(|c| c == "tests" || c == "tests.rs") {
        return String::new();
    }
    let text = code(&read(rel));
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The lines of `text` with a `Result<_, String>`: a `Result<` whose last top-level type
/// argument is `String` (nested generics such as `Result<Vec<(String, String)>, E>` are not).
fn string_results(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (i, _) in text.match_indices("Result<") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `LookupResult<`, not `Result<`
        }
        let rest = &text[i + "Result<".len()..];
        let (mut depth, mut last_arg) = (0usize, 0usize);
        for (j, c) in rest.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ',' if depth == 0 => last_arg = j + 1,
                '>' | ')' | ']' if depth > 0 => depth -= 1,
                '>' => {
                    if last_arg > 0 && rest[last_arg..j].trim() == "String" {
                        lines.push(text[..i].lines().count().max(1));
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    for (i, _) in text.match_indices("type Err = String") {
        lines.push(text[..i].lines().count().max(1));
    }
    lines
}

/// Errors are typed per module and get their HTTP status at the edge: no file under `actors/`
/// or `src/rotation/` names the wire's `ApiError` (which carries a status; `http::control`'s
/// `ControlError::status` is the one mapping), and no library function answers with a bare
/// `Result<_, String>` (unit tests excepted).
#[test]
fn errors_are_typed_and_statuses_assigned_at_the_edge() {
    let mut violations = Vec::new();
    for rel in library_files() {
        let text = library_code(&rel);
        if (rel.starts_with("actors") || rel.starts_with("src/rotation"))
            && text.contains("ApiError")
        {
            violations.push(format!(
                "{} uses ApiError: answer with the module's own error type",
                rel.display()
            ));
        }
        for line in string_results(&text) {
            violations.push(format!(
                "{}:{line}: Result<_, String>: give the error a type",
                rel.display()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "statuses belong to the HTTP edge and errors to their modules' types:\n{}",
        violations.join("\n")
    );
}

#[test]
fn string_results_are_found_and_nested_strings_are_not() {
    let found = |text: &str| string_results(text).len();
    assert_eq!(found("fn f() -> Result<(), String> {"), 1);
    assert_eq!(found("RpcReplyPort<Result<(), String>>"), 1);
    assert_eq!(found("fn f() -> Result<Vec<(String, String)>, E> {"), 0);
    assert_eq!(found("Result<BTreeMap<String, String>, D::Error>"), 0);
    assert_eq!(found("fn f() -> Result<String, ControlError> {"), 0);
    assert_eq!(found("fn f() -> LookupResult<u8, String> {"), 0);
    assert_eq!(found("impl FromStr for X {\n    type Err = String;"), 1);
}
