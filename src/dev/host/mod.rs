//! The one stand-in for the Azure Functions host, shared by dev mode and the test suite: it
//! builds every invocation exactly as the real host does and reads every answer as the real host
//! does, so what passes here passes there.
//!
//! - [`envelope`]: the invocations (timer and HTTP envelopes, Metadata, `$sys` shadowing), each
//!   rule with the host source file it comes from; [`Specs`] reads `function-specs/`.
//! - [`client`]: sending them (headers, chunked body) and what the host accepts back.
//! - Here: [`Handler`], dev mode's process (started as the host starts a custom handler:
//!   environment, port, readiness poll on `GET /`), and [`front`], which serves the functions on
//!   `/api/...` like the host so `curl` works. The tests start the process their own way
//!   (`tests/e2e/support/host.rs`: a clean environment, output captured) and use the same client.

pub mod client;
pub mod envelope;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

pub use client::{HttpResult, Invocation, InvocationClient, RawAnswer};
pub use envelope::{FunctionDef, HttpCall, Specs, TimerForm};

pub struct Handler {
    child: tokio::process::Child,
    pub port: u16,
    pub ready_in: Duration,
    client: InvocationClient,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Handler {
    /// Starts the handler binary with the host's environment plus `settings`; the child's
    /// stdout (JSON log lines) goes to `log_file`.
    pub async fn start(
        binary: &Path,
        app_root: &Path,
        settings: &[(String, String)],
        log_file: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(log_file)?;
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("serve")
            .current_dir(app_root)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env(
                "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
                uuid::Uuid::new_v4().to_string(),
            )
            .env("FUNCTIONS_APP_ROOT_PATH", app_root)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // What the operator's shell has for Azure must not leak into the demo.
        for k in [
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_ID",
            "AZURE_AUTHORITY_HOST",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in settings {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        match wait_ready(&mut child, port, Duration::from_secs(30)).await {
            Ok(()) => {}
            Err(NotReady::Exited(status)) => bail!(
                "the handler exited during start ({status}); see {}",
                log_file.display()
            ),
            Err(NotReady::TimedOut) => bail!("the handler was not ready within 30 s"),
        }
        Ok(Self {
            child,
            port,
            ready_in: started.elapsed(),
            client: InvocationClient::new(
                format!("http://127.0.0.1:{port}"),
                Arc::new(Specs::embedded()),
            ),
        })
    }

    /// A timer invocation at `now` with this invocation id; returns the invocation's `Logs`.
    /// A pass the host would record as failed is an error naming the reason.
    pub async fn timer(
        &self,
        function: &str,
        now: DateTime<Utc>,
        invocation_id: &str,
    ) -> anyhow::Result<Vec<String>> {
        let form = TimerForm::Monitored { past_due: false };
        let inv = self
            .client
            .timer(function, now, form, invocation_id)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(inv.logs)
    }

    /// An HTTP invocation the way the host builds it for `call`.
    pub async fn http(&self, call: &HttpCall, now: DateTime<Utc>) -> anyhow::Result<HttpResult> {
        let id = uuid::Uuid::new_v4().to_string();
        self.client
            .http(call, now, &id)
            .await
            .map_err(anyhow::Error::msg)
    }

    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // SIGTERM: let it finish a running rotation, as the host's shutdown does.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// Why a started handler never became ready.
#[derive(Debug)]
pub enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Waits as the host does (`DefaultHttpWorkerService.IsWorkerReady`): `GET /` every 25 ms until
/// any HTTP answer, socket errors meaning "not yet", for at most `timeout` (the host's
/// `HttpWorkerOptions.InitializationTimeout`, 30 s by default). A child that exits stops the wait.
pub async fn wait_ready(
    child: &mut tokio::process::Child,
    port: u16,
    timeout: Duration,
) -> Result<(), NotReady> {
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        let url = format!("http://127.0.0.1:{port}/");
        if probe.get(url).send().await.is_ok() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(NotReady::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Fronts the functions on `http://{addr}/api/...` like the Functions host, so an operator can
/// use `curl`: the request becomes an [`HttpCall`] as it came (method, path, query, headers,
/// body; chunked stays chunked) and `now` comes from `clock` (the emulator's clock in dev mode).
pub async fn front(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/api/{*rest}", axum::routing::any(front_call))
        .with_state((handler, clock));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn front_call(
    axum::extract::State((h, clock)): axum::extract::State<(Arc<Handler>, Clock)>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, crate::handler::server::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let call = front_http_call(&parts, &body);
    if h.client.specs.route(&call.method, &call.path).is_none() {
        let msg = format!("no function at {} /api/{}\n", call.method, call.path);
        return (StatusCode::NOT_FOUND, msg).into_response();
    }
    match h.http(&call, clock()).await {
        Ok(a) => front_response(a),
        // What the host does with a failed invocation: a bare 500 (the reason is in our logs).
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The incoming request as the caller sent it.
fn front_http_call(parts: &axum::http::request::Parts, body: &[u8]) -> HttpCall {
    let path = parts.uri.path().trim_start_matches("/api/").to_string();
    let mut call = HttpCall::new(parts.method.as_str(), &path);
    if let Some(q) = parts.uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            call = call.query(&k, &v);
        }
    }
    for (k, v) in &parts.headers {
        let framing = ["host", "content-length", "transfer-encoding"];
        if let (false, Ok(v)) = (framing.contains(&k.as_str()), v.to_str()) {
            call = call.header(k.as_str(), v);
        }
    }
    if !body.is_empty() {
        call = call.body(body.to_vec());
    }
    if !parts
        .headers
        .contains_key(axum::http::header::CONTENT_LENGTH)
    {
        call = call.chunked();
    }
    call
}

fn front_response(a: HttpResult) -> axum::response::Response {
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = (status, a.body_text).into_response();
    for (k, v) in a.headers {
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(&v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// The address `front` listens on by default (the Functions host's local default port).
pub fn default_front_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7071))
}
