//! Host capabilities a plugin imports (`log`, `kv`, `http`, `config`). Each is a small unit whose
//! state is plain Rust, testable without Wasm; the runtime only adapts the WIT calls onto them.

pub mod config;
pub mod http;
pub mod kv;
pub mod log;
