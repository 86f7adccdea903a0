//! `report.html`: one self-contained file — the verdict table and inline SVG charts drawn
//! here in Rust (no scripts or styles from the network). A few lines of inline script let the
//! reader show the stable rows, and mark each chart with how many series the browser laid out
//! (`data-rendered-series`), which the headless-browser test checks.
//!
//! Charts: live bytes over time of the top types (census) and call sites (retained), RSS /
//! managed heap / live data side by side, generation sizes, and native live bytes when the
//! shim reported. The warm-up is shaded; each line has a tooltip.

use super::junit::escape;
use crate::analysis::{Point, SoakVerdict};
use crate::report::Report;
use crate::soak::{Outcome, SoakReport, Subject, SubjectKind, rate};
use crate::store::Store;
use crate::units::{format_bytes, format_clock};
use std::fmt::Write as _;
use std::time::Duration;

const LINES_PER_CHART: usize = 6;
const W: f64 = 880.0;
const H: f64 = 260.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
const PALETTE: [&str; 8] = ["#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d5a97", "#f28f3b", "#2e4057"];

/// One line of a chart.
pub struct Line {
    pub name: String,
    pub points: Vec<Point>,
}

fn clock(ms: f64) -> String {
    format_clock(Duration::from_millis(ms.max(0.0) as u64))
}

/// A "nice" value ≥ x: 1, 2 or 5 × 10^k.
fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x {
            return m * p;
        }
    }
    10.0 * p
}

/// Time tick step (ms) giving about six ticks.
fn time_step(span_ms: f64) -> f64 {
    const STEPS: [f64; 14] =
        [1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3];
    let want = span_ms / 6.0;
    STEPS.iter().copied().find(|s| *s >= want).unwrap_or(3600e3 * ((want / 3600e3).ceil()))
}

/// An inline SVG line chart. `warmup_ms` is shaded; `x_max_ms` fixes the time axis.
pub fn svg_chart(id: &str, title: &str, lines: &[Line], warmup_ms: f64, x_max_ms: f64) -> String {
    let x_max =
        x_max_ms.max(lines.iter().flat_map(|l| l.points.iter().map(|p| p.t_ms)).fold(0.0, f64::max)).max(1000.0);
    let y_data_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.bytes)).fold(0.0, f64::max);
    let y_max = nice_ceil(y_data_max * 1.05);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + pw * (t / x_max).clamp(0.0, 1.0);
    let y = |b: f64| TOP + ph * (1.0 - (b / y_max).clamp(0.0, 1.0));
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(o, "<title>{}</title>", escape(title));
    if warmup_ms > 0.0 {
        let _ = write!(
            o,
            "<rect class=\"warmup\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{ph:.1}\"><title>warm-up (excluded from the verdicts)</title></rect>",
            LEFT,
            x(warmup_ms) - LEFT
        );
        let _ = write!(o, "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\">warm-up</text>", LEFT + 4.0, TOP + 12.0);
    }
    // Axes and grid.
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            escape(&format_bytes(v))
        );
    }
    let step = time_step(x_max);
    let mut t = 0.0;
    while t <= x_max + 1.0 {
        let xx = x(t);
        let _ = write!(
            o,
            "<line class=\"axis\" x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph,
            TOP + ph + 4.0,
            TOP + ph + 17.0,
            clock(t)
        );
        t += step;
    }
    let _ = write!(
        o,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        TOP + ph,
        TOP + ph,
        W - RIGHT,
        TOP + ph
    );
    if lines.iter().all(|l| l.points.is_empty()) {
        let _ = write!(
            o,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    for (i, l) in lines.iter().enumerate() {
        if l.points.is_empty() {
            continue;
        }
        let colour = PALETTE[i % PALETTE.len()];
        let pts: Vec<String> = l.points.iter().map(|p| format!("{:.1},{:.1}", x(p.t_ms), y(p.bytes))).collect();
        let last = l.points.last().map(|p| p.bytes).unwrap_or(0.0);
        let _ = write!(
            o,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{} — {} at the end</title></polyline>",
            escape(&l.name),
            pts.join(" "),
            escape(&l.name),
            escape(&format_bytes(last))
        );
        if l.points.len() <= 80 {
            for p in &l.points {
                let _ = write!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\" fill=\"{colour}\"><title>{} at {}: {}</title></circle>",
                    x(p.t_ms),
                    y(p.bytes),
                    escape(&l.name),
                    clock(p.t_ms),
                    escape(&format_bytes(p.bytes))
                );
            }
        }
    }
    o.push_str("</svg>");
    o
}

