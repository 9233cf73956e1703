//! End-to-end tests of every provider and signature scheme: real HTTP to the real binary, with a
//! recorder plugin that stores exactly what it received. Signatures are computed by Python's
//! `hmac` module, never by the code under test; samples come from the providers' documents.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{json_samples, now_secs, plugin, provider_documents, python_hmac, Host, JSON};
use serde_json::Value;

const STANDARD_KEY: &[u8] = b"standard-webhooks-test-key-32byt";
const SELLDONE_SIGN_KEY: &str = "selldone-sign-key";

fn tenant() -> String {
    format!(
        r#"
[tenants.rec]
plugin = {plugin:?}

[tenants.rec.sources.fincart]
provider = "fincart"
token = "fc-token"

[tenants.rec.sources.sevi]
provider = "sevi"
token = "sevi-token"
header = "X-Sevi-Token"

[tenants.rec.sources.juspay]
provider = "juspay"
username = "acme_payouts"
password = ["old-password", "jp-password"]
required_headers = {{ "X-Env" = "prod" }}

[tenants.rec.sources.finch-query]
provider = "finchpay"
token = "fp-token"

[tenants.rec.sources.finch-path]
provider = "finchpay"
token = "fp-path-token"
token_in = "path"

[tenants.rec.sources.finch-ip]
provider = "finchpay"
allow_ips = ["127.0.0.1/32", "::1"]

[tenants.rec.sources.finch-far]
provider = "finchpay"
allow_ips = ["203.0.113.0/24"]

[tenants.rec.sources.finch-proxied]
provider = "finchpay"
allow_ips = ["203.0.113.0/24"]
trusted_proxy_header = "X-Forwarded-For"
trusted_proxies = ["127.0.0.1/32", "::1", "10.0.0.0/8"]

[tenants.rec.sources.finch-proxied-elsewhere]
provider = "finchpay"
allow_ips = ["203.0.113.0/24"]
trusted_proxy_header = "X-Forwarded-For"
trusted_proxies = ["192.0.2.0/24"]

[tenants.rec.sources.selldone]
provider = "selldone"
token = "sd-token"
sign_key = "{SELLDONE_SIGN_KEY}"
# Selldone signs at cost 10 (the default); the tests sign at 4 to stay fast.
sign_cost = 4

[tenants.rec.sources.standard]
provider = "standard-webhooks"
secret = "whsec_{standard}"

[tenants.rec.sources.stripe]
provider = "stripe"
secret = "whsec_stripe_test"

[tenants.rec.sources.shopify]
provider = "shopify"
secret = "shpss_test"

[tenants.rec.sources.github]
provider = "github"
secret = ["gh-old", "gh-secret"]

[tenants.rec.sources.signed]
provider = "generic"
[tenants.rec.sources.signed.auth]
scheme = "hmac"
secret = "generic-secret"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "v1="
template = "{{timestamp}}.{{body}}"
timestamp_header = "X-Timestamp"
[tenants.rec.sources.signed.mapping]
id = "event.id"
kind = "payment"
order_id = "order.id"
status = "order.state"
amount = "order.total"
currency = "order.currency"
occurred_at = "event.at"
statuses = {{ "paid" = "succeeded", "failed" = "failed" }}

[tenants.rec.sources.basic]
provider = "generic"
auth = {{ scheme = "basic", username = "partner", password = "b-pass" }}
mapping = {{ id = "id", status = "status" }}
"#,
        plugin = plugin("recorder"),
        standard = B64.encode(STANDARD_KEY),
    )
}

/// Sends and returns (status, JSON body, duplicate header).
async fn send(
    host: &Host,
    source: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, bool) {
    let r = host.send("rec", source, headers, body).await;
    let status = r.status().as_u16();
    let dup = r.headers().get("hookhost-duplicate").is_some();
    (status, r.json().await.unwrap_or(Value::Null), dup)
}

/// Sends, expects 200 accepted, waits for the plugin, and returns what the plugin recorded.
async fn delivered(host: &Host, source: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let (status, reply, _) = send(host, source, headers, body).await;
    assert_eq!(status, 200, "{source}: {reply}\n{}", host.logs());
    assert_eq!(reply["status"], "accepted", "{source}: {reply}");
    recorded(host, reply["event"].as_i64().unwrap()).await
}

