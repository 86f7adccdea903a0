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
