//! Peek: a few instances of requested types with their fields' values, like a debugger's
//! `dumpobj`. Right after an induced full GC, the heap is walked with the runtime suspended;
//! per object only its class is compared with the requested ones. A matching instance may be
//! sampled (spread over the walk: every k-th, k doubling as instances keep coming), and then
//! its fields are read at once, while nothing can move: numbers as they are, references as
//! the referenced object's class (and length, for arrays and strings). String contents are
//! copied only when asked for, truncated, since they may hold user data. Names are looked up
//! once the application runs again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::heap_walk::{self, Pace, Stopped};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, ObjectID};
use crate::clr::walks::ObjectVisitor;
use crate::output::records::{Num, Peek as PeekRecord, PeekField, PeekInstance, PeekType};
use crate::pipeline::retention::Namer;
use crate::pipeline::retention::fields::{Field, FieldNames, Kind};

pub const MAX_TYPES: usize = 8;
pub const MAX_COUNT: usize = 10;
pub const DEFAULT_COUNT: usize = 3;
pub const MAX_FIELDS: usize = 64;
/// Characters of a string shown, when strings are asked for.
pub const MAX_CHARS: usize = 64;
/// The walk gives up past this (the application is paused meanwhile).
const TIME_BUDGET: Duration = Duration::from_secs(5);

/// What the collector asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub types: Vec<String>,
    pub count: usize,
    pub strings: bool,
}

impl Request {
    /// `{"cmd":"peek","types":["HeapApp.SessionState"],"count":3,"strings":false}`.
    pub fn from_command(command: &serde_json::Value) -> Result<Request, String> {
        let types = super::requested_types(command, "peek", MAX_TYPES)?;
        let count =
            command.get("count").and_then(|v| v.as_u64()).map_or(DEFAULT_COUNT, |n| (n as usize).clamp(1, MAX_COUNT));
        let strings = command.get("strings").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Request { types, count, strings })
    }
}

/// A field's value as read during the walk.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Char(u16),
    Null,
    /// A referenced object: its class, the length word after its method table (an array's or
    /// a string's length, meaningless for other objects), and a string's first characters.
    Object {
        class: ClassID,
        length: u32,
        text: Option<Vec<u16>>,
    },
    /// Past the object's end, or the runtime would not say what it references.
    Unreadable,
    NotRead,
}

struct Sample {
    class: ClassID,
    size: u64,
    values: Vec<Raw>,
}

/// Per requested type: instances seen, and samples kept (every `stride`-th instance).
#[derive(Default)]
struct Tally {
    instances: u64,
    stride: u64,
    kept: Vec<Sample>,
}

struct Walk<'a> {
    info: &'a ProfilerInfo,
    /// Matching classes → (requested type, their fields).
    wanted: &'a HashMap<ClassID, (usize, Arc<[Field]>)>,
    tallies: Vec<Tally>,
    /// Samples kept per type before thinning (twice what is reported).
    keep: usize,
    strings: bool,
    pace: Pace,
    stopped: Option<Stopped>,
}

impl ObjectVisitor for Walk<'_> {
    const WALK: &'static str = "the peek heap walk";

    fn object(&mut self, object: ObjectID) -> bool {
        if let Some(why) = self.pace.step() {
            self.stopped = Some(why);
            return false;
        }
        let Ok(class) = self.info.class_of_object(object) else { return true };
        let Some((t, fields)) = self.wanted.get(&class) else { return true };
        let tally = &mut self.tallies[*t];
        tally.instances += 1;
        if (tally.instances - 1) % tally.stride != 0 {
            return true;
        }
        if tally.kept.len() >= self.keep {
            // Thin out: every other sample, and from now on every other instance.
            let mut i = 0;
            tally.kept.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            tally.stride *= 2;
            if (tally.instances - 1) % tally.stride != 0 {
                return true;
            }
        }
        let Ok(size) = self.info.object_size(object) else { return true };
        let values =
            fields.iter().take(MAX_FIELDS).map(|f| read_field(self.info, object, size, f, self.strings)).collect();
        self.tallies[*t].kept.push(Sample { class, size: size as u64, values });
        true
    }
}

/// Bytes of an object from its start (the method table pointer) on: its size counts the
/// header word before that too.
fn readable(size: usize) -> usize {
    size.saturating_sub(std::mem::size_of::<usize>())
}

