//! Durable delivery end to end: concurrent duplicates, replay, graceful shutdown, and a `kill -9`
//! under load after which every acknowledged webhook is handled exactly once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    accepted, fincart_status, misbehaving, plugin, wait_for, Backend, Host, TenantToml,
    ADMIN_TOKEN, FINCART_AUTH as AUTH, FINCART_TOKEN as TOKEN, JSON,
};
use serde_json::Value;

fn recorder_tenant(backend: &Backend) -> String {
    TenantToml::new("shop", &plugin("recorder"))
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .retry("max_attempts", 20)
        .retry("base_ms", 50)
        .retry("cap_ms", 500)
        .fincart("fincart")
        .toml()
}

fn rogue_tenant(max_attempts: u32) -> String {
    TenantToml::new("rogue", &plugin("misbehave"))
        .limit("timeout_ms", 10_000)
        .fast_retries(max_attempts)
        .fincart("fc")
        .toml()
}

#[tokio::test]
async fn concurrent_duplicates_are_dispatched_exactly_once() {
    let backend = Backend::start().await;
    let host = Arc::new(Host::start(&recorder_tenant(&backend)).await);
    let body = fincart_status("dup-1", "#D1", "processing", "picked up", 1_700_000_000_000);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (host, body) = (host.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = host.send("shop", "fincart", &[JSON, AUTH], body).await;
            assert_eq!(r.status(), 200);
            let dup = r.headers().contains_key("hookhost-duplicate");
            let reply: Value = r.json().await.unwrap();
            (reply["status"].as_str().unwrap().to_string(), dup)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|(s, dup)| s == "accepted" && !dup)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|(s, dup)| s == "duplicate" && *dup)
            .count(),
        19,
        "{statuses:?}"
    );
    let events = host.events("shop").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["duplicates"], 19);
    let event = host
        .wait_finished(events[0]["seq"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(event["attempts"], 1);
    assert_eq!(backend.count_id(event["event"]["id"].as_str().unwrap()), 1);
}

#[tokio::test]
async fn dead_letters_and_finished_events_are_replayed_from_the_cli() {
    let host = Host::start(&rogue_tenant(1)).await;
    let seq = accepted(
        host.send(
            "rogue",
            "fc",
            &[JSON, AUTH],
            misbehaving("r-1", "fail-then-ok"),
        )
        .await,
    )
    .await;
    let dead = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    let letters = host.admin("/admin/tenants/rogue/dead-letters").await;
    assert_eq!(letters["events"][0]["seq"], seq);

    let out = host.cli(&["replay", "--tenant", "rogue", "--since", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("replayed 1 event: {seq}")
    );
    let done = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "done", "{done}");
    let attempts: Vec<_> = done["attempts_detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts, ["error", "done"]);

    // Nothing left to replay; a finished event can be replayed on its own.
    let out = host.cli(&["replay", "--tenant", "rogue"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nothing to replay"
    );
    let out = host.cli(&["replay", "--event", &seq.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = wait_for(
        "the replayed attempt",
        Duration::from_secs(60),
        async || {
            let e = host.event(seq).await;
            (e["attempts"] == 3 && e["state"] == "done").then_some(e)
        },
    )
    .await;
    assert_eq!(again["attempts_detail"][2]["attempt"], 3);

    // Bad replays say what is wrong.
    let out = host.cli(&["replay", "--event", "99999"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no event 99999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = host.cli(&["replay", "--tenant", "nobody"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    let out = host.cli(&["replay", "--tenant", "rogue", "--since", "soon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    let wrong_token = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
        .args([
            "replay", "--event", "1", "--url", &host.base, "--token", "nope",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&wrong_token.stderr).contains("401"));
    let _ = ADMIN_TOKEN;
}

#[tokio::test]
async fn sigterm_finishes_running_attempts_then_exits_cleanly() {
    let host = Host::start(&rogue_tenant(3)).await;
    let seq = accepted(
        host.send("rogue", "fc", &[JSON, AUTH], misbehaving("s-1", "spin"))
            .await,
    )
    .await;
    wait_for(
        "the attempt to start",
        Duration::from_secs(60),
        async || (host.event(seq).await["state"] == "running").then_some(()),
    )
    .await;
    let (code, dir) = host.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0));
    let host = Host::start_in(dir, &rogue_tenant(3)).await;
    let event = host.event(seq).await;
    assert_eq!(
        event["state"], "done",
        "the running attempt finished before exit: {event}"
    );
    assert_eq!(event["attempts"], 1);
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_acknowledged_and_completes_nothing_twice() {
    let backend = Backend::start().await;
    let tenants = recorder_tenant(&backend);
    let host = Host::start(&tenants).await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (acked, client, url) = (
            acked.clone(),
            client.clone(),
            format!("{}/hooks/shop/fincart", host.base),
        );
        senders.push(tokio::spawn(async move {
            for i in 0..60u64 {
                let order = format!("k-{sender}-{i}");
                let body = fincart_status(
                    &order,
                    &order,
                    "processing",
                    "picked up",
                    1_700_000_000_000 + i,
                );
                let sent = client
                    .post(&url)
                    .header(JSON.0, JSON.1)
                    .header(AUTH.0, AUTH.1)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(order),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the host is gone
                }
            }
        }));
    }
    wait_for(
        "100 acknowledged webhooks",
        Duration::from_secs(60),
        async || (acked.lock().unwrap().len() >= 100).then_some(()),
    )
    .await;
    let dir = host.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let host = Host::start_in(dir, &tenants).await;
    let events = host.wait_all_done("shop", Duration::from_secs(120)).await;
    assert!(
        events.len() >= acked.len() && events.len() < 500,
        "{} journaled, {} acked",
        events.len(),
        acked.len()
    );
    let times = host
        .admin("/admin/tenants/shop/kv?prefix=times/&limit=1000")
        .await;
    let times: std::collections::HashMap<String, String> = times["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut interrupted = 0;
    for order in &acked {
        let event = events
            .iter()
            .find(|e| e["event"]["order_id"] == order.as_str())
            .unwrap_or_else(|| panic!("acknowledged {order} was lost"));
        let id = event["event"]["id"].as_str().unwrap();
        assert_eq!(
            times
                .get(&format!("times/fincart/{id}"))
                .map(String::as_str),
            Some("1"),
            "{order} completed other than once"
        );
        assert!(
            backend.count_id(id) >= 1,
            "{order} never reached the backend"
        );
        let detail = host.event(event["seq"].as_i64().unwrap()).await;
        let outcomes: Vec<&str> = detail["attempts_detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| **o == "done").count(),
            1,
            "{order}: {outcomes:?}"
        );
        interrupted += outcomes.iter().filter(|o| **o == "error").count();
    }
    println!("{} acknowledged before kill -9, {} journaled, {interrupted} attempts interrupted and retried", acked.len(), events.len());
}

#[tokio::test]
async fn an_event_committed_after_its_caller_hung_up_is_still_dispatched() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start().await;
    let host = Host::start(&recorder_tenant(&backend)).await;
    let addr = host.base.strip_prefix("http://").unwrap().to_string();
    for i in 0..40 {
        let body = fincart_status(
            &format!("hang-{i}"),
            &format!("H{i}"),
            "processing",
            "picked up",
            1_700_000_000_000,
        );
        let request = format!(
            "POST /hooks/shop/fincart HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nAuthorization: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        // Hang up without reading the answer, at varying points of the commit.
        tokio::time::sleep(Duration::from_micros(250 * (i % 8))).await;
        drop(stream);
    }
    // Whatever was committed must complete without a restart (it used to wait for one).
    let mut last_count = usize::MAX;
    let events = wait_for(
        "every committed event to complete",
        Duration::from_secs(30),
        async || {
            let events = host.events("shop").await;
            let settled = !events.is_empty()
                && events.len() == last_count
                && events.iter().all(|e| e["state"] == "done");
            last_count = events.len();
            if !settled {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            settled.then_some(events)
        },
    )
    .await;
    println!(
        "{} of 40 hung-up webhooks were committed; all completed",
        events.len()
    );
}

#[tokio::test]
async fn a_flooded_tenant_with_a_slow_plugin_does_not_starve_another() {
    let backend = Backend::start().await;
    let flood = TenantToml::new("flood", &plugin("misbehave"))
        .limit("timeout_ms", 10_000)
        .limit("max_concurrency", 2)
        .fincart("fc");
    let tenants = format!(
        "[dispatch]\nworkers = 3\n\n{flood}\n{quiet}",
        quiet = recorder_tenant(&backend),
    );
    let host = Host::start(&tenants).await;
    // Ten slow events (1.5 s each) for the flooded tenant, then one for the quiet one.
    for i in 0..10 {
        accepted(
            host.send(
                "flood",
                "fc",
                &[JSON, AUTH],
                misbehaving(&format!("f-{i}"), "spin"),
            )
            .await,
        )
        .await;
    }
    let quiet = accepted(
        host.send(
            "shop",
            "fincart",
            &[JSON, AUTH],
            fincart_status("q-1", "#Q1", "pending", "new", 1),
        )
        .await,
    )
    .await;
    let done = host.wait_finished(quiet, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "done");
    // The quiet tenant's event did not wait behind the flood's backlog, and the flood never ran
    // more than its cap at once.
    let flood = host.events("flood").await;
    let unfinished = flood
        .iter()
        .filter(|e| matches!(e["state"].as_str(), Some("pending" | "running")))
        .count();
    assert!(
        unfinished >= 6,
        "the quiet tenant waited for the flood: only {unfinished} flood events left"
    );
    let running = flood.iter().filter(|e| e["state"] == "running").count();
    assert!(running <= 2, "{running} flood events running at once");
}

/// `kill -9` while a burst of retries runs (the merchant backend fails, so every attempt fails
/// and is retried every 50-500 ms): after the restart, with the backend back, every acknowledged
/// event completes exactly once, no event has two `done` attempts, and each order's events
/// completed one after another in journal order.
#[tokio::test]
async fn kill_9_during_a_burst_of_retries_loses_nothing_and_keeps_each_orders_order() {
    let backend = Backend::start().await;
    backend.set_status(500);
    let tenants = recorder_tenant(&backend);
    let host = Host::start(&tenants).await;
    let mut acked = Vec::new();
    for step in 0..3u64 {
        for order in 0..10 {
            let body = fincart_status(
                &format!("burst-{order}"),
                "#burst",
                "processing",
                "step",
                1_700_000_000_000 + step,
            );
            acked.push(accepted(host.send("shop", "fincart", &[JSON, AUTH], body).await).await);
        }
    }
    // Retries under way: on average two failed attempts per event.
    wait_for("a burst of retries", Duration::from_secs(60), async || {
        let attempts: u64 = host
            .events("shop")
            .await
            .iter()
            .map(|e| e["attempts"].as_u64().unwrap_or(0))
            .sum();
        (attempts >= 60).then_some(())
    })
    .await;
    let dir = host.kill();
    backend.set_status(200);

    let host = Host::start_in(dir, &tenants).await;
    let events = host.wait_all_done("shop", Duration::from_secs(120)).await;
    assert_eq!(events.len(), acked.len(), "every acknowledged event, once");
    // (order, seq) → the done attempt's start and end, in ms.
    let mut done: Vec<(String, i64, u64, u64)> = Vec::new();
    // Events that failed before they were done: at least each order's first (the later ones
    // waited behind it).
    let mut retried = 0;
    for seq in &acked {
        let detail = host.event(*seq).await;
        let attempts = detail["attempts_detail"].as_array().unwrap();
        let dones: Vec<&Value> = attempts.iter().filter(|a| a["outcome"] == "done").collect();
        assert_eq!(dones.len(), 1, "event {seq} done other than once: {detail}");
        retried += usize::from(attempts.len() >= 2);
        let id = detail["event"]["id"].as_str().unwrap();
        let times = host
            .admin(&format!("/admin/tenants/shop/kv?prefix=times/fincart/{id}"))
            .await;
        assert_eq!(
            times["entries"][0]["value"], "1",
            "event {seq}'s effects committed other than once"
        );
        let started = dones[0]["started_at_ms"].as_u64().unwrap();
        let ended = started + dones[0]["duration_us"].as_u64().unwrap() / 1000;
        let order = detail["event"]["order_id"].as_str().unwrap().to_string();
        done.push((order, *seq, started, ended));
    }
    assert!(retried >= 10, "only {retried} events were retried");
    done.sort();
    for pair in done.windows(2) {
        let ((order_a, seq_a, _, ended_a), (order_b, seq_b, started_b, _)) = (&pair[0], &pair[1]);
        if order_a == order_b {
            assert!(
                started_b >= ended_a,
                "order {order_a}: event {seq_b} ran before event {seq_a} had finished"
            );
        }
    }
}