async fn recorded(host: &Host, seq: i64) -> Value {
    let event = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(event["state"], "done", "{event}");
    let key = format!(
        "seen/{}/{}",
        event["source"].as_str().unwrap(),
        event["event"]["id"].as_str().unwrap()
    );
    let kv = host.kv("rec").await;
    serde_json::from_str(
        kv.get(&key)
            .unwrap_or_else(|| panic!("{key} not recorded: {kv:?}")),
    )
    .unwrap()
}

#[tokio::test]
async fn every_sample_in_the_provider_documents_is_accepted() {
    let host = Host::start(&tenant()).await;
    let docs = provider_documents();
    let read = |name: &str| std::fs::read_to_string(docs.join(name)).unwrap();

    // Fincart: the payload sample (the document's other JSON is its header example).
    let fincart: Vec<String> = json_samples(&read("fincart-order-status.md"));
    let payloads: Vec<&String> = fincart.iter().filter(|s| s.contains("orderId")).collect();
    assert_eq!(payloads.len(), 1, "{fincart:?}");
    let seen = delivered(
        &host,
        "fincart",
        &[JSON, ("authorization", "fc-token")],
        payloads[0],
    )
    .await;
    assert_eq!(
        (seen["kind"].as_str(), seen["status"].as_str()),
        (Some("order-updated"), Some("processing"))
    );
    assert_eq!(
        (
            seen["merchant_ref"].as_str(),
            seen["raw_sub_status"].as_str()
        ),
        (Some("#1123"), Some("out for delivery"))
    );
    assert_eq!(seen["occurred_at_ms"], 1738336796675u64);

    // Juspay: every webhook sample; the two "Validation_V2" samples are API error bodies, not
    // webhooks, and are refused naming the missing `id`.
    let auth = format!("Basic {}", B64.encode("acme_payouts:jp-password"));
    let headers = [JSON, ("authorization", auth.as_str()), ("x-env", "prod")];
    let juspay = json_samples(&read("juspay-payout.md"));
    assert!(juspay.len() >= 9, "found {} Juspay samples", juspay.len());
    let mut accepted = Vec::new();
    for sample in &juspay {
        let (status, reply, _) = send(&host, "juspay", &headers, sample).await;
        if sample.contains("No Data found") {
            assert_eq!(status, 422, "{reply}");
            assert!(reply["error"].as_str().unwrap().contains("`id`"), "{reply}");
        } else {
            assert_eq!(status, 200, "{sample}\n{reply}");
            accepted.push(reply["event"].as_i64().unwrap());
        }
    }
    for seq in &accepted {
        let seen = recorded(&host, *seq).await;
        assert_eq!(seen["provider"], "juspay");
        let payload: Value = serde_json::from_str(seen["payload"].as_str().unwrap()).unwrap();
        assert_eq!(seen["id"], payload["id"], "dedupe key is Juspay's id");
        assert_eq!(seen["raw_status"], payload["value"]);
    }
    let success = recorded(&host, accepted[2]).await;
    assert_eq!(
        (success["kind"].as_str(), success["status"].as_str()),
        (Some("payout"), Some("succeeded"))
    );
    assert_eq!(success["merchant_ref"], "6lQuvBOixfADPpmD");
    assert_eq!(success["amount"]["amount"], "10");

    // FinchPay: both samples carry the same transaction id and status, so the second is the same
    // event again: acknowledged as a duplicate.
    let finch = json_samples(&read("finchpay-transaction.md"));
    assert_eq!(finch.len(), 2, "{finch:?}");
    let seen = delivered(&host, "finch-query?token=fp-token", &[JSON], &finch[0]).await;
    assert_eq!(
        (seen["kind"].as_str(), seen["status"].as_str()),
        (Some("transaction"), Some("succeeded"))
    );
    assert_eq!(
        seen["amount"],
        serde_json::json!({"amount": "100", "currency": "EUR"})
    );
    assert_eq!(seen["merchant_ref"], "your_generated_external_id");
    let (status, reply, dup) = send(&host, "finch-query?token=fp-token", &[JSON], &finch[1]).await;
    assert_eq!(
        (status, reply["status"].as_str(), dup),
        (200, Some("duplicate"), true)
    );
}

