//! The preallocated tables the hooks' slow paths write into and the writer drains, published
//! once by `lifecycle.rs` before the shim is enabled and never freed.

use core::sync::atomic::{AtomicPtr, Ordering};

use crate::live::LiveTable;
use crate::mmaps::MmapTable;
use crate::stack_table::StackTable;

pub(crate) struct Tables {
    pub(crate) live: LiveTable,
    pub(crate) stacks: StackTable,
    pub(crate) mmaps: Option<MmapTable>,
    pub(crate) mean_bytes: u64,
    pub(crate) max_depth: usize,
}

static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());

#[inline(always)]
pub(crate) fn tables() -> Option<&'static Tables> {
    let p = TABLES.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: set once from a leaked Box (`install`) before ENABLED; never freed.
    Some(unsafe { &*p })
}

/// Publishes the tables for the life of the process (leaked on purpose: hooks may run until
/// the very end).
pub(crate) fn install(tables: Tables) {
    TABLES.store(Box::into_raw(Box::new(tables)), Ordering::Release);
}
