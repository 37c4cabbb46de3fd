//! The three functions behind the custom handler, one per folder in `function-specs/`:
//!
//! - `RotateSecrets` (timer): one rotation pass in a spawned run, bounded by the pass budget.
//! - `SelfTest` (HTTP): the probe `{"function":"Test"}` in the shape operators already script
//!   against (`appVersion, command, success, message, resultCode`), and nothing else: its function
//!   key is the one monitoring tools hold.
//! - `Operate` (HTTP): `Status`, `Plan` (dry run) and `Run`
//!   (`{"function":"Run","runId":"...","waitSeconds":0}`: a run's outcome) in the same shape,
//!   behind a function key of its own, since they read the whole credential inventory.
//! - `Rotate` (HTTP, route `rotate/{credential?}`): one credential now; waits up to the rotate
//!   wait, then answers 202 with the run id while the run carries on.
//!
//! Run ids are the host's `X-Azure-Functions-InvocationId` when present, so an operator can find
//! a run from the invocation log even if the HTTP caller went away.
//!
//! What the host records (README "What the host records"): an HTTP function always answers the
//! host 2xx, its caller's status in `res` (a non-2xx would reach the caller as a bare 500 with
//! the reason dropped). A timer pass answers 2xx when it ran and nothing needs a person — even
//! with work deferred, a lease held elsewhere, or a pass still running in the background — and
//! fails the invocation (`failed_invocation`) when a credential failed or is blocked, when the
//! pass could not start, or when it broke, so the host's failure alerts fire.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::protocol::{
    HTTP_OUTPUT_BINDING, HTTP_TRIGGER_BINDING, HttpOutput, HttpRequestData, InvocationRequest,
    InvocationResponse, TIMER_BINDING,
};
use super::runs::{RunHandle, RunKind, RunResult, RunView};
use super::server::{AppState, error_response};
use crate::engine::report::{
    CredentialOutcome, CredentialReport, PassReport, ResultCode, SelfTestReport, StatusReport,
};
use crate::engine::service::{RotatorService, ServiceError};

pub const ROTATE_SECRETS: &str = "RotateSecrets";
pub const SELF_TEST: &str = "SelfTest";
pub const ROTATE: &str = "Rotate";
pub const STATUS_PAGE: &str = "StatusPage";
pub const OPERATE: &str = "Operate";
/// Every function this handler serves; each has a folder in `function-specs/`.
pub const FUNCTION_NAMES: &[&str] = &[ROTATE_SECRETS, SELF_TEST, ROTATE, STATUS_PAGE, OPERATE];
/// SelfTest commands: the probe only.
pub const PROBE_COMMANDS: &[&str] = &["Test"];
/// Operate commands: what reads the inventory or the runs.
pub const OPERATE_COMMANDS: &[&str] = &["Status", "Plan", "Run"];

/// The function for a request path segment (the host uses the folder name; case is forgiven).
pub fn canonical_name(s: &str) -> Option<&'static str> {
    FUNCTION_NAMES
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(s))
}

