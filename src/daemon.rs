//! The daemon's life: prepare the data dir (0700, umask 077), take the one-daemon-per-data-dir
//! lock, bind the webhook and admin listeners, start the root supervisor with its children,
//! serve the control API on the Unix socket (0600), print the ready line (and tell systemd,
//! `systemd.rs`), and on shutdown stop accepting, stop the actors and remove the socket.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::watch;

use crate::actors::clock::Clock;
use crate::actors::cluster::{self, ClusterActor, ClusterArgs};
use crate::actors::retention::{self, RetentionActor, RetentionArgs};
use crate::actors::runtime::Registry;
use crate::actors::secret_store::{self, SecretStoreActor, SecretStoreArgs};
use crate::actors::supervisor::{
    ChildSpec, Exhausted, Intensity, Restart, Supervisor, SupervisorArgs, start_fn,
};
use crate::actors::task_supervisor::{TASKS, TaskSupMsg, TaskSupervisor};
use crate::actors::token_refresh::{self, TokenRefreshActor, TokenRefreshArgs};
use crate::actors::trigger::TriggerContext;
use crate::actors::trigger_supervisor::{TRIGGERS, TriggerSupervisor};
use crate::actors::webhook::{self, WebhookActor, WebhookArgs};
use crate::actors::workflow::TaskContext;
use crate::domain::manifest::SecretValue;
use crate::domain::redact::SecretRegistry;
use crate::http::control::{self, ControlContext};
use crate::layout;
use crate::store::{self, Beat, StoreError};

/// A random id for this process (tells a restarted node from its predecessor).
fn instance_id() -> anyhow::Result<String> {
    use chacha20poly1305::aead::Generate;
    let bytes = chacha20poly1305::XNonce::try_generate()
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(hex::encode(&bytes[..8]))
}

mod systemd;

/// Registry name of the root supervisor.
pub const ROOT: &str = "root";
/// How long an agent may take to exit after SIGTERM before its group is killed.
pub const AGENT_GRACE: Duration = Duration::from_secs(5);

/// Where the webhook server listens (`--webhook-bind`), and why a value is not an address.
pub use crate::daemon_flags::{InvalidBind, WebhookBind};

