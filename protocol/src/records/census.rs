//! `census`: every live object counted by type, right after an induced full GC (agent).

use serde::{Deserialize, Serialize};

use super::{HeapSizes, Num};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CensusType {
    pub type_name: String,
    pub count: Option<Num>,
    pub bytes: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CensusOther {
    pub types: Option<Num>,
    pub count: Option<Num>,
    pub bytes: Option<Num>,
}

/// `census`: every live object counted by type on the whole heap after an induced full GC.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Census {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub pause_ms: Option<Num>,
    /// The induced full GC before the walk (agents since the census gained it).
    pub gc_ms: Option<Num>,
    /// The process's resident set right after, bytes: native memory at the same comparable point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<Num>,
    pub objects: Option<Num>,
    pub bytes: Option<Num>,
    pub unreadable: Option<Num>,
    /// Objects the walk met outside the heap as the GC left it, allocated after the GC and left
    /// out of the counts; absent when the agent could not tell (then they are counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_since_gc: Option<Num>,
    pub heap: Option<HeapSizes>,
    pub types: Vec<CensusType>,
    pub other: Option<CensusOther>,
}
