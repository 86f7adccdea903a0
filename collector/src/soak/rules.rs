//! `--fail-on` rules: a small hand-written parser with errors that point at the problem.
//!
//! ```text
//! rule    := [scope] quantity op value  |  scope op size     (the second: `live`, as in `rss > 2GB`)
//! scope   := type:PATTERN | site:PATTERN | native[:PATTERN] | managed | heap | rss
//! quantity:= growth | live
//! op      := > | >=
//! value   := NUMBER [size unit] [/ time unit]     growth: a rate (0 needs no unit); live: a size
//! ```
//!
//! Examples: `growth > 1MB/h`, `site:MyApp.Cache.Add growth > 0`, `native growth > 5MB/h`,
//! `type:"Dictionary<String, List<Order>>" live >= 200MB`. Without a scope a rule applies to
//! every managed type, every call site, native memory and every native site. A `PATTERN` may use
//! `*` for any run of characters and may be quoted ("…" or '…') when it contains spaces; unquoted,
//! it runs up to the quantity word.

use std::fmt;

/// What a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every type, site, native total and native site.
    Any,
    Type(String),
    Site(String),
    /// The shim's exact native live bytes.
    Native,
    /// Native call sites matching the pattern.
    NativeSite(String),
    /// Live managed data (the census total).
    Managed,
    /// The GC's heap size (sum of its generation sizes).
    Heap,
    /// The process's resident set.
    Rss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Bytes per hour (the Theil–Sen slope with its interval).
    Growth,
    /// Bytes at the end of the soak.
    Live,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as the user wrote it (trimmed).
    pub text: String,
    pub scope: Scope,
    pub quantity: Quantity,
    /// `>=` rather than `>`.
    pub inclusive: bool,
    /// Bytes per hour for growth, bytes for live.
    pub value: f64,
}

/// The subject kinds a scope can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Type(&'a str),
    /// (type, site)
    Site(&'a str, &'a str),
    Native,
    NativeSite(&'a str),
    Managed,
    Heap,
    Rss,
}

impl Rule {
    pub fn applies_to(&self, target: Target<'_>) -> bool {
        match (&self.scope, target) {
            (Scope::Any, Target::Type(_) | Target::Site(..) | Target::Native | Target::NativeSite(_)) => true,
            (Scope::Type(p), Target::Type(t)) => glob_match(p, t),
            (Scope::Site(p), Target::Site(_, s)) => glob_match(p, s),
            (Scope::Native, Target::Native) => true,
            (Scope::NativeSite(p), Target::NativeSite(s)) => glob_match(p, s),
            (Scope::Managed, Target::Managed) => true,
            (Scope::Heap, Target::Heap) => true,
            (Scope::Rss, Target::Rss) => true,
            _ => false,
        }
    }

    /// For live rules: does this many bytes break the rule?
    pub fn exceeded_by(&self, x: f64) -> bool {
        if self.inclusive { x >= self.value } else { x > self.value }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parse error: what is wrong and where (byte offset into the rule).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub rule: String,
    pub at: usize,
    pub message: String,
}

impl RuleError {
    /// The message, the rule, and a caret under the offending spot.
    pub fn render(&self) -> String {
        self.render_for("--fail-on")
    }

