//! Hot reload and the merchant's dev loop, end to end: plugins swapped under load, components of
//! another world refused, the config reloaded on SIGHUP and through the admin API, and the
//! `hookhost send`, `new` and `dev` commands.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    accepted, plugin, replace_file, variant_of, wait_for, Host, TenantToml, FINCART_TOKEN as TOKEN,
    JSON,
};
use serde_json::{json, Value};

fn fincart_tenant(name: &str, plugin: &std::path::Path, token: &str) -> String {
    TenantToml::new(name, plugin)
        .fincart_with_token("fc", token)
        .toml()
}

fn order(id: &str) -> String {
    json!({ "orderId": id, "status": "pending", "statusUpdatedDate": 1 }).to_string()
}

/// The plugin status of `tenant` in the admin API.
async fn plugin_status(host: &Host, tenant: &str) -> Value {
    let tenants = host.admin("/admin/tenants").await;
    tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tenant)
        .map(|t| t["plugin"].clone())
        .unwrap_or(Value::Null)
}

async fn wait_version(host: &Host, tenant: &str, not: Option<&str>) -> String {
    wait_for(
        &format!("a new plugin version for {tenant}"),
        Duration::from_secs(60),
        async || {
            plugin_status(host, tenant).await["version"]
                .as_str()
                .filter(|v| Some(*v) != not)
                .map(str::to_string)
        },
    )
    .await
}

/// Four senders keeping orders flowing to tenant `live` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<i64>>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(host: &Arc<Host>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::<i64>::new()));
        let mut senders = Vec::new();
        for sender in 0..4 {
            let (host, stop, sent) = (host.clone(), stop.clone(), sent.clone());
            senders.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = order(&format!("load-{sender}-{n}"));
                    let seq = accepted(
                        host.send("live", "fc", &[JSON, ("authorization", TOKEN)], body)
                            .await,
                    )
                    .await;
                    sent.lock().unwrap().push(seq);
                    n += 1;
                }
            }));
        }
        Load {
            stop,
            sent,
            senders,
        }
    }

    /// Stops the senders: the events they got acknowledged.
    async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders {
            sender.await.unwrap();
        }
        self.sent.lock().unwrap().clone()
    }
}

