//! The CLI's transport: HTTP/1.1 over the daemon's Unix socket, one connection per request
//! (hyper's client connection over tokio's `UnixStream`; no TLS, no HTTP/2, no pool, so the CLI
//! binary links none of them). Answers decode into the `api` types; an error answer becomes a
//! [`DaemonError`], and a transport failure an error that says what to do (start the daemon,
//! fix the socket's permissions).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::api::ErrorBody;

/// How long an ordinary request may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long a streamed answer (`--follow`) may last.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) struct Client {
    socket: PathBuf,
}

/// An error answered by the daemon, printed with one line per detail.
#[derive(Debug)]
pub struct DaemonError(pub ErrorBody);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.error)?;
        for d in &self.0.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DaemonError {}

/// No answer from the daemon: the socket could not be opened, the connection broke, or the
/// answer did not come in time. The message says what to do; a watch that meets one ends
/// saying that the daemon went away.
#[derive(Debug)]
pub struct Unreachable(String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Why a request got no complete answer.
enum Transport {
    /// The socket could not be opened.
    Connect(std::io::Error),
    /// The connection broke, or the answer is not HTTP.
    Http(hyper::Error),
    /// The deadline passed.
    Timeout,
    /// The request cannot be written (a path that is no URI).
    Request(hyper::http::Error),
}

impl Client {
    pub(super) fn new(socket: PathBuf) -> Client {
        Client { socket }
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        self.send(Method::GET, &with_query(path, query), None).await
    }

    pub(super) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        self.send(Method::POST, path, Some(body)).await
    }

    pub(super) async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        self.send(Method::PUT, path, Some(body)).await
    }

    pub(super) async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        self.send(Method::DELETE, &with_query(path, query), None)
            .await
    }

    /// Copies a streamed text answer to `out` as it arrives.
    pub(super) async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        self.stream_request(Method::GET, &with_query(path, query), None, out)
            .await
    }

    /// Posts `body` and copies the streamed answer to `out` as it arrives.
    pub(super) async fn stream_post<B: Serialize>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &B,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        self.stream_request(Method::POST, &with_query(path, query), Some(body), out)
            .await
    }

    async fn stream_request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let copy = async {
            let resp = self.request(method, path, body).await?;
            let status = resp.status();
            let mut body = resp.into_body();
            if !status.is_success() {
                let bytes = body.collect().await.map_err(Transport::Http)?.to_bytes();
                return Ok(Err(error_answer(status, &bytes)));
            }
            while let Some(frame) = body.frame().await {
                if let Ok(chunk) = frame.map_err(Transport::Http)?.into_data()
                    && let Err(e) = out.write_all(&chunk).and_then(|()| out.flush())
                {
                    return Ok(Err(e.into()));
                }
            }
            Ok(Ok(()))
        };
        match tokio::time::timeout(STREAM_TIMEOUT, copy).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => Err(self.transport_error(e)),
            Err(_) => Err(self.transport_error(Transport::Timeout)),
        }
    }

    /// Sends one request and decodes the answer as `T`, or as the daemon's error.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<T> {
        let exchange = async {
            let resp = self.request(method, path, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(Transport::Http)?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(self.transport_error(e)),
            Err(_) => return Err(self.transport_error(Transport::Timeout)),
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!("the daemon's answer is not what this CLI expects (HTTP {status}); are the CLI and the daemon the same version?")
            });
        }
        Err(error_answer(status, &bytes))
    }

    /// Opens a connection and sends one request on it; the answer's body is still to be read.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, Transport> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(Transport::Connect)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Transport::Http)?;
        // The connection's own failure also reaches the request and its body, which report it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(uri_path(path))
            .header(HOST, "orchestratord");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(Transport::Request)?;
        sender.send_request(req).await.map_err(Transport::Http)
    }

    fn transport_error(&self, e: Transport) -> anyhow::Error {
        let socket = self.socket.display();
        let message = match e {
            Transport::Connect(e) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
                "permission denied on {socket} ({}): run the CLI as that user (or root), or give your user access to the data dir",
                socket_owner(&self.socket)
            ),
            Transport::Connect(_) => format!(
                "no daemon is answering on {socket}: start it with `orchestratord` (add --data-dir DIR if it uses another data dir), or point --socket at its socket"
            ),
            Transport::Timeout => format!("the daemon did not answer in time on {socket}"),
            Transport::Http(e) => format!("talking to the daemon on {socket} failed: {e}"),
            Transport::Request(e) => format!("talking to the daemon on {socket} failed: {e}"),
        };
        Unreachable(message).into()
    }
}

/// The daemon's error answer as an error: its [`ErrorBody`], or just the status.
fn error_answer(status: hyper::StatusCode, bytes: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => DaemonError(body).into(),
        Err(_) => anyhow!("the daemon answered HTTP {status}"),
    }
}

/// `path?k=v&…` with every key and value percent-encoded (no `?` for an empty query).
fn with_query(path: &str, query: &[(&str, String)]) -> String {
    let mut out = path.to_owned();
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&enc(k));
        out.push('=');
        out.push_str(&enc(v));
    }
    out
}

/// `path` as a URL parser (reqwest's, before) would send it: what follows a `#` is a fragment
/// and dropped, a backslash is a `/`, and spaces, quotes, `<>{}` and non-ASCII bytes are
/// percent-encoded. Only an actor's name goes into a path as the user typed it; every other
/// segment is [`enc`]oded.
fn uri_path(path: &str) -> String {
    let path = path.split('#').next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'\\' => out.push('/'),
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' => out.push_str(&format!("%{b:02X}")),
            0x21..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `project` query parameter, when the command names one.
pub(super) fn project_query(project: Option<String>) -> Vec<(&'static str, String)> {
    project.map(|p| ("project", p)).into_iter().collect()
}

/// Percent-encodes a path segment (names are restricted, but KIND/NAME typed by a user may hold
/// anything; the daemon then answers 404 or 400 instead of the URL being mangled).
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who may use `socket`: "the daemon runs as USER", read from the socket or, when even that is
/// not visible to us, from the nearest directory above it that is (the one that shuts us out).
fn socket_owner(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = socket.ancestors().find_map(|p| std::fs::metadata(p).ok());
    match meta {
        Some(m) => {
            let uid = nix::unistd::Uid::from_raw(m.uid());
            match nix::unistd::User::from_uid(uid) {
                Ok(Some(u)) => format!("the daemon runs as {}", u.name),
                _ => format!("the daemon runs as uid {uid}"),
            }
        }
        None => "its owner cannot be read".to_owned(),
    }
}
