//! Living in the system: `orchestrator completions` and `orchestrator man` (no daemon needed),
//! and the daemon under systemd's notify protocol, with a Unix datagram socket of the test's own
//! as `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{CLI, DAEMON, eventually, signal, wait_child};

fn cli(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .env_remove("ORCHESTRATOR_SOCKET")
        .output()
        .expect("run orchestrator")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Commands every completion script must offer.
const COMMANDS: [&str; 8] = [
    "apply",
    "get",
    "task",
    "trigger",
    "schedule",
    "daemon",
    "completions",
    "man",
];

#[test]
fn completions_for_each_shell_name_the_commands_and_options() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef orchestrator"),
        ("fish", "complete -c orchestrator"),
    ] {
        let script = stdout(&cli(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: no {marker:?}:\n{script}");
        for name in COMMANDS {
            assert!(script.contains(name), "{shell}: {name} is not offered");
        }
        // A subcommand's own option, and a global option offered inside a subcommand.
        assert!(script.contains("dry-run"), "{shell}: no --dry-run");
        assert!(script.contains("socket"), "{shell}: no --socket");
    }
    // The bash script is a script bash parses.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orchestrator.bash");
    std::fs::write(&file, stdout(&cli(&["completions", "bash"]))).expect("write");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let out = cli(&["completions", "tcsh"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'tcsh'"), "{err}");
    assert!(err.contains("bash, zsh, fish"), "{err}");
    assert!(out.stdout.is_empty());
}

/// A man page: roff with its title, the standard sections, and (when groff is installed: CI
/// installs nothing beyond Rust) no warning from groff with every warning on.
#[track_caller]
fn check_roff(page: &str, title: &str, what: &str) {
    assert!(
        page.lines().any(|l| l.starts_with(&format!(".TH {title}"))),
        "{what}: no .TH {title}:\n{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(page.contains(section), "{what}: no {section}");
    }
    if Command::new("groff").arg("--version").output().is_ok() {
        let mut child = Command::new("groff")
            // -k: the page is UTF-8, read through preconv as man(1) does.
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("groff");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), page.as_bytes())
            .expect("write to groff");
        let out = child.wait_with_output().expect("groff");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{what}: {warnings}"
        );
    }
}

#[test]
fn man_prints_orchestrator_1_with_its_commands_and_global_options() {
    let page = stdout(&cli(&["man"]));
    check_roff(&page, "orchestrator 1", "orchestrator(1)");
    for name in COMMANDS {
        assert!(
            page.contains(&format!("orchestrator\\-{name}(1)")),
            "no {name}"
        );
    }
    // roff writes a hyphen as \-.
    for flag in ["\\-\\-socket", "\\-\\-project", "\\-\\-output"] {
        assert!(page.contains(flag), "no {flag}");
    }
    assert!(!page.contains("orchestrator\\-help"), "a page for `help`");
}

#[test]
fn man_dir_writes_a_page_per_command_and_the_daemons_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man = dir.path().join("share/man");
    let listed = stdout(&cli(&["man", "--dir", man.to_str().expect("utf-8")]));
    let listed: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&man)
        .expect("the directory was created")
        .map(|e| e.expect("entry").path())
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "the paths printed are the files written");
    let name = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
    let names: Vec<String> = listed.iter().map(|p| name(p)).collect();
    for want in [
        "orchestrator.1",
        "orchestrator-apply.1",
        "orchestrator-task.1",
        "orchestrator-task-create.1",
        "orchestrator-secret-rotate.1",
        "orchestrator-completions.1",
        "orchestratord.8",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    for page in &listed {
        let text = std::fs::read_to_string(page).expect("read page");
        let file = name(page);
        let (stem, section) = file.rsplit_once('.').expect("section");
        check_roff(&text, &format!("{stem} {section}"), &file);
    }
    let create = std::fs::read_to_string(man.join("orchestrator-task-create.1")).expect("read");
    assert!(
        create.contains("\\-\\-workflow"),
        "task create's own option"
    );
    assert!(create.contains("Examples:"), "task create's examples");
    let daemon = std::fs::read_to_string(man.join("orchestratord.8")).expect("read");
    for flag in [
        "\\-\\-data\\-dir",
        "\\-\\-webhook\\-bind",
        "\\-\\-log\\-format",
        "\\-\\-store",
        "\\-\\-secret\\-key\\-file",
        "ORCHESTRATOR_DATA_DIR",
    ] {
        assert!(daemon.contains(flag), "orchestratord(8): no {flag}");
    }
}

#[test]
fn man_dir_that_cannot_be_created_is_refused_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let out = cli(&["man", "--dir", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("orchestrator: cannot create the man page directory"),
        "{err}"
    );
}

/// A daemon started with `env`, its stdout in `<dir>/stdout` (so that the test can see what it
/// had printed when a notification arrived) and its log in `<dir>/daemon.log`.
fn spawn_daemon(dir: &Path, env: &[(&str, &Path)], watchdog_usec: Option<&str>) -> Child {
    let stdout = std::fs::File::create(dir.join("stdout")).expect("stdout file");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log file");
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--webhook-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .env_remove("ORCHESTRATOR_SOCKET")
        .env_remove("ORCHESTRATOR_DATA_DIR")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(usec) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec);
    }
    cmd.spawn().expect("spawn orchestratord")
}

