//! `Status`, `Plan`, the status page and the report for an enrolled certificate credential, on
//! the emulator: before anything exists (the plan asks Key Vault for a version), then after a
//! run has put the version's key on the application and moved the thumbprint consumer. Every
//! fact shown is checked against the emulator's state (the key on the application, the site's
//! setting), text from Azure (a key's display name) is escaped on the page, and no key
//! material — the certificate's PFX from Key Vault, any PEM or DER — appears in any output,
//! the real handler's `Operate` answers included.

use secret_rotator::engine::inventory::{Enrolment, InventoryScan, ScanOptions};
use secret_rotator::engine::report::{
    ConversionState, CredentialOutcome, KeyRole, PlanReport, StatusReport,
};
use secret_rotator::statuspage::render;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::azurite::Azurite;
use crate::support::emulator::TestEmulator;
use crate::support::host::{FunctionsHost, HttpCall};
use crate::support::world::*;

const VAULT: &str = "kv5sutozr67fiik";
const RG: &str = "TDC_Erhverv_Telephony_Integration";
const SITE: &str = "NuudayToB-5sutozr67fiik";
const APP_ID: &str = "3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10";
const CERT: &str = "integration-cert";
/// A key someone else put on the application, named to attack the page.
const HOSTILE: &str = r#"<img src=x onerror="alert('key')">"#;

fn scenario() -> Value {
    let mut s = demo_scenario();
    let scope = format!(
        "/subscriptions/{{sub}}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/{VAULT}"
    );
    for role in ["Key Vault Certificates Officer", "Key Vault Crypto User"] {
        s["roleAssignments"]
            .as_array_mut()
            .unwrap()
            .push(json!({"principal": MI, "role": role, "scope": scope}));
    }
    s["applications"][0]["keyCredentials"] =
        json!([{"displayName": HOSTILE, "endDateTime": "2099-01-01T00:00:00Z"}]);
    s
}

fn site() -> String {
    format!(
        "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/{RG}/providers/Microsoft.Web/sites/{SITE}"
    )
}

/// The demo's `integration-app` secret, and a certificate credential replacing it whose one
/// consumer is the site's thumbprint setting.
fn policy() -> String {
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    let secret = p["credentials"][0].clone();
    p["credentials"] = json!([secret, {
        "type": "certificate",
        "name": CERT,
        "application": {"appId": APP_ID},
        "certificate": {"vault": VAULT, "name": CERT},
        "issuer": "Self",
        "subject": "CN=integration-app",
        "keySize": 2048,
        "validityInMonths": 12,
        "renewBeforeDays": 30,
        "graceDays": 7,
        "replacesSecret": "integration-app",
        "consumers": [
            {"type": "appSettingThumbprint", "site": site(), "setting": "WEBSITE_LOAD_CERTIFICATES"}
        ]
    }]);
    p.to_string()
}

/// Runs the certificate credential until it asks for nothing more now, letting Key Vault's
/// issuance (seconds on the emulated clock) complete between runs.
async fn settle(w: &World) {
    let cert = w
        .engine
        .policy
        .certificates
        .iter()
        .find(|c| c.name == CERT)
        .expect("enrolled")
        .clone();
    for _ in 0..4 {
        let r = w.engine.run_certificate(&cert, w.now(), None, "test").await;
        assert!(
            matches!(
                r.outcome,
                CredentialOutcome::Progressed | CredentialOutcome::Idle
            ),
            "{r:#?}"
        );
        if !r
            .steps
            .iter()
            .any(|s| s.step.as_str() == "request-certificate")
        {
            return;
        }
        w.emu.emulator.control().advance(chrono::Duration::seconds(
            azure_emulator::certificates::SELF_ISSUE_SECONDS,
        ));
    }
}

/// No private key, PFX or certificate body in `text`: not the certificate's secret from Key
/// Vault (nor any 24-character piece of it, at any offset), no PEM armour, no base64 DER (`MII`).
fn assert_no_key_material(w: &World, what: &str, text: &str) {
    no_key_material(&w.emu.emulator, what, text);
}

