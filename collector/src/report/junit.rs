//! `junit.xml`: the soak as a JUnit test report, for CI systems that display those.
//!
//! One `<testsuite>`; one `<testcase>` per rule, per baseline regression, and per verdict
//! subject listed in report.json (`classname` = `leakscope.type`, `leakscope.site`,
//! `leakscope.native`, …). A subject that breaks a rule is a `<failure>`; an inconclusive one is
//! `<skipped>` (no verdict yet); the others pass with their evidence in `<system-out>`. A soak
//! that could not be judged has one `<error>` testcase saying why (for too few points: the
//! INCONCLUSIVE headline), and each growth rule it could not check is an `<error>` too, never a
//! pass. Process memory that grows while no rule breaks is a `leakscope.memory` testcase with
//! the warning in `<system-out>`.

use crate::analysis::SoakVerdict;
use crate::report::Report;
use crate::soak::{Outcome, SoakReport, Subject};
use std::fmt::Write as _;

/// Escapes text for XML 1.0 attributes and content; drops the control characters XML forbids.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

/// `2026-11-19T10:51:13Z` from milliseconds since the epoch (UTC; civil-from-days).
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

fn classname(s: &Subject) -> &'static str {
    match s.kind {
        crate::soak::SubjectKind::Type => "leakscope.type",
        crate::soak::SubjectKind::Site => "leakscope.site",
        crate::soak::SubjectKind::Native => "leakscope.native",
        crate::soak::SubjectKind::NativeSite => "leakscope.native_site",
        crate::soak::SubjectKind::Managed => "leakscope.managed",
        crate::soak::SubjectKind::Heap => "leakscope.heap",
        crate::soak::SubjectKind::Rss => "leakscope.rss",
    }
}

