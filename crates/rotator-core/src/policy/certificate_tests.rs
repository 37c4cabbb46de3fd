//! Certificate entries: one test per rule, the round trip, conversion, and that secret entries
//! are untouched by the new `type` field.

use super::*;
use chrono::Duration;
use serde_json::{Value, json};

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "7412f649-8e14-471f-bfc1-733b36a42705";
const OTHER_APP: &str = "fd94f971-ebd9-4a32-a56e-97427655429e";

fn site(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/{name}")
}

/// A file with one secret and one certificate converting it, every certificate field given.
fn file() -> Value {
    json!({
        "credentials": [
            {
                "name": "pa",
                "application": { "appId": APP },
                "keyVault": { "vault": "kv-pa", "secret": "appSecret" },
                "consumers": [
                    { "type": "appSettingKeyVaultReference", "site": site("func-int"), "setting": "ClientSecret" }
                ]
            },
            {
                "type": "certificate",
                "name": "pa-cert",
                "application": { "appId": APP },
                "certificate": { "vault": "kv-pa", "name": "pa-cert" },
                "issuer": "Self",
                "subject": "CN=provision-assist",
                "keyType": "RSA",
                "keySize": 3072,
                "keyExportable": true,
                "validityInMonths": 6,
                "renewBeforeDays": 30,
                "graceDays": 5,
                "replacesSecret": "pa",
                "consumers": [
                    { "type": "appSettingKeyVaultReference", "site": site("func-int"), "setting": "ClientCertificate" },
                    { "type": "appSettingThumbprint", "site": site("func-int"), "setting": "WEBSITE_LOAD_CERTIFICATES" },
                    { "type": "notifyOnly", "system": "EzSign", "instructions": "Upload the new .cer to EzSign's trust store" }
                ]
            }
        ]
    })
}

fn cert(v: &mut Value) -> &mut Value {
    &mut v["credentials"][1]
}

fn errors_after(edit: impl FnOnce(&mut Value)) -> PolicyErrors {
    let mut v = file();
    edit(&mut v);
    match parse("policy.json", &v.to_string()) {
        Ok(_) => panic!("expected errors for {v}"),
        Err(e) => e,
    }
}

fn assert_error(edit: impl FnOnce(&mut Value), needle: &str) {
    let errs = errors_after(edit);
    assert!(
        errs.mentions(needle),
        "no error mentions {needle:?}:\n{errs}"
    );
}

#[test]
fn a_certificate_entry_round_trips_into_the_model() {
    let p = parse("policy.json", &file().to_string()).expect("valid");
    assert_eq!(
        p.credentials.len(),
        1,
        "the secret stays a secret credential"
    );
    assert_eq!(p.certificates.len(), 1);
    let c = &p.certificates[0];
    assert_eq!(c.name, "pa-cert");
    assert_eq!(c.application, AppRef::AppId(APP.parse().unwrap()));
    assert_eq!(
        c.certificate,
        VaultCertificateRef {
            vault: "kv-pa".into(),
            name: "pa-cert".into()
        }
    );
    assert_eq!(c.issuer, Issuer::SelfSigned);
    assert_eq!(c.subject, "CN=provision-assist");
    assert_eq!(c.key_size, RsaKeySize::Rsa3072);
    assert!(c.exportable);
    assert_eq!(c.validity_months, 6);
    assert_eq!(c.renew_before, Duration::days(30));
    assert_eq!(c.grace, Duration::days(5));
    assert_eq!(c.replaces_secret.as_deref(), Some("pa"));
    assert_eq!(c.consumers.len(), 3);
    assert!(c.consumers[0].needs_private_key());
    assert!(matches!(
        &c.consumers[1],
        CertificateConsumer::AppSettingThumbprint { setting, .. } if setting == "WEBSITE_LOAD_CERTIFICATES"
    ));
}

#[test]
fn defaults_fill_a_minimal_certificate_entry() {
    let v = json!({
        "defaults": { "renewBeforeDays": 20, "graceDays": 2, "lifetimeDays": 700 },
        "credentials": [{
            "type": "certificate", "name": "c1",
            "application": { "objectId": APP },
            "certificate": { "vault": "kv-pa", "name": "c1" }
        }]
    });
    let p = parse("p.json", &v.to_string()).expect("valid");
    let c = &p.certificates[0];
    assert_eq!(c.issuer, Issuer::SelfSigned);
    assert_eq!(c.subject, "CN=c1");
    assert_eq!(c.key_size, RsaKeySize::Rsa2048);
    assert_eq!(c.validity_months, 12);
    assert_eq!(c.renew_before, Duration::days(20));
    assert_eq!(c.grace, Duration::days(2));
    assert!(c.consumers.is_empty() && c.replaces_secret.is_none());
}

