//! Reproducible synthetic series for the tests of both verdicts (live and soak): one noise
//! generator, so every test's "noise" means the same thing.

use super::Point;

/// xorshift64*: small, deterministic, good enough for test noise.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    pub(crate) fn sym(&mut self) -> f64 {
        2.0 * self.next_f64() - 1.0
    }
}

/// `n` points `every_ms` apart, valued by `f(index, t_ms)` after `shape` (rounding, quantising).
pub(crate) fn series_from(
    n: usize,
    first_t_ms: f64,
    every_ms: f64,
    mut f: impl FnMut(usize, f64) -> f64,
    shape: impl Fn(f64) -> f64,
) -> Vec<Point> {
    (0..n)
        .map(|i| {
            let t = first_t_ms + i as f64 * every_ms;
            Point { t_ms: t, bytes: shape(f(i, t)) }
        })
        .collect()
}

#[test]
fn the_generator_is_reproducible_and_spans_its_range() {
    let (mut a, mut b) = (Rng(7), Rng(7));
    let draws: Vec<f64> = (0..10_000).map(|_| a.sym()).collect();
    assert!(draws.iter().all(|&x| x == b.sym()));
    assert!(draws.iter().all(|x| (-1.0..1.0).contains(x)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!(mean.abs() < 0.05, "mean {mean}");
    assert!(draws.iter().any(|&x| x < -0.99) && draws.iter().any(|&x| x > 0.99));
}