pub(crate) async fn dispatch(
    state: Arc<AppState>,
    name: &'static str,
    req: InvocationRequest,
    invocation_id: Option<String>,
) -> Response {
    let mut logs = Vec::new();
    let now = host_now(&req, &mut logs);
    match name {
        ROTATE_SECRETS => rotate_secrets(state, req, invocation_id, now, logs).await,
        SELF_TEST | ROTATE | STATUS_PAGE | OPERATE => {
            let http = match req.http_request(HTTP_TRIGGER_BINDING) {
                Ok(h) => h,
                Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let (out, mut lines) = match state
                .opts
                .require_app_roles
                .then(|| super::auth::authorize(name, &http))
            {
                Some(Err(why)) => forbidden(&state, name, why),
                _ if name == SELF_TEST => self_test(&state, &http, now).await,
                _ if name == OPERATE => operate(&state, &http, now).await,
                _ if name == STATUS_PAGE => status_page(&state, now).await,
                _ => rotate(&state, &http, invocation_id, now).await,
            };
            logs.append(&mut lines);
            for l in &logs {
                tracing::info!(summary = %l, "invocation summary");
            }
            json_ok(InvocationResponse::with_http(
                HTTP_OUTPUT_BINDING,
                out,
                logs,
            ))
        }
        _ => error_response(StatusCode::NOT_FOUND, format!("unknown function '{name}'")),
    }
}

/// The host's clock for this invocation (`protocol::host_sys` says where it is found); without
/// it, the handler's own clock, and a line saying why. Never an error: what a caller sent must
/// not fail the invocation.
fn host_now(req: &InvocationRequest, logs: &mut Vec<String>) -> DateTime<Utc> {
    match &req.sys {
        Ok(sys) => sys.utc_now,
        Err(why) => {
            tracing::warn!(reason = %why, "no host clock in the invocation; using the handler's");
            logs.push(format!("{why}; using the handler's clock"));
            Utc::now()
        }
    }
}

fn json_ok(r: InvocationResponse) -> Response {
    (StatusCode::OK, axum::Json(r)).into_response()
}

// ---------------------------------------------------------------- RotateSecrets (timer)

async fn rotate_secrets(
    state: Arc<AppState>,
    req: InvocationRequest,
    invocation_id: Option<String>,
    now: DateTime<Utc>,
    mut logs: Vec<String>,
) -> Response {
    let timer = match req.timer(TIMER_BINDING) {
        Ok(t) => t,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if timer.is_past_due {
        tracing::warn!(
            last = ?timer.last,
            "timer is past due: this run is late (the app was down or busy at the scheduled time)"
        );
        logs.push("IsPastDue=true: this run is late; the pass catches up now".into());
    } else {
        tracing::info!(next = ?timer.next, "timer fired on schedule");
        logs.push("IsPastDue=false".into());
    }
    let service = match state.service() {
        Ok(s) => s.clone(),
        Err(e) => {
            return failed_invocation(
                logs,
                format!(
                    "the rotation pass could not start: the engine is not available: {}",
                    e.message
                ),
            );
        }
    };
    // The host runs one timer invocation at a time, but a pass that overran its invocation is
    // still working: a second pass now would only contend for the same leases.
    if let Some(previous) = state.runs.running_pass() {
        let line = format!(
            "pass {previous} from an earlier run is still working; this run starts no second pass"
        );
        tracing::warn!(previous_run = %previous, "{line}");
        logs.push(line);
        return logs_only(logs);
    }
    let budget = state.opts.pass_budget;
    let handle = state.runs.start(
        invocation_id.as_deref(),
        RunKind::Pass,
        None,
        false,
        now,
        async move {
            RunResult::Pass {
                report: service.rotation_pass(now, budget).await,
            }
        },
    );
    let limit = budget + state.opts.pass_grace;
    match handle.wait(limit).await {
        Some(result) => pass_answer(&handle.run_id, &result, logs),
        None => {
            let line = format!(
                "pass {} is still running {}s after it started; it continues in the background \
                 and its outcome shows in Operate Status/Run",
                handle.run_id,
                limit.as_secs()
            );
            tracing::warn!(run_id = %handle.run_id, "{line}");
            logs.push(line);
            logs_only(logs)
        }
    }
}

/// The timer invocation's answer for a pass that finished: failed when someone has to act.
fn pass_answer(run_id: &str, result: &RunResult, mut logs: Vec<String>) -> Response {
    match result {
        RunResult::Pass { report } => {
            logs.extend(pass_lines(run_id, report));
            match pass_failure(run_id, report) {
                Some(summary) => failed_invocation(logs, summary),
                None => {
                    for l in &logs {
                        tracing::info!(summary = %l, "invocation summary");
                    }
                    logs_only(logs)
                }
            }
        }
        RunResult::Failed { error, .. } => {
            failed_invocation(logs, format!("rotation pass {run_id} failed: {error}"))
        }
        RunResult::Rotate { .. } => failed_invocation(
            logs,
            "internal error: a pass run reported a single-credential result".into(),
        ),
    }
}

/// A successful invocation carrying only its log lines.
fn logs_only(logs: Vec<String>) -> Response {
    json_ok(InvocationResponse {
        logs,
        ..Default::default()
    })
}

/// A credential that failed or is blocked: someone has to act.
fn needs_a_person(c: &CredentialReport) -> bool {
    matches!(
        c.outcome,
        CredentialOutcome::Failed | CredentialOutcome::Blocked
    )
}

/// Why a finished pass must show as a failed invocation: a credential failed or is blocked (an
/// operator has to act, so the host's failure alerts must fire). `None` for a pass that only
/// progressed, found nothing due, deferred work or met a lease held elsewhere.
fn pass_failure(run_id: &str, report: &PassReport) -> Option<String> {
    let failed: Vec<&str> = report
        .credentials
        .iter()
        .filter(|c| needs_a_person(c))
        .map(|c| c.name.as_str())
        .collect();
    (!failed.is_empty()).then(|| {
        format!(
            "rotation pass {run_id}: {} of {} credential(s) failed or blocked: {}",
            failed.len(),
            report.credentials.len(),
            failed.join(", ")
        )
    })
}

/// A timer invocation the host must record as failed (README "What the host records").
///
/// The host fails the invocation on any non-2xx answer and then reads nothing of it: in
/// `DefaultHttpWorkerService.ProcessDefaultInvocationRequest` `EnsureSuccessStatusCode()` throws
/// before `ProcessLogsFromHttpResponse`, so these `Logs` never reach the invocation log. What
/// does reach Application Insights: the exception, whose message .NET builds from the status
/// line (`Response status code does not indicate success: 500 (<reason phrase>)`, dotnet/runtime
/// `System.Net.Http/HttpResponseMessage.cs` `EnsureSuccessStatusCode`), so the
/// summary goes in the reason phrase; and the handler's stdout, which the host forwards as
/// console logs (`WorkerProcess.OnOutputDataReceived`), so every line is traced too. The body
/// still carries the `Logs` for local tools (Core Tools traces the answer's content).
fn failed_invocation(logs: Vec<String>, summary: String) -> Response {
    for l in &logs {
        tracing::error!(summary = %l, "invocation summary (failed invocation)");
    }
    tracing::error!(reason = %summary, "the invocation fails: {summary}");
    let mut logs = logs;
    logs.push(summary.clone());
    let mut resp = (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(InvocationResponse {
            logs,
            ..Default::default()
        }),
    )
        .into_response();
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason_phrase(&summary)) {
        resp.extensions_mut().insert(reason);
    }
    resp
}

/// What a status line's reason phrase may hold (visible ASCII and spaces), kept short.
fn reason_phrase(summary: &str) -> String {
    const MAX: usize = 300;
    let mut s: String = summary
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX)
        .collect();
    if summary.chars().count() > MAX {
        s.push_str("...");
    }
    s
}

