//! Credentials nobody enrolled (issue 8): the timer pass tells people about the ones expiring
//! soon — once a day each, never about enrolled ones, never a secret — and `Status` lists them.
//! The real engine and clients against the emulator and Azurite, with a local webhook receiver.

use crate::support::receiver;
use crate::support::world;

use std::time::Duration;

use azure_emulator::{FaultAction, FaultRule};
use chrono::{DateTime, Utc};
use secret_rotator::engine::report::{CredentialOutcome, PassReport};
use secret_rotator::notify::{Webhook, WebhookKind};
use secret_rotator::secret::SecretValue;
use serde_json::{Value, json};
use world::*;

const BILLING: &str = "c0ffee00-0000-4000-8000-000000000001";
const BILLING_KEY: &str = "c0ffee00-0000-4000-8000-0000000000a1";
const PORTAL: &str = "c0ffee00-0000-4000-8000-000000000002";
const PORTAL_KEY: &str = "c0ffee00-0000-4000-8000-0000000000a2";
const PORTAL_CERT: &str = "c0ffee00-0000-4000-8000-0000000000c2";
const PARTNER: &str = "c0ffee00-0000-4000-8000-000000000003";
const PARTNER_KEY: &str = "c0ffee00-0000-4000-8000-0000000000a3";
/// The Integration App's hand-made "portal test" secret: its application is enrolled, this
/// password is not the one in Key Vault.
const PORTAL_TEST_KEY: &str = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d61";
const PAGE_TEXTS: [&str; 3] = [
    "Bil8Q~unenrolled.billing.secret-000000000",
    "Prt8Q~unenrolled.portal.secret-0000000000",
    "Ptn8Q~unenrolled.partner.secret-000000000",
];

fn at(now: DateTime<Utc>, days: i64) -> String {
    // Half a day past the whole days: the days left stay put while the test runs.
    (now + chrono::Duration::days(days) + chrono::Duration::hours(12)).to_rfc3339()
}

/// The demo tenant (four enrolled applications, their secrets due within 30 days) plus three
/// applications nobody enrolled: two owned by the rotator (a secret expiring in 5 days, one in
/// 200 days and a certificate in 300), one it does not own (a secret expiring in 5 days).
fn tenant(read_all: bool) -> Value {
    let mut s = demo_scenario();
    let now: DateTime<Utc> = s["now"].as_str().unwrap().parse().unwrap();
    if read_all {
        s["managedIdentities"][0]["graphAppRoles"] =
            json!(["Application.ReadWrite.OwnedBy", "Application.Read.All"]);
    }
    let apps = s["applications"].as_array_mut().unwrap();
    apps.push(json!({
        "appId": BILLING,
        "displayName": "Legacy Billing",
        "owners": [MI],
        "passwordCredentials": [{
            "keyId": BILLING_KEY, "displayName": "billing job",
            "secretText": PAGE_TEXTS[0], "endDateTime": at(now, 5)
        }]
    }));
    apps.push(json!({
        "appId": PORTAL,
        "displayName": "Reporting Portal",
        "owners": [MI],
        "passwordCredentials": [{
            "keyId": PORTAL_KEY, "secretText": PAGE_TEXTS[1], "endDateTime": at(now, 200)
        }],
        "keyCredentials": [{ "keyId": PORTAL_CERT, "endDateTime": at(now, 300) }]
    }));
    apps.push(json!({
        "appId": PARTNER,
        "displayName": "Partner Gateway",
        "passwordCredentials": [{
            "keyId": PARTNER_KEY, "secretText": PAGE_TEXTS[2], "endDateTime": at(now, 5)
        }]
    }));
    s
}

async fn world(read_all: bool) -> (World, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    world_of(tenant(read_all)).await
}

/// The demo policy on `scenario`, warning 30 days ahead to a local generic webhook.
async fn world_of(scenario: Value) -> (World, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (url, received) = receiver::start().await;
    let w = spawn_world_with(
        scenario,
        &demo_policy(),
        WorldOptions {
            webhooks: vec![Webhook {
                kind: WebhookKind::Generic,
                url: SecretValue::new(url),
            }],
            warn_unenrolled_days: 30,
            ..Default::default()
        },
    )
    .await;
    (w, received)
}

async fn pass(w: &World) -> PassReport {
    w.engine.pass(w.now(), Duration::from_secs(240)).await
}

/// The "expiring, not enrolled" messages received so far, parsed.
fn expiring(received: &std::sync::Mutex<Vec<String>>) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).expect("the generic webhook posts JSON"))
        .filter(|m| m["kind"] == "expiring-unenrolled")
        .collect()
}

