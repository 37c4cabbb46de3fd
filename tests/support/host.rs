//! Plays the Azure Functions host for the custom handler (contracts §1.3-1.6), offline.
//!
//! The real host cannot run here (offline-testing.md §2), so this harness does what it does:
//! reads `host.json` and `function-specs/`, lays them out in an app root, starts the binary with
//! the host's environment (`FUNCTIONS_CUSTOMHANDLER_PORT` = a free port, the worker id, the app
//! root, the legacy `FUNCTIONS_HTTPWORKER_*` names, plus the given app settings and nothing else
//! from the test's environment), polls `GET /` every 25 ms until any answer (the time that took is
//! [`FunctionsHost::ready_after`]), and sends invocations built the way the host builds them:
//! the timer envelope, the HTTP envelope (`Url, Method, Query, Headers, Params, Identities, Body`,
//! route parameters taken from the function's route template), and the headers
//! `X-Azure-Functions-HostVersion`, `X-Azure-Functions-InvocationId` and `User-Agent`.
//!
//! Use it from a test file with `#[path = "support/host.rs"] mod host;`. [`InvocationClient`]
//! also works against an in-process server (`secret_rotator::handler::run` on port 0).
//!
//! Not simulated: function keys (`authLevel`), the host's own 404 for unknown routes (the harness
//! panics instead: a test asking for an unknown route is wrong), and forwarded-HTTP mode.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the real host's version header looks like.
pub const HOST_VERSION: &str = "4.1037.1.23605";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings that satisfy the loader's required entries, with every Azure host pinned to a closed
/// loopback port so nothing can leave the machine.
pub fn minimal_settings() -> Vec<(String, String)> {
    [
        ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("ROTATOR_POLICY_PATH", "policy.json"),
        ("AzureWebJobsStorage__accountName", "stsecretrotator"),
        (
            "ROTATOR_RESOLVE",
            "login.microsoftonline.com=127.0.0.1:9,graph.microsoft.com=127.0.0.1:9,\
             management.azure.com=127.0.0.1:9,*.vault.azure.net=127.0.0.1:9,\
             *.blob.core.windows.net=127.0.0.1:9",
        ),
        ("ROTATOR_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

// ------------------------------------------------------------------ specs

/// One function as the host indexes it from `function.json`.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub name: String,
    pub trigger_type: String,
    pub trigger_binding: String,
    /// `http` output binding name, for HTTP functions.
    pub http_output: Option<String>,
    /// Route template (defaults to the function name, as the host does).
    pub route: String,
    /// Lower-case methods; `None` = all.
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Specs {
    pub host_json: Value,
    pub route_prefix: String,
    pub functions: Vec<FunctionDef>,
}

impl Specs {
    /// Reads `<root>/host.json` and `<root>/function-specs/*/function.json`.
    pub fn load(root: &Path) -> Specs {
        let host_json: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("host.json")).expect("host.json is readable"),
        )
        .expect("host.json is JSON");
        let route_prefix = host_json
            .pointer("/extensions/http/routePrefix")
            .and_then(Value::as_str)
            .unwrap_or("api")
            .trim_matches('/')
            .to_string();
        let mut functions = Vec::new();
        let dir = root.join("function-specs");
        for entry in std::fs::read_dir(&dir).expect("function-specs/ is readable") {
            let entry = entry.unwrap();
            let fj = entry.path().join("function.json");
            if !fj.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let json: Value = serde_json::from_str(&std::fs::read_to_string(&fj).unwrap())
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", fj.display()));
            let bindings = json["bindings"].as_array().cloned().unwrap_or_default();
            let trigger = bindings
                .iter()
                .find(|b| {
                    b["type"]
                        .as_str()
                        .is_some_and(|t| t.to_ascii_lowercase().ends_with("trigger"))
                })
                .unwrap_or_else(|| panic!("{name} has no trigger"));
            let http_output = bindings
                .iter()
                .find(|b| b["type"] == "http" && b["direction"] == "out")
                .and_then(|b| b["name"].as_str().map(str::to_string));
            functions.push(FunctionDef {
                trigger_type: trigger["type"].as_str().unwrap().to_string(),
                trigger_binding: trigger["name"].as_str().unwrap_or("").to_string(),
                http_output,
                route: trigger["route"].as_str().unwrap_or(&name).to_string(),
                methods: trigger["methods"].as_array().map(|m| {
                    m.iter()
                        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                        .collect()
                }),
                name,
            });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Specs {
            host_json,
            route_prefix,
            functions,
        }
    }

    pub fn function(&self, name: &str) -> &FunctionDef {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function '{name}' in function-specs/"))
    }

    /// The HTTP function whose route matches `path` (after the route prefix), with its route
    /// parameters, as the host's router would pick it.
    pub fn route(&self, method: &str, path: &str) -> Option<(&FunctionDef, Map<String, Value>)> {
        self.functions
            .iter()
            .filter(|f| f.trigger_type.eq_ignore_ascii_case("httpTrigger"))
            .filter(|f| {
                f.methods
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case(method)))
            })
            .find_map(|f| match_route(&f.route, path).map(|p| (f, p)))
    }
}