    /// The same, naming the option the rule came from (`--on` for capture rules).
    pub fn render_for(&self, option: &str) -> String {
        let col = self.rule[..self.at.min(self.rule.len())].chars().count();
        format!("bad {option} rule: {}\n    {}\n    {}^", self.message, self.rule, " ".repeat(col))
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

pub const RULE_EXAMPLES: &str = "rules look like 'growth > 1MB/h', 'type:MyApp.Order growth > 0', \
    'site:MyApp.Cache.Add live > 50MB', 'native growth > 5MB/h', 'rss growth >= 20MB/h', 'rss > 2GB'";

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn error(&self, at: usize, message: impl Into<String>) -> RuleError {
        RuleError { rule: self.text.to_string(), at, message: message.into() }
    }

    /// A run of ASCII letters.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
}

const QUANTITIES: [&str; 2] = ["growth", "live"];

/// Parses one rule.
pub fn parse_rule(input: &str) -> Result<Rule, RuleError> {
    let text = input.trim();
    let mut lx = Lexer { text, pos: 0 };
    if text.is_empty() {
        return Err(lx.error(0, "empty rule"));
    }
    let scope = parse_scope(&mut lx)?;
    lx.skip_ws();
    let at = lx.pos;
    let word = lx.word();
    let quantity = match word {
        "growth" => Quantity::Growth,
        "live" => Quantity::Live,
        // `rss > 2GB`: a scope and a size say "this much is too much" without the word.
        "" if scope != Scope::Any && lx.rest().starts_with(['>', '<', '=']) => Quantity::Live,
        "" => {
            return Err(lx.error(at, "expected `growth` or `live`"));
        }
        other => {
            let hint = if matches!(other, "type" | "site" | "native") {
                format!(" (did you mean `{other}:PATTERN`?)")
            } else {
                String::new()
            };
            return Err(lx.error(at, format!("unknown quantity `{other}`: expected `growth` or `live`{hint}")));
        }
    };
    lx.skip_ws();
    let op_at = lx.pos;
    let inclusive = if lx.eat(">=") {
        true
    } else if lx.eat(">") {
        false
    } else if lx.rest().starts_with('<') || lx.rest().starts_with('=') {
        return Err(lx.error(op_at, "only `>` and `>=` are supported: a rule says how much is too much"));
    } else {
        return Err(lx.error(op_at, format!("expected `>` or `>=` after `{word}`")));
    };
    lx.skip_ws();
    let value = parse_value(&mut lx, quantity)?;
    lx.skip_ws();
    if !lx.rest().is_empty() {
        return Err(lx.error(lx.pos, "unexpected text after the value"));
    }
    Ok(Rule { text: text.to_string(), scope, quantity, inclusive, value })
}

fn parse_scope(lx: &mut Lexer<'_>) -> Result<Scope, RuleError> {
    let start = lx.pos;
    let word = lx.word();
    let with_pattern = lx.rest().starts_with(':');
    match (word, with_pattern) {
        ("type", true) | ("site", true) | ("native", true) => {
            lx.pos += 1;
            let pattern = parse_pattern(lx, word)?;
            Ok(match word {
                "type" => Scope::Type(pattern),
                "site" => Scope::Site(pattern),
                _ => Scope::NativeSite(pattern),
            })
        }
        ("type", false) | ("site", false) => Err(lx.error(
            start + word.len(),
            format!("`{word}` needs a pattern: `{word}:NAME` (use * as a wildcard)"),
        )),
        ("native", false) => Ok(Scope::Native),
        ("managed", false) => Ok(Scope::Managed),
        ("heap", false) => Ok(Scope::Heap),
        ("rss", false) => Ok(Scope::Rss),
        (w, _) if QUANTITIES.contains(&w) && !with_pattern => {
            lx.pos = start;
            Ok(Scope::Any)
        }
        ("", _) => Err(lx.error(
            start,
            "expected a scope (type:, site:, native, managed, heap, rss) or a quantity (growth, live)",
        )),
        (w, true) => Err(lx.error(
            start,
            format!("unknown scope `{w}:`: expected `type:`, `site:` or `native:`"),
        )),
        (w, false) => Err(lx.error(
            start,
            format!(
                "unknown word `{w}`: expected a scope (type:, site:, native, managed, heap, rss) or a quantity (growth, live)"
            ),
        )),
    }
}

/// A quoted pattern, or everything up to the whitespace before the quantity word.
fn parse_pattern(lx: &mut Lexer<'_>, scope: &str) -> Result<String, RuleError> {
    let start = lx.pos;
    let rest = lx.rest();
    if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let body = &rest[1..];
        let Some(end) = body.find(q) else {
            return Err(lx.error(start, format!("unterminated {q}-quoted pattern")));
        };
        lx.pos += 1 + end + 1;
        if end == 0 {
            return Err(lx.error(start, format!("empty pattern after `{scope}:`")));
        }
        let after = lx.rest();
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err(lx.error(lx.pos, "expected a space after the quoted pattern"));
        }
        return Ok(body[..end].to_string());
    }
    // The pattern ends at the last whitespace-separated quantity word followed by an operator,
    // so patterns may contain spaces (generic arguments: `Dictionary<String, List<Order>>`).
    let mut cut = None;
    for (i, c) in rest.char_indices() {
        if !c.is_whitespace() || i == 0 {
            continue;
        }
        let after = rest[i..].trim_start();
        for q in QUANTITIES {
            if let Some(tail) = after.strip_prefix(q) {
                let tail = tail.trim_start();
                if tail.starts_with(['>', '<', '=']) || tail.is_empty() {
                    cut = Some(i);
                }
            }
        }
    }
    let Some(end) = cut.or_else(|| rest.find(char::is_whitespace)) else {
        return Err(lx.error(
            lx.text.len(),
            format!("expected a quantity after the {scope} pattern, e.g. `{scope}:{rest} growth > 0`"),
        ));
    };
    let pattern = rest[..end].trim_end();
    if pattern.is_empty() {
        return Err(lx.error(start, format!("empty pattern after `{scope}:`")));
    }
    lx.pos += end;
    Ok(pattern.to_string())
}

