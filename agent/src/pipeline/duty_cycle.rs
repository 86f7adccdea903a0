//! Thinning at the source. When the runtime delivers many more allocation samples than
//! `LEAKSCOPE_MAX_SAMPLES_PER_SEC` lets the agent follow, most of them are thinned away after
//! the runtime has already paid for them: drawing sampling points on every allocation-context
//! refill, building each event (its type name included) and calling us. So on .NET 10, where
//! allocation sampling has an EventPipe session of its own, the agent thread switches that
//! session on in only one time window in `one_in` (100 ms windows; in each run of `one_in`
//! windows exactly one is on, at a random position, so no periodic workload can line up with
//! them and the on-time never strays from its share) and stamps the samples of an on-window with
//! that factor: every allocation is still sampled with a known probability (each window is on
//! with probability 1/`one_in`), so the estimates stay unbiased (Horvitz–Thompson), with wider
//! error.
//! Below the limit it stays on all the time. If the runtime ever refuses to switch the session,
//! sampling is left on for good and thinning alone keeps the budget, as before.
//!
//! For benchmarks only, `LEAKSCOPE_BENCH_AB_PHASE_MS` adds phases on top of the windows: each
//! phase (a whole number of windows) is on or off with probability ½, independently; inside an
//! on-phase the windows go on and off as usual, so an on-phase costs what the default costs, and
//! its samples stand for twice as many windows, so estimates stay unbiased. Every phase's start
//! is logged with the monotonic clock before and after its switch (`bench a/b:` lines), so a
//! workload that counts its own operations on the same clock can compare on-phases with
//! off-phases inside one process: the spread between processes (large on this kind of VM)
//! then cancels (`bench/agent_ab.py`).

use std::time::{Duration, Instant};

use crate::agent::Agent;

/// One on/off decision per window: short, so that even a run of seconds has many on-windows.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Most windows skipped per window kept: beyond it, thinning after delivery takes over. The
/// runtime's work per delivered sample (building the event, its type name included, and
/// delivering it) is the largest part of what sampling costs, several µs of CPU each (measured:
/// BENCHMARKS.md), so skipping windows saves far more than thinning after delivery. At 16 an
/// on-window still comes every 1.6 s on average.
pub const MAX_ONE_IN: u32 = 16;

pub struct DutyCycle {
    /// Allocation sampling is on in one window in this many (1: always on).
    one_in: u32,
    on: bool,
    window_start: Instant,
    /// On-time since the rate was last measured.
    on_time: Duration,
    rng: u64,
    /// Position in the current run of `one_in` windows, and the one that is on.
    position: u32,
    chosen: u32,
    /// A switch failed: sampling stays on.
    stuck: bool,
    /// Benchmark phases (windows per phase, windows left in this one, whether it is on).
    bench: Option<BenchPhases>,
    pub switches: u64,
    pub switch_time: Duration,
}

impl DutyCycle {
    /// Sampling is on when the agent starts.
    pub fn new() -> Self {
        let seed = crate::capture::monotonic_ns() ^ 0x9E37_79B9_7F4A_7C15;
        DutyCycle {
            one_in: 1,
            on: true,
            window_start: Instant::now(),
            on_time: Duration::ZERO,
            rng: seed | 1,
            position: 0,
            chosen: 0,
            stuck: false,
            bench: None,
            switches: 0,
            switch_time: Duration::ZERO,
        }
    }

    /// Benchmark phases of `phase_ms` (rounded to whole windows; 0: none).
    pub fn with_bench_phases(mut self, phase_ms: usize) -> Self {
        if phase_ms > 0 {
            let windows = (phase_ms as u128 / WINDOW.as_millis()).max(1) as u32;
            self.bench = Some(BenchPhases { windows, left: 0, on: true });
        }
        self
    }

    pub fn one_in(&self) -> u32 {
        self.one_in
    }

    /// Sets the duty for the windows that start from now on.
    pub fn set_one_in(&mut self, one_in: u32) {
        let one_in = if self.stuck { 1 } else { one_in.clamp(1, MAX_ONE_IN) };
        if one_in != self.one_in {
            // A new run of windows starts at the next boundary, drawn for the new duty.
            self.position = 0;
        }
        self.one_in = one_in;
    }

    /// Puts back on-time taken too early (too little to measure a rate by).
    pub fn give_back(&mut self, on: Duration) {
        self.on_time += on;
    }

    /// How long sampling was on since the last call: the time the delivered samples came from.
    pub fn take_on_time(&mut self) -> Duration {
        if self.on {
            let now = Instant::now();
            self.on_time += now - self.window_start;
            self.window_start = now;
        }
        std::mem::take(&mut self.on_time)
    }

    fn draw(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    }

