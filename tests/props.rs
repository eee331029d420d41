//! Property tests of every parser that hostile input reaches (issue 12, item 7): the manifest
//! parser and validator, the cron grammar, the webhook signature verifiers and the CEL filter
//! compiler get arbitrary bytes and generated, almost-valid documents, and none may panic, spend
//! more than [`CASE_BOUND`] on one case, or answer with output out of proportion to its input.
//! They call the library directly (no daemon). Every run is deterministic: each property draws
//! from a ChaCha RNG seeded in code from [`SEED`] and its own name, runs a fixed number of cases
//! and persists no failures, so a failure seen in CI fails the same way on any machine. The
//! README's "Property tests" paragraph says how to reproduce one and how to run more cases.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use orchestrator::domain::filter::Filter;
use orchestrator::domain::manifest::{Kind, parse_documents, split_documents};
use orchestrator::domain::schedule::{Schedule, missed_fires};
use orchestrator::domain::signature::{self, Key, Scheme, SignatureError, VerifyParams};
use orchestrator::domain::snapshot::{Outcome, ResourceKey, Snapshot};
use orchestrator::domain::validate::{
    Unparsed, references, unverifiable_webhooks, validate_apply, validate_delete,
    validate_documents,
};

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

/// The seed every property's RNG is derived from (with the property's name). Change it, or set
/// `ORCHESTRATOR_PROPS_SEED`, to explore other inputs.
const SEED: u64 = 12;

/// The longest one case may take. A generous bound on a debug build: typical cases take well
/// under a millisecond, so only a hang (or work out of proportion to the input) gets near it.
const CASE_BOUND: Duration = Duration::from_secs(2);

/// After this long in one case the watchdog prints the input and ends the test process, so that
/// an endless loop fails CI with the input that caused it instead of stalling it.
const HANG_LIMIT: Duration = Duration::from_secs(60);

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a whole number; unset it or give one"),
    }
}

/// Runs `property` on `cases` inputs drawn from `strategy` and panics with the smallest failing
/// input proptest finds. A case fails when the property returns an error, panics, or takes
/// more than [`CASE_BOUND`].
fn check<S>(
    name: &'static str,
    cases: u32,
    strategy: S,
    property: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let seed = env_number("ORCHESTRATOR_PROPS_SEED").unwrap_or(SEED);
    let cases = env_number("ORCHESTRATOR_PROPS_CASES").map_or(cases, |n| n as u32);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        max_shrink_time: 30_000,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let digest = Sha256::digest(format!("{seed}/{name}"));
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &digest);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let watchdog = Watchdog::start(name);
    let result = runner.run(&strategy, |value| {
        let _case = watchdog.begin(&value);
        let started = Instant::now();
        property(&value)?;
        let took = started.elapsed();
        if took > CASE_BOUND {
            return Err(TestCaseError::fail(format!(
                "one case took {took:?}, more than the {CASE_BOUND:?} a case may take (a hang)"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "property {name} failed (seed {seed}, {cases} cases): {e}\n\
             reproduce with: ORCHESTRATOR_PROPS_SEED={seed} ORCHESTRATOR_PROPS_CASES={cases} \
             cargo test --test it props::{name}"
        );
    }
}

/// A thread that ends the process when one case runs past [`HANG_LIMIT`].
struct Watchdog {
    tx: mpsc::Sender<Option<String>>,
}

/// Marks the end of a case when dropped, also when the property panicked.
struct Running<'w>(&'w Watchdog);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.tx.send(None);
    }
}

impl Watchdog {
    fn start(name: &'static str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<Option<String>>();
        std::thread::spawn(move || {
            let mut running: Option<String> = None;
            loop {
                let next = match running {
                    Some(_) => rx.recv_timeout(HANG_LIMIT),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(case) => running = case,
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {
                        let input = running.unwrap_or_default();
                        eprintln!(
                            "property {name}: one case ran for more than {HANG_LIMIT:?} (a hang); \
                             its input: {input}"
                        );
                        std::process::exit(101);
                    }
                }
            }
        });
        Watchdog { tx }
    }

    fn begin(&self, input: &dyn Debug) -> Running<'_> {
        let _ = self.tx.send(Some(format!("{input:?}")));
        Running(self)
    }
}

/// Fails the case unless `condition` holds.
fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared generators
// ---------------------------------------------------------------------------------------------

/// Texts that have broken parsers and validators before, or that mean something to one.
const HOSTILE: &[&str] = &[
    "", " ", "***", "'***'", "\u{0}", "\u{feff}", "\t", "\r\n", "{", "}", "{goal}", "{prompt}",
    "{{", "}}", "${HOME}", "$(id)", "--- ", "...", "a\nb", "\"", "'", "\\", "é", "🙂", "~", "null",
    "true", "0x10", "1e400", "-0", ".inf", "&a", "*a", "!!binary", "? x", "- x", ": x", "# x",
    "%YAML",
];

/// Words of the manifest format (keys, kinds, enum values), so that generated documents hit
/// the typed parser's known fields and not only its unknown-field error.
const KEYS: &str = "\
    apiVersion kind metadata spec status name project labels annotations generation createdAt \
    updatedAt root_path description data rotation key provider settings credentials fromRef \
    graceSeconds prompt command capabilities enabled env value refValue promptDelivery \
    timeout_secs steps loop max_parallel id template required_capability scope repeatable \
    retries type mode max_cycles cron event action concurrencyPolicy suspend \
    startingDeadlineSeconds historyLimit schedule timezone source webhook filter secret keys \
    signatureHeader scheme toleranceSeconds condition workflow workspace start goal \
    successful failed repository hookId apiUrl testTimeoutSeconds set test \
    orchestrator.dev/v2 github command once fixed infinite task item Allow Forbid Replace arg \
    stdin file";

/// The kinds, as written in manifests.
const KINDS: &str = "\
    Workspace EnvStore SecretStore StepTemplate Agent Workflow Trigger";

/// Resource names: those of [`BASE`] (so references resolve), a few others, and bad ones.
const NAMES: &str =
    "default ws rotate-secrets rotator secret-rotation hooks env weekly hook a b plan github";

/// One of the words of `list`, which separates them by whitespace.
fn words(list: &'static str) -> impl Strategy<Value = String> + Clone {
    select(list.split_whitespace().collect::<Vec<_>>()).prop_map(str::to_owned)
}

fn strings(items: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(items).prop_map(str::to_owned)
}

fn chars(max: usize) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Any text a user or an attacker might put in a field.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => words(KEYS),
        1 => words(KINDS),
        3 => strings(HOSTILE),
        2 => words(NAMES),
        3 => chars(24),
        1 => (1usize..300).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

fn name() -> BoxedStrategy<String> {
    prop_oneof![8 => words(NAMES), 1 => text()].boxed()
}

/// Inserts `junk` at a character boundary near `at`: a well-formed text made slightly wrong.
fn splice(text: &str, at: Index, junk: &str) -> String {
    let mut i = if text.is_empty() {
        0
    } else {
        at.index(text.len() + 1)
    };
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    format!("{}{junk}{}", &text[..i], &text[i..])
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn cap(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut i = max;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        text.truncate(i);
    }
    text
}

