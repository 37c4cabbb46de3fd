//! Key Vault secrets over real HTTPS, including the official Rust SDK's challenge flow.

use crate::support::*;
use serde_json::json;

const KV: &str = "https://kv1.vault.azure.net";
const API: &str = "api-version=2025-07-01";

#[tokio::test]
async fn challenge_comes_before_the_body_and_api_version() {
    let h = start().await;
    let r =
        h.c.put(format!("{KV}/secrets/new-one?{API}"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
    let wa = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        wa,
        format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", resource=\"https://vault.azure.net\""
        )
    );
    let (_, v) = json(r).await;
    assert_eq!(v["error"]["code"], "Unauthorized");
    // Even without api-version the challenge wins.
    let r = h.c.get(format!("{KV}/secrets/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let (s, v) = json(
        h.c.get(format!("{KV}/secrets/payments-secret"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "BadParameter")
    );
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets/payments-secret?api-version=1.0"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    for api in ["7.4", "7.6", "2026-03-01-preview"] {
        let (s, _) = json(
            h.c.get(format!("{KV}/secrets/payments-secret?api-version={api}"))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{api}");
    }
    // Wrong audience: 401 with the challenge again.
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let r =
        h.c.get(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&graph)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Unknown vault.
    let (s, v) = json(
        h.c.get(format!("https://nokv.vault.azure.net/secrets/a?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "VaultNotFound")
    );
}

#[tokio::test]
async fn set_get_list_update_delete_recover_purge() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let (s, v) = json(h.c.put(format!("{KV}/secrets/payments-secret?{API}")).bearer_auth(&tok)
        .json(&json!({"value": "pay-secret-2", "contentType": "text/plain", "tags": {"keyId": "k2"}, "attributes": {"exp": 1800000000}})).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap();
    let ver = id.rsplit('/').next().unwrap().to_string();
    assert_eq!(ver.len(), 32);
    assert!(
        ver.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(v["attributes"]["exp"], 1800000000);
    assert!(v["attributes"]["created"].is_i64());
    assert_eq!(c.secret_latest("kv1", "payments-secret").unwrap().0, ver);
    for path in ["payments-secret", "payments-secret/"] {
        let (s, v) = json(
            h.c.get(format!("{KV}/secrets/{path}?{API}"))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, v["value"].as_str().unwrap()), (200, "pay-secret-2"));
    }
    let (s, v) = json(
        h.c.get(format!(
            "{KV}/secrets/payments-secret/0123456789abcdef0123456789abcdef?{API}"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, v["value"].as_str().unwrap()), (200, "pay-secret-0"));
    let (s, v) = json(
        h.c.get(format!(
            "{KV}/secrets/payments-secret/ffffffffffffffffffffffffffffffff?{API}"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "SecretNotFound")
    );
    let (s, v) = json(
        h.c.get(format!("{KV}/secrets/missing?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "SecretNotFound")
    );
    let (s, _) = json(
        h.c.put(format!("{KV}/secrets/bad_name?{API}"))
            .bearer_auth(&tok)
            .json(&json!({"value": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = json(
        h.c.put(format!("{KV}/secrets/ok-name?{API}"))
            .bearer_auth(&tok)
            .json(&json!({"nothing": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    // Versions with paging: 3 versions, one per page.
    let mut url = format!("{KV}/secrets/payments-secret/versions?{API}&maxresults=1");
    let mut seen = vec![];
    loop {
        let (s, v) = json(h.c.get(&url).bearer_auth(&tok).send().await.unwrap()).await;
        assert_eq!(s, 200, "{v}");
        for item in v["value"].as_array().unwrap() {
            assert!(item.get("value").is_none());
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match v["nextLink"].as_str() {
            Some(n) => {
                assert!(n.starts_with("https://kv1.vault.azure.net:443/"));
                url = n.to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets?{API}&maxresults=26"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = json(
        h.c.get(format!("{KV}/secrets?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["value"][0]["id"],
        "https://kv1.vault.azure.net/secrets/payments-secret"
    );
    // PATCH: disable the old version; answer has no value.
    let (s, v) = json(
        h.c.patch(format!(
            "{KV}/secrets/payments-secret/0123456789abcdef0123456789abcdef?{API}"
        ))
        .bearer_auth(&tok)
        .json(&json!({"attributes": {"enabled": false}, "tags": {"state": "retired"}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v.get("value").is_none());
    assert_eq!(v["tags"]["state"], "retired");
    let (s, v) = json(
        h.c.get(format!(
            "{KV}/secrets/payments-secret/0123456789abcdef0123456789abcdef?{API}"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["innererror"]["code"].as_str().unwrap()),
        (403, "SecretDisabled")
    );
    let (s, _) = json(
        h.c.patch(format!(
            "{KV}/secrets/payments-secret/0123456789abcdef0123456789abcdef?{API}"
        ))
        .bearer_auth(&tok)
        .json(&json!({"attributes": {"enabled": "no"}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    // Delete, conflict on set, get deleted, recover, delete again, purge.
    let (s, v) = json(
        h.c.delete(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["recoveryId"],
        "https://kv1.vault.azure.net/deletedsecrets/payments-secret"
    );
    assert!(v["scheduledPurgeDate"].is_i64());
    let (s, v) = json(
        h.c.put(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .json(&json!({"value": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["innererror"]["code"].as_str().unwrap()),
        (409, "ObjectIsDeletedButRecoverable")
    );
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = json(
        h.c.get(format!("{KV}/deletedsecrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = json(
        h.c.post(format!("{KV}/deletedsecrets/payments-secret/recover?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        c.secret_latest("kv1", "payments-secret").unwrap().1,
        "pay-secret-2"
    );
    let (s, _) = json(
        h.c.delete(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let r =
        h.c.delete(format!("{KV}/deletedsecrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = json(
        h.c.get(format!("{KV}/deletedsecrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "SecretNotFound")
    );
    let (s, _) = json(
        h.c.put(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .json(&json!({"value": "fresh"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn rbac_per_vault_answers_forbidden_by_rbac() {
    let h = start().await;
    // site-mi is Secrets User on rg: may read kv1, may not write.
    let user = h.mi_token("site-mi", "https://vault.azure.net").await;
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json(
        h.c.put(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&user)
            .json(&json!({"value": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(v["error"]["code"], "Forbidden");
    assert_eq!(v["error"]["innererror"]["code"], "ForbiddenByRbac");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("setSecret/action")
    );
    // rotator has no role on kv2 (another resource group).
    let rot = h.mi_token("rotator", "https://vault.azure.net").await;
    let (s, _) = json(
        h.c.get(format!("https://kv2.vault.azure.net/secrets/s?{API}"))
            .bearer_auth(&rot)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
}

/// The official Rust SDK (azure_identity + azure_security_keyvault_secrets) against the
/// emulator: client-secret credential from the emulated Entra, challenge flow, set and get.
#[tokio::test]
async fn official_rust_sdk_set_and_get() {
    use azure_core::http::{ClientOptions, Transport};
    use azure_security_keyvault_secrets::{
        SecretClient, SecretClientOptions, models::SetSecretParameters,
    };
    use std::sync::Arc;

    let mut sc = scenario_json();
    sc["roleAssignments"].as_array_mut().unwrap().push(json!({"principal": "admin-app", "role": "Key Vault Administrator", "scope": "/subscriptions/{sub}"}));
    let h = start_with(serde_json::from_value(sc).unwrap()).await;
    let opts = ClientOptions {
        transport: Some(Transport::new(Arc::new(h.c.clone()))),
        ..Default::default()
    };
    let cred = azure_identity::ClientSecretCredential::new(
        TENANT,
        ADMIN_APP.to_string(),
        azure_core::credentials::Secret::new("admin-secret"),
        Some(azure_identity::ClientSecretCredentialOptions {
            client_options: opts.clone(),
        }),
    )
    .unwrap();
    let client = SecretClient::new(
        KV,
        cred,
        Some(SecretClientOptions {
            client_options: opts,
            ..Default::default()
        }),
    )
    .unwrap();
    let params = SetSecretParameters {
        value: Some("sdk-value".into()),
        ..Default::default()
    };
    let set = client
        .set_secret("sdk-secret", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert!(
        set.id
            .unwrap()
            .starts_with("https://kv1.vault.azure.net/secrets/sdk-secret/")
    );
    let got = client
        .get_secret("sdk-secret", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(got.value.as_deref(), Some("sdk-value"));
    assert_eq!(
        h.emu
            .control()
            .secret_latest("kv1", "sdk-secret")
            .unwrap()
            .1,
        "sdk-value"
    );
    // The first request of the SDK was the bodiless challenge round trip.
    let log = h.emu.control().requests();
    let kv: Vec<_> = log.iter().filter(|r| r.service == "keyvault").collect();
    assert_eq!(kv[0].status, 401);
    assert_eq!(kv[1].status, 200);
}

#[tokio::test]
async fn token_lifetime_is_configurable_for_clock_jumps() {
    let mut sc = scenario_json();
    sc["tokenLifetimeSeconds"] = json!(40 * 86400);
    let h = start_with(serde_json::from_value(sc).unwrap()).await;
    let r =
        h.p.get(h.emu.msi_endpoint())
            .query(&[
                ("api-version", "2019-08-01"),
                ("resource", "https://vault.azure.net"),
            ])
            .header(
                "X-IDENTITY-HEADER",
                h.emu.identity_header("rotator").unwrap(),
            )
            .send()
            .await
            .unwrap();
    let (_, v) = json(r).await;
    let tok = v["access_token"].as_str().unwrap().to_string();
    let exp: i64 = v["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(exp - h.emu.control().now().timestamp() > 39 * 86400);
    h.emu.control().advance(chrono::Duration::days(30));
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // Expiry is checked on the wall clock (README, "Clocks"): even past the lifetime in
    // emulated time the token is good, as it would be for any real token cache.
    h.emu.control().advance(chrono::Duration::days(11));
    let (s, _) = json(
        h.c.get(format!("{KV}/secrets/payments-secret?{API}"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let mut bad = scenario_json();
    bad["tokenLifetimeSeconds"] = json!(5);
    let err = h
        .emu
        .control()
        .load_scenario(serde_json::from_value(bad).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("tokenLifetimeSeconds"));
}

/// Tags within Key Vault's limits (15 per secret, 512 characters per name and value) are kept;
/// one over answers 400 BadParameter "Property has invalid value", on set and on update.
#[tokio::test]
async fn tag_limits_are_enforced_with_key_vaults_answer() {
    let h = start().await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let tags = |n: usize, len: usize| -> serde_json::Value {
        (0..n)
            .map(|i| (format!("t{i}"), json!("v".repeat(len))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let set = |body: serde_json::Value| {
        h.c.put(format!("{KV}/secrets/tagged?{API}"))
            .bearer_auth(&tok)
            .json(&body)
            .send()
    };
    let (s, v) = json(
        set(json!({"value": "x", "tags": tags(15, 512)}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for bad in [tags(16, 1), tags(1, 513)] {
        let (s, v) = json(set(json!({"value": "x", "tags": bad})).await.unwrap()).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["code"], "BadParameter");
        assert_eq!(v["error"]["message"], "Property has invalid value\r\n");
    }
    let (s, v) = json(
        h.c.patch(format!("{KV}/secrets/tagged?{API}"))
            .bearer_auth(&tok)
            .json(&json!({"tags": tags(16, 1)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
}
