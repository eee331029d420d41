//! Resuming unfinished rotations: at start ([`resume_all`]) and every [`RESUME_EVERY`] after,
//! from the ClusterActor's heartbeat. A rotation's row is its lock: a node resumes only the
//! rotations it can claim — its own (a restart), unowned ones, and those of nodes that died
//! (heartbeat older than their TTL) or stopped — so that of several daemons on one database
//! exactly one drives each rotation, and a rotation whose node died goes on elsewhere within
//! the TTL and one pass.

use std::time::Duration;

use tokio::sync::broadcast;

use super::{RotationContext, RotationError, drive, now, progress};

/// Between two passes that take up the rotations of dead nodes.
pub const RESUME_EVERY: Duration = Duration::from_secs(10);

/// Resumes the unfinished rotations this node can claim and does not run already.
pub async fn resume_all(ctx: &RotationContext) {
    let open = match ctx.records.unfinished() {
        Ok(r) => r,
        Err(e) => {
            let e = RotationError::from(e);
            tracing::error!(error = %e, "cannot read unfinished rotations");
            return;
        }
    };
    for r in open {
        let k = (r.project.clone(), r.store.clone());
        {
            // A rotation (or token refresh) of this store runs here already: that is this
            // node's, never driven twice.
            let mut running = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains_key(&k) {
                continue;
            }
            running.insert(k.clone(), Vec::new());
        }
        match ctx.records.claim(r.id, &ctx.node, now()) {
            Ok(true) => {}
            Ok(false) => {
                // Another live node runs it.
                ctx.stop_running(&r.project, &r.store);
                continue;
            }
            Err(e) => {
                ctx.stop_running(&r.project, &r.store);
                let e = RotationError::from(e);
                tracing::warn!(rotation = r.id, error = %e, "cannot claim an unfinished rotation; the next pass tries again");
                continue;
            }
        }
        tracing::warn!(rotation = r.id, store = %r.store, stage = r.stage.as_str(), node = %ctx.node, "resuming an interrupted rotation");
        // Nobody listens to a resumed rotation's progress (it is logged); a manual one's value
        // was never stored anywhere but in the store itself.
        let (progress, _) = broadcast::channel(progress::BACKLOG);
        tokio::spawn(drive(ctx.clone(), r.id, progress, None));
    }
}
