//! Measuring layouts that run side by side in turns, for ratios that a slow
//! spell of the machine cannot tip.
//!
//! The machine's speed drifts by a fifth over tens of seconds (measured:
//! one process served 13,000 to 18,000 req/s in consecutive 2 s windows).
//! A case that measures one layout after the other compares different
//! spells; instead it starts every layout at once and loads each in turn,
//! [`ROUNDS`] short windows each, and a ratio is the median of the rounds'
//! ratios, each taken between windows a few seconds apart.

use std::time::Duration;

use crate::Settings;
use crate::load::{Budget, Outcome};
use crate::report::{self, Row};

/// Windows per layout; together they last the run's measuring time.
pub const ROUNDS: u32 = 3;

/// The budget of one window.
pub fn window(settings: &Settings) -> Budget {
    Budget::Timed {
        warmup: settings.warmup / 2,
        measure: settings.measure / ROUNDS,
    }
}

/// One layout's measured windows, in the order they were taken, each with
/// the CPU its processes used.
#[derive(Default)]
pub struct Rounds(Vec<(Outcome, Duration)>);

impl Rounds {
    pub fn add(&mut self, round: (Outcome, Duration)) {
        self.0.push(round);
    }

    /// All windows as one.
    pub fn outcome(&self) -> Outcome {
        Outcome::merge(self.0.iter().map(|(outcome, _)| outcome.clone()))
    }

    /// Answered requests per second over all windows.
    pub fn rate(&self) -> f64 {
        let elapsed: Duration = self.0.iter().map(|(outcome, _)| outcome.elapsed).sum();
        self.answered() as f64 / elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_per_request(&self) -> Duration {
        let used: Duration = self.0.iter().map(|(_, cpu)| *cpu).sum();
        used / self.answered().max(1) as u32
    }

    fn answered(&self) -> u64 {
        self.0.iter().map(|(outcome, _)| outcome.ok).sum()
    }

    /// The median over the rounds of this layout's rate against `other`'s
    /// in the same round.
    pub fn median_ratio(&self, other: &Rounds) -> f64 {
        let mut ratios: Vec<f64> = self
            .0
            .iter()
            .zip(&other.0)
            .map(|((mine, _), (theirs, _))| mine.rate() / theirs.rate())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }

    /// The row comparing this layout's rate with `baseline`'s: both over all
    /// rounds, and the median of the rounds' ratios.
    pub fn against(&self, baseline: &Rounds, case: &str, metric: &str) -> Row {
        Row::compared(
            case,
            metric,
            report::rate(self.rate()),
            report::rate(baseline.rate()),
            self.median_ratio(baseline),
        )
    }
}

/// The outcome of `load`, and the CPU time the processes `pids` used in its
/// measured window (read when the warm-up ends and when the load does).
pub async fn with_cpu(
    pids: &[u32],
    budget: Budget,
    load: impl Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<(Outcome, Duration)> {
    let total = |pids: &[u32]| -> anyhow::Result<Duration> {
        pids.iter().map(|&pid| harness::usage::cpu_time(pid)).sum()
    };
    let warmup = match budget {
        Budget::Timed { warmup, .. } => warmup,
        Budget::Count(_) => Duration::ZERO,
    };
    let at_window = {
        let pids = pids.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            total(&pids)
        })
    };
    let outcome = load.await?;
    let used = total(pids)?.saturating_sub(at_window.await??);
    Ok((outcome, used))
}
