//! End-to-end tests: the real `hookhost` binary, real HTTP over loopback, a real SQLite file and
//! real components built from `plugins/` and `tests/plugins/`.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{
    accepted, fincart_status, misbehaving, plugin, replace_file, rss_mib, tenants, wait_for,
    Backend, Host, TenantToml, FINCART_AUTH as AUTH, FINCART_SAMPLE, FINCART_TOKEN as TOKEN, JSON,
};
use serde_json::Value;

fn order_sync_tenant(backend: &Backend) -> String {
    order_sync_tenant_with(backend, &plugin("order-sync"))
}

fn order_sync_tenant_with(backend: &Backend, plugin: &std::path::Path) -> String {
    TenantToml::new("acme", plugin)
        .allowed_hosts(&[&backend.addr])
        .config(
            "backend-url",
            &format!("http://{}/orders/notify", backend.addr),
        )
        .source(
            "fincart",
            &format!("provider = \"fincart\"\ntoken = [\"an-old-token\", \"{TOKEN}\"]"),
        )
        .toml()
}

#[tokio::test]
async fn fincart_webhook_reaches_the_plugin_and_the_merchant_backend() {
    order_sync_story(&plugin("order-sync")).await;
}

#[tokio::test]
async fn the_javascript_order_sync_behaves_like_the_rust_one() {
    order_sync_story(&common::script_plugin("js", "order-sync")).await;
}

#[tokio::test]
async fn the_python_order_sync_behaves_like_the_rust_one() {
    order_sync_story(&common::script_plugin("python", "order-sync")).await;
}

