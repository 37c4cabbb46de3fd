//! Property tests over every parser of an Azure answer: arbitrary bytes, arbitrary JSON, and
//! valid answers with fields mutated into other types. A malformed answer must be an error,
//! never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON up to a modest depth.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2026-11-22T02:00:00Z")),
        Just(json!("0a4d1c9e-5f2b-4e8a-b7c3-9d1e2f3a4b51")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,8}",
                    Just("value".to_string()),
                    Just("properties".to_string()),
                    Just("passwordCredentials".to_string()),
                    Just("keyId".to_string()),
                    Just("endDateTime".to_string()),
                    Just("statuses".to_string()),
                    Just("@odata.nextLink".to_string()),
                    Just("error".to_string()),
                    Just("access_token".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid answers of each parser, to be mutated.
fn examples() -> Vec<Value> {
    vec![
        json!({"id": "11e2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f1", "appId": "3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10", "displayName": "x",
               "passwordCredentials": [{"keyId": "0a4d1c9e-5f2b-4e8a-b7c3-9d1e2f3a4b51", "displayName": "d", "hint": "abc",
                                        "startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2027-01-01T00:00:00Z"}]}),
        json!({"value": [], "@odata.nextLink": "https://graph.microsoft.com/v1.0/applications?$skiptoken=x"}),
        json!({"properties": {"A": "b", "TeamsClientSecret": "@Microsoft.KeyVault(VaultName=kv;SecretName=s)"}}),
        json!({"name": "S", "properties": {"status": "Resolved", "activeVersion": "abc", "reference": "@Microsoft.KeyVault(x)"}}),
        json!({"properties": {"statuses": [{"status": "Connected"}], "displayName": "c"}}),
        json!({"name": "appSecret", "properties": {"isEncrypted": true, "description": null}}),
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ"}),
        json!({"error": {"code": "Request_ResourceNotFound", "message": "m", "innerError": {"code": "x"}}}),
    ]
}

/// Replaces the value at a pseudo-random path with `with`.
fn mutate(v: &mut Value, pick: u64, with: Value) {
    if pick.is_multiple_of(3) {
        *v = with;
        return;
    }
    let p = pick / 3;
    match v {
        Value::Object(m) if !m.is_empty() => {
            let n = m.len() as u64;
            let key = m.keys().nth((p % n) as usize).cloned().unwrap_or_default();
            if let Some(child) = m.get_mut(&key) {
                mutate(child, p / n, with);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len() as u64;
            let i = (p % n) as usize;
            mutate(&mut a[i], p / n, with);
        }
        _ => *v = with,
    }
}

fn every_parser(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = super::graph::parse_application(bytes);
    let _ = super::graph::parse_added_password(bytes);
    let _ = super::graph::parse_page(bytes, true);
    let _ = super::graph::parse_page(bytes, false);
    let _ = super::web::parse_app_settings(bytes);
    let _ = super::web::parse_reference(bytes);
    let _ = super::web::parse_reference_list(bytes);
    let _ = super::connections::parse_connection(bytes);
    let _ = super::automation::parse_variable(bytes);
    let _ = super::entra::parse_success(bytes);
    let _ = super::entra::parse_refusal(400, &text, 1);
    let _ = super::entra::parse_refusal(401, &text, 1);
    let _ = super::common::ErrorBody::parse(&text);
    let _ = super::storage::parse_list(&text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        every_parser(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        every_parser(v.to_string().as_bytes());
    }

    #[test]
    fn mutated_answers_never_panic(which in 0usize..8, pick in any::<u64>(), with in any_json()) {
        let mut v = examples()[which].clone();
        mutate(&mut v, pick, with);
        every_parser(v.to_string().as_bytes());
    }

    #[test]
    fn storage_listing_xml_never_panics(s in "(<[A-Za-z]{0,12}>|</[A-Za-z]{0,12}>|[a-z0-9/&;<> ]{0,10}){0,40}") {
        let _ = super::storage::parse_list(&s);
    }
}
