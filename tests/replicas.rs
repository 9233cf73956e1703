//! Several `hookhost` replicas over one PostgreSQL (`database = "postgres://…"`): real binaries,
//! real HTTP, the test server of `scripts/test.sh` (`HOOKHOST_TEST_PG_URL`). Without that server
//! these tests say so and pass, except in CI, where they fail.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{fincart_status, plugin, Backend, Host, TenantToml, FINCART_AUTH as AUTH, JSON};

/// A URL for a new, empty database on the test server.
async fn fresh_database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("HOOKHOST_TEST_PG_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "HOOKHOST_TEST_PG_URL is not set, and CI is: the PostgreSQL tests must run in CI"
            );
        }
        eprintln!(
            "skipping {test}: HOOKHOST_TEST_PG_URL is not set (scripts/test.sh starts a server)"
        );
        return None;
    };
    let name = format!("hh_e2e_{}_{test}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL server answers");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (server, _) = admin.rsplit_once('/').expect("a URL with a database");
    Some(format!("{server}/{name}"))
}

/// The test config, on `database`.
fn config_on(database: &str, tenants_toml: &str) -> String {
    common::config_text(tenants_toml).replace(
        "database = \"hookhost.db\"",
        &format!("database = {database:?}"),
    )
}

/// Two replicas on one database, webhooks sent alternately to each: every event runs once (one
/// attempt, one request to the backend), and each order's events reach the backend in journal
/// order, whichever replica took them in or ran them.
#[tokio::test]
async fn two_replicas_run_every_event_once_and_each_order_in_journal_order() {
    let Some(database) = fresh_database("two_replicas").await else {
        return;
    };
    let backend = Backend::start().await;
    let tenants = TenantToml::new("shop", &plugin("recorder"))
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart("fincart")
        .toml();
    let config = config_on(&database, &tenants);
    let a = Host::start_with_config(tempfile::tempdir().unwrap(), &config, &[]).await;
    let b = Host::start_with_config(tempfile::tempdir().unwrap(), &config, &[]).await;
    const ORDERS: usize = 8;
    const EVENTS: usize = 64;
    for i in 0..EVENTS {
        let host = if i % 2 == 0 { &a } else { &b };
        let body = fincart_status(
            &format!("O{}", i % ORDERS),
            &format!("#R{i}"),
            "processing",
            "picked up",
            1_700_000_000_000 + i as u64,
        );
        let r = host.send("shop", "fincart", &[JSON, AUTH], body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    let events = a.wait_all_done("shop", Duration::from_secs(60)).await;
    assert_eq!(events.len(), EVENTS, "{}\n{}", a.logs(), b.logs());
    // Both replicas see the same journal.
    assert_eq!(b.events("shop").await.len(), EVENTS);
    let mut seq_of = HashMap::new();
    let mut order_of = HashMap::new();
    for event in &events {
        assert_eq!(event["attempts"], 1, "{event}");
        let id = event["event"]["id"].as_str().unwrap().to_string();
        assert_eq!(backend.count_id(&id), 1, "{id} reached the backend once");
        seq_of.insert(id.clone(), event["seq"].as_i64().unwrap());
        order_of.insert(id, event["event"]["order_id"].as_str().unwrap().to_string());
    }
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for (_, body) in backend.received() {
        let id = body["id"].as_str().unwrap();
        let (order, seq) = (&order_of[id], seq_of[id]);
        let previous = last_seq.insert(order.clone(), seq).unwrap_or(0);
        assert!(
            previous < seq,
            "order {order}: event {seq} ran after {previous}"
        );
    }
}
