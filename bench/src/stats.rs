//! Order statistics over samples (min, median, percentiles, max) and a latency histogram
//! with one-microsecond buckets, for dnsperf's per-query output.

use serde_json::{Value, json};

/// The `p`-th percentile (0 to 100) of `samples` by the nearest-rank method: the smallest
/// sample such that at least p% of the samples are at or below it. `None` when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median: the mean of the two middle samples when their number is even.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

/// The arithmetic mean.
pub fn mean(samples: &[f64]) -> Option<f64> {
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}

/// min, median, p95, max and the count, as a JSON object (nulls when empty).
pub fn summary(samples: &[f64]) -> Value {
    let min = samples
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
    let max = samples
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    json!({
        "n": samples.len(),
        "min": min,
        "median": median(samples),
        "p95": percentile(samples, 95.0),
        "max": max,
        "mean": mean(samples),
    })
}

/// Counts of latencies in 1 µs buckets up to a limit; anything above lands in the last.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_us: f64,
}

impl Histogram {
    /// Buckets for 0 to `limit_us` microseconds.
    pub fn new(limit_us: usize) -> Histogram {
        Histogram {
            buckets: vec![0; limit_us + 1],
            count: 0,
            sum_us: 0.0,
        }
    }

    /// Records one latency in microseconds.
    pub fn record(&mut self, us: f64) {
        let last = self.buckets.len() - 1;
        let bucket = if us.is_finite() && us > 0.0 {
            (us.round() as usize).min(last)
        } else {
            0
        };
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_us += us.max(0.0);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their mean in microseconds.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us / self.count as f64)
    }

    /// The nearest-rank `p`-th percentile in microseconds (bucket resolution: 1 µs).
    pub fn percentile_us(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(us as f64);
            }
        }
        Some((self.buckets.len() - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_a_sample() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 95.0), Some(95.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_even_count_is_the_middle_mean() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn histogram_percentiles_match_the_samples() {
        let mut h = Histogram::new(1000);
        for us in 1..=100 {
            h.record(f64::from(us));
        }
        h.record(5000.0);
        assert_eq!(h.count(), 101);
        assert_eq!(h.percentile_us(50.0), Some(51.0));
        assert_eq!(h.percentile_us(100.0), Some(1000.0));
    }
}
