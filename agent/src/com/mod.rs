//! What leakscope exposes to the runtime over COM: `DllGetClassObject`, the class factory, and
//! the profiler-callback object with its full vtable. Entry points here are thin: each goes
//! through [`crate::guard`] and hands off to the safe core (`lifecycle`, `capture`).

mod callback_vtable;
mod callbacks;
mod gc_roots;
mod object;
mod trampoline;

pub use object::DllGetClassObject;
