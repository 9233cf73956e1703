//! Backtests: a candidate plugin run dry ([`super::dryrun`]) over a tenant's journaled events,
//! in journal order. A merchant sees what a change would have done to yesterday's traffic
//! before it ships.
//!
//! Each event is compared with the version serving the tenant now, run dry on the same event
//! beside the candidate: both read the same committed kv, so a difference is the code's, not
//! the data's (a counter both increment from today's value agrees). The event's recorded
//! attempt (outcome and version) is shown beside it. A tenant with no serving version is
//! compared with the recorded attempts instead (their outcome, and their effects when
//! recorded).
//!
//! A backtest is a job of this host: started by one request, followed by others (it may outlast
//! a request's 30 s). One runs at a time per host, the others queue, so backtests cost at most
//! one core beside the live traffic. The newest jobs are kept in memory (a restart forgets them).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::dryrun::{compare, Comparison, DryRunner, Observed};
use crate::runtime::LoadedPlugin;
use crate::tenants::Tenant;

/// Most events one backtest runs.
pub const MAX_EVENTS: u32 = 100_000;

/// Differing events a report lists (the counts cover all).
const MAX_LISTED: usize = 200;

/// Jobs kept, all tenants together (the oldest finished ones go first).
const KEPT: usize = 50;

/// Events read from the journal at once.
const PAGE: u32 = 500;

/// Where a backtest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for the backtest before it.
    Queued,
    /// Running.
    Running,
    /// Done: the report is whole.
    Finished,
    /// Stopped by an error (the report says which, and holds what ran before).
    Failed,
}

/// One event where the candidate behaved differently (or could not be compared).
#[derive(Debug, Clone, Serialize)]
pub struct EventVerdict {
    /// The event.
    pub seq: i64,
    /// Its order (provider id), if any.
    pub order_id: Option<String>,
    /// The version of its recorded attempt, if it had one.
    pub recorded_version: Option<String>,
    /// How its recorded attempt ended, if it had one.
    pub recorded_outcome: Option<crate::storage::AttemptOutcome>,
    /// How they compare.
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A backtest's progress and findings.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    /// The job's id.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The candidate's version (first 16 hex digits of its SHA-256).
    pub candidate_version: String,
    /// What it is compared with: the version serving when the backtest started (run dry
    /// beside it), or, when none serves, `recorded attempts`.
    pub baseline: String,
    /// Where it is.
    pub state: JobState,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Events received at or after this time (ms since the epoch).
    pub since_ms: u64,
    /// At most this many events.
    pub limit: u32,
    /// Events run so far.
    pub events: u64,
    /// Behaved the same.
    pub same: u64,
    /// Behaved differently.
    pub differs: u64,
    /// No verdict.
    pub inconclusive: u64,
    /// Events with nothing to compare with (no serving version and no recorded attempt).
    pub unrecorded: u64,
    /// The candidate's outcomes: done, skipped, retry, error.
    pub candidate_outcomes: BTreeMap<String, u64>,
    /// The first differing (or inconclusive) events, in journal order.
    pub differing: Vec<EventVerdict>,
    /// When it was asked for.
    pub created_at_ms: u64,
    /// How long it has run (ms).
    pub elapsed_ms: u64,
    /// Events per second so far.
    pub events_per_second: f64,
}

struct Job {
    report: Mutex<BacktestReport>,
}

/// A host's backtests.
pub struct Backtests {
    runner: DryRunner,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    one_at_a_time: tokio::sync::Semaphore,
}

impl Backtests {
    /// Backtests run by `runner`.
    pub fn new(runner: DryRunner) -> Backtests {
        Backtests {
            runner,
            jobs: Mutex::new(VecDeque::new()),
            one_at_a_time: tokio::sync::Semaphore::new(1),
        }
    }

    /// Starts a backtest of `candidate` over `tenant`'s events received since `since_ms` (at
    /// most `limit`, up to [`MAX_EVENTS`]); answers its first report at once.
    pub fn start(
        self: &Arc<Self>,
        tenant: Arc<Tenant>,
        candidate: LoadedPlugin,
        baseline: Option<Arc<LoadedPlugin>>,
        since_ms: u64,
        limit: u32,
    ) -> BacktestReport {
        let id = crate::access::mint().id;
        let report = BacktestReport {
            id,
            tenant: tenant.name.clone(),
            candidate_version: candidate.version.clone(),
            baseline: baseline
                .as_ref()
                .map_or_else(|| "recorded attempts".into(), |b| b.version.clone()),
            state: JobState::Queued,
            error: None,
            since_ms,
            limit: limit.clamp(1, MAX_EVENTS),
            events: 0,
            same: 0,
            differs: 0,
            inconclusive: 0,
            unrecorded: 0,
            candidate_outcomes: BTreeMap::new(),
            differing: Vec::new(),
            created_at_ms: crate::now_ms(),
            elapsed_ms: 0,
            events_per_second: 0.0,
        };
        let job = Arc::new(Job {
            report: Mutex::new(report.clone()),
        });
        {
            let mut jobs = self.jobs.lock().expect("backtest jobs");
            jobs.push_back(job.clone());
            while jobs.len() > KEPT {
                let finished = jobs.iter().position(|j| {
                    matches!(
                        j.report.lock().expect("report").state,
                        JobState::Finished | JobState::Failed
                    )
                });
                match finished {
                    Some(i) => drop(jobs.remove(i)),
                    None => break,
                }
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _turn = this.one_at_a_time.acquire().await;
            let result = this
                .run(&job, &tenant, &candidate, baseline.as_deref())
                .await;
            let mut report = job.report.lock().expect("report");
            match result {
                Ok(()) => report.state = JobState::Finished,
                Err(e) => {
                    report.state = JobState::Failed;
                    report.error = Some(format!("{e:#}"));
                }
            }
            tracing::info!(tenant = %report.tenant, id = %report.id, events = report.events,
                differs = report.differs, "backtest ended");
        });
        report
    }

