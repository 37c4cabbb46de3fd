//! Issue #15, replayed: each attack or mistake that used to work, tried again end to end (the
//! real engine and clients against the emulator and Azurite) and now refused or harmless.
//! The handler-level attempts (probe key, identity headers) are in `host_router.rs`; the unit
//! ones (escaping, names, CSV) next to the code they test.

use crate::support::receiver;
use crate::support::world;

use secret_rotator::engine::report::CredentialOutcome;
use world::*;

const SEED_VARIABLE: &str = "PAq8Q~r5Tz.Wm2NvB7xKc4Ld9Fh3Jg6Sp1Ye0Ui";

/// Was: an existing `isEncrypted: false` variable got the new secret in plain text and the step
/// said "updated (encrypted)". Now: that consumer is held on its own with the fix (issue 18:
/// the renewal and the other consumers still move), and the variable is never written.
#[tokio::test]
async fn a_plain_text_automation_variable_is_never_written() {
    let mut scenario = demo_scenario();
    scenario["automationAccounts"][0]["variables"][0]["isEncrypted"] = false.into();
    let w = spawn_world(scenario, &demo_policy()).await;
    let c = w.emu.emulator.control();
    let app = c.app_id_by_name("Provision Assist").expect("seed app");
    let passwords_before = c.passwords(app).len();
    let r = w.run("provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    let why = r.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("appSecret") && why.contains("not encrypted"),
        "{why}"
    );
    assert!(why.contains("create it again encrypted"), "{why}");
    assert!(r.steps.iter().all(|s| !s.detail.contains("encrypted)")));
    // Nothing was written there, and the password it may still hold is kept.
    let value = c.automation_variable("rg-provisionassist", "provisionassist-auto", "appSecret");
    assert_eq!(value.as_deref(), Some(SEED_VARIABLE));
    assert!(c.passwords(app).len() >= passwords_before);
    // A second pass writes it no more than the first.
    w.run("provision-assist").await;
    let value = c.automation_variable("rg-provisionassist", "provisionassist-auto", "appSecret");
    assert_eq!(value.as_deref(), Some(SEED_VARIABLE));
}

/// The step record says what really happened to an encrypted variable.
#[tokio::test]
async fn an_encrypted_variable_step_says_what_was_written() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let r = w.run("provision-assist").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    assert!(
        r.steps.iter().any(|s| s
            .detail
            .contains("wrote the new value into the encrypted variable")),
        "{:#?}",
        r.steps
    );
}

/// Was: `graceDays: 0` was accepted for a notify-only consumer, so a person following the
/// instruction had no time at all. Now the policy names the floor for each kind of consumer.
#[test]
fn zero_grace_is_refused_where_a_consumer_cannot_be_read_back() {
    let mut policy: serde_json::Value = serde_json::from_str(&demo_policy()).unwrap();
    for c in policy["credentials"].as_array_mut().unwrap() {
        c["graceDays"] = 0.into();
    }
    let e = secret_rotator::policy::parse("policy.json", &policy.to_string()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("(ezsign): graceDays: must be at least 3 day(s)"),
        "{text}"
    );
    assert!(
        text.contains("(provision-assist): graceDays: must be at least 1 day(s)"),
        "{text}"
    );
    // Consumers that are read back (a Key Vault reference, a plain setting) may use 0.
    assert!(
        !text.contains("(integration-app)") && !text.contains("(empower)"),
        "{text}"
    );
}

fn force_policy() -> String {
    let mut policy: serde_json::Value = serde_json::from_str(&demo_policy()).unwrap();
    policy["credentials"][0]["graceDays"] = 0.into();
    policy.to_string()
}

async fn force(w: &World, name: &str) -> secret_rotator::engine::report::CredentialReport {
    w.run_with(name, true).await
}

