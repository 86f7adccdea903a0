//! What keeps a type alive, read from the agent's retention records in the store: the paths of
//! the latest record ([`KeptAliveBy`], with shares and what they retain) and the path whose
//! instances kept rising (the owner to fix). Shared by the run report and the soak verdicts.

use crate::protocol::Source;
use crate::store::Store;
use crate::units::{format_bytes, format_count};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct KeptAliveBy {
    /// `static LeakApp.Clock.Tick → System.EventHandler → …`; `unknown (walk cut short: …)`
    /// when a budget stopped the search before this path's root.
    pub path: String,
    /// Instances on it (estimated, when the agent followed a sample of them).
    pub instances: u64,
    /// Their share of all the type's instances (when the record says how many there are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// The search found the root (false: `unknown`, cut short).
    pub finished: bool,
    /// Their own (shallow) bytes.
    pub bytes: u64,
    /// What the path's first object of the application's own keeps alive by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<Retained>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retained {
    pub type_name: String,
    pub bytes_per_instance: u64,
    pub bytes: u64,
    /// Cut short: at least this much.
    pub lower_bound: bool,
}

impl From<&crate::protocol::RetentionPath> for KeptAliveBy {
    fn from(p: &crate::protocol::RetentionPath) -> KeptAliveBy {
        KeptAliveBy {
            path: p.render(),
            instances: p.instances.map_or(0, |n| n.u64()),
            share: None,
            finished: p.finished(),
            bytes: p.bytes.map_or(0, |n| n.u64()),
            retained: p.retained.as_ref().map(|r| Retained {
                type_name: r.type_name.clone(),
                bytes_per_instance: r.bytes_per_instance.map_or(0, |n| n.u64()),
                bytes: r.bytes.map_or(0, |n| n.u64()),
                lower_bound: r.lower_bound,
            }),
        }
    }
}

impl KeptAliveBy {
    /// The paths of a retention record for a type, with their shares; an unknown (cut short)
    /// path is kept among them however far down it ranks. A share is of the instances the walk
    /// met (`walked`, what the estimates add up to), not of the census's count, which the heap
    /// has moved away from by then (that only from an agent that does not say `walked`).
    pub fn of_type(r: &crate::protocol::Retention, type_name: &str, keep: usize) -> Vec<KeptAliveBy> {
        let total = r.type_entry(type_name).and_then(|t| t.walked.or(t.instances)).map(|n| n.u64()).filter(|&n| n > 0);
        let mut out: Vec<KeptAliveBy> = Vec::new();
        for (i, p) in r.paths_for(type_name).enumerate() {
            if i < keep || !p.finished() {
                let mut k = KeptAliveBy::from(p);
                k.share = total.map(|t| k.instances as f64 / t as f64);
                out.push(k);
            }
        }
        out
    }

    /// `static X → … (2 400 instances, 98 % of them; 77 KB shallow, 2.4 MB retained by X: 1 KB each)`
    pub fn line(&self) -> String {
        let mut o = format!("{} ({} instances", self.path, format_count(self.instances as f64));
        if let Some(share) = self.share {
            o.push_str(&format!(", {:.0} % of them", share * 100.0));
        }
        if let Some(r) = &self.retained {
            o.push_str(&format!(
                "; {} shallow, {}{} retained by {} ({}{} each)",
                format_bytes(self.bytes as f64),
                if r.lower_bound { "≥ " } else { "" },
                format_bytes(r.bytes as f64),
                short_type(&r.type_name),
                if r.lower_bound { "≥ " } else { "" },
                format_bytes(r.bytes_per_instance as f64)
            ));
        }
        o.push(')');
        o
    }
}

/// `LeakApp.PayloadSubscriber` → `PayloadSubscriber` (generic arguments kept).
fn short_type(name: &str) -> &str {
    let head = name.split('<').next().unwrap_or(name);
    match head.rfind('.') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// The latest retention record of a process's agent that answers for `type_name`.
pub fn latest_retention<'a>(store: &'a Store, pid: u32, type_name: &str) -> Option<&'a crate::protocol::Retention> {
    let producer = store.producers().find(|p| p.key.pid == pid && p.key.source == Source::Agent)?;
    producer.retention_history.iter().rev().map(|r| r.as_ref()).find(|r| r.type_entry(type_name).is_some())
}

/// The path of a managed type whose instances kept rising over the producer's retention records.
pub fn owner_to_fix(store: &Store, pid: u32, type_name: Option<&str>) -> Option<crate::path_growth::GrowingPath> {
    let producer = store.producers().find(|p| p.key.pid == pid && p.key.source == Source::Agent)?;
    crate::path_growth::growing_path(producer.retention_history.iter().map(|r| r.as_ref()), type_name?)
}

/// `kept alive by: …` lines: the main path; and, when a budget cut the search short, the share
/// whose path is unknown (with what would have been needed), never a guessed root.
pub fn kept_alive_lines(paths: &[KeptAliveBy]) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(top) = paths.first() else { return lines };
    lines.push(format!("kept alive by: {}", top.line()));
    if let Some(unknown) = paths[1..].iter().find(|k| !k.finished) {
        lines.push(format!("kept alive by: {}", unknown.line()));
    }
    let shown: u64 = top.instances + paths[1..].iter().find(|k| !k.finished).map_or(0, |k| k.instances);
    let others: u64 = paths.iter().map(|k| k.instances).sum::<u64>() - shown;
    let other_paths = paths.len() - 1 - paths[1..].iter().any(|k| !k.finished) as usize;
    if others > 0 {
        lines.push(format!(
            "(and {} more instances of the type on {} other paths, in report.json)",
            format_count(others as f64),
            other_paths
        ));
    }
    lines
}
