//! Several `hookhost` replicas over one PostgreSQL (`database = "postgres://…"`): real binaries,
//! real HTTP, the test server of `scripts/test.sh` (`HOOKHOST_TEST_PG_URL`). Without that server
//! these tests say so and pass, except in CI, where they fail.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    fincart_status, plugin, target_dir, workspace, Backend, Host, TenantToml, FINCART_AUTH as AUTH,
    JSON,
};

/// The shared test server's URL; `None` (after saying so) when there is none outside CI.
fn test_server(test: &str) -> Option<String> {
    match std::env::var("HOOKHOST_TEST_PG_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "HOOKHOST_TEST_PG_URL is not set, and CI is: the PostgreSQL tests must run in CI"
            )
        }
        Err(_) => {
            eprintln!("skipping {test}: HOOKHOST_TEST_PG_URL is not set (scripts/test.sh starts a server)");
            None
        }
    }
}

/// A URL for a new, empty database on the test server.
async fn fresh_database(test: &str) -> Option<String> {
    let admin = test_server(test)?;
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

/// Tenant `shop`: the recorder plugin, which posts each event's id to `backend`.
fn recorder_tenant(backend: &Backend) -> String {
    TenantToml::new("shop", &plugin("recorder"))
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart("fincart")
        .toml()
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
    let tenants = recorder_tenant(&backend);
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

/// A PostgreSQL server of the test's own, for a test that stops it (the shared one serves the
/// other tests); removed when dropped. Started by `scripts/pg-test-server.sh`, like the shared one.
struct OwnServer {
    state: PathBuf,
    url: String,
}

impl OwnServer {
    fn start(name: &str) -> Option<OwnServer> {
        test_server(name)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = OwnServer {
            state: target_dir().join(format!("pg-{name}.state")),
            url: String::new(),
        };
        let out = succeeded(
            server
                .script("start")
                .env("HOOKHOST_PG_DIR", target_dir().join(format!("pg-{name}")))
                .env("HOOKHOST_PG_PORT", port.to_string()),
        );
        server.url = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .strip_prefix("export HOOKHOST_TEST_PG_URL=")
            .expect("the script prints the URL")
            .to_string();
        Some(server)
    }

    fn script(&self, command: &str) -> Command {
        let mut script = Command::new("bash");
        script
            .arg(workspace().join("scripts/pg-test-server.sh"))
            .arg(command)
            .env("HOOKHOST_PG_STATE", &self.state);
        script
    }

    fn run(&self, command: &str) {
        succeeded(&mut self.script(command));
    }
}

/// Runs the script command; its output, once it succeeded.
fn succeeded(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
    }
}

/// PostgreSQL stops for a few seconds while webhooks arrive: each gets 503 with `Retry-After`
/// (never a 2xx for a webhook that was not stored), and once the server is back, everything
/// resumes by itself: refused webhooks sent again are accepted, and every accepted one runs to
/// `done`, journaled once.
#[tokio::test]
async fn a_database_outage_gets_503_and_everything_resumes_by_itself() {
    let Some(server) = OwnServer::start("outage") else {
        return;
    };
    let backend = Backend::start().await;
    let tenants = recorder_tenant(&backend);
    let host = Host::start_with_config(
        tempfile::tempdir().unwrap(),
        // Short leases: a claim whose commit the outage made ambiguous expires soon.
        &format!(
            "{}\n[dispatch]\nlease_seconds = 3\n",
            config_on(&server.url, &tenants)
        ),
        &[],
    )
    .await;
    let webhook = |i: u64| {
        fincart_status(
            &format!("O{}", i % 5),
            &format!("#R{i}"),
            "processing",
            "picked up",
            1_700_000_000_000 + i,
        )
    };
    for i in 0..20 {
        let r = host
            .send("shop", "fincart", &[JSON, AUTH], webhook(i))
            .await;
        assert_eq!(r.status(), 200);
    }

    server.run("pause");
    for i in 20..30 {
        let r = host
            .send("shop", "fincart", &[JSON, AUTH], webhook(i))
            .await;
        assert_eq!(r.status(), 503, "webhook {i} while the database is down");
        assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    }
    server.run("resume");

    // As a sender would: the refused ones again, and new ones, until accepted.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 20..50 {
        loop {
            let r = host
                .send("shop", "fincart", &[JSON, AUTH], webhook(i))
                .await;
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 503, "webhook {i}");
            assert!(
                Instant::now() < deadline,
                "webhook {i} never accepted after the outage"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let events = host.wait_all_done("shop", Duration::from_secs(60)).await;
    assert_eq!(
        events.len(),
        50,
        "each webhook journaled once\n{}",
        host.logs()
    );
    for event in &events {
        let id = event["event"]["id"].as_str().unwrap();
        assert!(backend.count_id(id) >= 1, "{id} ran");
    }
}

/// Three replicas on one database, webhooks spread across them by four senders, and one replica
/// killed (`kill -9`) under load; senders move on to the others as a load balancer would. Every
/// acknowledged webhook is journaled once and runs to `done`, its kv effect committed once; no
/// order ever has two attempts running at once; and the tenant never runs more than its
/// `max_concurrency` attempts across the three replicas together. The recorder plugin marks
/// each attempt's start and end at a slow backend, so overlaps show in the order it saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_lose_nothing_when_one_is_killed_under_load() {
    let Some(database) = fresh_database("kill_one").await else {
        return;
    };
    const CAP: usize = 3;
    const ORDERS: usize = 24;
    const EVENTS: usize = 240;
    const SENDERS: usize = 4;
    let backend = Backend::start().await;
    backend.set_delay(Duration::from_millis(40));
    let tenants = TenantToml::new("shop", &plugin("recorder"))
        .allowed_hosts(&[&backend.addr])
        .config("trace-url", &format!("http://{}/trace", backend.addr))
        .limit("max_concurrency", CAP)
        .fincart("fincart")
        .toml();
    // Short leases: the killed replica's attempts are taken back within seconds.
    let config = format!(
        "{}\n[dispatch]\nlease_seconds = 3\n",
        config_on(&database, &tenants)
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Host::start_with_config(tempfile::tempdir().unwrap(), &config, &[]).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let webhook = |i: usize| {
        fincart_status(
            &format!("O{}", i % ORDERS),
            &format!("#R{i}"),
            "processing",
            "picked up",
            1_700_000_000_000 + i as u64,
        )
    };
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (bases, acknowledged) = (bases.clone(), acknowledged.clone());
        senders.push(tokio::spawn(async move {
            let client = common::client();
            for i in (s..EVENTS).step_by(SENDERS) {
                // Start at replica i % 3; on a refused connection or a 503, the next one.
                let mut tries = 0;
                loop {
                    let base = &bases[(i + tries) % bases.len()];
                    let sent = client
                        .post(format!("{base}/hooks/shop/fincart"))
                        .header(JSON.0, JSON.1)
                        .header(AUTH.0, AUTH.1)
                        .body(webhook(i))
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(200) => break,
                        Ok(503) | Err(_) => {}
                        Ok(status) => panic!("webhook {i}: {status}"),
                    }
                    tries += 1;
                    assert!(tries < 60, "webhook {i} never acknowledged");
                    if tries % bases.len() == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    let killed = replicas.pop().expect("three replicas");
    // Killed in the thick of it: a third of the webhooks in, and the replica running attempts.
    common::wait_for(
        "a third of the webhooks acknowledged and the third replica at work",
        Duration::from_secs(60),
        async || {
            let ran = killed
                .metric("hookhost_attempts_total", &[("tenant", "shop")])
                .await;
            (acknowledged.load(std::sync::atomic::Ordering::SeqCst) >= EVENTS / 3 && ran >= 1.0)
                .then_some(())
        },
    )
    .await;
    let killed_logs = killed.logs();
    let _ = killed.kill();
    backend.mark("/kill", serde_json::json!({}));
    for sender in senders {
        sender.await.expect("a sender failed");
    }

    let [a, b] = &replicas[..] else {
        unreachable!()
    };
    let logs = || format!("{}\n{}\n(killed)\n{killed_logs}", a.logs(), b.logs());
    let events = a.wait_all_done("shop", Duration::from_secs(120)).await;
    assert_eq!(
        events.len(),
        EVENTS,
        "each webhook journaled once\n{}",
        logs()
    );
    let kv = b.kv("shop").await;
    let mut refs = std::collections::HashSet::new();
    for event in &events {
        let reference = event["event"]["merchant_ref"].as_str().unwrap().to_string();
        assert!(
            refs.insert(reference.clone()),
            "{reference} journaled twice"
        );
        let id = event["event"]["id"].as_str().unwrap();
        assert_eq!(
            kv.get(&format!("times/fincart/{id}")).map(String::as_str),
            Some("1"),
            "{reference}: its kv effect committed exactly once"
        );
        if event["attempts"] != 1 {
            // Attempts before the last: interrupted by the kill (their kv writes discarded).
            let detail = a.event(event["seq"].as_i64().unwrap()).await;
            let attempts = detail["attempts_detail"].as_array().unwrap();
            let (last, earlier) = attempts.split_last().unwrap();
            assert_eq!(last["outcome"], "done", "{detail}");
            for attempt in earlier {
                assert_ne!(attempt["outcome"], "done", "one done only: {detail}");
            }
        }
    }

    // The attempts' starts and ends, in the order the backend saw them. An attempt the kill cut
    // short never ends: it ran until the kill at the latest.
    let trace = backend.received();
    let ended: std::collections::HashSet<(String, u64)> = trace
        .iter()
        .filter(|(_, m)| m["phase"] == "end")
        .map(|(_, m)| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut running: HashMap<(String, u64), String> = HashMap::new();
    let (mut most, mut cut_short) = (0, 0);
    for (path, mark) in &trace {
        if path == "/kill" {
            let before = running.len();
            running.retain(|attempt, _| ended.contains(attempt));
            cut_short += before - running.len();
            continue;
        }
        let attempt = (
            mark["id"].as_str().unwrap().to_string(),
            mark["attempt"].as_u64().unwrap(),
        );
        let order = mark["order"].as_str().unwrap().to_string();
        if mark["phase"] == "start" {
            assert!(
                !running.values().any(|o| *o == order),
                "order {order}: {attempt:?} started while another attempt of the order ran"
            );
            assert!(
                running.insert(attempt.clone(), order).is_none(),
                "{attempt:?} started twice"
            );
            most = most.max(running.len());
            assert!(
                running.len() <= CAP,
                "{} attempts ran at once across the replicas; max_concurrency is {CAP}",
                running.len()
            );
        } else {
            assert!(
                running.remove(&attempt).is_some(),
                "{attempt:?} ended without a start"
            );
        }
    }
    assert!(running.is_empty(), "attempts that never ended: {running:?}");
    assert!(
        most >= 2,
        "attempts overlapped (the bound was exercised): at most {most} at once"
    );
    eprintln!("at most {most} attempts at once; {cut_short} cut short by the kill");
}

/// A plugin published on one replica (`hookhost publish`) is served by every replica on the
/// database, and wins over the plugin file; a component that does not load is refused with the
/// reason and changes nothing.
#[tokio::test]
async fn a_plugin_published_on_one_replica_is_served_by_every_replica() {
    let Some(database) = fresh_database("publish").await else {
        return;
    };
    let backend = Backend::start().await;
    // The replicas' plugin file, a copy of the test's own (which other tests use).
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("recorder.wasm");
    std::fs::copy(plugin("recorder"), &file).unwrap();
    let tenants = TenantToml::new("shop", &file)
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart("fincart")
        .toml();
    let config = config_on(&database, &tenants);
    let a = Host::start_with_config(tempfile::tempdir().unwrap(), &config, &[]).await;
    let b = Host::start_with_config(tempfile::tempdir().unwrap(), &config, &[]).await;
    async fn serving(host: &Host) -> Option<String> {
        let tenants = host.admin("/admin/tenants").await;
        tenants["tenants"][0]["plugin"]["version"]
            .as_str()
            .map(str::to_string)
    }
    for host in [&a, &b] {
        common::wait_for("the file's version", Duration::from_secs(60), async || {
            serving(host).await
        })
        .await;
    }
    let from_file = serving(&a).await.unwrap();

    let junk = files.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let refused = a.cli(&["publish", "--tenant", "shop", junk.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("422") && stderr.contains("not deployed"),
        "{stderr}"
    );
    assert_eq!(serving(&a).await.unwrap(), from_file);

    let candidate = files.path().join("v2.wasm");
    std::fs::write(&candidate, common::variant_of(&file, "v2")).unwrap();
    let published = a.cli(&[
        "publish",
        "--tenant",
        "shop",
        candidate.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    let version = answer["version"].as_str().unwrap().to_string();
    assert_ne!(version, from_file);
    assert_eq!(
        serving(&a).await.unwrap(),
        version,
        "the publishing replica at once"
    );
    common::wait_for(
        "the other replica to serve it",
        Duration::from_secs(10),
        async || (serving(&b).await.as_deref() == Some(version.as_str())).then_some(()),
    )
    .await;

    // The file changes on disk: a published version wins, on both.
    common::replace_file(&file, &common::variant_of(&plugin("recorder"), "v3"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(serving(&a).await.unwrap(), version);
    assert_eq!(serving(&b).await.unwrap(), version);

    let body = fincart_status("O1", "#R1", "processing", "picked up", 1_700_000_000_000);
    let r = b.send("shop", "fincart", &[JSON, AUTH], body).await;
    assert_eq!(r.status(), 200);
    let events = a.wait_all_done("shop", Duration::from_secs(30)).await;
    let detail = a.event(events[0]["seq"].as_i64().unwrap()).await;
    assert_eq!(
        detail["attempts_detail"][0]["plugin_version"], version,
        "{detail}"
    );

    // A merchant token made on one replica works on the other, which shows the same history.
    let created = a.cli(&[
        "tokens", "create", "--tenant", "shop", "--name", "portal", "--scope", "read", "--json",
    ]);
    assert!(created.status.success());
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let history = b.cli_as(
        created["token"].as_str().unwrap(),
        &["versions", "--tenant", "shop", "--json"],
    );
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let kinds: Vec<&str> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deploy", "refused"], "{history}");
    assert_eq!(history["active"], 2);
}

/// A config reload on one replica (its file changed, then `POST /admin/config/reload`) is stored
/// in the database and applied by every replica: a tenant added there takes webhooks on another
/// replica, whose config status says where the change came from.
#[tokio::test]
async fn a_config_reload_on_one_replica_applies_on_every_replica() {
    let Some(database) = fresh_database("config_reload").await else {
        return;
    };
    let backend = Backend::start().await;
    let shop = recorder_tenant(&backend);
    let a_dir = tempfile::tempdir().unwrap();
    let a_config = a_dir.path().join("hookhost.toml");
    let a = Host::start_with_config(a_dir, &config_on(&database, &shop), &[]).await;
    let b = Host::start_with_config(
        tempfile::tempdir().unwrap(),
        &config_on(&database, &shop),
        &[],
    )
    .await;
    let webhook = || fincart_status("L1", "#L1", "processing", "picked up", 1_700_000_000_000);
    let r = b.send("late", "fincart", &[JSON, AUTH], webhook()).await;
    assert_eq!(r.status(), 404, "no such tenant yet");

    let late = TenantToml::new("late", &plugin("recorder"))
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart("fincart")
        .toml();
    std::fs::write(&a_config, config_on(&database, &format!("{shop}\n{late}"))).unwrap();
    let (status, change) = a.admin_post("/admin/config/reload").await;
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["added"], serde_json::json!(["late"]), "{change}");

    common::wait_for(
        "the other replica to apply the reload",
        Duration::from_secs(20),
        async || {
            let config = b.admin("/admin/config").await;
            (config["last_applied"]["from_another_replica"] == true).then_some(config)
        },
    )
    .await;
    let r = b.send("late", "fincart", &[JSON, AUTH], webhook()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let events = b.wait_all_done("late", Duration::from_secs(60)).await;
    assert_eq!(events.len(), 1, "{}", b.logs());
}
