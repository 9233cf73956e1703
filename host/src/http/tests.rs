//! The router, called in process (`oneshot`) over the in-memory store: every answer of the
//! webhook path and the admin API, good and bad, without spawning the binary. The end-to-end
//! tests (`tests/`) run the same paths over loopback against the real binary and SQLite.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::{app, AppState, Sink};
use crate::capabilities::http::HttpCapability;
use crate::config::{Config, Secret, Secrets};
use crate::dispatcher::{DispatchDeps, DispatchSettings, Dispatcher};
use crate::plugins::PluginRegistry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::storage::memory::MemoryStorage;
use crate::storage::{EventFilter, Storage};
use crate::tenants::Tenants;

/// Request headers of a case.
type Headers<'a> = &'a [(&'a str, &'a str)];

pub(super) const ADMIN_TOKEN: &str = "admin-token";

/// A tenant `t` with a Fincart source `fc` (token `fc-token`) and a generic source `g` that
/// takes its token in the path.
pub(super) const TENANTS: &str = r#"
[tenants.t]
plugin = "absent.wasm"
[tenants.t.sources.fc]
provider = "fincart"
token = "fc-token"
[tenants.t.sources.g]
provider = "generic"
auth = { scheme = "token", token = "path-token", token_in = "path" }
mapping = { id = "id", status = "status" }
"#;

pub(super) const FINCART_BODY: &str = r#"{"status": "processing", "subStatus": "packed", "orderId": "o-1", "refNumber": "r-1", "statusUpdatedDate": 1738336796675}"#;

/// The app over a fresh in-memory store, with no plugin loaded (accepted events wait).
pub(super) struct TestApp {
    pub(super) state: Arc<AppState>,
    router: Router,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// `tenants_toml` with the admin token set; `adjust` changes the state before the router is
    /// built.
    pub(super) fn new(tenants_toml: &str, adjust: impl FnOnce(&mut AppState)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(
            &format!("database = \"unused.db\"\n{tenants_toml}"),
            dir.path(),
        )
        .unwrap();
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let tenants = Arc::new(Tenants::from_config(&config).unwrap());
        let registry = Arc::new(PluginRegistry::default());
        let runtime = Arc::new(
            Runtime::new(&RuntimeConfig {
                cache_dir: dir.path().join("cache"),
                max_instances: 4,
                max_memory_mib: 16,
                max_table_elements: 10_000,
                decommit_batch: 1,
                pagemap_scan: false,
                max_core_instances: 8,
                fuel: false,
            })
            .unwrap(),
        );
        let dispatcher = Dispatcher::start(
            DispatchDeps {
                storage: storage.clone(),
                runtime,
                registry: registry.clone(),
                tenants: tenants.clone(),
                http_client: HttpCapability::shared_client(true).unwrap(),
                http_client_private: HttpCapability::shared_client(false).unwrap(),
            },
            DispatchSettings::new(1),
        );
        let mut state = AppState::new(
            tenants,
            storage,
            dispatcher,
            registry,
            &config.http,
            config.max_body_bytes,
        );
        state.admin_token = Some(Secrets(vec![Secret::new(ADMIN_TOKEN)]));
        adjust(&mut state);
        let state = Arc::new(state);
        TestApp {
            router: app(state.clone()),
            state,
            _dir: dir,
        }
    }

    /// Sends `request` as if from 127.0.0.1; the answer's status, headers and JSON body (or the
    /// text as a JSON string).
    pub(super) async fn call(&self, mut request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (parts.status, parts.headers, body)
    }

