//! Parsing sizes and durations, `&str -> Result<_, UnitError>`, without allocating.

use core::fmt;
use core::time::Duration;

/// Longest duration accepted, in seconds (about 31 years): longer is surely a typo.
pub const MAX_DURATION_SECS: u64 = 1_000_000_000;

/// Why a size or a duration did not parse. Says what is accepted; the caller names the variable
/// or option and quotes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitError {
    /// Nothing but whitespace.
    Empty,
    /// A minus sign: sizes and durations are never negative.
    Negative,
    /// No number where one was expected (`lots`, `m`, `1.2.3`, `NaN`).
    NotANumber,
    UnknownSizeUnit,
    UnknownDurationUnit,
    /// More than `u64::MAX` bytes, or more than [`MAX_DURATION_SECS`].
    TooLarge,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitError::Empty => "empty: give a number and a unit",
            UnitError::Negative => "negative: sizes and durations are never below zero",
            UnitError::NotANumber => "not a number followed by a unit",
            UnitError::UnknownSizeUnit => {
                "unknown size unit: use B, kB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB (×1024)"
            }
            UnitError::UnknownDurationUnit => "unknown duration unit: use ms, s, m, h or d (e.g. 500ms, 5s, 1h30m)",
            UnitError::TooLarge => "too large",
        })
    }
}

impl std::error::Error for UnitError {}

/// Bytes per size unit (`""` is bytes), or `None` for a unit that is not one.
pub fn size_unit_bytes(unit: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("b", 1),
        ("k", 1_000),
        ("kb", 1_000),
        ("m", 1_000_000),
        ("mb", 1_000_000),
        ("g", 1_000_000_000),
        ("gb", 1_000_000_000),
        ("t", 1_000_000_000_000),
        ("tb", 1_000_000_000_000),
        ("ki", 1 << 10),
        ("kib", 1 << 10),
        ("mi", 1 << 20),
        ("mib", 1 << 20),
        ("gi", 1 << 30),
        ("gib", 1 << 30),
        ("ti", 1 << 40),
        ("tib", 1 << 40),
    ];
    UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)).map(|&(_, bytes)| bytes)
}

/// Seconds per duration unit, or `None` for a unit that is not one.
pub fn duration_unit_seconds(unit: &str) -> Option<f64> {
    const UNITS: &[(&str, f64)] = &[
        ("ms", 0.001),
        ("s", 1.0),
        ("sec", 1.0),
        ("secs", 1.0),
        ("m", 60.0),
        ("min", 60.0),
        ("mins", 60.0),
        ("h", 3600.0),
        ("hr", 3600.0),
        ("hrs", 3600.0),
        ("d", 86_400.0),
        ("day", 86_400.0),
        ("days", 86_400.0),
    ];
    UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)).map(|&(_, secs)| secs)
}

/// `65536`, `64kB`, `64KiB`, `1.5MB`, `2 GiB` → bytes. Fractions round to the nearest byte.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let t = start(text)?;
    let (number, rest) = split_number(t)?;
    let unit = rest.trim_start_matches(' ');
    let multiplier = size_unit_bytes(unit).ok_or(UnitError::UnknownSizeUnit)?;
    match number {
        Number::Whole(n) => n.checked_mul(multiplier).ok_or(UnitError::TooLarge),
        Number::Fraction(v) => {
            let bytes = (v * multiplier as f64).round();
            // 2^64 as f64: anything at or above it does not fit.
            if bytes >= 18_446_744_073_709_551_616.0 {
                return Err(UnitError::TooLarge);
            }
            Ok(bytes as u64)
        }
    }
}

