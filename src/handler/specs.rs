//! `function-specs/` (one folder per function, each with a `function.json`) and the checks the
//! SchemaStore schemas do not make: a timer schedule is a valid six-field NCRONTAB expression or
//! an `%APP_SETTING%` reference, every binding type is one the Functions runtime knows, every
//! HTTP function has an `http` output, binding names are the ones the handler reads, and the
//! folders are exactly the functions the handler serves.
//!
//! `package` refuses to build a zip with any of these problems; `tests/e2e/specs_schema.rs` runs the
//! same checks next to the JSON-schema validation.

use std::path::Path;

use serde_json::Value;

use super::functions::FUNCTION_NAMES;
use super::protocol::{HTTP_OUTPUT_BINDING, HTTP_TRIGGER_BINDING, TIMER_BINDING};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not valid JSON: {reason}")]
    Json { path: String, reason: String },
}

/// One function folder.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The folder name = the function name = the path the host POSTs to.
    pub name: String,
    pub json: Value,
}

impl FunctionSpec {
    pub fn bindings(&self) -> Vec<&Value> {
        self.json
            .get("bindings")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }
}

/// Binding `type`s of the Functions runtime and extension bundle v4 (case-insensitive, as the
/// host matches them).
pub const KNOWN_BINDING_TYPES: &[&str] = &[
    "httpTrigger",
    "http",
    "timerTrigger",
    "blobTrigger",
    "blob",
    "queueTrigger",
    "queue",
    "table",
    "serviceBusTrigger",
    "serviceBus",
    "eventHubTrigger",
    "eventHub",
    "eventGridTrigger",
    "eventGrid",
    "cosmosDBTrigger",
    "cosmosDB",
    "signalR",
    "signalRConnectionInfo",
    "signalRTrigger",
    "sendGrid",
    "twilioSms",
    "durableClient",
    "orchestrationTrigger",
    "activityTrigger",
    "entityTrigger",
    "kafkaTrigger",
    "kafka",
    "rabbitMQTrigger",
    "rabbitMQ",
    "daprBindingTrigger",
    "daprServiceInvocationTrigger",
    "daprTopicTrigger",
    "daprState",
    "daprInvoke",
    "daprPublish",
    "daprBinding",
    "daprSecret",
    "sqlTrigger",
    "sql",
    "mysqlTrigger",
    "mysql",
    "webPubSubTrigger",
    "webPubSub",
    "webPubSubConnection",
    "webPubSubContext",
    "mcpToolTrigger",
];