    pub(super) async fn webhook(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.call(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub(super) async fn fincart(&self, body: &str) -> (StatusCode, HeaderMap, Value) {
        self.webhook(
            "/hooks/t/fc",
            &[
                ("authorization", "fc-token"),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    pub(super) async fn admin(&self, method: Method, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.call(
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn journaled(&self) -> Vec<crate::storage::EventSummary> {
        self.state
            .storage
            .events("t", 100, None, &EventFilter::default())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_webhook_is_journaled_once_and_a_redelivery_is_acknowledged_as_a_duplicate() {
    let app = TestApp::new(TENANTS, |_| {});
    let (status, headers, body) = app.fincart(FINCART_BODY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "status": "accepted", "event": 1 }));
    assert!(!headers.contains_key(super::DUPLICATE_HEADER));

    let (status, headers, body) = app.fincart(FINCART_BODY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "duplicate", "event": 1 }));
    assert_eq!(headers[super::DUPLICATE_HEADER], "true");

    let journaled = app.journaled().await;
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0].duplicates, 1);
    assert_eq!(journaled[0].event.order_id.as_deref(), Some("o-1"));
    // The credential is never stored with the event.
    let detail = app.state.storage.event_detail(1).await.unwrap().unwrap();
    assert!(detail
        .headers
        .iter()
        .all(|(name, value)| name != "authorization" && !value.contains("fc-token")));
    assert!(detail
        .headers
        .iter()
        .any(|(name, _)| name == "content-type"));
}

#[tokio::test]
async fn a_token_in_the_path_reaches_the_same_handler() {
    let app = TestApp::new(TENANTS, |_| {});
    let body = r#"{"id": "g-1", "status": "paid"}"#;
    let (status, _, answer) = app.webhook("/hooks/t/g/path-token", &[], body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, answer) = app.webhook("/hooks/t/g/wrong-token", &[], body).await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, json!({ "error": "unauthorized" }))
    );
    let (status, _, _) = app.webhook("/hooks/t/g", &[], body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token at all");
    assert_eq!(app.journaled().await.len(), 1);
}

#[tokio::test]
async fn unknown_tenants_and_sources_get_one_answer() {
    let app = TestApp::new(TENANTS, |_| {});
    let expected = json!({ "error": super::NO_SUCH_ENDPOINT });
    for path in [
        "/hooks/nobody/fc",
        "/hooks/t/nothing",
        "/hooks/nobody/nothing/token",
    ] {
        let (status, _, body) = app.webhook(path, &[], FINCART_BODY).await;
        assert_eq!(
            (status, &body),
            (StatusCode::NOT_FOUND, &expected),
            "{path}"
        );
    }
    // A path the router does not serve at all: a JSON 404 too.
    let (status, _, body) = app
        .call(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("POST /hooks/"));
}

#[tokio::test]
async fn each_bad_webhook_gets_its_status_and_a_message_and_nothing_is_journaled() {
    let app = TestApp::new(TENANTS, |_| {});
    let json_type = ("content-type", "application/json");
    let cases: [(Headers, &str, StatusCode, &str); 5] = [
        (
            &[("authorization", "wrong"), json_type],
            FINCART_BODY,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            &[json_type],
            FINCART_BODY,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            &[("authorization", "fc-token"), ("content-type", "text/xml")],
            FINCART_BODY,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type \"text/xml\" is not supported",
        ),
        (
            &[("authorization", "fc-token"), json_type],
            "{\"status\": ",
            StatusCode::BAD_REQUEST,
            "body is not valid JSON: EOF while parsing a value at line 1 column 11",
        ),
        (
            &[("authorization", "fc-token"), json_type],
            r#"{"status": "processing"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "fincart payload: ",
        ),
    ];
    for (headers, body, status, message) in cases {
        let (got, _, answer) = app.webhook("/hooks/t/fc", headers, body).await;
        assert_eq!(got, status, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(message), "{error:?} for {status}");
        assert!(!error.contains("fc-token"), "the secret is never echoed");
    }
    assert!(app.journaled().await.is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let app = TestApp::new(TENANTS, |state| state.max_body_bytes = 64);
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(200));
    let (status, _, answer) = app.fincart(&body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"], "body is larger than the limit of 64 bytes");
    assert!(app.journaled().await.is_empty());
}

#[tokio::test]
async fn a_tenant_over_its_ingest_rate_gets_429_with_retry_after() {
    let tenants =
        format!("{TENANTS}[tenants.t.limits]\ningest_per_second = 0.01\ningest_burst = 1\n");
    let app = TestApp::new(&tenants, |_| {});
    let (status, _, _) = app.fincart(FINCART_BODY).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, answer) = app.fincart(FINCART_BODY).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry_after), "{retry_after}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("at most 0.01 webhooks per second"));
}

#[tokio::test]
async fn the_admin_api_answers_only_its_token_and_only_when_one_is_set() {
    let app = TestApp::new(TENANTS, |_| {});
    for token in [None, Some("Bearer wrong"), Some(ADMIN_TOKEN)] {
        let mut request = Request::get("/admin/tenants");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, token);
        }
        let (status, headers, body) = app.call(request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(body["error"].as_str().unwrap().contains("admin token"));
    }
    let (status, _, body) = app.admin(Method::GET, "/admin/tenants").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tenants"][0]["name"], "t");
    assert_eq!(
        body["tenants"][0]["sources"],
        json!([{ "name": "fc", "provider": "fincart" }, { "name": "g", "provider": "generic" }])
    );
    assert!(!body.to_string().contains("fc-token"), "no secrets");

