//! Benchmark plugin: the kv-set reaction of `bench/plugins/kv-set` (read the event, record the
//! order's latest status with one kv set) written the Extism way: the event arrives as JSON, the
//! kv set is a host function. Built for `wasm32-unknown-unknown` (Extism's core-module ABI).
use extism_pdk::*;
use serde::Deserialize;

#[host_fn]
extern "ExtismHost" {
    fn kv_set(key: String, value: String);
}

/// The fields of hookhost's event the reaction reads.
#[derive(Deserialize)]
struct Event {
    id: String,
    order_id: Option<String>,
    merchant_ref: Option<String>,
    raw_status: Option<String>,
}

#[plugin_fn]
pub fn handle(Json(event): Json<Event>) -> FnResult<String> {
    let order = event.merchant_ref.or(event.order_id).unwrap_or(event.id);
    // SAFETY: `kv_set` is provided by the benchmark host with this signature.
    unsafe {
        kv_set(
            format!("status/{order}"),
            event.raw_status.unwrap_or_default(),
        )?
    };
    Ok("done".into())
}
