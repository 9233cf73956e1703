//! A tenant's activity as the console's charts draw it: events and attempts per time bucket by
//! outcome, attempt durations (p50/p95) and the backlog's age, over the last hour or day. Computed
//! here from rows the journal already keeps ([`ActivityRows`]), so every storage backend gives the
//! same picture and no metrics service is needed.

use serde::Serialize;

use crate::storage::{ActivityRows, AttemptKind};

/// How far back a chart looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last hour, by minute.
    Hour,
    /// The last day, by 15 minutes.
    Day,
}

impl Window {
    /// How long the window is.
    pub fn span_ms(self) -> u64 {
        match self {
            Window::Hour => 3_600_000,
            Window::Day => 86_400_000,
        }
    }

    /// How long one bucket is.
    pub fn bucket_ms(self) -> u64 {
        match self {
            Window::Hour => 60_000,
            Window::Day => 900_000,
        }
    }

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// The first time the window covers, given the time now (bucket-aligned).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        let bucket = self.bucket_ms();
        let end = now_ms / bucket * bucket + bucket;
        end.saturating_sub(self.span_ms())
    }
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Window, String> {
        match s {
            "hour" => Ok(Window::Hour),
            "day" => Ok(Window::Day),
            other => Err(format!(
                "unknown window {other:?}: the charts cover `hour` or `day`"
            )),
        }
    }
}

/// Series over the window's buckets, one value per bucket, in the column form charting libraries
/// take (uPlot's `[x, y1, y2, ...]`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActivityChart {
    /// `hour` or `day`.
    pub window: &'static str,
    /// How long one bucket is.
    pub bucket_ms: u64,
    /// Each bucket's start, in seconds since the epoch.
    pub t: Vec<u64>,
    /// Events received in the bucket.
    pub received: Vec<u64>,
    /// Attempts that ended `done`.
    pub done: Vec<u64>,
    /// Attempts that ended `skipped`.
    pub skipped: Vec<u64>,
    /// Attempts that asked to be retried later.
    pub retried: Vec<u64>,
    /// Attempts that failed (error, trap, timeout).
    pub failed: Vec<u64>,
    /// Median attempt duration in ms (`null` without attempts).
    pub p50_ms: Vec<Option<f64>>,
    /// 95th percentile attempt duration in ms.
    pub p95_ms: Vec<Option<f64>>,
    /// The age of the oldest unfinished event at the bucket's end (or now), in seconds.
    pub backlog_age_s: Vec<f64>,
    /// Sums over the window.
    pub totals: Totals,
    /// The journal held more events than one chart reads: the oldest part is missing.
    pub truncated: bool,
}

/// Sums over a chart's window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Events received.
    pub received: u64,
    /// Attempts `done`.
    pub done: u64,
    /// Attempts `skipped`.
    pub skipped: u64,
    /// Attempts retried later.
    pub retried: u64,
    /// Attempts failed.
    pub failed: u64,
}

