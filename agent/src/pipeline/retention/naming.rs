//! Naming for retention paths and peek: the `Namer` the pipeline's name caches provide, how a
//! requested type name matches the runtime's, and counts written short.

use std::sync::Arc;

use crate::clr::types::{ClassID, FunctionID};

/// `1.13 M`, `41 k`, `512`.
pub fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.0} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Names for classes and methods, from the pipeline's caches.
pub trait Namer {
    fn class(&mut self, class: ClassID) -> Arc<str>;
    fn function(&mut self, function: FunctionID) -> Arc<str>;
}

impl<R: crate::pipeline::names::Runtime> Namer for crate::pipeline::names::Names<R> {
    fn class(&mut self, class: ClassID) -> Arc<str> {
        crate::pipeline::names::Names::class(self, class)
    }
    fn function(&mut self, function: FunctionID) -> Arc<str> {
        crate::pipeline::names::Names::function(self, function).display
    }
}

/// A requested name matches the runtime's full name, or, for a name without a namespace, its
/// last part (`Subscriber` matches `LeakApp.Subscriber`).
pub fn type_matches(wanted: &str, name: &str) -> bool {
    if wanted == name {
        return true;
    }
    if wanted.contains('.') || name.contains('<') {
        return false;
    }
    name.rsplit('.').next() == Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_fully_or_by_their_last_part() {
        assert!(type_matches("LeakApp.Subscriber", "LeakApp.Subscriber"));
        assert!(type_matches("Subscriber", "LeakApp.Subscriber"));
        assert!(!type_matches("Subscriber", "LeakApp.SubscriberList"));
        assert!(!type_matches("App.Subscriber", "LeakApp.Subscriber"));
        assert!(!type_matches("String>", "System.Collections.Generic.List<System.String>"));
    }
}
