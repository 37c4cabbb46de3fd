//! The custom-handler wire envelope (non-forwarded mode, contracts §1.5-1.6), parsed leniently.
//!
//! The Functions host builds invocations with Newtonsoft.Json from .NET objects, and its output
//! drifts between versions and between what the docs show and what the source emits: field names
//! are PascalCase but we match them case-insensitively; a binding value may arrive as an object or
//! as a string holding JSON; `Query` is an object or a string; `Body` is text, base64 bytes, or
//! (from some tools) an already-parsed JSON value; dates come with `Z`, `+00:00` or no offset and
//! up to seven fractional digits. Everything here turns that into plain typed values and names
//! the offending field when something cannot be understood. Which `sys` is the host's is decided
//! here too ([`InvocationRequest::sys`]; the rule is in the handler module's docs).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Binding names the function specs use (checked by `tests/e2e/specs_schema.rs`).
pub const HTTP_TRIGGER_BINDING: &str = "req";
pub const HTTP_OUTPUT_BINDING: &str = "res";
pub const TIMER_BINDING: &str = "timer";

/// Why an invocation envelope could not be understood. Always names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("the invocation body is not JSON: {0}")]
    NotJson(String),
    #[error("the invocation body must be a JSON object with Data and Metadata")]
    NotAnObject,
    #[error("field {field} is invalid: {reason}")]
    BadField { field: String, reason: String },
    #[error("the invocation carries no input binding named '{0}' in Data")]
    MissingBinding(String),
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The host's `sys` object (`Metadata.sys` or `Metadata.$sys`): its view of this invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct SysMetadata {
    pub method_name: Option<String>,
    /// The host's clock for this invocation; the handler's `now`.
    pub utc_now: DateTime<Utc>,
    pub rand_guid: Option<String>,
}

/// `POST /{FunctionName}` body: `{ "Data": {...}, "Metadata": {...} }`.
#[derive(Debug, Clone)]
pub struct InvocationRequest {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
    /// The host's own `sys`, or why it could not be found (the handler then uses its own clock).
    pub sys: Result<SysMetadata, String>,
}

/// Where the host put its own `sys` object. The host copies the caller's query parameters and
/// top-level JSON body properties into the binding data (webjobs-sdk-extensions
/// `HttpTriggerAttributeBindingProvider.GetRequestBindingData`, `Utility.ApplyBindingData`), in a
/// case-insensitive dictionary; then `SystemBindingData.AddToBindingData` (webjobs-sdk) writes its
/// own object at `sys`, or at `$sys` when a `sys` is already there ("user data takes
/// precedence"). So the host's object is at `$sys` exactly when the caller supplied a `sys` —
/// and a caller who supplies only `$sys` leaves the host's at `sys` and their own at `$sys`.
/// Which keys the caller supplied is read back from `Data.req` (query, body, route values).
fn host_sys(
    data: &Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Result<SysMetadata, String> {
    let key = match caller_supplied_sys(data)? {
        true => "$sys",
        false => "sys",
    };
    let Some(v) = field(metadata, key).filter(|v| !v.is_null()) else {
        return Err(format!("Metadata.{key} is absent"));
    };
    let sys = as_object(v).ok_or_else(|| format!("Metadata.{key} is not an object"))?;
    let utc_now = match field(&sys, "UtcNow") {
        Some(Value::String(s)) => parse_host_datetime(s)
            .ok_or_else(|| format!("Metadata.{key}.UtcNow '{s}' is not a date-time"))?,
        _ => return Err(format!("Metadata.{key}.UtcNow is absent or not a string")),
    };
    Ok(SysMetadata {
        method_name: field(&sys, "MethodName").and_then(scalar_string),
        utc_now,
        rand_guid: field(&sys, "RandGuid").and_then(scalar_string),
    })
}

/// Whether the caller of an HTTP function supplied a key the host's case-insensitive dictionary
/// takes for `sys` (.NET's OrdinalIgnoreCase upper-cases per character, so `ſys` counts too).
/// `Err` when that cannot be told: a body the host may parse as a JSON object (Newtonsoft also
/// takes single quotes, bare names and comments) that serde cannot read.
fn caller_supplied_sys(data: &Map<String, Value>) -> Result<bool, String> {
    let Some(req) = data.values().find(|v| is_http_request(v)) else {
        return Ok(false); // a timer (or any trigger without caller data)
    };
    let http = HttpRequestData::from_value(req, "Data.req")
        .map_err(|e| format!("the HTTP request could not be read ({e})"))?;
    let is_sys = |k: &str| k.to_uppercase() == "SYS";
    // Route values count even when null (an unused optional one is still in the binding data).
    let params = as_object(req)
        .and_then(|o| field(&o, "Params").and_then(as_object))
        .unwrap_or_default();
    let mut keys: Vec<String> = http.query.keys().chain(params.keys()).cloned().collect();
    if let Some(body) = &http.body {
        keys.extend(body_keys(body)?);
    }
    Ok(keys.iter().any(|k| is_sys(k)))
}

/// The top-level keys the host copies from a body that looks like JSON (`Utility.IsJson`: trimmed,
/// starts with `{` and ends with `}`, whatever the content type).
fn body_keys(body: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(m)) => Ok(m.keys().cloned().collect()),
        _ => Err("the request body looks like JSON to the host but not to the handler".into()),
    }
}