#[test]
fn an_integrated_issuer_is_kept_by_name_and_unknown_is_refused() {
    let mut v = file();
    cert(&mut v)["issuer"] = json!("DigiCert-Prod");
    let p = parse("p.json", &v.to_string()).expect("valid");
    assert_eq!(
        p.certificates[0].issuer,
        Issuer::Integrated("DigiCert-Prod".into())
    );
    assert_eq!(p.certificates[0].issuer.key_vault_name(), "DigiCert-Prod");
    assert_error(
        |v| cert(v)["issuer"] = json!("Unknown"),
        "issuer: 'Unknown' (a CA outside Key Vault) cannot be renewed",
    );
    assert_error(
        |v| cert(v)["issuer"] = json!("my issuer!"),
        "issuer: 'my issuer!' is not an issuer name",
    );
}

#[test]
fn key_sizes_outside_key_vaults_rsa_sizes_are_refused() {
    for bad in [
        json!(1024),
        json!(2047),
        json!(8192),
        json!("2048"),
        json!(-1),
    ] {
        assert_error(
            |v| cert(v)["keySize"] = bad.clone(),
            "keySize: must be 2048, 3072 or 4096",
        );
    }
    for good in [2048, 3072, 4096] {
        let mut v = file();
        cert(&mut v)["keySize"] = json!(good);
        let p = parse("p.json", &v.to_string()).expect("valid");
        assert_eq!(p.certificates[0].key_size.bits(), good);
    }
    assert_error(
        |v| cert(v)["keyType"] = json!("EC"),
        "keyType: 'EC' is not supported: only 'RSA'",
    );
}

#[test]
fn validity_is_between_1_and_120_months() {
    for bad in [json!(0), json!(121), json!(1.5), json!("12"), json!(-3)] {
        assert_error(
            |v| cert(v)["validityInMonths"] = bad.clone(),
            "validityInMonths: must be a whole number of months from 1 to 120",
        );
    }
    let mut v = file();
    cert(&mut v)["validityInMonths"] = json!(120);
    cert(&mut v)["renewBeforeDays"] = json!(60);
    assert!(parse("p.json", &v.to_string()).is_ok());
}

#[test]
fn renewal_must_fit_key_vaults_trigger_bound_and_grace_the_validity() {
    assert_error(
        |v| {
            cert(v)["validityInMonths"] = json!(1);
            cert(v)["renewBeforeDays"] = json!(28);
        },
        "renewBeforeDays: must be at most 27 for 1 month(s) of validity",
    );
    assert_error(
        |v| {
            cert(v)["validityInMonths"] = json!(2);
            cert(v)["renewBeforeDays"] = json!(50);
            cert(v)["graceDays"] = json!(6);
        },
        "graceDays: must be less than the shortest validity minus renewBeforeDays (6 >= 56 - 50)",
    );
    assert_error(
        |v| cert(v)["renewBeforeDays"] = json!(0),
        "renewBeforeDays: must be at least 1 day",
    );
}

#[test]
fn a_notify_only_consumer_sets_a_grace_floor() {
    assert_error(
        |v| cert(v)["graceDays"] = json!(1),
        "graceDays: must be at least 3 day(s) here, got 1: notify-only system EzSign",
    );
}

#[test]
fn a_non_exportable_key_cannot_serve_a_pfx_consumer() {
    assert_error(
        |v| cert(v)["keyExportable"] = json!(false),
        "keyExportable: is false, but Key Vault certificate reference ClientCertificate on site rg/func-int loads the private key",
    );
    let mut v = file();
    cert(&mut v)["keyExportable"] = json!(false);
    cert(&mut v)["consumers"].as_array_mut().unwrap().remove(0);
    let p = parse("p.json", &v.to_string()).expect("thumbprint consumers need no export");
    assert!(!p.certificates[0].exportable);
}

#[test]
fn the_certificate_reference_is_checked() {
    assert_error(
        |v| {
            cert(v).as_object_mut().unwrap().remove("certificate");
        },
        "certificate: missing (required)",
    );
    assert_error(
        |v| cert(v)["certificate"]["vault"] = json!("a"),
        "certificate.vault: 'a' is not a valid Key Vault name",
    );
    assert_error(
        |v| cert(v)["certificate"]["name"] = json!("has space"),
        "certificate.name: 'has space' is not a valid Key Vault certificate name",
    );
    assert_error(
        |v| cert(v)["certificate"]["version"] = json!("abc"),
        "certificate.version: unknown field",
    );
}

