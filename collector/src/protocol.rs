//! The collector's entry point to the wire protocol v1 (docs/PROTOCOL.md). The record types,
//! their tolerant decoding and the version live in the protocol crate (`leakscope_protocol`);
//! what is the collector's own stays here: the [`Envelope`] with what keeping a record costs, and
//! [`parse_line`], which escapes and caps untrusted producer text before anything reads it.

pub use leakscope_protocol::records::*;
pub use leakscope_protocol::{MAX_LINE_BYTES, PROTOCOL_VERSION};

#[derive(Debug, Clone)]
pub struct Envelope {
    pub key: ProducerKey,
    pub record: Record,
    /// An estimate from above of the memory the record holds (what keeping it costs).
    pub approx_bytes: usize,
}

/// Parses one line (without its newline). Never panics.
pub fn parse_line(line: &[u8]) -> Result<Envelope, Skip> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Err(Skip::Empty);
    }
    let mut value: serde_json::Value = serde_json::from_slice(trimmed).map_err(|e| Skip::NotJson(short_error(&e)))?;
    // Producer text is untrusted: escaped and length-capped here, once, for every output.
    let approx_bytes = crate::untrusted::clean_value(&mut value);
    let (key, record) = decode(value)?;
    Ok(Envelope { key, record, approx_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{"v":1,"type":"summary","source":"agent","pid":4242,"seq":12,"t_ms":60012,"unix_ms":1795000060012,
 "gc":{"count":[40,12,3],"induced":1,"pause_ms_total":31.5,"pause_ms_max":4.2,
       "reasons":{"AllocSmall":50,"Induced":1}},
 "heap":{"gen0":1048576,"gen1":2097152,"gen2":73400320,"loh":1000000,"poh":8192},
 "rss":182452224,
 "agent":{"tracked":2311,"max_tracked":100000,"dropped":0,"samples":5120,"memory_bytes":3145728,
          "degraded":null},
 "sites":[{"type_name":"System.String","site":"Demo.Worker.LeakOne","stack":17,
           "samples":812,"objects":1503000,"bytes":84700000,"age_gcs":31.2,
           "gens":[0,0,812,0,0]}]}"#;

    fn one_line(s: &str) -> Vec<u8> {
        s.replace('\n', " ").into_bytes()
    }

    #[test]
    fn parses_the_documented_summary_example() {
        let env = parse_line(&one_line(SUMMARY)).unwrap();
        assert_eq!(env.key, ProducerKey { pid: 4242, source: Source::Agent });
        let Record::Summary(s) = env.record else { panic!("not a summary") };
        assert_eq!(s.t_ms.unwrap().u64(), 60012);
        assert_eq!(s.gc.as_ref().unwrap().count.len(), 3);
        assert_eq!(s.heap.as_ref().unwrap().gen2.unwrap().u64(), 73_400_320);
        assert_eq!(s.agent.as_ref().unwrap().degraded, None);
        assert_eq!(s.sites[0].site, "Demo.Worker.LeakOne");
        assert_eq!(s.sites[0].bytes.unwrap().u64(), 84_700_000);
    }

    #[test]
    fn parses_every_documented_record_kind() {
        let lines = [
            r#"{"v":1,"type":"hello","source":"agent","pid":4242,"version":"0.1.0","cmdline":"dotnet Worker.dll","start_unix_ms":1795000000000,"interval_ms":5000,"runtime":"10.0.12","sampling":"AllocationSampled","mode":"sampled","config":{"max_tracked":100000}}"#,
            r#"{"v":1,"type":"stack","source":"agent","pid":4242,"id":17,"frames":["Demo.Worker.LeakOne","Demo.Worker.Run","Demo.Program.Main"]}"#,
            r#"{"v":1,"type":"native","source":"shim","pid":4242,"seq":12,"t_ms":60010,"unix_ms":1795000060010,"live_bytes":52428800,"live_allocs":10240,"total_allocs":9000000,"total_frees":8989760,"mmap_bytes":4194304,"sampling_mean_bytes":524288,"dropped":0,"sites":[{"site":"leak_from_here (leaky+0x1139)","stack":3,"samples":100,"allocs":100,"bytes":52428800}]}"#,
            r#"{"v":1,"type":"status","source":"agent","pid":4242,"level":"warn","message":"tracking budget full"}"#,
            r#"{"v":1,"type":"bye","source":"agent","pid":4242,"t_ms":93000,"reason":"runtime shutdown"}"#,
        ];
        let kinds: Vec<&str> = lines
            .iter()
            .map(|l| match parse_line(l.as_bytes()).unwrap().record {
                Record::Hello(h) => {
                    assert_eq!(h.interval_ms.unwrap().u64(), 5000);
                    "hello"
                }
                Record::Stack(s) => {
                    assert_eq!(s.frames.len(), 3);
                    "stack"
                }
                Record::Native(n) => {
                    assert_eq!(n.sites[0].bytes.unwrap().u64(), 52_428_800);
                    "native"
                }
                Record::Status(s) => {
                    assert_eq!(s.level.as_deref(), Some("warn"));
                    "status"
                }
                Record::Bye(b) => {
                    assert_eq!(b.reason.as_deref(), Some("runtime shutdown"));
                    "bye"
                }
                Record::Summary(_) => "summary",
                Record::Retained(_) => "retained",
                Record::Census(_) => "census",
                Record::Retention(_) => "retention",
                Record::Peek(_) => "peek",
            })
            .collect();
        assert_eq!(kinds, ["hello", "stack", "native", "status", "bye"]);
    }

    #[test]
    fn parses_the_documented_retained_and_census_examples() {
        let retained = r#"{"v":1,"type":"retained","source":"agent","pid":4242,"gc":57,"t_ms":61000,"unix_ms":1795000061000,
 "heap":{"gen0":0,"gen1":400,"gen2":73400320,"loh":1000000,"poh":8192},
 "sites":[{"type_name":"System.String","site":"Demo.Worker.LeakOne","location":"Worker.cs:42","stack":17,
           "samples":800,"objects":1500000,"bytes":84000000,"age_gcs":30.5,"gens":[0,0,800,0,0]}]}"#;
        let Record::Retained(r) = parse_line(&one_line(retained)).unwrap().record else { panic!("not retained") };
        assert_eq!(r.gc, Some(57));
        assert_eq!(r.t_ms.unwrap().u64(), 61000);
        assert_eq!(r.sites[0].location.as_deref(), Some("Worker.cs:42"));
        assert_eq!(r.sites[0].bytes.unwrap().u64(), 84_000_000);
        let census = r#"{"v":1,"type":"census","source":"agent","pid":4242,"gc":57,"t_ms":61000,"unix_ms":1795000061000,
 "pause_ms":45.2,"objects":293681,"bytes":42258228,"unreadable":0,
 "heap":{"gen0":0,"gen1":400,"gen2":41000000,"loh":1000000,"poh":8192},
 "types":[{"type_name":"System.String","count":291542,"bytes":37861182}],
 "other":{"types":0,"count":0,"bytes":0}}"#;
        let Record::Census(c) = parse_line(&one_line(census)).unwrap().record else { panic!("not census") };
        assert_eq!(c.bytes.unwrap().u64(), 42_258_228);
        assert_eq!(c.types[0].count.unwrap().u64(), 291_542);
        assert_eq!(c.other.unwrap().types.unwrap().u64(), 0);
        assert!((c.pause_ms.unwrap().0 - 45.2).abs() < 1e-9);
        // `gc.recent` is read, and written back: the agent writes it with this same type.
        let summary = br#"{"v":1,"type":"summary","source":"agent","pid":1,"t_ms":5,"gc":{"count":[1,0,1],"recent":[{"n":55,"gen":2,"reason":"Induced","background":false,"pause_ms":3.1,"after":[0,400,73400320,1000000,8192]}]}}"#;
        let Record::Summary(s) = parse_line(summary).unwrap().record else { panic!() };
        let gc = s.gc.unwrap();
        assert_eq!(gc.recent[0].generation, Some(2));
        assert_eq!(gc.recent[0].after[2].u64(), 73_400_320);
        assert!(serde_json::to_string(&gc).unwrap().contains(r#""recent":[{"n":55,"gen":2,"#));
    }

    #[test]
    fn bad_lines_are_classified_not_fatal() {
        type Case<'a> = (&'a [u8], fn(&Skip) -> bool);
        let cases: &[Case<'_>] = &[
            (b"", |s| *s == Skip::Empty),
            (b"   \r", |s| *s == Skip::Empty),
            (b"garbage", |s| matches!(s, Skip::NotJson(_))),
            (b"{\"v\":1,\"type\":\"summ", |s| matches!(s, Skip::NotJson(_))),
            (b"\xff\xfe{}", |s| matches!(s, Skip::NotJson(_))),
            (b"[1,2]", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"type\":\"hello\"}", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"v\":2,\"type\":\"hello\",\"source\":\"agent\",\"pid\":1}", |s| *s == Skip::UnknownVersion(2)),
            (
                b"{\"v\":1,\"type\":\"heapdump\",\"source\":\"agent\",\"pid\":1}",
                |s| matches!(s, Skip::UnknownType(t) if t == "heapdump"),
            ),
            (b"{\"v\":1,\"type\":\"hello\",\"source\":\"jvm\",\"pid\":1}", |s| matches!(s, Skip::UnknownSource(_))),
            (b"{\"v\":1,\"type\":\"hello\",\"source\":\"agent\",\"pid\":-1}", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"v\":1,\"type\":\"summary\",\"source\":\"agent\",\"pid\":1,\"rss\":\"big\"}", |s| {
                matches!(s, Skip::Malformed(_))
            }),
            (b"{\"v\":1,\"type\":\"stack\",\"source\":\"agent\",\"pid\":1}", |s| matches!(s, Skip::Malformed(_))),
        ];
        for (line, check) in cases {
            let got = parse_line(line).unwrap_err();
            assert!(check(&got), "line {:?} gave {:?}", String::from_utf8_lossy(line), got);
        }
    }

    #[test]
    fn numbers_are_lenient_and_unknown_fields_ignored() {
        let line = br#"{"v":1,"type":"summary","source":"agent","pid":7,"t_ms":1000.6,"rss":-5,"future_field":{"x":1},
            "sites":[{"type_name":"T","site":"S","bytes":1.5e6,"objects":null,"new":"x"}]}"#;
        let env = parse_line(&one_line(std::str::from_utf8(line).unwrap())).unwrap();
        let Record::Summary(s) = env.record else { panic!() };
        assert_eq!(s.t_ms.unwrap().u64(), 1001);
        assert_eq!(s.rss.unwrap().u64(), 0);
        assert_eq!(s.sites[0].bytes.unwrap().u64(), 1_500_000);
        assert!(s.sites[0].objects.is_none());
        assert_eq!(serde_json::to_string(&[Num(48_500_000.0), Num(31.5)]).unwrap(), "[48500000,31.5]");
    }

    /// Every producer string is escaped and capped where it enters, new fields included: a
    /// thread-static root's name, a step's type and field, carrying a terminal escape and 10 kB.
    #[test]
    fn retention_root_names_and_steps_are_escaped_and_capped() {
        let long = "T".repeat(10_000);
        let line = serde_json::json!({"v":1,"type":"retention","source":"agent","pid":7,
            "types":[{"type_name":"Leak\u{1b}[2J","matched":[],
                "paths":[{"root":{"kind":"static","name":format!("[ThreadStatic] Evil.\u{1b}]0;pwned\u{7}{long}"),
                                  "detail":"thread 12\u{9b}31m"},
                          "steps":[{"type_name":"List\u{202e}gpj.exe","field":"items\n"}]}]}]})
        .to_string();
        let Record::Retention(r) = parse_line(line.as_bytes()).unwrap().record else { panic!("not a retention") };
        let t = &r.types[0];
        let root = &t.paths[0].root;
        let name = root.name.as_deref().unwrap();
        assert_eq!(t.type_name, "Leak\\x1b[2J");
        assert!(name.starts_with("[ThreadStatic] Evil.\\x1b]0;pwned\\x07TTT"), "{name}");
        assert!(name.len() <= crate::untrusted::MAX_TEXT_BYTES + 4 && name.ends_with('…'), "{} bytes", name.len());
        assert_eq!(root.detail.as_deref(), Some("thread 12\\u{9b}31m"));
        assert_eq!(t.paths[0].steps[0].type_name, "List\\u{202e}gpj.exe");
        assert_eq!(t.paths[0].steps[0].field.as_deref(), Some("items\\x0a"));
    }
}
