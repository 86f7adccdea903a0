//! Surviving allocations as a gzipped pprof profile, for `go tool pprof`, Pyroscope, Grafana.
//!
//! One sample per (process, call site, type): `inuse_objects` and `inuse_space` are the site's
//! estimated live objects and bytes at the profile's moment (the same numbers report.json
//! gives), and `growth_space` its Theil–Sen slope in bytes per hour, where a slope could be
//! estimated. A sample's stack starts at the call site (the runtime's allocation helpers above
//! it stay in report.json), so pprof's flat column names the site report.txt names.
//! The messages are derived with prost from the public `profile.proto` field numbers.

use crate::analysis::LiveVerdict;
use crate::protocol::Source;
use crate::report::frames_from_site;
use crate::sites::SiteRow;
use std::collections::HashMap;
use std::io::Write;

/// `perftools.profiles` messages (profile.proto), only the fields leakscope fills in.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Index 0 must be the empty string.
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        /// String-table indices of free-form notes (`go tool pprof -comments`).
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        /// String-table index of the sample type shown by default.
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
    }

    /// One mapping stands for every frame: leakscope resolved the names already, so pprof
    /// must not try to symbolize addresses.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// When the profile was taken and what span of the run it covers.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub unix_ms: u64,
    pub duration_ms: u64,
}

/// Builds the profile of `rows` (every ranked site, managed and native, of every process).
pub fn build(rows: &[SiteRow], moment: Moment) -> proto::Profile {
    let mut b = Builder::default();
    let with_growth = rows.iter().any(has_slope);
    let mut sample_type = vec![b.value_type("inuse_objects", "count"), b.value_type("inuse_space", "bytes")];
    if with_growth {
        sample_type.push(b.value_type("growth_space", "bytes"));
    }
    let mut samples = Vec::new();
    for row in rows {
        let objects = row.latest.count.max(0.0).round() as i64;
        let bytes = row.latest.bytes.max(0.0).round() as i64;
        let per_hour = if has_slope(row) { (row.growth.bytes_per_min * 60.0).round() as i64 } else { 0 };
        if objects == 0 && bytes == 0 && per_hour == 0 {
            continue;
        }
        let mut value = vec![objects, bytes];
        if with_growth {
            value.push(per_hour);
        }
        let location_id = b.stack_of(row);
        let mut label = vec![b.str_label("kind", kind(row.source)), b.num_label("pid", i64::from(row.pid))];
        if let Some(t) = &row.type_name {
            label.push(b.str_label("type", t));
        }
        samples.push(proto::Sample { location_id, value, label });
    }
    let mut comment = vec![b.intern("leakscope: surviving allocations (estimated from sampling)")];
    if with_growth {
        comment.push(b.intern("growth_space: bytes per hour (Theil–Sen slope); 0 where no slope could be estimated"));
    }
    let default_sample_type = b.intern("inuse_space");
    let mapping = vec![proto::Mapping {
        id: MAPPING_ID,
        filename: b.intern("[resolved by leakscope]"),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
    }];
    let period_type = Some(b.value_type("space", "bytes"));
    proto::Profile {
        sample_type,
        sample: samples,
        mapping,
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        time_nanos: (moment.unix_ms as i64).saturating_mul(1_000_000),
        duration_nanos: (moment.duration_ms as i64).saturating_mul(1_000_000),
        period_type,
        period: 0,
        comment,
        default_sample_type,
    }
}

/// The profile, protobuf-encoded and gzipped, as pprof files are.
pub fn encode_gzipped(profile: &proto::Profile) -> std::io::Result<Vec<u8>> {
    use prost::Message;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()
}

const MAPPING_ID: u64 = 1;

fn has_slope(row: &SiteRow) -> bool {
    row.growth.verdict != LiveVerdict::InsufficientData && row.growth.bytes_per_min.is_finite()
}

