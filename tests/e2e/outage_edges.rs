//! Issue 18's edges, end to end on the emulator and Azurite with the real engine and clients:
//! first enrolment of a credential whose Key Vault secret does not exist yet, a soft-deleted
//! secret, a disabled latest version, a forced rotation inside a grace period, and a secret whose
//! owner's tags leave the rotator little room.

use crate::support::invariants;
use crate::support::world;

use secret_rotator::engine::report::{CredentialOutcome, ResultCode};
use secret_rotator::engine::service::RotatorService;
use serde_json::{Value, json};
use uuid::Uuid;
use world::*;

const EMPOWER_APP: &str = "5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30";

/// The entry of the scenario's `list` whose `field` is `value`.
fn entry_mut<'a>(scenario: &'a mut Value, list: &str, field: &str, value: &str) -> &'a mut Value {
    scenario[list]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|v| v[field] == value)
        .unwrap()
}

fn vault_mut<'a>(scenario: &'a mut Value, name: &str) -> &'a mut Value {
    entry_mut(scenario, "vaults", "name", name)
}

/// The demo tenant without the empower secret in Key Vault: the credential is being enrolled.
fn empower_not_stored() -> Value {
    let mut s = demo_scenario();
    vault_mut(&mut s, "kv-empower")["secrets"] = json!([]);
    s
}

async fn self_test(w: &World, name: &str) -> (ResultCode, String) {
    let report = w.engine.self_test_report(w.now()).await;
    let c = report
        .checks
        .iter()
        .find(|c| c.name == format!("credential {name}"))
        .unwrap();
    (c.result_code, c.message.clone())
}

#[tokio::test]
async fn first_enrolment_creates_the_secret_and_updates_the_consumers() {
    let w = spawn_world(empower_not_stored(), &demo_policy()).await;
    let c = w.emu.emulator.control();
    assert!(c.secret_latest("kv-empower", "clientSecret").is_none());

    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, tags) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert_eq!(
        c.app_setting("rg-empower", "empower-backend", "EntraClientSecret")
            .as_deref(),
        Some(value.as_str()),
        "the consumer holds the new value"
    );
    let app = Uuid::parse_str(EMPOWER_APP).unwrap();
    assert_eq!(c.check_client_secret(app, &value), Ok(()));
    assert_eq!(
        tags.get("rotator-phase").map(String::as_str),
        Some("retired"),
        "{tags:?}"
    );
    assert_eq!(self_test(&w, "empower").await.0, ResultCode::Ok);
}

#[tokio::test]
async fn a_soft_deleted_secret_is_named_with_the_recover_or_purge_choice() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let c = w.emu.emulator.control();
    assert!(c.soft_delete_secret("kv-empower", "clientSecret"));
    let before = c.passwords(Uuid::parse_str(EMPOWER_APP).unwrap()).len();

    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    let why = r.error.unwrap();
    for part in [
        "soft-deleted",
        "az keyvault secret recover --vault-name kv-empower --name clientSecret",
        "az keyvault secret purge --vault-name kv-empower --name clientSecret",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert!(!why.contains("consumers"), "{why}");
    let (code, message) = self_test(&w, "empower").await;
    assert_eq!(code, ResultCode::SecretMissing);
    assert!(message.contains("soft-deleted"), "{message}");
    // A forced rotation cannot happen either: it says so, as a failure with the reason.
    let r = w.engine.rotate_one("empower", true, w.now()).await.unwrap();
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    let why = r.error.unwrap();
    assert!(
        why.starts_with("the forced rotation was not performed:") && why.contains("soft-deleted"),
        "{why}"
    );
    // Nothing was created that the blocked rotation would leave behind.
    assert_eq!(
        c.passwords(Uuid::parse_str(EMPOWER_APP).unwrap()).len(),
        before
    );
}

