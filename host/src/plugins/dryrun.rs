//! Dry attempts: a plugin version run on a journaled event with no consequence, to see what it
//! would do (shadow runs, backtests). Its kv reads see the committed state and its writes are
//! kept apart and dropped; its outbound requests are checked against the tenant's allow-list
//! and recorded, never sent (the plugin gets a `200` with an empty body). It runs in a fresh
//! instance under the tenant's own limits (memory, time, fuel, requests).
//!
//! [`compare`] then says where it differs from what another version did on the same event: the
//! outcome, the kv changes (key and value digest), the requests (method, host, path, body
//! digest).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capabilities::http::{AllowList, HttpCapability};
use crate::runtime::{LoadedPlugin, PluginOutcome, Runtime};
use crate::storage::{
    AttemptOutcome, AttemptRecord, Effects, KvEffect, KvRead, OutboundRequest, Storage, StoredEvent,
};
use crate::tenants::{InstanceUse, Tenant};

/// What a dry attempt did.
#[derive(Debug, Clone)]
pub struct DryAttempt {
    /// The version that ran.
    pub version: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Its kv changes (had it been real) and its requests.
    pub effects: Effects,
    /// What it read of the committed kv.
    pub kv_reads: Vec<KvRead>,
    /// How long it took.
    pub duration: Duration,
}

/// Runs dry attempts for one host.
#[derive(Clone)]
pub struct DryRunner {
    runtime: Arc<Runtime>,
    storage: Arc<dyn Storage>,
    client: reqwest::Client,
}

impl DryRunner {
    /// A runner over `runtime` and `storage` (kv reads). Its HTTP client never sends: it is
    /// only there because the capability's type wants one.
    pub fn new(runtime: Arc<Runtime>, storage: Arc<dyn Storage>) -> anyhow::Result<DryRunner> {
        Ok(DryRunner {
            runtime,
            storage,
            client: HttpCapability::shared_client(true)?,
        })
    }

    /// A runner that takes an HTTP client already built (it never sends with it).
    pub fn from_parts(
        runtime: Arc<Runtime>,
        storage: Arc<dyn Storage>,
        client: reqwest::Client,
    ) -> DryRunner {
        DryRunner {
            runtime,
            storage,
            client,
        }
    }

    /// The store its kv reads come from.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Runs `plugin` on `event` as attempt `attempt`, dry.
    pub async fn run(
        &self,
        tenant: &Tenant,
        plugin: &LoadedPlugin,
        event: &StoredEvent,
        attempt: u32,
    ) -> DryAttempt {
        let allow: Arc<AllowList> = tenant.allow.clone();
        let http = HttpCapability::new(self.client.clone(), allow, tenant.http_limits).dry();
        let cx = tenant.attempt_context(self.storage.clone(), http, InstanceUse::Fresh);
        let report = self.runtime.run(plugin, event, attempt, cx).await;
        let outcome = match report.result {
            Ok(PluginOutcome::Done) => AttemptOutcome::Done,
            Ok(PluginOutcome::Skipped(reason)) => AttemptOutcome::Skipped { reason },
            Ok(PluginOutcome::RetryAfter(seconds)) => AttemptOutcome::RetryAfter { seconds },
            Err(message) => AttemptOutcome::Error { message },
        };
        DryAttempt {
            version: plugin.version.clone(),
            outcome,
            effects: Effects::of(&report.kv_writes, report.requests),
            kv_reads: report.kv_reads,
            duration: report.duration,
        }
    }
}

impl Comparison {
    /// Its verdict's name: `same`, `differs`, `inconclusive`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Comparison::Same => "same",
            Comparison::Differs { .. } => "differs",
            Comparison::Inconclusive { .. } => "inconclusive",
        }
    }
}

/// How a candidate's behaviour on one event compares with the serving version's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Comparison {
    /// The same outcome, kv changes and requests.
    Same,
    /// Where they differ.
    Differs {
        /// Each way they differ.
        differences: Vec<Difference>,
    },
    /// No verdict: the two did not see the same data (another attempt changed a kv key both
    /// read in between), so a difference would say nothing about the code.
    Inconclusive {
        /// Why.
        reason: String,
    },
}

/// One way two versions' behaviour on an event differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "in", rename_all = "kebab-case")]
pub enum Difference {
    /// They ended differently.
    Outcome {
        /// The serving version's.
        serving: AttemptOutcome,
        /// The candidate's.
        candidate: AttemptOutcome,
    },
    /// They changed kv differently (keys in order, values by digest).
    Kv {
        /// The serving version's.
        serving: Vec<KvEffect>,
        /// The candidate's.
        candidate: Vec<KvEffect>,
    },
    /// They made different requests.
    Requests {
        /// The serving version's.
        serving: Vec<OutboundRequest>,
        /// The candidate's.
        candidate: Vec<OutboundRequest>,
    },
}

/// What the serving version did on an event, as far as it is known.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// How it ended.
    pub outcome: &'a AttemptOutcome,
    /// Its effects, if they were recorded.
    pub effects: Option<&'a Effects>,
    /// What it read, when known (a live attempt; not a journaled one).
    pub kv_reads: Option<&'a [KvRead]>,
}

