//! Issue 18's outages, run against the emulator and checked on its state (never on the
//! rotator's word):
//!
//! - **Shared sites**: three credentials whose consumers live on one site (a plain value, a
//!   versionless Key Vault reference, a pinned one), next to settings the rotator does not own.
//!   With ARM answering slowly and two rotator instances running passes at the same moment,
//!   under ARM failures and then without, after every clean pass each setting holds its own
//!   credential's current value, after every pass nothing else on the site changed — through several renewals with `graceDays: 0` (where a lost write
//!   leaves a password Entra already removed).
//! - **Partial progress**: one credential has a consumer whose Key Vault reference never
//!   resolves, another a consumer on a site the rotator has no role on (ARM 403). Over two
//!   simulated years (the emulator's clock is advanced; nothing sleeps), with random ARM, Key
//!   Vault and Graph failures on every third date, no healthy consumer ever holds a value Entra
//!   refuses, every renewal starts inside the renewal window, and each run names the consumer
//!   that holds things up and what to do.

use crate::support::world;

use std::collections::BTreeMap;
use std::time::Duration;

use azure_emulator::faults::{FaultAction, FaultRule};
use chrono::{DateTime, Utc};
use secret_rotator::engine::Engine;
use secret_rotator::engine::report::{CredentialOutcome, ResultCode};
use serde_json::{Value, json};
use uuid::Uuid;
use world::*;

const RG: &str = "rg-shared";
const VAULT: &str = "kv-shared";
const NOW: &str = "2026-11-22T02:00:00Z";
/// The pinned reference's version in the scenario.
const PINNED: &str = "0123456789abcdef0123456789abcdef";

fn now0() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

/// One application with one password expiring in `days_left` days, its secret in the vault.
struct App {
    name: &'static str,
    app_id: Uuid,
    text: String,
}

fn app(name: &'static str, n: u128) -> App {
    App {
        name,
        app_id: Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + n),
        text: format!("{name}Q~initial.secret.{n:02}-abcdefghijklmnop"),
    }
}

fn site_id(site: &str) -> String {
    format!("/subscriptions/{{sub}}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{site}")
}

/// The scenario: `apps` (each owned by the rotator, one password expiring in 5 days, stored
/// in `kv-shared/{name}-secret`), `sites` (name → settings), and the rotator's roles on the
/// vault and on `writable` sites; every site's identity may read the vault unless listed in
/// `no_vault_access`.
fn scenario(
    apps: &[App],
    sites: &[(&str, BTreeMap<String, String>)],
    writable: &[&str],
    no_vault_access: &[&str],
) -> Value {
    let end = (now0() + chrono::Duration::days(5)).to_rfc3339();
    let start = (now0() - chrono::Duration::days(170)).to_rfc3339();
    let applications: Vec<Value> = apps
        .iter()
        .map(|a| {
            json!({
                "appId": a.app_id, "displayName": a.name, "owners": ["secret-rotator"],
                "passwordCredentials": [{"displayName": "by hand", "secretText": a.text,
                    "startDateTime": start, "endDateTime": end}]
            })
        })
        .collect();
    let secrets: Vec<Value> = apps
        .iter()
        .map(|a| {
            json!({"name": format!("{}-secret", a.name),
                   "versions": [{"value": a.text, "version": PINNED}]})
        })
        .collect();
    let mut mis = vec![json!({"name": "secret-rotator",
        "graphAppRoles": ["Application.ReadWrite.OwnedBy"]})];
    let mut roles = vec![
        json!({"principal": "secret-rotator", "role": "Key Vault Secrets Officer",
        "scope": format!("/subscriptions/{{sub}}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/{VAULT}")}),
    ];
    let mut site_specs = Vec::new();
    for (name, settings) in sites {
        mis.push(json!({"name": name}));
        site_specs.push(json!({"resourceGroup": RG, "name": name, "identity": name,
            "appSettings": settings}));
        if writable.contains(name) {
            roles.push(
                json!({"principal": "secret-rotator", "role": "Website Contributor",
                "scope": site_id(name)}),
            );
        }
        if !no_vault_access.contains(name) {
            roles.push(json!({"principal": name, "role": "Key Vault Secrets User",
                "scope": format!("/subscriptions/{{sub}}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/{VAULT}")}));
        }
    }
    json!({
        "tenantId": "d10c2e35-390b-4343-9fb3-36524a35717c",
        "subscriptionId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "now": NOW,
        "replicationDelaySeconds": 0,
        "tokenLifetimeSeconds": 10 * 365 * 86400,
        "managedIdentities": mis,
        "applications": applications,
        "vaults": [{"name": VAULT, "resourceGroup": RG, "secrets": secrets}],
        "sites": site_specs,
        "connections": [],
        "automationAccounts": [],
        "roleAssignments": roles,
    })
}

