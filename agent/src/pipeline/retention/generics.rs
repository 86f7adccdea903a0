//! The generic classes' instantiations the runtime has loaded, for their statics: every
//! instantiation of `Registry<T>` has its own `Items`, and a static field of a generic class
//! can be located only through the instantiation's ClassID, which no heap walk or metadata
//! gives. `ClassLoadFinished` (`COR_PRF_MONITOR_CLASS_LOADS`, set at startup and on attach) hands
//! every loaded class to [`Loaded::on_load`], which keeps the generic ones (bounded);
//! `ClassUnloadStarted` (collectible assemblies) drops them again.
//!
//! An agent attached to a running process misses the classes loaded before it came.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::ClassID;

/// Most instantiations kept; further ones are counted.
pub const MAX_CLASSES: usize = 1 << 16;

pub struct Loaded {
    classes: Mutex<Vec<ClassID>>,
    dropped: AtomicU64,
}

pub static LOADED: Loaded = Loaded { classes: Mutex::new(Vec::new()), dropped: AtomicU64::new(0) };

impl Loaded {
    /// From `ClassLoadFinished`, on the loading thread (not during a GC).
    pub fn on_load(&self, info: &ProfilerInfo, class: ClassID) {
        let generic = info.class_info(class).is_ok_and(|c| !c.type_args.is_empty());
        if !generic {
            return;
        }
        let mut classes = self.classes.lock();
        if classes.len() < MAX_CLASSES {
            classes.push(class);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// From `ClassUnloadStarted`: the ClassID must not be used again.
    pub fn on_unload(&self, class: ClassID) {
        self.classes.lock().retain(|&c| c != class);
    }

    /// The instantiations loaded so far, and how many were not kept.
    pub fn snapshot(&self) -> (Vec<ClassID>, u64) {
        (self.classes.lock().clone(), self.dropped.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unloaded_classes_are_forgotten() {
        let l = Loaded { classes: Mutex::new(vec![1, 2, 3]), dropped: AtomicU64::new(0) };
        l.on_unload(2);
        assert_eq!(l.snapshot(), (vec![1, 3], 0));
    }
}