/// One line per credential, then what was deferred, then a total.
pub fn pass_lines(run_id: &str, report: &PassReport) -> Vec<String> {
    let mut lines: Vec<String> = report.credentials.iter().map(credential_line).collect();
    if !report.deferred.is_empty() {
        lines.push(format!(
            "deferred to the next run (pass budget reached): {}",
            report.deferred.join(", ")
        ));
    }
    if let Some(u) = &report.unenrolled {
        lines.push(u.line());
    }
    let failed = report
        .credentials
        .iter()
        .filter(|c| needs_a_person(c))
        .count();
    lines.push(format!(
        "pass {run_id}: {} credential(s) handled, {failed} failed or blocked, {} deferred",
        report.credentials.len(),
        report.deferred.len()
    ));
    lines
}

fn credential_line(c: &CredentialReport) -> String {
    let mut line = format!(
        "{}: {} ({} step(s))",
        c.name,
        outcome_word(c.outcome),
        c.steps.len()
    );
    if let Some(last) = c.steps.last() {
        line.push_str(&format!("; last step {}: {}", last.step, last.detail));
    }
    if let Some(e) = &c.error {
        line.push_str(&format!("; error: {e}"));
    }
    if let Some(d) = c.next_due {
        line.push_str(&format!("; next due {}", d.to_rfc3339()));
    }
    line
}

fn outcome_word(o: CredentialOutcome) -> &'static str {
    match o {
        CredentialOutcome::Idle => "nothing due",
        CredentialOutcome::Progressed => "progressed",
        CredentialOutcome::InProgress => "in progress",
        CredentialOutcome::Blocked => "blocked",
        CredentialOutcome::Failed => "failed",
        CredentialOutcome::Busy => "busy (another instance holds the lease)",
        CredentialOutcome::Refused => "forced rotation refused",
    }
}

// ---------------------------------------------------------------- shared reply shape

/// `{"appVersion","command","success","message","resultCode", ...extra}`.
fn reply(
    state: &AppState,
    command: &str,
    success: bool,
    message: Option<String>,
    code: ResultCode,
    extra: Vec<(&str, Value)>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("appVersion".into(), json!(state.opts.app_version));
    m.insert("command".into(), json!(command));
    m.insert("success".into(), json!(success));
    m.insert("message".into(), json!(message));
    m.insert("resultCode".into(), json!(code.code().to_string()));
    for (k, v) in extra {
        m.insert(k.into(), v);
    }
    m
}

/// 400: the request itself is wrong.
fn bad_request(state: &AppState, command: &str, message: String) -> (HttpOutput, Vec<String>) {
    refusal(state, 400, "rejected", command, message)
}

/// 403: the caller may not use this function (or command) with what it presented.
fn forbidden(state: &AppState, command: &str, message: String) -> (HttpOutput, Vec<String>) {
    refusal(state, 403, "refused", command, message)
}

fn refusal(
    state: &AppState,
    status: u16,
    verb: &str,
    command: &str,
    message: String,
) -> (HttpOutput, Vec<String>) {
    let line = format!("{verb}: {message}");
    let out = reply(
        state,
        command,
        false,
        Some(message),
        ResultCode::BadRequest,
        vec![],
    );
    (HttpOutput::json(status, &out), vec![line])
}