/// An HTTP trigger's value: an object (or a JSON string of one) with `Method` or `Url`.
fn is_http_request(v: &Value) -> bool {
    as_object(v).is_some_and(|o| field(&o, "Method").is_some() || field(&o, "Url").is_some())
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let Value::Object(root) = v else {
            return Err(ProtocolError::NotAnObject);
        };
        let data = match field(&root, "Data") {
            None | Some(Value::Null) => Map::new(),
            Some(v) => as_object(v).ok_or_else(|| bad("Data", "not an object"))?,
        };
        let metadata = match field(&root, "Metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(v) => as_object(v).ok_or_else(|| bad("Metadata", "not an object"))?,
        };
        let sys = host_sys(&data, &metadata);
        Ok(Self {
            data,
            metadata,
            sys,
        })
    }

    /// The input binding `name`, or the only binding when there is exactly one (a host that
    /// renamed the binding still works).
    fn binding(&self, name: &str) -> Result<Value, ProtocolError> {
        let v = match field(&self.data, name) {
            Some(v) => v.clone(),
            None if self.data.len() == 1 => self.data.values().next().cloned().unwrap_or_default(),
            None => return Err(ProtocolError::MissingBinding(name.to_string())),
        };
        // Newtonsoft passes values that are not JObjects as a string holding JSON.
        Ok(match v {
            Value::String(s) if s.trim_start().starts_with('{') => {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            }
            v => v,
        })
    }

    pub fn http_request(&self, binding: &str) -> Result<HttpRequestData, ProtocolError> {
        let v = self.binding(binding)?;
        HttpRequestData::from_value(&v, &format!("Data.{binding}"))
    }

    /// The timer binding. A missing binding is not an error: the host sends one, but a test
    /// tool or a future host may not, and there is nothing in it the pass needs.
    pub fn timer(&self, binding: &str) -> Result<TimerInfo, ProtocolError> {
        match self.binding(binding) {
            Ok(Value::Null) | Err(ProtocolError::MissingBinding(_)) => Ok(TimerInfo::default()),
            Ok(v) => TimerInfo::from_value(&v, &format!("Data.{binding}")),
            Err(e) => Err(e),
        }
    }
}

/// `Data.{timer}`: `{ Schedule, ScheduleStatus: {Last, Next, LastUpdated} | null, IsPastDue }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
    pub last_updated: Option<DateTime<Utc>>,
    pub adjust_for_dst: Option<bool>,
}

