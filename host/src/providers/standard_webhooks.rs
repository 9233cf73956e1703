//! Standard Webhooks senders (`webhook-id`, `webhook-timestamp`, `webhook-signature`, verified in
//! [`super::auth`]): the generic normalizer ([`super::generic`]) with the spec's payload shape as
//! its default mapping.

use crate::config::MappingConfig;

/// The default mapping of a Standard Webhooks source: id from `webhook-id`, status from `type`,
/// time from `timestamp` (the spec's recommended payload shape).
pub fn default_mapping(mapping: Option<MappingConfig>) -> MappingConfig {
    let mut m = mapping.unwrap_or_default();
    if m.id.is_none() && m.id_header.is_none() {
        m.id_header = Some("webhook-id".into());
    }
    if m.status.is_none() {
        m.status = Some("type".into());
    }
    if m.occurred_at.is_none() {
        m.occurred_at = Some("timestamp".into());
    }
    m
}
