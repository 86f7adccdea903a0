//! Exact mode's choice of suspects: a type whose live count rises census after census is
//! leaking or filling a cache; sampling one allocation per ~100 KiB may take hours to catch the
//! call site of a slow one, so from then on every allocation of it is followed.
//!
//! `Aiming` is pure bookkeeping over census results; the `Pipeline` methods below apply its
//! decisions (the aimed-at set in `capture`, the runtime's ObjectAllocated switch) and thin
//! exact mode's own stream.

use std::collections::HashMap;

use crate::agent::Agent;
use crate::capture::exact::Aim;
use crate::clr::types::{ClassID, HRESULT};
use crate::pipeline::census::TypeTotals;

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::thinning::next_keep_one_in;
use super::{Pipeline, census};

/// Censuses in a row whose live count of a type must each exceed the one before.
pub const RISES_TO_AIM: u8 = 3;

/// A type to follow from now on, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub class: ClassID,
    pub reason: String,
    /// Named in `LEAKSCOPE_EXACT` (not aimed at because it kept rising).
    pub named: bool,
}

#[derive(Default)]
pub struct Aiming {
    /// Per type: live count at the latest census, and how many censuses in a row it rose.
    last: HashMap<ClassID, (u64, u8)>,
    /// Counts seen over the current rise, for the message.
    history: HashMap<ClassID, Vec<u64>>,
    aimed: Vec<ClassID>,
    /// The aimed-at types that were named: counted by their exact samples alone.
    named_aimed: Vec<ClassID>,
    /// `LEAKSCOPE_EXACT=Type,…`: names to aim at as soon as they are met.
    named: Vec<String>,
    /// The runtime refused to switch `ObjectAllocated` on: nothing is aimed at any more.
    unavailable: bool,
}

impl Aiming {
    pub fn new(named: Vec<String>) -> Aiming {
        Aiming { named, ..Aiming::default() }
    }

    pub fn aimed(&self) -> &[ClassID] {
        &self.aimed
    }

    pub fn is_aimed(&self, class: ClassID) -> bool {
        self.aimed.contains(&class)
    }

    /// Records a decision the caller could carry out.
    pub fn aimed_at(&mut self, class: ClassID) {
        if !self.aimed.contains(&class) {
            self.aimed.push(class);
        }
    }

    /// A named type is counted by its exact samples alone: one sampled sample of a small type
    /// stands for thousands of objects and would swamp the exact count. (A type aimed at
    /// because it kept rising keeps its earlier estimate, so its series stays continuous.)
    pub fn counts_only_exact(&self, class: ClassID) -> bool {
        self.named_aimed.contains(&class)
    }

    /// Whether a type met by name (in a census or a sample) was asked for by the user.
    pub fn named(&self, class: ClassID, name: &str) -> Option<Suspect> {
        (!self.is_aimed(class) && self.named.iter().any(|n| n == name)).then(|| Suspect {
            class,
            reason: "named in LEAKSCOPE_EXACT".to_string(),
            named: true,
        })
    }

    /// Takes in one census; returns the types that have now risen `RISES_TO_AIM` times in a row
    /// and are not aimed at yet, fastest-growing (in bytes) first, at most `room`.
    pub fn after_census(&mut self, by_class: &HashMap<ClassID, TypeTotals>, room: usize) -> Vec<Suspect> {
        let mut rising: Vec<(u64, Suspect)> = Vec::new();
        let mut next = HashMap::with_capacity(by_class.len());
        for (&class, totals) in by_class {
            let streak = match self.last.get(&class) {
                Some(&(before, streak)) if totals.count > before => streak.saturating_add(1),
                _ => 0,
            };
            next.insert(class, (totals.count, streak));
            let seen = self.history.entry(class).or_default();
            if streak == 0 {
                seen.clear();
            }
            seen.push(totals.count);
            if streak >= RISES_TO_AIM && !self.aimed.contains(&class) {
                let first = seen.first().copied().unwrap_or(0);
                let counts: Vec<String> = seen.iter().map(u64::to_string).collect();
                let grown_bytes = totals.bytes.saturating_sub(totals.bytes * first / totals.count.max(1));
                rising.push((
                    grown_bytes,
                    Suspect {
                        class,
                        reason: format!("live count rose in {streak} censuses in a row: {}", counts.join(" → ")),
                        named: false,
                    },
                ));
            }
        }
        // Types gone from the heap forget their history.
        self.history.retain(|class, _| next.contains_key(class));
        self.last = next;
        rising.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.class.cmp(&b.1.class)));
        rising.into_iter().take(room).map(|(_, s)| s).collect()
    }
}

