//! HTTP plumbing: the shared state every handler sees, the request/response types, the HTTPS
//! and HTTP accept loops, dispatch on the Host header, faults, latency, the request log and the
//! catch-panic backstop (a panicking handler answers 500 and is logged; the emulator lives on).
//!
//! Service handlers are synchronous functions of (shared state, request); everything async
//! (TLS, reading the body, injected delays) happens here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{self, HeaderMap, HeaderValue, Method, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::caller::CallerAbsence;
use crate::faults::{FaultAction, FaultEntry, RequestRecord};
use crate::model::Tenant;
use crate::util::{Clock, lock, parse_query};

pub struct Shared {
    pub state: Mutex<Tenant>,
    pub clock: Clock,
    /// HS256 key of the tokens; also seeds the identity headers.
    pub key: [u8; 32],
    pub faults: Mutex<Vec<FaultEntry>>,
    pub next_fault: AtomicU64,
    pub log: Mutex<Vec<RequestRecord>>,
    pub seq: AtomicU64,
}

impl Shared {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

pub struct Req {
    pub method: Method,
    /// Lower-case host name without the port.
    pub host: String,
    /// Host header as sent (with port), for links that must point back here.
    pub host_raw: String,
    pub path: String,
    pub raw_query: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json_body(&self) -> Result<Value, String> {
        if self.body.is_empty() {
            return Err("the request body is empty".into());
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: vec![],
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

/// Which Azure service a request on the HTTPS port belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Service {
    Entra,
    Msi,
    Graph,
    KeyVault,
    Arm,
    Unknown,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Entra => "entra",
            Service::Msi => "msi",
            Service::Graph => "graph",
            Service::KeyVault => "keyvault",
            Service::Arm => "arm",
            Service::Unknown => "unknown",
        }
    }

    fn for_host(host: &str) -> Service {
        match host {
            "login.microsoftonline.com" | "login.windows.net" | "login.microsoft.com" => {
                Service::Entra
            }
            "graph.microsoft.com" => Service::Graph,
            "management.azure.com" => Service::Arm,
            h if h.ends_with(".vault.azure.net") && h.len() > ".vault.azure.net".len() => {
                Service::KeyVault
            }
            _ => Service::Unknown,
        }
    }
}

/// What to do with the connection after a request.
pub enum Outcome {
    Answer(Resp),
    Reset,
}

const MAX_BODY: usize = 4 * 1024 * 1024;

/// Serves one hyper connection on any IO stream.
async fn serve_conn<IO>(io: IO, shared: Arc<Shared>, https: bool)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            match handle_http(shared, req, https).await {
                Outcome::Answer(r) => Ok(to_http(r)),
                // An error from the service makes hyper drop the connection without answering.
                Outcome::Reset => Err(std::io::Error::other("fault: connection reset")),
            }
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}

fn to_http(r: Resp) -> http::Response<Body> {
    let mut b = http::Response::builder()
        .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &r.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            b = b.header(k.as_str(), v);
        }
    }
    b.body(Body::from(r.body)).unwrap_or_else(|_| {
        let mut resp = http::Response::new(Body::empty());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

pub async fn run_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            acc = listener.accept() => {
                let Ok((tcp, _)) = acc else { continue };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => serve_conn(tls, shared, true).await,
                        Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                    }
                });
            }
        }
    }
}

pub async fn run_http(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            acc = listener.accept() => {
                let Ok((tcp, _)) = acc else { continue };
                let shared = shared.clone();
                tokio::spawn(serve_conn(tcp, shared, false));
            }
        }
    }
}