fn kind(source: Source) -> &'static str {
    match source {
        Source::Agent => "managed",
        Source::Shim => "native",
    }
}

/// `Program.cs:61` → (`Program.cs`, 61); anything else is a file name without a line.
fn split_file_line(s: &str) -> (&str, i64) {
    match s.rsplit_once(':') {
        Some((file, line)) if !file.is_empty() => match line.parse::<i64>() {
            Ok(n) if n > 0 => (file, n),
            _ => (s, 0),
        },
        _ => (s, 0),
    }
}

/// Interns strings, functions and locations so each is written once.
#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    location_ids: HashMap<(u64, i64), u64>,
}

impl Builder {
    fn intern(&mut self, s: &str) -> i64 {
        if self.strings.is_empty() {
            self.strings.push(String::new());
            self.string_ids.insert(String::new(), 0);
        }
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType { r#type: self.intern(kind), unit: self.intern(unit) }
    }

    fn str_label(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label { key: self.intern(key), str: self.intern(value), num: 0 }
    }

    fn num_label(&mut self, key: &str, value: i64) -> proto::Label {
        proto::Label { key: self.intern(key), str: 0, num: value }
    }

    /// The location of one frame: a function (name, file) at a line.
    fn location(&mut self, name: &str, file_line: Option<&str>) -> u64 {
        let (file, line) = file_line.map_or(("", 0), split_file_line);
        let key = (self.intern(name), self.intern(file));
        let next_function = self.functions.len() as u64 + 1;
        let function_id = *self.function_ids.entry(key).or_insert(next_function);
        if function_id == next_function {
            self.functions.push(proto::Function { id: function_id, name: key.0, system_name: key.0, filename: key.1 });
        }
        let next_location = self.locations.len() as u64 + 1;
        let location_id = *self.location_ids.entry((function_id, line)).or_insert(next_location);
        if location_id == next_location {
            self.locations.push(proto::Location {
                id: location_id,
                mapping_id: MAPPING_ID,
                line: vec![proto::Line { function_id, line }],
            });
        }
        location_id
    }

    /// Leaf-first location ids from the site down to the root; just the site when the
    /// producer sent no stack.
    fn stack_of(&mut self, row: &SiteRow) -> Vec<u64> {
        match row.frames.as_deref().filter(|s| !s.frames.is_empty()) {
            Some(stack) => {
                let (above, frames) = frames_from_site(&stack.frames, &row.site);
                frames
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let line = stack.line(above + i).or(if i == 0 { row.location.as_deref() } else { None });
                        self.location(f, line)
                    })
                    .collect()
            }
            None => vec![self.location(&row.site, row.location.as_deref())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Growth;
    use crate::store::{SiteLatest, Stack};
    use prost::Message;
    use std::sync::Arc;

    fn row(
        site: &str,
        type_name: Option<&str>,
        frames: &[(&str, Option<&str>)],
        bytes: f64,
        verdict: LiveVerdict,
    ) -> SiteRow {
        SiteRow {
            pid: 42,
            source: if type_name.is_some() { Source::Agent } else { Source::Shim },
            type_name: type_name.map(str::to_string),
            site: site.to_string(),
            frames: (!frames.is_empty()).then(|| {
                Arc::new(Stack {
                    frames: frames.iter().map(|f| f.0.to_string()).collect(),
                    lines: frames.iter().map(|f| f.1.map(str::to_string)).collect(),
                    charge: Default::default(),
                })
            }),
            location: None,
            latest: SiteLatest { bytes, count: bytes / 100.0, ..SiteLatest::default() },
            peak_bytes: bytes,
            present: true,
            growth: Growth {
                verdict,
                bytes_per_min: 1000.0,
                ci95_bytes_per_min: None,
                p_value: 0.0,
                significant: true,
                still_rising: true,
                growth_bytes: 0.0,
                window_start_ms: 0.0,
                window_ms: 0.0,
                points: 10,
            },
            full_gcs: None,
            full_gc_check: None,
        }
    }

    fn name(p: &proto::Profile, id: i64) -> &str {
        &p.string_table[id as usize]
    }

    #[test]
    fn stacks_start_at_the_site_and_share_functions_and_locations() {
        let leak = row(
            "App.Leak",
            Some("System.String"),
            &[("System.String.Ctor", None), ("App.Leak", Some("Program.cs:61")), ("App.Main", Some("Program.cs:10"))],
            5000.0,
            LiveVerdict::Growing,
        );
        let other = row(
            "App.Main",
            Some("System.Byte[]"),
            &[("App.Main", Some("Program.cs:12"))],
            300.0,
            LiveVerdict::InsufficientData,
        );
        let p = build(&[leak, other], Moment { unix_ms: 1_000, duration_ms: 2_000 });
        assert_eq!(p.string_table[0], "");
        let types: Vec<&str> = p.sample_type.iter().map(|t| name(&p, t.r#type)).collect();
        assert_eq!(types, ["inuse_objects", "inuse_space", "growth_space"]);
        assert_eq!(name(&p, p.default_sample_type), "inuse_space");
        assert_eq!(p.time_nanos, 1_000_000_000);
        assert_eq!(p.sample[0].value, [50, 5000, 60_000]);
        assert_eq!(p.sample[1].value, [3, 300, 0], "no slope: no growth");
        // The allocation helper above the site is left out: the leaf is the site.
        assert_eq!(p.sample[0].location_id.len(), 2);
        let leaf = &p.location[(p.sample[0].location_id[0] - 1) as usize];
        let f = &p.function[(leaf.line[0].function_id - 1) as usize];
        assert_eq!((name(&p, f.name), name(&p, f.filename), leaf.line[0].line), ("App.Leak", "Program.cs", 61));
        // App.Main is one function with two locations (lines 10 and 12).
        assert_eq!(p.function.len(), 2);
        assert_eq!(p.location.len(), 3);
        let labels: Vec<(&str, &str)> =
            p.sample[0].label.iter().filter(|l| l.str != 0).map(|l| (name(&p, l.key), name(&p, l.str))).collect();
        assert_eq!(labels, [("kind", "managed"), ("type", "System.String")]);
    }

    #[test]
    fn native_sites_without_a_stack_and_empty_sites_are_handled() {
        let native = row("libfoo.so+0x10", None, &[], 4096.0, LiveVerdict::InsufficientData);
        let gone = row("App.Gone", Some("T"), &[], 0.0, LiveVerdict::InsufficientData);
        let p = build(&[native, gone], Moment { unix_ms: 0, duration_ms: 0 });
        assert_eq!(p.sample_type.len(), 2, "no slope anywhere: no growth_space");
        assert_eq!(p.sample.len(), 1, "a site with nothing live and no growth is left out");
        assert_eq!(name(&p, p.function[0].name), "libfoo.so+0x10");
        assert_eq!(name(&p, p.sample[0].label[0].str), "native");
    }

    #[test]
    fn the_gzipped_encoding_decodes_to_the_same_profile() {
        let p = build(
            &[row("A.B", Some("T"), &[("A.B", Some("x.cs:3"))], 10.0, LiveVerdict::Steady)],
            Moment { unix_ms: 5, duration_ms: 6 },
        );
        let gz = encode_gzipped(&p).unwrap();
        assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip magic");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        assert_eq!(proto::Profile::decode(&raw[..]).unwrap(), p);
    }

    #[test]
    fn file_and_line_are_split_at_the_last_colon() {
        assert_eq!(split_file_line("Program.cs:61"), ("Program.cs", 61));
        assert_eq!(split_file_line("C:/src/a.cs:7"), ("C:/src/a.cs", 7));
        assert_eq!(split_file_line("weird"), ("weird", 0));
        assert_eq!(split_file_line("a.cs:x"), ("a.cs:x", 0));
    }
}
