//! Keeps the samples the allocating threads pay for under `LEAKSCOPE_MAX_SAMPLES_PER_SEC`, by
//! thinning what is followed and (on .NET 10) switching sampling on in some windows only.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Pipeline, duty_cycle};

impl Pipeline<'_> {
    /// Keeps the samples the allocating threads pay for under `LEAKSCOPE_MAX_SAMPLES_PER_SEC`:
    /// once a second, from the rate of runtime samples, picks the thinning (a power of two) that
    /// brings the followed ones under the limit, and says so when it starts thinning. The first
    /// pick comes after `FIRST_PICK`: until then every sample is followed, which at a high
    /// allocation rate is the most the agent ever costs.
    pub(super) fn adjust_thinning(&mut self) {
        let limit = self.agent.config.max_samples_per_sec;
        let elapsed = self.thinning_window.elapsed();
        let period = if self.thinning_measured { Duration::from_secs(1) } else { FIRST_PICK };
        if limit == 0 || elapsed < period {
            return;
        }
        // Samples arrive only while allocation sampling is on: the rate is per second of that.
        let duty_cycled = self.agent.capture.sampling == crate::capture::Sampling::AllocationSampled;
        let on = if duty_cycled { self.duty.take_on_time() } else { elapsed };
        let counters = &self.agent.capture.counters;
        let samples = counters.samples.load(Ordering::Relaxed);
        self.adjust_exact_thinning(elapsed, limit);
        self.thinning_window = Instant::now();
        if on < 2 * duty_cycle::WINDOW {
            self.duty.give_back(on);
            return; // too little on-time yet to measure the rate by (it comes within ~4 s)
        }
        let rate = (samples - self.thinning_samples) as f64 / on.as_secs_f64();
        self.thinning_samples = samples;
        self.thinning_measured = true;
        let keep = self.agent.capture.keep_one_in.load(Ordering::Relaxed);
        let current = keep * self.duty.one_in();
        let next = next_keep_one_in(rate, limit, current);
        if next != current {
            // Skip whole windows for most of it (the runtime then does no sampling work at all),
            // and thin what is delivered by at least 2: twice the on-time halves what the choice
            // of windows adds to the estimates' variance. (Skipping windows for all of it halves
            // the samples the runtime builds, ~0.5 % of an allocation-bound process's CPU by
            // BENCHMARKS.md's cost per delivered sample; it was tried on 2026-12-03 and not kept:
            // a thinned leak's estimate then strayed ~1.7 Poisson standard errors (sd over
            // runs) instead of ~0.8, and the saving was below what 30 interleaved pairs resolve.)
            let windows = if duty_cycled { (next / 2).clamp(1, duty_cycle::MAX_ONE_IN) } else { 1 };
            self.duty.set_one_in(windows);
            let keep = next / self.duty.one_in();
            self.agent.capture.keep_one_in.store(keep, Ordering::Relaxed);
            tracing::info!(
                "thinning: following 1 in {next} samples (sampling on in 1 window in {}, then 1 in {keep}; \
                 {rate:.0} samples/s, limit {limit}/s)",
                self.duty.one_in()
            );
            if next > 1 && !self.thinning_reported {
                self.thinning_reported = true;
                self.status(
                    "info",
                    &format!(
                        "allocation rate is high ({rate:.0} samples/s): following 1 sample in {next} to stay within \
                         LEAKSCOPE_MAX_SAMPLES_PER_SEC={limit}; estimates stay unbiased, with wider error"
                    ),
                );
            }
        }
    }
}

/// When the first thinning is picked: two sampling windows, enough on-time to measure a rate.
const FIRST_PICK: Duration = Duration::from_millis(2 * duty_cycle::WINDOW.as_millis() as u64);

/// The thinning that keeps `rate` events a second within `limit` followed ones: a power of two,
/// lowered only once the rate is well under the limit, so it does not flap.
pub(super) fn next_keep_one_in(rate: f64, limit: usize, current: u32) -> u32 {
    let wanted = ((rate / limit as f64).ceil() as u32).clamp(1, 1024).next_power_of_two();
    if wanted >= current || rate * 2.0 < (limit as f64) * (current as f64) { wanted } else { current }
}