async fn handle_http(
    shared: Arc<Shared>,
    req: http::Request<hyper::body::Incoming>,
    https: bool,
) -> Outcome {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Outcome::Answer(Resp::json(
                413,
                &serde_json::json!({"error":{"code":"RequestEntityTooLarge","message":"The request body is larger than 4 MiB or could not be read."}}),
            ));
        }
    };
    let host_raw = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = strip_port(&host_raw).to_ascii_lowercase();
    let req = Req {
        method: parts.method,
        host,
        host_raw,
        // Services tolerate doubled slashes (kiota joins `…/v1.0/` and `/applications`).
        path: collapse_slashes(&crate::util::percent_decode(parts.uri.path())),
        raw_query: parts.uri.query().map(str::to_string),
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    if https {
        let svc = Service::for_host(&req.host);
        handle_service(shared, req, svc).await
    } else if req.path.starts_with("/_emulator") {
        Outcome::Answer(crate::control::handle(&shared, &req))
    } else if req.path.eq_ignore_ascii_case("/msi/token") {
        handle_service(shared, req, Service::Msi).await
    } else {
        Outcome::Answer(Resp::json(
            404,
            &serde_json::json!({"error":"not_found","error_description":format!("No route {} on the emulator's HTTP port (only /msi/token and /_emulator/*).", req.path)}),
        ))
    }
}

fn collapse_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map(|s| &s[1..]).unwrap_or(h);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => h,
    }
}

/// Does the request carry credentials (faults only count calls that would reach the operation,
/// not the Key Vault challenge round trip)?
fn has_credentials(svc: Service, req: &Req) -> bool {
    match svc {
        Service::Entra | Service::Msi => true,
        _ => req.headers.contains_key(http::header::AUTHORIZATION),
    }
}

/// One request through the pipeline: classify, identify the caller, apply an armed fault, the
/// scenario's latency and the throttles, run the handler, add the common headers, log it.
async fn handle_service(shared: Arc<Shared>, req: Req, svc: Service) -> Outcome {
    let arrived = shared.now();
    let op = classify(svc, &req);
    // Who sent it is known from its credentials before any fault decides its fate.
    let caller = crate::caller::identify(&shared, &req, svc);
    let fault = armed_fault(&shared, svc, op, &req);
    let latency = lock(&shared.state).latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let arrival = Arrival {
        time: arrived,
        svc,
        op,
        caller,
        fault: fault.as_ref().map(|f| f.0),
    };
    let (resp, commit_then_fail) = match fault_effect(svc, fault.map(|f| f.1)).await {
        FaultEffect::Reset => {
            record(&shared, &arrival, &req, 0);
            return Outcome::Reset;
        }
        FaultEffect::Answer(r) => (Some(r), None),
        FaultEffect::Proceed { commit_then_fail } => (None, commit_then_fail),
    };
    let verdict = match (&resp, &arrival.caller) {
        (None, Ok(principal)) if op.is_some() && has_credentials(svc, &req) => {
            throttle(&shared, svc, &req, principal, arrived)
        }
        _ => crate::throttle::Verdict::Pass(Vec::new()),
    };
    let (resp, throttle_headers) = match verdict {
        crate::throttle::Verdict::Pass(h) => (resp, h),
        crate::throttle::Verdict::Throttled {
            retry_after,
            headers,
        } => (Some(fault_response(svc, 429, Some(retry_after))), headers),
    };
    let resp = resp.unwrap_or_else(|| run_handler(&shared, &req, svc, op, commit_then_fail));
    let mut resp = add_common_headers(svc, resp);
    resp.headers.extend(throttle_headers);
    record(&shared, &arrival, &req, resp.status);
    tracing::info!(service = svc.name(), op = op.unwrap_or("-"), method = %req.method, host = %req.host, path = %req.path, status = resp.status);
    Outcome::Answer(resp)
}

/// The operation a request names (the fault rules' and the request log's vocabulary).
fn classify(svc: Service, req: &Req) -> Option<&'static str> {
    match svc {
        Service::Entra => crate::entra::classify(req),
        Service::Msi => Some("token"),
        Service::Graph => crate::graph::classify(req),
        Service::KeyVault => crate::keyvault::classify(req),
        Service::Arm => crate::arm::classify(req),
        Service::Unknown => None,
    }
}