/// Matches an ASP.NET-style route template: literal segments (case-insensitive), `{name}`,
/// `{name?}` (optional, only at the end), `{*name}` (catch-all), `{name:constraint}`.
pub fn match_route(template: &str, path: &str) -> Option<Map<String, Value>> {
    let tsegs: Vec<&str> = template.trim_matches('/').split('/').collect();
    let psegs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut params = Map::new();
    let mut i = 0;
    for t in &tsegs {
        if let Some(inner) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            let optional = inner.ends_with('?');
            let inner = inner.trim_end_matches('?');
            let catch_all = inner.starts_with('*');
            let name = inner
                .trim_start_matches('*')
                .split(':')
                .next()
                .unwrap_or("");
            if catch_all {
                if i < psegs.len() {
                    params.insert(name.into(), json!(psegs[i..].join("/")));
                }
                i = psegs.len();
                continue;
            }
            match psegs.get(i) {
                Some(v) => {
                    let v = url::form_urlencoded::parse(format!("x={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    params.insert(name.into(), json!(v));
                    i += 1;
                }
                None if optional => {}
                None => return None,
            }
        } else {
            match psegs.get(i) {
                Some(p) if p.eq_ignore_ascii_case(t) => i += 1,
                _ => return None,
            }
        }
    }
    (i == psegs.len()).then_some(params)
}

// ------------------------------------------------------------------ envelopes

/// Newtonsoft's round-trip form: seven fractional digits, then `suffix` (`Z` or `+00:00`).
fn host_time_with(t: DateTime<Utc>, suffix: &str) -> String {
    format!(
        "{}.{:07}{suffix}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

fn host_time(t: DateTime<Utc>) -> String {
    host_time_with(t, "Z")
}

fn sys(function: &str, now: DateTime<Utc>) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": host_time(now),
        "RandGuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// The timer envelope (contracts §1.5, "Timer trigger example").
pub fn timer_envelope(def: &FunctionDef, now: DateTime<Utc>, past_due: bool) -> Value {
    let last = now - chrono::Duration::days(1);
    let mut data = Map::new();
    data.insert(
        def.trigger_binding.clone(),
        json!({
            "Schedule": { "AdjustForDST": true },
            "ScheduleStatus": {
                "Last": last.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                "Next": (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                "LastUpdated": host_time_with(last, "+00:00"),
            },
            "IsPastDue": past_due,
        }),
    );
    json!({ "Data": data, "Metadata": { "sys": sys(&def.name, now) } })
}

/// A request to an HTTP function, as a client would send it to `https://<app>/api/<path>`.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: String,
    /// Path after the route prefix, e.g. `rotate/provision-assist` or `SelfTest`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpCall {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }
    pub fn post_json(path: &str, body: &Value) -> Self {
        Self::new("POST", path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }
    pub fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Some(b.into());
        self
    }
}

/// The HTTP envelope (contracts §1.5, "HTTP trigger example"); `Body` is text, or base64 for
/// `application/octet-stream` and `multipart/*` as the host does.
pub fn http_envelope(
    def: &FunctionDef,
    route_prefix: &str,
    call: &HttpCall,
    params: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Value {
    let mut url = format!(
        "https://secret-rotator.azurewebsites.net/{route_prefix}/{}",
        call.path.trim_start_matches('/')
    );
    if !call.query.is_empty() {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(call.query.iter())
            .finish();
        url.push('?');
        url.push_str(&q);
    }
    let mut query = Map::new();
    for (k, v) in &call.query {
        match query.get_mut(k) {
            Some(Value::String(s)) => {
                s.push(',');
                s.push_str(v);
            }
            _ => {
                query.insert(k.clone(), json!(v));
            }
        }
    }
    let mut headers = Map::new();
    headers.insert("Host".into(), json!(["secret-rotator.azurewebsites.net"]));
    for (k, v) in &call.headers {
        headers
            .entry(k.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(json!(v));
    }
    let content_type = call
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let mut req = Map::new();
    req.insert("Url".into(), json!(url));
    req.insert("Method".into(), json!(call.method));
    req.insert("Query".into(), Value::Object(query.clone()));
    req.insert("Headers".into(), Value::Object(headers.clone()));
    if !params.is_empty() {
        req.insert("Params".into(), Value::Object(params.clone()));
    }
    req.insert(
        "Identities".into(),
        json!([{
            "AuthenticationType": "WebJobsAuthLevel",
            "IsAuthenticated": true,
            "Actor": null,
            "BootstrapContext": null,
            "Claims": [{"Type": "http://schemas.microsoft.com/2017/07/functions/claims/authlevel", "Value": "Function"}],
            "Label": null,
            "Name": null,
            "NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
            "RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
        }]),
    );
    if let Some(body) = &call.body {
        let binary = content_type.starts_with("application/octet-stream")
            || content_type.starts_with("multipart/");
        let text = if binary {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            String::from_utf8_lossy(body).into_owned()
        };
        req.insert("Body".into(), json!(text));
    }
    let mut data = Map::new();
    data.insert(def.trigger_binding.clone(), Value::Object(req));
    let flat_headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v[0])))
        .collect();
    let mut metadata = Map::new();
    metadata.insert("Query".into(), Value::Object(query));
    metadata.insert("Headers".into(), Value::Object(flat_headers));
    for (k, v) in params {
        metadata.insert(k.clone(), v.clone());
    }
    metadata.insert("sys".into(), sys(&def.name, now));
    json!({ "Data": data, "Metadata": metadata })
}

// ------------------------------------------------------------------ invocations

/// The handler's answer to one invocation, checked to be 2xx JSON `{Outputs, Logs, ReturnValue}`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub invocation_id: String,
    pub status: u16,
    pub json: Value,
    pub logs: Vec<String>,
}

/// An HTTP function's result: the `http` output as the host would turn it into a response.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub invocation: Invocation,
    pub status: u16,
    pub headers: Map<String, Value>,
    /// The output body parsed as JSON (the handler always answers JSON).
    pub body: Value,
}