    let without = TestApp::new(TENANTS, |state| state.admin_token = None);
    let (status, _, _) = without.admin(Method::GET, "/admin/tenants").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no token configured, no admin API"
    );
    let (status, _, _) = without
        .call(
            Request::get("/admin/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the description holds no data");
}

#[tokio::test]
async fn admin_errors_are_json_with_a_status_that_says_what_is_wrong() {
    let app = TestApp::new(TENANTS, |_| {});
    app.fincart(FINCART_BODY).await;
    let no_tenant = json!({ "error": "no tenant named \"nope\"" });
    for path in [
        "/admin/tenants/nope/kv",
        "/admin/tenants/nope/events",
        "/admin/tenants/nope/counts",
        "/admin/tenants/nope/dead-letters",
    ] {
        let (status, _, body) = app.admin(Method::GET, path).await;
        assert_eq!(
            (status, &body),
            (StatusCode::NOT_FOUND, &no_tenant),
            "{path}"
        );
    }
    let (status, _, body) = app
        .admin(Method::POST, "/admin/tenants/nope/dead-letters/replay")
        .await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, no_tenant));

    let (status, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?state=finished")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "unknown state \"finished\": use pending, running, done, skipped or dead"
    );
    let (status, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?limit=many")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string(), "JSON, not axum's text: {body}");

    let (status, _, body) = app.admin(Method::GET, "/admin/events/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("number"));
    let (status, _, body) = app.admin(Method::GET, "/admin/events/99").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({ "error": "no event 99" }))
    );
    let (status, _, body) = app.admin(Method::POST, "/admin/events/99/replay").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({ "error": "no event 99" }))
    );
    let (status, _, body) = app.admin(Method::POST, "/admin/events/1/replay").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "pending events are not replayed"
    );
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("event 1 is pending"));

    for (method, path) in [
        (Method::GET, "/admin/config"),
        (Method::POST, "/admin/config/reload"),
    ] {
        let (status, _, body) = app.admin(method, path).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::NOT_FOUND,
                json!({ "error": "this host was not started from a config file" })
            )
        );
    }
    let (status, _, body) = app.admin(Method::GET, "/admin/sink").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("sink = true"));
}

