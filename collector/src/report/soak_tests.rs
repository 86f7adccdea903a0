//! The soak section as the reports carry it: report.json, junit.xml, report.html, report.txt and
//! the end-of-soak summary, on the synthetic soaks of `soak::tests`.

use super::*;
use crate::soak::tests::*;
use crate::soak::*;
use crate::store::Store;

#[test]
fn report_json_junit_and_html_carry_the_verdicts() {
    let store = worker(true, false).store();
    let mut session = soak_session();
    session.soak = Some(settings(&[]));
    session.command = Some(vec!["dotnet".into(), "Shop.dll".into()]);
    let ctx = Context::new(settings(&[])).unwrap();
    let report = build_with_soak(&store, &session, &crate::analysis::Thresholds::default(), Some(&ctx));
    let v: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(v["soak"]["schema"], SOAK_SCHEMA);
    for key in [
        "outcome",
        "exit_code",
        "headline",
        "settings",
        "measurement",
        "rules",
        "counts",
        "subjects",
        "memory",
        "decided_after_ms",
    ] {
        assert!(v["soak"].get(key).is_some(), "soak.{key} missing");
    }
    let s0 = &v["soak"]["subjects"][0];
    for key in ["kind", "id", "label", "verdict", "growth", "failed_rules", "evidence", "sites", "verdict_since_ms"] {
        assert!(s0.get(key).is_some(), "subject.{key} missing");
    }
    assert_eq!(s0["growth"]["ci_bytes_per_hour"].as_array().unwrap().len(), 2);

    let xml = junit::render(&report);
    well_formed(&xml);
    assert!(xml.contains("<testcase classname=\"leakscope.type\" name=\"Shop.AuditRecord\""));
    assert!(xml.contains("<failure message=\"leaking: +"));
    assert!(xml.contains("classname=\"leakscope.rule\" name=\"fail-on: growth &gt; 100kB/h (default)\""));
    let failures = xml.matches("<failure ").count();
    assert!(xml.contains(&format!("failures=\"{failures}\"")), "{xml}");

    let html = html::render(&report, &store);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("data-subject=\"type:Shop.AuditRecord\""));
    assert!(html.contains("<svg id=\"chart-types\""));
    assert!(html.contains("<svg id=\"chart-memory\""));
    assert!(html.contains("<svg id=\"chart-generations\""));
    assert!(html.contains("<polyline class=\"series\""));
    assert!(
        !html.contains("http://")
            || html.matches("http://").all(|_| html.contains("xmlns=\"http://www.w3.org/2000/svg\""))
    );
    assert!(!html.contains("<script src"), "self-contained");
    let text = crate::report::render_text(&report);
    assert!(text.contains("SOAK VERDICT: FAIL"), "{text}");
}

/// A small XML well-formedness check: balanced tags, quoted attributes, known entities.
pub(crate) fn well_formed(xml: &str) {
    let body = xml.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "bad tag name in <{tag}>"
            );
            let attrs = &tag[name.len()..];
            let mut in_quote = false;
            for c in attrs.chars() {
                if c == '"' {
                    in_quote = !in_quote;
                } else if !in_quote {
                    assert!(c != '<' && c != '&', "bad attribute text in <{tag}>");
                }
            }
            assert!(!in_quote, "unterminated attribute in <{tag}>");
            for part in attrs.split('"').skip(1).step_by(2) {
                check_text(part);
            }
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[gt + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn check_text(t: &str) {
    assert!(!t.contains('<') && !t.contains('>'), "raw angle bracket in {t:?}");
    let mut rest = t;
    while let Some(amp) = rest.find('&') {
        let semi = rest[amp..].find(';').expect("unterminated entity") + amp;
        let ent = &rest[amp + 1..semi];
        assert!(["amp", "lt", "gt", "quot", "apos"].contains(&ent), "unknown entity &{ent};");
        rest = &rest[semi + 1..];
    }
    assert!(t.chars().all(|c| c >= ' ' || c == '\n' || c == '\t' || c == '\r'), "control character");
}

/// `report.txt`, `junit.xml` and `report.html` of a soak judged on `store` with `ctx`.
fn rendered(store: &Store, ctx: &Context) -> (crate::report::Report, String, String, String) {
    let mut session = soak_session();
    session.soak = Some(ctx.settings.clone());
    let report = build_with_soak(store, &session, &crate::analysis::Thresholds::default(), Some(ctx));
    let text = crate::report::render_text(&report);
    let xml = junit::render(&report);
    let html = html::render(&report, store);
    (report, text, xml, html)
}

/// The testcase element of `name` in a JUnit report (up to its end).
fn testcase<'a>(xml: &'a str, classname: &str, name: &str) -> &'a str {
    let needle = format!("<testcase classname=\"{classname}\" name=\"{name}\"");
    let at = xml.find(&needle).unwrap_or_else(|| panic!("no testcase {needle} in {xml}"));
    let rest = &xml[at..];
    let end = if rest[..rest.find('>').unwrap()].ends_with('/') {
        rest.find('>').unwrap() + 1
    } else {
        rest.find("</testcase>").unwrap() + "</testcase>".len()
    };
    &rest[..end]
}

