//! The five field runbooks (`docs/runbooks.md`), automated end to end: the real engine, the real
//! clients, the emulator and Azurite. Each test states the runbook's "before" (what people saw),
//! runs the rotator as the timer would, and checks the runbook's "after" in the emulator's state.
//!
//! Every runbook runs under every variant of every uncertainty the emulator models
//! (`azure_emulator::scenario::Uncertainties::variants`): one module per variant below.

use crate::support::invariants;
use crate::support::receiver;
use crate::support::world;

use azure_emulator::scenario::{ConnectionPut, Uncertainties};
use secret_rotator::engine::report::{CredentialOutcome, CredentialReport, ResultCode};
use uuid::Uuid;
use world::*;

/// The demo tenant under one variant of the uncertainties.
fn scenario(u: &Uncertainties) -> serde_json::Value {
    let mut s = demo_scenario();
    s["uncertainties"] = serde_json::to_value(u).unwrap();
    s
}

fn variant(name: &str) -> Uncertainties {
    Uncertainties::variants()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| u)
        .unwrap_or_else(|| panic!("no variant {name}"))
}

/// Runbook 001's consumers in the emulator: the connection holds `connection_secret` and is
/// Connected, the Automation variable holds `variable`.
fn assert_provision_assist(c: &azure_emulator::Control, connection_secret: &str, variable: &str) {
    let (rg, conn) = ("rg-provisionassist", "provisionassist-kv");
    assert_eq!(
        c.connection_parameter(rg, conn, "token:clientSecret")
            .as_deref(),
        Some(connection_secret)
    );
    assert_eq!(c.connection_status(rg, conn).as_deref(), Some("Connected"));
    assert_eq!(
        c.automation_variable(rg, "provisionassist-auto", "appSecret")
            .as_deref(),
        Some(variable)
    );
}

/// Runs the credential as the timer would until it stops being `InProgress` (an asynchronous
/// Azure step left for the next run), advancing the emulated clock two minutes between runs.
async fn settle(w: &World, name: &str) -> CredentialReport {
    let mut r = w.run(name).await;
    for _ in 0..3 {
        if r.outcome != CredentialOutcome::InProgress {
            break;
        }
        w.emu
            .emulator
            .control()
            .advance(chrono::Duration::seconds(120));
        r = w.run(name).await;
    }
    r
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn cred<'a>(w: &'a World, name: &str) -> &'a secret_rotator::policy::CredentialPolicy {
    w.engine
        .policy
        .credentials
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

async fn self_test_code(w: &World, name: &str) -> ResultCode {
    let report = w.engine.self_test_report(w.now()).await;
    report
        .checks
        .iter()
        .find(|c| c.name == format!("credential {name}"))
        .map(|c| c.result_code)
        .unwrap()
}

fn assert_ok(w: &World, name: &str, settled: bool) {
    if let Err(e) = invariants::check(w, cred(w, name), settled) {
        panic!("invariant broken: {e}");
    }
}

