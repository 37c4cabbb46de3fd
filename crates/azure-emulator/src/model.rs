//! The in-memory tenant: applications and their service principals, managed identities, vaults
//! and secret versions, sites with app settings and their Key Vault reference cache, API
//! connections, Automation accounts, role assignments; built from a [`Scenario`].
//!
//! Services (graph.rs, keyvault.rs, arm.rs, entra.rs) mutate it under one mutex; the typed
//! oracles in lib.rs read it. RBAC role definitions live here too (`role_grants`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::EmulatorError;
use crate::scenario::AppManagementPolicySpec;
use crate::scenario::{
    ApplicationSpec, AutomationAccountSpec, ConnectionSpec, ManagedIdentitySpec, Quota,
    RoleAssignmentSpec, Scenario, SecretSpec, SiteSpec, VaultSpec,
};
use crate::util::{hex32, sha_hex};

#[derive(Debug, Clone)]
pub struct Password {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub secret: String,
    pub hint: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When it was added; the replication delay counts from here.
    pub added_at: DateTime<Utc>,
}

impl crate::scenario::KeyCredentialSpec {
    fn to_model(&self, now: DateTime<Utc>) -> Certificate {
        let start = self.start_date_time.unwrap_or(now - Duration::days(30));
        Certificate {
            key_id: self.key_id.unwrap_or_else(Uuid::new_v4),
            display_name: self.display_name.clone(),
            start,
            end: self.end_date_time,
            der: placeholder_certificate(start, self.end_date_time),
            usage: "Verify".into(),
            key_type: "AsymmetricX509Cert".into(),
            // Scenario keys are long replicated.
            added_at: start.min(now) - Duration::days(1),
        }
    }
}

/// A self-signed EC certificate for a scenario key credential's validity (its key is
/// dropped); empty when the dates cannot be encoded (then it verifies nothing).
fn placeholder_certificate(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<u8> {
    use crate::crypto::{KeyKind, PrivateKey, self_signed};
    PrivateKey::generate(KeyKind::EcP256)
        .and_then(|k| self_signed(&k, "CN=scenario key credential", &[], start, end))
        .unwrap_or_default()
}

/// A certificate credential (`keyCredential`) with its DER certificate, which proofs and
/// client assertions are verified against. A scenario's credentials get a generated
/// certificate whose private key nobody holds (they list and read back, but sign nothing in).
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub der: Vec<u8>,
    /// `Verify` or `Sign`.
    pub usage: String,
    /// `AsymmetricX509Cert` or `X509CertAndPassword`.
    pub key_type: String,
    /// When it was written; the token service's replication delay counts from here.
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub object_id: Uuid,
    pub app_id: Uuid,
    pub sp_id: Uuid,
    pub display_name: String,
    /// Object ids of owner principals (service principals or managed identities).
    pub owners: Vec<Uuid>,
    pub passwords: Vec<Password>,
    /// Certificates (`keyCredentials`): written by `addKey`, `removeKey` and `PATCH`.
    pub certificates: Vec<Certificate>,
    /// Certificates of the service principal (SAML signing), listed by `GET servicePrincipals`.
    pub sp_certificates: Vec<Certificate>,
    pub graph_roles: Vec<String>,
    pub created: DateTime<Utc>,
    pub sign_in_audience: String,
}

#[derive(Debug, Clone)]
pub struct Mi {
    pub name: String,
    pub principal_id: Uuid,
    pub client_id: Uuid,
    pub header: String,
    pub graph_roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone)]
pub struct SecretEntry {
    pub name: String,
    /// Oldest first; the last one is "latest".
    pub versions: Vec<SecretVersion>,
}

#[derive(Debug, Clone)]
pub struct DeletedSecret {
    pub entry: SecretEntry,
    pub deleted_date: i64,
    pub scheduled_purge: i64,
}

#[derive(Debug, Clone)]
pub struct Vault {
    pub name: String,
    pub resource_group: String,
    /// Keyed by lower-case name (Key Vault names are case-insensitive).
    pub secrets: BTreeMap<String, SecretEntry>,
    pub deleted: BTreeMap<String, DeletedSecret>,
    /// Certificates and their keys (keyed by lower-case name), see certificates.rs.
    pub certificates: BTreeMap<String, crate::certificates::CertEntry>,
    pub keys: BTreeMap<String, crate::certificates::KeyEntry>,
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    pub principal_id: Uuid,
    pub role: String,
    pub scope: String,
}

