//! `retention`: which references keep instances of given types alive (agent).

use serde::{Deserialize, Serialize};

use super::{Num, lenient};

/// `retention`: for each requested type, the shapes of the reference chains that keep its
/// instances alive, from a root (a named static field, a stack frame, a handle…).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Retention {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub elapsed_ms: Option<Num>,
    /// All the walks' pauses together; `max_pause_ms` the longest one.
    pub pause_ms: Option<Num>,
    pub max_pause_ms: Option<Num>,
    pub walks: Vec<RetentionWalk>,
    pub objects: Option<Num>,
    pub followed: Option<Num>,
    pub samples: Option<Num>,
    pub memory_bytes: Option<Num>,
    pub memory_budget_bytes: Option<Num>,
    pub time_budget_ms: Option<Num>,
    pub truncated: bool,
    pub truncated_by: Vec<String>,
    /// When truncated: how far the search got and what budget it would have needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_short: Option<String>,
    /// Static reference fields located, and how many the search met holding a value.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub statics: Option<RetentionStatics>,
    pub roots: Option<RetentionRoots>,
    pub error: Option<String>,
    pub types: Vec<RetentionType>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionWalk {
    pub pause_ms: Option<Num>,
    pub objects: Option<Num>,
    /// Objects followed after this walk, and sampled instances not yet traced to a root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub followed: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsettled: Option<Num>,
}

/// `retention.statics`: static reference fields of initialised classes located, those holding a
/// value in the last walk that could read them, and whether a GC moved objects meanwhile.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionStatics {
    pub fields: u64,
    pub with_value: u64,
    pub stale: bool,
}

/// `retention.types[].other`: the instances on the paths not listed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionOther {
    pub paths: u64,
    pub instances: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionRoots {
    pub reported: bool,
    /// Roots the GC reported (weak ones left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<Num>,
    /// `heap-dump` or `gc-callbacks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub pause_ms: Option<Num>,
    /// Why they were not reported, or were incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionType {
    pub type_name: String,
    pub matched: Vec<String>,
    pub instances: Option<Num>,
    pub bytes: Option<Num>,
    /// Instances followed (all, or a sample); path counts are then estimates.
    pub sampled: Option<Num>,
    /// Estimated instances whose path the search could not finish.
    pub unknown: Option<Num>,
    /// Instances the search's first walk met: the population the estimates scale to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walked: Option<Num>,
    /// Estimated instances collected while the search ran (on no path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected: Option<Num>,
    pub unreached: Option<Num>,
    pub paths: Vec<RetentionPath>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub other: Option<RetentionOther>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionPath {
    pub root: RetentionRoot,
    pub steps: Vec<RetentionStep>,
    pub instances: Option<Num>,
    pub bytes: Option<Num>,
    pub sampled: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<RetainedSize>,
}

/// What the path's first object of the application's own keeps alive by itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetainedSize {
    pub step: Option<i64>,
    pub type_name: String,
    pub bytes_per_instance: Option<Num>,
    pub bytes: Option<Num>,
    pub measured: Option<Num>,
    pub lower_bound: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionRoot {
    /// `static`; `stack`, `handle`, `finalizer`, `dependent` when the GC reported its roots;
    /// `other`; `unknown` (the search stopped before the path's end).
    pub kind: String,
    /// The static field (`Namespace.Type.Field`), or the method of a stack frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionStep {
    pub type_name: String,
    /// The field of the previous step's object holding this one (`[]` for an array element).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Further steps of this same type were folded into this one (lists, trees).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

impl Retention {
    /// The paths found for `type_name` (asked for by that name, or matched by it), most
    /// instances first.
    pub fn paths_for<'a>(&'a self, type_name: &'a str) -> impl Iterator<Item = &'a RetentionPath> + 'a {
        self.types
            .iter()
            .filter(move |t| t.type_name == type_name || t.matched.iter().any(|m| m == type_name))
            .flat_map(|t| t.paths.iter())
    }
}

impl Retention {
    /// The entry of the type asked for as `type_name` (or that matched it).
    pub fn type_entry(&self, type_name: &str) -> Option<&RetentionType> {
        self.types.iter().find(|t| t.type_name == type_name || t.matched.iter().any(|m| m == type_name))
    }
}

impl RetentionPath {
    /// Whether the search finished this path (its root is known, not cut short).
    pub fn finished(&self) -> bool {
        self.root.kind != "unknown"
    }

    /// `static LeakApp.Clock.Tick → System.EventHandler → System.Object[] (_invocationList) → …`;
    /// a path a budget cut short: `unknown (walk cut short: …) → …`.
    pub fn render(&self) -> String {
        let root = match (&self.root.name, &self.root.detail) {
            (Some(name), Some(detail)) if detail.starts_with("named by the type") => {
                format!("{} {name} (named by its type)", self.root.kind)
            }
            (Some(name), _) if self.root.kind == "stack" => format!("stack frame of {name}"),
            (Some(name), _) if self.root.kind == "thread-static" => format!("thread static {name}"),
            (Some(name), _) => format!("{} {name}", self.root.kind),
            (None, Some(detail)) if self.root.kind == "other" => format!("({detail})"),
            (None, Some(detail)) if self.root.kind == "unknown" => format!("unknown ({detail})"),
            (None, Some(detail)) if self.root.kind == "handle" => format!("{detail} handle"),
            _ => self.root.kind.clone(),
        };
        let mut out = root;
        for step in &self.steps {
            out.push_str(" → ");
            out.push_str(&step.type_name);
            if let Some(field) = &step.field {
                out.push_str(&format!(" ({field})"));
            }
            if step.repeated {
                out.push_str(" ×n");
            }
        }
        out
    }
}

impl RetentionRoot {
    /// A root of `kind`, with its name and detail where there are some.
    pub fn of(kind: &str, name: Option<&str>, detail: Option<&str>) -> RetentionRoot {
        RetentionRoot { kind: kind.to_string(), name: name.map(str::to_string), detail: detail.map(str::to_string) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread static's root reads as one, with its thread; a static and a stack frame as before.
    #[test]
    fn root_kinds_render_as_words() {
        let path = |kind: &str, name: &str| RetentionPath {
            root: RetentionRoot { kind: kind.into(), name: Some(name.into()), detail: None },
            steps: vec![RetentionStep { type_name: "LeakApp.Note".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(
            path("thread-static", "LeakApp.NoteKeeper.t_notes (thread 0x7bfe)").render(),
            "thread static LeakApp.NoteKeeper.t_notes (thread 0x7bfe) → LeakApp.Note"
        );
        assert_eq!(path("static", "LeakApp.Clock.Tick").render(), "static LeakApp.Clock.Tick → LeakApp.Note");
        assert_eq!(path("stack", "LeakApp.Run").render(), "stack frame of LeakApp.Run → LeakApp.Note");
    }
}
