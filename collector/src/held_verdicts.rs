//! What a live view has shown as a suspect, held while the rise goes on.
//!
//! The live view re-assesses every site every interval. Early in a run a real leak's growth over
//! the window sits near the materiality floor (1 MB over tens of seconds), and the full GC that
//! confirmed it soon leaves the window; assessed afresh, such a leak can go growing → steady →
//! rising → growing in its first minute, and the live table's top row flips with it. A site
//! shown as growing (or rising) keeps that word while Mann–Kendall still finds its rise and its
//! recent half still rises ([`Growth::still_rising`]); it takes the fresh verdict as soon as the
//! rise stops (plateaued, steady without a rise), or a full GC takes it back. The reports assess
//! the whole history once and do not need this.

use crate::analysis::{FullGcCheck, Growth, LiveVerdict};
use crate::protocol::Source;
use crate::sites::SiteRow;
use std::collections::HashMap;

/// The suspects shown in the last ranking of each source, by process and site.
#[derive(Debug, Default)]
pub struct HeldVerdicts {
    shown: HashMap<(Source, u32, String), LiveVerdict>,
}

impl HeldVerdicts {
    /// Applies the holds to the freshly assessed sites of `source` (all its rows, before any
    /// truncation, so that a site is not forgotten for being off the screen) and remembers what
    /// is shown now. A held verdict can move a row up: rank the rows afterwards
    /// ([`crate::sites::sort_ranked`]).
    pub fn apply(&mut self, source: Source, rows: &mut [SiteRow]) {
        let (mut before, others): (HashMap<_, _>, HashMap<_, _>) =
            std::mem::take(&mut self.shown).into_iter().partition(|((s, _, _), _)| *s == source);
        self.shown = others;
        // Only a suspect, or a site whose rise goes on, can hold or be held: the others (most
        // rows) need no key, and a hold they had ends with `before`.
        for row in rows.iter_mut().filter(|r| is_suspect(r.growth.verdict) || r.growth.still_rising) {
            let key = (source, row.pid, row.label());
            if let Some(held) = before.remove(&key) {
                row.growth.verdict = held_verdict(held, &row.growth, row.full_gc_check);
            }
            if is_suspect(row.growth.verdict) {
                self.shown.insert(key, row.growth.verdict);
            }
        }
    }
}

fn is_suspect(verdict: LiveVerdict) -> bool {
    matches!(verdict, LiveVerdict::Growing | LiveVerdict::Rising)
}

