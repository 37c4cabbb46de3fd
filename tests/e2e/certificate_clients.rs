//! The certificate-credential clients against the emulator: Key Vault certificates (new
//! version, pending operation, get, policy, sign), Graph keyCredentials (merge-preserving
//! PATCH, addKey / removeKey with a proof signed in Key Vault, concurrent writers) and the
//! client-assertion token probe. Outcomes are checked on the emulator's state.

use crate::support::emulator::TestEmulator;

use std::sync::Arc;
use std::time::Duration;

use azure_emulator::{FaultAction, FaultRule};
use chrono::Utc;
use secret_rotator::azure::assertion::{
    AssertionProbe, assertion_claims, codes, is_key_not_replicated, proof_claims, sign_jwt,
};
use secret_rotator::azure::certificates::{
    CertificatePolicy, CertificateVersion, CertificatesClient, ContentType, KeySpec,
    OperationStatus, SignAlgorithm,
};
use secret_rotator::azure::graph::WriteLimiter;
use secret_rotator::azure::keycredentials::{
    KeyCredentialsClient, KeyRemoveOutcome, NewKeyCredential,
};
use secret_rotator::azure::{Error, ErrorKind};
use secret_rotator::cloud::Cloud;
use serde_json::json;
use uuid::Uuid;

const TENANT: &str = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const ROTATOR_SECRET: &str = "Rot8Q~rotator-secret-0123456789";
const ADMIN_SECRET: &str = "Adm8Q~admin-secret-0123456789";
const PAYMENTS_OBJ: &str = "11111111-2222-3333-4444-0000000000a1";
const VAULT: &str = "kv-certs";

fn scenario(policy: Option<serde_json::Value>) -> serde_json::Value {
    let far = "2099-01-01T00:00:00Z";
    let scope =
        "/subscriptions/{sub}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/kv-certs";
    let mut s = json!({
        "tenantId": TENANT,
        "applications": [
            {"displayName": "rotator", "graphAppRoles": ["Application.ReadWrite.OwnedBy"],
             "passwordCredentials": [{"secretText": ROTATOR_SECRET, "endDateTime": far}]},
            {"displayName": "admin", "graphAppRoles": ["Application.ReadWrite.All"],
             "passwordCredentials": [{"secretText": ADMIN_SECRET, "endDateTime": far}]},
            {"displayName": "payments-api", "objectId": PAYMENTS_OBJ, "owners": ["rotator"],
             "keyCredentials": [{"displayName": "someone else's", "endDateTime": far}]}
        ],
        "vaults": [{"name": VAULT, "resourceGroup": "rg-sec"}],
        "roleAssignments": [
            {"principal": "rotator", "role": "Key Vault Certificates Officer", "scope": scope},
            {"principal": "rotator", "role": "Key Vault Crypto User", "scope": scope},
            {"principal": "admin", "role": "Key Vault Crypto User", "scope": scope}
        ]
    });
    if let Some(p) = policy {
        s["appManagementPolicy"] = p;
    }
    s
}

struct Clients {
    emu: TestEmulator,
    kv: CertificatesClient,
    graph: KeyCredentialsClient,
    probe: AssertionProbe,
    app_id: Uuid,
    object_id: Uuid,
}

async fn start(policy: Option<serde_json::Value>) -> Clients {
    let emu = TestEmulator::start(scenario(policy)).await;
    let cred = emu.app_credential("rotator", ROTATOR_SECRET);
    let options = emu.options();
    Clients {
        kv: CertificatesClient::new(Cloud::Public, cred.clone(), options.clone()),
        graph: KeyCredentialsClient::new(
            Cloud::Public,
            cred,
            options.clone(),
            Arc::new(WriteLimiter::default()),
        ),
        probe: AssertionProbe::new(Cloud::Public, options),
        app_id: emu
            .emulator
            .control()
            .app_id_by_name("payments-api")
            .unwrap(),
        object_id: Uuid::parse_str(PAYMENTS_OBJ).unwrap(),
        emu,
    }
}

fn policy(months: u32) -> CertificatePolicy {
    CertificatePolicy {
        issuer: "Self".into(),
        subject: "CN=payments-api".into(),
        key: KeySpec::Rsa { bits: 2048 },
        exportable: true,
        reuse_key: false,
        content_type: ContentType::Pkcs12,
        validity_months: months,
    }
}