fn reference(secret: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => {
            format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName={secret};SecretVersion={v})")
        }
        None => format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName={secret})"),
    }
}

fn consumer(kind: &str, site: &str, setting: &str) -> Value {
    let site = site_id(site).replace("{sub}", "7c9e6679-7425-40de-944b-e07fc1f90ae7");
    json!({"type": kind, "site": site, "setting": setting})
}

fn policy(defaults: Value, creds: &[(&App, Vec<Value>)]) -> String {
    let credentials: Vec<Value> = creds
        .iter()
        .map(|(a, consumers)| {
            json!({"name": a.name, "application": {"appId": a.app_id},
                   "keyVault": {"vault": VAULT, "secret": format!("{}-secret", a.name)},
                   "consumers": consumers})
        })
        .collect();
    json!({"defaults": defaults, "credentials": credentials}).to_string()
}

/// The current Key Vault version and value of `{name}-secret`.
fn current(w: &World, name: &str) -> (String, String) {
    let (version, value, _) = w
        .emu
        .emulator
        .control()
        .secret_latest(VAULT, &format!("{name}-secret"))
        .expect("secret exists");
    (version, value)
}

const SHARED: &str = "shared-func";

/// Issue 18 item 1, on the emulator's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_site_never_undo_each_other() {
    let apps = [app("alpha", 1), app("beta", 2), app("gamma", 3)];
    let unowned: BTreeMap<String, String> = [
        ("FUNCTIONS_WORKER_RUNTIME", "dotnet-isolated"),
        ("OtherTeamSecret", "not-ours-Q~keep.me"),
        ("ZZ_LAST", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut settings = unowned.clone();
    settings.insert("AlphaSecret".into(), apps[0].text.clone());
    settings.insert("BetaSecret".into(), reference("beta-secret", None));
    settings.insert(
        "GammaSecret".into(),
        reference("gamma-secret", Some(PINNED)),
    );
    let mut scenario = scenario(&apps, &[(SHARED, settings)], &[SHARED], &[]);
    // ARM answers slowly: every read-modify-write overlaps another credential's.
    scenario["latencyMs"] = json!(120);
    let policy = policy(
        json!({"renewBeforeDays": 10, "lifetimeDays": 30, "graceDays": 0}),
        &[
            (
                &apps[0],
                vec![consumer("appSettingValue", SHARED, "AlphaSecret")],
            ),
            (
                &apps[1],
                vec![consumer(
                    "appSettingKeyVaultReference",
                    SHARED,
                    "BetaSecret",
                )],
            ),
            (
                &apps[2],
                vec![consumer(
                    "appSettingKeyVaultReference",
                    SHARED,
                    "GammaSecret",
                )],
            ),
        ],
    );
    let w = spawn_world(scenario, &policy).await;
    let other = w.another_instance(&policy, WorldOptions::default());
    let c = w.emu.emulator.control();
    for round in 0..3 {
        // A pass of both instances under ARM failures (lost answers of committed writes, 503s
        // on reads): settings may lag, never undo another credential's nor touch the rest.
        for (op, action) in [
            (
                "putAppSettings",
                FaultAction::CommitThenFail { status: 500 },
            ),
            (
                "listAppSettings",
                FaultAction::Status {
                    status: 503,
                    retry_after: None,
                },
            ),
        ] {
            let mut rule = random_503("arm", round);
            rule.operation = Some(op.into());
            rule.action = action;
            c.add_fault(rule);
        }
        let (_, why) = concurrent_pass(&w, &other, &format!("round {round}, faulted")).await;
        c.clear_faults();
        shared_site_holds(&w, &apps, &unowned, false, &why);
        let (clean, why) = concurrent_pass(&w, &other, &format!("round {round}")).await;
        assert!(clean, "a clean pass failed: {why}");
        shared_site_holds(&w, &apps, &unowned, true, &why);
        // Into the next renewal window (30-day lifetime, renewed 10 days before).
        w.advance_days(21);
    }
}

/// A pass of both instances at the same moment; returns whether no credential failed or was
/// blocked, and their summaries.
async fn concurrent_pass(w: &World, other: &Engine, label: &str) -> (bool, String) {
    let now = w.now();
    let budget = Duration::from_secs(300);
    let (a, b) = tokio::join!(w.engine.pass(now, budget), other.pass(now, budget));
    let clean = a.credentials.iter().chain(&b.credentials).all(|r| {
        !matches!(
            r.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        )
    });
    let why = format!(
        "{label}\ninstance 1:\n{}\ninstance 2:\n{}",
        summary(&a),
        summary(&b)
    );
    (clean, why)
}

/// The shared site, from the emulator: nothing the rotator does not own changed (nor
/// appeared), and every owned setting resolves to a value its credential's Entra application
/// accepts — after a clean pass (`settled`), exactly its credential's current value (the
/// pinned reference re-pinned to the current version).
fn shared_site_holds(
    w: &World,
    apps: &[App],
    unowned: &BTreeMap<String, String>,
    settled: bool,
    why: &str,
) {
    let c = w.emu.emulator.control();
    let held = c.app_settings(RG, SHARED).expect("site exists");
    for (k, v) in unowned {
        assert_eq!(held.get(k), Some(v), "{k} changed; {why}");
    }
    assert_eq!(held.len(), unowned.len() + 3, "{:?}; {why}", held.keys());
    for (a, setting) in apps
        .iter()
        .zip(["AlphaSecret", "BetaSecret", "GammaSecret"])
    {
        let effective = c
            .app_setting_effective(RG, SHARED, setting)
            .unwrap_or_default();
        assert_eq!(
            c.check_client_secret(a.app_id, &effective),
            Ok(()),
            "{setting}; {why}"
        );
        if !settled {
            continue;
        }
        let (version, value) = current(w, a.name);
        assert!(
            effective == value,
            "{setting} does not resolve to {}'s current value; {why}",
            a.name
        );
        assert_ne!(value, a.text, "{} was never rotated; {why}", a.name);
        if setting == "GammaSecret" {
            // Re-pinned to the current version (written as a SecretUri reference).
            assert!(
                held[setting].ends_with(&format!("/secrets/gamma-secret/{version})")),
                "GammaSecret is pinned elsewhere: {}; {why}",
                held[setting]
            );
        } else if setting == "BetaSecret" {
            assert_eq!(held[setting], reference("beta-secret", None), "{why}");
        }
    }
}

/// A 503 on a fifth of `service`'s calls, seeded by `round`.
fn random_503(service: &str, round: u64) -> FaultRule {
    FaultRule {
        service: service.into(),
        operation: None,
        nth: None,
        times: None,
        probability: Some(0.2),
        seed: Some(round),
        action: FaultAction::Status {
            status: 503,
            retry_after: None,
        },
    }
}

/// The healthy consumers on `healthy-web` hold a value Entra accepts and the rotator's
/// passwords do not pile up. After a clean pass (`renew_before` given) they hold exactly the
/// current value, and the current password is outside its renewal window: a renewal due was
/// started in that pass, whatever the broken consumers do.
fn healthy_consumers_hold(
    w: &World,
    apps: &[App],
    renew_before: Option<chrono::Duration>,
    why: &str,
) {
    let c = w.emu.emulator.control();
    for (a, setting) in [(&apps[0], "DeltaSecret"), (&apps[1], "EpsilonSecret")] {
        let (_, value) = current(w, a.name);
        let held = c.app_setting(RG, "healthy-web", setting).unwrap();
        assert_eq!(
            c.check_client_secret(a.app_id, &held),
            Ok(()),
            "{setting}; {why}"
        );
        let marked = c
            .passwords(a.app_id)
            .iter()
            .filter(|p| {
                p.display_name
                    .as_deref()
                    .is_some_and(|d| d.starts_with("secret-rotator:"))
            })
            .count();
        assert!(
            marked <= 3,
            "{marked} rotator passwords on {}; {why}",
            a.name
        );
        let Some(renew_before) = renew_before else {
            continue;
        };
        assert!(
            held == value,
            "{setting} is not on the current value; {why}"
        );
        let end = c
            .passwords(a.app_id)
            .into_iter()
            .find(|p| p.secret_text == value)
            .map(|p| p.end)
            .unwrap();
        assert!(
            end - w.now() > renew_before,
            "{} not renewed; {why}",
            a.name
        );
    }
}

/// Issue 18 items 2 and 3, on the emulator's state, over two simulated years.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_consumers_never_take_healthy_ones_down() {
    let apps = [app("delta", 4), app("epsilon", 5)];
    let healthy: BTreeMap<String, String> = [
        ("DeltaSecret".to_string(), apps[0].text.clone()),
        ("EpsilonSecret".to_string(), apps[1].text.clone()),
    ]
    .into_iter()
    .collect();
    let nokv: BTreeMap<String, String> =
        [("DeltaRef".to_string(), reference("delta-secret", None))]
            .into_iter()
            .collect();
    let forbidden: BTreeMap<String, String> = [("EpsilonSecret".to_string(), apps[1].text.clone())]
        .into_iter()
        .collect();
    let scenario = scenario(
        &apps,
        &[
            ("healthy-web", healthy),
            // Its identity may not read the vault: the reference never resolves.
            ("nokv-func", nokv),
            // Added to the policy before its role assignment: ARM answers 403.
            ("forbidden-web", forbidden),
        ],
        &["healthy-web", "nokv-func"],
        &["nokv-func"],
    );
    let policy = policy(
        json!({"renewBeforeDays": 30, "lifetimeDays": 180, "graceDays": 7}),
        &[
            (
                &apps[0],
                vec![
                    consumer("appSettingValue", "healthy-web", "DeltaSecret"),
                    consumer("appSettingKeyVaultReference", "nokv-func", "DeltaRef"),
                ],
            ),
            (
                &apps[1],
                vec![
                    consumer("appSettingValue", "forbidden-web", "EpsilonSecret"),
                    consumer("appSettingValue", "healthy-web", "EpsilonSecret"),
                ],
            ),
        ],
    );
    let w = spawn_world(scenario, &policy).await;
    let c = w.emu.emulator.control();
    let renew_before = chrono::Duration::days(30);
    let mut rotations = BTreeMap::<&str, usize>::new();
    let start = w.now();
    let mut round = 0u64;
    while w.now() - start < chrono::Duration::days(2 * 365) {
        round += 1;
        let day = (w.now() - start).num_days();
        if round.is_multiple_of(3) {
            // Every third date, a pass under random ARM, Key Vault and Graph failures first:
            // the healthy consumers may lag, but never hold a value Entra refuses.
            for service in ["arm", "keyvault", "graph"] {
                c.add_fault(random_503(service, round));
            }
            let r = w.engine.pass(w.now(), Duration::from_secs(300)).await;
            c.clear_faults();
            let why = format!("day {day}, faulted pass:\n{}", summary(&r));
            healthy_consumers_hold(&w, &apps, None, &why);
        }
        let r = w.engine.pass(w.now(), Duration::from_secs(300)).await;
        let why = format!("day {day}:\n{}", summary(&r));
        healthy_consumers_hold(&w, &apps, Some(renew_before), &why);
        for report in &r.credentials {
            let error = report.error.clone().unwrap_or_default();
            let (site, todo) = match report.name.as_str() {
                "delta" => ("nokv-func", "Key Vault Secrets User on kv-shared"),
                _ => ("forbidden-web", "Site Settings Updater"),
            };
            assert!(
                matches!(
                    report.outcome,
                    CredentialOutcome::Blocked | CredentialOutcome::Failed
                ),
                "{why}"
            );
            assert!(error.contains(site) && error.contains(todo), "{why}");
            assert!(!error.contains(&apps[0].text) && !error.contains(&apps[1].text));
            if report
                .steps
                .iter()
                .any(|s| s.step == secret_rotator::planner::StepKind::Rotate && s.ok)
            {
                *rotations
                    .entry(if report.name == "delta" {
                        "delta"
                    } else {
                        "epsilon"
                    })
                    .or_default() += 1;
            }
        }
        w.advance_days(6);
    }
    let hit = c.requests().iter().filter(|r| r.fault.is_some()).count();
    assert!(hit > 20, "only {hit} faults hit");
    // 730 days with a 150-day renewal cycle: four or five renewals each.
    for name in ["delta", "epsilon"] {
        assert!(
            rotations.get(name).copied().unwrap_or(0) >= 4,
            "{rotations:?}"
        );
    }
    // SelfTest names the refused site with its own code, not "Key Vault refused the rotator".
    let st = w.engine.self_test_report(w.now()).await;
    let epsilon = st
        .checks
        .iter()
        .find(|c| c.name == "credential epsilon")
        .unwrap();
    assert_eq!(epsilon.result_code, ResultCode::ConsumerAccess, "{st:#?}");
    assert!(epsilon.message.contains("forbidden-web"), "{st:#?}");
}