/// Reads one field of `object` (of `size` bytes). Only while the runtime is suspended.
fn read_field(info: &ProfilerInfo, object: ObjectID, size: usize, field: &Field, strings: bool) -> Raw {
    let Some(width) = field.kind.width() else { return Raw::NotRead };
    if field.offset as usize + width as usize > readable(size) {
        return Raw::Unreadable;
    }
    let at = object + field.offset as usize;
    // SAFETY: the runtime is suspended for the heap walk and `object` is a live object of
    // `size` bytes it handed us; the field lies within it (checked above) and is read with
    // unaligned reads of its declared width.
    let bits: u64 = unsafe {
        match width {
            1 => (at as *const u8).read_volatile() as u64,
            2 => (at as *const u16).read_unaligned() as u64,
            4 => (at as *const u32).read_unaligned() as u64,
            _ => (at as *const u64).read_unaligned(),
        }
    };
    match field.kind {
        Kind::Bool => Raw::Bool(bits != 0),
        Kind::Char => Raw::Char(bits as u16),
        Kind::Int(n) => Raw::Int(sign_extend(bits, n)),
        Kind::UInt(_) => Raw::UInt(bits),
        Kind::Float(4) => Raw::Float(f32::from_bits(bits as u32) as f64),
        Kind::Float(_) => Raw::Float(f64::from_bits(bits)),
        Kind::String | Kind::Reference => read_referenced(info, bits as usize, field.kind == Kind::String && strings),
        Kind::Struct(_) | Kind::Other => Raw::NotRead,
    }
}

fn sign_extend(bits: u64, bytes: u8) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((bits << shift) as i64) >> shift
}

/// The object a reference field holds: its class and length word, and (for a string, when
/// asked) its first characters. Only while the runtime is suspended.
fn read_referenced(info: &ProfilerInfo, target: ObjectID, text: bool) -> Raw {
    if target == 0 {
        return Raw::Null;
    }
    let (Ok(class), Ok(size)) = (info.class_of_object(target), info.object_size(target)) else {
        return Raw::Unreadable;
    };
    let word = std::mem::size_of::<usize>();
    // Arrays and strings keep their length right after the method table pointer.
    let length = if word + 4 <= readable(size) {
        // SAFETY: `target` is a live object (the runtime named its class) that cannot move
        // while the runtime is suspended, and these 4 bytes lie within it (checked above).
        unsafe { ((target + word) as *const u32).read_unaligned() }
    } else {
        0
    };
    let text = text.then(|| {
        // A string's characters follow its length.
        let start = word + 4;
        let room = readable(size).saturating_sub(start) / 2;
        let n = (length as usize).min(MAX_CHARS + 1).min(room);
        // SAFETY: as above; `n` UTF-16 units from `start` lie within the string (checked
        // against its size), and u16 reads are unaligned-safe.
        (0..n).map(|i| unsafe { ((target + start + 2 * i) as *const u16).read_unaligned() }).collect()
    });
    Raw::Object { class, length, text }
}

/// Walks the heap (call on the agent thread right after a full GC, numbered `gc`) and reports
/// the samples. `classes` lists the classes on the heap with their names (a census's).
pub fn run(
    info: &ProfilerInfo,
    request: &Request,
    gc: u32,
    classes: &[(ClassID, Arc<str>)],
    fields: &mut FieldNames,
    names: &mut dyn Namer,
    t_ms: u64,
) -> PeekRecord {
    let mut record = PeekRecord {
        gc: Some(gc.into()),
        t_ms: Num::some(t_ms),
        unix_ms: Num::some(crate::pipeline::unix_ms()),
        pause_ms: Num::some(0.0),
        strings: request.strings,
        strings_withheld: None,
        error: None,
        types: Vec::new(),
    };
    let mut matched: Vec<Vec<Arc<str>>> = vec![Vec::new(); request.types.len()];
    let mut wanted: HashMap<ClassID, (usize, Arc<[Field]>)> = HashMap::new();
    for (class, name) in classes {
        if let Some(t) = request.types.iter().position(|w| crate::pipeline::retention::type_matches(w, name)) {
            if matches!(info.array_info(*class), Ok(Some(_))) {
                continue;
            }
            matched[t].push(name.clone());
            wanted.insert(*class, (t, fields.fields(info, *class)));
        }
    }
    let mut walk = Walk {
        info,
        wanted: &wanted,
        tallies: (0..request.types.len()).map(|_| Tally { stride: 1, ..Tally::default() }).collect(),
        keep: 2 * request.count,
        strings: request.strings,
        pace: Pace::new(Some(Instant::now() + TIME_BUDGET)),
        stopped: None,
    };
    if !wanted.is_empty() {
        let started = Instant::now();
        let result = heap_walk::walk(info, &mut walk);
        record.pause_ms = Num::some((started.elapsed().as_secs_f64() * 1e5).round() / 100.0);
        if let Err(hr) = result {
            record.error = Some(heap_walk::refused(hr));
            return record;
        }
        match &walk.stopped {
            Some(Stopped::Time) => {
                record.error =
                    Some(format!("the heap walk stopped after {TIME_BUDGET:?}: samples come from part of the heap"));
            }
            Some(Stopped::Interrupted(why)) => {
                record.error =
                    Some(format!("the heap walk was interrupted ({why}): samples come from part of the heap"));
            }
            None => {}
        }
    }
    let tallies = std::mem::take(&mut walk.tallies);
    for (t, tally) in tallies.into_iter().enumerate() {
        let picked = spread(tally.kept.len(), request.count);
        let samples = picked
            .into_iter()
            .map(|i| {
                let s = &tally.kept[i];
                let layout = wanted.get(&s.class).map(|w| w.1.clone()).unwrap_or_else(|| Arc::from(Vec::new()));
                PeekInstance {
                    type_name: names.class(s.class).to_string(),
                    size: Num::some(s.size),
                    fields: layout.iter().zip(&s.values).map(|(f, v)| render(info, f, v, names)).collect(),
                }
            })
            .collect();
        record.types.push(PeekType {
            type_name: request.types[t].clone(),
            matched: std::mem::take(&mut matched[t]).iter().map(|m| m.to_string()).collect(),
            instances: Num::some(tally.instances),
            samples,
        });
    }
    record
}