/// Arbitrary JSON, as webhook payloads and manifest fields of the wrong shape.
fn json_value() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        (0u64..100).prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        text().prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec(
                (
                    prop_oneof![strings(&["a", "b", "type", "x", "n"]), text()],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A value for a field of type `good`: almost always one, rarely absent or any JSON (each
/// such field stops the typed parse of its document, so they must stay rare for validation to
/// be reached).
fn field(good: impl Strategy<Value = Json> + 'static) -> BoxedStrategy<Option<Json>> {
    prop_oneof![
        60 => good.prop_map(Some),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

/// An object of the fields that are present, sometimes with one unknown field added.
fn object(fields: Vec<(&'static str, BoxedStrategy<Option<Json>>)>) -> BoxedStrategy<Json> {
    let (keys, values): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
    let extra = prop::option::weighted(0.01, (text(), json_value()));
    (values, extra)
        .prop_map(move |(values, extra)| {
            let mut map = serde_json::Map::new();
            for (key, value) in keys.iter().zip(values) {
                if let Some(value) = value {
                    map.insert((*key).to_owned(), value);
                }
            }
            if let Some((key, value)) = extra {
                map.insert(key, value);
            }
            Json::Object(map)
        })
        .boxed()
}

/// One of the `good` values of an enum-like field, or now and then a `bad` one.
fn one_of(good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<Json> {
    prop_oneof![12 => strings(good), 1 => strings(bad)]
        .prop_map(Json::from)
        .boxed()
}

/// A reference to `usual` (a resource of [`BASE`]), or to any name.
fn reference(usual: &'static str) -> BoxedStrategy<Json> {
    prop_oneof![6 => Just(usual.to_owned()), 2 => name()]
        .prop_map(Json::from)
        .boxed()
}

fn json_text(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Json> {
    s.prop_map(Json::from).boxed()
}

fn number() -> BoxedStrategy<Json> {
    prop_oneof![
        20 => (0u64..100).prop_map(Json::from),
        2 => any::<u64>().prop_map(Json::from),
        1 => Just(json!(-1)),
        1 => Just(json!(0.5)),
    ]
    .boxed()
}

fn boolean() -> BoxedStrategy<Json> {
    any::<bool>().prop_map(Json::from).boxed()
}

// ---------------------------------------------------------------------------------------------
// Manifests: arbitrary bytes and YAML soup
// ---------------------------------------------------------------------------------------------

/// Bounds on what one parse or validation may answer for `input_len` bytes of input: at most
/// one diagnostic per byte (plus a few), and at most 64 bytes of rendered text per input byte
/// (plus some per diagnostic for the fixed wording and hints).
fn bounded_output(
    input_len: usize,
    diagnostics: &[orchestrator::domain::diagnostic::Diagnostic],
) -> Result<(), TestCaseError> {
    let count = diagnostics.len();
    ensure(count <= input_len + 8, || {
        format!("{count} diagnostics for {input_len} bytes of input")
    })?;
    let rendered: usize = diagnostics.iter().map(|d| d.to_string().len()).sum();
    let limit = 64 * input_len + 1024 * count + 1024;
    ensure(rendered <= limit, || {
        format!("{rendered} bytes of diagnostics for {input_len} bytes of input (limit {limit})")
    })
}

/// Parses `text` as one apply does (parse, then validate what parsed) and checks the bounds.
fn parse_and_validate(text: &str) -> Result<(), TestCaseError> {
    let (mut docs, problems) = parse_documents("props.yaml", text);
    let split = split_documents(text).len();
    ensure(docs.len() + problems.len() == split, || {
        format!(
            "{} documents and {} problems for {split} documents",
            docs.len(),
            problems.len()
        )
    })?;
    bounded_output(text.len(), &problems)?;
    let found = if problems.is_empty() {
        validate_apply(&mut docs, &Snapshot::default(), None)
    } else {
        validate_documents(&mut docs, &Snapshot::default(), None, &Unparsed::default())
    };
    bounded_output(text.len(), &found)
}

/// Tokens of YAML syntax and of the manifest format, concatenated into near-YAML.
fn yaml_soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "\n",
        "\n  ",
        "\n    ",
        "  ",
        "- ",
        ": ",
        ":",
        "---\n",
        "...\n",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "&a ",
        "*a",
        "<<: *a",
        "!!str ",
        "!!map ",
        "!tag ",
        "|\n  ",
        ">-\n  ",
        "'",
        "\"",
        "# c",
        "? ",
        "%YAML 1.2\n",
        "%TAG ! x\n",
        "\\",
        "\t",
        "~",
        "null",
        "0",
        "-1",
        "1.5",
        "0x1F",
        "\u{feff}",
    ];
    prop::collection::vec(
        prop_oneof![
            4 => strings(TOKENS),
            3 => words(KEYS),
            1 => words(NAMES),
            1 => chars(6),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn manifest_parser_survives_arbitrary_bytes() {
    let input = prop::collection::vec(any::<u8>(), 0..2048);
    check(
        "manifest_parser_survives_arbitrary_bytes",
        2048,
        input,
        |bytes| parse_and_validate(&String::from_utf8_lossy(bytes)),
    );
}

#[test]
fn manifest_parser_survives_yaml_soup() {
    check(
        "manifest_parser_survives_yaml_soup",
        2048,
        yaml_soup(),
        |text| parse_and_validate(text),
    );
}

/// A random YAML tree whose map keys are mostly the manifest's own.
fn yaml_tree() -> BoxedStrategy<serde_yaml::Value> {
    use serde_yaml::Value as Yaml;
    let leaf = prop_oneof![
        Just(Yaml::Null),
        any::<bool>().prop_map(Yaml::Bool),
        any::<i64>().prop_map(Yaml::from),
        any::<f64>().prop_map(Yaml::from),
        text().prop_map(Yaml::String),
    ];
    let key = prop_oneof![
        8 => words(KEYS).prop_map(Yaml::String),
        1 => text().prop_map(Yaml::String),
        1 => any::<i64>().prop_map(Yaml::from),
    ];
    leaf.prop_recursive(6, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Yaml::Sequence),
            prop::collection::vec((key.clone(), inner.clone()), 0..6)
                .prop_map(|kv| Yaml::Mapping(kv.into_iter().collect())),
            (strings(&["!x", "!!str", "!Trigger"]), inner).prop_map(|(tag, value)| {
                Yaml::Tagged(Box::new(serde_yaml::value::TaggedValue {
                    tag: serde_yaml::value::Tag::new(tag),
                    value,
                }))
            }),
        ]
    })
    .boxed()
}

/// A document with the envelope usually right and a random tree as its spec, written as block
/// YAML or as JSON (flow style), maybe with a piece of junk spliced in.
fn yaml_document() -> impl Strategy<Value = String> {
    use serde_yaml::Value as Yaml;
    let envelope = (
        prop_oneof![8 => Just(Yaml::from("orchestrator.dev/v2")), 1 => yaml_tree()],
        prop_oneof![8 => words(KINDS).prop_map(Yaml::from), 1 => yaml_tree()],
        prop_oneof![
            8 => (name(), prop::option::of(name())).prop_map(|(n, p)| {
                let mut m = serde_yaml::Mapping::new();
                m.insert("name".into(), n.into());
                if let Some(p) = p {
                    m.insert("project".into(), p.into());
                }
                Yaml::Mapping(m)
            }),
            1 => yaml_tree(),
        ],
        yaml_tree(),
        any::<bool>(),
        prop::option::weighted(0.3, (any::<Index>(), text())),
    );
    envelope.prop_map(|(api, kind, metadata, spec, as_json, junk)| {
        let mut doc = serde_yaml::Mapping::new();
        doc.insert("apiVersion".into(), api);
        doc.insert("kind".into(), kind);
        doc.insert("metadata".into(), metadata);
        doc.insert("spec".into(), spec);
        let doc = Yaml::Mapping(doc);
        let text = if as_json {
            serde_json::to_string(&doc).ok()
        } else {
            None
        };
        let text = text
            .or_else(|| serde_yaml::to_string(&doc).ok())
            .unwrap_or_default();
        match junk {
            Some((at, junk)) => splice(&text, at, &junk),
            None => text,
        }
    })
}

#[test]
fn manifest_parser_survives_structured_documents() {
    let files = prop::collection::vec(yaml_document(), 1..4).prop_map(|d| d.join("---\n"));
    check(
        "manifest_parser_survives_structured_documents",
        2048,
        files,
        |text| parse_and_validate(text),
    );
}

/// Deep nesting (flow sequences, flow maps, block maps, mixed) and alias bombs (`&a` lists of
/// aliases of the level below), inside an otherwise valid Workspace document.
fn nesting_and_aliases() -> impl Strategy<Value = String> {
    const HEAD: &str = "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {name: a}\n";
    // Up to 100,000 levels: the nesting scan refuses anything beyond 64 after reading a few
    // hundred bytes (before it, 100,000 levels cost the YAML parser about 30 s).
    let nested = (1usize..100_000, 0u8..4, any::<bool>()).prop_map(|(depth, style, close)| {
        let (open, shut) = match style {
            0 => ("[".repeat(depth), "]".repeat(depth)),
            1 => ("{a: ".repeat(depth), "}".repeat(depth)),
            2 => ("[{a: ".repeat(depth / 2), "}]".repeat(depth / 2)),
            _ => {
                let block: String = (0..depth.min(300))
                    .map(|i| format!("{}a:\n", " ".repeat(i + 1)))
                    .collect();
                return format!("{HEAD}spec:\n{block}");
            }
        };
        let shut = if close { shut } else { String::new() };
        format!("{HEAD}spec: {{root_path: {open}x{shut}}}\n")
    });
    // Under `status` (read and ignored) a bomb small enough for the parser's repetition limit
    // parses, and the document goes on to validation; under `spec` it is an unknown field.
    let bomb = (2usize..12, 1usize..10, any::<bool>(), any::<bool>());
    let bomb = bomb.prop_map(|(width, levels, merge, in_status)| {
        let mut doc = match in_status {
            true => format!("{HEAD}spec: {{root_path: /tmp}}\nstatus:\n  x0: &a0 [x, x]\n"),
            false => format!("{HEAD}spec:\n  root_path: /tmp\n  x0: &a0 [x, x]\n"),
        };
        for level in 1..=levels {
            let aliases = vec![format!("*a{}", level - 1); width].join(", ");
            doc.push_str(&format!("  x{level}: &a{level} [{aliases}]\n"));
        }
        if merge {
            doc.push_str(&format!("  <<: *a{levels}\n"));
        }
        doc
    });
    prop_oneof![nested, bomb]
}

#[test]
fn manifest_parser_survives_nesting_and_alias_bombs() {
    check(
        "manifest_parser_survives_nesting_and_alias_bombs",
        256,
        nesting_and_aliases(),
        |text| parse_and_validate(text),
    );
}

// ---------------------------------------------------------------------------------------------
// Manifests: almost-valid bundles, validated against a snapshot they refer to
// ---------------------------------------------------------------------------------------------

/// A valid bundle applied before every generated one, so that references can resolve.
const BASE: &str = r#"
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
spec: {data: {github: s3cr3t, token: t0ken}}
---
apiVersion: orchestrator.dev/v2
kind: EnvStore
metadata: {name: env}
spec: {data: {REGION: eu}}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: weekly}
spec:
  cron: {schedule: "0 2 * * 0", timezone: Asia/Tokyo}
  action: {workflow: secret-rotation, workspace: default}
"#;

fn command_line() -> BoxedStrategy<String> {
    const WORDS: &[&str] = &[
        "sh",
        "./rotate.sh",
        "{prompt}",
        "{goal}",
        "{payload}",
        "{unknown}",
        "'unterminated",
        "\"a b\"",
        "\\",
        "$(id)",
        "|",
        ";",
        "{{prompt}}",
        "--flag={goal}",
        "{steps.rotate.output}",
    ];
    prop::collection::vec(prop_oneof![6 => strings(WORDS), 1 => text()], 0..5)
        .prop_map(|w| w.join(" "))
        .boxed()
}

fn prompt() -> BoxedStrategy<String> {
    const PIECES: &[&str] = &[
        "rotate for ",
        "{goal}",
        "{payload}",
        "{payload.a}",
        "{unknown}",
        "{",
        "}",
        "{{",
        "}}",
        "{prompt}",
        "{steps.rotate.output}",
        "\n",
    ];
    prop::collection::vec(prop_oneof![4 => strings(PIECES), 1 => text()], 0..6)
        .prop_map(|p| p.concat())
        .boxed()
}

fn map_of(
    keys: impl Strategy<Value = String> + 'static,
    values: impl Strategy<Value = Json> + 'static,
) -> BoxedStrategy<Json> {
    prop::collection::vec((keys, values), 0..4)
        .prop_map(|kv| Json::Object(kv.into_iter().collect()))
        .boxed()
}

fn metadata() -> BoxedStrategy<Json> {
    object(vec![
        ("name", field(json_text(name()))),
        (
            "project",
            prop::option::weighted(0.15, one_of(&["default"], &["other", "Bad_Project", ""]))
                .boxed(),
        ),
        (
            "labels",
            prop::option::weighted(0.2, map_of(text(), json_text(text()))).boxed(),
        ),
    ])
}

fn workspace_spec() -> BoxedStrategy<Json> {
    let root = prop_oneof![
        4 => strings(&["/tmp", "/", "/srv/ws", "rel/dir", "", ".", "/a/../b", " /tmp"]),
        1 => text(),
    ];
    object(vec![
        ("root_path", field(json_text(root))),
        (
            "description",
            prop::option::weighted(0.2, json_text(text())).boxed(),
        ),
    ])
}

fn env_store_spec() -> BoxedStrategy<Json> {
    let key = prop_oneof![
        4 => strings(&["REGION", "A", "PATH", "HOME", "ORCHESTRATOR_RUN_ID", "1BAD", "a-b"]),
        1 => text(),
    ];
    object(vec![("data", field(map_of(key, json_text(text()))))])
}

fn secret_store_spec() -> BoxedStrategy<Json> {
    let secret = prop_oneof![
        4 => strings(&["s3cr3t", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "***"]),
        2 => text(),
    ];
    let setting_value = prop_oneof![
        3 => strings(&["acme/api", "https://api.example", "./set.sh", "'bad", "123", "x"])
            .prop_map(Json::from),
        1 => number(),
        1 => json_value(),
    ];
    let settings = map_of(
        strings(&[
            "repository",
            "hookId",
            "apiUrl",
            "testTimeoutSeconds",
            "set",
            "test",
            "bogus",
        ]),
        setting_value,
    );
    let rotation = object(vec![
        (
            "key",
            field(json_text(strings(&["github", "token", "missing"]))),
        ),
        (
            "provider",
            field(one_of(&["github", "command"], &["gitlab"])),
        ),
        ("settings", field(settings)),
        (
            "credentials",
            prop::option::weighted(
                0.5,
                object(vec![
                    ("fromRef", field(reference("hooks"))),
                    (
                        "key",
                        field(json_text(strings(&["token", "github", "nope"]))),
                    ),
                ]),
            )
            .boxed(),
        ),
        (
            "graceSeconds",
            prop::option::weighted(0.3, number()).boxed(),
        ),
    ]);
    object(vec![
        (
            "data",
            field(map_of(
                prop_oneof![3 => strings(&["github", "token", "github.next"]), 1 => text()],
                prop_oneof![
                    6 => json_text(secret),
                    2 => Just(json!({"keep": true})),
                    1 => Just(json!({"keep": false})),
                ],
            )),
        ),
        ("rotation", prop::option::weighted(0.3, rotation).boxed()),
    ])
}

fn step_template_spec() -> BoxedStrategy<Json> {
    object(vec![("prompt", field(json_text(prompt())))])
}

fn agent_spec() -> BoxedStrategy<Json> {
    let env_entry = object(vec![
        (
            "name",
            prop::option::weighted(
                0.7,
                json_text(strings(&[
                    "REGION",
                    "A",
                    "PATH",
                    "1BAD",
                    "ORCHESTRATOR_SOCKET",
                ])),
            )
            .boxed(),
        ),
        (
            "value",
            prop::option::weighted(0.4, json_text(text())).boxed(),
        ),
        (
            "fromRef",
            prop::option::weighted(0.3, reference("env")).boxed(),
        ),
        (
            "refValue",
            prop::option::weighted(
                0.3,
                object(vec![
                    ("name", field(reference("hooks"))),
                    (
                        "key",
                        field(json_text(strings(&["github", "token", "REGION", "x"]))),
                    ),
                ]),
            )
            .boxed(),
        ),
    ]);
    object(vec![
        ("command", field(json_text(command_line()))),
        (
            "capabilities",
            prop::option::weighted(
                0.6,
                prop::collection::vec(json_text(name()), 0..3).prop_map(Json::Array),
            )
            .boxed(),
        ),
        ("enabled", prop::option::weighted(0.2, boolean()).boxed()),
        (
            "env",
            prop::option::weighted(
                0.4,
                prop::collection::vec(env_entry, 0..3).prop_map(Json::Array),
            )
            .boxed(),
        ),
        (
            "promptDelivery",
            prop::option::weighted(0.3, one_of(&["arg", "stdin", "file", "env"], &["pipe"]))
                .boxed(),
        ),
        (
            "timeout_secs",
            prop::option::weighted(0.3, number()).boxed(),
        ),
    ])
}

fn workflow_spec() -> BoxedStrategy<Json> {
    let step = object(vec![
        (
            "id",
            field(json_text(prop_oneof![
                strings(&["rotate", "check"]),
                name()
            ])),
        ),
        (
            "template",
            prop::option::weighted(0.6, reference("rotate-secrets")).boxed(),
        ),
        (
            "command",
            prop::option::weighted(0.3, json_text(command_line())).boxed(),
        ),
        (
            "required_capability",
            prop::option::weighted(0.5, reference("plan")).boxed(),
        ),
        (
            "scope",
            prop::option::weighted(0.2, one_of(&["task", "item"], &["x"])).boxed(),
        ),
        ("enabled", prop::option::weighted(0.2, boolean()).boxed()),
        ("repeatable", prop::option::weighted(0.2, boolean()).boxed()),
        (
            "timeout_secs",
            prop::option::weighted(0.2, number()).boxed(),
        ),
        ("retries", prop::option::weighted(0.2, number()).boxed()),
    ]);
    let loop_ = object(vec![
        (
            "mode",
            field(one_of(&["once", "fixed", "infinite"], &["forever"])),
        ),
        ("max_cycles", prop::option::weighted(0.5, number()).boxed()),
    ]);
    object(vec![
        (
            "steps",
            field(
                prop::collection::vec(step, 0..4)
                    .prop_map(Json::Array)
                    .boxed(),
            ),
        ),
        ("loop", prop::option::weighted(0.3, loop_).boxed()),
        (
            "max_parallel",
            prop::option::weighted(0.3, number()).boxed(),
        ),
    ])
}

fn trigger_spec() -> BoxedStrategy<Json> {
    let cron = object(vec![
        ("schedule", field(json_text(cron_expression()))),
        (
            "timezone",
            prop::option::weighted(0.5, json_text(zone())).boxed(),
        ),
    ]);
    let webhook = object(vec![
        (
            "secret",
            field(object(vec![
                ("fromRef", field(reference("hooks"))),
                (
                    "keys",
                    prop::option::weighted(
                        0.3,
                        prop::collection::vec(
                            json_text(strings(&["github", "token", "nope", ""])),
                            0..3,
                        )
                        .prop_map(Json::Array),
                    )
                    .boxed(),
                ),
            ])),
        ),
        (
            "signatureHeader",
            prop::option::weighted(0.3, json_text(header_name())).boxed(),
        ),
        (
            "scheme",
            prop::option::weighted(
                0.5,
                json_text(prop_oneof![
                    4 => scheme().prop_map(|s| s.name().to_owned()),
                    1 => strings(&["gitlab", "GitHub", ""]),
                ]),
            )
            .boxed(),
        ),
        (
            "toleranceSeconds",
            prop::option::weighted(0.3, number()).boxed(),
        ),
    ]);
    let event = object(vec![
        ("source", field(one_of(&["webhook"], &["queue"]))),
        ("webhook", field(webhook)),
        (
            "filter",
            prop::option::weighted(
                0.5,
                object(vec![("condition", field(json_text(cel_expression())))]),
            )
            .boxed(),
        ),
    ]);
    let action = object(vec![
        ("workflow", field(reference("secret-rotation"))),
        ("workspace", field(reference("default"))),
        ("start", prop::option::weighted(0.2, boolean()).boxed()),
        (
            "goal",
            prop::option::weighted(0.3, json_text(text())).boxed(),
        ),
    ]);
    let history = object(vec![
        ("successful", prop::option::weighted(0.5, number()).boxed()),
        ("failed", prop::option::weighted(0.5, number()).boxed()),
    ]);
    let spec = object(vec![
        ("cron", field(cron)),
        ("event", field(event)),
        ("action", field(action)),
        (
            "concurrencyPolicy",
            prop::option::weighted(0.3, one_of(&["Allow", "Forbid", "Replace"], &["allow"]))
                .boxed(),
        ),
        ("suspend", prop::option::weighted(0.2, boolean()).boxed()),
        (
            "startingDeadlineSeconds",
            prop::option::weighted(0.3, number()).boxed(),
        ),
        ("historyLimit", prop::option::weighted(0.2, history).boxed()),
    ]);
    // Usually exactly one of `cron` and `event`; now and then both or neither.
    (spec, 0u8..10)
        .prop_map(|(mut spec, pick)| {
            if let Some(fields) = spec.as_object_mut() {
                let drop: &[&str] = match pick {
                    0..=3 => &["event"],
                    4..=7 => &["cron"],
                    8 => &[],
                    _ => &["cron", "event"],
                };
                for key in drop {
                    fields.remove(*key);
                }
            }
            spec
        })
        .boxed()
}

/// One almost-valid resource of any kind, as a JSON tree.
fn resource() -> BoxedStrategy<Json> {
    let spec = prop_oneof![
        1 => (Just("Workspace"), workspace_spec()),
        1 => (Just("EnvStore"), env_store_spec()),
        1 => (Just("SecretStore"), secret_store_spec()),
        1 => (Just("StepTemplate"), step_template_spec()),
        1 => (Just("Agent"), agent_spec()),
        1 => (Just("Workflow"), workflow_spec()),
        3 => (Just("Trigger"), trigger_spec()),
    ];
    (
        prop_oneof![40 => Just(json!("orchestrator.dev/v2")), 1 => json_value()],
        spec,
        metadata(),
    )
        .prop_map(|(api, (kind, spec), metadata)| {
            json!({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec})
        })
        .boxed()
}

/// A file of 1 to 3 almost-valid resources.
fn bundle() -> impl Strategy<Value = String> {
    prop::collection::vec(resource(), 1..4).prop_map(|docs| {
        docs.iter()
            .map(|d| serde_yaml::to_string(d).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n")
    })
}

fn base_snapshot() -> Snapshot {
    let (mut docs, problems) = parse_documents("base.yaml", BASE);
    assert!(problems.is_empty(), "{problems:?}");
    let found = validate_apply(&mut docs, &Snapshot::default(), None);
    assert!(found.is_empty(), "{found:?}");
    let manifests: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
    let empty = Snapshot::default();
    empty.apply(&empty.plan(&manifests, DateTime::UNIX_EPOCH))
}

#[test]
fn manifest_validator_survives_almost_valid_bundles() {
    let base = base_snapshot();
    let keys: Vec<ResourceKey> = base.iter().map(|r| r.key.clone()).collect();
    let (parsed, reported, accepted) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let cases = 2048;
    let input = (bundle(), prop::collection::vec(any::<Index>(), 0..3));
    check(
        "manifest_validator_survives_almost_valid_bundles",
        cases,
        input,
        |(text, deleting)| {
            let (mut docs, problems) = parse_documents("bundle.yaml", text);
            bounded_output(text.len(), &problems)?;
            let found = if problems.is_empty() {
                parsed.fetch_add(1, Ordering::Relaxed);
                validate_apply(&mut docs, &base, None)
            } else {
                validate_documents(&mut docs, &base, None, &Unparsed::default())
            };
            bounded_output(text.len() + BASE.len(), &found)?;
            for d in &docs {
                let _ = references(&d.manifest.spec);
            }
            if !problems.is_empty() {
                return Ok(());
            }
            if !found.is_empty() {
                reported.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            accepted.fetch_add(1, Ordering::Relaxed);
            // An accepted apply: publish it, and check that applying it again changes nothing.
            let manifests: Vec<_> = docs.iter().map(|d| d.manifest.clone()).collect();
            let now = DateTime::UNIX_EPOCH + TimeDelta::days(1);
            let next = base.apply(&base.plan(&manifests, now));
            let again = next.plan(&manifests, now);
            ensure(
                again.iter().all(|c| c.outcome == Outcome::Unchanged),
                || format!("applying the same bundle twice changed something: {again:?}"),
            )?;
            let _ = unverifiable_webhooks(&next);
            let mut all: Vec<ResourceKey> = next.iter().map(|r| r.key.clone()).collect();
            all.extend(keys.iter().cloned());
            let deleting: Vec<ResourceKey> = deleting.iter().map(|i| i.get(&all).clone()).collect();
            let found = validate_delete(&next, &deleting);
            bounded_output(text.len() + BASE.len(), &found)
        },
    );
    // The generator must reach the validator, and sometimes get a bundle past it; otherwise
    // this property would only test the parser's first error.
    let (parsed, reported, accepted) = (
        parsed.into_inner(),
        reported.into_inner(),
        accepted.into_inner(),
    );
    assert!(
        parsed * 2 >= cases as usize && reported * 4 >= cases as usize && accepted > 0,
        "the generated bundles no longer exercise validation: of {cases}, {parsed} parsed, \
         {reported} got validation problems, {accepted} were accepted"
    );
}

// ---------------------------------------------------------------------------------------------
// Cron
// ---------------------------------------------------------------------------------------------

/// Zones with unusual daylight saving rules (half-hour and two-hour shifts, a skipped day,
/// several changes a year), UTC, and names that are not zones.
fn zone() -> BoxedStrategy<String> {
    prop_oneof![
        40 => strings(&[
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Australia/Lord_Howe",
            "Pacific/Apia",
            "Africa/Casablanca",
            "Antarctica/Troll",
            "Asia/Kathmandu",
            "America/Santiago",
            "Asia/Tokyo",
            "Europe/London",
            "America/St_Johns",
            "Pacific/Chatham",
            "Asia/Tehran",
            "America/Havana",
            "Europe/Dublin",
        ]),
        1 => strings(&["PST", "Tokyo", "europe/berlin", "Mars/Olympus", "", "UTC+2"]),
        // Names much longer than any zone's, which once took seconds to minutes to refuse.
        1 => chars(40),
        1 => (40usize..4096).prop_map(|n| "Europe/".repeat(n / 7)),
    ]
    .boxed()
}

fn cron_value() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (0u32..24).prop_map(|n| n.to_string()),
        3 => (0u32..62).prop_map(|n| n.to_string()),
        2 => strings(&["JAN", "feb", "Dec", "SUN", "mon", "sat", "SAT", "JANUARY", "xyz"]),
        1 => strings(&["4294967296", "99999999999999999999", "-1", "", "007", "+5", "٣"]),
    ]
    .boxed()
}

fn cron_item() -> BoxedStrategy<String> {
    let atom = prop_oneof![
        4 => Just("*".to_owned()),
        4 => cron_value(),
        3 => (cron_value(), cron_value()).prop_map(|(a, b)| format!("{a}-{b}")),
        1 => strings(&["?", "L", "W", "LW", "15W", "5L", "5#3", "#", "L-3", "-", "*-*"]),
    ];
    let step = prop::option::weighted(
        0.3,
        prop_oneof![
            6 => (0u32..64).prop_map(|n| n.to_string()),
            1 => strings(&["", "x", "4294967296", "*", "1/2"]),
        ],
    );
    (atom, step)
        .prop_map(|(atom, step)| match step {
            Some(step) => format!("{atom}/{step}"),
            None => atom,
        })
        .boxed()
}

/// Cron expressions from the grammar's tokens: fields of lists, ranges, steps and names (in
/// range or not), Quartz extensions, 4 to 8 fields, macros, and arbitrary text.
fn cron_expression() -> BoxedStrategy<String> {
    let field = prop::collection::vec(cron_item(), 1..4).prop_map(|items| items.join(","));
    let spacing = strings(&[" ", " ", " ", "  ", "\t"]);
    prop_oneof![
        12 => prop_oneof![12 => Just(5), 6 => Just(6), 1 => Just(4), 1 => Just(7), 1 => Just(8)]
            .prop_flat_map(move |n| prop::collection::vec((field.clone(), spacing.clone()), n))
            .prop_map(|fields| fields.into_iter().map(|(f, s)| f + &s).collect::<String>()),
        3 => strings(&[
            "0 2 * * *",
            "*/15 * * * *",
            "30 2 * * *",
            "0 0 29 2 *",
            "0 0 30 2 1",
            "0 0 31 * *",
            "59 23 31 12 *",
            "0 0 13 * 5",
            "*/7 1-3 * * *",
            "0 30 1 * * *",
        ]),
        2 => strings(&[
            "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
            "@reboot", "@every 5m", "@DAILY", "@daily 0", "@", " @hourly ",
        ]),
        1 => chars(40),
    ]
    .boxed()
}

/// Instants from before 1970 to after 2100, and the extremes `chrono` can represent.
fn instant() -> BoxedStrategy<DateTime<Utc>> {
    prop_oneof![
        8 => (-86_400i64 * 400..4_200_000_000i64, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap_or_default()),
        1 => Just(DateTime::<Utc>::MIN_UTC),
        1 => Just(DateTime::<Utc>::MAX_UTC),
        1 => any::<i32>().prop_map(|s| DateTime::from_timestamp(i64::from(s) * 1_000, 0)
            .unwrap_or_default()),
    ]
    .boxed()
}

/// Parses and, when the expression is valid, walks the schedule: each fire strictly after the
/// previous one, and the missed-fire count within its cap. Tells whether it parsed.
fn walk_schedule(
    expression: &str,
    timezone: Option<&str>,
    after: DateTime<Utc>,
    span: u32,
) -> Result<bool, TestCaseError> {
    let schedule = match Schedule::parse(expression, timezone) {
        Ok(schedule) => schedule,
        Err(e) => {
            let message = e.to_string();
            let input = expression.len() + timezone.map_or(0, str::len);
            ensure(message.len() <= 4 * input + 512, || {
                format!("a {}-byte error for {input} bytes of input", message.len())
            })?;
            return Ok(false);
        }
    };
    let fires = schedule.upcoming(after, 6);
    let mut last = after;
    for fire in &fires {
        ensure(*fire > last, || {
            format!("{schedule}: fire {fire} is not after {last} (fires after {after}: {fires:?})")
        })?;
        last = *fire;
    }
    let now = after
        .checked_add_signed(TimeDelta::hours(i64::from(span)))
        .unwrap_or(after);
    let missed = missed_fires(&schedule, after, now, Some(60), 16);
    ensure(missed.count <= 16, || {
        format!("{} missed fires over a cap of 16", missed.count)
    })?;
    Ok(true)
}

#[test]
fn cron_parser_survives_arbitrary_text() {
    let input = (
        prop::collection::vec(any::<u8>(), 0..256),
        prop::option::of(zone()),
        instant(),
    );
    check(
        "cron_parser_survives_arbitrary_text",
        2048,
        input,
        |(bytes, zone, after)| {
            walk_schedule(&String::from_utf8_lossy(bytes), zone.as_deref(), *after, 48).map(drop)
        },
    );
}

#[test]
fn cron_parser_survives_grammar_expressions() {
    let input = (
        cron_expression(),
        prop::option::weighted(0.8, zone()),
        instant(),
        0u32..24 * 400,
    );
    let (cases, walked) = (4096, AtomicUsize::new(0));
    check(
        "cron_parser_survives_grammar_expressions",
        cases,
        input,
        |(expression, zone, after, span)| {
            if walk_schedule(expression, zone.as_deref(), *after, *span)? {
                walked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        },
    );
    // Enough generated expressions must be valid for the DST walk to be exercised.
    let walked = walked.into_inner();
    assert!(
        walked * 8 >= cases as usize,
        "only {walked} of {cases} generated expressions parsed"
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

fn header_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => scheme().prop_map(|s| s.default_header().to_owned()),
        1 => strings(&["X-Custom-Signature", "x-hub-signature-256", "", " ", "webhook-id"]),
        1 => chars(16),
    ]
    .boxed()
}

fn hex_digits() -> BoxedStrategy<String> {
    prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 32..=32).prop_map(hex::encode),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(hex::encode),
        1 => prop::collection::vec(any::<u8>(), 32..=32)
            .prop_map(hex::encode_upper),
        1 => (prop::collection::vec(any::<u8>(), 32..=32), any::<Index>(), chars(2))
            .prop_map(|(b, at, junk)| splice(&hex::encode(b), at, &junk)),
    ]
    .boxed()
}

fn base64_text() -> BoxedStrategy<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 32..=32).prop_map(|b| STANDARD.encode(b)),
        2 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| STANDARD.encode(b)),
        1 => prop::collection::vec(any::<u8>(), 32..=32).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        1 => (prop::collection::vec(any::<u8>(), 32..=32), any::<Index>(), chars(2))
            .prop_map(|(b, at, junk)| splice(&STANDARD.encode(b), at, &junk)),
    ]
    .boxed()
}