fn ready_line(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("stdout"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("orchestratord ready "))
        .map(str::to_owned)
}

/// The notifications on `socket` until one holds `want` (each datagram is one notification of
/// `KEY=VALUE` lines), calling `seen` on each; bounded by a deadline.
fn receive_until(socket: &UnixDatagram, want: &str, mut seen: impl FnMut(&str)) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue; // the read timeout: look at the deadline again
        };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen(&message);
        let done = message.lines().any(|l| l == want);
        got.push(message);
        if done {
            return got;
        }
    }
    panic!("no {want} within 30 s; received {got:?}");
}

#[test]
fn the_daemon_tells_systemd_ready_after_its_ready_line_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // systemd's WatchdogSec=1s: a ping is due every half second.
    let mut child = spawn_daemon(dir.path(), &[("NOTIFY_SOCKET", &path)], Some("1000000"));

    let got = receive_until(&socket, "READY=1", |m| {
        if m.lines().any(|l| l == "READY=1") {
            assert!(
                ready_line(dir.path()).is_some(),
                "READY=1 before the ready line was printed"
            );
        }
    });
    let ready = got.last().expect("READY=1");
    let line = ready_line(dir.path()).expect("ready line");
    assert!(
        ready.contains(&format!(
            "STATUS={}",
            line.trim_start_matches("orchestratord ")
        )),
        "the status is the ready line: {ready:?} vs {line:?}"
    );
    // What READY=1 promises holds: the control API answers.
    let sock = dir.path().join("data/orchestrator.sock");
    let status = Command::new(CLI)
        .args(["daemon", "status", "--socket"])
        .arg(&sock)
        .output()
        .expect("run orchestrator");
    stdout(&status);

    receive_until(&socket, "WATCHDOG=1", |m| {
        assert!(!m.contains("READY=1"), "READY=1 twice: {m:?}");
    });

    signal(child.id(), 15);
    receive_until(&socket, "STOPPING=1", |m| {
        assert!(!m.contains("READY=1"), "READY=1 again: {m:?}");
    });
    assert_eq!(wait_child(&mut child, Duration::from_secs(30)), 0);
}

#[test]
fn without_a_watchdog_the_daemon_sends_no_pings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = spawn_daemon(dir.path(), &[("NOTIFY_SOCKET", &path)], None);
    let mut all = receive_until(&socket, "READY=1", |_| {});
    signal(child.id(), 15);
    all.extend(receive_until(&socket, "STOPPING=1", |_| {}));
    assert_eq!(wait_child(&mut child, Duration::from_secs(30)), 0);
    assert!(
        all.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pings without WATCHDOG_USEC: {all:?}"
    );
}

#[test]
fn a_notify_socket_nobody_listens_on_is_a_warning_and_the_daemon_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nobody.sock");
    let mut child = spawn_daemon(dir.path(), &[("NOTIFY_SOCKET", &missing)], Some("1000000"));
    let line = eventually(Duration::from_secs(20), "the ready line", || {
        ready_line(dir.path())
    });
    assert!(line.contains("socket="), "{line}");
    let log = eventually(Duration::from_secs(20), "the warnings", || {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).ok()?;
        (log.contains("cannot tell systemd READY=1") && log.contains("WATCHDOG=1")).then_some(log)
    });
    assert!(log.contains("NOTIFY_SOCKET"), "{log}");
    signal(child.id(), 15);
    assert_eq!(wait_child(&mut child, Duration::from_secs(30)), 0);
}

/// The shipped unit is a notify service with a watchdog and the hardening README describes,
/// and every ExecStart= line (the commented JSON variant too) is one `orchestratord` accepts.
#[test]
fn the_systemd_unit_is_a_hardened_notify_service_whose_command_line_parses() {
    use clap::Parser;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/systemd/orchestratord.service");
    let unit = std::fs::read_to_string(&path).expect("read the unit");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {key}= in {}", path.display()))
    };
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("KillMode", "mixed"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "orchestratord"),
        ("StateDirectoryMode", "0700"),
    ] {
        assert_eq!(value(key), want, "{key}");
    }
    assert!(value("WatchdogSec").ends_with('s'));
    assert!(!value("ReadWritePaths").is_empty());
    let commands: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim_start_matches('#').strip_prefix("ExecStart="))
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    for command in commands {
        let argv: Vec<String> = command
            .split_whitespace()
            .map(|w| w.replace("%S", "/var/lib"))
            .collect();
        assert!(argv[0].ends_with("/orchestratord"), "{command}");
        let flags = orchestrator::daemon_flags::Flags::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        assert_eq!(
            flags.data_dir.as_deref(),
            Some(Path::new("/var/lib/orchestratord")),
            "the data dir is the StateDirectory"
        );
    }
}
