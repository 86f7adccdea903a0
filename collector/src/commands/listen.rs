//! `leakscope listen`: receive from producers of processes started elsewhere.

use crate::cli::ListenArgs;
use crate::commands::print_stderr;
use crate::error::{CliError, CliResult};
use crate::ingest::{self, Recorder};
use crate::live::{Level, ViewMode};
use crate::locate;
use crate::metrics::Exporter;
use crate::session::Session;
use crate::session_info::SessionInfo;
use crate::signals;
use crate::terminal;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Interval assumed for the plain status line when producers have not said theirs.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long to wait at the end for the agents' retention answers.
const PATHS_WAIT: Duration = Duration::from_secs(15);

pub fn listen(args: ListenArgs) -> CliResult<i32> {
    let capture = crate::capture_rules::Settings::from_args(&args.capture)?;
    let socket = match args.socket.clone() {
        Some(socket) => socket,
        None => {
            let socket = locate::default_listen_socket();
            if let Some(dir) = socket.parent() {
                crate::owner_only::ensure_private_dir(dir)?;
            }
            socket
        }
    };
    let listener = bind_exclusive(&socket)?;
    let socket_guard = RemoveOnDrop(socket.clone());
    let (out, out_note) = locate::create_out_dir(args.out.as_deref(), "leakscope")?;
    let out_dir = out.path().to_path_buf();
    let recorder = out.create_file("recording.ndjson");
    let mut metrics = match args.metrics {
        Some(addr) => Some(
            Exporter::start(addr, args.metrics_top as usize)
                .map_err(|e| CliError::new(e).hint("choose another address or port with --metrics"))?,
        ),
        None => None,
    };
    let (tx, rx) = ingest::channel();
    let replies = ingest::serve(listener, tx);

    let live = !args.plain && terminal::stdout_is_tty() && terminal::stderr_is_tty();
    let mode = if live { ViewMode::Live } else { ViewMode::Plain };
    let mut info = SessionInfo::new("listen");
    if let Some(n) = out_note {
        info.note("warn", n);
    }
    let recorder = match recorder {
        Ok(f) => Some(Recorder::new(f, out.join("recording.ndjson"))),
        Err(e) => {
            info.note("error", format!("not recording: {e}"));
            None
        }
    };
    signals::install();
    if mode == ViewMode::Plain {
        print_stderr(&format!(
            "leakscope: listening on {}, writing to {} (Ctrl-C to stop)\n",
            socket.display(),
            out_dir.display()
        ));
        for n in info.notes.iter() {
            print_stderr(&format!("leakscope: {}: {}\n", n.level, n.message));
        }
    }
    if let Some(m) = &metrics {
        print_stderr(&metrics_banner(m.addr()));
    }
    let mut session = Session::new(Some(rx), recorder, mode, info);
    let mut captures = capture.map(|settings| crate::capture_rules::Captures::start(settings, &mut session));
    let deadline = args.duration.map(|d| Instant::now() + d);
    let hint = format!(
        "no producer connected yet: start the worker with the variables from `leakscope env --socket {}`",
        crate::shell::shell_quote(&socket.display().to_string())
    );
    // What keeps the growing types alive: asked as each is confirmed, and once more at the end.
    let mut paths = crate::retention_asker::PathAsker::new(false);
    loop {
        session.pump(Duration::from_millis(100));
        if let Some(c) = captures.as_mut() {
            // Each capture is also counted in the metrics (leakscope_captures_total).
            for written in c.tick(&mut session, &replies) {
                if let Some(m) = metrics.as_mut() {
                    m.record_capture(written.pid);
                }
            }
        }
        if let Some(m) = metrics.as_mut() {
            m.refresh(&session.store);
        }
        paths.tick(&mut session, &replies, &[]);
        if signals::received() > 0 {
            session.info.stopped_by = Some(signals::last_signal_name().to_string());
            paths.ask_and_wait(&mut session, &replies, &[], PATHS_WAIT, &|| signals::received() > 1);
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            session.info.stopped_by = Some("--duration elapsed".to_string());
            paths.ask_and_wait(&mut session, &replies, &[], PATHS_WAIT, &|| signals::received() > 0);
            break;
        }
        let interval = session
            .store
            .producers()
            .filter_map(|p| p.interval_ms())
            .min()
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_INTERVAL);
        let mut frame = session.frame_base(format!("listening on {}", socket.display()), interval);
        frame.out_dir = Some(out_dir.display().to_string());
        frame.waiting_on = Some(socket.display().to_string());
        if session.connections_seen == 0 && session.started.elapsed() > Duration::from_secs(5) {
            frame.alerts.push((Level::Info, hint.clone()));
        }
        frame.alerts.push((
            Level::Info,
            format!("{} producer connection(s) open, {} so far", session.open_connections, session.connections_seen),
        ));
        if let Some(alert) = captures.as_ref().and_then(|c| c.alert()) {
            frame.alerts.push(alert);
        }
        frame.footer = "Ctrl-C: stop listening and write the report".to_string();
        session.view.update(&session.store, &frame);
    }
    if let Some(c) = captures.as_mut() {
        c.flush(&mut session);
    }
    session.finish();
    drop(socket_guard);
    if session.connections_seen == 0 {
        session.info.note("warn", hint);
    }
    let (report, written) = session.write_outputs(&out);
    let shown_dir = written.has("report.txt").then_some(out_dir.as_path());
    print_stderr(&crate::report::render_summary(&report, shown_dir));
    print_stderr(&written.render_failures());
    Ok(0)
}