fn timestamp_text() -> BoxedStrategy<String> {
    prop_oneof![
        12 => (1_600_000_000i64..1_800_000_000).prop_map(|t| t.to_string()),
        1 => any::<i64>().prop_map(|t| t.to_string()),
        1 => strings(&["", " ", "-5", "1e9", " 123 ", "0", "99999999999999999999", "12.5"]),
        1 => (1usize..40).prop_map(|n| "9".repeat(n)),
    ]
    .boxed()
}

/// One item of a `Stripe-Signature` list.
fn stripe_item() -> BoxedStrategy<String> {
    prop_oneof![
        4 => hex_digits().prop_map(|h| format!("v1={h}")),
        1 => timestamp_text().prop_map(|t| format!("t={t}")),
        1 => hex_digits().prop_map(|h| format!("v0={h}")),
        1 => strings(&["", "=", "t=", "v1=", "junk", " v1 = x", "t==1"]),
    ]
    .boxed()
}

/// One item of a `webhook-signature` list.
fn standard_item() -> BoxedStrategy<String> {
    prop_oneof![
        5 => base64_text().prop_map(|b| format!("v1,{b}")),
        1 => base64_text().prop_map(|b| format!("v2,{b}")),
        1 => strings(&["v1,", "v1", ",", "v1a,x", ""]),
    ]
    .boxed()
}