/// The verdict to show for a site shown as `held` in the last frame, given its fresh assessment.
fn held_verdict(held: LiveVerdict, fresh: &Growth, check: Option<FullGcCheck>) -> LiveVerdict {
    let fell_back = matches!(check, Some(FullGcCheck::FellBack { .. }));
    let goes_on = fresh.still_rising && !fell_back;
    match fresh.verdict {
        // A fresh rise that lost its confirmation (the full GC left the window) or its
        // materiality (a short window's slope dipped), while the rise itself goes on.
        LiveVerdict::Rising | LiveVerdict::Steady if goes_on && is_suspect(held) => held,
        fresh_verdict => fresh_verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::sort_ranked;
    use crate::store::SiteLatest;

    fn growth(verdict: LiveVerdict, still_rising: bool) -> Growth {
        Growth {
            verdict,
            bytes_per_min: 3.0e6,
            ci95_bytes_per_min: None,
            p_value: if still_rising { 0.0002 } else { 0.2 },
            significant: still_rising,
            still_rising,
            growth_bytes: 0.8e6,
            window_start_ms: 5_000.0,
            window_ms: 16_000.0,
            points: 9,
        }
    }

    fn row(site: &str, verdict: LiveVerdict, still_rising: bool, bytes: f64) -> SiteRow {
        SiteRow {
            pid: 42,
            source: Source::Agent,
            type_name: Some("System.String".into()),
            site: site.into(),
            frames: None,
            location: None,
            latest: SiteLatest { bytes, ..SiteLatest::default() },
            peak_bytes: bytes,
            present: true,
            growth: growth(verdict, still_rising),
            full_gcs: Some(1),
            full_gc_check: None,
        }
    }

    fn verdicts(rows: &[SiteRow]) -> Vec<(&str, LiveVerdict)> {
        rows.iter().map(|r| (r.site.as_str(), r.growth.verdict)).collect()
    }

    #[test]
    fn a_suspect_keeps_its_word_while_its_rise_goes_on_and_ranks_first() {
        use LiveVerdict::*;
        let mut held = HeldVerdicts::default();
        let mut first = vec![row("Cache.Load", Steady, false, 9e6), row("Audit.Record", Growing, true, 2e6)];
        sort_ranked(&mut first);
        held.apply(Source::Agent, &mut first);
        sort_ranked(&mut first);
        assert_eq!(verdicts(&first), [("Audit.Record", Growing), ("Cache.Load", Steady)]);

        // The rise dips under the materiality floor: fresh "steady", held "growing", still first.
        let mut dipped = vec![row("Cache.Load", Steady, false, 9e6), row("Audit.Record", Steady, true, 2.1e6)];
        sort_ranked(&mut dipped);
        assert_eq!(dipped[0].site, "Cache.Load", "fresh, the cache would rank first");
        held.apply(Source::Agent, &mut dipped);
        sort_ranked(&mut dipped);
        assert_eq!(verdicts(&dipped), [("Audit.Record", Growing), ("Cache.Load", Steady)]);

        // The confirming full GC left the window: fresh "rising", still shown "growing".
        let mut unconfirmed = vec![row("Audit.Record", Rising, true, 2.3e6)];
        held.apply(Source::Agent, &mut unconfirmed);
        assert_eq!(verdicts(&unconfirmed), [("Audit.Record", Growing)]);

        // The rise stops: the fresh verdict, and the hold is gone for good.
        let mut stopped = vec![row("Audit.Record", Steady, false, 2.3e6)];
        held.apply(Source::Agent, &mut stopped);
        assert_eq!(verdicts(&stopped), [("Audit.Record", Steady)]);
        let mut again = vec![row("Audit.Record", Steady, true, 2.4e6)];
        held.apply(Source::Agent, &mut again);
        assert_eq!(verdicts(&again), [("Audit.Record", Steady)], "a steady site is not held");
    }

    #[test]
    fn a_plateau_a_fall_back_or_too_little_data_ends_a_hold() {
        use LiveVerdict::*;
        for (fresh, check) in [
            (Plateaued, None),
            (Steady, Some(FullGcCheck::FellBack { bytes: 0.1e6, full_gc_ms: 20_000.0 })),
            (InsufficientData, None),
        ] {
            let mut held = HeldVerdicts::default();
            held.apply(Source::Agent, &mut [row("Audit.Record", Growing, true, 2e6)]);
            let mut next = [row("Audit.Record", fresh, true, 2e6)];
            next[0].full_gc_check = check;
            held.apply(Source::Agent, &mut next);
            assert_eq!(next[0].growth.verdict, fresh, "{fresh:?} {check:?}");
        }
    }

    #[test]
    fn rising_is_held_as_rising_and_a_fresh_growing_wins() {
        use LiveVerdict::*;
        let mut held = HeldVerdicts::default();
        held.apply(Source::Agent, &mut [row("Audit.Record", Rising, true, 2e6)]);
        let mut dipped = [row("Audit.Record", Steady, true, 2e6)];
        held.apply(Source::Agent, &mut dipped);
        assert_eq!(dipped[0].growth.verdict, Rising);
        let mut confirmed = [row("Audit.Record", Growing, true, 2.5e6)];
        held.apply(Source::Agent, &mut confirmed);
        assert_eq!(confirmed[0].growth.verdict, Growing);
    }

    #[test]
    fn holds_are_per_source_and_per_process() {
        use LiveVerdict::*;
        let mut held = HeldVerdicts::default();
        held.apply(Source::Agent, &mut [row("Audit.Record", Growing, true, 2e6)]);
        // Ranking the shim's sites leaves the agent's hold alone…
        let mut native = [row("Audit.Record", Steady, true, 2e6)];
        native[0].source = Source::Shim;
        held.apply(Source::Shim, &mut native);
        assert_eq!(native[0].growth.verdict, Steady, "the shim's site was never shown growing");
        // …and another process's site of the same name is its own.
        let mut other = [row("Audit.Record", Steady, true, 2e6), row("Audit.Record", Steady, true, 2e6)];
        other[1].pid = 43;
        held.apply(Source::Agent, &mut other);
        let by_pid: Vec<(u32, LiveVerdict)> = other.iter().map(|r| (r.pid, r.growth.verdict)).collect();
        assert_eq!(by_pid, [(42, Growing), (43, Steady)]);
    }
}
