//! The small records: `stack`, `status` (a producer tells the user something changed) and
//! `bye` (the last line of a clean shutdown).

use serde::{Deserialize, Serialize};

use super::Num;

/// `stack`: a call stack, sent once per connection before the first record that names it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StackRecord {
    pub id: u64,
    #[serde(default)]
    pub frames: Vec<String>,
    /// `File:line` per frame where known (optional).
    #[serde(default)]
    pub lines: Vec<Option<String>>,
}

/// `status`: a producer tells the user something changed (degraded, reconnected, recovered).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Status {
    pub level: Option<String>,
    pub message: String,
    /// The shim's statuses carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_ms: Option<Num>,
    /// A refused pausing command (`census`, `retention`, `peek`), and when to send it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<Num>,
    /// What this status says will not come: [`UNAVAILABLE_CENSUS`] (the heap census is given up
    /// for good in this process) or [`UNAVAILABLE_CENSUS_REQUEST`] (the census asked for was
    /// not taken; ask again later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// `status.unavailable`: no heap census will come from this process.
pub const UNAVAILABLE_CENSUS: &str = "census";
/// `status.unavailable`: the census asked for will not come; a later request may be answered.
pub const UNAVAILABLE_CENSUS_REQUEST: &str = "census_request";

impl Status {
    /// The producer gave the heap census up for good.
    pub fn census_given_up(&self) -> bool {
        census_given_up(self.unavailable.as_deref(), &self.message)
    }

    /// A census asked for will not come (given up for good, or for that request).
    pub fn census_not_coming(&self) -> bool {
        census_not_coming(self.unavailable.as_deref(), &self.message)
    }
}

/// [`Status::census_given_up`] from a kept status's fields. Agents before `unavailable` said it
/// only in words, which are read then.
pub fn census_given_up(unavailable: Option<&str>, message: &str) -> bool {
    match unavailable {
        Some(what) => what == UNAVAILABLE_CENSUS,
        None => message.contains("census unavailable") && !message.contains("for this request"),
    }
}

/// [`Status::census_not_coming`] from a kept status's fields (older agents: from the words).
pub fn census_not_coming(unavailable: Option<&str>, message: &str) -> bool {
    match unavailable {
        Some(what) => what == UNAVAILABLE_CENSUS || what == UNAVAILABLE_CENSUS_REQUEST,
        None => message.contains("census unavailable"),
    }
}

/// `bye`: the last line when a producer shuts down cleanly, with why.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Bye {
    pub t_ms: Option<Num>,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(unavailable: Option<&str>, message: &str) -> Status {
        Status { unavailable: unavailable.map(str::to_string), message: message.to_string(), ..Status::default() }
    }

    #[test]
    fn the_field_decides_whatever_the_words_say() {
        let for_good = status(Some(UNAVAILABLE_CENSUS), "the heap cannot be counted here");
        assert!(for_good.census_given_up() && for_good.census_not_coming());
        let this_request = status(Some(UNAVAILABLE_CENSUS_REQUEST), "census unavailable, given up for good");
        assert!(!this_request.census_given_up() && this_request.census_not_coming());
        let other = status(Some("peek"), "census unavailable");
        assert!(!other.census_given_up() && !other.census_not_coming());
    }

    #[test]
    fn statuses_without_the_field_are_read_by_their_words() {
        let for_good = status(None, "heap census unavailable: given up after 5 refusals in a row");
        assert!(for_good.census_given_up() && for_good.census_not_coming());
        let this_request = status(None, "heap census unavailable for this request: the runtime is starting");
        assert!(!this_request.census_given_up() && this_request.census_not_coming());
        let other = status(None, "heap census skipped at this GC");
        assert!(!other.census_given_up() && !other.census_not_coming());
    }

    #[test]
    fn the_field_is_on_the_wire_only_when_set() {
        let text = serde_json::to_string(&status(Some(UNAVAILABLE_CENSUS), "m")).unwrap();
        assert!(text.contains(r#""unavailable":"census""#), "{text}");
        let text = serde_json::to_string(&status(None, "m")).unwrap();
        assert!(!text.contains("unavailable"), "{text}");
    }
}