/// A header value in the shape of one scheme or another, or arbitrary text.
fn signature_value() -> BoxedStrategy<String> {
    let prefix = strings(&["", "sha256=", "SHA256=", "v0=", "v1=", "sha1=", "="]);
    prop_oneof![
        3 => (prefix, hex_digits()).prop_map(|(p, h)| p + &h),
        2 => base64_text(),
        3 => (
            prop::collection::vec(stripe_item(), 0..5),
            strings(&[",", ", ", " ,"]),
        )
            .prop_map(|(items, sep)| items.join(&sep)),
        3 => (
            prop::collection::vec(standard_item(), 0..5),
            strings(&[" ", "  ", "\t"]),
        )
            .prop_map(|(items, sep)| items.join(&sep)),
        1 => chars(80),
    ]
    .boxed()
}

/// Up to three headers of any scheme's names, with values of any scheme's shape or arbitrary
/// bytes: a request not meant for the scheme that verifies it.
fn headers() -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        6 => header_name(),
        3 => strings(&[
            "X-GitHub-Delivery",
            "X-Slack-Request-Timestamp",
            "webhook-id",
            "webhook-timestamp",
            "WEBHOOK-TIMESTAMP",
            "Content-Type",
        ]),
    ];
    let value = prop_oneof![
        6 => signature_value().prop_map(String::into_bytes),
        3 => timestamp_text().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (1usize..600).prop_map(|n| "v1,".repeat(n).into_bytes()),
    ];
    prop::collection::vec((name, value), 0..4).boxed()
}