fn parse_value(lx: &mut Lexer<'_>, quantity: Quantity) -> Result<f64, RuleError> {
    let start = lx.pos;
    let rest = lx.rest();
    let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    if num_len == 0 {
        let what = match quantity {
            Quantity::Growth => "a rate such as 1MB/h",
            Quantity::Live => "a size such as 200MB",
        };
        return Err(lx.error(start, format!("expected {what}")));
    }
    let number: f64 =
        rest[..num_len].parse().map_err(|_| lx.error(start, format!("`{}` is not a number", &rest[..num_len])))?;
    lx.pos += num_len;
    lx.skip_ws();
    let unit_at = lx.pos;
    let unit = {
        let r = lx.rest();
        let len = r.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(r.len());
        lx.pos += len;
        &r[..len]
    };
    let size = match size_unit(unit) {
        Some(m) => m,
        None => {
            return Err(lx.error(
                unit_at,
                format!("unknown size unit `{unit}`: use B, kB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB (×1024)"),
            ));
        }
    };
    let bytes = number * size;
    lx.skip_ws();
    let slash_at = lx.pos;
    let per = if lx.eat("/") {
        lx.skip_ws();
        let t_at = lx.pos;
        let t = lx.word();
        match time_unit_hours(t) {
            Some(h) => Some(h),
            None => {
                return Err(lx.error(t_at, format!("unknown time unit `{t}`: use s, min, h or d (e.g. 1MB/h)")));
            }
        }
    } else {
        None
    };
    match (quantity, per) {
        (Quantity::Growth, Some(hours)) => Ok(bytes / hours),
        (Quantity::Growth, None) if bytes == 0.0 => Ok(0.0),
        (Quantity::Growth, None) => {
            Err(lx.error(slash_at, "a growth needs a rate: add a time unit, e.g. `1MB/h` or `500kB/min`"))
        }
        (Quantity::Live, None) => Ok(bytes),
        (Quantity::Live, Some(_)) => {
            Err(lx.error(slash_at, "`live` is a size, not a rate: e.g. `live > 200MB` (use `growth` for rates)"))
        }
    }
}

/// Bytes per unit; an empty unit is bytes. The one grammar's units (the protocol crate).
fn size_unit(unit: &str) -> Option<f64> {
    leakscope_protocol::units::size_unit_bytes(unit).map(|bytes| bytes as f64)
}

