//! `hookhost dev`: the merchant's inner loop for a Rust plugin crate. It serves a local host (the
//! embedded store, a `dev` tenant with one source per provider, the sink) and, whenever the
//! crate's sources change, runs `cargo build --target wasm32-wasip2 --release` and hot-swaps the
//! new component in through the same hot-reload path production uses. One line per reload says
//! the version and the time taken; a failing build prints the compiler's errors and the previous
//! version keeps serving.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use sha2::Digest as _;

use crate::app::App;
use crate::config::Config;
use crate::reload::changes_content;

/// The tenant `hookhost dev` serves the plugin as.
pub const DEV_TENANT: &str = "dev";
/// The dev host's admin token.
pub const DEV_ADMIN_TOKEN: &str = "dev";

/// How `hookhost dev` runs.
pub struct DevOptions {
    /// The plugin crate (holding `Cargo.toml`).
    pub plugin_dir: PathBuf,
    /// Listen here instead of the dev config's address.
    pub listen: Option<SocketAddr>,
}

/// Builds, serves and rebuilds on change until interrupted.
pub async fn dev(options: DevOptions) -> Result<()> {
    let dir = std::path::absolute(&options.plugin_dir)?;
    let package = package_name(&dir)?;
    ensure_wasm_target().await;
    let state = dir.join(".hookhost-dev");
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let config_path = state.join("hookhost.toml");
    if !config_path.exists() {
        let listen = options
            .listen
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal"));
        std::fs::write(&config_path, dev_config(listen))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let mut config = Config::load(&config_path)?;
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    let plugin_path = config
        .tenants
        .get(DEV_TENANT)
        .map(|t| t.plugin.clone())
        .with_context(|| {
            format!(
                "{} has no [tenants.{DEV_TENANT}]: delete the file to get a fresh one",
                config_path.display()
            )
        })?;

    // The first build before serving, so the host starts with the plugin when it builds.
    let first = build(&dir, &package).await;
    if let Ok(artifact) = &first.artifact {
        install(artifact, &plugin_path)?;
    }

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut server = tokio::spawn(crate::app::serve_with(config, Some(ready_tx)));
    let Ok(app) = ready_rx.await else {
        return server.await.context("the dev host stopped")?;
    };
    println!(
        "hookhost dev: plugin {package} serves tenant {DEV_TENANT:?}; config {}, admin token {DEV_ADMIN_TOKEN:?}",
        config_path.display()
    );
    println!(
        "  try: hookhost send fincart --config {} --tenant {DEV_TENANT} --source fincart",
        config_path.display()
    );
    report(&app, &first, &plugin_path).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = dir.clone();
    let mut debouncer = new_debouncer(
        Duration::from_millis(100),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            // cargo reading the sources is an access event: only writes, creations, renames and
            // removals count, or every build would trigger the next.
            let relevant = events
                .iter()
                .filter(|e| changes_content(&e.kind))
                .flat_map(|e| e.paths.iter())
                .any(|p| {
                    let Ok(rel) = p.strip_prefix(&watched) else {
                        return false;
                    };
                    rel.starts_with("src")
                        || rel.starts_with("wit")
                        || rel == Path::new("Cargo.toml")
                        || rel == Path::new("build.rs")
                });
            if relevant {
                let _ = tx.send(());
            }
        },
    )
    .context("cannot start watching the plugin's sources")?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    for sub in ["src", "wit"] {
        if dir.join(sub).is_dir() {
            debouncer
                .watch(dir.join(sub), RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", dir.join(sub).display()))?;
        }
    }

    loop {
        tokio::select! {
            changed = rx.recv() => {
                if changed.is_none() {
                    break;
                }
                // Several saves in a row make one build.
                while rx.try_recv().is_ok() {}
                let outcome = build(&dir, &package).await;
                if let Ok(artifact) = &outcome.artifact {
                    if let Err(e) = install(artifact, &plugin_path) {
                        println!("cannot install the new build: {e:#}");
                        continue;
                    }
                }
                report(&app, &outcome, &plugin_path).await;
            }
            result = &mut server => return result.context("the dev host stopped")?,
        }
    }
    Ok(())
}

/// A build's result.
struct BuildOutcome {
    /// The component, or the compiler's errors.
    artifact: Result<PathBuf, String>,
    took: Duration,
}

/// Runs cargo; on success returns the `.wasm` it produced, else its errors as the compiler
/// printed them.
async fn build(dir: &Path, package: &str) -> BuildOutcome {
    let started = Instant::now();
    let output = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            if std::io::stdout().is_terminal() {
                "json-diagnostic-rendered-ansi"
            } else {
                "json"
            },
        ])
        .output()
        .await;
    let took = started.elapsed();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return BuildOutcome {
                artifact: Err(format!("cannot run cargo: {e}")),
                took,
            }
        }
    };
    let mut artifact = None;
    let mut diagnostics = String::new();
    let lib_name = package.replace('-', "_");
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-message") => {
                if let Some(text) = message["message"]["rendered"].as_str() {
                    diagnostics.push_str(text);
                }
            }
            Some("compiler-artifact") if message["target"]["name"] == lib_name.as_str() => {
                artifact = message["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from);
            }
            _ => {}
        }
    }
    let artifact = match (output.status.success(), artifact) {
        (true, Some(path)) => Ok(path),
        (true, None) => Err(format!(
            "cargo built no .wasm for {package}: is it a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?"
        )),
        (false, _) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr
                .lines()
                .filter(|l| l.trim_start().starts_with("error"))
                .collect();
            Err(format!("{diagnostics}{}", tail.join("\n")))
        }
    };
    BuildOutcome { artifact, took }
}

