//! The tracked samples: which sampled objects are still alive, how old, in which generation,
//! and what they stand for once upscaled.

use std::collections::HashMap;
use std::sync::Arc;

use super::stack_table::{StackId, Stacks};
use crate::capture::Sampling;
use crate::clr::events::HeapKind;
use crate::clr::types::{ClassID, ObjectHandleID};

/// AllocationSampled's per-byte sampling probability: one byte in 102,400.
const SAMPLING_PROBABILITY: f64 = 1.0 / 102_400.0;

/// Generations as reported: 0, 1, 2, then the large and pinned object heaps.
pub const GEN_SLOTS: usize = 5;
const LOH: u8 = 3;
const POH: u8 = 4;

pub struct Tracked {
    pub handle: ObjectHandleID,
    pub class: ClassID,
    pub stack: StackId,
    /// Estimated objects and bytes this sample stands for.
    pub weight_objects: f64,
    pub weight_bytes: f64,
    pub born_after_gc: u32,
    /// Generation as of `generation_as_of_gc`, following the promotion rule below.
    pub generation: u8,
    pub generation_as_of_gc: u32,
}

/// Upscaling weights (objects, bytes) for one sample.
///
/// AllocationSampled draws a Bernoulli trial per byte with probability p and samples an object
/// when any of its bytes hits, so an object of `size` bytes is sampled with probability
/// 1 − (1 − p)^size. Weighting each sample by the inverse of that probability gives unbiased
/// estimates of objects and bytes (Horvitz–Thompson). AllocationTick fires once per ~100 KB
/// allocated and reports the amount since the previous tick, which the sample stands for.
pub fn weights(sampling: Sampling, size: u64, amount_since_last: u64) -> (f64, f64) {
    let size = size.max(1) as f64;
    match sampling {
        Sampling::AllocationSampled => {
            let probability = -(size * (-SAMPLING_PROBABILITY).ln_1p()).exp_m1();
            let objects = 1.0 / probability.max(f64::MIN_POSITIVE);
            (objects, objects * size)
        }
        Sampling::AllocationTick => {
            let bytes = (amount_since_last as f64).max(size);
            (bytes / size, bytes)
        }
    }
}

/// Recent GCs' condemned generations, by GC number.
#[derive(Default)]
pub struct GcHistory {
    depths: HashMap<u32, u8>,
    /// The newest GC seen to start.
    pub latest: u32,
    /// The newest GC seen to finish. A sample counts as a survivor only once a GC after its birth
    /// has finished: mid-GC, the handles of objects that GC is collecting still read as alive.
    pub completed: u32,
}

impl GcHistory {
    const KEEP: u32 = 4096;

    pub fn record(&mut self, count: u32, depth: u32) {
        self.depths.insert(count, depth.min(2) as u8);
        self.latest = self.latest.max(count);
        if self.depths.len() > 2 * Self::KEEP as usize {
            let horizon = self.latest.saturating_sub(Self::KEEP);
            self.depths.retain(|&c, _| c > horizon);
        }
    }

    /// Records the end of GC `count`.
    pub fn finished(&mut self, count: u32, depth: u32) {
        self.record(count, depth);
        self.completed = self.completed.max(count);
    }

    /// Condemned generation of GC `count`; GCs too old to remember count as gen0, which only
    /// makes an ancient survivor's generation lag, never jump ahead.
    fn depth(&self, count: u32) -> u8 {
        self.depths.get(&count).copied().unwrap_or(0)
    }
}

/// A (type, call site) row of the summary.
#[derive(Clone, Debug)]
pub struct SiteRow {
    pub class: ClassID,
    pub site: Arc<str>,
    /// The stack with the most live samples for this row.
    pub stack: StackId,
    pub samples: u64,
    pub objects: f64,
    pub bytes: f64,
    pub mean_age_gcs: f64,
    pub generations: [u64; GEN_SLOTS],
    /// Samples of this (type, site) the GC has collected since the agent started; `None` once
    /// there were too many (type, stack) pairs to count.
    pub collected: Option<u64>,
}

/// (type, stack) pairs whose collected samples are counted; beyond it, counts stop (and say so).
const MAX_COLLECTED_KEYS: usize = 65_536;

#[derive(Default)]
pub struct Survivors {
    tracked: Vec<Tracked>,
    /// Collected samples per (type, stack): with the live samples, they tell the collector how
    /// many samples came and went between two summaries, which sets the sampling noise of a
    /// difference (a leak's samples only come; churn's come and go).
    collected: rustc_hash::FxHashMap<(ClassID, StackId), u64>,
    collected_overflow: bool,
}

impl Survivors {
    pub fn add(&mut self, t: Tracked) {
        self.tracked.push(t);
    }

    pub fn count(&self) -> usize {
        self.tracked.len()
    }

