//! `hookhost new`: scaffolds a Rust plugin crate on the guest SDK — a working reaction (remember
//! each order's latest status), its pure logic unit-tested natively, and a README with the dev
//! loop — so a merchant starts from something that builds, loads and passes its test.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the guest SDK is when hookhost runs from its source tree.
const SDK_IN_SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// Creates the crate `name` in `dir` (default `./name`); `sdk` is the guest SDK's folder
/// (default: `$HOOKHOST_SDK`, else the SDK beside this hookhost's sources). Returns the folder.
pub fn new_plugin(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!("plugin name {name:?} must start with a lowercase letter and hold only lowercase letters, digits, '-' or '_' (it becomes the crate name)");
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some())? {
        bail!(
            "{} already exists and is not empty: choose another name or --dir",
            dir.display()
        );
    }
    let sdk = match sdk {
        Some(sdk) => sdk.to_path_buf(),
        None => match std::env::var_os("HOOKHOST_SDK") {
            Some(sdk) => PathBuf::from(sdk),
            None => PathBuf::from(SDK_IN_SOURCE_TREE),
        },
    };
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .with_context(|| {
            format!(
                "the guest SDK is not at {}: pass --sdk PATH (the hookhost repository's guest-sdk folder) or set HOOKHOST_SDK",
                sdk.display()
            )
        })?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let type_name: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| p[..1].to_ascii_uppercase() + &p[1..])
        .collect();
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (
            "src/lib.rs",
            LIB_RS.replace("{name}", name).replace("{Type}", &type_name),
        ),
        ("README.md", README.replace("{name}", name)),
        (".gitignore", "/target\n/.hookhost-dev\n".to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# A component for hookhost: `cargo build --target wasm32-wasip2 --release`.
crate-type = ["cdylib"]

[dependencies]
hookhost-guest = {{ path = {sdk:?} }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true

# Its own workspace, wherever it is created.
[workspace]
"#,
        sdk = sdk.display().to_string()
    )
}

const LIB_RS: &str = r#"//! {name}: remembers each order's latest status in kv (`order/<id>`); events without an order
//! are skipped. Edit `handle` for your reaction; `cargo test` runs the pure logic natively.
use hookhost_guest::prelude::*;

struct {Type};

impl Plugin for {Type} {
    fn handle(event: Event) -> Result<Outcome> {
        let Some((key, record)) = order_record(&event) else {
            return Ok(Outcome::Skipped("the event carries no order id".into()));
        };
        kv::set_json(&key, &record)?;
        info!("{key} is now {:?}", event.status);
        Ok(Outcome::Done)
    }
}

/// What to remember about the event's order (pure: unit-tested natively).
fn order_record(event: &Event) -> Option<(String, serde_json::Value)> {
    let order = event.order_key()?;
    let record = json!({ "status": event.raw_status, "event": event.id, "attempt": event.attempt });
    Some((format!("order/{order}"), record))
}

export_plugin!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use hookhost_guest::testing;

    #[test]
    fn remembers_the_latest_status_of_the_order() {
        let (key, record) = order_record(&testing::event()).unwrap();
        assert_eq!(key, "order/#1001");
        assert_eq!(record["status"], "PAID");
    }

    #[test]
    fn events_without_an_order_are_skipped() {
        let mut event = testing::event();
        (event.order_id, event.merchant_ref) = (None, None);
        assert!(order_record(&event).is_none());
    }
}
"#;

const README: &str = r#"# {name}

A hookhost plugin: remembers each order's latest status in kv (`order/<id>`).

- `cargo test` — the plugin's logic, natively.
- `hookhost dev .` — builds the component (`cargo build --target wasm32-wasip2 --release`), serves
  it in a local host with a `dev` tenant, and rebuilds and hot-swaps it on every save (a failing
  build prints the compiler's errors and the previous version keeps serving).
- `hookhost send fincart --config .hookhost-dev/hookhost.toml --tenant dev --source fincart` —
  sends a signed sample webhook to it (`hookhost send --list` shows every provider's samples);
  see what it did at `http://127.0.0.1:8080/admin/tenants/dev/events` (token `dev`).
"#;
