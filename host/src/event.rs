//! The normalized event: the one shape every provider's webhook becomes. It mirrors the WIT
//! `event` record (without the per-delivery fields), is stored as JSON in the journal and is what
//! the admin API shows.

use serde::{Deserialize, Serialize};

/// What kind of thing happened at the provider (WIT `event-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An order moved to another status.
    OrderStatusChanged,
    /// An order's details changed but not its status.
    OrderUpdated,
    /// A payment for an order.
    Payment,
    /// A payout to a beneficiary.
    Payout,
    /// A money transaction.
    Transaction,
    /// Anything else.
    Other,
}

/// Provider-independent status (WIT `canonical-status`). Unknown provider statuses are `Unknown`,
/// never an error: providers add statuses over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanonicalStatus {
    /// Created or waiting.
    Pending,
    /// Under way.
    Processing,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Money went back.
    Refunded,
    /// Not a status hookhost knows; see the raw status.
    Unknown,
}

/// An exact amount: the provider's decimal text, never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Decimal number as text.
    pub amount: String,
    /// ISO 4217 code, when sent.
    pub currency: Option<String>,
}

/// A webhook after authentication and normalization, before delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// The dedupe key, unique per tenant and source.
    pub id: String,
    /// The provider's name.
    pub provider: String,
    /// What happened.
    pub kind: EventKind,
    /// The order's id at the provider.
    pub order_id: Option<String>,
    /// The merchant's own order reference.
    pub merchant_ref: Option<String>,
    /// Canonical status.
    pub status: CanonicalStatus,
    /// The provider's status, verbatim.
    pub raw_status: Option<String>,
    /// The provider's sub-status, verbatim.
    pub raw_sub_status: Option<String>,
    /// The provider's reason, verbatim.
    pub reason: Option<String>,
    /// The amount, when sent.
    pub amount: Option<Money>,
    /// When it happened at the provider (ms since the epoch), when sent.
    pub occurred_at_ms: Option<u64>,
}

#[cfg(test)]
impl NormalizedEvent {
    /// A Fincart status change with id `id` for unit tests, of `order` when given.
    pub fn sample(id: &str, order: Option<&str>) -> NormalizedEvent {
        NormalizedEvent {
            id: id.into(),
            provider: "fincart".into(),
            kind: EventKind::OrderStatusChanged,
            order_id: order.map(Into::into),
            merchant_ref: None,
            status: CanonicalStatus::Pending,
            raw_status: None,
            raw_sub_status: None,
            reason: None,
            amount: None,
            occurred_at_ms: None,
        }
    }
}

impl NormalizedEvent {
    /// The delivery key: events with the same key (per tenant) reach the plugin one at a time, in
    /// the order they were received. The provider's order id when there is one, so that an order's
    /// status changes are never handled out of order; else the merchant's reference; otherwise the
    /// event is its own key. Not the SDKs' `order_key` (the order as the merchant names it, which
    /// prefers the merchant's reference): the WIT's `order-id` field says how the two relate.
    pub fn delivery_key(&self) -> String {
        match &self.order_id {
            Some(order) => format!("order:{order}"),
            None => match &self.merchant_ref {
                Some(r) => format!("ref:{r}"),
                None => format!("event:{}", self.id),
            },
        }
    }
}
