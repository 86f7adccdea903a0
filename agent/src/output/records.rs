//! The agent's entry point to the wire protocol's records (docs/PROTOCOL.md): the types are the
//! protocol crate's, the same the collector reads with; here only how the agent frames a line.
//! Records are built and encoded on the agent's own thread, never on an allocating thread.

pub use leakscope_protocol::records::*;

/// One line of record `kind` from this process's agent.
pub fn line<T: serde::Serialize>(kind: &'static str, body: &T) -> String {
    encode_line(kind, leakscope_protocol::version::SOURCE_AGENT, std::process::id(), body)
}

/// A `status` record's body.
pub fn status(level: &str, message: &str) -> Status {
    Status { level: Some(level.to_string()), message: message.to_string(), ..Status::default() }
}

/// A `status` warning that says what will not come (`UNAVAILABLE_CENSUS`, …), for the collector
/// to act on without reading the words.
pub fn unavailable(what: &str, message: &str) -> Status {
    Status { unavailable: Some(what.to_string()), ..status("warn", message) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_status_line_of_this_agent_with_when_to_retry() {
        let refusal = Status {
            refused: Some("census".to_string()),
            retry_after_ms: Num::some(2400u64),
            ..status("warn", "refused a census command")
        };
        let text = line("status", &refusal);
        assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["v"].as_u64(), v["type"].as_str(), v["source"].as_str()),
            (Some(1), Some("status"), Some("agent"))
        );
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(
            (v["level"].as_str(), v["refused"].as_str(), v["retry_after_ms"].as_u64()),
            (Some("warn"), Some("census"), Some(2400))
        );
        // Fields the agent has no value for are left out, not sent as null.
        assert!(v.get("t_ms").is_none() && v.get("unavailable").is_none(), "{text}");
        assert!(unknown_fields(text.trim_end()).unwrap().is_empty());
    }

    #[test]
    fn a_census_that_will_not_come_says_so_in_a_field_the_collector_reads_back() {
        for (what, for_good) in [(UNAVAILABLE_CENSUS, true), (UNAVAILABLE_CENSUS_REQUEST, false)] {
            let text = line("status", &unavailable(what, "the runtime refused the walk"));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!((v["level"].as_str(), v["unavailable"].as_str()), (Some("warn"), Some(what)));
            let Ok((_, Record::Status(back))) = decode(v) else { panic!("{text}") };
            assert_eq!((back.census_given_up(), back.census_not_coming()), (for_good, true), "{text}");
        }
    }
}
