//! What the certificate fault tests and campaign rely on beyond the plain surfaces: the record
//! of every keyCredentials write (the oracle of "no key is lost"), which keeps a write whose
//! answer a fault replaced, and the certificate uncertainty variants (key replication slower
//! than passwords, a Key Vault issuance that stays `inProgress` for minutes).

use crate::certificates::{advance, cert_scenario, create_completed, policy};
use crate::keycredentials::{
    assertion_claims, assertion_token, cer_of, key_credential, kv_jwt, proof_claims, wall_now,
};
use crate::support::*;
use azure_emulator::crypto;
use azure_emulator::faults::{FaultAction, FaultRule};
use serde_json::{Value, json};
use uuid::Uuid;

const KV: &str = "https://kv1.vault.azure.net";
const API: &str = "api-version=7.5";
const GRAPH: &str = "https://graph.microsoft.com/v1.0";

fn with_uncertainties(u: Value) -> azure_emulator::Scenario {
    let mut s = serde_json::to_value(cert_scenario()).unwrap();
    s["uncertainties"] = u;
    serde_json::from_value(s).unwrap()
}

async fn patch_keys(h: &H, graph: &str, keys: Value) -> (u16, Value) {
    call(
        h.c.patch(format!("{GRAPH}/applications/{PAY_OBJ}"))
            .bearer_auth(graph)
            .json(&json!({ "keyCredentials": keys })),
    )
    .await
}

#[tokio::test]
async fn every_key_write_is_recorded_even_when_its_answer_was_lost() {
    let h = start_with(cert_scenario()).await;
    let c = h.emu.control();
    let app = Uuid::parse_str(PAY_APP).unwrap();
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    let first = create_completed(&h, &kv, "pay-cert", &body).await;
    let second = create_completed(&h, &kv, "pay-cert-2", &body).await;
    assert!(c.key_writes().is_empty());

    let (s, v) = patch_keys(&h, &graph, json!([key_credential(&first, "first")])).await;
    assert_eq!(s, 204, "{v}");
    // The same collection again changes nothing and is not a write to diff.
    let (_, app_v) = call(
        h.c.get(format!(
            "{GRAPH}/applications/{PAY_OBJ}?$select=keyCredentials"
        ))
        .bearer_auth(&graph),
    )
    .await;
    let same = app_v["keyCredentials"].clone();
    let (s, v) = patch_keys(&h, &graph, same).await;
    assert_eq!(s, 204, "{v}");
    let writes = c.key_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].operation, "updateApplication");
    assert_eq!((writes[0].app_id, writes[0].before.len()), (app, 0));
    let first_rec = &writes[0].after[0];
    assert_eq!(first_rec.x5t_s256, crypto::x5t_s256(&cer_of(&first)));
    assert_eq!(first_rec.display_name.as_deref(), Some("first"));
    assert_eq!(c.key_records(app), writes[0].after);

    // addKey committed, answer replaced by a 503: the write is in the record all the same.
    c.add_fault(FaultRule {
        service: "graph".into(),
        operation: Some("addKey".into()),
        nth: None,
        times: Some(1),
        probability: None,
        seed: None,
        action: FaultAction::CommitThenFail { status: 503 },
    });
    let now = wall_now(&h).await;
    let proof = kv_jwt(
        &h,
        &kv,
        first["kid"].as_str().unwrap(),
        "RS256",
        json!({}),
        proof_claims(now, PAY_OBJ, 600),
    )
    .await;
    let (s, _) = call(
        h.c.post(format!("{GRAPH}/applications/{PAY_OBJ}/addKey"))
            .bearer_auth(&graph)
            .json(&json!({"keyCredential": key_credential(&second, "second"), "passwordCredential": null, "proof": proof})),
    )
    .await;
    assert_eq!(s, 503);
    let writes = c.key_writes();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[1].operation, "addKey");
    assert_eq!(writes[1].before, writes[0].after);
    assert_eq!(writes[1].after.len(), 2);
    assert_eq!(
        writes[1].after[1].x5t_s256,
        crypto::x5t_s256(&cer_of(&second))
    );
    assert_eq!(writes[0].caller, writes[1].caller);

    // A PATCH that keeps the second key (by its keyId) and drops the first: the record shows
    // exactly what went.
    let mut keep = key_credential(&second, "second");
    keep["keyId"] = json!(writes[1].after[1].key_id);
    let (s, v) = patch_keys(&h, &graph, json!([keep])).await;
    assert_eq!(s, 204, "{v}");
    let last = c.key_writes().pop().unwrap();
    let gone: Vec<Uuid> = last
        .before
        .iter()
        .filter(|k| !last.after.iter().any(|a| a.key_id == k.key_id))
        .map(|k| k.key_id)
        .collect();
    assert_eq!(gone, vec![first_rec.key_id]);
    // Both certificates are on the oracle's list of Key Vault versions, thumbprints agreeing.
    let versions = c.certificate_versions("kv1", "pay-cert");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].x5t_s256, first_rec.x5t_s256);
    assert_eq!(versions[0].thumbprint, first_rec.thumbprint);
    assert_eq!(versions[0].thumbprint.len(), 40);
    assert!(c.certificate_versions("kv1", "no-such-cert").is_empty());
}

