//! Entra token endpoint, managed identity endpoint and Graph, driven over real HTTPS.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn tls_trusts_only_the_emulator_ca() {
    let h = start().await;
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .resolve("management.azure.com", h.emu.https_addr())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get("https://management.azure.com/subscriptions")
            .send()
            .await
            .is_err()
    );
    let (s, v) = json(
        h.c.get("https://management.azure.com/subscriptions?api-version=2022-12-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "AuthenticationFailed");
    assert!(
        std::fs::read_to_string(h.emu.ca_path())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(h.emu.host_overrides().len(), 4);
}

#[tokio::test]
async fn entra_client_credentials_success_and_typed_errors() {
    let h = start().await;
    // Form body.
    let r = h
        .sp_token(
            PAY_APP,
            "pay-secret-1",
            "https://graph.microsoft.com/.default",
        )
        .await;
    let (s, v) = json(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["token_type"], "Bearer");
    let tok = v["access_token"].as_str().unwrap();
    let payload = tok.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["appid"], PAY_APP);
    assert_eq!(claims["tid"], TENANT);
    // HTTP Basic.
    let r =
        h.c.post(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
        ))
        .basic_auth(ADMIN_APP, Some("admin-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Errors.
    let cases: [(&str, &str, &str, &str, u16, &str, u64); 5] = [
        (
            TENANT,
            PAY_APP,
            "wrong",
            "https://graph.microsoft.com/.default",
            401,
            "invalid_client",
            7000215,
        ),
        (
            TENANT,
            OTHER_APP,
            "old-secret",
            "https://graph.microsoft.com/.default",
            401,
            "invalid_client",
            7000222,
        ),
        (
            TENANT,
            "99999999-0000-0000-0000-000000000000",
            "x",
            "https://graph.microsoft.com/.default",
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "not-a-tenant.onmicrosoft.com",
            PAY_APP,
            "pay-secret-1",
            "https://graph.microsoft.com/.default",
            400,
            "invalid_tenant",
            90002,
        ),
        (
            TENANT,
            PAY_APP,
            "pay-secret-1",
            "https://graph.microsoft.com/User.Read",
            400,
            "invalid_scope",
            70011,
        ),
    ];
    for (tenant, id, secret, scope, status, error, code) in cases {
        let r =
            h.c.post(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        let (s, v) = json(r).await;
        assert_eq!((s, v["error"].as_str().unwrap()), (status, error), "{v}");
        assert_eq!(v["error_codes"][0], code);
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AADSTS{code}: "))
        );
        assert!(
            !v.to_string().contains(secret)
                || secret == "x"
                || secret == "pay-secret-1" && code == 70011
                || code == 90002
        );
    }
    // Oracle agrees.
    let c = h.emu.control();
    assert_eq!(
        c.check_client_secret(PAY_APP.parse().unwrap(), "pay-secret-1"),
        Ok(())
    );
    assert_eq!(
        c.check_client_secret(OTHER_APP.parse().unwrap(), "old-secret"),
        Err(7000222)
    );
}

#[tokio::test]
async fn openid_configuration_points_back_at_the_same_host() {
    let h = start().await;
    let (s, v) = json(
        h.c.get(format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["token_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    let (s, v) = json(
        h.c.get("https://login.microsoftonline.com/nope/v2.0/.well-known/openid-configuration")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error_codes"][0], 90002);
    let (s, _) = json(
        h.c.get(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/nothing"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn managed_identity_endpoint_selects_identity_by_header() {
    let h = start().await;
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
    let (s, v) = json(r).await;
    assert_eq!(s, 200);
    assert!(v["expires_on"].is_string());
    assert_eq!(v["resource"], "https://vault.azure.net");
    assert_ne!(
        h.emu.identity_header("rotator"),
        h.emu.identity_header("site-mi")
    );
    // Missing header, wrong header, wrong api-version, unknown resource.
    for (hdr, api, res) in [
        (None, "2019-08-01", "https://vault.azure.net"),
        (
            Some("nope".to_string()),
            "2019-08-01",
            "https://vault.azure.net",
        ),
        (
            h.emu.identity_header("rotator"),
            "2017-09-01",
            "https://vault.azure.net",
        ),
        (
            h.emu.identity_header("rotator"),
            "2019-08-01",
            "https://example.com",
        ),
    ] {
        let mut rb =
            h.p.get(h.emu.msi_endpoint())
                .query(&[("api-version", api), ("resource", res)]);
        if let Some(hdr) = hdr {
            rb = rb.header("X-IDENTITY-HEADER", hdr);
        }
        let (s, v) = json(rb.send().await.unwrap()).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].is_string());
    }
}

#[tokio::test]
async fn replication_delay_and_clock_through_the_control_api() {
    let h = start().await;
    let (s, _) = json(
        h.control_post("replication-delay", json!({"seconds": 30}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let (_, before) = json(
        h.p.get(format!("{}/clock", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let (s, pw) = json(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .json(&json!({"passwordCredential": {"displayName": "rotator:test"}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let secret = pw["secretText"].as_str().unwrap().to_string();
    let (s, v) = json(
        h.sp_token(PAY_APP, &secret, "https://graph.microsoft.com/.default")
            .await,
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error_codes"][0], 7000215);
    let (s, after) = json(
        h.control_post("clock/advance", json!({"seconds": 31}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert!(after["now"].as_str().unwrap() > before["now"].as_str().unwrap());
    let (s, _) = json(
        h.sp_token(PAY_APP, &secret, "https://graph.microsoft.com/.default")
            .await,
    )
    .await;
    assert_eq!(s, 200);
    // Bad control bodies are 400 with a message.
    let (s, v) = json(h.control_post("clock/advance", json!({"secs": 1})).await).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("seconds"));
    let (s, _) = json(
        h.control_post("clock/advance", json!({"seconds": -5}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn graph_applications_list_get_select_filter_paging() {
    let h = start().await;
    let admin = h
        .sp_access_token(
            ADMIN_APP,
            "admin-secret",
            "https://graph.microsoft.com/.default",
        )
        .await;
    let (s, v) = json(
        h.c.get(
            "https://graph.microsoft.com/v1.0/applications?$select=id,appId,displayName&$top=2",
        )
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert!(v["value"][0].get("passwordCredentials").is_none());
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with("https://graph.microsoft.com/v1.0/applications?"));
    let (s, v2) = json(h.c.get(next).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v2["value"].as_array().unwrap().len(), 1);
    assert!(v2.get("@odata.nextLink").is_none());
    let (s, v) = json(
        h.c.get(format!(
            "https://graph.microsoft.com/v1.0/applications?$filter=appId eq '{PAY_APP}'"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert_eq!(v["value"][0]["passwordCredentials"][0]["hint"], "pay");
    assert!(v["value"][0]["passwordCredentials"][0]["secretText"].is_null());
    for bad in ["$top=1000", "$filter=foo eq 'x'", "$select=nope"] {
        let (s, v) = json(
            h.c.get(format!(
                "https://graph.microsoft.com/v1.0/applications?{bad}"
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"]["code"].is_string());
    }
    let (s, v) = json(h.c.get(format!("https://graph.microsoft.com/v1.0/applications(appId='{PAY_APP}')?$select=id,passwordCredentials")).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["id"], PAY_OBJ);
    // Kiota percent-encodes the quotes of the key segment.
    let r =
        h.c.get(format!(
            "https://graph.microsoft.com/v1.0/applications(appId=%27{PAY_APP}%27)"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = json(
        h.c.get(format!(
            "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, v["appId"].as_str().unwrap()), (200, PAY_APP));
    let (s, v) = json(
        h.c.get(
            "https://graph.microsoft.com/v1.0/applications/00000000-0000-0000-0000-00000000dead",
        )
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "Request_ResourceNotFound")
    );
    let (s, v) = json(
        h.c.get("https://graph.microsoft.com/v1.0/users")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"]["message"],
        "Resource not found for the segment 'users'."
    );
    let (s, v) = json(
        h.c.get("https://graph.microsoft.com/v1.0/applications")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationToken")
    );
    // A vault token is not a Graph token.
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let (s, _) = json(
        h.c.get("https://graph.microsoft.com/v1.0/applications")
            .bearer_auth(&kv)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    // Token lifetimes run on the wall clock (README: "Clocks"): a jump of the emulated clock
    // leaves a token that any real token cache would still hold valid.
    h.emu.control().advance(chrono::Duration::days(8));
    let (s, _) = json(
        h.c.get("https://graph.microsoft.com/v1.0/applications")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // A token that is not one of ours is refused with Graph's 401.
    let (s, v) = json(
        h.c.get("https://graph.microsoft.com/v1.0/applications")
            .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2ln")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn graph_add_remove_password_owned_by_and_owners() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let url = format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}");
    let (s, v) = json(h.c.post(format!("{url}/addPassword")).bearer_auth(&tok)
        .json(&json!({"passwordCredential": {"displayName": "rotator:2026-01-01", "endDateTime": "2026-07-01T00:00:00Z"}})).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    let secret = v["secretText"].as_str().unwrap();
    assert_eq!(v["hint"].as_str().unwrap(), &secret[..3]);
    assert_eq!(v["endDateTime"], "2026-07-01T00:00:00Z");
    let key_id = v["keyId"].as_str().unwrap().to_string();
    let pws = c.passwords(PAY_APP.parse().unwrap());
    assert_eq!(pws.len(), 2);
    assert!(pws.iter().any(
        |p| p.secret_text == secret && p.display_name.as_deref() == Some("rotator:2026-01-01")
    ));
    // secretText never again.
    let (_, app) = json(h.c.get(&url).bearer_auth(&tok).send().await.unwrap()).await;
    assert!(!app.to_string().contains(secret));
    // Typed errors: bad body, caller-chosen keyId, not owner, unknown keyId.
    let (s, _) = json(
        h.c.post(format!("{url}/addPassword"))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = json(
        h.c.post(format!("{url}/addPassword"))
            .bearer_auth(&tok)
            .json(&json!({"passwordCredential": {"secretText": "mine"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = json(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{OTHER_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (403, "Authorization_RequestDenied")
    );
    let (s, _) = json(
        h.c.get(format!(
            "https://graph.microsoft.com/v1.0/applications/{OTHER_OBJ}"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = json(
        h.c.post(format!("{url}/removePassword"))
            .bearer_auth(&tok)
            .json(&json!({"keyId": "00000000-0000-0000-0000-000000000009"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "Request_ResourceNotFound")
    );
    let r =
        h.c.post(format!("{url}/removePassword"))
            .bearer_auth(&tok)
            .json(&json!({"keyId": key_id}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.passwords(PAY_APP.parse().unwrap()).len(), 1);
    // Owned objects: what an OwnedBy rotator enumerates.
    let (s, v) = json(
        h.c.get(format!(
            "https://graph.microsoft.com/v1.0/servicePrincipals/{ROTATOR_OID}/ownedObjects"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert_eq!(v["value"][0]["@odata.type"], "#microsoft.graph.application");
    // Kiota's doubled slash and the `graph.` cast alias are accepted; other casts are not.
    let r = h.c.get(format!("https://graph.microsoft.com/v1.0//servicePrincipals/{ROTATOR_OID}/ownedObjects/graph.application")).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = h.c.get(format!("https://graph.microsoft.com/v1.0/servicePrincipals/{ROTATOR_OID}/ownedObjects/microsoft.graph.group")).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // OwnedBy list shows only owned apps.
    let (_, v) = json(
        h.c.get("https://graph.microsoft.com/v1.0/applications")
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    // Owners: the rotator cannot add itself to other-app; the admin can.
    let body = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{ROTATOR_OID}")});
    let other = format!("https://graph.microsoft.com/v1.0/applications/{OTHER_OBJ}/owners");
    let (s, _) = json(
        h.c.post(format!("{other}/$ref"))
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    let admin = h
        .sp_access_token(
            ADMIN_APP,
            "admin-secret",
            "https://graph.microsoft.com/.default",
        )
        .await;
    let r =
        h.c.post(format!("{other}/$ref"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = json(h.c.get(&other).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["value"][0]["id"], ROTATOR_OID);
    let (s, _) = json(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{OTHER_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn graph_write_quota_answers_429_with_retry_after() {
    let mut sc = scenario_json();
    sc["graphWriteQuota"] = json!({"requests": 2, "windowSeconds": 60});
    sc["maxPasswordLifetimeDays"] = json!(180);
    let h = start_with(serde_json::from_value(sc).unwrap()).await;
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let url = format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword");
    let (s, v) = json(
        h.c.post(&url)
            .bearer_auth(&tok)
            .json(&json!({"passwordCredential": {"endDateTime": "2027-01-01T00:00:00Z"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "CredentialInvalidLifetimeAsPerAppPolicy")
    );
    let short = json!({"passwordCredential": {"endDateTime": "2026-03-01T00:00:00Z"}});
    for _ in 0..2 {
        let r =
            h.c.post(&url)
                .bearer_auth(&tok)
                .json(&short)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r =
        h.c.post(&url)
            .bearer_auth(&tok)
            .json(&short)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 429);
    let ra: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&ra));
    let (_, v) = json(r).await;
    assert_eq!(v["error"]["code"], "TooManyRequests");
    h.emu.control().advance(chrono::Duration::seconds(61));
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let r =
        h.c.post(&url)
            .bearer_auth(&tok)
            .json(&short)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn instance_discovery_points_at_the_requested_tenant() {
    let h = start().await;
    let (s, v) = json(
        h.c.get("https://login.microsoftonline.com/common/discovery/instance")
            .query(&[
                ("api-version", "1.1"),
                (
                    "authorization_endpoint",
                    &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"),
                ),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let next = v["tenant_discovery_endpoint"].as_str().unwrap();
    assert_eq!(
        next,
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let (s, _) = json(h.c.get(next).send().await.unwrap()).await;
    assert_eq!(s, 200);
}

/// A leaf issued for another local HTTPS server (Azurite) is trusted by a client that trusts
/// only the emulator CA.
#[tokio::test]
async fn issued_server_cert_is_trusted_through_the_emulator_ca() {
    use rustls::pki_types::pem::PemObject;
    let h = start().await;
    let (cert, key) = h
        .emu
        .issue_server_cert(&["127.0.0.1".into(), "localhost".into()])
        .unwrap();
    assert!(h.emu.issue_server_cert(&[]).is_err());
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tls.read(&mut buf).await.unwrap();
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
        tls.shutdown().await.ok();
    });
    let r =
        h.c.get(format!("https://localhost:{}/", addr.port()))
            .send()
            .await;
    // `localhost` is resolved by the system; fall back to the IP name if it is not.
    let r = match r {
        Ok(r) => r,
        Err(_) => {
            h.c.get(format!("https://127.0.0.1:{}/", addr.port()))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(r.text().await.unwrap(), "ok");
    server.await.unwrap();
}
