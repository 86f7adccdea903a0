//! What leakscope exposes to the runtime over COM: `DllGetClassObject`, the class factory, and
//! the profiler-callback object with its full vtable. Entry points here are thin: each goes
//! through [`guard`] and hands off to the safe core in [`crate::agent`].

mod callbacks;
mod gc_roots;
pub mod guard;
mod object;
mod trampoline;
mod vtable;
pub mod walks;

pub use object::DllGetClassObject;