    /// Drops every sample whose object the GC has collected (`is_alive` false), handing its
    /// handle to `release`; brings the survivors' generations up to date. Returns how many died.
    pub fn sweep(
        &mut self,
        history: &GcHistory,
        mut is_alive: impl FnMut(ObjectHandleID) -> bool,
        mut release: impl FnMut(ObjectHandleID),
    ) -> usize {
        let before = self.tracked.len();
        let (collected, overflow) = (&mut self.collected, &mut self.collected_overflow);
        self.tracked.retain_mut(|t| {
            if !is_alive(t.handle) {
                release(t.handle);
                let full = collected.len() >= MAX_COLLECTED_KEYS;
                match collected.get_mut(&(t.class, t.stack)) {
                    Some(n) => *n += 1,
                    None if full => *overflow = true,
                    None => {
                        collected.insert((t.class, t.stack), 1);
                    }
                }
                return false;
            }
            advance_generation(t, history);
            true
        });
        before - self.tracked.len()
    }

    /// Drops every sample of `class` (exact mode starts counting it over), handing each handle
    /// to `release`. Returns how many were dropped. They are not counted as collected.
    pub fn forget_class(&mut self, class: ClassID, mut release: impl FnMut(ObjectHandleID)) -> usize {
        let before = self.tracked.len();
        self.tracked.retain(|t| {
            if t.class == class {
                release(t.handle);
                return false;
            }
            true
        });
        before - self.tracked.len()
    }

    /// Releases every handle (at shutdown).
    pub fn clear(&mut self, mut release: impl FnMut(ObjectHandleID)) {
        for t in self.tracked.drain(..) {
            release(t.handle);
        }
    }

    /// Samples allocated since the latest GC: alive, but not yet survivors of anything.
    pub fn young(&self, current_gc: u32) -> usize {
        self.tracked.iter().filter(|t| t.born_after_gc >= current_gc).count()
    }

    /// Live samples that have survived at least one GC, grouped by (type, site), largest
    /// estimated bytes first. Samples younger than the latest GC are left out: every fresh
    /// allocation is alive until a GC has had a chance to collect it.
    pub fn rows(&self, stacks: &Stacks, current_gc: u32) -> Vec<SiteRow> {
        struct Acc {
            row: SiteRow,
            age_sum: f64,
            per_stack: HashMap<StackId, u64>,
        }
        let mut groups: HashMap<(ClassID, Arc<str>), Acc> = HashMap::new();
        for t in self.tracked.iter().filter(|t| t.born_after_gc < current_gc) {
            let site = stacks.get(t.stack).site.clone();
            let acc = groups.entry((t.class, site.clone())).or_insert_with(|| Acc {
                row: SiteRow {
                    class: t.class,
                    site,
                    stack: t.stack,
                    samples: 0,
                    objects: 0.0,
                    bytes: 0.0,
                    mean_age_gcs: 0.0,
                    generations: [0; GEN_SLOTS],
                    collected: (!self.collected_overflow).then_some(0),
                },
                age_sum: 0.0,
                per_stack: HashMap::new(),
            });
            acc.row.samples += 1;
            acc.row.objects += t.weight_objects;
            acc.row.bytes += t.weight_bytes;
            acc.row.generations[t.generation as usize] += 1;
            acc.age_sum += current_gc.saturating_sub(t.born_after_gc) as f64;
            *acc.per_stack.entry(t.stack).or_default() += 1;
        }
        for (&(class, stack), n) in &self.collected {
            if let Some(acc) = groups.get_mut(&(class, stacks.get(stack).site.clone())) {
                acc.row.collected = acc.row.collected.map(|c| c + n);
            }
        }
        let mut rows: Vec<SiteRow> = groups
            .into_values()
            .map(|mut acc| {
                acc.row.mean_age_gcs = acc.age_sum / acc.row.samples as f64;
                acc.row.stack = acc
                    .per_stack
                    .iter()
                    .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id)
                    .unwrap_or(acc.row.stack);
                acc.row
            })
            .collect();
        rows.sort_by(|a, b| b.bytes.total_cmp(&a.bytes).then_with(|| a.site.cmp(&b.site)));
        rows
    }
}

/// Initial generation of a new sample.
pub fn initial_generation(heap: HeapKind) -> u8 {
    match heap {
        HeapKind::Small => 0,
        HeapKind::Large => LOH,
        HeapKind::Pinned => POH,
    }
}

