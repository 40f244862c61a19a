//! Recording answers and summing them up: an HDR histogram of latencies (in
//! microseconds, 3 significant digits), counts by HTTP status and by error `code`,
//! and the throughput over the run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency the histogram tells apart (longer ones are recorded as this).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status, or `None` when no answer came (connection refused, timeout).
    pub status: Option<u16>,
    /// The error body's `code`, for answers that carry one.
    pub code: Option<String>,
    pub latency: Duration,
}

/// Collects outcomes. One per worker; merged at the end.
#[derive(Debug, Clone)]
pub struct Recorder {
    histogram: Histogram<u64>,
    by_status: BTreeMap<u16, u64>,
    by_code: BTreeMap<String, u64>,
    transport_errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            by_status: BTreeMap::new(),
            by_code: BTreeMap::new(),
            transport_errors: 0,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, outcome: &Outcome) {
        let us = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.max(1));
        match outcome.status {
            Some(status) => *self.by_status.entry(status).or_default() += 1,
            None => self.transport_errors += 1,
        }
        if let Some(code) = &outcome.code {
            *self.by_code.entry(code.clone()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms of the same bounds");
        for (status, n) in &other.by_status {
            *self.by_status.entry(*status).or_default() += n;
        }
        for (code, n) in &other.by_code {
            *self.by_code.entry(code.clone()).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }

    /// Every request recorded, answered or not.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The summary of a run that took `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| {
            if self.histogram.is_empty() {
                0.0
            } else {
                ms(self.histogram.value_at_quantile(q))
            }
        };
        let secs = elapsed.as_secs_f64();
        let requests = self.count();
        Summary {
            requests,
            elapsed_secs: secs,
            throughput: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            latency_ms: Percentiles {
                p50: at(0.50),
                p90: at(0.90),
                p99: at(0.99),
                p999: at(0.999),
                max: ms(self.histogram.max()),
                mean: if self.histogram.is_empty() {
                    0.0
                } else {
                    self.histogram.mean() / 1000.0
                },
            },
            by_status: self.by_status.clone(),
            by_code: self.by_code.clone(),
            transport_errors: self.transport_errors,
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A run summed up.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Requests that finished (answered, or failed without an answer).
    pub requests: u64,
    pub elapsed_secs: f64,
    /// `requests / elapsed_secs`.
    pub throughput: f64,
    pub latency_ms: Percentiles,
    pub by_status: BTreeMap<u16, u64>,
    pub by_code: BTreeMap<String, u64>,
    /// Requests that got no answer at all.
    pub transport_errors: u64,
}

impl Summary {
    /// How many answers had `status`.
    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let l = &self.latency_ms;
        let mut out = format!(
            "requests     {}\nelapsed      {:.2} s\nthroughput   {:.1} req/s\n\
             latency      p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  mean {:.2} ms\n",
            self.requests,
            self.elapsed_secs,
            self.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean
        );
        out.push_str("status      ");
        for (status, n) in &self.by_status {
            out.push_str(&format!(" {status}: {n}"));
        }
        if self.transport_errors > 0 {
            out.push_str(&format!(" no answer: {}", self.transport_errors));
        }
        out.push('\n');
        if !self.by_code.is_empty() {
            out.push_str("error codes ");
            for (code, n) in &self.by_code {
                out.push_str(&format!(" {code}: {n}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&str>, ms: u64) -> Outcome {
        Outcome {
            status: Some(status),
            code: code.map(str::to_string),
            latency: Duration::from_millis(ms),
        }
    }

    fn close(got: f64, want: f64) -> bool {
        // HDR with 3 significant digits: within 0.1 %.
        (got - want).abs() <= want * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut r = Recorder::default();
        for ms in 1..=1000 {
            r.record(&answer(200, None, ms));
        }
        let s = r.summary(Duration::from_secs(1));
        assert_eq!(s.requests, 1000);
        assert!(close(s.latency_ms.p50, 500.0), "p50 {}", s.latency_ms.p50);
        assert!(close(s.latency_ms.p90, 900.0), "p90 {}", s.latency_ms.p90);
        assert!(close(s.latency_ms.p99, 990.0), "p99 {}", s.latency_ms.p99);
        assert!(
            close(s.latency_ms.p999, 999.0),
            "p999 {}",
            s.latency_ms.p999
        );
        assert!(close(s.latency_ms.max, 1000.0), "max {}", s.latency_ms.max);
        assert!(
            close(s.latency_ms.mean, 500.5),
            "mean {}",
            s.latency_ms.mean
        );
    }

    #[test]
    fn throughput_is_count_over_elapsed() {
        let mut r = Recorder::default();
        for _ in 0..300 {
            r.record(&answer(200, None, 2));
        }
        let s = r.summary(Duration::from_millis(1500));
        assert!((s.throughput - 200.0).abs() < 1e-9, "{}", s.throughput);
        assert_eq!(r.summary(Duration::ZERO).throughput, 0.0);
    }

    #[test]
    fn counts_by_status_and_code_across_merges() {
        let mut a = Recorder::default();
        a.record(&answer(201, None, 1));
        a.record(&answer(409, Some("COUPON_SOLD_OUT"), 1));
        let mut b = Recorder::default();
        b.record(&answer(409, Some("COUPON_SOLD_OUT"), 1));
        b.record(&answer(409, Some("COUPON_ALREADY_ISSUED"), 1));
        b.record(&Outcome {
            status: None,
            code: None,
            latency: Duration::from_millis(5),
        });
        a.merge(&b);
        let s = a.summary(Duration::from_secs(1));
        assert_eq!(s.requests, 5);
        assert_eq!(s.status(201), 1);
        assert_eq!(s.status(409), 3);
        assert_eq!(s.status(500), 0);
        assert_eq!(s.transport_errors, 1);
        assert_eq!(s.by_code["COUPON_SOLD_OUT"], 2);
        assert_eq!(s.by_code["COUPON_ALREADY_ISSUED"], 1);
        let table = s.table();
        assert!(table.contains("409: 3"), "{table}");
        assert!(table.contains("COUPON_SOLD_OUT: 2"), "{table}");
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = Recorder::default().summary(Duration::from_secs(1));
        assert_eq!(s.requests, 0);
        assert_eq!(s.latency_ms.p99, 0.0);
        assert_eq!(s.latency_ms.max, 0.0);
    }
}
