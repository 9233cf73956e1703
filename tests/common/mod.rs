//! Shared helpers for the end-to-end tests: build the plugins, start the real `hookhost` binary on
//! an ephemeral port with a config written for the test, talk to it over real HTTP, and run a
//! local "merchant backend" that records what plugins send it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

// Each test binary uses its own subset of the fixtures.
#[allow(unused_imports)]
pub use hookhost_fixtures::{
    plugin, quoted, rss_mib, script_plugin, spawn_listening, target_dir, tenants, workspace,
    TenantToml, ADMIN_TOKEN, FINCART_AUTH, FINCART_TOKEN, JSON, LISTENING,
};

/// Seconds since the Unix epoch (for signed timestamps).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// An HTTP client for the test hosts: pooled connections idle out after 5 s, well before the
/// host's header-read timeout closes them, as clients of a keep-alive server should.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test host's whole config: loopback on an ephemeral port, a database in the host's folder, the
/// shared plugin cache, the sink, the admin token, and `tenants_toml`.
pub fn config_text(tenants_toml: &str) -> String {
    let cache = target_dir().join("hookhost-test-cache");
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"hookhost.db\"\ncache_dir = {cache:?}\nsink = true\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{tenants_toml}"
    )
}

/// A running `hookhost serve`, killed when dropped.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Holds the config, database and logs.
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Host {
    /// Starts hookhost with `tenants_toml` (the `[tenants...]` part of a config) and waits until it
    /// listens. The database lives in a fresh temporary folder; the precompiled-plugin cache is
    /// shared by all tests so each plugin is compiled once.
    pub async fn start(tenants_toml: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        Host::start_in(dir, tenants_toml).await
    }

    /// Like [`Host::start`], in an existing folder (to restart on the same database).
    pub async fn start_in(dir: tempfile::TempDir, tenants_toml: &str) -> Host {
        Host::start_with_env(dir, tenants_toml, &[]).await
    }

    /// Like [`Host::start_in`], with extra environment variables for the host process.
    pub async fn start_with_env(
        dir: tempfile::TempDir,
        tenants_toml: &str,
        env: &[(&str, &str)],
    ) -> Host {
        Host::start_with_config(dir, &config_text(tenants_toml), env).await
    }

    /// Starts hookhost with a whole config file's text (not only its tenants).
    pub async fn start_with_config(
        dir: tempfile::TempDir,
        config: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let config_path = dir.path().join("hookhost.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("hookhost.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookhost"));
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,hookhost=debug")
            .envs(env.iter().copied())
            .stderr(log);
        let (child, base) = spawn_listening(command, LISTENING, Duration::from_secs(60))
            .unwrap_or_else(|why| {
                panic!(
                    "{why}; its log:\n{}",
                    std::fs::read_to_string(dir.path().join("hookhost.log")).unwrap_or_default()
                )
            });
        Host {
            child,
            base,
            dir,
            client: client(),
        }
    }

    /// The host's log so far (for assertion messages).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hookhost.log")).unwrap_or_default()
    }

    /// Sends a webhook: POST /hooks/{tenant}/{source} with the given headers and raw body.
    pub async fn send(
        &self,
        tenant: &str,
        source: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/hooks/{tenant}/{source}", self.base))
            .body(body.into());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("send webhook")
    }

    /// GET an admin path (e.g. "/admin/tenants/acme/kv") as JSON.
    pub async fn admin(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        assert!(
            response.status().is_success(),
            "admin GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A tenant's whole kv as a map of key → value text (following the pages).
    pub async fn kv(&self, tenant: &str) -> std::collections::BTreeMap<String, String> {
        let mut all = std::collections::BTreeMap::new();
        let mut path = format!("/admin/tenants/{tenant}/kv?limit=1000");
        loop {
            let page = self.admin(&path).await;
            for e in page["entries"].as_array().unwrap() {
                all.insert(
                    e["key"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap_or("").to_string(),
                );
            }
            match page["next_after"].as_str() {
                Some(after) => {
                    path = format!(
                        "/admin/tenants/{tenant}/kv?limit=1000&after={}",
                        url_escape(after)
                    )
                }
                None => return all,
            }
        }
    }

    /// Every event of a tenant, newest first (following the pages).
    pub async fn all_events(&self, tenant: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut path = format!("/admin/tenants/{tenant}/events?limit=500");
        loop {
            let page = self.admin(&path).await;
            all.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next_before"].as_i64() {
                Some(before) => {
                    path = format!("/admin/tenants/{tenant}/events?limit=500&before={before}")
                }
                None => return all,
            }
        }
    }

    /// One event's detail.
    pub async fn event(&self, seq: i64) -> Value {
        self.admin(&format!("/admin/events/{seq}")).await
    }

    /// A tenant's events, newest first.
    pub async fn events(&self, tenant: &str) -> Vec<Value> {
        self.admin(&format!("/admin/tenants/{tenant}/events?limit=500"))
            .await["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until every event of `tenant` (the newest 500) is `done`, and returns them.
    pub async fn wait_all_done(&self, tenant: &str, timeout: Duration) -> Vec<Value> {
        wait_for(
            &format!("every event of {tenant} to be done"),
            timeout,
            async || {
                let events = self.events(tenant).await;
                events
                    .iter()
                    .all(|e| e["state"] == "done")
                    .then_some(events)
            },
        )
        .await
    }

    /// Waits until event `seq` reaches one of the final states, and returns its detail.
    pub async fn wait_finished(&self, seq: i64, timeout: Duration) -> Value {
        wait_for(&format!("event {seq} to finish"), timeout, async || {
            let e = self.event(seq).await;
            (!matches!(e["state"].as_str(), Some("pending" | "running"))).then_some(e)
        })
        .await
    }

    /// Sends SIGKILL and waits for the process to end.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local HTTP server standing in for a merchant's backend: records every request's path and
/// JSON body; answers with `status` (changeable while running).
#[derive(Clone)]
pub struct Backend {
    /// `127.0.0.1:PORT`
    pub addr: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    status: Arc<Mutex<u16>>,
    delay: Arc<Mutex<Duration>>,
}

impl Backend {
    /// Starts the backend on an ephemeral loopback port.
    pub async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backend = Backend {
            addr,
            received: Arc::default(),
            status: Arc::new(Mutex::new(200)),
            delay: Arc::default(),
        };
        let state = backend.clone();
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    state
                        .received
                        .lock()
                        .unwrap()
                        .push((uri.path().to_string(), json));
                    let delay = *state.delay.lock().unwrap();
                    tokio::time::sleep(delay).await;
                    axum::http::StatusCode::from_u16(*state.status.lock().unwrap()).unwrap()
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        backend
    }

    /// Every request so far: (path, JSON body).
    pub fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// Makes the backend answer each request `delay` after recording it, from now on (a slow
    /// backend keeps attempts running longer, so that overlaps show).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Records `mark` as if it had been received at `path` (a test's own events, in order with
    /// the requests: a kill, say).
    pub fn mark(&self, path: &str, mark: Value) {
        self.received.lock().unwrap().push((path.to_string(), mark));
    }

    /// Makes the backend answer with `status` from now on.
    pub fn set_status(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }
}

/// The Fincart sample payload from `shared/providers/fincart-order-status.md` (comments removed).
pub const FINCART_SAMPLE: &str = r##"{
  "status": "processing",
  "subStatus": "out for delivery",
  "rejectionReason": null,
  "supportNote": "Customer requested a delay",
  "trackingNumber": "ARX123456XXX",
  "returnTrackingNumber": null,
  "statusUpdatedDate": 1738336796675,
  "orderId": "67387ce18aa2230090e0XXXX",
  "orderNumber": "ZZZ-DR-0013XXX",
  "courier": "J&T",
  "courierLogo": "logo",
  "action": "Order Updated",
  "invoiced": true,
  "invoicedAt": 1738336796675,
  "refNumber": "#1123"
}"##;

/// A Fincart status change for `order` (merchant ref `ref_number`).
pub fn fincart_status(
    order: &str,
    ref_number: &str,
    status: &str,
    sub_status: &str,
    at_ms: u64,
) -> String {
    serde_json::json!({
        "status": status, "subStatus": sub_status, "rejectionReason": null, "trackingNumber": "TRK1",
        "statusUpdatedDate": at_ms, "orderId": order, "orderNumber": "N-1", "courier": "J&T",
        "action": "Order Status Changed", "refNumber": ref_number,
    })
    .to_string()
}

/// HMAC computed by Python's standard library, so signature tests never use the code (or the
/// crates) under test to produce their vectors. `algorithm` is "sha256" or "sha512".
pub fn python_hmac(algorithm: &str, key: &[u8], message: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let script = format!(
        "import hmac,hashlib,sys; d=sys.stdin.buffer.read(); k=bytes.fromhex(d[:{n}].decode()); \
         sys.stdout.write(hmac.new(k, d[{n}:], hashlib.{algorithm}).hexdigest())",
        n = key.len() * 2
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 computes the test vectors");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(hex_encode(key).as_bytes()).unwrap();
    stdin.write_all(message).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    hex_decode(std::str::from_utf8(&out.stdout).unwrap())
}

/// Lowercase hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex to bytes.
pub fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Every JSON object written in a provider document (fenced or not, with `//` comments removed),
/// in document order: the documents' own samples.
pub fn json_samples(document: &str) -> Vec<String> {
    let lines: Vec<&str> = document.lines().collect();
    let mut samples = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with('{') {
            i += 1;
            continue;
        }
        let mut depth = 0i32;
        let mut text = String::new();
        let mut j = i;
        while j < lines.len() {
            let line = strip_comment(lines[j]);
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            text.push_str(&line);
            text.push('\n');
            if depth <= 0 {
                break;
            }
            j += 1;
        }
        if serde_json::from_str::<Value>(&text).is_ok() {
            samples.push(text);
        }
        i = j + 1;
    }
    samples
}

fn strip_comment(line: &str) -> String {
    // `//` outside a string starts a comment in the documents' samples.
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (k, &c) in bytes.iter().enumerate() {
        match c {
            b'\\' if in_string => escaped = !escaped,
            b'"' if !escaped => in_string = !in_string,
            b'/' if !in_string && bytes.get(k + 1) == Some(&b'/') => return line[..k].to_string(),
            _ => escaped = false,
        }
        if c != b'\\' {
            escaped = false;
        }
    }
    line.to_string()
}

/// The folder of the providers' documents: `shared/providers` beside the repository when it is
/// there (the current versions), else the copies kept in `tests/fixtures/providers`.
pub fn provider_documents() -> PathBuf {
    let shared = workspace().parent().unwrap().join("shared/providers");
    if shared.join("fincart-order-status.md").is_file() {
        return shared;
    }
    let kept = workspace().join("tests/fixtures/providers");
    assert!(kept.is_dir(), "{} is missing", kept.display());
    kept
}

impl Host {
    /// The process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the process to exit; returns its exit code.
    pub fn terminate(mut self, timeout: Duration) -> (Option<i32>, tempfile::TempDir) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            assert!(
                Instant::now() < deadline,
                "hookhost did not exit within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = tempfile::tempdir().unwrap();
        (code, std::mem::replace(&mut self.dir, dir))
    }

    /// Rewrites the host's config file with other tenants (applied on SIGHUP or admin reload).
    pub fn write_config(&self, tenants_toml: &str) {
        std::fs::write(
            self.dir.path().join("hookhost.toml"),
            config_text(tenants_toml),
        )
        .unwrap();
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the host.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// POSTs to an admin path; returns the status and the JSON answer.
    pub async fn admin_post(&self, path: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Runs `hookhost <args>` (a CLI command) against this host's admin API.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_as(ADMIN_TOKEN, args)
    }

    /// Runs `hookhost <args>` against this host's admin API with `token` (a merchant's).
    pub fn cli_as(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_hookhost"))
            .args(args)
            .env("HOOKHOST_URL", &self.base)
            .env("HOOKHOST_ADMIN_TOKEN", token)
            .output()
            .expect("run the hookhost CLI")
    }
}

impl Backend {
    /// How many requests carried JSON `{"id": id}`.
    pub fn count_id(&self, id: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body["id"] == id)
            .count()
    }
}

/// A webhook (Fincart-shaped) for the `misbehave` test plugin: `mode` says how it misbehaves
/// (see tests/plugins/misbehave); `spin` modes busy-wait 1.5 s.
pub fn misbehaving(order: &str, mode: &str) -> String {
    serde_json::json!({ "orderId": order, "status": "pending", "statusUpdatedDate": 1, "misbehave": mode, "spin_ms": 1500 }).to_string()
}

/// The event number of an accepted webhook (fails the test if it was not accepted).
pub async fn accepted(response: reqwest::Response) -> i64 {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    body["event"].as_i64().unwrap()
}

impl Host {
    /// Scrapes `/metrics` and parses it with a Prometheus text parser (so the format is checked
    /// too); returns the value of the sample `name` whose labels include `labels` (0 if none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid Prometheus text");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

/// Writes `bytes` next to `path` and renames it into place, as cargo and most editors do.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The same component with a custom section appended: another version (content hash) with
/// exactly the same behaviour.
pub fn variant_of(component: &Path, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(component).unwrap();
    let name = b"hookhost-test-variant";
    let payload_len = 1 + name.len() + tag.len();
    assert!(payload_len < 128, "one-byte LEB128 length");
    bytes.push(0); // custom section
    bytes.push(payload_len as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

/// Percent-encodes a query value.
pub fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
