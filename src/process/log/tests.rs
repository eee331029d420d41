//! Tests of the run-log reader on in-memory pipes with paused time: partial lines flushed after
//! a pause or while the agent keeps writing, the `+` lines that continue them, held secret
//! prefixes that wait for their continuation however long it takes, and long-line cuts that do
//! not depend on when parts were flushed.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use super::*;
use crate::domain::redact::Redactor;

const SECRET: &str = "tok-SECRET-9f8e7d6c5b";

/// A stdout reader redacting `secrets`, fed through the returned pipe end; the stop sender must
/// stay alive (dropping it abandons the run).
struct Fixture {
    agent: DuplexStream,
    log: mpsc::Receiver<Batch>,
    _stop: watch::Sender<bool>,
    reader: JoinHandle<StreamReport>,
}

fn fixture(secrets: &[&str]) -> Fixture {
    let (tx, log) = mpsc::channel(LOG_QUEUE);
    let (agent, pipe) = tokio::io::duplex(64 * 1024);
    let (stop, stop_rx) = watch::channel(false);
    let secrets = Secrets::fixed(Arc::new(Redactor::new(secrets)));
    let reader = Reader::new(Stream::Out, &secrets, 1 << 30, None, &tx);
    let reader = tokio::spawn(reader.run(pipe, stop_rx));
    Fixture {
        agent,
        log,
        _stop: stop,
        reader,
    }
}

/// The lines of one batch as `(text, continues)`.
fn shown(batch: Batch) -> Vec<(String, bool)> {
    batch
        .lines
        .into_iter()
        .map(|l| (String::from_utf8_lossy(&l.text).into_owned(), l.continues))
        .collect()
}

impl Fixture {
    async fn write(&mut self, data: &[u8]) {
        self.agent.write_all(data).await.expect("write");
    }

    /// The next batch, however long (in paused time) it takes.
    async fn next(&mut self) -> Vec<(String, bool)> {
        shown(self.log.recv().await.expect("a batch"))
    }

    /// Asserts that nothing is logged for `quiet`.
    async fn nothing_for(&mut self, quiet: Duration) {
        if let Ok(batch) = timeout(quiet, self.log.recv()).await {
            panic!("logged within {quiet:?}: {:?}", batch.map(shown));
        }
    }

    /// Closes the pipe and returns the batches logged at the end.
    async fn close(mut self) -> Vec<(String, bool)> {
        drop(self.agent);
        let mut lines = Vec::new();
        while let Some(batch) = self.log.recv().await {
            lines.extend(shown(batch));
        }
        self.reader.await.expect("reader");
        lines
    }
}

fn line(text: &str, continues: bool) -> (String, bool) {
    (text.to_owned(), continues)
}

#[tokio::test(start_paused = true)]
async fn a_partial_line_is_logged_after_a_pause_and_its_rest_is_marked() {
    let mut f = fixture(&[SECRET]);
    f.write(b"line one\nprogress ").await;
    assert_eq!(f.next().await, [line("line one", false)]);
    f.nothing_for(FLUSH_IDLE - Duration::from_millis(1)).await;
    assert_eq!(f.next().await, [line("progress ", false)]);
    f.write(b"50%").await;
    assert_eq!(f.next().await, [line("50%", true)]);
    f.write(b" done\nnext\n").await;
    assert_eq!(f.next().await, [line(" done", true), line("next", false)]);
    // A newline right after a flush adds no empty line; an agent's own empty line stays.
    f.write(b"nearly").await;
    assert_eq!(f.next().await, [line("nearly", false)]);
    f.write(b"\n\n").await;
    assert_eq!(f.next().await, [line("", false)]);
    // `t` may begin the secret: held until the end, then logged as it is.
    f.write(b"last").await;
    assert_eq!(f.next().await, [line("las", false)]);
    assert_eq!(f.close().await, [line("t", true)]);
}

#[tokio::test(start_paused = true)]
async fn a_held_secret_prefix_waits_for_its_continuation_however_long() {
    let mut f = fixture(&[SECRET]);
    f.write(b"token=tok-SECRET-9f").await;
    assert_eq!(f.next().await, [line("token=", false)]);
    // The first half of the secret is never logged on its own, not even after a long pause.
    f.nothing_for(Duration::from_secs(3600)).await;
    f.write(b"8e7d6c5b and more\n").await;
    assert_eq!(f.next().await, [line("[REDACTED] and more", true)]);
    // A tail that turns out not to be the secret is released with what showed it.
    f.write(b"tok-SECRET-9fx").await;
    assert_eq!(f.next().await, [line("tok-SECRET-9fx", false)]);
    // A half left at the end of the stream is not the whole secret: logged as it is.
    f.write(b" tok-SEC").await;
    assert_eq!(f.next().await, [line(" ", true)]);
    assert_eq!(f.close().await, [line("tok-SEC", true)]);
}

