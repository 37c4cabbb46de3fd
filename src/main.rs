//! The `secret-rotator` binary. `serve` is what host.json starts under the Functions host;
//! `package` builds the deployable zip; `plan`, `rotate`, `report` and `diagnose` are the
//! operator's commands (their logic is in `secret_rotator::cli`). Each subcommand is one
//! [`Command`] variant with a small `*_main` function here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use secret_rotator::cli::{self as ops, Connection};
use secret_rotator::engine::inventory::Format;
use secret_rotator::handler::{self, Backend, HandlerOptions, StartupError};
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
    /// Show what the next pass would do for each enrolled credential, and why. Changes nothing.
    Plan(PlanArgs),
    /// Run one rotation pass now (or one credential with --only), printing each step done.
    /// Exits with 2 when any credential failed or is blocked.
    Rotate(RotateArgs),
    /// Inventory of every application and service principal credential (secrets and
    /// certificates): expiry, days left, enrolment, the Key Vault secret holding it.
    Report(ReportArgs),
    /// Explain an AADSTS error line (7000222, 7000215, 700016, 90002): the application, the
    /// credential involved, where it is used and what to run.
    Diagnose(DiagnoseArgs),
    /// Run the whole product on the embedded Azure emulator with a demo tenant (no Azure needed).
    #[cfg(feature = "dev-mode")]
    Dev(secret_rotator::dev::DevOptions),
}

/// Options every operator command shares.
#[derive(clap::Args)]
struct CommonArgs {
    /// The enrolment policy file (overrides ROTATOR_POLICY_PATH).
    #[arg(long, value_name = "FILE", global = true)]
    policy: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the plan as JSON (the engine's PlanReport).
    #[arg(long)]
    json: bool,
    /// Plan as if it were this time (RFC 3339), e.g. to see what happens next month.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only this credential (its name in the policy).
    #[arg(long, value_name = "NAME")]
    only: Option<String>,
    /// Rotate even when nothing is due (needs --only).
    #[arg(long, requires = "only")]
    force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Act as if it were TIME (RFC 3339): for an emulator whose clock is not the wall clock
    /// (dev mode, tests). Against Azure leave it unset.
    #[arg(long, value_name = "TIME", value_parser = parse_time, hide = true)]
    at: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Only the applications the identity owns (what Application.ReadWrite.OwnedBy can see).
    #[arg(long)]
    owned_only: bool,
    /// A progress line on stderr after every page (default: only when stderr is a terminal).
    #[arg(long)]
    progress: bool,
    /// Applications per Graph page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=999))]
    page_size: u32,
    /// Compute days left as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The error text, e.g. "AADSTS7000222: The provided client secret keys for app '…' are expired".
    error_text: String,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    json: bool,
    /// Judge expiry as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
    /// The application (client id) the failing client uses, for lines that name none.
    #[arg(long, value_name = "CLIENT_ID")]
    app_id: Option<uuid::Uuid>,
    /// The first three characters of the failing secret: finds the application whose password
    /// has that hint, for lines that name none (only these three characters are used).
    #[arg(long, value_name = "ABC")]
    secret_hint: Option<String>,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 time (e.g. 2026-11-22T02:00:00Z): {e}"))
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
        Command::Serve => serve_main().map(|()| ExitCode::SUCCESS),
        Command::Package(args) => package_main(args).map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => plan_main(args),
        Command::Rotate(args) => rotate_main(args),
        Command::Report(args) => report_main(args),
        Command::Diagnose(args) => diagnose_main(args),
        #[cfg(feature = "dev-mode")]
        Command::Dev(opts) => dev_main(opts).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
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
        let opts = HandlerOptions::from_settings(&settings);
        let backend = match secret_rotator::compose::build(&settings).await {
            Ok(s) => Backend::Ready(s),
            Err(e) => {
                tracing::error!(error = %e, "the rotation engine did not start; serving SelfTest answers that say why");
                Backend::Failed(StartupError {
                    message: e.to_string(),
                    result_code: e.result_code(),
                })
            }
        };
        tracing::info!(
            port,
            startup_ms = started.elapsed().as_millis() as u64,
            version = env!("CARGO_PKG_VERSION"),
            "custom handler listening"
        );
        handler::run(listener, backend, opts, shutdown_signal())
            .await
            .context("the server stopped")?;
        tracing::info!("stopped");
        Ok(())
    })
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

// ---- operator commands ----

/// Settings (with `--policy`), the runtime, and the connection every operator command needs.
/// Logs go to stderr as text, quiet unless ROTATOR_LOG asks: stdout is the command's answer.
fn operator(common: &CommonArgs) -> anyhow::Result<(tokio::runtime::Runtime, Connection)> {
    let env = |k: &str| std::env::var(k).ok();
    let settings = ops::load_settings(&env, common.policy.as_ref()).context("cannot start")?;
    let filter = std::env::var("ROTATOR_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let conn = {
        let _guard = runtime.enter();
        Connection::open(settings, &env).context("cannot start")?
    };
    Ok((runtime, conn))
}

fn plan_main(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (rt, conn) = operator(&args.common)?;
    let now = args.at.unwrap_or_else(Utc::now);
    let report = rt.block_on(ops::run::plan(&conn, now));
    ops::run::render_plan(&report, args.json, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

fn rotate_main(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let (rt, conn) = operator(&args.common)?;
    let budget = conn.settings.pass_budget;
    let result = rt.block_on(ops::run::rotate(
        &conn,
        args.only.as_deref(),
        args.force,
        args.at.unwrap_or_else(Utc::now),
        budget,
    ))?;
    ops::run::render_rotate(&result, args.json, &mut std::io::stdout().lock())?;
    Ok(if result.any_failed() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn report_main(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    let (rt, conn) = operator(&args.common)?;
    let opts = ops::report::ReportOptions {
        format: args.format,
        owned_only: args.owned_only,
        progress: args.progress || std::io::stderr().is_terminal(),
        page_size: args.page_size,
    };
    let now = args.at.unwrap_or_else(Utc::now);
    let summary = rt.block_on(async {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut err = std::io::stderr();
        ops::report::report(&conn, opts, now, &mut out, &mut err).await
    })?;
    eprintln!(
        "report: {} application(s), {} service principal(s), {} credential(s){}",
        summary.applications,
        summary.service_principals,
        summary.rows,
        if summary.owned_only {
            " (owned applications only)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn diagnose_main(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    let (rt, conn) = operator(&args.common)?;
    let now = args.at.unwrap_or_else(Utc::now);
    let d = rt.block_on(ops::diagnose::diagnose(
        &conn,
        &args.error_text,
        ops::diagnose::Given {
            app_id: args.app_id,
            secret_hint: args.secret_hint.clone(),
        },
        now,
    ))?;
    ops::diagnose::render(&d, args.json, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
