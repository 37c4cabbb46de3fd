//! Test harness: starts an emulator on port 0 with a fixed scenario and builds a reqwest
//! client that trusts only the emulator's CA and resolves the Azure host names to it.

use azure_emulator::{Emulator, EmulatorConfig, Scenario};
use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const SUB: &str = "11111111-0000-0000-0000-000000000001";
pub const PAY_APP: &str = "22222222-0000-0000-0000-000000000001";
pub const PAY_OBJ: &str = "22222222-0000-0000-0000-0000000000a1";
pub const OTHER_APP: &str = "22222222-0000-0000-0000-000000000002";
pub const OTHER_OBJ: &str = "22222222-0000-0000-0000-0000000000a2";
pub const ADMIN_APP: &str = "22222222-0000-0000-0000-000000000003";
pub const ROTATOR_OID: &str = "33333333-0000-0000-0000-000000000001";
pub const NOW: &str = "2026-01-01T00:00:00Z";

pub fn scenario_json() -> Value {
    json!({
        "tenantId": TENANT,
        "subscriptionId": SUB,
        "now": NOW,
        "managedIdentities": [
            {"name": "rotator", "principalId": ROTATOR_OID, "graphAppRoles": ["Application.ReadWrite.OwnedBy"]},
            {"name": "site-mi"}
        ],
        "applications": [
            {"displayName": "payments-api", "appId": PAY_APP, "objectId": PAY_OBJ, "owners": ["rotator"],
             "passwordCredentials": [{"displayName": "initial", "secretText": "pay-secret-1", "endDateTime": "2026-06-01T00:00:00Z"}]},
            {"displayName": "other-app", "appId": OTHER_APP, "objectId": OTHER_OBJ,
             "passwordCredentials": [{"secretText": "old-secret", "endDateTime": "2025-12-01T00:00:00Z"}]},
            {"displayName": "admin-app", "appId": ADMIN_APP, "graphAppRoles": ["Application.ReadWrite.All"],
             "passwordCredentials": [{"secretText": "admin-secret", "endDateTime": "2027-01-01T00:00:00Z"}]}
        ],
        "vaults": [
            {"name": "kv1", "resourceGroup": "rg", "secrets": [
                {"name": "payments-secret", "versions": [{"value": "pay-secret-0", "version": "0123456789abcdef0123456789abcdef"}, {"value": "pay-secret-1", "tags": {"keyId": "k1"}}]}
            ]},
            {"name": "kv2", "resourceGroup": "rg2", "secrets": [{"name": "s", "versions": [{"value": "v"}]}]}
        ],
        "roleAssignments": [
            {"principal": "rotator", "role": "Key Vault Secrets Officer", "scope": "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"},
            {"principal": "site-mi", "role": "Key Vault Secrets User", "scope": "/subscriptions/{sub}/resourceGroups/rg"},
            {"principal": "rotator", "role": "Website Contributor", "scope": "/subscriptions/{sub}/resourceGroups/rg"},
            {"principal": "rotator", "role": "Logic App Contributor", "scope": "/subscriptions/{sub}/resourceGroups/rg"},
            {"principal": "rotator", "role": "Automation Contributor", "scope": "/subscriptions/{sub}"}
        ],
        "sites": [
            {"resourceGroup": "rg", "name": "app1", "identity": "site-mi", "appSettings": {
                "PAY_SECRET": "@Microsoft.KeyVault(VaultName=kv1;SecretName=payments-secret)",
                "PINNED": "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/payments-secret/0123456789abcdef0123456789abcdef)",
                "DENIED": "@Microsoft.KeyVault(VaultName=kv2;SecretName=s)",
                "OTHER": "plain"
            }}
        ],
        "connections": [
            {"resourceGroup": "rg", "name": "kv-conn", "parameterValues": {
                "vaultName": "kv1", "token:clientId": PAY_APP, "token:clientSecret": "pay-secret-1",
                "token:TenantId": TENANT, "token:grantType": "client_credentials"},
             "nonSecretParameterValues": {"vaultName": "kv1"}}
        ],
        "automationAccounts": [
            {"resourceGroup": "rg", "name": "aa1", "variables": [
                {"name": "PaySecret", "value": "\"pay-secret-1\"", "isEncrypted": true},
                {"name": "Plain", "value": "\"hello\""}
            ]}
        ]
    })
}

pub fn scenario() -> Scenario {
    serde_json::from_value(scenario_json()).expect("test scenario parses")
}

pub struct H {
    pub emu: Emulator,
    pub c: reqwest::Client,
    /// Plain HTTP client for the MI endpoint and control API.
    pub p: reqwest::Client,
}

pub async fn start_with(s: Scenario) -> H {
    let emu = azure_emulator::start(EmulatorConfig {
        scenario: s,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).unwrap();
    let addr = emu.https_addr();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    for h in [
        "login.microsoftonline.com",
        "graph.microsoft.com",
        "management.azure.com",
        "kv1.vault.azure.net",
        "kv2.vault.azure.net",
        "nokv.vault.azure.net",
    ] {
        b = b.resolve(h, addr);
    }
    let c = b.build().unwrap();
    let p = reqwest::Client::builder().no_proxy().build().unwrap();
    H { emu, c, p }
}

pub async fn start() -> H {
    start_with(scenario()).await
}

impl H {
    pub async fn mi_token(&self, mi: &str, resource: &str) -> String {
        let r = self
            .p
            .get(self.emu.msi_endpoint())
            .query(&[("api-version", "2019-08-01"), ("resource", resource)])
            .header("X-IDENTITY-HEADER", self.emu.identity_header(mi).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn sp_token(&self, client_id: &str, secret: &str, scope: &str) -> reqwest::Response {
        self.c
            .post(format!(
                "https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn sp_access_token(&self, client_id: &str, secret: &str, scope: &str) -> String {
        let r = self.sp_token(client_id, secret, scope).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub fn arm(&self, path: &str) -> String {
        format!(
            "https://management.azure.com/subscriptions/{SUB}/resourceGroups/rg/providers/{path}"
        )
    }

    pub async fn control_post(&self, route: &str, body: Value) -> reqwest::Response {
        self.p
            .post(format!("{}/{route}", self.emu.control_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// Sends and reads the JSON answer.
pub async fn call(rb: reqwest::RequestBuilder) -> (u16, Value) {
    json(rb.send().await.unwrap()).await
}

pub async fn json(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    let v = if t.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&t).unwrap_or(Value::String(t))
    };
    (s, v)
}