#[test]
fn unknown_fields_types_and_consumers_are_named() {
    assert_error(
        |v| cert(v)["lifetimeDays"] = json!(90),
        "credentials[1] (pa-cert): lifetimeDays: unknown field",
    );
    assert_error(
        |v| cert(v)["type"] = json!("cert"),
        "credentials[1] (pa-cert): type: expected 'clientSecret' (the default) or 'certificate', got 'cert'",
    );
    assert_error(
        |v| cert(v)["consumers"][0]["type"] = json!("apiConnection"),
        "consumers[0].type: unknown consumer type 'apiConnection' for a certificate",
    );
    assert_error(
        |v| cert(v)["subject"] = json!("O=Contoso"),
        "subject: 'O=Contoso' is not an X.500 subject with a common name",
    );
}

#[test]
fn names_certificates_and_consumer_targets_are_unique_across_kinds() {
    assert_error(
        |v| cert(v)["name"] = json!("pa"),
        "credentials[1] (pa): name: 'pa' is already used by credentials[0] (pa)",
    );
    assert_error(
        |v| cert(v)["consumers"][0]["setting"] = json!("ClientSecret"),
        "duplicate consumer: Key Vault certificate reference ClientSecret on site rg/func-int is already listed as credentials[0] (pa) consumers[0]",
    );
    assert_error(
        |v| {
            let mut second = v["credentials"][1].clone();
            second["name"] = json!("pa-cert-2");
            second.as_object_mut().unwrap().remove("consumers");
            second.as_object_mut().unwrap().remove("replacesSecret");
            v["credentials"].as_array_mut().unwrap().push(second);
        },
        "certificate 'pa-cert' in vault 'kv-pa' is already the store of credentials[1] (pa-cert)",
    );
}

#[test]
fn a_conversion_names_a_secret_of_the_same_application_once() {
    assert_error(
        |v| cert(v)["replacesSecret"] = json!("nope"),
        "replacesSecret: 'nope' is not a client-secret credential of this file",
    );
    assert_error(
        |v| v["credentials"][0]["application"] = json!({ "appId": OTHER_APP }),
        "replacesSecret: 'pa' belongs to another application",
    );
    assert_error(
        |v| {
            let mut second = v["credentials"][1].clone();
            second["name"] = json!("pa-cert-2");
            second["certificate"]["name"] = json!("other");
            second.as_object_mut().unwrap().remove("consumers");
            v["credentials"].as_array_mut().unwrap().push(second);
        },
        "replacesSecret: 'pa' is already being replaced by credentials[1] (pa-cert)",
    );
    // A certificate is not a secret to replace.
    assert_error(
        |v| {
            let mut second = v["credentials"][1].clone();
            second["name"] = json!("pa-cert-2");
            second["certificate"]["name"] = json!("other");
            second["replacesSecret"] = json!("pa-cert");
            second.as_object_mut().unwrap().remove("consumers");
            v["credentials"].as_array_mut().unwrap().push(second);
        },
        "replacesSecret: 'pa-cert' is not a client-secret credential of this file",
    );
}

#[test]
fn a_secret_entry_may_say_its_type_and_nothing_else_changes() {
    let mut v = file();
    v["credentials"][0]["type"] = json!("clientSecret");
    let with_type = parse("p.json", &v.to_string()).expect("valid");
    let without = parse("p.json", &file().to_string()).expect("valid");
    assert_eq!(with_type, without);
    assert_error(
        |v| v["credentials"][0]["type"] = json!(3),
        "credentials[0] (pa): type: expected 'clientSecret' (the default) or 'certificate', got a number",
    );
}

#[test]
fn consumer_ids_differ_from_the_secret_consumers_at_the_same_place() {
    let p = parse("p.json", &file().to_string()).expect("valid");
    let ids: Vec<ConsumerId> = p.certificates[0].consumers.iter().map(|c| c.id()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| ConsumerId::parse(i.as_str()).is_some()));
    assert_ne!(ids[0], p.credentials[0].consumers[0].id());
    assert_ne!(ids[0], ids[1]);
}

mod fuzz {
    //! The certificate example with one node replaced by anything: never a panic, every
    //! error names the file, and what still parses keeps its one certificate at most.
    use super::*;
    use crate::policy::tests::fuzz::{at_path, check, json_value, paths};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mutated_certificate_example_never_panics(
            pick in any::<prop::sample::Index>(),
            value in json_value(),
        ) {
            let mut v = file();
            let mut all = Vec::new();
            paths(&v, Vec::new(), &mut all);
            let path = pick.get(&all).clone();
            *at_path(&mut v, &path) = value;
            let result = parse("policy.json", &v.to_string());
            if let Ok(p) = &result {
                prop_assert!(p.certificates.len() <= 1 && p.credentials.len() <= 2);
            }
            check(result);
        }
    }
}
