//! Runtime events (provider `Microsoft-Windows-DotNETRuntime`) that leakscope subscribes to,
//! and parsers for their payloads. Payloads are packed little-endian with no padding; strings
//! are inline NUL-terminated UTF-16. Layouts are from the runtime's event manifest
//! (`ClrEtwAll.man`) as mirrored by `NativeRuntimeEventSource`.

pub const RUNTIME_PROVIDER: &str = "Microsoft-Windows-DotNETRuntime";

pub mod keyword {
    /// GC events: GCStart, GCEnd, GCHeapStats, suspension, and (at Verbose) AllocationTick.
    pub const GC: u64 = 0x1;
    /// .NET 10+: randomized allocation sampling (AllocationSampled).
    pub const ALLOCATION_SAMPLING: u64 = 0x800_0000_0000;
    /// A bit no event of the runtime provider carries: a session asking only for it gets nothing.
    pub const UNUSED: u64 = 0x4000_0000_0000_0000;
}

pub mod level {
    pub const CRITICAL: u32 = 1;
    pub const INFORMATIONAL: u32 = 4;
    pub const VERBOSE: u32 = 5;
}

pub mod id {
    pub const GC_START: u32 = 1;
    pub const GC_END: u32 = 2;
    pub const GC_RESTART_EE_END: u32 = 3;
    pub const GC_HEAP_STATS: u32 = 4;
    pub const GC_SUSPEND_EE_BEGIN: u32 = 9;
    pub const GC_ALLOCATION_TICK: u32 = 10;
    pub const ALLOCATION_SAMPLED: u32 = 303;
}

/// Where a sampled object was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapKind {
    Small,
    Large,
    Pinned,
}

impl HeapKind {
    fn from_raw(kind: u32) -> HeapKind {
        match kind {
            1 => HeapKind::Large,
            2 => HeapKind::Pinned,
            _ => HeapKind::Small,
        }
    }
}

/// One sampled allocation, from AllocationSampled (.NET 10+) or AllocationTick (older).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationEvent {
    /// The object's MethodTable, which is its ClassID in CoreCLR.
    pub type_id: usize,
    /// The object's address. Its header may not be initialised yet when the event fires.
    pub address: usize,
    pub size: u64,
    pub heap: HeapKind,
    /// AllocationTick only: bytes allocated since the previous tick, which this sample stands for.
    pub amount_since_last: u64,
}

/// GCStart_V2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcStart {
    pub count: u32,
    pub depth: u32,
    pub reason: u32,
    /// 0 blocking outside a background GC, 1 background, 2 blocking during a background GC.
    pub kind: u32,
}

/// GCHeapStats_V2: generation sizes after a GC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    pub gen0: u64,
    pub gen1: u64,
    pub gen2: u64,
    pub loh: u64,
    pub poh: u64,
    pub gc_handles: u32,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let out = self.data.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes::<2>().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
    /// Skips a NUL-terminated UTF-16 string.
    fn skip_utf16z(&mut self) -> Option<()> {
        loop {
            if self.u16()? == 0 {
                return Some(());
            }
        }
    }
    fn rest(&self) -> &'a [u8] {
        &self.data[self.at.min(self.data.len())..]
    }
}

fn u64_at_end(data: &[u8], from_end: usize) -> Option<u64> {
    let start = data.len().checked_sub(from_end)?;
    Some(u64::from_le_bytes(data.get(start..start + 8)?.try_into().ok()?))
}

// Every parser checks the event's version and the payload's size against the layout of that
// version before it reads a field; a mismatch is `None`, which the caller skips and counts.
// (AllocationSampled's Address is written to, so its layout is checked exactly.)

/// AllocationSampled v0: u32 AllocationKind, u16 ClrInstanceID, ptr TypeID, UTF-16z TypeName,
/// [u32 HeapIndex in some builds], ptr Address, u64 ObjectSize, u64 SampledByteOffset. After
/// the name exactly 24 bytes (28 with HeapIndex) must remain; the three trailing fields are read
/// from the end. Any other version or size is refused.
pub fn parse_allocation_sampled(version: u32, data: &[u8]) -> Option<AllocationEvent> {
    if version != 0 {
        return None;
    }
    let mut r = Reader::new(data);
    let kind = r.u32()?;
    let _clr_instance = r.u16()?;
    let type_id = r.u64()? as usize;
    r.skip_utf16z()?;
    let tail = r.rest();
    if tail.len() != 24 && tail.len() != 28 {
        return None;
    }
    let address = u64_at_end(tail, 24)? as usize;
    // An object starts on a pointer boundary; anything else is not an address to write to.
    if address == 0 || address % std::mem::size_of::<usize>() != 0 {
        return None;
    }
    Some(AllocationEvent {
        type_id,
        address,
        size: u64_at_end(tail, 16)?,
        heap: HeapKind::from_raw(kind),
        amount_since_last: 0,
    })
}