/// Copies the component into place by rename, so the host never sees half a file.
fn install(artifact: &Path, plugin_path: &Path) -> Result<()> {
    let tmp = plugin_path.with_extension("wasm.tmp");
    std::fs::copy(artifact, &tmp).with_context(|| format!("cannot copy {}", artifact.display()))?;
    std::fs::rename(&tmp, plugin_path)
        .with_context(|| format!("cannot replace {}", plugin_path.display()))?;
    Ok(())
}

/// Prints one line about the build and the reload it caused.
async fn report(app: &Arc<App>, outcome: &BuildOutcome, plugin_path: &Path) {
    let serving = || {
        app.registry
            .statuses()
            .get(DEV_TENANT)
            .and_then(|s| s.version.clone())
    };
    let artifact = match &outcome.artifact {
        Ok(a) => a,
        Err(errors) => {
            println!(
                "build failed after {:.1} s; {} keeps serving\n{}",
                outcome.took.as_secs_f64(),
                serving()
                    .map(|v| format!("version {v}"))
                    .unwrap_or_else(|| "no version (events wait)".into()),
                errors.trim_end()
            );
            return;
        }
    };
    let Ok(bytes) = std::fs::read(artifact) else {
        println!("cannot read {}", artifact.display());
        return;
    };
    let version = hex::encode(sha2::Sha256::digest(&bytes))[..16].to_string();
    let started = Instant::now();
    let since_ms = crate::now_ms();
    let deadline = started + Duration::from_secs(120);
    loop {
        let status = app.registry.statuses().get(DEV_TENANT).cloned();
        if let Some(status) = &status {
            if status.version.as_deref() == Some(version.as_str()) {
                let load_ms = status.load_ms.unwrap_or(0);
                let unchanged = status.loaded_at_ms.is_some_and(|at| at < since_ms);
                if unchanged {
                    println!(
                        "built in {:.1} s: unchanged, version {version} keeps serving",
                        outcome.took.as_secs_f64()
                    );
                } else {
                    println!(
                        "reloaded version {version} in {:.1} s (build {:.1} s, load {load_ms} ms)",
                        (outcome.took + started.elapsed()).as_secs_f64(),
                        outcome.took.as_secs_f64(),
                    );
                }
                return;
            }
            if let Some(failed) = status
                .history
                .iter()
                .rev()
                .find(|r| r.at_ms >= since_ms && r.result == "failed")
            {
                println!(
                    "built, but the component did not load; {} keeps serving: {}",
                    serving()
                        .map(|v| format!("version {v}"))
                        .unwrap_or_else(|| "no version".into()),
                    failed.error.as_deref().unwrap_or("")
                );
                return;
            }
        }
        if Instant::now() > deadline {
            println!(
                "built version {version}, but {} was not reloaded within 120 s",
                plugin_path.display()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The crate's package name, from its Cargo.toml.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} has no Cargo.toml: `hookhost dev` works on a Rust plugin crate (create one with `hookhost new NAME`)",
            dir.display()
        )
    })?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    match table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    {
        Some(name) => Ok(name.to_string()),
        None => bail!("{} has no [package] name", manifest.display()),
    }
}

/// Installs the wasm32-wasip2 target when rustup is there and it is missing.
async fn ensure_wasm_target() {
    let installed = tokio::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .await;
    if let Ok(out) = installed {
        if !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
        {
            println!("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
            let _ = tokio::process::Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status()
                .await;
        }
    }
}

/// The dev host's config: one tenant, one source per provider with dev credentials, the sink as
/// the merchant's backend. Written once; the merchant may edit it (it is kept).
fn dev_config(listen: SocketAddr) -> String {
    format!(
        r#"# hookhost dev: a local host for one plugin. Edit freely (allowed_hosts, config values,
# limits); `hookhost dev` keeps this file. Delete it to start over.
listen = "{listen}"
database = "dev.db"
sink = true
retention_hours = 24

[admin]
token = "{DEV_ADMIN_TOKEN}"

[tenants.{DEV_TENANT}]
plugin = "plugin.wasm"
# The built-in sink stands in for your backend: see GET /admin/sink.
allowed_hosts = ["127.0.0.1:{port}"]

[tenants.{DEV_TENANT}.config]
backend-url = "http://127.0.0.1:{port}/sink/backend"

[tenants.{DEV_TENANT}.retry]
max_attempts = 3
base_ms = 500

[tenants.{DEV_TENANT}.sources.fincart]
provider = "fincart"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.sevi]
provider = "sevi"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.juspay]
provider = "juspay"
username = "dev"
password = "dev-password"

[tenants.{DEV_TENANT}.sources.finchpay]
provider = "finchpay"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.selldone]
provider = "selldone"
token = "dev-token"

[tenants.{DEV_TENANT}.sources.stripe]
provider = "stripe"
secret = "whsec_dev"

[tenants.{DEV_TENANT}.sources.shopify]
provider = "shopify"
secret = "dev-secret"

[tenants.{DEV_TENANT}.sources.github]
provider = "github"
secret = "dev-secret"

[tenants.{DEV_TENANT}.sources.standard-webhooks]
provider = "standard-webhooks"
secret = "whsec_ZGV2LXNlY3JldC1mb3ItaG9va2hvc3Q="
"#,
        port = listen.port()
    )
}
