//! Repeated runs and their medians, latency histograms, and the number formats of the report.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;

/// Highest latency a histogram tracks, in microseconds (larger values are clamped): 60 s.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram in microseconds, 3 significant digits.
pub(crate) fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|error| anyhow!("latency histogram: {error}"))
}

/// Records `elapsed` (in whole microseconds, at least 1) into `histogram`.
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(micros);
}

/// One timed run: how many events, in how long, and optionally their latencies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
    /// `(p50, p99)` in microseconds, when latencies were recorded.
    pub(crate) latency_us: Option<(u64, u64)>,
}

impl Run {
    /// A run without latencies.
    pub(crate) fn new(events: u64, elapsed: Duration) -> Self {
        Self { events, elapsed, latency_us: None }
    }

    /// A run with the p50 and p99 of `histogram`.
    pub(crate) fn with_latencies(events: u64, elapsed: Duration, histogram: &Histogram<u64>) -> Self {
        let latency_us = (!histogram.is_empty())
            .then(|| (histogram.value_at_quantile(0.50), histogram.value_at_quantile(0.99)));
        Self { events, elapsed, latency_us }
    }

    /// Events per second.
    pub(crate) fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.events as f64 / seconds } else { 0.0 }
    }
}

/// Every run of one measurement.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) name: String,
    pub(crate) runs: Vec<Run>,
}

impl Measurement {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), runs: Vec::new() }
    }

    /// Median events per second over the runs.
    pub(crate) fn rate(&self) -> f64 {
        median(self.runs.iter().map(Run::rate).collect())
    }

    /// Median p50 and median p99 latency over the runs, in microseconds.
    pub(crate) fn latency_us(&self) -> Option<(f64, f64)> {
        let latencies: Vec<(u64, u64)> = self.runs.iter().filter_map(|run| run.latency_us).collect();
        if latencies.is_empty() {
            return None;
        }
        let p50 = median(latencies.iter().map(|(p50, _)| *p50 as f64).collect());
        let p99 = median(latencies.iter().map(|(_, p99)| *p99 as f64).collect());
        Some((p50, p99))
    }

    /// Median events per run (below the requested count when runs were time-capped).
    pub(crate) fn events(&self) -> f64 {
        median(self.runs.iter().map(|run| run.events as f64).collect())
    }

    /// Every run's rate, in run order.
    pub(crate) fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(Run::rate).collect()
    }
}

/// The median (the mean of the two middle values for an even count; 0 for none).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    let rounded = value.round();
    if !rounded.is_finite() {
        return "—".to_string();
    }
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if rounded < 0.0 {
        out.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `part / whole` as a percentage with one decimal, or `—` when `whole` is 0.
pub(crate) fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 { format!("{:.1}%", 100.0 * part / whole) } else { "—".to_string() }
}

/// `PASS` when `part / whole` reaches `target` (a fraction), else `MISS`.
pub(crate) fn verdict(part: f64, whole: f64, target: f64) -> &'static str {
    if whole > 0.0 && part / whole >= target { "PASS" } else { "MISS" }
}

/// Runs `pass` (which returns the records it visited) once to warm caches, then `runs` times
/// for at least `min_run_time` each (repeating whole passes). Returns the records of one pass
/// and the runs.
pub(crate) fn timed_passes(
    mut pass: impl FnMut() -> Result<u64>,
    runs: usize,
    min_run_time: Duration,
) -> Result<(u64, Vec<Run>)> {
    let records = pass()?;
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut count = 0;
        while count == 0 || start.elapsed() < min_run_time {
            let visited = pass()?;
            count += visited;
            if visited == 0 {
                break;
            }
        }
        results.push(Run::new(count, start.elapsed()));
    }
    Ok((records, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }

    #[test]
    fn ratios() {
        assert_eq!(percent(1.0, 4.0), "25.0%");
        assert_eq!(percent(1.0, 0.0), "—");
        assert_eq!(verdict(1.0, 2.0, 0.5), "PASS");
        assert_eq!(verdict(0.9, 2.0, 0.5), "MISS");
    }
}