#[tokio::test]
async fn a_disabled_latest_version_has_its_own_result_code() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let c = w.emu.emulator.control();
    assert!(c.set_latest_enabled("kv-empower", "clientSecret", false));
    let (code, message) = self_test(&w, "empower").await;
    assert_eq!(code, ResultCode::SecretDisabled, "{message}");
    assert!(message.contains("disabled"), "{message}");
    assert!(message.contains("--enabled true"), "{message}");
    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Failed, "{r:#?}");
    assert!(r.error.unwrap().contains("is disabled"));
}

fn app_mut<'a>(scenario: &'a mut Value, app_id: &str) -> &'a mut Value {
    entry_mut(scenario, "applications", "appId", app_id)
}

/// The rotator's own service principal object id, as the emulator knows it.
fn rotator_sp(w: &World) -> String {
    let state = w.emu.emulator.control().state();
    state["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["displayName"] == CI_APP)
        .map(|a| a["servicePrincipalId"].as_str().unwrap().to_string())
        .unwrap()
}

/// An application the rotator does not own: the message names the object id to add as owner
/// and the exact command, whether the application is invisible (OwnedBy only) or visible but
/// not writable (Application.Read.All too).
#[tokio::test]
async fn a_not_owned_application_names_the_owner_to_add_and_the_command() {
    let mut s = demo_scenario();
    app_mut(&mut s, EMPOWER_APP)["owners"] = json!([]);
    expect_owner_command(s.clone(), EMPOWER_APP, CredentialOutcome::Blocked).await;

    // Visible through Application.Read.All, but addPassword is refused.
    s["managedIdentities"][0]["graphAppRoles"] =
        json!(["Application.ReadWrite.OwnedBy", "Application.Read.All"]);
    let object_id = app_mut(&mut s, EMPOWER_APP)["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    expect_owner_command(s, &object_id, CredentialOutcome::Failed).await;
}

/// Runs empower once and expects `outcome` with the owner command for `app_ref` in its error.
async fn expect_owner_command(scenario: Value, app_ref: &str, outcome: CredentialOutcome) {
    let w = spawn_world(scenario, &demo_policy()).await;
    let expected = format!(
        "az ad app owner add --id {app_ref} --owner-object-id {}",
        rotator_sp(&w)
    );
    let r = w.run("empower").await;
    assert_eq!(r.outcome, outcome, "{r:#?}");
    assert!(r.error.as_deref().unwrap().contains(&expected), "{r:#?}");
}

/// A tenant cap on password lifetimes (app management policy): the refused lifetime is
/// remembered, the rotation goes ahead with a shorter one, and `plan` never proposes the
/// refused lifetime again.
#[tokio::test]
async fn a_tenant_lifetime_cap_is_learnt_and_plan_honours_it() {
    let mut s = demo_scenario();
    s["maxPasswordLifetimeDays"] = json!(100);
    let w = spawn_world(s, &demo_policy()).await;
    let c = w.emu.emulator.control();
    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert!(
        r.steps
            .iter()
            .any(|s| !s.ok && s.detail.contains("lifetime")),
        "{r:#?}"
    );
    let (_, _, tags) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    let key = Uuid::parse_str(tags.get("rotator-key-id").unwrap()).unwrap();
    let pw = c
        .passwords(Uuid::parse_str(EMPOWER_APP).unwrap())
        .into_iter()
        .find(|p| p.key_id == key)
        .unwrap();
    let lifetime = pw.end - pw.start;
    assert!(
        lifetime > chrono::Duration::days(89) && lifetime <= chrono::Duration::days(90),
        "{pw:?}"
    );

    // At the renewal date, plan proposes the lifetime the tenant accepted.
    w.advance_days(61);
    let plan = w.engine.plan_report(w.now()).await;
    let p = plan
        .credentials
        .iter()
        .find(|p| p.name == "empower")
        .unwrap();
    assert!(
        p.explanation[0].contains("refused a 180-day lifetime"),
        "{p:#?}"
    );
    let expected_end = (w.now() + chrono::Duration::days(90))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        p.steps
            .iter()
            .any(|s| s.starts_with("rotate") && s.contains(&expected_end)),
        "{p:#?}"
    );
}

const EMPOWER_SITE: &str = "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/rg-empower/providers/Microsoft.Web/sites/empower-backend";

/// The demo policy with empower's consumers replaced by `n` app settings on its site.
fn empower_with_settings(n: usize) -> String {
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    let empower = p["credentials"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "empower")
        .unwrap();
    empower["consumers"] = (0..n)
        .map(|i| json!({"type": "appSettingValue", "site": EMPOWER_SITE, "setting": format!("Secret{i}")}))
        .collect::<Vec<_>>()
        .into();
    p.to_string()
}

/// An owner's secret that already carries 8 tags, and a credential with 60 consumers: the
/// rotator's state fits in what Key Vault allows (the emulator refuses more, as Key Vault does),
/// every owner tag stays, and the rotation completes and settles.
#[tokio::test]
async fn the_rotators_state_fits_next_to_eight_owner_tags_and_sixty_consumers() {
    let mut s = demo_scenario();
    let owner: serde_json::Map<String, Value> = (0..8)
        .map(|i| (format!("cost-center-{i}"), json!("x".repeat(200))))
        .collect();
    vault_mut(&mut s, "kv-empower")["secrets"][0]["versions"][0]["tags"] = owner.clone().into();
    let w = spawn_world(s, &empower_with_settings(60)).await;
    let c = w.emu.emulator.control();

    // A run takes at most 32 steps: 60 consumer updates take a few runs.
    let mut r = w.run("empower").await;
    for _ in 0..4 {
        if r.outcome != CredentialOutcome::InProgress {
            break;
        }
        r = w.run("empower").await;
    }
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, tags) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert!(tags.len() <= 15, "{tags:?}");
    for (k, v) in &owner {
        assert_eq!(
            tags.get(k).map(String::as_str),
            v.as_str(),
            "owner tag {k} kept"
        );
    }
    for i in [0, 59] {
        assert_eq!(
            c.app_setting("rg-empower", "empower-backend", &format!("Secret{i}"))
                .as_deref(),
            Some(value.as_str())
        );
    }
    // Past the grace period the previous password goes and the state is recorded as retired.
    w.advance_days(8);
    let r = w.run("empower").await;
    assert!(
        matches!(
            r.outcome,
            CredentialOutcome::Progressed | CredentialOutcome::Idle
        ),
        "{r:#?}"
    );
    invariants::check(&w, w.credential("empower"), true)
        .unwrap_or_else(|e| panic!("invariant broken: {e}"));
    let status = w.engine.status_report(w.now()).await;
    let st = status
        .credentials
        .iter()
        .find(|s| s.name == "empower")
        .unwrap();
    assert_eq!(st.phase.as_deref(), Some("retired"), "{st:#?}");
    assert!(st.problem.is_none(), "{st:#?}");
    assert_eq!(self_test(&w, "empower").await.0, ResultCode::Ok);
}

/// With 15 owner tags there is no room at all: the message names the problem and nothing is
/// created (no orphan password, no new version).
#[tokio::test]
async fn fifteen_owner_tags_are_named_and_nothing_is_created() {
    let mut s = demo_scenario();
    let owner: serde_json::Map<String, Value> =
        (0..15).map(|i| (format!("tag-{i}"), json!("x"))).collect();
    vault_mut(&mut s, "kv-empower")["secrets"][0]["versions"][0]["tags"] = owner.into();
    let w = spawn_world(s, &demo_policy()).await;
    let c = w.emu.emulator.control();
    let before = c.passwords(Uuid::parse_str(EMPOWER_APP).unwrap()).len();
    let (version, _, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Failed, "{r:#?}");
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("carries 15 tags of its own"),
        "{r:#?}"
    );
    assert_eq!(
        c.passwords(Uuid::parse_str(EMPOWER_APP).unwrap()).len(),
        before
    );
    assert_eq!(
        c.secret_latest("kv-empower", "clientSecret").unwrap().0,
        version
    );
}
