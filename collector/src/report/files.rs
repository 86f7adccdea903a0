//! Writing a session's files into its output directory: report.json, report.txt, for a soak
//! junit.xml and report.html, and session.json (read back by `leakscope report`).

use super::model::Report;
use super::text::render_text;
use super::{html, junit};
use crate::files::{Dir, FileError};
use crate::session_info::SessionInfo;
use crate::store::Store;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The files a session wrote into its output directory, and the ones it could not write (a
/// full disk, a link or FIFO planted there). A failure never stops the others, nor the summary.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub failed: Vec<FileError>,
}

impl Written {
    pub fn add(&mut self, result: Result<PathBuf, FileError>) {
        match result {
            Ok(p) => self.files.push(p),
            Err(e) => self.failed.push(e),
        }
    }

    /// Whether `name` was written (by this call, into that directory).
    pub fn has(&self, name: &str) -> bool {
        self.files.iter().any(|p| p.file_name().is_some_and(|n| n == name))
    }

    /// One line per file that could not be written, naming it and why (for stderr).
    pub fn render_failures(&self) -> String {
        let mut o = String::new();
        for e in &self.failed {
            let _ = writeln!(o, "leakscope: error: could not write {e}");
        }
        if self.failed.iter().any(|e| e.io_kind().is_some()) {
            let _ = writeln!(
                o,
                "  hint: nothing half-written was left; free some space (or pick another --out) and re-render with `leakscope report`"
            );
        }
        o
    }
}

/// Writes report.json and report.txt into `dir`.
pub fn write_files(dir: &Dir, report: &Report, written: &mut Written) {
    let json = serde_json::to_string_pretty(report).map(|mut j| {
        j.push('\n');
        j
    });
    match json {
        Ok(json) => written.add(dir.write_file("report.json", json.as_bytes())),
        Err(e) => written.add(Err(FileError {
            path: dir.join("report.json"),
            problem: crate::files::Problem::Io(std::io::Error::other(e)),
        })),
    }
    written.add(dir.write_file("report.txt", render_text(report).as_bytes()));
}

/// Soak sessions: junit.xml and the self-contained report.html (charts need the store).
pub fn write_soak_files(dir: &Dir, report: &Report, store: &Store, written: &mut Written) {
    if report.soak.is_none() {
        return;
    }
    written.add(dir.write_file("junit.xml", junit::render(report).as_bytes()));
    written.add(dir.write_file("report.html", html::render(report, store).as_bytes()));
}

pub fn write_session(dir: &Dir, session: &SessionInfo, written: &mut Written) {
    let mut json = serde_json::to_string_pretty(session).unwrap_or_default();
    json.push('\n');
    written.add(dir.write_file("session.json", json.as_bytes()));
}

/// session.json is small; anything this large is not one of ours.
const MAX_SESSION_BYTES: u64 = 16 << 20;

/// The session.json beside a recording (never through a link, never more than 16 MiB).
pub fn read_session(dir: &Path) -> Option<SessionInfo> {
    let text = crate::files::read_regular_nofollow(&dir.join("session.json"), MAX_SESSION_BYTES).ok()?;
    serde_json::from_slice(&text).ok()
}
