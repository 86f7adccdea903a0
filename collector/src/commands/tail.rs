//! `leakscope tail FILE [--follow]`: render an NDJSON file written with LEAKSCOPE_OUTPUT.

use crate::cli::TailArgs;
use crate::commands::{print_stderr, print_stdout};
use crate::error::{CliError, CliResult};
use crate::files::Dir;
use crate::ingest;
use crate::live::ViewMode;
use crate::report::{self, Written};
use crate::session::Session;
use crate::session_info::SessionInfo;
use crate::signals;
use crate::terminal;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(500);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

pub fn tail(args: TailArgs) -> CliResult<i32> {
    let mut info = SessionInfo::new("tail");
    info.command = None;
    let mut session = if args.follow { follow(&args, info)? } else { read_once(&args, info)? };
    // The session's length is the data's, not how long this command took to read it.
    session.info.started_unix_ms = None;
    session.info.ended_unix_ms = None;
    let report = session.build_report();
    if let Some(dir) = &args.out {
        let mut written = Written::default();
        match Dir::open_or_create(dir) {
            Ok((out, _)) => {
                report::write_session(&out, &session.info, &mut written);
                report::write_files(&out, &report, &mut written);
            }
            Err(e) => written.failed.push(e),
        }
        print_stderr(&written.render_failures());
    }
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"));
    } else {
        print_stdout(&report::render_text(&report));
    }
    Ok(0)
}

fn read_once(args: &TailArgs, info: SessionInfo) -> CliResult<Session> {
    let mut session = Session::new(None, None, ViewMode::Quiet, info);
    // A regular file only, opened without blocking: a FIFO here is refused, not waited on.
    let file = crate::files::open_regular(&args.file).map_err(|e| e.to_cli("cannot read"))?;
    ingest::read_file_lines(file, |ev| session.handle(ev))
        .map_err(|e| CliError::io(format!("cannot read {}", args.file.display()), e))?;
    if let Some(note) = crate::commands::report::input_note(&session.store, &args.file) {
        print_stderr(&note);
    }
    session.finish();
    Ok(session)
}

fn follow(args: &TailArgs, info: SessionInfo) -> CliResult<Session> {
    if !args.file.exists() {
        print_stderr(&format!("leakscope: {} does not exist yet; waiting for it\n", args.file.display()));
    } else if let Err(e) = crate::files::open_regular(&args.file) {
        print_stderr(&format!("leakscope: not reading {e}; waiting for a regular file there (Ctrl-C to stop)\n"));
    }
    let live = !args.plain && terminal::stdout_is_tty() && terminal::stderr_is_tty();
    let mode = if live { ViewMode::Live } else { ViewMode::Plain };
    let (tx, rx) = ingest::channel();
    ingest::follow_file(args.file.clone(), tx, POLL);
    signals::install();
    let mut session = Session::new(Some(rx), None, mode, info);
    let title = format!("following {}", args.file.display());
    while signals::received() == 0 {
        session.pump(Duration::from_millis(100));
        let interval = session
            .store
            .producers()
            .filter_map(|p| p.interval_ms())
            .min()
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_INTERVAL);
        let mut frame = session.frame_base(title.clone(), interval);
        frame.waiting_on = Some(args.file.display().to_string());
        frame.footer = "Ctrl-C: stop following and print the report".to_string();
        session.view.update(&session.store, &frame);
    }
    session.info.stopped_by = Some(signals::last_signal_name().to_string());
    session.finish();
    Ok(session)
}
