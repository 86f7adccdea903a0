//! `peek`: a few instances of given types with their fields' values (agent).

use serde::{Deserialize, Serialize};

use super::Num;

/// `peek`: a few instances of each requested type, with their fields' values as the agent
/// rendered them (numbers, `null`, `"<Type>"`, `"System.Byte[1024]"`, `"<string, 9 chars>"`,
/// or a string's contents when asked for).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Peek {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_ms: Option<Num>,
    pub pause_ms: Option<Num>,
    pub strings: bool,
    /// String contents were asked for but the worker's owner has not allowed them: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strings_withheld: Option<String>,
    /// The walk could not happen (`types` then empty), or stopped at its time budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub types: Vec<PeekType>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekType {
    pub type_name: String,
    pub matched: Vec<String>,
    pub instances: Option<Num>,
    pub samples: Vec<PeekInstance>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekInstance {
    pub type_name: String,
    pub size: Option<Num>,
    pub fields: Vec<PeekField>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: serde_json::Value,
}
