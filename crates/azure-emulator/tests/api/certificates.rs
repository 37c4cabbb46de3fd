//! Key Vault certificates and keys: create with a policy (202 + pending operation completing
//! on the emulated clock), get / versions / policy, the certificate's secret (PFX or PEM, with
//! or without the private key) and key, and `sign` verified against the certificate.

use crate::support::*;
use azure_emulator::crypto;
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;

const KV: &str = "https://kv1.vault.azure.net";
const API: &str = "api-version=7.5";

pub fn cert_scenario() -> azure_emulator::Scenario {
    let mut s = scenario_json();
    let scope = "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1";
    for role in ["Key Vault Certificates Officer", "Key Vault Crypto User"] {
        s["roleAssignments"]
            .as_array_mut()
            .unwrap()
            .push(json!({"principal": "rotator", "role": role, "scope": scope}));
    }
    serde_json::from_value(s).unwrap()
}

pub fn policy(kty: &str, size: Option<u32>, exportable: bool, content_type: &str) -> Value {
    let mut kp = json!({"kty": kty, "exportable": exportable, "reuse_key": false});
    if let Some(n) = size {
        kp["key_size"] = json!(n);
    }
    json!({"policy": {
        "key_props": kp,
        "secret_props": {"contentType": content_type},
        "x509_props": {"subject": "CN=payments-api", "validity_months": 6},
        "issuer": {"name": "Self"},
    }})
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub async fn advance(h: &H, seconds: i64) {
    let r = h
        .control_post("clock/advance", json!({"seconds": seconds}))
        .await;
    assert_eq!(r.status(), 200);
}

/// Creates `name` and waits (on the emulated clock) for the operation to complete.
pub async fn create_completed(h: &H, tok: &str, name: &str, body: &Value) -> Value {
    let (s, op) = call(
        h.c.post(format!("{KV}/certificates/{name}/create?{API}"))
            .bearer_auth(tok)
            .json(body),
    )
    .await;
    assert_eq!(s, 202, "{op}");
    advance(h, azure_emulator::certificates::SELF_ISSUE_SECONDS).await;
    let (s, op) = call(
        h.c.get(format!("{KV}/certificates/{name}/pending?{API}"))
            .bearer_auth(tok),
    )
    .await;
    assert_eq!((s, op["status"].as_str()), (200, Some("completed")), "{op}");
    let (s, cert) = call(
        h.c.get(format!("{KV}/certificates/{name}?{API}"))
            .bearer_auth(tok),
    )
    .await;
    assert_eq!(s, 200, "{cert}");
    cert
}

async fn sign(h: &H, tok: &str, kid: &str, alg: &str, digest: &[u8]) -> (u16, Value) {
    call(
        h.c.post(format!("{kid}/sign?{API}"))
            .bearer_auth(tok)
            .json(&json!({"alg": alg, "value": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)})),
    )
    .await
}