/// A header name in the spelling a sender might use: as documented, lower or upper case.
fn spelled(name: &str) -> BoxedStrategy<String> {
    let name = name.to_owned();
    prop_oneof![
        3 => Just(name.clone()),
        1 => Just(name.to_ascii_lowercase()),
        1 => Just(name.to_ascii_uppercase()),
    ]
    .boxed()
}

/// A value shaped as `scheme` spells its signature header, often not quite right.
fn shaped_signature(scheme: Scheme) -> BoxedStrategy<String> {
    let hex_with = |prefixes: &'static [&'static str]| {
        (strings(prefixes), hex_digits())
            .prop_map(|(p, h)| p + &h)
            .boxed()
    };
    match scheme {
        Scheme::HmacSha256 => hex_with(&["", "", "", "sha256=", "sha256=", "SHA256=", "sha1="]),
        Scheme::Github => hex_with(&[
            "sha256=", "sha256=", "sha256=", "sha256=", "sha256=", "sha256=", "SHA256=", "",
        ]),
        Scheme::Slack => hex_with(&["v0=", "v0=", "v0=", "v0=", "v0=", "v0=", "v1=", ""]),
        Scheme::Line => base64_text(),
        Scheme::Stripe => (
            timestamp_text(),
            prop::collection::vec(stripe_item(), 0..4),
            any::<Index>(),
            strings(&[",", ",", ", "]),
        )
            .prop_map(|(t, mut items, at, sep)| {
                items.insert(at.index(items.len() + 1), format!("t={t}"));
                items.join(&sep)
            })
            .boxed(),
        Scheme::StandardWebhooks => (
            prop::collection::vec(standard_item(), 1..4),
            strings(&[" ", " ", "  ", "\t"]),
        )
            .prop_map(|(items, sep)| items.join(&sep))
            .boxed(),
    }
}