/// A raw answer (for malformed requests): status and the body as JSON if it is JSON.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub json: Option<Value>,
    pub text: String,
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
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `envelope` to `POST /{function}` with the host's headers and returns the raw answer.
    pub async fn send(&self, function: &str, envelope: &Value, invocation_id: &str) -> RawAnswer {
        let resp = self
            .client
            .post(format!("{}/{function}", self.base))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .body(envelope.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /{function} failed at the socket: {e}"));
        raw(resp).await
    }

    /// Like [`Self::send`], but requires what the host requires: 2xx and a JSON
    /// `{Outputs, Logs, ReturnValue}` body.
    pub async fn invoke(&self, function: &str, envelope: &Value) -> Invocation {
        let invocation_id = uuid::Uuid::new_v4().to_string();
        self.invoke_with_id(function, envelope, &invocation_id)
            .await
    }

    pub async fn invoke_with_id(
        &self,
        function: &str,
        envelope: &Value,
        invocation_id: &str,
    ) -> Invocation {
        let a = self.send(function, envelope, invocation_id).await;
        assert!(
            (200..300).contains(&a.status),
            "the host would fail invocation of {function}: HTTP {} {}",
            a.status,
            a.text
        );
        assert!(
            a.content_type.starts_with("application/json"),
            "the host cannot read a {} answer from {function}",
            a.content_type
        );
        let json = a
            .json
            .unwrap_or_else(|| panic!("{function} answered non-JSON: {}", a.text));
        let logs = match json.get("Logs") {
            Some(Value::Array(l)) => l
                .iter()
                .map(|v| v.as_str().expect("Logs entries are strings").to_string())
                .collect(),
            Some(Value::Null) | None => vec![],
            Some(other) => panic!("Logs is not an array: {other}"),
        };
        assert!(
            json.get("Outputs")
                .is_none_or(|o| o.is_object() || o.is_null()),
            "Outputs is not an object: {json}"
        );
        Invocation {
            invocation_id: invocation_id.to_string(),
            status: a.status,
            json,
            logs,
        }
    }

    pub async fn timer(&self, function: &str, now: DateTime<Utc>, past_due: bool) -> Invocation {
        let def = self.specs.function(function).clone();
        self.invoke(function, &timer_envelope(&def, now, past_due))
            .await
    }

    /// Routes `call` like the host, sends the envelope and reads the `http` output.
    pub async fn http(&self, call: HttpCall, now: DateTime<Utc>) -> HttpResult {
        let id = uuid::Uuid::new_v4().to_string();
        self.http_with_id(call, now, &id).await
    }

    pub async fn http_with_id(
        &self,
        call: HttpCall,
        now: DateTime<Utc>,
        invocation_id: &str,
    ) -> HttpResult {
        let envelope = self.http_envelope(&call, now);
        let (def, _) = self
            .specs
            .route(&call.method, &call.path)
            .unwrap_or_else(|| panic!("no function routes {} {}", call.method, call.path));
        let name = def.name.clone();
        let out_name = def
            .http_output
            .clone()
            .expect("an HTTP function has an http output");
        let invocation = self.invoke_with_id(&name, &envelope, invocation_id).await;
        read_http_output(invocation, &out_name)
    }

    pub fn http_envelope(&self, call: &HttpCall, now: DateTime<Utc>) -> Value {
        let (def, params) = self
            .specs
            .route(&call.method, &call.path)
            .unwrap_or_else(|| panic!("no function routes {} {}", call.method, call.path));
        http_envelope(def, &self.specs.route_prefix, call, &params, now)
    }

    /// Anything at all, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> RawAnswer {
        let mut rb = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        raw(rb.send().await.expect("socket error")).await
    }

    pub async fn get(&self, path: &str) -> RawAnswer {
        raw(self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("socket error"))
        .await
    }
}