/// One resolved (or failed) Key Vault reference as the site's runtime holds it.
#[derive(Debug, Clone)]
pub struct CachedRef {
    pub reference: String,
    pub status: String,
    pub details: String,
    pub vault_name: String,
    pub secret_name: String,
    pub secret_version: String,
    pub active_version: Option<String>,
    pub value: Option<String>,
    pub fetched_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub resource_group: String,
    pub name: String,
    pub identity: Option<String>,
    pub settings: BTreeMap<String, String>,
    /// Resolution cache for the settings that are Key Vault references, by setting name.
    pub refs: BTreeMap<String, CachedRef>,
    pub restarts: u32,
    /// Deployment slot name: this is `{name}/slots/{slot}`.
    pub slot: Option<String>,
    /// Uncertainty `late`: a re-resolution asked for and due at this (emulated) time.
    pub resolve_due: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub api: String,
    pub display_name: String,
    pub parameter_values: BTreeMap<String, String>,
    pub non_secret: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    pub changed: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub value: Option<String>,
    pub is_encrypted: bool,
    pub description: Option<String>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AutomationAccount {
    pub resource_group: String,
    pub name: String,
    pub variables: BTreeMap<String, Variable>,
}

/// The whole emulated tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub tenant_id: Uuid,
    pub tenant_domain: String,
    pub subscription_id: Uuid,
    pub replication_delay: u64,
    pub latency_ms: u64,
    /// Access-token lifetime in seconds.
    pub token_lifetime: i64,
    pub graph_quota: Quota,
    /// Key credentials per application (`Scenario::key_credential_limit`).
    pub key_credential_limit: usize,
    pub uncertainties: crate::scenario::Uncertainties,
    /// (policy id, spec, exempt principal object ids) of the tenant app management policy.
    pub app_policy: Option<(Uuid, crate::scenario::AppManagementPolicySpec, Vec<Uuid>)>,
    /// Managed API name (lower case) → connection parameter name → type.
    pub managed_apis: BTreeMap<String, BTreeMap<String, String>>,
    pub apps: Vec<App>,
    pub mis: Vec<Mi>,
    /// Keyed by lower-case vault name.
    pub vaults: BTreeMap<String, Vault>,
    pub roles: Vec<RoleAssignment>,
    /// Keyed by (lower rg, lower name).
    pub sites: BTreeMap<(String, String), Site>,
    pub connections: BTreeMap<(String, String), Connection>,
    pub automation: BTreeMap<(String, String), AutomationAccount>,
    /// Graph write timestamps per calling appid, for the write quota.
    pub graph_writes: HashMap<Uuid, VecDeque<DateTime<Utc>>>,
    /// ARM's token buckets and Key Vault's windows (`crate::throttle`).
    pub throttles: crate::throttle::Throttles,
    /// Every write that changed an application's keyCredentials, in order (the oracle's).
    pub key_writes: Vec<crate::keycreds::KeyWrite>,
}

/// The name a site (or one of its deployment slots) is kept under: `site` or `site/slots/slot`.
pub fn site_key(site: &str, slot: Option<&str>) -> String {
    match slot {
        Some(slot) => format!("{site}/slots/{slot}"),
        None => site.to_string(),
    }
}

pub fn key(rg: &str, name: &str) -> (String, String) {
    (rg.to_ascii_lowercase(), name.to_ascii_lowercase())
}

pub fn valid_secret_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The identity header of a managed identity: derived from a per-process key and the name, so
/// it is stable across scenario reloads yet not guessable from outside.
pub fn identity_header(process_key: &[u8], name: &str) -> String {
    sha_hex(&[process_key, b"mi-header", name.as_bytes()])[..32].to_string()
}

fn bad(msg: impl Into<String>) -> EmulatorError {
    EmulatorError::Scenario(msg.into())
}

/// An application and its service principal as the scenario describes them; its scenario
/// passwords count as long replicated.
fn app_from_spec(a: &ApplicationSpec, now: DateTime<Utc>) -> Result<App, EmulatorError> {
    let mut passwords = vec![];
    for p in &a.password_credentials {
        if p.secret_text.is_empty() {
            return Err(bad(format!(
                "application '{}' has a password with an empty secretText",
                a.display_name
            )));
        }
        let start = p.start_date_time.unwrap_or(now - Duration::days(30));
        passwords.push(Password {
            key_id: p.key_id.unwrap_or_else(Uuid::new_v4),
            display_name: p.display_name.clone(),
            hint: p.secret_text.chars().take(3).collect(),
            secret: p.secret_text.clone(),
            start,
            end: p.end_date_time,
            // Scenario passwords are long replicated.
            added_at: start.min(now) - Duration::days(1),
        });
    }
    Ok(App {
        object_id: a.object_id.unwrap_or_else(Uuid::new_v4),
        app_id: a.app_id.unwrap_or_else(Uuid::new_v4),
        sp_id: a.service_principal_id.unwrap_or_else(Uuid::new_v4),
        display_name: a.display_name.clone(),
        owners: vec![],
        passwords,
        certificates: a.key_credentials.iter().map(|k| k.to_model(now)).collect(),
        sp_certificates: a
            .service_principal_key_credentials
            .iter()
            .map(|k| k.to_model(now))
            .collect(),
        graph_roles: a.graph_app_roles.clone(),
        created: now - Duration::days(365),
        sign_in_audience: a
            .sign_in_audience
            .clone()
            .unwrap_or_else(|| "AzureADMyOrg".into()),
    })
}

