//! The sample a search follows: per requested type, its classes, its exact count (from the
//! census), and every k-th instance the first walk meets; what each sample stands for; and which
//! instances are not met at all, as allocated since the last GC ([`fresh`]).

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, GenerationRange, ObjectID};

/// Where gen0 has allocated since the last GC, as address ranges: in each gen0 range of the
/// runtime's generation bounds, from what was in use then to the end of its reservation. The
/// runtime updates its bounds at the end of every GC, and a gen0 region holds only gen0 objects,
/// so what lies past its length then was allocated since: mostly garbage that dies before the
/// search ends, and sampled it would only be counted as `collected`. Empty when the runtime gives
/// no bounds (`GetGenerationBounds` answers `E_FAIL` unless `COR_PRF_HIGH_BASIC_GC` is on, or
/// before the first GC). Call with the runtime suspended (no GC can change the bounds meanwhile).
pub fn allocated_since_last_gc(info: &ProfilerInfo) -> Vec<(ObjectID, ObjectID)> {
    let mut ranges = Vec::new();
    match info.generation_bounds(&mut ranges) {
        Ok(()) => fresh(&ranges),
        Err(hr) => {
            tracing::debug!("no generation bounds ({hr:#x}): objects allocated since the last GC are sampled too");
            Vec::new()
        }
    }
}

/// The part of each gen0 range past its length: see [`allocated_since_last_gc`].
pub fn fresh(ranges: &[GenerationRange]) -> Vec<(ObjectID, ObjectID)> {
    ranges
        .iter()
        .filter(|r| r.generation == 0 && r.range_length_reserved > r.range_length)
        .map(|r| (r.range_start + r.range_length, r.range_start + r.range_length_reserved))
        .collect()
}

/// One requested type: its classes, its exact count (from the census) and its sample.
#[derive(Debug, Default)]
pub struct Target {
    pub classes: Vec<ClassID>,
    pub instances: u64,
    pub bytes: u64,
    /// Every `stride`-th instance met in the first walk is sampled.
    pub stride: u64,
    /// Instances met in the first walk: the population the samples are drawn from.
    pub seen: u64,
    pub samples: Vec<u32>,
}

impl Target {
    /// Counts an instance met in the sampling walk; true when it is to be sampled. Every
    /// instance met must be counted, whether or not it was already followed, for the samples
    /// to stand for a known population.
    pub fn meet(&mut self) -> bool {
        self.seen += 1;
        (self.seen - 1) % self.stride.max(1) == 0
    }

    /// Instances each sample taken stands for: those the sampling walk met, per sample. Not
    /// the census's count: the heap changes between the census and that walk (allocations
    /// since, deaths since), and samples drawn from one population cannot be scaled to
    /// another's size without biasing every path by the ratio of the two.
    pub fn scale(&self) -> f64 {
        if self.samples.is_empty() { 0.0 } else { self.seen as f64 / self.samples.len() as f64 }
    }

    /// The estimated number of instances (as of the sampling walk) that `sampled` samples stand for.
    pub fn estimate(&self, sampled: u64) -> u64 {
        (sampled as f64 * self.scale()).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a synthetic heap's string is: on one of two leak paths, held elsewhere, or churn
    /// allocated after the census (garbage the GC collects before the search ends).
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Kind {
        Audit,
        SessionId,
        Other,
        Churn,
    }

    /// The sampling walk over `heap` (in address order): the kinds of the instances sampled.
    fn sample(target: &mut Target, heap: &[Kind]) -> Vec<Kind> {
        let mut picked = Vec::new();
        for &kind in heap {
            if target.meet() {
                target.samples.push(picked.len() as u32);
                picked.push(kind);
            }
        }
        picked
    }

    /// Census: 27 600 strings, 5000 of one leak, 20 000 of another. By the first walk the
    /// application has allocated 4000 more (the walk cannot tell them from the rest: without
    /// generation bounds it meets them too), interleaved with the live ones or after them. The
    /// estimates must be within 2 % of the truth, not scaled to the census's count.
    #[test]
    fn estimates_scale_to_the_walked_population_not_the_census() {
        let live = [(Kind::Audit, 5000usize), (Kind::SessionId, 20_000), (Kind::Other, 2600)];
        let census: u64 = live.iter().map(|&(_, n)| n as u64).sum();
        let mut ordered: Vec<Kind> = live.iter().flat_map(|&(k, n)| std::iter::repeat_n(k, n)).collect();
        let mut interleaved = Vec::new();
        for (i, &k) in ordered.iter().enumerate() {
            interleaved.push(k);
            if i % 7 == 3 {
                interleaved.push(Kind::Churn);
            }
        }
        ordered.extend(std::iter::repeat_n(Kind::Churn, 4000));
        for heap in [ordered, interleaved] {
            // As the search computes it: from the census's count, for 5 types asked for.
            let mut target = Target { instances: census, stride: census.div_ceil(16384 / 5), ..Default::default() };
            let picked = sample(&mut target, &heap);
            assert_eq!(target.seen, heap.len() as u64);
            let on = |kind: Kind| target.estimate(picked.iter().filter(|&&k| k == kind).count() as u64);
            for (kind, truth) in live {
                let estimate = on(kind);
                let walked = heap.len();
                assert!(
                    estimate.abs_diff(truth as u64) * 50 <= truth as u64,
                    "{kind:?}: estimated {estimate} of {truth} ({walked} walked)"
                );
            }
            // The churn died before the search ended: `collected`. All of them add up to what was walked.
            let total: u64 = [Kind::Audit, Kind::SessionId, Kind::Other, Kind::Churn].into_iter().map(on).sum();
            assert!(total.abs_diff(heap.len() as u64) <= 4, "{total} of {}", heap.len());
        }
    }

    /// When every instance is sampled, the estimates are the counts, exactly.
    #[test]
    fn every_instance_sampled_gives_exact_counts() {
        let mut target = Target { instances: 5000, stride: 1, ..Default::default() };
        let picked = sample(&mut target, &vec![Kind::Audit; 5002]);
        assert_eq!((picked.len(), target.scale(), target.estimate(5002)), (5002, 1.0, 5002));
        assert_eq!(Target::default().estimate(10), 0);
    }

    /// Only gen0's unused part at the last GC is fresh: gen0's objects then, older generations'
    /// objects, and large objects are met (numbers as GetGenerationBounds gave them in a run).
    #[test]
    fn only_what_gen0_allocated_since_the_last_gc_is_fresh() {
        let range = |generation, range_start, range_length, range_length_reserved| GenerationRange {
            generation,
            range_start,
            range_length,
            range_length_reserved,
        };
        let ranges = [
            range(4, 0x1000_0000, 8184, 33_554_392),
            range(3, 0x3000_0000, 0, 33_554_392),
            range(2, 0x5000_0000, 0, 4_194_264),
            range(1, 0x6000_0000, 349_848, 4_194_264),
            range(0, 0x7000_0000, 560, 4_194_264),
        ];
        assert_eq!(fresh(&ranges), [(0x7000_0000 + 560, 0x7000_0000 + 4_194_264)]);
        assert!(fresh(&[range(0, 0x7000_0000, 4096, 4096)]).is_empty(), "a full region has no room for more");
        assert!(fresh(&[]).is_empty());
    }
}
