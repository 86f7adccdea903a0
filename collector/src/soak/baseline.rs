//! `--baseline FILE`: compare with an earlier soak's report.json and fail on regressions only.
//!
//! A subject that breaks a rule now is **known** when the baseline already had it leaking at a
//! comparable rate — it is reported, not failed. It regresses ("growth up") when its interval's
//! lower end is above the baseline interval's upper end *and* above 1.25× the baseline rate
//! (exact census intervals are so narrow that run-to-run timing alone would otherwise count) — so a team can ratchet: known leaks stay visible, new leaks
//! and faster leaks fail. Subjects are matched by their `id` (`type:…`, `site:… @ …`, `native`,
//! …), which carries no pid.

use super::model::{Comparison, Regression, Subject};
use crate::analysis::SoakVerdict;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A known leak regresses when it grows at least this much faster (beyond both intervals).
pub const GROWTH_UP_FACTOR: f64 = 1.25;

#[derive(Debug, Clone)]
pub struct BaseSubject {
    pub verdict: String,
    pub bytes_per_hour: f64,
    pub ci: Option<[f64; 2]>,
    pub failed_rules: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub file: PathBuf,
    pub outcome: String,
    pub subjects: HashMap<String, BaseSubject>,
}

/// A soak's report.json lists a few hundred subjects: far below this.
const MAX_BASELINE_BYTES: u64 = 64 << 20;

/// Reads a report.json with a `soak` section.
pub fn load(path: &Path) -> Result<Baseline, String> {
    // A regular file (a FIFO is refused, not waited on), and no larger than a report.json.
    let text =
        crate::files::read_regular(path, MAX_BASELINE_BYTES).map_err(|e| format!("cannot read the baseline {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("the baseline {} is not JSON: {e}", path.display()))?;
    parse(path, &v)
}

pub fn parse(path: &Path, v: &serde_json::Value) -> Result<Baseline, String> {
    let soak = &v["soak"];
    let schema = soak["schema"].as_str().unwrap_or("");
    if schema != super::model::SOAK_SCHEMA {
        return Err(format!(
            "the baseline {} has no soak verdicts (expected a report.json of `leakscope soak` with soak.schema {:?}, found {:?})",
            path.display(),
            super::model::SOAK_SCHEMA,
            if schema.is_empty() { "none" } else { schema }
        ));
    }
    let mut subjects = HashMap::new();
    for s in soak["subjects"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(id) = s["id"].as_str() else { continue };
        let ci =
            s["growth"]["ci_bytes_per_hour"].as_array().and_then(|a| Some([a.first()?.as_f64()?, a.get(1)?.as_f64()?]));
        subjects.insert(
            id.to_string(),
            BaseSubject {
                verdict: s["verdict"].as_str().unwrap_or("").to_string(),
                bytes_per_hour: s["growth"]["bytes_per_hour"].as_f64().unwrap_or(0.0),
                ci,
                failed_rules: s["failed_rules"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            },
        );
    }
    Ok(Baseline { file: path.to_path_buf(), outcome: soak["outcome"].as_str().unwrap_or("").to_string(), subjects })
}

/// Marks known failures on `subjects` and lists the regressions.
pub fn compare(b: &Baseline, subjects: &mut [Subject]) -> Comparison {
    let mut c = Comparison {
        file: b.file.display().to_string(),
        baseline_outcome: b.outcome.clone(),
        matched: 0,
        regressions: Vec::new(),
        known: Vec::new(),
        fixed: Vec::new(),
    };
    let rate = super::evidence::rate;
    for s in subjects.iter_mut() {
        let base = b.subjects.get(&s.id);
        if base.is_some() {
            c.matched += 1;
        }
        if let Some(base) = base {
            if base.verdict == "leaking" && s.verdict != SoakVerdict::Leaking && s.verdict != SoakVerdict::Inconclusive
            {
                c.fixed.push(format!(
                    "{}: leaking at {} in the baseline, {} now",
                    s.label,
                    rate(base.bytes_per_hour),
                    s.verdict.as_str()
                ));
            }
        }
        if s.failed_rules.is_empty() {
            continue;
        }
        let growth_failed = s.verdict == SoakVerdict::Leaking;
        let known = match base {
            Some(base) if growth_failed && base.verdict == "leaking" => {
                let now_lo = s.growth.ci_bytes_per_hour.map(|c| c[0]).unwrap_or(s.growth.bytes_per_hour);
                let then_hi = base.ci.map(|c| c[1]).unwrap_or(base.bytes_per_hour);
                if now_lo > then_hi && now_lo > GROWTH_UP_FACTOR * base.bytes_per_hour {
                    c.regressions.push(Regression {
                        subject: s.id.clone(),
                        kind: "growth_up",
                        text: format!(
                            "{} grows faster than in the baseline: {} ({}) now, {} ({}) then",
                            s.label,
                            rate(s.growth.bytes_per_hour),
                            super::evidence::ci_text(s.growth.ci_bytes_per_hour),
                            rate(base.bytes_per_hour),
                            super::evidence::ci_text(base.ci)
                        ),
                    });
                    false
                } else {
                    true
                }
            }
            Some(base) if !growth_failed => s.failed_rules.iter().all(|r| base.failed_rules.contains(r)),
            _ => false,
        };
        if known {
            s.known_in_baseline = true;
            c.known.push(s.id.clone());
        } else if !c.regressions.iter().any(|r| r.subject == s.id) {
            let (kind, text) = if growth_failed {
                (
                    "new_leak",
                    format!(
                        "{} is leaking at {} ({}), {}",
                        s.label,
                        rate(s.growth.bytes_per_hour),
                        super::evidence::ci_text(s.growth.ci_bytes_per_hour),
                        match base {
                            Some(b) => format!("{} in the baseline", b.verdict),
                            None => "not in the baseline".to_string(),
                        }
                    ),
                )
            } else {
                (
                    "new_violation",
                    format!("{} breaks `{}`, which the baseline did not", s.label, s.failed_rules.join("`, `")),
                )
            };
            c.regressions.push(Regression { subject: s.id.clone(), kind, text });
        }
    }
    c
}
