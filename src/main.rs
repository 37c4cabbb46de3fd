//! The `secret-rotator` binary. `serve` is what host.json starts under the Functions host;
//! `package` builds the deployable zip. More subcommands (dev, plan, rotate, report, diagnose)
//! join the [`Command`] enum, each with a small `*_main` function here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secret_rotator::engine::report::ResultCode;
use secret_rotator::handler::{self, HandlerOptions, StartupError};
use secret_rotator::settings::Settings;

#[derive(Parser)]
#[command(name = "secret-rotator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve as the Azure Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve,
    /// Build the deployable zip from host.json, function-specs/ and the binary.
    Package(PackageArgs),
    /// Run the whole product on the embedded Azure emulator with a demo tenant (no Azure needed).
    #[cfg(feature = "dev-mode")]
    Dev(secret_rotator::dev::DevOptions),
}

#[derive(clap::Args)]
struct PackageArgs {
    /// The Linux binary to ship (e.g. target/x86_64-unknown-linux-musl/release/secret-rotator).
    #[arg(long)]
    binary: PathBuf,
    /// Where to write the zip.
    #[arg(long, default_value = "dist/secret-rotator.zip")]
    out: PathBuf,
    /// The folder holding host.json and function-specs/.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The enrolment policy to ship at the app root (where ROTATOR_POLICY_PATH=policy.json points).
    #[arg(long)]
    policy: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve_main(),
        Command::Package(args) => package_main(args),
        #[cfg(feature = "dev-mode")]
        Command::Dev(opts) => dev_main(opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr: the Functions host shows these lines when the process exits.
            eprintln!("secret-rotator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_main() -> anyhow::Result<()> {
    let started = Instant::now();
    // Settings first, before anything else can fail or log: a bad one stops us, named.
    let settings = Settings::from_env().context("cannot start")?;
    let port = settings.require_port().context("cannot start")?;
    init_tracing(&settings.log_filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Bind first: a port problem is reported before any engine work. Building the engine
        // reads local files only, so the readiness probe is still answered within milliseconds.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                format!("cannot listen on 127.0.0.1:{port} (FUNCTIONS_CUSTOMHANDLER_PORT)")
            })?;
        let mut opts = HandlerOptions::from_settings(&settings);
        let service: Arc<dyn handler::service::RotatorService> =
            match secret_rotator::engine::service::build(&settings).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "the rotation engine did not start; serving SelfTest answers that say why");
                    opts.startup_error = Some(StartupError {
                        message: e.to_string(),
                        result_code: e.result_code(),
                    });
                    Arc::new(Unavailable)
                }
            };
        tracing::info!(
            port,
            startup_ms = started.elapsed().as_millis() as u64,
            version = env!("CARGO_PKG_VERSION"),
            "custom handler listening"
        );
        handler::run(listener, service, opts, shutdown_signal())
            .await
            .context("the server stopped")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Stands in for the engine when it could not be built. The handler answers from
/// `HandlerOptions::startup_error` before calling it; these bodies only keep the trait whole.
struct Unavailable;

#[async_trait::async_trait]
impl handler::service::RotatorService for Unavailable {
    async fn rotation_pass(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        _budget: std::time::Duration,
    ) -> secret_rotator::engine::report::PassReport {
        secret_rotator::engine::report::PassReport {
            run_id: String::new(),
            started: now,
            finished: now,
            credentials: vec![],
            deferred: vec![],
        }
    }
    async fn rotate_one(
        &self,
        _credential: &str,
        _force: bool,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<secret_rotator::engine::report::CredentialReport, handler::service::ServiceError>
    {
        Err(handler::service::ServiceError::Internal(
            "the rotation engine is not available".into(),
        ))
    }
    async fn self_test(
        &self,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> secret_rotator::engine::report::SelfTestReport {
        secret_rotator::engine::report::SelfTestReport {
            checks: vec![secret_rotator::engine::report::Check {
                name: "engine".into(),
                ok: false,
                result_code: ResultCode::Internal,
                message: "the rotation engine is not available".into(),
            }],
        }
    }
    async fn status(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> secret_rotator::engine::report::StatusReport {
        secret_rotator::engine::report::StatusReport {
            now,
            credentials: vec![],
        }
    }
    async fn plan(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> secret_rotator::engine::report::PlanReport {
        secret_rotator::engine::report::PlanReport {
            now,
            credentials: vec![],
        }
    }
}

/// JSON lines on stdout (the host turns each into an Information trace), filtered by ROTATOR_LOG.
fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing running work");
}

fn package_main(args: PackageArgs) -> anyhow::Result<()> {
    let summary =
        secret_rotator::package::build_package(&secret_rotator::package::PackageOptions {
            root: args.root,
            binary: args.binary,
            out: args.out.clone(),
            policy: args.policy,
        })?;
    println!(
        "wrote {} ({} bytes): {}",
        args.out.display(),
        summary.bytes,
        summary.entries.join(", ")
    );
    Ok(())
}

#[cfg(feature = "dev-mode")]
fn dev_main(opts: secret_rotator::dev::DevOptions) -> anyhow::Result<()> {
    // Dev mode prints an account for a person; the handler it starts logs JSON to a file.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(secret_rotator::dev::run(opts))
}
