//! A small stand-in for the Azure Functions host, for dev mode: starts `secret-rotator serve`
//! the way the host starts a custom handler (environment, port, readiness poll on `GET /`) and
//! sends it the invocation envelopes the host sends (`POST /{Function}` with `{Data, Metadata}`).
//! With `--serve` it also fronts the functions on `/api/...` as the host does, so `curl` works.
//!
//! The test suite has a fuller, assertion-heavy version (`tests/support/host.rs`); this one
//! returns errors instead of panicking.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::handler::protocol::{HTTP_OUTPUT_BINDING, HTTP_TRIGGER_BINDING, TIMER_BINDING};

pub struct Handler {
    child: tokio::process::Child,
    pub port: u16,
    pub ready_in: Duration,
    http: reqwest::Client,
}

/// What an HTTP function answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: serde_json::Map<String, Value>,
    pub body: String,
    pub logs: Vec<String>,
}

impl HttpAnswer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn sys(function: &str, now: DateTime<Utc>) -> Value {
    json!({ "MethodName": function, "UtcNow": ts(now), "RandGuid": uuid::Uuid::new_v4().to_string() })
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
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()?;
        // The host polls `GET /` every 25 ms; any answer means ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the handler exited during start ({status}); see {}",
                    log_file.display()
                );
            }
            if Instant::now() > deadline {
                bail!("the handler was not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(Self {
            child,
            port,
            ready_in: started.elapsed(),
            http,
        })
    }

    async fn invoke(&self, function: &str, envelope: &Value) -> anyhow::Result<Value> {
        self.invoke_as(function, envelope, &uuid::Uuid::new_v4().to_string())
            .await
    }

    async fn invoke_as(
        &self,
        function: &str,
        envelope: &Value,
        invocation_id: &str,
    ) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/{function}", self.port))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("X-Azure-Functions-HostVersion", "4.1037.0.0")
            .header("User-Agent", "Azure-Functions-Host/4.1037.0.0")
            .json(envelope)
            .send()
            .await
            .with_context(|| format!("invoking {function}"))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{function} failed with HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// A timer invocation at `now` with this invocation id; returns the invocation's `Logs`.
    pub async fn timer(
        &self,
        function: &str,
        now: DateTime<Utc>,
        invocation_id: &str,
    ) -> anyhow::Result<Vec<String>> {
        let envelope = json!({
            "Data": { TIMER_BINDING: {
                "Schedule": { "AdjustForDST": true },
                "ScheduleStatus": { "Last": ts(now - chrono::Duration::days(1)), "Next": ts(now + chrono::Duration::days(1)), "LastUpdated": ts(now) },
                "IsPastDue": false
            }},
            "Metadata": { "sys": sys(function, now) }
        });
        let out = self.invoke_as(function, &envelope, invocation_id).await?;
        Ok(logs(&out))
    }

    /// An HTTP invocation the way the host builds it (`enableForwardingHttpRequest: false`).
    pub async fn http(
        &self,
        function: &str,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
        params: Value,
        now: DateTime<Utc>,
    ) -> anyhow::Result<HttpAnswer> {
        let url = url::Url::parse(&format!(
            "https://secret-rotator-dev.azurewebsites.net{path_and_query}"
        ))?;
        let query: serde_json::Map<String, Value> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        let mut req = json!({
            "Url": url.as_str(),
            "Method": method.to_ascii_uppercase(),
            "Query": query,
            "Headers": { "Content-Type": ["application/json"], "Host": ["secret-rotator-dev.azurewebsites.net"] },
            "Params": params,
            "Identities": [],
        });
        if let Some(b) = body {
            req["Body"] = Value::String(b.to_string());
        }
        let envelope = json!({
            "Data": { HTTP_TRIGGER_BINDING: req },
            "Metadata": { "Query": query, "sys": sys(function, now) }
        });
        let out = self.invoke(function, &envelope).await?;
        let res = &out["Outputs"][HTTP_OUTPUT_BINDING];
        Ok(HttpAnswer {
            status: res["statusCode"].as_u64().unwrap_or(0) as u16,
            headers: res["headers"].as_object().cloned().unwrap_or_default(),
            body: res["body"].as_str().unwrap_or_default().to_string(),
            logs: logs(&out),
        })
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

fn logs(out: &Value) -> Vec<String> {
    out["Logs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Fronts the functions on `http://{addr}/api/...` like the Functions host, so an operator can
/// use `curl`. `now` comes from `clock` on every request (the emulator's clock in dev mode).
pub async fn front(
    listener: tokio::net::TcpListener,
    handler: std::sync::Arc<Handler>,
    clock: std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::{Path as AxPath, RawQuery, State};
    use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
    use axum::response::{IntoResponse, Response};

    type St = (
        std::sync::Arc<Handler>,
        std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    );

    async fn call(
        State((h, clock)): State<St>,
        method: Method,
        AxPath(rest): AxPath<String>,
        RawQuery(q): RawQuery,
        body: String,
    ) -> Response {
        let mut segs = rest.split('/');
        let first = segs.next().unwrap_or_default().to_string();
        let (function, params) = match first.to_ascii_lowercase().as_str() {
            "rotate" => (
                "Rotate",
                json!({ "credential": segs.next().unwrap_or_default() }),
            ),
            "selftest" => ("SelfTest", json!({})),
            "operate" => ("Operate", json!({})),
            "statuspage" => ("StatusPage", json!({})),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no function at /api/{rest}\n"),
                )
                    .into_response();
            }
        };
        let pq = match q {
            Some(q) => format!("/api/{rest}?{q}"),
            None => format!("/api/{rest}"),
        };
        let body = (!body.is_empty()).then_some(body);
        match h
            .http(
                function,
                method.as_str(),
                &pq,
                body.as_deref(),
                params,
                clock(),
            )
            .await
        {
            Ok(a) => {
                let mut resp = (
                    StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY),
                    a.body,
                )
                    .into_response();
                for (k, v) in a.headers {
                    if let (Ok(k), Some(Ok(v))) = (
                        HeaderName::try_from(k.as_str()),
                        v.as_str().map(HeaderValue::from_str),
                    ) {
                        resp.headers_mut().insert(k, v);
                    }
                }
                resp
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}\n")).into_response(),
        }
    }

    let app = axum::Router::new()
        .route("/api/{*rest}", axum::routing::any(call))
        .with_state((handler, clock));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The address `front` listens on by default (the Functions host's local default port).
pub fn default_front_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7071))
}
