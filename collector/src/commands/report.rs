//! `leakscope report DIR_OR_FILE`: re-render the reports from a recording.

use crate::cli::ReportArgs;

use crate::commands::{print_stderr, print_stdout};
use crate::error::{CliError, CliResult};
use crate::export::pprof::Moment;
use crate::files::{self, Dir};
use crate::ingest;
use crate::live::ViewMode;
use crate::report::{self, Written};
use crate::session::Session;
use crate::session_info::SessionInfo;
use crate::store::Store;
use std::path::{Path, PathBuf};

pub fn report(args: ReportArgs) -> CliResult<i32> {
    // stat, not open: nothing is opened before it is known to be a directory or a regular file.
    let meta =
        std::fs::metadata(&args.path).map_err(|e| CliError::io(format!("cannot open {}", args.path.display()), e))?;
    let (recording, session_dir, default_out): (PathBuf, Option<PathBuf>, Option<PathBuf>) = if meta.is_dir() {
        let rec = args.path.join("recording.ndjson");
        if std::fs::symlink_metadata(&rec).is_err() {
            return Err(CliError::new(format!("{} has no recording.ndjson", args.path.display()))
                .hint("give the output directory of `leakscope run`/`listen`/`demo`, or an NDJSON file"));
        }
        (rec, Some(args.path.clone()), Some(args.path.clone()))
    } else {
        let parent =
            args.path.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
        let is_recording = args.path.file_name().is_some_and(|n| n == "recording.ndjson");
        (args.path.clone(), if is_recording { parent } else { None }, None)
    };
    // A recording inside an output directory is leakscope's own file: never read through a
    // link there. A file named directly is the user's choice; either must be a regular file.
    let file =
        if session_dir.is_some() { files::open_regular_nofollow(&recording) } else { files::open_regular(&recording) }
            .map_err(|e| e.to_cli("cannot read"))?;
    // The run's own facts (command, exit code, notes) live beside the recording.
    let info = session_dir.as_deref().and_then(report::read_session).unwrap_or_else(|| SessionInfo::new("report"));
    let soak = soak_context(&info, &args)?;
    let mut session = Session::new(None, None, ViewMode::Quiet, info.clone());
    session.soak = soak;
    ingest::read_file_lines(file, |ev| session.handle(ev))
        .map_err(|e| CliError::io(format!("cannot read {}", recording.display()), e))?;
    if let Some(note) = input_note(&session.store, &recording) {
        print_stderr(&note);
    }
    // Keep the recorded times, not the time of this re-rendering.
    session.info = info;
    let rendered = session.build_report();
    if let Some(dir) = args.out.clone().or(default_out) {
        // Whatever cannot be written is named; the report is still printed and the exit code
        // is still the verdict's.
        let mut written = Written::default();
        match Dir::open_or_create(&dir) {
            Ok((out, _)) => {
                report::write_files(&out, &rendered, &mut written);
                report::write_soak_files(&out, &rendered, &session.store, &mut written);
            }
            Err(e) => written.failed.push(e),
        }
        print_stderr(&written.render_failures());
    }
    if let Some(path) = &args.pprof {
        // Like the report files: a profile that cannot be written is named, and the exit code
        // stays the verdict's.
        match crate::export::write_pprof(path, &session.store, moment_of(&rendered)) {
            Ok((written, samples)) => print_stderr(&format!(
                "leakscope: pprof profile of {samples} call sites written to {} (`go tool pprof -top {}`)\n",
                written.display(),
                written.display()
            )),
            Err(e) => {
                let failed = Written { files: Vec::new(), failed: vec![e] };
                print_stderr(&failed.render_failures());
            }
        }
    }
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&rendered).unwrap_or_default() + "\n"));
    } else {
        print_stdout(&report::render_text(&rendered));
    }
    // A soak recording exits like the soak did: 0 pass, 1 leak or regression, 2 error.
    Ok(report::exit_code_of(&rendered))
}

/// What the user should know about a file that was not a clean recording: lines over the
/// limit discarded, or nothing usable in it at all.
pub fn input_note(store: &Store, file: &Path) -> Option<String> {
    let i = &store.input;
    let mut o = String::new();
    if i.oversize > 0 {
        o.push_str(&format!(
            "leakscope: note: {}: {} line(s) longer than {} MiB discarded (read line by line; nothing longer is kept)\n",
            file.display(),
            i.oversize,
            crate::protocol::MAX_LINE_BYTES >> 20
        ));
    }
    if i.records == 0 && i.lines > i.empty {
        o.push_str(&format!(
            "leakscope: note: {} holds no leakscope records ({} line(s) skipped): is it a recording (LEAKSCOPE_OUTPUT, recording.ndjson)?\n",
            file.display(),
            i.skipped()
        ));
    }
    (!o.is_empty()).then_some(o)
}

/// The moment of the recording's last record (else the session's end) and the span it covers.
fn moment_of(rendered: &report::Report) -> Moment {
    let last_record = rendered
        .processes
        .iter()
        .flat_map(|p| p.agent.iter().chain(p.shim.iter()))
        .filter_map(|p| Some(p.start_unix_ms? + p.last_t_ms?))
        .max();
    Moment {
        unix_ms: last_record.or(rendered.session.ended_unix_ms).unwrap_or(rendered.generated_unix_ms),
        duration_ms: rendered.session.duration_ms,
    }
}

/// For a soak recording: the recorded settings, with `--baseline`/`--fail-on` overriding them.
fn soak_context(info: &SessionInfo, args: &ReportArgs) -> CliResult<Option<crate::soak::Context>> {
    let Some(recorded) = info.soak.clone() else {
        if args.baseline.is_some() || !args.fail_on.is_empty() {
            return Err(CliError::usage(
                "--baseline and --fail-on apply to soak recordings only (made by `leakscope soak`)",
            ));
        }
        return Ok(None);
    };
    let mut settings = recorded;
    if !args.fail_on.is_empty() {
        settings.fail_on = args.fail_on.clone();
    }
    match &args.baseline {
        Some(b) => settings.baseline = Some(b.clone()),
        None => {
            // The baseline recorded with the soak may have moved since: judge without it.
            if settings.baseline.as_ref().is_some_and(|b| !b.is_file()) {
                crate::commands::print_stderr(&format!(
                    "leakscope: note: the recorded baseline {} is gone; judging without it (pass --baseline FILE)\n",
                    settings.baseline.as_ref().map(|b| b.display().to_string()).unwrap_or_default()
                ));
                settings.baseline = None;
            }
        }
    }
    let ctx = crate::soak::Context::new(settings)?;
    Ok(Some(ctx))
}
