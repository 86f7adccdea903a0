//! leakscope's CLR profiler agent.
//!
//! CoreCLR loads this library when `CORECLR_ENABLE_PROFILING=1`,
//! `CORECLR_PROFILER={E3F826A5-7C38-4392-A672-1BB85AF76D18}` and `CORECLR_PROFILER_PATH` point
//! at it. It samples allocations through the runtime's in-process EventPipe, walks the
//! allocating thread's stack, follows each sampled object with a weak handle, and streams
//! which (type, call site) pairs keep surviving garbage collections. See ARCHITECTURE.md.
//!
//! Layout: [`com`] is what the runtime calls (thin, guarded, unsafe entry points);
//! [`capture`] is the hot path inside those calls; [`pipeline`] is the agent's own thread;
//! [`output`] the socket/file writer; [`clr`] safe wrappers over the runtime's interfaces.

pub mod agent;
pub mod capture;
pub mod clr;
pub mod com;
pub mod config;
pub mod files;
pub mod guard;
pub mod lifecycle;
pub mod log;
pub mod memory;
pub mod output;
pub mod pipeline;
pub mod stop;
pub mod switch;

pub use com::DllGetClassObject;

/// Counts the agent's heap so its memory is bounded and reported.
#[global_allocator]
static ALLOCATOR: memory::CountingAllocator = memory::CountingAllocator;
