//! The fault campaign's tenants (`tests/e2e/fault_campaign.rs`): its seeded RNG and the list of
//! tenant shapes a generated application may take.
//!
//! A shape adds one application — its passwords, the resources that hold its secret, the role
//! assignments the rotator needs — and its credential policy to a [`Tenant`]. To add a shape,
//! write a `fn(&mut Rng, usize, &mut Tenant)` and list it in [`SHAPES`]. Every random choice of
//! a case comes from its seed, so adding a shape changes what every seed generates: the figures
//! recorded in `docs/fault-campaign.md` hold for the shape list of their commit. With a single
//! shape no random number is drawn to pick it (the seeds of issue 20 keep their schedules).
//!
//! Include with `#[path = "support/campaign.rs"] mod campaign;` (after `faultkit`).

use std::collections::{BTreeMap, BTreeSet};

use azure_emulator::scenario::{ActiveVersion, ConnectionPut, Uncertainties};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::faultkit::REPLICATION_SECONDS;
use crate::support::world::{MI, mi_twin};

pub const SUB: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const TENANT: &str = "d10c2e35-390b-4343-9fb3-36524a35717c";
/// The second rotator instance's identity (its requests carry its own client id in the log).
pub const CI2_APP: &str = "secret-rotator-ci-2";
pub const CI2_SECRET: &str = "ci2Q~rotator.second.instance-0123456789";

/// SplitMix64: small, seedable, good enough to pick test choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    /// An index into a list of `len` (> 0) items; draws nothing when there is one item.
    pub fn pick(&mut self, len: usize) -> usize {
        if len <= 1 {
            0
        } else {
            self.range(0, len as u64 - 1) as usize
        }
    }
    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
    pub fn secret(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        let mut s = format!("{prefix}Q~");
        while s.len() < 40 {
            s.push(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char);
        }
        s
    }
}

/// A tenant shape: a name (for reports) and what it adds for application `i`.
pub struct Shape {
    pub name: &'static str,
    pub add: fn(&mut Rng, usize, &mut Tenant),
}

/// Every shape an application of a campaign tenant may take (issue 18's shapes included:
/// shared sites, owner tags near the limit, secrets not in Key Vault yet or soft-deleted,
/// consumers the rotator may not touch, consumers that never confirm).
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "every consumer kind",
        add: every_consumer_kind,
    },
    Shape {
        name: "secret not in Key Vault yet (first enrolment)",
        add: first_enrolment,
    },
    Shape {
        name: "owner tags near Key Vault's limit",
        add: owner_tags_near_the_limit,
    },
    Shape {
        name: "a plain setting on a site other credentials share",
        add: on_the_shared_site,
    },
    Shape {
        name: "a consumer resource the rotator has no role on (ARM 403)",
        add: consumer_refused,
    },
    Shape {
        name: "a Key Vault reference that never resolves",
        add: reference_never_resolves,
    },
    Shape {
        name: "an API connection that never reaches Connected",
        add: connection_never_connects,
    },
    Shape {
        name: "a secret soft-deleted by hand",
        add: soft_deleted,
    },
    Shape {
        name: "a certificate credential (thumbprint, Key Vault reference, maybe notify-only)",
        add: crate::support::cert_campaign::certificate,
    },
    Shape {
        name: "a client secret converted to a certificate (replacesSecret)",
        add: crate::support::cert_campaign::conversion,
    },
];

/// The site the `on_the_shared_site` shape puts a setting on, next to `NOT_OURS`.
pub const SHARED: &str = "camp-shared-site";

/// The scenario's collections, filled shape by shape, and the policy's credentials.
#[derive(Default)]
pub struct Tenant {
    pub apps: Vec<Value>,
    pub mis: Vec<Value>,
    pub vaults: Vec<Value>,
    pub sites: Vec<Value>,
    pub connections: Vec<Value>,
    pub accounts: Vec<Value>,
    pub roles: Vec<Value>,
    pub creds: Vec<Value>,
    /// Settings of the shared site (empty: no application shares it).
    pub shared: serde_json::Map<String, Value>,
    /// Credential name → the indexes of its consumers broken on purpose (the rotator may not
    /// touch them, or they never confirm): see [`Generated::broken`].
    pub broken: BTreeMap<String, BTreeSet<usize>>,
    /// (vault, secret) of the secrets to soft-delete once the world is up.
    pub soft_deleted: Vec<(String, String)>,
    /// Role assignments of the other writer (`cert_campaign::ADMIN`), who adds keys, renews
    /// certificates in Key Vault and moves consumers by hand; it exists when any is given.
    pub admin_roles: Vec<(String, String)>,
}

