//! The runtime's side of the profiling API: types, identifiers, and safe wrappers over the
//! COM interfaces CoreCLR gives us (`ICorProfilerInfo*`, `IMetaDataImport`), plus parsers for
//! the runtime events we subscribe to.

pub mod events;
pub mod gate;
pub mod guids;
pub mod metadata;
pub mod pdb;
pub mod profiler_info;
pub mod types;
pub mod vtable;
