//! Regression tests for the weaknesses a hostile review of the running binary found: each drives
//! the real `hookhost serve` over loopback HTTP (or its CLI) the way the review did, and fails on
//! the code before the fix. Bounds on time are generous (seconds where the fixed host takes
//! milliseconds and the unfixed one took over a minute), so a busy machine does not fail them.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{
    accepted, misbehaving, now_secs, plugin, python_hmac, wait_for, Host, TenantToml, ADMIN_TOKEN,
    JSON,
};
use serde_json::Value;

/// Tenant `t` running the test plugin `plugin_crate`, then `rest` (its sources, limits, and any
/// other section of the config).
fn tenant_t(plugin_crate: &str, rest: &str) -> String {
    format!("[tenants.t]\nplugin = {:?}\n{rest}", plugin(plugin_crate))
}

/// Tenant `t` on the recorder plugin with one Fincart source `s` (token `t`).
fn fincart_tenant() -> String {
    fincart_tenant_with_http("")
}

/// [`fincart_tenant`], with these `[http]` settings.
fn fincart_tenant_with_http(settings: &str) -> String {
    let tenant = TenantToml::new("t", &plugin("recorder")).fincart_with_token("s", "t");
    format!("[http]\n{settings}\n{tenant}")
}

/// A raw TCP connection to the host, to send requests byte by byte as a slow client would.
fn raw_connection(host: &Host) -> std::net::TcpStream {
    std::net::TcpStream::connect(host.base.trim_start_matches("http://")).unwrap()
}