/// A generated campaign tenant.
pub struct Generated {
    pub scenario: Value,
    pub policy: String,
    /// Credential name → the indexes of its consumers that are broken on purpose: a resource
    /// the rotator has no role on, a reference that never resolves, a connection that never
    /// reaches Connected. None of them can ever hold the new value. (What the uncertainties
    /// break, connections whose PUT ARM refuses, is `faultkit::broken_by`'s.)
    pub broken: BTreeMap<String, BTreeSet<usize>>,
    /// (vault, secret) to soft-delete before the first run (the scenario cannot say so).
    pub soft_deleted: Vec<(String, String)>,
    /// The variant of each uncertainty this tenant's emulator runs under.
    pub uncertainties: Uncertainties,
}

/// The campaign's emulated "now".
pub fn epoch() -> DateTime<Utc> {
    "2026-11-22T02:00:00Z".parse().expect("a valid date")
}

pub fn at(now: DateTime<Utc>, days: i64) -> String {
    (now + chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A tenant of `n` applications, each of a shape drawn from [`SHAPES`], its policy, and the
/// variant of each uncertainty the emulator runs it under (drawn last).
pub fn generate(rng: &mut Rng, n: usize) -> Generated {
    let mut t = Tenant {
        mis: vec![json!({"name": MI, "graphAppRoles": ["Application.ReadWrite.OwnedBy"]})],
        ..Tenant::default()
    };
    for i in 0..n {
        let shape = &SHAPES[rng.pick(SHAPES.len())];
        (shape.add)(rng, i, &mut t);
    }
    add_shared_site(&mut t);
    crate::support::cert_campaign::add_admin(&mut t);
    let uncertainties = draw_uncertainties(rng);
    let mut scenario = json!({
        "tenantId": TENANT, "subscriptionId": SUB, "now": at(epoch(), 0),
        "replicationDelaySeconds": REPLICATION_SECONDS,
        // ARM and Key Vault throttle as documented (azure-emulator `throttle`), as Graph does.
        "throttling": "documented",
        "uncertainties": uncertainties,
        "managedIdentities": t.mis, "applications": t.apps, "vaults": t.vaults,
        "sites": t.sites, "connections": t.connections, "automationAccounts": t.accounts,
        "roleAssignments": t.roles
    });
    // The second instance's identity (the first's is added by `world::spawn_world_with`).
    mi_twin(&mut scenario, CI2_APP, CI2_SECRET);
    let policy = json!({
        "defaults": {"renewBeforeDays": 30, "lifetimeDays": 180, "graceDays": 7},
        "credentials": t.creds
    });
    Generated {
        scenario,
        policy: policy.to_string(),
        broken: t.broken,
        soft_deleted: t.soft_deleted,
        uncertainties,
    }
}

/// One variant of every uncertainty the emulator models, each drawn on its own (so schedules
/// also meet combinations that `Uncertainties::variants`, one point at a time, does not).
pub fn draw_uncertainties(rng: &mut Rng) -> Uncertainties {
    let reference_active_version = [
        ActiveVersion::Present,
        ActiveVersion::Absent,
        ActiveVersion::Late,
    ][rng.pick(3)];
    let reference_resolve_seconds =
        (reference_active_version == ActiveVersion::Late).then(|| rng.range(5, 120));
    Uncertainties {
        reference_active_version,
        reference_resolve_seconds,
        graph_read_lag_seconds: [0, 30][rng.pick(2)],
        connection_put: [ConnectionPut::Accepted, ConnectionPut::Refused][rng.pick(2)],
        key_replication_seconds: rng.chance(0.3).then(|| rng.range(30, 180)),
        certificate_issue_seconds: rng.chance(0.3).then(|| rng.range(60, 600)),
    }
}

/// The variants of `u`, one `point=variant` per uncertainty, as replay lines and the summary
/// print them.
pub fn variant_names(u: &Uncertainties) -> Vec<String> {
    let active = match u.reference_active_version {
        ActiveVersion::Present => "present".to_string(),
        ActiveVersion::Absent => "absent".to_string(),
        ActiveVersion::Late => format!("late({}s)", u.reference_resolve_seconds.unwrap_or(60)),
    };
    let put = match u.connection_put {
        ConnectionPut::Accepted => "accepted",
        ConnectionPut::Refused => "refused",
    };
    let secs = |v: Option<u64>| v.map_or("default".to_string(), |s| format!("slow({s}s)"));
    vec![
        format!("referenceActiveVersion={active}"),
        format!("graphReadLagSeconds={}", u.graph_read_lag_seconds),
        format!("connectionPut={put}"),
        format!("keyReplication={}", secs(u.key_replication_seconds)),
        format!("certificateIssue={}", secs(u.certificate_issue_seconds)),
    ]
}

/// Application `i` owned by the rotator: its current password (due within the 30-day renewal
/// window but not expiring during the campaign's clock advances, expired, or not due) and,
/// half the time, a password the rotator did not create. Returns its app id and current value.
pub fn application(rng: &mut Rng, i: usize, t: &mut Tenant) -> (Uuid, String) {
    let now = epoch();
    let app_id = rng.uuid();
    let current = rng.secret(&format!("c{i:02}"));
    let end = match rng.range(0, 5) {
        0 => -(rng.range(1, 20) as i64),
        1..=3 => rng.range(14, 28) as i64,
        _ => rng.range(90, 300) as i64,
    };
    let mut passwords = vec![json!({
        "keyId": rng.uuid(), "displayName": "deployment", "secretText": current,
        "startDateTime": at(now, end - 365), "endDateTime": at(now, end)
    })];
    if rng.chance(0.5) {
        let end = if rng.chance(0.5) {
            -(rng.range(1, 30) as i64)
        } else {
            rng.range(40, 400) as i64
        };
        passwords.push(json!({
            "keyId": rng.uuid(), "displayName": "portal test", "secretText": rng.secret("pt"),
            "startDateTime": at(now, end - 365), "endDateTime": at(now, end)
        }));
    }
    t.apps.push(json!({
        "appId": app_id, "displayName": format!("campaign app {i}"),
        "owners": [MI], "passwordCredentials": passwords
    }));
    (app_id, current)
}

/// Application `i` with one password the rotator made for credential `cred` (its marker in the
/// displayName), not due during a case: a managed secret that a certificate will replace.
pub fn application_marked(rng: &mut Rng, i: usize, t: &mut Tenant, cred: &str) -> (Uuid, String) {
    let now = epoch();
    let app_id = rng.uuid();
    let current = rng.secret(&format!("c{i:02}"));
    let end = rng.range(90, 300) as i64;
    t.apps.push(json!({
        "appId": app_id, "displayName": format!("campaign app {i}"), "owners": [MI],
        "passwordCredentials": [{
            "keyId": rng.uuid(), "displayName": format!("secret-rotator:{cred}:{}", at(now, end - 180)),
            "secretText": current, "startDateTime": at(now, end - 180), "endDateTime": at(now, end)
        }]
    }));
    (app_id, current)
}

/// A role assignment of `role` on `scope` to `principal`.
pub fn grant(t: &mut Tenant, principal: &str, role: &str, scope: &str) {
    t.roles
        .push(json!({"principal": principal, "role": role, "scope": scope}));
}

/// The shared site with its settings and the setting nobody owns, when a shape used it.
fn add_shared_site(t: &mut Tenant) {
    if t.shared.is_empty() {
        return;
    }
    let mut settings = std::mem::take(&mut t.shared);
    settings.insert("NOT_OURS".into(), json!("keep"));
    t.mis.push(json!({"name": SHARED}));
    t.sites
        .push(json!({"resourceGroup": "rg-camp-shared", "name": SHARED,
        "identity": SHARED, "appSettings": settings}));
    let scope = format!(
        "/subscriptions/{{sub}}/resourceGroups/rg-camp-shared/providers/Microsoft.Web/sites/{SHARED}"
    );
    grant(t, MI, "Website Contributor", &scope);
}

/// How a shape varies the campaign's first one.
#[derive(Default)]
struct Variation {
    /// The Key Vault secret does not exist yet.
    not_stored: bool,
    /// Tags of the secret's owner (the rotator's state must fit next to them).
    owner_tags: u64,
    /// Also a plain setting on the shared site.
    shared: bool,
    /// A consumer resource the rotator's identity has no role on.
    denied: Option<Denied>,
    /// The site's identity may not read the vault: its Key Vault reference never resolves.
    reference_never_resolves: bool,
    /// The connection names another tenant: it never reaches Connected, whatever it holds.
    connection_never_connects: bool,
    /// The secret is soft-deleted (by hand) before the first run.
    soft_deleted: bool,
}

/// The consumer resource a `consumer_refused` application's rotator may not touch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Denied {
    /// The site: both its settings (the reference and the plain value) are refused.
    Site,
    Connection,
    AutomationAccount,
}

/// The shape the campaign started with: one vault holding the secret and one consumer of every
/// kind (Key Vault reference, plain app setting, API connection, Automation variable), each in
/// its own resource group.
fn every_consumer_kind(rng: &mut Rng, i: usize, t: &mut Tenant) {
    with_variation(rng, i, t, Variation::default());
}

fn first_enrolment(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        not_stored: true,
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn owner_tags_near_the_limit(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        owner_tags: rng.range(8, 14),
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn on_the_shared_site(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        shared: true,
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn consumer_refused(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let denied = [Denied::Site, Denied::Connection, Denied::AutomationAccount][rng.pick(3)];
    let v = Variation {
        denied: Some(denied),
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn reference_never_resolves(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        reference_never_resolves: true,
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn connection_never_connects(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        connection_never_connects: true,
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

fn soft_deleted(rng: &mut Rng, i: usize, t: &mut Tenant) {
    let v = Variation {
        soft_deleted: true,
        ..Variation::default()
    };
    with_variation(rng, i, t, v);
}

/// The secret's versions in Key Vault: none, or the current value with the owner's tags.
fn stored_secret(current: &str, v: &Variation) -> Value {
    if v.not_stored {
        return json!([]);
    }
    let tags: serde_json::Map<String, Value> = (0..v.owner_tags)
        .map(|t| (format!("owner-{t}"), json!("o".repeat(200))))
        .collect();
    json!([{"name": "appSecret", "versions": [{"value": current, "tags": tags}]}])
}

/// The names of application `i`'s resources (all in resource group `rg-camp-{i}`).
pub struct Names {
    pub rg: String,
    pub vault: String,
    pub site: String,
    pub conn: String,
    pub account: String,
}

impl Names {
    pub fn of(i: usize) -> Names {
        Names {
            rg: format!("rg-camp-{i}"),
            vault: format!("kv-camp-{i}"),
            site: format!("camp-site-{i}"),
            conn: format!("camp-conn-{i}"),
            account: format!("camp-auto-{i}"),
        }
    }

    /// The ARM path of a resource of the group, after `.../providers/`, from `scope` (which
    /// starts with the literal `{sub}` in role assignments, the subscription id in the policy).
    pub fn id(&self, sub: &str, provider_path: &str) -> String {
        format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/{provider_path}",
            self.rg
        )
    }
}

/// A tenant whose other resources live elsewhere: a connection naming it never authenticates.
const OTHER_TENANT: &str = "0b5a52b2-0b9e-4b3c-9a51-7f2d3c4e5f60";

fn with_variation(rng: &mut Rng, i: usize, t: &mut Tenant, v: Variation) {
    let (app_id, current) = application(rng, i, t);
    let n = Names::of(i);
    add_resources(t, &n, app_id, &current, &v);
    add_grants(t, &n, &v);
    let site_path = format!("Microsoft.Web/sites/{}", n.site);
    let conn_path = format!("Microsoft.Web/connections/{}", n.conn);
    let account_path = format!("Microsoft.Automation/automationAccounts/{}", n.account);
    let mut consumers = vec![
        json!({"type": "appSettingKeyVaultReference", "site": n.id(SUB, &site_path), "setting": "RefSecret"}),
        json!({"type": "appSettingValue", "site": n.id(SUB, &site_path), "setting": "PlainSecret"}),
        json!({"type": "apiConnection", "connection": n.id(SUB, &conn_path), "parameter": "token:clientSecret"}),
        json!({"type": "automationVariable", "account": n.id(SUB, &account_path), "variable": "appSecret"}),
    ];
    if v.shared {
        let setting = format!("Shared{i:02}");
        t.shared.insert(setting.clone(), json!(current));
        let shared_site = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-camp-shared/providers/Microsoft.Web/sites/{SHARED}"
        );
        consumers.push(json!({"type": "appSettingValue", "site": shared_site, "setting": setting}));
    }
    let name = format!("camp-{i}");
    // Indexes into `consumers` above.
    let broken: BTreeSet<usize> = [
        (v.denied == Some(Denied::Site), &[0, 1][..]),
        (v.denied == Some(Denied::Connection), &[2]),
        (v.denied == Some(Denied::AutomationAccount), &[3]),
        (v.reference_never_resolves, &[0]),
        (v.connection_never_connects, &[2]),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .flat_map(|(_, ix)| ix.iter().copied())
    .collect();
    if !broken.is_empty() {
        t.broken.insert(name.clone(), broken);
    }
    if v.soft_deleted {
        t.soft_deleted.push((n.vault.clone(), "appSecret".into()));
    }
    t.creds.push(json!({
        "name": name,
        "application": {"appId": app_id},
        "keyVault": {"vault": n.vault, "secret": "appSecret"},
        "removeUnmanagedExpired": rng.chance(0.5),
        "consumers": consumers
    }));
}

/// The vault, the site (its identity too), the connection and the Automation account of one
/// application, each holding its current value.
fn add_resources(t: &mut Tenant, n: &Names, app_id: Uuid, current: &str, v: &Variation) {
    t.vaults.push(json!({"name": n.vault, "resourceGroup": n.rg,
        "secrets": stored_secret(current, v)}));
    t.mis.push(json!({"name": n.site}));
    t.sites.push(
        json!({"resourceGroup": n.rg, "name": n.site, "identity": n.site, "appSettings": {
        "RefSecret": format!("@Microsoft.KeyVault(VaultName={};SecretName=appSecret)", n.vault),
        "PlainSecret": current, "OTHER": "1"}}),
    );
    let tenant = if v.connection_never_connects {
        OTHER_TENANT
    } else {
        TENANT
    };
    t.connections.push(
        json!({"resourceGroup": n.rg, "name": n.conn, "api": "keyvault",
        "parameterValues": {"token:clientId": app_id, "token:clientSecret": current,
            "token:TenantId": tenant, "token:grantType": "client_credentials"},
        "nonSecretParameterValues": {"vaultName": n.vault}}),
    );
    t.accounts.push(
        json!({"resourceGroup": n.rg, "name": n.account, "variables": [{
        "name": "appSecret", "value": serde_json::to_string(current).unwrap_or_default(),
        "isEncrypted": true}]}),
    );
}

/// The rotator's roles on the application's resources (but the denied one) and the site
/// identity's on the vault (unless its reference must never resolve).
fn add_grants(t: &mut Tenant, n: &Names, v: &Variation) {
    let scope = |p: &str| n.id("{sub}", p);
    let vault_scope = scope(&format!("Microsoft.KeyVault/vaults/{}", n.vault));
    grant(t, MI, "Key Vault Secrets Officer", &vault_scope);
    for (denied, role, path) in [
        (
            Denied::Site,
            "Website Contributor",
            format!("Microsoft.Web/sites/{}", n.site),
        ),
        (
            Denied::Connection,
            "Logic App Contributor",
            format!("Microsoft.Web/connections/{}", n.conn),
        ),
        (
            Denied::AutomationAccount,
            "Automation Contributor",
            format!("Microsoft.Automation/automationAccounts/{}", n.account),
        ),
    ] {
        if v.denied != Some(denied) {
            grant(t, MI, role, &scope(&path));
        }
    }
    if !v.reference_never_resolves {
        grant(t, &n.site, "Key Vault Secrets User", &vault_scope);
    }
}

#[test]
fn every_shape_has_its_own_name() {
    let mut names: Vec<_> = SHAPES.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        SHAPES.len(),
        "two shapes share a name: reports could not tell them apart"
    );
}
