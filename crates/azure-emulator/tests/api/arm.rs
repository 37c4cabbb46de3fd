//! ARM over real HTTPS: sites and Key Vault reference caching, connections, Automation.

use crate::support::*;
use serde_json::json;

const WEB: &str = "api-version=2024-11-01";

#[tokio::test]
async fn app_settings_list_put_and_rbac() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let site = h.arm("Microsoft.Web/sites/app1");
    let r =
        h.c.post(format!("{site}/config/appsettings/list?{WEB}"))
            .bearer_auth(&tok)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
    assert!(r.headers().contains_key("x-ms-request-id"));
    let (s, v) = json(r).await;
    assert_eq!(s, 200);
    assert_eq!(v["properties"]["OTHER"], "plain");
    assert_eq!(v["name"], "appsettings");
    let (s, v) = json(
        h.c.get(format!("{site}?{WEB}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["identity"]["type"], "SystemAssigned");
    // PUT replaces the whole map.
    let (s, v) = json(h.c.put(format!("{site}/config/appsettings?{WEB}")).bearer_auth(&tok)
        .json(&json!({"properties": {"PAY_SECRET": "@Microsoft.KeyVault(VaultName=kv1;SecretName=payments-secret)", "NEW": "1"}})).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert!(v["properties"].get("OTHER").is_none());
    assert_eq!(c.app_setting("rg", "app1", "OTHER"), None);
    assert_eq!(c.app_setting("rg", "app1", "NEW").as_deref(), Some("1"));
    // Typed errors.
    let (s, v) = json(
        h.c.put(format!("{site}/config/appsettings?{WEB}"))
            .bearer_auth(&tok)
            .json(&json!({"properties": {"A": 1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["Code"].as_str().unwrap()), (400, "BadRequest"));
    let (s, v) = json(
        h.c.post(format!("{site}/config/appsettings/list"))
            .bearer_auth(&tok)
            .header("content-length", "0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "MissingApiVersionParameter")
    );
    let (s, v) = json(
        h.c.post(format!(
            "{}/config/appsettings/list?{WEB}",
            h.arm("Microsoft.Web/sites/nosuch")
        ))
        .bearer_auth(&tok)
        .header("content-length", "0")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "ResourceNotFound")
    );
    let (s, v) = json(
        h.c.get(format!("{}?{WEB}", h.arm("Microsoft.Nope/things/x")))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "NoRegisteredProviderFound")
    );
    let (s, v) = json(
        h.c.get(format!("{}?{WEB}", h.arm("Microsoft.Web/serverfarms/x")))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "InvalidResourceType")
    );
    // site-mi has no ARM role: 403 AuthorizationFailed before any lookup.
    let site_tok = h.mi_token("site-mi", "https://management.azure.com/").await;
    let (s, v) = json(
        h.c.post(format!("{site}/config/appsettings/list?{WEB}"))
            .bearer_auth(&site_tok)
            .header("content-length", "0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (403, "AuthorizationFailed")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.Web/sites/config/list/action")
    );
    // Graph token is the wrong audience.
    let g = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let (s, v) = json(
        h.c.get(format!("{site}?{WEB}"))
            .bearer_auth(&g)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationTokenAudience")
    );
    // Restart works (200, empty).
    let r =
        h.c.post(format!("{site}/restart?{WEB}"))
            .bearer_auth(&tok)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn key_vault_references_are_cached_until_refresh_change_or_24h() {
    let h = start().await;
    let c = h.emu.control();
    let arm = h.mi_token("rotator", "https://management.azure.com/").await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let site = h.arm("Microsoft.Web/sites/app1");
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-1")
    );
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PINNED").as_deref(),
        Some("pay-secret-0")
    );
    let (s, v) = json(
        h.c.get(format!("{site}/config/configreferences/appsettings?{WEB}"))
            .bearer_auth(&arm)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let by_name = |n: &str| {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("PAY_SECRET")["properties"]["status"], "Resolved");
    assert_eq!(
        by_name("PINNED")["properties"]["activeVersion"],
        "0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        by_name("DENIED")["properties"]["status"],
        "AccessToKeyVaultDenied"
    );
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    // Rotate the secret in Key Vault: the app keeps the old value.
    let (s, nv) = json(
        h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
            .bearer_auth(&kv)
            .json(&json!({"value": "pay-secret-2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let new_ver = nv["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-1")
    );
    // A restart is not enough.
    h.c.post(format!("{site}/restart?{WEB}"))
        .bearer_auth(&arm)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-1")
    );
    // The refresh call is.
    let r =
        h.c.post(format!(
            "{site}/config/configreferences/appsettings/refresh?{WEB}"
        ))
        .bearer_auth(&arm)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-2")
    );
    let (s, one) = json(
        h.c.get(format!(
            "{site}/config/configreferences/appsettings/PAY_SECRET?{WEB}"
        ))
        .bearer_auth(&arm)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["properties"]["activeVersion"], new_ver.as_str());
    let (s, _) = json(
        h.c.get(format!(
            "{site}/config/configreferences/appsettings/OTHER?{WEB}"
        ))
        .bearer_auth(&arm)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    // Another rotation, then 24 h of emulated time.
    let kv_put = |v: &'static str| {
        h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
            .bearer_auth(&kv)
            .json(&json!({"value": v}))
            .send()
    };
    assert_eq!(kv_put("pay-secret-3").await.unwrap().status(), 200);
    c.advance(chrono::Duration::hours(23));
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-2")
    );
    c.advance(chrono::Duration::hours(2));
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-3")
    );
    // A settings PUT re-reads immediately.
    let arm = h.mi_token("rotator", "https://management.azure.com/").await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let r =
        h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
            .bearer_auth(&kv)
            .json(&json!({"value": "pay-secret-4"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let (_, cur) = json(
        h.c.post(format!("{site}/config/appsettings/list?{WEB}"))
            .bearer_auth(&arm)
            .header("content-length", "0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (s, _) = json(
        h.c.put(format!("{site}/config/appsettings?{WEB}"))
            .bearer_auth(&arm)
            .json(&json!({"properties": cur["properties"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        c.app_setting_effective("rg", "app1", "PAY_SECRET")
            .as_deref(),
        Some("pay-secret-4")
    );
    // A failed reference shows the literal text to the app.
    assert!(
        c.app_setting_effective("rg", "app1", "DENIED")
            .unwrap()
            .starts_with("@Microsoft.KeyVault(")
    );
}

#[tokio::test]
async fn connections_hide_parameter_values_and_report_live_status() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let url = format!(
        "{}?api-version=2016-06-01",
        h.arm("Microsoft.Web/connections/kv-conn")
    );
    let (s, v) = json(h.c.get(&url).bearer_auth(&tok).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert!(v["properties"].get("parameterValues").is_none());
    assert!(!v.to_string().contains("pay-secret-1"));
    assert_eq!(v["properties"]["statuses"][0]["status"], "Connected");
    // PATCH of anything inside `properties` is refused, as ARM does; tags alone are accepted.
    let (s, v) = call(
        h.c.patch(&url)
            .bearer_auth(&tok)
            .json(&json!({"properties": {"parameterValues": {"token:clientSecret": "wrong"}}})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"]["code"],
        "PatchApiConnectionPropertiesNotSupported"
    );
    assert_eq!(
        v["error"]["message"],
        "The request to patch API connection 'kv-conn' is not supported. None of the fields inside the properties object can be patched."
    );
    let (s, v) = call(
        h.c.patch(&url)
            .bearer_auth(&tok)
            .json(&json!({"tags": {"team": "payments"}})),
    )
    .await;
    assert_eq!((s, v["tags"]["team"].as_str()), (200, Some("payments")));
    assert_eq!(
        c.connection_status("rg", "kv-conn").as_deref(),
        Some("Connected")
    );
    // A full PUT with a wrong secret: the connection reports the AADSTS error.
    let api_id = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Web/locations/westeurope/managedApis/keyvault"
    );
    let (s, v) = call(h.c.put(&url).bearer_auth(&tok).json(&json!({"location": "westeurope", "properties": {
        "api": {"id": api_id},
        "parameterValues": {"token:clientId": PAY_APP, "token:clientSecret": "wrong", "token:TenantId": TENANT}}}))).await;
    assert_eq!(s, 200);
    assert_eq!(v["properties"]["statuses"][0]["status"], "Error");
    assert!(
        v["properties"]["statuses"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS7000215")
    );
    // Non-secret parameters come back in nonSecretParameterValues; the secret never does.
    assert_eq!(
        v["properties"]["nonSecretParameterValues"]["token:clientId"],
        PAY_APP
    );
    assert!(!v.to_string().contains("wrong"));
    // A parameter the managed API does not define is refused.
    let (s, v) = call(h.c.put(&url).bearer_auth(&tok).json(
        &json!({"location": "westeurope", "properties": {
        "api": {"id": api_id},
        "parameterValues": {"token:clientId": PAY_APP, "token:clientSecert": "x"}}}),
    ))
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("ParameterNotDefined"))
    );
    // The managed API's definition says which parameters are secret.
    let (s, v) = call(
        h.c.get(format!(
            "https://management.azure.com{api_id}?api-version=2016-06-01"
        ))
        .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["properties"]["connectionParameters"]["token:clientSecret"]["type"],
        "securestring"
    );
    // PUT replaces the whole resource.
    let (s, _) = json(h.c.put(&url).bearer_auth(&tok).json(&json!({"location": "westeurope", "properties": {
        "api": {"id": format!("/subscriptions/{SUB}/providers/Microsoft.Web/locations/westeurope/managedApis/keyvault")},
        "parameterValues": {"token:clientId": PAY_APP, "token:clientSecret": "pay-secret-1", "token:TenantId": TENANT}}})).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(
        c.connection_status("rg", "kv-conn").as_deref(),
        Some("Connected")
    );
    assert_eq!(c.connection_parameter("rg", "kv-conn", "vaultName"), None);
    // Create → 201; bad body → 400; wrong api-version → 400; unknown → 404; no role → 403.
    let new = format!(
        "{}?api-version=2016-06-01",
        h.arm("Microsoft.Web/connections/new-conn")
    );
    let (s, _) = json(h.c.put(&new).bearer_auth(&tok).json(&json!({"properties": {"api": {"id": "/subscriptions/x/providers/Microsoft.Web/locations/westeurope/managedApis/arm"}}})).send().await.unwrap()).await;
    assert_eq!(s, 201);
    let (s, v) = json(
        h.c.put(&new)
            .bearer_auth(&tok)
            .json(&json!({"properties": {"parameterValues": []}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "InvalidRequestContent")
    );
    let (s, _) = json(
        h.c.get(format!(
            "{}?api-version=2018-07-01-preview",
            h.arm("Microsoft.Web/connections/kv-conn")
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = json(
        h.c.get(format!(
            "{}?api-version=2016-06-01",
            h.arm("Microsoft.Web/connections/none")
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "ResourceNotFound")
    );
    let other = h.mi_token("site-mi", "https://management.azure.com/").await;
    let (s, _) = json(h.c.get(&url).bearer_auth(&other).send().await.unwrap()).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn automation_variables_encoded_and_encrypted() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let base = h.arm("Microsoft.Automation/automationAccounts/aa1/variables");
    let api = "api-version=2024-10-23";
    let (s, v) = json(
        h.c.get(format!("{base}/PaySecret?{api}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["properties"]["isEncrypted"], true);
    assert!(v["properties"].get("value").is_none());
    let (_, v) = json(
        h.c.get(format!("{base}/Plain?{api}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["properties"]["value"], "\"hello\"");
    let (s, v) = json(h.c.put(format!("{base}/PaySecret?{api}")).bearer_auth(&tok)
        .json(&json!({"name": "PaySecret", "properties": {"value": "\"pay-secret-2\"", "isEncrypted": true}})).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains("pay-secret-2"));
    assert_eq!(
        c.automation_variable("rg", "aa1", "PaySecret").as_deref(),
        Some("pay-secret-2")
    );
    let (s, _) = json(
        h.c.put(format!("{base}/Fresh?{api}"))
            .bearer_auth(&tok)
            .json(&json!({"name": "Fresh", "properties": {"value": "42"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = json(
        h.c.patch(format!("{base}/Fresh?{api}"))
            .bearer_auth(&tok)
            .json(&json!({"name": "Fresh", "properties": {"value": "\"x\""}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        c.automation_variable("rg", "aa1", "Fresh").as_deref(),
        Some("x")
    );
    // Typed errors.
    let (s, v) = json(
        h.c.put(format!("{base}/PaySecret?{api}"))
            .bearer_auth(&tok)
            .json(&json!({"properties": {"value": "\"v\""}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("name"));
    let (s, _) = json(h.c.put(format!("{base}/PaySecret?{api}")).bearer_auth(&tok).json(&json!({"name": "PaySecret", "properties": {"value": "\"v\"", "isEncrypted": false}})).send().await.unwrap()).await;
    assert_eq!(s, 400);
    let (s, v) = json(
        h.c.put(format!("{base}/PaySecret?{api}"))
            .bearer_auth(&tok)
            .json(&json!({"name": "PaySecret", "properties": {"value": "not-json"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        !v.to_string().contains("not-json"),
        "encrypted value echoed: {v}"
    );
    let (s, _) = json(
        h.c.get(format!("{base}/Nope?{api}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = json(
        h.c.get(format!("{base}?{api}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    let r =
        h.c.delete(format!("{base}/Fresh?{api}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.automation_variable("rg", "aa1", "Fresh"), None);
}