fn legend(lines: &[Line]) -> String {
    let mut o = String::from("<ul class=\"legend\">");
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            o,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
            PALETTE[i % PALETTE.len()],
            escape(&l.name)
        );
    }
    o.push_str("</ul>");
    o
}

fn figure(id: &str, title: &str, caption: &str, lines: &[Line], warmup: f64, x_max: f64) -> String {
    format!(
        "<figure><figcaption><b>{}</b> {}</figcaption>{}{}</figure>\n",
        escape(title),
        escape(caption),
        svg_chart(id, title, lines, warmup, x_max),
        legend(lines)
    )
}

/// Subjects worth a line in a chart: leaking, plateaued, inconclusive, then the largest.
fn chart_subjects(soak: &SoakReport, kind: SubjectKind) -> Vec<&Subject> {
    let mut v: Vec<&Subject> = soak.subjects.iter().filter(|s| s.kind == kind).collect();
    let rank = |s: &Subject| match s.verdict {
        SoakVerdict::Leaking => 0,
        SoakVerdict::Plateaued => 1,
        SoakVerdict::Inconclusive => 2,
        SoakVerdict::Stable => 3,
    };
    v.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(b.growth.bytes_per_hour.total_cmp(&a.growth.bytes_per_hour))
            .then(b.peak_bytes.total_cmp(&a.peak_bytes))
    });
    v.truncate(LINES_PER_CHART);
    v
}

fn subject_lines(store: &Store, subjects: &[&Subject]) -> Vec<Line> {
    subjects
        .iter()
        .map(|s| Line {
            name: format!("{} ({})", s.label, s.verdict.as_str()),
            points: crate::soak::candidates::subject_points(store, s),
        })
        .collect()
}

fn series_line(name: &str, series: &crate::store::soak_series::Series) -> Option<Line> {
    (!series.is_empty())
        .then(|| Line { name: name.to_string(), points: crate::soak::candidates::to_points(series.points()) })
}

