//! Which `--on` rules a worker breaks now: the soak gate's rules ([`crate::soak::rules`]) and
//! trend test ([`assess_trend`]) applied to what `run` and `listen` have — the summaries'
//! sampled sites, RSS and heap sizes, the shim's native totals, and censuses when there are any.

use crate::analysis::{Point, SoakVerdict, TrendSettings, assess_trend};
use crate::protocol::Source;
use crate::soak::rules::{Quantity, Rule, Target};
use crate::store::{Producer, SeriesPoint, Store};
use crate::units::format_bytes;
use std::collections::{BTreeMap, HashMap};

/// One rule broken by one subject of one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub pid: u32,
    /// The rule as written.
    pub rule: String,
    /// What broke it: `type:T`, `site:T @ S`, `native`, `native:S`, `managed`, `heap`, `rss`.
    pub subject: String,
    /// The managed type behind it, whose retention paths the snapshot asks for.
    pub type_name: Option<String>,
    /// The evidence in words: `+12 MB/h [9.1 MB/h, 15 MB/h]` or `2.3 GB`.
    pub evidence: String,
}

/// A series to judge and what it is.
struct Subject<'a> {
    target: Target<'a>,
    id: String,
    type_name: Option<&'a str>,
    points: Vec<Point>,
    latest_bytes: f64,
    /// Sampled series: the live samples behind the latest point (the sampling error).
    samples: Option<f64>,
}

/// The rules `p` breaks now. Growth is judged after `warmup_ms` of the producer's own time.
pub fn breaches_of(store: &Store, p: &Producer, rules: &[Rule], warmup_ms: f64, trend: &TrendSettings) -> Vec<Breach> {
    let start = p.first_t_ms.unwrap_or(0) as f64 + warmup_ms;
    let mut out = Vec::new();
    for s in subjects(store, p) {
        for rule in rules.iter().filter(|r| r.applies_to(s.target)) {
            let evidence = match rule.quantity {
                Quantity::Live => rule.exceeded_by(s.latest_bytes).then(|| format_bytes(s.latest_bytes)),
                Quantity::Growth => growth_breach(&s, rule.value, start, trend),
            };
            if let Some(evidence) = evidence {
                out.push(Breach {
                    pid: p.key.pid,
                    rule: rule.text.clone(),
                    subject: s.id.clone(),
                    type_name: s.type_name.map(str::to_string),
                    evidence,
                });
            }
        }
    }
    out
}

/// The soak gate's leak call at the rule's threshold, with the sampling error for sampled sites.
fn growth_breach(s: &Subject<'_>, threshold: f64, start: f64, trend: &TrendSettings) -> Option<String> {
    let mut g = assess_trend(&s.points, start, threshold, trend);
    if let Some(samples) = s.samples {
        crate::soak::judge::widen_for_sampling(&mut g, samples, s.latest_bytes);
    }
    (g.verdict == SoakVerdict::Leaking)
        .then(|| format!("{} {}", crate::soak::rate(g.bytes_per_hour), crate::soak::ci_text(g.ci_bytes_per_hour)))
}

fn points(series: &[SeriesPoint]) -> Vec<Point> {
    series.iter().map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect()
}

fn subjects<'a>(store: &Store, p: &'a Producer) -> Vec<Subject<'a>> {
    let mut out = Vec::new();
    let total = |target, id: &str, series: &crate::store::soak_series::Series| Subject {
        target,
        id: id.to_string(),
        type_name: None,
        points: points(series.points()),
        latest_bytes: series.last().map_or(0.0, |l| l.bytes),
        samples: None,
    };
    let soak = &p.soak;
    match p.key.source {
        Source::Agent => {
            for s in p.sites() {
                let Some(t) = s.type_name.as_deref() else { continue };
                out.push(Subject {
                    target: Target::Site(t, &s.site),
                    id: format!("site:{t} @ {}", s.site),
                    type_name: Some(t),
                    points: s.analysis_points(),
                    latest_bytes: s.latest.bytes,
                    samples: Some(s.latest.samples),
                });
            }
            out.extend(types(p));
            if !soak.live.is_empty() {
                out.push(total(Target::Managed, "managed", &soak.live));
            }
            if !soak.heap.is_empty() {
                out.push(total(Target::Heap, "heap", &soak.heap));
            }
        }
        Source::Shim => {
            if !soak.native_live.is_empty() {
                let mut native = total(Target::Native, "native", &soak.native_live);
                // The shim's default totals are estimated from its samples.
                native.samples = p.native.as_ref().filter(|n| n.sampled).map(|n| n.live_samples.unwrap_or(0) as f64);
                out.push(native);
            }
            for s in p.sites() {
                out.push(Subject {
                    target: Target::NativeSite(&s.site),
                    id: format!("native:{}", s.site),
                    type_name: None,
                    points: s.analysis_points(),
                    latest_bytes: s.latest.bytes,
                    samples: Some(s.latest.samples),
                });
            }
        }
    }
    // RSS from the agent's summaries when the worker has an agent, else from the shim's.
    let agent_too = p.key.source == Source::Shim
        && store.producers().any(|a| a.key.pid == p.key.pid && a.key.source == Source::Agent);
    if !soak.rss.is_empty() && !agent_too {
        out.push(total(Target::Rss, "rss", &soak.rss));
    }
    out
}