    async fn run(
        &self,
        job: &Job,
        tenant: &Tenant,
        candidate: &LoadedPlugin,
        baseline: Option<&LoadedPlugin>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let (since_ms, limit) = {
            let mut report = job.report.lock().expect("report");
            report.state = JobState::Running;
            (report.since_ms, report.limit)
        };
        let storage = self.runner.storage().clone();
        let mut after = 0;
        let mut left = limit;
        while left > 0 {
            let page = storage
                .journal_page(&tenant.name, after, since_ms, left.min(PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            after = last.event.seq;
            left = left.saturating_sub(page.len() as u32);
            for journaled in page {
                let attempt = journaled.last_attempt.as_ref().map_or(1, |a| a.attempt);
                let event = &journaled.event;
                let (dry, serving) = match baseline {
                    Some(baseline) => {
                        let (dry, serving) = tokio::join!(
                            self.runner.run(tenant, candidate, event, attempt),
                            self.runner.run(tenant, baseline, event, attempt)
                        );
                        (dry, Some(serving))
                    }
                    None => (
                        self.runner.run(tenant, candidate, event, attempt).await,
                        None,
                    ),
                };
                let mut report = job.report.lock().expect("report");
                report.events += 1;
                *report
                    .candidate_outcomes
                    .entry(outcome_name(&dry.outcome).into())
                    .or_default() += 1;
                let recorded = journaled.last_attempt.as_ref();
                let observed = match (&serving, recorded) {
                    (Some(serving), _) => Observed::dry(serving),
                    (None, Some(recorded)) => Observed::recorded(recorded),
                    (None, None) => {
                        report.unrecorded += 1;
                        continue;
                    }
                };
                let comparison = compare(&observed, &dry);
                match &comparison {
                    Comparison::Same => report.same += 1,
                    Comparison::Differs { .. } => report.differs += 1,
                    Comparison::Inconclusive { .. } => report.inconclusive += 1,
                }
                if comparison != Comparison::Same && report.differing.len() < MAX_LISTED {
                    report.differing.push(EventVerdict {
                        seq: event.seq,
                        order_id: event.event.order_id.clone(),
                        recorded_version: recorded.map(|r| r.plugin_version.clone()),
                        recorded_outcome: recorded.map(|r| r.outcome.clone()),
                        comparison,
                    });
                }
                let elapsed = started.elapsed();
                report.elapsed_ms = elapsed.as_millis() as u64;
                report.events_per_second = report.events as f64 / elapsed.as_secs_f64().max(1e-9);
            }
        }
        Ok(())
    }

    /// A job's report, if this host has it and it is `tenant`'s.
    pub fn report(&self, tenant: &str, id: &str) -> Option<BacktestReport> {
        let jobs = self.jobs.lock().expect("backtest jobs");
        jobs.iter()
            .map(|j| j.report.lock().expect("report"))
            .find(|r| r.id == id && r.tenant == tenant)
            .map(|r| r.clone())
    }

    /// `tenant`'s jobs on this host, newest first, without their event lists.
    pub fn reports(&self, tenant: &str) -> Vec<BacktestReport> {
        let jobs = self.jobs.lock().expect("backtest jobs");
        jobs.iter()
            .rev()
            .map(|j| j.report.lock().expect("report").clone())
            .filter(|r| r.tenant == tenant)
            .map(|mut r| {
                r.differing.clear();
                r
            })
            .collect()
    }
}

/// An outcome's name in counts: done, skipped, retry, error.
pub fn outcome_name(outcome: &crate::storage::AttemptOutcome) -> &'static str {
    use crate::storage::AttemptOutcome as O;
    match outcome {
        O::Done => "done",
        O::Skipped { .. } => "skipped",
        O::RetryAfter { .. } => "retry",
        O::Error { .. } => "error",
    }
}
