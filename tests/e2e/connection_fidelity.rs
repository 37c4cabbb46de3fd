//! API connections as Azure treats them: `Connected` during the grace period proves nothing (the
//! previous secret still works), so the rotator reports the connection written-but-unconfirmed
//! and checks it again right after the previous password is removed; a policy naming a
//! parameter the connector does not have is blocked, never "confirmed".

use crate::support::receiver;
use crate::support::world;

use secret_rotator::engine::report::CredentialOutcome;
use secret_rotator::notify::{Webhook, WebhookKind};
use secret_rotator::secret::SecretValue;
use uuid::Uuid;
use world::*;

const RG: &str = "rg-provisionassist";
const CONN: &str = "provisionassist-kv";
/// The connection's secret in the demo scenario (the password the rotation replaces).
const OLD_SECRET: &str = "PAq8Q~r5Tz.Wm2NvB7xKc4Ld9Fh3Jg6Sp1Ye0Ui";
const APP: &str = "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20";

#[tokio::test]
async fn a_connection_back_on_the_old_secret_is_reported_when_that_secret_goes() {
    let (hook, received) = receiver::start().await;
    let w = spawn_world_with(
        demo_scenario(),
        &demo_policy(),
        WorldOptions {
            webhooks: vec![Webhook {
                kind: WebhookKind::Generic,
                url: SecretValue::new(hook),
            }],
            ..Default::default()
        },
    )
    .await;
    let c = w.emu.emulator.control();
    // The first rotation replaces the hand-made password (which stays until it expires); a
    // forced second one replaces the rotator's own, which goes after the grace period.
    w.run("provision-assist").await;
    w.advance_days(8);
    w.run("provision-assist").await;
    let (_, first_value, tags) = c.secret_latest("kv-provisionassist", "appSecret").unwrap();
    let first_key = tags["rotator-key-id"].clone();
    let r = w.force("provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let update = r
        .steps
        .iter()
        .find(|s| s.detail.contains(CONN))
        .expect("the connection was updated");
    assert!(update.detail.contains("unconfirmed"), "{}", update.detail);
    // During grace someone redeploys the connection with the previous value: still Connected.
    assert!(c.set_connection_parameter(RG, CONN, "token:clientSecret", &first_value));
    assert_eq!(c.connection_status(RG, CONN).as_deref(), Some("Connected"));

    w.advance_days(8);
    let r = w.run("provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Failed, "{r:#?}");
    let why = r.error.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("removed password {first_key}")),
        "{why}"
    );
    assert!(why.contains(CONN) && why.contains("AADSTS7000215"), "{why}");
    let sent = received.lock().unwrap().clone();
    assert!(
        sent.iter().any(|m| m.contains(CONN)),
        "a failure notification names the connection: {sent:?}"
    );
    assert!(sent.iter().all(|m| !m.contains(&first_value)));
}

#[tokio::test]
async fn a_misspelled_connection_parameter_is_blocked_and_the_old_password_kept() {
    let policy = demo_policy().replace("token:clientSecret", "token:clientSecert");
    let w = spawn_world(demo_scenario(), &policy).await;
    let c = w.emu.emulator.control();
    let why = w.blocked_reason("provision-assist").await;
    assert!(
        why.contains("'token:clientSecert' is not a connection parameter of managed API keyvault"),
        "{why}"
    );
    assert_eq!(
        c.connection_parameter(RG, CONN, "token:clientSecret")
            .as_deref(),
        Some(OLD_SECRET),
        "nothing written"
    );
    w.advance_days(30);
    w.run("provision-assist").await;
    let app = Uuid::parse_str(APP).unwrap();
    let old = Uuid::parse_str("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e71").unwrap();
    assert!(c.passwords(app).iter().any(|p| p.key_id == old));
}

/// Found by the merged fault campaign: a connection already failing on an expired secret must
/// not stop the rotation that fixes it. Removing an expired password the rotator did not create
/// (`removeUnmanagedExpired`) used to re-check the connections, find this one failing, fail the
/// step and end the run before the rotation.
#[tokio::test]
async fn a_connection_failing_on_an_expired_secret_does_not_stop_its_own_repair() {
    let mut scenario = demo_scenario();
    for app in scenario["applications"].as_array_mut().unwrap() {
        if app["appId"] == APP {
            app["passwordCredentials"][0]["endDateTime"] = "2026-11-20T10:00:00Z".into();
            app["passwordCredentials"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "keyId": "9c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e79",
                    "displayName": "portal test", "secretText": "ptQ~expired.portal.test.secret.0123",
                    "startDateTime": "2025-11-01T10:00:00Z", "endDateTime": "2026-11-01T10:00:00Z"
                }));
        }
    }
    let mut policy: serde_json::Value = serde_json::from_str(&demo_policy()).unwrap();
    for cred in policy["credentials"].as_array_mut().unwrap() {
        if cred["name"] == "provision-assist" {
            cred["removeUnmanagedExpired"] = true.into();
        }
    }
    let w = spawn_world(scenario, &policy.to_string()).await;
    let c = w.emu.emulator.control();
    assert_ne!(c.connection_status(RG, CONN).as_deref(), Some("Connected"));
    let r = w.run("provision-assist").await;
    assert!(
        r.steps
            .iter()
            .any(|s| s.step == secret_rotator::planner::StepKind::Rotate && s.ok),
        "the rotation ran: {r:#?}"
    );
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert_eq!(c.connection_status(RG, CONN).as_deref(), Some("Connected"));
}
