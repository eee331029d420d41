//! Redaction of secret values from agent output. Every SecretStore value an agent could print is
//! replaced by [`MARK`] before anything reaches a run log or the captured `{prev_stdout}`, so a
//! secret never lands on disk in plain text (SPEC §6, §10). Agent output arrives in arbitrary
//! pieces, so [`StreamRedactor`] holds back the few bytes that could still be the start of a
//! secret and decides them when the next piece arrives; its output is the same for every way of
//! cutting the input into pieces. Output up to a newline is released at once unless a secret
//! itself spans lines, so a run log line is written when it ends, not when the next one comes.
//!
//! What is redacted is the union of all occurrences of all secrets: every byte covered by any
//! occurrence is hidden, and each maximal run of overlapping occurrences becomes one [`MARK`].
//! This is stricter than leftmost-longest matching, which would leave the tail of a secret visible
//! when another secret overlaps its start (secrets `abc` and `cde` in `abcde`).
//!
//! The set of secrets changes while agents run; the daemon's live set ([`SecretRegistry`]) and
//! the runs' leases on it live in `registry.rs`.

mod registry;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aho_corasick::{AhoCorasick, MatchKind};

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
        max_len: usize,
        /// One past the index of the last newline in any secret (0 if none has one): an
        /// occurrence still open at the end of the input starts at most this many bytes before
        /// the input's last newline.
        line_reach: usize,
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
        let Some(max_len) = secrets.iter().map(|s| s.as_ref().len()).max() else {
            return Redactor::none();
        };
        let line_reach = secrets
            .iter()
            .filter_map(|s| s.as_ref().iter().rposition(|&b| b == b'\n'))
            .map(|at| at + 1)
            .max()
            .unwrap_or(0);
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&secrets);
        match built {
            Ok(automaton) => Redactor {
                matcher: Matcher::Patterns {
                    automaton,
                    count: secrets.len(),
                    max_len,
                    line_reach,
                },
            },
            Err(err) => {
                tracing::error!(
                    secrets = secrets.len(),
                    "cannot build the secret matcher ({err}); all agent output will be redacted"
                );
                Redactor::opaque()
            }
        }
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

    /// Bytes at the end of `buf` (the undecided input) that a stream must hold back: an
    /// occurrence completed by the next chunk starts in them. It starts at most (longest secret
    /// - 1) bytes before the end, and after the last newline unless it contains one itself.
    fn hold_back(&self, buf: &[u8]) -> usize {
        match &self.matcher {
            Matcher::Patterns {
                max_len,
                line_reach,
                ..
            } => {
                let tail = (max_len - 1).min(buf.len());
                match buf[buf.len() - tail..].iter().rposition(|&b| b == b'\n') {
                    Some(at) => (tail - at - 1 + line_reach).min(tail),
                    None => tail,
                }
            }
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
/// final, holding back the last bytes that might be the start of a secret completed by the next
/// chunk; [`finish`](StreamRedactor::finish) returns the rest. Concatenated, the outputs equal
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
        assert_eq!(stream.push(b"hello sec"), b"hell");
        assert_eq!(stream.push(b"ret and more"), b"o [REDACTED] and");
        assert_eq!(stream.finish(), b" more");
        // After finish the stream starts over. A complete secret is marked at once.
        assert_eq!(stream.push(b"secret!"), b"[REDACTED]");
        assert_eq!(stream.finish(), b"!");
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
        assert_eq!(stream.push(b"cd\n"), b"[REDACTED]");
        assert_eq!(stream.push(b"zz ab\nq"), b"\nzz ");
        assert_eq!(stream.finish(), b"ab\nq");
        check_splits(&redactor, b"ab\nab\ncd\nab\n\ncd ab\ncdab\nc");
        let lines = Arc::new(Redactor::new(["line one\nline two", "zz", "x\n"]));
        check_splits(&lines, b"line one\nline two\nx\nzz\nline one\nzzx\n\nx");
    }
}
