//! Issue 13 end to end: the real binary over the demo tenant (emulator + Azurite, started by the
//! host harness), attacked as the issue describes. Once provision-assist has been rotated twice
//! (so the rotator's own previous password is inside its grace period), a Rotate caller sends a `sys` with a time past the 7-day grace period — in the
//! body and in the query, as an object and not — and a `$sys`. None of it fails the call, and the
//! old password is still in the emulator afterwards: a removal inside the grace period cannot be
//! caused from outside. Then the emulator's clock really moves past the grace period and the same
//! call removes it, which shows the check can see a removal.

use crate::support::azurite;
use crate::support::emulator;
use crate::support::host;

use host::{FunctionsHost, HttpCall};
use serde_json::{Value, json};

const PROVISION_ASSIST: &str = "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20";

fn key_ids(c: &azure_emulator::Control) -> Vec<uuid::Uuid> {
    let app = uuid::Uuid::parse_str(PROVISION_ASSIST).unwrap();
    let mut ids: Vec<_> = c.passwords(app).into_iter().map(|p| p.key_id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cannot_cause_a_removal_inside_the_grace_period() {
    let mut scenario: Value =
        serde_json::from_str(include_str!("../../src/dev/demo-scenario.json")).unwrap();
    // provision-assist's current password as an earlier rotation of ours would have left it,
    // so the pass's previous password is one the rotator removes once its grace period ends.
    for app in scenario["applications"].as_array_mut().unwrap() {
        if app["appId"] == PROVISION_ASSIST {
            app["passwordCredentials"][0]["displayName"] =
                json!("secret-rotator:provision-assist:2024-11-20");
        }
    }
    let emu = emulator::TestEmulator::start(scenario).await;
    let c = emu.emulator.control();
    let account = format!("st{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let azurite = azurite::Azurite::start(&emu.emulator, &account);
    let h = FunctionsHost::builder()
        .emulated(&emu.emulator, azurite.host_override(), &account)
        .setting("ROTATOR_ROTATE_WAIT_SECONDS", "60")
        .setting("ROTATION_SCHEDULE", "0 0 3 * * *")
        .file(
            "policy.json",
            include_str!("../../src/dev/demo-policy.json"),
        )
        .start()
        .await
        .unwrap_or_else(|e| panic!("the handler did not start: {e:?}"));

    let before = key_ids(&c);
    h.client.timer("RotateSecrets", c.now(), false).await;
    let in_grace = key_ids(&c);
    assert_eq!(
        in_grace.len(),
        before.len() + 1,
        "the pass added the new password"
    );

    let forged = (c.now() + chrono::Duration::days(8)).to_rfc3339();
    let attempts = [
        HttpCall::post_json(
            "rotate/provision-assist",
            &json!({"force": false, "sys": {"UtcNow": forged}}),
        ),
        HttpCall::post_json(
            "rotate/provision-assist",
            &json!({"force": false, "sys": forged}),
        ),
        HttpCall::post_json(
            "rotate/provision-assist",
            &json!({"force": false, "$sys": {"UtcNow": forged, "MethodName": "Rotate"}}),
        ),
        HttpCall::new("POST", "rotate/provision-assist").query("sys", "1"),
        HttpCall::new("POST", "rotate/provision-assist")
            .query("sys", &json!({"UtcNow": forged}).to_string()),
    ];
    for call in attempts {
        let what = format!(
            "query {:?} body {}",
            call.query,
            String::from_utf8_lossy(call.body.as_deref().unwrap_or_default())
        );
        let r = h.client.http(call, c.now()).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(
            key_ids(&c),
            in_grace,
            "{what} removed a password: {}",
            r.body
        );
        for step in r.body["result"]["steps"].as_array().into_iter().flatten() {
            let at = chrono::DateTime::parse_from_rfc3339(step["at"].as_str().unwrap()).unwrap();
            assert!(
                at <= c.now(),
                "{what} stamped a step with the forged time: {step}"
            );
        }
        assert!(
            !r.invocation.json.to_string().contains(&forged[..10]),
            "echoed: {}",
            r.body
        );
    }

    // The control: past the grace period for real, the same call removes the old password.
    c.advance(chrono::Duration::days(8));
    let r = h
        .client
        .http(
            HttpCall::post_json("rotate/provision-assist", &json!({"force": false})),
            c.now(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(key_ids(&c).len(), in_grace.len() - 1, "{}", r.body);
    h.terminate().await;
    drop(azurite);
}