/// Nothing lost, nothing doubled: `live`'s journal holds exactly the `count` acknowledged events,
/// and each one's kv effect committed once.
async fn assert_journaled_once(host: &Host, count: usize) {
    let events = host.all_events("live").await;
    assert_eq!(events.len(), count);
    let kv = host.kv("live").await;
    let times: Vec<&String> = kv
        .iter()
        .filter(|(k, _)| k.starts_with("times/"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(times.len(), count);
    assert!(times.iter().all(|v| *v == "1"), "each effect once");
}

#[tokio::test]
async fn fifty_swaps_under_load_lose_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    let versions = [
        variant_of(&plugin("recorder"), "a"),
        variant_of(&plugin("recorder"), "b"),
    ];
    std::fs::write(&live, &versions[0]).unwrap();
    let host = Arc::new(Host::start(&fincart_tenant("live", &live, TOKEN)).await);
    let mut current = wait_version(&host, "live", None).await;

    let load = Load::start(&host);
    let mut seen_versions = BTreeSet::from([current.clone()]);
    for swap in 1..=50 {
        replace_file(&live, &versions[swap % 2]);
        current = wait_version(&host, "live", Some(&current)).await;
        seen_versions.insert(current.clone());
    }
    assert_eq!(
        seen_versions.len(),
        2,
        "two versions alternate: {seen_versions:?}"
    );
    // The last swap is in place: every event from now on runs the last version.
    let mut after = Vec::new();
    for n in 0..10 {
        let body = order(&format!("after-{n}"));
        after.push(
            accepted(
                host.send("live", "fc", &[JSON, ("authorization", TOKEN)], body)
                    .await,
            )
            .await,
        );
    }
    let sent = load.stop().await;
    assert!(
        sent.len() >= 50,
        "the load kept flowing: {} events",
        sent.len()
    );

    let mut ran_on = std::collections::BTreeMap::<String, usize>::new();
    for seq in sent.iter().chain(&after) {
        let event = host.wait_finished(*seq, Duration::from_secs(60)).await;
        assert_eq!(
            (event["state"].as_str(), event["attempts"].as_u64()),
            (Some("done"), Some(1)),
            "no event failed or was retried across the swaps: {event}"
        );
        let version = event["attempts_detail"][0]["plugin_version"]
            .as_str()
            .unwrap();
        assert!(seen_versions.contains(version), "ran {version}");
        *ran_on.entry(version.to_string()).or_insert(0) += 1;
        if after.contains(seq) {
            assert_eq!(
                version, current,
                "events after the last swap run the last version"
            );
        }
    }
    assert_eq!(ran_on.len(), 2, "both versions handled events: {ran_on:?}");
    eprintln!(
        "{} events across 50 swaps, by version: {ran_on:?}",
        sent.len() + after.len()
    );
    assert_journaled_once(&host, sent.len() + after.len()).await;
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_and_the_working_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    let host = Host::start(&fincart_tenant("live", &live, TOKEN)).await;
    let working = wait_version(&host, "live", None).await;

    replace_file(&live, &std::fs::read(plugin("other-world")).unwrap());
    let status = wait_for("the refusal", Duration::from_secs(60), async || {
        let s = plugin_status(&host, "live").await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("hookhost:plugin"),
        "the error says what world was expected: {error}"
    );
    assert_eq!(status["version"], working.as_str(), "{status}");
    let history = status["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["result"], "failed", "{status}");

    let seq = accepted(
        host.send(
            "live",
            "fc",
            &[JSON, ("authorization", TOKEN)],
            order("still"),
        )
        .await,
    )
    .await;
    let event = host.wait_finished(seq, Duration::from_secs(30)).await;
    assert_eq!(event["state"], "done");
    assert_eq!(
        event["attempts_detail"][0]["plugin_version"],
        working.as_str()
    );
}

#[tokio::test]
async fn the_config_is_reloaded_on_sighup_and_through_the_admin_api() {
    let recorder = plugin("recorder");
    let host = Host::start(&fincart_tenant("first", &recorder, "token-one")).await;
    wait_version(&host, "first", None).await;
    let send = async |tenant: &str, token: &str, id: &str| {
        host.send(tenant, "fc", &[JSON, ("authorization", token)], order(id))
            .await
    };
    assert_eq!(send("second", "token-two", "o1").await.status(), 404);

    // SIGHUP: `first` rotates its token, `second` appears.
    host.write_config(&format!(
        "{}{}",
        fincart_tenant("first", &recorder, "token-one-rotated"),
        fincart_tenant("second", &recorder, "token-two")
    ));
    host.signal("HUP");
    let applied = wait_for("the SIGHUP reload", Duration::from_secs(30), async || {
        let status = host.admin("/admin/config").await;
        status["last_applied"].is_object().then_some(status)
    })
    .await;
    assert_eq!(
        applied["last_applied"]["added"],
        json!(["second"]),
        "{applied}"
    );
    assert_eq!(
        applied["last_applied"]["needs_restart"],
        json!([]),
        "{applied}"
    );
    // Secrets stay out of the admin API and the log, before and after the reload.
    for path in ["/admin/config", "/admin/tenants"] {
        let text = host.admin(path).await.to_string();
        assert!(
            !text.contains("token-one") && !text.contains("token-two"),
            "{path}: {text}"
        );
    }
    assert!(!host.logs().contains("token-one") && !host.logs().contains("token-two"));
    assert_eq!(send("first", "token-one", "o2").await.status(), 401);
    let seq = accepted(send("first", "token-one-rotated", "o3").await).await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(30)).await["state"],
        "done"
    );
    let seq = accepted(send("second", "token-two", "o4").await).await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(60)).await["state"],
        "done",
        "the new tenant's plugin was loaded"
    );

    // A broken file is refused as a whole, saying why; the running config stays.
    host.write_config(&format!(
        "{}\n[tenants.third]\nplugin = {recorder:?}\n[tenants.third.sources.x]\nprovider = \"paypal\"\n",
        fincart_tenant("first", &recorder, "token-one-rotated"),
    ));
    let (status, answer) = host.admin_post("/admin/config/reload").await;
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"].as_str().unwrap();
    // Where and what, never the value written (it could be a secret).
    assert!(
        message.contains("[tenants.third.sources.x]") && message.contains("expected one of"),
        "{message}"
    );
    assert!(!message.contains("paypal"), "{message}");
    assert!(message.contains("running config stays"), "{message}");
    assert!(host.admin("/admin/config").await["last_error"].is_string());
    let seq = accepted(send("second", "token-two", "o5").await).await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(30)).await["state"],
        "done"
    );

    // `second` removed, and a process setting changed (reported: it needs a restart).
    let text = common::config_text(&fincart_tenant("first", &recorder, "token-one-rotated"))
        .replace("sink = true", "sink = true\nmax_body_bytes = 4096");
    std::fs::write(host.dir.path().join("hookhost.toml"), text).unwrap();
    let (status, change) = host.admin_post("/admin/config/reload").await;
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["removed"], json!(["second"]), "{change}");
    assert_eq!(
        change["needs_restart"],
        json!(["max_body_bytes"]),
        "{change}"
    );
    assert!(host.admin("/admin/config").await["last_error"].is_null());
    let gone = send("second", "token-two", "o6").await;
    assert_eq!(gone.status(), 404);
    let names: Vec<Value> = host.admin("/admin/tenants").await["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("first")]);
    // The host still serves the remaining tenant and is ready.
    let seq = accepted(send("first", "token-one-rotated", "o7").await).await;
    assert_eq!(
        host.wait_finished(seq, Duration::from_secs(30)).await["state"],
        "done"
    );
    let ready = reqwest::get(format!("{}/readyz", host.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// Every authentication scheme, signed by `hookhost send` from the config's credentials with the
/// shipped samples: the host must accept each (its verifiers are tested against vectors computed
/// by Python's hmac module in tests/providers.rs).
#[tokio::test]
async fn send_signs_for_every_scheme_with_the_shipped_samples() {
    let tenants = format!(
        r#"
[tenants.t]
plugin = {plugin:?}
[tenants.t.sources.fincart]
provider = "fincart"
token = ["fc-current", "fc-old"]
[tenants.t.sources.sevi]
provider = "sevi"
token = "sevi-token"
header = "X-Sevi-Token"
[tenants.t.sources.juspay]
provider = "juspay"
username = "payer"
password = "jp-pass"
required_headers = {{ "x-merchant" = "acme" }}
[tenants.t.sources.finch-query]
provider = "finchpay"
token = "fp-token"
[tenants.t.sources.finch-path]
provider = "finchpay"
token = "fp-token"
token_in = "path"
[tenants.t.sources.selldone]
provider = "selldone"
token = "sd-token"
sign_key = "sd-key"
[tenants.t.sources.stripe]
provider = "stripe"
secret = "whsec_stripe"
[tenants.t.sources.shopify]
provider = "shopify"
secret = "shop-secret"
[tenants.t.sources.github]
provider = "github"
secret = "gh-secret"
[tenants.t.sources.standard]
provider = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[tenants.t.sources.signed]
provider = "generic"
[tenants.t.sources.signed.auth]
scheme = "hmac"
secret = "generic-secret"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "v1="
template = "{{timestamp}}.{{header:X-Partner}}.{{body}}"
timestamp_header = "X-Timestamp"
[tenants.t.sources.signed.mapping]
id = "id"
status = "status"
"#,
        plugin = plugin("recorder")
    );
    let host = Host::start(&tenants).await;
    let config = host.dir.path().join("hookhost.toml");
    let send = |args: &[&str]| {
        let mut all = vec!["send"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config.to_str().unwrap(), "--url", &host.base]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
            .args(&all)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let cases: &[&[&str]] = &[
        &["fincart", "--tenant", "t", "--source", "fincart"],
        &["sevi", "--tenant", "t", "--source", "sevi"],
        &[
            "sevi",
            "--tenant",
            "t",
            "--source",
            "sevi",
            "--sample",
            "order-payment-legacy",
        ],
        &["juspay", "--tenant", "t", "--source", "juspay"],
        &[
            "juspay",
            "--tenant",
            "t",
            "--source",
            "juspay",
            "--sample",
            "transaction-success",
        ],
        &["finchpay", "--tenant", "t", "--source", "finch-query"],
        &["selldone", "--tenant", "t", "--source", "selldone"],
        &["stripe", "--tenant", "t", "--source", "stripe"],
        &["shopify", "--tenant", "t", "--source", "shopify"],
        &["github", "--tenant", "t", "--source", "github"],
        &["standard-webhooks", "--tenant", "t", "--source", "standard"],
    ];
    for case in cases {
        let (ok, stdout, stderr) = send(case);
        assert!(ok, "{case:?}: {stdout}{stderr}");
        assert!(stdout.contains("accepted"), "{case:?}: {stdout}");
    }
    // The path token works too; the same sample again on the same source is the same
    // transaction: a duplicate, acknowledged and not dispatched again.
    let (ok, stdout, _) = send(&["finchpay", "--tenant", "t", "--source", "finch-path"]);
    assert!(ok && stdout.contains("accepted"), "{stdout}");
    let (ok, stdout, _) = send(&["finchpay", "--tenant", "t", "--source", "finch-query"]);
    assert!(ok && stdout.contains("duplicate"), "{stdout}");
    // The merchant's own payload, with a header the signature covers.
    let file = host.dir.path().join("mine.json");
    std::fs::write(&file, r#"{"id": "p-9", "status": "paid"}"#).unwrap();
    let (ok, stdout, stderr) = send(&[
        "generic",
        "--tenant",
        "t",
        "--source",
        "signed",
        "--file",
        file.to_str().unwrap(),
        "-H",
        "X-Partner: acme",
    ]);
    assert!(ok && stdout.contains("accepted"), "{stdout}{stderr}");
    // A signed header that is not given is named.
    let (ok, _, stderr) = send(&[
        "generic",
        "--tenant",
        "t",
        "--source",
        "signed",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("X-Partner"), "{stderr}");
    // --fresh: the same sample as a new event of the same order (a later update), not a
    // duplicate; a provider whose id is a delivery header is new on every send already; one
    // whose id is the order and status says why it cannot be made new.
    let fincart = ["fincart", "--tenant", "t", "--source", "fincart"];
    let (ok, stdout, _) = send(&fincart);
    assert!(ok && stdout.contains("duplicate"), "{stdout}");
    let (ok, stdout, stderr) = send(&[&fincart[..], &["--fresh"]].concat());
    assert!(ok && stdout.contains("accepted"), "{stdout}{stderr}");
    assert!(stderr.contains("fresh: /statusUpdatedDate"), "{stderr}");
    let (ok, stdout, stderr) =
        send(&["shopify", "--tenant", "t", "--source", "shopify", "--fresh"]);
    assert!(ok && stdout.contains("accepted"), "{stdout}{stderr}");
    assert!(stderr.contains("already a new shopify event"), "{stderr}");
    let (ok, _, stderr) = send(&[
        "finchpay",
        "--tenant",
        "t",
        "--source",
        "finch-query",
        "--fresh",
    ]);
    assert!(
        !ok && stderr.contains("the same order in the same status is the same event"),
        "{stderr}"
    );

    // Everything sent reached the plugin, once.
    let events = host.all_events("t").await;
    assert_eq!(events.len(), cases.len() + 4, "{events:?}");
    for event in &events {
        let seq = event["seq"].as_i64().unwrap();
        assert_eq!(
            host.wait_finished(seq, Duration::from_secs(30)).await["state"],
            "done"
        );
    }

    // Mistakes are explained.
    let (ok, _, stderr) = send(&["stripe", "--tenant", "t", "--source", "fincart"]);
    assert!(
        !ok && stderr.contains("is a fincart source, not stripe"),
        "{stderr}"
    );
    let (ok, _, stderr) = send(&[
        "juspay", "--tenant", "t", "--source", "juspay", "--sample", "nope",
    ]);
    assert!(!ok && stderr.contains("transaction-success"), "{stderr}");
    let (ok, _, stderr) = send(&["fincart", "--tenant", "nobody", "--source", "fincart"]);
    assert!(
        !ok && stderr.contains("the tenants there are t"),
        "{stderr}"
    );
    let (ok, stdout, _) = send(&["--list"]);
    assert!(
        ok && stdout.contains("juspay") && stdout.contains("orders-paid"),
        "{stdout}"
    );
}

/// The merchant's loop: `hookhost new` scaffolds a crate whose test passes; `hookhost dev` builds
/// it, serves it, and on each save rebuilds and hot-swaps it; a broken save prints the compiler's
/// error and the working version keeps serving.
#[tokio::test]
async fn new_then_dev_builds_serves_and_hot_swaps_on_save() {
    dev_loop_story("rust").await;
}

/// The same loop for a JavaScript plugin (`hookhost new --lang js`, `node --test`, componentize-js).
#[tokio::test]
async fn new_then_dev_works_for_a_javascript_plugin() {
    dev_loop_story("js").await;
}

/// The same loop for a Python plugin (`hookhost new --lang python`, unittest, componentize-py).
#[tokio::test]
async fn new_then_dev_works_for_a_python_plugin() {
    dev_loop_story("python").await;
}

/// `hookhost new NAME --lang LANG` → the scaffold's native test → `hookhost dev` → an event →
/// a save that changes the reaction (rebuilt, swapped, the next event runs it) → a broken save
/// (the error printed, the working version keeps serving).
async fn dev_loop_story(lang: &str) {
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("shop-notes");
    let hookhost = env!("CARGO_BIN_EXE_hookhost");
    let target = common::workspace().join("target");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or(target);
    let out = std::process::Command::new(hookhost)
        .args(["new", "shop-notes", "--lang", lang, "--dir"])
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refuses to overwrite.
    let again = std::process::Command::new(hookhost)
        .args(["new", "shop-notes", "--dir"])
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let (program, args): (&str, &[&str]) = match lang {
        "rust" => (env!("CARGO"), &["test", "--quiet"]),
        "js" => ("node", &["--test"]),
        _ => ("python3", &["-m", "unittest"]),
    };
    let test = std::process::Command::new(program)
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "the scaffold's own test passes: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // The repository's pinned build tools (installed by the build script), so the test does not
    // install them into the new project again.
    common::script_plugin("js", "order-sync");
    let dev_log = work.path().join("dev.log");
    let (dev, rx) = start_dev(&crate_dir, &target, &dev_log);
    let next_line = |want: &str| -> String { line_with(&rx, want) };
    // It says that it builds before the (long) first build, then listens.
    let building = next_line("building ");
    assert!(building.starts_with("building shop-notes"), "{building}");
    // A save during the first build is seen (here one that changes nothing: said once the loop
    // runs, below).
    let logic_file = crate_dir.join(match lang {
        "rust" => "src/lib.rs",
        "js" => "logic.js",
        _ => "logic.py",
    });
    std::fs::write(&logic_file, std::fs::read(&logic_file).unwrap()).unwrap();
    let base = next_line("hookhost listening on ")
        .trim_start_matches("hookhost listening on ")
        .to_string();
    let banner = next_line("admin token for this run ");
    let token = banner
        .rsplit("admin token for this run ")
        .next()
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string();
    assert!(token.len() >= 32 && token != "dev", "{banner}");
    let first = next_line("loaded version ");
    assert!(
        first.starts_with("loaded version "),
        "the first load: {first}"
    );
    let version = |line: &str| line.split_whitespace().nth(2).unwrap().to_string();
    let v1 = version(&first);
    let console = next_line("  console ");
    assert!(console.contains(&format!("{base}/console")), "{console}");
    let touched = next_line("sources unchanged");
    assert!(
        touched.contains(&v1),
        "the save during the first build: {touched}"
    );

    let config = crate_dir.join(".hookhost-dev/hookhost.toml");
    // Idle connections are dropped before the host's header-read timeout closes them (clients
    // that pool connections should idle out first; see README, [http]).
    let client = common::client();
    // The fixed token of earlier versions is refused, and so is any foreign Host name (a page
    // whose DNS name was rebound to 127.0.0.1 sends its own name).
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            client
                .get(format!("{base}/admin/tenants"))
                .bearer_auth("dev")
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            client
                .get(format!("{base}/admin/tenants"))
                .bearer_auth(&token)
                .header("host", "attacker.example:80")
                .send()
                .await
                .unwrap()
        ),
        421
    );
    let admin = async |path: &str| -> Value {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let send = |order: &str| {
        let file = work.path().join(format!("{order}.json"));
        std::fs::write(&file, order_status(order)).unwrap();
        let out = std::process::Command::new(hookhost)
            .args([
                "send", "fincart", "--tenant", "dev", "--source", "fincart", "--config",
            ])
            .arg(&config)
            .args(["--url", &base, "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let answer: Value = serde_json::from_str(stdout.split_once(": ").unwrap().1).unwrap();
        answer["event"].as_i64().unwrap()
    };
    let finished = async |seq: i64| -> Value {
        wait_for("the event to finish", Duration::from_secs(30), async || {
            let e = admin(&format!("/admin/events/{seq}")).await;
            (e["state"] == "done").then_some(e)
        })
        .await
    };
    let seq = send("A-1");
    assert_eq!(
        finished(seq).await["attempts_detail"][0]["plugin_version"],
        v1.as_str()
    );
    let kv = admin("/admin/tenants/dev/kv").await;
    assert_eq!(kv["entries"][0]["key"], "order/A-1", "{kv}");

    // A save that changes the reaction: rebuilt, swapped, the next event runs it.
    let (logic, key, latest, app, done, broken) = match lang {
        "rust" => (
            "src/lib.rs",
            "format!(\"order/{order}\")",
            "format!(\"latest/{order}\")",
            "src/lib.rs",
            "Ok(Outcome::Done)",
            "Ok(Outcome::Done",
        ),
        "js" => (
            "logic.js",
            "`order/${order}`",
            "`latest/${order}`",
            "app.js",
            "return done();",
            "return done(;",
        ),
        _ => (
            "logic.py",
            "f\"order/{order}\"",
            "f\"latest/{order}\"",
            "app.py",
            "return done()",
            "return done(",
        ),
    };
    let logic = crate_dir.join(logic);
    let source = std::fs::read_to_string(&logic).unwrap();
    assert!(source.contains(key), "{source}");
    std::fs::write(&logic, source.replace(key, latest)).unwrap();
    let v2 = version(&next_line("reloaded version "));
    assert_ne!(v1, v2);
    // Sending A-1 again would be a duplicate: it offers to replay it on the new version.
    let offer = next_line("  replay ");
    assert!(offer.contains(&format!("--event {seq}")), "{offer}");
    // A save that changes nothing builds nothing (a script build would make a new version).
    std::fs::write(&logic, std::fs::read(&logic).unwrap()).unwrap();
    let unchanged = next_line("sources unchanged");
    assert!(unchanged.contains(&v2), "{unchanged}");
    let seq = send("B-2");
    assert_eq!(
        finished(seq).await["attempts_detail"][0]["plugin_version"],
        v2.as_str()
    );
    let kv = admin("/admin/tenants/dev/kv?prefix=latest/").await;
    assert_eq!(kv["entries"][0]["key"], "latest/B-2", "{kv}");

    // A broken save: the compiler's error is printed and v2 keeps serving.
    let app = crate_dir.join(app);
    let source = std::fs::read_to_string(&app).unwrap();
    assert!(source.contains(done), "{source}");
    std::fs::write(&app, source.replace(done, broken)).unwrap();
    let failed = next_line("build failed");
    assert!(failed.contains(&v2), "{failed}");
    // A script's syntax error names the file and line as the merchant wrote them (checked by the
    // language's own parser before the build tool runs).
    if lang != "rust" {
        let location = next_line(if lang == "js" {
            "app.js:"
        } else {
            "File \"app.py\", line "
        });
        assert!(!location.contains("/0/"), "{location}");
    }
    let error = next_line(if lang == "rust" {
        "error"
    } else {
        "SyntaxError"
    });
    assert!(error.contains("rror"), "{error}");
    let seq = send("C-3");
    assert_eq!(
        finished(seq).await["attempts_detail"][0]["plugin_version"],
        v2.as_str()
    );
    // The admin CLI finds this run's address and token from the dev config alone, and the
    // failed build is the tenant's error there (and so in the console).
    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new(hookhost)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("HOOKHOST_URL")
            .env_remove("HOOKHOST_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let plugins: Value = serde_json::from_str(&cli(&["plugins", "--json"])).unwrap();
    let status = &plugins["tenants"][0]["plugin"];
    assert_eq!(status["version"], v2.as_str(), "{plugins}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("build failed: "), "{plugins}");
    assert!(!error.contains('\u{1b}'), "no colour codes: {error}");
    let events = cli(&["events", "--tenant", "dev"]);
    assert!(events.contains("C-3") && events.contains("A-1"), "{events}");
    // A log that is not a terminal gets no colour codes.
    let log = std::fs::read_to_string(&dev_log).unwrap();
    assert!(log.contains("plugin loaded"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");

    // Scripts: the sources of a version built before, after a restart, give that version
    // again, byte for byte (componentize-js and -py do not reproduce their output: the build
    // is kept by what it was built from).
    if lang != "rust" {
        drop(dev);
        std::fs::write(&app, &source).unwrap();
        let (_dev, rx) = start_dev(&crate_dir, &target, &work.path().join("dev2.log"));
        let reused = line_with(&rx, "built before");
        assert!(reused.contains("the same version"), "{reused}");
        let again = line_with(&rx, "loaded version ");
        assert_eq!(version(&again), v2, "{again}");
    }
}

/// Kills the dev host when the test ends (or fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hookhost dev` on a free port for the project in `crate_dir`, with the repository's pinned
/// script build tools; its stdout lines come through the receiver, its log goes to `log`.
fn start_dev(
    crate_dir: &std::path::Path,
    target: &std::path::Path,
    log: &std::path::Path,
) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    // The repository's pinned build tools (installed by the build script), so the test does not
    // install them into the new project again.
    common::script_plugin("js", "order-sync");
    let mut dev = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
        .args(["dev", "--listen", "127.0.0.1:0"])
        .arg(crate_dir)
        .env("CARGO_TARGET_DIR", target)
        .env(
            "HOOKHOST_COMPONENTIZE_JS",
            common::workspace()
                .join("tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js"),
        )
        .env(
            "HOOKHOST_COMPONENTIZE_PY",
            target.join("tools/python/bin/componentize-py"),
        )
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (KillOnDrop(dev), rx)
}

/// The next line from `hookhost dev` containing `want` (the ones before it are skipped).
fn line_with(rx: &std::sync::mpsc::Receiver<String>, want: &str) -> String {
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) if line.contains(want) => return line,
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("no line with {want:?} from hookhost dev; it printed:\n{seen}"),
        }
    }
}

/// A taken port is said at once, before any build (a first build takes up to a minute).
#[test]
fn dev_says_a_taken_port_before_building() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let plugin = tempfile::tempdir().unwrap();
    std::fs::write(plugin.path().join("app.py"), "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookhost"))
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg(plugin.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(!stdout.contains("building"), "{stdout}");
    assert!(
        !plugin.path().join(".venv").exists(),
        "no tool was installed"
    );
}

fn order_status(order: &str) -> String {
    json!({ "orderId": order, "status": "processing", "subStatus": "packed", "statusUpdatedDate": 1738336796675u64 })
        .to_string()
}

/// A version that fails the tenant's self-test never serves: the previous one keeps serving, the
/// refusal says which case failed and how, and the self-test leaves no kv behind.
#[tokio::test]
async fn a_version_failing_its_self_test_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    // The recorder ignores `misbehave`; the misbehave plugin panics on it.
    let case = dir.path().join("paid.json");
    std::fs::write(&case, common::misbehaving("self-test-order", "trap")).unwrap();
    let tenants = format!(
        "{}[[tenants.live.self_test]]\nsource = \"fc\"\nfile = {case:?}\nexpect = \"done\"\n",
        fincart_tenant("live", &live, TOKEN)
    );
    let host = Host::start(&tenants).await;
    let working = wait_version(&host, "live", None).await;
    assert!(
        host.kv("live").await.is_empty(),
        "a self-test's kv writes are discarded"
    );

    replace_file(&live, &std::fs::read(plugin("misbehave")).unwrap());
    let status = wait_for("the refusal", Duration::from_secs(60), async || {
        let s = plugin_status(&host, "live").await;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("failed its self-test"), "{error}");
    assert!(error.contains("paid.json"), "names the case: {error}");
    assert!(
        error.contains("deliberate panic"),
        "says what happened: {error}"
    );
    assert_eq!(status["version"], working.as_str());
    let seq = accepted(
        host.send(
            "live",
            "fc",
            &[JSON, ("authorization", TOKEN)],
            order("after"),
        )
        .await,
    )
    .await;
    let event = host.wait_finished(seq, Duration::from_secs(30)).await;
    assert_eq!(
        event["attempts_detail"][0]["plugin_version"],
        working.as_str()
    );

    // A self-test that cannot be read is a config error, reported on reload.
    host.write_config(&format!(
        "{}[[tenants.live.self_test]]\nsource = \"fc\"\nfile = \"missing.json\"\n",
        fincart_tenant("live", &live, TOKEN)
    ));
    let (status, answer) = host.admin_post("/admin/config/reload").await;
    assert_eq!(status, 422);
    assert!(
        answer["error"].as_str().unwrap().contains("missing.json"),
        "{answer}"
    );
}

/// Sends an order to `shop` and waits for it: the plugin version its attempt ran.
async fn ran_on(host: &Host, id: &str) -> String {
    let seq = accepted(
        host.send("shop", "fc", &[JSON, ("authorization", TOKEN)], order(id))
            .await,
    )
    .await;
    let event = host.wait_finished(seq, Duration::from_secs(30)).await;
    event["attempts_detail"][0]["plugin_version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs a CLI command as `token` that must succeed; its `--json` output.
fn cli_json(host: &Host, token: &str, args: &[&str]) -> Value {
    let out = host.cli_as(token, args);
    assert!(
        out.status.success(),
        "hookhost {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hookhost {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a CLI command as `token` that must fail; its error output.
fn cli_fails(host: &Host, token: &str, args: &[&str]) -> String {
    let out = host.cli_as(token, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "hookhost {args:?} succeeded");
    stderr
}

/// A merchant ships with its own token: deploys (refused ones recorded and changing nothing),
/// reads its history, rolls back, and cannot reach another tenant; the deployed version survives
/// a restart and beats the plugin file; a revoked token deploys nothing.
#[tokio::test]
async fn a_merchant_deploys_and_rolls_back_with_its_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    let case = dir.path().join("case.json");
    std::fs::write(&case, common::misbehaving("self-test-order", "trap")).unwrap();
    let tenants = format!(
        "{}[[tenants.shop.self_test]]\nsource = \"fc\"\nfile = {case:?}\nexpect = \"done\"\n{}",
        fincart_tenant("shop", &live, TOKEN),
        fincart_tenant("other", &live, "other-token"),
    );
    let host = Host::start(&tenants).await;
    let from_file = wait_version(&host, "shop", None).await;
    let admin = common::ADMIN_TOKEN;

    let created = cli_json(
        &host,
        admin,
        &[
            "tokens",
            "create",
            "--tenant",
            "shop",
            "--scope",
            "read,deploy",
            "--name",
            "ci",
            "--json",
        ],
    );
    let deployer = created["token"].as_str().unwrap().to_string();
    let reader = cli_json(
        &host,
        admin,
        &[
            "tokens",
            "create",
            "--tenant",
            "shop",
            "--name",
            "dashboards",
            "--json",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let who = cli_json(&host, &deployer, &["plugins", "--json"]);
    assert_eq!(who["tenants"].as_array().unwrap().len(), 1, "{who}");

    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let a = file("a.wasm", &variant_of(&plugin("recorder"), "a"));
    let b = file("b.wasm", &variant_of(&plugin("recorder"), "b"));
    let deployed = cli_json(
        &host,
        &deployer,
        &["deploy", "--tenant", "shop", &a, "--json"],
    );
    assert_eq!(deployed["deploy"]["number"], 1, "{deployed}");
    assert!(deployed["timings_ms"]["total"].is_u64(), "{deployed}");
    let version_a = deployed["version"].as_str().unwrap().to_string();
    assert_ne!(version_a, from_file);
    assert_eq!(
        plugin_status(&host, "shop").await["version"],
        version_a.as_str()
    );

    // Refused uploads: each says why, is recorded, and the serving version stays.
    let other_world = std::fs::read(plugin("other-world")).unwrap();
    let misbehave = std::fs::read(plugin("misbehave")).unwrap();
    for (name, bytes, says) in [
        ("world.wasm", &other_world[..], "hookhost:plugin"),
        ("selftest.wasm", &misbehave[..], "failed its self-test"),
        ("junk.wasm", &b"\0asm but not really"[..], "not deployed"),
    ] {
        let path = file(name, bytes);
        let stderr = cli_fails(&host, &deployer, &["deploy", "--tenant", "shop", &path]);
        assert!(
            stderr.contains("422") && stderr.contains(says),
            "{name}: {stderr}"
        );
        assert_eq!(
            plugin_status(&host, "shop").await["version"],
            version_a.as_str()
        );
    }
    let stderr = cli_fails(&host, &reader, &["deploy", "--tenant", "shop", &b]);
    assert!(
        stderr.contains("403") && stderr.contains("`deploy` scope"),
        "{stderr}"
    );
    let stderr = cli_fails(&host, &deployer, &["deploy", "--tenant", "other", &b]);
    assert!(
        stderr.contains("404") && stderr.contains("no tenant named"),
        "{stderr}"
    );
    let stderr = cli_fails(&host, &deployer, &["tokens", "list"]);
    assert!(stderr.contains("403"), "{stderr}");

    let deployed = cli_json(
        &host,
        &deployer,
        &["deploy", "--tenant", "shop", &b, "--json"],
    );
    assert_eq!(
        deployed["deploy"]["number"], 5,
        "after 1 deploy and 3 refusals"
    );
    let version_b = deployed["version"].as_str().unwrap().to_string();
    assert_eq!(ran_on(&host, "on-b").await, version_b);

    let history = cli_json(&host, &reader, &["versions", "--tenant", "shop", "--json"]);
    assert_eq!(history["active"], 5);
    let kinds: Vec<&str> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deploy", "refused", "refused", "refused", "deploy"]);
    let by = history["deploys"][0]["by"].as_str().unwrap();
    assert!(
        by.contains(created["id"].as_str().unwrap()) && by.contains("(ci)"),
        "{by}"
    );
    let table = host.cli_as(&reader, &["versions", "--tenant", "shop"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("* v5") && table.contains("refused:"),
        "{table}"
    );

    // Back to the version before, then forward to a chosen one.
    let rolled = cli_json(
        &host,
        &deployer,
        &["rollback", "--tenant", "shop", "--json"],
    );
    assert_eq!(
        (
            &rolled["deploy"]["number"],
            &rolled["deploy"]["reactivates"]
        ),
        (&json!(6), &json!(1)),
        "{rolled}"
    );
    assert_eq!(
        plugin_status(&host, "shop").await["version"],
        version_a.as_str()
    );
    assert_eq!(ran_on(&host, "after-rollback").await, version_a);
    cli_json(
        &host,
        &deployer,
        &["rollback", "--tenant", "shop", "--to", "5", "--json"],
    );
    assert_eq!(
        plugin_status(&host, "shop").await["version"],
        version_b.as_str()
    );
    let stderr = cli_fails(
        &host,
        &deployer,
        &["rollback", "--tenant", "shop", "--to", "2"],
    );
    assert!(
        stderr.contains("409") && stderr.contains("was refused"),
        "{stderr}"
    );
    let stderr = cli_fails(
        &host,
        &deployer,
        &["rollback", "--tenant", "shop", "--to", "99"],
    );
    assert!(stderr.contains("404"), "{stderr}");
    let stderr = cli_fails(&host, &reader, &["rollback", "--tenant", "shop"]);
    assert!(stderr.contains("403"), "{stderr}");

    // A restart serves the deployed version from the database, not the file.
    let (_, dir_kept) = host.terminate(Duration::from_secs(30));
    let host = Host::start_in(dir_kept, &tenants).await;
    assert_eq!(wait_version(&host, "shop", None).await, version_b);
    assert_eq!(ran_on(&host, "after-restart").await, version_b);

    // Revoked: nothing more.
    let listed = cli_json(
        &host,
        admin,
        &["tokens", "list", "--tenant", "shop", "--json"],
    );
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    let revoke = host.cli(&["tokens", "revoke", created["id"].as_str().unwrap()]);
    assert!(revoke.status.success());
    let stderr = cli_fails(&host, &deployer, &["deploy", "--tenant", "shop", &a]);
    assert!(
        stderr.contains("401") && stderr.contains("revoked"),
        "{stderr}"
    );
    assert!(
        !host.logs().contains(&deployer) && !host.logs().contains(&reader),
        "tokens are never logged"
    );
}

/// Deploys and rollbacks through the API while webhooks flow: every acknowledged event runs
/// once and ends done, each effect commits once, and deploys sent at once are numbered one
/// after another with the newest serving.
#[tokio::test]
async fn deploys_and_rollbacks_under_load_lose_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    let host = Arc::new(Host::start(&fincart_tenant("live", &live, TOKEN)).await);
    wait_version(&host, "live", None).await;
    let variants: Vec<Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|tag| variant_of(&plugin("recorder"), tag))
        .collect();

    let load = Load::start(&host);
    let deploy = |bytes: Vec<u8>| {
        let base = host.base.clone();
        async move {
            let response = common::client()
                .put(format!("{base}/admin/tenants/live/plugin"))
                .bearer_auth(common::ADMIN_TOKEN)
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.unwrap();
            answer["deploy"]["number"].as_u64().unwrap()
        }
    };
    for round in 0..6 {
        // Three deploys at once: three numbers, and the newest serves.
        let (x, y, z) = tokio::join!(
            deploy(variants[0].clone()),
            deploy(variants[1].clone()),
            deploy(variants[2].clone()),
        );
        let numbers = [x, y, z];
        let mut sorted = numbers.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "round {round}: {numbers:?}");
        let (status, history) = host_get(&host, "/admin/tenants/live/plugin/versions").await;
        assert_eq!(status, 200);
        assert_eq!(history["active"], *sorted.last().unwrap(), "{history}");
        let digest = history["deploys"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            plugin_status(&host, "live").await["published"],
            digest.as_str()
        );
        let (status, rolled) = host.admin_post("/admin/tenants/live/plugin/rollback").await;
        assert_eq!(status, 200, "{rolled}");
    }
    let sent = load.stop().await;
    assert!(sent.len() >= 20, "the load kept flowing: {}", sent.len());
    for seq in &sent {
        let event = host.wait_finished(*seq, Duration::from_secs(60)).await;
        assert_eq!(
            (event["state"].as_str(), event["attempts"].as_u64()),
            (Some("done"), Some(1)),
            "no event failed or was retried across the deploys: {event}"
        );
    }
    assert_journaled_once(&host, sent.len()).await;
    eprintln!("{} events across 18 deploys and 6 rollbacks", sent.len());
}

/// GETs an admin path as the operator: status and JSON.
async fn host_get(host: &Host, path: &str) -> (u16, Value) {
    let response = common::client()
        .get(format!("{}{path}", host.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A backtest runs a candidate dry over the journal beside the serving version: the same code
/// behaves the same (even where it reads and increments kv), a changed one is shown where it
/// differs (kv changes and requests), and nothing is written or sent.
#[tokio::test]
async fn a_backtest_shows_where_a_candidate_would_behave_differently() {
    let backend = common::Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    let tenants = TenantToml::new("shop", &live)
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart_with_token("fc", TOKEN)
        .toml();
    let host = Host::start(&tenants).await;
    let serving = wait_version(&host, "shop", None).await;
    let mut seqs = Vec::new();
    for n in 0..20 {
        seqs.push(
            accepted(
                host.send(
                    "shop",
                    "fc",
                    &[JSON, ("authorization", TOKEN)],
                    order(&format!("bt-{n}")),
                )
                .await,
            )
            .await,
        );
    }
    for seq in &seqs {
        assert_eq!(
            host.wait_finished(*seq, Duration::from_secs(30)).await["state"],
            "done"
        );
    }
    let sent_before = backend.received().len();
    let kv_before = host.kv("shop").await;
    let deployer = cli_json(
        &host,
        common::ADMIN_TOKEN,
        &[
            "tokens",
            "create",
            "--tenant",
            "shop",
            "--scope",
            "read,deploy",
            "--name",
            "bt",
            "--json",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let same_code = path("same.wasm", &variant_of(&plugin("recorder"), "same"));
    let other_code = path("other.wasm", &std::fs::read(plugin("misbehave")).unwrap());

    let report = cli_json(
        &host,
        &deployer,
        &[
            "backtest", "--tenant", "shop", "--plugin", &same_code, "--json",
        ],
    );
    assert_eq!(report["state"], "finished", "{report}");
    assert_eq!(report["baseline"], serving.as_str());
    assert_eq!(
        (&report["events"], &report["same"], &report["differs"]),
        (&json!(20), &json!(20), &json!(0)),
        "{report}"
    );
    assert_eq!(report["candidate_outcomes"], json!({ "done": 20 }));

    let report = cli_json(
        &host,
        &deployer,
        &[
            "backtest",
            "--tenant",
            "shop",
            "--plugin",
            &other_code,
            "--json",
        ],
    );
    assert_eq!(report["differs"], 20, "{report}");
    let first = &report["differing"][0];
    assert_eq!(first["seq"], seqs[0]);
    assert_eq!(first["recorded_outcome"]["outcome"], "done");
    let places: Vec<&str> = first["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["in"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["kv", "requests"], "{first}");
    // The serving side made the echo request; the candidate none, and neither was sent.
    assert_eq!(
        first["differences"][1]["serving"][0]["path"], "/echo",
        "{first}"
    );
    let text = host.cli_as(
        &deployer,
        &[
            "backtest",
            "--tenant",
            "shop",
            "--plugin",
            &other_code,
            "--limit",
            "3",
        ],
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("3 events") && text.contains("different 3") && text.contains("requests:"),
        "{text}"
    );
    let later = cli_json(
        &host,
        &deployer,
        &[
            "backtest",
            "--tenant",
            "shop",
            "--plugin",
            &same_code,
            "--since",
            "2099-01-01T00:00:00Z",
            "--json",
        ],
    );
    assert_eq!(later["events"], 0, "{later}");

    assert_eq!(backend.received().len(), sent_before, "nothing was sent");
    assert_eq!(host.kv("shop").await, kv_before, "nothing was written");
    let junk = path("junk.wasm", b"\0asm nope");
    let stderr = cli_fails(
        &host,
        &deployer,
        &["backtest", "--tenant", "shop", "--plugin", &junk],
    );
    assert!(
        stderr.contains("422") && stderr.contains("not backtested"),
        "{stderr}"
    );
    let reader = cli_json(
        &host,
        common::ADMIN_TOKEN,
        &[
            "tokens", "create", "--tenant", "shop", "--name", "r", "--json",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let stderr = cli_fails(
        &host,
        &reader,
        &["backtest", "--tenant", "shop", "--plugin", &same_code],
    );
    assert!(stderr.contains("403"), "{stderr}");
}

/// A staged version shadows the active one on live traffic: the active attempts are untouched,
/// each shadow run is compared with its attempt (changed code differs in kv and requests; the
/// same code agrees, even on a read-modify-write counter), the shadow writes and sends nothing;
/// promote makes it active and ends the shadow.
#[tokio::test]
async fn a_staged_version_shadows_live_traffic_and_is_promoted() {
    let backend = common::Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.wasm");
    std::fs::copy(plugin("recorder"), &live).unwrap();
    let tenants = TenantToml::new("shop", &live)
        .allowed_hosts(&[&backend.addr])
        .config("echo-url", &format!("http://{}/echo", backend.addr))
        .fincart_with_token("fc", TOKEN)
        .toml();
    let host = Host::start(&tenants).await;
    let serving = wait_version(&host, "shop", None).await;
    let admin = common::ADMIN_TOKEN;
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let other = file("other.wasm", &std::fs::read(plugin("misbehave")).unwrap());
    let staged = cli_json(
        &host,
        admin,
        &["deploy", "--tenant", "shop", &other, "--stage", "--json"],
    );
    assert_eq!(staged["deploy"]["kind"], "staged", "{staged}");
    assert_eq!(
        plugin_status(&host, "shop").await["version"],
        serving.as_str()
    );
    let out = host.cli(&[
        "shadow",
        "start",
        "--tenant",
        "shop",
        "--version",
        "1",
        "--share",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let send = |prefix: &'static str, n: usize| {
        let (host, serving) = (&host, &serving);
        async move {
            let mut seqs = Vec::new();
            for i in 0..n {
                let body = order(&format!("{prefix}-{i}"));
                seqs.push(
                    accepted(
                        host.send("shop", "fc", &[JSON, ("authorization", TOKEN)], body)
                            .await,
                    )
                    .await,
                );
            }
            for seq in &seqs {
                let event = host.wait_finished(*seq, Duration::from_secs(30)).await;
                assert_eq!(
                    event["state"], "done",
                    "the active attempt is untouched: {event}"
                );
                assert_eq!(
                    event["attempts_detail"][0]["plugin_version"],
                    serving.as_str()
                );
            }
        }
    };
    send("sh", 10).await;
    let status = wait_for("ten shadow runs", Duration::from_secs(30), async || {
        let s = cli_json(
            &host,
            admin,
            &["shadow", "status", "--tenant", "shop", "--json"],
        );
        (s["counts"]["differs"] == 10).then_some(s)
    })
    .await;
    let places: Vec<&str> = status["differing"][0]["comparison"]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["in"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["kv", "requests"], "{status}");
    assert_eq!(
        backend.received().len(),
        10,
        "only the active attempts' requests were sent"
    );
    assert!(
        host.kv("shop")
            .await
            .keys()
            .all(|k| !k.starts_with("touched/")),
        "the shadow's kv writes were dropped"
    );
    let text = host.cli(&["shadow", "status", "--tenant", "shop"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("different 10") && text.contains("kv: active"),
        "{text}"
    );

    // The same code, staged and shadowing: it agrees (or, when an attempt's commit beat the
    // shadow's read, says it cannot tell); never a difference.
    let same = file("same.wasm", &variant_of(&plugin("recorder"), "shadow"));
    let staged = cli_json(
        &host,
        admin,
        &["deploy", "--tenant", "shop", &same, "--stage", "--json"],
    );
    let number = staged["deploy"]["number"].as_u64().unwrap().to_string();
    let same_version = staged["version"].as_str().unwrap().to_string();
    let out = host.cli(&["shadow", "start", "--tenant", "shop", "--version", &number]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    send("same", 5).await;
    let status = wait_for("five shadow runs", Duration::from_secs(30), async || {
        let s = cli_json(
            &host,
            admin,
            &["shadow", "status", "--tenant", "shop", "--json"],
        );
        let counts = &s["counts"];
        let runs = counts["same"].as_u64().unwrap_or(0)
            + counts["inconclusive"].as_u64().unwrap_or(0)
            + counts["differs"].as_u64().unwrap_or(0);
        (runs == 5).then_some(s)
    })
    .await;
    assert!(status["counts"]["differs"].is_null(), "{status}");

    let out = host.cli(&["shadow", "promote", "--tenant", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        plugin_status(&host, "shop").await["version"],
        same_version.as_str()
    );
    let history = cli_json(&host, admin, &["versions", "--tenant", "shop", "--json"]);
    assert_eq!(history["deploys"][0]["kind"], "promote");
    assert_eq!(
        history["deploys"][0]["reactivates"],
        staged["deploy"]["number"]
    );
    let status = cli_json(
        &host,
        admin,
        &["shadow", "status", "--tenant", "shop", "--json"],
    );
    assert!(status["shadow"].is_null(), "{status}");
    let stderr = cli_fails(&host, admin, &["shadow", "discard", "--tenant", "shop"]);
    assert!(stderr.contains("404"), "{stderr}");
    let stderr = cli_fails(
        &host,
        admin,
        &["shadow", "start", "--tenant", "shop", "--version", "99"],
    );
    assert!(stderr.contains("404"), "{stderr}");
    let active = history["deploys"][0]["number"].to_string();
    let stderr = cli_fails(
        &host,
        admin,
        &["shadow", "start", "--tenant", "shop", "--version", &active],
    );
    assert!(
        stderr.contains("409") && stderr.contains("active"),
        "{stderr}"
    );
}