fn vault_from_spec(v: &VaultSpec, now: DateTime<Utc>) -> Result<Vault, EmulatorError> {
    if !valid_vault_name(&v.name) {
        return Err(bad(format!(
            "vault name '{}' is not valid (3-24 letters, digits, hyphens)",
            v.name
        )));
    }
    let mut vault = Vault {
        name: v.name.clone(),
        resource_group: v.resource_group.clone().unwrap_or_else(|| "rg".into()),
        secrets: BTreeMap::new(),
        deleted: BTreeMap::new(),
        certificates: BTreeMap::new(),
        keys: BTreeMap::new(),
    };
    for sec in &v.secrets {
        if !valid_secret_name(&sec.name) {
            return Err(bad(format!("secret name '{}' is not valid", sec.name)));
        }
        vault
            .secrets
            .insert(sec.name.to_ascii_lowercase(), secret_from_spec(sec, now));
    }
    Ok(vault)
}

/// A scenario secret's versions, oldest first, created one hour apart before `now`.
fn secret_from_spec(sec: &SecretSpec, now: DateTime<Utc>) -> SecretEntry {
    let now_s = now.timestamp();
    let n = sec.versions.len() as i64;
    let versions = sec
        .versions
        .iter()
        .enumerate()
        .map(|(i, sv)| {
            // Older versions were created earlier, one hour apart.
            let created = now_s - (n - i as i64) * 3600;
            SecretVersion {
                version: sv.version.clone().unwrap_or_else(hex32),
                value: sv.value.clone(),
                content_type: sv.content_type.clone(),
                tags: sv.tags.clone(),
                enabled: sv.enabled.unwrap_or(true),
                nbf: None,
                exp: sv.expires.map(|e| e.timestamp()),
                created,
                updated: created,
            }
        })
        .collect();
    SecretEntry {
        name: sec.name.clone(),
        versions,
    }
}

/// An API connection, its parameters split into secret and non-secret ones by its managed
/// API's parameter catalogue (`managed_apis.rs`).
fn connection_from_spec(
    catalogue: &BTreeMap<String, BTreeMap<String, String>>,
    c: &ConnectionSpec,
    now: DateTime<Utc>,
) -> Result<Connection, EmulatorError> {
    let created = now - Duration::days(30);
    let api = c.api.clone().unwrap_or_else(|| "keyvault".into());
    let mut all = c.non_secret_parameter_values.clone();
    all.extend(c.parameter_values.clone());
    let (secret, non_secret) = crate::managed_apis::split(catalogue, &api, all)
        .map_err(|m| bad(format!("connection '{}': {m}", c.name)))?;
    Ok(Connection {
        resource_group: c.resource_group.clone(),
        name: c.name.clone(),
        location: c.location.clone().unwrap_or_else(|| "westeurope".into()),
        api,
        display_name: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
        parameter_values: secret,
        non_secret,
        tags: BTreeMap::new(),
        created,
        changed: created,
    })
}

/// An Automation account; each variable's value must already be JSON-encoded, as ARM stores it.
fn account_from_spec(
    a: &AutomationAccountSpec,
    now: DateTime<Utc>,
) -> Result<AutomationAccount, EmulatorError> {
    let mut acct = AutomationAccount {
        resource_group: a.resource_group.clone(),
        name: a.name.clone(),
        variables: BTreeMap::new(),
    };
    for v in &a.variables {
        if serde_json::from_str::<Value>(&v.value).is_err() {
            return Err(bad(format!(
                "automation variable '{}' value is not JSON-encoded (a string is written \"\\\"text\\\"\")",
                v.name
            )));
        }
        let created = now - Duration::days(30);
        acct.variables.insert(
            v.name.to_ascii_lowercase(),
            Variable {
                name: v.name.clone(),
                value: Some(v.value.clone()),
                is_encrypted: v.is_encrypted,
                description: v.description.clone(),
                created,
                modified: created,
            },
        );
    }
    Ok(acct)
}

