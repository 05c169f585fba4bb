//! Time stamps as people read them.

/// `seconds` as `HH:MM:SS.mmm` (`MM:SS.mmm` under an hour).
pub fn clock(seconds: f64) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
    );
    if h > 0 {
        format!("{h:02}:{m:02}:{s:02}.{ms:03}")
    } else {
        format!("{m:02}:{s:02}.{ms:03}")
    }
}

/// Parses `90`, `1.5`, `01:30`, `1:02:03.5` into seconds.
pub fn parse_time(text: &str) -> Result<f64, String> {
    let expected = || format!("`{text}`: expected seconds (12.5) or [HH:]MM:SS[.mmm]");
    let mut seconds = 0.0;
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() > 3 {
        return Err(expected());
    }
    for (i, part) in parts.iter().enumerate() {
        let value: f64 = part.parse().map_err(|_| expected())?;
        let last = i + 1 == parts.len();
        if !value.is_finite() || value < 0.0 || (!last && value.fract() != 0.0) {
            return Err(expected());
        }
        if i > 0 && value >= 60.0 {
            return Err(expected());
        }
        seconds = seconds * 60.0 + value;
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_read_as_minutes_and_hours() {
        assert_eq!(clock(2.4), "00:02.400");
        assert_eq!(clock(61.0005), "01:01.001");
        assert_eq!(clock(3723.25), "01:02:03.250");
    }

    #[test]
    fn times_parse_as_seconds_or_clock() {
        assert_eq!(parse_time("12.5"), Ok(12.5));
        assert_eq!(parse_time("01:30"), Ok(90.0));
        assert_eq!(parse_time("1:02:03.5"), Ok(3723.5));
        for bad in ["", "-1", "1:75", "a", "1:2:3:4", "nan", "1.5:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