/// The chart of `rows` for the `window` ending now.
pub fn chart(rows: &ActivityRows, now_ms: u64, window: Window) -> ActivityChart {
    let bucket_ms = window.bucket_ms();
    let start = window.start_ms(now_ms);
    let n = (window.span_ms() / bucket_ms) as usize;
    let index = |at_ms: u64| -> Option<usize> {
        (at_ms >= start)
            .then(|| ((at_ms - start) / bucket_ms) as usize)
            .filter(|i| *i < n)
    };
    let mut chart = ActivityChart {
        window: window.as_str(),
        bucket_ms,
        t: (0..n as u64)
            .map(|i| (start + i * bucket_ms) / 1000)
            .collect(),
        received: vec![0; n],
        done: vec![0; n],
        skipped: vec![0; n],
        retried: vec![0; n],
        failed: vec![0; n],
        p50_ms: vec![None; n],
        p95_ms: vec![None; n],
        backlog_age_s: vec![0.0; n],
        totals: Totals::default(),
        truncated: rows.truncated,
    };
    for event in &rows.events {
        if let Some(i) = index(event.received_at_ms) {
            chart.received[i] += 1;
            chart.totals.received += 1;
        }
    }
    let mut durations: Vec<Vec<u64>> = vec![Vec::new(); n];
    for attempt in &rows.attempts {
        let Some(i) = index(attempt.started_at_ms) else {
            continue;
        };
        durations[i].push(attempt.duration_us);
        let (series, total) = match attempt.kind {
            AttemptKind::Done => (&mut chart.done, &mut chart.totals.done),
            AttemptKind::Skipped => (&mut chart.skipped, &mut chart.totals.skipped),
            AttemptKind::RetryAfter => (&mut chart.retried, &mut chart.totals.retried),
            AttemptKind::Error => (&mut chart.failed, &mut chart.totals.failed),
        };
        series[i] += 1;
        *total += 1;
    }
    for (i, mut bucket) in durations.into_iter().enumerate() {
        bucket.sort_unstable();
        chart.p50_ms[i] = percentile(&bucket, 50).map(us_to_ms);
        chart.p95_ms[i] = percentile(&bucket, 95).map(us_to_ms);
    }
    for i in 0..n {
        let at = (start + (i as u64 + 1) * bucket_ms).min(now_ms);
        let oldest = rows
            .events
            .iter()
            .filter(|e| e.received_at_ms <= at && e.finished_at_ms.is_none_or(|f| f > at))
            .map(|e| e.received_at_ms)
            .min();
        chart.backlog_age_s[i] = oldest.map_or(0.0, |t| (at - t) as f64 / 1000.0);
    }
    chart
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

fn us_to_ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{AttemptSample, EventSpan};

    const NOW: u64 = 1_800_000_000_000 + 30_000; // half a minute into a minute

    fn attempt(started_at_ms: u64, duration_us: u64, kind: AttemptKind) -> AttemptSample {
        AttemptSample {
            started_at_ms,
            duration_us,
            kind,
        }
    }

    #[test]
    fn buckets_end_with_the_one_holding_now() {
        let chart = chart(&ActivityRows::default(), NOW, Window::Hour);
        assert_eq!(chart.t.len(), 60);
        assert_eq!(*chart.t.last().unwrap(), (NOW - 30_000) / 1000);
        assert_eq!(chart.t[1] - chart.t[0], 60);
        let day = super::chart(&ActivityRows::default(), NOW, Window::Day);
        assert_eq!(day.t.len(), 96);
        assert!(day.backlog_age_s.iter().all(|a| *a == 0.0));
        assert!(day.p50_ms.iter().all(Option::is_none));
    }

    #[test]
    fn events_and_attempts_are_counted_by_bucket_and_outcome() {
        let minute = NOW - 30_000;
        let rows = ActivityRows {
            events: vec![
                EventSpan {
                    received_at_ms: minute + 1,
                    finished_at_ms: Some(minute + 5),
                },
                EventSpan {
                    received_at_ms: minute - 60_000,
                    finished_at_ms: Some(minute - 50_000),
                },
                // Before the window: not counted as received.
                EventSpan {
                    received_at_ms: NOW - 7_200_000,
                    finished_at_ms: Some(NOW - 7_100_000),
                },
            ],
            attempts: vec![
                attempt(minute + 2, 1_000, AttemptKind::Done),
                attempt(minute + 3, 3_000, AttemptKind::Error),
                attempt(minute + 4, 2_000, AttemptKind::Skipped),
                attempt(minute - 59_000, 10_000, AttemptKind::RetryAfter),
                attempt(NOW - 7_200_000, 10_000, AttemptKind::Done),
            ],
            truncated: false,
        };
        let chart = chart(&rows, NOW, Window::Hour);
        assert_eq!(chart.received[59], 1);
        assert_eq!(chart.received[58], 1);
        assert_eq!(
            (chart.done[59], chart.failed[59], chart.skipped[59]),
            (1, 1, 1)
        );
        assert_eq!(chart.retried[58], 1);
        assert_eq!(chart.p50_ms[59], Some(2.0));
        assert_eq!(chart.p95_ms[59], Some(3.0));
        assert_eq!(chart.p50_ms[58], Some(10.0));
        assert_eq!(
            chart.totals,
            Totals {
                received: 2,
                done: 1,
                skipped: 1,
                retried: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn the_backlog_age_is_that_of_the_oldest_unfinished_event_at_each_bucket_end() {
        let minute = NOW - 30_000;
        let rows = ActivityRows {
            events: vec![
                // Waiting since 10 minutes before now, never finished.
                EventSpan {
                    received_at_ms: minute - 600_000,
                    finished_at_ms: None,
                },
                // Older, finished 5 minutes ago: it was the oldest until then.
                EventSpan {
                    received_at_ms: minute - 1_200_000,
                    finished_at_ms: Some(minute - 300_000),
                },
            ],
            attempts: vec![],
            truncated: true,
        };
        let chart = chart(&rows, NOW, Window::Hour);
        // The last bucket's end is now: the unfinished one is 10.5 minutes old.
        assert_eq!(chart.backlog_age_s[59], 630.0);
        // At the end of the bucket 6 minutes before this one the older one still waited (14 min).
        assert_eq!(chart.backlog_age_s[52], 840.0);
        // From its finish on, the unfinished one is the oldest.
        assert_eq!(chart.backlog_age_s[53], 300.0);
        // Before either arrived, nothing waited.
        assert_eq!(chart.backlog_age_s[0], 0.0);
        assert!(chart.truncated);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 95), Some(7));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 95), Some(95));
    }

    #[test]
    fn windows_are_named_in_the_api() {
        assert_eq!("hour".parse::<Window>(), Ok(Window::Hour));
        assert_eq!("day".parse::<Window>(), Ok(Window::Day));
        assert!("week"
            .parse::<Window>()
            .unwrap_err()
            .contains("`hour` or `day`"));
    }
}
