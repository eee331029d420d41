//! An agent's run log: one line per output line, `{RFC 3339 UTC millis} {out|err} {line}`, for
//! example `2026-11-29T10:00:00.123Z out hello`. Each stream's raw bytes pass through a
//! [`StreamRedactor`] before they are split into lines, so a secret cut across two reads or
//! spanning lines is still redacted; it holds back only a tail that is the beginning of a secret
//! (until its continuation shows what it is, or the stream ends). The redactor follows the
//! daemon's live secret set ([`Secrets`]): a value that becomes a secret while the agent runs is
//! hidden from the first chunk read after that, and a value removed meanwhile stays hidden until
//! the run ends.
//!
//! Lines are logged as soon as they end. A line the agent has not ended is logged as far as it
//! goes once the agent has written nothing for [`FLUSH_IDLE`], or [`FLUSH_MAX`] after its first
//! unlogged byte while output keeps coming, and never inside a UTF-8 character; the rest of it is
//! logged under the tag `out+` (`err+`), so each `+` line joined to the previous line of its
//! stream gives back the agent's line, and `task logs --follow` shows a waiting agent's progress.
//! Lines longer than [`MAX_LINE`] bytes are split (at the same places whether or not a part was
//! flushed early); a final line without a newline is still logged; a trailing `\r` is dropped and
//! invalid UTF-8 becomes U+FFFD. After `stream_cap` redacted bytes a stream gets one marker line,
//! `[stdout truncated after N bytes]`, and the rest is read and discarded so the child never
//! blocks on a full pipe. Both streams feed one writer task through a bounded channel; it flushes
//! whenever it has caught up. The first bytes of redacted stdout are also kept ([`Capture`]) for
//! `{prev_stdout}`.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ProcessError;
use crate::domain::redact::{Secrets, StreamRedactor};
use crate::domain::stream_json::{Guards, StreamParser, StreamSummary};

/// The longest run-log line; longer output lines are split (at a character boundary if one is
/// near) instead of being buffered without limit.
pub const MAX_LINE: usize = 64 * 1024;

/// A line the agent has not ended is logged as far as it goes after this long without output...
pub const FLUSH_IDLE: Duration = Duration::from_millis(200);

/// ...or this long after its first unlogged byte arrived, if the agent keeps writing.
pub const FLUSH_MAX: Duration = Duration::from_secs(1);

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 4 * 1024;

/// Batches queued for the log writer before the readers (and so the child) wait.
const LOG_QUEUE: usize = 64;

/// How much the log writer formats before it writes.
const WRITE_BATCH: usize = 256 * 1024;

/// The tasks that log one run: a reader per pipe and the writer both feed.
pub(super) struct LogTasks {
    /// Setting it makes the readers stop; dropping it too (the run was abandoned).
    pub(super) stop_readers: watch::Sender<bool>,
    pub(super) stdout: JoinHandle<StreamReport>,
    pub(super) stderr: JoinHandle<StreamReport>,
    pub(super) writer: JoinHandle<io::Result<()>>,
    /// Turns true when a guard of a stream-json run was exceeded (see [`StreamWatch`]).
    pub(super) tripped: watch::Receiver<bool>,
    /// When either stream last delivered bytes (for the idle timeout).
    pub(super) activity: Activity,
}

/// When either stream of a run last delivered bytes, on the runtime's clock; the run's start
/// until then.
#[derive(Clone)]
pub(super) struct Activity(Arc<Mutex<Instant>>);

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub(super) fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts logging a run into `log`, which [`open_log`] created: the writer, then a reader for
/// stdout and one for stderr. The stdout reader captures up to `capture_cap` bytes, or, for a
/// stream-json run (`stream`), parses the stream as it arrives and keeps up to `capture_cap`
/// bytes of its result instead. Must be called inside a tokio runtime.
pub(super) fn start<O, E>(
    log: std::fs::File,
    out_pipe: O,
    err_pipe: E,
    secrets: &Secrets,
    caps: (u64, usize),
    stream: Option<Guards>,
) -> LogTasks
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    let (stream_cap, capture_cap) = caps;
    let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
    let (stop_readers, stop_rx) = watch::channel(false);
    let (trip, tripped) = watch::channel(false);
    let activity = Activity::new();
    let writer = tokio::spawn(write_log(tokio::fs::File::from_std(log), log_rx));
    let reader = |stream, capture| {
        let mut r = Reader::new(stream, secrets, stream_cap, capture, &log_tx);
        r.activity = Some(activity.clone());
        r
    };
    let out = match stream {
        Some(guards) => {
            let mut r = reader(Stream::Out, None);
            r.watch = Some(StreamWatch {
                parser: StreamParser::new(guards, capture_cap),
                trip,
                secrets: secrets.clone(),
            });
            r
        }
        None => reader(Stream::Out, Some(Capture::new(capture_cap))),
    };
    let stdout = tokio::spawn(out.run(out_pipe, stop_rx.clone()));
    let stderr = tokio::spawn(reader(Stream::Err, None).run(err_pipe, stop_rx));
    // Only the readers hold senders now, so the writer ends when both are done.
    drop(log_tx);
    LogTasks {
        stop_readers,
        stdout,
        stderr,
        writer,
        tripped,
        activity,
    }
}