/// The engine, or the 503 answer naming why it did not start.
fn service<'s>(
    state: &'s AppState,
    command: &str,
) -> Result<&'s Arc<dyn RotatorService>, (HttpOutput, Vec<String>)> {
    let e = match state.service() {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let message = format!("the rotation engine is not available: {}", e.message);
    let out = reply(
        state,
        command,
        false,
        Some(message.clone()),
        e.result_code,
        vec![],
    );
    Err((HttpOutput::json(503, &out), vec![message]))
}

/// The JSON body as an object (`{}` when absent); a non-object is the caller's mistake.
fn body_object(http: &HttpRequestData) -> Result<Map<String, Value>, String> {
    match http.json_body() {
        Ok(None) => Ok(Map::new()),
        Ok(Some(Value::Object(m))) => Ok(m),
        Ok(Some(_)) => Err("the request body must be a JSON object".into()),
        Err(e) => Err(format!("the request body is not JSON ({e})")),
    }
}

// ---------------------------------------------------------------- StatusPage (HTTP)

/// One self-contained HTML page (`crate::statuspage`) from the same report `Status` returns.
async fn status_page(state: &AppState, now: DateTime<Utc>) -> (HttpOutput, Vec<String>) {
    let service = match service(state, "StatusPage") {
        Ok(s) => s,
        Err(u) => return u,
    };
    let report = match bounded(state, service.status(now)).await {
        Ok(r) => r,
        Err(limit) => return out_for(state, "StatusPage", limit),
    };
    let html = crate::statuspage::render(&report, env!("CARGO_PKG_VERSION"));
    let out = HttpOutput {
        status_code: 200,
        body: html,
        headers: std::collections::BTreeMap::from([
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ("Cache-Control".into(), "no-store".into()),
            // No script, no external asset: the strictest policy the page allows.
            (
                "Content-Security-Policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:".into(),
            ),
        ]),
    };
    (
        out,
        vec![format!(
            "status page: {} credential(s), {} certificate credential(s)",
            report.credentials.len(),
            report.certificates.len()
        )],
    )
}

// ---------------------------------------------------------------- SelfTest (HTTP)

/// Runs a read-only engine call within `opts.request_timeout`: Azure's front end drops an HTTP
/// request after 230 s, so a hung dependency is answered with a clear 504 before that.
async fn bounded<T>(state: &AppState, fut: impl Future<Output = T>) -> Result<T, Duration> {
    let limit = state.opts.request_timeout;
    tokio::time::timeout(limit, fut).await.map_err(|_| limit)
}

fn out_for(state: &AppState, command: &str, limit: Duration) -> (HttpOutput, Vec<String>) {
    let message = format!(
        "{command} did not finish within {}s; a dependency is slow or unreachable (see the logs)",
        limit.as_secs()
    );
    tracing::error!(command, "{message}");
    let out = reply(
        state,
        command,
        false,
        Some(message.clone()),
        ResultCode::Internal,
        vec![],
    );
    (HttpOutput::json(504, &out), vec![message])
}

/// An HTTP function's answer and its invocation log lines.
type Answer = (HttpOutput, Vec<String>);

/// The command a SelfTest/Operate request names: the body's `"function"`, else `?function=`
/// (so a browser or a bare probe can call it too).
fn command_of(
    state: &AppState,
    http: &HttpRequestData,
    usage: &str,
) -> Result<(String, Map<String, Value>), Answer> {
    let body = body_object(http).map_err(|e| bad_request(state, "", format!("{e}; {usage}")))?;
    let command = match body.get("function") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            let m = format!("\"function\" must be a string; {usage}");
            return Err(bad_request(state, "", m));
        }
        None => match http.query.get("function") {
            Some(s) => s.clone(),
            None => return Err(bad_request(state, "", format!("no command given; {usage}"))),
        },
    };
    Ok((command, body))
}