/// Where the admin listener (`/metrics`) listens (`--admin-bind`).
pub use crate::daemon_flags::{AdminBind, InvalidAdminBind};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None`: `<data-dir>/orchestrator.sock`.
    pub socket: Option<PathBuf>,
    pub webhook_bind: WebhookBind,
    /// The admin listener (`GET /metrics`), apart from the public webhook port.
    pub admin_bind: AdminBind,
    /// How far ahead a cron trigger's next fire may be for its TriggerActor to stay resident
    /// (see `actors::trigger_supervisor`); `None`: every trigger keeps its actor.
    pub trigger_resident_window: Option<std::time::Duration>,
    /// Delivery limits of the webhook server.
    pub webhook_limits: WebhookLimits,
    /// How long and how many finished tasks are kept (`--task-retention-*`).
    pub retention: Retention,
    /// Where the state lives (`--store`): the data dir's SQLite database, or PostgreSQL.
    pub store: store::Backend,
    /// The secret key (`--secret-key-file`); `None`: `secret.key` in the data dir.
    pub secret_key_file: Option<PathBuf>,
    /// This daemon's node id (`--node-id`); `None`: the host name and a hash of the data dir.
    pub node_id: Option<NodeId>,
    /// How long after its last heartbeat a node counts as dead (`--node-ttl`); also the
    /// leader lease's length.
    pub node_ttl: Duration,
    /// The most tasks this daemon runs at once (`--max-running`); `None`: 4 per core.
    pub max_running: Option<usize>,
}

/// The default `--max-running`: 4 tasks per core.
pub fn default_max_running() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) * 4
}

/// The default `--node-ttl`.
pub const NODE_TTL: Duration = Duration::from_secs(10);

pub use crate::daemon_flags::{InvalidNodeId, NodeId};

/// Where the state lives (`--store`).
pub use crate::store::Backend as StoreBackend;

/// The retention of finished tasks (set from the daemon's flags).
pub use crate::actors::retention::Retention;
/// A duration flag's value (`30d`, `12h`).
pub use crate::domain::retention::{
    Age, MAX_COUNT as MAX_RETENTION_COUNT, Policy as RetentionPolicy,
};

/// What the webhook server allows a connection and a delivery (set from the daemon's flags).
pub use crate::http::webhook::Limits as WebhookLimits;

impl Config {
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| layout::socket_in(&self.data_dir))
    }
}

/// Creates the data dir with mode 0700 (an existing one is left as it is, with a warning when
/// others can reach into it).
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("data dir {} exists and is not a directory", dir.display());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data dir is accessible by group or others; run `chmod 700` on it"
            );
        }
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// Takes the exclusive lock on the data dir and writes our pid into it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<Flock<File>> {
    let path = dir.join(layout::LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, errno)) => {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let who = if pid.is_empty() {
                    "another orchestratord".to_owned()
                } else {
                    format!("another orchestratord (pid {pid})")
                };
                bail!(
                    "{who} is already running on data dir {}: stop it first, or use another --data-dir",
                    dir.display()
                );
            }
            bail!("cannot lock {}: {errno}", path.display());
        }
    };
    lock.set_len(0)?;
    lock.rewind()?;
    writeln!(lock, "{}", crate::process::own_pid())?;
    lock.sync_all()?;
    Ok(lock)
}

/// The webhook listener, with an accept queue of [`WEBHOOK_BACKLOG`] (the standard library's
/// 128 made a burst of connections wait a second each for the kernel's retry).
fn bind_webhook(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(WEBHOOK_BACKLOG)?;
    Ok(socket.into())
}

/// How many connections the kernel queues for the webhook server before it accepts them (the
/// kernel caps it at `net.core.somaxconn`).
const WEBHOOK_BACKLOG: i32 = 4096;

/// Binds the control socket with mode 0600, removing a stale one first.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create socket directory {}", parent.display()))?;
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove stale socket {}", path.display()));
        }
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind control socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod control socket {}", path.display()))?;
    Ok(listener)
}

/// Every running agent holds a few descriptors (pipes, log file): raise the soft limit on open
/// files to the hard limit, as servers commonly do. Returns the limit in force.
fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            return Some(soft);
        }
        return Some(hard);
    }
    Some(soft)
}

/// The webhook limits, with at most half the open-file limit for webhook connections: the rest
/// stays for agents, run logs, SQLite and the control socket, whatever the clients do.
fn webhook_limits(
    mut limits: crate::http::webhook::Limits,
    open_files: Option<u64>,
) -> crate::http::webhook::Limits {
    if let Some(n) = open_files {
        let cap = usize::try_from(n / 2).unwrap_or(usize::MAX).max(1);
        if limits.max_connections > cap {
            tracing::warn!(
                requested = limits.max_connections,
                open_files = n,
                "webhook max connections lowered to {cap}, half the open-file limit (raise it with ulimit -n)"
            );
            limits.max_connections = cap;
        }
    }
    limits
}

/// The data dir, created (mode 0700), resolved and locked for this process until dropped.
pub struct DataDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl DataDir {
    /// Creates `dir` if needed and takes its lock; refuses when another daemon holds it.
    pub fn open(dir: &Path) -> anyhow::Result<DataDir> {
        prepare_data_dir(dir)?;
        let path = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", dir.display()))?;
        let lock = lock_data_dir(&path)?;
        Ok(DataDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the daemon serves on. [`run`] takes them ready-made, so that a test can bind its own
/// (mini-redis's `run(listener, shutdown)`); [`Listeners::bind`] binds what a [`Config`] names.
pub struct Listeners {
    /// The control API.
    pub control: tokio::net::UnixListener,
    /// Where `control` is bound: handed to agents as `ORCHESTRATOR_SOCKET`, removed at shutdown.
    pub socket: PathBuf,
    /// The webhook server's listener, unless webhooks are disabled.
    pub webhook: Option<std::net::TcpListener>,
    /// The admin listener (`/metrics`), unless it is disabled.
    pub admin: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds the control socket (removing a stale one, which is safe only while `dir`'s lock is
    /// held: nobody else serves it) and the webhook listener.
    pub fn bind(config: &Config, dir: &DataDir) -> anyhow::Result<Listeners> {
        let socket = config
            .socket
            .clone()
            .unwrap_or_else(|| layout::socket_in(dir.path()));
        let webhook = match config.webhook_bind {
            WebhookBind::Disabled => None,
            WebhookBind::Addr(addr) => Some(
                bind_webhook(addr)
                    .with_context(|| format!("cannot bind the webhook server to {addr}"))?,
            ),
        };
        let admin = match config.admin_bind {
            AdminBind::Disabled => None,
            AdminBind::Addr(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot bind the admin listener (--admin-bind) to {addr}: pick another address, or `none`"))?,
            ),
        };
        let control = bind_socket(&socket)?;
        Ok(Listeners {
            control,
            socket,
            webhook,
            admin,
        })
    }
}

/// Removes the control socket when the daemon stops, however it stops.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Locks the data dir, binds the listeners `config` names and runs the daemon until `shutdown`
/// resolves: what `orchestratord` does.
pub async fn start(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = DataDir::open(&config.data_dir)?;
    let listeners = Listeners::bind(&config, &dir)?;
    run(config, dir, listeners, shutdown).await
}

/// Runs the daemon on `dir` and `listeners` until `shutdown` resolves (or the root supervisor
/// gives up). Prints the ready line on stdout once the actors run and both listeners are served.
pub async fn run(
    config: Config,
    dir: DataDir,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // Watchdog pings start now: opening a large store may take a while, and the runtime is alive.
    let systemd = systemd::Systemd::from_env();
    let _watchdog = systemd.start_watchdog();
    let webhook_limits = webhook_limits(config.webhook_limits, raise_fd_limit());
    let data_dir = dir.path().to_path_buf();
    let socket_path = listeners.socket.clone();
    let _remove_socket = RemoveOnDrop(socket_path.clone());

    // The storage backend is chosen here. The stores open up front so that a broken key file or
    // database is reported plainly before anything listens.
    let (stores, initial) = tokio::task::block_in_place(|| {
        let stores = store::open(&config.store, &data_dir, config.secret_key_file.as_deref())?;
        let initial = stores.resources.load_snapshot()?;
        Ok::<_, StoreError>((stores, initial))
    })
    .context("cannot open the state store")?;
    // Agent output is redacted with the values the store holds from the first run on; the
    // secret-store actor keeps the set current from here (and again after each restart).
    let secrets = Arc::new(SecretRegistry::new());
    secrets.update(initial.secret_values().map(SecretValue::expose));
    let (publish, snapshots) = watch::channel(Arc::new(initial));
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let retention_args = {
        let store = stores.tasks.clone();
        let snapshots = snapshots.clone();
        let runs_dir = data_dir.join(layout::RUNS_DIR);
        let retention = config.retention;
        move || RetentionArgs {
            store: store.clone(),
            snapshots: snapshots.clone(),
            runs_dir: runs_dir.clone(),
            retention,
            clock: Clock::System,
        }
    };
    // This daemon as a node: it claims its id and, when the lease is free, leads from the
    // start, so that the triggers are armed as soon as the daemon is ready.
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let node = config
        .node_id
        .clone()
        .unwrap_or_else(|| NodeId::default_for(&host, &data_dir));
    let beat = Beat {
        node: node.as_str().to_owned(),
        instance: instance_id()?,
        host,
        pid: crate::process::own_pid(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: Utc::now(),
        revision: snapshots.borrow().revision,
        ttl: config.node_ttl,
        webhook: listeners
            .webhook
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string()),
        running: 0,
    };
    let first_lead = tokio::task::block_in_place(|| cluster::join(&*stores.cluster, &beat))?;
    let task_ctx = TaskContext {
        store: stores.tasks.clone(),
        snapshots: snapshots.clone(),
        runs_dir: data_dir.join(layout::RUNS_DIR),
        socket: socket_path.clone(),
        base_env: Arc::new(crate::process::base_env()),
        grace: AGENT_GRACE,
        stream_cap: 16 * 1024 * 1024,
        capture_cap: 1024 * 1024,
        secrets: secrets.clone(),
        running: running.clone(),
        node: beat.node.clone(),
        max_running: config.max_running.unwrap_or_else(default_max_running),
    };
    let leader = Arc::new(watch::channel(first_lead).0);
    let trigger_ctx = TriggerContext {
        store: stores.triggers.clone(),
        snapshots: snapshots.clone(),
        resident_window: config.trigger_resident_window,
        clock: Clock::System,
        leadership: leader.subscribe(),
    };

    let webhook_listener = listeners.webhook.map(Arc::new);
    let webhook_addr = match &webhook_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };

    let public_webhooks = webhook_addr.is_some_and(|a| !a.ip().is_loopback());
    if public_webhooks {
        let snapshot = snapshots.borrow().clone();
        for p in crate::domain::validate::unverifiable_webhooks(&snapshot) {
            tracing::warn!("{p}: it refuses every delivery until it has a key");
        }
    }
    // This daemon's actor names (a second daemon in the same process holds its own), and with
    // them its metrics.
    let actors = Registry::new();
    if let Some(commits) = stores.tasks.commit_seconds() {
        actors.metrics().adopt_store_commits(commits);
    }
    let rotations = crate::rotation::RotationContext::new(
        stores.rotations.clone(),
        stores.verifications.clone(),
        snapshots.clone(),
        socket_path.clone(),
        actors.clone(),
        &beat.node,
    )
    .context("cannot prepare secret rotation")?;
    // The ClusterActor's periodic pass: the staged rotations of nodes that died go on here.
    let resume: crate::actors::cluster::Pass = {
        let rotations = rotations.clone();
        Arc::new(move || {
            let rotations = rotations.clone();
            tokio::spawn(async move { crate::rotation::resume_all(&rotations).await });
        })
    };
    let token_args = TokenRefreshArgs {
        snapshots: snapshots.clone(),
        refresher: Arc::new(crate::rotation::tokens::Tokens::new(rotations.clone())),
        clock: Clock::System,
    };
    let mut children = vec![ChildSpec {
        name: secret_store::NAME.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: {
            let (resources, feed) = (stores.resources.clone(), stores.feed.clone());
            start_fn(&actors, secret_store::NAME.to_owned(), move || {
                (
                    SecretStoreActor,
                    SecretStoreArgs {
                        store: resources.clone(),
                        publish: publish.clone(),
                        public_webhooks,
                        secrets: secrets.clone(),
                        feed: feed.clone(),
                    },
                )
            })
        },
    }];
    children.push(ChildSpec {
        name: cluster::NAME.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: {
            let (store, beat, snapshots, leader, running, tasks) = (
                stores.cluster.clone(),
                beat.clone(),
                snapshots.clone(),
                leader.clone(),
                running.clone(),
                stores.tasks.clone(),
            );
            let resume = resume.clone();
            start_fn(&actors, cluster::NAME.to_owned(), move || {
                (
                    ClusterActor,
                    ClusterArgs {
                        store: store.clone(),
                        beat: beat.clone(),
                        snapshots: snapshots.clone(),
                        leader: leader.clone(),
                        interval: cluster::HEARTBEAT,
                        running: running.clone(),
                        tasks: tasks.clone(),
                        clock: Clock::System,
                        resume: Some((crate::rotation::RESUME_EVERY, resume.clone())),
                    },
                )
            })
        },
    });
    children.push(ChildSpec {
        name: TASKS.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: start_fn(&actors, TASKS.to_owned(), move || {
            (TaskSupervisor, task_ctx.clone())
        }),
    });
    children.push(ChildSpec {
        name: TRIGGERS.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: start_fn(&actors, TRIGGERS.to_owned(), move || {
            (TriggerSupervisor, trigger_ctx.clone())
        }),
    });
    children.push(ChildSpec {
        name: retention::NAME.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: start_fn(&actors, retention::NAME.to_owned(), move || {
            (RetentionActor, retention_args())
        }),
    });
    children.push(ChildSpec {
        name: token_refresh::NAME.to_owned(),
        restart: Restart::Permanent,
        exhausted: Exhausted::Escalate,
        start: start_fn(&actors, token_refresh::NAME.to_owned(), move || {
            (TokenRefreshActor, token_args.clone())
        }),
    });
    // Marks `webhook test`'s requests to the daemon's own webhook server: they never prove a key.
    let own = crate::http::webhook::OwnToken::generate()
        .context("cannot draw the token of the daemon's own webhook requests")?;
    if let Some(listener) = &webhook_listener {
        let listener = listener.clone();
        let serve = crate::http::webhook::serve_fn(
            snapshots.clone(),
            stores.verifications.clone(),
            stores.replay.clone(),
            stores.deliveries.clone(),
            webhook_limits,
            actors.clone(),
            own.clone(),
            stores.feed.clone(),
        );
        children.push(ChildSpec {
            name: webhook::NAME.to_owned(),
            restart: Restart::Permanent,
            exhausted: Exhausted::Escalate,
            start: start_fn(&actors, webhook::NAME.to_owned(), move || {
                (
                    WebhookActor,
                    WebhookArgs {
                        listener: listener.clone(),
                        serve: serve.clone(),
                    },
                )
            }),
        });
    }
    let (root, root_done) = actors
        .spawn_joinable(
            ROOT.to_owned(),
            Supervisor {
                actor_type: "RootSupervisor",
            },
            SupervisorArgs {
                intensity: Intensity::default(),
                children,
            },
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the actor system: {e}"))?;

    let listener = listeners.control;
    let ctx = ControlContext {
        snapshots,
        started_at: Utc::now(),
        data_dir: data_dir.display().to_string(),
        socket: socket_path.display().to_string(),
        webhook_addr: webhook_addr.map(|a| a.to_string()),
        root: ROOT,
        tasks: stores.tasks.clone(),
        triggers: stores.triggers.clone(),
        retention: config.retention,
        rotations: rotations.clone(),
        actors: actors.clone(),
        own,
        deliveries: stores.deliveries.clone(),
        cluster: stores.cluster.clone(),
        node: beat.node.clone(),
        store: config.store.describe(),
        shared_store: stores.feed.is_some(),
    };
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_addr = match listeners.admin {
        Some(l) => {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            let addr = l.local_addr()?;
            tokio::spawn(crate::http::admin::serve(l, actors.clone(), async {
                let _ = admin_stopped.await;
            }));
            Some(addr)
        }
        None => None,
    };
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(control::serve(listener, ctx, async {
        let _ = control_stopped.await;
    }));

    // Rotations a previous run left unfinished (or nodes that died) go on now; the
    // ClusterActor's pass takes up those of nodes that die later.
    {
        let rotations = rotations.clone();
        tokio::spawn(async move { crate::rotation::resume_all(&rotations).await });
    }

    let webhook_shown = webhook_addr.map_or_else(|| "none".to_owned(), |a| a.to_string());
    let admin_shown = admin_addr.map_or_else(|| "none".to_owned(), |a| a.to_string());
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "orchestratord ready socket={} webhook={webhook_shown} admin={admin_shown}",
            socket_path.display()
        )?;
        out.flush()?;
    }
    tracing::info!(socket = %socket_path.display(), webhook = %webhook_shown, admin = %admin_shown, data_dir = %data_dir.display(), store = %config.store.describe(), "ready");
    systemd.ready(&format!(
        "ready socket={} webhook={webhook_shown} admin={admin_shown}",
        socket_path.display()
    ));

    let mut root_done = root_done;
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        _ = &mut root_done => Err(anyhow::anyhow!(
            "the root supervisor stopped (a child exceeded its restart intensity); see the log above"
        )),
    };

    tracing::info!("shutting down");
    systemd.stopping();
    // The lease this node holds, taken before its actors stop (the ClusterActor's state drops
    // its leadership as it goes), so that it is released below.
    let lead = leader.borrow().clone();
    let _ = stop_admin.send(());
    let _ = stop_control.send(());
    if tokio::time::timeout(Duration::from_secs(5), control)
        .await
        .is_err()
    {
        tracing::warn!("control connections did not finish within 5 s");
    }
    if outcome.is_ok() {
        // Running agents get SIGTERM, then SIGKILL after the grace period; their tasks are
        // recorded as interrupted.
        if let Some(tasks) = actors.lookup::<TaskSupMsg>(TASKS) {
            let wait = AGENT_GRACE + Duration::from_secs(10);
            if tasks.call(TaskSupMsg::Shutdown, wait).await.is_err() {
                tracing::warn!(
                    "running tasks did not stop within {wait:?}; their agents are killed now"
                );
            }
        }
        root.cell()
            .stop_and_wait(
                Some("daemon shutdown".into()),
                Some(Duration::from_secs(30)),
            )
            .await
            .ok();
    }
    // Leave the cluster: another node may take the lease at once, and this one no longer
    // counts among the live nodes an apply waits for.
    tokio::task::block_in_place(|| cluster::leave(&*stores.cluster, &beat, lead.as_ref()));
    outcome
}
