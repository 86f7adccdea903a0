//! Soak verdicts: `leakscope soak` runs a worker with the agent inducing full GCs at fixed
//! points, then gives every managed type, call site and native subject a verdict — leaking,
//! plateaued, stable or inconclusive — with its growth rate (bytes per hour), a confidence
//! interval and the evidence, and turns the `--fail-on` rules into an exit code.
//!
//! Where the numbers come from (docs/PROTOCOL.md):
//!
//! * **types** — `census` records: exact live bytes per type right after each induced full GC.
//!   Low noise, no sampling, so even a drip of a few hundred bytes per second shows up in
//!   minutes. On runtimes without the census (.NET 8) the sampled `retained` rows are summed
//!   by type instead, and the report says so.
//! * **call sites** — `retained` records: sampled survivors of each full GC by (type, site).
//!   Sampling (about one object per 100 KiB allocated) makes them noisy and blind to slow
//!   drips, so a type verdict names the site when samples exist and says so when not.
//! * **native** — the shim's exact live bytes, and its sampled native sites.
//! * **memory totals** — RSS, the GC's heap size and live managed data side by side, to tell
//!   "the GC (or the allocator) kept memory" from "the application keeps objects".
//!
//! The statistics are in [`crate::analysis::soak`]; this module picks the series, applies the
//! rules, compares with a baseline and writes the verdicts into report.json (rendered with the
//! rest of the report by `report`). Its parts, from the bottom up:
//!
//! * [`model`] — the schema of the `soak` section, and the default rules;
//! * [`rules`], [`plan`], [`baseline`], [`evidence`] — `--fail-on` rules, the chosen GC period
//!   and warm-up, an earlier report to compare with, the words of a verdict;
//! * [`context`] — the settings with the rules parsed and the baseline loaded;
//! * [`candidates`] — the series to judge;
//! * [`judge`] — one subject's verdict; [`gate`] — sufficiency and materiality; [`memory`] —
//!   RSS, heap and live data side by side; [`timing`] — time to verdict;
//! * [`evaluate`] — the whole soak section; [`render`] — the progress line and the soak part of
//!   report.txt.

pub mod baseline;
pub mod candidates;
pub mod context;
pub mod evaluate;
pub mod evidence;
pub mod gate;
pub mod judge;
pub mod memory;
pub mod model;
pub mod plan;
pub mod render;
pub mod rules;
pub mod timing;

pub use crate::analysis::soak::SoakVerdict;
pub use crate::session_info::SoakSettings;
pub use candidates::warmup_end_ms;
pub use context::Context;
pub use evaluate::evaluate;
pub use evidence::{ci_text, clock, rate};
pub use judge::leaking_types;
pub use model::{
    Comparison, Counts, DEFAULT_GC_EVERY, DEFAULT_MANAGED_RULE, DEFAULT_RULE, DEFAULT_WARMUP_FRACTION, GrowingType,
    MEMORY_THRESHOLD_PER_HOUR, Measurement, MemoryLine, Outcome, ProcessMemory, Regression, RuleReport, SOAK_SCHEMA,
    SettingsReport, SiteRef, SoakReport, Subject, SubjectKind, Sufficiency,
};
pub use render::{progress_line, render_text};

#[cfg(test)]
pub(crate) mod tests;
