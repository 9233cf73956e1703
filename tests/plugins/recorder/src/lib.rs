//! Test plugin: records every event it receives, field by field, under `seen/<source>/<id>`, so
//! end-to-end tests can check exactly what the host delivered. Returns `done`.
use hookhost_guest::prelude::*;

struct Recorder;

impl Plugin for Recorder {
    fn handle(event: Event) -> Result<Outcome> {
        let record = json!({
            "id": event.id, "tenant": event.tenant, "source": event.source, "provider": event.provider,
            "kind": event.kind.to_string(), "order_id": event.order_id, "merchant_ref": event.merchant_ref,
            "status": event.status.to_string(), "raw_status": event.raw_status, "raw_sub_status": event.raw_sub_status,
            "reason": event.reason, "amount": event.amount.as_ref().map(|m| json!({"amount": m.amount, "currency": m.currency})),
            "occurred_at_ms": event.occurred_at_ms, "received_at_ms": event.received_at_ms,
            "attempt": event.attempt, "payload": event.payload,
        });
        let key = format!("seen/{}/{}", event.source, event.id);
        kv::set_json(&key, &record)?;
        let count: u64 = kv::get_json("count")?.unwrap_or(0);
        kv::set_json("count", &(count + 1))?;
        info!("recorded {key}");
        Ok(Outcome::Done)
    }
}

export_plugin!(Recorder);
