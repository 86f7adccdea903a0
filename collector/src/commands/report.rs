//! `leakscope report DIR_OR_FILE`: re-render the reports from a recording.

use crate::cli::ReportArgs;

use crate::commands::print_stdout;
use crate::error::{CliError, CliResult};
use crate::export::pprof::Moment;
use crate::ingest;
use crate::live::ViewMode;
use crate::report::{self, SessionInfo};
use crate::session::Session;
use std::path::PathBuf;

pub fn report(args: ReportArgs) -> CliResult<i32> {
    let meta = std::fs::metadata(&args.path)
        .map_err(|e| CliError::io(format!("cannot open {}", args.path.display()), e))?;
    let (recording, session_dir, default_out): (PathBuf, Option<PathBuf>, Option<PathBuf>) = if meta
        .is_dir()
    {
        let rec = args.path.join("recording.ndjson");
        if !rec.is_file() {
            return Err(CliError::new(format!("{} has no recording.ndjson", args.path.display()))
                .hint("give the output directory of `leakscope run`/`listen`/`demo`, or an NDJSON file"));
        }
        (rec, Some(args.path.clone()), Some(args.path.clone()))
    } else {
        let parent = args.path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        });
        let is_recording = args
            .path
            .file_name()
            .is_some_and(|n| n == "recording.ndjson");
        (
            args.path.clone(),
            if is_recording { parent } else { None },
            None,
        )
    };
    // The run's own facts (command, exit code, notes) live beside the recording.
    let info = session_dir
        .as_deref()
        .and_then(report::read_session)
        .unwrap_or_else(|| SessionInfo::new("report"));
    let soak = soak_context(&info, &args)?;
    let mut session = Session::new(None, None, ViewMode::Quiet, info.clone());
    session.soak = soak;
    ingest::read_file_lines(&recording, |ev| session.handle(ev))
        .map_err(|e| CliError::io(format!("cannot read {}", recording.display()), e))?;
    // Keep the recorded times, not the time of this re-rendering.
    session.info = info;
    let rendered = session.build_report();
    if let Some(dir) = args.out.clone().or(default_out) {
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
        report::write_files(&dir, &rendered)
            .and_then(|_| report::write_soak_files(&dir, &rendered, &session.store))
            .map_err(|e| {
                CliError::io(format!("cannot write the report into {}", dir.display()), e)
            })?;
    }
    if let Some(path) = &args.pprof {
        let samples = crate::export::write_pprof(path, &session.store, moment_of(&rendered))?;
        crate::commands::print_stderr(&format!(
            "leakscope: pprof profile of {samples} call sites written to {} (`go tool pprof -top {}`)\n",
            path.display(),
            path.display()
        ));
    }
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&rendered).unwrap_or_default() + "\n"));
    } else {
        print_stdout(&report::render_text(&rendered));
    }
    // A soak recording exits like the soak did: 0 pass, 1 leak or regression, 2 error.
    Ok(crate::soak::exit_code_of(&rendered))
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
        unix_ms: last_record
            .or(rendered.session.ended_unix_ms)
            .unwrap_or(rendered.generated_unix_ms),
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
                    settings
                        .baseline
                        .as_ref()
                        .map(|b| b.display().to_string())
                        .unwrap_or_default()
                ));
                settings.baseline = None;
            }
        }
    }
    let ctx = crate::soak::Context::new(settings)?;
    Ok(Some(ctx))
}