impl Pipeline<'_> {
    /// Exact mode has its own thinning: a busy aimed-at type must not make every allocating
    /// thread walk its stack at the full allocation rate.
    pub(super) fn adjust_exact_thinning(&mut self, elapsed: Duration, limit: usize) {
        let capture = &self.agent.capture;
        if capture.aim.is_empty() {
            return;
        }
        let seen = capture.counters.exact_allocations.load(Ordering::Relaxed);
        let rate = (seen - self.exact_allocations) as f64 / elapsed.as_secs_f64();
        self.exact_allocations = seen;
        let current = capture.exact_keep_one_in.load(Ordering::Relaxed);
        let next = next_keep_one_in(rate, limit, current);
        if next != current {
            capture.exact_keep_one_in.store(next, Ordering::Relaxed);
            tracing::info!("exact mode: following 1 in {next} allocations of aimed-at types ({rate:.0}/s)");
        }
    }

    /// Exact mode: after a census, aims at the types it shows rising again and again (and at
    /// types named in `LEAKSCOPE_EXACT` that it meets).
    pub(super) fn aim_after_census(&mut self, by_class: &std::collections::HashMap<ClassID, census::TypeTotals>) {
        if self.agent.config.exact == crate::config::Exact::Off {
            return;
        }
        let room = crate::capture::exact::SLOTS.saturating_sub(self.agent.capture.aim.len());
        let mut suspects = self.aiming.after_census(by_class, room);
        if let crate::config::Exact::Types(_) = &self.agent.config.exact {
            for &class in by_class.keys() {
                let name = self.names.class(class);
                suspects.extend(self.aiming.named(class, &name));
            }
        }
        for suspect in suspects {
            self.aim_at(suspect);
        }
    }

    pub(super) fn aim_at(&mut self, suspect: Suspect) {
        match aim(&self.agent.capture.aim, &mut self.aiming, self.agent, suspect.class) {
            Aimed::Now => {
                // A named type is counted exactly from the start: the samples taken before it
                // was met have sampling weights (see `Aiming::counts_only_exact`).
                if suspect.named {
                    self.aiming.named_aimed.push(suspect.class);
                    let info = &self.agent.info;
                    let dropped = self.survivors.forget_class(suspect.class, |h| {
                        let _ = info.destroy_handle(h);
                    });
                    self.agent.capture.counters.tracked.store(self.survivors.count() as u64, Ordering::Relaxed);
                    if dropped > 0 {
                        tracing::debug!("exact mode: {dropped} sampled samples of a named type dropped");
                    }
                }
                let name = self.names.class(suspect.class);
                let message = format!("exact mode: following every allocation of {name} ({})", suspect.reason);
                tracing::info!("{message}");
                self.status("info", &message);
            }
            Aimed::Unavailable(hr) => {
                let message =
                    format!("exact mode unavailable: the runtime would not switch ObjectAllocated on ({hr:#x})");
                tracing::warn!("{message}");
                self.status("warn", &message);
            }
            Aimed::Not => {}
        }
    }
}

/// What exact mode needs from the runtime (a seam, so that its decisions are tested without .NET).
pub trait AllocationCallbacks {
    /// Switches the `ObjectAllocated` callbacks on.
    fn follow_every_allocation(&self) -> Result<(), HRESULT>;
}

impl AllocationCallbacks for Agent {
    fn follow_every_allocation(&self) -> Result<(), HRESULT> {
        Agent::follow_every_allocation(self)
    }
}

/// What became of a suspect.
#[derive(Debug, PartialEq)]
pub enum Aimed {
    /// Every allocation of it is followed from now on.
    Now,
    /// Already aimed at, no slot left, or exact mode is unavailable.
    Not,
    /// The runtime refused to switch `ObjectAllocated` on: exact mode is unavailable.
    Unavailable(HRESULT),
}

