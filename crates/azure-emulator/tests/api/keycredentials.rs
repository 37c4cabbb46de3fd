//! Graph keyCredentials (`PATCH` replacing the collection, `addKey` / `removeKey` with a
//! proof-of-possession JWT) and the token endpoint's client assertion, every signature made by
//! Key Vault's `sign` of an emulated certificate's key.

use crate::certificates::{cert_scenario, create_completed, policy};
use crate::support::*;
use azure_emulator::crypto;
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

const API: &str = "api-version=7.5";
const GRAPH: &str = "https://graph.microsoft.com/v1.0";

fn b64url(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A compact JWT whose signature Key Vault made with the key `kid`.
pub async fn kv_jwt(
    h: &H,
    tok: &str,
    kid: &str,
    alg: &str,
    header: Value,
    claims: Value,
) -> String {
    let mut header = header;
    header["alg"] = json!(alg);
    header["typ"] = json!("JWT");
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let (s, v) = call(
        h.c.post(format!("{kid}/sign?{API}"))
            .bearer_auth(tok)
            .json(&json!({"alg": alg, "value": b64url(&sha2::Sha256::digest(input.as_bytes()))})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    format!("{input}.{}", v["value"].as_str().unwrap())
}

pub fn cer_of(cert: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(cert["cer"].as_str().unwrap())
        .unwrap()
}

pub fn key_credential(cert: &Value, name: &str) -> Value {
    json!({"type": "AsymmetricX509Cert", "usage": "Verify", "key": cert["cer"], "displayName": name})
}

/// JWTs are stamped with the machine's clock, as real clients stamp them (the emulated clock
/// only governs key validity and replication).
pub async fn wall_now(_h: &H) -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn proof_claims(now: i64, iss: &str, lifetime: i64) -> Value {
    json!({"aud": "00000002-0000-0000-c000-000000000000", "iss": iss, "nbf": now, "exp": now + lifetime})
}

pub fn assertion_claims(now: i64, app: &str) -> Value {
    json!({
        "aud": format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
        "iss": app, "sub": app, "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now, "exp": now + 600,
    })
}

pub async fn assertion_token(h: &H, assertion: &str) -> (u16, Value) {
    call(
        h.c.post(format!(
            "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", PAY_APP),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", "https://graph.microsoft.com/.default"),
        ]),
    )
    .await
}

async fn key_ids(h: &H, graph: &str) -> Vec<String> {
    let (s, v) = call(
        h.c.get(format!(
            "{GRAPH}/applications/{PAY_OBJ}?$select=keyCredentials"
        ))
        .bearer_auth(graph),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["keyCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn certificate_lifecycle_on_the_application_patch_assertion_add_key_remove_key() {
    let h = start_with(cert_scenario()).await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let first = create_completed(
        &h,
        &kv,
        "pay-cert",
        &policy("RSA", Some(2048), true, "application/x-pkcs12"),
    )
    .await;
    let first_kid = first["kid"].as_str().unwrap();

    // PATCH replaces the collection: the owner writes the first certificate.
    let (s, v) = call(
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredentials": [key_credential(&first, "first")]})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let (_, app) = call(
        h.c.get(format!(
            "{GRAPH}/applications/{PAY_OBJ}?$select=keyCredentials"
        ))
        .bearer_auth(&graph),
    )
    .await;
    assert_eq!(app["keyCredentials"][0]["key"], first["cer"]);
    let (_, app) = call(
        h.c.get(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph),
    )
    .await;
    assert_eq!(app["keyCredentials"][0]["key"], Value::Null);
    let first_id = app["keyCredentials"][0]["keyId"]
        .as_str()
        .unwrap()
        .to_string();

    // A client assertion signed in Key Vault (PS256, x5t#S256) gets a token.
    let now = wall_now(&h).await;
    let header = json!({"x5t#S256": crypto::x5t_s256(&cer_of(&first))});
    let a = kv_jwt(
        &h,
        &kv,
        first_kid,
        "PS256",
        header.clone(),
        assertion_claims(now, PAY_APP),
    )
    .await;
    let (s, v) = assertion_token(&h, &a).await;
    assert_eq!(s, 200, "{v}");

    // addKey: the second certificate, proven by the first one's key.
    let second = create_completed(
        &h,
        &kv,
        "pay-cert-2",
        &policy("RSA", Some(2048), true, "application/x-pkcs12"),
    )
    .await;
    let now = wall_now(&h).await;
    let add = |proof: String| json!({"keyCredential": key_credential(&second, "second"), "passwordCredential": null, "proof": proof});
    // Refused proofs: too long-lived, issuer = appId, signed by the key being added.
    for (kid, claims) in [
        (first_kid, proof_claims(now, PAY_OBJ, 660)),
        (first_kid, proof_claims(now, PAY_APP, 600)),
        (
            second["kid"].as_str().unwrap(),
            proof_claims(now, PAY_OBJ, 600),
        ),
    ] {
        let p = kv_jwt(&h, &kv, kid, "RS256", json!({}), claims).await;
        let (s, v) = call(
            h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/addKey"))
                .bearer_auth(&graph)
                .json(&add(p)),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("Authentication_MissingOrMalformed")),
            "{v}"
        );
    }
    let p = kv_jwt(
        &h,
        &kv,
        first_kid,
        "RS256",
        json!({}),
        proof_claims(now, PAY_OBJ, 600),
    )
    .await;
    let (s, v) = call(
        h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/addKey"))
            .bearer_auth(&graph)
            .json(&add(p)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let second_id = v["keyId"].as_str().unwrap().to_string();
    assert_eq!(
        key_ids(&h, &graph).await,
        vec![first_id.clone(), second_id.clone()]
    );

    // removeKey of the first, proven by the second.
    let p = kv_jwt(
        &h,
        &kv,
        second["kid"].as_str().unwrap(),
        "RS256",
        json!({}),
        proof_claims(now, PAY_OBJ, 600),
    )
    .await;
    let (s, v) = call(
        h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/removeKey"))
            .bearer_auth(&graph)
            .json(&json!({"keyId": first_id, "proof": p})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    assert_eq!(key_ids(&h, &graph).await, vec![second_id]);
    // The removed key's assertions are refused now.
    let a = kv_jwt(
        &h,
        &kv,
        first_kid,
        "PS256",
        header,
        assertion_claims(now, PAY_APP),
    )
    .await;
    let (s, v) = assertion_token(&h, &a).await;
    assert_eq!(
        (s, v["error_codes"][0].as_u64()),
        (401, Some(700027)),
        "{v}"
    );
}

#[tokio::test]
async fn assertions_are_refused_with_entras_codes() {
    let h = start_with(cert_scenario()).await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let cert = create_completed(
        &h,
        &kv,
        "pay-cert",
        &policy("RSA", None, true, "application/x-pkcs12"),
    )
    .await;
    let other = create_completed(
        &h,
        &kv,
        "stray",
        &policy("RSA", None, true, "application/x-pkcs12"),
    )
    .await;
    let kid = cert["kid"].as_str().unwrap();
    h.control_post("replication-delay", json!({"seconds": 60}))
        .await;
    let (s, _) = call(
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredentials": [key_credential(&cert, "c")]})),
    )
    .await;
    assert_eq!(s, 204);
    let x5t = json!({"x5t": crypto::x5t(&cer_of(&cert))});
    let now = wall_now(&h).await;
    // Not replicated yet: the key is not found.
    let a = kv_jwt(
        &h,
        &kv,
        kid,
        "RS256",
        x5t.clone(),
        assertion_claims(now, PAY_APP),
    )
    .await;
    let (s, v) = assertion_token(&h, &a).await;
    assert_eq!((s, v["error_codes"][0].as_u64()), (401, Some(700027)));
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("The key was not found")
    );
    h.control_post("clock/advance", json!({"seconds": 60}))
        .await;
    let now = wall_now(&h).await;
    let good = assertion_claims(now, PAY_APP);
    let a = kv_jwt(&h, &kv, kid, "RS256", x5t.clone(), good.clone()).await;
    assert_eq!(assertion_token(&h, &a).await.0, 200);

    let mut expired = good.clone();
    expired["exp"] = json!(now - 1);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("https://login.microsoftonline.com/common/oauth2/v2.0/token");
    let mut no_jti = good.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    for (header, claims, code) in [
        (x5t.clone(), expired, 700024),
        (x5t.clone(), wrong_aud, 50012),
        (x5t.clone(), no_jti, 50027),
        (
            json!({"x5t": crypto::x5t(&cer_of(&other))}),
            good.clone(),
            700027,
        ),
    ] {
        let a = kv_jwt(&h, &kv, kid, "RS256", header, claims).await;
        let (s, v) = assertion_token(&h, &a).await;
        assert_eq!((s, v["error_codes"][0].as_u64()), (401, Some(code)), "{v}");
    }
    // Named as the registered key but signed by another: the signature does not verify.
    let a = kv_jwt(&h, &kv, other["kid"].as_str().unwrap(), "RS256", x5t, good).await;
    let (s, v) = assertion_token(&h, &a).await;
    assert_eq!((s, v["error_codes"][0].as_u64()), (401, Some(700027)));
    // The key credential has expired.
    h.control_post("clock/advance", json!({"seconds": 200 * 86400}))
        .await;
    let now = wall_now(&h).await;
    let a = kv_jwt(
        &h,
        &kv,
        kid,
        "RS256",
        json!({"x5t": crypto::x5t(&cer_of(&cert))}),
        assertion_claims(now, PAY_APP),
    )
    .await;
    let (_, v) = assertion_token(&h, &a).await;
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("The key used is expired"),
        "{v}"
    );
}

#[tokio::test]
async fn tenant_policy_caps_certificate_lifetime_and_patch_needs_keys() {
    let mut s = serde_json::to_value(cert_scenario()).unwrap();
    s["appManagementPolicy"] = json!({"maxCertificateLifetimeDays": 90});
    let h = start_with(serde_json::from_value(s).unwrap()).await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let cert = create_completed(
        &h,
        &kv,
        "long",
        &policy("RSA", None, true, "application/x-pkcs12"),
    )
    .await;
    let (s, v) = call(
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredentials": [key_credential(&cert, "six months")]})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("CredentialInvalidLifetimeAsPerAppPolicy"))
    );
    // An entry without its key cannot be written back (read with $select to keep others).
    let (s, v) = call(
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": null}]})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // addKey on an app without any valid certificate: no proof can be valid.
    let now = wall_now(&h).await;
    let p = kv_jwt(
        &h,
        &kv,
        cert["kid"].as_str().unwrap(),
        "RS256",
        json!({}),
        proof_claims(now, PAY_OBJ, 600),
    )
    .await;
    let (s, _) = call(
        h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/addKey"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredential": key_credential(&cert, "x"), "proof": p})),
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn an_application_past_its_key_credential_limit_is_refused_as_graph_refuses_it() {
    let mut s = serde_json::to_value(cert_scenario()).unwrap();
    s["keyCredentialLimit"] = json!(1);
    let h = start_with(serde_json::from_value(s).unwrap()).await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    let a = create_completed(&h, &kv, "a", &body).await;
    let b = create_completed(&h, &kv, "b", &body).await;
    let patch = |keys: Vec<Value>| {
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(&graph)
            .json(&json!({ "keyCredentials": keys }))
    };
    let (s, v) = call(patch(vec![key_credential(&a, "a")])).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = call(patch(vec![
        key_credential(&a, "a"),
        key_credential(&b, "b"),
    ]))
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("Directory_ResourceSizeExceeded"))
    );
    // addKey, with a valid proof, is refused the same way; the collection is unchanged.
    let now = wall_now(&h).await;
    let p = kv_jwt(
        &h,
        &kv,
        a["kid"].as_str().unwrap(),
        "RS256",
        json!({}),
        proof_claims(now, PAY_OBJ, 600),
    )
    .await;
    let (s, v) = call(
        h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/addKey"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredential": key_credential(&b, "b"), "proof": p})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("Directory_ResourceSizeExceeded"))
    );
    assert_eq!(key_ids(&h, &graph).await.len(), 1);
}
