//! Durations on the command line (`500ms`, `30s`, `2m`), each within bounds
//! that say what makes sense for it: a huge value would overflow the clock
//! arithmetic (`Instant + d`) and a zero one would make a loop spin.
//!
//! Also what every flag taking a number shares: a value that starts with
//! `-` is still the flag's value ([`signed_values`]).

use std::any::TypeId;
use std::net::SocketAddr;
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

/// Lets the value of a flag that takes a number, a size, a duration or an
/// address start with `-`, for `#[command(mut_args = signed_values)]`.
///
/// Otherwise clap takes `--max-body -1` for the flag without its value
/// followed by an unknown flag `-1`, and its error names neither the flag
/// nor what it allows; now the value parser refuses `-1` naming both. Text
/// flags (names, paths, URLs) keep clap's rule, so that a missing value
/// (`--name --plugin x`) is not taken for `--plugin`.
pub fn signed_values(arg: clap::Arg) -> clap::Arg {
    let typed = [
        TypeId::of::<Duration>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<SocketAddr>(),
    ];
    let parser = arg.get_value_parser().type_id();
    if arg.get_action().takes_values() && !arg.is_positional() && typed.iter().any(|t| parser == *t)
    {
        arg.allow_hyphen_values(true)
    } else {
        arg
    }
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

    #[test]
    fn a_negative_value_is_refused_by_its_flag() {
        #[derive(Debug, clap::Parser)]
        #[command(mut_args = signed_values)]
        struct Flags {
            #[arg(long, default_value = "1s", value_parser = within(MILLISECOND, HOUR))]
            interval: Duration,
            #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
            count: u32,
            #[arg(long)]
            name: Option<String>,
        }
        let error = |args: &[&str]| {
            let e = <Flags as clap::Parser>::try_parse_from(args).unwrap_err();
            e.to_string().lines().next().unwrap_or_default().to_owned()
        };
        let interval = error(&["t", "--interval", "-5s"]);
        assert!(interval.contains("'-5s' for '--interval"), "{interval}");
        let count = error(&["t", "--count", "-1"]);
        assert!(count.contains("'-1' for '--count"), "{count}");
        // A text flag still does not swallow the next flag.
        let name = error(&["t", "--name", "--count", "2"]);
        assert!(name.contains("'--name <NAME>'"), "{name}");
    }
}