impl Tenant {
    /// The tenant a scenario describes, each section loaded in the order its references need:
    /// principals before the policy, owners and role assignments that name them; sites last,
    /// since starting them resolves their Key Vault references.
    pub fn from_scenario(
        s: &Scenario,
        now: DateTime<Utc>,
        process_key: &[u8],
    ) -> Result<Tenant, EmulatorError> {
        let mut t = Tenant::empty(s)?;
        t.load_managed_identities(&s.managed_identities, process_key)?;
        t.load_applications(&s.applications, now)?;
        t.load_app_policy(s)?;
        t.load_owners(&s.applications)?;
        t.load_vaults(&s.vaults, now)?;
        t.load_role_assignments(&s.role_assignments)?;
        t.load_sites(&s.sites)?;
        t.load_connections(&s.connections, now)?;
        t.load_automation_accounts(&s.automation_accounts, now)?;
        t.start_sites(now);
        Ok(t)
    }

    /// The tenant-wide settings with defaults, and no resources yet.
    fn empty(s: &Scenario) -> Result<Tenant, EmulatorError> {
        let t = Tenant {
            tenant_id: s.tenant_id.unwrap_or_else(Uuid::new_v4),
            tenant_domain: s
                .tenant_domain
                .clone()
                .unwrap_or_else(|| "contoso.onmicrosoft.com".into()),
            subscription_id: s.subscription_id.unwrap_or_else(Uuid::new_v4),
            replication_delay: s.replication_delay_seconds,
            latency_ms: s.latency_ms,
            token_lifetime: s
                .token_lifetime_seconds
                .map(|v| v.min(10 * 365 * 86400) as i64)
                .unwrap_or(crate::entra::TOKEN_SECONDS),
            graph_quota: s.graph_write_quota.unwrap_or(Quota {
                requests: 3000,
                window_seconds: 150,
            }),
            key_credential_limit: s.key_credential_limit.unwrap_or(600) as usize,
            uncertainties: s.uncertainties.clone(),
            app_policy: None,
            managed_apis: crate::managed_apis::catalogue(&s.managed_apis),
            apps: vec![],
            mis: vec![],
            vaults: BTreeMap::new(),
            roles: vec![],
            sites: BTreeMap::new(),
            connections: BTreeMap::new(),
            automation: BTreeMap::new(),
            graph_writes: HashMap::new(),
            key_writes: Vec::new(),
            throttles: crate::throttle::Throttles::new(s.throttling.map(|t| t.spec())),
        };
        if t.token_lifetime < 60 {
            return Err(bad("tokenLifetimeSeconds must be at least 60"));
        }
        if t.graph_quota.requests == 0 || t.graph_quota.window_seconds == 0 {
            return Err(bad(
                "graphWriteQuota needs requests > 0 and windowSeconds > 0",
            ));
        }
        Ok(t)
    }

    fn load_managed_identities(
        &mut self,
        specs: &[ManagedIdentitySpec],
        process_key: &[u8],
    ) -> Result<(), EmulatorError> {
        for m in specs {
            if m.name.trim().is_empty() {
                return Err(bad("a managed identity has an empty name"));
            }
            if self.mis.iter().any(|x| x.name == m.name) {
                return Err(bad(format!(
                    "managed identity '{}' is defined twice",
                    m.name
                )));
            }
            self.mis.push(Mi {
                name: m.name.clone(),
                principal_id: m.principal_id.unwrap_or_else(Uuid::new_v4),
                client_id: m.client_id.unwrap_or_else(Uuid::new_v4),
                header: identity_header(process_key, &m.name),
                graph_roles: m.graph_app_roles.clone(),
            });
        }
        Ok(())
    }

    /// The applications, without owners yet (an owner may be an application defined later).
    fn load_applications(
        &mut self,
        specs: &[ApplicationSpec],
        now: DateTime<Utc>,
    ) -> Result<(), EmulatorError> {
        for a in specs {
            if self.apps.iter().any(|x| x.display_name == a.display_name) {
                return Err(bad(format!(
                    "application '{}' is defined twice (display names are the scenario's handles)",
                    a.display_name
                )));
            }
            self.apps.push(app_from_spec(a, now)?);
        }
        Ok(())
    }

