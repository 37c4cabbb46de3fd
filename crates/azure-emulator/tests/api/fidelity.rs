//! What the emulator refuses because Azure does, and the uncertainty variants a scenario selects
//! (README "Sources" and "Uncertainties").

use crate::support::*;
use azure_emulator::scenario::{ActiveVersion, ConnectionPut, Scenario, Uncertainties};
use serde_json::json;

const WEB: &str = "api-version=2024-11-01";

fn with(u: Uncertainties, slots: bool) -> Scenario {
    let mut s = scenario_json();
    s["uncertainties"] = serde_json::to_value(u).unwrap();
    if slots {
        let mut slot = s["sites"][0].clone();
        slot["slot"] = json!("staging");
        slot["appSettings"] = json!({"PAY_SECRET": "@Microsoft.KeyVault(VaultName=kv1;SecretName=payments-secret)", "ONLY_IN_SLOT": "1"});
        s["sites"].as_array_mut().unwrap().push(slot);
    }
    serde_json::from_value(s).unwrap()
}

#[tokio::test]
async fn unknown_api_versions_wrong_media_types_and_unframed_posts_are_refused() {
    let h = start().await;
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let site = h.arm("Microsoft.Web/sites/app1");
    let (s, v) = call(
        h.c.get(format!("{site}?api-version=2099-01-01"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2024-11-01")
    );
    let (s, v) = call(
        h.c.put(format!("{site}/config/appsettings?{WEB}"))
            .bearer_auth(&tok)
            .header("content-type", "text/plain")
            .body(r#"{"properties":{"A":"1"}}"#),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (s, v) = call(h.c.post(format!("{site}/restart?{WEB}")).bearer_auth(&tok)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (411, Some("LengthRequired"))
    );
}

#[tokio::test]
async fn add_password_without_a_body_is_refused_as_graph_does() {
    let h = start().await;
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let (s, v) = call(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .header("content-length", "0"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"]["message"],
        "Empty Payload. JSON content expected."
    );
}

#[tokio::test]
async fn slot_routes_are_served_like_site_routes() {
    let h = start_with(with(Uncertainties::default(), true)).await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let slot = h.arm("Microsoft.Web/sites/app1/slots/staging");
    let (s, v) = call(h.c.get(format!("{slot}?{WEB}")).bearer_auth(&tok)).await;
    assert_eq!((s, v["name"].as_str()), (200, Some("app1/staging")));
    assert_eq!(v["type"], "Microsoft.Web/sites/slots");
    let (s, v) = call(
        h.c.post(format!("{slot}/config/appsettings/list?{WEB}"))
            .bearer_auth(&tok)
            .header("content-length", "0"),
    )
    .await;
    assert_eq!(
        (s, v["properties"]["ONLY_IN_SLOT"].as_str()),
        (200, Some("1"))
    );
    let (s, _) = call(
        h.c.put(format!("{slot}/config/appsettings?{WEB}"))
            .bearer_auth(&tok)
            .json(&json!({"properties": {"NEW": "2"}})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        c.app_setting("rg", "app1/slots/staging", "NEW").as_deref(),
        Some("2")
    );
    assert_eq!(
        c.app_setting("rg", "app1", "NEW"),
        None,
        "the site is another resource"
    );
    let (s, _) = call(
        h.c.get(format!(
            "{}?{WEB}",
            h.arm("Microsoft.Web/sites/app1/slots/nope")
        ))
        .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn connection_put_refused_variant_answers_like_the_patch_refusal() {
    let u = Uncertainties {
        connection_put: ConnectionPut::Refused,
        ..Default::default()
    };
    let h = start_with(with(u, false)).await;
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let url = format!(
        "{}?api-version=2016-06-01",
        h.arm("Microsoft.Web/connections/kv-conn")
    );
    let api = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Web/locations/westeurope/managedApis/keyvault"
    );
    let (s, v) = call(
        h.c.put(&url)
            .bearer_auth(&tok)
            .json(&json!({"location": "westeurope", "properties": {
        "api": {"id": api}, "parameterValues": {"token:clientSecret": "x"}}})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("PatchApiConnectionPropertiesNotSupported"))
    );
    assert_eq!(
        h.emu
            .control()
            .connection_parameter("rg", "kv-conn", "token:clientSecret")
            .as_deref(),
        Some("pay-secret-1")
    );
}

async fn refresh_and_read(h: &H, tok: &str) -> serde_json::Value {
    let site = h.arm("Microsoft.Web/sites/app1");
    let r =
        h.c.post(format!(
            "{site}/config/configreferences/appsettings/refresh?{WEB}"
        ))
        .bearer_auth(tok)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = call(
        h.c.get(format!(
            "{site}/config/configreferences/appsettings/PAY_SECRET?{WEB}"
        ))
        .bearer_auth(tok),
    )
    .await;
    v
}

#[tokio::test]
async fn active_version_variants_present_absent_late() {
    let kv_write = |h: &H| {
        let st = h.emu.control();
        st.secret_latest("kv1", "payments-secret").unwrap().0
    };
    // absent: never in the answer.
    let h = start_with(with(
        Uncertainties {
            reference_active_version: ActiveVersion::Absent,
            ..Default::default()
        },
        false,
    ))
    .await;
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let v = refresh_and_read(&h, &tok).await;
    assert_eq!(v["properties"]["status"], "Resolved");
    assert!(v["properties"].get("activeVersion").is_none());
    // late: the previous resolution until the resolve delay has passed.
    let u = Uncertainties {
        reference_active_version: ActiveVersion::Late,
        reference_resolve_seconds: Some(60),
        ..Default::default()
    };
    let h = start_with(with(u, false)).await;
    let tok = h.mi_token("rotator", "https://management.azure.com/").await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let before = kv_write(&h);
    let r =
        h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=7.5")
            .bearer_auth(&kv)
            .json(&json!({"value": "pay-secret-2"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let after = kv_write(&h);
    let v = refresh_and_read(&h, &tok).await;
    assert_eq!(v["properties"]["activeVersion"], before.as_str());
    h.emu.control().advance(chrono::Duration::seconds(61));
    let (_, v) = call(
        h.c.get(format!(
            "{}/config/configreferences/appsettings/PAY_SECRET?{WEB}",
            h.arm("Microsoft.Web/sites/app1")
        ))
        .bearer_auth(&tok),
    )
    .await;
    assert_eq!(v["properties"]["activeVersion"], after.as_str());
}

#[tokio::test]
async fn graph_read_lag_hides_a_new_password_from_reads_only() {
    let u = Uncertainties {
        graph_read_lag_seconds: 30,
        ..Default::default()
    };
    let h = start_with(with(u, false)).await;
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let (s, added) = call(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .json(&json!({"passwordCredential": {"displayName": "new"}})),
    )
    .await;
    assert_eq!(s, 200);
    let key = added["keyId"].as_str().unwrap().to_string();
    let read = |h: &H, tok: String| {
        let c = h.c.clone();
        async move {
            let (_, v) = call(
                c.get(format!(
                    "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}"
                ))
                .bearer_auth(tok),
            )
            .await;
            v["passwordCredentials"].to_string()
        }
    };
    assert!(
        !read(&h, tok.clone()).await.contains(&key),
        "not yet visible"
    );
    h.emu.control().advance(chrono::Duration::seconds(31));
    assert!(
        read(&h, tok.clone()).await.contains(&key),
        "visible after the lag"
    );
}