impl TimerInfo {
    fn from_value(v: &Value, at: &str) -> Result<Self, ProtocolError> {
        let obj = as_object(v).ok_or_else(|| bad(at, "timer info is not an object"))?;
        let is_past_due = match field(&obj, "IsPastDue") {
            None | Some(Value::Null) => false,
            Some(v) => {
                lenient_bool(v).ok_or_else(|| bad(format!("{at}.IsPastDue"), "not a boolean"))?
            }
        };
        let adjust_for_dst = field(&obj, "Schedule")
            .and_then(as_object)
            .and_then(|s| field(&s, "AdjustForDST").and_then(lenient_bool));
        let mut info = TimerInfo {
            is_past_due,
            adjust_for_dst,
            ..Default::default()
        };
        if let Some(status) = field(&obj, "ScheduleStatus").filter(|v| !v.is_null()) {
            let status = as_object(status)
                .ok_or_else(|| bad(format!("{at}.ScheduleStatus"), "not an object"))?;
            let date = |name: &str| -> Result<Option<DateTime<Utc>>, ProtocolError> {
                match field(&status, name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => parse_host_datetime(s).map(Some).ok_or_else(|| {
                        bad(
                            format!("{at}.ScheduleStatus.{name}"),
                            format!("'{s}' is not a date-time"),
                        )
                    }),
                    Some(_) => Err(bad(format!("{at}.ScheduleStatus.{name}"), "not a string")),
                }
            };
            info.last = date("Last")?;
            info.next = date("Next")?;
            info.last_updated = date("LastUpdated")?;
        }
        Ok(info)
    }
}

/// `Data.{req}` for an HTTP trigger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequestData {
    pub url: Option<String>,
    /// Upper case; empty when the host sent none.
    pub method: String,
    pub query: BTreeMap<String, String>,
    /// Keys lower-cased (HTTP header names are case-insensitive).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Route parameters (`rotate/{credential?}`).
    pub params: BTreeMap<String, String>,
    /// The body's bytes (base64 already decoded for binary content types), `None` when absent.
    pub body: Option<Vec<u8>>,
    pub identities: Vec<Value>,
}

impl HttpRequestData {
    pub fn from_value(v: &Value, at: &str) -> Result<Self, ProtocolError> {
        let obj = as_object(v).ok_or_else(|| bad(at, "HTTP request is not an object"))?;
        let url = field(&obj, "Url").and_then(scalar_string);
        let method = field(&obj, "Method")
            .and_then(scalar_string)
            .unwrap_or_default()
            .to_ascii_uppercase();
        let headers = headers_of(&obj, at)?;
        let query = query_of(&obj, at, url.as_deref())?;
        let params = match field(&obj, "Params") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(p)) => string_map(p),
            Some(_) => return Err(bad(format!("{at}.Params"), "not an object")),
        };
        let body = body_of(&obj, at, &headers)?;
        let identities = match field(&obj, "Identities") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        Ok(Self {
            url,
            method,
            query,
            headers,
            params,
            body,
            identities,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The body as JSON: `Ok(None)` without a body. Text that is not JSON but is base64 of JSON is
    /// accepted (a host that base64-encodes a body it took for binary).
    pub fn json_body(&self) -> Result<Option<Value>, ProtocolError> {
        let Some(bytes) = &self.body else {
            return Ok(None);
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let text = String::from_utf8_lossy(bytes);
                if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text.trim())
                    && let Ok(v) = serde_json::from_slice::<Value>(&decoded)
                {
                    return Ok(Some(v));
                }
                Err(bad("Body", format!("not JSON: {e}")))
            }
        }
    }
}

