//! Durations on the command line (`500ms`, `30s`, `2m`), each within bounds
//! that say what makes sense for it: a huge value would overflow the clock
//! arithmetic (`Instant + d`) and a zero one would make a loop spin.

use std::time::Duration;

pub const MILLISECOND: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);
pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// A clap value parser for a duration in `min..=max`.
pub fn within(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| parse_within(text, min, max)
}

/// Parses `text` as a duration in `min..=max`, with a one-line reason when it
/// is not one.
pub fn parse_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 500ms or 30s: {e}"))?;
    if duration < min || duration > max {
        return Err(format!(
            "'{text}' is out of range: from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_with_a_reason() {
        assert_eq!(
            parse_within("500ms", MILLISECOND, HOUR),
            Ok(Duration::from_millis(500))
        );
        assert!(
            parse_within("10000000y", MILLISECOND, HOUR)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_within("0s", MILLISECOND, HOUR)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_within("soon", MILLISECOND, HOUR)
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(parse_within("0s", Duration::ZERO, HOUR), Ok(Duration::ZERO));
    }
}
