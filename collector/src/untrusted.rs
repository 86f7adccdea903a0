//! Text that comes from producers (type, method and file names, command lines, status
//! messages, field values) or from other processes (`/proc/PID/cmdline`) is untrusted: it may
//! carry terminal escape sequences, other control characters, or be absurdly long. It is made
//! safe once, where it enters — [`clean_value`] runs on every parsed protocol line — so the
//! live view, report.txt, report.json, diff and snapshot output only ever show it escaped.
//! The recording keeps the lines verbatim.

use serde_json::Value;
use std::borrow::Cow;

/// Longest string kept from a producer; longer ones are cut, ending in `…`.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Characters a terminal may act on: C0 controls (newline and tab included), DEL, C1 controls
/// (U+009B is a CSI in some terminals), and the bidirectional overrides that reorder text.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with unsafe characters written as `\xNN` (`\u{NNNN}` beyond ASCII) and cut at
/// [`MAX_TEXT_BYTES`]. Borrowed when nothing needed changing.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_TEXT_BYTES && !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len().min(MAX_TEXT_BYTES + 8));
    for c in s.chars() {
        if o.len() >= MAX_TEXT_BYTES {
            o.push('…');
            break;
        }
        if !is_unsafe(c) {
            o.push(c);
        } else if (c as u32) < 0x80 {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(o)
}

/// Cleans every string of a parsed line in place (object keys too) and returns an estimate
/// from above of the heap the value holds, which is what keeping it (or the record parsed
/// from it) costs.
pub fn clean_value(v: &mut Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    match v {
        Value::String(s) => {
            if let Cow::Owned(c) = clean(s) {
                *s = c;
            }
            NODE + s.len()
        }
        Value::Array(items) => NODE + items.iter_mut().map(clean_value).sum::<usize>(),
        Value::Object(map) => {
            let unsafe_keys: Vec<String> = map.keys().filter(|k| matches!(clean(k), Cow::Owned(_))).cloned().collect();
            for k in unsafe_keys {
                if let Some(val) = map.remove(&k) {
                    map.insert(clean(&k).into_owned(), val);
                }
            }
            // Per entry: the key's String, the value, and the map's node overhead.
            NODE + map.iter_mut().map(|(k, val)| 24 + k.len() + 16 + clean_value(val)).sum::<usize>()
        }
        _ => NODE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_shown_not_acted_on() {
        assert!(matches!(clean("Demo.OrderAudit.Record"), Cow::Borrowed(_)));
        assert_eq!(clean("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(clean("t\x1b]0;pwned\x07"), "t\\x1b]0;pwned\\x07");
        assert_eq!(clean("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(clean("line\nnext\r\t"), "line\\x0anext\\x0d\\x09");
        assert_eq!(clean("abc\u{202E}fed"), "abc\\u{202e}fed");
        assert_eq!(clean("Dictionary<String, List<Order>>"), "Dictionary<String, List<Order>>");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let c = clean(&long);
        assert!(c.len() <= MAX_TEXT_BYTES + 4, "{}", c.len());
        assert!(c.ends_with('…'));
    }

    #[test]
    fn every_string_of_a_value_is_cleaned_and_its_size_estimated() {
        let mut v: Value = serde_json::json!({
            "type": "status", "message": "\x1b[31mred",
            "nested": [{"k\x07": "v\x1b"}], "n": 1
        });
        let size = clean_value(&mut v);
        let text = v.to_string();
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
        assert_eq!(v["message"], "\\x1b[31mred");
        assert_eq!(v["nested"][0]["k\\x07"], "v\\x1b");
        assert!(size > text.len(), "{size} vs {}", text.len());
    }
}