fn no_key_material(emulator: &azure_emulator::Emulator, what: &str, text: &str) {
    for bad in ["BEGIN", "PRIVATE KEY", "MII"] {
        assert!(!text.contains(bad), "{bad} in the {what}");
    }
    if let Some((_, pfx, _)) = emulator.control().secret_latest(VAULT, CERT) {
        assert!(pfx.len() > 100, "the certificate's secret is a PFX");
        // Every 24-character window, at every offset: any leaked piece that long is caught.
        let chars: Vec<char> = pfx.chars().collect();
        for piece in chars.windows(24) {
            let piece: String = piece.iter().collect();
            assert!(!text.contains(&piece), "a piece of the PFX in the {what}");
        }
    }
}

fn cert_status(r: &StatusReport) -> &secret_rotator::engine::report::CertificateStatus {
    r.certificates
        .iter()
        .find(|c| c.name == CERT)
        .expect("the certificate credential is listed")
}

fn cert_plan(r: &PlanReport) -> &secret_rotator::engine::report::CredentialPlan {
    r.certificates
        .iter()
        .find(|c| c.name == CERT)
        .expect("planned")
}

#[tokio::test]
async fn before_the_first_run_status_and_plan_say_the_certificate_will_be_created() {
    let w = spawn_world(scenario(), &policy()).await;
    let status = w.engine.status_report(w.now()).await;
    let st = cert_status(&status);
    assert!(st.current_version.is_none() && st.thumbprint.is_none());
    assert_eq!((st.vault.as_str(), st.certificate.as_str()), (VAULT, CERT));
    assert_eq!(st.app_id.as_deref(), Some(APP_ID));
    assert_eq!(st.keys.len(), 1, "{:#?}", st.keys);
    assert_eq!(st.keys[0].role, KeyRole::Other);
    assert_eq!(st.keys[0].display_name.as_deref(), Some(HOSTILE));
    let next = st.next_step.as_deref().unwrap_or_default();
    assert!(next.contains("request a new certificate version"), "{next}");
    let conv = st.conversion.as_ref().expect("converting");
    assert_eq!(
        (conv.secret.as_str(), conv.state),
        ("integration-app", ConversionState::Waiting)
    );
    // Nothing was written: no certificate in the vault, no key added.
    assert!(
        w.emu
            .emulator
            .control()
            .secret_latest(VAULT, CERT)
            .is_none()
    );
    let app = Uuid::parse_str(APP_ID).unwrap();
    assert_eq!(w.emu.emulator.control().key_credentials(app).len(), 1);

    let plan = w.engine.plan_report(w.now()).await;
    let p = cert_plan(&plan);
    assert!(p.blocked.is_none(), "{p:#?}");
    assert!(p.steps[0].contains("request a new certificate version"));
    assert!(p.explanation.iter().any(|e| e.contains(CERT)), "{p:#?}");
}