/// Says where the metrics are, and warns when they are reachable from other hosts.
fn metrics_banner(addr: SocketAddr) -> String {
    let mut s = format!("leakscope: serving metrics at http://{addr}/metrics\n");
    if !addr.ip().is_loopback() {
        s.push_str(
            "leakscope: warning: the metrics endpoint is reachable from other hosts; it names \
             the workers' types and methods and has no authentication\n",
        );
    }
    s
}

/// Binds the socket (0600: only this user may connect), replacing a stale one, refusing if a
/// listener is alive or the path is something other than a socket.
pub fn bind_exclusive(socket: &Path) -> CliResult<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if !meta.file_type().is_socket() {
            return Err(CliError::new(format!("{} exists and is not a socket", socket.display()))
                .hint("choose another path with --socket, or remove that file if it is not needed"));
        }
        match UnixStream::connect(socket) {
            Ok(_) => {
                return Err(CliError::new(format!("another listener is already running on {}", socket.display()))
                    .hint("stop it first, or listen on another path with --socket PATH"));
            }
            Err(_) => {
                // Nobody home: left over from a listener that did not clean up.
                std::fs::remove_file(socket)
                    .map_err(|e| CliError::io(format!("cannot remove the stale socket {}", socket.display()), e))?;
            }
        }
    }
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(CliError::new(format!(
                "cannot listen on {}: {} is not a directory",
                socket.display(),
                parent.display()
            ))
            .hint("create the directory first, or choose another path with --socket"));
        }
    }
    if socket.as_os_str().len() > 107 {
        return Err(CliError::usage(format!(
            "socket path too long ({} bytes; Unix sockets allow 107)",
            socket.as_os_str().len()
        ))
        .hint("choose a shorter path with --socket"));
    }
    crate::owner_only::bind(socket).map_err(|e| CliError::io(format!("cannot listen on {}", socket.display()), e))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sockets_are_replaced_live_ones_and_plain_files_refused() {
        let dir = std::env::temp_dir().join(format!("leakscope-listen-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("l.sock");
        let _ = std::fs::remove_file(&sock);
        let first = bind_exclusive(&sock).unwrap();
        let err = bind_exclusive(&sock).err().unwrap();
        assert!(err.message.contains("already running"), "{}", err.message);
        drop(first); // the file stays: now stale
        assert!(sock.exists());
        let _second = bind_exclusive(&sock).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind_exclusive(&file).err().unwrap().message.contains("not a socket"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
