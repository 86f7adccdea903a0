//! Versioning: which protocol a line speaks, and the limits of a line.
//!
//! Fields may be added within a version; removing one or changing its meaning needs the next.

/// The `v` of every line. A reader skips (and counts) lines of a version it does not know.
pub const PROTOCOL_VERSION: u64 = 1;

/// Longest line a producer may send; longer ones are discarded and counted.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// `source` of the agent's lines (managed memory).
pub const SOURCE_AGENT: &str = "agent";
/// `source` of the shim's lines (native memory).
pub const SOURCE_SHIM: &str = "shim";
/// `source` of the lines the collector itself writes into a recording (`capture`).
pub const SOURCE_COLLECTOR: &str = "collector";

/// The record a producer sends first on every connection and file segment.
pub const HELLO: &str = "hello";
/// The record a producer sends last when it shuts down cleanly.
pub const BYE: &str = "bye";
