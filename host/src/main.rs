//! The `hookhost` command.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
}

fn main() -> Result<()> {
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
    }
}