/// An object in generation g that is alive after a GC which condemned generation d ≥ g has
/// survived it and moves to g + 1 (at most 2). Large and pinned objects stay where they are.
/// (The GC may occasionally demote or not promote; this keeps the report cheap and never
/// requires touching the object.)
fn advance_generation(t: &mut Tracked, history: &GcHistory) {
    if t.generation >= 2 {
        t.generation_as_of_gc = history.completed;
        return;
    }
    // GCs older than the remembered history are skipped: a survivor of that many GCs is gen2.
    let horizon = history.completed.saturating_sub(GcHistory::KEEP);
    if t.generation_as_of_gc.max(t.born_after_gc) < horizon {
        t.generation = 2;
    }
    let mut gc = t.generation_as_of_gc.max(t.born_after_gc).max(horizon);
    while gc < history.completed && t.generation < 2 {
        gc += 1;
        if t.generation <= history.depth(gc) {
            t.generation += 1;
        }
    }
    t.generation_as_of_gc = history.completed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_weights_are_inverse_inclusion_probabilities() {
        // A 100-byte object is sampled with probability ~1/1024: it stands for ~1024 objects.
        let (objects, bytes) = weights(Sampling::AllocationSampled, 100, 0);
        assert!((objects - 1024.5).abs() < 1.0, "{objects}");
        assert!((bytes - objects * 100.0).abs() < 1e-6);
        // A 1 MB object is almost surely sampled: it stands for itself.
        let (objects, _) = weights(Sampling::AllocationSampled, 1 << 20, 0);
        assert!((objects - 1.0).abs() < 1e-3, "{objects}");
    }

    #[test]
    fn sampled_estimator_is_unbiased_in_simulation() {
        // Simulate the runtime's per-byte Bernoulli trials with a small deterministic PRNG.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let size = 64u64;
        let count = 2_000_000u64;
        let p_object = 1.0 - (1.0 - SAMPLING_PROBABILITY).powf(size as f64);
        let mut estimate = 0.0;
        for _ in 0..count {
            if next() < p_object {
                estimate += weights(Sampling::AllocationSampled, size, 0).1;
            }
        }
        let truth = (size * count) as f64;
        assert!((estimate / truth - 1.0).abs() < 0.05, "estimate {estimate} vs {truth}");
    }

    #[test]
    fn tick_weights_spread_the_amount_over_objects_of_the_sampled_size() {
        assert_eq!(weights(Sampling::AllocationTick, 100, 100_000), (1000.0, 100_000.0));
    }

    fn tracked(handle: usize, born: u32) -> Tracked {
        Tracked {
            handle,
            class: 1,
            stack: 0,
            weight_objects: 1.0,
            weight_bytes: 10.0,
            born_after_gc: born,
            generation: 0,
            generation_as_of_gc: born,
        }
    }

    #[test]
    fn survivors_are_promoted_by_the_gcs_that_condemned_their_generation() {
        let mut history = GcHistory::default();
        let mut s = Survivors::default();
        s.add(tracked(1, 0));
        s.add(tracked(2, 0));
        for (count, depth) in [(1, 0), (2, 0), (3, 1)] {
            history.record(count, depth);
            history.finished(count, depth);
        }
        let mut released = Vec::new();
        let died = s.sweep(&history, |h| h != 2, |h| released.push(h));
        assert_eq!((died, released), (1, vec![2]));
        // gen0 GC #1 promotes to gen1; gen0 GC #2 leaves it; gen1 GC #3 promotes to gen2.
        assert_eq!(s.tracked[0].generation, 2);
    }

    /// Collected samples are counted per (type, site), across the site's stacks, so the
    /// collector can tell samples that came and went from samples that only came.
    #[test]
    fn collected_samples_are_counted_per_type_and_site() {
        let stacks = Stacks::of_sites(&["App.Log.Append", "App.Log.Append", "App.Parse"]);
        let mut history = GcHistory::default();
        let mut s = Survivors::default();
        for (handle, stack) in [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 0)] {
            s.add(Tracked { stack, ..tracked(handle, 0) });
        }
        history.finished(1, 0);
        // Two of App.Log.Append's samples die (one per stack), and one of App.Parse's.
        let died = s.sweep(&history, |h| ![2, 6, 4].contains(&h), |_| {});
        assert_eq!(died, 3);
        let rows = s.rows(&stacks, history.completed);
        let of = |site: &str| rows.iter().find(|r| &*r.site == site).map(|r| (r.samples, r.collected)).unwrap();
        assert_eq!(of("App.Log.Append"), (2, Some(2)));
        assert_eq!(of("App.Parse"), (1, Some(1)));
    }

    #[test]
    fn a_gc_that_has_started_but_not_finished_makes_no_survivors() {
        let mut history = GcHistory::default();
        let mut s = Survivors::default();
        s.add(tracked(1, 0));
        // GC #1 has started: its dead objects' handles still read as alive.
        history.record(1, 0);
        s.sweep(&history, |_| true, |_| {});
        let stacks = Stacks::default();
        assert!(s.rows(&stacks, history.completed).is_empty(), "counted before its GC finished");
        assert_eq!(s.young(history.completed), 1);
        assert_eq!(s.tracked[0].generation, 0);
        history.finished(1, 0);
        s.sweep(&history, |_| true, |_| {});
        assert_eq!(s.young(history.completed), 0);
        assert_eq!(s.tracked[0].generation, 1);
    }

    /// A named type's sampled samples go (and their handles are released); other types' stay.
    #[test]
    fn forgetting_a_class_drops_only_its_samples_and_releases_their_handles() {
        let mut survivors = Survivors::default();
        for handle in 1..=6 {
            survivors.add(Tracked { class: if handle % 2 == 0 { 7 } else { 1 }, ..tracked(handle, 0) });
        }
        let mut released = Vec::new();
        assert_eq!(survivors.forget_class(7, |h| released.push(h)), 3);
        assert_eq!(released, [2, 4, 6]);
        assert_eq!(survivors.count(), 3);
        assert!(survivors.tracked.iter().all(|t| t.class == 1));
        assert_eq!(survivors.forget_class(7, |_| panic!("nothing left to release")), 0);
    }
}
