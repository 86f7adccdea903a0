//! Formatting sizes, counts, rates and durations for people: decimal units (1 MB = 1,000,000
//! bytes), as dotnet-counters does, so the numbers line up with what .NET users already read, and
//! with what [`super::parse`] reads back.

use std::time::Duration;

/// `84.7 MB`, `512 B`, `1.20 GB`.
pub fn format_bytes(bytes: f64) -> String {
    let sign = if bytes < 0.0 { "-" } else { "" };
    let b = bytes.abs();
    // Thresholds at 999.5 of each unit, so rounding never prints "1000 kB".
    let (value, unit) = if b < 999.5 {
        return format!("{sign}{} B", b.round() as u64);
    } else if b < 999.5e3 {
        (b / 1e3, "kB")
    } else if b < 999.5e6 {
        (b / 1e6, "MB")
    } else if b < 999.5e9 {
        (b / 1e9, "GB")
    } else {
        (b / 1e12, "TB")
    };
    if value < 9.995 {
        format!("{sign}{value:.2} {unit}")
    } else if value < 99.95 {
        format!("{sign}{value:.1} {unit}")
    } else {
        format!("{sign}{value:.0} {unit}")
    }
}

/// `+3.20 MB/min`, `-12 kB/min`, `0 B/min`.
pub fn format_rate_per_min(bytes_per_min: f64) -> String {
    if bytes_per_min.abs() < 0.5 {
        return "0 B/min".to_string();
    }
    let sign = if bytes_per_min > 0.0 { "+" } else { "" };
    format!("{sign}{}/min", format_bytes(bytes_per_min))
}

/// `1.50 M`, `12.3 k`, `812`.
pub fn format_count(n: f64) -> String {
    let n = n.max(0.0);
    if n < 1e4 {
        format!("{}", n.round() as u64)
    } else if n < 1e6 {
        format!("{:.1} k", n / 1e3)
    } else if n < 1e9 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} G", n / 1e9)
    }
}

/// `45s`, `3m12s`, `1h02m`, `850ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s < 60 {
        let tenths = (ms % 1000) / 100;
        return if s < 10 && tenths > 0 { format!("{s}.{tenths}s") } else { format!("{s}s") };
    }
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 { format!("{h}h{m:02}m") } else { format!("{m}m{s:02}s") }
}

/// Clock-style elapsed time for the live view: `00:03:12`.
pub fn format_clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_formatted_with_decimal_units() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(84_700_000.0), "84.7 MB");
        assert_eq!(format_bytes(1_200_000_000.0), "1.20 GB");
        assert_eq!(format_bytes(-2_500.0), "-2.50 kB");
        assert_eq!(format_bytes(999_999.0), "1.00 MB");
        assert_eq!(format_bytes(9_999.0), "10.0 kB");
        assert_eq!(format_bytes(99_960.0), "100 kB");
        assert_eq!(format_bytes(999.7), "1.00 kB");
        assert_eq!(format_rate_per_min(3_200_000.0), "+3.20 MB/min");
        assert_eq!(format_rate_per_min(0.1), "0 B/min");
    }

    #[test]
    fn counts_and_durations_are_compact() {
        assert_eq!(format_count(812.0), "812");
        assert_eq!(format_count(1_503_000.0), "1.50 M");
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(format_clock(Duration::from_secs(3723)), "01:02:03");
    }

    #[test]
    fn formatted_sizes_parse_back_to_what_they_say() {
        for bytes in [512.0, 84_700_000.0, 1_200_000_000.0, 9_999.0] {
            let text = format_bytes(bytes);
            let back = crate::units::parse_bytes(&text).unwrap() as f64;
            assert!((back - bytes).abs() / bytes < 0.01, "{text} read back as {back}");
        }
    }
}
