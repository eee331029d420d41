//! `orchestratord`: the daemon. Flags → logging → `daemon::start` until SIGINT/SIGTERM → exit code.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use orchestrator::daemon::{self, AdminBind, Age, Config, WebhookBind};
use tracing_subscriber::EnvFilter;

/// orchestratord: runs agent workflows from cron schedules and signed webhooks.
#[derive(Debug, Parser)]
#[command(name = "orchestratord", version, about, max_term_width = 100)]
struct Args {
    /// Where everything durable lives (created 0700) [default: ~/.orchestratord].
    #[arg(long, env = "ORCHESTRATOR_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The control socket [default: <data-dir>/orchestrator.sock].
    #[arg(long, env = "ORCHESTRATOR_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Webhook server address (IP:PORT, port 0 picks one), or `none`.
    #[arg(long, default_value = "127.0.0.1:19090", value_name = "ADDR|none")]
    webhook_bind: WebhookBind,
    /// Admin listener address (IP:PORT, port 0 picks one), or `none`: serves `GET /metrics`
    /// (Prometheus text format), apart from the public webhook port.
    #[arg(
        long,
        env = "ORCHESTRATOR_ADMIN_BIND",
        default_value = "127.0.0.1:19091",
        value_name = "ADDR|none"
    )]
    admin_bind: AdminBind,
    /// Log format on stderr; levels come from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Passivation, for very large installations: a cron trigger whose next fire is further away
    /// than this many seconds (up to a year) has no TriggerActor; the trigger supervisor starts
    /// it again half this long before the fire. Saves about 9 KB per trigger. Unset (the
    /// default): every trigger keeps its actor.
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(2..=31_536_000))]
    trigger_resident_window: Option<u64>,
    /// Webhook deliveries handled at once; more are answered 429.
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    webhook_max_in_flight: u32,
    /// Seconds a webhook delivery's body may take to arrive; slower ones are answered 408.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    webhook_body_timeout: u64,
    /// Seconds a webhook connection may take to send a request's headers, and may stay idle
    /// between requests, before it is closed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    webhook_header_timeout: u64,
    /// Open webhook connections; at the cap a new one takes the place of the longest-idle one.
    #[arg(long, default_value_t = 4096, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    webhook_max_connections: u32,
    /// Finished tasks (with their step runs, events and run logs) are removed this long after
    /// they finished: a whole number and a unit, s, m, h, d or w (up to 36500d). A trigger's
    /// historyLimit wins for that trigger's tasks.
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    task_retention_age: Age,
    /// Each workflow keeps at most this many finished tasks (the oldest go first); a trigger's
    /// historyLimit wins for that trigger's tasks.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=daemon::MAX_RETENTION_COUNT))]
    task_retention_count: u64,
    /// Seconds between two retention passes (old tasks are also removed as soon as a task
    /// finishes over its trigger's or its workflow's count).
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    retention_interval: u64,
    /// Where the state lives: `sqlite` (the default: `state.db` in the data dir, nothing to
    /// install) or a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST:PORT/DATABASE, shared by
    /// every daemon of a cluster.
    #[arg(
        long,
        env = "ORCHESTRATOR_STORE",
        default_value = "sqlite",
        value_name = "sqlite|postgres://…",
        hide_default_value = true,
        hide_env_values = true
    )]
    // Parsed in `start`, not by clap: clap's error would echo the value, and a URL may hold a
    // password.
    store: String,
    /// The 32-byte key that seals SecretStore values (mode 0600) [default: <data-dir>/secret.key,
    /// created on first start]. Every daemon on one PostgreSQL database needs the same file.
    #[arg(long, env = "ORCHESTRATOR_SECRET_KEY_FILE", value_name = "PATH")]
    secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    tune_malloc();
    match start(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("orchestratord: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => orchestrator::layout::default_data_dir()?,
    };
    let config = Config {
        data_dir,
        socket: args.socket,
        webhook_bind: args.webhook_bind,
        admin_bind: args.admin_bind,
        trigger_resident_window: args
            .trigger_resident_window
            .map(std::time::Duration::from_secs),
        webhook_limits: daemon::WebhookLimits {
            max_in_flight: args.webhook_max_in_flight as usize,
            body_timeout: std::time::Duration::from_secs(args.webhook_body_timeout),
            header_timeout: std::time::Duration::from_secs(args.webhook_header_timeout),
            max_connections: args.webhook_max_connections as usize,
        },
        retention: daemon::Retention {
            policy: daemon::RetentionPolicy {
                max_age: args.task_retention_age,
                max_count: args.task_retention_count,
            },
            interval: std::time::Duration::from_secs(args.retention_interval),
        },
        store: args.store.parse::<daemon::StoreBackend>()?,
        secret_key_file: args.secret_key_file,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon::start(config, shutdown_signal()))
}

/// glibc's malloc, set for a process that runs for months. By default each thread that
/// allocates may get an arena of its own (up to 8 per core: the runtime's workers and SQLite's
/// blocking threads), and memory freed inside an arena stays with the process: the daemon's RSS
/// crept up by 20 MB over 100,000 tasks while its live heap never passed 8 MB (heaptrack;
/// benches/README.md, "Memory over many tasks"). Two arenas, and a trim of every arena once a
/// minute, hand freed pages back. (mimalloc, tried instead, started at 27 MB idle and held
/// 120 MB after 10,000 tasks.)
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt changes a setting of the allocator and is called before any other
        // thread exists; malloc_trim only returns free pages. Neither touches Rust's memory.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        let trim = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    // SAFETY: as above.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = trim {
            tracing::warn!(error = %e, "cannot start the malloc-trim thread; freed memory is returned less often");
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
