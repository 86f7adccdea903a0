//! The writer's protocol over an output kept in memory (the `Output` seam): what a new
//! connection gets first, what waits while there is none, and what a reconnection repeats.

use super::sink::Session;
use super::*;
use crate::live::LiveTable;
use crate::stack_table::StackTable;

/// Lines in memory, with a switch for "the collector is there".
struct Memory {
    up: bool,
    connected: bool,
    lines: Vec<String>,
    session: Session,
}

impl Memory {
    fn new() -> Memory {
        Memory {
            up: false,
            connected: false,
            lines: Vec::new(),
            session: Session { fresh: false, connects: 0, last_error: None },
        }
    }

    /// The lines sent since the last call, parsed.
    fn take(&mut self) -> Vec<serde_json::Value> {
        self.lines
            .drain(..)
            .map(|l| {
                assert!(l.ends_with('\n'), "one line per record: {l:?}");
                serde_json::from_str(l.trim_end()).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
            })
            .collect()
    }
}

impl Output for Memory {
    fn ensure(&mut self) -> Result<(), String> {
        if !self.up {
            self.connected = false;
            return Err("nobody listening".to_string());
        }
        if !self.connected {
            self.connected = true;
            self.session.fresh = true;
            self.session.connects += 1;
        }
        Ok(())
    }

    fn send(&mut self, line: &[u8], _deadline: u64) -> bool {
        if !self.connected {
            return false;
        }
        self.lines.push(String::from_utf8(line.to_vec()).expect("UTF-8"));
        true
    }

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }
}

fn writer(warnings: Vec<String>) -> Writer<Memory> {
    let tables: &'static Tables = Box::leak(Box::new(Tables {
        live: LiveTable::new(1024).expect("live table"),
        stacks: StackTable::new(64).expect("stack table"),
        mmaps: None,
        mean_bytes: 512 * 1024,
        max_depth: 16,
    }));
    Writer::new(Config::default(), warnings, Memory::new(), tables, 4096)
}

fn kinds(records: &[serde_json::Value]) -> Vec<&str> {
    records.iter().map(|r| r["type"].as_str().unwrap_or("?")).collect()
}

#[test]
fn a_new_connection_starts_with_hello_then_the_statuses_that_waited() {
    let mut w = writer(vec!["LEAKSCOPE_SAMPLE_RATE=junk: using the default".to_string()]);
    w.tick(100, false);
    assert!(w.sink.lines.is_empty(), "no output yet: nothing sent");
    w.status("info", "something happened while nobody listened".to_string());

    w.sink.up = true;
    w.tick(100, false);
    let records = w.sink.take();
    assert_eq!(kinds(&records), ["hello", "status", "status", "native"], "{records:?}");
    for r in &records {
        assert_eq!((r["v"].as_u64(), r["source"].as_str()), (Some(1), Some("shim")), "{r}");
    }
    assert_eq!(records[0]["native"].as_str(), Some("on"), "docs/PROTOCOL.md: tracking on");
    assert_eq!(records[1]["level"].as_str(), Some("warn"));
    assert!(records[1]["message"].as_str().is_some_and(|m| m.contains("SAMPLE_RATE")));
    assert!(records[2]["message"].as_str().is_some_and(|m| m.contains("nobody listened")));
    assert_eq!(records[3]["seq"].as_u64(), Some(1));

    w.tick(100, false);
    let records = w.sink.take();
    assert_eq!(kinds(&records), ["native"], "hello and statuses once per connection");
    assert_eq!(records[0]["seq"].as_u64(), Some(2));
}

#[test]
fn a_reconnection_repeats_hello_and_says_so() {
    let mut w = writer(Vec::new());
    w.sink.up = true;
    w.tick(100, false);
    assert_eq!(kinds(&w.sink.take()), ["hello", "native"]);

    w.sink.up = false;
    w.tick(100, false);
    assert!(w.sink.take().is_empty());
    w.sink.up = true;
    w.tick(100, false);
    let records = w.sink.take();
    assert_eq!(kinds(&records), ["hello", "status", "native"], "{records:?}");
    assert!(records[1]["message"].as_str().is_some_and(|m| m.contains("reconnected")), "{}", records[1]);
}

#[test]
fn nothing_follows_bye() {
    let mut w = writer(Vec::new());
    w.sink.up = true;
    w.tick(100, false);
    w.bye("test over", 100);
    w.tick(100, true);
    let records = w.sink.take();
    assert_eq!(kinds(&records), ["hello", "native", "bye"], "{records:?}");
    assert_eq!(records[2]["reason"].as_str(), Some("test over"));
}