/// Was: with `graceDays: 0`, five forced calls made five new secrets. Now the second and later
/// ones within the minimum interval are refused, saying why and from when it would be accepted.
#[tokio::test]
async fn forced_rotations_cannot_churn() {
    let w = spawn_world(demo_scenario(), &force_policy()).await;
    let c = w.emu.emulator.control();
    let app = c.app_id_by_name("TDC Erhverv Integration App").unwrap();
    let first = force(&w, "integration-app").await;
    assert_eq!(first.outcome, CredentialOutcome::Progressed, "{first:#?}");
    let (version, _, _) = c
        .secret_latest("kv5sutozr67fiik", "TeamsClientSecret")
        .unwrap();
    let passwords = c.passwords(app).len();
    for _ in 0..4 {
        let r = force(&w, "integration-app").await;
        assert_eq!(r.outcome, CredentialOutcome::Refused, "{r:#?}");
        let why = r.error.as_deref().unwrap();
        assert!(why.contains("a forced rotation is accepted from"), "{why}");
        let earliest = r.next_due.expect("the earliest accepted time");
        assert!(earliest > w.now() && earliest <= w.now() + chrono::Duration::hours(1));
    }
    let (after, _, _) = c
        .secret_latest("kv5sutozr67fiik", "TeamsClientSecret")
        .unwrap();
    assert_eq!(after, version, "no new Key Vault version");
    assert_eq!(c.passwords(app).len(), passwords, "no new password");
    // After the interval, a force is accepted again.
    c.advance(chrono::Duration::minutes(61));
    let later = force(&w, "integration-app").await;
    assert_eq!(later.outcome, CredentialOutcome::Progressed, "{later:#?}");
}

/// Was: a variable named `..` sent the new secret to `PUT …/automationAccounts/{a}/`. Now every
/// name that goes into an ARM path follows its type's naming rules, so no dot segment loads.
#[test]
fn dot_segments_never_reach_arm() {
    let base: serde_json::Value = serde_json::from_str(&demo_policy()).unwrap();
    let cases = [
        (
            "/credentials/1/consumers/1/variable",
            "..",
            "Automation variable name",
        ),
        (
            "/credentials/1/consumers/1/variable",
            ".",
            "Automation variable name",
        ),
        (
            "/credentials/1/consumers/1/variable",
            "a/../b",
            "Automation variable name",
        ),
        (
            "/credentials/0/consumers/0/setting",
            "..",
            "app setting name",
        ),
        (
            "/credentials/0/consumers/0/setting",
            "A%2e",
            "app setting name",
        ),
        (
            "/credentials/1/consumers/0/connection",
            "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/rg-provisionassist/providers/Microsoft.Web/connections/..",
            "Microsoft.Web/connections name",
        ),
        (
            "/credentials/0/keyVault/secret",
            "..",
            "Key Vault secret name",
        ),
    ];
    for (pointer, value, rule) in cases {
        let mut policy = base.clone();
        *policy.pointer_mut(pointer).unwrap() = value.into();
        let e = secret_rotator::policy::parse("policy.json", &policy.to_string())
            .expect_err(&format!("{pointer} = {value:?} loaded"))
            .to_string();
        assert!(e.contains(rule), "{pointer} = {value:?}: {e}");
    }
    // The names real deployments use still load.
    assert!(secret_rotator::policy::parse("policy.json", &demo_policy()).is_ok());
}

