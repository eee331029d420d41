//! The base environment of every child the daemon starts (agents and rotation providers'
//! programs): the daemon's own `PATH HOME USER LANG TERM`, nothing else, with the directory of the
//! running executable put first on `PATH` so that children find the `orchestrator` CLI.

use std::path::Path;

/// The daemon's `PATH HOME USER LANG TERM`, with the directory of the running executable put
/// first on `PATH` (or, without a `PATH`, a default one after it).
pub fn base_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for name in ["PATH", "HOME", "USER", "LANG", "TERM"] {
        let Some(mut value) = std::env::var(name).ok() else {
            continue;
        };
        if name == "PATH"
            && let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_owned))
        {
            value = format!("{}:{value}", dir.display());
        }
        env.push((name.to_owned(), value));
    }
    if !env.iter().any(|(k, _)| k == "PATH")
        && let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
    {
        env.push((
            "PATH".into(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display()),
        ));
    }
    env
}
