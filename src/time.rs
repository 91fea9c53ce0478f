//! The duration syntax of the configuration (`"500ms"`, `"60s"`, `"10m"`, `"24h"`). The time of day
//! itself is never read by the core: callers pass `now_ms` (the host's clock in Envoy, a fixed value
//! in tests), so every decision is a function of its inputs.

use std::time::Duration;

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`. No fractions, no spaces, no unit-less
/// numbers: an operator who writes `"60"` is told what the field expects rather than guessed at.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "expected a duration such as \"500ms\", \"60s\", \"10m\" or \"24h\", got {text:?}"
        ));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} is too large"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "unknown duration unit in {text:?}: use ms, s, m or h (e.g. \"60s\")"
            ))
        }
    };
    let millis = value
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn unitless_fractional_negative_and_overflowing_durations_are_refused() {
        for bad in [
            "60",
            "1.5s",
            "-1s",
            "s",
            "",
            "10 s",
            "5d",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
