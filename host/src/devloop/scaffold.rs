//! `hookhost new`: scaffolds a plugin — a Rust crate on the guest SDK, or a JavaScript or Python
//! project on the guest helpers — with a working reaction (remember each order's latest status),
//! its pure logic unit-tested natively (`cargo test`, `node --test`, `python3 -m unittest`), and a
//! README with the dev loop, so a merchant starts from something that builds, loads and passes its
//! test in the language they know.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the guest SDK is when hookhost runs from its source tree.
const SDK_IN_SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// The language a plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate on the Rust guest SDK, built with cargo.
    Rust,
    /// An ES module built with componentize-js.
    Js,
    /// A Python module built with componentize-py.
    Python,
}

/// The contract, embedded so a JavaScript or Python project carries the WIT it is built against.
pub const WIT: &str = include_str!("../../../wit/v0.1.0/plugin.wit");
/// The JavaScript guest helpers (guest-sdk/js), copied into a new JavaScript plugin.
pub const JS_HELPERS: &str = include_str!("../../../guest-sdk/js/hookhost.js");
/// The TypeScript declarations of the contract (generated from the WIT by jco), for editors.
pub const JS_TYPES: &[(&str, &str)] = &[
    (
        "types/merchant-plugin.d.ts",
        include_str!("../../../guest-sdk/js/types/merchant-plugin.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-types.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-types.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-handler.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-handler.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-kv.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-kv.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-http.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-http.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-config.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-config.d.ts"),
    ),
    (
        "types/interfaces/hookhost-plugin-log.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/hookhost-plugin-log.d.ts"),
    ),
];
/// The Python guest helpers (guest-sdk/python), copied into a new Python plugin.
pub const PYTHON_HELPERS: &str = include_str!("../../../guest-sdk/python/hookhost.py");
/// The pinned JavaScript build tool (tools/js/package.json's versions).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// preview2-shim pinned with it (0.26 cannot read the WIT folder).
pub const PREVIEW2_SHIM_VERSION: &str = "0.25.0";
/// The pinned Python build tool (tools/python/requirements.txt).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Creates the plugin `name` in `dir` (default `./name`) in `lang`; for Rust, `sdk` is the guest
/// SDK's folder (default: `$HOOKHOST_SDK`, else the SDK beside this hookhost's sources). Returns
/// the folder.
pub fn new_plugin(
    name: &str,
    lang: Lang,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> Result<PathBuf> {
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
    if lang != Lang::Rust {
        return new_script_plugin(name, lang, &dir);
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

/// Writes a JavaScript or Python project: the plugin, its pure logic and test, the helpers, the
/// WIT, the pinned build tool and a README.
fn new_script_plugin(name: &str, lang: Lang, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("wit"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = vec![("wit/plugin.wit", WIT.to_string())];
    if lang == Lang::Js {
        std::fs::create_dir_all(dir.join("types/interfaces"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        files.extend(
            JS_TYPES
                .iter()
                .map(|(path, text)| (*path, text.to_string())),
        );
    }
    match lang {
        Lang::Js => files.extend([
            ("app.js", JS_APP.replace("{name}", name)),
            ("logic.js", JS_LOGIC.to_string()),
            ("logic.test.js", JS_TEST.to_string()),
            ("hookhost.js", JS_HELPERS.to_string()),
            (
                "package.json",
                JS_PACKAGE
                    .replace("{name}", name)
                    .replace("{componentize}", COMPONENTIZE_JS_VERSION)
                    .replace("{shim}", PREVIEW2_SHIM_VERSION),
            ),
            ("README.md", JS_README.replace("{name}", name)),
            (
                ".gitignore",
                "node_modules\n/.hookhost-dev\n/plugin.wasm\n".to_string(),
            ),
        ]),
        Lang::Python => files.extend([
            ("app.py", PY_APP.replace("{name}", name)),
            ("logic.py", PY_LOGIC.to_string()),
            ("test_logic.py", PY_TEST.to_string()),
            ("hookhost.py", PYTHON_HELPERS.to_string()),
            (
                "requirements.txt",
                format!("componentize-py=={COMPONENTIZE_PY_VERSION}\n"),
            ),
            ("README.md", PY_README.replace("{name}", name)),
            (
                ".gitignore",
                "/.venv\n/.hookhost-dev\n/plugin.wasm\n__pycache__/\n".to_string(),
            ),
        ]),
        Lang::Rust => unreachable!("Rust plugins are crates"),
    }
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.to_path_buf())
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
        info!("{key} is now {}", event.status);
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
  see what it did with `hookhost events --config .hookhost-dev/hookhost.toml --tenant dev`, or in
  the console (`http://127.0.0.1:8787/console`, with the admin token `hookhost dev` prints).
"#;

const JS_APP: &str = r#"// {name}: remembers each order's latest status in kv (`order/<id>`); events without an order
// are skipped. Edit `orderRecord` (logic.js, tested by `node --test`) or the handler below.
import { plugin, kv, log, done, skipped } from "./hookhost.js";
import { orderRecord } from "./logic.js";

export const handler = plugin((event) => {
  const record = orderRecord(event);
  if (record === undefined) return skipped("the event carries no order id");
  kv.setJson(record.key, record.value);
  log.info(`${record.key} is now ${event.status}`);
  return done();
});
"#;

const JS_LOGIC: &str = r#"// The plugin's pure logic: no host calls, so `node --test` runs it natively.

/** What to remember about the event's order, or undefined when it has none. */
export function orderRecord(event) {
  const order = event.merchantRef ?? event.orderId;
  if (order === undefined) return undefined;
  return {
    key: `order/${order}`,
    value: { status: event.rawStatus ?? null, event: event.id, attempt: event.attempt },
  };
}
"#;

const JS_TEST: &str = r##"import { test } from "node:test";
import assert from "node:assert/strict";
import { orderRecord } from "./logic.js";

const event = {
  id: "evt-1", kind: "payment", status: "succeeded", rawStatus: "PAID",
  orderId: "S-1001", merchantRef: "#1001", attempt: 1,
};

test("remembers the latest status of the order", () => {
  const record = orderRecord(event);
  assert.equal(record.key, "order/#1001");
  assert.equal(record.value.status, "PAID");
});

test("events without an order are skipped", () => {
  assert.equal(orderRecord({ ...event, orderId: undefined, merchantRef: undefined }), undefined);
});
"##;

const JS_PACKAGE: &str = r#"{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {
    "test": "node --test",
    "build": "componentize-js app.js --wit wit -n merchant-plugin -d http -d fetch-event -o plugin.wasm"
  },
  "devDependencies": {
    "@bytecodealliance/componentize-js": "{componentize}"
  },
  "overrides": {
    "@bytecodealliance/preview2-shim": "{shim}"
  }
}
"#;

const JS_README: &str = r#"# {name}

A hookhost plugin in JavaScript: remembers each order's latest status in kv (`order/<id>`).

- `node --test` — the plugin's logic (`logic.js`), natively.
- `hookhost dev .` — installs the pinned componentize-js (`npm install`, once), builds the
  component (`npm run build` does the same by hand), serves it in a local host with a `dev`
  tenant, and rebuilds and hot-swaps it on every save (a failing build prints the error and the
  previous version keeps serving).
- `hookhost send fincart --config .hookhost-dev/hookhost.toml --tenant dev --source fincart` —
  sends a signed sample webhook to it; see what it did with `hookhost events --config
  .hookhost-dev/hookhost.toml --tenant dev`, or in the console (`http://127.0.0.1:8787/console`,
  with the admin token `hookhost dev` prints).

`hookhost.js` is hookhost's helper layer (events with plain statuses and `orderKey`, kv JSON,
`http.postJson`, `config.require`, log); `wit/plugin.wit` is the contract the component is built
against. Throwing fails the attempt (hookhost retries it); kv writes commit only on success.
"#;

const PY_APP: &str = r#""""{name}: remembers each order's latest status in kv (`order/<id>`); events without an order
are skipped. Edit `order_record` (logic.py, tested by `python3 -m unittest`) or `handle` below."""
from hookhost import Event, done, kv, log, plugin, skipped
from logic import order_record


def handle(event: Event):
    record = order_record(event.order_key, event.raw_status, event.id, event.attempt)
    if record is None:
        return skipped("the event carries no order id")
    key, value = record
    kv.set_json(key, value)
    log.info(f"{key} is now {event.status}")
    return done()


Handler = plugin(handle)
"#;

const PY_LOGIC: &str = r#""""The plugin's pure logic: no host calls, so `python3 -m unittest` runs it natively."""
from typing import Optional


def order_record(order: Optional[str], raw_status: Optional[str], event_id: str, attempt: int):
    """What to remember about the event's order: (key, value), or None when it has none."""
    if order is None:
        return None
    return f"order/{order}", {"status": raw_status, "event": event_id, "attempt": attempt}
"#;

const PY_TEST: &str = r##"import unittest

from logic import order_record


class OrderRecord(unittest.TestCase):
    def test_remembers_the_latest_status_of_the_order(self):
        key, value = order_record("#1001", "PAID", "evt-1", 1)
        self.assertEqual(key, "order/#1001")
        self.assertEqual(value["status"], "PAID")

    def test_events_without_an_order_are_skipped(self):
        self.assertIsNone(order_record(None, "PAID", "evt-1", 1))


if __name__ == "__main__":
    unittest.main()
"##;

const PY_README: &str = r#"# {name}

A hookhost plugin in Python: remembers each order's latest status in kv (`order/<id>`).

- `python3 -m unittest` — the plugin's logic (`logic.py`), natively.
- `hookhost dev .` — installs the pinned componentize-py into `.venv` (once), builds the
  component (by hand: `.venv/bin/componentize-py -d wit -w merchant-plugin componentize app -p .
  -o plugin.wasm`), serves it in a local host with a `dev` tenant, and rebuilds and hot-swaps it
  on every save (a failing build prints the error and the previous version keeps serving).
- `hookhost send fincart --config .hookhost-dev/hookhost.toml --tenant dev --source fincart` —
  sends a signed sample webhook to it; see what it did with `hookhost events --config
  .hookhost-dev/hookhost.toml --tenant dev`, or in the console (`http://127.0.0.1:8787/console`,
  with the admin token `hookhost dev` prints).

`hookhost.py` is hookhost's helper layer (events with plain statuses and `order_key`, kv JSON,
`http.post_json`, `config.require`, log); `wit/plugin.wit` is the contract the component is built
against. Raising fails the attempt (hookhost retries it); kv writes commit only on success.
"#;