/// Reads the `http` output as the host does: case-insensitive `statusCode`/`body`/`headers`,
/// a status as number or string.
pub fn read_http_output(invocation: Invocation, out_name: &str) -> HttpResult {
    let out = invocation
        .json
        .get("Outputs")
        .and_then(|o| o.get(out_name))
        .cloned()
        .unwrap_or_else(|| panic!("no '{out_name}' output in {}", invocation.json));
    let obj = out
        .as_object()
        .unwrap_or_else(|| panic!("the host cannot deserialize a non-object http output: {out}"));
    let get = |k: &str| {
        obj.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let status = match get("statusCode") {
        Some(Value::Number(n)) => n.as_u64().unwrap() as u16,
        Some(Value::String(s)) => s.parse().expect("statusCode string is a number"),
        None => 200,
        Some(other) => panic!("statusCode is {other}"),
    };
    let headers = get("headers")
        .and_then(|h| h.as_object().cloned())
        .unwrap_or_default();
    let body = match get("body") {
        Some(Value::String(s)) => serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("output body is not JSON ({e}): {s}")),
        Some(v) => v,
        None => Value::Null,
    };
    HttpResult {
        invocation,
        status,
        headers,
        body,
    }
}

async fn raw(resp: reqwest::Response) -> RawAnswer {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    RawAnswer {
        status,
        content_type,
        json: serde_json::from_str(&text).ok(),
        text,
    }
}

// ------------------------------------------------------------------ the process

/// Why the handler did not become ready.
#[derive(Debug)]
pub struct HostExit {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
    pub timed_out: bool,
}

