//! WebhookActor (`webhook`): owns the warp server on `--webhook-bind`. The TCP listener is bound
//! once by the daemon (so a restart keeps the same port, even when port 0 was asked) and each
//! incarnation of this actor serves a clone of it. Requests read the latest published snapshot at
//! their start through a `watch` receiver; they never wait on an actor's mailbox.
//!
//! When the actor stops or fails, its state's `Drop` stops the server task, and the supervisor's
//! restart serves the same listener again.

use std::net::SocketAddr;
use std::sync::Arc;

use ractor::ActorProcessingErr;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::introspect::{Addr, Behaviour, Message};
use crate::domain::snapshot::Snapshot;
use crate::http::webhook::{WebhookContext, record_verifications, serve};
use crate::store::VerificationStore;

/// The registry name.
pub const NAME: &str = "webhook";

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
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Where "last verified at" stamps are written.
    pub verifications: Arc<dyn VerificationStore>,
    pub limits: crate::http::webhook::Limits,
}

pub struct WebhookState {
    addr: SocketAddr,
    context: WebhookContext,
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

    async fn init(
        &self,
        me: Addr<WebhookMsg>,
        args: WebhookArgs,
    ) -> Result<WebhookState, ActorProcessingErr> {
        let std_listener = args.listener.try_clone()?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let (verified, stamps) = tokio::sync::mpsc::channel(4096);
        let recorder = tokio::spawn(record_verifications(args.verifications.clone(), stamps));
        let context = WebhookContext::new(args.snapshots, verified, args.limits);
        let (tx, rx) = oneshot::channel::<()>();
        let server = {
            let context = context.clone();
            tokio::spawn(async move {
                serve(listener, context, async {
                    let _ = rx.await;
                })
                .await;
                let _ = me.cast(WebhookMsg::ServerExited);
            })
        };
        tracing::debug!(%addr, "webhook server serving");
        Ok(WebhookState {
            addr,
            context,
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
        json!({
            "listening": state.addr.to_string(),
            "snapshotRevision": state.context.revision(),
            "requests": state.context.counters(),
            "inFlight": state.context.in_flight(),
            "maxInFlight": state.context.limits().max_in_flight,
            "bodyTimeoutSeconds": state.context.limits().body_timeout.as_secs_f64(),
            "headerTimeoutSeconds": state.context.limits().header_timeout.as_secs_f64(),
            "maxConnections": state.context.limits().max_connections,
            "openConnections": state.context.connections().open,
            "evictedConnections": state.context.connections().evicted,
            "refusedConnections": state.context.connections().refused,
        })
    }

    async fn stop(
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