/// Runbook 004: the Integration Function App's TeamsClientSecret behind a Key Vault reference.
async fn seed_004_integration_app_reference_refreshed_and_old_secret_removed_after_grace(
    u: Uncertainties,
) {
    let w = spawn_world(scenario(&u), &demo_policy()).await;
    let c = w.emu.emulator.control();
    let app = uuid("3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10");
    let old_key = uuid("0a4d1c9e-5f2b-4e8a-b7c3-9d1e2f3a4b51");
    let portal_test = uuid("6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d61");
    let rg = "TDC_Erhverv_Telephony_Integration";
    let site = "NuudayToB-5sutozr67fiik";
    let before = c
        .app_setting_effective(rg, site, "TeamsClientSecret")
        .unwrap();

    // Which of the two secrets is in use? (the question the runbook makes a human answer)
    let status = w.engine.status_report(w.now()).await;
    let st = status
        .credentials
        .iter()
        .find(|s| s.name == "integration-app")
        .unwrap();
    assert_eq!(
        st.key_id_in_use.as_deref(),
        Some(old_key.to_string().as_str())
    );
    assert_eq!(st.days_left, Some(10));

    let r = settle(&w, "integration-app").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (version, value, tags) = c
        .secret_latest("kv5sutozr67fiik", "TeamsClientSecret")
        .unwrap();
    assert_ne!(value, before);
    // The app itself now resolves the new version: the reference was refreshed, not left to
    // App Service's 24-hour cache.
    assert_eq!(
        c.app_setting_effective(rg, site, "TeamsClientSecret")
            .unwrap(),
        value
    );
    assert_eq!(
        tags.get("rotator-phase").map(String::as_str),
        Some("propagated")
    );
    let new_key = uuid(tags.get("rotator-key-id").unwrap());
    let new = c
        .passwords(app)
        .into_iter()
        .find(|p| p.key_id == new_key)
        .unwrap();
    // 730 days: the runbook's 24 months (start is stamped by Graph a moment after our "now").
    assert!(((730 * 24 - 1)..=730 * 24).contains(&(new.end - new.start).num_hours()));
    assert!(!version.is_empty());
    assert_eq!(self_test_code(&w, "integration-app").await, ResultCode::Ok);
    assert_ok(&w, "integration-app", false);
    // Old secret kept during the grace period.
    assert!(c.passwords(app).iter().any(|p| p.key_id == old_key));

    // After the grace period: the password people created by hand is not the rotator's to
    // delete (it was adopted at enrolment; something outside the policy may hold it): it stays
    // until it expires, and only `removeUnmanagedExpired` would remove it then.
    w.advance_days(8);
    let r = settle(&w, "integration-app").await;
    assert_ne!(r.outcome, CredentialOutcome::Failed, "{r:#?}");
    assert!(c.passwords(app).iter().any(|p| p.key_id == old_key));
    assert_ok(&w, "integration-app", true);

    // Two years on, the rotator's own secret is due: rotated again, and after the grace period
    // exactly the previous keyId (the one it created) is removed.
    w.advance_days(700);
    let r = settle(&w, "integration-app").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value2, tags2) = c
        .secret_latest("kv5sutozr67fiik", "TeamsClientSecret")
        .unwrap();
    assert_ne!(value2, value);
    assert_eq!(
        tags2.get("rotator-previous-key-id"),
        Some(&new_key.to_string())
    );
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == new_key),
        "kept during grace"
    );
    w.advance_days(8);
    let r = settle(&w, "integration-app").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let keys: Vec<Uuid> = c.passwords(app).iter().map(|p| p.key_id).collect();
    assert!(
        !keys.contains(&new_key),
        "the replaced secret is removed: {keys:?}"
    );
    assert!(keys.contains(&portal_test) || c.passwords(app).len() >= 2);
    assert_ok(&w, "integration-app", true);
}