#[test]
fn a_soak_with_one_point_after_warm_up_is_inconclusive_never_a_pass() {
    // The soak: 60 s, a full GC every 30 s, a worker leaking ~150 MB/h; summaries every
    // 5 s show RSS and the heap climbing.
    let mut sim = Sim::new();
    for k in 1..=1u64 {
        let t = k * 30_000;
        let secs = t as f64 / 1000.0;
        sim.full_gc(
            t,
            &[("System.Byte[]", 4.0 * MB, 3000.0), ("Shop.AuditRecord", 40.0 * secs * 1000.0, 1000.0 * secs)],
            &[],
        );
    }
    for k in 1..=12u64 {
        let t = k * 5000;
        sim.summary(t, 60.0 * MB + 2.5 * MB * k as f64, 8.0 * MB + 2.0 * MB * k as f64);
    }
    let mut s = settings(&[]);
    s.duration_ms = 60_000;
    s.gc_every_ms = 30_000;
    let ctx = Context::new(s).unwrap();
    let (report, text, xml, html) = rendered(&sim.store(), &ctx);
    let r = report.soak.as_ref().unwrap();
    assert_eq!((r.outcome, r.exit_code), (Outcome::Error, 2), "{}", r.headline);
    assert!(
        r.headline.starts_with(
            "INCONCLUSIVE: 1 comparable point after the 12s warm-up, 8 needed: use --duration 6m00s or more, or --gc-every 5s"
        ),
        "{}",
        r.headline
    );
    assert!(
        r.headline.contains("; meanwhile ") && r.headline.contains("RSS grows at +"),
        "the process-level growth is named: {}",
        r.headline
    );
    assert!(r.problems[0].contains("too short"), "{:?}", r.problems);
    let suff = &r.sufficiency;
    assert!(!suff.enough);
    assert_eq!((suff.points_after_warmup, suff.points_needed), (1, 8));
    assert!(suff.blocking >= 2, "{suff:?}");
    assert_eq!(suff.suggested_duration_ms, Some(360_000));
    assert_eq!(suff.suggested_gc_every_ms, Some(5000));
    let leak = subject(r, "type:Shop.AuditRecord");
    assert!(leak.material && leak.blocking, "{leak:?}");
    assert_eq!(leak.verdict, SoakVerdict::Inconclusive);
    // No verdict, so no time to verdict anywhere.
    assert_eq!(r.decided_after_ms, None);
    assert!(!text.contains("verdict reached after"), "{text}");
    assert!(!html.contains("verdict reached after"));
    let summary = render_soak_summary(&report, Some(std::path::Path::new("/tmp/x")));
    assert!(!summary.contains("verdict reached after"), "{summary}");
    assert!(summary.contains("leakscope soak: INCONCLUSIVE: "), "{summary}");
    assert!(text.contains("SOAK VERDICT: INCONCLUSIVE: "), "{text}");
    assert!(text.contains("not enough evidence for a verdict: 1 comparable point"), "{text}");
    // JUnit: an error, no pass for the leaking type or the rules it could not check.
    well_formed(&xml);
    assert!(xml.contains("errors=\"3\""), "the soak and both default rules: {xml}");
    let case = testcase(&xml, "leakscope.type", "Shop.AuditRecord");
    assert!(case.contains("<skipped ") || case.contains("<error ") || case.contains("<failure "), "{case}");
    for rule in ["growth &gt; 100kB/h", "managed growth &gt; 1MB/h"] {
        let case = testcase(&xml, "leakscope.rule", &format!("fail-on: {rule} (default)"));
        assert!(case.contains("<error message=\"`"), "{case}");
    }
    assert!(r.rules.iter().all(|x| x.result == "inconclusive"), "{:?}", r.rules);
    // HTML: the badge says what happened.
    assert!(html.contains("<span class=\"outcome inconclusive\">INCONCLUSIVE</span>"));
    assert!(html.contains("data-enough-evidence=\"false\""));
}

#[test]
fn with_rules_that_do_not_cover_the_total_a_thin_leak_is_a_pass_with_a_warning_not_a_plain_pass() {
    let store = thin_leak().store();
    let ctx = Context::new(settings(&["growth > 100kB/h"])).unwrap();
    let (report, text, xml, _) = rendered(&store, &ctx);
    let r = report.soak.as_ref().unwrap();
    assert_eq!((r.outcome, r.exit_code), (Outcome::Pass, 0), "{}", r.headline);
    assert!(r.headline.starts_with("PASS with a warning: live managed data grows at +"), "{}", r.headline);
    assert!(!r.headline.contains("no leak found"), "{}", r.headline);
    let w = r.memory[0].warning.as_deref().unwrap();
    assert!(w.contains("while no rule breaks: the application keeps objects"), "{w}");
    assert!(w.contains("the fastest steadily growing types: "), "{w}");
    assert!(w.matches("Shop.Shard<M").count() >= 4, "{w}");
    assert!(w.contains("--fail-on 'managed growth > 1MB/h'"), "{w}");
    assert!(r.warnings.iter().any(|x| x == w));
    assert!(text.contains("PASS with a warning"), "{text}");
    let case = testcase(&xml, "leakscope.memory", "process memory");
    assert!(case.contains("<system-out>warning: live managed data grows"), "{case}");
}