/// The order-sync story, the same for every language's order-sync plugin: same inputs, same kv
/// effects, same call to the merchant's backend.
async fn order_sync_story(plugin: &std::path::Path) {
    let backend = Backend::start().await;
    let host = Host::start(&order_sync_tenant_with(&backend, plugin)).await;

    // The document's sample (an "Order Updated" while out for delivery).
    let seq = accepted(
        host.send("acme", "fincart", &[JSON, AUTH], FINCART_SAMPLE)
            .await,
    )
    .await;
    let event = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "done", "{event}\n{}", host.logs());
    assert_eq!(event["event"]["kind"], "order-updated");
    assert_eq!(event["event"]["status"], "processing");
    let attempt = &event["attempts_detail"][0];
    assert_eq!(attempt["outcome"], "done");
    assert_eq!(attempt["plugin_version"].as_str().unwrap().len(), 16);
    let kv = host.kv("acme").await;
    let order: Value = serde_json::from_str(&kv["order/#1123"]).unwrap();
    assert_eq!(order["status"], "processing");
    assert_eq!(order["sub_status"], "out for delivery");
    assert!(
        backend.received().is_empty(),
        "not delivered yet, nothing to tell the backend"
    );

    // Ready: the store commits and the tenant's plugin is loaded.
    let ready = reqwest::get(format!("{}/readyz", host.base)).await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    // Delivered: the plugin records it and tells the backend once.
    let delivered = fincart_status(
        "67387ce18aa2230090e0XXXX",
        "#1123",
        "successful",
        "delivered to customer",
        1738336900000,
    );
    let seq = accepted(
        host.send("acme", "fincart", &[JSON, AUTH], delivered.clone())
            .await,
    )
    .await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(30)).await["state"],
        "done"
    );
    let received = wait_for("the backend notice", Duration::from_secs(10), async || {
        let r = backend.received();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, "/orders/notify");
    assert_eq!(received[0].1["order"], "#1123");
    assert_eq!(received[0].1["status"], "succeeded");
    assert_eq!(received[0].1["subStatus"], "delivered to customer");
    let kv = host.kv("acme").await;
    assert_eq!(
        serde_json::from_str::<Value>(&kv["order/#1123"]).unwrap()["status"],
        "succeeded"
    );
    assert_eq!(kv["notified/#1123"], "1");

    // The same delivery again (providers retry): acknowledged as a duplicate, not dispatched.
    let again = host.send("acme", "fincart", &[JSON, AUTH], delivered).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["hookhost-duplicate"], "true");
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["event"].as_i64()),
        (Some("duplicate"), Some(seq))
    );
    let events = host.events("acme").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["duplicates"], 1);
    assert_eq!(events[0]["attempts"], 1);
    assert_eq!(backend.received().len(), 1);

    // The same story in /metrics (parsed as Prometheus text).
    let acme = [("tenant", "acme"), ("source", "fincart")];
    assert_eq!(
        host.metric("hookhost_webhooks_received_total", &acme).await,
        3.0
    );
    assert_eq!(
        host.metric("hookhost_webhooks_accepted_total", &acme).await,
        2.0
    );
    assert_eq!(
        host.metric("hookhost_webhooks_duplicate_total", &acme)
            .await,
        1.0
    );
    assert_eq!(
        host.metric(
            "hookhost_attempts_total",
            &[("tenant", "acme"), ("outcome", "done")]
        )
        .await,
        2.0
    );
    assert_eq!(
        host.metric("hookhost_plugin_loads_total", &[("result", "loaded")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_are_never_dispatched() {
    let backend = Backend::start().await;
    let host = Host::start(&order_sync_tenant(&backend)).await;
    let error_of = async |r: reqwest::Response| -> (u16, String) {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (status, body["error"].as_str().unwrap_or("").to_string())
    };
    let sample = FINCART_SAMPLE;

    let (status, message) = error_of(
        host.send(
            "acme",
            "fincart",
            &[JSON, ("authorization", "wrong")],
            sample,
        )
        .await,
    )
    .await;
    assert_eq!((status, message.as_str()), (401, "unauthorized"));
    let (status, _) = error_of(host.send("acme", "fincart", &[JSON], sample).await).await;
    assert_eq!(status, 401);
    // One answer for an unknown tenant and an unknown source: callers cannot enumerate tenants.
    let (status, message) =
        error_of(host.send("nobody", "fincart", &[JSON, AUTH], sample).await).await;
    assert_eq!(
        (status, message.as_str()),
        (404, "no such webhook endpoint")
    );
    let (status, message) =
        error_of(host.send("acme", "shopify", &[JSON, AUTH], sample).await).await;
    assert_eq!(
        (status, message.as_str()),
        (404, "no such webhook endpoint")
    );
    let (status, message) = error_of(
        host.send(
            "acme",
            "fincart",
            &[("content-type", "application/x-www-form-urlencoded"), AUTH],
            "a=b",
        )
        .await,
    )
    .await;
    assert_eq!(status, 415);
    assert!(message.contains("application/json"), "{message}");
    let (status, message) = error_of(
        host.send(
            "acme",
            "fincart",
            &[JSON, AUTH],
            "{\"orderId\": \"x\",\n \"status\": }",
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(message.contains("line 2"), "{message}");
    let (status, message) = error_of(
        host.send("acme", "fincart", &[JSON, AUTH], r#"{"status":"pending"}"#)
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(message.contains("orderId"), "{message}");
    let (status, message) =
        error_of(host.send("acme", "fincart", &[JSON, AUTH], "[1,2]").await).await;
    assert_eq!(status, 422);
    assert!(message.contains("object"), "{message}");
    let huge = format!(
        r#"{{"orderId":"x","status":"pending","pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let (status, message) = error_of(host.send("acme", "fincart", &[JSON, AUTH], huge).await).await;
    assert_eq!(status, 413);
    assert!(message.contains("limit"), "{message}");

    assert!(
        host.events("acme").await.is_empty(),
        "a rejected webhook was journaled"
    );
    let rejected = async |tenant: &str, source: &str, reason: &str| {
        host.metric(
            "hookhost_webhooks_rejected_total",
            &[("tenant", tenant), ("source", source), ("reason", reason)],
        )
        .await
    };
    assert_eq!(rejected("acme", "fincart", "unauthorized").await, 2.0);
    assert_eq!(
        rejected("_unknown", "_unknown", "unknown_tenant").await,
        1.0,
        "the caller's tenant name is not a label"
    );
    assert_eq!(rejected("acme", "_unknown", "unknown_source").await, 1.0);
    assert_eq!(rejected("acme", "fincart", "content_type").await, 1.0);
    assert_eq!(rejected("acme", "fincart", "malformed").await, 1.0);
    assert_eq!(rejected("acme", "fincart", "invalid").await, 2.0);
    assert_eq!(rejected("acme", "fincart", "too_large").await, 1.0);
    assert!(
        !host.logs().contains(TOKEN),
        "the source's token appeared in the log"
    );

    // The admin API wants its token.
    let anonymous = reqwest::get(format!("{}/admin/tenants/acme/events", host.base))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Unknown fields and an unknown status pass through as `unknown`.
    let odd = r#"{"orderId":"o-9","status":"lost in space","subStatus":"???","statusUpdatedDate":"1738336796675","brandNewField":{"x":1}}"#;
    let seq = accepted(host.send("acme", "fincart", &[JSON, AUTH], odd).await).await;
    let event = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "done", "{event}");
    assert_eq!(event["event"]["status"], "unknown");
    assert_eq!(event["event"]["raw_status"], "lost in space");
    assert!(
        event["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h[0] != "authorization"),
        "credentials stored"
    );
}

/// The misbehaving plugin as tenant `rogue`: 32 MiB of memory, `max_attempts` fast retries, and
/// a time limit far above what any of its modes but the endless loop needs, so that on a loaded
/// machine a slow case still ends at its own limit (the loop case has a tenant of its own).
fn misbehave_tenant(max_attempts: u32) -> String {
    misbehave_tenant_named("rogue", max_attempts)
        .limit("timeout_ms", 30_000)
        .toml()
}

fn misbehave_tenant_named(name: &str, max_attempts: u32) -> TenantToml {
    TenantToml::new(name, &plugin("misbehave"))
        .limit("memory_mib", 32)
        .fast_retries(max_attempts)
        .fincart("fc")
}

#[tokio::test]
async fn misbehaving_plugins_are_contained_and_the_host_keeps_serving() {
    // The endless loop in a tenant of its own with a short time limit; every other case in one
    // whose time limit it cannot reach first.
    let looping = misbehave_tenant_named("looper", 2).limit("timeout_ms", 500);
    let host = Host::start(&format!("{}\n{looping}", misbehave_tenant(2))).await;
    let cases = [
        ("rogue", "trap", "panic"),
        ("looper", "loop", "time limit of 500 ms"),
        ("rogue", "alloc", "memory limit"),
        ("rogue", "recurse", "stack"),
        ("rogue", "error", "deliberate error"),
        ("rogue", "retry", "retry after 1 s"),
        ("rogue", "huge", "more bytes cut"),
    ];
    let mut seqs = Vec::new();
    for (tenant, mode, _) in &cases {
        seqs.push(
            accepted(
                host.send(
                    tenant,
                    "fc",
                    &[JSON, AUTH],
                    misbehaving(&format!("o-{mode}"), mode),
                )
                .await,
            )
            .await,
        );
    }
    let ok = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-fine", "none"))
            .await,
    )
    .await;
    for ((_, mode, expected), seq) in cases.iter().zip(&seqs) {
        let event = host.wait_finished(*seq, Duration::from_secs(60)).await;
        assert_eq!(event["state"], "dead", "{mode}: {event}");
        let attempts = event["attempts_detail"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{mode}: retried per policy: {event}");
        let error = event["last_error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{mode}: {error:?} should mention {expected:?}"
        );
        assert_eq!(attempts[1]["attempt"], 2);
    }
    // A panic's message reaches the attempt's logs.
    let trap = host.event(seqs[0]).await;
    let logs = trap["attempts_detail"][0]["logs"].to_string();
    assert!(logs.contains("misbehave: deliberate panic"), "{logs}");
    assert_eq!(
        host.wait_finished(ok, Duration::from_secs(30)).await["state"],
        "done"
    );
    let kv = host.kv("rogue").await;
    assert_eq!(kv.get("ok").map(String::as_str), Some("1"));
    // Failed attempts leave no kv writes behind (each wrote `touched/<id>` before misbehaving).
    assert_eq!(
        kv.keys().filter(|k| k.starts_with("touched/")).count(),
        1,
        "{kv:?}"
    );
    let health = reqwest::get(format!("{}/healthz", host.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_retried_attempt_starts_from_clean_kv_and_wasi_grants_nothing() {
    let host = Host::start(&misbehave_tenant(3)).await;
    let retried = accepted(
        host.send(
            "rogue",
            "fc",
            &[JSON, AUTH],
            misbehaving("o-1", "fail-then-ok"),
        )
        .await,
    )
    .await;
    let env = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-2", "env"))
            .await,
    )
    .await;
    let file = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-3", "file"))
            .await,
    )
    .await;

    let event = host.wait_finished(retried, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "done", "{event}");
    let attempts = event["attempts_detail"].as_array().unwrap();
    assert_eq!(
        (
            attempts[0]["outcome"].as_str(),
            attempts[1]["outcome"].as_str()
        ),
        (Some("error"), Some("done"))
    );
    assert!(
        !host.kv("rogue").await.contains_key("fail-then-ok/leaked"),
        "a failed attempt's kv write survived"
    );

    let env = host.wait_finished(env, Duration::from_secs(30)).await;
    assert_eq!(
        env["attempts_detail"][0]["reason"], "env vars visible: 0",
        "{env}"
    );
    let file = host.wait_finished(file, Duration::from_secs(30)).await;
    assert_eq!(file["state"], "skipped", "{file}");
    assert!(
        file["attempts_detail"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("file access refused"),
        "{file}"
    );

    // Clocks: the wall clock reads the event's received time (the contract's time); the
    // monotonic clock only counts the attempt's own whole milliseconds.
    let clock = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-4", "clock"))
            .await,
    )
    .await;
    let clock = host.wait_finished(clock, Duration::from_secs(30)).await;
    let reason = clock["attempts_detail"][0]["reason"].as_str().unwrap();
    let wall = format!("wall {} ms, ", clock["received_at_ms"].as_u64().unwrap());
    assert!(
        reason.starts_with(&wall),
        "{reason} should start with {wall}"
    );
    let advanced: u64 = reason
        .rsplit("advanced ")
        .next()
        .and_then(|r| r.trim_end_matches(" ns").parse().ok())
        .unwrap();
    assert_eq!(advanced % 1_000_000, 0, "whole milliseconds only: {reason}");

    // A huge successful answer is cut to the bound, and says so.
    let huge = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-5", "hugeskip"))
            .await,
    )
    .await;
    let huge = host.wait_finished(huge, Duration::from_secs(30)).await;
    assert_eq!(huge["state"], "skipped");
    let reason = huge["attempts_detail"][0]["reason"].as_str().unwrap();
    assert!(reason.len() < 5_000, "{} bytes kept", reason.len());
    assert!(
        reason.contains("more bytes cut"),
        "{}",
        &reason[reason.len() - 80..]
    );
}

#[tokio::test]
async fn events_of_one_order_run_in_order_and_survive_a_restart() {
    let backend = Backend::start().await;
    let tenants = order_sync_tenant(&backend);
    let host = Host::start(&tenants).await;
    // The backend is down: the delivered notice fails and is retried; meanwhile nothing is lost.
    backend.set_status(503);
    let mut seqs = Vec::new();
    for (i, (status, sub)) in [
        ("pending", "new"),
        ("processing", "picked up"),
        ("successful", "delivered to customer"),
    ]
    .iter()
    .enumerate()
    {
        let body = fincart_status("ord-7", "#7", status, sub, 1_000 + i as u64);
        seqs.push(accepted(host.send("acme", "fincart", &[JSON, AUTH], body).await).await);
    }
    wait_for(
        "a failed notice attempt",
        Duration::from_secs(60),
        async || {
            let e = host.event(seqs[2]).await;
            (e["attempts"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;
    let dir = host.kill();
    backend.set_status(200);
    let host = Host::start_in(dir, &tenants).await;
    for seq in &seqs {
        let event = host.wait_finished(*seq, Duration::from_secs(60)).await;
        assert_eq!(event["state"], "done", "{event}\n{}", host.logs());
    }
    // Ordered: each attempt of a later event started after the earlier event finished.
    let first_done = host.event(seqs[0]).await["finished_at_ms"]
        .as_u64()
        .unwrap();
    let second = host.event(seqs[1]).await;
    assert!(
        second["attempts_detail"][0]["started_at_ms"]
            .as_u64()
            .unwrap()
            >= first_done
    );
    let kv = host.kv("acme").await;
    assert_eq!(
        serde_json::from_str::<Value>(&kv["order/#7"]).unwrap()["status"],
        "succeeded"
    );
    let notices = wait_for(
        "the notice after restart",
        Duration::from_secs(30),
        async || {
            let r: Vec<_> = backend
                .received()
                .into_iter()
                .filter(|(_, b)| b["order"] == "#7")
                .collect();
            (r.len() >= 2).then_some(r)
        },
    )
    .await;
    // Attempts reached the backend (503 before the kill, 200 after the restart); the notice was
    // committed once, with the successful attempt.
    let attempts = host.event(seqs[2]).await["attempts"].as_u64().unwrap() as usize;
    assert!(
        notices.len() >= attempts && attempts >= 2,
        "{notices:?} vs {attempts} attempts"
    );
    assert_eq!(kv["notified/#7"], "1");
}

#[tokio::test]
async fn payment_gate_releases_an_order_only_when_paid() {
    payment_gate_story(&plugin("payment-gate")).await;
}

#[tokio::test]
async fn the_javascript_payment_gate_behaves_like_the_rust_one() {
    payment_gate_story(&common::script_plugin("js", "payment-gate")).await;
}

#[tokio::test]
async fn the_python_payment_gate_behaves_like_the_rust_one() {
    payment_gate_story(&common::script_plugin("python", "payment-gate")).await;
}

/// The payment-gate story, the same for every language: held while pending, released once when
/// paid (kv + one backend call), the amount kept as written, a non-payment event skipped.
async fn payment_gate_story(plugin: &std::path::Path) {
    let backend = Backend::start().await;
    let tenants = TenantToml::new("bazaar", plugin)
        .allowed_hosts(&[&backend.addr])
        .config(
            "backend-url",
            &format!("http://{}/orders/release", backend.addr),
        )
        .source("sevi", &format!("provider = \"sevi\"\ntoken = \"{TOKEN}\""))
        .toml();
    let host = Host::start(&tenants).await;
    // Literal JSON text: the amount must arrive as written (99.90, not the float 99.9).
    let payment = |status: &str, at: &str| {
        format!(
            r##"{{"order": {{"id": "S-100", "platformReference": "#100", "paymentStatus": "{status}", "totalAmount": 99.90,
            "currency": "EGP", "updatedAt": "{at}"}}, "customer": {{"name": "Mona"}}}}"##
        )
    };
    let pending = accepted(
        host.send(
            "bazaar",
            "sevi",
            &[JSON, AUTH],
            payment("PENDING", "2025-01-01T10:00:00Z"),
        )
        .await,
    )
    .await;
    let held = host.wait_finished(pending, Duration::from_secs(60)).await;
    assert_eq!(held["state"], "done", "{held}");
    let logs = held["attempts_detail"][0]["logs"].to_string();
    assert!(
        logs.contains("order #100: payment is PENDING, order stays held"),
        "{logs}"
    );
    let kv = host.kv("bazaar").await;
    assert!(
        !kv.contains_key("order/#100"),
        "released before payment: {kv:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&kv["payment/#100"]).unwrap()["status"],
        "PENDING"
    );

    let paid = accepted(
        host.send(
            "bazaar",
            "sevi",
            &[JSON, AUTH],
            payment("PAID", "2025-01-01T10:05:00Z"),
        )
        .await,
    )
    .await;
    assert_eq!(
        host.wait_finished(paid, Duration::from_secs(30)).await["state"],
        "done"
    );
    let kv = host.kv("bazaar").await;
    assert_eq!(kv["order/#100"], r#"{"state":"delivered"}"#);
    assert_eq!(
        serde_json::from_str::<Value>(&kv["payment/#100"]).unwrap()["amount"],
        "99.90"
    );
    let released = backend.received();
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(
        (
            released[0].1["order"].as_str(),
            released[0].1["state"].as_str()
        ),
        (Some("#100"), Some("delivered"))
    );

    // A later PAID notification (a provider's re-send with a new time) does not release it twice.
    let again = accepted(
        host.send(
            "bazaar",
            "sevi",
            &[JSON, AUTH],
            payment("PAID", "2025-01-01T10:06:00Z"),
        )
        .await,
    )
    .await;
    assert_eq!(
        host.wait_finished(again, Duration::from_secs(30)).await["state"],
        "done"
    );
    assert_eq!(backend.received().len(), 1);
}

#[tokio::test]
async fn payout_ledger_keeps_history_and_alerts_on_reversal() {
    payout_ledger_story(&plugin("payout-ledger")).await;
}

#[tokio::test]
async fn the_javascript_payout_ledger_behaves_like_the_rust_one() {
    payout_ledger_story(&common::script_plugin("js", "payout-ledger")).await;
}

#[tokio::test]
async fn the_python_payout_ledger_behaves_like_the_rust_one() {
    payout_ledger_story(&common::script_plugin("python", "payout-ledger")).await;
}

/// The payout-ledger story, the same for every language: history in received order, canonical
/// status and exact amount, one alert on reversal, a repeated event id skipped.
async fn payout_ledger_story(plugin: &std::path::Path) {
    let backend = Backend::start().await;
    let tenants = TenantToml::new("payer", plugin)
        .allowed_hosts(&[&backend.addr])
        .config("alert-url", &format!("http://{}/alerts", backend.addr))
        .source(
            "juspay",
            &format!("provider = \"juspay\"\nusername = \"payer\"\npassword = \"{TOKEN}\""),
        )
        .toml();
    let host = Host::start(&tenants).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("payer:{TOKEN}"))
    );
    let txn = |id: &str, value: &str| {
        format!(
            r#"{{"id": "{id}", "category": "INFO", "label": "FULFILLMENT_TXN", "value": "{value}",
            "info": {{"id": "ord1-f1-t1", "FulfillmentId": "ord1-f1", "status": "{value}", "amount": 2500.50, "currency": "INR",
                "updatedAt": "2024-06-01T10:00:00Z"}}}}"#
        )
    };
    let mut seqs = Vec::new();
    for (id, value) in [("w1", "INITIATED"), ("w2", "SUCCESS"), ("w3", "REVERSED")] {
        let r = host
            .send(
                "payer",
                "juspay",
                &[JSON, ("authorization", basic.as_str())],
                txn(id, value),
            )
            .await;
        seqs.push(accepted(r).await);
    }
    for seq in &seqs {
        assert_eq!(
            host.wait_finished(*seq, Duration::from_secs(60)).await["state"],
            "done"
        );
    }
    let kv = host.kv("payer").await;
    let entry: Value = serde_json::from_str(&kv["ledger/ord1"]).unwrap();
    let history: Vec<_> = entry["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["raw_status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["INITIATED", "SUCCESS", "REVERSED"],
        "received order kept: {entry}"
    );
    assert_eq!(
        (
            entry["status"].as_str(),
            entry["amount"].as_str(),
            entry["currency"].as_str()
        ),
        (Some("failed"), Some("2500.50"), Some("INR"))
    );
    let alerts = backend.received();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (
            alerts[0].1["payout"].as_str(),
            alerts[0].1["status"].as_str()
        ),
        (Some("ord1"), Some("REVERSED"))
    );
    assert_eq!(
        (
            alerts[0].1["amount"].as_str(),
            alerts[0].1["currency"].as_str()
        ),
        (Some("2500.50"), Some("INR"))
    );
    let reversal = host.wait_finished(seqs[2], Duration::from_secs(5)).await;
    let logs = reversal["attempts_detail"][0]["logs"].to_string();
    assert!(
        logs.contains("payout ord1 is REVERSED: merchant alerted"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_broken_or_missing_plugin_is_reported_and_its_events_wait() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0 this is not a component").unwrap();
    let tenants = tenants(&[
        TenantToml::new("broken", &garbage).fincart("fc"),
        TenantToml::new("absent", &dir.path().join("not-built-yet.wasm")).fincart("fc"),
    ]);
    let host = Host::start(&tenants).await;
    let status = wait_for(
        "both plugin loads to fail",
        Duration::from_secs(60),
        async || {
            let t = host.admin("/admin/tenants").await;
            let all = t["tenants"].as_array().unwrap().clone();
            all.iter()
                .all(|t| t["plugin"]["last_error"].is_string())
                .then_some(all)
        },
    )
    .await;
    let error_of = |name: &str| {
        status.iter().find(|t| t["name"] == name).unwrap()["plugin"]["last_error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        error_of("broken").contains("not a valid WebAssembly component"),
        "{}",
        error_of("broken")
    );
    assert!(
        error_of("absent").contains("cannot read plugin"),
        "{}",
        error_of("absent")
    );
    // Webhooks are still accepted and journaled; they wait for a working plugin.
    let seq = accepted(
        host.send(
            "broken",
            "fc",
            &[JSON, AUTH],
            fincart_status("w-1", "#W1", "pending", "new", 1),
        )
        .await,
    )
    .await;
    let event = host.event(seq).await;
    assert_eq!(
        (event["state"].as_str(), event["attempts"].as_u64()),
        (Some("pending"), Some(0)),
        "{event}"
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", host.base))
            .await
            .unwrap()
            .status(),
        200
    );
    let bare = reqwest::get(format!("{}/readyz", host.base)).await.unwrap();
    assert_eq!(bare.status(), 503, "alive but not ready");
    assert_eq!(
        bare.json::<Value>().await.unwrap(),
        serde_json::json!({ "ready": false }),
        "details only with the admin token"
    );
    let ready = reqwest::Client::new()
        .get(format!("{}/readyz", host.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "alive but not ready");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["tenants_without_plugin"],
        serde_json::json!(["absent", "broken"]),
        "{body}"
    );
    assert_eq!(body["store"], "ok");
}

/// Writes `bytes` as `path` the way editors and cargo do: a temporary file renamed into place.
#[tokio::test]
async fn plugins_are_hot_reloaded_and_a_broken_one_never_replaces_a_working_one() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_path = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &plugin_path).unwrap();
    let tenants = TenantToml::new("live", &plugin_path).fincart("fc").toml();
    let host = Host::start(&tenants).await;
    let status = async || host.admin("/admin/tenants").await["tenants"][0]["plugin"].clone();
    let first = wait_for("the first version", Duration::from_secs(60), async || {
        status().await["version"].as_str().map(str::to_string)
    })
    .await;
    let send = async |order: &str| {
        let body = serde_json::json!({ "orderId": order, "status": "pending", "statusUpdatedDate": 1, "misbehave": "none" }).to_string();
        accepted(host.send("live", "fc", &[JSON, AUTH], body).await).await
    };
    let seq = send("v1").await;
    let event = host.wait_finished(seq, Duration::from_secs(30)).await;
    assert_eq!(
        event["attempts_detail"][0]["plugin_version"],
        first.as_str()
    );

    // A new version, renamed into place: the next event runs it.
    replace_file(&plugin_path, &std::fs::read(plugin("misbehave")).unwrap());
    let second = wait_for("the second version", Duration::from_secs(60), async || {
        status().await["version"]
            .as_str()
            .filter(|v| *v != first)
            .map(str::to_string)
    })
    .await;
    let seq = send("v2").await;
    let event = host.wait_finished(seq, Duration::from_secs(30)).await;
    assert_eq!(
        event["attempts_detail"][0]["plugin_version"],
        second.as_str()
    );
    assert_eq!(
        host.kv("live").await.get("ok").map(String::as_str),
        Some("1"),
        "the misbehave plugin handled it"
    );

    // A broken write is rejected and the working version keeps serving.
    std::fs::write(&plugin_path, b"\0asm truncated").unwrap();
    let broken = wait_for("the failed reload", Duration::from_secs(60), async || {
        let s = status().await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    assert_eq!(broken["version"], second.as_str(), "{broken}");
    let seq = send("v2-still").await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(30)).await["attempts_detail"][0]
            ["plugin_version"],
        second.as_str()
    );

    // Removed: events wait (not failed); back: they run.
    std::fs::remove_file(&plugin_path).unwrap();
    wait_for("the unload", Duration::from_secs(30), async || {
        status().await["version"].is_null().then_some(())
    })
    .await;
    let waiting = send("while-removed").await;
    assert_eq!(host.event(waiting).await["attempts"], 0);
    replace_file(&plugin_path, &std::fs::read(plugin("recorder")).unwrap());
    let event = host.wait_finished(waiting, Duration::from_secs(60)).await;
    assert_eq!(
        (event["state"].as_str(), event["attempts"].as_u64()),
        (Some("done"), Some(1)),
        "{event}"
    );
    assert_eq!(
        event["attempts_detail"][0]["plugin_version"],
        first.as_str()
    );
    let history: Vec<String> = status().await["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        history.first().map(String::as_str),
        Some("loaded"),
        "{}",
        status().await["history"]
    );
    for expected in ["failed", "removed"] {
        assert!(history.iter().any(|h| h == expected), "{history:?}");
    }
    assert_eq!(
        history.last().map(String::as_str),
        Some("loaded"),
        "{history:?}"
    );
}

#[tokio::test]
async fn capabilities_refuse_what_was_not_granted_and_other_tenants_carry_on() {
    let backend = Backend::start().await;
    let port = backend.addr.rsplit(':').next().unwrap().to_string();
    let tenants = tenants(&[
        TenantToml::new("rogue", &plugin("misbehave"))
            .allowed_hosts(&[&backend.addr, &format!("localhost:{port}")])
            .limit("kv_max_keys", 50)
            .limit("log_bytes", 4096)
            .retry("max_attempts", 1)
            .fincart("fc"),
        TenantToml::new("calm", &plugin("recorder")).fincart("fc"),
    ]);
    let host = Host::start(&tenants).await;
    let send = async |order: &str, extra: serde_json::Value| {
        let mut body =
            serde_json::json!({ "orderId": order, "status": "pending", "statusUpdatedDate": 1 });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let seq = accepted(
            host.send("rogue", "fc", &[JSON, AUTH], body.to_string())
                .await,
        )
        .await;
        host.wait_finished(seq, Duration::from_secs(60)).await
    };
    let reason = |e: &Value| {
        e["attempts_detail"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let calm = accepted(
        host.send(
            "calm",
            "fc",
            &[JSON, AUTH],
            fincart_status("c-1", "#C1", "pending", "new", 1),
        )
        .await,
    )
    .await;

    // Outbound HTTP: an allow-listed address works; one not on the list, and an allow-listed name
    // that resolves to loopback, are refused.
    let allowed = send(
        "h-1",
        serde_json::json!({ "misbehave": "fetch", "url": format!("http://{}/ping", backend.addr) }),
    )
    .await;
    assert!(reason(&allowed).starts_with("fetched 200"), "{allowed}");
    let unlisted = send(
        "h-2",
        serde_json::json!({ "misbehave": "fetch", "url": "http://127.0.0.1:9/" }),
    )
    .await;
    assert!(
        reason(&unlisted).contains("not on this tenant's allowed_hosts"),
        "{unlisted}"
    );
    let rebinding = send(
        "h-3",
        serde_json::json!({ "misbehave": "fetch", "url": format!("http://localhost:{port}/ping") }),
    )
    .await;
    assert!(
        reason(&rebinding).contains("resolves only to loopback"),
        "{rebinding}"
    );
    assert_eq!(
        backend.received().len(),
        1,
        "only the allowed request reached the backend"
    );

    // kv key flood: stopped at the tenant's key limit; nothing of the attempt is committed.
    let flood = send("k-1", serde_json::json!({ "misbehave": "kvflood" })).await;
    assert_eq!(flood["state"], "dead");
    assert!(
        flood["last_error"]
            .as_str()
            .unwrap()
            .contains("kv store is full (50 keys)"),
        "{flood}"
    );
    assert!(
        !host
            .kv("rogue")
            .await
            .keys()
            .any(|k| k.starts_with("flood/")),
        "a failed attempt's keys were committed"
    );

    // Log spam: kept within the budget, the rest counted as dropped; the event still succeeds.
    let spam = send("l-1", serde_json::json!({ "misbehave": "logspam" })).await;
    assert_eq!(spam["state"], "done", "{}", spam["last_error"]);
    let attempt = &spam["attempts_detail"][0];
    let kept: usize = attempt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 4096, "{kept} log bytes kept");
    assert!(
        attempt["logs_dropped"].as_u64().unwrap() > 99_000,
        "{}",
        attempt["logs_dropped"]
    );

    // The other tenant was unaffected, and the host is healthy.
    assert_eq!(
        host.wait_finished(calm, Duration::from_secs(60)).await["state"],
        "done"
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", host.base))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_tenant_over_its_ingest_rate_gets_429_with_retry_after_and_others_do_not() {
    let tenants = tenants(&[
        TenantToml::new("limited", &plugin("recorder"))
            .limit("ingest_per_second", 0.5)
            .limit("ingest_burst", 3)
            .fincart("fc"),
        TenantToml::new("free", &plugin("recorder")).fincart("fc"),
    ]);
    let host = Host::start(&tenants).await;
    let body = |order: &str| fincart_status(order, "#1", "processing", "packed", 1);
    // Unauthenticated requests do not use up the merchant's rate.
    for n in 0..10 {
        let r = host
            .send(
                "limited",
                "fc",
                &[JSON, ("authorization", "wrong")],
                body(&format!("x{n}")),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    for n in 0..3 {
        accepted(
            host.send("limited", "fc", &[JSON, AUTH], body(&format!("o{n}")))
                .await,
        )
        .await;
    }
    let refused = host.send("limited", "fc", &[JSON, AUTH], body("o3")).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let message: Value = refused.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("at most 0.5 webhooks per second"),
        "{message}"
    );
    // Another tenant is not limited by it.
    for n in 0..5 {
        accepted(
            host.send("free", "fc", &[JSON, AUTH], body(&format!("f{n}")))
                .await,
        )
        .await;
    }
    assert_eq!(
        host.events("limited").await.len(),
        3,
        "the refused one was not journaled"
    );
    assert_eq!(
        host.metric(
            "hookhost_webhooks_rejected_total",
            &[("tenant", "limited"), ("reason", "rate_limited")]
        )
        .await,
        1.0
    );
    // After the advertised wait, the sender gets through.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    accepted(host.send("limited", "fc", &[JSON, AUTH], body("o3")).await).await;
}

#[tokio::test]
async fn an_instruction_budget_stops_a_runaway_plugin_deterministically() {
    let tenants = tenants(&[
        TenantToml::new("budget", &plugin("misbehave"))
            .limit("fuel", 50_000_000)
            .limit("timeout_ms", 30_000)
            .retry("max_attempts", 1)
            .fincart("fc"),
        TenantToml::new("unbudgeted", &plugin("recorder")).fincart("fc"),
    ]);
    let host = Host::start(&tenants).await;
    // Within its budget a plugin runs normally.
    let ok = accepted(
        host.send("budget", "fc", &[JSON, AUTH], misbehaving("fine", "none"))
            .await,
    )
    .await;
    let event = host.wait_finished(ok, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "done", "{event}");
    // An endless loop is stopped by the budget long before the 30 s wall-clock limit.
    let spin = accepted(
        host.send("budget", "fc", &[JSON, AUTH], misbehaving("spin", "loop"))
            .await,
    )
    .await;
    let event = host.wait_finished(spin, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "dead", "{event}");
    let error = event["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("instruction budget of 50000000"), "{event}");
    // A tenant without a budget is not limited by fuel counting.
    let seq = accepted(
        host.send("unbudgeted", "fc", &[JSON, AUTH], misbehaving("u", "none"))
            .await,
    )
    .await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(60)).await["state"],
        "done"
    );
}

#[tokio::test]
async fn memory_returns_to_its_baseline_after_plugins_fill_theirs() {
    let host = Host::start(&misbehave_tenant(1)).await;
    // Warm up: the plugin loaded and run once, the journal open.
    let warm = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("warm", "none"))
            .await,
    )
    .await;
    host.wait_finished(warm, Duration::from_secs(60)).await;
    let baseline = rss_mib(host.pid());
    // 40 attempts each filling its 32 MiB memory to the limit (1.25 GiB in all), 8 at a time.
    let mut seqs = Vec::new();
    for n in 0..40 {
        seqs.push(
            accepted(
                host.send(
                    "rogue",
                    "fc",
                    &[JSON, AUTH],
                    misbehaving(&format!("a{n}"), "alloc"),
                )
                .await,
            )
            .await,
        );
    }
    for seq in seqs {
        let event = host.wait_finished(seq, Duration::from_secs(60)).await;
        assert!(
            event["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("memory limit"),
            "{event}"
        );
    }
    let after = rss_mib(host.pid());
    eprintln!("RSS baseline {baseline:.1} MiB, after 40 memory bombs {after:.1} MiB");
    assert!(
        after < baseline + 16.0,
        "resident memory went from {baseline:.1} MiB to {after:.1} MiB"
    );
}

#[tokio::test]
async fn a_plugin_needing_more_than_the_pool_allows_is_refused_at_load() {
    // The recorder's function table has more than 8 elements and it creates 3 core instances.
    for (runtime, expected) in [
        ("max_table_elements = 8", "exceeds the limit of 8"),
        (
            "max_core_instances = 2",
            "exceeds the configured maximum of 2",
        ),
    ] {
        let tenants = format!(
            "[runtime]\n{runtime}\n{}",
            TenantToml::new("rogue", &plugin("recorder")).fincart("fc")
        );
        let host = Host::start(&tenants).await;
        // Refused at load, with the reason: the plugin never serves, its events wait.
        let status = wait_for("the refusal", Duration::from_secs(60), async || {
            let t = host.admin("/admin/tenants").await;
            let p = t["tenants"][0]["plugin"].clone();
            p["last_error"].is_string().then_some(p)
        })
        .await;
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains(expected), "{runtime}: {error}");
        assert!(status["version"].is_null(), "{status}");
        let ready = reqwest::get(format!("{}/readyz", host.base)).await.unwrap();
        assert_eq!(ready.status(), 503);
    }
}

/// Read-modify-writes of one key from many orders at once (different orders run in parallel):
/// a plugin's update is never lost, because an attempt whose reads went stale before it committed
/// is run again instead of overwriting.
#[tokio::test]
async fn concurrent_read_modify_writes_of_a_shared_key_lose_no_update() {
    let host = Host::start(&misbehave_tenant(1)).await;
    let mut seqs = Vec::new();
    for n in 0..60 {
        seqs.push(
            accepted(
                host.send(
                    "rogue",
                    "fc",
                    &[JSON, AUTH],
                    misbehaving(&format!("c{n}"), "count"),
                )
                .await,
            )
            .await,
        );
    }
    for seq in &seqs {
        let event = host.wait_finished(*seq, Duration::from_secs(120)).await;
        assert_eq!(
            (event["state"].as_str(), event["attempts"].as_u64()),
            (Some("done"), Some(1)),
            "a conflict is not a failed attempt: {event}"
        );
    }
    assert_eq!(
        host.kv("rogue")
            .await
            .get("shared-counter")
            .map(String::as_str),
        Some("60"),
        "every increment counted once"
    );
    let conflicts = host
        .metric("hookhost_kv_conflicts_total", &[("tenant", "rogue")])
        .await;
    eprintln!("{conflicts} kv conflicts resolved by running again");
}

/// JSON logs: each line about a webhook carries its tenant, source and event number (one span
/// per webhook); an attempt's lines carry the event and attempt number.
#[tokio::test]
async fn json_logs_carry_the_webhook_and_attempt_spans() {
    let host = Host::start_with_env(
        tempfile::tempdir().unwrap(),
        &misbehave_tenant(1),
        &[("HOOKHOST_LOG_JSON", "true")],
    )
    .await;
    let refused = host
        .send(
            "rogue",
            "fc",
            &[JSON, ("authorization", "wrong")],
            misbehaving("x", "none"),
        )
        .await;
    assert_eq!(refused.status(), 401);
    let seq = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-err", "error"))
            .await,
    )
    .await;
    host.wait_finished(seq, Duration::from_secs(60)).await;
    let lines: Vec<Value> = host
        .logs()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let rejected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "webhook rejected: unauthorized")
        .expect("the rejection is logged");
    assert_eq!(rejected["span"]["tenant"], "rogue", "{rejected}");
    assert_eq!(rejected["span"]["source"], "fc", "{rejected}");
    let failed = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("attempt failed"))
        })
        .expect("the failed attempt is logged");
    assert_eq!(failed["span"]["name"], "attempt", "{failed}");
    assert_eq!(failed["span"]["event"], seq, "{failed}");
    assert_eq!(failed["span"]["attempt"], 1, "{failed}");
    assert!(!host.logs().contains(TOKEN), "the token is never logged");
}