#[tokio::test(start_paused = true)]
async fn a_line_written_without_pause_is_flushed_while_it_grows() {
    let mut f = fixture(&[SECRET]);
    let mut seen = Vec::new();
    let step = FLUSH_IDLE / 2;
    let steps = 3 * FLUSH_MAX.as_millis() / step.as_millis();
    for _ in 0..steps {
        f.write(b".").await;
        tokio::time::sleep(step).await;
        while let Ok(batch) = f.log.try_recv() {
            seen.extend(shown(batch));
        }
    }
    assert!(
        seen.len() >= 2,
        "a line growing for {:?} was flushed {} times",
        3 * FLUSH_MAX,
        seen.len()
    );
    seen.extend(f.close().await);
    let dots: String = seen.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(dots.len() as u128, steps);
    assert!(!seen[0].1 && seen[1..].iter().all(|(_, continues)| *continues));
}

/// Joins `+` lines to the line before them.
fn joined(lines: &[LogLine]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for l in lines {
        match out.last_mut() {
            Some(last) if l.continues => last.extend_from_slice(&l.text),
            _ => out.push(l.text.clone()),
        }
    }
    out
}

#[test]
fn flushes_never_cut_a_character_nor_move_a_long_line_cut() {
    let mut text = b"a".to_vec();
    for i in 0..70_000 {
        text.extend_from_slice(if i % 3 == 0 {
            "日".as_bytes()
        } else {
            "é".as_bytes()
        });
    }
    text.extend_from_slice(b"\nshort\nx");
    let mut whole = Splitter::default();
    let mut want = Vec::new();
    whole.push(&text, &mut want);
    whole.finish(&mut want);
    assert!(
        want.iter()
            .all(|l| l.text.len() <= MAX_LINE && !l.continues)
    );
    assert!(want.len() > 3, "the long line is cut");
    // Chunks of every size up to 7 bytes, a flush after each, and a few odd sizes.
    for chunk in [1, 2, 3, 5, 7, 4093, 65_535, 65_536, 65_537] {
        let mut split = Splitter::default();
        let mut got = Vec::new();
        for piece in text.chunks(chunk) {
            split.push(piece, &mut got);
            split.flush(&mut got);
        }
        split.finish(&mut got);
        for l in &got {
            assert!(
                std::str::from_utf8(&l.text).is_ok(),
                "chunk {chunk}: a cut character"
            );
            assert!(l.text.len() <= MAX_LINE);
        }
        let want: Vec<Vec<u8>> = want.iter().map(|l| l.text.clone()).collect();
        assert!(joined(&got) == want, "chunk {chunk}: other lines or cuts");
    }
}

#[tokio::test]
async fn a_run_log_tags_continued_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.log");
    let (tx, rx) = mpsc::channel(4);
    let writer = tokio::spawn(write_log(
        tokio::fs::File::from_std(open_log(&path).expect("open")),
        rx,
    ));
    let at = DateTime::parse_from_rfc3339("2026-11-29T10:00:00.123Z")
        .expect("time")
        .with_timezone(&Utc);
    for (stream, continues, text) in [
        (Stream::Out, false, "progress "),
        (Stream::Err, false, "warning\r"),
        (Stream::Out, true, "50%"),
        (Stream::Err, true, " (again)"),
    ] {
        let lines = vec![LogLine {
            text: text.as_bytes().to_vec(),
            continues,
        }];
        tx.send(Batch { at, stream, lines }).await.expect("send");
    }
    drop(tx);
    writer.await.expect("writer").expect("written");
    assert_eq!(
        std::fs::read_to_string(&path).expect("log"),
        "2026-11-29T10:00:00.123Z out progress \n\
         2026-11-29T10:00:00.123Z err warning\n\
         2026-11-29T10:00:00.123Z out+ 50%\n\
         2026-11-29T10:00:00.123Z err+  (again)\n"
    );
}