/// The parse of a stream-json run's stdout: every redacted byte goes to the parser, also after
/// the log's cap (the result comes last); the first guard exceeded sets `trip`.
struct StreamWatch {
    parser: StreamParser,
    trip: watch::Sender<bool>,
    /// To redact the parsed texts once more (see [`StreamSummary::redact`]).
    secrets: Secrets,
}

/// Creates the run log with mode 0600 (and missing parent directories with 0700), truncating an
/// existing file and refusing to follow a symlink.
pub(super) fn open_log(path: &Path) -> Result<std::fs::File, ProcessError> {
    let log_error = |source| ProcessError::Log {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(log_error)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(log_error)?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(log_error)?;
    Ok(file)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

impl Stream {
    /// The tag of a log line; `continues` marks the rest of a line flushed early.
    fn tag(self, continues: bool) -> &'static str {
        match (self, continues) {
            (Stream::Out, false) => "out",
            (Stream::Out, true) => "out+",
            (Stream::Err, false) => "err",
            (Stream::Err, true) => "err+",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Out => "stdout",
            Stream::Err => "stderr",
        }
    }
}

/// Lines from one stream that arrived together.
struct Batch {
    at: DateTime<Utc>,
    stream: Stream,
    lines: Vec<LogLine>,
}

/// One run-log line.
#[derive(Debug, PartialEq, Eq)]
struct LogLine {
    text: Vec<u8>,
    /// It goes on an output line whose beginning an earlier flush logged (the `+` tags).
    continues: bool,
}

impl LogLine {
    fn new(text: Vec<u8>) -> LogLine {
        LogLine {
            text,
            continues: false,
        }
    }
}

/// What a reader saw of its stream.
#[derive(Default)]
pub(super) struct StreamReport {
    pub(super) raw_bytes: u64,
    pub(super) truncated: bool,
    pub(super) capture: Option<Capture>,
    /// What a stream-json run's stdout said (redacted).
    pub(super) stream: Option<StreamSummary>,
}

/// Reads one pipe to end-of-file: redacts, caps, splits lines, captures, and queues the lines for
/// the log writer.
struct Reader {
    stream: Stream,
    redactor: StreamRedactor,
    cap: u64,
    /// Redacted bytes passed on so far.
    logged: u64,
    /// The cap was reached: read and discard from now on.
    capped: bool,
    raw: u64,
    lines: Splitter,
    /// When the first byte of the partial line that [`Splitter::flush`] would log arrived.
    partial_since: Option<Instant>,
    /// When the last bytes were read, on the runtime's clock and on the wall clock.
    last_read: Instant,
    read_at: DateTime<Utc>,
    capture: Option<Capture>,
    watch: Option<StreamWatch>,
    /// Shared by the run's two readers.
    activity: Option<Activity>,
    log: mpsc::Sender<Batch>,
}

impl Reader {
    fn new(
        stream: Stream,
        secrets: &Secrets,
        cap: u64,
        capture: Option<Capture>,
        log: &mpsc::Sender<Batch>,
    ) -> Reader {
        Reader {
            stream,
            redactor: secrets.stream(),
            cap,
            logged: 0,
            capped: false,
            raw: 0,
            lines: Splitter::default(),
            partial_since: None,
            last_read: Instant::now(),
            read_at: Utc::now(),
            capture,
            watch: None,
            activity: None,
            log: log.clone(),
        }
    }

    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut pipe: R,
        mut stop: watch::Receiver<bool>,
    ) -> StreamReport {
        // Start small and grow on the first full read: most agents print little, and a
        // thousand quiet agents should not hold a full buffer each.
        let mut buf = vec![0; 256];
        let mut abandoned = false;
        loop {
            let flush_at = self
                .partial_since
                .map(|since| (self.last_read + FLUSH_IDLE).min(since + FLUSH_MAX));
            let read = tokio::select! {
                biased;
                explicit = stopped(&mut stop) => {
                    abandoned = explicit;
                    break;
                }
                read = pipe.read(&mut buf) => read,
                () = sleep_until(flush_at) => {
                    self.flush_partial().await;
                    continue;
                }
            };
            match read {
                Ok(0) => break,
                Ok(n) => {
                    self.last_read = Instant::now();
                    if let Some(a) = &self.activity {
                        a.touch(self.last_read);
                    }
                    self.read_at = Utc::now();
                    self.feed(&buf[..n]).await;
                    if n == buf.len() && buf.len() < READ_CHUNK {
                        buf.resize(READ_CHUNK, 0);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::warn!(stream = self.stream.name(), %err, "cannot read agent output");
                    break;
                }
            }
        }
        drop(pipe);
        if !self.capped || self.watch.is_some() {
            let rest = self.redactor.finish();
            self.watch(&rest);
            if !self.capped {
                self.emit(&rest, true).await;
            }
        }
        if abandoned {
            let note = format!(
                "[{} still held open by a process outside the agent's process group; stopped reading]",
                self.stream.name()
            );
            self.read_at = Utc::now();
            self.send(vec![LogLine::new(note.into_bytes())]).await;
        }
        if let Some(capture) = &mut self.capture {
            capture.truncated |= self.capped || abandoned;
        }
        let stream = self.watch.map(|w| {
            let mut summary = w.parser.finish();
            let redactor = w.secrets.redactor();
            summary.redact(|t| redactor.redact_str(t));
            summary
        });
        StreamReport {
            raw_bytes: self.raw,
            truncated: self.capped,
            capture: self.capture,
            stream,
        }
    }

    async fn feed(&mut self, data: &[u8]) {
        self.raw += data.len() as u64;
        if self.capped && self.watch.is_none() {
            return;
        }
        let redacted = self.redactor.push(data);
        self.watch(&redacted);
        if !self.capped {
            self.emit(&redacted, false).await;
        }
    }

    /// Hands redacted bytes to the stream-json parser, if this stream has one.
    fn watch(&mut self, redacted: &[u8]) {
        let Some(w) = &mut self.watch else { return };
        if let Some(why) = w.parser.push(redacted) {
            tracing::info!(reason = %why, "stopping the agent: a guard was exceeded");
            w.trip.send_replace(true);
        }
    }

    /// Passes redacted bytes on, up to the cap; `last` ends the final line.
    async fn emit(&mut self, redacted: &[u8], last: bool) {
        let room = usize::try_from(self.cap.saturating_sub(self.logged)).unwrap_or(usize::MAX);
        let over = redacted.len() > room;
        let taken = &redacted[..redacted.len().min(room)];
        self.logged += taken.len() as u64;
        if let Some(capture) = &mut self.capture {
            capture.push(taken);
        }
        let mut lines = Vec::new();
        let restarted = self.lines.push(taken, &mut lines);
        if over || last {
            self.lines.finish(&mut lines);
        }
        if over {
            let marker = format!(
                "[{} truncated after {} bytes]",
                self.stream.name(),
                self.cap
            );
            lines.push(LogLine::new(marker.into_bytes()));
            self.capped = true;
        }
        self.partial_since = match self.partial_since {
            _ if !self.lines.flushable() => None,
            Some(since) if !restarted => Some(since),
            _ => Some(self.last_read),
        };
        self.send(lines).await;
    }

    /// Logs the partial line as far as it goes: the agent paused, or kept writing for long.
    async fn flush_partial(&mut self) {
        let mut lines = Vec::new();
        self.lines.flush(&mut lines);
        self.partial_since = None;
        self.send(lines).await;
    }

    async fn send(&self, lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        let batch = Batch {
            at: self.read_at,
            stream: self.stream,
            lines,
        };
        // The writer outlives the readers; if it is gone anyway there is nowhere to log to.
        let _ = self.log.send(batch).await;
    }
}

/// Resolves when the reader must stop: true when `wait` gave up on a pipe held open from outside
/// the group, false when the [`Running`](super::Running) was dropped (the run was abandoned and
/// its group killed).
async fn stopped(stop: &mut watch::Receiver<bool>) -> bool {
    stop.wait_for(|stop| *stop).await.is_ok()
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Cuts one stream's redacted bytes into log lines: at newlines, into [`MAX_LINE`] pieces and,
/// when the reader says so, before the end of a line. A piece's cut does not depend on earlier
/// flushes: it falls where it would if the whole piece had been logged at once.
#[derive(Default)]
struct Splitter {
    /// The current piece's bytes not logged yet.
    line: Vec<u8>,
    /// How many bytes of the current piece flushes logged already.
    flushed: usize,
}

impl Splitter {
    /// Appends `data`, moving every completed line and piece to `out`. True if a line or piece
    /// ended, so whatever is left started in `data`.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<LogLine>) -> bool {
        let mut ended = false;
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(data.len());
            self.line.extend_from_slice(&data[..end]);
            while self.flushed + self.line.len() > MAX_LINE {
                // After a flush, the piece may end right where the flushed part did.
                let least = usize::from(self.flushed == 0);
                let cut = char_floor(&self.line, MAX_LINE - self.flushed, least);
                let piece = self.line.drain(..cut).collect();
                self.end_piece(piece, out);
                ended = true;
            }
            match newline {
                Some(at) => {
                    let line = std::mem::take(&mut self.line);
                    self.end_piece(line, out);
                    ended = true;
                    data = &data[at + 1..];
                }
                None => data = &[],
            }
        }
        ended
    }

    /// True when [`flush`](Splitter::flush) would log something.
    fn flushable(&self) -> bool {
        self.line.len() > incomplete_tail(&self.line)
    }

    /// Logs the current line as far as it goes, short of a character cut at its end.
    fn flush(&mut self, out: &mut Vec<LogLine>) {
        let n = self.line.len() - incomplete_tail(&self.line);
        if n > 0 {
            out.push(LogLine {
                text: self.line.drain(..n).collect(),
                continues: self.flushed > 0,
            });
            self.flushed += n;
        }
    }

    /// Logs what is left of the last line: the stream ended or reached its cap.
    fn finish(&mut self, out: &mut Vec<LogLine>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_piece(line, out);
        }
        self.flushed = 0;
    }

    /// Logs the rest of a piece; nothing if a flush logged all of it.
    fn end_piece(&mut self, text: Vec<u8>, out: &mut Vec<LogLine>) {
        if self.flushed == 0 || !text.is_empty() {
            out.push(LogLine {
                text,
                continues: self.flushed > 0,
            });
        }
        self.flushed = 0;
    }
}

