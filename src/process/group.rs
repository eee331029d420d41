//! Process groups and what `/proc` says about them. Every agent and every rotation program runs
//! as the leader of its own process group; this file signals such groups ([`kill_group`],
//! [`GroupGuard`], which kills one when dropped), asks whether one still has a live member, and
//! after a daemon crash finds and kills what is left of the agents it ran: by recorded process
//! group and leader start time ([`kill_orphaned_group`]), and by the marker every agent's
//! environment carries ([`kill_marked`]).
//!
//! Only the leader is our child, so only the leader is reaped (in `mod.rs`); killed grandchildren
//! are reparented to PID 1 (or a subreaper), which must reap them. A pgid is signalled only while
//! the leader is unreaped or right after reaping it, so a reused pid is never hit in practice.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp};

/// The daemon's own process id, for its lock file and its status report.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// Kills a process group with SIGKILL when dropped, unless disarmed. Whoever owns an agent holds
/// one so that the group dies even on a panic or an early return; disarm it only once the leader
/// has been reaped and the group killed, since a pgid can be reused after that.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    pub fn new(pgid: i32) -> GroupGuard {
        GroupGuard { pgid, armed: true }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Sends `signal` to process group `pgid`. Returns true if it was delivered; false if there is no
/// such group, if it may not be signalled, or if `pgid` is 0, 1, negative or the daemon's own
/// group (a bad pgid from the database must never hit everything or ourselves).
pub fn kill_group(pgid: i32, signal: Signal) -> bool {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return false;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(err) => {
            tracing::warn!(pgid, %signal, %err, "cannot signal agent process group");
            false
        }
    }
}

/// True if process group `pgid` has a member that is not a zombie. Reads `/proc` where it exists;
/// elsewhere it falls back to `kill(-pgid, 0)`, which also counts zombies.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    match proc_group_has_live_member(pgid) {
        Some(alive) => alive,
        None => !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)),
    }
}

/// The pids in `/proc`; `None` where there is no `/proc`.
fn proc_pids() -> Option<impl Iterator<Item = i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(entries.flatten().filter_map(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
    }))
}

fn proc_group_has_live_member(pgid: i32) -> Option<bool> {
    for pid in proc_pids()? {
        // A process that exits while we scan simply has no stat file any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat)
            && pgrp == pgid
            && state != 'Z'
            && state != 'X'
        {
            return Some(true);
        }
    }
    Some(false)
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/PID/stat`).
/// Recorded beside an agent's process group so that a later cleanup can tell the group's own
/// processes from an unrelated group that reuses the number.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `comm`: state is field 3, so starttime (field 22) is the 20th token.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills (SIGKILL) what is left of an agent's process group after a daemon crash: every live
/// process whose group is `pgid` and that started no earlier than the recorded leader start
/// time (`None`: any). Returns how many processes were signalled. Needs `/proc`.
pub fn kill_orphaned_group(pgid: i32, leader_start: Option<u64>) -> usize {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return 0;
    }
    let Some(pids) = proc_pids() else {
        return usize::from(kill_group(pgid, Signal::SIGKILL));
    };
    let mut killed = 0;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((state, pgrp)) = parse_stat(&stat) else {
            continue;
        };
        if pgrp != pgid || state == 'Z' || state == 'X' {
            continue;
        }
        let started = start_time(pid);
        if leader_start.is_some_and(|l| started.is_some_and(|s| s < l)) {
            continue;
        }
        if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Kills (SIGKILL) every live process of this user whose environment holds `scope` (a
/// `NAME=value` entry naming this daemon) and `key=V` for a `V` in `values`. After a crash this
/// finds agents of the runs that were running even when their process group was never recorded
/// (the daemon died between the spawn and the record), and processes that left their group:
/// the environment is inherited by everything an agent starts. Returns how many were signalled.
pub fn kill_marked(scope: &str, key: &str, values: &std::collections::HashSet<String>) -> usize {
    if values.is_empty() {
        return 0;
    }
    let Some(pids) = proc_pids() else {
        return 0;
    };
    let me = own_pid() as i32;
    let prefix = format!("{key}=");
    let mut killed = 0;
    for pid in pids {
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable here, and never ours to kill.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut in_scope = false;
        let mut marked = false;
        for var in environ.split(|b| *b == 0) {
            let Ok(var) = std::str::from_utf8(var) else {
                continue;
            };
            in_scope |= var == scope;
            marked |= var
                .strip_prefix(&prefix)
                .is_some_and(|v| values.contains(v));
        }
        if !(in_scope && marked) {
            continue;
        }
        let live = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
            .is_some_and(|(state, _)| state != 'Z' && state != 'X');
        if live && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// State and process group from `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`, where
/// `comm` may itself contain spaces and parentheses.
pub(super) fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_group_refuses_pgids_that_would_hit_everything_or_ourselves() {
        // SIGCONT is harmless, so a broken guard cannot take the test runner down.
        let own = getpgrp().as_raw();
        for pgid in [-1, 0, 1, own] {
            assert!(!kill_group(pgid, Signal::SIGCONT), "pgid {pgid}");
        }
        assert!(group_alive(own));
        assert!(!group_alive(0));
    }

    #[test]
    fn parses_proc_stat() {
        #[track_caller]
        fn check(stat: &str, want: Option<(char, i32)>) {
            assert_eq!(parse_stat(stat), want, "{stat:?}");
        }
        check("42 (sleep) S 1 42 42 0 -1", Some(('S', 42)));
        check("43 (a) b (c)) Z 1 7 7 0", Some(('Z', 7)));
        check("garbage", None);
    }
}