    /// The tenant app management policy, naming its exempt principals.
    fn load_app_policy(&mut self, s: &Scenario) -> Result<(), EmulatorError> {
        // `maxPasswordLifetimeDays` is shorthand for a default policy with only a lifetime cap
        // (one model of app management policies, `tenant_policy_allows` in graph.rs).
        let shorthand = s
            .max_password_lifetime_days
            .map(|days| AppManagementPolicySpec {
                id: Some(Uuid::nil()),
                max_password_lifetime_days: Some(days),
                ..AppManagementPolicySpec::default()
            });
        if shorthand.is_some() && s.app_management_policy.is_some() {
            return Err(bad(
                "set maxPasswordLifetimeDays or appManagementPolicy, not both".to_string(),
            ));
        }
        if let Some(p) = s.app_management_policy.as_ref().or(shorthand.as_ref()) {
            let mut exempt = Vec::new();
            for name in &p.exclude_actors {
                exempt.push(self.principal_by_name(name).ok_or_else(|| {
                    bad(format!(
                        "app management policy excludes '{name}', which is neither a managed identity nor an application"
                    ))
                })?);
            }
            self.app_policy = Some((p.id.unwrap_or_else(Uuid::new_v4), p.clone(), exempt));
        }
        Ok(())
    }

    /// Owners after all principals exist (an app may own another app).
    fn load_owners(&mut self, specs: &[ApplicationSpec]) -> Result<(), EmulatorError> {
        for (i, a) in specs.iter().enumerate() {
            let mut owners = vec![];
            for o in &a.owners {
                let id = self.principal_by_name(o).ok_or_else(|| {
                    bad(format!(
                        "owner '{o}' of application '{}' is neither a managed identity nor an application",
                        a.display_name
                    ))
                })?;
                owners.push(id);
            }
            self.apps[i].owners = owners;
        }
        Ok(())
    }

    fn load_vaults(
        &mut self,
        specs: &[VaultSpec],
        now: DateTime<Utc>,
    ) -> Result<(), EmulatorError> {
        for v in specs {
            let vault = vault_from_spec(v, now)?;
            if self
                .vaults
                .insert(v.name.to_ascii_lowercase(), vault)
                .is_some()
            {
                return Err(bad(format!("vault '{}' is defined twice", v.name)));
            }
        }
        Ok(())
    }

    /// Role assignments: a known principal, an emulated built-in role, a scope under `/`
    /// (`{sub}` stands for the subscription id).
    fn load_role_assignments(&mut self, specs: &[RoleAssignmentSpec]) -> Result<(), EmulatorError> {
        let sub = self.subscription_id.to_string();
        for r in specs {
            let pid = self.principal_by_name(&r.principal).ok_or_else(|| {
                bad(format!(
                    "role assignment principal '{}' is neither a managed identity nor an application",
                    r.principal
                ))
            })?;
            if role_grants(&r.role).is_none() {
                return Err(bad(format!(
                    "role '{}' is not one of the emulated built-in roles ({})",
                    r.role,
                    ROLES.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
                )));
            }
            let scope = r.scope.replace("{sub}", &sub);
            if !scope.starts_with('/') {
                return Err(bad(format!(
                    "role assignment scope '{scope}' must start with '/'"
                )));
            }
            self.roles.push(RoleAssignment {
                principal_id: pid,
                role: r.role.clone(),
                scope: scope.trim_end_matches('/').to_string(),
            });
        }
        Ok(())
    }

    fn load_sites(&mut self, specs: &[SiteSpec]) -> Result<(), EmulatorError> {
        for site in specs {
            let rg = &site.resource_group;
            self.add_site(
                rg,
                &site.name,
                site.slot.as_deref(),
                &site.identity,
                &site.app_settings,
            )?;
            for slot in &site.slots {
                // A slot is a site of its own under `sites/{site}/slots/{slot}`.
                self.add_site(
                    rg,
                    &site.name,
                    Some(&slot.name),
                    &slot.identity,
                    &slot.app_settings,
                )?;
            }
        }
        Ok(())
    }

    fn load_connections(
        &mut self,
        specs: &[ConnectionSpec],
        now: DateTime<Utc>,
    ) -> Result<(), EmulatorError> {
        for c in specs {
            let k = key(&c.resource_group, &c.name);
            if self.connections.contains_key(&k) {
                return Err(bad(format!("connection '{}' is defined twice", c.name)));
            }
            let connection = connection_from_spec(&self.managed_apis, c, now)?;
            self.connections.insert(k, connection);
        }
        Ok(())
    }

    fn load_automation_accounts(
        &mut self,
        specs: &[AutomationAccountSpec],
        now: DateTime<Utc>,
    ) -> Result<(), EmulatorError> {
        for a in specs {
            let k = key(&a.resource_group, &a.name);
            let acct = account_from_spec(a, now)?;
            if self.automation.insert(k, acct).is_some() {
                return Err(bad(format!(
                    "automation account '{}' is defined twice",
                    a.name
                )));
            }
        }
        Ok(())
    }