/// GCAllocationTick_V4: u32 AllocationAmount, u32 AllocationKind, u16 ClrInstanceID,
/// u64 AllocationAmount64, ptr TypeID, UTF-16z TypeName, u32 HeapIndex, ptr Address,
/// u64 ObjectSize. Older versions lack Address/ObjectSize and are not usable for tracking; later
/// ones may append fields, so at least (V4: exactly) 20 bytes must follow the name.
pub fn parse_allocation_tick(version: u32, data: &[u8]) -> Option<AllocationEvent> {
    if version < 4 {
        return None;
    }
    let mut r = Reader::new(data);
    let _amount32 = r.u32()?;
    let kind = r.u32()?;
    let _clr_instance = r.u16()?;
    let amount = r.u64()?;
    let type_id = r.u64()? as usize;
    r.skip_utf16z()?;
    let tail = r.rest().len();
    if tail < 20 || (version == 4 && tail != 20) {
        return None;
    }
    let _heap_index = r.u32()?;
    let address = r.u64()? as usize;
    let size = r.u64()?;
    Some(AllocationEvent { type_id, address, size, heap: HeapKind::from_raw(kind), amount_since_last: amount })
}

/// GCStart_V1/V2: u32 Count, u32 Depth, u32 Reason, u32 Type, u16 ClrInstanceID
/// (V2: u64 ClientSequenceNumber). V0 has no Depth and is refused.
pub fn parse_gc_start(version: u32, data: &[u8]) -> Option<GcStart> {
    if version < 1 || data.len() < 18 {
        return None;
    }
    let mut r = Reader::new(data);
    Some(GcStart { count: r.u32()?, depth: r.u32()?, reason: r.u32()?, kind: r.u32()? })
}

/// GCEnd_V0/V1: u32 Count, u32 Depth (V1: u16 ClrInstanceID). Returns (count, depth).
pub fn parse_gc_end(_version: u32, data: &[u8]) -> Option<(u32, u32)> {
    let mut r = Reader::new(data);
    Some((r.u32()?, r.u32()?))
}

/// GCHeapStats_V1/V2: (u64 GenerationSize, u64 TotalPromotedSize) for gen0..LOH, u64
/// FinalizationPromotedSize, u64 FinalizationPromotedCount, u32 PinnedObjectCount,
/// u32 SinkBlockCount, u32 GCHandleCount, u16 ClrInstanceID (94 bytes), then (V2) u64
/// GenerationSize4 (POH), u64 TotalPromotedSize4 (110 bytes). V0 (no ClrInstanceID) is refused.
pub fn parse_heap_stats(version: u32, data: &[u8]) -> Option<HeapStats> {
    if version < 1 || data.len() < 94 || (version >= 2 && data.len() < 110) {
        return None;
    }
    let mut r = Reader::new(data);
    let gen0 = r.u64()?;
    let _ = r.u64()?;
    let gen1 = r.u64()?;
    let _ = r.u64()?;
    let gen2 = r.u64()?;
    let _ = r.u64()?;
    let loh = r.u64()?;
    let _ = r.u64()?;
    let _finalization_promoted_size = r.u64()?;
    let _finalization_promoted_count = r.u64()?;
    let _pinned = r.u32()?;
    let _sink_blocks = r.u32()?;
    let gc_handles = r.u32()?;
    let _clr_instance = r.u16()?;
    let poh = if version >= 2 { r.u64()? } else { 0 };
    Some(HeapStats { gen0, gen1, gen2, loh, poh, gc_handles })
}

