//! A retention request: the collector's `retention` command (or `LEAKSCOPE_RETENTION`), with its
//! defaults and clamps.

use std::time::Duration;

const DEFAULT_MAX_PATHS: usize = 5;
const MAX_PATHS: usize = 100;
const MAX_TYPES: usize = 64;
const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(10);

/// What the collector asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub types: Vec<String>,
    pub max_paths: usize,
    pub time_budget: Duration,
    /// At most this much memory, within the agent's own limit.
    pub memory_budget: Option<usize>,
}

impl Request {
    pub fn new(types: Vec<String>) -> Request {
        Request { types, max_paths: DEFAULT_MAX_PATHS, time_budget: DEFAULT_TIME_BUDGET, memory_budget: None }
    }

    /// `{"cmd":"retention","types":["A","B"],"max_paths":5,"max_ms":10000,"max_memory_mb":64}`.
    pub fn from_command(command: &serde_json::Value) -> Result<Request, String> {
        let types = crate::pipeline::requested_types(command, "retention", MAX_TYPES)?;
        let mut request = Request::new(types);
        if let Some(n) = command.get("max_paths").and_then(|v| v.as_u64()) {
            request.max_paths = (n as usize).clamp(1, MAX_PATHS);
        }
        if let Some(ms) = command.get("max_ms").and_then(|v| v.as_u64()) {
            request.time_budget = Duration::from_millis(ms.clamp(100, 600_000));
        }
        if let Some(mb) = command.get("max_memory_mb").and_then(|v| v.as_u64()) {
            request.memory_budget = Some((mb.clamp(1, 1 << 20) as usize) << 20);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_defaults_and_clamps() {
        let r = Request::from_command(&serde_json::json!({"cmd":"retention","types":["LeakApp.Subscriber"," ",""]}))
            .unwrap();
        assert_eq!(r, Request::new(vec!["LeakApp.Subscriber".into()]));
        let r = Request::from_command(
            &serde_json::json!({"cmd":"retention","types":["A"],"max_paths":1000,"max_ms":5,"max_memory_mb":32}),
        )
        .unwrap();
        assert_eq!((r.max_paths, r.time_budget, r.memory_budget), (100, Duration::from_millis(100), Some(32 << 20)));
        assert!(Request::from_command(&serde_json::json!({"cmd":"retention"})).is_err());
        assert!(Request::from_command(&serde_json::json!({"cmd":"retention","types":[]})).is_err());
    }
}
