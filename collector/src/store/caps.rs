//! The store's caps: how many series, stacks, producers, statuses and notes are kept, the
//! longest location kept, and what keeping one more series costs against the memory budget.
//! Whatever a cap drops is counted and reported.

/// Sites tracked per producer; beyond it the smallest absent series are evicted.
pub const MAX_SERIES_PER_PRODUCER: usize = 4000;

/// Distinct stacks kept per producer.
pub const MAX_STACKS_PER_PRODUCER: usize = 200_000;

pub const MAX_STATUS_KEPT: usize = 50;

pub const MAX_FULL_GCS_KEPT: usize = 10_000;

pub const MAX_DEGRADED_KEPT: usize = 20;

pub const MAX_SKIP_EXAMPLES: usize = 5;

pub const MAX_NOTES: usize = 100;

/// PROTOCOL.md: a summary lists at most this many sites unless the hello's config says otherwise.
pub const DEFAULT_MAX_SITES: usize = 1000;

/// Producers (the agent or the shim of one process) per session: a fleet of 64 workers with
/// both on one `listen`. Records of more are dropped, counted and reported (pids are
/// self-declared); the store's memory budget is shared by all of them.
pub const MAX_PRODUCERS: usize = 128;

/// Entries kept of the lists and maps of a producer's latest state that the protocol bounds
/// but a stranger might not (GC generations, recent GCs, GC reasons, hello settings).
pub const MAX_GENS: usize = 8;

pub const MAX_RECENT_GCS: usize = 256;

pub const MAX_GC_REASONS: usize = 64;

pub const MAX_CONFIG_ENTRIES: usize = 64;

/// Longest `File:line` kept for a site.
pub const MAX_LOCATION_BYTES: usize = 512;

/// What keeping one more series costs: its points at their largest, its names, a location.
pub fn series_cost(points: usize, names: &[&str]) -> usize {
    points + 256 + MAX_LOCATION_BYTES + names.iter().map(|n| n.len()).sum::<usize>()
}

pub fn capped_location(l: Option<String>) -> Option<String> {
    l.filter(|l| !l.is_empty()).map(|mut l| {
        if l.len() > MAX_LOCATION_BYTES {
            let mut end = MAX_LOCATION_BYTES;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l.truncate(end);
            l.push('…');
        }
        l
    })
}
