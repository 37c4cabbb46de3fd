//! The invocations, built as the Functions host builds them (`enableForwardingHttpRequest:
//! false`). Each rule names the file it was read from; `functions-host` is
//! Azure/azure-functions-host `src/WebJobs.Script/`, `webjobs-sdk` is Azure/azure-webjobs-sdk,
//! `extensions` is Azure/azure-webjobs-sdk-extensions `src/`.
//!
//! - Envelope `{"Data": {binding: value}, "Metadata": {...}}` (functions-host
//!   `Workers/MessageExtensions/ScriptInvocationContextExtensions.cs` `ToHttpScriptInvocationContext`).
//! - Metadata: every binding-data entry except null values, the HTTP request itself and keys
//!   ending in "trigger"; an object stays an object, anything else is `JsonConvert.SerializeObject`
//!   of it, so a string `x` arrives as `"\"x\""` (same file, `GetHttpScriptInvocationContextValue`).
//! - HTTP binding data (extensions `WebJobs.Extensions.Http/HttpTriggerAttributeBindingProvider.cs`
//!   `GetRequestBindingData`, case-insensitive): the body's top-level properties when
//!   Content-Length > 0 and the trimmed body starts with `{` and ends with `}`, whatever the content
//!   type (arrays and nulls skipped, objects kept, other values as .NET strings: `false` →
//!   `"False"`; `Utility.ApplyBindingData`); then query parameters except `code`; then route
//!   values; then `Query` and `Headers` (values comma-joined) unless a caller key took the name.
//! - `sys` = `{MethodName, UtcNow, RandGuid}`, written at `sys`, or at `$sys` when the binding data
//!   already holds a `sys` (webjobs-sdk `Bindings/SystemBindingData.cs` `AddToBindingData`).
//! - Timer: binding data is only `TimerTrigger` (dropped: ends in "trigger"), so Metadata is just
//!   `sys` (extensions `Extensions/Timers/Bindings/TimerTriggerBinding.cs`). `Data.timer` =
//!   `{Schedule: {AdjustForDST}, ScheduleStatus, IsPastDue}`; a first run has `Last` and
//!   `LastUpdated` = `default(DateTime).ToLocalTime()` (`Listener/TimerListener.cs`,
//!   `Scheduling/ScheduleMonitor.cs`); `ScheduleStatus` is null without a schedule monitor.
//! - Dates: Newtonsoft's ISO form `yyyy-MM-ddTHH:mm:ss.FFFFFFFK` (trailing fractional zeros
//!   dropped), `Z` for UTC values, `+00:00` for local values on a UTC host.
//! - `Data.req` (functions-host `Extensions/HttpRequestExtensions.cs` `GetRequestAsJObject`): `Url`
//!   (with the raw query, `code` included), `Method`, `Query` (object, values comma-joined),
//!   `Headers` (object of arrays), `Params` (route values; an unused optional one is `null`),
//!   `Identities`, and `Body` only when Content-Length > 0: a string, base64 for octet-stream and
//!   multipart. A caller who sends chunked has no Content-Length, hence no `Body` and no body keys.

use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// What the real host's version header looks like (`X-Azure-Functions-HostVersion`).
pub const HOST_VERSION: &str = "4.1037.1.23605";
/// The app's public host name in `Url` and the `Host` header.
pub const APP_HOST: &str = "secret-rotator.azurewebsites.net";

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

impl FunctionDef {
    pub fn is_http(&self) -> bool {
        self.trigger_type.eq_ignore_ascii_case("httpTrigger")
    }
}

/// `host.json` and the functions of `function-specs/`.
#[derive(Debug, Clone)]
pub struct Specs {
    pub host_json: Value,
    pub route_prefix: String,
    pub functions: Vec<FunctionDef>,
}

