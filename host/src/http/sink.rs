//! A built-in request sink (`POST /sink/{name}`), enabled by `sink = true`: it records what plugins
//! send, so the demo and a merchant's dev loop have a "merchant backend" to point plugins at. It
//! keeps the latest requests in memory only, and is shown by `GET /admin/sink`.
//!
//! It takes requests without a credential, so it is off by default, its route exists only when
//! enabled, what it keeps is bounded in bytes (oldest dropped first), and bodies are never logged
//! (they may hold whatever a plugin sends its backend).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::state::AppState;

/// Largest body the sink takes (larger: 413).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Bytes of bodies kept in all; the oldest requests are dropped to stay under it.
pub const MAX_KEPT_BYTES: usize = 8 * 1024 * 1024;

/// Requests kept at most, whatever their size.
const MAX_KEPT_REQUESTS: usize = 1000;

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

impl SinkRequest {
    fn size(&self) -> usize {
        self.name.len() + self.body.len()
    }
}

/// The sink's memory: the requests and their total size.
#[derive(Default)]
pub struct Sink(Mutex<(VecDeque<SinkRequest>, usize)>);

impl Sink {
    /// Everything kept, oldest first.
    pub fn all(&self) -> Vec<SinkRequest> {
        self.0
            .lock()
            .expect("sink lock")
            .0
            .iter()
            .cloned()
            .collect()
    }

    /// Keeps `request`, dropping the oldest ones to stay within the bounds.
    pub fn record(&self, request: SinkRequest) {
        let mut kept = self.0.lock().expect("sink lock");
        let (requests, bytes) = &mut *kept;
        *bytes += request.size();
        requests.push_back(request);
        while *bytes > MAX_KEPT_BYTES || requests.len() > MAX_KEPT_REQUESTS {
            let Some(oldest) = requests.pop_front() else {
                break;
            };
            *bytes -= oldest.size();
        }
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.0.lock().expect("sink lock").1
    }
}

/// Records one request (the route exists only when the sink is enabled).
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> StatusCode {
    let Some(sink) = &state.sink else {
        return StatusCode::NOT_FOUND;
    };
    let name: String = name.chars().take(128).collect();
    tracing::info!(sink = %crate::cli_text::escape(&name), bytes = body.len(), "sink received a request");
    sink.record(SinkRequest {
        name,
        at_ms: crate::now_ms(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_keeps_a_bounded_number_of_bytes() {
        let sink = Sink::default();
        let body = "x".repeat(MAX_BODY_BYTES);
        for i in 0..100 {
            sink.record(SinkRequest {
                name: format!("n{i}"),
                at_ms: 0,
                body: body.clone(),
            });
            assert!(sink.kept_bytes() <= MAX_KEPT_BYTES);
        }
        let kept = sink.all();
        assert!(kept.len() < 100 && !kept.is_empty());
        assert_eq!(kept.last().unwrap().name, "n99", "the newest is kept");
        for i in 0..2000 {
            sink.record(SinkRequest {
                name: format!("s{i}"),
                at_ms: 0,
                body: String::new(),
            });
        }
        assert_eq!(sink.all().len(), MAX_KEPT_REQUESTS);
    }
}
