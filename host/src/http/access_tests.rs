//! Who may call which admin route, walked over the route table itself ([`super::admin::routes`]),
//! so that a route added later is held to the same rules without anyone remembering to test it:
//! a merchant token of one tenant cannot read or change anything of another, operator routes
//! are the operator's, scopes hold, and expired, revoked or forged tokens get nothing.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use super::admin::{self, AdminRoute};
use super::auth::Access;
use super::tests::{TestApp, ADMIN_TOKEN, FINCART_BODY, TENANTS};
use crate::access::{Scope, TokenInfo};
use crate::storage::EventFilter;

/// `t` (from the router tests) and a second tenant `u`.
fn tenants() -> String {
    format!(
        "{TENANTS}
[tenants.u]
plugin = \"absent-u.wasm\"
[tenants.u.sources.fc]
provider = \"fincart\"
token = \"u-token\"
"
    )
}

/// Calls `method path` with `token` and `body`: status and JSON answer.
async fn call_as(
    app: &TestApp,
    token: &str,
    method: &Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, _, answer) = app.call(request).await;
    (status, answer)
}

/// A merchant token for `tenant` with `scopes`, made by the operator through the API.
async fn token_for(app: &TestApp, tenant: &str, scopes: &[&str]) -> (String, String) {
    let body = json!({ "name": format!("{tenant} test"), "scopes": scopes }).to_string();
    let (status, answer) = call_as(
        app,
        ADMIN_TOKEN,
        &Method::POST,
        &format!("/admin/tenants/{tenant}/tokens"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["token"].as_str().unwrap().to_string(),
        answer["id"].as_str().unwrap().to_string(),
    )
}

/// The table of the app's admin routes.
fn table(app: &TestApp) -> Vec<AdminRoute> {
    admin::routes(&app.state).table
}

/// `route`'s path with its parameters filled in.
fn path_of(route: &AdminRoute, tenant: &str, seq: &str, id: &str) -> String {
    let path = route
        .path
        .replace("{tenant}", tenant)
        .replace("{seq}", seq)
        .replace("{id}", id);
    // A search looks for the event by its number.
    if route.path == "/admin/search" {
        return format!("{path}?q={seq}");
    }
    path
}

/// What a route's body should be to get past the body parsers (so that only access decides).
fn body_of(route: &AdminRoute) -> Vec<u8> {
    match route.method {
        Method::PUT => vec![0u8; 64],
        Method::POST if route.path.ends_with("/tokens") => {
            br#"{"name": "x", "scopes": ["read"]}"#.to_vec()
        }
        _ => Vec::new(),
    }
}

/// Everything of tenant `t` a route could change.
async fn snapshot_of_t(app: &TestApp) -> Value {
    let storage = &app.state.storage;
    let events = storage
        .events("t", 100, None, &EventFilter::default())
        .await
        .unwrap();
    json!({
        "events": events.iter().map(|e| json!([e.seq, e.state, e.attempts])).collect::<Vec<_>>(),
        "deploys": storage.deploys("t", 100).await.unwrap(),
        "published": storage.published_plugins().await.unwrap(),
        "tokens": storage.tokens(Some("t")).await.unwrap(),
        "kv": storage.kv_entries("t", "", None, 100).await.unwrap().len(),
    })
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_and_who_may_call_them() {
    let app = TestApp::new(&tenants(), |_| {});
    let doc: Value = serde_json::from_str(super::console::OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described: Vec<(String, String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path == "/admin/openapi.json" {
                continue;
            }
            let access = operation["x-hookhost-access"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} says nothing of its access"));
            described.push((method.to_uppercase(), path.clone(), access.to_string()));
        }
    }
    let mut served: Vec<(String, String, String)> = table(&app)
        .iter()
        .map(|route| {
            let access = match route.access {
                Access::Operator => "operator".to_string(),
                Access::Merchant(scope) => scope.to_string(),
                Access::AnyCaller => "any".to_string(),
            };
            (route.method.to_string(), route.path.to_string(), access)
        })
        .collect();
    described.sort();
    served.sort();
    assert_eq!(described, served);
    // Every reference resolves.
    let text = super::console::OPENAPI;
    for (i, _) in text.match_indices("\"$ref\": \"#/") {
        let start = i + "\"$ref\": \"#/".len();
        let end = start + text[start..].find('"').unwrap();
        let mut node = &doc;
        for part in text[start..end].split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {}", &text[start..end]);
    }
}

#[tokio::test]
async fn every_route_of_the_table_is_served_with_its_method() {
    let app = TestApp::new(&tenants(), |_| {});
    for route in table(&app) {
        let path = path_of(&route, "t", "1", "000000000000");
        let (status, answer) =
            call_as(&app, ADMIN_TOKEN, &route.method, &path, &body_of(&route)).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            !answer.to_string().contains("no such endpoint"),
            "{} {path} is not routed: {answer}",
            route.method
        );
    }
}

/// The issue's rule, route by route: with a token of tenant `u` holding every scope, nothing of
/// tenant `t` can be read or changed, and each refusal is the answer a missing resource gets.
#[tokio::test]
async fn a_merchant_token_reaches_nothing_of_another_tenant_on_any_route() {
    let app = TestApp::new(&tenants(), |_| {});
    let (status, _, answer) = app.fincart(FINCART_BODY).await;
    assert_eq!(status, StatusCode::OK);
    let seq = answer["event"].as_i64().unwrap().to_string();
    let (_, t_token_id) = token_for(&app, "t", &["read"]).await;
    let (u_token, _) = token_for(&app, "u", &["read", "replay", "deploy"]).await;
    let before = snapshot_of_t(&app).await;

    for route in table(&app) {
        let body = body_of(&route);
        let path = path_of(&route, "t", &seq, &t_token_id);
        let (status, answer) = call_as(&app, &u_token, &route.method, &path, &body).await;
        let what = format!("{} {path}: {answer}", route.method);
        let names_a_resource = route.path.contains("{tenant}") || route.path.contains("{seq}");
        match route.access {
            Access::Operator => {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                assert_eq!(
                    answer["error"],
                    "this route is the operator's: a merchant token cannot use it"
                );
            }
            Access::Merchant(_) if names_a_resource => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                // Exactly what a tenant or event that does not exist gets.
                let missing = path_of(&route, "nobody", "999999", "000000000000");
                let (missing_status, missing_answer) =
                    call_as(&app, &u_token, &route.method, &missing, &body).await;
                assert_eq!(missing_status, StatusCode::NOT_FOUND, "{missing}");
                let expected = missing_answer["error"]
                    .as_str()
                    .unwrap()
                    .replace("\"nobody\"", "\"t\"")
                    .replace("999999", &seq);
                assert_eq!(answer["error"], expected.as_str(), "{what}");
            }
            Access::Merchant(_) if route.path == "/admin/search" => {
                // A search across tenants finds nothing of another tenant's.
                assert_eq!(status, StatusCode::OK, "{what}");
                assert_eq!(answer["events"], json!([]), "{what}");
                let by_order = format!("/admin/search?q={}", "o-1");
                let (_, answer) = call_as(&app, &u_token, &Method::GET, &by_order, b"").await;
                assert_eq!(answer["events"], json!([]), "{by_order}: {answer}");
            }
            Access::Merchant(_) => {
                // A route naming no tenant shows the merchant only its own.
                let lists_tenants = ["/admin/tenants", "/admin/overview"].contains(&route.path);
                assert!(lists_tenants, "decide how {what} is scoped");
                assert_eq!(status, StatusCode::OK, "{what}");
                let names: Vec<&str> = answer["tenants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["u"], "{what}");
                // Nor where the operator keeps its plugin file on the server.
                assert!(
                    answer["tenants"][0]["plugin"].get("path").is_none(),
                    "{what}"
                );
            }
            Access::AnyCaller => {
                assert_eq!(status, StatusCode::OK, "{what}");
                assert!(!answer.to_string().contains("\"t\""), "{what}");
            }
        }
    }
    assert_eq!(snapshot_of_t(&app).await, before, "nothing of t changed");
    // The same token does reach its own tenant.
    let (status, answer) =
        call_as(&app, &u_token, &Method::GET, "/admin/tenants/u/events", b"").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn scopes_hold_and_expired_revoked_or_forged_tokens_get_nothing() {
    let app = TestApp::new(&tenants(), |_| {});
    app.fincart(FINCART_BODY).await;
    let (reader, reader_id) = token_for(&app, "t", &["read"]).await;
    let get = |token: String, path: &'static str| {
        let app = &app;
        async move { call_as(app, &token, &Method::GET, path, b"").await }
    };
    let (status, _) = get(reader.clone(), "/admin/tenants/t/events").await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, scope) in [
        (Method::POST, "/admin/events/1/replay", "replay"),
        (
            Method::POST,
            "/admin/tenants/t/dead-letters/replay",
            "replay",
        ),
        (Method::PUT, "/admin/tenants/t/plugin", "deploy"),
        (Method::POST, "/admin/tenants/t/plugin/rollback", "deploy"),
    ] {
        let (status, answer) = call_as(&app, &reader, &method, path, b"x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            answer["error"],
            format!("this token lacks the `{scope}` scope")
        );
    }
    // With the scope, the route's own answer (this test host loads no plugins).
    let (deployer, _) = token_for(&app, "t", &["deploy"]).await;
    let (status, answer) = call_as(
        &app,
        &deployer,
        &Method::PUT,
        "/admin/tenants/t/plugin",
        b"x",
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "this host does not load plugins" })
        )
    );
    let (status, answer) = get(reader.clone(), "/admin/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["role"], "merchant");
    assert_eq!(answer["tenant"], "t");
    assert_eq!(answer["token"]["scopes"], json!(["read"]));
    assert!(
        !answer.to_string().contains(&reader),
        "the token is not echoed"
    );

    // Forged: a real id with another secret, a made-up id, the shape of nothing.
    let forged = format!("{}x", &reader[..reader.len() - 1]);
    for token in [forged, "hhk_0123456789ab_secret".into(), "hhk_".into()] {
        let (status, answer) = get(token.clone(), "/admin/tenants/t/events").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {answer}");
    }
    // Expired.
    let expired = crate::access::mint();
    let info = TokenInfo {
        id: expired.id.clone(),
        tenant: "t".into(),
        name: "old".into(),
        scopes: [Scope::Read].into(),
        created_at_ms: 1,
        expires_at_ms: Some(2),
        last_used_at_ms: None,
        revoked_at_ms: None,
    };
    app.state
        .storage
        .create_token(&info, &expired.hash)
        .await
        .unwrap();
    let (status, answer) = get(expired.token.clone(), "/admin/tenants/t/events").await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "this token has expired" })
        )
    );
    // Revoked: refused from the next request on, and listed as revoked.
    let (status, answer) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::DELETE,
        &format!("/admin/tokens/{reader_id}"),
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["revoked"]["revoked_at_ms"].is_u64());
    let (status, answer) = get(reader.clone(), "/admin/tenants/t/events").await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "this token was revoked" })
        )
    );
    let (status, _) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::DELETE,
        "/admin/tokens/000000000000",
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The operator's token still reaches everything.
    let (status, _) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::GET,
        "/admin/tenants/t/events",
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secrets_and_refused_when_malformed() {
    let app = TestApp::new(&tenants(), |_| {});
    let body = json!({ "name": "ci deploys", "scopes": "read,deploy", "expires_in_secs": 3600 });
    let (status, created) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::POST,
        "/admin/tenants/t/tokens",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("hhk_"));
    assert_eq!(created["scopes"], json!(["read", "deploy"]));
    assert!(created["expires_at_ms"].as_u64().unwrap() > crate::now_ms());
    let (status, listed) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::GET,
        "/admin/tenants/t/tokens",
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["tokens"][0]["id"], created["id"]);
    assert_eq!(listed["tokens"][0]["name"], "ci deploys");
    let text = listed.to_string();
    assert!(!text.contains(token) && !text.contains("hash"), "{text}");
    // The store keeps only the hash.
    let stored = app
        .state
        .storage
        .token(created["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.hash, crate::access::token_hash(token));
    let (_, all) = call_as(&app, ADMIN_TOKEN, &Method::GET, "/admin/tokens", b"").await;
    assert_eq!(all["tokens"].as_array().unwrap().len(), 1);

    for (body, says) in [
        (json!({ "name": "x", "scopes": [] }), "at least one scope"),
        (json!({ "name": "x", "scopes": ["write"] }), "unknown scope"),
        (json!({ "name": "", "scopes": ["read"] }), "name"),
        (json!({ "name": "x\ny", "scopes": ["read"] }), "control"),
        (
            json!({ "name": "x", "scopes": ["read"], "expires_in_secs": 0 }),
            "at least 1",
        ),
        (
            json!({ "name": "x", "scopes": ["read"], "tenant": "u" }),
            "unknown field",
        ),
        (json!({ "scopes": ["read"] }), "missing field"),
    ] {
        let (status, answer) = call_as(
            &app,
            ADMIN_TOKEN,
            &Method::POST,
            "/admin/tenants/t/tokens",
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (status, _) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::POST,
        "/admin/tenants/nobody/tokens",
        br#"{"name": "x", "scopes": ["read"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.state.storage.tokens(None).await.unwrap().len(),
        1,
        "no refused request made a token"
    );
}

#[tokio::test]
async fn an_oversized_upload_is_refused_with_a_json_413_and_stores_nothing() {
    let app = TestApp::new(&tenants(), |_| {});
    let too_big = vec![0u8; admin::MAX_PLUGIN_BYTES + 1];
    let (status, answer) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::PUT,
        "/admin/tenants/t/plugin",
        &too_big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        answer["error"],
        "not deployed: a component is at most 64 MiB"
    );
    assert!(app.state.storage.deploys("t", 10).await.unwrap().is_empty());
}

/// A JSON body that does not parse is a 400 showing the shape the route takes, on every route
/// that takes one; where an empty body has a meaning (a rollback to the version before), it is
/// not refused.
#[tokio::test]
async fn a_malformed_json_body_is_a_400_showing_the_shape_it_should_have() {
    let app = TestApp::new(&tenants(), |_| {});
    let cases: [(Method, &str, &[u8], &str); 3] = [
        (
            Method::PUT,
            "/admin/tenants/t/plugin/shadow",
            br#"{"version": 1}"#,
            r#"{"version": <deploy number>, "share": <0 to 1>}: missing field `share`"#,
        ),
        (
            Method::POST,
            "/admin/tenants/t/plugin/rollback",
            br#"{"to": "x"}"#,
            r#"empty or {"to": <deploy number>}: invalid type"#,
        ),
        (
            Method::POST,
            "/admin/tenants/t/tokens",
            b"not json",
            r#"{"name": .., "scopes": ["read", "replay", "deploy"], "expires_in_secs": ..}: expected"#,
        ),
    ];
    for (method, path, body, shape) in cases {
        let (status, answer) = call_as(&app, ADMIN_TOKEN, &method, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("the body must be {shape}")),
            "{method} {path}: {error}"
        );
    }
    let (status, answer) = call_as(
        &app,
        ADMIN_TOKEN,
        &Method::POST,
        "/admin/tenants/t/plugin/rollback",
        b"  ",
    )
    .await;
    assert_ne!(status, StatusCode::BAD_REQUEST, "{answer}");
}