/// Reads every `<dir>/<Function>/function.json`, sorted by name. Folders without a
/// function.json are not functions to the host and are skipped.
pub fn load_function_specs(dir: &Path) -> Result<Vec<FunctionSpec>, SpecError> {
    let read_err = |p: &Path, e: std::io::Error| SpecError::Read {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let path = entry.path().join("function.json");
        if !entry.path().is_dir() || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let json = serde_json::from_str(&text).map_err(|e| SpecError::Json {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        out.push(FunctionSpec {
            name: entry.file_name().to_string_lossy().into_owned(),
            json,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every problem found, each naming the function and binding; empty when all is well.
pub fn check_specs(host_json: &Value, specs: &[FunctionSpec]) -> Vec<String> {
    let mut problems = check_host_json(host_json);

    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    let mut served: Vec<&str> = FUNCTION_NAMES.to_vec();
    served.sort();
    if names != served {
        problems.push(format!(
            "function folders {names:?} do not match the functions the handler serves {served:?}"
        ));
    }
    for spec in specs {
        check_spec(spec, &mut problems);
    }
    problems
}

/// What a binding is, for the checks across a function's bindings.
#[derive(Default)]
struct BindingRole {
    trigger: bool,
    http_trigger: bool,
    http_out: bool,
}

/// One function.json: each binding, then exactly one trigger and an HTTP trigger's output.
fn check_spec(spec: &FunctionSpec, problems: &mut Vec<String>) {
    let f = &spec.name;
    let bindings = spec.bindings();
    if bindings.is_empty() {
        problems.push(format!("{f}: function.json has no bindings"));
        return;
    }
    let mut triggers = 0;
    let mut has_http_trigger = false;
    let mut has_http_out = false;
    for (i, b) in bindings.iter().enumerate() {
        let role = check_binding(f, i, b, problems);
        triggers += usize::from(role.trigger);
        has_http_trigger |= role.http_trigger;
        has_http_out |= role.http_out;
    }
    if triggers != 1 {
        problems.push(format!("{f}: needs exactly one trigger, has {triggers}"));
    }
    if has_http_trigger && !has_http_out {
        problems.push(format!(
            "{f}: an HTTP function needs an http output binding"
        ));
    }
}

/// Binding `i` of function `f`: a known type, the names the handler reads, a trigger's
/// direction, a timer's schedule, an HTTP trigger's auth level.
fn check_binding(f: &str, i: usize, b: &Value, problems: &mut Vec<String>) -> BindingRole {
    let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
    let dir = b.get("direction").and_then(Value::as_str).unwrap_or("");
    let at = format!("{f}: binding {i} ('{name}', type '{ty}')");
    let mut role = BindingRole::default();
    if !KNOWN_BINDING_TYPES
        .iter()
        .any(|k| k.eq_ignore_ascii_case(ty))
    {
        problems.push(format!("{at}: unknown binding type"));
    }
    if ty.to_ascii_lowercase().ends_with("trigger") {
        role.trigger = true;
        if dir != "in" {
            problems.push(format!("{at}: a trigger's direction must be \"in\""));
        }
    }
    if ty.eq_ignore_ascii_case("timerTrigger") {
        if name != TIMER_BINDING {
            problems.push(format!(
                "{at}: the handler reads the timer binding as '{TIMER_BINDING}'"
            ));
        }
        match b.get("schedule").and_then(Value::as_str) {
            None => problems.push(format!("{at}: a timer needs a schedule")),
            Some(s) => {
                if let Err(e) = validate_schedule(s) {
                    problems.push(format!("{at}: schedule '{s}': {e}"));
                }
            }
        }
    }
    if ty.eq_ignore_ascii_case("httpTrigger") {
        role.http_trigger = true;
        if name != HTTP_TRIGGER_BINDING {
            problems.push(format!(
                "{at}: the handler reads the request binding as '{HTTP_TRIGGER_BINDING}'"
            ));
        }
        // Each function's own keys keep the probe's key from opening the inventory.
        if b.get("authLevel").and_then(Value::as_str) != Some("function") {
            problems.push(format!(
                "{at}: authLevel must be \"function\" (keys of its own per function)"
            ));
        }
    }
    if ty.eq_ignore_ascii_case("http") && dir == "out" {
        role.http_out = true;
        if name != HTTP_OUTPUT_BINDING {
            problems.push(format!(
                "{at}: the handler answers through the output binding '{HTTP_OUTPUT_BINDING}'"
            ));
        }
    }
    role
}

fn check_host_json(h: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if h.get("version").and_then(Value::as_str) != Some("2.0") {
        p.push("host.json: version must be \"2.0\"".into());
    }
    let ch = h.get("customHandler");
    match ch
        .and_then(|c| c.pointer("/description/defaultExecutablePath"))
        .and_then(Value::as_str)
    {
        Some(s) if !s.trim().is_empty() && !s.contains('/') && !s.contains('\\') => {}
        _ => p.push(
            "host.json: customHandler.description.defaultExecutablePath must name the binary at the app root"
                .into(),
        ),
    }
    // The handler speaks the JSON envelope only (contracts §1.5), not forwarded requests.
    if ch
        .and_then(|c| c.get("enableForwardingHttpRequest"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        p.push("host.json: enableForwardingHttpRequest must be false".into());
    }
    p
}

/// `Ok` for a six-field NCRONTAB expression (`{second} {minute} {hour} {day} {month}
/// {day-of-week}`) or an `%APP_SETTING%` reference; otherwise what is wrong.
pub fn validate_schedule(s: &str) -> Result<(), String> {
    let t = s.trim();
    if let Some(name) = t.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        return if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' || c == ':')
        {
            Ok(())
        } else {
            Err(format!("'%{name}%' is not an app-setting reference"))
        };
    }
    if t.contains(':') && !t.contains(' ') {
        return Err(
            "a TimeSpan schedule works only on App Service plans; use a six-field NCRONTAB expression"
                .into(),
        );
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "expected 6 fields (second minute hour day month day-of-week), found {}",
            fields.len()
        ));
    }
    const MONTHS: &[&str] = &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let specs: [(&str, u32, u32, &[&str]); 6] = [
        ("second", 0, 59, &[]),
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day", 1, 31, &[]),
        ("month", 1, 12, MONTHS),
        ("day-of-week", 0, 6, DAYS),
    ];
    for (field, (what, min, max, names)) in fields.iter().zip(specs) {
        validate_field(field, min, max, names)
            .map_err(|e| format!("{what} field '{field}': {e}"))?;
    }
    Ok(())
}

fn validate_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names are 1-based, day names 0-based (SUN = 0), matching `min`.
            return Ok(i as u32 + min);
        }
        let n: u32 = s.parse().map_err(|_| {
            format!(
                "'{s}' is not a number{}",
                if names.is_empty() { "" } else { " or name" }
            )
        })?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for item in field.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("step '{step}' is not a number"))?;
            if n == 0 || n > max - min + 1 {
                return Err(format!("step {n} is outside 1-{}", max - min + 1));
            }
        }
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {a}-{b} runs backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_schedules() {
        for s in [
            "0 0 2 * * *",
            "%ROTATION_SCHEDULE%",
            "0 */5 * * * *",
            "0 30 9 * * 1-5",
            "0 0 0 1 JAN,jul *",
            "0 0 12 * * MON-FRI",
            "5,10,15 0 0-23/2 1-31 1-12 0-6",
            "0 5/15 * * * *",
        ] {
            assert_eq!(validate_schedule(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn invalid_schedules_say_why() {
        for (s, why) in [
            ("0 2 * * *", "6 fields"),
            ("60 0 2 * * *", "second field"),
            ("0 0 24 * * *", "hour field"),
            ("0 0 2 0 * *", "day field"),
            ("0 0 2 * 13 *", "month field"),
            ("0 0 2 * * 7", "day-of-week"),
            ("0 0 2 * FOO *", "month field"),
            ("0 */0 * * * *", "step 0"),
            ("0 0 5-1 * * *", "backwards"),
            ("0 0 2,, * * *", "empty"),
            ("%%", "app-setting"),
            ("%BAD NAME%", "app-setting"),
            ("01:00:00", "TimeSpan"),
            ("", "6 fields"),
        ] {
            let e = validate_schedule(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn schedule_validation_never_panics(s in "[0-9*/,A-Za-z% -]{0,40}") {
            let _ = validate_schedule(&s);
        }
    }

    #[test]
    fn spec_checks_find_each_problem() {
        let host = serde_json::json!({"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "secret-rotator"}}});
        let spec = |name: &str, json: Value| FunctionSpec {
            name: name.into(),
            json,
        };
        let http = || serde_json::json!({"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function"}, {"type": "http", "direction": "out", "name": "res"}]});
        let mut good = vec![spec(
            "RotateSecrets",
            serde_json::json!({"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 2 * * *"}]}),
        )];
        good.extend(
            ["SelfTest", "Rotate", "StatusPage", "Operate"]
                .into_iter()
                .map(|n| spec(n, http())),
        );
        assert!(
            check_specs(&host, &good).is_empty(),
            "{:?}",
            check_specs(&host, &good)
        );

        let mut bad = good.clone();
        bad[0].json["bindings"][0]["schedule"] = "0 0 25 * * *".into();
        bad[1].json["bindings"].as_array_mut().unwrap().pop();
        bad[2].json["bindings"][0]["type"] = "httpTriger".into();
        bad[4].json["bindings"][0]["authLevel"] = "anonymous".into();
        let p = check_specs(&serde_json::json!({"version": "3.0"}), &bad).join("\n");
        for want in [
            "Operate: binding 0 ('req', type 'httpTrigger'): authLevel must be",
            "hour field",
            "SelfTest: an HTTP function needs an http output",
            "unknown binding type",
            "version must be",
            "defaultExecutablePath",
        ] {
            assert!(p.contains(want), "missing '{want}' in\n{p}");
        }
        let p = check_specs(&host, &good[..2]).join("\n");
        assert!(p.contains("do not match"), "{p}");
    }
}