fn known(commands: &[&'static str], command: &str) -> Option<&'static str> {
    commands
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(command))
}

/// The probe: `Test` only. An inventory command is refused with where it is served, so the
/// key monitoring tools hold cannot read the inventory.
async fn self_test(
    state: &AppState,
    http: &HttpRequestData,
    now: DateTime<Utc>,
) -> (HttpOutput, Vec<String>) {
    let usage = "send a JSON body like {\"function\":\"Test\"}";
    let (command, _) = match command_of(state, http, usage) {
        Ok(c) => c,
        Err(out) => return out,
    };
    if known(PROBE_COMMANDS, &command).is_some() {
        return test_command(state, now).await;
    }
    if let Some(c) = known(OPERATE_COMMANDS, &command) {
        return forbidden(
            state,
            c,
            format!(
                "SelfTest answers the probe only ({{\"function\":\"Test\"}}); {c} is served by \
                 the {OPERATE} function (POST /api/{OPERATE}) with its own function key"
            ),
        );
    }
    bad_request(
        state,
        &command,
        format!("unknown command '{command}'; {usage}"),
    )
}

/// Status, Plan and Run: the inventory and the runs, behind Operate's own key.
async fn operate(
    state: &AppState,
    http: &HttpRequestData,
    now: DateTime<Utc>,
) -> (HttpOutput, Vec<String>) {
    let usage = format!(
        "send a JSON body like {{\"function\":\"Status\"}}; commands: {}",
        OPERATE_COMMANDS.join(", ")
    );
    let (command, body) = match command_of(state, http, &usage) {
        Ok(c) => c,
        Err(out) => return out,
    };
    match known(OPERATE_COMMANDS, &command) {
        Some("Status") => status_command(state, now).await,
        Some("Plan") => plan_command(state, now).await,
        Some(_) => run_command(state, &body, http).await,
        None => bad_request(
            state,
            &command,
            format!("unknown command '{command}'; {usage}"),
        ),
    }
}

async fn test_command(state: &AppState, now: DateTime<Utc>) -> (HttpOutput, Vec<String>) {
    // A probe of a process whose engine did not start still answers 200: the probe ran and
    // found a problem, just as a refused credential is reported (seed 004).
    let report = match state.service() {
        Err(e) => SelfTestReport {
            checks: vec![crate::engine::report::Check {
                name: "engine".into(),
                ok: false,
                result_code: e.result_code,
                message: format!("the rotation engine did not start: {}", e.message),
            }],
        },
        Ok(service) => match bounded(state, service.self_test(now)).await {
            Ok(r) => r,
            Err(out) => return out_for(state, "Test", out),
        },
    };
    let code = report.result_code();
    let failing: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.message.as_str())
        .collect();
    let message = (!failing.is_empty()).then(|| failing.join("; "));
    let lines = report
        .checks
        .iter()
        .map(|c| {
            format!(
                "check {}: {} (resultCode {}){}",
                c.name,
                if c.ok { "ok" } else { "FAILED" },
                c.result_code.code(),
                if c.ok {
                    String::new()
                } else {
                    format!(": {}", c.message)
                }
            )
        })
        .collect();
    let out = reply(
        state,
        "Test",
        code == ResultCode::Ok,
        message,
        code,
        vec![("checks", json!(report.checks))],
    );
    (HttpOutput::json(200, &out), lines)
}

/// The status report's overall code: a failed last run first (a blocked certificate counts
/// as one), then consumers out of sync, secrets and certificates alike.
pub fn status_code(report: &StatusReport) -> ResultCode {
    let failed = |o: Option<CredentialOutcome>| {
        matches!(
            o,
            Some(CredentialOutcome::Failed | CredentialOutcome::Blocked)
        )
    };
    if report.credentials.iter().any(|c| failed(c.last_outcome))
        || report
            .certificates
            .iter()
            .any(|c| failed(c.last_outcome) || c.blocked.is_some())
    {
        ResultCode::RotationFailed
    } else if report.credentials.iter().any(|c| !c.consumers_in_sync)
        || report.certificates.iter().any(|c| !c.consumers_in_sync)
    {
        ResultCode::ConsumerOutOfSync
    } else {
        ResultCode::Ok
    }
}

/// One line per certificate credential needing a person, for the answer's `message`.
fn certificate_attention(report: &StatusReport) -> impl Iterator<Item = String> + '_ {
    report
        .certificates
        .iter()
        .filter(|c| c.problem.is_some() || c.blocked.is_some() || !c.consumers_in_sync)
        .map(|c| {
            let why = c.problem.as_ref().or(c.blocked.as_ref()).cloned();
            format!(
                "{}: {}",
                c.name,
                why.unwrap_or_else(|| "a consumer is out of sync".into())
            )
        })
}

/// One log line per certificate credential: version, expiry, phase, consumers.
fn certificate_lines(report: &StatusReport) -> impl Iterator<Item = String> + '_ {
    report.certificates.iter().map(|c| {
        format!(
            "{}: certificate {}/{} version {}, expires {}, phase {}, consumers {}",
            c.name,
            c.vault,
            c.certificate,
            c.current_version.as_deref().unwrap_or("none"),
            c.expires
                .map(|e| e.to_rfc3339())
                .unwrap_or_else(|| "unknown".into()),
            c.phase.as_deref().unwrap_or("none"),
            if c.consumers_in_sync {
                "in sync"
            } else {
                "OUT OF SYNC"
            }
        )
    })
}