/// Every secret value the tenant holds or held: the scenario's and the vaults' current ones.
fn secret_values(w: &World) -> Vec<String> {
    let mut values: Vec<String> = PAGE_TEXTS.iter().map(|s| s.to_string()).collect();
    for app in demo_scenario()["applications"].as_array().unwrap() {
        for p in app["passwordCredentials"].as_array().into_iter().flatten() {
            values.push(p["secretText"].as_str().unwrap().to_string());
        }
    }
    let c = w.emu.emulator.control();
    for (vault, secret) in [
        ("kv5sutozr67fiik", "TeamsClientSecret"),
        ("kv-provisionassist", "appSecret"),
        ("kv-empower", "clientSecret"),
        ("kv-ezsign", "ezsign-token"),
    ] {
        if let Some((_, value, _)) = c.secret_latest(vault, secret) {
            values.push(value);
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_by_only_warns_once_a_day_about_the_owned_secret_expiring_soon() {
    let (w, received) = world(false).await;

    let first = pass(&w).await;
    // The enrolled credentials were rotated first; the scan did not get in their way.
    for c in &first.credentials {
        assert_eq!(c.outcome, CredentialOutcome::Progressed, "{c:#?}");
    }
    let scan = first.unenrolled.as_ref().expect("the pass scanned");
    assert_eq!(scan.warning, None, "{scan:#?}");
    assert!(scan.scan.owned_only && scan.scan.complete, "{scan:#?}");
    assert_eq!((scan.expiring, scan.notified), (1, 1), "{scan:#?}");

    let messages = expiring(&received);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    // The 5-day secret of the owned application, and nothing else: not the enrolled secrets
    // (all due within 30 days), not the 200-day one, not the application the rotator does not
    // own (invisible under Application.ReadWrite.OwnedBy).
    assert_eq!(m["subject"], format!("{BILLING}/{BILLING_KEY}"));
    assert!(
        m["title"]
            .as_str()
            .unwrap()
            .contains("Legacy Billing expires in 5 days"),
        "{m}"
    );
    let facts = m["facts"].to_string();
    assert!(
        facts.contains(BILLING_KEY) && facts.contains("billing job"),
        "{m}"
    );
    for body in received.lock().unwrap().iter() {
        for value in secret_values(&w) {
            assert!(!body.contains(&value), "a message carries a secret: {body}");
        }
    }

    // A second pass the same (emulated) day: the dedup store remembers; nothing is sent.
    let second = pass(&w).await;
    let scan = second.unenrolled.as_ref().unwrap();
    assert_eq!(
        (scan.expiring, scan.notified, scan.already_sent_today),
        (1, 0, 1)
    );
    assert_eq!(expiring(&received).len(), 1);

    // The next day: told again (4 days left now).
    w.advance_days(1);
    let third = pass(&w).await;
    assert_eq!(third.unenrolled.as_ref().unwrap().notified, 1, "{third:#?}");
    let messages = expiring(&received);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[1]["subject"], format!("{BILLING}/{BILLING_KEY}"));
    assert!(
        messages[1]["title"]
            .as_str()
            .unwrap()
            .contains("expires in 4 days"),
        "{}",
        messages[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_unenrolled_credentials_it_can_see() {
    let (w, _received) = world(false).await;
    pass(&w).await;
    let status = serde_json::to_value(w.engine.status_report(w.now()).await).unwrap();
    let inv = &status["unenrolled"];
    assert_eq!(inv["scan"]["ownedOnly"], true, "{inv:#}");
    assert!(
        inv["scan"]["ownedOnlyReason"]
            .as_str()
            .unwrap()
            .contains("Application.Read.All"),
        "{inv:#}"
    );
    assert_eq!(inv["problem"], Value::Null);
    assert_eq!(
        inv["undetermined"], 0,
        "every vault's keyId is known: {inv:#}"
    );
    let listed = inv["listed"].as_array().unwrap();
    let keys: Vec<&str> = listed
        .iter()
        .map(|r| r["keyId"].as_str().unwrap())
        .collect();
    // Soonest first; the enrolled application's other secret is listed, its kept ones are not.
    assert_eq!(
        keys,
        [BILLING_KEY, PORTAL_TEST_KEY, PORTAL_KEY, PORTAL_CERT],
        "{inv:#}"
    );
    assert_eq!(inv["unenrolled"], 4);
    assert_eq!(inv["notListed"], 0);
    let billing = &listed[0];
    assert_eq!(billing["application"], "Legacy Billing");
    assert_eq!(billing["appId"], BILLING);
    assert_eq!(billing["kind"], "secret");
    assert_eq!(billing["daysLeft"], 5);
    assert_eq!(listed[1]["enrolledAs"], "integration-app");
    assert!(listed.iter().all(|r| r["enrolled"] == false), "{inv:#}");
    assert_eq!(listed[3]["kind"], "certificate");
    assert_eq!(listed[3]["daysLeft"], 300);
    assert!(!inv.to_string().contains(PARTNER), "not owned: {inv:#}");
    assert!(
        inv["note"].as_str().unwrap().contains("4 listed"),
        "{inv:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_read_all_every_application_is_scanned() {
    let (w, received) = world(true).await;
    let report = pass(&w).await;
    let scan = report.unenrolled.as_ref().unwrap();
    assert!(!scan.scan.owned_only && scan.scan.complete, "{scan:#?}");
    assert!(scan.scan.service_principals > 0, "{scan:#?}");
    let mut subjects: Vec<String> = expiring(&received)
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            format!("{BILLING}/{BILLING_KEY}"),
            format!("{PARTNER}/{PARTNER_KEY}")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scan_is_a_warning_not_a_failed_pass() {
    let (w, received) = world(false).await;
    w.emu.emulator.control().add_fault(FaultRule {
        service: "graph".into(),
        operation: Some("listOwnedObjects".into()),
        nth: None,
        times: None,
        probability: None,
        seed: None,
        action: FaultAction::Status {
            status: 503,
            retry_after: None,
        },
    });
    let report = pass(&w).await;
    for c in &report.credentials {
        assert_eq!(c.outcome, CredentialOutcome::Progressed, "{c:#?}");
    }
    let scan = report.unenrolled.as_ref().unwrap();
    let warning = scan.warning.as_deref().expect("the failure is reported");
    assert!(
        warning.contains("scan for unenrolled credentials failed"),
        "{warning}"
    );
    assert!(!scan.scan.complete);
    assert!(expiring(&received).is_empty());
    // Status says so too, and still answers with the enrolled credentials.
    let status = w.engine.status_report(w.now()).await;
    assert_eq!(status.credentials.len(), 4);
    assert!(
        status.unenrolled.unwrap().problem.is_some(),
        "the scan's failure is in Status"
    );
}

/// A tenant of 1,500 owned applications nobody enrolled (expiry spread from 50 days ago to 349
/// days ahead): `Status` answers with the 200 expiring soonest and a count of the rest, the
/// pass tells about exactly the ones within 30 days, and the next pass that day about none.
/// The durations are printed for docs/performance.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_tenant_stays_bounded_and_is_told_once() {
    const APPS: i64 = 1500;
    let mut s = demo_scenario();
    let now: DateTime<Utc> = s["now"].as_str().unwrap().parse().unwrap();
    let offset = |i: i64| i % 400 - 50;
    let list = s["applications"].as_array_mut().unwrap();
    for i in 0..APPS {
        list.push(json!({
            "displayName": format!("bulk app {i:05}"),
            "owners": [MI],
            "passwordCredentials": [{
                "secretText": format!("bulkQ~{i:05}.value.one.0123456789"),
                "endDateTime": at(now, offset(i))
            }]
        }));
    }
    let (w, received) = world_of(s).await;

    let started = std::time::Instant::now();
    let status = w.engine.status_report(w.now()).await;
    let t_status = started.elapsed();
    let inv = status.unenrolled.as_ref().unwrap();
    assert!(inv.scan.complete && inv.scan.owned_only, "{:?}", inv.scan);
    assert!(inv.scan.applications >= APPS as usize, "{:?}", inv.scan);
    assert!(inv.unenrolled >= APPS as usize);
    assert_eq!(inv.listed.len(), 200);
    assert_eq!(inv.not_listed, inv.unenrolled - 200);
    let days: Vec<i64> = inv.listed.iter().map(|r| r.days_left.unwrap()).collect();
    assert!(days.windows(2).all(|w| w[0] <= w[1]), "sorted: {days:?}");
    // The 200 smallest offsets among the bulk apps: nothing of the demo tenant comes before.
    let mut expected: Vec<i64> = (0..APPS).map(offset).collect();
    expected.sort();
    assert_eq!(days, expected[..200]);
    let body = serde_json::to_string(&status).unwrap();
    assert!(
        body.len() < 150_000,
        "Status is bounded: {} bytes",
        body.len()
    );
    assert!(!body.contains("bulkQ~"), "no secret value in Status");

    let started = std::time::Instant::now();
    let first = pass(&w).await;
    let t_pass = started.elapsed();
    let scan = first.unenrolled.as_ref().unwrap();
    let within = (0..APPS).filter(|i| (0..30).contains(&offset(*i))).count();
    assert_eq!(
        (scan.expiring, scan.notified),
        (within, within),
        "{scan:#?}"
    );
    assert_eq!(expiring(&received).len(), within);
    let started = std::time::Instant::now();
    let second = pass(&w).await;
    let t_second = started.elapsed();
    let scan = second.unenrolled.as_ref().unwrap();
    assert_eq!((scan.notified, scan.already_sent_today), (0, within));
    assert_eq!(
        expiring(&received).len(),
        within,
        "nothing more the same day"
    );
    eprintln!(
        "unenrolled: {} applications; Status {t_status:?} ({} bytes); first pass {t_pass:?} ({within} messages, 4 rotations); second pass {t_second:?}",
        inv.scan.applications,
        body.len()
    );
}
