//! `orchestratord`: the daemon. Flags (`daemon_flags`) → logging → `daemon::start` until
//! SIGINT/SIGTERM → exit code.

use clap::Parser;
use orchestrator::daemon::{self, Config};
use orchestrator::daemon_flags::{Flags, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let args = Flags::parse();
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

fn start(args: Flags) -> anyhow::Result<()> {
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
        node_id: args.node_id,
        node_ttl: std::time::Duration::from_secs(args.node_ttl),
        max_running: args.max_running.map(|n| n as usize),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { daemon::start(config, shutdown_signal()).await })
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

/// Installs the SIGINT and SIGTERM handlers now, before the daemon is ready (a SIGTERM sent as
/// soon as the ready line or systemd's READY=1 is out must stop it gracefully, not kill it), and
/// resolves on the first of them. Called inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