/// `500ms`, `5s`, `2m`, `1h30m`, `1.5h`, `1d`, or a bare number of seconds (`10`, `2.5`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = start(text)?;
    let mut seconds = 0.0f64;
    let mut rest = t;
    let mut first = true;
    while !rest.is_empty() {
        let (number, after) = split_number(rest)?;
        let after = after.trim_start_matches(' ');
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.' || c == ' ').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match (unit, first && next.is_empty()) {
            ("", true) => 1.0, // a bare number is seconds
            ("", false) => return Err(UnitError::UnknownDurationUnit),
            _ => duration_unit_seconds(unit).ok_or(UnitError::UnknownDurationUnit)?,
        };
        seconds += number.as_f64() * scale;
        if seconds.is_nan() || seconds > MAX_DURATION_SECS as f64 {
            return Err(UnitError::TooLarge);
        }
        rest = next.trim_start_matches(' ');
        first = false;
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// [`parse_duration`] in whole milliseconds (rounded to the nearest).
pub fn parse_duration_ms(text: &str) -> Result<u64, UnitError> {
    let d = parse_duration(text)?;
    Ok((d.as_nanos() as u64).saturating_add(500_000) / 1_000_000)
}

enum Number {
    Whole(u64),
    Fraction(f64),
}

impl Number {
    fn as_f64(&self) -> f64 {
        match *self {
            Number::Whole(n) => n as f64,
            Number::Fraction(v) => v,
        }
    }
}

/// Trims, and rejects empty and negative input.
fn start(text: &str) -> Result<&str, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    if t.starts_with('-') {
        return Err(UnitError::Negative);
    }
    Ok(t)
}