/// Was: anyone who can register an application put a working link or an `@channel` into the
/// channel through its display name. Replayed through a real pass: an owned application named
/// with Slack and Markdown markup expires soon and is announced to a Slack and a Teams webhook.
#[tokio::test]
async fn an_application_name_is_never_markup_in_the_channel() {
    use secret_rotator::notify::{Webhook, WebhookKind};
    use secret_rotator::secret::SecretValue;
    let name =
        "Payroll <!channel> <https://evil.example|Renew now> [Renew](https://evil.example) & co";
    let mut scenario = demo_scenario();
    let now: chrono::DateTime<chrono::Utc> = scenario["now"].as_str().unwrap().parse().unwrap();
    scenario["applications"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "appId": "c0ffee00-0000-4000-8000-0000000000f1",
            "displayName": name,
            "owners": [MI],
            "passwordCredentials": [{
                "keyId": "c0ffee00-0000-4000-8000-0000000000f2",
                "displayName": "=HYPERLINK(\"https://evil.example\")",
                "secretText": "Evl8Q~injected.name.secret-0000000000000",
                "endDateTime": (now + chrono::Duration::days(5)).to_rfc3339()
            }]
        }));
    let (slack_url, slack) = receiver::start().await;
    let (teams_url, teams) = receiver::start().await;
    let hook = |kind, url: String| Webhook {
        kind,
        url: SecretValue::new(url),
    };
    let w = spawn_world_with(
        scenario,
        &demo_policy(),
        WorldOptions {
            webhooks: vec![
                hook(WebhookKind::Slack, slack_url),
                hook(WebhookKind::Teams, teams_url),
            ],
            warn_unenrolled_days: 30,
            ..Default::default()
        },
    )
    .await;
    w.engine
        .pass(w.now(), std::time::Duration::from_secs(240))
        .await;
    // Every text Slack parses (mrkdwn, and the top-level `text`) has the markup escaped; the
    // header is `plain_text`, which Slack never parses (Block Kit "Text object").
    let bodies: Vec<serde_json::Value> = slack
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let announced = bodies
        .iter()
        .find(|b| b["text"].as_str().unwrap().contains("Payroll"))
        .expect("the expiring application was announced");
    assert_eq!(announced["blocks"][0]["text"]["type"], "plain_text");
    let mut parsed = vec![
        announced["text"].clone(),
        announced["blocks"][1]["text"]["text"].clone(),
    ];
    parsed.extend(
        announced["blocks"][2]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].clone()),
    );
    let parsed = serde_json::Value::from(parsed).to_string();
    assert!(
        parsed.contains("Payroll &lt;!channel&gt; &lt;https://evil.example|Renew now&gt;"),
        "{parsed}"
    );
    assert!(
        !parsed.contains("<!channel>") && !parsed.contains("<https://evil"),
        "{parsed}"
    );
    let teams = teams.lock().unwrap().join("\n");
    assert!(
        teams.contains("[Renew](https://evil.example)"),
        "sent as typed: {teams}"
    );
    assert!(
        !teams.contains("\"TextBlock\"") && !teams.contains("\"FactSet\""),
        "no Markdown element: {teams}"
    );
}

/// Was: a notify-only step said "told the owners" even with no webhook configured. Now the
/// record says whether anyone was told, and through how many webhooks.
#[tokio::test]
async fn a_manual_step_record_says_whether_anyone_was_told() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let r = w.run("ezsign").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let notify = r
        .steps
        .iter()
        .find(|s| s.step == secret_rotator::planner::StepKind::Notify)
        .expect("{r:#?}");
    assert!(
        notify.detail.contains("no webhook is configured")
            && !notify.detail.contains("told the owners"),
        "{}",
        notify.detail
    );
}

/// Token requests made with the enrolled applications' own secrets (not the rotator's).
fn probe_token_requests(w: &World) -> usize {
    let c = w.emu.emulator.control();
    let apps: Vec<String> = [
        "TDC Erhverv Integration App",
        "Provision Assist",
        "empower",
        "ezsign2",
    ]
    .iter()
    .map(|n| c.app_id_by_name(n).unwrap().to_string())
    .collect();
    c.requests()
        .iter()
        .filter(|r| {
            r.path.ends_with("/token") && r.caller.as_ref().is_some_and(|k| apps.contains(k))
        })
        .count()
}

/// Was: every `Test` (the call monitoring tools poll) made a token request with every enrolled
/// secret. Now one per secret per Key Vault version and five minutes; a new version is asked.
#[tokio::test]
async fn polling_the_probe_does_not_replay_every_secret() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    w.engine.self_test_report(w.now()).await;
    let first = probe_token_requests(&w);
    assert!(
        first >= 4,
        "the first probe asks Entra once per secret: {first}"
    );
    for _ in 0..5 {
        w.engine.self_test_report(w.now()).await;
    }
    assert_eq!(
        probe_token_requests(&w),
        first,
        "polling within the memo asks nothing"
    );
    w.run("empower").await;
    let report = w.engine.self_test_report(w.now()).await;
    let empower = report
        .checks
        .iter()
        .find(|c| c.name == "credential empower")
        .unwrap();
    assert!(
        empower.ok,
        "the new version is probed, not remembered: {empower:?}"
    );
    w.emu
        .emulator
        .control()
        .advance(chrono::Duration::minutes(6));
    let before = probe_token_requests(&w);
    w.engine.self_test_report(w.now()).await;
    assert!(
        probe_token_requests(&w) >= before + 4,
        "after the memo, every secret is asked again"
    );
}
