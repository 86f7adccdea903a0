//! docs/PROTOCOL.md's JSON examples, read straight from the file and decoded with the protocol
//! types: an example that no longer parses (or a record type that no longer reads it) fails here.

use leakscope_protocol::records::{Record, decode, decode_capture, unknown_fields};

/// Every fenced ```json block of PROTOCOL.md, one record each (spread over several lines).
fn examples() -> Vec<(usize, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("docs/PROTOCOL.md");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim()) {
            (None, "```json") => current = Some((i + 2, String::new())),
            (Some(_), "```") => blocks.push(current.take().expect("open block")),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "PROTOCOL.md ends inside a ```json block");
    blocks
}

fn kind(record: &Record) -> &'static str {
    match record {
        Record::Hello(_) => "hello",
        Record::Stack(_) => "stack",
        Record::Summary(_) => "summary",
        Record::Native(_) => "native",
        Record::Retained(_) => "retained",
        Record::Census(_) => "census",
        Record::Retention(_) => "retention",
        Record::Peek(_) => "peek",
        Record::Status(_) => "status",
        Record::Bye(_) => "bye",
    }
}

#[test]
fn every_json_example_in_protocol_md_decodes_as_the_record_it_says_it_is() {
    let blocks = examples();
    let mut seen = Vec::new();
    for (line, body) in &blocks {
        let value: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: not JSON: {e}\n{body}"));
        let said = value["type"].as_str().unwrap_or_else(|| panic!("PROTOCOL.md:{line}: no `type`")).to_string();
        if said == "capture" {
            let capture = decode_capture(value).unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: {e}"));
            assert!(!capture.breaches.is_empty() && capture.census, "PROTOCOL.md:{line}: {capture:?}");
        } else {
            let (key, record) = decode(value).unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: {e}\n{body}"));
            assert_eq!(kind(&record), said, "PROTOCOL.md:{line}");
            assert!(key.pid > 0, "PROTOCOL.md:{line}");
            check_read(*line, &record);
        }
        seen.push(said);
    }
    seen.sort();
    seen.dedup();
    let documented =
        ["bye", "capture", "census", "hello", "native", "peek", "retained", "retention", "stack", "status", "summary"];
    assert_eq!(seen, documented, "a record kind lost its example in PROTOCOL.md");
}

/// The fields were read, not defaulted: each example's salient values come through.
fn check_read(line: usize, record: &Record) {
    let at = format!("PROTOCOL.md:{line}");
    match record {
        Record::Hello(h) => {
            assert!(h.interval_ms.is_some_and(|n| n.u64() > 0), "{at}");
            assert!(h.config.is_some(), "{at}");
        }
        Record::Stack(s) => assert!(!s.frames.is_empty() && s.lines.len() == s.frames.len(), "{at}"),
        Record::Summary(s) => {
            assert!(!s.sites.is_empty() && s.sites[0].bytes.is_some(), "{at}");
            assert_eq!(s.gc.as_ref().map(|g| g.count.len()), Some(3), "{at}");
            assert!(s.agent.as_ref().is_some_and(|a| a.max_tracked.is_some()), "{at}");
        }
        Record::Native(n) => assert!(n.live_bytes.is_some() && !n.sites.is_empty(), "{at}"),
        Record::Retained(r) => assert!(r.gc.is_some() && !r.sites.is_empty(), "{at}"),
        Record::Census(c) => assert!(!c.types.is_empty() && c.other.is_some() && c.pause_ms.is_some(), "{at}"),
        Record::Retention(r) => {
            let t = &r.types[0];
            assert!(!t.paths.is_empty() && !t.paths[0].steps.is_empty(), "{at}");
            assert!(t.paths[0].retained.is_some() && !r.walks.is_empty(), "{at}");
        }
        Record::Peek(p) => assert!(!p.types.is_empty() && !p.types[0].samples[0].fields.is_empty(), "{at}"),
        Record::Status(s) => assert!(!s.message.is_empty() && s.level.is_some(), "{at}"),
        Record::Bye(b) => assert!(b.reason.is_some(), "{at}"),
    }
}

/// The record types know every field the examples show (`hello.config` aside, free-form per
/// producer): a field documented but not in the types, or renamed in one place only, fails.
#[test]
fn the_types_know_every_field_the_examples_show() {
    for (line, body) in examples() {
        if body.contains(r#""type":"capture""#) {
            continue; // Capture has no `default`: every field is read, or decoding fails above.
        }
        let unknown = unknown_fields(&body).unwrap_or_else(|e| panic!("PROTOCOL.md:{line}: {e}"));
        assert!(unknown.is_empty(), "PROTOCOL.md:{line}: fields no record type knows: {unknown:?}");
    }
}

#[test]
fn a_broken_example_would_fail() {
    // The reader above is not vacuous: a record with an ill-typed field is refused.
    let bad: serde_json::Value =
        serde_json::from_str(r#"{"v":1,"type":"summary","source":"agent","pid":1,"sites":"none"}"#).unwrap();
    assert!(decode(bad).is_err());
    assert!(examples().len() >= 11);
    let extra = r#"{"v":1,"type":"bye","source":"agent","pid":1,"reason":"exit","colour":"blue"}"#;
    assert_eq!(unknown_fields(extra).unwrap(), ["colour"]);
}