impl Specs {
    /// Reads `<root>/host.json` and `<root>/function-specs/*/function.json`.
    pub fn load(root: &Path) -> Result<Specs, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let host_json = read(&root.join("host.json"))?;
        let dir = root.join("function-specs");
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut functions = Vec::new();
        for entry in entries.flatten() {
            let fj = entry.path().join("function.json");
            if fj.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                functions.push((name, read(&fj)?));
            }
        }
        Self::parse(&host_json, &functions)
    }

    /// The specs this binary was built with (dev mode runs without the source tree).
    pub fn embedded() -> Specs {
        let functions: Vec<(String, String)> = [
            (
                "Operate",
                include_str!("../../../function-specs/Operate/function.json"),
            ),
            (
                "Rotate",
                include_str!("../../../function-specs/Rotate/function.json"),
            ),
            (
                "RotateSecrets",
                include_str!("../../../function-specs/RotateSecrets/function.json"),
            ),
            (
                "SelfTest",
                include_str!("../../../function-specs/SelfTest/function.json"),
            ),
            (
                "StatusPage",
                include_str!("../../../function-specs/StatusPage/function.json"),
            ),
        ]
        .into_iter()
        .map(|(n, j)| (n.to_string(), j.to_string()))
        .collect();
        Self::parse(include_str!("../../../host.json"), &functions)
            .expect("the specs compiled in are checked by tests/e2e/specs_schema.rs")
    }

    fn parse(host_json: &str, functions: &[(String, String)]) -> Result<Specs, String> {
        let host_json: Value =
            serde_json::from_str(host_json).map_err(|e| format!("host.json: {e}"))?;
        let route_prefix = host_json
            .pointer("/extensions/http/routePrefix")
            .and_then(Value::as_str)
            .unwrap_or("api")
            .trim_matches('/')
            .to_string();
        let mut defs = functions
            .iter()
            .map(|(name, json)| function_def(name, json))
            .collect::<Result<Vec<_>, _>>()?;
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Specs {
            host_json,
            route_prefix,
            functions: defs,
        })
    }

    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The HTTP function whose route matches `path` (after the route prefix), with its route
    /// values, as the host's router would pick it.
    pub fn route(&self, method: &str, path: &str) -> Option<(&FunctionDef, Map<String, Value>)> {
        self.functions
            .iter()
            .filter(|f| f.is_http())
            .filter(|f| {
                f.methods
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case(method)))
            })
            .find_map(|f| match_route(&f.route, path).map(|p| (f, p)))
    }
}

fn function_def(name: &str, json: &str) -> Result<FunctionDef, String> {
    let json: Value =
        serde_json::from_str(json).map_err(|e| format!("{name}/function.json: {e}"))?;
    let bindings = json["bindings"].as_array().cloned().unwrap_or_default();
    let trigger = bindings
        .iter()
        .find(|b| {
            b["type"]
                .as_str()
                .is_some_and(|t| t.to_ascii_lowercase().ends_with("trigger"))
        })
        .ok_or_else(|| format!("{name} has no trigger"))?;
    let http_output = bindings
        .iter()
        .find(|b| b["type"] == "http" && b["direction"] == "out")
        .and_then(|b| b["name"].as_str().map(str::to_string));
    Ok(FunctionDef {
        name: name.to_string(),
        trigger_type: trigger["type"].as_str().unwrap_or_default().to_string(),
        trigger_binding: trigger["name"].as_str().unwrap_or_default().to_string(),
        http_output,
        route: trigger["route"].as_str().unwrap_or(name).to_string(),
        methods: trigger["methods"].as_array().map(|m| {
            m.iter()
                .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect()
        }),
    })
}

