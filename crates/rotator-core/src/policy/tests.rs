//! Policy parsing and validation: one test per rule, plus the full round trip.

use super::*;
use chrono::Duration;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const APP: &str = "7412f649-8e14-471f-bfc1-733b36a42705";
const TENANT: &str = "d10c2e35-390b-4343-9fb3-36524a35717c";

fn site(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/{name}")
}
fn connection(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/connections/{name}")
}
fn account(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/{name}"
    )
}

/// A valid file with every consumer kind.
fn full() -> serde_json::Value {
    serde_json::json!({
        "$schema": "./policy.schema.json",
        "defaults": { "renewBeforeDays": 30, "lifetimeDays": 180, "graceDays": 7 },
        "credentials": [
            {
                "name": "provision-assist",
                "application": { "appId": APP },
                "tenantId": TENANT,
                "keyVault": { "vault": "kv-pa", "secret": "appSecret" },
                "renewBeforeDays": 20, "lifetimeDays": 90, "graceDays": 3,
                "removeUnmanagedExpired": true,
                "consumers": [
                    { "type": "appSettingKeyVaultReference", "site": site("func-int"), "setting": "TeamsClientSecret" },
                    { "type": "appSettingValue", "site": format!("{}/slots/staging", site("func-int")), "setting": "ClientSecret" },
                    { "type": "apiConnection", "connection": connection("provisionassist-kv"), "parameter": "token:clientSecret" },
                    { "type": "automationVariable", "account": account("provisionassist-auto"), "variable": "appSecret" },
                    { "type": "notifyOnly", "system": "EzSign", "instructions": "Run ezsign-manage.sh, choose Set Passwords, enter the new value, restart EzSign" }
                ]
            },
            {
                "name": "ezsign",
                "application": { "objectId": "fd94f971-ebd9-4a32-a56e-97427655429e" },
                "keyVault": { "secretUri": "https://kv5sutozr67fiik.vault.azure.net/secrets/TeamsClientSecret/" },
                "consumers": [
                    { "type": "apiConnection", "connection": connection("other-kv") }
                ]
            }
        ]
    })
}

fn parse_value(v: &serde_json::Value) -> Result<Policy, PolicyErrors> {
    parse("policy.json", &v.to_string())
}

/// Applies `edit` to the full example and returns the errors, asserting there are some.
fn errors_after(edit: impl FnOnce(&mut serde_json::Value)) -> PolicyErrors {
    let mut v = full();
    edit(&mut v);
    match parse_value(&v) {
        Ok(_) => panic!("expected errors for {v}"),
        Err(e) => e,
    }
}

fn assert_mentions(errs: &PolicyErrors, needle: &str) {
    assert!(
        errs.mentions(needle),
        "no error mentions {needle:?}; got:\n{errs}"
    );
}

#[test]
fn full_policy_round_trips_into_the_model() {
    let p = parse_value(&full()).expect("valid");
    assert_eq!(p.source, "policy.json");
    assert_eq!(p.credentials.len(), 2);
    let c = &p.credentials[0];
    assert_eq!(c.name, "provision-assist");
    assert_eq!(c.application, AppRef::AppId(APP.parse().unwrap()));
    assert_eq!(c.tenant_id.as_deref(), Some(TENANT));
    assert_eq!(
        c.key_vault,
        VaultSecretRef {
            vault: "kv-pa".into(),
            secret: "appSecret".into()
        }
    );
    assert_eq!(c.renew_before, Duration::days(20));
    assert_eq!(c.lifetime, Duration::days(90));
    assert_eq!(c.grace, Duration::days(3));
    assert!(c.remove_unmanaged_expired);
    let res = |name: &str, slot: Option<&str>| ArmResource {
        subscription: SUB.into(),
        resource_group: "rg".into(),
        name: name.into(),
        slot: slot.map(Into::into),
    };
    assert_eq!(
        c.consumers,
        vec![
            Consumer::AppSettingKeyVaultRef {
                site: res("func-int", None),
                setting: "TeamsClientSecret".into()
            },
            Consumer::AppSettingValue {
                site: res("func-int", Some("staging")),
                setting: "ClientSecret".into()
            },
            Consumer::ApiConnection {
                connection: res("provisionassist-kv", None),
                parameter: "token:clientSecret".into()
            },
            Consumer::AutomationVariable {
                account: res("provisionassist-auto", None),
                variable: "appSecret".into()
            },
            Consumer::NotifyOnly {
                system: "EzSign".into(),
                instructions: "Run ezsign-manage.sh, choose Set Passwords, enter the new value, restart EzSign".into()
            },
        ]
    );
    let e = &p.credentials[1];
    assert_eq!(
        e.application,
        AppRef::ObjectId("fd94f971-ebd9-4a32-a56e-97427655429e".parse().unwrap())
    );
    assert_eq!(e.tenant_id, None);
    assert_eq!(e.key_vault.vault, "kv5sutozr67fiik");
    assert_eq!(e.key_vault.secret, "TeamsClientSecret");
    // Defaults apply, and the connection parameter defaults to the Key Vault connector's.
    assert_eq!(e.renew_before, Duration::days(30));
    assert_eq!(e.lifetime, Duration::days(180));
    assert_eq!(e.grace, Duration::days(7));
    assert!(!e.remove_unmanaged_expired);
    assert_eq!(
        e.consumers,
        vec![Consumer::ApiConnection {
            connection: res("other-kv", None),
            parameter: DEFAULT_CONNECTION_PARAMETER.into()
        }]
    );
}