/// A webhook that the generic mapping below accepts.
fn generic_body(id: &str) -> String {
    format!(r#"{{"id": "{id}", "status": "paid"}}"#)
}

/// Review finding 1: a signature header with ~60,000 entries and a 1 MiB body made the host run
/// one HMAC over the body per entry per secret on an async worker: four such requests took over a
/// minute to refuse and `/healthz` stalled with them. Now each is refused at once, and the MAC
/// (when there is one to compute) runs off the async workers.
#[tokio::test]
async fn signature_floods_are_refused_quickly_and_do_not_stall_the_host() {
    let host = Host::start(&tenant_t(
        "recorder",
        &format!(
            r#"
[tenants.t.sources.stripe]
provider = "stripe"
secret = ["whsec_one", "whsec_two"]
[tenants.t.sources.standard]
provider = "standard-webhooks"
secret = ["whsec_{key}", "whsec_{key}"]
"#,
            key = B64.encode(b"standard-webhooks-flood-test-key")
        ),
    ))
    .await;
    let body = format!(
        r#"{{"id": "evt_1", "type": "payment_intent.succeeded", "pad": "{}"}}"#,
        "x".repeat((1 << 20) - 100)
    );
    let t = now_secs();
    let stripe_flood = format!("t={t},{}v1=00", "v1=,".repeat(60_000));
    // Entries of the right length (32 bytes) that do not match: each would cost a MAC per secret.
    let right_length = B64.encode([7u8; 32]);
    let standard_flood = format!("v1,{right_length} ").repeat(4_000);
    let started = Instant::now();
    let mut floods = Vec::new();
    for i in 0..4 {
        let (source, headers) = if i % 2 == 0 {
            (
                "stripe",
                vec![("stripe-signature".to_string(), stripe_flood.clone())],
            )
        } else {
            (
                "standard",
                vec![
                    ("webhook-id".to_string(), format!("msg_{i}")),
                    ("webhook-timestamp".to_string(), t.to_string()),
                    ("webhook-signature".to_string(), standard_flood.clone()),
                ],
            )
        };
        let url = format!("{}/hooks/t/{source}", host.base);
        let body = body.clone();
        floods.push(tokio::spawn(async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in &headers {
                request = request.header(k.as_str(), v.as_str());
            }
            let response = request.send().await.expect("flood request");
            (response.status().as_u16(), started.elapsed())
        }));
    }
    // Meanwhile the host keeps answering: probe it until every flood has its answer.
    let mut slowest_health = Duration::ZERO;
    let mut probes = 0;
    loop {
        let probe = Instant::now();
        let health = reqwest::get(format!("{}/healthz", host.base))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        slowest_health = slowest_health.max(probe.elapsed());
        probes += 1;
        if floods.iter().all(|f| f.is_finished()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the floods are still unanswered after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health_took = slowest_health;
    let mut slowest = Duration::ZERO;
    for flood in floods {
        let (status, took) = flood.await.unwrap();
        assert_eq!(status, 401);
        slowest = slowest.max(took);
    }
    println!("4 signature floods with 1 MiB bodies refused in {slowest:?}; slowest of {probes} /healthz meanwhile {health_took:?}");
    assert!(
        slowest < Duration::from_secs(10),
        "flooded signatures took {slowest:?} to refuse"
    );
    assert!(
        health_took < Duration::from_secs(5),
        "/healthz took {health_took:?}"
    );
}

/// Review finding 3: header names chosen by the operator (Sevi's `header`, Juspay's
/// `required_headers`, the generic token's name, FinchPay's `token_name`) were journaled with their
/// secret values and shown by the admin API. Now the headers a source's own authentication reads
/// are stripped: the secret is in neither the admin API's answer nor the database files.
#[tokio::test]
async fn credentials_in_operator_named_headers_are_never_journaled() {
    let host = Host::start(&tenant_t(
        "recorder",
        r#"
[tenants.t.sources.sevi]
provider = "sevi"
token = "SEVI-SECRET-VALUE"
header = "X-Sevi-Auth"
[tenants.t.sources.juspay]
provider = "juspay"
username = "payouts"
password = "JUSPAY-PASSWORD-VALUE"
required_headers = { "X-Env" = "JUSPAY-HEADER-SECRET" }
[tenants.t.sources.finch]
provider = "finchpay"
token = "FINCH-SECRET-VALUE"
token_in = "header"
token_name = "X-Finch"
[tenants.t.sources.generic]
provider = "generic"
auth = { scheme = "token", token = "GENERIC-SECRET-VALUE", name = "X-Partner" }
mapping = { id = "id", status = "status" }
"#,
    ))
    .await;
    let basic = format!("Basic {}", B64.encode("payouts:JUSPAY-PASSWORD-VALUE"));
    let cases = [
        (
            "sevi",
            vec![("x-sevi-auth", "SEVI-SECRET-VALUE")],
            r#"{"order": {"id": "S-1", "paymentStatus": "PAID"}}"#.to_string(),
        ),
        (
            "juspay",
            vec![
                ("authorization", basic.as_str()),
                ("x-env", "JUSPAY-HEADER-SECRET"),
            ],
            r#"{"id": "w1", "label": "ORDER", "value": "SUCCESS", "info": {"id": "o1"}}"#
                .to_string(),
        ),
        (
            "finch",
            vec![("x-finch", "FINCH-SECRET-VALUE")],
            r#"{"id": "c1", "status": "COMPLETE", "amount_from": "1", "asset_from": "EUR"}"#
                .to_string(),
        ),
        (
            "generic",
            vec![("x-partner", "GENERIC-SECRET-VALUE")],
            generic_body("g1"),
        ),
    ];
    let mut seqs = Vec::new();
    for (source, headers, body) in &cases {
        let mut all = headers.clone();
        all.push(JSON);
        all.push(("x-kept-for-the-plugin", "visible"));
        seqs.push(accepted(host.send("t", source, &all, body.as_str()).await).await);
    }
    let secrets = [
        "SEVI-SECRET-VALUE",
        "JUSPAY-PASSWORD-VALUE",
        "JUSPAY-HEADER-SECRET",
        "FINCH-SECRET-VALUE",
        "GENERIC-SECRET-VALUE",
        B64.encode("payouts:JUSPAY-PASSWORD-VALUE").leak(),
    ];
    for seq in &seqs {
        let detail = host.wait_finished(*seq, Duration::from_secs(60)).await;
        let shown = detail.to_string();
        for secret in secrets {
            assert!(
                !shown.contains(secret),
                "event {seq} shows {secret}: {shown}"
            );
        }
        assert!(
            shown.contains("x-kept-for-the-plugin"),
            "other headers are still kept: {shown}"
        );
    }
    // The database files themselves (the WAL too: recent commits live there).
    for entry in std::fs::read_dir(host.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("hookhost.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds {secret}"
            );
        }
    }
}

/// Review finding 4: a partial request head held open for 45 s was still served. Now hyper's
/// header-read timer closes it, and `http.max_connections` caps connections served at once.
#[tokio::test]
async fn slow_request_heads_are_cut_off_and_connections_are_capped() {
    let host = Host::start(&fincart_tenant_with_http(
        "header_read_timeout_ms = 3000\nmax_connections = 2",
    ))
    .await;
    // Half a request head, then nothing.
    let mut slow = raw_connection(&host);
    slow.write_all(b"POST /hooks/t/s HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer); // EOF (or a reset) when the host closes it
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "a half-sent head kept its connection for {took:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a half-sent request was served: {}",
        String::from_utf8_lossy(&answer)
    );

    // Two idle connections take both slots: a third caller waits until one goes away.
    let idle: Vec<_> = (0..2).map(|_| raw_connection(&host)).collect();
    // (Both are closed by the 3 s header timer at the latest: ask well before.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let capped = reqwest::Client::builder()
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap()
        .get(format!("{}/healthz", host.base))
        .send()
        .await;
    assert!(capped.is_err(), "a third connection was served: {capped:?}");
    drop(idle);
    let served = reqwest::Client::new()
        .get(format!("{}/healthz", host.base))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("served once the idle connections closed");
    assert_eq!(served.status(), 200);
}

/// Review finding 5: `Selldone-Sign-Hash: $2b$31$...` made the host run bcrypt at cost 31.
/// Now a hash of any cost but the configured one is refused before hashing.
#[tokio::test]
async fn a_selldone_hash_of_a_huge_cost_is_refused_before_hashing() {
    let host = Host::start(&tenant_t(
        "recorder",
        r#"
[tenants.t.sources.selldone]
provider = "selldone"
token = "sd-token"
sign_key = "sd-sign-key"
"#,
    ))
    .await;
    let sign_id = now_secs().to_string();
    let hash = format!("$2b$31${}", "a".repeat(53));
    let started = Instant::now();
    let r = host
        .send(
            "t",
            "selldone",
            &[
                JSON,
                ("authorization", "Bearer sd-token"),
                ("selldone-sign-id", &sign_id),
                ("selldone-sign-hash", &hash),
            ],
            r#"{"basket": {"id": 1}}"#,
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        host.logs().contains("unexpected bcrypt cost"),
        "{}",
        host.logs()
    );
}

/// Review finding 6: the sink took requests of up to 2 MB without a credential, kept 1,000 of
/// them and logged each body. Now its route exists only when enabled, its bodies are bounded and
/// never logged.
#[tokio::test]
async fn the_sink_exists_only_when_enabled_and_never_logs_bodies() {
    let tenant = fincart_tenant();
    let host = Host::start(&tenant).await; // the test config enables the sink
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/sink/backend", host.base))
        .body(r#"{"card": "SINK-BODY-MARKER"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kept = host.admin("/admin/sink").await;
    assert!(kept.to_string().contains("SINK-BODY-MARKER"));
    assert!(
        !host.logs().contains("SINK-BODY-MARKER"),
        "the sink logged a body"
    );
    let big = client
        .post(format!("{}/sink/backend", host.base))
        .body(vec![b'x'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);

    let off = common::config_text(&tenant).replace("sink = true", "sink = false");
    let host = Host::start_with_config(tempfile::tempdir().unwrap(), &off, &[]).await;
    let r = client
        .post(format!("{}/sink/backend", host.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Review finding 7: a refused config reload quoted the offending line, `token = "...secret...`,
/// in the 422 answer, `GET /admin/config` and the log. Now it names line, column and key only.
#[tokio::test]
async fn a_refused_reload_never_echoes_a_secret() {
    let tenant = |token: &str| {
        format!(
            "[tenants.t]\nplugin = {:?}\n[tenants.t.sources.s]\nprovider = \"fincart\"\ntoken = {token}\n",
            plugin("recorder")
        )
    };
    let host = Host::start(&tenant("\"fine\"")).await;
    // An unterminated string holding the secret.
    host.write_config(&tenant("\"RELOAD-SECRET-VALUE"));
    let (status, answer) = host.admin_post("/admin/config/reload").await;
    assert_eq!(status, 422, "{answer}");
    let shown = answer.to_string();
    assert!(!shown.contains("RELOAD-SECRET"), "{shown}");
    assert!(
        shown.contains("line ") && shown.contains("column "),
        "{shown}"
    );
    // A secret where a number belongs.
    host.write_config(&format!(
        "{}[tenants.t.limits]\ntimeout_ms = \"RELOAD-SECRET-VALUE\"\n",
        tenant("\"fine\"")
    ));
    let (status, answer) = host.admin_post("/admin/config/reload").await;
    assert_eq!(status, 422);
    assert!(!answer.to_string().contains("RELOAD-SECRET"), "{answer}");
    assert!(answer.to_string().contains("timeout_ms"), "{answer}");
    let config = host.admin("/admin/config").await;
    assert!(!config.to_string().contains("RELOAD-SECRET"), "{config}");
    assert!(!host.logs().contains("RELOAD-SECRET"), "the log quotes it");
}

/// Review finding 8: `hookhost send` printed the query token when the host was unreachable (the
/// HTTP client's error names the URL).
#[test]
fn send_never_prints_the_query_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("h.toml");
    std::fs::write(
        &config,
        common::config_text(&format!(
            "[tenants.t]\nplugin = {:?}\n[tenants.t.sources.fp]\nprovider = \"finchpay\"\ntoken = \"QUERY-TOKEN-VALUE\"\n[tenants.t.sources.fpath]\nprovider = \"finchpay\"\ntoken = \"PATH-TOKEN-VALUE\"\ntoken_in = \"path\"\n",
            plugin("recorder")
        )),
    )
    .unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for source in ["fp", "fpath"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
            .args([
                "send", "finchpay", "--tenant", "t", "--source", source, "--config",
            ])
            .arg(&config)
            .args(["--url", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(printed.contains("cannot reach hookhost"), "{printed}");
        assert!(!printed.contains("TOKEN-VALUE"), "{printed}");
    }
}

/// Review finding 9: `/metrics` and `/readyz` listed every tenant without a credential, and the
/// 404 told an unknown tenant from an unknown source.
#[tokio::test]
async fn tenants_cannot_be_enumerated() {
    let host = Host::start(&format!(
        r#"
[metrics]
token = "METRICS-TOKEN"

[tenants.secret-merchant]
plugin = {plugin:?}
[tenants.secret-merchant.sources.s]
provider = "fincart"
token = "t"
"#,
        plugin = plugin("recorder"),
    ))
    .await;
    let client = reqwest::Client::new();
    let unknown_tenant = host.send("nobody", "s", &[JSON], "{}").await;
    let unknown_source = host.send("secret-merchant", "nothing", &[JSON], "{}").await;
    assert_eq!(unknown_tenant.status(), 404);
    assert_eq!(unknown_source.status(), 404);
    assert_eq!(
        unknown_tenant.text().await.unwrap(),
        unknown_source.text().await.unwrap(),
        "the answers tell the two apart"
    );

    let metrics = |token: Option<&str>| {
        let mut r = client.get(format!("{}/metrics", host.base));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        r.send()
    };
    assert_eq!(metrics(None).await.unwrap().status(), 401);
    assert_eq!(metrics(Some("wrong")).await.unwrap().status(), 401);
    let scraped = metrics(Some("METRICS-TOKEN")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("secret-merchant"));

    wait_for("the plugin to load", Duration::from_secs(60), async || {
        let r = client
            .get(format!("{}/readyz", host.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let bare = client
        .get(format!("{}/readyz", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    let bare: Value = bare.json().await.unwrap();
    assert_eq!(bare, serde_json::json!({ "ready": true }));
    let detailed: Value = client
        .get(format!("{}/readyz", host.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detailed["store"], "ok", "{detailed}");
}

/// Found by reading: a plugin's kv writes were buffered in host memory without a bound other than
/// `kv_max_keys × kv_value_bytes` (~25 GiB). Now an attempt may buffer `limits.kv_write_bytes`
/// (16 MiB by default); past it `set` fails.
#[tokio::test]
async fn a_plugin_cannot_buffer_unbounded_kv_writes() {
    let host = Host::start(&tenant_t(
        "misbehave",
        r#"
[tenants.t.sources.s]
provider = "fincart"
token = "t"
"#,
    ))
    .await;
    let seq = accepted(
        host.send(
            "t",
            "s",
            &[JSON, ("authorization", "t")],
            misbehaving("o1", "kvhoard"),
        )
        .await,
    )
    .await;
    let done = host.wait_finished(seq, Duration::from_secs(60)).await;
    let reason = done["attempts_detail"][0]["reason"].as_str().unwrap_or("");
    // 16 MiB / (256 KiB value + its key) = 63 values; the 64th is refused.
    assert!(reason.starts_with("kv refused after 63 values"), "{done}");
}

/// Found by reading: each refused webhook wrote a warning before any rate limit, so a flood of
/// unauthenticated requests flooded the log. Now a source logs the first refusal, then at most one
/// line per 10 s with the count.
#[tokio::test]
async fn an_unauthenticated_flood_does_not_flood_the_log() {
    let host = Host::start(&fincart_tenant()).await;
    for _ in 0..200 {
        let r = host
            .send("t", "s", &[JSON, ("authorization", "wrong")], "{}")
            .await;
        assert_eq!(r.status(), 401);
    }
    let lines = host
        .logs()
        .lines()
        .filter(|l| l.contains("webhook rejected: unauthorized"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 200 refusals"
    );
    // Every refusal is still counted.
    let refused = host
        .metric(
            "hookhost_webhooks_rejected_total",
            &[("tenant", "t"), ("reason", "unauthorized")],
        )
        .await;
    assert_eq!(refused, 200.0);
}

/// Senders built on Svix sign Standard Webhooks under `svix-` header names; the signature here
/// is computed by Python's `hmac`, not by the code under test.
#[tokio::test]
async fn svix_header_names_are_accepted_on_standard_webhooks_sources() {
    let key = b"svix-alias-test-key-of-32-bytes!";
    let host = Host::start(&tenant_t(
        "recorder",
        &format!(
            r#"
[tenants.t.sources.svix]
provider = "standard-webhooks"
secret = "whsec_{key}"
"#,
            key = B64.encode(key)
        ),
    ))
    .await;
    let body = r#"{"type": "invoice.paid", "data": {"id": "inv_9"}}"#;
    let ts = now_secs().to_string();
    let sig = B64.encode(python_hmac(
        "sha256",
        key,
        format!("msg_svix.{ts}.{body}").as_bytes(),
    ));
    let signature = format!("v1,{sig}");
    let headers = [
        JSON,
        ("svix-id", "msg_svix"),
        ("svix-timestamp", ts.as_str()),
        ("svix-signature", signature.as_str()),
    ];
    let seq = accepted(host.send("t", "svix", &headers, body).await).await;
    let detail = host.wait_finished(seq, Duration::from_secs(60)).await;
    assert_eq!(detail["state"], "done", "{detail}");
    assert!(!detail.to_string().contains(&sig), "the signature was kept");
    let wrong = [
        JSON,
        ("svix-id", "msg_svix2"),
        ("svix-timestamp", ts.as_str()),
        ("svix-signature", signature.as_str()),
    ];
    assert_eq!(host.send("t", "svix", &wrong, body).await.status(), 401);
}

/// The console's Content-Security-Policy allowed inline scripts; now its script and style are
/// served files and the policy allows nothing inline.
#[tokio::test]
async fn the_console_allows_no_inline_script() {
    let host = Host::start("").await;
    let page = reqwest::get(format!("{}/console", host.base))
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<style>"),
        "inline code left in the page"
    );
    for (path, kind) in [
        ("/console/app.js", "javascript"),
        ("/console/app.css", "css"),
    ] {
        let r = reqwest::get(format!("{}{path}", host.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().contains(kind));
    }
}

/// Config values that would panic or weaken the host are refused at start, with the reason.
#[test]
fn unsafe_settings_are_refused_at_start() {
    let serve = |config: &str, prepare: &dyn Fn(&std::path::Path)| {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let path = dir.path().join("h.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A host that accepts the config serves until killed: give it a while to refuse.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("hookhost started with {config}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "started with {config}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    };
    let tenant = |limits: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"h.db\"\n[tenants.t]\nplugin = {:?}\n{limits}[tenants.t.sources.s]\nprovider = \"fincart\"\ntoken = \"t\"\n",
            plugin("recorder")
        )
    };
    // A rate so small the limiter's wait overflowed (it panicked holding its lock).
    let err = serve(
        &tenant("[tenants.t.limits]\ningest_per_second = 1e-300\n"),
        &|_| {},
    );
    assert!(err.contains("ingest_per_second"), "{err}");
    // A precompiled cache others may write to: its native code is loaded without verification.
    let err = serve(&tenant(""), &|dir| {
        use std::os::unix::fs::PermissionsExt as _;
        let cache = dir.join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    });
    assert!(
        err.contains("writable by its group or by everyone"),
        "{err}"
    );
    // trusted_proxy_header without the proxies it may be read from.
    let err = serve(
        &tenant("").replace(
            "token = \"t\"\n",
            "token = \"t\"\nallow_ips = [\"203.0.113.0/24\"]\ntrusted_proxy_header = \"X-Forwarded-For\"\n",
        ),
        &|_| {},
    );
    assert!(err.contains("trusted_proxies"), "{err}");
    // A Selldone sign key too long for bcrypt's 72 bytes to also bind the timestamp.
    let err = serve(
        &tenant("").replace(
            "provider = \"fincart\"\ntoken = \"t\"\n",
            &format!(
                "provider = \"selldone\"\ntoken = \"t\"\nsign_key = \"{}\"\n",
                "k".repeat(64)
            ),
        ),
        &|_| {},
    );
    assert!(err.contains("longer than 58 bytes"), "{err}");
}

/// Review finding 4, third part: bodies buffered before authentication are capped across all
/// connections. One slow upload holding the whole budget makes the next webhook wait, then get
/// 503 + `Retry-After` instead of buffering without bound; once it goes away, webhooks flow again.
#[tokio::test]
async fn unauthenticated_bodies_share_a_bounded_budget() {
    let host = Host::start(&fincart_tenant_with_http(
        "max_pending_body_bytes = 1048576",
    ))
    .await;
    let mut slow = raw_connection(&host);
    slow.write_all(
        b"POST /hooks/t/s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"orderId\": ",
    )
    .unwrap();
    // The handler counts a webhook as received in the same step as it reserves its body.
    wait_for(
        "the slow upload to reach the handler",
        Duration::from_secs(30),
        async || {
            let received = host
                .metric(
                    "hookhost_webhooks_received_total",
                    &[("tenant", "t"), ("source", "s")],
                )
                .await;
            (received >= 1.0).then_some(())
        },
    )
    .await;
    let body = common::fincart_status("o-1", "#1", "pending", "", 1);
    let refused = host
        .send("t", "s", &[JSON, ("authorization", "t")], body.clone())
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        host.metric(
            "hookhost_webhooks_rejected_total",
            &[("tenant", "t"), ("reason", "busy")]
        )
        .await,
        1.0,
        "the refusal is counted as busy"
    );
    drop(slow);
    accepted(
        host.send("t", "s", &[JSON, ("authorization", "t")], body)
            .await,
    )
    .await;
}

/// `hookhost send shopify` sends what a real Shopify delivery carries (its own validator requires
/// `X-Shopify-API-Version`): checked in what the host journaled.
#[tokio::test]
async fn send_shopify_carries_shopifys_headers() {
    let host = Host::start(&tenant_t(
        "recorder",
        "[tenants.t.sources.shop]\nprovider = \"shopify\"\nsecret = \"shpss_send_test\"\n",
    ))
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
        .args([
            "send", "shopify", "--tenant", "t", "--source", "shop", "--config",
        ])
        .arg(host.dir.path().join("hookhost.toml"))
        .args(["--url", &host.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let seq: i64 = printed
        .split("\"event\":")
        .nth(1)
        .and_then(|rest| rest.trim_end().trim_end_matches('}').parse().ok())
        .unwrap_or_else(|| panic!("no event number in {printed}"));
    let event = host.wait_finished(seq, Duration::from_secs(60)).await;
    let headers: Vec<String> = event["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_string())
        .collect();
    for name in [
        "x-shopify-topic",
        "x-shopify-api-version",
        "x-shopify-webhook-id",
        "x-shopify-triggered-at",
        "x-shopify-shop-domain",
        "x-shopify-event-id",
    ] {
        assert!(
            headers.iter().any(|h| h == name),
            "{name} missing: {headers:?}"
        );
    }
    assert!(
        !headers.iter().any(|h| h == "x-shopify-hmac-sha256"),
        "the signature was journaled"
    );
}
