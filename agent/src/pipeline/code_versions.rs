//! Which compiled version (tier) of a method holds a code address, and where in it: what the
//! frame walk's classification (the version's prologue) and source lines (the offset in the
//! version's IL-to-native map) both need.
//!
//! The runtime gives a version's extent through `GetCodeInfo4`, a synchronous profiling call. It
//! refuses that call (`CORPROF_E_UNSUPPORTED_CALL_SEQUENCE`) on a thread it knows about that is
//! not inside a callback. The agent thread used to become known to it (by stopping an EventPipe
//! session itself; `clr/own_thread.rs` now keeps it unknown). Measured on alloc-bench then: in 3
//! of 5 runs every hot method stayed opaque to the frame walk and 85–90 % of the samples fell
//! back to `DoStackSnapshot`. So, should it happen again, without the extents the version holding an
//! address is the one starting nearest below it: two versions of one method never overlap, so
//! no other version of it starts between that one's start and the address. (The JIT does not
//! split methods into hot and cold parts on x64, so the offset is the distance from the start.)

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::FunctionID;

/// Largest method body the nearest-start rule trusts (the JIT's largest are far below).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Where `ip` is in a compiled version of its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The version's code start (what `GetNativeCodeStartAddresses` lists).
    pub start: usize,
    /// `ip`'s offset in the version's native code (chunks laid end to end).
    pub offset: usize,
    /// The version's first chunk, where its prologue is: its whole extent when the runtime gave
    /// it, else only the bytes up to `ip`, the ones known to be its code.
    pub first_chunk: (usize, usize),
}

/// Where `ip` is among `function`'s compiled versions.
pub fn locate(info: &ProfilerInfo, function: FunctionID, ip: usize) -> Option<Located> {
    let starts = info.native_code_starts(function).ok()?;
    let mut refused = false;
    for &start in &starts {
        let Ok(chunks) = info.code_chunks(start) else {
            refused = true;
            continue;
        };
        let mut preceding = 0usize;
        for chunk in &chunks {
            if (chunk.start..chunk.start + chunk.size).contains(&ip) {
                let first = chunks.first().map_or((chunk.start, chunk.size), |c| (c.start, c.size));
                return Some(Located { start, offset: preceding + (ip - chunk.start), first_chunk: first });
            }
            preceding += chunk.size;
        }
    }
    if !refused {
        return None;
    }
    let start = nearest_start_below(&starts, ip)?;
    Some(Located { start, offset: ip - start, first_chunk: (start, ip + 1 - start) })
}

/// The start nearest below `ip` (at most [`MAX_BODY_BYTES`] below it).
fn nearest_start_below(starts: &[usize], ip: usize) -> Option<usize> {
    starts.iter().copied().filter(|&s| s <= ip && ip - s < MAX_BODY_BYTES).max()
}

#[cfg(test)]
mod tests {
    use super::nearest_start_below;

    #[test]
    fn the_version_holding_an_address_is_the_one_starting_nearest_below_it() {
        // Tier 0 high in memory, tier 1 low: both orders.
        let starts = [0x7000_2000, 0x7000_0100];
        assert_eq!(nearest_start_below(&starts, 0x7000_2044), Some(0x7000_2000));
        assert_eq!(nearest_start_below(&starts, 0x7000_0180), Some(0x7000_0100));
        assert_eq!(nearest_start_below(&starts, 0x7000_0100), Some(0x7000_0100));
        // Below every start, or implausibly far above: not this method's code.
        assert_eq!(nearest_start_below(&starts, 0x7000_00ff), None);
        assert_eq!(nearest_start_below(&starts, 0x7000_2000 + (1 << 20)), None);
        assert_eq!(nearest_start_below(&[], 0x7000_0100), None);
    }
}
