//! The `hookhost` command.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hookhost::admin_cli;

/// mimalloc instead of glibc's allocator: a webhook allocates many small buffers on several
/// threads, where glibc's malloc showed up as ~17% of CPU in profiles (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives webhooks and hands them to merchants' WebAssembly plugins.
#[derive(Parser)]
#[command(name = "hookhost", version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "HOOKHOST_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve webhooks with the tenants of a config file.
    Serve {
        /// The config file (TOML).
        #[arg(long, short, default_value = "hookhost.toml")]
        config: PathBuf,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Replay one event, or a tenant's dead letters, on a running host (with the plugin version
    /// serving now); the new attempts are added to each event's history.
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// The event to replay (its number, as in the admin API).
        #[arg(long, conflicts_with_all = ["tenant", "since"])]
        event: Option<i64>,
        /// Replay every dead letter of this tenant.
        #[arg(long, required_unless_present = "event")]
        tenant: Option<String>,
        /// With --tenant: only dead letters that died since then: a duration ago (`90m`, `2h`,
        /// `3d`), an RFC 3339 time or milliseconds since the epoch.
        #[arg(long)]
        since: Option<String>,
    },
    /// A tenant's events on a running host, newest first.
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only events in this state: pending, running, done, skipped, dead.
        #[arg(long)]
        state: Option<String>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Events before this one (the cursor printed under a full page).
        #[arg(long)]
        before: Option<i64>,
        /// Only this order's events (provider order id or merchant reference).
        #[arg(long)]
        order: Option<String>,
        /// Only events received since: `90m`, `2h`, `3d` ago, an RFC 3339 time or epoch ms.
        #[arg(long)]
        since: Option<String>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// One event: raw payload, normalized form, every attempt with its plugin logs.
    Event {
        #[command(flatten)]
        admin: AdminArgs,
        /// The event's number.
        seq: i64,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's dead letters (replay them with `hookhost replay --tenant T`).
    DeadLetters {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// How many (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every tenant's plugin: version serving, when loaded, reloads, last error.
    Plugins {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy a plugin for a tenant: the host checks it is a component of its world, compiles it
    /// and runs the tenant's self-tests, then stores it in its database as the tenant's next
    /// version, and every replica sharing that database serves it (a deployed version wins over
    /// the tenant's plugin file). A refused upload is recorded and the serving version stays.
    #[command(alias = "publish")]
    Deploy {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The component (.wasm).
        component: PathBuf,
        /// Store it as a staged version without making it active (then `hookhost shadow start`
        /// to try it beside the active one, and `hookhost shadow promote`).
        #[arg(long)]
        stage: bool,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// A shadow: a staged version run dry beside a share of the active version's attempts, each
    /// run compared with the attempt (outcome, kv changes, requests).
    Shadow {
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// Make an earlier version of a tenant's plugin serve again (checked again first).
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The deploy number to go back to (`hookhost versions` lists them); by default the
        /// version before the active one.
        #[arg(long)]
        to: Option<u32>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's deploy history: every upload (refused ones too) and rollback, newest first.
    Versions {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// How many entries (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a candidate plugin dry over a tenant's journaled events and show where it behaves
    /// differently from what the serving versions did (outcome, kv changes, requests). Nothing
    /// is written or sent.
    Backtest {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The candidate component (.wasm).
        #[arg(long)]
        plugin: PathBuf,
        /// Only events received since: `90m`, `24h`, `7d` ago, an RFC 3339 time or epoch ms.
        #[arg(long)]
        since: Option<String>,
        /// At most this many events (the oldest first).
        #[arg(long, default_value_t = 100_000)]
        limit: u32,
        /// Print the final report's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Merchant tokens (operator only): a token reaches only its tenant, within its scopes.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Send a webhook to a running host, authenticated and signed exactly as the provider would
    /// for that source (credentials from the config file), with a shipped sample or your file.
    Send {
        /// The provider (`hookhost send --list` shows them with their samples).
        #[arg(required_unless_present = "list")]
        provider: Option<String>,
        /// The tenant.
        #[arg(long, required_unless_present = "list")]
        tenant: Option<String>,
        /// The tenant's source (webhook endpoint) to send to.
        #[arg(long, required_unless_present = "list")]
        source: Option<String>,
        /// The config file with the source's credentials.
        #[arg(long, short, default_value = "hookhost.toml")]
        config: PathBuf,
        /// A shipped sample payload (default: the provider's first).
        #[arg(long, conflicts_with = "file")]
        sample: Option<String>,
        /// Send this file's content as the body instead of a sample.
        #[arg(long)]
        file: Option<PathBuf>,
        /// An extra header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The host's base URL (default: the config's listen address).
        #[arg(long, env = "HOOKHOST_URL")]
        url: Option<String>,
        /// List the providers and their shipped samples.
        #[arg(long)]
        list: bool,
        /// Send it as a new event (not a duplicate of the last one): the field the provider's
        /// event id is made of changes (a time a little later, an id with a suffix), the order
        /// and its status stay.
        #[arg(long)]
        fresh: bool,
    },
    /// Create a plugin (`--lang rust`: a crate on the guest SDK; `js`, `python`: a project on
    /// the guest helpers) with a working reaction, a native unit test and a README.
    New {
        /// The plugin's name (the crate's or package's name).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: hookhost::devloop::scaffold::Lang,
        /// Create it here instead of `./NAME`.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Rust guest SDK's folder (default: $HOOKHOST_SDK, else the one beside hookhost's
        /// sources).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Serve a plugin (Rust crate, JavaScript or Python project) locally and rebuild + hot-swap
    /// it on every save.
    Dev {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        plugin_dir: PathBuf,
        /// Listen here instead of the dev config's address (127.0.0.1:8787 by default, beside
        /// `serve`'s 8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
}

/// How to reach a running host's admin API: `--url` and `--token` (or their variables) win over
/// `--config`.
#[derive(clap::Args)]
struct AdminArgs {
    /// The host's base URL [default: from --config, else http://127.0.0.1:8080].
    #[arg(long, env = "HOOKHOST_URL")]
    url: Option<String>,
    /// The admin token, or a merchant token (`hhk_...`) for its tenant's commands [default: from
    /// --config].
    #[arg(long, env = "HOOKHOST_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The host's config file: its `listen` address and `[admin] token` (for `hookhost dev`'s
    /// `.hookhost-dev/hookhost.toml`, the running dev host's address and this run's token).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// Start (or change) the shadow: deploy VERSION runs beside SHARE of live attempts.
    Start {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The deploy number (`hookhost versions`; usually a staged one).
        #[arg(long)]
        version: u32,
        /// The share of live attempts, more than 0 and at most 1.
        #[arg(long, default_value_t = 1.0)]
        share: f64,
    },
    /// What the shadow found: counts by verdict and the newest differing runs.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the shadowing version the active one (checked again first).
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// End the shadow; the active version is untouched.
    Discard {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Make a token for a tenant; its text is printed once and never again.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// What it may do: `read`, `replay`, `deploy`, comma-separated.
        #[arg(long, default_value = "read")]
        scope: String,
        /// A name for people ("ci deploys").
        #[arg(long)]
        name: String,
        /// It stops working after this long: `90m`, `12h`, `30d` (default: never).
        #[arg(long)]
        expires: Option<String>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Tokens, of one tenant or of all (never their text).
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token for good.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The token's id (`hookhost tokens list` shows it).
        id: String,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes: what failed and why.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    // Colour only for a terminal: a log redirected to a file gets no escape codes.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = hookhost::config::Config::load(&config)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            tokio::runtime::Runtime::new()?.block_on(hookhost::server::serve(config))
        }
        Command::Replay {
            admin,
            event,
            tenant,
            since,
        } => {
            let path = match (event, tenant) {
                (Some(seq), _) => format!("/admin/events/{seq}/replay"),
                (None, Some(tenant)) => match since {
                    Some(since) => format!(
                        "/admin/tenants/{tenant}/dead-letters/replay?since_ms={}",
                        parse_since(&since)?
                    ),
                    None => format!("/admin/tenants/{tenant}/dead-letters/replay"),
                },
                (None, None) => unreachable!("clap requires --event or --tenant"),
            };
            let reply = block_on(admin.client()?.post(&path))?;
            let seqs: Vec<String> = reply["replayed"]
                .as_array()
                .map(|a| a.iter().map(|v| v.to_string()).collect())
                .unwrap_or_default();
            match seqs.len() {
                0 => println!("nothing to replay"),
                n => println!(
                    "replayed {n} event{}: {}",
                    if n == 1 { "" } else { "s" },
                    seqs.join(", ")
                ),
            }
            Ok(())
        }
        Command::Events {
            admin,
            tenant,
            state,
            limit,
            before,
            order,
            since,
            json,
        } => {
            let mut path = format!("/admin/tenants/{tenant}/events?limit={limit}");
            if let Some(order) = order {
                path.push_str(&format!(
                    "&order={}",
                    url::form_urlencoded::byte_serialize(order.as_bytes()).collect::<String>()
                ));
            }
            if let Some(since) = since {
                path.push_str(&format!("&since_ms={}", parse_since(&since)?));
            }
            if let Some(state) = state {
                path.push_str(&format!("&state={state}"));
            }
            if let Some(before) = before {
                path.push_str(&format!("&before={before}"));
            }
            let page = block_on(admin.client()?.get(&path))?;
            print_or_json(&page, json, admin_cli::events_table)
        }
        Command::Event { admin, seq, json } => {
            let event = block_on(admin.client()?.get(&format!("/admin/events/{seq}")))?;
            print_or_json(&event, json, admin_cli::event_detail)
        }
        Command::DeadLetters {
            admin,
            tenant,
            limit,
            json,
        } => {
            let page = block_on(admin.client()?.get(&format!(
                "/admin/tenants/{tenant}/dead-letters?limit={limit}"
            )))?;
            print_or_json(&page, json, admin_cli::events_table)
        }
        Command::Plugins { admin, json } => {
            let tenants = block_on(admin.client()?.get("/admin/tenants"))?;
            print_or_json(&tenants, json, admin_cli::plugins_table)
        }
        Command::Deploy {
            admin,
            tenant,
            component,
            stage,
            json,
        } => {
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let path = match stage {
                true => format!("/admin/tenants/{tenant}/plugin?activate=false"),
                false => format!("/admin/tenants/{tenant}/plugin"),
            };
            let deployed = block_on(admin.client()?.put(&path, bytes))?;
            print_or_json(&deployed, json, admin_cli::deployed_text)
        }
        Command::Rollback {
            admin,
            tenant,
            to,
            json,
        } => {
            let body = to.map(|to| serde_json::json!({ "to": to }));
            let path = format!("/admin/tenants/{tenant}/plugin/rollback");
            let rolled = block_on(admin.client()?.post_json(&path, body))?;
            print_or_json(&rolled, json, admin_cli::rolled_back_text)
        }
        Command::Versions {
            admin,
            tenant,
            limit,
            json,
        } => {
            let path = format!("/admin/tenants/{tenant}/plugin/versions?limit={limit}");
            let history = block_on(admin.client()?.get(&path))?;
            print_or_json(&history, json, admin_cli::versions_table)
        }
        Command::Tokens { command } => tokens(command),
        Command::Shadow { command } => shadow(command),
        Command::Backtest {
            admin,
            tenant,
            plugin,
            since,
            limit,
            json,
        } => {
            let bytes = std::fs::read(&plugin)
                .with_context(|| format!("cannot read {}", plugin.display()))?;
            let mut path = format!("/admin/tenants/{tenant}/backtests?limit={limit}");
            if let Some(since) = since {
                path.push_str(&format!("&since_ms={}", parse_since(&since)?));
            }
            let client = admin.client()?;
            let report = block_on(async {
                let started = client.post_bytes(&path, bytes).await?;
                let id = started["id"].as_str().unwrap_or_default().to_string();
                let follow = format!("/admin/tenants/{tenant}/backtests/{id}");
                loop {
                    let report = client.get(&follow).await?;
                    match report["state"].as_str() {
                        Some("finished" | "failed") => return Ok::<_, anyhow::Error>(report),
                        _ => {
                            if !json {
                                eprint!("\r{} events run…", report["events"]);
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                    }
                }
            })?;
            if !json {
                eprint!("\r");
            }
            print_or_json(&report, json, admin_cli::backtest_text)?;
            if report["state"] == "failed" {
                bail!(
                    "the backtest failed: {}",
                    report["error"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Send {
            provider,
            tenant,
            source,
            config,
            sample,
            file,
            headers,
            url,
            list,
            fresh,
        } => {
            if list {
                println!("{}", hookhost::devloop::send::list_samples());
                return Ok(());
            }
            let (Some(provider), Some(tenant), Some(source)) = (provider, tenant, source) else {
                bail!("give the provider, --tenant and --source");
            };
            let report = tokio::runtime::Runtime::new()?.block_on(
                hookhost::devloop::send::send(hookhost::devloop::send::SendRequest {
                    provider,
                    config,
                    tenant,
                    source,
                    sample,
                    file,
                    headers,
                    url,
                    fresh,
                }),
            )?;
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            if let Some(changed) = &report.freshened {
                eprintln!(
                    "fresh: {} {} -> {} (a new event of the same order and status)",
                    changed.field, changed.from, changed.to
                );
            }
            println!(
                "POST {}{} -> {}{}: {}",
                report.url,
                report
                    .sample
                    .map(|s| format!(" (sample {s})"))
                    .unwrap_or_default(),
                report.status,
                if report.duplicate { " duplicate" } else { "" },
                hookhost::cli_text::escape(report.body.trim())
            );
            if !(200..300).contains(&report.status) {
                bail!("the host refused the webhook ({})", report.status);
            }
            Ok(())
        }
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            use hookhost::devloop::scaffold::{new_plugin, Lang};
            let dir = new_plugin(&name, lang, dir.as_deref(), sdk.as_deref())?;
            let test = match lang {
                Lang::Rust => "cargo test",
                Lang::Js => "node --test",
                Lang::Python => "python3 -m unittest",
            };
            println!(
                "created {}: `{test}` runs its test; `hookhost dev {}` serves it and reloads on save",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Dev { plugin_dir, listen } => tokio::runtime::Runtime::new()?.block_on(
            hookhost::devloop::dev::dev(hookhost::devloop::dev::DevOptions { plugin_dir, listen }),
        ),
    }
}

/// Runs a future to completion on a fresh runtime (the CLI commands are one request each).
fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Runtime::new()?.block_on(future)
}

/// Prints the API's JSON, or its readable rendering.
fn print_or_json(
    value: &serde_json::Value,
    json: bool,
    render: fn(&serde_json::Value) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", render(value));
    }
    Ok(())
}

impl AdminArgs {
    fn client(&self) -> Result<admin_cli::AdminClient> {
        let from_config = match &self.config {
            Some(path) => Some(hookhost::devloop::session::admin_endpoint(path)?),
            None => None,
        };
        let url = self
            .url
            .clone()
            .or_else(|| from_config.as_ref().map(|e| e.url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = match (&self.token, &from_config) {
            (Some(token), _) => token.clone(),
            (None, Some(endpoint)) => endpoint.token.clone().with_context(|| {
                format!(
                    "{} has no [admin] token: pass --token or set HOOKHOST_ADMIN_TOKEN",
                    self.config.as_deref().unwrap_or(Path::new("")).display()
                )
            })?,
            (None, None) => bail!(
                "no token: pass --config FILE (the host's config), --token, or set HOOKHOST_ADMIN_TOKEN"
            ),
        };
        Ok(admin_cli::AdminClient::new(&url, &token))
    }
}

/// `90m`, `2h`, `3d` (that long ago), an RFC 3339 time, or milliseconds since the epoch.
fn parse_since(text: &str) -> Result<u64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(ms) = hookhost::providers::parse_datetime_ms(text) {
        return Ok(ms);
    }
    let ago = parse_duration_ms(text).with_context(|| {
        format!("--since {text:?}: write 90m, 2h, 3d, an RFC 3339 time or epoch milliseconds")
    })?;
    Ok(hookhost::now_ms().saturating_sub(ago))
}

/// `90s`, `90m`, `2h`, `3d` in milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 90m, 2h or 3d"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?}: the unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// `hookhost shadow ...`.
fn shadow(command: ShadowCommand) -> Result<()> {
    match command {
        ShadowCommand::Start {
            admin,
            tenant,
            version,
            share,
        } => {
            let body = serde_json::json!({ "version": version, "share": share });
            let path = format!("/admin/tenants/{tenant}/plugin/shadow");
            block_on(admin.client()?.put_json(&path, body))?;
            println!(
                "v{version} shadows {tenant}'s active version on {:.0}% of its attempts (hookhost shadow status --tenant {tenant})",
                share * 100.0
            );
            Ok(())
        }
        ShadowCommand::Status {
            admin,
            tenant,
            json,
        } => {
            let status = block_on(
                admin
                    .client()?
                    .get(&format!("/admin/tenants/{tenant}/plugin/shadow")),
            )?;
            print_or_json(&status, json, admin_cli::shadow_text)
        }
        ShadowCommand::Promote { admin, tenant } => {
            let path = format!("/admin/tenants/{tenant}/plugin/shadow/promote");
            let promoted = block_on(admin.client()?.post(&path))?;
            println!(
                "promoted: v{} of {tenant} is active as v{}",
                promoted["deploy"]["reactivates"], promoted["deploy"]["number"]
            );
            Ok(())
        }
        ShadowCommand::Discard { admin, tenant } => {
            let path = format!("/admin/tenants/{tenant}/plugin/shadow");
            let discarded = block_on(admin.client()?.delete(&path))?;
            println!(
                "discarded the shadow of {tenant} (v{}); the active version is unchanged",
                discarded["discarded"]["number"]
            );
            Ok(())
        }
    }
}

/// `hookhost tokens ...`.
fn tokens(command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create {
            admin,
            tenant,
            scope,
            name,
            expires,
            json,
        } => {
            let scopes = hookhost::access::parse_scopes(&scope).map_err(anyhow::Error::msg)?;
            let mut body = serde_json::json!({ "name": name, "scopes": scopes });
            if let Some(expires) = expires {
                let ms = parse_duration_ms(&expires).context("--expires")?;
                body["expires_in_secs"] = (ms / 1000).max(1).into();
            }
            let path = format!("/admin/tenants/{tenant}/tokens");
            let created = block_on(admin.client()?.post_json(&path, Some(body)))?;
            print_or_json(&created, json, admin_cli::token_created_text)
        }
        TokensCommand::List {
            admin,
            tenant,
            json,
        } => {
            let path = match tenant {
                Some(tenant) => format!("/admin/tenants/{tenant}/tokens"),
                None => "/admin/tokens".to_string(),
            };
            let tokens = block_on(admin.client()?.get(&path))?;
            print_or_json(&tokens, json, admin_cli::tokens_table)
        }
        TokensCommand::Revoke { admin, id } => {
            let revoked = block_on(admin.client()?.delete(&format!("/admin/tokens/{id}")))?;
            println!(
                "revoked token {} ({}) of {}",
                revoked["revoked"]["id"].as_str().unwrap_or_default(),
                revoked["revoked"]["name"].as_str().unwrap_or_default(),
                revoked["revoked"]["tenant"].as_str().unwrap_or_default(),
            );
            Ok(())
        }
    }
}