/// `Headers`: names lower-cased, each with its values (one or a list).
fn headers_of(
    obj: &Map<String, Value>,
    at: &str,
) -> Result<BTreeMap<String, Vec<String>>, ProtocolError> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match field(obj, "Headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let values: Vec<String> = match v {
                    Value::Array(items) => items.iter().filter_map(scalar_string).collect(),
                    other => scalar_string(other).into_iter().collect(),
                };
                headers
                    .entry(k.to_ascii_lowercase())
                    .or_default()
                    .extend(values);
            }
        }
        Some(_) => return Err(bad(format!("{at}.Headers"), "not an object")),
    }
    Ok(headers)
}

/// `Query`, else the URL's query string.
fn query_of(
    obj: &Map<String, Value>,
    at: &str,
    url: Option<&str>,
) -> Result<BTreeMap<String, String>, ProtocolError> {
    match field(obj, "Query") {
        None | Some(Value::Null) => Ok(url
            .and_then(|u| u.split_once('?'))
            .map(|(_, q)| parse_query_string(q))
            .unwrap_or_default()),
        Some(Value::Object(q)) => Ok(string_map(q)),
        // The docs show `"Query": "{}"`: a string holding JSON, or a raw query string.
        Some(Value::String(s)) => {
            let t = s.trim();
            if !t.starts_with('{') {
                return Ok(parse_query_string(t.trim_start_matches('?')));
            }
            match serde_json::from_str::<Value>(t) {
                Ok(Value::Object(q)) => Ok(string_map(&q)),
                _ => Err(bad(
                    format!("{at}.Query"),
                    "a string that is not a JSON object",
                )),
            }
        }
        Some(_) => Err(bad(format!("{at}.Query"), "neither an object nor a string")),
    }
}

/// `Body` as bytes: base64-decoded for binary content types, `None` when absent or empty.
fn body_of(
    obj: &Map<String, Value>,
    at: &str,
    headers: &BTreeMap<String, Vec<String>>,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.first())
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let binary = content_type.starts_with("application/octet-stream")
        || content_type.starts_with("multipart/");
    Ok(match field(obj, "Body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if binary => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| {
                    bad(
                        format!("{at}.Body"),
                        format!("binary body is not base64: {e}"),
                    )
                })?,
        ),
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        // Some tools hand over an already-parsed JSON body.
        Some(other) => Some(other.to_string().into_bytes()),
    })
}

/// One `http` output binding value (the host reads it case-insensitively).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HttpOutput {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// JSON text; a string so the host passes it through unchanged (an object or array body is
    /// re-serialized by the host through .NET types and can come out mangled, e.g.
    /// Azure/azure-functions-host#6575; a string is the documented safe form).
    pub body: String,
    pub headers: BTreeMap<String, String>,
}

impl HttpOutput {
    pub fn json(status_code: u16, body: &impl Serialize) -> Self {
        let body = serde_json::to_string(body).unwrap_or_else(|e| {
            format!("{{\"message\":\"response could not be serialized: {e}\"}}")
        });
        Self {
            status_code,
            body,
            // Status and run outcomes change from one call to the next: never cache them.
            headers: BTreeMap::from([
                ("Content-Type".into(), "application/json".into()),
                ("Cache-Control".into(), "no-store".into()),
            ]),
        }
    }
}

/// The handler's answer: `{ "Outputs": {...}, "Logs": [...], "ReturnValue": ... }`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    pub fn with_http(binding: &str, out: HttpOutput, logs: Vec<String>) -> Self {
        let mut outputs = Map::new();
        outputs.insert(
            binding.to_string(),
            serde_json::to_value(out).unwrap_or(Value::Null),
        );
        Self {
            outputs,
            logs,
            return_value: Value::Null,
        }
    }
}

