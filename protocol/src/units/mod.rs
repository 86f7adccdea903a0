//! The one grammar for durations and sizes, used by the collector, the agent and the shim.
//!
//! - Sizes: a number, then a unit. Decimal units everywhere: `B`, `kB` (`k`), `MB` (`M`), `GB` (`G`),
//!   `TB` (`T`) are powers of 1000; binary only when spelled `KiB`, `MiB`, `GiB`, `TiB` (or `Ki`…).
//!   So `1MB` is 1,000,000 bytes and `1MiB` 1,048,576, in every component.
//! - Durations: one or more number–unit pairs (`500ms`, `5s`, `2m`, `1h30m`, `1.5h`, `1d`), or a
//!   bare number of seconds.
//!
//! Units are matched without regard to ASCII case; spaces may separate a number from its unit.
//! The parsers ([`parse`]) never allocate: the shim runs them inside an `LD_PRELOAD` constructor,
//! before its allocator hooks may call into anything. The formatting helpers ([`format`]) build
//! `String`s and are for everyone else.

pub mod format;
pub mod parse;

pub use format::{format_bytes, format_clock, format_count, format_duration, format_rate_per_min};
pub use parse::{
    MAX_DURATION_SECS, UnitError, duration_unit_seconds, parse_bytes, parse_duration, parse_duration_ms,
    size_unit_bytes,
};
