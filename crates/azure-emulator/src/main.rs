//! The `azure-emulator` binary: starts the emulator, prints one JSON "ready" line on stdout and
//! logs to stderr until interrupted.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "azure-emulator",
    about = "A local, in-memory Azure tenant over the real wire protocols"
)]
struct Args {
    /// Scenario JSON file (the initial tenant).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// HTTPS port for every Azure host (0 = any).
    #[arg(long, default_value_t = 0)]
    https_port: u16,
    /// HTTP port for the managed-identity endpoint and the control API (0 = any).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// Where ca.pem is written (default: a temp dir removed at exit).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let scenario = match &args.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading scenario {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("parsing scenario {}", p.display()))?
        }
        None => azure_emulator::Scenario::default(),
    };
    let emu = azure_emulator::start(azure_emulator::EmulatorConfig {
        https_port: args.https_port,
        http_port: args.http_port,
        scenario,
        state_dir: args.state_dir,
        ..Default::default()
    })
    .await?;
    println!("{}", emu.ready_line());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    emu.shutdown().await;
    Ok(())
}