/// Names of `GCStart` reasons (the runtime's `gc_reason` enum).
pub fn gc_reason_name(reason: u32) -> &'static str {
    match reason {
        0 => "AllocSmall",
        1 => "Induced",
        2 => "LowMemory",
        3 => "Empty",
        4 => "AllocLarge",
        5 => "OutOfSpaceSOH",
        6 => "OutOfSpaceLOH",
        7 => "InducedNotForced",
        8 => "Internal",
        9 => "InducedLowMemory",
        10 => "InducedCompacting",
        11 => "LowMemoryHost",
        12 => "PMFullGC",
        13 => "LowMemoryHostBlocking",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn allocation_sampled_parses_with_and_without_heap_index() {
        for heap_index in [None, Some(3u32)] {
            let mut p = Vec::new();
            p.extend(1u32.to_le_bytes());
            p.extend(7u16.to_le_bytes());
            p.extend(0x7f00_1234u64.to_le_bytes());
            p.extend(utf16z(""));
            if let Some(h) = heap_index {
                p.extend(h.to_le_bytes());
            }
            p.extend(0x1000_2000u64.to_le_bytes());
            p.extend(90_000u64.to_le_bytes());
            p.extend(42u64.to_le_bytes());
            let e = parse_allocation_sampled(0, &p).unwrap();
            assert_eq!(e.type_id, 0x7f00_1234);
            assert_eq!(e.address, 0x1000_2000);
            assert_eq!(e.size, 90_000);
            assert_eq!(e.heap, HeapKind::Large);
        }
    }

    fn allocation_sampled(name: &str, tail: &[u64]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(0u32.to_le_bytes());
        p.extend(7u16.to_le_bytes());
        p.extend(0x7f00_1234u64.to_le_bytes());
        p.extend(utf16z(name));
        for v in tail {
            p.extend(v.to_le_bytes());
        }
        p
    }

    #[test]
    fn truncated_payloads_are_rejected_not_misread() {
        assert_eq!(parse_allocation_sampled(0, &[1, 2, 3]), None);
        assert_eq!(parse_allocation_tick(4, &[0; 10]), None);
        assert_eq!(parse_gc_start(2, &[0; 6]), None);
        assert_eq!(parse_gc_end(1, &[0; 6]), None);
        assert_eq!(parse_heap_stats(2, &[0; 40]), None);
        // Every prefix of a good AllocationSampled payload is refused.
        let good = allocation_sampled("System.String", &[0x1000, 24, 0]);
        assert!(parse_allocation_sampled(0, &good).is_some());
        for len in 0..good.len() {
            assert_eq!(parse_allocation_sampled(0, &good[..len]), None, "prefix of {len} bytes");
        }
    }

    /// The Address of an AllocationSampled event is written to: a payload whose layout is not
    /// exactly the known one, or of another version, must never yield one.
    #[test]
    fn allocation_sampled_of_another_version_or_size_is_refused() {
        let good = allocation_sampled("App.Order", &[0x1000, 24, 0]);
        assert_eq!(parse_allocation_sampled(0, &good).map(|e| e.address), Some(0x1000));
        assert_eq!(parse_allocation_sampled(1, &good), None, "unknown version");
        let mut longer = good.clone();
        longer.extend(0u64.to_le_bytes());
        assert_eq!(parse_allocation_sampled(0, &longer), None, "8 bytes too many");
        let mut odd = good.clone();
        odd.push(0);
        assert_eq!(parse_allocation_sampled(0, &odd), None, "1 byte too many");
        let unterminated: Vec<u8> =
            good[..14].iter().copied().chain("Name".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(parse_allocation_sampled(0, &unterminated), None, "type name without its NUL");
        assert_eq!(parse_allocation_sampled(0, &allocation_sampled("A", &[0x1003, 24, 0])), None, "misaligned address");
        assert_eq!(parse_allocation_sampled(0, &allocation_sampled("A", &[0, 24, 0])), None, "null address");
    }

    #[test]
    fn gc_events_of_unknown_layouts_are_refused() {
        let mut start_v2 = Vec::new();
        for v in [7u32, 2, 1, 0] {
            start_v2.extend(v.to_le_bytes());
        }
        start_v2.extend(1u16.to_le_bytes());
        start_v2.extend(0u64.to_le_bytes());
        assert_eq!(parse_gc_start(2, &start_v2).map(|s| (s.count, s.depth, s.reason)), Some((7, 2, 1)));
        assert_eq!(parse_gc_start(0, &start_v2), None, "V0 has no Depth");
        let stats = [0u8; 110];
        assert!(parse_heap_stats(2, &stats).is_some());
        assert!(parse_heap_stats(1, &stats[..94]).is_some());
        assert_eq!(parse_heap_stats(2, &stats[..94]), None, "V2 without its POH fields");
        assert_eq!(parse_heap_stats(0, &stats), None);
    }

    #[test]
    fn allocation_tick_v4_parses() {
        let mut p = Vec::new();
        p.extend(100_000u32.to_le_bytes());
        p.extend(0u32.to_le_bytes());
        p.extend(1u16.to_le_bytes());
        p.extend(100_123u64.to_le_bytes());
        p.extend(0xABCDu64.to_le_bytes());
        p.extend(utf16z("System.String"));
        p.extend(0u32.to_le_bytes());
        p.extend(0x5000u64.to_le_bytes());
        p.extend(64u64.to_le_bytes());
        let e = parse_allocation_tick(4, &p).unwrap();
        assert_eq!((e.type_id, e.address, e.size, e.amount_since_last), (0xABCD, 0x5000, 64, 100_123));
        assert_eq!(parse_allocation_tick(3, &p), None);
        let mut v5 = p.clone();
        v5.extend(9u64.to_le_bytes());
        assert_eq!(parse_allocation_tick(5, &v5).map(|e| e.address), Some(0x5000), "later versions append fields");
        assert_eq!(parse_allocation_tick(4, &v5), None, "V4 of the wrong size");
    }
}
