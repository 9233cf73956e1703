//! A tenant's plugin deploys as the store records them: every upload (accepted or refused) and
//! every rollback is a numbered entry of the tenant's history, and the newest entry that
//! activated a component says which one serves.

use serde::Serialize;

/// What a history entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployKind {
    /// An uploaded component passed its checks, was stored and made active.
    Deploy,
    /// An uploaded component passed its checks and was stored, not made active (to shadow the
    /// active one, then be promoted or discarded).
    Staged,
    /// An earlier entry's component was made active again.
    Rollback,
    /// A staged entry's component was made active (after shadowing).
    Promote,
    /// An uploaded component failed its checks: recorded, not stored, nothing changed.
    Refused,
}

impl DeployKind {
    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Deploy => "deploy",
            DeployKind::Staged => "staged",
            DeployKind::Rollback => "rollback",
            DeployKind::Promote => "promote",
            DeployKind::Refused => "refused",
        }
    }

    /// The kind a stored name says (unknown names read as refused: they activated nothing
    /// this binary knows of).
    pub fn parse(text: &str) -> DeployKind {
        match text {
            "deploy" => DeployKind::Deploy,
            "staged" => DeployKind::Staged,
            "rollback" => DeployKind::Rollback,
            "promote" => DeployKind::Promote,
            _ => DeployKind::Refused,
        }
    }

    /// Whether an entry of this kind made its component the active one.
    pub fn activates(self) -> bool {
        matches!(
            self,
            DeployKind::Deploy | DeployKind::Rollback | DeployKind::Promote
        )
    }

    /// Whether an entry of this kind stored a component (one a rollback or promotion can
    /// activate).
    pub fn has_component(self) -> bool {
        self != DeployKind::Refused
    }
}

/// One entry of a tenant's deploy history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployRecord {
    /// The tenant.
    pub tenant: String,
    /// Its number in the tenant's history, from 1: the version name people use (`v3`).
    pub number: u32,
    /// What it did.
    pub kind: DeployKind,
    /// The component's SHA-256 (hex); attempts record its first 16 digits as `plugin_version`.
    pub digest: String,
    /// The component's size in bytes.
    pub size: u64,
    /// Who did it: `operator`, or `token <id> (<name>)`.
    pub by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// For a rollback or promotion, the entry whose component it made active.
    pub reactivates: Option<u32>,
    /// For a refused upload, why.
    pub message: Option<String>,
}

/// A deploy to record.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    /// The tenant.
    pub tenant: String,
    /// Who: see [`DeployRecord::by`].
    pub by: String,
    /// What.
    pub action: DeployAction,
}

/// What a [`NewDeploy`] does.
#[derive(Debug, Clone)]
pub enum DeployAction {
    /// Store this component (checked by the caller) and make it active.
    Activate(Vec<u8>),
    /// Store this component (checked by the caller), not active.
    Stage(Vec<u8>),
    /// Make entry `to`'s component active again (checked by the caller).
    Rollback {
        /// The entry.
        to: u32,
    },
    /// Make staged entry `to`'s component active (checked by the caller).
    Promote {
        /// The entry.
        to: u32,
    },
    /// Record an upload that failed its checks.
    Refused {
        /// Its SHA-256 (hex).
        digest: String,
        /// Its size.
        size: u64,
        /// Why.
        reason: String,
    },
}

impl DeployAction {
    /// The kind of entry it records.
    pub fn kind(&self) -> DeployKind {
        match self {
            DeployAction::Activate(_) => DeployKind::Deploy,
            DeployAction::Stage(_) => DeployKind::Staged,
            DeployAction::Rollback { .. } => DeployKind::Rollback,
            DeployAction::Promote { .. } => DeployKind::Promote,
            DeployAction::Refused { .. } => DeployKind::Refused,
        }
    }

    /// The component it stores, if it uploads one.
    pub fn component(&self) -> Option<&[u8]> {
        match self {
            DeployAction::Activate(component) | DeployAction::Stage(component) => Some(component),
            _ => None,
        }
    }

    /// The earlier entry whose component it makes active, if any.
    pub fn target(&self) -> Option<u32> {
        match self {
            DeployAction::Rollback { to } | DeployAction::Promote { to } => Some(*to),
            _ => None,
        }
    }

    /// Why an upload was refused.
    pub fn reason(&self) -> Option<String> {
        match self {
            DeployAction::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }
}

/// What recording a deploy came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    /// Recorded (and, unless refused, active).
    Recorded(DeployRecord),
    /// A rollback or promotion named an entry that does not exist or has no component.
    NoSuchEntry,
}

/// A tenant's shadow: a deployed, not active, version run dry beside the active one on a share
/// of live events, until it is promoted or discarded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowSetting {
    /// The tenant.
    pub tenant: String,
    /// The history entry whose component shadows.
    pub number: u32,
    /// Its component's SHA-256 (hex).
    pub digest: String,
    /// The share of live attempts it runs beside, from 0 to 1.
    pub share: f64,
    /// When it started shadowing (ms since the epoch).
    pub since_ms: u64,
    /// Who started it.
    pub by: String,
}

/// One shadowed attempt: how the shadow's dry run compared with the active attempt.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ShadowRun {
    /// The tenant.
    pub tenant: String,
    /// The shadowing entry.
    pub number: u32,
    /// The event.
    pub seq: i64,
    /// The attempt it ran beside.
    pub attempt: u32,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// The active version.
    pub serving_version: String,
    /// The shadow's version.
    pub shadow_version: String,
    /// `same`, `differs`, `inconclusive` (the comparison's verdict).
    pub verdict: String,
    /// The comparison, as the API shows it (verdict, differences or reason).
    pub comparison: serde_json::Value,
    /// How long the active attempt took (µs).
    pub serving_us: u64,
    /// How long the shadow took (µs).
    pub shadow_us: u64,
}

/// What a tenant's shadow found so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    /// Shadowed attempts by verdict.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The newest ones that were not the same, newest first.
    pub differing: Vec<ShadowRun>,
}

/// The entry whose component serves now: the newest that activated one.
pub fn active_entry(newest_first: &[DeployRecord]) -> Option<&DeployRecord> {
    newest_first.iter().find(|d| d.kind.activates())
}

/// The entry a rollback without a target goes back to: the newest one before the active entry
/// that activated a different component.
pub fn previous_entry(newest_first: &[DeployRecord]) -> Option<&DeployRecord> {
    let active = active_entry(newest_first)?;
    newest_first
        .iter()
        .filter(|d| d.number < active.number && d.kind.activates())
        .find(|d| d.digest != active.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: u32, kind: DeployKind, digest: &str) -> DeployRecord {
        DeployRecord {
            tenant: "t".into(),
            number,
            kind,
            digest: digest.into(),
            size: 1,
            by: "operator".into(),
            at_ms: number as u64,
            reactivates: None,
            message: None,
        }
    }

    #[test]
    fn the_active_and_previous_entries() {
        use DeployKind::*;
        let history = vec![
            entry(5, Refused, "e"),
            entry(4, Rollback, "a"),
            entry(3, Deploy, "c"),
            entry(2, Deploy, "a"),
            entry(1, Deploy, "a0"),
        ];
        assert_eq!(active_entry(&history).unwrap().number, 4);
        // The entry before the active one with another component: v3 (c).
        assert_eq!(previous_entry(&history).unwrap().number, 3);
        let first_only = vec![entry(2, Refused, "x"), entry(1, Deploy, "a")];
        assert_eq!(active_entry(&first_only).unwrap().number, 1);
        assert_eq!(previous_entry(&first_only), None);
        assert_eq!(active_entry(&[]), None);
    }
}