/// Asks for a version and completes it on the emulated clock.
async fn new_version(c: &Clients, name: &str, months: u32) -> CertificateVersion {
    let op =
        c.kv.create_version(VAULT, name, Some(&policy(months)))
            .await
            .unwrap();
    assert_eq!(op.status, OperationStatus::InProgress);
    c.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    assert_eq!(
        c.kv.operation(VAULT, name).await.unwrap().status,
        OperationStatus::Completed
    );
    c.kv.get(VAULT, name, None).await.unwrap()
}

fn new_key(cert: &CertificateVersion) -> NewKeyCredential {
    NewKeyCredential {
        key_id: Uuid::new_v4(),
        display_name: format!("secret-rotator:{}:{}", cert.name, cert.version),
        cer: cert.cer.clone(),
    }
}

async fn probe(c: &Clients, cert: &CertificateVersion) -> Result<(), Error> {
    let claims = assertion_claims(
        c.probe.authority(),
        TENANT,
        c.app_id,
        Utc::now(),
        Uuid::new_v4(),
    );
    let assertion = sign_jwt(&c.kv, cert, SignAlgorithm::Ps256, &claims)
        .await
        .unwrap();
    c.probe
        .request_token(
            TENANT,
            c.app_id,
            &assertion,
            "https://graph.microsoft.com/.default",
        )
        .await
}

