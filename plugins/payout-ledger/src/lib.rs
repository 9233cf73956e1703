//! payout-ledger: keeps a ledger of payouts and transactions (Juspay payouts, FinchPay
//! transactions): one entry per payout with its amount and full status history. Alerts the
//! merchant (POST to `alert-url`) once per payout and status when a payout is reversed,
//! conflicted or errored, the statuses that need a human.
use hookhost_guest::prelude::*;

struct PayoutLedger;

/// Raw statuses that need a human: money moved differently from what the merchant was told.
const ALERT_ON: &[&str] = &[
    "REVERSED",
    "CONFLICTED",
    "ERROR",
    "FAILURE",
    "FULFILLMENTS_FAILURE",
];

impl Plugin for PayoutLedger {
    fn handle(event: Event) -> Result<Outcome> {
        let payout = event.order_key().unwrap_or(&event.id).to_string();
        let key = format!("ledger/{payout}");
        let mut entry: Entry = kv::get_json(&key)?.unwrap_or_default();
        if entry.history.iter().any(|h| h.event_id == event.id) {
            return Ok(Outcome::Skipped(format!(
                "event {} already in the ledger",
                event.id
            )));
        }
        let raw = event.raw_status.clone().unwrap_or_default();
        if let Some(money) = &event.amount {
            entry.amount = Some(money.amount.clone());
            entry.currency = money.currency.clone().or(entry.currency);
        }
        entry.status = event.status.to_string();
        entry.history.push(Step {
            raw_status: raw.clone(),
            status: entry.status.clone(),
            event_id: event.id.clone(),
            at_ms: event.occurred_at_ms.unwrap_or(event.received_at_ms),
        });
        kv::set_json(&key, &entry)?;
        if ALERT_ON.iter().any(|s| raw.eq_ignore_ascii_case(s))
            && kv::set_if_absent(&format!("alerted/{payout}/{raw}"), b"1")?
        {
            let url = config::require("alert-url")?;
            http::post_json(
                &url,
                &json!({ "payout": payout, "status": raw, "amount": entry.amount,
                "currency": entry.currency, "eventId": event.id }),
            )?
            .error_for_status()?;
            warn!("payout {payout} is {raw}: merchant alerted");
        }
        Ok(Outcome::Done)
    }
}

/// One payout in the ledger, under `ledger/<payout>`.
#[derive(Default, Serialize, Deserialize)]
struct Entry {
    amount: Option<String>,
    currency: Option<String>,
    status: String,
    history: Vec<Step>,
}

#[derive(Serialize, Deserialize)]
struct Step {
    raw_status: String,
    status: String,
    event_id: String,
    at_ms: u64,
}

export_plugin!(PayoutLedger);