/// `count` indices spread over `0..len`: the first, the last, and evenly between.
fn spread(len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    if count == 1 {
        return vec![0];
    }
    let mut picked: Vec<usize> = (0..count).map(|i| i * (len - 1) / (count - 1)).collect();
    picked.dedup();
    picked
}

fn render(info: &ProfilerInfo, field: &Field, raw: &Raw, names: &mut dyn Namer) -> PeekField {
    use serde_json::Value;
    let kind: &'static str = match field.kind {
        Kind::Bool => "bool",
        Kind::Char => "char",
        Kind::Int(1) => "int8",
        Kind::Int(2) => "int16",
        Kind::Int(4) => "int32",
        Kind::Int(_) => "int64",
        Kind::UInt(1) => "uint8",
        Kind::UInt(2) => "uint16",
        Kind::UInt(4) => "uint32",
        Kind::UInt(_) => "uint64",
        Kind::Float(4) => "float32",
        Kind::Float(_) => "float64",
        Kind::String => "string",
        Kind::Reference => "ref",
        Kind::Struct(_) => "struct",
        Kind::Other => "other",
    };
    let value = match raw {
        Raw::Int(n) => Value::from(*n),
        Raw::UInt(n) => Value::from(*n),
        Raw::Float(x) => serde_json::Number::from_f64(*x).map_or_else(|| Value::String(x.to_string()), Value::Number),
        Raw::Bool(b) => Value::from(*b),
        Raw::Char(c) => Value::from(*c),
        Raw::Null => Value::Null,
        Raw::Unreadable => Value::from("<unreadable>"),
        Raw::NotRead => Value::String(match &field.type_name {
            Some(name) => format!("<{name}>"),
            None if matches!(field.kind, Kind::Struct(_)) => "<struct>".to_string(),
            None => "<not read>".to_string(),
        }),
        Raw::Object { class, length, text } => Value::String(describe(info, *class, *length, text.as_deref(), names)),
    };
    PeekField { name: field.name.to_string(), kind: kind.to_string(), value }
}

/// `"<string, 9 chars>"`, the string itself (truncated), `"System.Byte[1024]"`, `"<Type>"`.
fn describe(info: &ProfilerInfo, class: ClassID, length: u32, text: Option<&[u16]>, names: &mut dyn Namer) -> String {
    let name = names.class(class);
    if &*name == "System.String" {
        return match text {
            Some(units) => truncate(&String::from_utf16_lossy(units), MAX_CHARS),
            None => format!("<string, {length} chars>"),
        };
    }
    if matches!(info.array_info(class), Ok(Some(_))) {
        if let Some(element) = name.strip_suffix("[]") {
            return format!("{element}[{length}]");
        }
    }
    format!("<{name}>")
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_defaults_and_clamps() {
        let r = Request::from_command(&serde_json::json!({"cmd":"peek","types":["A"," "]})).unwrap();
        assert_eq!(r, Request { types: vec!["A".into()], count: DEFAULT_COUNT, strings: false });
        let many: Vec<String> = (0..20).map(|i| format!("T{i}")).collect();
        let r =
            Request::from_command(&serde_json::json!({"cmd":"peek","types":many,"count":100,"strings":true})).unwrap();
        assert_eq!((r.types.len(), r.count, r.strings), (MAX_TYPES, MAX_COUNT, true));
        assert!(Request::from_command(&serde_json::json!({"cmd":"peek","types":[]})).is_err());
        assert!(Request::from_command(&serde_json::json!({"cmd":"peek"})).is_err());
    }

    #[test]
    fn samples_spread_from_first_to_last() {
        assert_eq!(spread(2, 3), [0, 1]);
        assert_eq!(spread(6, 3), [0, 2, 5]);
        assert_eq!(spread(6, 1), [0]);
        assert_eq!(spread(0, 3), Vec::<usize>::new());
    }

    #[test]
    fn integers_sign_extend_and_strings_truncate() {
        assert_eq!(sign_extend(0xff, 1), -1);
        assert_eq!(sign_extend(0x7fff_ffff, 4), i32::MAX as i64);
        assert_eq!(sign_extend(0xffff_ffff, 4), -1);
        assert_eq!(truncate("anonymous", 64), "anonymous");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
