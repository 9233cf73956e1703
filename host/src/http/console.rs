//! The web console (one page, its script and its style sheet) and the admin API's OpenAPI
//! description, embedded in the binary (no CDN). They hold no data: everything the console shows
//! comes from the admin API with the token the operator signs in with, so they are served
//! without one.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The admin API's OpenAPI 3.1 description (kept in sync with the admin routes by a test).
pub const OPENAPI: &str = include_str!("../../api/openapi.json");

/// The console page.
pub const CONSOLE: &str = include_str!("../../console/index.html");
const CONSOLE_SCRIPT: &str = include_str!("../../console/app.js");
const CONSOLE_STYLE: &str = include_str!("../../console/app.css");
/// uPlot (MIT), the charting library, as published on npm: the version pinned in
/// `host/console/package.json`, copied by `scripts/vendor-console.sh` (which the test script
/// runs to check the copy is that version's).
const CHART_SCRIPT: &str = include_str!("../../console/vendor/uPlot.iife.min.js");
const CHART_STYLE: &str = include_str!("../../console/vendor/uPlot.min.css");

/// The console's Content-Security-Policy: scripts and styles only from the served files (no
/// inline code, so injected markup cannot run), requests only to this host, no framing.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /admin/openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn console_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`.
pub async fn page() -> Response {
    console_file("text/html; charset=utf-8", CONSOLE)
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    console_file("text/javascript; charset=utf-8", CONSOLE_SCRIPT)
}

/// `GET /console/app.css`.
pub async fn style() -> Response {
    console_file("text/css; charset=utf-8", CONSOLE_STYLE)
}

/// `GET /console/vendor/uPlot.iife.min.js`.
pub async fn chart_script() -> Response {
    console_file("text/javascript; charset=utf-8", CHART_SCRIPT)
}

/// `GET /console/vendor/uPlot.min.css`.
pub async fn chart_style() -> Response {
    console_file("text/css; charset=utf-8", CHART_STYLE)
}