/// Hours per unit.
fn time_unit_hours(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" | "sec" | "second" => 1.0 / 3600.0,
        "m" | "min" | "minute" => 1.0 / 60.0,
        "h" | "hr" | "hour" => 1.0,
        "d" | "day" => 24.0,
        "w" | "week" => 24.0 * 7.0,
        _ => return None,
    })
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Rule {
        parse_rule(s).unwrap_or_else(|e| panic!("{s}: {}", e.render()))
    }

    fn err(s: &str) -> RuleError {
        parse_rule(s).expect_err(s)
    }

    #[test]
    fn the_documented_rules_parse() {
        let r = ok("growth > 1MB/h");
        assert_eq!((r.scope.clone(), r.quantity, r.inclusive, r.value), (Scope::Any, Quantity::Growth, false, 1e6));
        let r = ok("site:Namespace.Type.Method growth > 0");
        assert_eq!(r.scope, Scope::Site("Namespace.Type.Method".into()));
        assert_eq!(r.value, 0.0);
        let r = ok("native growth > 5MB/h");
        assert_eq!((r.scope.clone(), r.value), (Scope::Native, 5e6));
        let r = ok("  type:System.String   growth >= 500kB/min ");
        assert_eq!(r.scope, Scope::Type("System.String".into()));
        assert!(r.inclusive);
        assert!((r.value - 30e6).abs() < 1e-6);
        assert_eq!(r.text, "type:System.String   growth >= 500kB/min");
        assert_eq!(ok("rss growth > 20 MB / h").value, 20e6);
        assert_eq!(ok("managed live > 1.5GB").value, 1.5e9);
        assert_eq!(ok("heap growth > 1MiB/d").value, 1024.0 * 1024.0 / 24.0);
        assert_eq!(ok("native:leak_* growth > 200B/s").scope, Scope::NativeSite("leak_*".into()));
        assert_eq!(ok("growth > 300B/s").value, 300.0 * 3600.0);
    }

    #[test]
    fn a_scope_and_a_size_mean_live() {
        let r = ok("rss > 2GB");
        assert_eq!((r.scope.clone(), r.quantity, r.inclusive, r.value), (Scope::Rss, Quantity::Live, false, 2e9));
        let r = ok("type:MyApp.Session >= 50MB");
        assert_eq!(
            (r.scope.clone(), r.quantity, r.inclusive),
            (Scope::Type("MyApp.Session".into()), Quantity::Live, true)
        );
        // A rate needs the word: `rss > 20MB/h` is not a size.
        assert!(err("rss > 20MB/h").message.contains("size"), "{}", err("rss > 20MB/h").message);
        // Without a scope there is nothing to measure.
        assert!(parse_rule("> 2GB").is_err());
        assert!(err("rss < 2GB").message.starts_with("only `>` and `>=`"), "{}", err("rss < 2GB").message);
        assert!(err("rss < 2GB").render_for("--on").starts_with("bad --on rule"));
    }

    #[test]
    fn patterns_may_contain_spaces_quoted_or_not() {
        let r = ok("type:Dictionary<String, List<Order>> growth > 0");
        assert_eq!(r.scope, Scope::Type("Dictionary<String, List<Order>>".into()));
        let r = ok(r#"type:"Dictionary<String, List<Order>>" live >= 200MB"#);
        assert_eq!(r.scope, Scope::Type("Dictionary<String, List<Order>>".into()));
        assert_eq!(r.quantity, Quantity::Live);
        let r = ok("site:'My App.growth live' growth > 1kB/h");
        assert_eq!(r.scope, Scope::Site("My App.growth live".into()));
    }

    #[test]
    fn errors_say_what_is_wrong_and_where() {
        let e = err("growth < 1MB/h");
        assert!(e.message.contains("only `>` and `>=`"), "{e:?}");
        assert_eq!(e.at, 7);
        assert!(e.render().ends_with("\n    growth < 1MB/h\n           ^"), "{}", e.render());
        assert!(err("growth > 1MB").message.contains("needs a rate"));
        assert!(err("live > 1MB/h").message.contains("is a size, not a rate"));
        assert!(err("growth > 1XB/h").message.contains("unknown size unit `XB`"));
        assert!(err("growth > 1MB/fortnight").message.contains("unknown time unit"));
        assert!(err("grwth > 1MB/h").message.contains("unknown word `grwth`"));
        assert!(err("type growth > 0").message.contains("`type` needs a pattern"));
        assert!(err("class:X growth > 0").message.contains("unknown scope `class:`"));
        assert!(err("site: growth > 0").message.contains("empty pattern"), "{:?}", err("site: growth > 0"));
        assert!(err("site:\"X growth > 0").message.contains("unterminated"));
        assert!(err("growth >").message.contains("expected a rate"));
        assert!(err("growth > 1MB/h extra").message.contains("unexpected text"));
        assert!(err("").message.contains("empty rule"));
        assert!(err("site:X.Y").message.contains("expected a quantity"));
        assert!(err("growth > -1MB/h").message.contains("expected a rate"));
    }

    #[test]
    fn scopes_match_their_targets() {
        let any = ok("growth > 0");
        assert!(any.applies_to(Target::Type("T")));
        assert!(any.applies_to(Target::Site("T", "S")));
        assert!(any.applies_to(Target::Native));
        assert!(!any.applies_to(Target::Rss));
        let site = ok("site:MyApp.*.Add growth > 0");
        assert!(site.applies_to(Target::Site("T", "MyApp.Cache.Add")));
        assert!(!site.applies_to(Target::Site("T", "MyApp.Cache.Remove")));
        assert!(!site.applies_to(Target::Type("MyApp.Cache.Add")));
        assert!(ok("rss live > 1GB").applies_to(Target::Rss));
        assert!(ok("live > 1MB").exceeded_by(1.5e6));
        assert!(!ok("live > 1MB").exceeded_by(1e6));
        assert!(ok("live >= 1MB").exceeded_by(1e6));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("System.*", "System.String"));
        assert!(!glob_match("System.*", "MyApp.System.X"));
        assert!(glob_match("*Cache*", "MyApp.PriceCache.Put"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(glob_match("Dictionary<String, List<Order>>", "Dictionary<String, List<Order>>"));
    }
}
