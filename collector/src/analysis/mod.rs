//! Growth analysis of time series. Pure functions, no I/O; nothing here knows the store.
//!
//! * [`stats`] — Theil–Sen, Mann–Kendall, Sen's interval, p-values;
//! * [`live`] — the per-interval verdict of `run`, `listen`, `tail` and `demo`
//!   ([`LiveVerdict`]: growing, rising, plateaued, steady, insufficient data);
//! * [`soak`] — the threshold-aware verdict of `soak` ([`SoakVerdict`]: leaking, plateaued,
//!   stable, inconclusive).
//!
//! Two vocabularies on purpose: the live view asks "is it growing?" every few seconds, a soak
//! asks "does it grow faster than the rule allows?" once, and may say "cannot tell yet".

pub mod live;
pub mod soak;
pub mod stats;

pub use live::{FullGcCheck, Growth, LiveVerdict, Thresholds, assess, check_across_full_gcs};
pub use soak::{SoakVerdict, Trend, TrendReason, TrendSettings, assess_trend};
pub use stats::{Point, sen_fit, theil_sen, trend_p_value};

#[cfg(test)]
pub(crate) mod synthetic;
#[cfg(test)]
mod tests;