/// The headers `scheme` reads, each usually present, shaped for the scheme and in some
/// spelling, plus noise headers, in any order; values may be bytes that are not UTF-8.
fn request(scheme: Scheme, configured: Option<String>) -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let signature_header = match (scheme, configured) {
        (Scheme::HmacSha256 | Scheme::Github | Scheme::Line, Some(h)) => h,
        _ => scheme.default_header().to_owned(),
    };
    let value = |shaped: BoxedStrategy<String>| {
        prop_oneof![
            16 => shaped.prop_map(String::into_bytes),
            2 => signature_value().prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
        .boxed()
    };
    let mut wanted = vec![(signature_header, value(shaped_signature(scheme)))];
    let id = "[A-Za-z0-9_]{1,24}".boxed();
    match scheme {
        Scheme::Github => wanted.push(("X-GitHub-Delivery".to_owned(), value(id))),
        Scheme::Slack => {
            wanted.push((
                "X-Slack-Request-Timestamp".to_owned(),
                value(timestamp_text()),
            ));
        }
        Scheme::StandardWebhooks => {
            wanted.push(("webhook-id".to_owned(), value(id)));
            wanted.push(("webhook-timestamp".to_owned(), value(timestamp_text())));
        }
        Scheme::HmacSha256 | Scheme::Line | Scheme::Stripe => {}
    }
    let present: Vec<_> = wanted
        .into_iter()
        .map(|(name, value)| prop::option::weighted(0.9, (spelled(&name), value)))
        .collect();
    let noise = prop::collection::vec(
        (
            prop_oneof![
                4 => strings(&["Content-Type", "User-Agent", "X-Request-Id", "Accept"]),
                1 => header_name(),
            ],
            prop_oneof![3 => chars(16).prop_map(String::into_bytes), 1 => signature_value().prop_map(String::into_bytes)],
        ),
        0..3,
    );
    (present, noise)
        .prop_map(|(present, noise)| {
            let mut all: Vec<_> = present.into_iter().flatten().collect();
            all.extend(noise);
            all
        })
        .prop_shuffle()
        .boxed()
}

/// Stored key values: plain, `whsec_` with good or bad base64, empty, and arbitrary bytes.
fn secrets() -> BoxedStrategy<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let secret = prop_oneof![
        4 => "[A-Za-z0-9]{8,40}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 8..40)
            .prop_map(|b| format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b)).into_bytes()),
        1 => strings(&["", "whsec_", "whsec_!!!", "whsec_====", "***"]).prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop_oneof![
        1 => prop::collection::vec(secret.clone(), 0..2),
        6 => prop::collection::vec(secret, 1..4),
    ]
    .boxed()
}

