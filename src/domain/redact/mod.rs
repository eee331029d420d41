//! Redaction of secret values from agent output. Every SecretStore value an agent could print is
//! replaced by [`MARK`] before anything reaches a run log or the captured `{prev_stdout}`, so a
//! secret never lands on disk in plain text (SPEC §6, §10). Agent output arrives in arbitrary
//! pieces, so [`StreamRedactor`] holds back the bytes that could still be the start of a secret
//! and decides them when the next piece arrives; its output is the same for every way of cutting
//! the input into pieces. What it holds is exactly the longest tail that is a proper prefix of a
//! secret (`prefix.rs`): everything else, a partial line included, is released at once.
//!
//! The rule for a held tail, so that a secret printed in two halves with any pause between them
//! never appears: the tail is held until the input that follows shows it is not the start of a
//! secret (then it is released as it is, at once), until it completes a secret (then that
//! occurrence is replaced), or until the stream ends, when [`StreamRedactor::finish`] releases it
//! as it is, because a proper prefix is not a whole secret. Time plays no part: the run log
//! flushes partial *lines* after a pause (`process/log.rs`), but never a held tail.
//!
//! What is redacted is the union of all occurrences of all secrets: every byte covered by any
//! occurrence is hidden, and each maximal run of overlapping occurrences becomes one [`MARK`].
//! This is stricter than leftmost-longest matching, which would leave the tail of a secret visible
//! when another secret overlaps its start (secrets `abc` and `cde` in `abcde`).
//!
//! The set of secrets changes while agents run; the daemon's live set ([`SecretRegistry`]) and
//! the runs' leases on it live in `registry.rs`.

mod prefix;
mod registry;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aho_corasick::{AhoCorasick, MatchKind};

use prefix::Prefixes;
pub use registry::{RegistryStats, SecretRegistry, Secrets};

/// What every secret occurrence is replaced with.
pub const MARK: &str = "[REDACTED]";

/// A fixed set of secret values to hide, shared through an [`Arc`]; [`Debug`] never prints the
/// values. Runs get theirs from a [`SecretRegistry`], which swaps in a new one on every change.
pub struct Redactor {
    matcher: Matcher,
}

enum Matcher {
    /// No secrets: output passes through unchanged.
    Nothing,
    /// The secrets, matched with overlaps so runs of overlapping occurrences can be merged.
    Patterns {
        automaton: AhoCorasick,
        count: usize,
        /// Finds the tail a stream must hold back.
        prefixes: Prefixes,
    },
    /// The automaton could not be built (only possible for absurdly large secret sets). We then
    /// fail closed: any non-empty output becomes a single [`MARK`].
    Everything,
}