#[tokio::test]
async fn key_replication_variant_delays_assertions_past_the_password_delay() {
    let h = start_with(with_uncertainties(json!({"keyReplicationSeconds": 120}))).await;
    let c = h.emu.control();
    c.set_replication_delay(1);
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    let cert = create_completed(&h, &kv, "pay-cert", &body).await;
    let (s, v) = patch_keys(&h, &graph, json!([key_credential(&cert, "k")])).await;
    assert_eq!(s, 204, "{v}");
    let token = async || {
        let now = wall_now(&h).await;
        let header = json!({"x5t#S256": crypto::x5t_s256(&cer_of(&cert))});
        let a = kv_jwt(
            &h,
            &kv,
            cert["kid"].as_str().unwrap(),
            "PS256",
            header,
            assertion_claims(now, PAY_APP),
        )
        .await;
        let (s, v) = assertion_token(&h, &a).await;
        (s, v["error_codes"][0].as_u64())
    };
    advance(&h, 2).await;
    // Past the password delay, not the key's: "The key was not found".
    assert_eq!(token().await, (401, Some(700027)));
    advance(&h, 119).await;
    assert_eq!(token().await, (200, None));
}

#[tokio::test]
async fn certificate_issue_variant_keeps_the_operation_in_progress() {
    let h = start_with(with_uncertainties(json!({"certificateIssueSeconds": 600}))).await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let body = policy("RSA", Some(2048), true, "application/x-pkcs12");
    let (s, op) = call(
        h.c.post(format!("{KV}/certificates/slow/create?{API}"))
            .bearer_auth(&kv)
            .json(&body),
    )
    .await;
    assert_eq!(s, 202, "{op}");
    let pending = async || {
        let (s, op) = call(
            h.c.get(format!("{KV}/certificates/slow/pending?{API}"))
                .bearer_auth(&kv),
        )
        .await;
        assert_eq!(s, 200, "{op}");
        op["status"].as_str().unwrap().to_string()
    };
    advance(&h, azure_emulator::certificates::SELF_ISSUE_SECONDS).await;
    assert_eq!(pending().await, "inProgress");
    assert!(
        h.emu
            .control()
            .certificate_versions("kv1", "slow")
            .is_empty()
    );
    advance(&h, 600).await;
    assert_eq!(pending().await, "completed");
    assert_eq!(h.emu.control().certificate_versions("kv1", "slow").len(), 1);
}

#[test]
fn certificate_variants_start_with_the_default_and_differ() {
    let v = azure_emulator::scenario::Uncertainties::certificate_variants();
    assert_eq!(v[0].1, Default::default());
    for (name, u) in &v[1..] {
        assert_ne!(u, &Default::default(), "{name}");
    }
}