    /// Whether the window starting now is on: one per run of `one_in`, at a random position
    /// (and, with benchmark phases, only inside an on-phase).
    fn next_window_on(&mut self) -> bool {
        if self.position == 0 || self.position >= self.one_in {
            self.position = 0;
            self.chosen = (self.draw() % self.one_in.max(1) as u64) as u32;
        }
        let on = self.one_in <= 1 || self.position == self.chosen;
        self.position += 1;
        let phase_on = match self.bench {
            Some(BenchPhases { windows, left: 0, .. }) => {
                let on = self.draw() & 1 == 1;
                self.bench = Some(BenchPhases { windows, left: windows - 1, on });
                on
            }
            Some(BenchPhases { windows, left, on }) => {
                self.bench = Some(BenchPhases { windows, left: left - 1, on });
                on
            }
            None => true,
        };
        on && phase_on
    }

    /// How many windows the samples of an on-window stand for.
    fn stands_for(&self) -> u32 {
        if self.bench.is_some() { self.one_in * 2 } else { self.one_in }
    }

    /// At a window boundary, picks the next window's state and switches sampling accordingly.
    /// Returns a message when the runtime refused to switch (sampling is then left on).
    pub fn tick(&mut self, agent: &Agent) -> Option<String> {
        let elapsed = self.window_start.elapsed();
        if elapsed < WINDOW {
            return None;
        }
        if self.on {
            self.on_time += elapsed;
        }
        self.window_start = Instant::now();
        let phase_was_on = self.bench.map(|b| b.on);
        let next_on = self.next_window_on();
        // The samples of the window now starting stand for `one_in` windows.
        agent.capture.window_one_in.store(self.stands_for(), std::sync::atomic::Ordering::Relaxed);
        let before_ns = crate::capture::monotonic_ns();
        let problem = if next_on == self.on { None } else { self.switch(agent, next_on) };
        if let Some(phase) = self.bench.filter(|b| Some(b.on) != phase_was_on) {
            // The phase's start, bracketing the switch (if its first window needed one).
            let after_ns = crate::capture::monotonic_ns();
            let state = if phase.on { "on" } else { "off" };
            tracing::info!("bench a/b: phase {state} between {before_ns} and {after_ns} ns");
        }
        problem
    }

    fn switch(&mut self, agent: &Agent, next_on: bool) -> Option<String> {
        let started = Instant::now();
        let switched = agent.set_allocation_sampling(next_on);
        self.switch_time += started.elapsed();
        self.switches += 1;
        match switched {
            Ok(()) => {
                self.on = next_on;
                None
            }
            Err(hr) => {
                self.stuck = true;
                self.one_in = 1;
                agent.capture.window_one_in.store(1, std::sync::atomic::Ordering::Relaxed);
                let back_on = agent.set_allocation_sampling(true);
                self.on = back_on.is_ok();
                Some(match back_on {
                    Ok(()) => format!(
                        "the runtime refused to switch allocation sampling ({hr:#x}); it stays on, thinned after delivery"
                    ),
                    Err(again) => format!(
                        "the runtime refused to switch allocation sampling back on ({hr:#x}, then {again:#x}): no more managed samples"
                    ),
                })
            }
        }
    }
}

#[derive(Clone, Copy)]
struct BenchPhases {
    windows: u32,
    left: u32,
    on: bool,
}

impl Default for DutyCycle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the window choice without a runtime: exactly one window in `one_in` is on per run,
    /// and every position in a run is chosen equally often. Each position's count is
    /// Binomial(40000, 1/4): 10000 ± 87, so ±500 is 5.8 of its standard deviations (a false
    /// failure ~1 in 30 million runs with the time-seeded draws; ±100 of 4000 failed 1 in 950),
    /// while a position never or always chosen is off by 10000.
    #[test]
    fn one_window_per_run_at_every_position_alike() {
        let mut d = DutyCycle::new();
        d.set_one_in(4);
        let mut on_at = [0u32; 4];
        for run in 0..40_000 {
            let mut on = 0;
            for at in on_at.iter_mut() {
                if d.next_window_on() {
                    on += 1;
                    *at += 1;
                }
            }
            assert_eq!(on, 1, "run {run}");
        }
        assert!(on_at.iter().all(|&n| (9_500..=10_500).contains(&n)), "{on_at:?}");
    }

    /// Benchmark phases: whole phases on or off, about half of them on, and an on-phase's samples
    /// stand for two windows each. 4000 phases: on ~ Binomial(4000, ½) = 2000 ± 32, so ±250 is
    /// 7.9 standard deviations, while phases never (or always) on are off by 2000.
    #[test]
    fn bench_phases_are_whole_and_on_half_the_time() {
        let mut d = DutyCycle::new().with_bench_phases(1000);
        assert_eq!(d.stands_for(), 2);
        let mut on_phases = 0;
        for _ in 0..4000 {
            let first = d.next_window_on();
            for _ in 1..10 {
                assert_eq!(d.next_window_on(), first, "a phase changed inside its windows");
            }
            on_phases += first as u32;
        }
        assert!((1750..=2250).contains(&on_phases), "{on_phases}");
        assert_eq!(DutyCycle::new().with_bench_phases(0).stands_for(), 1);
    }

    #[test]
    fn a_refused_switch_keeps_sampling_on() {
        let mut d = DutyCycle::new();
        d.stuck = true;
        d.set_one_in(4);
        assert_eq!(d.one_in(), 1);
    }
}