#[tokio::test]
async fn the_admin_api_lists_filters_and_counts_events() {
    let app = TestApp::new(TENANTS, |_| {});
    app.fincart(FINCART_BODY).await;
    app.fincart(
        &FINCART_BODY
            .replace("o-1", "o-2")
            .replace("packed", "shipped"),
    )
    .await;
    let (status, _, body) = app.admin(Method::GET, "/admin/tenants/t/events").await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<_> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(1)], "newest first");
    let (_, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?order=o-1")
        .await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    let (_, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?limit=1")
        .await;
    assert_eq!(body["next_before"], 2, "a full page has a cursor");
    let (_, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?state=done")
        .await;
    assert_eq!(body["events"], json!([]));
    let (_, _, body) = app.admin(Method::GET, "/admin/tenants/t/counts").await;
    assert_eq!(body["counts"]["pending"], 2);
    assert_eq!(body["counts"]["dead"], 0);
    let (status, _, body) = app.admin(Method::GET, "/admin/events/2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["body"].as_str().unwrap().contains("shipped"));
}

/// The console's navigation: filters by source and event id, a search across tenants by number,
/// event id, order id or reference, the all-tenants overview and the activity charts; each bad
/// parameter is a 400 saying what is wrong.
#[tokio::test]
async fn the_admin_api_searches_summarizes_and_charts_events() {
    let app = TestApp::new(TENANTS, |_| {});
    app.fincart(FINCART_BODY).await;
    app.fincart(&FINCART_BODY.replace("o-1", "o-2")).await;
    let (_, _, body) = app.admin(Method::GET, "/admin/events/2").await;
    let event_id = body["event"]["id"].as_str().unwrap().to_string();

    let seqs = |body: &Value| -> Vec<i64> {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    let (_, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?source=fc")
        .await;
    assert_eq!(seqs(&body), [2, 1]);
    let (status, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?source=nope")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no source \"nope\" (it has: fc, g)"),
        "{body}"
    );
    let (_, _, body) = app
        .admin(
            Method::GET,
            &format!("/admin/tenants/t/events?event_id={event_id}"),
        )
        .await;
    assert_eq!(seqs(&body), [2]);
    let (status, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/events?since_ms=5&until_ms=5")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    for (q, found) in [
        ("2", vec![2]),
        ("%232", vec![2]),
        ("o-1", vec![1]),
        ("r-1", vec![2, 1]),
        (event_id.as_str(), vec![2]),
        ("nothing", vec![]),
    ] {
        let (status, _, body) = app
            .admin(Method::GET, &format!("/admin/search?q={q}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(seqs(&body), found, "{q}: {body}");
    }
    let (status, _, body) = app.admin(Method::GET, "/admin/search?q=%20").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("event number"),
        "{body}"
    );

    let (status, _, body) = app.admin(Method::GET, "/admin/overview").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = &body["tenants"][0];
    assert_eq!(t["name"], "t");
    assert_eq!(t["counts"]["pending"], 2, "no plugin: both wait");
    assert_eq!(t["last_hour"]["received"], 2);
    assert!(t["oldest_unfinished_age_s"].as_f64().unwrap() >= 0.0, "{t}");
    assert_eq!(t["plugin"]["version"], Value::Null);

    let (status, _, body) = app.admin(Method::GET, "/admin/tenants/t/activity").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["window"], "hour");
    assert_eq!(body["t"].as_array().unwrap().len(), 60);
    assert_eq!(
        body["received"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .sum::<u64>(),
        2
    );
    assert_eq!(body["totals"]["done"], 0);
    let (_, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/activity?window=day")
        .await;
    assert_eq!(body["t"].as_array().unwrap().len(), 96);
    let (status, _, body) = app
        .admin(Method::GET, "/admin/tenants/t/activity?window=week")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("`hour` or `day`"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_need_their_token_when_one_is_set() {
    let app = TestApp::new(TENANTS, |state| {
        state.metrics_token = Some(Secrets(vec![Secret::new("m-token")]))
    });
    let get = |token: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let (status, headers, _) = app.call(get(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = app.call(get(Some(ADMIN_TOKEN))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the admin token is not the metrics token"
    );
    // Past the token: this process installed no exporter.
    let (status, _, body) = app.call(get(Some("m-token"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "metrics are not installed in this process");
}

#[tokio::test]
async fn readiness_is_bare_without_the_admin_token() {
    let app = TestApp::new(TENANTS, |_| {});
    let (status, _, body) = app
        .call(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "ready": false }))
    );
    let (status, _, body) = app.admin(Method::GET, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["store"], "ok");
    assert_eq!(body["tenants_without_plugin"], json!(["t"]));
}

#[tokio::test]
async fn a_development_host_answers_only_loopback_host_names() {
    let app = TestApp::new(TENANTS, |state| state.loopback_host_only = true);
    let with_host = |host: &str| {
        Request::get("/healthz")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = app.call(with_host("rebound.example:8080")).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("localhost"));
    let (status, _, body) = app.call(with_host("localhost:8080")).await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
}

#[tokio::test]
async fn the_sink_exists_only_when_enabled_and_keeps_what_it_receives() {
    let disabled = TestApp::new(TENANTS, |_| {});
    let post = || {
        Request::post("/sink/orders")
            .body(Body::from("{\"n\":1}"))
            .unwrap()
    };
    let (status, _, _) = disabled.call(post()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let enabled = TestApp::new(TENANTS, |state| state.sink = Some(Sink::default()));
    let (status, _, _) = enabled.call(post()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = enabled.admin(Method::GET, "/admin/sink").await;
    assert_eq!(body["requests"][0]["name"], "orders");
    assert_eq!(body["requests"][0]["body"], "{\"n\":1}");
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let app = TestApp::new(TENANTS, |_| {});
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let (status, headers, _) = app
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            super::console::CONSOLE_CSP
        );
    }
}

/// Publishing a plugin: the admin token first (a stranger's upload is refused before anything is
/// read or compiled), then the tenant, then a host that can load plugins; nothing is stored.
#[tokio::test]
async fn a_plugin_upload_is_refused_without_the_token_for_an_unknown_tenant_or_without_a_loader() {
    let app = TestApp::new(TENANTS, |_| {});
    let upload = |token: Option<&str>, tenant: &str| {
        let mut request = Request::builder()
            .method(Method::PUT)
            .uri(format!("/admin/tenants/{tenant}/plugin"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::from(vec![0u8; 4096])).unwrap()
    };
    for token in [None, Some("wrong")] {
        let (status, _, body) = app.call(upload(token, "t")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _, body) = app.call(upload(Some(ADMIN_TOKEN), "nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = app.call(upload(Some(ADMIN_TOKEN), "t")).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "this host does not load plugins" })
        )
    );
    assert!(app
        .state
        .storage
        .published_plugins()
        .await
        .unwrap()
        .is_empty());
}