#[tokio::test]
async fn token_basic_path_and_address_schemes() {
    let host = Host::start(&tenant()).await;
    let finch = |status: &str, id: &str| {
        serde_json::json!({"id": id, "status": status, "amount_from": "0.10", "asset_from": "EUR", "event_time": "2024-01-01T00:00:00Z",
            "unannounced_field": {"nested": true}})
        .to_string()
    };

    // Token in the query, in the path; addresses allowed directly and through a trusted proxy.
    assert_eq!(
        send(
            &host,
            "finch-query?token=wrong",
            &[JSON],
            &finch("COMPLETE", "t1")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(&host, "finch-query", &[JSON], &finch("COMPLETE", "t1"))
            .await
            .0,
        401
    );
    let seen = delivered(
        &host,
        "finch-path/fp-path-token",
        &[JSON],
        &finch("HOLD", "t2"),
    )
    .await;
    assert_eq!(
        (seen["status"].as_str(), seen["raw_status"].as_str()),
        (Some("processing"), Some("HOLD"))
    );
    assert_eq!(
        send(&host, "finch-path/guess", &[JSON], &finch("HOLD", "t3"))
            .await
            .0,
        401
    );
    let seen = delivered(
        &host,
        "finch-ip",
        &[JSON],
        &finch("REJECTED_BY_ANTI_FRAUD", "t4"),
    )
    .await;
    assert_eq!(seen["status"], "failed");
    assert_eq!(
        send(&host, "finch-far", &[JSON], &finch("COMPLETE", "t5"))
            .await
            .0,
        401
    );
    assert_eq!(
        send(
            &host,
            "finch-far",
            &[JSON, ("x-forwarded-for", "203.0.113.5")],
            &finch("COMPLETE", "t5")
        )
        .await
        .0,
        401
    );
    // The header is believed only from a trusted proxy (this test's loopback peer is one for
    // finch-proxied, not for finch-proxied-elsewhere), and only its rightmost entry that is not a
    // proxy: entries further left are the sender's to forge.
    for (source, forwarded) in [
        ("finch-proxied-elsewhere", "203.0.113.5"),
        ("finch-proxied-elsewhere", "203.0.113.9, 127.0.0.1"),
        ("finch-proxied", "203.0.113.5, 198.51.100.1"),
        ("finch-proxied", "203.0.113.5, 198.51.100.1, 10.1.1.1"),
    ] {
        assert_eq!(
            send(
                &host,
                source,
                &[JSON, ("x-forwarded-for", forwarded)],
                &finch("COMPLETE", "t5")
            )
            .await
            .0,
            401,
            "{source} with X-Forwarded-For: {forwarded}"
        );
    }
    let seen = delivered(
        &host,
        "finch-proxied",
        &[JSON, ("x-forwarded-for", "203.0.113.5, 10.1.1.1")],
        &finch("BRAND_NEW", "t6"),
    )
    .await;
    assert_eq!(
        (seen["status"].as_str(), seen["raw_status"].as_str()),
        (Some("unknown"), Some("BRAND_NEW"))
    );

    // Sevi: token in its configured header; PAID is the only paid status.
    let sevi = |status: &str| {
        serde_json::json!({"order": {"id": "S-1", "referenceNumber": "ORD-123456", "platformReference": "#77", "status": "CONFIRMED",
            "paymentStatus": status, "totalAmount": 250.75, "currency": "EGP", "updatedAt": format!("2025-03-0{}T10:00:00Z", status.len() % 9)},
            "customer": {"name": "Mona"}})
        .to_string()
    };
    assert_eq!(
        send(
            &host,
            "sevi",
            &[JSON, ("authorization", "sevi-token")],
            &sevi("PAID")
        )
        .await
        .0,
        401,
        "token in the wrong header"
    );
    let seen = delivered(
        &host,
        "sevi",
        &[JSON, ("x-sevi-token", "sevi-token")],
        &sevi("PENDING"),
    )
    .await;
    assert_eq!(
        (seen["kind"].as_str(), seen["status"].as_str()),
        (Some("payment"), Some("pending"))
    );
    let seen = delivered(
        &host,
        "sevi",
        &[JSON, ("x-sevi-token", "sevi-token")],
        &sevi("PAID"),
    )
    .await;
    assert_eq!(seen["status"], "succeeded");
    assert_eq!(
        seen["amount"],
        serde_json::json!({"amount": "250.75", "currency": "EGP"})
    );
    let documented = r#"{"orderId": "S-2", "orderPayment": {"status": "PAID"}}"#;
    assert_eq!(
        delivered(
            &host,
            "sevi",
            &[JSON, ("x-sevi-token", "sevi-token")],
            documented
        )
        .await["status"],
        "succeeded"
    );

    // Juspay: Basic is mandatory, the custom header too; either of two passwords (rotation).
    let body = r#"{"id": "jp-1", "category": "INFO", "label": "FULFILLMENT_TXN", "value": "REVERSED",
        "info": {"id": "o1-f1-t1", "FulfillmentId": "o1-f1", "amount": 10.50, "status": "REVERSED"}}"#;
    let basic = |user_pass: &str| format!("Basic {}", B64.encode(user_pass));
    for (credentials, env, expected) in [
        ("acme_payouts:wrong", "prod", 401),
        ("someone@acme_payouts:jp-password", "prod", 401),
        ("acme_payouts:jp-password", "staging", 401),
        ("acme_payouts:old-password", "prod", 200),
    ] {
        let auth = basic(credentials);
        let (status, reply, _) = send(
            &host,
            "juspay",
            &[JSON, ("authorization", &auth), ("x-env", env)],
            body,
        )
        .await;
        assert_eq!(status, expected, "{credentials} {env}: {reply}");
    }
    let (status, _, _) = send(&host, "juspay", &[JSON, ("x-env", "prod")], body).await;
    assert_eq!(status, 401, "no credentials");
    let auth = basic("acme_payouts:jp-password");
    let (status, reply, _) = send(
        &host,
        "juspay",
        &[JSON, ("authorization", &auth), ("x-env", "prod")],
        r#"{"value":"SUCCESS","label":"ORDER"}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert!(reply["error"].as_str().unwrap().contains("`id`"), "{reply}");

    // Generic basic source with a mapping.
    let auth = basic("partner:b-pass");
    let seen = delivered(
        &host,
        "basic",
        &[JSON, ("authorization", &auth)],
        r#"{"id": "p-1", "status": "whatever"}"#,
    )
    .await;
    assert_eq!(
        (seen["id"].as_str(), seen["provider"].as_str()),
        (Some("p-1"), Some("generic"))
    );
}

#[tokio::test]
async fn signature_schemes_verify_raw_bytes_and_timestamps() {
    let host = Host::start(&tenant()).await;
    let ts = now_secs();

    // Standard Webhooks: id.timestamp.body under the decoded whsec_ key.
    let body =
        r#"{"type": "invoice.paid", "timestamp": "2024-05-01T12:00:00Z", "data": {"id": "inv_1"}}"#;
    let standard = |id: &str, ts: u64, body: &str| {
        let sig = B64.encode(python_hmac(
            "sha256",
            STANDARD_KEY,
            format!("{id}.{ts}.{body}").as_bytes(),
        ));
        (id.to_string(), ts.to_string(), format!("v1,AAAA v1,{sig}"))
    };
    let (id, t, sig) = standard("msg_1", ts, body);
    let headers = [
        JSON,
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", t.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let seen = delivered(&host, "standard", &headers, body).await;
    assert_eq!(
        (seen["id"].as_str(), seen["raw_status"].as_str()),
        (Some("msg_1"), Some("invoice.paid"))
    );
    assert_eq!(seen["occurred_at_ms"], 1714564800000u64);
    let (status, _, dup) = send(&host, "standard", &headers, body).await;
    assert_eq!(
        (status, dup),
        (200, true),
        "a redelivery with the same webhook-id is a duplicate"
    );
    // The signature covers the raw bytes: the same JSON re-serialized is refused.
    let respaced = body.replace(": ", ":");
    assert_eq!(send(&host, "standard", &headers, &respaced).await.0, 401);
    for (when, what) in [(ts - 600, "stale"), (ts + 600, "future")] {
        let (id, t, sig) = standard(&format!("msg_{what}"), when, body);
        let h = [
            JSON,
            ("webhook-id", id.as_str()),
            ("webhook-timestamp", t.as_str()),
            ("webhook-signature", sig.as_str()),
        ];
        let (status, reply, _) = send(&host, "standard", &h, body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("unauthorized")),
            "{what} timestamp"
        );
    }

    // Stripe: t.body, hex, several v1 entries.
    let body = r##"{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": 1700000000,
        "data": {"object": {"id": "pi_1", "amount": 1999, "currency": "usd", "status": "succeeded", "metadata": {"order_id": "#501"}}}}"##;
    let stripe_sig = |ts: u64, body: &str, secret: &str| {
        format!(
            "t={ts},v1={},v0=deadbeef",
            common::hex_encode(&python_hmac(
                "sha256",
                secret.as_bytes(),
                format!("{ts}.{body}").as_bytes()
            ))
        )
    };
    let sig = stripe_sig(ts, body, "whsec_stripe_test");
    let seen = delivered(&host, "stripe", &[JSON, ("stripe-signature", &sig)], body).await;
    assert_eq!(
        (seen["status"].as_str(), seen["merchant_ref"].as_str()),
        (Some("succeeded"), Some("#501"))
    );
    assert_eq!(
        seen["amount"],
        serde_json::json!({"amount": "19.99", "currency": "USD"})
    );
    let wrong_secret = stripe_sig(ts, body, "whsec_other");
    assert_eq!(
        send(
            &host,
            "stripe",
            &[JSON, ("stripe-signature", &wrong_secret)],
            body
        )
        .await
        .0,
        401
    );
    let stale = stripe_sig(ts - 301, body, "whsec_stripe_test");
    assert_eq!(
        send(&host, "stripe", &[JSON, ("stripe-signature", &stale)], body)
            .await
            .0,
        401
    );

    // Shopify: base64 HMAC of the body; dedupe on X-Shopify-Event-Id.
    let body = r##"{"id": 820982911946154508, "name": "#9999", "financial_status": "paid", "total_price": "403.00", "currency": "USD",
        "updated_at": "2021-12-31T19:00:00-05:00", "cancelled_at": null}"##;
    let sig = B64.encode(python_hmac("sha256", b"shpss_test", body.as_bytes()));
    let headers = [
        JSON,
        ("x-shopify-hmac-sha256", sig.as_str()),
        ("x-shopify-topic", "orders/paid"),
        ("x-shopify-event-id", "ev-9"),
    ];
    let seen = delivered(&host, "shopify", &headers, body).await;
    assert_eq!(
        (
            seen["id"].as_str(),
            seen["order_id"].as_str(),
            seen["status"].as_str()
        ),
        (Some("ev-9"), Some("820982911946154508"), Some("succeeded"))
    );
    let tampered = body.replace("403.00", "4.03");
    assert_eq!(send(&host, "shopify", &headers, &tampered).await.0, 401);
    let no_id = [
        JSON,
        ("x-shopify-hmac-sha256", sig.as_str()),
        ("x-shopify-topic", "orders/paid"),
    ];
    let (status, reply, _) = send(&host, "shopify", &no_id, body).await;
    assert_eq!(status, 422);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("x-shopify-event-id"),
        "{reply}"
    );

    // GitHub: sha256=<hex>, either of two secrets.
    let body = r#"{"action": "completed", "workflow_run": {"id": 5, "conclusion": "success"}}"#;
    for secret in ["gh-old", "gh-secret"] {
        let sig = format!(
            "sha256={}",
            common::hex_encode(&python_hmac("sha256", secret.as_bytes(), body.as_bytes()))
        );
        let delivery = format!("d-{secret}");
        let seen = delivered(
            &host,
            "github",
            &[
                JSON,
                ("x-hub-signature-256", &sig),
                ("x-github-event", "workflow_run"),
                ("x-github-delivery", &delivery),
            ],
            body,
        )
        .await;
        assert_eq!(
            (seen["raw_status"].as_str(), seen["status"].as_str()),
            (Some("workflow_run.completed"), Some("succeeded"))
        );
    }
    let unsigned = [
        JSON,
        ("x-github-event", "workflow_run"),
        ("x-github-delivery", "d-x"),
    ];
    assert_eq!(send(&host, "github", &unsigned, body).await.0, 401);

    // Generic HMAC: sha512, base64, prefix, timestamp in the signed template.
    let body = r#"{"event": {"id": "g-1", "at": "2024-02-02T02:02:02Z"}, "order": {"id": "o-9", "state": "PAID", "total": "1234567890.123456789", "currency": "BTC"}}"#;
    let generic = |ts: u64| {
        format!(
            "v1={}",
            B64.encode(python_hmac(
                "sha512",
                b"generic-secret",
                format!("{ts}.{body}").as_bytes()
            ))
        )
    };
    let t = ts.to_string();
    let sig = generic(ts);
    let seen = delivered(
        &host,
        "signed",
        &[JSON, ("x-signature", &sig), ("x-timestamp", &t)],
        body,
    )
    .await;
    assert_eq!(
        (seen["kind"].as_str(), seen["status"].as_str()),
        (Some("payment"), Some("succeeded"))
    );
    assert_eq!(
        seen["amount"]["amount"], "1234567890.123456789",
        "amounts stay exact"
    );
    let old = (ts - 1000).to_string();
    assert_eq!(
        send(
            &host,
            "signed",
            &[
                JSON,
                ("x-signature", &generic(ts - 1000)),
                ("x-timestamp", &old)
            ],
            body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(&host, "signed", &[JSON, ("x-signature", &sig)], body)
            .await
            .0,
        401,
        "timestamp header missing"
    );

    // Selldone: bearer token and, with a sign key, a bcrypt of key:sign-id.
    let order = |action: &str, status: &str, delivery: &str| {
        serde_json::json!({"event": "OnlineOrder", "action": action,
            "shop": {"id": 1, "name": "pajuhaan", "title": "Rocketiox", "domain": "http://localhost:9000/@pajuhaan"},
            "basket": {"id": 9019, "type": "PHYSICAL", "status": status, "delivery_state": delivery, "price": 599.95, "currency": "USD",
                "reserved_at": "2024-08-17T16:29:26.000000Z", "updated_at": format!("2024-08-31T16:40:0{}.000000Z", action.len() % 10)},
            "user": {"id": 2, "name": "Pajuhaan", "email": null, "phone": null}, "customer": null})
        .to_string()
    };
    let sign_id = ts.to_string();
    let hash = bcrypt::hash(format!("{SELLDONE_SIGN_KEY}:{sign_id}"), 4).unwrap();
    let signed = [
        JSON,
        ("authorization", "Bearer sd-token"),
        ("selldone-sign-id", sign_id.as_str()),
        ("selldone-sign-hash", hash.as_str()),
    ];
    let seen = delivered(
        &host,
        "selldone",
        &signed,
        &order("PaymentOrder", "Payed", "CheckQueue"),
    )
    .await;
    assert_eq!(
        (
            seen["kind"].as_str(),
            seen["status"].as_str(),
            seen["order_id"].as_str()
        ),
        (Some("payment"), Some("succeeded"), Some("9019"))
    );
    assert_eq!(
        seen["amount"],
        serde_json::json!({"amount": "599.95", "currency": "USD"})
    );
    let seen = delivered(
        &host,
        "selldone",
        &signed,
        &order("ToCustomer", "Payed", "ToCustomer"),
    )
    .await;
    assert_eq!(seen["status"], "succeeded");
    let (status, _, dup) = send(
        &host,
        "selldone",
        &signed,
        &order("ToCustomer", "Payed", "ToCustomer"),
    )
    .await;
    assert_eq!(
        (status, dup),
        (200, true),
        "Selldone's retry is a duplicate"
    );
    let unsigned = [JSON, ("authorization", "Bearer sd-token")];
    assert_eq!(
        send(
            &host,
            "selldone",
            &unsigned,
            &order("SentOrder", "Payed", "SentOrder")
        )
        .await
        .0,
        401
    );
    let wrong = bcrypt::hash(format!("other-key:{sign_id}"), 4).unwrap();
    let forged = [
        JSON,
        ("authorization", "Bearer sd-token"),
        ("selldone-sign-id", sign_id.as_str()),
        ("selldone-sign-hash", wrong.as_str()),
    ];
    assert_eq!(
        send(
            &host,
            "selldone",
            &forged,
            &order("SentOrder", "Payed", "SentOrder")
        )
        .await
        .0,
        401
    );
    let (status, reply, _) = send(
        &host,
        "selldone",
        &signed,
        r#"{"event":"OnlineOrder","action":"PaymentOrder","basket":{}}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        reply["error"].as_str().unwrap().contains("basket.id"),
        "{reply}"
    );

    assert!(
        !host.logs().contains("jp-password") && !host.logs().contains("sd-token"),
        "a secret reached the log"
    );
}

#[tokio::test]
async fn a_source_that_would_accept_anyone_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!("database = 'h.db'\n[tenants.t]\nplugin = {:?}\n[tenants.t.sources.open]\nprovider = 'finchpay'\n", plugin("recorder")),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("would accept anyone"), "{stderr}");
}