    /// The sites "start" now: every Key Vault reference is resolved once.
    fn start_sites(&mut self, now: DateTime<Utc>) {
        let keys: Vec<_> = self.sites.keys().cloned().collect();
        for k in keys {
            crate::arm::resolve_all(self, &k, now);
        }
    }

    pub fn principal_by_name(&self, name: &str) -> Option<Uuid> {
        self.mi_by_name(name).map(|m| m.principal_id).or_else(|| {
            self.apps
                .iter()
                .find(|a| a.display_name == name)
                .map(|a| a.sp_id)
        })
    }

    pub fn mi_by_name(&self, name: &str) -> Option<&Mi> {
        self.mis.iter().find(|m| m.name == name)
    }

    pub fn app_by_app_id(&self, app_id: Uuid) -> Option<&App> {
        self.apps.iter().find(|a| a.app_id == app_id)
    }

    /// Does the tenant name (GUID or domain) denote this tenant?
    pub fn is_tenant(&self, t: &str) -> bool {
        t.eq_ignore_ascii_case(&self.tenant_id.to_string())
            || t.eq_ignore_ascii_case(&self.tenant_domain)
    }

    pub fn vault_scope(&self, v: &Vault) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
            self.subscription_id, v.resource_group, v.name
        )
    }

    /// Is `principal` allowed `action` (control-plane) or data action on `resource`?
    /// Adds one site (or slot, named `{site}/slots/{slot}`) from the scenario.
    /// A site, or its deployment slot `slot` (its own settings and identity, keyed
    /// `{site}/slots/{slot}`); a slot's site must be added first.
    fn add_site(
        &mut self,
        rg: &str,
        name: &str,
        slot: Option<&str>,
        identity: &Option<String>,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), EmulatorError> {
        if let Some(idn) = identity
            && self.mi_by_name(idn).is_none()
        {
            return Err(bad(format!(
                "site '{name}' names identity '{idn}', which is not a managed identity of the scenario"
            )));
        }
        let k = key(rg, &site_key(name, slot));
        if self.sites.contains_key(&k) {
            return Err(bad(format!(
                "site '{}' is defined twice",
                site_key(name, slot)
            )));
        }
        if let Some(slot) = slot
            && !self.sites.contains_key(&key(rg, name))
        {
            return Err(bad(format!(
                "slot '{slot}' of site '{name}' comes before (or without) its site"
            )));
        }
        let site = Site {
            resource_group: rg.to_string(),
            name: name.to_string(),
            identity: identity.clone(),
            settings: settings.clone(),
            refs: BTreeMap::new(),
            restarts: 0,
            slot: slot.map(str::to_string),
            resolve_due: None,
        };
        self.sites.insert(k, site);
        Ok(())
    }

    pub fn authorized(&self, principal: Uuid, resource: &str, action: &str, data: bool) -> bool {
        let res = resource.to_ascii_lowercase();
        self.roles.iter().any(|r| {
            if r.principal_id != principal {
                return false;
            }
            let scope = r.scope.to_ascii_lowercase();
            let in_scope = res == scope || res.starts_with(&format!("{scope}/"));
            if !in_scope {
                return false;
            }
            let Some(g) = role_grants(&r.role) else {
                return false;
            };
            let (allow, deny) = if data {
                (g.data_actions, &[][..])
            } else {
                (g.actions, g.not_actions)
            };
            allow.iter().any(|p| crate::util::glob_match(p, action))
                && !deny.iter().any(|p| crate::util::glob_match(p, action))
        })
    }

    /// Entra's verdict on a client secret for `app_id`: Ok or the AADSTS code.
    pub fn check_secret(&self, app_id: Uuid, secret: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let app = self.app_by_app_id(app_id).ok_or(700016u64)?;
        let Some(p) = app.passwords.iter().find(|p| p.secret == secret) else {
            return Err(7000215);
        };
        // A password not replicated yet, or not yet valid, is just an unknown secret to the
        // token service (it answers 7000215, not a special code).
        if now < p.added_at + Duration::seconds(self.replication_delay as i64) || now < p.start {
            return Err(7000215);
        }
        if now >= p.end {
            return Err(7000222);
        }
        Ok(())
    }

    /// Full dump for `GET /_emulator/state` (includes secret values: it is the test oracle).
    pub fn dump(&self, now: DateTime<Utc>) -> Value {
        let apps: Vec<Value> = self.apps.iter().map(|a| json!({
            "objectId": a.object_id, "appId": a.app_id, "servicePrincipalId": a.sp_id,
            "displayName": a.display_name, "owners": a.owners, "graphAppRoles": a.graph_roles,
            "passwordCredentials": a.passwords.iter().map(|p| json!({
                "keyId": p.key_id, "displayName": p.display_name, "hint": p.hint,
                "secretText": p.secret, "startDateTime": crate::util::iso(p.start),
                "endDateTime": crate::util::iso(p.end), "addedAt": crate::util::iso(p.added_at),
            })).collect::<Vec<_>>(),
            "keyCredentials": crate::keycreds::records(a).iter().map(|k| json!({
                "keyId": k.key_id, "displayName": k.display_name, "thumbprint": k.thumbprint,
                "startDateTime": crate::util::iso(k.start), "endDateTime": crate::util::iso(k.end),
            })).collect::<Vec<_>>(),
        })).collect();
        let mis: Vec<Value> = self
            .mis
            .iter()
            .map(|m| {
                json!({
                    "name": m.name, "principalId": m.principal_id, "clientId": m.client_id,
                    "identityHeader": m.header, "graphAppRoles": m.graph_roles,
                })
            })
            .collect();
        let vaults: Vec<Value> = self.vaults.values().map(|v| json!({
            "name": v.name, "resourceGroup": v.resource_group,
            "secrets": v.secrets.values().map(|s| json!({
                "name": s.name,
                "versions": s.versions.iter().map(|sv| json!({
                    "version": sv.version, "value": sv.value, "contentType": sv.content_type,
                    "tags": sv.tags, "enabled": sv.enabled, "nbf": sv.nbf, "exp": sv.exp,
                    "created": sv.created, "updated": sv.updated,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "deletedSecrets": v.deleted.values().map(|d| json!({
                "name": d.entry.name, "deletedDate": d.deleted_date, "versions": d.entry.versions.len(),
            })).collect::<Vec<_>>(),
        })).collect();
        let sites: Vec<Value> = self
            .sites
            .values()
            .map(|s| {
                json!({
                    "resourceGroup": s.resource_group, "name": s.name, "identity": s.identity,
                    "appSettings": s.settings, "restarts": s.restarts,
                    "keyVaultReferences": s.refs.iter().map(|(n, r)| (n.clone(), json!({
                        "status": r.status, "activeVersion": r.active_version, "value": r.value,
                        "fetchedAt": crate::util::iso(r.fetched_at), "details": r.details,
                    }))).collect::<BTreeMap<_, _>>(),
                })
            })
            .collect();
        let conns: Vec<Value> = self
            .connections
            .values()
            .map(|c| {
                json!({
                    "resourceGroup": c.resource_group, "name": c.name, "api": c.api,
                    "parameterValues": c.parameter_values, "nonSecretParameterValues": c.non_secret,
                    "status": crate::arm::connection_status(self, c, now).0,
                })
            })
            .collect();
        let autos: Vec<Value> = self.automation.values().map(|a| json!({
            "resourceGroup": a.resource_group, "name": a.name,
            "variables": a.variables.values().map(|v| json!({
                "name": v.name, "value": v.value, "isEncrypted": v.is_encrypted, "description": v.description,
            })).collect::<Vec<_>>(),
        })).collect();
        json!({
            "now": crate::util::iso(now),
            "tenantId": self.tenant_id, "tenantDomain": self.tenant_domain,
            "subscriptionId": self.subscription_id,
            "replicationDelaySeconds": self.replication_delay,
            "graphWriteQuota": {"requests": self.graph_quota.requests, "windowSeconds": self.graph_quota.window_seconds},
            "applications": apps, "managedIdentities": mis, "vaults": vaults,
            "roleAssignments": self.roles.iter().map(|r| json!({"principalId": r.principal_id, "role": r.role, "scope": r.scope})).collect::<Vec<_>>(),
            "sites": sites, "connections": conns, "automationAccounts": autos,
        })
    }
}

pub fn valid_vault_name(n: &str) -> bool {
    (3..=24).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Actions, not-actions and data actions of one built-in role.
pub struct Grants {
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
}

/// The emulated built-in roles, with the action lists of the Azure built-in role definitions
/// (source: MicrosoftDocs/azure-docs `articles/role-based-access-control/built-in-roles/*.md`,
/// trimmed to the resource providers the emulator serves).
pub const ROLES: &[(&str, Grants)] = &[
    (
        "Owner",
        Grants {
            actions: &["*"],
            not_actions: &[],
            data_actions: &[],
        },
    ),
    (
        "Contributor",
        Grants {
            actions: &["*"],
            not_actions: &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ],
            data_actions: &[],
        },
    ),
    (
        "Reader",
        Grants {
            actions: &["*/read"],
            not_actions: &[],
            data_actions: &[],
        },
    ),
    (
        "Website Contributor",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Insights/components/*",
                "Microsoft.ResourceHealth/availabilityStatuses/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.Web/certificates/*",
                "Microsoft.Web/listSitesAssignedToHostName/read",
                "Microsoft.Web/serverFarms/join/action",
                "Microsoft.Web/serverFarms/read",
                "Microsoft.Web/sites/*",
            ],
            not_actions: &[],
            data_actions: &[],
        },
    ),
    (
        "Logic App Contributor",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.ClassicStorage/storageAccounts/listKeys/action",
                "Microsoft.ClassicStorage/storageAccounts/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Insights/metricAlerts/*",
                "Microsoft.Insights/diagnosticSettings/*",
                "Microsoft.Insights/logdefinitions/*",
                "Microsoft.Insights/metricDefinitions/*",
                "Microsoft.Logic/*",
                "Microsoft.ResourceHealth/availabilityStatuses/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/operationresults/read",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Storage/storageAccounts/listkeys/action",
                "Microsoft.Storage/storageAccounts/read",
                "Microsoft.Support/*",
                "Microsoft.Web/connectionGateways/*",
                "Microsoft.Web/connections/*",
                "Microsoft.Web/customApis/*",
                "Microsoft.Web/serverFarms/join/action",
                "Microsoft.Web/serverFarms/read",
                "Microsoft.Web/sites/functions/listSecrets/action",
            ],
            not_actions: &[],
            data_actions: &[],
        },
    ),
    (
        "Automation Contributor",
        Grants {
            actions: &[
                "Microsoft.Automation/automationAccounts/*",
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Insights/metrics/read",
                "Microsoft.Insights/diagnosticSettings/*",
                "Microsoft.ResourceHealth/availabilityStatuses/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.OperationalInsights/workspaces/read",
                "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
            ],
            not_actions: &[],
            data_actions: &[],
        },
    ),
    (
        "Key Vault Administrator",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.KeyVault/checkNameAvailability/read",
                "Microsoft.KeyVault/deletedVaults/read",
                "Microsoft.KeyVault/locations/*/read",
                "Microsoft.KeyVault/vaults/*/read",
                "Microsoft.KeyVault/operations/read",
            ],
            not_actions: &[],
            data_actions: &["Microsoft.KeyVault/vaults/*"],
        },
    ),
    (
        "Key Vault Secrets Officer",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.KeyVault/checkNameAvailability/read",
                "Microsoft.KeyVault/deletedVaults/read",
                "Microsoft.KeyVault/locations/*/read",
                "Microsoft.KeyVault/vaults/*/read",
                "Microsoft.KeyVault/operations/read",
            ],
            not_actions: &[],
            data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
        },
    ),
    (
        "Key Vault Secrets User",
        Grants {
            actions: &[],
            not_actions: &[],
            data_actions: &[
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ],
        },
    ),
    (
        "Key Vault Certificates Officer",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.KeyVault/checkNameAvailability/read",
                "Microsoft.KeyVault/deletedVaults/read",
                "Microsoft.KeyVault/locations/*/read",
                "Microsoft.KeyVault/vaults/*/read",
                "Microsoft.KeyVault/operations/read",
            ],
            not_actions: &[],
            data_actions: &[
                "Microsoft.KeyVault/vaults/certificatecas/*",
                "Microsoft.KeyVault/vaults/certificates/*",
                "Microsoft.KeyVault/vaults/certificatecontacts/write",
            ],
        },
    ),
    (
        "Key Vault Crypto Officer",
        Grants {
            actions: &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
                "Microsoft.KeyVault/checkNameAvailability/read",
                "Microsoft.KeyVault/deletedVaults/read",
                "Microsoft.KeyVault/locations/*/read",
                "Microsoft.KeyVault/vaults/*/read",
                "Microsoft.KeyVault/operations/read",
            ],
            not_actions: &[],
            data_actions: &[
                "Microsoft.KeyVault/vaults/keys/*",
                "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
            ],
        },
    ),
    (
        "Key Vault Crypto User",
        Grants {
            actions: &[],
            not_actions: &[],
            data_actions: &[
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/keys/update/action",
                "Microsoft.KeyVault/vaults/keys/backup/action",
                "Microsoft.KeyVault/vaults/keys/encrypt/action",
                "Microsoft.KeyVault/vaults/keys/decrypt/action",
                "Microsoft.KeyVault/vaults/keys/wrap/action",
                "Microsoft.KeyVault/vaults/keys/unwrap/action",
                "Microsoft.KeyVault/vaults/keys/sign/action",
                "Microsoft.KeyVault/vaults/keys/verify/action",
            ],
        },
    ),
];

pub fn role_grants(name: &str) -> Option<&'static Grants> {
    ROLES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, g)| g)
}
