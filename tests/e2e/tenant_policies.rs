//! Tenant app management policies and the personal-account password cap: refusals of
//! addPassword only a person can lift end `blocked`, naming the policy (or the cap) and the fix;
//! the policy's `excludeActors` exemption lets the rotator through; an app open to personal
//! Microsoft accounts rotates within its two passwords and never loses the one in use.

use crate::support::world;

use secret_rotator::engine::report::CredentialOutcome;
use serde_json::{Value, json};
use uuid::Uuid;
use world::*;

const POLICY_ID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

fn with_policy(policy: Value) -> Value {
    let mut s = demo_scenario();
    s["appManagementPolicy"] = policy;
    s
}

fn personal(mut s: Value, app: &str) -> Value {
    for a in s["applications"].as_array_mut().unwrap() {
        if a["displayName"] == app {
            a["signInAudience"] = json!("AzureADandPersonalMicrosoftAccount");
        }
    }
    s
}

#[tokio::test]
async fn blocked_password_addition_is_blocked_naming_the_policy_and_the_fix() {
    let w = spawn_world(
        with_policy(json!({"id": POLICY_ID, "blockPasswordAddition": true})),
        &demo_policy(),
    )
    .await;
    let why = w.blocked_reason("empower").await;
    assert!(why.contains(POLICY_ID), "{why}");
    assert!(
        why.contains("excludeActors") && why.contains("certificate"),
        "{why}"
    );
}

#[tokio::test]
async fn the_exempted_rotator_rotates_despite_the_policy() {
    let w = spawn_world(
        with_policy(json!({"id": POLICY_ID, "blockPasswordAddition": true,
            "maxPasswordLifetimeDays": 30, "excludeActors": [CI_APP]})),
        &demo_policy(),
    )
    .await;
    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
}

/// A lifetime over the policy's cap is not a dead end: the refusal names the policy, the cap
/// is learnt and the rotation goes ahead at once with a lifetime the policy allows.
#[tokio::test]
async fn a_lifetime_over_the_policy_cap_is_named_and_a_shorter_one_used() {
    let w = spawn_world(
        with_policy(json!({"id": POLICY_ID, "maxPasswordLifetimeDays": 90})),
        &demo_policy(),
    )
    .await;
    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert!(
        r.steps
            .iter()
            .any(|s| !s.ok && s.detail.contains(POLICY_ID)),
        "{r:#?}"
    );
    // The password now in Key Vault was made within the cap.
    let c = w.emu.emulator.control();
    let (_, _, tags) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    let key = Uuid::parse_str(tags.get("rotator-key-id").unwrap()).unwrap();
    let empower = Uuid::parse_str("5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30").unwrap();
    let pw = c.passwords(empower).into_iter().find(|p| p.key_id == key);
    let days = pw.map(|p| (p.end - p.start).num_days());
    assert!(matches!(days, Some(d) if d <= 90), "{days:?}");
}

#[tokio::test]
async fn a_personal_account_app_at_its_two_passwords_is_blocked_and_keeps_both() {
    let w = spawn_world(
        personal(demo_scenario(), "TDC Erhverv Integration App"),
        &demo_policy(),
    )
    .await;
    let c = w.emu.emulator.control();
    let app = Uuid::parse_str("3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10").unwrap();
    let before: Vec<Uuid> = c.passwords(app).iter().map(|p| p.key_id).collect();
    assert_eq!(before.len(), 2);
    let why = w.blocked_reason("integration-app").await;
    assert!(
        why.contains("personal Microsoft accounts") && why.contains("two"),
        "{why}"
    );
    let after: Vec<Uuid> = c.passwords(app).iter().map(|p| p.key_id).collect();
    assert_eq!(after, before, "nothing removed to make room");
}

#[tokio::test]
async fn a_personal_account_app_rotates_within_the_cap() {
    // The hand-made password may go once expired (2026-12-12): it counts toward the cap.
    let policy = demo_policy().replace(
        r#""name": "provision-assist","#,
        r#""name": "provision-assist", "removeUnmanagedExpired": true,"#,
    );
    assert_ne!(policy, demo_policy());
    let w = spawn_world(personal(demo_scenario(), "Provision Assist"), &policy).await;
    let c = w.emu.emulator.control();
    let app = Uuid::parse_str("4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20").unwrap();
    let r = w.run("provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert_eq!(c.passwords(app).len(), 2);
    w.advance_days(30);
    w.run("provision-assist").await;
    assert_eq!(
        c.passwords(app).len(),
        1,
        "the expired hand-made password is gone"
    );
    for _ in 0..2 {
        let r = w.force("provision-assist").await;
        assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
        assert!(c.passwords(app).len() <= 2);
        w.advance_days(8);
        w.run("provision-assist").await;
        assert!(c.passwords(app).len() <= 2);
    }
}