/// A JWS whose signature Key Vault made: verifies against the certificate.
async fn jws_signed_in_vault(h: &H, tok: &str, kid: &str, alg: &str) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b.encode(format!(r#"{{"alg":"{alg}"}}"#)),
        b.encode(r#"{"sub":"x"}"#)
    );
    let (s, v) = sign(h, tok, kid, alg, &sha2::Sha256::digest(input.as_bytes())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kid"], kid);
    format!("{input}.{}", v["value"].as_str().unwrap())
}

#[tokio::test]
async fn self_signed_rsa_certificate_is_pending_then_complete_with_pfx_secret_and_signing_key() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    // The emulated clock also runs with the wall clock: the pending-state checks below hold only
    // if they ran within SELF_ISSUE_SECONDS of the create, which a loaded machine may miss.
    let created = std::time::Instant::now();
    let r =
        h.c.post(format!("{KV}/certificates/app-cert/create?{API}"))
            .bearer_auth(&tok)
            .json(&policy("RSA", Some(2048), true, "application/x-pkcs12"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!("{KV}/certificates/app-cert/pending?api-version=7.5")
    );
    let (_, op) = json(r).await;
    assert_eq!(op["status"], "inProgress");
    assert_eq!(op["id"], format!("{KV}/certificates/app-cert/pending"));
    assert!(!op["csr"].as_str().unwrap().is_empty());
    // Not visible before the operation completes.
    let (s, v) = call(
        h.c.get(format!("{KV}/certificates/app-cert?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    let hidden = (s, v["error"]["code"].as_str().map(str::to_string));
    let (s, v) = call(h.c.get(&loc).bearer_auth(&tok)).await;
    let pending = (s, v["status"].as_str().map(str::to_string));
    // A second create while pending is refused.
    let (second, _) = call(
        h.c.post(format!("{KV}/certificates/app-cert/create?{API}"))
            .bearer_auth(&tok)
            .json(&json!({})),
    )
    .await;
    let window =
        std::time::Duration::from_secs(azure_emulator::certificates::SELF_ISSUE_SECONDS as u64);
    if created.elapsed() < window {
        assert_eq!(hidden, (404, Some("CertificateNotFound".to_string())));
        assert_eq!(pending, (200, Some("inProgress".to_string())));
        assert_eq!(second, 409);
    } else {
        eprintln!("pending-state checks skipped: the machine took longer than the issuance");
    }
    advance(&h, azure_emulator::certificates::SELF_ISSUE_SECONDS).await;
    let (s, v) = call(h.c.get(&loc).bearer_auth(&tok)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("completed")));
    assert_eq!(v["target"], format!("{KV}/certificates/app-cert"));

    let (s, cert) = call(
        h.c.get(format!("{KV}/certificates/app-cert?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 200);
    let cer = b64d(cert["cer"].as_str().unwrap());
    assert_eq!(cert["x5t"], crypto::x5t(&cer));
    let info = crypto::parse_cert(&cer).unwrap();
    assert_eq!(info.jwk["kty"], "RSA");
    assert_eq!(
        info.jwk["n"].as_str().unwrap().len(),
        342,
        "2048-bit modulus"
    );
    // Six months from the emulated now of the create (2026-01-01 plus the test's real time).
    let six_months = 1_767_225_600 + 181 * 86400;
    assert!(
        (six_months..six_months + 30).contains(&info.exp),
        "{}",
        info.exp
    );
    assert_eq!(cert["policy"]["key_props"]["key_size"], 2048);
    assert_eq!(cert["policy"]["x509_props"]["subject"], "CN=payments-api");
    let version = cert["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(cert["kid"], format!("{KV}/keys/app-cert/{version}"));
    assert_eq!(cert["sid"], format!("{KV}/secrets/app-cert/{version}"));

    // The secret: a PFX with the key and the certificate.
    let (s, sec) = call(
        h.c.get(format!("{KV}/secrets/app-cert/{version}?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(sec["contentType"], "application/x-pkcs12");
    let pfx = b64d(sec["value"].as_str().unwrap());
    let ks = p12_keystore::KeyStore::from_pkcs12(&pfx, "").unwrap();
    let (_, chain) = ks.private_key_chain().expect("exportable: key in the PFX");
    assert_eq!(chain.chain()[0].as_der(), &cer[..]);

    // The key: public parts only, and it signs (RS256, PS256) what verifies with the cert.
    let kid = cert["kid"].as_str().unwrap();
    let (s, key) = call(h.c.get(format!("{kid}?{API}")).bearer_auth(&tok)).await;
    assert_eq!(s, 200);
    assert_eq!(key["key"]["n"], info.jwk["n"]);
    assert!(key["key"].get("d").is_none());
    assert_eq!(key["attributes"]["exportable"], true);
    for alg in ["RS256", "PS256"] {
        let t = jws_signed_in_vault(&h, &tok, kid, alg).await;
        assert!(crypto::parse_jws(&t).unwrap().verifies_with(&info), "{alg}");
    }
    let (s, v) = sign(&h, &tok, kid, "ES256", &[0; 32]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    let (s, _) = sign(&h, &tok, kid, "RS256", &[0; 20]).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn non_exportable_ec_pem_certificate_has_no_private_key_in_its_secret_and_still_signs() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let cert = create_completed(
        &h,
        &tok,
        "ec-cert",
        &policy("EC", None, false, "application/x-pem-file"),
    )
    .await;
    let cer = b64d(cert["cer"].as_str().unwrap());
    let info = crypto::parse_cert(&cer).unwrap();
    assert_eq!(info.jwk["crv"], "P-256");
    let (_, sec) = call(
        h.c.get(format!("{KV}/secrets/ec-cert?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(sec["contentType"], "application/x-pem-file");
    let pem = sec["value"].as_str().unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && !pem.contains("PRIVATE KEY"));
    let kid = cert["kid"].as_str().unwrap();
    let (_, key) = call(h.c.get(format!("{kid}?{API}")).bearer_auth(&tok)).await;
    assert_eq!(key["attributes"]["exportable"], false);
    assert_eq!(key["key"]["kty"], "EC");
    let t = jws_signed_in_vault(&h, &tok, kid, "ES256").await;
    assert!(crypto::parse_jws(&t).unwrap().verifies_with(&info));
}

#[tokio::test]
async fn a_new_version_keeps_the_policy_and_lists_both_versions() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let first = create_completed(
        &h,
        &tok,
        "c",
        &policy("RSA", Some(3072), true, "application/x-pkcs12"),
    )
    .await;
    let second = create_completed(&h, &tok, "c", &json!({})).await;
    assert_ne!(first["id"], second["id"]);
    assert_ne!(first["x5t"], second["x5t"], "a new key (reuse_key false)");
    assert_eq!(second["policy"]["key_props"]["key_size"], 3072);
    let (s, v) = call(
        h.c.get(format!("{KV}/certificates/c/versions?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let (s, p) = call(
        h.c.get(format!("{KV}/certificates/c/policy?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!((s, p["issuer"]["name"].as_str()), (200, Some("Self")));
    // Both key versions remain addressable; the latest secret is the new one.
    for c in [&first, &second] {
        let (s, _) = call(
            h.c.get(format!("{}?{API}", c["kid"].as_str().unwrap()))
                .bearer_auth(&tok),
        )
        .await;
        assert_eq!(s, 200);
    }
}

#[tokio::test]
async fn bad_policies_and_callers_without_the_role_are_refused() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    for (body, why) in [
        (
            policy("RSA", Some(1024), true, "application/x-pkcs12"),
            "key_size",
        ),
        (
            policy("RSA-HSM", Some(2048), true, "application/x-pkcs12"),
            "Premium",
        ),
        (policy("RSA", None, true, "text/plain"), "content type"),
        (json!({}), "policy is required"),
        (json!({"policy": {"x509_props": {}}}), "subject"),
        (
            json!({"policy": {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "DigiCert"}}}),
            "not emulated",
        ),
    ] {
        let (s, v) = call(
            h.c.post(format!("{KV}/certificates/bad/create?{API}"))
                .bearer_auth(&tok)
                .json(&body),
        )
        .await;
        assert_eq!(s, 400, "{body}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{msg} should name {why}");
    }
    // The site identity only reads secrets: no create, no sign.
    let site = h.mi_token("site-mi", "https://vault.azure.net").await;
    let (s, v) = call(
        h.c.post(format!("{KV}/certificates/x/create?{API}"))
            .bearer_auth(&site)
            .json(&policy("RSA", None, true, "application/x-pkcs12")),
    )
    .await;
    assert_eq!(
        (s, v["error"]["innererror"]["code"].as_str()),
        (403, Some("ForbiddenByRbac"))
    );
    let cert = create_completed(
        &h,
        &tok,
        "c2",
        &policy("RSA", None, true, "application/x-pkcs12"),
    )
    .await;
    let (s, _) = sign(&h, &site, cert["kid"].as_str().unwrap(), "RS256", &[0; 32]).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn auto_renew_makes_a_new_version_at_eighty_percent_of_the_lifetime() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let mut body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    body["policy"]["x509_props"]["validity_months"] = json!(10);
    let first = create_completed(&h, &tok, "renewing", &body).await;
    assert_eq!(
        first["policy"]["lifetime_actions"][0]["action"]["action_type"],
        "AutoRenew"
    );
    let versions = |v: &Value| v["value"].as_array().unwrap().len();
    let list = format!("{KV}/certificates/renewing/versions?{API}");
    // Before 80 % of ~304 days: still one version.
    advance(&h, 240 * 86400).await;
    let (_, v) = call(h.c.get(&list).bearer_auth(&tok)).await;
    assert_eq!(versions(&v), 1);
    advance(&h, 6 * 86400).await;
    let (_, v) = call(h.c.get(&list).bearer_auth(&tok)).await;
    assert_eq!(versions(&v), 2, "{v}");
    let (_, latest) = call(
        h.c.get(format!("{KV}/certificates/renewing?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_ne!(latest["x5t"], first["x5t"]);
    let cer = b64d(latest["cer"].as_str().unwrap());
    let info = crypto::parse_cert(&cer).unwrap();
    let first_info = crypto::parse_cert(&b64d(first["cer"].as_str().unwrap())).unwrap();
    assert!(
        info.exp > first_info.exp,
        "the renewal lives past the first version"
    );
    // Its secret and key came with it.
    let version = latest["id"].as_str().unwrap().rsplit('/').next().unwrap();
    let (s, _) = call(
        h.c.get(format!("{KV}/secrets/renewing/{version}?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn tags_from_create_stay_on_their_version_and_update_replaces_them() {
    let h = start_with(cert_scenario()).await;
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let mut body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    body["tags"] = json!({"rotator-requested": "1"});
    let first = create_completed(&h, &tok, "t", &body).await;
    assert_eq!(first["tags"], json!({"rotator-requested": "1"}));
    let second = create_completed(&h, &tok, "t", &json!({})).await;
    assert_eq!(second["tags"], json!({}), "tags belong to the version made");
    let url = format!("{}?{API}", first["id"].as_str().unwrap());
    let (s, v) = call(
        h.c.patch(&url)
            .bearer_auth(&tok)
            .json(&json!({"tags": {"owner": "x", "rotator-phase": "Stored"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tags"], json!({"owner": "x", "rotator-phase": "Stored"}));
    let (_, v) = call(
        h.c.get(format!("{KV}/certificates/t/versions?{API}"))
            .bearer_auth(&tok),
    )
    .await;
    let tagged: Vec<&Value> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["tags"]["owner"] == "x")
        .collect();
    assert_eq!(tagged.len(), 1);
    let sixteen: serde_json::Map<String, Value> =
        (0..16).map(|i| (format!("t{i}"), json!("v"))).collect();
    let (s, _) = call(
        h.c.patch(&url)
            .bearer_auth(&tok)
            .json(&json!({"tags": sixteen})),
    )
    .await;
    assert_eq!(s, 400, "Key Vault's 15-tag limit");
    let reader = h.mi_token("site-mi", "https://vault.azure.net").await;
    let (s, _) = call(
        h.c.patch(&url)
            .bearer_auth(&reader)
            .json(&json!({"tags": {}})),
    )
    .await;
    assert!(s == 403 || s == 401, "{s}");
}
