//! The runtime's side of the profiling API: types, identifiers, and safe wrappers over the
//! COM interfaces CoreCLR gives us (`ICorProfilerInfo*`, `IMetaDataImport`), plus parsers for
//! the runtime events we subscribe to, and the callbacks its walks call (`walks.rs`).

pub mod com_call;
pub mod events;
pub mod gate;
pub mod guids;
pub mod metadata;
pub mod own_thread;
pub mod pdb;
pub mod profiler_info;
pub mod types;
pub mod walks;
