//! Summaries of repeated measurements: min, median and p99 (nearest rank), and the ratio of
//! two medians.

use std::time::Duration;

/// A distribution of one figure over its runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
}

impl Summary {
    /// `None` for no samples; NaN samples are dropped (they come from no measurement).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| !s.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            runs: sorted.len(),
            min: sorted[0],
            median: median_of_sorted(&sorted),
            p99: nearest_rank(&sorted, 99.0),
        })
    }

    /// Durations in milliseconds.
    pub fn of_durations(samples: &[Duration]) -> Option<Summary> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Summary::of(&ms)
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile: the smallest sample with at least `p`% of samples at or
/// below it. With fewer than 100 samples p99 is the maximum, which is what it should be.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `ours / peer` of the medians; `None` when the peer's median is zero or missing.
pub fn ratio(ours: Option<&Summary>, peer: Option<&Summary>) -> Option<f64> {
    let (o, p) = (ours?, peer?);
    (p.median > 0.0).then(|| o.median / p.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.p99, s.runs), (1.0, 2.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn p99_is_nearest_rank() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.p99, 198.0);
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(Summary::of(&samples).unwrap().p99, 10.0);
    }

    #[test]
    fn empty_and_nan_samples_give_nothing() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        assert_eq!(Summary::of(&[f64::NAN, 5.0]).unwrap().runs, 1);
    }

    #[test]
    fn ratio_of_medians() {
        let a = Summary::of(&[10.0]).unwrap();
        let b = Summary::of(&[5.0]).unwrap();
        assert_eq!(ratio(Some(&a), Some(&b)), Some(2.0));
        assert_eq!(ratio(Some(&a), None), None);
        let zero = Summary::of(&[0.0]).unwrap();
        assert_eq!(ratio(Some(&a), Some(&zero)), None);
    }

    #[test]
    fn durations_are_milliseconds() {
        let s = Summary::of_durations(&[Duration::from_micros(1500)]).unwrap();
        assert!((s.median - 1.5).abs() < 1e-9);
    }
}