impl<'a> Observed<'a> {
    /// What a dry attempt did.
    pub fn dry(attempt: &'a DryAttempt) -> Observed<'a> {
        Observed {
            outcome: &attempt.outcome,
            effects: Some(&attempt.effects),
            kv_reads: Some(&attempt.kv_reads),
        }
    }

    /// What a journaled attempt says.
    pub fn recorded(record: &'a AttemptRecord) -> Observed<'a> {
        Observed {
            outcome: &record.outcome,
            effects: record.effects.as_ref(),
            kv_reads: None,
        }
    }
}

/// Where `candidate` differs from `serving`. kv changes and requests are compared only when the
/// serving version's were recorded.
pub fn compare(serving: &Observed<'_>, candidate: &DryAttempt) -> Comparison {
    if let Some(reads) = serving.kv_reads {
        let changed = reads.iter().find(|read| {
            candidate
                .kv_reads
                .iter()
                .any(|other| other.key == read.key && other.seen != read.seen)
        });
        if let Some(read) = changed {
            return Comparison::Inconclusive {
                reason: format!("kv key {:?} changed between the two runs' reads", read.key),
            };
        }
    }
    let mut differences = Vec::new();
    if *serving.outcome != candidate.outcome {
        differences.push(Difference::Outcome {
            serving: serving.outcome.clone(),
            candidate: candidate.outcome.clone(),
        });
    }
    if let Some(effects) = serving.effects {
        let sorted = |kv: &[KvEffect]| {
            let mut kv = kv.to_vec();
            kv.sort_by(|a, b| a.key.cmp(&b.key));
            kv
        };
        let (mine, theirs) = (sorted(&effects.kv), sorted(&candidate.effects.kv));
        if mine != theirs {
            differences.push(Difference::Kv {
                serving: mine,
                candidate: theirs,
            });
        }
        if effects.requests != candidate.effects.requests {
            differences.push(Difference::Requests {
                serving: effects.requests.clone(),
                candidate: candidate.effects.requests.clone(),
            });
        }
    }
    if differences.is_empty() {
        Comparison::Same
    } else {
        Comparison::Differs { differences }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dry(outcome: AttemptOutcome, kv: &[(&str, &str)], paths: &[&str]) -> DryAttempt {
        DryAttempt {
            version: "v".into(),
            outcome,
            effects: effects(kv, paths),
            kv_reads: vec![KvRead {
                key: "seen".into(),
                seen: None,
            }],
            duration: Duration::ZERO,
        }
    }

    fn effects(kv: &[(&str, &str)], paths: &[&str]) -> Effects {
        Effects {
            kv: kv
                .iter()
                .map(|(key, value)| KvEffect {
                    key: key.to_string(),
                    value_sha256: Some(value.to_string()),
                })
                .collect(),
            requests: paths
                .iter()
                .map(|path| OutboundRequest {
                    method: "POST".into(),
                    host: "shop.example".into(),
                    path: path.to_string(),
                    body_sha256: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_same_behaviour_is_the_same_whatever_the_order_of_kv_writes() {
        let recorded = effects(&[("a", "1"), ("b", "2")], &["/x"]);
        let serving = Observed {
            outcome: &AttemptOutcome::Done,
            effects: Some(&recorded),
            kv_reads: None,
        };
        let candidate = dry(AttemptOutcome::Done, &[("b", "2"), ("a", "1")], &["/x"]);
        assert_eq!(compare(&serving, &candidate), Comparison::Same);
    }

    #[test]
    fn each_difference_is_named() {
        let recorded = effects(&[("a", "1")], &["/x"]);
        let serving = Observed {
            outcome: &AttemptOutcome::Done,
            effects: Some(&recorded),
            kv_reads: None,
        };
        let candidate = dry(
            AttemptOutcome::Skipped {
                reason: "no".into(),
            },
            &[("a", "2")],
            &["/y"],
        );
        let Comparison::Differs { differences } = compare(&serving, &candidate) else {
            panic!("differs");
        };
        let places: Vec<&str> = differences
            .iter()
            .map(|d| match d {
                Difference::Outcome { .. } => "outcome",
                Difference::Kv { .. } => "kv",
                Difference::Requests { .. } => "requests",
            })
            .collect();
        assert_eq!(places, ["outcome", "kv", "requests"]);
        // Unrecorded effects: only the outcome is compared.
        let unrecorded = Observed {
            outcome: &AttemptOutcome::Done,
            effects: None,
            kv_reads: None,
        };
        let same_outcome = dry(AttemptOutcome::Done, &[("z", "9")], &[]);
        assert_eq!(compare(&unrecorded, &same_outcome), Comparison::Same);
    }

    #[test]
    fn runs_that_read_different_data_are_inconclusive() {
        let reads = [KvRead {
            key: "seen".into(),
            seen: Some([1; 32]),
        }];
        let serving = Observed {
            outcome: &AttemptOutcome::Done,
            effects: None,
            kv_reads: Some(&reads),
        };
        let candidate = dry(AttemptOutcome::Done, &[], &[]);
        assert!(matches!(
            compare(&serving, &candidate),
            Comparison::Inconclusive { .. }
        ));
    }
}