/// A deployment slot is a resource of its own (its own lease and settings map): credentials
/// writing the production site and its slot at once each end with their own value, and neither
/// map gains, loses or changes anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_and_its_site_are_written_apart() {
    let apps = [app("zeta", 6), app("eta", 7)];
    let production: BTreeMap<String, String> = [
        ("ZetaSecret".to_string(), apps[0].text.clone()),
        ("Unowned".to_string(), "production-only".to_string()),
    ]
    .into_iter()
    .collect();
    let mut scenario = scenario(&apps, &[("slotted-web", production)], &["slotted-web"], &[]);
    scenario["latencyMs"] = json!(60);
    scenario["managedIdentities"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "slotted-web-staging"}));
    scenario["sites"][0]["slots"] = json!([{
        "name": "staging", "identity": "slotted-web-staging",
        "appSettings": {"ZetaSecret": apps[0].text, "EtaSecret": apps[1].text,
                        "Unowned": "staging-only"}
    }]);
    let slot = |setting: &str| {
        let mut c = consumer("appSettingValue", "slotted-web", setting);
        let site = format!("{}/slots/staging", c["site"].as_str().unwrap());
        c["site"] = json!(site);
        c
    };
    let policy = policy(
        json!({"renewBeforeDays": 10, "lifetimeDays": 30, "graceDays": 0}),
        &[
            (
                &apps[0],
                vec![
                    consumer("appSettingValue", "slotted-web", "ZetaSecret"),
                    slot("ZetaSecret"),
                ],
            ),
            (&apps[1], vec![slot("EtaSecret")]),
        ],
    );
    let w = spawn_world(scenario, &policy).await;
    let c = w.emu.emulator.control();
    for round in 0..2 {
        let r = w.engine.pass(w.now(), Duration::from_secs(300)).await;
        let why = format!("round {round}:\n{}", summary(&r));
        let (_, zeta) = current(&w, "zeta");
        let (_, eta) = current(&w, "eta");
        assert_ne!(zeta, apps[0].text, "{why}");
        let prod = c.app_settings(RG, "slotted-web").unwrap();
        let staging = c.app_settings(RG, "slotted-web/slots/staging").unwrap();
        assert_eq!(prod.len(), 2, "{:?}; {why}", prod.keys());
        assert_eq!(staging.len(), 3, "{:?}; {why}", staging.keys());
        assert_eq!(prod["Unowned"], "production-only", "{why}");
        assert_eq!(staging["Unowned"], "staging-only", "{why}");
        assert!(prod["ZetaSecret"] == zeta, "production ZetaSecret; {why}");
        assert!(staging["ZetaSecret"] == zeta, "staging ZetaSecret; {why}");
        assert!(staging["EtaSecret"] == eta, "staging EtaSecret; {why}");
        w.advance_days(21);
    }
}
