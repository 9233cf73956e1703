//! The `hookhost` command.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a webhook allocates many small buffers on several
/// threads, where glibc's malloc showed up as ~17% of CPU in profiles (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives webhooks and hands them to merchants' WebAssembly plugins.
#[derive(Parser)]
#[command(name = "hookhost", version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
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
}

/// How to reach a running host's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// The host's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "HOOKHOST_URL")]
    url: String,
    /// The admin token.
    #[arg(long, env = "HOOKHOST_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            tokio::runtime::Runtime::new()?.block_on(hookhost::app::serve(config))
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
            let reply = tokio::runtime::Runtime::new()?.block_on(admin_post(&admin, &path))?;
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
    }
}

/// POSTs to the admin API and returns its JSON, or the server's error message.
async fn admin_post(admin: &AdminArgs, path: &str) -> Result<serde_json::Value> {
    let url = format!("{}{path}", admin.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&admin.token)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach hookhost at {}: is it running, and is --url right?",
                admin.url
            )
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("(no message)")
        );
    }
    Ok(body)
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
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().with_context(|| {
        format!("--since {text:?}: write 90m, 2h, 3d, an RFC 3339 time or epoch milliseconds")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--since {text:?}: the unit must be s, m, h or d"),
    };
    Ok(hookhost::now_ms().saturating_sub(n * unit_ms))
}
