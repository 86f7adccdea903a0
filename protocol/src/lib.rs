//! leakscope's wire protocol (docs/PROTOCOL.md), owned in one place.
//!
//! - [`version`]: the protocol version and the limits every reader and writer agrees on;
//! - [`units`]: the one grammar for durations and sizes (decimal units; binary only when spelled
//!   `KiB`/`MiB`/`GiB`/`TiB`), as parsers that never allocate, and formatting helpers;
//! - [`records`] (feature `records`): the record types. The agent serialises them, the collector
//!   deserialises them, and the shim's hand-written lines are checked against them in tests.
//!
//! Layers: `version` and `units` use nothing; `records` uses both.

pub mod units;
pub mod version;

#[cfg(feature = "records")]
pub mod records;

pub use version::{MAX_LINE_BYTES, PROTOCOL_VERSION};
