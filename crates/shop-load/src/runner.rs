//! Driving the server: a closed loop (`connections` workers, each sending its next
//! request when the previous one is answered) or an open loop (requests arrive at a
//! fixed rate whatever the server does; latency is measured from the intended send
//! time, so a server that falls behind shows it instead of hiding it: no coordinated
//! omission). Both stop at `requests` or `duration`, whichever comes first, and wait
//! for what is in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::stats::{Outcome, Recorder, Summary};

/// How to drive.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Closed loop: concurrent workers. Open loop: most requests in flight at once.
    pub connections: usize,
    /// Open loop: arrivals per second. `None`: closed loop.
    pub rate: Option<f64>,
    /// At most this many requests.
    pub requests: u64,
    /// At most this long (no request is started after it).
    pub duration: Duration,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a run came to.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Requests started (answered or not): the attempts the scenario checks count.
    pub started: u64,
    pub summary: Summary,
}

/// When request `i` should be sent in an open loop at `rate` per second, after the start.
pub fn intended_offset(i: u64, rate: f64) -> Duration {
    Duration::from_nanos((i as f64 * 1e9 / rate).round() as u64)
}

/// Sends one request and reads its answer (an error's `code` from its JSON body).
pub async fn send(request: reqwest::RequestBuilder, since: Instant) -> Outcome {
    match request.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let body = res.bytes().await;
            let code = if status >= 400 {
                body.ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
            } else {
                None
            };
            Outcome {
                status: Some(status),
                code,
                latency: since.elapsed(),
            }
        }
        Err(_) => Outcome {
            status: None,
            code: None,
            latency: since.elapsed(),
        },
    }
}

fn progress_bar(cfg: &RunConfig) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(cfg.requests);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Runs `make(i)` for i = 0, 1, 2, ... as `cfg` says.
pub async fn run<F>(cfg: &RunConfig, make: F) -> RunResult
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let bar = progress_bar(cfg);
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let (started, recorder) = match cfg.rate {
        None => closed_loop(cfg, make, deadline, bar.clone()).await,
        Some(rate) => open_loop(cfg, rate, make, start, deadline, bar.clone()).await,
    };
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    RunResult {
        started,
        summary: recorder.summary(elapsed),
    }
}

async fn closed_loop<F>(
    cfg: &RunConfig,
    make: Arc<F>,
    deadline: Instant,
    bar: ProgressBar,
) -> (u64, Recorder)
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let limit = cfg.requests;
    let workers: Vec<_> = (0..cfg.connections.max(1))
        .map(|_| {
            let (make, next, bar) = (make.clone(), next.clone(), bar.clone());
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                let mut started = 0u64;
                loop {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    started += 1;
                    let outcome = send(make(i), Instant::now()).await;
                    recorder.record(&outcome);
                    bar.inc(1);
                }
                (started, recorder)
            })
        })
        .collect();
    let mut total = Recorder::default();
    let mut started = 0;
    for w in workers {
        let (n, r) = w.await.expect("load worker");
        started += n;
        total.merge(&r);
    }
    (started, total)
}

async fn open_loop<F>(
    cfg: &RunConfig,
    rate: f64,
    make: Arc<F>,
    start: Instant,
    deadline: Instant,
    bar: ProgressBar,
) -> (u64, Recorder)
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let in_flight = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = 0u64;
    for i in 0..cfg.requests {
        let intended = start + intended_offset(i, rate);
        if intended >= deadline || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until(intended).await;
        // Waiting for a free slot delays the send, not the clock: latency still
        // counts from `intended`.
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        started += 1;
        let (make, bar) = (make.clone(), bar.clone());
        tasks.spawn(async move {
            let outcome = send(make(i), intended).await;
            drop(permit);
            bar.inc(1);
            outcome
        });
    }
    let mut recorder = Recorder::default();
    while let Some(outcome) = tasks.join_next().await {
        recorder.record(&outcome.expect("load task"));
    }
    (started, recorder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_sends_request_i_at_i_over_rate() {
        assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 100.0), Duration::from_millis(10));
        assert_eq!(intended_offset(250, 100.0), Duration::from_millis(2500));
        assert_eq!(intended_offset(3, 2.0), Duration::from_millis(1500));
        let at_1000: Vec<Duration> = (0..4).map(|i| intended_offset(i, 1000.0)).collect();
        assert_eq!(
            at_1000,
            [0, 1, 2, 3].map(Duration::from_millis).to_vec(),
            "evenly spaced"
        );
    }
}