/// Managed types: the census's exact series when the agent counts the heap at every induced
/// GC (soak mode; a capture's one census is no series), else the sampled sites summed by type,
/// point by point.
fn types(p: &Producer) -> Vec<Subject<'_>> {
    let soak = &p.soak;
    if soak.announced.is_some() && soak.census_records > 0 {
        return soak
            .types
            .iter()
            .map(|(name, ts)| Subject {
                target: Target::Type(name),
                id: format!("type:{name}"),
                type_name: Some(name),
                points: points(ts.series.points()),
                latest_bytes: ts.series.last().map_or(0.0, |l| l.bytes),
                samples: None,
            })
            .collect();
    }
    let mut by_type: HashMap<&str, (BTreeMap<u64, f64>, f64, f64)> = HashMap::new();
    for s in p.sites() {
        let Some(t) = s.type_name.as_deref() else { continue };
        let e = by_type.entry(t).or_default();
        for pt in s.points() {
            *e.0.entry(pt.t_ms.to_bits()).or_default() += pt.bytes;
        }
        e.1 += s.latest.bytes;
        e.2 += s.latest.samples;
    }
    by_type
        .into_iter()
        .map(|(name, (sums, latest, samples))| {
            let mut pts: Vec<Point> =
                sums.into_iter().map(|(t, bytes)| Point { t_ms: f64::from_bits(t), bytes }).collect();
            pts.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
            Subject {
                target: Target::Type(name),
                id: format!("type:{name}"),
                type_name: Some(name),
                points: pts,
                latest_bytes: latest,
                samples: Some(samples),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ProducerKey;
    use crate::soak::rules::parse_rule;

    /// A worker whose site `Leak` grows by `leak` bytes a second and whose site `Churn`
    /// alternates around 1 MB, one summary a second, with this RSS.
    fn store(seconds: u64, leak: u64, rss: u64) -> Store {
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":7,"interval_ms":1000}"#);
        for i in 0..seconds {
            let churn = if i % 2 == 0 { 1_000_000 } else { 900_000 };
            let line = format!(
                r#"{{"v":1,"type":"summary","source":"agent","pid":7,"seq":{i},"t_ms":{t},"rss":{rss},
                "sites":[{{"type_name":"App.Entry","site":"App.Cache.Leak","samples":{s},"objects":{s},"bytes":{b}}},
                         {{"type_name":"System.Byte[]","site":"App.Work.Churn","samples":100,"objects":100,"bytes":{churn}}}]}}"#,
                t = 1000 * (i + 1),
                s = 100 + i * 10,
                b = 1_000_000 + leak * i
            )
            .replace('\n', " ");
            store.ingest_line(line.as_bytes());
        }
        store
    }

    fn breaches(store: &Store, rules: &[&str], warmup_ms: f64) -> Vec<Breach> {
        let rules: Vec<Rule> = rules.iter().map(|r| parse_rule(r).unwrap()).collect();
        let p = store.producer(&ProducerKey { pid: 7, source: Source::Agent }).unwrap();
        breaches_of(store, p, &rules, warmup_ms, &TrendSettings::default())
    }

    #[test]
    fn a_growing_site_and_its_type_break_a_growth_rule_churn_does_not() {
        // 100 kB/s = 360 MB/h.
        let s = store(30, 100_000, 50_000_000);
        let got = breaches(&s, &["growth > 1MB/h"], 5000.0);
        let subjects: Vec<&str> = got.iter().map(|b| b.subject.as_str()).collect();
        assert!(subjects.contains(&"site:App.Entry @ App.Cache.Leak"), "{got:?}");
        assert!(subjects.contains(&"type:App.Entry"), "{got:?}");
        assert!(!subjects.iter().any(|s| s.contains("Churn") || s.contains("Byte")), "{got:?}");
        assert_eq!(got[0].type_name.as_deref(), Some("App.Entry"));
        // Above the growth: not broken.
        assert!(breaches(&s, &["growth > 1GB/h"], 5000.0).is_empty());
        // Scoped to the churn: not broken.
        assert!(breaches(&s, &["site:App.Work.* growth > 0"], 5000.0).is_empty());
    }

    #[test]
    fn too_few_points_after_the_warmup_break_nothing() {
        let s = store(30, 100_000, 50_000_000);
        // 30 s of data, 25 s of warm-up: 5 points, fewer than a verdict needs.
        assert!(breaches(&s, &["growth > 1MB/h"], 25_000.0).is_empty());
    }

    #[test]
    fn size_rules_read_the_latest_value() {
        let s = store(3, 0, 3_000_000_000);
        let got = breaches(&s, &["rss > 2GB", "rss > 4GB"], 0.0);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].rule.as_str(), got[0].subject.as_str(), got[0].evidence.as_str()),
            ("rss > 2GB", "rss", "3.00 GB")
        );
        assert!(got[0].type_name.is_none());
        let got = breaches(&s, &["type:App.* > 900kB"], 0.0);
        assert_eq!(got.iter().map(|b| b.subject.as_str()).collect::<Vec<_>>(), ["type:App.Entry"]);
    }
}