/// Matches an ASP.NET-style route template: literal segments (case-insensitive), `{name}`,
/// `{name?}` (optional, only at the end; `null` when unused), `{*name}` (catch-all),
/// `{name:constraint}`.
pub fn match_route(template: &str, path: &str) -> Option<Map<String, Value>> {
    let psegs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut params = Map::new();
    let mut i = 0;
    for t in template.trim_matches('/').split('/') {
        let Some(inner) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
            match psegs.get(i) {
                Some(p) if p.eq_ignore_ascii_case(t) => i += 1,
                _ => return None,
            }
            continue;
        };
        let optional = inner.ends_with('?');
        let inner = inner.trim_end_matches('?');
        let catch_all = inner.starts_with('*');
        let name = inner
            .trim_start_matches('*')
            .split(':')
            .next()
            .unwrap_or("");
        let value = if catch_all {
            let rest = psegs[i.min(psegs.len())..].join("/");
            i = psegs.len();
            (!rest.is_empty()).then(|| json!(rest))
        } else {
            let v = psegs.get(i).map(|v| json!(percent_decode(v)));
            i += usize::from(v.is_some());
            v
        };
        match value {
            Some(v) => params.insert(name.into(), v),
            None if optional || catch_all => params.insert(name.into(), Value::Null),
            None => return None,
        };
    }
    (i == psegs.len()).then_some(params)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ dates and sys

/// Newtonsoft's ISO form: seconds, then up to seven fractional digits without trailing zeros,
/// then `suffix` (`Z` for UTC values, `+00:00` for local values on a UTC host).
pub fn newtonsoft_date(t: DateTime<Utc>, suffix: &str) -> String {
    let ticks = format!("{:07}", t.timestamp_subsec_nanos() / 100);
    let frac = ticks.trim_end_matches('0');
    let dot = if frac.is_empty() { "" } else { "." };
    format!("{}{dot}{frac}{suffix}", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// The host's `sys` object for an invocation of `function` at `now`.
pub fn sys(function: &str, now: DateTime<Utc>) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": newtonsoft_date(now, "Z"),
        "RandGuid": uuid::Uuid::new_v4().to_string(),
    })
}

// ------------------------------------------------------------------ timer

/// The forms of `ScheduleStatus` the host sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimerForm {
    /// A monitored timer that ran a day ago; `past_due` when an occurrence was missed.
    Monitored { past_due: bool },
    /// A monitored timer's first run: `Last` and `LastUpdated` are .NET's `DateTime.MinValue`.
    FirstRun,
    /// No schedule monitor: `ScheduleStatus` is null.
    Unmonitored,
}

/// The timer envelope for `def` at `now`.
pub fn timer_envelope(def: &FunctionDef, now: DateTime<Utc>, form: TimerForm) -> Value {
    let local = |t: DateTime<Utc>| newtonsoft_date(t, "+00:00");
    let min_value = "0001-01-01T00:00:00+00:00";
    let next = local(now + chrono::Duration::days(1));
    let (status, past_due) = match form {
        TimerForm::Monitored { past_due } => {
            let last = now - chrono::Duration::days(1);
            let status = json!({"Last": local(last), "Next": next, "LastUpdated": local(last)});
            (status, past_due)
        }
        TimerForm::FirstRun => (
            json!({"Last": min_value, "Next": next, "LastUpdated": min_value}),
            false,
        ),
        TimerForm::Unmonitored => (Value::Null, false),
    };
    let timer = json!({
        "Schedule": { "AdjustForDST": true },
        "ScheduleStatus": status,
        "IsPastDue": past_due,
    });
    let mut data = Map::new();
    data.insert(def.trigger_binding.clone(), timer);
    json!({ "Data": data, "Metadata": { "sys": sys(&def.name, now) } })
}

// ------------------------------------------------------------------ HTTP

/// A request to an HTTP function, as a client sends it to `https://<app>/api/<path>`.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: String,
    /// Path after the route prefix, e.g. `rotate/provision-assist` or `SelfTest`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The caller sent its body chunked (no Content-Length): the host passes no `Body`.
    pub chunked: bool,
    /// `Query` as the docs show it, a string holding JSON (older hosts), not an object.
    pub legacy_query: bool,
}

impl HttpCall {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: vec![],
            headers: vec![],
            body: None,
            chunked: false,
            legacy_query: false,
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
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    pub fn legacy_query(mut self) -> Self {
        self.legacy_query = true;
        self
    }