/// Runbook 001: Provision Assist — Key Vault appSecret, the API connection, the Automation variable.
async fn seed_001_provision_assist_vault_connection_and_variable_on_the_new_secret(
    u: Uncertainties,
) {
    if u.connection_put == ConnectionPut::Refused {
        return seed_001_connection_refused_is_blocked_with_the_manual_step(u).await;
    }
    let w = spawn_world(scenario(&u), &demo_policy()).await;
    let c = w.emu.emulator.control();
    let r = settle(&w, "provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, _) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert_provision_assist(&c, &value, &value);
    assert_ok(&w, "provision-assist", false);
    // The audit record, persisted in the rotator's storage account: key ids, consumers touched,
    // verification — never the value.
    let last =
        secret_rotator::engine::records::last_run(w.engine.store.as_ref(), "provision-assist")
            .await
            .expect("the run's record is in blob storage");
    let (_, _, tags) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert!(last.rotated);
    assert_eq!(
        last.key_id_in_use.map(|k| k.to_string()).as_deref(),
        tags.get("rotator-key-id").map(String::as_str)
    );
    assert_eq!(
        last.previous_key_id.map(|k| k.to_string()).as_deref(),
        Some("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e71")
    );
    assert_eq!(last.consumers_touched.len(), 2);
    assert_eq!(last.verified, Some(true));
    let stored = w
        .engine
        .store
        .get_json("last/provision-assist.json")
        .await
        .unwrap()
        .expect("the record as stored");
    assert!(
        !stored.to_string().contains(&value),
        "no secret in the audit record"
    );
    w.advance_days(8);
    settle(&w, "provision-assist").await;
    assert_ok(&w, "provision-assist", true);
}

/// Runbook 001 where ARM refuses the connection PUT (uncertainty `connectionPut: refused`): the
/// run is `blocked` with the manual step, the connection keeps its working value, the variable
/// is updated, and the previous password stays however long the connection is not updated.
async fn seed_001_connection_refused_is_blocked_with_the_manual_step(u: Uncertainties) {
    let w = spawn_world(scenario(&u), &demo_policy()).await;
    let c = w.emu.emulator.control();
    let old_key = uuid("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e71");
    let app = uuid("4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20");
    let before = c
        .connection_parameter(
            "rg-provisionassist",
            "provisionassist-kv",
            "token:clientSecret",
        )
        .unwrap();
    let r = settle(&w, "provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    let why = r.error.clone().unwrap_or_default();
    assert!(
        why.contains("PatchApiConnectionPropertiesNotSupported"),
        "{why}"
    );
    assert!(
        why.contains("Edit API connection"),
        "the manual step: {why}"
    );
    let (_, value, _) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert!(!why.contains(&value), "no secret in the message");
    // The connection keeps the value it works with.
    assert_provision_assist(&c, &before, &value);
    w.advance_days(30);
    let r = settle(&w, "provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == old_key),
        "the password the connection uses is never removed"
    );
}

/// Runbooks 002 and 003: an expired secret (AADSTS7000222) replaced; the expired one removed.
async fn seed_002_003_expired_secret_replaced_and_removed(u: Uncertainties) {
    let w = spawn_world(scenario(&u), &demo_policy()).await;
    let c = w.emu.emulator.control();
    let app = uuid("5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30");
    let expired = uuid("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f81");
    let (_, before, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert_eq!(c.check_client_secret(app, &before), Err(7000222));
    assert_eq!(
        self_test_code(&w, "empower").await,
        ResultCode::CredentialRefused
    );

    let r = settle(&w, "empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert_eq!(c.check_client_secret(app, &value), Ok(()));
    assert_eq!(
        c.app_setting("rg-empower", "empower-backend", "EntraClientSecret"),
        Some(value)
    );
    // Other settings of the backend are untouched (PUT replaces the whole map).
    assert_eq!(
        c.app_setting("rg-empower", "empower-backend", "WEBSITE_RUN_FROM_PACKAGE")
            .as_deref(),
        Some("1")
    );
    // An expired secret serves nobody: it goes without waiting for the grace period.
    assert!(c.passwords(app).iter().all(|p| p.key_id != expired));
    assert_eq!(self_test_code(&w, "empower").await, ResultCode::Ok);
    assert_ok(&w, "empower", true);
}

/// Runbook 000: EzSign's own password store — a notify-only consumer.
async fn seed_000_notify_only_message_sent_and_old_secret_kept_until_grace_ends(u: Uncertainties) {
    let (hook_url, received) = receiver::start().await;
    let w = spawn_world_with(
        scenario(&u),
        &demo_policy(),
        WorldOptions {
            webhooks: vec![secret_rotator::notify::Webhook {
                kind: secret_rotator::notify::WebhookKind::Generic,
                url: secret_rotator::secret::SecretValue::new(hook_url),
            }],
            ..Default::default()
        },
    )
    .await;
    let c = w.emu.emulator.control();
    let app = uuid("7412f649-8e14-471f-bfc1-733b36a42705");
    let old_key = uuid("3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a91");
    let r = settle(&w, "ezsign").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (version, value, _) = c.secret_latest("kv-ezsign", "ezsign-token").unwrap();
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "one manual-step message: {messages:?}");
    let m = &messages[0];
    assert!(m.contains("ezsign-manage.sh"), "{m}");
    assert!(
        m.contains(&format!(
            "kv-ezsign.vault.azure.net/secrets/ezsign-token/{version}"
        )),
        "{m}"
    );
    assert!(!m.contains(&value), "the message never carries the secret");
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == old_key),
        "old secret kept"
    );
    // Later runs neither repeat the message nor touch the old secret during the grace period.
    w.advance_days(6);
    settle(&w, "ezsign").await;
    assert!(c.passwords(app).iter().any(|p| p.key_id == old_key));
    assert_ok(&w, "ezsign", false);
    assert_eq!(received.lock().unwrap().len(), 1, "not repeated");
    // The next rotation (150 days on) replaces the rotator's own secret: a new message, and the
    // previous keyId removed only once its grace period is over.
    let (_, _, tags) = c.secret_latest("kv-ezsign", "ezsign-token").unwrap();
    let first = uuid(tags.get("rotator-key-id").unwrap());
    w.advance_days(150);
    let r = settle(&w, "ezsign").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "told again about the new value"
    );
    w.advance_days(6);
    settle(&w, "ezsign").await;
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == first),
        "kept within grace"
    );
    w.advance_days(2);
    settle(&w, "ezsign").await;
    assert!(
        c.passwords(app).iter().all(|p| p.key_id != first),
        "removed after grace"
    );
    assert_ok(&w, "ezsign", true);
}

