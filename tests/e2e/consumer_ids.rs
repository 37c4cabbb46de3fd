//! Consumers are told apart by their identity, never by their display text (issue 16).
//!
//! Two Automation variables with the same resource group, account and name in two
//! subscriptions are two consumers. When only one of them can be written (the other's
//! subscription is unknown to ARM), recording the first as updated must not make the second
//! count as updated: the rotation stays open and the previous password stays on the
//! application for as long as the second may still hold it. Checked on the emulator's state.

use crate::support::world::*;

use chrono::Duration;
use uuid::Uuid;

const APP: &str = "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20";
const DEMO_SUB: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
/// A subscription the emulator (like ARM for a subscription the rotator cannot see) answers
/// `SubscriptionNotFound` for.
const OTHER_SUB: &str = "0f3c7a52-9d41-4e8b-b6a2-5c1d8e7f9a03";

fn twin_variables_policy() -> String {
    let account = |sub: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/rg-provisionassist/providers/\
             Microsoft.Automation/automationAccounts/provisionassist-auto"
        )
    };
    serde_json::json!({
        "credentials": [{
            "name": "provision-assist",
            "application": { "appId": APP },
            "keyVault": { "vault": "kv-provisionassist", "secret": "appSecret" },
            "consumers": [
                { "type": "automationVariable", "account": account(DEMO_SUB), "variable": "appSecret" },
                { "type": "automationVariable", "account": account(OTHER_SUB), "variable": "appSecret" }
            ]
        }]
    })
    .to_string()
}

#[tokio::test]
async fn a_broken_twin_in_another_subscription_keeps_the_previous_password() {
    // The current password is one an earlier rotation created (its displayName carries the
    // rotator's marker), so the rotator may remove it once every consumer has moved on.
    let mut scenario = demo_scenario();
    let pa = scenario["applications"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["appId"] == APP)
        .unwrap();
    pa["passwordCredentials"][0]["displayName"] =
        "secret-rotator:provision-assist:2025-12-12".into();
    let w = spawn_world(scenario, &twin_variables_policy()).await;
    let c = w.emu.emulator.control();
    let app = Uuid::parse_str(APP).unwrap();
    let (_, old_value, _) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    let old_key = c
        .passwords(app)
        .iter()
        .find(|p| p.secret_text == old_value)
        .expect("the stored value is a password of the app")
        .key_id;

    // The password expires in 20 days: the first run rotates and updates the reachable variable.
    w.run("provision-assist").await;
    let (_, new_value, _) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    assert_ne!(new_value, old_value, "the credential was rotated");
    assert_eq!(
        c.automation_variable("rg-provisionassist", "provisionassist-auto", "appSecret")
            .as_deref(),
        Some(new_value.as_str()),
        "the variable in the reachable subscription holds the new value"
    );

    // Well past the 7-day grace period (and before the old password's own expiry).
    let mut last = None;
    for _ in 0..4 {
        w.emu.emulator.control().advance(Duration::days(3));
        last = Some(w.run("provision-assist").await);
    }
    let last = last.unwrap();
    assert!(
        c.passwords(app).iter().any(|p| p.key_id == old_key),
        "the previous password must stay while the other subscription's variable may hold it: {last:#?}"
    );
    assert_eq!(c.check_client_secret(app, &old_value), Ok(()));
    let (_, _, tags) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    let phase = tags
        .get("rotator-phase")
        .cloned()
        .or_else(|| tags.get("rotator-state").cloned());
    assert!(
        phase.as_deref().is_some_and(|p| p.contains("stored")),
        "the rotation is not finished: {tags:?}"
    );
    eprintln!("PASSWORDS {:#?}\nLAST {last:#?}", c.passwords(app));
    let error = last.error.clone().unwrap_or_default();
    assert!(
        error.contains("consumer #1"),
        "the run names the variable that holds the rotation up: {last:#?}"
    );
}