struct Case {
    classname: String,
    name: String,
    /// (kind, message, body): `failure`, `error`, `skipped`, or none.
    outcome: Option<(&'static str, String, String)>,
    out: String,
}

pub fn render(report: &Report) -> String {
    let Some(soak) = report.soak.as_ref() else {
        return String::new();
    };
    let cases = cases(soak);
    let count = |k: &str| cases.iter().filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == k)).count();
    let (failures, errors, skipped) = (count("failure"), count("error"), count("skipped"));
    let secs = report.session.duration_ms as f64 / 1000.0;
    let mut o = String::new();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"leakscope soak\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{secs:.3}\">",
        cases.len()
    );
    let timestamp = report.session.started_unix_ms.map(iso8601).unwrap_or_else(|| iso8601(report.generated_unix_ms));
    let _ = writeln!(
        o,
        "  <testsuite name=\"leakscope.soak\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{secs:.3}\" timestamp=\"{timestamp}\">",
        cases.len()
    );
    o.push_str("    <properties>\n");
    let mut props: Vec<(&str, String)> = vec![
        ("outcome", soak.outcome.as_str().to_string()),
        ("exit_code", soak.exit_code.to_string()),
        ("headline", soak.headline.clone()),
        ("duration_ms", soak.settings.duration_ms.to_string()),
        ("warmup_ms", format!("{:.0}", soak.settings.warmup_ms)),
        ("gc_every_ms", soak.settings.gc_every_ms.to_string()),
    ];
    if let Some(cmd) = &report.session.command {
        props.insert(0, ("command", cmd.join(" ")));
    }
    for r in &soak.settings.fail_on {
        props.push(("fail_on", r.clone()));
    }
    if let Some(t) = soak.decided_after_ms {
        props.push(("decided_after_ms", format!("{t:.0}")));
    }
    for (k, v) in props {
        let _ = writeln!(o, "      <property name=\"{}\" value=\"{}\"/>", escape(k), escape(&v));
    }
    o.push_str("    </properties>\n");
    for c in &cases {
        let _ =
            write!(o, "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"", escape(&c.classname), escape(&c.name));
        if c.outcome.is_none() && c.out.is_empty() {
            o.push_str("/>\n");
            continue;
        }
        o.push_str(">\n");
        if let Some((kind, message, body)) = &c.outcome {
            if kind == &"skipped" {
                let _ = writeln!(o, "      <skipped message=\"{}\"/>", escape(message));
            } else {
                let _ = writeln!(
                    o,
                    "      <{kind} message=\"{}\" type=\"{}\">{}</{kind}>",
                    escape(message),
                    escape(kind),
                    escape(body)
                );
            }
        }
        if !c.out.is_empty() {
            let _ = writeln!(o, "      <system-out>{}</system-out>", escape(&c.out));
        }
        o.push_str("    </testcase>\n");
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

fn cases(soak: &SoakReport) -> Vec<Case> {
    let mut cases = Vec::new();
    if soak.outcome == Outcome::Error {
        cases.push(Case {
            classname: "leakscope.soak".into(),
            name: "the soak could be judged".into(),
            outcome: Some(("error", soak.headline.clone(), soak.problems.join("\n"))),
            out: String::new(),
        });
    }
    // Process memory that grows while no rule breaks: shown with the pass, never hidden.
    for m in &soak.memory {
        let Some(warning) = &m.warning else { continue };
        let mut name = "process memory".to_string();
        if soak.memory.len() > 1 {
            let _ = write!(name, " [pid {}]", m.pid);
        }
        cases.push(Case {
            classname: "leakscope.memory".into(),
            name,
            outcome: None,
            out: format!("warning: {warning}"),
        });
    }
    for r in &soak.rules {
        let failing: Vec<&String> = r.violations.iter().filter(|v| !r.known_in_baseline.contains(v)).collect();
        let outcome = if !failing.is_empty() {
            Some((
                "failure",
                format!("{} subject(s) break `{}`", failing.len(), r.rule),
                failing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
            ))
        } else if r.result == "inconclusive" {
            // Not checked is not passed: a gate must not show green for it.
            Some((
                "error",
                format!(
                    "`{}` could not be checked: {}",
                    r.rule,
                    soak.sufficiency.missing.as_deref().unwrap_or("too few comparable points")
                ),
                soak.sufficiency.suffice.clone().unwrap_or_default(),
            ))
        } else {
            None
        };
        cases.push(Case {
            classname: "leakscope.rule".into(),
            name: format!("fail-on: {}{}", r.rule, if r.default { " (default)" } else { "" }),
            outcome,
            out: format!("{} subjects checked", r.subjects),
        });
    }
    if let Some(b) = &soak.baseline {
        for reg in &b.regressions {
            cases.push(Case {
                classname: "leakscope.baseline".into(),
                name: format!("regression: {}", reg.subject),
                outcome: Some(("failure", reg.text.clone(), format!("baseline: {}", b.file))),
                out: String::new(),
            });
        }
    }
    for s in &soak.subjects {
        let verdict = s.verdict.as_str();
        let message = format!(
            "{verdict}: {} ({})",
            crate::soak::rate(s.growth.bytes_per_hour),
            crate::soak::ci_text(s.growth.ci_bytes_per_hour)
        );
        let outcome = if s.failing() {
            Some(("failure", message, s.evidence.clone()))
        } else if s.verdict == SoakVerdict::Inconclusive {
            Some(("skipped", format!("{message}: {}", s.evidence), String::new()))
        } else {
            None
        };
        let mut name = s.label.clone();
        if soak.memory.len() > 1 {
            let _ = write!(name, " [pid {}]", s.pid);
        }
        // Failures and skips carry the evidence already; passing verdicts show it here.
        let out = if outcome.is_none() { format!("{verdict}: {}", s.evidence) } else { String::new() };
        cases.push(Case { classname: classname(s).into(), name, outcome, out });
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_timestamps() {
        assert_eq!(escape("a<b & \"c\" 'd'>\u{1}\n"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\n");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_749_952_489), "2026-11-27T03:25:52Z");
    }
}
