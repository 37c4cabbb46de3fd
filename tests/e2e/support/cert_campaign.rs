//! The fault campaign's certificate shapes (listed in `campaign::SHAPES`) and the things other
//! people do to them between rounds.
//!
//! Shapes: a certificate credential (a thumbprint setting and a Key Vault reference to the
//! certificate's secret on the application's site, a notify-only system a third of the time,
//! someone else's key on the application half the time), and a client secret converted to a
//! certificate (`replacesSecret`; the secret's Key Vault reference is the consumer that must
//! move). Certificates are short-lived (1 month, renewed 20 days before the end, 3 days of
//! grace) so a case's clock advances meet renewals and old-key removals.
//!
//! Other people (the application `camp-admin`, Application.ReadWrite.All, Certificates Officer
//! on the vaults, Website Contributor on the sites): someone adds a key of their own to an
//! application ([`someone_adds_a_key`]); Key Vault makes a new version on its own, as its
//! auto-renewal does ([`key_vault_renews`]); a person moves a converted secret's consumer to the
//! certificate ([`person_moves_the_secret_consumer`]). The invariants hold their writes as
//! theirs (`cert_invariants::CertBaseline::others`).

use std::sync::Arc;

use chrono::Utc;
use secret_rotator::azure::certificates::{
    CertificatePolicy, CertificatesClient, ContentType, KeySpec,
};
use secret_rotator::azure::graph::WriteLimiter;
use secret_rotator::azure::keycredentials::{KeyCredentialsClient, NewKeyCredential};
use secret_rotator::azure::web::{SettingValue, WebClient};
use secret_rotator::cloud::Cloud;
use secret_rotator::policy::{AppRef, CertificateCredentialPolicy};
use serde_json::json;
use uuid::Uuid;

use crate::support::campaign::{Names, Rng, SUB, Tenant, application_marked, at, epoch, grant};
use crate::support::world::{MI, World};

/// The other writer's application.
pub const ADMIN: &str = "camp-admin";
pub const ADMIN_SECRET: &str = "admQ~campaign.other.writer-0123456789ab";
/// The certificate of every certificate shape, in the application's vault.
pub const CERT: &str = "appCert";
/// The certificate the other writer puts on applications (its own, in the same vault).
const OTHERS_CERT: &str = "othersCert";

pub fn certificate(rng: &mut Rng, i: usize, t: &mut Tenant) {
    shape(rng, i, t, false);
}

pub fn conversion(rng: &mut Rng, i: usize, t: &mut Tenant) {
    shape(rng, i, t, true);
}

fn shape(rng: &mut Rng, i: usize, t: &mut Tenant, convert: bool) {
    let n = Names::of(i);
    let secret_name = format!("camp-{i}");
    let (app_id, current) = if convert {
        application_marked(rng, i, t, &secret_name)
    } else {
        let app_id = rng.uuid();
        t.apps.push(
            json!({"appId": app_id, "displayName": format!("campaign app {i}"),
            "owners": [MI], "passwordCredentials": []}),
        );
        (app_id, String::new())
    };
    if rng.chance(0.5)
        && let Some(app) = t.apps.last_mut()
    {
        app["keyCredentials"] =
            json!([{"displayName": "someone else's", "endDateTime": at(epoch(), 400)}]);
    }
    let site_path = format!("Microsoft.Web/sites/{}", n.site);
    let site = n.id(SUB, &site_path);
    let mut settings = json!({"OTHER": "1"});
    let mut secrets = json!([]);
    if convert {
        settings["RefSecret"] = json!(format!(
            "@Microsoft.KeyVault(VaultName={};SecretName=appSecret)",
            n.vault
        ));
        secrets = json!([{"name": "appSecret", "versions": [{"value": current}]}]);
    }
    t.vaults
        .push(json!({"name": n.vault, "resourceGroup": n.rg, "secrets": secrets}));
    t.mis.push(json!({"name": n.site}));
    t.sites.push(
        json!({"resourceGroup": n.rg, "name": n.site, "identity": n.site,
        "appSettings": settings}),
    );
    grants(t, &n);
    let mut consumers = vec![
        json!({"type": "appSettingThumbprint", "site": site, "setting": "CertThumbprint"}),
        json!({"type": "appSettingKeyVaultReference", "site": site, "setting": "CertPfx"}),
    ];
    if rng.chance(0.3) {
        consumers.push(
            json!({"type": "notifyOnly", "system": format!("partner {i}"),
            "instructions": "Upload the new public certificate to the partner's portal."}),
        );
    }
    let mut entry = json!({
        "type": "certificate", "name": format!("camp-cert-{i}"),
        "application": {"appId": app_id},
        "certificate": {"vault": n.vault, "name": CERT},
        "validityInMonths": 1, "renewBeforeDays": 20, "graceDays": 3,
        "consumers": consumers
    });
    if convert {
        entry["replacesSecret"] = json!(secret_name);
        t.creds.push(json!({
            "name": secret_name, "application": {"appId": app_id},
            "keyVault": {"vault": n.vault, "secret": "appSecret"},
            "consumers": [{"type": "appSettingKeyVaultReference", "site": site,
                           "setting": "RefSecret"}]
        }));
    }
    t.creds.push(entry);
}

