//! What a search that a budget stopped says: how far it got (sampled instances not traced to a
//! root, walks, objects) and what would have let it finish (the memory or time budget needed),
//! the `cut_short` of the record and the `detail` of every path it left `unknown`.

use std::time::Duration;

use super::search::{self, Stopped};
use super::tracked::flag;
use super::{count, tracked};

/// What a search cut short got to, and what would have let it finish.
pub fn cut_short(s: &search::Searched, budget: usize, time_budget: Duration, elapsed: Duration) -> String {
    let walks = s.walks.len();
    let last_pause = s.walks.last().map_or(Duration::ZERO, |w| w.pause);
    let followed = s.tracked.nodes.len();
    let samples = s.tracked.nodes.iter().filter(|n| n.has(flag::SAMPLE)).count().max(1);
    let share = 100.0 * s.unsettled as f64 / samples as f64;
    let pending = format!(
        "{} of {} sampled instances ({share:.0} %) not followed to a root after {walks} walks of {} objects",
        s.unsettled,
        samples,
        count(s.heap_objects.max(s.walks.iter().map(|w| w.objects).max().unwrap_or(0)))
    );
    match s.stopped {
        Some(Stopped::Memory) => {
            // The frontier grows as the last walk made it grow: at least one more such step.
            let growth = walks
                .checked_sub(2)
                .map_or(followed, |i| followed.saturating_sub(s.walks[i].followed))
                .max(followed / 4);
            let need = (budget as f64 * (followed + growth) as f64 / followed.max(1) as f64) as usize;
            format!(
                "walk cut short: {pending}, memory budget {} MB ran out following {} objects; at least {} MB needed",
                budget.div_ceil(1 << 20),
                count(followed as u64),
                need.div_ceil(1 << 20).max(budget.div_ceil(1 << 20) + 1)
            )
        }
        Some(Stopped::Time) => format!(
            "walk cut short: {pending}, time budget {:.0} s; at least {:.0} s needed (each walk pauses the application {:.1} s)",
            time_budget.as_secs_f64(),
            (elapsed + last_pause * 2).as_secs_f64().max(time_budget.as_secs_f64() + 1.0).ceil(),
            last_pause.as_secs_f64()
        ),
        Some(Stopped::Walks) => {
            format!("walk cut short: {pending}, at most {} walks per request; paths are deeper", search::MAX_WALKS)
        }
        Some(Stopped::Interrupted) => format!(
            "walk cut short: {pending}, {}",
            crate::stop::why().unwrap_or_else(|| "the agent was stopped".to_string())
        ),
        None => format!("referrers past {} per object were not followed", tracked::MAX_REFERRERS),
    }
}