/// Aims at `class`: adds it to `targets` (which the callbacks read) and to `aiming`'s record. The
/// first type aimed at switches the runtime's `ObjectAllocated` callbacks on first: a type in
/// `targets` has its samples left to those callbacks, so if the runtime refuses, no type may be
/// put there (it would vanish from the report), and exact mode stays off from then on.
pub fn aim(targets: &Aim, aiming: &mut Aiming, runtime: &impl AllocationCallbacks, class: ClassID) -> Aimed {
    if aiming.unavailable || class == 0 || targets.is_full() || targets.contains(class) {
        return Aimed::Not;
    }
    if targets.is_empty() {
        if let Err(hr) = runtime.follow_every_allocation() {
            aiming.unavailable = true;
            return Aimed::Unavailable(hr);
        }
    }
    if !targets.add(class) {
        return Aimed::Not;
    }
    aiming.aimed_at(class);
    Aimed::Now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(pairs: &[(ClassID, u64)]) -> HashMap<ClassID, TypeTotals> {
        pairs.iter().map(|&(c, n)| (c, TypeTotals { count: n, bytes: n * 40 })).collect()
    }

    #[test]
    fn a_type_rising_three_censuses_in_a_row_is_aimed_at_once() {
        let mut aim = Aiming::default();
        // 1 leaks steadily; 2 churns up and down; 3 is still.
        let series = [
            [(1, 10), (2, 50), (3, 7)],
            [(1, 12), (2, 60), (3, 7)],
            [(1, 15), (2, 40), (3, 7)],
            [(1, 19), (2, 55), (3, 7)],
        ];
        let mut found = Vec::new();
        for c in series {
            found = aim.after_census(&census(&c), 8);
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].class, 1);
        assert!(found[0].reason.contains("10 → 12 → 15 → 19"), "{}", found[0].reason);
        aim.aimed_at(1);
        assert!(aim.after_census(&census(&[(1, 25)]), 8).is_empty(), "aimed at once only");
    }

    #[test]
    fn a_pause_in_growth_restarts_the_count_and_room_limits_the_choice() {
        let mut aim = Aiming::default();
        for c in [[(1, 1), (2, 1)], [(1, 2), (2, 2)], [(1, 2), (2, 3)], [(1, 3), (2, 4)]] {
            let found = aim.after_census(&census(&c), 0);
            assert!(found.is_empty(), "no room");
        }
        let found = aim.after_census(&census(&[(1, 4), (2, 9)]), 1);
        assert_eq!(found.iter().map(|s| s.class).collect::<Vec<_>>(), vec![2], "1 paused once, 2 never did");
    }

    #[test]
    fn named_types_are_aimed_at_when_met() {
        let mut aim = Aiming::new(vec!["App.Session".into()]);
        assert!(aim.named(5, "App.Other").is_none());
        assert_eq!(aim.named(5, "App.Session").map(|s| s.class), Some(5));
        aim.aimed_at(5);
        assert!(aim.named(5, "App.Session").is_none());
    }

    /// A runtime whose `ObjectAllocated` switch answers `answer`, counting the calls.
    struct Runtime {
        answer: Result<(), HRESULT>,
        calls: std::cell::Cell<u32>,
    }

    impl AllocationCallbacks for Runtime {
        fn follow_every_allocation(&self) -> Result<(), HRESULT> {
            self.calls.set(self.calls.get() + 1);
            self.answer
        }
    }

    #[test]
    fn the_first_aim_switches_allocation_callbacks_on_once() {
        let runtime = Runtime { answer: Ok(()), calls: Default::default() };
        let (targets, mut aiming) = (Aim::default(), Aiming::default());
        assert_eq!(aim(&targets, &mut aiming, &runtime, 7), Aimed::Now);
        assert_eq!(aim(&targets, &mut aiming, &runtime, 9), Aimed::Now);
        assert_eq!(aim(&targets, &mut aiming, &runtime, 9), Aimed::Not, "aimed at once only");
        assert_eq!(runtime.calls.get(), 1, "switched on by the first type only");
        assert!(targets.contains(7) && targets.contains(9));
        assert_eq!(aiming.aimed(), &[7, 9]);
    }

    /// A type the callbacks are told to follow while `ObjectAllocated` stays off would have its
    /// samples dropped (they are left to a callback that never comes): it would vanish from the
    /// report. When the runtime refuses, the type must stay with sampling.
    #[test]
    fn a_refused_switch_leaves_the_type_to_sampling() {
        let runtime = Runtime { answer: Err(E_REFUSED), calls: Default::default() };
        let (targets, mut aiming) = (Aim::default(), Aiming::default());
        assert_eq!(aim(&targets, &mut aiming, &runtime, 7), Aimed::Unavailable(E_REFUSED));
        assert!(!targets.contains(7) && targets.is_empty(), "the callbacks must not claim the type");
        assert!(aiming.aimed().is_empty(), "nor may the summary list it as followed");
        assert_eq!(aim(&targets, &mut aiming, &runtime, 8), Aimed::Not, "no second attempt, no second warning");
        assert!(targets.is_empty() && aiming.aimed().is_empty());
        assert_eq!(runtime.calls.get(), 1);
    }

    const E_REFUSED: HRESULT = 0x8013_1363_u32 as i32;
}