fn on_app(c: &Clients) -> Vec<Uuid> {
    c.emu
        .emulator
        .control()
        .key_credentials(c.app_id)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn certificate_versions_policy_and_vault_signing() {
    let c = start(None).await;
    let v1 = new_version(&c, "payments-cert", 6).await;
    assert_eq!(
        c.kv.policy(VAULT, "payments-cert").await.unwrap(),
        policy(6)
    );
    assert_eq!(v1.key_id.name, "payments-cert");
    assert_eq!(v1.key_id.version, v1.version);
    // A second version from the stored policy; both stay readable.
    c.kv.create_version(VAULT, "payments-cert", None)
        .await
        .unwrap();
    c.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let v2 = c.kv.get(VAULT, "payments-cert", None).await.unwrap();
    assert_ne!(v1.version, v2.version);
    assert_eq!(
        c.kv.get(VAULT, "payments-cert", Some(&v1.version))
            .await
            .unwrap()
            .cer,
        v1.cer
    );
    // The vault signs a JWT that verifies against the certificate (and only against it).
    let jwt = sign_jwt(&c.kv, &v2, SignAlgorithm::Rs256, &json!({"sub": "x"}))
        .await
        .unwrap();
    let parsed = azure_emulator::crypto::parse_jws(jwt.expose()).unwrap();
    assert!(parsed.verifies_with(&azure_emulator::crypto::parse_cert(&v2.cer).unwrap()));
    assert!(!parsed.verifies_with(&azure_emulator::crypto::parse_cert(&v1.cer).unwrap()));
    assert!(!format!("{jwt:?} {v2:?}").contains(jwt.expose()));
    // Typed errors: unknown certificate, bad names never sent.
    let kind = |r: Result<CertificateVersion, Error>| r.unwrap_err().kind().clone();
    assert_eq!(
        kind(c.kv.get(VAULT, "nope", None).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(c.kv.get(VAULT, "bad/name", None).await),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn a_certificate_rolls_on_the_application_without_losing_other_keys() {
    let c = start(None).await;
    let others = on_app(&c);
    assert_eq!(others.len(), 1, "the scenario's key of someone else");
    // Bootstrap: no key of ours is valid yet, so the merge-preserving PATCH adds the first.
    let v1 = new_version(&c, "payments-cert", 6).await;
    let k1 = new_key(&v1);
    let after = c
        .graph
        .merge_write(c.object_id, std::slice::from_ref(&k1), &[])
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(on_app(&c), vec![others[0], k1.key_id]);
    probe(&c, &v1).await.unwrap();

    // Renewal: addKey proven by the current key, signed in Key Vault.
    let v2 = new_version(&c, "payments-cert", 6).await;
    let proof = sign_jwt(
        &c.kv,
        &v1,
        SignAlgorithm::Rs256,
        &proof_claims(c.object_id, Utc::now()),
    )
    .await
    .unwrap();
    let added = c
        .graph
        .add_key(c.object_id, &new_key(&v2), &proof)
        .await
        .unwrap();
    assert_eq!(on_app(&c), vec![others[0], k1.key_id, added.key_id]);
    probe(&c, &v2).await.unwrap();

    // The old key goes by exact keyId, proven by the new one; the other writer's key stays.
    let proof = sign_jwt(
        &c.kv,
        &v2,
        SignAlgorithm::Rs256,
        &proof_claims(c.object_id, Utc::now()),
    )
    .await
    .unwrap();
    assert_eq!(
        c.graph
            .remove_key(c.object_id, k1.key_id, &proof)
            .await
            .unwrap(),
        KeyRemoveOutcome::Removed
    );
    assert_eq!(
        c.graph
            .remove_key(c.object_id, k1.key_id, &proof)
            .await
            .unwrap(),
        KeyRemoveOutcome::AlreadyGone
    );
    assert_eq!(on_app(&c), vec![others[0], added.key_id]);
    let e = probe(&c, &v1).await.unwrap_err();
    assert_eq!(e.aadsts(), Some(codes::ASSERTION_SIGNATURE), "{e}");
}

#[tokio::test]
async fn refusals_are_typed_proof_policy_replication() {
    let c = start(Some(json!({"maxCertificateLifetimeDays": 100}))).await;
    let long = new_version(&c, "long-cert", 12).await;
    let e = c
        .graph
        .merge_write(c.object_id, &[new_key(&long)], &[])
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::LifetimePolicy { .. }), "{e}");
    assert_eq!(on_app(&c).len(), 1, "nothing written");

    c.emu.emulator.control().set_replication_delay(30);
    let v1 = new_version(&c, "short-cert", 3).await;
    c.graph
        .merge_write(c.object_id, &[new_key(&v1)], &[])
        .await
        .unwrap();
    // Not replicated yet: the probe names it as such, and it heals with time.
    let e = probe(&c, &v1).await.unwrap_err();
    assert!(is_key_not_replicated(&e), "{e}");
    c.emu
        .emulator
        .control()
        .advance(chrono::Duration::seconds(30));
    probe(&c, &v1).await.unwrap();

    // A proof signed by a certificate the application does not hold.
    let stray = new_version(&c, "stray-cert", 3).await;
    let proof = sign_jwt(
        &c.kv,
        &stray,
        SignAlgorithm::Rs256,
        &proof_claims(c.object_id, Utc::now()),
    )
    .await
    .unwrap();
    let e = c
        .graph
        .add_key(c.object_id, &new_key(&stray), &proof)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::ProofRefused, "{e}");
}

#[tokio::test]
async fn merge_write_reports_a_key_another_writer_added_meanwhile() {
    let c = Arc::new(start(None).await);
    let v1 = new_version(&c, "payments-cert", 6).await;
    c.graph
        .merge_write(c.object_id, &[new_key(&v1)], &[])
        .await
        .unwrap();
    let v2 = new_version(&c, "payments-cert", 6).await;
    let other = new_version(&c, "admin-cert", 6).await;
    // The read-back after our write (our third read; counted from the rule's creation) is
    // held for a while; another writer adds a key meanwhile.
    c.emu.emulator.control().add_fault(FaultRule {
        service: "graph".into(),
        operation: Some("getApplication".into()),
        nth: Some(3),
        times: None,
        probability: None,
        seed: None,
        action: FaultAction::Delay { ms: 3000 },
    });
    let ours = {
        let c = c.clone();
        let k = new_key(&v2);
        tokio::spawn(async move { c.graph.merge_write(c.object_id, &[k], &[]).await })
    };
    let control = c.emu.emulator.control();
    // Our PATCH (the second of the test) has landed: the delayed read-back is next.
    let mut waited = 0;
    while control
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some("updateApplication"))
        .count()
        < 2
    {
        assert!(waited < 2000, "our PATCH never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += 1;
    }
    let admin = KeyCredentialsClient::new(
        Cloud::Public,
        c.emu.app_credential("admin", ADMIN_SECRET),
        c.emu.options(),
        Arc::new(WriteLimiter::default()),
    );
    let proof = sign_jwt(
        &c.kv,
        &v1,
        SignAlgorithm::Rs256,
        &proof_claims(c.object_id, Utc::now()),
    )
    .await
    .unwrap();
    let theirs = admin
        .add_key(c.object_id, &new_key(&other), &proof)
        .await
        .unwrap();
    let e = ours.await.unwrap().unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::ConcurrentChange {
            appeared: vec![theirs.key_id],
            disappeared: vec![]
        }
    );
    assert!(
        on_app(&c).contains(&theirs.key_id),
        "their key is on the application"
    );
}