    fn content_type(&self) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The body the host reads: only with a Content-Length, and only a non-empty one.
    fn counted_body(&self) -> Option<&[u8]> {
        self.body
            .as_deref()
            .filter(|b| !b.is_empty() && !self.chunked)
    }

    /// Query values by key, repeated keys comma-joined (ASP.NET's `StringValues.ToString()`).
    fn query_object(&self) -> Map<String, Value> {
        let mut query = Map::new();
        for (k, v) in &self.query {
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
        query
    }

    /// Header values as arrays, with what the front end adds (`Host`, the body's framing).
    fn header_arrays(&self) -> Map<String, Value> {
        let mut headers = Map::new();
        let mut add = |k: &str, v: &str| {
            let slot = headers.entry(k.to_string()).or_insert_with(|| json!([]));
            if let Value::Array(a) = slot {
                a.push(json!(v));
            }
        };
        add("Host", APP_HOST);
        match (&self.body, self.chunked) {
            (Some(_), true) => add("Transfer-Encoding", "chunked"),
            (Some(b), false) => add("Content-Length", &b.len().to_string()),
            (None, _) => {}
        }
        for (k, v) in &self.headers {
            add(k, v);
        }
        headers
    }
}

/// The HTTP envelope for `call` routed to `def` with route values `params`.
pub fn http_envelope(
    def: &FunctionDef,
    route_prefix: &str,
    call: &HttpCall,
    params: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Value {
    let mut data = Map::new();
    data.insert(
        def.trigger_binding.clone(),
        request_data(route_prefix, call, params),
    );
    let metadata = http_metadata(&def.name, call, params, now);
    json!({ "Data": data, "Metadata": metadata })
}

/// `Data.req` (`GetRequestAsJObject`).
fn request_data(route_prefix: &str, call: &HttpCall, params: &Map<String, Value>) -> Value {
    let mut url = format!(
        "https://{APP_HOST}/{route_prefix}/{}",
        call.path.trim_start_matches('/')
    );
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(call.query.iter())
                .finish(),
        );
    }
    let query = Value::Object(call.query_object());
    let mut req = Map::new();
    req.insert("Url".into(), json!(url));
    req.insert("Method".into(), json!(call.method));
    req.insert(
        "Query".into(),
        if call.legacy_query {
            json!(query.to_string())
        } else {
            query
        },
    );
    req.insert("Headers".into(), Value::Object(call.header_arrays()));
    req.insert("Params".into(), Value::Object(params.clone()));
    req.insert("Identities".into(), function_key_identity());
    if let Some(body) = call.counted_body() {
        let ct = call.content_type();
        let binary = ct.starts_with("application/octet-stream") || ct.starts_with("multipart/");
        let text = if binary {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            String::from_utf8_lossy(body).into_owned()
        };
        req.insert("Body".into(), json!(text));
    }
    Value::Object(req)
}

/// What a call with a function key carries (`GetUserIdentitiesAsJArray`).
fn function_key_identity() -> Value {
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
    }])
}

/// The binding data the HTTP trigger produces, then the host's `sys`, as Metadata.
fn http_metadata(
    function: &str,
    call: &HttpCall,
    params: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let mut data = CiMap::default();
    if let Some(body) = call.counted_body() {
        for (k, v) in body_binding_data(body) {
            data.set(&k, v);
        }
    }
    for (k, v) in call.query_object() {
        if !k.eq_ignore_ascii_case("code") {
            data.set(&k, v);
        }
    }
    for (k, v) in params {
        data.set(k, v.clone());
    }
    data.set_if_absent("Query", Value::Object(call.query_object()));
    let flat_headers = call
        .header_arrays()
        .into_iter()
        .map(|(k, v)| (k, json!(comma_joined(&v))))
        .collect();
    data.set_if_absent("Headers", Value::Object(flat_headers));
    let sys_key = if data.contains("sys") { "$sys" } else { "sys" };
    data.set(sys_key, sys(function, now));
    data.into_metadata()
}