#[test]
fn built_in_defaults_and_no_consumers() {
    let text = format!(
        r#"{{"credentials":[{{"name":"a","application":{{"appId":"{APP}"}},"keyVault":{{"vault":"kv-a","secret":"s"}}}}]}}"#
    );
    let p = parse("p.json", &text).expect("Key Vault alone is a valid consumer set");
    let c = &p.credentials[0];
    assert!(c.consumers.is_empty());
    assert_eq!(
        (c.renew_before, c.lifetime, c.grace),
        (Duration::days(30), Duration::days(180), Duration::days(7))
    );
}

#[test]
fn byte_order_mark_is_accepted() {
    let text = format!("\u{feff}{}", full());
    assert!(parse("p.json", &text).is_ok());
}

#[test]
fn syntax_error_names_line_and_column() {
    let errs = parse("policy.json", "{\n  \"credentials\": [\n    {,\n  ]\n}").unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    let line = errs.to_string();
    assert!(
        line.starts_with("policy.json: invalid JSON at line 3, column 6:"),
        "{line}"
    );
    assert!(
        !line.contains(" at line 3 column"),
        "position repeated: {line}"
    );
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("policy-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.json");
    std::fs::write(&path, full().to_string()).unwrap();
    let p = load(&path).expect("valid file");
    assert_eq!(p.credentials.len(), 2);
    assert_eq!(p.source, path.display().to_string());
    let missing = dir.join("nope.json");
    let errs = load(&missing).unwrap_err();
    assert!(
        errs.to_string().contains("cannot read the policy file"),
        "{errs}"
    );
    assert!(errs.to_string().starts_with(&missing.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_line_names_file_entry_and_field() {
    let errs = errors_after(|v| v["credentials"][0]["keyVault"]["secret"] = "app_secret".into());
    assert_eq!(
        errs.to_string(),
        "policy.json: credentials[0] (provision-assist): keyVault.secret: 'app_secret' is not a valid Key Vault secret name (letters, digits and '-' only, 1-127)"
    );
}

#[test]
fn all_errors_are_collected_one_per_line() {
    let errs = errors_after(|v| {
        v["credentials"][0]["keyVault"]["vault"] = "k".into();
        v["credentials"][0]["tenantId"] = "not-a-guid".into();
        v["credentials"][1]["application"]["objectId"] = "x".into();
        v["defaults"]["graceDays"] = 100.into();
    });
    assert_eq!(errs.errors.len(), 4, "{errs}");
    assert_eq!(errs.to_string().lines().count(), 4);
    assert_mentions(
        &errs,
        "defaults.graceDays: must be between 0 and 90 days, got 100",
    );
    assert_mentions(
        &errs,
        "credentials[0] (provision-assist): keyVault.vault: 'k' is not a valid Key Vault name",
    );
    assert_mentions(
        &errs,
        "credentials[0] (provision-assist): tenantId: 'not-a-guid' is not a GUID",
    );
    assert_mentions(
        &errs,
        "credentials[1] (ezsign): application.objectId: 'x' is not a GUID",
    );
}

#[test]
fn unknown_fields_are_denied_everywhere() {
    let errs = errors_after(|v| {
        v["colour"] = "blue".into();
        v["defaults"]["renewDays"] = 3.into();
        v["credentials"][0]["lifetime"] = 3.into();
        v["credentials"][0]["keyVault"]["version"] = "abc".into();
        v["credentials"][0]["application"]["clientId"] = APP.into();
        v["credentials"][0]["consumers"][0]["slot"] = "x".into();
    });
    assert_mentions(
        &errs,
        "policy.json: colour: unknown field (expected one of: $schema, defaults, credentials)",
    );
    assert_mentions(&errs, "defaults.renewDays: unknown field");
    assert_mentions(
        &errs,
        "credentials[0] (provision-assist): lifetime: unknown field",
    );
    assert_mentions(&errs, "keyVault.version: unknown field");
    assert_mentions(&errs, "application.clientId: unknown field");
    assert_mentions(
        &errs,
        "consumers[0].slot: unknown field (expected one of: type, site, setting)",
    );
}

#[test]
fn duplicate_keys_are_reported() {
    let text = format!(
        r#"{{"defaults": {{"graceDays": 1, "graceDays": 2}},
            "credentials": [{{"name": "a", "application": {{"appId": "{APP}"}},
              "keyVault": {{"vault": "kv-a", "secret": "s", "secret": "t"}},
              "lifetimeDays": 90, "lifetimeDays": 91}}]}}"#
    );
    let errs = parse("policy.json", &text).unwrap_err();
    assert_eq!(errs.errors.len(), 3, "{errs}");
    assert_mentions(
        &errs,
        "policy.json: defaults: 'graceDays' is given twice (only the last one would count)",
    );
    assert_mentions(
        &errs,
        "policy.json: credentials[0] (a): keyVault: 'secret' is given twice",
    );
    assert_mentions(
        &errs,
        "policy.json: credentials[0] (a): 'lifetimeDays' is given twice",
    );
}

#[test]
fn wrong_types_are_reported() {
    let errs = errors_after(|v| {
        v["credentials"][0]["name"] = 5.into();
        v["credentials"][0]["removeUnmanagedExpired"] = "yes".into();
        v["credentials"][0]["graceDays"] = 1.5.into();
        v["credentials"][0]["consumers"] = serde_json::json!({});
        v["credentials"][1]["keyVault"] = "kv".into();
    });
    assert_mentions(
        &errs,
        "credentials[0]: name: expected a string, got a number",
    );
    assert_mentions(
        &errs,
        "removeUnmanagedExpired: expected true or false, got a string",
    );
    assert_mentions(&errs, "graceDays: expected a whole number of days, got 1.5");
    assert_mentions(&errs, "consumers: expected an array, got an object");
    assert_mentions(
        &errs,
        "credentials[1] (ezsign): keyVault: expected an object, got a string",
    );

    let top = parse("p.json", "[]").unwrap_err();
    assert_mentions(&top, "expected an object, got an array");
    let no_creds = parse("p.json", "{}").unwrap_err();
    assert_mentions(&no_creds, "credentials: missing (required)");
    let creds_not_list = parse("p.json", r#"{"credentials": 3}"#).unwrap_err();
    assert_mentions(
        &creds_not_list,
        "credentials: expected an array, got a number",
    );
    let entry_not_obj = parse("p.json", r#"{"credentials": [true]}"#).unwrap_err();
    assert_mentions(
        &entry_not_obj,
        "credentials[0]: expected an object, got a boolean",
    );
}

#[test]
fn required_fields_are_reported() {
    let errs = errors_after(|v| {
        let c = v["credentials"][0].as_object_mut().unwrap();
        c.remove("name");
        c.remove("application");
        c.remove("keyVault");
        v["credentials"][0]["consumers"][2] = serde_json::json!({"type": "apiConnection"});
        v["credentials"][0]["consumers"][4] = serde_json::json!({"system": "x"});
    });
    assert_mentions(&errs, "credentials[0]: name: missing (required)");
    assert_mentions(&errs, "credentials[0]: application: missing (required)");
    assert_mentions(&errs, "credentials[0]: keyVault: missing (required)");
    assert_mentions(&errs, "consumers[2].connection: missing (required)");
    assert_mentions(&errs, "consumers[4].type: missing (required)");
}

#[test]
fn guids_are_checked() {
    for bad in [
        "7412f6498e14471fb1bc1733b36a42705",
        "{7412f649-8e14-471f-bfc1-733b36a42705}",
        "7412f649-8e14-471f-bfc1-733b36a4270z",
        "00000000-0000-0000-0000-000000000000",
        "",
    ] {
        let errs = errors_after(|v| v["credentials"][0]["application"]["appId"] = bad.into());
        assert_mentions(&errs, "application.appId:");
    }
    let errs = errors_after(|v| {
        v["credentials"][0]["application"] = serde_json::json!({"appId": APP, "objectId": APP})
    });
    assert_mentions(
        &errs,
        "application: give either appId or objectId, not both",
    );
    let errs = errors_after(|v| v["credentials"][0]["application"] = serde_json::json!({}));
    assert_mentions(&errs, "application: missing: give appId");
    // Upper-case GUIDs (as some portals show them) are fine.
    let mut v = full();
    v["credentials"][0]["application"]["appId"] = APP.to_uppercase().into();
    assert!(parse_value(&v).is_ok());
}

#[test]
fn credential_names_are_checked_and_unique() {
    for bad in ["Provision", "-a", "a_b", "", &"a".repeat(64)] {
        let errs = errors_after(|v| v["credentials"][0]["name"] = bad.into());
        assert_mentions(&errs, "is not a valid credential name");
    }
    for good in ["a", "0-a", &"a".repeat(63)] {
        let mut v = full();
        v["credentials"][0]["name"] = good.into();
        assert!(parse_value(&v).is_ok(), "{good}");
    }
    let errs = errors_after(|v| v["credentials"][1]["name"] = "provision-assist".into());
    assert_mentions(
        &errs,
        "credentials[1] (provision-assist): name: 'provision-assist' is already used by credentials[0] (provision-assist)",
    );
}

#[test]
fn vault_names_are_checked() {
    for bad in ["kv", "1kv", "kv--pa", "kv-pa-", "kv_pa", &"k".repeat(25)] {
        let errs = errors_after(|v| v["credentials"][0]["keyVault"]["vault"] = bad.into());
        assert_mentions(&errs, "keyVault.vault:");
        assert_mentions(&errs, "is not a valid Key Vault name");
    }
    for good in ["kv1", "KV-Pa-9", &"k".repeat(24)] {
        let mut v = full();
        v["credentials"][0]["keyVault"]["vault"] = good.into();
        assert!(parse_value(&v).is_ok(), "{good}");
    }
}

#[test]
fn secret_names_and_uris_are_checked() {
    let errs = errors_after(|v| v["credentials"][0]["keyVault"]["secret"] = "a".repeat(128).into());
    assert_mentions(&errs, "keyVault.secret:");
    let errs = errors_after(|v| v["credentials"][0]["keyVault"]["secret"] = "".into());
    assert_mentions(
        &errs,
        "keyVault.secret: '' is not a valid Key Vault secret name",
    );
    for (uri, needle) in [
        ("http://kv-a.vault.azure.net/secrets/s", "must use https"),
        (
            "https://kv-a.example.com/secrets/s",
            "is not a Key Vault host",
        ),
        ("https://kv-a.vault.azure.net/keys/s", "is not a secret URI"),
        (
            "https://kv-a.vault.azure.net/secrets/s/0123456789abcdef0123456789abcdef",
            "give the versionless URI",
        ),
        (
            "https://kv-a.vault.azure.net/secrets/a_b",
            "not a valid Key Vault secret name",
        ),
        (
            "https://k.vault.azure.net/secrets/s",
            "not a valid Key Vault name",
        ),
        (
            "https://kv-a.vault.azure.net/secrets/s?x=1",
            "must not carry a query",
        ),
        ("not a url", "is not a URL"),
    ] {
        let errs = errors_after(|v| {
            v["credentials"][1]["keyVault"] = serde_json::json!({ "secretUri": uri })
        });
        assert_mentions(&errs, "keyVault.secretUri:");
        assert_mentions(&errs, needle);
    }
    let errs = errors_after(|v| {
        v["credentials"][1]["keyVault"]["vault"] = "kv-a".into();
    });
    assert_mentions(
        &errs,
        "keyVault: give either vault and secret, or secretUri, not both",
    );
    // Sovereign clouds' vault hosts are accepted.
    let mut v = full();
    v["credentials"][1]["keyVault"] =
        serde_json::json!({"secretUri": "https://kv-cn.vault.azure.cn/secrets/s1"});
    let p = parse_value(&v).unwrap();
    assert_eq!(p.credentials[1].key_vault.vault, "kv-cn");
}

#[test]
fn two_credentials_cannot_share_a_vault_secret() {
    // Case differs: Key Vault names are case-insensitive.
    let errs = errors_after(|v| {
        v["credentials"][1]["keyVault"] =
            serde_json::json!({"secretUri": "https://KV-PA.vault.azure.net/secrets/APPSECRET"})
    });
    assert_mentions(
        &errs,
        "credentials[1] (ezsign): keyVault: secret 'APPSECRET' in vault 'kv-pa' is already the store of credentials[0] (provision-assist)",
    );
}

#[test]
fn arm_ids_are_checked() {
    let cases = [
        (
            0,
            "site",
            "/subscriptions/nope/resourceGroups/rg/providers/Microsoft.Web/sites/func",
            "subscription in",
        ),
        (
            0,
            "site",
            &connection("c"),
            "is a Microsoft.Web/connections resource id, expected a Microsoft.Web/sites one",
        ),
        (
            0,
            "site",
            "subscriptions/x",
            "is not a Microsoft.Web/sites resource id",
        ),
        (
            0,
            "site",
            &site("-bad"),
            "is not a valid Microsoft.Web/sites name",
        ),
        (
            0,
            "site",
            &format!("{}/slots/-x", site("func")),
            "is not a valid slot name",
        ),
        (
            0,
            "site",
            &format!("{}/config/appsettings", site("func")),
            "is not a Microsoft.Web/sites resource id",
        ),
        (
            0,
            "site",
            &site("func").replace("/rg/", "/rg./"),
            "resource group 'rg.'",
        ),
        (
            2,
            "connection",
            &site("func"),
            "expected a Microsoft.Web/connections one",
        ),
        (
            2,
            "connection",
            &format!("{}/slots/a", connection("c")),
            "is not a Microsoft.Web/connections resource id",
        ),
        (
            3,
            "account",
            &account("short"),
            "is not a valid Microsoft.Automation/automationAccounts name",
        ),
        (
            3,
            "account",
            &site("func"),
            "expected a Microsoft.Automation/automationAccounts one",
        ),
    ];
    for (i, key, id, needle) in cases {
        let errs = errors_after(|v| v["credentials"][0]["consumers"][i][key] = id.into());
        assert_mentions(&errs, &format!("consumers[{i}].{key}:"));
        assert_mentions(&errs, needle);
    }
    // Literal segments are case-insensitive, as in ARM; a trailing slash is tolerated.
    let mut v = full();
    v["credentials"][0]["consumers"][0]["site"] =
        format!("/SUBSCRIPTIONS/{SUB}/resourcegroups/rg/providers/microsoft.web/Sites/func-int/")
            .into();
    assert!(parse_value(&v).is_ok());
}

#[test]
fn durations_are_checked() {
    let cases: [(&str, serde_json::Value, &str); 8] = [
        (
            "renewBeforeDays",
            0.into(),
            "renewBeforeDays: must be at least 1 day, got 0",
        ),
        (
            "lifetimeDays",
            731.into(),
            "lifetimeDays: must be between 1 and 730 days (Graph and the portal cap client secrets at 24 months), got 731",
        ),
        (
            "lifetimeDays",
            0.into(),
            "lifetimeDays: must be between 1 and 730 days",
        ),
        (
            "graceDays",
            (-1).into(),
            "graceDays: must be between 0 and 90 days, got -1",
        ),
        (
            "graceDays",
            91.into(),
            "graceDays: must be between 0 and 90 days, got 91",
        ),
        (
            "renewBeforeDays",
            90.into(),
            "renewBeforeDays: must be less than lifetimeDays (90 >= 90)",
        ),
        (
            "graceDays",
            70.into(),
            "graceDays: must be less than lifetimeDays - renewBeforeDays (70 >= 90 - 20 = 70) so the old secret is gone before the next renewal",
        ),
        (
            "lifetimeDays",
            "90".into(),
            "lifetimeDays: expected a whole number of days, got a string",
        ),
    ];
    for (key, value, needle) in cases {
        let errs = errors_after(|v| v["credentials"][0][key] = value.clone());
        assert_mentions(
            &errs,
            &format!("credentials[0] (provision-assist): {needle}"),
        );
    }
    // Bad defaults are reported once, under `defaults`, not for every credential inheriting them.
    let errs = errors_after(|v| v["defaults"]["renewBeforeDays"] = 200.into());
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert_mentions(
        &errs,
        "policy.json: defaults.renewBeforeDays: must be less than lifetimeDays (200 >= 180)",
    );
    // Found by the fuzz test: a huge inherited default once overflowed chrono's Duration.
    let errs = errors_after(|v| v["defaults"]["renewBeforeDays"] = i64::MAX.into());
    assert_mentions(
        &errs,
        "defaults.renewBeforeDays: must be less than lifetimeDays",
    );
    // A credential overriding one value is checked against the inherited others.
    let errs = errors_after(|v| v["credentials"][1]["lifetimeDays"] = 35.into());
    assert_mentions(
        &errs,
        "credentials[1] (ezsign): graceDays: must be less than lifetimeDays - renewBeforeDays (7 >= 35 - 30 = 5)",
    );
}

#[test]
fn duplicate_consumers_are_rejected() {
    // Same setting on the same site, once as a reference and once as a value.
    let errs = errors_after(|v| {
        v["credentials"][0]["consumers"][1]["site"] = site("FUNC-INT").into();
        v["credentials"][0]["consumers"][1]["setting"] = "teamsclientsecret".into();
    });
    assert_mentions(
        &errs,
        "credentials[0] (provision-assist): consumers[1]: duplicate consumer: app setting teamsclientsecret on site rg/FUNC-INT is already listed as credentials[0] (provision-assist) consumers[0]",
    );
    // The same target written by two credentials.
    let errs = errors_after(|v| {
        v["credentials"][1]["consumers"][0]["connection"] = connection("provisionassist-kv").into()
    });
    assert_mentions(
        &errs,
        "credentials[1] (ezsign): consumers[0]: duplicate consumer",
    );
    // Identical notify-only consumers.
    let errs = errors_after(|v| {
        let n = v["credentials"][0]["consumers"][4].clone();
        v["credentials"][0]["consumers"]
            .as_array_mut()
            .unwrap()
            .push(n);
    });
    assert_mentions(
        &errs,
        "consumers[5]: duplicate consumer: notify-only system EzSign",
    );
    // Same connection, another parameter: fine.
    let mut v = full();
    v["credentials"][1]["consumers"][0] = serde_json::json!({
        "type": "apiConnection", "connection": connection("provisionassist-kv"), "parameter": "token:other"
    });
    assert!(parse_value(&v).is_ok());
}

#[test]
fn consumer_fields_are_checked() {
    let errs = errors_after(|v| {
        v["credentials"][0]["consumers"][0]["type"] = "keyVaultReference".into();
        v["credentials"][0]["consumers"][1]["setting"] = "Client Secret".into();
        v["credentials"][0]["consumers"][2]["parameter"] = " ".into();
        v["credentials"][0]["consumers"][3]["variable"] = "".into();
        v["credentials"][0]["consumers"][4]["instructions"] = "  ".into();
    });
    assert_mentions(
        &errs,
        "consumers[0].type: unknown consumer type 'keyVaultReference' (expected one of: appSettingKeyVaultReference, appSettingValue, apiConnection, automationVariable, notifyOnly)",
    );
    assert_mentions(
        &errs,
        "consumers[1].setting: 'Client Secret' is not a valid app setting name",
    );
    assert_mentions(&errs, "consumers[2].parameter: must not be empty");
    assert_mentions(
        &errs,
        "consumers[3].variable: '' is not a valid Automation variable name",
    );
    assert_mentions(&errs, "consumers[4].instructions: must not be empty");
    let errs = errors_after(|v| v["credentials"][0]["consumers"][4]["system"] = "".into());
    assert_mentions(&errs, "consumers[4].system: must not be empty");
}

#[test]
fn errors_display_and_error_trait() {
    let errs = errors_after(|v| v["credentials"][0]["name"] = "X".into());
    let as_dyn: &dyn std::error::Error = &errs;
    assert!(as_dyn.to_string().contains("credentials[0] (X): name:"));
    let one: &dyn std::error::Error = &errs.errors[0];
    assert_eq!(one.to_string(), errs.errors[0].to_string());
}

pub(crate) mod fuzz {
    //! The parser never panics and always names the file, whatever the input.
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(APP)),
            Just(serde_json::Value::from(site("func-x"))),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-zA-Z$]{0,12}", inner, 0..4)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    /// Every JSON path (object keys and array indices) of a value.
    pub(crate) fn paths(v: &serde_json::Value, here: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(here.clone());
        match v {
            serde_json::Value::Object(m) => {
                for (k, c) in m {
                    let mut p = here.clone();
                    p.push(k.clone());
                    paths(c, p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let mut p = here.clone();
                    p.push(i.to_string());
                    paths(c, p, out);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn at_path<'v>(
        v: &'v mut serde_json::Value,
        path: &[String],
    ) -> &'v mut serde_json::Value {
        path.iter().fold(v, |v, seg| match v {
            serde_json::Value::Array(a) => &mut a[seg.parse::<usize>().unwrap()],
            other => &mut other[seg.as_str()],
        })
    }

    pub(crate) fn check(result: Result<Policy, PolicyErrors>) {
        if let Err(errs) = result {
            assert!(!errs.errors.is_empty());
            for line in errs.to_string().lines() {
                assert!(line.starts_with("policy.json: "), "{line}");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            check(parse("policy.json", &text));
        }

        #[test]
        fn arbitrary_json_never_panics(v in json_value()) {
            check(parse("policy.json", &v.to_string()));
        }

        /// The valid example with one node replaced by anything: never a panic, and if it still
        /// parses, it is a valid policy with the same number of credentials.
        #[test]
        fn mutated_example_never_panics(pick in any::<prop::sample::Index>(), value in json_value()) {
            let mut v = full();
            let mut all = Vec::new();
            paths(&v, Vec::new(), &mut all);
            let path = pick.get(&all).clone();
            *at_path(&mut v, &path) = value;
            let text = v.to_string();
            let result = parse("policy.json", &text);
            if let Ok(p) = &result {
                prop_assert!(p.credentials.len() <= 2);
            }
            check(result);
        }
    }
}

/// A duplicate name and a second writer of the same setting are reported in the same pass as
/// the entry's other errors, not only once those are fixed.
#[test]
fn cross_entry_errors_come_with_the_entry_own_errors() {
    let e = errors_after(|v| {
        let mut second = v["credentials"][0].clone();
        second["lifetimeDays"] = serde_json::json!(9999);
        second["application"] = serde_json::json!({ "appId": "not-a-guid" });
        second["keyVault"] = serde_json::json!({ "vault": "kv-pa", "secret": "other" });
        v["credentials"].as_array_mut().unwrap().push(second);
    });
    let text = e.to_string();
    for part in [
        "credentials[2] (provision-assist): lifetimeDays: must be between 1 and 730",
        "credentials[2] (provision-assist): application.appId: 'not-a-guid' is not a GUID",
        "credentials[2] (provision-assist): name: 'provision-assist' is already used by credentials[0]",
        "credentials[2] (provision-assist): consumers[0]: duplicate consumer: Key Vault reference TeamsClientSecret on site rg/func-int is already listed as credentials[0] (provision-assist) consumers[0]",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    // Each once.
    for line in text.lines() {
        assert_eq!(text.matches(line).count(), 1, "{line} repeated in:\n{text}");
    }
}

/// Was: a `secretUri` in another cloud was silently mapped to the configured cloud's vault of
/// the same name. Now the policy names the credential and both clouds.
#[test]
fn a_secret_uri_of_another_cloud_is_refused() {
    use crate::cloud::Cloud;
    let text = r#"{"credentials": [{"name": "cn", "application": {"appId": "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20"},
        "keyVault": {"secretUri": "https://kv-cn.vault.azure.cn/secrets/app"}}]}"#;
    let p = crate::policy::parse("policy.json", text).unwrap();
    assert!(p.check_cloud(Cloud::China).is_ok());
    let e = p.check_cloud(Cloud::Public).unwrap_err().to_string();
    assert!(
        e.contains("cn: keyVault.secretUri")
            && e.contains("kv-cn.vault.azure.cn")
            && e.contains("Public"),
        "{e}"
    );
    // A vault named by name alone is in the configured cloud, whichever it is.
    let by_name = text.replace(
        r#"{"secretUri": "https://kv-cn.vault.azure.cn/secrets/app"}"#,
        r#"{"vault": "kv-cn", "secret": "app"}"#,
    );
    let p = crate::policy::parse("policy.json", &by_name).unwrap();
    assert!(p.check_cloud(Cloud::Public).is_ok());
}

/// The issue-16 outage: the id came from `describe()`, which leaves out the subscription, so
/// a consumer recorded as updated made its twin in another subscription count as updated.
#[test]
fn consumer_ids_differ_by_subscription_and_kind() {
    let res = |subscription: &str| ArmResource {
        subscription: subscription.into(),
        resource_group: "rg".into(),
        name: "auto".into(),
        slot: None,
    };
    let variable = |subscription: &str| Consumer::AutomationVariable {
        account: res(subscription),
        variable: "appSecret".into(),
    };
    let a = variable(SUB);
    let b = variable("99999999-2222-3333-4444-555555555555");
    assert_eq!(a.describe(), b.describe(), "the display text is the same");
    assert_ne!(a.id(), b.id());
    let connection = |subscription: &str| Consumer::ApiConnection {
        connection: res(subscription),
        parameter: "token:clientSecret".into(),
    };
    assert_ne!(
        connection(SUB).id(),
        connection("99999999-2222-3333-4444-555555555555").id()
    );
    assert_ne!(
        connection(SUB).id(),
        a.id(),
        "the kind is part of the identity"
    );
    // ARM compares ids case-insensitively: so does the consumer id.
    let shouted = Consumer::AutomationVariable {
        account: ArmResource {
            subscription: SUB.to_uppercase(),
            resource_group: "RG".into(),
            name: "AUTO".into(),
            slot: None,
        },
        variable: "APPSECRET".into(),
    };
    assert_eq!(shouted.id(), a.id());
}

/// Ids are recorded in Key Vault tags: they come from the identity alone, so rewording
/// `describe()` changes none. Pinned: a change here strands every id already recorded.
#[test]
fn consumer_ids_come_from_the_identity_not_the_display_text() {
    let p = parse_value(&full()).unwrap();
    let consumers = &p.credentials[0].consumers;
    let ids: Vec<String> = consumers.iter().map(|c| c.id().to_string()).collect();
    for (c, id) in consumers.iter().zip(&ids) {
        assert_eq!(
            *id,
            format!("{:016x}", stable_hash64(&c.identity())),
            "{}",
            c.describe()
        );
        assert!(!c.identity().contains(&c.describe()), "{}", c.describe());
        assert_eq!(ConsumerId::parse(id), Some(c.id()));
    }
    assert_eq!(
        consumers[3].identity(),
        format!(
            "automationVariable|/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.automation/automationaccounts/provisionassist-auto|appsecret"
        )
    );
    assert_eq!(ids[3], "c74cf73276586b24");
    // The first versions' ids (8 hex characters, from the display text) are not ids.
    assert_eq!(ConsumerId::parse("91102477"), None);
    assert_eq!(ConsumerId::parse("6D2B0E53C19D0BBB"), None);
}
