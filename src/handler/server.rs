//! The custom-handler HTTP server: `GET /` for the host's readiness probe, `POST /{FunctionName}`
//! for invocations, and JSON errors for everything else.
//!
//! Two layers of status codes, on purpose: the *outer* response goes to the Functions host, and
//! any non-2xx there fails the invocation and discards its outputs (contracts §1.6). So the outer
//! status is 4xx/5xx only when the envelope itself is unusable (not JSON, wrong content type, too
//! big, unknown function) or the timer pass could not run. A caller's bad request to an HTTP
//! function is a 200 envelope whose `res` output carries the 400 for the caller to see.
//!
//! [`run`] is what `main` and the tests both call (mini-redis style).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tracing::Instrument as _;

use super::functions;
use super::protocol::InvocationRequest;
use super::runs::RunRegistry;
use crate::engine::report::ResultCode;
use crate::engine::service::RotatorService;

/// Largest invocation envelope accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why the engine is not available, when `serve` could not build it. The process still serves
/// so the SelfTest probe can say what is wrong (the host would otherwise restart it in a loop and
/// every call would fail without a reason).
#[derive(Debug, Clone)]
pub struct StartupError {
    pub message: String,
    pub result_code: ResultCode,
}

#[derive(Debug, Clone)]
pub struct HandlerOptions {
    /// Given to each timer pass (ROTATOR_PASS_BUDGET_SECONDS).
    pub pass_budget: Duration,
    /// How much longer than the budget the timer invocation waits for the pass to wrap up
    /// before answering; the pass itself keeps running in its task.
    pub pass_grace: Duration,
    /// How long a Rotate request waits before answering 202 with the run id.
    pub rotate_wait: Duration,
    /// Longest `waitSeconds` a Run query may ask for.
    pub max_run_wait: Duration,
    /// Bound on Test, Status and Plan (read-only engine calls answered inline).
    pub request_timeout: Duration,
    /// At shutdown, how long unfinished runs get to finish.
    pub drain: Duration,
    /// Finished runs remembered for Run/Status queries.
    pub runs_kept: usize,
    pub app_version: String,
    /// ROTATOR_REQUIRE_APP_ROLES: every HTTP function also checks the caller's app role
    /// ([`super::auth`]).
    pub require_app_roles: bool,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        Self {
            pass_budget: Duration::from_secs(240),
            pass_grace: Duration::from_secs(60),
            rotate_wait: Duration::from_secs(20),
            max_run_wait: Duration::from_secs(crate::settings::MAX_ROTATE_WAIT_SECONDS),
            request_timeout: Duration::from_secs(crate::settings::MAX_ROTATE_WAIT_SECONDS),
            drain: Duration::from_secs(30),
            runs_kept: 200,
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            require_app_roles: false,
        }
    }
}

impl HandlerOptions {
    pub fn from_settings(s: &crate::settings::Settings) -> Self {
        Self {
            pass_budget: s.pass_budget,
            rotate_wait: s.rotate_wait,
            require_app_roles: s.require_app_roles,
            ..Self::default()
        }
    }
}

/// The engine the handler serves: built, or not built with the reason. There is no third,
/// half-built state, and [`AppState::service`] is the one place it is looked at.
#[derive(Clone)]
pub enum Backend {
    Ready(Arc<dyn RotatorService>),
    Failed(StartupError),
}

/// Shared by every request.
pub struct AppState {
    pub backend: Backend,
    pub opts: HandlerOptions,
    pub runs: RunRegistry,
}

impl AppState {
    /// The engine, or why `serve` could not build it.
    pub fn service(&self) -> Result<&Arc<dyn RotatorService>, &StartupError> {
        match &self.backend {
            Backend::Ready(s) => Ok(s),
            Backend::Failed(e) => Err(e),
        }
    }
}

/// Serves until `shutdown` completes, then gives unfinished runs `opts.drain` to finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    backend: Backend,
    opts: HandlerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState {
        runs: RunRegistry::new(opts.runs_kept),
        backend,
        opts,
    });
    let app = router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    let left = state.runs.drain(state.opts.drain).await;
    if left > 0 {
        tracing::warn!(
            unfinished = left,
            "stopping with runs unfinished; the next run resumes them"
        );
    }
    Ok(())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/{function}", post(invoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The host's readiness probe: any answer means ready, so answer at once.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let engine = match state.service() {
        Ok(_) => "ready".to_string(),
        Err(e) => format!("unavailable: {}", e.message),
    };
    (
        StatusCode::OK,
        axum::Json(json!({
            "service": "secret-rotator",
            "appVersion": state.opts.app_version,
            "engine": engine,
            "functions": functions::FUNCTION_NAMES,
        })),
    )
        .into_response()
}

pub(crate) fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        axum::Json(json!({ "error": status.canonical_reason().unwrap_or(""), "message": message })),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "no such path '{}': the host invokes POST /{{FunctionName}} (one of {})",
            uri.path(),
            functions::FUNCTION_NAMES.join(", ")
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on '{}': invocations are POST /{{FunctionName}}, readiness is GET /",
            uri.path()
        ),
    )
}

async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(name) = functions::canonical_name(&function) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!(
                "unknown function '{function}': this handler serves {}",
                functions::FUNCTION_NAMES.join(", ")
            ),
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_content_type(content_type) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the invocation must be sent as application/json, not '{}'",
                if content_type.is_empty() {
                    "(no Content-Type)"
                } else {
                    content_type
                }
            ),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the invocation body exceeds the {MAX_BODY_BYTES}-byte limit")
            } else {
                format!(
                    "the invocation body could not be read: {}",
                    rejection.body_text()
                )
            };
            return error_response(status, message);
        }
    };
    let req = match InvocationRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let span = tracing::info_span!(
        "invocation",
        function = name,
        invocation_id = invocation_id.as_deref().unwrap_or("")
    );
    functions::dispatch(state, name, req, invocation_id)
        .instrument(span)
        .await
}

fn is_json_content_type(ct: &str) -> bool {
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("Application/JSON"));
        assert!(is_json_content_type("application/problem+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type(""));
    }
}
