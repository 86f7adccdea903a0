//! The collector's entry point to sizes, counts, rates and durations: the grammar and the
//! formatting live in the protocol crate (`leakscope_protocol::units`, decimal units; binary only
//! when spelled `KiB`/`MiB`/`GiB`); the clock helpers here are the collector's own.

use std::time::Duration;

pub use leakscope_protocol::units::{format_bytes, format_clock, format_count, format_duration, format_rate_per_min};

/// Parses a duration in the one grammar (`500ms`, `5s`, `2m`, `1h30m`, `1.5h`, or a plain number
/// of seconds), with a message for the command line that quotes the value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    leakscope_protocol::units::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// Local wall-clock time as `YYYYmmdd-HHMMSS`, for default output directory names.
pub fn local_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: `tm` is plain data that localtime_r fully initialises on success; `now` outlives
    // the call and both pointers are valid for its duration.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return format!("{now}");
        }
        tm
    };
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_notations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-3s").is_err());
    }
}
