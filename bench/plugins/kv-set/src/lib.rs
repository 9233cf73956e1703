//! Benchmark plugin: reads the event and records the order's latest status with one kv set.
use hookhost_guest::prelude::*;

struct KvSet;

impl Plugin for KvSet {
    fn handle(event: Event) -> Result<Outcome> {
        let order = event.order_key().unwrap_or(&event.id);
        kv::set(
            &format!("status/{order}"),
            event.raw_status.as_deref().unwrap_or("").as_bytes(),
        )?;
        Ok(Outcome::Done)
    }
}

export_plugin!(KvSet);