/// The CLI shows what the admin API shows: events, one event with its attempts and logs, dead
/// letters and plugins, as tables or as the API's JSON.
#[tokio::test]
async fn the_cli_lists_events_dead_letters_and_plugins() {
    let host = Host::start(&misbehave_tenant(1)).await;
    let ok = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-ok", "none"))
            .await,
    )
    .await;
    let bad = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-bad", "error"))
            .await,
    )
    .await;
    host.wait_finished(ok, Duration::from_secs(60)).await;
    host.wait_finished(bad, Duration::from_secs(60)).await;
    let run = |args: &[&str]| {
        let out = host.cli(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (success, events, _) = run(&["events", "--tenant", "rogue"]);
    assert!(success);
    let lines: Vec<&str> = events.lines().collect();
    assert!(
        lines[0].starts_with("EVENT") && lines[0].contains("LAST ERROR"),
        "{events}"
    );
    assert!(
        lines[1].starts_with(&format!("{bad} ")) && lines[1].contains("dead"),
        "{events}"
    );
    assert!(lines[1].contains("deliberate error"), "{events}");
    assert!(
        lines[2].starts_with(&format!("{ok} ")) && lines[2].contains("done"),
        "{events}"
    );

    let (_, json, _) = run(&["events", "--tenant", "rogue", "--state", "done", "--json"]);
    let page: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["seq"], ok);

    let (_, by_order, _) = run(&["events", "--tenant", "rogue", "--order", "o-bad", "--json"]);
    let page: Value = serde_json::from_str(&by_order).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["events"][0]["seq"], bad);
    let (_, recent, _) = run(&["events", "--tenant", "rogue", "--since", "1h", "--json"]);
    let page: Value = serde_json::from_str(&recent).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let future = hookhost::now_ms() + 3_600_000;
    let none = host
        .admin(&format!("/admin/tenants/rogue/events?since_ms={future}"))
        .await;
    assert_eq!(none["events"].as_array().unwrap().len(), 0);

    let (_, detail, _) = run(&["event", &bad.to_string()]);
    assert!(detail.contains("dead after 1 attempt"), "{detail}");
    assert!(detail.contains("order o-bad"), "{detail}");
    assert!(detail.contains("attempt 1 · version"), "{detail}");
    assert!(
        detail.contains("error: plugin returned an error: misbehave: deliberate error"),
        "{detail}"
    );

    let (_, dead, _) = run(&["dead-letters", "--tenant", "rogue"]);
    assert!(dead.contains(&format!("\n{bad} ")), "{dead}");
    assert!(!dead.contains(&format!("\n{ok} ")), "{dead}");

    let (_, plugins, _) = run(&["plugins"]);
    let version = host.admin("/admin/tenants").await["tenants"][0]["plugin"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        plugins.contains("rogue") && plugins.contains(&version),
        "{plugins}"
    );

    // The API's description is served, without a token.
    let doc: Value = reqwest::get(format!("{}/admin/openapi.json", host.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/admin/tenants/{tenant}/events"]["get"].is_object());

    let (success, _, stderr) = run(&["events", "--tenant", "nobody"]);
    assert!(
        !success && stderr.contains("404") && stderr.contains("nobody"),
        "{stderr}"
    );
}

/// The web console in a real browser (Debian's headless Chromium driven by playwright-core, both
/// installed by scripts/test.sh), as an operator uses it (tests/console/drive.mjs): the
/// all-tenants overview as the landing page (a tenant whose plugin file is not WebAssembly says
/// so on one line), search across tenants, a tenant's charts, counters that filter, filters in
/// the URL, an event opened by its URL with its pretty payload, headers and a copy button, a
/// selection that survives refreshes, a replay whose outcome is shown, dead letters replayed
/// after a confirmation with a summary, the keyboard, the banners for an unreachable host and a
/// revoked token, dark mode and a 420 px screen. Screenshots are kept at target/console-*.png.
#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let driver = common::workspace().join("tests/console");
    assert!(
        driver.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/console` (scripts/test.sh does) to install playwright-core"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, br#"{"this": "is not WebAssembly"}"#).unwrap();
    let config = format!(
        "{}\n{}\n{}",
        misbehave_tenant(1),
        misbehave_tenant_named("quiet", 1).toml(),
        TenantToml::new("broken", &corrupt).fincart("fc").toml()
    );
    let host = Host::start(&config).await;
    let ok = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-ok", "none"))
            .await,
    )
    .await;
    let bad = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("o-bad", "error"))
            .await,
    )
    .await;
    let quiet = accepted(
        host.send("quiet", "fc", &[JSON, AUTH], misbehaving("o-quiet", "none"))
            .await,
    )
    .await;
    host.wait_finished(ok, Duration::from_secs(60)).await;
    host.wait_finished(quiet, Duration::from_secs(60)).await;
    assert_eq!(
        host.wait_finished(bad, Duration::from_secs(60)).await["state"],
        "dead"
    );

    let shots = common::workspace().join("target/console");
    let out = tokio::process::Command::new("node")
        .arg(driver.join("drive.mjs"))
        .args([&host.base, common::ADMIN_TOKEN, "/hooks/rogue/fc", TOKEN])
        .arg(&shots)
        .args([bad.to_string(), ok.to_string()])
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["replayed"], bad);
    // Both replays clicked in the browser reached the host (the one from the event's panel and
    // the confirmed one of every dead letter): three attempts, each dead, none run twice.
    let replayed = wait_for(
        "the replayed attempts",
        Duration::from_secs(60),
        async || {
            let e = host.event(bad).await;
            (e["attempts"].as_u64() == Some(3) && e["state"] == "dead").then_some(e)
        },
    )
    .await;
    assert_eq!(replayed["attempts_detail"].as_array().unwrap().len(), 3);
    for shot in ["overview", "events", "detail", "dead", "dark", "narrow"] {
        let png = std::fs::read(format!("{}-{shot}.png", shots.display()))
            .unwrap_or_else(|e| panic!("screenshot {shot}: {e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

/// The console as a merchant uses it (tests/console/merchant.mjs in Chromium): signed in with
/// a merchant token it shows that tenant only, deploys by upload, makes an earlier version
/// active again, stages a version to shadow the active one and shows the shadow's differences.
/// Screenshots are kept at target/console-merchant-*.png.
#[tokio::test]
async fn a_merchant_console_session_sees_one_tenant_deploys_and_shadows() {
    let driver = common::workspace().join("tests/console");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        driver.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new(&chromium).exists(),
        "scripts/test.sh installs playwright-core and Chromium"
    );
    let other = misbehave_tenant_named("other", 1).toml();
    let host = Host::start(&format!("{}\n{other}", misbehave_tenant(1))).await;
    // An event of the other tenant exists (number 1): the merchant must not see it.
    let foreign = accepted(
        host.send("other", "fc", &[JSON, AUTH], misbehaving("o-other", "none"))
            .await,
    )
    .await;
    assert_eq!(foreign, 1);
    let created = host.cli(&[
        "tokens",
        "create",
        "--tenant",
        "rogue",
        "--scope",
        "read,replay,deploy",
        "--name",
        "console",
        "--json",
    ]);
    assert!(created.status.success());
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let shots = common::workspace().join("target/console-merchant");
    let out = tokio::process::Command::new("node")
        .arg(driver.join("merchant.mjs"))
        .args([
            host.base.as_str(),
            created["token"].as_str().unwrap(),
            "other",
            "/hooks/rogue/fc",
            TOKEN,
        ])
        .arg(plugin("recorder"))
        .arg(plugin("misbehave"))
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the browser did reached the host: the history, and the other tenant untouched.
    let history = host.admin("/admin/tenants/rogue/plugin/versions").await;
    let kinds: Vec<&str> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["staged", "rollback", "deploy", "deploy"],
        "{history}"
    );
    assert_eq!(history["active"], 3);
    let others = host.admin("/admin/tenants/other/plugin/versions").await;
    assert_eq!(others["deploys"], serde_json::json!([]));
    for step in ["versions", "shadow"] {
        let png = std::fs::read(format!("{}-{step}.png", shots.display())).expect("screenshot");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

/// An operator sees how long a tenant's events have been waiting (here: its plugin file is
/// missing, so events are accepted and wait), and the gauge drops to 0 once they are handled.
#[tokio::test]
async fn the_age_of_the_oldest_waiting_event_is_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("later.wasm");
    let tenants = TenantToml::new("waiting", &live).fincart("fc").toml();
    let host = Host::start(&tenants).await;
    let seq = accepted(
        host.send("waiting", "fc", &[JSON, AUTH], misbehaving("w", "none"))
            .await,
    )
    .await;
    let labels = [("tenant", "waiting")];
    wait_for(
        "the waiting event's age",
        Duration::from_secs(30),
        async || {
            (host
                .metric("hookhost_oldest_pending_seconds", &labels)
                .await
                >= 1.5)
                .then_some(())
        },
    )
    .await;
    std::fs::copy(plugin("misbehave"), &live).unwrap();
    host.wait_finished(seq, Duration::from_secs(60)).await;
    wait_for("the gauge back to 0", Duration::from_secs(30), async || {
        (host
            .metric("hookhost_oldest_pending_seconds", &labels)
            .await
            == 0.0)
            .then_some(())
    })
    .await;
}

/// JavaScript and Python plugins are contained like Rust ones: an exception, an endless loop and
/// unbounded allocation each end in a recorded, explanatory error (their kv writes discarded),
/// and the same host keeps serving a good event of each language and another tenant.
#[tokio::test]
async fn scripted_plugins_that_throw_loop_or_allocate_are_contained() {
    // Each case runs in a tenant whose limits only its own misbehaviour can exhaust, so a slow
    // machine cannot turn one containment into another (an allocation that is slow to reach the
    // memory limit must not hit a time limit first): (mode, limits, what the error says).
    let cases = [
        ("throw", 60_000, "deliberate exception"),
        ("loop", 3_000, "time limit of 3000 ms"),
        ("alloc", 120_000, "memory limit"),
    ];
    let mut list = Vec::new();
    for lang in ["js", "python"] {
        for (mode, timeout_ms, _) in &cases {
            list.push(
                TenantToml::new(
                    &format!("rogue-{lang}-{mode}"),
                    &common::script_plugin(lang, "misbehave"),
                )
                .limit("timeout_ms", timeout_ms)
                .limit("memory_mib", 64)
                .retry("max_attempts", 1)
                .fincart("fc"),
            );
        }
    }
    list.push(TenantToml::new("calm", &plugin("recorder")).fincart("fc"));
    let host = Host::start(&tenants(&list)).await;
    for lang in ["js", "python"] {
        let mut seqs = Vec::new();
        for (mode, _, _) in &cases {
            seqs.push(
                accepted(
                    host.send(
                        &format!("rogue-{lang}-{mode}"),
                        "fc",
                        &[JSON, AUTH],
                        misbehaving(&format!("{lang}-{mode}"), mode),
                    )
                    .await,
                )
                .await,
            );
        }
        // The plugin still serves a well-behaved event after its throw.
        let fine = accepted(
            host.send(
                &format!("rogue-{lang}-throw"),
                "fc",
                &[JSON, AUTH],
                misbehaving(&format!("{lang}-fine"), "none"),
            )
            .await,
        )
        .await;
        for ((mode, _, expected), seq) in cases.iter().zip(&seqs) {
            let event = host.wait_finished(*seq, Duration::from_secs(240)).await;
            assert_eq!(event["state"], "dead", "{lang} {mode}: {event}");
            let error = event["last_error"].as_str().unwrap_or_default();
            let logs = event["attempts_detail"][0]["logs"].to_string();
            assert!(
                error.contains(expected) || logs.contains(expected),
                "{lang} {mode}: {error:?} (logs {logs}) should mention {expected:?}"
            );
        }
        assert_eq!(
            host.wait_finished(fine, Duration::from_secs(60)).await["state"],
            "done"
        );
        // A failed attempt leaves no kv writes (the plugin writes `touched/<id>` first): only
        // the fine event's remain.
        for (mode, _, _) in &cases {
            let kv = host.kv(&format!("rogue-{lang}-{mode}")).await;
            let touched = kv.keys().filter(|k| k.starts_with("touched/")).count();
            let fine_here = usize::from(*mode == "throw");
            assert_eq!(touched, fine_here, "{lang} {mode}: {kv:?}");
            assert_eq!(
                kv.get("ok").map(String::as_str),
                (*mode == "throw").then_some("1"),
                "{lang} {mode}: {kv:?}"
            );
        }
    }
    let calm = accepted(
        host.send("calm", "fc", &[JSON, AUTH], misbehaving("calm", "none"))
            .await,
    )
    .await;
    assert_eq!(
        host.wait_finished(calm, Duration::from_secs(60)).await["state"],
        "done"
    );
}

/// A host call the tenant is not allowed (outbound HTTP to a host off its allow-list) fails the
/// attempt with a message naming the call and the reason in every language's order-sync (the
/// JavaScript and Python helpers turn the WIT error variant into text), and the attempt's kv
/// writes are discarded.
#[tokio::test]
async fn a_refused_host_call_is_explained_in_every_language() {
    let langs = [
        ("rust", plugin("order-sync")),
        ("js", common::script_plugin("js", "order-sync")),
        ("python", common::script_plugin("python", "order-sync")),
    ];
    let list: Vec<TenantToml> = langs
        .iter()
        .map(|(lang, path)| {
            TenantToml::new(&format!("shop-{lang}"), path)
                .config("backend-url", "http://203.0.113.9/notify")
                .retry("max_attempts", 1)
                .fincart("fincart")
        })
        .collect();
    let host = Host::start(&tenants(&list)).await;
    let delivered = fincart_status("abc", "#77", "successful", "delivered", 1738336900000);
    for (lang, _) in &langs {
        let tenant = format!("shop-{lang}");
        let seq = accepted(
            host.send(&tenant, "fincart", &[JSON, AUTH], delivered.clone())
                .await,
        )
        .await;
        let event = host.wait_finished(seq, Duration::from_secs(120)).await;
        assert_eq!(event["state"], "dead", "{lang}: {event}");
        let error = event["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("denied") && error.contains("203.0.113.9"),
            "{lang}: {error}"
        );
        if *lang != "rust" {
            assert!(
                error.contains("http post http://203.0.113.9/notify: denied"),
                "{lang}: {error}"
            );
            // Where in the plugin's own code, as the merchant names its files.
            let place = match *lang {
                "js" => "at handler (plugins/js/order-sync/app.js:",
                _ => "File \"app.py\", line ",
            };
            assert!(error.contains(place), "{lang}: {error}");
            for glue in ["hookhost.", "initializer.js", "/0/"] {
                assert!(
                    !error.contains(glue),
                    "{lang}: frames not the merchant's: {error}"
                );
            }
        }
        let kv = host.kv(&tenant).await;
        assert!(
            kv.is_empty(),
            "{lang}: failed attempt left kv writes: {kv:?}"
        );
    }
}

/// `limits.instance_reuse`: a JavaScript or Python instance serves up to N events of its tenant
/// (its globals persist: the test plugin counts the events its instance handled), is replaced
/// after N, is dropped after a timeout, and never serves another tenant; without the setting
/// every event gets a fresh instance.
#[tokio::test]
async fn script_plugins_reuse_instances_only_as_configured() {
    let mut list = Vec::new();
    for lang in ["js", "python"] {
        for (tenant, reuse) in [("reuse", 3), ("twin", 3), ("fresh", 1)] {
            list.push(
                TenantToml::new(
                    &format!("{tenant}-{lang}"),
                    &common::script_plugin(lang, "misbehave"),
                )
                // Far above what a counting event needs even on a loaded machine; only the
                // endless loop reaches it.
                .limit("timeout_ms", 3000)
                .limit("instance_reuse", reuse)
                .limit("max_concurrency", 1)
                .retry("max_attempts", 1)
                .fincart("fc"),
            );
        }
    }
    let host = Host::start(&tenants(&list)).await;
    // Events of one order run one after another, in the order sent.
    let send = async |tenant: &str, n: u64, mode: &str| {
        let body = serde_json::json!({ "orderId": "o-1", "status": "pending",
            "statusUpdatedDate": n, "misbehave": mode, "spin_ms": 5000 })
        .to_string();
        accepted(host.send(tenant, "fc", &[JSON, AUTH], body).await).await
    };
    let count_of = async |tenant: &str, seq: i64| -> Option<String> {
        let event = host.wait_finished(seq, Duration::from_secs(120)).await;
        let kv = host.kv(tenant).await;
        kv.get(&format!("count/{}", event["event"]["id"].as_str().unwrap()))
            .cloned()
    };
    for lang in ["js", "python"] {
        let tenant = format!("reuse-{lang}");
        let mut seqs = Vec::new();
        for (n, mode) in ["count", "count", "loop", "count", "count", "count", "count"]
            .iter()
            .enumerate()
        {
            seqs.push(send(&tenant, n as u64 + 1, mode).await);
        }
        let mut counts = Vec::new();
        for seq in &seqs {
            counts.push(count_of(&tenant, *seq).await);
        }
        let expected =
            ["1", "2", "", "1", "2", "3", "1"].map(|c| (!c.is_empty()).then(|| c.to_string()));
        assert_eq!(
            counts, expected,
            "{lang}: kept for 3 events, dropped after the timeout, replaced after 3"
        );
        let looped = host.event(seqs[2]).await;
        assert_eq!(looped["state"], "dead", "{lang}: {looped}");
        assert!(
            looped["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("time limit of 3000 ms"),
            "{lang}: {looped}"
        );

        // Another tenant with the same plugin file starts from its own instance.
        let twin = format!("twin-{lang}");
        let seq = send(&twin, 1, "count").await;
        assert_eq!(count_of(&twin, seq).await.as_deref(), Some("1"), "{lang}");

        // Without instance_reuse, a fresh instance per event.
        let fresh = format!("fresh-{lang}");
        let (a, b) = (
            send(&fresh, 1, "count").await,
            send(&fresh, 2, "count").await,
        );
        assert_eq!(count_of(&fresh, a).await.as_deref(), Some("1"), "{lang}");
        assert_eq!(count_of(&fresh, b).await.as_deref(), Some("1"), "{lang}");
    }
}
