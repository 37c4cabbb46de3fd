//! host.json and every function-specs/*/function.json against SchemaStore's schemas (validated
//! as Draft 7, see shared/schemas/SOURCE.md), plus what the schemas miss (NCRONTAB schedules,
//! known binding types, an http output per HTTP function, folders = the handler's functions),
//! plus local.settings.sample.json against the settings table.
//!
//! The schemas live in `../shared/schemas` relative to the repository root. In a git worktree
//! the main checkout's root is used too; `ROTATOR_SCHEMAS_DIR` overrides both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use secret_rotator::handler::functions::FUNCTION_NAMES;
use secret_rotator::handler::specs::{check_specs, load_function_specs, validate_schedule};
use secret_rotator::settings::{SETTING_SPECS, Settings};
use serde_json::Value;

use crate::support::shared::shared_dir;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/../shared/schemas` (support::shared); `ROTATOR_SCHEMAS_DIR` overrides it.
fn schemas_dir() -> PathBuf {
    shared_dir("schemas", "ROTATOR_SCHEMAS_DIR", |d| {
        d.join("host.json").is_file() && d.join("function.json").is_file()
    })
}

fn read_json(p: &Path) -> Value {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn draft7(schema_file: &str) -> jsonschema::Validator {
    let schema = read_json(&schemas_dir().join(schema_file));
    jsonschema::draft7::new(&schema)
        .unwrap_or_else(|e| panic!("schema {schema_file} does not compile as Draft 7: {e}"))
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn host_json_is_valid_against_the_schema() {
    let v = draft7("host.json");
    let host = read_json(&repo_root().join("host.json"));
    let errs = errors(&v, &host);
    assert!(errs.is_empty(), "host.json: {errs:#?}");

    // The values issue 4 asks for.
    assert_eq!(host["version"], "2.0");
    assert_eq!(host["functionTimeout"], "00:10:00");
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "secret-rotator"
    );
    assert_eq!(
        host["customHandler"]["description"]["arguments"],
        serde_json::json!(["serve"])
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], false);
}

#[test]
fn the_validator_is_not_a_rubber_stamp() {
    // Negative cases from offline-testing.md §4: the schema must reject them.
    let host_v = draft7("host.json");
    let mut bad = read_json(&repo_root().join("host.json"));
    bad["version"] = "3.0".into();
    assert!(!errors(&host_v, &bad).is_empty());
    let mut bad = read_json(&repo_root().join("host.json"));
    bad["functionTimeout"] = "ten minutes".into();
    assert!(!errors(&host_v, &bad).is_empty());

    let fn_v = draft7("function.json");
    let bad = serde_json::json!({"bindings": [{"type": "timerTrigger", "direction": "out", "name": "timer", "schedule": "0 0 2 * * *"}]});
    assert!(!errors(&fn_v, &bad).is_empty());
    let bad = serde_json::json!({"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 0 2 * * *", "runOnStartup": "false"}]});
    assert!(!errors(&fn_v, &bad).is_empty());
}

#[test]
fn every_function_json_is_valid_against_the_schema() {
    let v = draft7("function.json");
    let specs = load_function_specs(&repo_root().join("function-specs")).unwrap();
    assert!(!specs.is_empty());
    for s in &specs {
        let errs = errors(&v, &s.json);
        assert!(errs.is_empty(), "{}/function.json: {errs:#?}", s.name);
    }
}

#[test]
fn checks_the_schemas_miss() {
    let host = read_json(&repo_root().join("host.json"));
    let specs = load_function_specs(&repo_root().join("function-specs")).unwrap();
    let problems = check_specs(&host, &specs);
    assert!(problems.is_empty(), "{problems:#?}");

    // Folder names are the routes the handler serves (POST /{FunctionName}).
    let folders: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let served: BTreeSet<&str> = FUNCTION_NAMES.iter().copied().collect();
    assert_eq!(folders, served);

    // The timer's schedule is the app setting; its documented default is a valid expression.
    let timer = specs.iter().find(|s| s.name == "RotateSecrets").unwrap();
    let schedule = timer.bindings()[0]["schedule"].as_str().unwrap();
    assert_eq!(schedule, "%ROTATION_SCHEDULE%");
    let sample = read_json(&repo_root().join("local.settings.sample.json"));
    let default = sample["Values"]["ROTATION_SCHEDULE"].as_str().unwrap();
    assert_eq!(default, "0 0 2 * * *");
    validate_schedule(default).unwrap();

    // The Rotate route carries the credential; SelfTest accepts the seed's GET-with-body.
    let rotate = specs.iter().find(|s| s.name == "Rotate").unwrap();
    assert_eq!(rotate.bindings()[0]["route"], "rotate/{credential?}");
    let selftest = specs.iter().find(|s| s.name == "SelfTest").unwrap();
    assert_eq!(selftest.bindings()[0]["authLevel"], "function");
    assert!(
        selftest.bindings()[0]["methods"]
            .as_array()
            .unwrap()
            .contains(&"get".into())
    );
    // The probe's key opens the probe only: everything that reads the inventory or rotates is a
    // function of its own, so it has function keys of its own (issue #15).
    for other in ["Operate", "Rotate", "StatusPage"] {
        let spec = specs.iter().find(|s| s.name == other).unwrap();
        assert_eq!(spec.bindings()[0]["authLevel"], "function", "{other}");
    }
}

#[test]
fn local_settings_sample_matches_the_settings_table() {
    let sample = read_json(&repo_root().join("local.settings.sample.json"));
    assert_eq!(sample["IsEncrypted"], false);
    let values = sample["Values"].as_object().expect("Values is an object");
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert!(values.contains_key("AzureWebJobsStorage"));
    // Read by the Functions host, not by the binary.
    let host_only: BTreeSet<&str> = [
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobsStorage",
        "ROTATION_SCHEDULE",
    ]
    .into();

    let in_sample: BTreeSet<&str> = values
        .keys()
        .map(String::as_str)
        .filter(|k| !host_only.contains(k))
        .collect();
    let in_table: BTreeSet<&str> = SETTING_SPECS.iter().map(|s| s.name).collect();
    assert_eq!(
        in_sample, in_table,
        "local.settings.sample.json and SETTING_SPECS differ"
    );

    // And the sample's values load (the host would give the port).
    let loaded = Settings::from_lookup(&|n| {
        if n == "FUNCTIONS_CUSTOMHANDLER_PORT" {
            return Some("34567".into());
        }
        values.get(n).and_then(|v| v.as_str()).map(str::to_string)
    });
    let loaded = loaded.unwrap_or_else(|e| panic!("the sample's values do not load: {e}"));
    assert_eq!(loaded.require_port().unwrap(), 34567);
}
