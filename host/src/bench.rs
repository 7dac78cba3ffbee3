//! Timing evaluations: the full path (a slot, a fresh instance, the call,
//! the checks) with a fixed-answers bureau, so that the network is not
//! measured.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::civil::Date;
use loan_core::{Application, Cpf, Money, Terms};
use rust_decimal::Decimal;

use crate::bureau::FixedBureau;
use crate::evaluation::{EvaluationError, EvaluationRequest, Evaluator};

/// How long evaluations took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchReport {
    /// Evaluations run.
    pub runs: u32,
    /// Evaluations run at once.
    pub concurrency: u32,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Mean time of one evaluation, instantiation included.
    pub mean: Duration,
    /// Median time of one evaluation.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest evaluation.
    pub max: Duration,
}

impl BenchReport {
    /// Evaluations per second over the whole run.
    pub fn throughput(&self) -> f64 {
        f64::from(self.runs) / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} evaluations, {} at once, in {:.1?}: mean {:.1?}, p50 {:.1?}, p99 {:.1?}, max {:.1?}, {:.0}/s",
            self.runs,
            self.concurrency,
            self.wall,
            self.mean,
            self.p50,
            self.p99,
            self.max,
            self.throughput()
        )
    }
}

/// The application every benchmark evaluation decides: the contract's
/// worked example, which asks both bureau questions and tries all three
/// terms before approving at 12.
fn sample() -> Option<(Application, FixedBureau)> {
    let application = Application {
        name: "Benchmark".to_owned(),
        cpf: Cpf::parse("12345678909").ok()?,
        birthdate: Date::new(1990, 1, 1).ok()?,
        amount: Money::from_cents(250_000),
        terms: Terms::try_from(6).ok()?,
        income: Money::from_cents(150_000),
    };
    Some((application, FixedBureau::new(950, Decimal::new(8, 1))))
}

/// Runs `runs` evaluations of the active policy, `concurrency` at a time,
/// each timed from waiting for a slot to the checked decision.
pub async fn benchmark(
    evaluator: &Evaluator,
    runs: u32,
    concurrency: u32,
) -> Result<BenchReport, EvaluationError> {
    let (application, bureau) = sample().ok_or_else(|| {
        EvaluationError::Policy("the benchmark's sample application is invalid".to_owned())
    })?;
    let application = Arc::new(application);
    let bureau = Arc::new(bureau);
    let concurrency = concurrency.clamp(1, runs.max(1));
    let today = evaluator.today();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..concurrency {
        let share = runs / concurrency + u32::from(lane < runs % concurrency);
        let (evaluator, application, bureau) =
            (evaluator.clone(), application.clone(), bureau.clone());
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(share as usize);
            for _ in 0..share {
                let start = Instant::now();
                let request = EvaluationRequest {
                    loan_id: None,
                    application: &application,
                    bureau: bureau.clone(),
                    today,
                };
                evaluator.evaluate(request).await?;
                times.push(start.elapsed());
            }
            Ok::<_, EvaluationError>(times)
        });
    }
    let mut times = Vec::with_capacity(runs as usize);
    while let Some(joined) = tasks.join_next().await {
        let lane =
            joined.map_err(|e| EvaluationError::Policy(format!("a benchmark task failed: {e}")))?;
        times.extend(lane?);
    }
    let wall = started.elapsed();

    times.sort_unstable();
    let at = |quantile: f64| -> Duration {
        let last = times.len().saturating_sub(1);
        // Rounding an index: the float never touches a measured value.
        let index = ((last as f64) * quantile).round() as usize;
        times.get(index.min(last)).copied().unwrap_or_default()
    };
    let total: Duration = times.iter().sum();
    Ok(BenchReport {
        runs,
        concurrency,
        wall,
        mean: total / runs.max(1),
        p50: at(0.5),
        p99: at(0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}
