//! Primitive types of the CoreCLR profiling API as laid out on Linux x64 (PAL).
//!
//! `HRESULT`/`BOOL` are 32-bit signed, `ULONG`/`DWORD` 32-bit unsigned, every `*ID` is
//! pointer-sized, and `WCHAR` is UTF-16.

#![allow(non_camel_case_types, clippy::upper_case_acronyms)]

pub type HRESULT = i32;
pub type BOOL = i32;
pub type ULONG = u32;
pub type DWORD = u32;
pub type WCHAR = u16;
pub type ObjectID = usize;
pub type ClassID = usize;
pub type FunctionID = usize;
pub type ModuleID = usize;
pub type ThreadID = usize;
pub type mdToken = u32;
pub type ObjectHandleID = usize;
pub type EventPipeSession = u64;
pub type EventPipeProvider = usize;

pub const S_OK: HRESULT = 0;
pub const S_FALSE: HRESULT = 1;
pub const E_NOINTERFACE: HRESULT = 0x8000_4002_u32 as i32;
pub const E_NOTIMPL: HRESULT = 0x8000_4001_u32 as i32;
pub const E_POINTER: HRESULT = 0x8000_4003_u32 as i32;
pub const E_FAIL: HRESULT = 0x8000_4005_u32 as i32;
/// The runtime has not finished starting; the profiler may try again once it has.
pub const CORPROF_E_RUNTIME_UNINITIALIZED: HRESULT = 0x8013_1371_u32 as i32;
pub const CLASS_E_NOAGGREGATION: HRESULT = 0x8004_0110_u32 as i32;
pub const CLASS_E_CLASSNOTAVAILABLE: HRESULT = 0x8004_0111_u32 as i32;
/// Returned from `Initialize` to decline loading without an error.
pub const CORPROF_E_PROFILER_CANCEL_ACTIVATION: HRESULT = 0x8013_1375_u32 as i32;

pub fn succeeded(hr: HRESULT) -> bool {
    hr >= 0
}

/// A COM GUID in its in-memory layout.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GUID {
    pub data1: u32,
    pub data2: u16,
    pub data3: u16,
    pub data4: [u8; 8],
}

impl GUID {
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        GUID { data1, data2, data3, data4 }
    }
}

impl std::fmt::Debug for GUID {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

/// `COR_PRF_GC_GENERATION_RANGE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationRange {
    pub generation: u32,
    pub range_start: ObjectID,
    pub range_length: usize,
    pub range_length_reserved: usize,
}

/// `COR_PRF_NONGC_HEAP_RANGE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NonGcHeapRange {
    pub range_start: ObjectID,
    pub range_length: usize,
    pub range_length_reserved: usize,
}

/// `COR_PRF_EVENTPIPE_PROVIDER_CONFIG`.
#[repr(C)]
pub struct EventPipeProviderConfig {
    pub provider_name: *const WCHAR,
    pub keywords: u64,
    pub logging_level: u32,
    pub filter_data: *const WCHAR,
}

/// Event-mask bits (`COR_PRF_MONITOR`, low word) that leakscope uses.
pub mod monitor {
    pub const ENABLE_OBJECT_ALLOCATED: u32 = 0x0080_0000;
    pub const OBJECT_ALLOCATED: u32 = 0x0000_0100;
    pub const ENABLE_STACK_SNAPSHOT: u32 = 0x1000_0000;
    /// `ClassLoadStarted/Finished`, `ClassUnloadStarted/Finished`.
    pub const CLASS_LOADS: u32 = 0x0000_0002;
    pub const MODULE_LOADS: u32 = 0x0000_0004;
    /// GC callbacks, among them `RootReferences2` (also a heap walk at the end of each GC).
    pub const GC: u32 = 0x0000_0080;
}

/// `COR_PRF_GC_ROOT_KIND` and `COR_PRF_GC_ROOT_FLAGS`.
pub mod root {
    pub const OTHER: u32 = 0;
    pub const STACK: u32 = 1;
    pub const FINALIZER: u32 = 2;
    pub const HANDLE: u32 = 3;
    pub const FLAG_PINNING: u32 = 0x1;
    pub const FLAG_WEAKREF: u32 = 0x2;
}

/// `CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE`: GC callbacks asked for after startup while
/// background GC is on.
pub const CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE: HRESULT = 0x8013_1376_u32 as i32;
/// `CORPROF_E_SUSPENSION_IN_PROGRESS`: the runtime cannot be suspended (`SuspendRuntime`,
/// `EnumerateGCHeapObjects`) while a suspension is already under way (its own GC's).
pub const CORPROF_E_SUSPENSION_IN_PROGRESS: HRESULT = 0x8013_1388_u32 as i32;

/// Event-mask bits (`COR_PRF_HIGH_MONITOR`, high word).
pub mod high_monitor {
    pub const BASIC_GC: u32 = 0x10;
    pub const EVENT_PIPE: u32 = 0x80;
}

/// `COR_PRF_HANDLE_TYPE`.
pub const HANDLE_TYPE_WEAK: u32 = 1;

/// Decodes a NUL-terminated or length-bounded UTF-16 buffer.
pub fn utf16_to_string(buf: &[WCHAR]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(&buf[..end])
}

/// Encodes `s` as NUL-terminated UTF-16.
pub fn to_utf16z(s: &str) -> Vec<WCHAR> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}