/// The first armed fault this request hits (its id and action); only requests that would
/// reach an operation count.
fn armed_fault(
    shared: &Shared,
    svc: Service,
    op: Option<&'static str>,
    req: &Req,
) -> Option<(u64, FaultAction)> {
    let op = op?;
    if !has_credentials(svc, req) {
        return None;
    }
    let mut faults = lock(&shared.faults);
    faults.iter_mut().find_map(|f| {
        // `try_hit` counts the call; the search stops at the first rule that hits.
        f.try_hit(svc.name(), op)
            .then(|| (f.id, f.rule.action.clone()))
    })
}

/// What a fault does to a request before its handler would run.
enum FaultEffect {
    /// The connection is dropped without an answer.
    Reset,
    /// The fault's answer replaces the handler's.
    Answer(Resp),
    /// The handler runs (after a delay fault's wait); with `commit_then_fail`, its change is
    /// kept but the caller sees that status.
    Proceed { commit_then_fail: Option<u16> },
}

async fn fault_effect(svc: Service, action: Option<FaultAction>) -> FaultEffect {
    match action {
        Some(FaultAction::Reset) => FaultEffect::Reset,
        Some(FaultAction::Status {
            status,
            retry_after,
        }) => FaultEffect::Answer(fault_response(svc, status, retry_after)),
        Some(FaultAction::Delay { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            FaultEffect::Proceed {
                commit_then_fail: None,
            }
        }
        Some(FaultAction::CommitThenFail { status }) => FaultEffect::Proceed {
            commit_then_fail: Some(status),
        },
        None => FaultEffect::Proceed {
            commit_then_fail: None,
        },
    }
}

/// Runs the service's handler under the catch-panic backstop.
fn run_handler(
    shared: &Shared,
    req: &Req,
    svc: Service,
    op: Option<&'static str>,
    commit_then_fail: Option<u16>,
) -> Resp {
    let r = guarded(svc.name(), &req.path, || dispatch(shared, req, svc, op));
    match commit_then_fail {
        // The change is done; the caller sees the error instead (unless it failed anyway).
        Some(status) if r.status < 400 => fault_response(svc, status, None),
        _ => r,
    }
}

/// The catch-panic backstop: runs a handler, turns a panic into a logged 500.
pub fn guarded(service: &str, path: &str, f: impl FnOnce() -> Resp) -> Resp {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(service, path, "handler panicked: {msg}");
            Resp::json(
                500,
                &serde_json::json!({"error":{"code":"InternalServerError","message":"The emulator failed while handling this request (handler panic; see its log)."}}),
            )
        }
    }
}

fn dispatch(shared: &Shared, req: &Req, svc: Service, op: Option<&'static str>) -> Resp {
    match svc {
        Service::Entra => crate::entra::handle(shared, req, op),
        Service::Msi => crate::entra::handle_msi(shared, req),
        Service::Graph => crate::graph::handle(shared, req, op),
        Service::KeyVault => crate::keyvault::handle(shared, req, op),
        Service::Arm => crate::arm::handle(shared, req, op),
        Service::Unknown => Resp::json(
            404,
            &serde_json::json!({"error":{"code":"UnknownHost","message":format!("The emulator does not serve host '{}'. Served: login.microsoftonline.com, graph.microsoft.com, management.azure.com, *.vault.azure.net.", req.host)}}),
        ),
    }
}

fn add_common_headers(svc: Service, mut r: Resp) -> Resp {
    let id = uuid::Uuid::new_v4().to_string();
    match svc {
        Service::Arm => {
            r.headers.push(("x-ms-request-id".into(), id.clone()));
            r.headers.push(("x-ms-correlation-request-id".into(), id));
        }
        Service::Graph => {
            r.headers.push(("request-id".into(), id.clone()));
            r.headers.push(("client-request-id".into(), id));
        }
        Service::KeyVault => r.headers.push(("x-ms-request-id".into(), id)),
        Service::Entra => r.headers.push(("x-ms-request-id".into(), id)),
        _ => {}
    }
    r
}

