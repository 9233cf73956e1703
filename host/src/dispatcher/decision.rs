//! What an attempt's outcome does to its event, as one pure function: the same rule for an
//! attempt that ran and for one that was interrupted (a crash, a kill, a shutdown that timed
//! out), unit-tested without a store, a plugin or a clock.

use crate::config::RetryPolicy;
use crate::storage::{AttemptOutcome, EventState};

/// The event's next step after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The plugin handled it.
    Done,
    /// The plugin skipped it on purpose.
    Skipped,
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// The retry budget is spent: a dead letter, kept for inspection and replay.
    Dead,
}

impl Decision {
    /// The state the journal records, and when the next attempt is due (0 when none is).
    pub fn next_state(self) -> (EventState, u64) {
        match self {
            Decision::Done => (EventState::Done, 0),
            Decision::Skipped => (EventState::Skipped, 0),
            Decision::RetryAt(at_ms) => (EventState::Pending, at_ms),
            Decision::Dead => (EventState::Dead, 0),
        }
    }
}

/// Decides what `outcome` of attempt number `attempt` means for its event under `policy`, at
/// `now_ms`. The retry budget counts from `attempt_base` (the attempts made before the event's
/// last replay). `jitter` in `[0, 1]` picks where in the backoff's random half the retry lands
/// (callers pass a random number; tests pass the ends).
pub fn decide(
    outcome: &AttemptOutcome,
    attempt: u32,
    attempt_base: u32,
    policy: &RetryPolicy,
    now_ms: u64,
    jitter: f64,
) -> Decision {
    let delay_ms = match outcome {
        AttemptOutcome::Done => return Decision::Done,
        AttemptOutcome::Skipped { .. } => return Decision::Skipped,
        // The plugin's own delay, within the policy's longest.
        AttemptOutcome::RetryAfter { seconds } => (u64::from(*seconds) * 1000).min(policy.cap_ms),
        AttemptOutcome::Error { .. } => backoff_ms(policy, attempt, jitter),
    };
    if attempt.saturating_sub(attempt_base) >= policy.max_attempts {
        return Decision::Dead;
    }
    Decision::RetryAt(now_ms + delay_ms)
}

/// The delay before retry number `attempt` (1 = the first retry): exponential from the policy's
/// base, capped, with "equal jitter" (half fixed, half chosen by `jitter` in `[0, 1]`) so that
/// retries of many events spread out.
pub fn backoff_ms(policy: &RetryPolicy, attempt: u32, jitter: f64) -> u64 {
    let exp = policy
        .base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
    let delay = exp.min(policy.cap_ms).max(1);
    delay / 2 + ((delay / 2) as f64 * jitter.clamp(0.0, 1.0)).round() as u64
}

/// A uniformly random jitter for [`decide`] and [`backoff_ms`].
pub fn random_jitter() -> f64 {
    use rand::Rng as _;
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_ms: 1000,
            cap_ms: 8000,
        }
    }

    fn error() -> AttemptOutcome {
        AttemptOutcome::Error {
            message: "boom".into(),
        }
    }

    #[test]
    fn done_and_skipped_finish_whatever_the_budget() {
        for attempt in [1, 3, 99] {
            assert_eq!(
                decide(&AttemptOutcome::Done, attempt, 0, &policy(), NOW, 0.5),
                Decision::Done
            );
            let skipped = AttemptOutcome::Skipped {
                reason: "not ours".into(),
            };
            assert_eq!(
                decide(&skipped, attempt, 0, &policy(), NOW, 0.5),
                Decision::Skipped
            );
        }
    }

    #[test]
    fn errors_back_off_until_the_budget_is_spent() {
        // Attempt 1 fails: retry after 0.5-1 s; attempt 2: 1-2 s; attempt 3 is the last.
        assert_eq!(
            decide(&error(), 1, 0, &policy(), NOW, 0.0),
            Decision::RetryAt(NOW + 500)
        );
        assert_eq!(
            decide(&error(), 1, 0, &policy(), NOW, 1.0),
            Decision::RetryAt(NOW + 1000)
        );
        assert_eq!(
            decide(&error(), 2, 0, &policy(), NOW, 1.0),
            Decision::RetryAt(NOW + 2000)
        );
        assert_eq!(decide(&error(), 3, 0, &policy(), NOW, 0.5), Decision::Dead);
    }

    #[test]
    fn a_replay_gives_a_fresh_budget() {
        // Died at attempt 3; replayed (base 3): attempts 4 and 5 retry, 6 is the last.
        assert!(matches!(
            decide(&error(), 4, 3, &policy(), NOW, 0.5),
            Decision::RetryAt(_)
        ));
        assert!(matches!(
            decide(&error(), 5, 3, &policy(), NOW, 0.5),
            Decision::RetryAt(_)
        ));
        assert_eq!(decide(&error(), 6, 3, &policy(), NOW, 0.5), Decision::Dead);
    }

    #[test]
    fn retry_after_uses_the_plugins_delay_within_the_cap_and_the_budget() {
        let after = |seconds| AttemptOutcome::RetryAfter { seconds };
        assert_eq!(
            decide(&after(2), 1, 0, &policy(), NOW, 0.0),
            Decision::RetryAt(NOW + 2000)
        );
        assert_eq!(
            decide(&after(3600), 1, 0, &policy(), NOW, 0.0),
            Decision::RetryAt(NOW + 8000),
            "capped at the policy's longest delay"
        );
        assert_eq!(decide(&after(1), 3, 0, &policy(), NOW, 0.0), Decision::Dead);
    }

    #[test]
    fn the_next_state_is_what_the_journal_records() {
        assert_eq!(Decision::Done.next_state(), (EventState::Done, 0));
        assert_eq!(Decision::Skipped.next_state(), (EventState::Skipped, 0));
        assert_eq!(Decision::Dead.next_state(), (EventState::Dead, 0));
        assert_eq!(
            Decision::RetryAt(42).next_state(),
            (EventState::Pending, 42)
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_ms: 1000,
            cap_ms: 8000,
        };
        assert_eq!(backoff_ms(&policy, 1, 0.0), 500);
        assert_eq!(backoff_ms(&policy, 1, 1.0), 1000);
        assert_eq!(backoff_ms(&policy, 3, 0.0), 2000);
        assert_eq!(backoff_ms(&policy, 3, 1.0), 4000);
        assert_eq!(backoff_ms(&policy, 30, 1.0), 8000, "capped");
        assert_eq!(backoff_ms(&policy, 30, 0.0), 4000);
        assert_eq!(backoff_ms(&policy, u32::MAX, 1.0), 8000, "no overflow");
        for _ in 0..100 {
            let random = backoff_ms(&policy, 5, random_jitter());
            assert!((4000..=8000).contains(&random), "{random}");
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|_| backoff_ms(&policy, 5, random_jitter()))
            .collect();
        assert!(spread.len() > 5, "no jitter: {spread:?}");
    }
}