/// Verifies one request and checks that the answer is well-formed and leaks nothing.
fn verify_and_check(
    params: &VerifyParams<'_>,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<Option<SignatureError>, TestCaseError> {
    let names: Vec<String> = (0..secrets.len()).map(|i| format!("key-{i}")).collect();
    let keys: Vec<Key<'_>> = names
        .iter()
        .zip(secrets)
        .map(|(name, secret)| Key { name, secret })
        .collect();
    match signature::verify(params, &headers, body, &keys) {
        Ok(verified) => {
            let usable = keys
                .get(verified.key_index)
                .is_some_and(|k| !k.secret.is_empty());
            ensure(usable, || {
                format!("matched a key that is not usable: {verified:?}")
            })?;
            Ok(None)
        }
        Err(err) => {
            let shown = format!("{err} {err:?}");
            for secret in secrets.iter().filter(|s| s.len() >= 8) {
                let secret = String::from_utf8_lossy(secret);
                ensure(!shown.contains(secret.as_ref()), || {
                    format!("the error shows a key: {shown}")
                })?;
            }
            for (_, value) in headers.iter().filter(|(_, v)| v.len() >= 16) {
                let value = String::from_utf8_lossy(value);
                ensure(!shown.contains(value.trim()), || {
                    format!("the error shows a header value: {shown}")
                })?;
            }
            ensure(shown.len() <= 1024, || {
                format!("a {}-byte error", shown.len())
            })?;
            Ok(Some(err))
        }
    }
}

fn scheme() -> impl Strategy<Value = Scheme> {
    select(Scheme::ALL.to_vec())
}

#[test]
fn signature_verifiers_survive_arbitrary_headers() {
    let scheme_and_headers = (scheme(), prop::option::weighted(0.3, header_name())).prop_flat_map(
        |(scheme, configured)| {
            let headers = prop_oneof![6 => request(scheme, configured.clone()), 1 => headers()];
            (Just(scheme), Just(configured), headers)
        },
    );
    let input = (
        scheme_and_headers,
        prop_oneof![4 => 0u64..1_000, 1 => any::<u64>()],
        prop_oneof![
            4 => 1_600_000_000i64..1_800_000_000,
            1 => any::<i64>(),
            1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0)],
        ],
        prop::collection::vec(any::<u8>(), 0..512),
        secrets(),
        chars(24),
    );
    let compared = AtomicUsize::new(0);
    let cases = 8192;
    check(
        "signature_verifiers_survive_arbitrary_headers",
        cases,
        input,
        |((scheme, configured, headers), tolerance, now, body, secrets, scheme_text)| {
            let _ = Scheme::parse(scheme_text);
            let _ = Scheme::infer(Some(scheme_text));
            let params = VerifyParams {
                scheme: *scheme,
                signature_header: configured.as_deref(),
                tolerance_secs: *tolerance,
                now_unix: *now,
            };
            let outcome = verify_and_check(&params, headers, body, secrets)?;
            if matches!(outcome, Some(SignatureError::NoKeyMatched { .. })) {
                compared.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        },
    );
    // Most requests must get through header parsing to the key comparison, or this property
    // would test little beyond "missing header".
    let compared = compared.into_inner();
    assert!(
        compared * 4 >= cases as usize,
        "only {compared} of {cases} generated requests reached the key comparison"
    );
}