/// ARM's and Key Vault's throttles (`crate::throttle`) for one request with credentials.
fn throttle(
    shared: &Shared,
    svc: Service,
    req: &Req,
    principal: &str,
    now: DateTime<Utc>,
) -> crate::throttle::Verdict {
    let mut st = lock(&shared.state);
    match svc {
        Service::Arm => st.throttles.arm(principal, &req.path, &req.method, now),
        Service::KeyVault => {
            let vault = req.host.split('.').next().unwrap_or_default();
            st.throttles.key_vault(vault, now)
        }
        _ => crate::throttle::Verdict::Pass(Vec::new()),
    }
}

/// An injected error in the service's own error shape.
pub fn fault_response(svc: Service, status: u16, retry_after: Option<u64>) -> Resp {
    let throttled = status == 429;
    let r = match svc {
        Service::Graph if throttled => crate::graph::throttled_body(),
        Service::Graph => crate::graph::error(
            status,
            if status >= 500 {
                "serviceNotAvailable"
            } else {
                "BadRequest"
            },
            "Injected fault.",
        ),
        Service::KeyVault => crate::keyvault::error(
            status,
            if throttled {
                "Throttled"
            } else if status >= 500 {
                "InternalServerError"
            } else {
                "BadParameter"
            },
            if throttled {
                "Request was not allowed because of throttling. Retry after the number of seconds in the Retry-After header."
            } else {
                "Injected fault."
            },
        ),
        Service::Arm => crate::arm::error(
            status,
            if throttled {
                "TooManyRequests"
            } else if status >= 500 {
                "InternalServerError"
            } else {
                "BadRequest"
            },
            if throttled {
                "The request is being throttled as the limit has been reached for operation type. Please retry after the time in the Retry-After header."
            } else {
                "Injected fault."
            },
        ),
        Service::Entra | Service::Msi | Service::Unknown => Resp::json(
            status,
            &serde_json::json!({"error": if throttled {"too_many_requests"} else {"temporarily_unavailable"}, "error_description": "Injected fault."}),
        ),
    };
    match retry_after {
        Some(s) => r.header("retry-after", s.to_string()),
        None if throttled => r.header("retry-after", "1"),
        None => r,
    }
}

/// What the log keeps of a request besides its answer, all known before a fault applies.
struct Arrival {
    /// Emulated time of arrival.
    time: DateTime<Utc>,
    svc: Service,
    op: Option<&'static str>,
    caller: Result<String, CallerAbsence>,
    /// Id of the fault rule that hit the request.
    fault: Option<u64>,
}

fn record(shared: &Shared, a: &Arrival, req: &Req, status: u16) {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let path = match &req.raw_query {
        Some(q) => format!("{}?{}", req.path, q),
        None => req.path.clone(),
    };
    let rec = RequestRecord {
        seq,
        time: a.time,
        service: a.svc.name().into(),
        operation: a.op.map(str::to_string),
        method: req.method.to_string(),
        host: req.host.clone(),
        path,
        status,
        caller: a.caller.as_ref().ok().cloned(),
        caller_absent: a.caller.as_ref().err().copied(),
        fault: a.fault,
    };
    let mut log = lock(&shared.log);
    // Bounded: a benchmark must not grow memory without end.
    if log.len() >= 100_000 {
        log.drain(..10_000);
    }
    log.push(rec);
}

pub fn bind_addr(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_500() {
        let r = guarded("graph", "/v1.0/x", || panic!("boom"));
        assert_eq!(r.status, 500);
        assert!(String::from_utf8_lossy(&r.body).contains("InternalServerError"));
        let ok = guarded("graph", "/", || Resp::empty(204));
        assert_eq!(ok.status, 204);
    }

    #[test]
    fn collapses_slashes() {
        assert_eq!(
            collapse_slashes("/v1.0//applications"),
            "/v1.0/applications"
        );
        assert_eq!(collapse_slashes("/secrets/a/"), "/secrets/a/");
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("kv1.vault.azure.net:443"), "kv1.vault.azure.net");
        assert_eq!(strip_port("graph.microsoft.com"), "graph.microsoft.com");
        assert_eq!(strip_port("[::1]:8443"), "::1");
    }
}
