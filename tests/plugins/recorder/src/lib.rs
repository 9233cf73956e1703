//! Test plugin: records every event it receives, field by field, under `seen/<source>/<id>`, so
//! end-to-end tests can check exactly what the host delivered. It also counts how many times each
//! event's handling was committed (`times/<source>/<id>`: kv writes commit only with a successful
//! attempt, so this must end at exactly 1), and, when `echo-url` is configured, POSTs the event id
//! there (a failed POST fails the attempt, so the event is retried). With `trace-url`, it POSTs
//! `start` when it begins and `end` before it returns (with the event id, order and attempt), so a
//! test can see which attempts overlapped.
use hookhost_guest::prelude::*;

struct Recorder;

impl Plugin for Recorder {
    fn handle(event: Event) -> Result<Outcome> {
        let trace = config::get("trace-url");
        let mark = |phase: &str| -> Result<()> {
            if let Some(url) = &trace {
                let mark = json!({ "phase": phase, "id": event.id, "order": event.order_id, "attempt": event.attempt });
                http::post_json(url, &mark)?.error_for_status()?;
            }
            Ok(())
        };
        mark("start")?;
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
        let times_key = format!("times/{}/{}", event.source, event.id);
        let times: u64 = kv::get_json(&times_key)?.unwrap_or(0);
        kv::set_json(&times_key, &(times + 1))?;
        if let Some(url) = config::get("echo-url") {
            http::post_json(&url, &json!({ "id": event.id, "attempt": event.attempt }))?
                .error_for_status()?;
        }
        mark("end")?;
        info!("recorded {key}");
        Ok(Outcome::Done)
    }
}

export_plugin!(Recorder);
