//! The run report: `report.json` (schema `leakscope.report/1`, documented in docs/CLI.md),
//! `report.txt`, and for a soak `junit.xml` and `report.html`.
//!
//! The report is built once from the store into [`Report`]; the texts are rendered from that
//! model, so all files always agree. Re-rendering a recording gives the same report, because
//! the run's own facts (command, exit, notes) are kept beside it in `session.json`
//! ([`crate::session_info`]).
//!
//! * [`model`] — the schema types;
//! * [`sufficiency`] — whether the sites had the points to say "no leak suspect";
//! * [`build`] — from the store (and the soak verdicts, [`crate::soak`]) to the model;
//! * [`text`] — report.txt and the end-of-session summaries;
//! * [`html`], [`junit`] — a soak's report.html and junit.xml;
//! * [`files`] — writing them all, and session.json.

pub mod build;
pub mod files;
pub mod html;
pub mod junit;
pub mod model;
pub mod sufficiency;
pub mod text;

pub use build::{build, build_with_soak, growing_managed_types};
pub use files::{Written, read_session, write_files, write_session, write_soak_files};
pub use model::{
    DataSufficiency, Finding, Generator, Message, NativeTotalsReport, ProcessReport, ProducerReport, REPORT_SCHEMA,
    Report, RetentionCost, SessionSection, SiteReport, exit_code_of,
};
pub use text::{
    format_p, frames_from_site, gc_text, health_text, heap_parts, render_soak_summary, render_summary, render_text,
};

#[cfg(test)]
mod soak_tests;
#[cfg(test)]
pub(crate) mod tests;