/// `Utility.ApplyBindingData`: top-level properties of a body that looks like a JSON object.
fn body_binding_data(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return Vec::new();
    }
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(t) else {
        return Vec::new();
    };
    m.into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::Null | Value::Array(_) => return None,
                Value::Object(_) => v,
                Value::Bool(b) => json!(if b { "True" } else { "False" }),
                Value::Number(n) => json!(n.to_string()),
                Value::String(_) => v,
            };
            Some((k, v))
        })
        .collect()
}

fn comma_joined(v: &Value) -> String {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.as_str().unwrap_or_default().to_string(),
    }
}

/// .NET's `Dictionary` with `StringComparer.OrdinalIgnoreCase`: a key set again under another
/// casing replaces the value and keeps the first casing.
#[derive(Default)]
struct CiMap(Vec<(String, Value)>);

impl CiMap {
    fn position(&self, k: &str) -> Option<usize> {
        let upper = k.to_uppercase();
        self.0.iter().position(|(n, _)| n.to_uppercase() == upper)
    }
    fn contains(&self, k: &str) -> bool {
        self.position(k).is_some()
    }
    fn set(&mut self, k: &str, v: Value) {
        match self.position(k) {
            Some(i) => self.0[i].1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }
    fn set_if_absent(&mut self, k: &str, v: Value) {
        if !self.contains(k) {
            self.set(k, v);
        }
    }
    /// `ToHttpScriptInvocationContext`: nulls and "…trigger" keys dropped, objects kept, any
    /// other value JSON-encoded into a string.
    fn into_metadata(self) -> Map<String, Value> {
        self.0
            .into_iter()
            .filter(|(k, v)| !v.is_null() && !k.to_ascii_lowercase().ends_with("trigger"))
            .map(|(k, v)| match v {
                Value::Object(_) => (k, v),
                other => (k, json!(other.to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, 2, 0, 0).unwrap()
    }

    fn rotate(call: &HttpCall) -> Value {
        let specs = Specs::embedded();
        let (def, params) = specs.route(&call.method, &call.path).unwrap();
        http_envelope(def, &specs.route_prefix, call, &params, t0())
    }

    #[test]
    fn embedded_specs_are_the_repositorys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded = Specs::load(root).unwrap();
        let names = |s: &Specs| {
            s.functions
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&Specs::embedded()), names(&loaded));
    }

    #[test]
    fn metadata_holds_caller_keys_json_encoded_and_the_hosts_sys() {
        let call = HttpCall::post_json(
            "rotate/app1",
            &json!({"force": false, "n": 5, "a": [1], "z": null, "o": {"k": 1}}),
        )
        .query("dryRun", "true")
        .query("code", "function-key");
        let m = &rotate(&call)["Metadata"];
        assert_eq!(m["credential"], "\"app1\"");
        assert_eq!(m["dryRun"], "\"true\"");
        assert_eq!(m["force"], "\"False\"", ".NET's string of a JSON false");
        assert_eq!(m["n"], "\"5\"");
        assert_eq!(m["o"], json!({"k": 1}));
        for absent in ["a", "z", "code", "$sys", "req"] {
            assert!(m.get(absent).is_none(), "{absent}: {m}");
        }
        assert_eq!(
            m["Query"],
            json!({"dryRun": "true", "code": "function-key"})
        );
        assert_eq!(m["Headers"]["Content-Type"], "application/json");
        assert_eq!(m["sys"]["MethodName"], "Rotate");
        assert_eq!(m["sys"]["UtcNow"], "2025-01-15T02:00:00Z");
    }

    #[test]
    fn a_callers_sys_moves_the_hosts_to_dollar_sys() {
        let query = rotate(&HttpCall::new("POST", "rotate/x").query("SYS", "1"));
        assert_eq!(query["Metadata"]["SYS"], "\"1\"");
        assert_eq!(query["Metadata"]["$sys"]["MethodName"], "Rotate");
        let body = rotate(&HttpCall::post_json(
            "rotate/x",
            &json!({"sys": {"UtcNow": "x"}}),
        ));
        assert_eq!(body["Metadata"]["sys"], json!({"UtcNow": "x"}));
        assert_eq!(body["Metadata"]["$sys"]["MethodName"], "Rotate");
        // A caller's `$sys` alone leaves the host's at `sys`; with a `sys` too, the host's
        // overwrites it.
        let dollar = rotate(&HttpCall::post_json(
            "rotate/x",
            &json!({"$sys": {"UtcNow": "x"}}),
        ));
        assert_eq!(dollar["Metadata"]["$sys"], json!({"UtcNow": "x"}));
        assert_eq!(dollar["Metadata"]["sys"]["MethodName"], "Rotate");
        let both = rotate(&HttpCall::post_json(
            "rotate/x",
            &json!({"$sys": 1, "sys": 2}),
        ));
        assert_eq!(both["Metadata"]["$sys"]["MethodName"], "Rotate");
        // A chunked body is not read for binding data.
        let chunked = rotate(&HttpCall::post_json("rotate/x", &json!({"sys": 1})).chunked());
        assert_eq!(chunked["Metadata"]["sys"]["MethodName"], "Rotate");
        assert!(chunked["Data"]["req"].get("Body").is_none());
    }

    #[test]
    fn request_data_as_the_host_builds_it() {
        let call = HttpCall::new("POST", "rotate")
            .query("tag", "a")
            .query("tag", "b")
            .header("Content-Type", "multipart/form-data; boundary=x")
            .body(vec![0u8, 255]);
        let req = &rotate(&call)["Data"]["req"];
        assert_eq!(
            req["Url"],
            "https://secret-rotator.azurewebsites.net/api/rotate?tag=a&tag=b"
        );
        assert_eq!(req["Query"], json!({"tag": "a,b"}));
        assert_eq!(req["Params"], json!({"credential": null}));
        assert_eq!(req["Headers"]["Content-Length"], json!(["2"]));
        assert_eq!(req["Body"], "AP8=");
        assert_eq!(
            req["Identities"][0]["AuthenticationType"],
            "WebJobsAuthLevel"
        );
    }

    #[test]
    fn timer_forms_and_dates() {
        let specs = Specs::embedded();
        let def = specs.function("RotateSecrets").unwrap();
        let monitored = timer_envelope(def, t0(), TimerForm::Monitored { past_due: true });
        assert_eq!(monitored["Metadata"].as_object().unwrap().len(), 1);
        let status = &monitored["Data"]["timer"]["ScheduleStatus"];
        assert_eq!(status["Last"], "2025-01-14T02:00:00+00:00");
        assert_eq!(monitored["Data"]["timer"]["IsPastDue"], true);
        let null = timer_envelope(def, t0(), TimerForm::Unmonitored);
        assert!(null["Data"]["timer"]["ScheduleStatus"].is_null());
        let first = timer_envelope(def, t0(), TimerForm::FirstRun);
        assert_eq!(
            first["Data"]["timer"]["ScheduleStatus"]["LastUpdated"],
            "0001-01-01T00:00:00+00:00"
        );
        let t = t0() + chrono::Duration::milliseconds(17);
        assert_eq!(newtonsoft_date(t, "Z"), "2025-01-15T02:00:00.017Z");
        let t = t0() + chrono::Duration::nanoseconds(123_456_700);
        assert_eq!(
            newtonsoft_date(t, "+00:00"),
            "2025-01-15T02:00:00.1234567+00:00"
        );
    }

    #[test]
    fn routes_like_the_host() {
        assert_eq!(
            match_route("rotate/{credential?}", "rotate"),
            Some(Map::from_iter([("credential".into(), Value::Null)]))
        );
        assert_eq!(
            match_route("rotate/{credential?}", "Rotate/a%20b").unwrap()["credential"],
            "a b"
        );
        assert_eq!(match_route("rotate/{credential?}", "rotate/a/b"), None);
        assert_eq!(
            match_route("files/{*rest}", "files/a/b").unwrap()["rest"],
            "a/b"
        );
        assert_eq!(match_route("SelfTest", "selftest"), Some(Map::new()));
    }
}