async fn status_command(state: &AppState, now: DateTime<Utc>) -> (HttpOutput, Vec<String>) {
    let service = match service(state, "Status") {
        Ok(s) => s,
        Err(u) => return u,
    };
    let report = match bounded(state, service.status(now)).await {
        Ok(r) => r,
        Err(out) => return out_for(state, "Status", out),
    };
    let code = status_code(&report);
    let attention: Vec<String> = report
        .credentials
        .iter()
        .filter(|c| c.problem.is_some() || !c.consumers_in_sync)
        .map(|c| {
            format!(
                "{}: {}",
                c.name,
                c.problem
                    .clone()
                    .unwrap_or_else(|| "a consumer is out of sync".into())
            )
        })
        .chain(certificate_attention(&report))
        .collect();
    let message = (!attention.is_empty()).then(|| attention.join("; "));
    let mut lines: Vec<String> = report
        .credentials
        .iter()
        .map(|c| {
            format!(
                "{}: expires {}, phase {}, consumers {}",
                c.name,
                c.expires
                    .map(|e| e.to_rfc3339())
                    .unwrap_or_else(|| "unknown".into()),
                c.phase.as_deref().unwrap_or("settled"),
                if c.consumers_in_sync {
                    "in sync"
                } else {
                    "OUT OF SYNC"
                }
            )
        })
        .chain(certificate_lines(&report))
        .collect();
    if let Some(u) = &report.unenrolled {
        lines.push(format!("unenrolled: {}", u.note));
        if let Some(p) = &u.problem {
            lines.push(format!("unenrolled: {p}"));
        }
    }
    let runs: Vec<RunView> = state.runs.list().into_iter().take(20).collect();
    let out = reply(
        state,
        "Status",
        code == ResultCode::Ok,
        message,
        code,
        vec![("status", json!(report)), ("runs", json!(runs))],
    );
    (HttpOutput::json(200, &out), lines)
}

async fn plan_command(state: &AppState, now: DateTime<Utc>) -> (HttpOutput, Vec<String>) {
    let service = match service(state, "Plan") {
        Ok(s) => s,
        Err(u) => return u,
    };
    let plan = match bounded(state, service.plan(now)).await {
        Ok(r) => r,
        Err(out) => return out_for(state, "Plan", out),
    };
    let lines = plan
        .credentials
        .iter()
        .chain(&plan.certificates)
        .map(|c| {
            let what = if c.steps.is_empty() {
                "nothing to do".to_string()
            } else {
                c.steps.join(" -> ")
            };
            match &c.blocked {
                Some(b) => format!("{}: {what} (blocked: {b})", c.name),
                None => format!("{}: {what}", c.name),
            }
        })
        .collect();
    let out = reply(
        state,
        "Plan",
        true,
        None,
        ResultCode::Ok,
        vec![("plan", json!(plan))],
    );
    (HttpOutput::json(200, &out), lines)
}

async fn run_command(
    state: &AppState,
    body: &Map<String, Value>,
    http: &HttpRequestData,
) -> (HttpOutput, Vec<String>) {
    let run_id = match run_id_of(body, http) {
        Ok(id) => id,
        Err(m) => return bad_request(state, "Run", m),
    };
    let wait = match body.get("waitSeconds") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => match v.as_f64() {
            Some(s) if s >= 0.0 && s <= state.opts.max_run_wait.as_secs_f64() => {
                Duration::from_secs_f64(s)
            }
            _ => {
                return bad_request(
                    state,
                    "Run",
                    format!(
                        "\"waitSeconds\" must be a number from 0 to {}",
                        state.opts.max_run_wait.as_secs()
                    ),
                );
            }
        },
    };
    let Some(handle) = state.runs.handle(&run_id) else {
        let message = format!(
            "no run '{run_id}' is known to this instance (runs are kept in memory; after a \
             restart or on another instance see Status)"
        );
        let out = reply(
            state,
            "Run",
            false,
            Some(message.clone()),
            ResultCode::BadRequest,
            vec![],
        );
        return (HttpOutput::json(404, &out), vec![message]);
    };
    if !wait.is_zero() {
        handle.wait(wait).await;
    }
    let Some(view) = state.runs.get(&run_id) else {
        let out = reply(
            state,
            "Run",
            false,
            Some(format!("run '{run_id}' was forgotten while waiting")),
            ResultCode::BadRequest,
            vec![],
        );
        return (HttpOutput::json(404, &out), vec![]);
    };
    let (success, code, message) = run_verdict(&view);
    let line = format!("run {run_id}: {}", view.state);
    let out = reply(
        state,
        "Run",
        success,
        message,
        code,
        vec![("run", json!(view))],
    );
    (HttpOutput::json(200, &out), vec![line])
}

