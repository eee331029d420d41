//! An agent's run log: one line per output line, `{RFC 3339 UTC millis} {out|err} {line}`, for
//! example `2026-11-29T10:00:00.123Z out hello`. Each stream's raw bytes pass through a
//! [`StreamRedactor`] before they are split into lines, so a secret cut across two reads or
//! spanning lines is still redacted. The redactor follows the daemon's live secret set
//! ([`Secrets`]): a value that becomes a secret while the agent runs is hidden from the first
//! chunk read after that, and a value removed meanwhile stays hidden until the run ends. Lines
//! longer than [`MAX_LINE`] bytes are split; a final line
//! without a newline is still logged; a trailing `\r` is dropped and invalid UTF-8 becomes U+FFFD.
//! After `stream_cap` redacted bytes a stream gets one marker line,
//! `[stdout truncated after N bytes]`, and the rest is read and discarded so the child never
//! blocks on a full pipe. Both streams feed one writer task through a bounded channel; it flushes
//! whenever it has caught up, so `task logs --follow` sees lines as they come. The first bytes of
//! redacted stdout are also kept ([`Capture`]) for `{prev_stdout}`.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::ProcessError;
use crate::domain::redact::{Secrets, StreamRedactor};

/// The longest run-log line; longer output lines are split (at a character boundary if one is
/// near) instead of being buffered without limit.
pub const MAX_LINE: usize = 64 * 1024;

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
}

/// Starts logging a run into `log`, which [`open_log`] created: the writer, then a reader for
/// stdout (which also captures up to `capture_cap` bytes) and one for stderr. Must be called
/// inside a tokio runtime.
pub(super) fn start<O, E>(
    log: std::fs::File,
    out_pipe: O,
    err_pipe: E,
    secrets: &Secrets,
    stream_cap: u64,
    capture_cap: usize,
) -> LogTasks
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
    let (stop_readers, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(write_log(tokio::fs::File::from_std(log), log_rx));
    let reader = |stream, capture| Reader {
        stream,
        redactor: secrets.stream(),
        cap: stream_cap,
        logged: 0,
        capped: false,
        raw: 0,
        line: Vec::new(),
        capture,
        log: log_tx.clone(),
    };
    let stdout = tokio::spawn(
        reader(Stream::Out, Some(Capture::new(capture_cap))).run(out_pipe, stop_rx.clone()),
    );
    let stderr = tokio::spawn(reader(Stream::Err, None).run(err_pipe, stop_rx));
    // Only the readers hold senders now, so the writer ends when both are done.
    drop(log_tx);
    LogTasks {
        stop_readers,
        stdout,
        stderr,
        writer,
    }
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
    fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
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
    lines: Vec<Vec<u8>>,
}

/// What a reader saw of its stream.
#[derive(Default)]
pub(super) struct StreamReport {
    pub(super) raw_bytes: u64,
    pub(super) truncated: bool,
    pub(super) capture: Option<Capture>,
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
    /// The current line, not yet ended by a newline.
    line: Vec<u8>,
    capture: Option<Capture>,
    log: mpsc::Sender<Batch>,
}

impl Reader {
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
            let read = tokio::select! {
                biased;
                explicit = stopped(&mut stop) => {
                    abandoned = explicit;
                    break;
                }
                read = pipe.read(&mut buf) => read,
            };
            match read {
                Ok(0) => break,
                Ok(n) => {
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
        if !self.capped {
            let rest = self.redactor.finish();
            self.emit(&rest, true).await;
        }
        if abandoned {
            let note = format!(
                "[{} still held open by a process outside the agent's process group; stopped reading]",
                self.stream.name()
            );
            self.send(vec![note.into_bytes()]).await;
        }
        if let Some(capture) = &mut self.capture {
            capture.truncated |= self.capped || abandoned;
        }
        StreamReport {
            raw_bytes: self.raw,
            truncated: self.capped,
            capture: self.capture,
        }
    }

    async fn feed(&mut self, data: &[u8]) {
        self.raw += data.len() as u64;
        if self.capped {
            return;
        }
        let redacted = self.redactor.push(data);
        self.emit(&redacted, false).await;
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
        split_lines(&mut self.line, taken, &mut lines);
        if (over || last) && !self.line.is_empty() {
            lines.push(std::mem::take(&mut self.line));
        }
        if over {
            let marker = format!(
                "[{} truncated after {} bytes]",
                self.stream.name(),
                self.cap
            );
            lines.push(marker.into_bytes());
            self.capped = true;
        }
        self.send(lines).await;
    }

    async fn send(&self, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        let batch = Batch {
            at: Utc::now(),
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

/// Appends `data` to the current `line`, moving every completed line (and every [`MAX_LINE`]
/// piece of an overlong one) to `lines`.
fn split_lines(line: &mut Vec<u8>, mut data: &[u8], lines: &mut Vec<Vec<u8>>) {
    while !data.is_empty() {
        let newline = data.iter().position(|&b| b == b'\n');
        let end = newline.unwrap_or(data.len());
        line.extend_from_slice(&data[..end]);
        while line.len() > MAX_LINE {
            let cut = char_floor(line, MAX_LINE);
            lines.push(line.drain(..cut).collect());
        }
        match newline {
            Some(at) => {
                lines.push(std::mem::take(line));
                data = &data[at + 1..];
            }
            None => data = &[],
        }
    }
}

/// The largest index at most `at` (and above 0) that does not fall inside a UTF-8 character,
/// looking back at most three bytes; `at` itself if the bytes there are not UTF-8.
fn char_floor(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3).max(1)..=at)
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
    let prefix = format!(
        "{} {} ",
        batch.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        batch.stream.tag()
    );
    for line in &batch.lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
        text.push(b'\n');
    }
}