/// Parses the date forms the host emits: RFC 3339 with `Z` or an offset, no offset (taken as
/// UTC, Newtonsoft's `DateTimeKind.Unspecified`), a space instead of `T`, up to 7 (or more)
/// fractional digits, the legacy `/Date(ms)/` form and the invariant-culture `MM/dd/yyyy HH:mm:ss`.
pub fn parse_host_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(ms) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // `/Date(1736906400000+0000)/`: the offset does not change the instant.
        let digits: String = ms
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
            .map(|(_, c)| c)
            .collect();
        return digits
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    }
    let normal = s.replacen(' ', "T", 1);
    if let Ok(d) = DateTime::parse_from_rfc3339(&normal) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_str(&normal, "%Y-%m-%dT%H:%M:%S%.f%:z") {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&normal, fmt) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    for fmt in ["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    None
}

/// Case-insensitive field lookup: exact name first, then any casing.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// An object, or a string holding a JSON object.
fn as_object(v: &Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        },
        _ => None,
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// name -> string; arrays are joined with commas, as the host does for repeated query keys.
fn string_map(m: &Map<String, Value>) -> BTreeMap<String, String> {
    m.iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::Array(items) => items
                    .iter()
                    .filter_map(scalar_string)
                    .collect::<Vec<_>>()
                    .join(","),
                other => scalar_string(other)?,
            };
            Some((k.clone(), s))
        })
        .collect()
}