impl Redactor {
    /// Builds a redactor for `secrets`. Empty values are ignored (they would match everywhere)
    /// and duplicates are harmless.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(secrets: I) -> Redactor {
        let secrets: Vec<S> = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .collect();
        if secrets.is_empty() {
            return Redactor::none();
        }
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&secrets);
        let values: Vec<&[u8]> = secrets.iter().map(AsRef::as_ref).collect();
        let problem = match (built, Prefixes::new(&values)) {
            (Ok(automaton), Some(prefixes)) => {
                return Redactor {
                    matcher: Matcher::Patterns {
                        automaton,
                        count: secrets.len(),
                        prefixes,
                    },
                };
            }
            (Err(err), _) => err.to_string(),
            (Ok(_), None) => "the secrets exceed 4 GiB".to_owned(),
        };
        tracing::error!(
            secrets = secrets.len(),
            "cannot build the secret matcher ({problem}); all agent output will be redacted"
        );
        Redactor::opaque()
    }

    /// A redactor that hides nothing.
    pub fn none() -> Redactor {
        Redactor {
            matcher: Matcher::Nothing,
        }
    }

    /// A redactor that hides everything: the fail-closed fallback.
    fn opaque() -> Redactor {
        Redactor {
            matcher: Matcher::Everything,
        }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        matches!(self.matcher, Matcher::Nothing)
    }

    /// Redacts a whole buffer at once.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut state = StreamState::default();
        let mut out = Vec::with_capacity(input.len());
        self.decide(input, input.len(), &mut state, &mut out);
        out
    }

    /// Redacts a string. Secrets are byte strings, so a secret that is not valid UTF-8 could cut
    /// a character; such leftovers become U+FFFD.
    pub fn redact_str(&self, input: &str) -> String {
        match String::from_utf8(self.redact(input.as_bytes())) {
            Ok(s) => s,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }
    }

    /// Starts redacting one stream of chunks with this fixed set.
    pub fn stream(self: &Arc<Self>) -> StreamRedactor {
        Secrets::fixed(Arc::clone(self)).stream()
    }

    /// Bytes at the end of `buf` (the undecided input) that a stream must hold back: the
    /// longest tail that is a proper prefix of a secret, in which any occurrence completed by a
    /// later chunk must start.
    fn hold_back(&self, buf: &[u8]) -> usize {
        match &self.matcher {
            Matcher::Patterns { prefixes, .. } => prefixes.held(buf),
            Matcher::Nothing | Matcher::Everything => 0,
        }
    }

    /// Decides `buf[..decide]` and appends its redacted form to `out`. Every occurrence that
    /// starts before `decide` must be complete inside `buf`; the caller guarantees it by holding
    /// back [`Redactor::hold_back`] bytes. A stream may switch redactors between calls (the set
    /// grew or shrank): the state holds absolute offsets only, and bytes not yet decided are
    /// decided by the newer set. `state` carries across calls the absolute offset of
    /// `buf[0]` and how far the current run of occurrences reaches, so a run that continues into
    /// the held-back bytes is not marked twice.
    fn decide(&self, buf: &[u8], decide: usize, state: &mut StreamState, out: &mut Vec<u8>) {
        match &self.matcher {
            Matcher::Nothing => out.extend_from_slice(&buf[..decide]),
            Matcher::Everything => {
                if decide > 0 && !state.marked {
                    out.extend_from_slice(MARK.as_bytes());
                    state.marked = true;
                }
            }
            Matcher::Patterns { automaton, .. } => {
                // Overlapping matches come ordered by end; runs are built in order of start.
                let mut found: Vec<(usize, usize)> = automaton
                    .find_overlapping_iter(buf)
                    .map(|m| (m.start(), m.end()))
                    .filter(|&(start, _)| start < decide)
                    .collect();
                found.sort_unstable();
                // Bytes of `buf` before `covered` belong to a run whose mark is already out.
                let mut covered = state.cover_end.saturating_sub(state.base) as usize;
                for (start, end) in found {
                    if start >= covered {
                        out.extend_from_slice(&buf[covered.min(start)..start]);
                        out.extend_from_slice(MARK.as_bytes());
                        covered = end;
                    } else {
                        covered = covered.max(end);
                    }
                }
                if covered < decide {
                    out.extend_from_slice(&buf[covered..decide]);
                }
                state.cover_end = state.base + covered as u64;
            }
        }
        state.base += decide as u64;
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Matcher::Nothing => f.write_str("Redactor(no secrets)"),
            Matcher::Patterns { count, .. } => write!(f, "Redactor({count} secrets)"),
            Matcher::Everything => f.write_str("Redactor(everything)"),
        }
    }
}

/// Position bookkeeping shared by whole-buffer and streaming redaction.
#[derive(Default)]
struct StreamState {
    /// Absolute offset of the first undecided byte.
    base: u64,
    /// Absolute end of the last run of secret occurrences.
    cover_end: u64,
    /// For the fail-closed redactor: the single mark was already emitted.
    marked: bool,
}

/// Redacts one stream fed in chunks. [`push`](StreamRedactor::push) returns the bytes that are
/// final, holding back only the longest tail that is a proper prefix of a secret (see the module
/// doc for how long it is held); [`finish`](StreamRedactor::finish) returns the rest. Concatenated, the outputs equal
/// [`Redactor::redact`] of the whole input, however it was cut, as long as the set is fixed.
/// With a live set ([`SecretRegistry::lease`]) each call first takes the newest set, so a value
/// added before a chunk was read is hidden in that chunk and in everything still held back.
pub struct StreamRedactor {
    secrets: Secrets,
    redactor: Arc<Redactor>,
    /// The registry version `redactor` was taken at.
    version: u64,
    pending: Vec<u8>,
    state: StreamState,
}