/// On-demand rotation (`Rotate` with force) inside a grace period: a leaked secret is replaced
/// at once. The secret it replaces keeps the policy's grace (provision-assist's consumers cannot
/// be read back) and goes after it.
#[tokio::test]
async fn forced_rotation_inside_grace_replaces_the_secret_at_once() {
    use secret_rotator::engine::service::RotatorService;
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let c = w.emu.emulator.control();
    let app = uuid("4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20");
    w.run("provision-assist").await;
    let (v1, _, tags) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert_eq!(
        tags.get("rotator-phase").map(String::as_str),
        Some("propagated")
    );
    let leaked = uuid(tags.get("rotator-key-id").unwrap());

    // A day into the grace period (forced rotations are at least an hour apart).
    w.advance_days(1);
    let r = w
        .engine
        .rotate_one("provision-assist", true, w.now())
        .await
        .unwrap();
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert_eq!(
        r.steps
            .iter()
            .filter(|s| s.step == secret_rotator::planner::StepKind::Rotate)
            .count(),
        1,
        "{r:#?}"
    );
    let (v2, value, tags) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert_ne!(v2, v1);
    assert_eq!(
        tags.get("rotator-previous-key-id").map(String::as_str),
        Some(leaked.to_string().as_str())
    );
    assert_eq!(
        c.automation_variable("rg-provisionassist", "provisionassist-auto", "appSecret")
            .as_deref(),
        Some(value.as_str()),
        "the consumers hold the new value"
    );
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == leaked),
        "kept within grace"
    );
    assert_ok(&w, "provision-assist", false);

    w.advance_days(8);
    w.run("provision-assist").await;
    assert!(
        c.passwords(app).iter().all(|p| p.key_id != leaked),
        "removed after grace"
    );
    assert_ok(&w, "provision-assist", true);
}

/// One test per runbook for one variant of the uncertainties.
macro_rules! runbooks_under {
    ($module:ident, $variant:literal) => {
        mod $module {
            #[tokio::test]
            async fn seed_000() {
                super::seed_000_notify_only_message_sent_and_old_secret_kept_until_grace_ends(
                    super::variant($variant),
                )
                .await;
            }
            #[tokio::test]
            async fn seed_001() {
                super::seed_001_provision_assist_vault_connection_and_variable_on_the_new_secret(
                    super::variant($variant),
                )
                .await;
            }
            #[tokio::test]
            async fn seed_002_003() {
                super::seed_002_003_expired_secret_replaced_and_removed(super::variant($variant))
                    .await;
            }
            #[tokio::test]
            async fn seed_004() {
                super::seed_004_integration_app_reference_refreshed_and_old_secret_removed_after_grace(
                    super::variant($variant),
                )
                .await;
            }
        }
    };
}

runbooks_under!(default, "default");
runbooks_under!(
    reference_active_version_absent,
    "reference-active-version-absent"
);
runbooks_under!(
    reference_active_version_late,
    "reference-active-version-late"
);
runbooks_under!(graph_read_lag, "graph-read-lag-30s");
runbooks_under!(connection_put_refused, "connection-put-refused");

/// The list above covers every variant the emulator defines.
#[test]
fn every_variant_has_its_runbooks() {
    let covered = [
        "default",
        "reference-active-version-absent",
        "reference-active-version-late",
        "graph-read-lag-30s",
        "connection-put-refused",
    ];
    for (name, _) in Uncertainties::variants() {
        assert!(
            covered.contains(&name),
            "variant {name} has no runbook tests"
        );
    }
}