#[tokio::test]
async fn after_a_run_status_the_page_and_report_show_the_key_in_use_and_no_key_material() {
    let w = spawn_world(scenario(), &policy()).await;
    settle(&w).await;
    let status = w.engine.status_report(w.now()).await;
    let (in_use, thumbprint) = check_against_the_emulator(&w, cert_status(&status));

    // The Status answer: camelCase, additive (the secrets' list as before).
    let json = serde_json::to_value(&status).unwrap();
    assert!(
        json["credentials"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    let c = json["certificates"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == CERT))
        .expect("certificates in the answer");
    assert_eq!(c["thumbprint"], thumbprint.as_str());
    assert_eq!(c["keyIdInUse"], in_use.to_string());
    assert_eq!(c["consumersInSync"], true);
    assert_no_key_material(&w, "Status answer", &json.to_string());

    check_the_page(&w, &status, &thumbprint);

    // The plan, and the report's rows: the key in use enrolled as the certificate credential.
    let plan = w.engine.plan_report(w.now()).await;
    assert_no_key_material(&w, "plan", &serde_json::to_string(&plan).unwrap());
    assert!(cert_plan(&plan).blocked.is_none());
    let (_, mut enrolment) = w.engine.credentials_status(w.now()).await;
    w.engine.certificates_status(&mut enrolment, w.now()).await;
    let rows = report_rows(&w, &enrolment).await;
    let row = rows
        .iter()
        .find(|r| r["keyId"] == in_use.to_string())
        .expect("the key in use is a report row");
    assert_eq!(row["kind"], "certificate");
    assert_eq!(row["enrolledAs"], CERT);
    assert_eq!(row["enrolled"], true);
    assert_eq!(row["keyVault"], format!("{VAULT}/{CERT}"));
    let theirs = rows
        .iter()
        .find(|r| r["displayName"] == HOSTILE)
        .expect("the other writer's key");
    assert_eq!(theirs["enrolled"], false, "someone else's key is nobody's");
}

/// The key in use is on the application (the emulator's state), the thumbprint is the one the
/// site's setting now holds, the other writer's key is listed as theirs, and the conversion
/// waits for the secret's consumer. Returns the key in use and the thumbprint.
fn check_against_the_emulator(
    w: &World,
    st: &secret_rotator::engine::report::CertificateStatus,
) -> (Uuid, String) {
    let app = Uuid::parse_str(APP_ID).unwrap();
    let control = w.emu.emulator.control();
    let on_app: Vec<Uuid> = control
        .key_credentials(app)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let in_use: Uuid = st
        .key_id_in_use
        .as_deref()
        .expect("key in use")
        .parse()
        .unwrap();
    assert!(on_app.contains(&in_use), "{in_use} not among {on_app:?}");
    assert_eq!(st.keys.len(), on_app.len());
    let thumbprint = st.thumbprint.clone().expect("thumbprint");
    assert_eq!(thumbprint.len(), 40);
    let setting = control
        .app_setting(RG, SITE, "WEBSITE_LOAD_CERTIFICATES")
        .expect("setting written");
    assert!(
        setting.eq_ignore_ascii_case(&thumbprint),
        "{setting} vs {thumbprint}"
    );
    assert!(st.consumers_in_sync, "{:#?}", st.consumers);
    assert_eq!(st.keys_by_others, 1);
    // The first version replaces no key of the rotator's: nothing waits for grace.
    assert_eq!(st.phase.as_deref(), Some("retired"), "{st:#?}");
    assert!(st.previous_key_id.is_none() && st.next_step.is_none());
    assert!(st.next_due.is_some_and(|d| d > w.now()));
    assert_eq!(st.last_outcome, Some(CredentialOutcome::Progressed));
    assert!(st.current_version.is_some() && st.expires.is_some() && st.blocked.is_none());
    let conv = st.conversion.as_ref().expect("converting");
    // The secret's Key Vault reference still points at the secret: it has not moved.
    assert_eq!(conv.still_on_secret, 1, "{conv:#?}");
    assert_ne!(conv.state, ConversionState::Converted);
    (in_use, thumbprint)
}

/// The page: the row, the thumbprint, the other writer's key name escaped, no key material
/// (and the check does catch a piece of the PFX planted in it).
fn check_the_page(w: &World, status: &StatusReport, thumbprint: &str) {
    let html = render(status, "test");
    assert!(html.contains(&format!(r#"data-certificate="{CERT}""#)));
    assert!(html.contains(thumbprint));
    assert!(
        !html.contains("<img"),
        "a key's display name reached the page as markup"
    );
    assert!(html.contains("&lt;img src=x onerror=&quot;alert(&#39;key&#39;)&quot;&gt;"));
    assert_no_key_material(w, "status page", &html);
    let (_, pfx, _) = w.emu.emulator.control().secret_latest(VAULT, CERT).unwrap();
    let planted = format!("{html}{}", &pfx[pfx.len() / 2..pfx.len() / 2 + 30]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_key_material(w, "control", &planted)
    }));
    assert!(caught.is_err(), "a planted piece of the PFX went unnoticed");
}

/// Every inventory row the report would print, as its JSON.
async fn report_rows(w: &World, enrolment: &Enrolment) -> Vec<Value> {
    let opts = ScanOptions {
        owned_only: false,
        page_size: 100,
        deadline: None,
    };
    let mut scan = InventoryScan::new(w.engine.azure.as_ref(), enrolment, opts, w.now());
    let mut out = Vec::new();
    while let Some(rows) = scan.next_page().await.expect("scan") {
        out.extend(rows.iter().map(|r| serde_json::to_value(r).unwrap()));
    }
    out
}

/// The real handler behind the Functions host protocol, as the managed identity: `Rotate` runs
/// the certificate credential, then the `Operate` answers carry it — `status.certificates`
/// (camelCase, beside the unchanged `status.credentials`) and `plan.certificates` — with the
/// thumbprint the site's setting holds and no key material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handlers_status_and_plan_answers_carry_the_certificate_credential() {
    let emu = TestEmulator::start(scenario()).await;
    let c = emu.emulator.control();
    let account = format!("st{}", &Uuid::new_v4().simple().to_string()[..12]);
    let azurite = Azurite::start(&emu.emulator, &account);
    let h = FunctionsHost::builder()
        .emulated(&emu.emulator, azurite.host_override(), &account)
        .setting("ROTATOR_ROTATE_WAIT_SECONDS", "60")
        .file("policy.json", policy())
        .start()
        .await
        .unwrap_or_else(|e| panic!("the handler did not start: {e:?}"));
    // Create (pending), then take the issued version up.
    for _ in 0..2 {
        let r = h
            .client
            .http(
                HttpCall::post_json(&format!("rotate/{CERT}"), &json!({})),
                c.now(),
            )
            .await;
        assert!(
            (200..300).contains(&r.status),
            "Rotate: {} {}",
            r.status,
            r.body
        );
        no_key_material(&emu.emulator, "Rotate answer", &r.body_text);
        c.advance(chrono::Duration::seconds(
            azure_emulator::certificates::SELF_ISSUE_SECONDS,
        ));
    }
    let operate = |command: &str| HttpCall::post_json("Operate", &json!({ "function": command }));
    let r = h.client.http(operate("Status"), c.now()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    no_key_material(&emu.emulator, "Status answer", &r.body_text);
    let status = &r.body["status"];
    assert!(
        status["credentials"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{status}"
    );
    let cert = &status["certificates"][0];
    assert_eq!(cert["name"], CERT, "{status}");
    let setting = c
        .app_setting(RG, SITE, "WEBSITE_LOAD_CERTIFICATES")
        .expect("setting written");
    let thumbprint = cert["thumbprint"].as_str().expect("thumbprint");
    assert!(
        setting.eq_ignore_ascii_case(thumbprint),
        "{setting} vs {cert}"
    );
    assert_eq!(cert["consumersInSync"], true, "{cert}");
    assert_eq!(cert["keysByOthers"], 1, "{cert}");
    assert_eq!(cert["conversion"]["secret"], "integration-app", "{cert}");

    let r = h.client.http(operate("Plan"), c.now()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    no_key_material(&emu.emulator, "Plan answer", &r.body_text);
    assert_eq!(
        r.body["plan"]["certificates"][0]["name"], CERT,
        "{}",
        r.body
    );
}

/// The timer pass's scan for credentials nobody rotates learns from the certificate run what
/// the certificate credential keeps: once the version is taken up, another writer's key on the
/// same application, expiring in 10 days, is told as nobody's; the rotator's own key is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pass_warns_about_another_writers_key_on_a_certificate_enrolled_application() {
    const THEIR_KEY: &str = "c0ffee00-0000-4000-8000-0000000000e1";
    let mut s = scenario();
    s["applications"][0]["keyCredentials"] = json!([{
        "keyId": THEIR_KEY, "displayName": "partner upload",
        "endDateTime": "2026-12-02T14:00:00Z"
    }]);
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    let mut cert = serde_json::from_str::<Value>(&policy()).unwrap()["credentials"][1].clone();
    cert.as_object_mut().unwrap().remove("replacesSecret");
    p["credentials"].as_array_mut().unwrap().push(cert);
    let (url, received) = crate::support::receiver::start().await;
    let w = spawn_world_with(
        s,
        &p.to_string(),
        WorldOptions {
            webhooks: vec![secret_rotator::notify::Webhook {
                kind: secret_rotator::notify::WebhookKind::Generic,
                url: secret_rotator::secret::SecretValue::new(url),
            }],
            warn_unenrolled_days: 30,
            ..Default::default()
        },
    )
    .await;
    let told = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|m| m["kind"] == "expiring-unenrolled")
            .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // First pass: Key Vault is still issuing, so what the certificate keeps is not known yet.
    let first = w
        .engine
        .pass(w.now(), std::time::Duration::from_secs(240))
        .await;
    assert!(first.unenrolled.is_some(), "{first:#?}");
    assert!(told().is_empty(), "{:?}", told());
    w.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let second = w
        .engine
        .pass(w.now(), std::time::Duration::from_secs(240))
        .await;
    let run = second.credentials.iter().find(|c| c.name == CERT).unwrap();
    assert_eq!(run.outcome, CredentialOutcome::Progressed, "{run:#?}");
    assert_eq!(told(), [format!("{APP_ID}/{THEIR_KEY}")]);
}