#[test]
fn signature_verifiers_accept_what_sign_produces_and_nothing_else() {
    let input = (
        scheme(),
        prop::option::weighted(0.3, strings(&["X-Custom-Signature", "x-signature"])),
        "[A-Za-z0-9]{8,40}",
        prop::collection::vec(any::<u8>(), 0..512),
        prop_oneof![4 => 1_600_000_000i64..1_800_000_000, 1 => 0i64..i64::MAX],
        "[A-Za-z0-9_-]{1,32}",
        secrets(),
        any::<Index>(),
        any::<u8>(),
    );
    check(
        "signature_verifiers_accept_what_sign_produces_and_nothing_else",
        2048,
        input,
        |(scheme, configured, secret, body, now, id, decoys, at, flip)| {
            let headers: Vec<(String, Vec<u8>)> = signature::sign(
                *scheme,
                configured.as_deref(),
                secret.as_bytes(),
                body,
                *now,
                id,
            )
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect();
            let params = VerifyParams {
                scheme: *scheme,
                signature_header: configured.as_deref(),
                tolerance_secs: 300,
                now_unix: *now,
            };
            // The signing key among decoys that are not it.
            let mut keys: Vec<Vec<u8>> = decoys
                .iter()
                .filter(|d| d.as_slice() != secret.as_bytes())
                .cloned()
                .collect();
            let position = at.index(keys.len() + 1);
            keys.insert(position, secret.clone().into_bytes());
            let names: Vec<String> = (0..keys.len()).map(|i| format!("key-{i}")).collect();
            let refs: Vec<Key<'_>> = names
                .iter()
                .zip(&keys)
                .map(|(name, secret)| Key { name, secret })
                .collect();
            match signature::verify(&params, &headers, body, &refs) {
                // A decoy may be the same HMAC key spelled differently; only a decoy can come
                // before the signing key.
                Ok(v) => ensure(v.key_index <= position, || {
                    format!(
                        "matched key {} after the signing key at {position}",
                        v.key_index
                    )
                })?,
                Err(e) => return Err(TestCaseError::fail(format!("signed request refused: {e}"))),
            }
            // One changed body byte, or one more, and no key matches.
            let mut tampered = body.clone();
            match tampered.is_empty() {
                true => tampered.push(*flip),
                false => {
                    let i = at.index(tampered.len());
                    tampered[i] ^= flip | 1;
                }
            }
            let outcome = verify_and_check(&params, &headers, &tampered, &keys)?;
            ensure(
                matches!(outcome, Some(SignatureError::NoKeyMatched { .. })),
                || format!("a tampered body got {outcome:?}"),
            )?;
            // Outside the tolerance the signed timestamp is refused, the signature still good.
            if scheme.is_timestamped() {
                let late = VerifyParams {
                    now_unix: now.saturating_add(301),
                    ..params
                };
                let outcome = verify_and_check(&late, &headers, body, &keys)?;
                ensure(
                    matches!(outcome, Some(SignatureError::StaleTimestamp { .. }))
                        || (*now > i64::MAX - 301 && outcome.is_none()),
                    || format!("a request signed 301 s ago got {outcome:?}"),
                )?;
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// CEL filters
// ---------------------------------------------------------------------------------------------

/// The most bytes of CEL any generator here produces: twice what `Filter::compile` accepts, so
/// the length refusal is exercised too.
const CEL_MAX: usize = 2 * orchestrator::domain::filter::MAX_CONDITION_BYTES;

fn identifier() -> BoxedStrategy<String> {
    prop_oneof![
        6 => strings(&["a", "b", "type", "x", "n", "payload", "payload_type", "size", "in"]),
        1 => "[a-z_][a-z0-9_]{0,8}",
        1 => chars(4),
    ]
    .boxed()
}

/// CEL source from the language's pieces: literals of every kind (and malformed ones),
/// identifiers, member access, indexing, calls, macros, operators, lists, maps and the ternary,
/// nested at most 4 deep (see [`CEL_MAX`] for why not deeper).
fn cel_expression() -> BoxedStrategy<String> {
    let literal = prop_oneof![
        4 => strings(&[
            "payload", "payload.type", "payload_type", "payload.a.b", "x", "true", "false",
            "null", "1", "-1", "1u", "1.5", "1e308", "1e999", "9223372036854775807",
            "-9223372036854775808", "9223372036854775808", "18446744073709551615u",
            "18446744073709551616u", "0x1F", "'s'", "\"s\"", "'''t'''", "r'\\d'", "b'\\xff'",
            "'\\u00e9'", "'\\U0010FFFF'", "'\\x'", "'\\777'", "'unterminated", "[]", "{}",
            "size", "has", "in", ".", "..", "?", ":", "&&", "||",
        ]),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => chars(12).prop_map(|s| format!("{s:?}")),
    ];
    let binary = &[
        "==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "-", "*", "/", "%", "in", "=", "&",
    ];
    let expression = literal.prop_recursive(4, 48, 4, move |inner| {
        prop_oneof![
            3 => (inner.clone(), strings(binary), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            1 => (strings(&["!", "-", "!!", "--"]), inner.clone())
                .prop_map(|(op, a)| format!("{op}{a}")),
            1 => inner.clone().prop_map(|a| format!("({a})")),
            2 => (inner.clone(), identifier()).prop_map(|(a, f)| format!("{a}.{f}")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("{a}[{i}]")),
            1 => (
                strings(&["size", "has", "int", "uint", "double", "string", "bytes", "type",
                          "dyn", "duration", "timestamp", "matches", "nope"]),
                prop::collection::vec(inner.clone(), 0..3),
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            2 => (
                inner.clone(),
                strings(&["matches", "contains", "startsWith", "endsWith", "size", "exists",
                          "all", "exists_one", "map", "filter"]),
                prop::collection::vec(inner.clone(), 0..3),
            )
                .prop_map(|(t, m, args)| format!("{t}.{m}({})", args.join(", "))),
            1 => (
                inner.clone(),
                strings(&["exists", "all", "exists_one", "map", "filter"]),
                identifier(),
                inner.clone(),
            )
                .prop_map(|(t, m, v, body)| format!("{t}.{m}({v}, {body})")),
            1 => (
                inner.clone(),
                strings(&["'('", "'[a-z]+'", "'(a+)+$'", "'\\\\d{1000}'", "'a{99999}'"]),
            )
                .prop_map(|(t, re)| format!("{t}.matches({re})")),
            1 => prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|xs| format!("[{}]", xs.join(", "))),
            1 => prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(|kv| {
                let entries: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", entries.join(", "))
            }),
            1 => (inner.clone(), inner.clone(), inner)
                .prop_map(|(c, a, b)| format!("{c} ? {a} : {b}")),
        ]
    });
    // Member chains up to 5,000 long: before the length and depth checks, such a chain
    // overflowed a worker's stack and aborted the daemon.
    let chain = (1usize..5_000).prop_map(|n| format!("payload{} == 1", ".a".repeat(n)));
    let mutated = (
        prop_oneof![6 => expression, 6 => condition(), 1 => chain],
        prop::option::weighted(
            0.2,
            (
                any::<Index>(),
                strings(&["(", ")", "[", "'", ",", ".", "?"]),
            ),
        ),
    )
        .prop_map(|(source, junk)| match junk {
            Some((at, junk)) => splice(&source, at, &junk),
            None => source,
        });
    mutated.prop_map(|s| cap(s, CEL_MAX)).boxed()
}

/// Conditions as users write them: tests of payload fields joined by `&&` and `||`, so that
/// evaluation gets past the first missing field.
fn condition() -> BoxedStrategy<String> {
    let path = prop::collection::vec(strings(&["a", "b", "type", "x", "n"]), 1..3)
        .prop_map(|p| format!("payload.{}", p.join(".")));
    let value = strings(&[
        "1",
        "0",
        "-1",
        "1u",
        "2.5",
        "'push'",
        "'a'",
        "\"\"",
        "true",
        "null",
        "[1, 2]",
        "{'a': 1}",
        "b'x'",
        "9223372036854775807",
    ]);
    let test = prop_oneof![
        4 => (path.clone(), strings(&["==", "!=", "<", "<=", ">", ">=", "in", "+ 1 =="]), value)
            .prop_map(|(p, op, v)| format!("{p} {op} {v}")),
        1 => path.clone().prop_map(|p| format!("has({p})")),
        1 => path.clone().prop_map(|p| format!("{p}.size() > 1")),
        1 => (path.clone(), strings(&["startsWith", "endsWith", "contains", "matches"]))
            .prop_map(|(p, f)| format!("{p}.{f}('a')")),
        1 => (path.clone(), strings(&["exists", "all", "exists_one"]))
            .prop_map(|(p, m)| format!("{p}.{m}(i, i == 1)")),
        1 => (path.clone(), strings(&["map", "filter"]))
            .prop_map(|(p, m)| format!("{p}.{m}(i, i > 0).size() == 1")),
        1 => (path, strings(&["int", "string", "double", "uint", "size", "type"]))
            .prop_map(|(p, f)| format!("{f}({p}) == {f}(1)")),
        1 => strings(&["payload_type == 'push'", "payload_a > 1", "1 / 0 == 1", "-9223372036854775808 - 1 == 0", "9223372036854775807 + 1 > 0", "18446744073709551615u + 1u > 0u", "-(-9223372036854775808) > 0", "int('99999999999999999999') > 0", "double('nan') == 1.0", "'a' * 3 == 'aaa'"]),
    ];
    prop::collection::vec((test, strings(&[" && ", " || "])), 1..4)
        .prop_map(|tests| {
            let mut out = String::new();
            for (i, (t, join)) in tests.iter().enumerate() {
                if i > 0 {
                    out.push_str(join);
                }
                out.push_str(t);
            }
            out
        })
        .boxed()
}

/// Compiles `source`; a condition that compiles is also evaluated against `payload`. Tells
/// whether the evaluation gave a boolean (`None`: it did not compile).
fn compile_and_run(source: &str, payload: &Json) -> Result<Option<bool>, TestCaseError> {
    match Filter::compile(source) {
        Ok(filter) => Ok(Some(filter.matches(payload).is_ok())),
        Err(e) => {
            let message = e.to_string();
            // The cel parser's own message repeats the whole line for every bad token (a 2 KiB
            // line of `#` gave 6 MiB); ours quotes at most three errors, abbreviated.
            ensure(message.len() <= 1024, || {
                format!(
                    "a {}-byte error for {} bytes of CEL",
                    message.len(),
                    source.len()
                )
            })?;
            Ok(None)
        }
    }
}

#[test]
fn cel_compiler_survives_arbitrary_bytes() {
    let input = prop::collection::vec(any::<u8>(), 0..CEL_MAX);
    check(
        "cel_compiler_survives_arbitrary_bytes",
        256,
        input,
        |bytes| compile_and_run(&String::from_utf8_lossy(bytes), &Json::Null).map(drop),
    );
}

#[test]
fn cel_compiler_survives_structured_conditions() {
    let input = (cel_expression(), cel_payload());
    let (cases, compiled, evaluated) = (2048, AtomicUsize::new(0), AtomicUsize::new(0));
    check(
        "cel_compiler_survives_structured_conditions",
        cases,
        input,
        |(source, payload)| {
            match compile_and_run(source, payload)? {
                Some(true) => {
                    compiled.fetch_add(1, Ordering::Relaxed);
                    evaluated.fetch_add(1, Ordering::Relaxed);
                }
                Some(false) => {
                    compiled.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
            Ok(())
        },
    );
    // Enough conditions must compile, and some evaluate to a boolean, for the compiler's
    // success path and the evaluator to be exercised too.
    let (compiled, evaluated) = (compiled.into_inner(), evaluated.into_inner());
    assert!(
        compiled * 4 >= cases as usize && evaluated * 50 >= cases as usize,
        "of {cases} generated conditions only {compiled} compiled and {evaluated} evaluated \
         to a boolean"
    );
}

/// Payloads that usually have the fields [`condition`] tests, nested, of any type.
fn cel_payload() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        3 => (-3i64..3).prop_map(Json::from),
        1 => any::<i64>().prop_map(Json::from),
        1 => any::<f64>().prop_map(Json::from),
        2 => strings(&["push", "a", "", "aaa"]).prop_map(Json::from),
        1 => any::<bool>().prop_map(Json::from),
        1 => Just(Json::Null),
    ];
    let tree = leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            3 => prop::collection::vec((strings(&["a", "b", "type", "x", "n"]), inner.clone()), 0..5)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
            1 => prop::collection::vec(inner, 0..4).prop_map(Json::Array),
        ]
    });
    prop_oneof![6 => tree, 1 => json_value()].boxed()
}

#[test]
fn generators_know_every_kind() {
    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let named: Vec<&str> = KINDS.split_whitespace().collect();
    assert_eq!(named, known, "KINDS must list the model's kinds");
}
