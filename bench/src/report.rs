//! The report: rows of `| case | metric | value | baseline | ratio |`, the
//! formatting of figures, and the header naming the machine and the date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::load::Outcome;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub metric: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub failed: bool,
}

impl Row {
    /// A figure without a baseline.
    pub fn new(case: &str, metric: &str, value: String) -> Self {
        Row {
            case: case.into(),
            metric: metric.into(),
            value,
            baseline: "-".into(),
            ratio: "-".into(),
            failed: false,
        }
    }

    /// A figure next to its baseline; `ratio` is value / baseline.
    pub fn compared(case: &str, metric: &str, value: String, baseline: String, ratio: f64) -> Self {
        Row {
            baseline,
            // Small ratios (a sweep against its interval) keep a digit more.
            ratio: if ratio < 0.1 {
                format!("{ratio:.3}")
            } else {
                format!("{ratio:.2}")
            },
            ..Row::new(case, metric, value)
        }
    }

    /// Two durations side by side.
    pub fn durations(case: &str, metric: &str, value: Duration, baseline: Duration) -> Self {
        Row::compared(
            case,
            metric,
            duration(value),
            duration(baseline),
            value.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        )
    }

    /// Two memory sizes side by side.
    pub fn sizes(case: &str, metric: &str, value: u64, baseline: u64) -> Self {
        Row::compared(
            case,
            metric,
            mib(value),
            mib(baseline),
            value as f64 / baseline.max(1) as f64,
        )
    }

    /// p50 and p99 latency of `measured` against `baseline`.
    pub fn latencies(case: &str, measured: &Outcome, baseline: &Outcome) -> Vec<Self> {
        [50.0, 99.0]
            .into_iter()
            .map(|p| {
                Row::durations(
                    case,
                    &format!("latency p{p}"),
                    measured.percentile(p),
                    baseline.percentile(p),
                )
            })
            .collect()
    }

    /// A case that could not be measured.
    pub fn failed(case: &str, why: &str) -> Self {
        Row {
            failed: true,
            ..Row::new(case, "FAILED", why.replace('|', "/").replace('\n', " "))
        }
    }
}

pub fn rate(per_second: f64) -> String {
    format!("{per_second:.0} req/s")
}

pub fn per_second(per_second: f64, unit: &str) -> String {
    format!("{per_second:.0} {unit}/s")
}

pub fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What the figures were measured on, and when.
pub fn header(quick: bool, took: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Sparrow bench{} — {} cores, {} UTC, run took {:.0?}\n",
        if quick { " (--quick)" } else { "" },
        cores,
        utc_now(),
        took
    )
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from("| case | metric | value | baseline | ratio |\n");
    out.push_str("|---|---|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.case, r.metric, r.value, r.baseline, r.ratio
        ));
    }
    out
}

/// `YYYY-MM-DD HH:MM` in UTC, without a date crate (days-to-civil algorithm
/// of Howard Hinnant).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}
