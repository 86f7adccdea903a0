//! Byte-based Poisson sampling.
//!
//! Every allocated byte is a sampling point with probability 1/mean; an
//! allocation of `n` bytes is sampled when it contains at least one point,
//! i.e. with probability `p(n) = 1 - exp(-n/mean)`. Per thread this is an
//! exponential countdown: subtract each allocation's size, sample when it
//! goes negative, redraw (the exponential is memoryless). Each sample stands
//! for `1/p(n)` allocations and `n/p(n)` bytes: unbiased estimates.
//!
//! The hot path needs no libm: draws use [`fast_ln`].

/// xorshift64* step.
#[inline]
pub(crate) fn next_u64(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Natural logarithm for `x > 0`, accurate to ~1e-9 relative; no libm.
pub(crate) fn fast_ln(x: f64) -> f64 {
    if x <= 0.0 || x.is_nan() {
        return f64::NEG_INFINITY;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)); // [1, 2)
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0 + s2 * (2.0 / 11.0))))));
    e as f64 * core::f64::consts::LN_2 + series
}

/// Draws the next countdown (bytes left before the next sample): an exponential variate with
/// the given mean.
pub(crate) fn draw(mean: u64, rng: &mut u64) -> u64 {
    // 53 random bits -> u in (0, 1]
    let u = ((next_u64(rng) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let d = -fast_ln(u) * mean as f64;
    if d >= (u64::MAX / 2) as f64 { u64::MAX / 2 } else { d as u64 }
}

/// Takes an allocation of `size` bytes off the countdown `left`: the bytes left after it, and
/// whether it is drawn as a sample (it is larger than what was left; the new count is then
/// meaningless and is replaced by a fresh draw).
#[inline(always)]
pub(crate) fn take(left: u64, size: usize) -> (u64, bool) {
    left.overflowing_sub(size as u64)
}

/// Seeds a thread's generator (never zero).
pub(crate) fn seed(tid: i32, salt: u64) -> u64 {
    let mut s = (tid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.rotate_left(17) ^ 0xD1B5_4A32_D192_ED03;
    let _ = next_u64(&mut s);
    if s == 0 { 0x1234_5678_9ABC_DEF1 } else { s }
}

/// Probability that an allocation of `size` bytes is sampled.
pub(crate) fn sample_probability(size: u64, mean: u64) -> f64 {
    if mean <= 1 {
        return 1.0;
    }
    let p = 1.0 - (-(size as f64) / mean as f64).exp();
    if p <= 0.0 { f64::MIN_POSITIVE } else { p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_matches_std() {
        for &x in &[1e-300, 1e-12, 0.001, 0.1, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 10.0, 1e6, 1e300] {
            let got = fast_ln(x);
            let want = f64::ln(x);
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "ln({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn draws_have_the_configured_mean() {
        let mut rng = seed(42, 7);
        let n = 200_000;
        let mean = 65536u64;
        let sum: f64 = (0..n).map(|_| draw(mean, &mut rng) as f64).sum();
        let got = sum / n as f64;
        assert!((got / mean as f64 - 1.0).abs() < 0.01, "mean {got}");
    }

    /// Simulate the countdown on a stream of allocations and check that the
    /// upscaled estimate is unbiased for small and large sizes.
    #[test]
    fn estimator_is_unbiased() {
        let mean = 4096u64;
        for &size in &[16u64, 1000, 4096, 100_000] {
            let mut rng = seed(1, size);
            let mut countdown = draw(mean, &mut rng);
            let n = 400_000u64;
            let mut est_allocs = 0.0;
            let mut est_bytes = 0.0;
            for _ in 0..n {
                let (left, due) = take(countdown, size as usize);
                countdown = left;
                if due {
                    countdown = draw(mean, &mut rng);
                    let p = sample_probability(size, mean);
                    est_allocs += 1.0 / p;
                    est_bytes += size as f64 / p;
                }
            }
            let ratio = est_bytes / (n * size) as f64;
            assert!((ratio - 1.0).abs() < 0.03, "size {size}: bytes ratio {ratio}");
            assert!((est_allocs / n as f64 - 1.0).abs() < 0.03, "size {size}: allocs ratio");
        }
    }
}