/// The run a `Run` request names: the body's `runId` (or `runid`), else `?runId=`.
fn run_id_of(body: &Map<String, Value>, http: &HttpRequestData) -> Result<String, String> {
    match body.get("runId").or_else(|| body.get("runid")) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(_) => Err("\"runId\" must be a non-empty string".into()),
        None => match http.query.get("runId") {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(
                "Run needs a \"runId\" (the id a Rotate answer or the invocation log gave)".into(),
            ),
        },
    }
}

/// success, resultCode and message for a run, finished or not.
fn run_verdict(view: &RunView) -> (bool, ResultCode, Option<String>) {
    match &view.result {
        None => (
            true,
            ResultCode::Ok,
            Some("the run is still in progress".to_string()),
        ),
        Some(RunResult::Rotate { report }) => rotate_verdict(report),
        Some(RunResult::Pass { report }) => {
            let failed = report.credentials.iter().any(needs_a_person);
            if failed {
                (
                    false,
                    ResultCode::RotationFailed,
                    Some("a credential failed or is blocked".into()),
                )
            } else {
                (true, ResultCode::Ok, None)
            }
        }
        Some(RunResult::Failed { error, code, .. }) => (false, *code, Some(error.clone())),
    }
}

// ---------------------------------------------------------------- Rotate (HTTP)

/// success, resultCode and message for one credential's outcome.
fn rotate_verdict(report: &CredentialReport) -> (bool, ResultCode, Option<String>) {
    match report.outcome {
        CredentialOutcome::Failed | CredentialOutcome::Blocked => {
            (
                false,
                ResultCode::RotationFailed,
                Some(report.error.clone().unwrap_or_else(|| {
                    format!("{} is {}", report.name, outcome_word(report.outcome))
                })),
            )
        }
        CredentialOutcome::Busy => (
            false,
            ResultCode::Ok,
            Some(format!(
                "{} is being rotated by another instance (it holds the lease); try again later",
                report.name
            )),
        ),
        CredentialOutcome::Refused => {
            (
                false,
                ResultCode::Ok,
                Some(report.error.clone().unwrap_or_else(|| {
                    format!("{}: the forced rotation was refused", report.name)
                })),
            )
        }
        CredentialOutcome::Idle => (
            true,
            ResultCode::Ok,
            Some(format!(
                "{}: nothing was due; send \"force\": true to rotate anyway",
                report.name
            )),
        ),
        CredentialOutcome::Progressed | CredentialOutcome::InProgress => {
            (true, ResultCode::Ok, None)
        }
    }
}

async fn rotate(
    state: &AppState,
    http: &HttpRequestData,
    invocation_id: Option<String>,
    now: DateTime<Utc>,
) -> (HttpOutput, Vec<String>) {
    let (credential, force) = match rotate_request(http) {
        Ok(r) => r,
        Err(m) => return bad_request(state, "Rotate", m),
    };
    let service = match service(state, "Rotate") {
        Ok(s) => s.clone(),
        Err(u) => return u,
    };
    let handle = match state.runs.running_rotation(&credential, force) {
        Some(h) => h,
        None => {
            let name = credential.clone();
            state.runs.start(
                invocation_id.as_deref(),
                RunKind::Rotate,
                Some(credential.clone()),
                force,
                now,
                async move { rotate_run(service, &name, force, now).await },
            )
        }
    };
    match handle.wait(state.opts.rotate_wait).await {
        None => {
            let message = format!(
                "the rotation of {credential} is still running after {}s; it continues. Ask \
                 Operate {{\"function\":\"Run\",\"runId\":\"{}\"}} for its outcome",
                state.opts.rotate_wait.as_secs(),
                handle.run_id
            );
            let out = reply(
                state,
                "Rotate",
                true,
                Some(message.clone()),
                ResultCode::Ok,
                vec![
                    ("runId", json!(handle.run_id)),
                    ("joined", json!(handle.joined)),
                ],
            );
            (HttpOutput::json(202, &out), vec![message])
        }
        Some(result) => rotate_answer(state, &credential, &handle, &result),
    }
}

