//! Sends invocations to the handler as the host does and reads the answers as the host does.
//!
//! Sending (functions-host `Workers/Http/DefaultHttpWorkerService.cs`,
//! `Workers/MessageExtensions/HttpScriptInvocationContextExtensions.cs`,
//! `Workers/Http/HttpWorkerConstants.cs`): `POST /{FunctionName}`; headers
//! `X-Azure-Functions-HostVersion`, `X-Azure-Functions-InvocationId` and
//! `User-Agent: Azure-Functions-Host/{version}`; the envelope as an `ObjectContent` with
//! `application/json; charset=utf-8` and no Content-Length, which HttpClient sends chunked.
//!
//! Reading: any non-2xx fails the invocation (`EnsureSuccessStatusCode`, before anything of the
//! answer is read: not even `Logs`); the answer must be JSON `{Outputs, Logs, ReturnValue}`;
//! `Outputs.{res}` becomes the caller's response (functions-host `Binding/Http/HttpBinding.cs`:
//! `statusCode` a number or a numeric string, header values scalars, a body; an empty or `null`
//! answer leaves the invocation without a result until it times out).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::envelope::{HOST_VERSION, HttpCall, Specs, TimerForm, http_envelope, timer_envelope};

/// A raw answer: status, the status line's reason, content type and body.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub reason: String,
    pub content_type: String,
    pub json: Option<Value>,
    pub text: String,
}

/// An answer the host accepts: 2xx JSON `{Outputs, Logs, ReturnValue}`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub invocation_id: String,
    pub status: u16,
    pub json: Value,
    pub logs: Vec<String>,
}

/// An HTTP function's result: the `http` output as the host turns it into a response.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub invocation: Invocation,
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body_text: String,
    /// The body parsed as JSON; `Null` when it is not JSON (the status page's HTML).
    pub body: Value,
}

#[derive(Clone)]
pub struct InvocationClient {
    pub base: String,
    pub specs: Arc<Specs>,
    client: reqwest::Client,
}

impl InvocationClient {
    pub fn new(base: impl Into<String>, specs: Arc<Specs>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            specs,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// `POST /{function}` with the host's headers, the envelope sent chunked.
    pub async fn send(
        &self,
        function: &str,
        envelope: &Value,
        invocation_id: &str,
    ) -> Result<RawAnswer, String> {
        let bytes = envelope.to_string().into_bytes();
        // A stream has no length, so the body goes chunked, as from the host's HttpClient.
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        let resp = self
            .client
            .post(format!("{}/{function}", self.base))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .map_err(|e| format!("POST /{function} failed at the socket: {e}"))?;
        Ok(raw(resp).await)
    }

    /// Sends, then requires what the host requires.
    pub async fn invoke(
        &self,
        function: &str,
        envelope: &Value,
        invocation_id: &str,
    ) -> Result<Invocation, String> {
        let a = self.send(function, envelope, invocation_id).await?;
        accept(function, invocation_id, a)
    }

    pub async fn timer(
        &self,
        function: &str,
        now: DateTime<Utc>,
        form: TimerForm,
        invocation_id: &str,
    ) -> Result<Invocation, String> {
        let def = self
            .specs
            .function(function)
            .ok_or_else(|| format!("no function '{function}' in function-specs/"))?;
        let envelope = timer_envelope(def, now, form);
        self.invoke(function, &envelope, invocation_id).await
    }

    /// The function `call` routes to, and the envelope the host would send it.
    pub fn http_envelope(
        &self,
        call: &HttpCall,
        now: DateTime<Utc>,
    ) -> Result<(String, String, Value), String> {
        let (def, params) = self
            .specs
            .route(&call.method, &call.path)
            .ok_or_else(|| format!("no function routes {} {}", call.method, call.path))?;
        let out = def
            .http_output
            .clone()
            .ok_or_else(|| format!("{} has no http output", def.name))?;
        let envelope = http_envelope(def, &self.specs.route_prefix, call, &params, now);
        Ok((def.name.clone(), out, envelope))
    }

    /// Routes `call` like the host, sends the envelope and reads the `http` output.
    pub async fn http(
        &self,
        call: &HttpCall,
        now: DateTime<Utc>,
        invocation_id: &str,
    ) -> Result<HttpResult, String> {
        let (function, out, envelope) = self.http_envelope(call, now)?;
        let invocation = self.invoke(&function, &envelope, invocation_id).await?;
        read_http_output(invocation, &out)
    }
}

/// Reads any answer of the handler (an invocation's, or a malformed request's in tests).
pub async fn raw(resp: reqwest::Response) -> RawAnswer {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    let text = resp.text().await.unwrap_or_default();
    RawAnswer {
        status: status.as_u16(),
        reason,
        content_type,
        json: serde_json::from_str(&text).ok(),
        text,
    }
}

/// What the host accepts as an invocation's answer, or why it fails the invocation.
pub fn accept(function: &str, invocation_id: &str, a: RawAnswer) -> Result<Invocation, String> {
    if !(200..300).contains(&a.status) {
        return Err(format!(
            "the host fails the invocation of {function}: Response status code does not indicate \
             success: {} ({})",
            a.status, a.reason
        ));
    }
    let mime = a.content_type.split(';').next().unwrap_or("").trim();
    if !(mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("text/json")) {
        return Err(format!(
            "the host cannot read a '{}' answer from {function}",
            a.content_type
        ));
    }
    let json = match a.json {
        Some(Value::Object(o)) => Value::Object(o),
        _ => return Err(format!("{function} answered no JSON object: '{}'", a.text)),
    };
    let logs = match json.get("Logs") {
        Some(Value::Array(l)) => l
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("Logs entries must be strings: {json}"))?,
        Some(Value::Null) | None => vec![],
        Some(other) => return Err(format!("Logs is not an array: {other}")),
    };
    if !json
        .get("Outputs")
        .is_none_or(|o| o.is_object() || o.is_null())
    {
        return Err(format!("Outputs is not an object: {json}"));
    }
    Ok(Invocation {
        invocation_id: invocation_id.to_string(),
        status: a.status,
        json,
        logs,
    })
}