/// The leading number (digits with at most one `.`) and what follows it.
fn split_number(t: &str) -> Result<(Number, &str), UnitError> {
    let len = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (digits, rest) = t.split_at(len);
    if !digits.bytes().any(|b| b.is_ascii_digit()) || digits.bytes().filter(|&b| b == b'.').count() > 1 {
        return Err(UnitError::NotANumber);
    }
    if !digits.contains('.') {
        // All digits: only too many of them can fail.
        return digits.parse::<u64>().map(|n| (Number::Whole(n), rest)).map_err(|_| UnitError::TooLarge);
    }
    // Digits and one dot (`1.5`, `.5`, `5.`): always a finite float.
    let v: f64 = digits.parse().map_err(|_| UnitError::NotANumber)?;
    Ok((Number::Fraction(v), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_unit() {
        let cases: &[(&str, u64)] = &[
            ("65536", 65_536),
            ("7B", 7),
            ("7b", 7),
            ("64k", 64_000),
            ("64kB", 64_000),
            ("64KB", 64_000),
            ("1M", 1_000_000),
            ("1MB", 1_000_000),
            ("1mb", 1_000_000),
            ("2G", 2_000_000_000),
            ("2GB", 2_000_000_000),
            ("3T", 3_000_000_000_000),
            ("3TB", 3_000_000_000_000),
            ("64Ki", 65_536),
            ("64KiB", 65_536),
            ("64kib", 65_536),
            ("1Mi", 1 << 20),
            ("1MiB", 1 << 20),
            ("1Gi", 1 << 30),
            ("1GiB", 1 << 30),
            ("1Ti", 1 << 40),
            ("1TiB", 1 << 40),
        ];
        for &(text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_take_fractions_spaces_and_surrounding_whitespace() {
        assert_eq!(parse_bytes("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_bytes("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_bytes(".5kB"), Ok(500));
        assert_eq!(parse_bytes("0.4B"), Ok(0));
        assert_eq!(parse_bytes("  2 GiB\t\n"), Ok(2 << 30));
        assert_eq!(parse_bytes("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert_eq!(parse_bytes(""), Err(UnitError::Empty));
        assert_eq!(parse_bytes(" \t "), Err(UnitError::Empty));
        assert_eq!(parse_bytes("-5"), Err(UnitError::Negative));
        assert_eq!(parse_bytes("-5MB"), Err(UnitError::Negative));
        assert_eq!(parse_bytes("lots"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("MB"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("1.2.3MB"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("NaN"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("inf"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("1e400"), Err(UnitError::UnknownSizeUnit));
        assert_eq!(parse_bytes("+5"), Err(UnitError::NotANumber));
        assert_eq!(parse_bytes("10 parsecs"), Err(UnitError::UnknownSizeUnit));
        assert_eq!(parse_bytes("5 M B"), Err(UnitError::UnknownSizeUnit));
        assert_eq!(parse_bytes("1PB"), Err(UnitError::UnknownSizeUnit));
        assert!(UnitError::UnknownSizeUnit.to_string().contains("KiB"));
    }

    #[test]
    fn absurd_sizes_overflow_into_an_error_not_a_wrap() {
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_bytes("18446744073709551616"), Err(UnitError::TooLarge));
        assert_eq!(parse_bytes("100000000000000000000000"), Err(UnitError::TooLarge));
        assert_eq!(parse_bytes("18446744073709552TB"), Err(UnitError::TooLarge));
        assert_eq!(parse_bytes("17179869184GiB"), Err(UnitError::TooLarge));
        assert_eq!(parse_bytes("16777215.99TiB"), Ok((16_777_215.99f64 * (1u64 << 40) as f64).round() as u64));
        assert_eq!(parse_bytes("16777216.0TiB"), Err(UnitError::TooLarge));
        let huge = "9".repeat(400);
        assert_eq!(parse_bytes(&huge), Err(UnitError::TooLarge));
        assert_eq!(parse_bytes(&format!("{huge}.5")), Err(UnitError::TooLarge));
    }

    #[test]
    fn every_duration_unit() {
        let cases: &[(&str, u64)] = &[
            ("250ms", 250),
            ("250MS", 250),
            ("5s", 5_000),
            ("5sec", 5_000),
            ("5secs", 5_000),
            ("2m", 120_000),
            ("2min", 120_000),
            ("2mins", 120_000),
            ("1h", 3_600_000),
            ("1hr", 3_600_000),
            ("2hrs", 7_200_000),
            ("1d", 86_400_000),
            ("1day", 86_400_000),
            ("2days", 172_800_000),
        ];
        for &(text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn durations_combine_take_fractions_and_bare_seconds() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_ms("1.5ms"), Ok(2));
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(parse_duration(""), Err(UnitError::Empty));
        assert_eq!(parse_duration("   "), Err(UnitError::Empty));
        assert_eq!(parse_duration("-3s"), Err(UnitError::Negative));
        assert_eq!(parse_duration("m"), Err(UnitError::NotANumber));
        assert_eq!(parse_duration("soon"), Err(UnitError::NotANumber));
        assert_eq!(parse_duration("5x"), Err(UnitError::UnknownDurationUnit));
        assert_eq!(parse_duration("1h30"), Err(UnitError::UnknownDurationUnit));
        assert_eq!(parse_duration("1e3s"), Err(UnitError::UnknownDurationUnit));
        assert_eq!(parse_duration("NaN"), Err(UnitError::NotANumber));
        assert_eq!(parse_duration("5s-"), Err(UnitError::UnknownDurationUnit));
        assert!(UnitError::UnknownDurationUnit.to_string().contains("500ms"));
    }

    #[test]
    fn absurd_durations_are_too_large_not_a_panic() {
        assert_eq!(parse_duration("100000000000000000000000"), Err(UnitError::TooLarge));
        assert_eq!(parse_duration("1000000001"), Err(UnitError::TooLarge));
        assert_eq!(parse_duration("1000000000"), Ok(Duration::from_secs(MAX_DURATION_SECS)));
        assert_eq!(parse_duration("99999999999999d"), Err(UnitError::TooLarge));
        assert_eq!(parse_duration(&format!("{}.5h", "9".repeat(400))), Err(UnitError::TooLarge));
        assert_eq!(parse_duration(&"1d".repeat(20_000)), Err(UnitError::TooLarge));
    }
}
