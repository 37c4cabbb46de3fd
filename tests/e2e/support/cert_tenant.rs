//! A small tenant for certificate credentials, shared by the certificate fault table and the
//! oracle's own tests: application `payments-api` owned by the rotator, with a key someone
//! else added (it must survive every write) and a client secret; vault `kv-pay` (certificates,
//! keys and secrets roles for the rotator); site `func-pay` whose identity may read the vault,
//! with a thumbprint setting, a Key Vault reference to the certificate's secret and a
//! reference to the client secret (the conversion's consumer); and an `admin` application,
//! the other writer of keyCredentials.

use serde_json::{Value, json};
use uuid::Uuid;

pub const TENANT: &str = "6d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a";
pub const SUB: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const PAY_APP: &str = "2f4e6a8c-1b3d-4e5f-8a7b-9c0d1e2f3a41";
pub const PAY_OBJ: &str = "2f4e6a8c-1b3d-4e5f-8a7b-9c0d1e2f3aa1";
pub const VAULT: &str = "kv-pay";
pub const CERT: &str = "pay-cert";
pub const SECRET: &str = "pay-secret";
pub const RG_APP: &str = "rg-pay";
pub const SITE: &str = "func-pay";
pub const THUMB_SETTING: &str = "WEBSITE_LOAD_CERTIFICATES";
pub const PFX_SETTING: &str = "ClientCertificate";
pub const SECRET_SETTING: &str = "PaySecret";
/// The client secret the conversion replaces (on the app, in the vault, behind the setting).
pub const PAY_PASSWORD: &str = "pay8Q~client.secret-for-conversion-012345";
/// The other writer of keyCredentials (Application.ReadWrite.All): a person's tooling.
pub const ADMIN_APP: &str = "admin";
pub const ADMIN_SECRET: &str = "adm8Q~someone.else-writes-keys-0123456789";
/// The key on the application that someone else added before the rotator ran.
pub const OTHERS_KEY: &str = "3c5e7a9b-2d4f-4a6c-8e0b-1d3f5a7c9e01";

pub fn pay_app() -> Uuid {
    Uuid::parse_str(PAY_APP).unwrap()
}

pub fn site_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Web/sites/{SITE}")
}

/// The tenant at `now` (RFC 3339) with the client secret ending at `secret_end`.
pub fn scenario(now: &str, secret_end: &str) -> Value {
    let far = "2099-01-01T00:00:00Z";
    let vault_scope = format!(
        "/subscriptions/{{sub}}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/{VAULT}"
    );
    let site_scope = format!(
        "/subscriptions/{{sub}}/resourceGroups/{RG_APP}/providers/Microsoft.Web/sites/{SITE}"
    );
    let mut roles: Vec<Value> = [
        "Key Vault Certificates Officer",
        "Key Vault Crypto User",
        "Key Vault Secrets Officer",
    ]
    .iter()
    .map(|r| json!({"principal": "secret-rotator", "role": r, "scope": vault_scope}))
    .collect();
    roles.push(
        json!({"principal": "secret-rotator", "role": "Website Contributor", "scope": site_scope}),
    );
    roles.push(json!({"principal": SITE, "role": "Key Vault Secrets User", "scope": vault_scope}));
    json!({
        "tenantId": TENANT,
        "subscriptionId": SUB,
        "now": now,
        "replicationDelaySeconds": 0,
        "managedIdentities": [
            {"name": "secret-rotator", "graphAppRoles": ["Application.ReadWrite.OwnedBy"]},
            {"name": SITE}
        ],
        "applications": [
            {"displayName": "payments-api", "appId": PAY_APP, "objectId": PAY_OBJ,
             "owners": ["secret-rotator"],
             "passwordCredentials": [{"displayName": "payments", "secretText": PAY_PASSWORD,
                                      "endDateTime": secret_end}],
             "keyCredentials": [{"keyId": OTHERS_KEY, "displayName": "someone else's",
                                 "endDateTime": far}]},
            {"displayName": ADMIN_APP, "graphAppRoles": ["Application.ReadWrite.All"],
             "passwordCredentials": [{"secretText": ADMIN_SECRET, "endDateTime": far}]}
        ],
        "vaults": [{"name": VAULT, "resourceGroup": "rg-sec",
                    "secrets": [{"name": SECRET, "versions": [{"value": PAY_PASSWORD}]}]}],
        "sites": [{"resourceGroup": RG_APP, "name": SITE, "identity": SITE,
                   "appSettings": {
                       "FUNCTIONS_WORKER_RUNTIME": "dotnet-isolated",
                       SECRET_SETTING: format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName={SECRET})")
                   }}],
        "roleAssignments": roles
    })
}

/// The certificate entry (`replaces`: the conversion of the client secret too).
pub fn certificate_entry(replaces: bool) -> Value {
    let mut e = json!({
        "type": "certificate",
        "name": "pay-cert",
        "application": {"appId": PAY_APP},
        "certificate": {"vault": VAULT, "name": CERT},
        "validityInMonths": 12,
        "renewBeforeDays": 30,
        "graceDays": 7,
        "consumers": [
            {"type": "appSettingThumbprint", "site": site_id(), "setting": THUMB_SETTING},
            {"type": "appSettingKeyVaultReference", "site": site_id(), "setting": PFX_SETTING},
            {"type": "notifyOnly", "system": "partner portal",
             "instructions": "Upload the new public certificate in the partner portal."}
        ]
    });
    if replaces {
        e["replacesSecret"] = json!("pay-secret");
    }
    e
}

/// The client-secret entry the conversion replaces.
pub fn secret_entry() -> Value {
    json!({
        "name": "pay-secret",
        "application": {"appId": PAY_APP},
        "keyVault": {"vault": VAULT, "secret": SECRET},
        "lifetimeDays": 180,
        "renewBeforeDays": 30,
        "graceDays": 7,
        "consumers": [
            {"type": "appSettingKeyVaultReference", "site": site_id(), "setting": SECRET_SETTING}
        ]
    })
}

/// The policy: the certificate alone, or with the secret it converts.
pub fn policy(conversion: bool) -> String {
    let mut creds = vec![certificate_entry(conversion)];
    if conversion {
        creds.push(secret_entry());
    }
    json!({ "credentials": creds }).to_string()
}