pub struct HostBuilder {
    settings: Vec<(String, String)>,
    files: Vec<(PathBuf, Vec<u8>)>,
    set_port: bool,
    ready_timeout: Duration,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuilder {
    /// Starts from [`minimal_settings`].
    pub fn new() -> Self {
        Self {
            settings: minimal_settings(),
            files: vec![],
            set_port: true,
            ready_timeout: Duration::from_secs(30),
        }
    }
    pub fn setting(mut self, k: &str, v: &str) -> Self {
        self.settings.retain(|(n, _)| n != k);
        self.settings.push((k.into(), v.into()));
        self
    }
    pub fn without(mut self, k: &str) -> Self {
        self.settings.retain(|(n, _)| n != k);
        self
    }
    /// A file under the app root (e.g. `policy.json`).
    pub fn file(mut self, rel: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel.into(), contents.into()));
        self
    }
    /// Start without `FUNCTIONS_CUSTOMHANDLER_PORT` (the host always sets it; tests may not).
    pub fn without_port(mut self) -> Self {
        self.set_port = false;
        self
    }

    pub async fn start(self) -> Result<FunctionsHost, HostExit> {
        let specs = Arc::new(Specs::load(&repo_root()));
        let app_root = tempfile::tempdir().expect("temp app root");
        std::fs::copy(
            repo_root().join("host.json"),
            app_root.path().join("host.json"),
        )
        .unwrap();
        for f in &specs.functions {
            let d = app_root.path().join(&f.name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(
                repo_root()
                    .join("function-specs")
                    .join(&f.name)
                    .join("function.json"),
                d.join("function.json"),
            )
            .unwrap();
        }
        for (rel, data) in &self.files {
            let p = app_root.path().join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, data).unwrap();
        }

        let port = free_port();
        let worker_id = uuid::Uuid::new_v4().to_string();
        let mut env: Vec<(String, String)> = self.settings.clone();
        env.push(("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into()));
        env.push((
            "FUNCTIONS_APP_ROOT_PATH".into(),
            app_root.path().display().to_string(),
        ));
        env.push((
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID".into(),
            worker_id.clone(),
        ));
        env.push(("FUNCTIONS_HTTPWORKER_ID".into(), worker_id));
        if self.set_port {
            env.push(("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()));
            env.push(("FUNCTIONS_HTTPWORKER_PORT".into(), port.to_string()));
        }

        // host.json's arguments, with %NAME% expanded from the app settings like the host does.
        let args: Vec<String> = specs
            .host_json
            .pointer("/customHandler/description/arguments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| expand(s, &env))
                    .collect()
            })
            .unwrap_or_default();

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-rotator"));
        cmd.args(&args)
            .current_dir(app_root.path())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("the handler binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect_lines(child.stdout.take().unwrap(), stdout.clone()),
            collect_lines(child.stderr.take().unwrap(), stderr.clone()),
        ];

        let client = InvocationClient::new(format!("http://127.0.0.1:{port}"), specs.clone());
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                for r in readers {
                    let _ = r.await;
                }
                return Err(HostExit {
                    code: status.code(),
                    stderr: stderr.lock().unwrap().join("\n"),
                    stdout: stdout.lock().unwrap().join("\n"),
                    timed_out: false,
                });
            }
            // Any HTTP answer at all means ready (contracts §1.3).
            if probe
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            if started.elapsed() > self.ready_timeout {
                let _ = child.start_kill();
                return Err(HostExit {
                    code: None,
                    stderr: stderr.lock().unwrap().join("\n"),
                    stdout: stdout.lock().unwrap().join("\n"),
                    timed_out: true,
                });
            }
            // The host's own polling interval.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(FunctionsHost {
            ready_after: started.elapsed(),
            child,
            client,
            port,
            app_root,
            stdout,
            stderr,
            readers,
        })
    }
}

pub struct FunctionsHost {
    /// From spawn to the first answer on `GET /`.
    pub ready_after: Duration,
    pub client: InvocationClient,
    pub port: u16,
    child: Child,
    app_root: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl FunctionsHost {
    /// Starts the handler with [`minimal_settings`]; use [`HostBuilder`] for anything else.
    pub async fn start() -> Result<FunctionsHost, HostExit> {
        HostBuilder::new().start().await
    }
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }
    pub fn app_root(&self) -> &Path {
        self.app_root.path()
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM (what the platform does on scale-in or restart) and waits for the exit.
    pub async fn terminate(mut self) -> HostExit {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the handler exits after SIGTERM")
            .expect("wait");
        for r in std::mem::take(&mut self.readers) {
            let _ = r.await;
        }
        HostExit {
            code: status.code(),
            stderr: self.stderr.lock().unwrap().join("\n"),
            stdout: self.stdout.lock().unwrap().join("\n"),
            timed_out: false,
        }
    }
}

fn collect_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: R,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    })
}

fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in env {
        out = out.replace(&format!("%{k}%"), v);
    }
    out
}

/// A port nobody listens on right now (the host picks one the same way).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
