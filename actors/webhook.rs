//! WebhookActor (`webhook`): owns the webhook server on `--webhook-bind`. The TCP listener is
//! bound once by the daemon (so a restart keeps the same port, even when port 0 was asked) and
//! each incarnation of this actor serves a clone of it. What serves it arrives in the args as a
//! [`ServeFn`] (the daemon hands over `http::webhook::serve_fn`), so this actor knows nothing of
//! HTTP: it starts an incarnation, shows its figures, and stops it.
//!
//! When the actor stops or fails, its state's `Drop` stops the server task, and the supervisor's
//! restart serves the same listener again.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use ractor::ActorProcessingErr;
use serde_json::json;
use tokio::sync::oneshot;

use super::runtime::{Addr, Behaviour, Message};

/// The registry name.
pub const NAME: &str = "webhook";

/// Starts one incarnation of the server on a listener; it serves until the shutdown future (the
/// second argument) resolves. Every call starts afresh: a restart of the actor gets a new server.
pub type ServeFn =
    Arc<dyn Fn(tokio::net::TcpListener, BoxFuture<'static, ()>) -> Serving + Send + Sync>;

/// One incarnation of the server, as a [`ServeFn`] starts it.
pub struct Serving {
    /// Answers requests until the shutdown future resolves.
    pub server: BoxFuture<'static, ()>,
    /// Runs beside the server for as long as the incarnation lives (it writes the "last
    /// verified at" stamps of the deliveries); stopped with the server.
    pub recorder: BoxFuture<'static, ()>,
    /// The server's live figures.
    pub view: Box<dyn ServerView>,
}

/// What a running server shows of itself in `actors inspect webhook`.
pub trait ServerView: Send + 'static {
    /// Named figures (requests by status, deliveries in flight, connections, limits); the actor
    /// adds `listening`.
    fn figures(&self) -> serde_json::Map<String, serde_json::Value>;
}

pub enum WebhookMsg {
    /// The server task ended on its own (it should not); fail so the supervisor restarts us.
    ServerExited,
}

impl Message for WebhookMsg {
    fn kind(&self) -> &'static str {
        match self {
            WebhookMsg::ServerExited => "ServerExited",
        }
    }
}

pub struct WebhookActor;

pub struct WebhookArgs {
    pub listener: Arc<std::net::TcpListener>,
    /// Starts the server on the listener.
    pub serve: ServeFn,
}

pub struct WebhookState {
    addr: SocketAddr,
    view: Box<dyn ServerView>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookState {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.abort();
        self.recorder.abort();
    }
}

impl Behaviour for WebhookActor {
    type Msg = WebhookMsg;
    type State = WebhookState;
    type Args = WebhookArgs;
    const TYPE: &'static str = "WebhookActor";

    async fn pre_start(
        &self,
        me: Addr<WebhookMsg>,
        args: WebhookArgs,
    ) -> Result<WebhookState, ActorProcessingErr> {
        let std_listener = args.listener.try_clone()?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let serving = (args.serve)(
            listener,
            Box::pin(async {
                let _ = rx.await;
            }),
        );
        let recorder = tokio::spawn(serving.recorder);
        let server = {
            let served = serving.server;
            tokio::spawn(async move {
                served.await;
                let _ = me.cast(WebhookMsg::ServerExited);
            })
        };
        tracing::debug!(%addr, "webhook server serving");
        Ok(WebhookState {
            addr,
            view: serving.view,
            shutdown: Some(tx),
            server,
            recorder,
        })
    }

    async fn handle(
        &self,
        _me: &Addr<WebhookMsg>,
        msg: WebhookMsg,
        state: &mut WebhookState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WebhookMsg::ServerExited if state.shutdown.is_some() => {
                Err("the webhook server stopped unexpectedly".into())
            }
            WebhookMsg::ServerExited => Ok(()),
        }
    }

    fn inspect(&self, state: &WebhookState) -> serde_json::Value {
        let mut figures = state.view.figures();
        figures.insert("listening".to_owned(), json!(state.addr.to_string()));
        serde_json::Value::Object(figures)
    }

    async fn post_stop(
        &self,
        _me: &Addr<WebhookMsg>,
        state: &mut WebhookState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(tx) = state.shutdown.take() {
            let _ = tx.send(());
        }
        Ok(())
    }
}