pub fn render(report: &Report, store: &Store) -> String {
    let Some(soak) = report.soak.as_ref() else {
        return String::new();
    };
    let warmup = soak.settings.warmup_ms;
    let x_max = soak.measurement.data_ms;
    let outcome = soak.outcome.as_str();
    // A soak that lacked the evidence is not an infrastructure error: its badge says so.
    let (badge, badge_class) =
        if soak.outcome == Outcome::Error && !soak.sufficiency.enough && soak.headline.starts_with("INCONCLUSIVE") {
            ("INCONCLUSIVE".to_string(), "inconclusive")
        } else {
            (outcome.to_uppercase(), outcome)
        };
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>leakscope soak: {} — {}</title><style>{STYLE}</style></head>\n<body data-outcome=\"{outcome}\" data-enough-evidence=\"{}\">\n",
        badge,
        escape(&report.session.command.as_ref().map(|c| c.join(" ")).unwrap_or_default()),
        soak.sufficiency.enough
    );
    let _ = write!(
        o,
        "<header><h1>leakscope soak <span class=\"outcome {badge_class}\">{badge}</span></h1><p class=\"headline\">{}</p>",
        escape(&soak.headline)
    );
    let m = &soak.measurement;
    let _ = write!(
        o,
        "<p class=\"meta\">{}<br>{} of data · warm-up {} · a full GC induced every {}{} · {} censuses, {} retained reports after full GCs · census pause {:.1} ms mean, {:.1} ms max · exit code {}{}</p></header>",
        report.session.command.as_ref().map(|c| format!("<code>{}</code>", escape(&c.join(" ")))).unwrap_or_default(),
        clock(m.data_ms),
        clock(soak.settings.warmup_ms),
        clock(soak.settings.gc_every_ms as f64),
        if soak.settings.gc_every_chosen { " (chosen for the duration)" } else { "" },
        m.census_records,
        m.retained_records,
        m.census_pause_ms_mean,
        m.census_pause_ms_max,
        soak.exit_code,
        soak.decided_after_ms.map(|t| format!(" · verdict reached after {}", clock(t))).unwrap_or_default()
    );
    o.push('\n');
    if !soak.problems.is_empty() || !soak.warnings.is_empty() {
        o.push_str("<section id=\"problems\"><ul>");
        for p in &soak.problems {
            let _ = write!(o, "<li class=\"problem\">{}</li>", escape(p));
        }
        for w in &soak.warnings {
            let _ = write!(o, "<li class=\"warning\">{}</li>", escape(w));
        }
        o.push_str("</ul></section>\n");
    }

    // Rules and baseline.
    o.push_str("<section id=\"rules\"><h2>Rules</h2><table><thead><tr><th>rule</th><th>result</th><th>subjects</th><th>breaking</th></tr></thead><tbody>");
    for r in &soak.rules {
        let _ = write!(
            o,
            "<tr class=\"rule {}\"><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.result,
            escape(&r.rule),
            if r.default { " (default)" } else { "" },
            r.result,
            r.subjects,
            escape(&r.violations.join(", "))
        );
    }
    o.push_str("</tbody></table>");
    if let Some(b) = &soak.baseline {
        let _ = write!(
            o,
            "<h3>Baseline <code>{}</code></h3><p>{} regressions, {} known, {} fixed</p><ul>",
            escape(&b.file),
            b.regressions.len(),
            b.known.len(),
            b.fixed.len()
        );
        for reg in &b.regressions {
            let _ = write!(o, "<li class=\"regression\">{}</li>", escape(&reg.text));
        }
        for f in &b.fixed {
            let _ = write!(o, "<li class=\"fixed\">fixed: {}</li>", escape(f));
        }
        o.push_str("</ul>");
    }
    o.push_str("</section>\n");

    // Charts.
    o.push_str("<section id=\"charts\"><h2>Charts</h2>\n");
    let types = chart_subjects(soak, SubjectKind::Type);
    let type_caption = if types.iter().any(|s| s.exact) {
        "exact live bytes per type from the census after each induced full GC"
    } else {
        "sampled live bytes per type after each full GC (no census on this runtime)"
    };
    o.push_str(&figure(
        "chart-types",
        "Live bytes by type",
        type_caption,
        &subject_lines(store, &types),
        warmup,
        x_max,
    ));
    let sites = chart_subjects(soak, SubjectKind::Site);
    o.push_str(&figure(
        "chart-sites",
        "Retained bytes by call site",
        "sampled survivors of each full GC, by allocating call site (about one sample per 100 KiB allocated)",
        &subject_lines(store, &sites),
        warmup,
        x_max,
    ));
    let mut memory_lines = Vec::new();
    let mut gen_lines = Vec::new();
    let mut native_lines = Vec::new();
    let multi = store.processes().len() > 1;
    for view in store.processes() {
        let suffix = if multi { format!(" [pid {}]", view.pid) } else { String::new() };
        let rss_src = view.agent.filter(|a| !a.soak.rss.is_empty()).or(view.shim).map(|p| &p.soak.rss);
        if let Some(rss) = rss_src.and_then(|s| series_line(&format!("RSS{suffix}"), s)) {
            memory_lines.push(rss);
        }
        if let Some(a) = view.agent {
            memory_lines.extend(series_line(&format!("managed heap (generation sizes){suffix}"), &a.soak.heap));
            memory_lines.extend(series_line(&format!("live managed data (census){suffix}"), &a.soak.live));
            for (name, s) in ["gen0", "gen1", "gen2", "LOH", "POH"].iter().zip(&a.soak.gens) {
                gen_lines.extend(series_line(&format!("{name}{suffix}"), s));
            }
        }
        if let Some(s) = view.shim {
            native_lines.extend(series_line(&format!("native live{suffix}"), &s.soak.native_live));
            memory_lines.extend(series_line(&format!("native live{suffix}"), &s.soak.native_live));
        }
    }
    let _ = write!(o, "<div id=\"memory\">");
    for pm in &soak.memory {
        for line in &pm.interpretation {
            let _ = write!(
                o,
                "<p class=\"interpretation{}\">{}</p>",
                if pm.kept_not_leaked { " kept" } else { "" },
                escape(line)
            );
        }
    }
    o.push_str("</div>");
    o.push_str(&figure(
        "chart-memory",
        "RSS, managed heap and live data",
        "side by side: when RSS or the heap grows but live data does not, the GC or the allocator kept memory — that is not a leak",
        &memory_lines,
        warmup,
        x_max,
    ));
    o.push_str(&figure(
        "chart-generations",
        "GC generation sizes",
        "after the latest GC, per summary",
        &gen_lines,
        warmup,
        x_max,
    ));
    if !native_lines.is_empty() {
        o.push_str(&figure("chart-native", "Native live bytes", "exact, from the shim", &native_lines, warmup, x_max));
    }
    o.push_str("</section>\n");
    // Verdict table.
    let _ = write!(
        o,
        "<section id=\"verdicts\"><h2>Verdicts</h2><p>{} judged: {} leaking, {} plateaued, {} stable, {} inconclusive{}. \
         <label><input type=\"checkbox\" id=\"show-stable\"> show stable subjects</label></p>\
         <table id=\"verdict-table\"><thead><tr><th>verdict</th><th>kind</th><th>subject</th><th>growth</th><th>95% CI</th><th>live</th><th>since</th></tr></thead><tbody>",
        soak.counts.judged,
        soak.counts.leaking,
        soak.counts.plateaued,
        soak.counts.stable,
        soak.counts.inconclusive,
        if soak.counts.unlisted > 0 { format!(" ({} not listed)", soak.counts.unlisted) } else { String::new() }
    );
    for s in &soak.subjects {
        let v = s.verdict.as_str();
        let ci =
            s.growth.ci_bytes_per_hour.map(|[a, b]| format!("{} … {}", rate(a), rate(b))).unwrap_or_else(|| "—".into());
        let _ = write!(
            o,
            "<tr class=\"verdict {v}{}\" data-verdict=\"{v}\" data-kind=\"{}\" data-subject=\"{}\"><td><span class=\"badge {v}\">{v}{}</span></td><td>{}</td><td class=\"subject\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            if s.failing() { " failing" } else { "" },
            s.kind.as_str(),
            escape(&s.id),
            if s.failing() { " ✗" } else { "" },
            s.kind.as_str(),
            escape(&s.label),
            rate(s.growth.bytes_per_hour),
            ci,
            escape(&format_bytes(s.live_bytes)),
            s.verdict_since_ms.map(clock).unwrap_or_else(|| "—".into())
        );
        let _ = write!(o, "<tr class=\"evidence {v}\"><td></td><td colspan=\"6\">{}</td></tr>", escape(&s.evidence));
    }
    o.push_str("</tbody></table></section>\n");

    let _ = write!(
        o,
        "<footer>leakscope {} · report.json schema {} / {} · generated {}</footer>\n<script>{SCRIPT}</script>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        crate::report::REPORT_SCHEMA,
        crate::soak::SOAK_SCHEMA,
        super::junit::iso8601(report.generated_unix_ms)
    );
    if soak.outcome == Outcome::Error {
        // Nothing else to add: the problems are listed at the top.
    }
    o
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}\
.outcome{padding:2px 10px;border-radius:4px;color:#fff}.outcome.pass{background:#2e7d32}.outcome.fail{background:#c62828}.outcome.error{background:#6d4c41}.outcome.inconclusive{background:#ef6c00}\
.headline{font-size:15px;font-weight:600}.meta{color:#556}code{background:#f3f4f7;padding:0 3px;border-radius:3px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef;vertical-align:top}\
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}td.subject{word-break:break-all}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}\
.badge.leaking{background:#c62828}.badge.plateaued{background:#ef6c00}.badge.stable{background:#2e7d32}.badge.inconclusive{background:#78909c}\
tr.evidence td{color:#556;font-size:12.5px;border-bottom:1px solid #dde}tr.failing td.subject{font-weight:600}\
#verdict-table tr.stable{display:none}#verdict-table.show-stable tr.stable{display:table-row}\
li.problem{color:#c62828}li.warning{color:#8d6e00}li.regression{color:#c62828}p.interpretation.kept{background:#fff8e1;padding:6px 10px;border-left:3px solid #ef6c00}\
figure{margin:18px 0}figcaption{margin-bottom:4px;color:#334}svg.chart{max-width:100%;height:auto;background:#fcfcfe;border:1px solid #e4e6ee}\
svg .grid{stroke:#e8eaf0}svg .axis{stroke:#9aa}svg .tick{font-size:11px;fill:#556}svg .note{font-size:11px;fill:#889}svg .warmup{fill:#eceff1}\
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12.5px}\
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}footer{margin-top:32px;color:#889;font-size:12px}";

/// Marks each chart with the number of series the browser laid out, and wires the toggle.
const SCRIPT: &str = "(function(){var charts=document.querySelectorAll('svg.chart');var drawn=0;\
charts.forEach(function(svg){var n=0;svg.querySelectorAll('polyline.series').forEach(function(pl){var b=pl.getBBox();if(b.width>0||b.height>0){n++;}});\
svg.setAttribute('data-rendered-series',String(n));if(n>0){drawn++;}});\
document.body.setAttribute('data-charts-drawn',String(drawn));\
var rows=document.querySelectorAll('#verdict-table tr.verdict');document.body.setAttribute('data-verdict-rows',String(rows.length));\
var box=document.getElementById('show-stable');var table=document.getElementById('verdict-table');\
if(box&&table){box.addEventListener('change',function(){table.classList.toggle('show-stable',box.checked);});}})();";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers_and_time_steps() {
        assert_eq!(nice_ceil(3.2e6), 5e6);
        assert_eq!(nice_ceil(1e6), 1e6);
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(time_step(60_000.0), 10_000.0);
        assert_eq!(time_step(30.0 * 60_000.0), 300_000.0);
    }

    #[test]
    fn a_chart_is_an_svg_with_one_polyline_per_series_and_escaped_names() {
        let lines = vec![
            Line {
                name: "Dictionary<String, List<Order>>".into(),
                points: vec![Point { t_ms: 0.0, bytes: 0.0 }, Point { t_ms: 60_000.0, bytes: 2e6 }],
            },
            Line { name: "b".into(), points: vec![] },
        ];
        let svg = svg_chart("chart-x", "T & U", &lines, 10_000.0, 60_000.0);
        assert!(svg.starts_with("<svg id=\"chart-x\" class=\"chart\""));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("Dictionary&lt;String, List&lt;Order&gt;&gt;"));
        assert!(svg.contains("class=\"warmup\""));
        assert!(svg.contains("2.00 MB") || svg.contains(">2.50 MB<") || svg.contains("MB"));
        assert!(svg.ends_with("</svg>"));
    }
}
