//! Least privilege for certificate credentials, on the emulator: the rotator works with roles
//! scoped to the one certificate (`/certificates/{n}`: create, read) and its key
//! (`/keys/{n}`: sign), the scopes `infra/modules/access/certificate.bicep` grants; a grant
//! missing on either scope is refused by Key Vault and the rotator's error names the action,
//! the scope and the role to grant (`secret_rotator::azure::permissions::advise_denied`).
//!
//! The emulator checks data actions per object (`crates/azure-emulator/src/certificates.rs`
//! `authorize_route`): a role on the certificate does not reach its key, as in Azure
//! (vcsjones/AzureSignTool#296: sign worked only once the role was on the certificate's key;
//! Azure/azure-sdk-for-python#19919: a certificate-scoped role does not reach its secret).

use crate::support::emulator::TestEmulator;

use chrono::Utc;
use secret_rotator::azure::assertion::{proof_claims, sign_jwt};
use secret_rotator::azure::certificates::{
    CertificatePolicy, CertificatesClient, ContentType, KeySpec, OperationStatus, SignAlgorithm,
};
use secret_rotator::azure::permissions::{
    REQUIRED_PERMISSIONS, ScopeKind, advise_denied, grant_of,
};
use secret_rotator::azure::web::{ResolveStatus, WebClient};
use secret_rotator::cloud::Cloud;
use secret_rotator::policy::ArmResource;
use serde_json::json;
use uuid::Uuid;

const TENANT: &str = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const ROTATOR_SECRET: &str = "Rot8Q~rotator-secret-0123456789";
const VAULT: &str = "kv-least";
const CERT: &str = "payments-cert";
const OTHER: &str = "other-cert";

const SUB: &str = "5b3c1f1e-0a4d-4c39-9d6e-2f51e0c7a0c5";

fn vault_scope() -> String {
    format!(
        "/subscriptions/{{sub}}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/{VAULT}"
    )
}

/// The rotator holds the certificate roles on `CERT` only, at the scopes given.
fn scenario(on_certificate: bool, on_key: bool) -> serde_json::Value {
    let mut roles = Vec::new();
    if on_certificate {
        roles.push(
            json!({"principal": "rotator", "role": "Key Vault Certificates Officer",
            "scope": format!("{}/certificates/{CERT}", vault_scope())}),
        );
    }
    if on_key {
        roles.push(
            json!({"principal": "rotator", "role": "Key Vault Crypto User",
            "scope": format!("{}/keys/{CERT}", vault_scope())}),
        );
    }
    // Someone else may create the certificate the rotator is not enrolled on.
    roles.push(
        json!({"principal": "admin", "role": "Key Vault Administrator", "scope": vault_scope()}),
    );
    json!({
        "tenantId": TENANT,
        "subscriptionId": SUB,
        "applications": [
            {"displayName": "rotator", "graphAppRoles": ["Application.ReadWrite.OwnedBy"],
             "passwordCredentials": [{"secretText": ROTATOR_SECRET, "endDateTime": "2099-01-01T00:00:00Z"}]},
            {"displayName": "admin",
             "passwordCredentials": [{"secretText": "Adm8Q~admin-secret-0123456789", "endDateTime": "2099-01-01T00:00:00Z"}]},
        ],
        "vaults": [{"name": VAULT, "resourceGroup": "rg-sec"}],
        "roleAssignments": roles,
    })
}

fn policy() -> CertificatePolicy {
    CertificatePolicy {
        issuer: "Self".into(),
        subject: "CN=payments".into(),
        key: KeySpec::Rsa { bits: 2048 },
        exportable: true,
        reuse_key: false,
        content_type: ContentType::Pkcs12,
        validity_months: 12,
    }
}

async fn start(
    on_certificate: bool,
    on_key: bool,
) -> (TestEmulator, CertificatesClient, CertificatesClient) {
    let emu = TestEmulator::start(scenario(on_certificate, on_key)).await;
    let rotator = CertificatesClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    );
    let admin = CertificatesClient::new(
        Cloud::Public,
        emu.app_credential("admin", "Adm8Q~admin-secret-0123456789"),
        emu.options(),
    );
    (emu, rotator, admin)
}

fn settle(emu: &TestEmulator) {
    emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
}

#[tokio::test]
async fn certificate_and_key_scoped_roles_are_enough_and_reach_nothing_else() {
    let (emu, kv, admin) = start(true, true).await;
    // Create, follow, read, read the policy, sign: all on the one certificate and its key.
    let op = kv
        .create_version(VAULT, CERT, Some(&policy()))
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::InProgress);
    settle(&emu);
    assert_eq!(
        kv.operation(VAULT, CERT).await.unwrap().status,
        OperationStatus::Completed
    );
    let cert = kv.get(VAULT, CERT, None).await.unwrap();
    kv.policy(VAULT, CERT).await.unwrap();
    let claims = proof_claims(Uuid::new_v4(), Utc::now());
    sign_jwt(&kv, &cert, SignAlgorithm::Rs256, &claims)
        .await
        .expect("the key-scoped role allows sign");

    // Another certificate of the same vault stays out of reach: read and sign refused.
    admin
        .create_version(VAULT, OTHER, Some(&policy()))
        .await
        .unwrap();
    settle(&emu);
    let other = admin.get(VAULT, OTHER, None).await.unwrap();
    let e = kv.get(VAULT, OTHER, None).await.unwrap_err();
    assert!(e.is_access_denied(), "{e}");
    assert!(
        e.to_string()
            .contains(&format!(".../vaults/{VAULT}/certificates/{OTHER}")),
        "{e}"
    );
    let e = sign_jwt(&kv, &other, SignAlgorithm::Rs256, &claims)
        .await
        .unwrap_err();
    assert!(e.is_access_denied(), "{e}");
}