impl StreamRedactor {
    /// Adds a chunk and returns the output that is now final.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.refresh();
        self.pending.extend_from_slice(chunk);
        let decide = self.pending.len() - self.redactor.hold_back(&self.pending);
        self.drain(decide)
    }

    /// Ends the stream and returns everything still held back. The redactor can be reused for a
    /// new stream afterwards.
    pub fn finish(&mut self) -> Vec<u8> {
        self.refresh();
        let out = self.drain(self.pending.len());
        self.state = StreamState::default();
        out
    }

    /// Takes the registry's newest set if it changed since the last chunk.
    fn refresh(&mut self) {
        if let Some(registry) = self.secrets.registry()
            && registry.version.load(Ordering::Acquire) != self.version
        {
            (self.version, self.redactor) = registry.published();
        }
    }

    fn drain(&mut self, decide: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(decide);
        self.redactor
            .decide(&self.pending, decide, &mut self.state, &mut out);
        self.pending.drain(..decide);
        out
    }
}

impl fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRedactor")
            .field("redactor", &self.redactor)
            .field("held_back", &self.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(secrets: &[&str], input: &str, want: &str) {
        let redactor = Arc::new(Redactor::new(secrets.iter().copied()));
        assert_eq!(
            redactor.redact_str(input),
            want,
            "secrets {secrets:?} input {input:?}"
        );
        check_splits(&redactor, input.as_bytes());
    }

    /// Feeds `input` in the given pieces and returns the concatenated output.
    fn streamed(redactor: &Arc<Redactor>, pieces: &[&[u8]]) -> Vec<u8> {
        let mut stream = redactor.stream();
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(stream.push(piece));
        }
        out.extend(stream.finish());
        out
    }

    /// Asserts that every 1-, 2- and 3-piece split, the 1-byte split and a few pseudo-random
    /// splits give the whole-buffer result.
    #[track_caller]
    fn check_splits(redactor: &Arc<Redactor>, input: &[u8]) {
        let want = redactor.redact(input);
        let n = input.len();
        let mut splits: Vec<Vec<usize>> = vec![vec![], (1..n).collect()];
        for i in 0..=n {
            splits.push(vec![i]);
            if n <= 40 {
                for j in i..=n {
                    splits.push(vec![i, j]);
                }
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ n as u64;
        for _ in 0..50 {
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                at += (seed % 17) as usize;
                if at >= n {
                    break;
                }
                cuts.push(at);
            }
            splits.push(cuts);
        }
        for cuts in splits {
            let mut pieces = Vec::new();
            let mut from = 0;
            for &cut in &cuts {
                pieces.push(&input[from..cut]);
                from = cut;
            }
            pieces.push(&input[from..]);
            assert_eq!(
                String::from_utf8_lossy(&streamed(redactor, &pieces)),
                String::from_utf8_lossy(&want),
                "input {:?} cut at {cuts:?}",
                String::from_utf8_lossy(input),
            );
        }
    }

    #[test]
    fn redacts_whole_buffers_and_every_split() {
        let overlapping = ["abc", "bcd", "abcd"];
        check(&[], "nothing to hide", "nothing to hide");
        check(
            &["", ""],
            "empty secrets are ignored",
            "empty secrets are ignored",
        );
        check(&["hunter2"], "pw=hunter2!", "pw=[REDACTED]!");
        check(
            &["hunter2", "hunter2"],
            "hunter2 hunter2",
            "[REDACTED] [REDACTED]",
        );
        check(&["hunter2"], "ends with hunter2", "ends with [REDACTED]");
        check(&["hunter2"], "hunter2", "[REDACTED]");
        check(&["hunter2"], "hunter", "hunter");
        check(&["hunter2"], "hunterhunter2", "hunter[REDACTED]");
        check(&overlapping, "xabcdx", "x[REDACTED]x");
        check(&overlapping, "xabcx", "x[REDACTED]x");
        check(&overlapping, "xbcdx", "x[REDACTED]x");
        check(&overlapping, "abcbcd", "[REDACTED][REDACTED]");
        check(&overlapping, "abcabcd abd", "[REDACTED][REDACTED] abd");
        check(&overlapping, "abcdabcd", "[REDACTED][REDACTED]");
        // An overlap merges two occurrences into one run, so no tail of either leaks.
        check(&["abc", "cde"], "abcde", "[REDACTED]");
        check(&["abc", "cde"], "abcdefabc", "[REDACTED]f[REDACTED]");
        // A self-overlapping run is one mark however long it is.
        check(&["aa"], "baaaaaaab", "b[REDACTED]b");
        check(&["aa"], "aaa", "[REDACTED]");
        check(&["a"], "banana", "b[REDACTED]n[REDACTED]n[REDACTED]");
        check(
            &["first-line\nsecond-line"],
            "x first-line\nsecond-line y\nfirst-line\n",
            "x [REDACTED] y\nfirst-line\n",
        );
        check(&["日本"], "こんにちは日本語", "こんにちは[REDACTED]語");
    }

    #[test]
    fn long_text_fed_one_byte_at_a_time() {
        let secrets = ["abc", "bcd", "abcd", "line one\nline two", "zz"];
        let redactor = Arc::new(Redactor::new(secrets));
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(match i % 7 {
                0 => "plain words ",
                1 => "abcd",
                2 => "xbcdy ",
                3 => "line one\nline two\n",
                4 => "line one\nline three\n",
                5 => "zzzzz ",
                _ => "ab",
            });
        }
        text.push_str("abc");
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        let out = streamed(&redactor, &pieces);
        assert_eq!(out, redactor.redact(text.as_bytes()));
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.ends_with("[REDACTED] [REDACTED]"),
            "{}",
            &out[out.len() - 30..]
        );
        assert!(!out.contains("abc") && !out.contains("bcd") && !out.contains("zz"));
        assert!(!out.contains("line two"));
        assert!(out.contains("line one\nline three\n"));
        check_splits(&redactor, &text.as_bytes()[..200]);
    }

    #[test]
    fn stream_holds_back_only_a_possible_secret_prefix() {
        let redactor = Arc::new(Redactor::new(["secret"]));
        let mut stream = redactor.stream();
        assert_eq!(stream.push(b"hello sec"), b"hello ");
        assert_eq!(stream.push(b"ret and more"), b"[REDACTED] and more");
        assert_eq!(stream.finish(), b"");
        // After finish the stream starts over. A complete secret is marked at once.
        assert_eq!(stream.push(b"secret!"), b"[REDACTED]!");
        assert_eq!(stream.push(b"no s"), b"no ");
        assert_eq!(stream.finish(), b"s");
    }

    #[test]
    fn fail_closed_redactor_hides_everything() {
        let redactor = Arc::new(Redactor::opaque());
        assert_eq!(redactor.redact_str("anything"), MARK);
        assert_eq!(redactor.redact_str(""), "");
        assert!(!redactor.is_empty());
        check_splits(&redactor, b"some output\nmore");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let redactor = Arc::new(Redactor::new(["hunter2", "s3cr3t"]));
        let mut stream = redactor.stream();
        let _ = stream.push(b"xx hunte");
        let shown = format!("{redactor:?} {stream:?}");
        assert!(
            !shown.contains("hunte") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(shown.contains("2 secrets"), "{shown}");
        assert!(Redactor::none().is_empty());
        assert!(Redactor::new([""]).is_empty());
        assert!(!redactor.is_empty());
    }

    #[test]
    fn a_complete_line_is_released_unless_a_secret_spans_lines() {
        let redactor = Arc::new(Redactor::new(["a-long-secret-value"]));
        let mut stream = redactor.stream();
        assert_eq!(stream.push(b"first line\n"), b"first line\n");
        assert_eq!(stream.push(b"two\nthree\na-long"), b"two\nthree\n");
        assert_eq!(stream.push(b"-secret-value\n"), b"[REDACTED]\n");
        assert_eq!(stream.finish(), b"");
        // A secret with a newline may still be open across the last one.
        let redactor = Arc::new(Redactor::new(["ab\ncd"]));
        let mut stream = redactor.stream();
        assert_eq!(stream.push(b"xx ab\n"), b"xx ");
        assert_eq!(stream.push(b"cd\n"), b"[REDACTED]\n");
        assert_eq!(stream.push(b"zz ab\nq"), b"zz ab\nq");
        assert_eq!(stream.push(b"zz ab\n"), b"zz ");
        assert_eq!(stream.finish(), b"ab\n");
        check_splits(&redactor, b"ab\nab\ncd\nab\n\ncd ab\ncdab\nc");
        let lines = Arc::new(Redactor::new(["line one\nline two", "zz", "x\n"]));
        check_splits(&lines, b"line one\nline two\nx\nzz\nline one\nzzx\n\nx");
    }

    #[test]
    fn a_split_secret_is_held_until_it_completes_or_cannot() {
        let redactor = Arc::new(Redactor::new(["tok-SECRET-9f8e7d6c5b"]));
        let mut stream = redactor.stream();
        // The first half waits for the second, however long the pause: no clock decides here.
        assert_eq!(stream.push(b"progress tok-SECRET-9f8e"), b"progress ");
        assert_eq!(stream.push(b""), b"");
        assert_eq!(stream.push(b"7d6c5b\n"), b"[REDACTED]\n");
        // A tail that turns out not to start the secret is released as it is, at once...
        assert_eq!(stream.push(b"tok-SE"), b"");
        assert_eq!(stream.push(b"T x"), b"tok-SET x");
        // ...except for what may start it again.
        assert_eq!(stream.push(b"tok-tok-SE"), b"tok-");
        assert_eq!(stream.push(b"CRET-9f8e7d6c5b"), b"[REDACTED]");
        // A half left when the stream ends is not the whole secret: released as it is.
        assert_eq!(stream.push(b"tok-SECRET-9"), b"");
        assert_eq!(stream.finish(), b"tok-SECRET-9");
        check_splits(
            &redactor,
            b"a tok-SECRET-9f8e7d6c5b tok-tok-SECRET-9f8e7d6c5btok-SECRET",
        );
    }

    #[test]
    fn a_line_is_not_held_for_a_secret_with_newlines_unless_it_starts_one() {
        let key = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n";
        let redactor = Arc::new(Redactor::new([key, "token\n"]));
        let mut stream = redactor.stream();
        assert_eq!(stream.push(b"step 1 done\n"), b"step 1 done\n");
        assert_eq!(stream.push(b"waiting"), b"waiting");
        assert_eq!(stream.push(b"\nkey: -----BEGIN"), b"\nkey: ");
        assert_eq!(stream.push(b" KEY-----\nabc\n"), b"");
        assert_eq!(stream.push(b"-----END KEY-----\n"), b"[REDACTED]");
        assert_eq!(stream.push(b"token"), b"");
        assert_eq!(stream.push(b"\n"), b"[REDACTED]");
        assert_eq!(stream.finish(), b"");
    }

    /// Fed a byte at a time, the stream holds exactly the longest tail of what it was given that
    /// is a proper prefix of a secret (found by brute force), never more.
    #[test]
    fn the_held_tail_is_exactly_the_longest_secret_prefix() {
        let secrets = ["abc", "bcd", "abcd", "line one\nline two", "zz", "x\n"];
        let redactor = Arc::new(Redactor::new(secrets));
        let text = b"ab line one\nline two abcd line one\nlzzz x\nx line one\nline tw";
        let mut stream = redactor.stream();
        for end in 1..=text.len() {
            let _ = stream.push(&text[end - 1..end]);
            let given = &text[..end];
            let longest = (0..=end)
                .rev()
                .find(|&k| {
                    let tail = &given[end - k..];
                    k == 0
                        || secrets
                            .iter()
                            .any(|s| s.len() > k && s.as_bytes().starts_with(tail))
                })
                .unwrap_or(0);
            assert_eq!(
                String::from_utf8_lossy(&stream.pending),
                String::from_utf8_lossy(&given[end - longest..]),
                "after {:?}",
                String::from_utf8_lossy(given)
            );
        }
    }
}