fn parse_query_string(q: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        out.entry(k.into_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_the_contract_timer_example() {
        let body = json!({
          "Data": {"timer": {
              "Schedule": {"AdjustForDST": true},
              "ScheduleStatus": {
                "Last": "2025-01-14T02:00:00+00:00",
                "Next": "2025-01-15T02:00:00+00:00",
                "LastUpdated": "2025-01-14T02:00:00.0170000+00:00"},
              "IsPastDue": false}},
          "Metadata": {"sys": {"MethodName": "RotateSecrets",
              "UtcNow": "2025-01-15T02:00:00.0123456Z",
              "RandGuid": "3d5ad2d3-3b8e-4d5d-9e7b-2a0e3d1f7c11"}}
        });
        let req = InvocationRequest::parse(body.to_string().as_bytes()).unwrap();
        let sys = req.sys.clone().unwrap();
        assert_eq!(sys.method_name.as_deref(), Some("RotateSecrets"));
        assert_eq!(sys.utc_now, ts("2025-01-15T02:00:00.0123456Z"));
        let t = req.timer(TIMER_BINDING).unwrap();
        assert!(!t.is_past_due);
        assert_eq!(t.adjust_for_dst, Some(true));
        assert_eq!(t.last, Some(ts("2025-01-14T02:00:00Z")));
        assert_eq!(t.next, Some(ts("2025-01-15T02:00:00Z")));
        assert_eq!(t.last_updated, Some(ts("2025-01-14T02:00:00.017Z")));
    }

    #[test]
    fn date_forms_the_host_emits() {
        let want = ts("2025-01-15T02:00:00.0123456Z");
        for s in [
            "2025-01-15T02:00:00.0123456Z",
            "2025-01-15T02:00:00.0123456+00:00",
            "2025-01-15T02:00:00.0123456",
            "2025-01-15 02:00:00.0123456",
            "2025-01-15T03:00:00.0123456+01:00",
        ] {
            assert_eq!(parse_host_datetime(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_host_datetime("2025-01-15T02:00:00"),
            Some(ts("2025-01-15T02:00:00Z"))
        );
        assert_eq!(
            parse_host_datetime("/Date(1736906400000)/"),
            Some(ts("2025-01-15T02:00:00Z"))
        );
        assert_eq!(
            parse_host_datetime("01/15/2025 02:00:00"),
            Some(ts("2025-01-15T02:00:00Z"))
        );
        assert_eq!(parse_host_datetime("yesterday"), None);
        assert_eq!(parse_host_datetime(""), None);
    }

    #[test]
    fn schedule_status_null_and_past_due_as_string() {
        let body = json!({"Data": {"timer": {"ScheduleStatus": null, "IsPastDue": "True"}},
                          "Metadata": {}});
        let t = InvocationRequest::parse(body.to_string().as_bytes())
            .unwrap()
            .timer(TIMER_BINDING)
            .unwrap();
        assert!(t.is_past_due);
        assert_eq!(t.last, None);
    }

    #[test]
    fn timer_binding_under_another_name_or_as_json_string() {
        let inner = json!({"IsPastDue": true}).to_string();
        let body = json!({"Data": {"myTimer": inner}, "Metadata": {"sys": {}}});
        let t = InvocationRequest::parse(body.to_string().as_bytes())
            .unwrap()
            .timer(TIMER_BINDING)
            .unwrap();
        assert!(t.is_past_due);
    }

    #[test]
    fn pascal_case_is_matched_case_insensitively() {
        let body = json!({"data": {"req": {"method": "post", "body": "{\"function\":\"Test\"}"}},
                          "metadata": {"SYS": {"utcnow": "2025-01-15T02:00:00Z"}}});
        let req = InvocationRequest::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(req.sys.clone().unwrap().utc_now, ts("2025-01-15T02:00:00Z"));
        let http = req.http_request(HTTP_TRIGGER_BINDING).unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.json_body().unwrap(), Some(json!({"function": "Test"})));
    }

    #[test]
    fn parses_the_contract_http_example() {
        let body = json!({
          "Data": {"req": {
              "Url": "https://myapp.azurewebsites.net/api/rotate/app1?dryRun=true",
              "Method": "POST",
              "Query": {"dryRun": "true", "tag": ["a", "b"]},
              "Headers": {"Content-Type": ["application/json"], "Host": ["myapp.azurewebsites.net"]},
              "Params": {"credential": "app1"},
              "Identities": [{"AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true}],
              "Body": "{\"force\":true}"}},
          "Metadata": {"Query": {"dryRun": "true"}, "credential": "app1",
                       "sys": {"MethodName": "Rotate", "UtcNow": "2025-01-15T02:00:00Z", "RandGuid": "x"}}
        });
        let req = InvocationRequest::parse(body.to_string().as_bytes()).unwrap();
        let http = req.http_request(HTTP_TRIGGER_BINDING).unwrap();
        assert_eq!(http.query["dryRun"], "true");
        assert_eq!(http.query["tag"], "a,b");
        assert_eq!(http.header("content-type"), Some("application/json"));
        assert_eq!(http.header("HOST"), Some("myapp.azurewebsites.net"));
        assert_eq!(http.params["credential"], "app1");
        assert_eq!(http.identities.len(), 1);
        assert_eq!(http.json_body().unwrap(), Some(json!({"force": true})));
    }

    #[test]
    fn query_as_string_json_or_raw_or_from_url() {
        let mk = |q: Value| {
            let body = json!({"Data": {"req": {"Url": "https://h/api/x?from=url", "Query": q}}});
            InvocationRequest::parse(body.to_string().as_bytes())
                .unwrap()
                .http_request("req")
                .unwrap()
                .query
        };
        assert!(mk(json!("{}")).is_empty());
        assert_eq!(mk(json!("{\"a\":\"1\"}"))["a"], "1");
        assert_eq!(mk(json!("?a=1&b=x%20y&a=2"))["b"], "x y");
        assert_eq!(mk(json!("a=1&a=2"))["a"], "1,2");
        assert_eq!(mk(Value::Null)["from"], "url");
    }

    #[test]
    fn body_as_base64_for_binary_types_and_as_fallback() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"function":"Status"}"#);
        let mk = |ct: &str, body: Value| {
            let v = json!({"Data": {"req": {"Headers": {"Content-Type": [ct]}, "Body": body}}});
            InvocationRequest::parse(v.to_string().as_bytes())
                .unwrap()
                .http_request("req")
        };
        let want = Some(json!({"function": "Status"}));
        let r = mk("application/octet-stream", json!(b64)).unwrap();
        assert_eq!(r.json_body().unwrap(), want);
        let r = mk("text/plain", json!(b64)).unwrap();
        assert_eq!(r.json_body().unwrap(), want);
        let r = mk("application/json", json!({"function": "Status"})).unwrap();
        assert_eq!(r.json_body().unwrap(), want);
        let r = mk("application/json", json!("")).unwrap();
        assert_eq!(r.json_body().unwrap(), None);
        let err = mk("application/octet-stream", json!("*** not base64 ***")).unwrap_err();
        assert!(err.to_string().contains("Body"), "{err}");
        let r = mk("application/json", json!("{not json")).unwrap();
        assert!(r.json_body().unwrap_err().to_string().contains("Body"));
    }

    #[test]
    fn headers_as_plain_strings() {
        let v =
            json!({"Data": {"req": {"Headers": {"X-Functions-Key": "k", "Accept": ["a", "b"]}}}});
        let r = InvocationRequest::parse(v.to_string().as_bytes())
            .unwrap()
            .http_request("req")
            .unwrap();
        assert_eq!(r.header("x-functions-key"), Some("k"));
        assert_eq!(r.headers["accept"], vec!["a", "b"]);
    }

    #[test]
    fn malformed_envelopes_name_the_problem() {
        assert!(matches!(
            InvocationRequest::parse(b"not json"),
            Err(ProtocolError::NotJson(_))
        ));
        assert_eq!(
            InvocationRequest::parse(b"[1,2]").unwrap_err(),
            ProtocolError::NotAnObject
        );
        let e = InvocationRequest::parse(br#"{"Data": 5}"#).unwrap_err();
        assert!(e.to_string().contains("Data"), "{e}");
        // A host clock that cannot be read is not an error: the handler says so and uses its own.
        let why = InvocationRequest::parse(br#"{"Metadata": {"sys": {"UtcNow": "soon"}}}"#)
            .unwrap()
            .sys
            .unwrap_err();
        assert!(why.contains("Metadata.sys.UtcNow"), "{why}");
        let e = InvocationRequest::parse(br#"{"Data": {"a": {}, "b": {}}}"#)
            .unwrap()
            .http_request("req")
            .unwrap_err();
        assert_eq!(e, ProtocolError::MissingBinding("req".into()));
        let e = InvocationRequest::parse(br#"{"Data": {"req": {"Query": 5}}}"#)
            .unwrap()
            .http_request("req")
            .unwrap_err();
        assert!(e.to_string().contains("Data.req.Query"), "{e}");
        let e = InvocationRequest::parse(
            br#"{"Data": {"timer": {"ScheduleStatus": {"Last": "never"}}}}"#,
        )
        .unwrap()
        .timer("timer")
        .unwrap_err();
        assert!(e.to_string().contains("ScheduleStatus.Last"), "{e}");
    }

    /// An HTTP envelope whose caller sent `query` and `body`, with the host's `sys` object
    /// wherever `SystemBindingData` put it and the caller's values in Metadata.
    fn shadowed(query: Value, body: Option<&str>, metadata: Value) -> InvocationRequest {
        let mut req = json!({"Url": "https://h/api/rotate/x", "Method": "POST", "Query": query,
                             "Headers": {}, "Params": {"credential": "x"}, "Identities": []});
        if let Some(b) = body {
            req["Body"] = json!(b);
        }
        let v = json!({"Data": {"req": req}, "Metadata": metadata});
        InvocationRequest::parse(v.to_string().as_bytes()).unwrap()
    }

    fn host(t: &str) -> Value {
        json!({"MethodName": "Rotate", "UtcNow": t, "RandGuid": "g"})
    }

    #[test]
    fn the_clock_is_the_hosts_wherever_the_host_put_it() {
        let real = "2025-01-15T02:00:00Z";
        let forged = json!({"UtcNow": "2025-01-23T02:00:00Z"});
        let cases = [
            // Nothing from the caller: the host's at `sys`.
            shadowed(json!({}), None, json!({"sys": host(real)})),
            // A body `sys` (object or not): the host's moved to `$sys`.
            shadowed(
                json!({}),
                Some(&json!({"force": false, "sys": forged}).to_string()),
                json!({"sys": forged, "$sys": host(real), "force": "\"False\""}),
            ),
            shadowed(
                json!({}),
                Some(r#"{"SYS": 1}"#),
                json!({"SYS": "\"1\"", "$sys": host(real)}),
            ),
            // A query `sys`, any casing, even one .NET upper-cases to SYS.
            shadowed(
                json!({"sys": "1"}),
                None,
                json!({"sys": "\"1\"", "$sys": host(real)}),
            ),
            shadowed(
                json!({"ſys": "1"}),
                None,
                json!({"ſys": "\"1\"", "$sys": host(real)}),
            ),
            // Only `$sys` from the caller: the host's stays at `sys`, the caller's is ignored.
            shadowed(
                json!({}),
                Some(&json!({"$sys": forged}).to_string()),
                json!({"$sys": forged, "sys": host(real)}),
            ),
        ];
        for (i, req) in cases.into_iter().enumerate() {
            assert_eq!(req.sys.unwrap().utc_now, ts(real), "case {i}");
        }
    }

    #[test]
    fn a_clock_that_cannot_be_told_apart_is_not_taken() {
        // Newtonsoft reads `{sys: ...}`; serde does not: whose `sys` is it? Neither is trusted.
        let req = shadowed(
            json!({}),
            Some("{sys: {UtcNow: '2025-01-23T02:00:00Z'}}"),
            json!({"sys": {"UtcNow": "2025-01-23T02:00:00Z"}, "$sys": host("2025-01-15T02:00:00Z")}),
        );
        assert!(req.sys.unwrap_err().contains("body"));
        // A caller `sys` but no `$sys` (not the real host): the caller's is not taken either.
        let req = shadowed(
            json!({"sys": "1"}),
            None,
            json!({"sys": host("2025-01-23T02:00:00Z")}),
        );
        assert!(req.sys.unwrap_err().contains("$sys"));
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,40}".prop_map(Value::String),
            Just(json!("2025-01-15T02:00:00Z")),
            Just(json!("{\"IsPastDue\":true}")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("Data".to_string()),
                Just("Metadata".to_string()),
                Just("sys".to_string()),
                Just("UtcNow".to_string()),
                Just("req".to_string()),
                Just("timer".to_string()),
                Just("Query".to_string()),
                Just("Headers".to_string()),
                Just("Body".to_string()),
                Just("Params".to_string()),
                Just("ScheduleStatus".to_string()),
                Just("Last".to_string()),
                Just("IsPastDue".to_string()),
                "[a-zA-Z]{1,8}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever the host (or anyone) sends, parsing answers Ok or a named error: no panic.
        #[test]
        fn parsing_never_panics(v in arb_json(), bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = InvocationRequest::parse(&bytes);
            if let Ok(req) = InvocationRequest::parse(v.to_string().as_bytes()) {
                if let Ok(h) = req.http_request(HTTP_TRIGGER_BINDING) {
                    let _ = h.json_body();
                }
                let _ = req.timer(TIMER_BINDING);
            }
        }

        #[test]
        fn dates_never_panic(s in ".{0,40}") {
            let _ = parse_host_datetime(&s);
        }
    }

    #[test]
    fn response_serializes_in_host_shape() {
        let r = InvocationResponse::with_http(
            "res",
            HttpOutput::json(400, &json!({"message": "bad"})),
            vec!["line".into()],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["Outputs"]["res"]["statusCode"], 400);
        assert_eq!(v["Outputs"]["res"]["body"], "{\"message\":\"bad\"}");
        assert_eq!(
            v["Outputs"]["res"]["headers"]["Content-Type"],
            "application/json"
        );
        assert_eq!(v["Logs"][0], "line");
        assert!(v["ReturnValue"].is_null());
    }
}