#[tokio::test]
async fn a_missing_key_grant_refuses_sign_and_names_what_to_grant() {
    let (emu, kv, _) = start(true, false).await;
    kv.create_version(VAULT, CERT, Some(&policy()))
        .await
        .unwrap();
    settle(&emu);
    let cert = kv
        .get(VAULT, CERT, None)
        .await
        .expect("certificate scope reads");
    let claims = proof_claims(Uuid::new_v4(), Utc::now());
    let e = sign_jwt(&kv, &cert, SignAlgorithm::Rs256, &claims)
        .await
        .unwrap_err();
    assert!(e.is_access_denied(), "{e}");
    let text = e.to_string();
    for needed in [
        "Microsoft.KeyVault/vaults/keys/sign/action",
        &format!(".../vaults/{VAULT}/keys/{CERT}"),
        "Secret Rotator Key Vault Certificate Signer role",
        "`certificates`",
    ] {
        assert!(text.contains(needed), "`{needed}` missing from: {text}");
    }
}

#[tokio::test]
async fn a_missing_certificate_grant_refuses_create_and_names_what_to_grant() {
    let (_emu, kv, _) = start(false, true).await;
    let e = kv
        .create_version(VAULT, CERT, Some(&policy()))
        .await
        .unwrap_err();
    assert!(e.is_access_denied(), "{e}");
    let text = e.to_string();
    for needed in [
        "Microsoft.KeyVault/vaults/certificates/create/action",
        &format!(".../vaults/{VAULT}/certificates/{CERT}"),
        "Secret Rotator Key Vault Certificate Rotator role",
    ] {
        assert!(text.contains(needed), "`{needed}` missing from: {text}");
    }
    let e = kv.get(VAULT, CERT, None).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("Microsoft.KeyVault/vaults/certificates/read"),
        "{e}"
    );
}

#[test]
fn every_certificate_permission_has_a_role_and_a_deployment_parameter() {
    for p in REQUIRED_PERMISSIONS
        .iter()
        .filter(|p| matches!(p.scope, ScopeKind::Certificate | ScopeKind::CertificateKey))
    {
        let (role, parameter) = grant_of(p.scope);
        assert!(
            role.contains("Secret Rotator Key Vault Certificate"),
            "{role}"
        );
        assert_eq!(parameter, "certificates");
    }
    assert!(advise_denied("sign", VAULT, CERT).is_some());
}

/// The consumer side of `pfxReaders`: Key Vault Secrets User on the certificate's *secret*
/// lets a site's Key Vault reference load the PFX; the same role on the certificate object
/// does not (Azure/azure-sdk-for-python#19919), and a site without a grant is denied. Read
/// back as App Service reports it (reference status), with the site's own identity.
#[tokio::test]
async fn a_pfx_reader_resolves_the_certificate_secret_and_no_other_site_does() {
    let reference = format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName={CERT})");
    let mut s = scenario(true, true);
    s["managedIdentities"] =
        json!([{"name": "pfx-mi"}, {"name": "wrong-mi"}, {"name": "thumb-mi"}]);
    let site = |name: &str, mi: &str| {
        json!({"resourceGroup": "rg-apps", "name": name, "identity": mi,
               "appSettings": {"ClientCertificate": reference}})
    };
    s["sites"] = json!([
        site("func-pfx", "pfx-mi"),
        site("func-wrong", "wrong-mi"),
        site("func-none", "thumb-mi")
    ]);
    let roles = s["roleAssignments"].as_array_mut().unwrap();
    roles.push(
        json!({"principal": "pfx-mi", "role": "Key Vault Secrets User",
        "scope": format!("{}/secrets/{CERT}", vault_scope())}),
    );
    roles.push(
        json!({"principal": "wrong-mi", "role": "Key Vault Secrets User",
        "scope": format!("{}/certificates/{CERT}", vault_scope())}),
    );
    roles.push(json!({"principal": "admin", "role": "Website Contributor",
        "scope": "/subscriptions/{sub}/resourceGroups/rg-apps"}));
    let emu = TestEmulator::start(s).await;
    let kv = CertificatesClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    );
    kv.create_version(VAULT, CERT, Some(&policy()))
        .await
        .unwrap();
    settle(&emu);
    // No Key Vault request after the operation is due: App Service still finds the secret.
    let web = WebClient::new(
        Cloud::Public,
        emu.app_credential("admin", "Adm8Q~admin-secret-0123456789"),
        emu.options(),
    );
    let mut statuses = Vec::new();
    for name in ["func-pfx", "func-wrong", "func-none"] {
        let site = ArmResource {
            subscription: SUB.into(),
            resource_group: "rg-apps".into(),
            name: name.into(),
            slot: None,
        };
        web.refresh_references(&site).await.unwrap();
        let st = web
            .reference_status(&site, "ClientCertificate")
            .await
            .unwrap()
            .expect("the reference");
        statuses.push((name, st.status));
    }
    assert_eq!(
        statuses,
        vec![
            ("func-pfx", ResolveStatus::Resolved),
            ("func-wrong", ResolveStatus::AccessToKeyVaultDenied),
            ("func-none", ResolveStatus::AccessToKeyVaultDenied),
        ]
    );
}