/// The largest index at most `at` (and at least `least`) that does not fall inside a UTF-8
/// character, looking back at most three bytes; `at` itself if the bytes there are not UTF-8.
fn char_floor(bytes: &[u8], at: usize, least: usize) -> usize {
    (at.saturating_sub(3).max(least)..=at)
        .rev()
        .find(|&i| bytes.get(i).is_none_or(|&b| b & 0xC0 != 0x80))
        .unwrap_or(at)
}

/// Length of a UTF-8 character cut short at the end of `bytes` (0 if the end is clean).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let width = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if width > back { back } else { 0 };
    }
    0
}

/// The first `cap` bytes of redacted stdout, kept for `{prev_stdout}`.
pub(super) struct Capture {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            cap,
            truncated: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.cap - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The captured text and whether it is incomplete. A character cut by the cap is dropped
    /// whole; replacement characters for invalid bytes never push it past the cap.
    pub(super) fn into_string(self) -> (String, bool) {
        let mut bytes = self.bytes;
        if self.truncated {
            bytes.truncate(bytes.len() - incomplete_tail(&bytes));
        }
        let mut text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        if text.len() > self.cap {
            let mut cut = self.cap;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        (text, self.truncated)
    }
}

/// The log writer: formats batches into lines and writes them through one buffer, flushing
/// whenever the queue is empty. After a write error it keeps draining the queue, so the readers
/// and the child never block, and reports the error at the end.
async fn write_log(file: tokio::fs::File, mut batches: mpsc::Receiver<Batch>) -> io::Result<()> {
    // `text` already batches the lines, so the file is written directly.
    let mut out = file;
    let mut result = Ok(());
    let mut text = Vec::new();
    while let Some(batch) = batches.recv().await {
        format_batch(&batch, &mut text);
        while text.len() < WRITE_BATCH {
            match batches.try_recv() {
                Ok(batch) => format_batch(&batch, &mut text),
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = async {
                out.write_all(&text).await?;
                out.flush().await
            }
            .await;
        }
        text.clear();
    }
    result?;
    out.flush().await
}

fn format_batch(batch: &Batch, text: &mut Vec<u8>) {
    let at = batch.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let prefix = [false, true].map(|continues| format!("{at} {} ", batch.stream.tag(continues)));
    for line in &batch.lines {
        let body = line.text.strip_suffix(b"\r").unwrap_or(&line.text);
        text.extend_from_slice(prefix[usize::from(line.continues)].as_bytes());
        text.extend_from_slice(String::from_utf8_lossy(body).as_bytes());
        text.push(b'\n');
    }
}

#[cfg(test)]
mod tests;