/// The credential a Rotate request names (route, else body, else `?credential=`) and whether
/// it is forced (body, else `?force=`); `Err` says what is wrong, with the usage.
fn rotate_request(http: &HttpRequestData) -> Result<(String, bool), String> {
    let usage = "name the credential in the route (rotate/{credential}) or the body \
                 {\"credential\":\"name\",\"force\":false}";
    let body = body_object(http).map_err(|e| format!("{e}; {usage}"))?;
    fn named(s: Option<&String>) -> Option<&str> {
        s.map(|s| s.trim()).filter(|s| !s.is_empty())
    }
    let credential = match named(http.params.get("credential")) {
        Some(c) => c.to_string(),
        None => match body.get("credential") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(_) => {
                return Err(format!(
                    "\"credential\" must be a non-empty string; {usage}"
                ));
            }
            None => match named(http.query.get("credential")) {
                Some(c) => c.to_string(),
                None => return Err(format!("no credential named; {usage}")),
            },
        },
    };
    let force = match body.get("force") {
        None | Some(Value::Null) => match http.query.get("force").map(|s| s.to_ascii_lowercase()) {
            None => false,
            Some(s) if s == "true" || s == "1" => true,
            Some(s) if s == "false" || s == "0" || s.is_empty() => false,
            Some(s) => return Err(format!("?force={s} is not true or false")),
        },
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"force\" must be true or false".into()),
    };
    Ok((credential, force))
}

/// The run behind a Rotate request: one credential, its service errors as failed runs.
async fn rotate_run(
    service: Arc<dyn RotatorService>,
    name: &str,
    force: bool,
    now: DateTime<Utc>,
) -> RunResult {
    match service.rotate_one(name, force, now).await {
        Ok(report) => RunResult::Rotate { report },
        Err(ServiceError::UnknownCredential(n)) => RunResult::Failed {
            error: format!("no credential named '{n}' is enrolled"),
            code: ResultCode::BadRequest,
            not_found: true,
        },
        Err(ServiceError::Internal(e)) => RunResult::Failed {
            error: e,
            code: ResultCode::Internal,
            not_found: false,
        },
    }
}

/// The Rotate answer for a run that finished within the wait.
fn rotate_answer(
    state: &AppState,
    credential: &str,
    handle: &RunHandle,
    result: &RunResult,
) -> (HttpOutput, Vec<String>) {
    let run_id = json!(handle.run_id);
    match result {
        RunResult::Rotate { report } => {
            let (success, code, message) = rotate_verdict(report);
            let out = reply(
                state,
                "Rotate",
                success,
                message,
                code,
                vec![
                    ("runId", run_id),
                    ("joined", json!(handle.joined)),
                    ("result", json!(report)),
                ],
            );
            (HttpOutput::json(200, &out), vec![credential_line(report)])
        }
        RunResult::Failed {
            error,
            code,
            not_found,
        } => {
            let status = if *not_found { 404 } else { 500 };
            let out = reply(
                state,
                "Rotate",
                false,
                Some(error.clone()),
                *code,
                vec![("runId", run_id)],
            );
            (
                HttpOutput::json(status, &out),
                vec![format!("{credential}: {error}")],
            )
        }
        RunResult::Pass { .. } => {
            let out = reply(
                state,
                "Rotate",
                false,
                Some("internal error: a rotate run reported a pass".into()),
                ResultCode::Internal,
                vec![("runId", run_id)],
            );
            (HttpOutput::json(500, &out), vec![])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Was: a refused force answered `success: true` with "nothing was due; send force: true".
    #[test]
    fn a_refused_force_is_not_a_success() {
        let report = CredentialReport {
            name: "ezsign".into(),
            outcome: CredentialOutcome::Refused,
            steps: vec![],
            error: Some("not forcing a rotation: ...; a forced rotation is accepted from X".into()),
            next_due: None,
        };
        let (success, _, message) = rotate_verdict(&report);
        assert!(!success);
        assert!(message.unwrap().contains("accepted from X"));
    }

    #[test]
    fn a_certificate_credential_counts_in_the_status_code() {
        use crate::engine::usecase::certificate_status::example;
        let report = |c| StatusReport {
            now: Utc::now(),
            credentials: vec![],
            certificates: vec![c],
            unenrolled: None,
        };
        let blocked = example("pa-cert");
        assert_eq!(status_code(&report(blocked)), ResultCode::RotationFailed);
        let mut behind = example("pa-cert");
        behind.blocked = None;
        let r = report(behind.clone());
        assert_eq!(status_code(&r), ResultCode::ConsumerOutOfSync);
        assert_eq!(
            certificate_attention(&r).collect::<Vec<_>>(),
            ["pa-cert: a consumer is out of sync"]
        );
        let mut settled = behind;
        settled.consumers_in_sync = true;
        let r = report(settled);
        assert_eq!(status_code(&r), ResultCode::Ok);
        let line = certificate_lines(&r).next().unwrap();
        assert!(
            line.starts_with("pa-cert: certificate kv-pa/pa-cert version 0123"),
            "{line}"
        );
    }
}