/// The rotator's roles for a certificate shape, the site's on the vault, the other writer's.
fn grants(t: &mut Tenant, n: &Names) {
    let vault = n.id("{sub}", &format!("Microsoft.KeyVault/vaults/{}", n.vault));
    let site = n.id("{sub}", &format!("Microsoft.Web/sites/{}", n.site));
    for role in [
        "Key Vault Certificates Officer",
        "Key Vault Crypto User",
        "Key Vault Secrets Officer",
    ] {
        grant(t, MI, role, &vault);
    }
    grant(t, MI, "Website Contributor", &site);
    grant(t, &n.site, "Key Vault Secrets User", &vault);
    t.admin_roles
        .push(("Key Vault Certificates Officer".into(), vault));
    t.admin_roles.push(("Website Contributor".into(), site));
}

/// The other writer's application and roles, when a shape gave it any.
pub fn add_admin(t: &mut Tenant) {
    if t.admin_roles.is_empty() {
        return;
    }
    t.apps.push(
        json!({"displayName": ADMIN, "graphAppRoles": ["Application.ReadWrite.All"],
        "passwordCredentials": [{"displayName": "ops", "secretText": ADMIN_SECRET,
                                 "endDateTime": "2099-01-01T00:00:00Z"}]}),
    );
    for (role, scope) in std::mem::take(&mut t.admin_roles) {
        grant(t, ADMIN, &role, &scope);
    }
}

/// The other writer's clients.
pub struct Admin {
    pub id: Uuid,
    kv: CertificatesClient,
    keys: KeyCredentialsClient,
    web: WebClient,
}

impl Admin {
    /// `None` when the tenant has no certificate shape.
    pub fn of(w: &World) -> Option<Admin> {
        let id = w.emu.emulator.control().app_id_by_name(ADMIN)?;
        let options = secret_rotator::azure::ServiceOptions::new(w.http.clone())
            .with_retry(crate::support::emulator::fast_retry());
        let cred = w.emu.app_credential_with(ADMIN, ADMIN_SECRET, &options);
        Some(Admin {
            id,
            kv: CertificatesClient::new(Cloud::Public, cred.clone(), options.clone()),
            keys: KeyCredentialsClient::new(
                Cloud::Public,
                cred.clone(),
                options.clone(),
                Arc::new(WriteLimiter::default()),
            ),
            web: WebClient::new(Cloud::Public, cred, options),
        })
    }
}

fn others_policy() -> CertificatePolicy {
    CertificatePolicy {
        issuer: "Self".into(),
        subject: "CN=someone-else".into(),
        key: KeySpec::Rsa { bits: 2048 },
        exportable: false,
        reuse_key: false,
        content_type: ContentType::Pkcs12,
        validity_months: 12,
    }
}

fn object_id(w: &World, cert: &CertificateCredentialPolicy) -> Option<Uuid> {
    let AppRef::AppId(app) = cert.application else {
        return None;
    };
    let state = w.emu.emulator.control().state();
    let apps = state.pointer("/applications")?.as_array()?;
    let a = apps
        .iter()
        .find(|a| a["appId"].as_str() == Some(app.to_string().as_str()))?;
    a["objectId"]
        .as_str()
        .or(a["id"].as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Someone adds a key of their own to the application (a merge-write keeping every key):
/// `Err` says why it could not (a fault, a concurrent write): then nothing was added.
pub async fn someone_adds_a_key(
    w: &World,
    admin: &Admin,
    cert: &CertificateCredentialPolicy,
) -> Result<(), String> {
    let vault = &cert.certificate.vault;
    let e = |x: secret_rotator::azure::Error| x.to_string();
    admin
        .kv
        .create_version(vault, OTHERS_CERT, Some(&others_policy()))
        .await
        .map_err(e)?;
    w.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let v = admin.kv.get(vault, OTHERS_CERT, None).await.map_err(e)?;
    let object = object_id(w, cert).ok_or("no application")?;
    let new = NewKeyCredential {
        key_id: Uuid::new_v4(),
        display_name: format!("added by hand {}", Utc::now().timestamp()),
        cer: v.cer,
    };
    admin
        .keys
        .merge_write(object, &[new], &[])
        .await
        .map(|_| ())
        .map_err(e)
}

/// Key Vault makes a new version from the stored policy, as its auto-renewal does (only once
/// the certificate exists).
pub async fn key_vault_renews(
    w: &World,
    admin: &Admin,
    cert: &CertificateCredentialPolicy,
) -> Result<(), String> {
    let c = w.emu.emulator.control();
    if c.certificate_versions(&cert.certificate.vault, &cert.certificate.name)
        .is_empty()
    {
        return Err("not created yet".into());
    }
    admin
        .kv
        .create_version(&cert.certificate.vault, &cert.certificate.name, None)
        .await
        .map(|_| ())
        .map_err(|x| x.to_string())
}

/// A person moves the converted secret's consumer to the certificate: its setting becomes a
/// Key Vault reference to the certificate's secret.
pub async fn person_moves_the_secret_consumer(
    w: &World,
    admin: &Admin,
    cert: &CertificateCredentialPolicy,
) -> Result<(), String> {
    let Some(secret) = &cert.replaces_secret else {
        return Err("not a conversion".into());
    };
    let cred = w
        .engine
        .policy
        .credentials
        .iter()
        .find(|c| &c.name == secret)
        .ok_or("replaced secret not in the policy")?;
    let Some(secret_rotator::policy::Consumer::AppSettingKeyVaultRef { site, setting }) =
        cred.consumers.first()
    else {
        return Err("the secret's consumer is not a reference".into());
    };
    let value = format!(
        "@Microsoft.KeyVault(VaultName={};SecretName={})",
        cert.certificate.vault, cert.certificate.name
    );
    admin
        .web
        .set_one(site, setting, SettingValue::new(value))
        .await
        .map(|_| ())
        .map_err(|x| x.to_string())
}
