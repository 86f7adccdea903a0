//! Commands that pause the worker — `census`, `retention` and `peek`, each an induced full
//! blocking GC and a heap walk — run one at a time and spaced, whoever sends them and however
//! often: after one that took `d`, the next starts no sooner than `clamp(4·d, 1 s, 30 s)` after it
//! ended, so commanded heap work keeps the worker busy a fifth of the time at most. One request
//! may wait for its turn (a `snapshot` asks for a census, then paths, then a peek); any more are
//! refused, and the collector is told so with a `status` — at most one a second, the rest
//! counted into the next.

use std::time::{Duration, Instant};

pub const MIN_SPACING: Duration = Duration::from_secs(1);
pub const MAX_SPACING: Duration = Duration::from_secs(30);
pub const SPACING_FACTOR: u32 = 4;
/// Least time between two statuses about the collector's commands (refusals, ignored lines).
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// At most one notice a second; the ones in between are counted into the next.
#[derive(Default)]
pub struct Quiet {
    last: Option<Instant>,
    held_back: u64,
}

impl Quiet {
    /// `Some(n)` when a notice may go out now (`n` others were held back since the last one);
    /// `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < NOTICE_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// What to do with a pausing command that was just received.
#[derive(Debug, PartialEq)]
pub enum Offer<T> {
    /// Its turn: run it now.
    Run(T),
    /// Kept; it runs when the spacing allows ([`Gate::due`]).
    Queued { runs_in: Duration },
    /// Another one is already waiting: refused.
    Refused { retry_after: Duration },
}

/// The waiting place was taken: the command was not kept.
#[derive(Debug, PartialEq)]
pub struct Taken {
    pub retry_after: Duration,
}

/// A refusal status to send now: the command refused, when to retry, and how many other
/// refusals it stands for.
pub struct Notice {
    pub retry_after: Duration,
    pub also_refused: u64,
}

pub struct Gate<T> {
    /// When the next pausing command may start (`None`: now).
    ready_at: Option<Instant>,
    waiting: Option<T>,
    notices: Quiet,
    pub refused_total: u64,
}

impl<T> Default for Gate<T> {
    fn default() -> Self {
        Gate { ready_at: None, waiting: None, notices: Quiet::default(), refused_total: 0 }
    }
}

/// How long after a pausing command of `took` the next may start.
pub fn spacing(took: Duration) -> Duration {
    (took * SPACING_FACTOR).clamp(MIN_SPACING, MAX_SPACING)
}

impl<T> Gate<T> {
    fn wait_left(&self, now: Instant) -> Duration {
        self.ready_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    pub fn offer(&mut self, command: T, now: Instant) -> Offer<T> {
        let left = self.wait_left(now);
        if self.waiting.is_none() && left.is_zero() {
            return Offer::Run(command);
        }
        if self.waiting.is_none() {
            self.waiting = Some(command);
            return Offer::Queued { runs_in: left };
        }
        self.refused_total += 1;
        // The waiting one runs first, then the spacing after it (at least the minimum).
        Offer::Refused { retry_after: left + MIN_SPACING }
    }

    /// Puts back a command that ran without its result (the runtime was not ready), to run
    /// again at its turn; refused when another command waits already.
    pub fn requeue(&mut self, command: T, now: Instant) -> Result<(), Taken> {
        if self.waiting.is_some() {
            return Err(Taken { retry_after: self.wait_left(now) + MIN_SPACING });
        }
        self.waiting = Some(command);
        Ok(())
    }

    /// The waiting command, once its turn has come.
    pub fn due(&mut self, now: Instant) -> Option<T> {
        if self.wait_left(now).is_zero() { self.waiting.take() } else { None }
    }

    /// A pausing command ran from `started` to `ended`.
    pub fn finished(&mut self, started: Instant, ended: Instant) {
        self.ready_at = Some(ended + spacing(ended.saturating_duration_since(started)));
    }

    /// Counts a refusal; returns the status to send, unless one went out less than a second ago
    /// (then this refusal is counted into the next).
    pub fn notice(&mut self, retry_after: Duration, now: Instant) -> Option<Notice> {
        self.notices.allow(now).map(|also_refused| Notice { retry_after, also_refused })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_is_four_times_the_work_within_one_and_thirty_seconds() {
        assert_eq!(spacing(Duration::from_millis(50)), MIN_SPACING);
        assert_eq!(spacing(Duration::from_secs(2)), Duration::from_secs(8));
        assert_eq!(spacing(Duration::from_secs(20)), MAX_SPACING);
    }

    #[test]
    fn one_runs_one_waits_the_rest_are_refused_and_noticed_once_a_second() {
        let t0 = Instant::now();
        let mut gate = Gate::default();
        assert_eq!(gate.offer(1, t0), Offer::Run(1));
        gate.finished(t0, t0 + Duration::from_millis(100));
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(gate.offer(2, t1), Offer::Queued { runs_in: Duration::from_millis(900) });
        assert!(matches!(gate.offer(3, t1), Offer::Refused { .. }));
        assert!(matches!(gate.offer(4, t1), Offer::Refused { .. }));
        assert_eq!(gate.refused_total, 2);
        assert!(gate.notice(Duration::from_secs(1), t1).is_some_and(|n| n.also_refused == 0));
        assert!(gate.notice(Duration::from_secs(1), t1).is_none(), "a second notice within a second");
        assert_eq!(gate.due(t1), None, "not its turn yet");
        let t2 = t0 + Duration::from_millis(1100);
        assert_eq!(gate.due(t2), Some(2));
        let later = gate.notice(Duration::from_secs(1), t2 + Duration::from_millis(100));
        assert_eq!(later.map(|n| n.also_refused), Some(1));
    }

    #[test]
    fn a_command_put_back_runs_at_its_turn_unless_another_waits() {
        let t0 = Instant::now();
        let mut gate = Gate::default();
        assert_eq!(gate.offer(1, t0), Offer::Run(1));
        gate.finished(t0, t0 + Duration::from_millis(10));
        assert_eq!(gate.requeue(1, t0 + Duration::from_millis(10)), Ok(()));
        assert_eq!(gate.due(t0 + Duration::from_millis(500)), None, "spaced like any other");
        assert_eq!(gate.due(t0 + Duration::from_millis(1010)), Some(1));
        gate.finished(t0 + Duration::from_millis(1010), t0 + Duration::from_millis(1020));
        assert!(matches!(gate.offer(2, t0 + Duration::from_millis(1030)), Offer::Queued { .. }));
        assert!(gate.requeue(1, t0 + Duration::from_millis(1030)).is_err(), "the waiting place is taken");
        assert_eq!(gate.due(t0 + Duration::from_millis(2100)), Some(2));
    }
}