/// Reads the `http` output as the host does (`HttpBinding.cs`, `RawScriptResult.cs`):
/// case-insensitive `statusCode`/`body`/`headers`, a status as number or numeric string, scalar
/// header values, a `Content-Type`, and a body that is there.
pub fn read_http_output(invocation: Invocation, out_name: &str) -> Result<HttpResult, String> {
    let out = invocation
        .json
        .get("Outputs")
        .and_then(|o| o.get(out_name))
        .cloned()
        .ok_or_else(|| format!("no '{out_name}' output in {}", invocation.json))?;
    let obj = out
        .as_object()
        .ok_or_else(|| format!("the host cannot read a non-object http output: {out}"))?;
    let get = |k: &str| {
        obj.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let status = match get("statusCode") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("statusCode must be a number or a numeric string: {out}"))?;
    let headers = get("headers")
        .and_then(|h| h.as_object().cloned())
        .unwrap_or_default();
    if let Some((k, v)) = headers
        .iter()
        .find(|(_, v)| v.is_object() || v.is_array() || v.is_null())
    {
        return Err(format!("header {k} must be a scalar, not {v}"));
    }
    if !headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.is_string())
    {
        return Err(format!("the http output has no Content-Type: {out}"));
    }
    let body_text = match get("body") {
        Some(Value::String(s)) if !s.is_empty() => s,
        other => return Err(format!("the http output's body is {other:?}, not a string")),
    };
    Ok(HttpResult {
        status,
        headers,
        body: serde_json::from_str(&body_text).unwrap_or(Value::Null),
        body_text,
        invocation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use std::sync::Mutex;

    /// The envelope goes chunked, with the host's headers, as from the host's HttpClient.
    #[tokio::test]
    async fn sends_like_the_host() {
        let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
        let keep = seen.clone();
        let app = axum::Router::new().route(
            "/{f}",
            axum::routing::post(move |h: HeaderMap| async move {
                *keep.lock().unwrap() = Some(h);
                axum::Json(serde_json::json!({"Outputs": {}, "Logs": ["ok"]}))
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let client = InvocationClient::new(base, Arc::new(Specs::embedded()));
        let inv = client
            .invoke("SelfTest", &serde_json::json!({"Data": {}}), "inv-1")
            .await
            .unwrap();
        assert_eq!(inv.logs, vec!["ok"]);
        let h = seen.lock().unwrap().clone().unwrap();
        assert!(h.get("content-length").is_none(), "{h:?}");
        assert_eq!(h["transfer-encoding"], "chunked");
        assert_eq!(h["content-type"], "application/json; charset=utf-8");
        assert_eq!(h["x-azure-functions-invocationid"], "inv-1");
        assert_eq!(h["x-azure-functions-hostversion"], HOST_VERSION);
        assert_eq!(
            h["user-agent"].to_str().unwrap(),
            format!("Azure-Functions-Host/{HOST_VERSION}")
        );
    }
}
