//! A built-in request sink (`POST /sink/{name}`), enabled by `sink = true`: it records what plugins
//! send, so the demo and a merchant's dev loop have a "merchant backend" to point plugins at. It
//! keeps the latest requests in memory only, and is shown by `GET /admin/sink`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use crate::app::App;

/// Requests kept.
const CAPACITY: usize = 1000;

/// One request received by the sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRequest {
    /// The `{name}` in the path.
    pub name: String,
    /// When it arrived (ms since the epoch).
    pub at_ms: u64,
    /// The body, as text.
    pub body: String,
}

/// The sink's memory.
#[derive(Default)]
pub struct Sink(Mutex<VecDeque<SinkRequest>>);

impl Sink {
    /// Everything kept, oldest first.
    pub fn all(&self) -> Vec<SinkRequest> {
        self.0.lock().expect("sink lock").iter().cloned().collect()
    }
}

/// Records one request.
pub async fn receive(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Bytes,
) -> StatusCode {
    let Some(sink) = &app.sink else {
        return StatusCode::NOT_FOUND;
    };
    let request = SinkRequest {
        name,
        at_ms: crate::now_ms(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    tracing::info!(sink = %request.name, "sink received: {}", request.body);
    let mut kept = sink.0.lock().expect("sink lock");
    if kept.len() == CAPACITY {
        kept.pop_front();
    }
    kept.push_back(request);
    StatusCode::OK
}
