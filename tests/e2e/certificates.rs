//! Certificate credentials through the engine, on the emulator: a credential renews end to end
//! (Key Vault new version → key on the application → client assertion accepted → consumers
//! moved → old key removed after grace, by exact keyId), a version Key Vault made on its own
//! is adopted, another writer's key survives every write (the merge-write included), and a
//! client secret converts to the certificate, removed only once every consumer has moved.
//! Every outcome is checked on the emulator's state (keyCredentials, passwords, app settings),
//! and no report or message carries key material.

use std::time::Duration;

use secret_rotator::engine::report::{CredentialOutcome, CredentialReport};
use secret_rotator::engine::service::RotatorService;
use secret_rotator::policy::ArmResource;
use secret_rotator::secret::SecretValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::world::*;

const VAULT: &str = "kv5sutozr67fiik";
const RG: &str = "TDC_Erhverv_Telephony_Integration";
const SITE: &str = "NuudayToB-5sutozr67fiik";
const APP_ID: &str = "3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10";
const CERT: &str = "integration-cert";

/// The demo tenant, the rotator allowed to manage certificates in the vault and sign with
/// their keys, and a key on the application that someone else put there.
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
        json!([{"displayName": "someone else's", "endDateTime": "2099-01-01T00:00:00Z"}]);
    s
}

fn site() -> String {
    format!(
        "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/{RG}/providers/Microsoft.Web/sites/{SITE}"
    )
}

/// The demo's `integration-app` secret, and a certificate credential replacing it.
fn policy() -> String {
    policy_on("integration-cert")
}

/// [`policy`] with the Key Vault certificate named `certificate`.
fn policy_on(certificate: &str) -> String {
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    let secret = p["credentials"][0].clone();
    p["credentials"] = json!([secret, {
        "type": "certificate",
        "name": CERT,
        "application": {"appId": APP_ID},
        "certificate": {"vault": VAULT, "name": certificate},
        "issuer": "Self",
        "subject": "CN=integration-app",
        "keySize": 2048,
        "validityInMonths": 12,
        "renewBeforeDays": 30,
        "graceDays": 7,
        "replacesSecret": "integration-app",
        "consumers": [
            {"type": "appSettingKeyVaultReference", "site": site(), "setting": "TeamsCertificate"},
            {"type": "appSettingThumbprint", "site": site(), "setting": "WEBSITE_LOAD_CERTIFICATES"},
            {"type": "notifyOnly", "system": "EzSign", "instructions": "Upload the new .cer to EzSign's trust store"}
        ]
    }]);
    p.to_string()
}

async fn run(w: &World) -> CredentialReport {
    let r = w
        .engine
        .rotate_one(CERT, false, w.now())
        .await
        .expect("enrolled");
    assert_no_key_material(&serde_json::to_string(&r).unwrap());
    r
}

/// Runs until the run asks for nothing more now, completing Key Vault's issuance (seconds on
/// the emulated clock) when a version is pending.
async fn settle(w: &World) -> Vec<CredentialReport> {
    let mut out = Vec::new();
    for _ in 0..4 {
        let r = run(w).await;
        let again = r
            .steps
            .iter()
            .any(|s| s.step.as_str() == "request-certificate");
        assert!(
            matches!(
                r.outcome,
                CredentialOutcome::Progressed | CredentialOutcome::Idle
            ),
            "{r:#?}"
        );
        out.push(r);
        if !again {
            break;
        }
        w.emu.emulator.control().advance(chrono::Duration::seconds(
            azure_emulator::certificates::SELF_ISSUE_SECONDS,
        ));
    }
    out
}

fn assert_no_key_material(text: &str) {
    for bad in ["BEGIN", "PRIVATE", "MII"] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
}

fn app_id() -> Uuid {
    Uuid::parse_str(APP_ID).unwrap()
}

fn keys(w: &World) -> Vec<Uuid> {
    w.emu
        .emulator
        .control()
        .key_credentials(app_id())
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn setting(w: &World, name: &str) -> Option<String> {
    w.emu.emulator.control().app_setting(RG, SITE, name)
}

fn steps(rs: &[CredentialReport]) -> Vec<String> {
    rs.iter()
        .flat_map(|r| r.steps.iter().map(|s| s.step.as_str().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_renews_end_to_end_and_keeps_another_writers_key() {
    let w = spawn_world(scenario(), &policy()).await;
    let theirs = keys(&w);
    assert_eq!(theirs.len(), 1);

    // First runs: the certificate is created, its key put on the app (merge-write: no current
    // key of ours can sign a proof), proven, every consumer moved.
    let first = settle(&w).await;
    let s = steps(&first);
    for want in [
        "request-certificate",
        "add-key",
        "prove-key",
        "update-consumer",
        "notify",
        "complete-propagation",
    ] {
        assert!(s.contains(&want.to_string()), "{want} in {s:?}");
    }
    // App Service resolves the pinned reference to the certificate's secret (confirmed, not
    // assumed).
    let confirmed = first.iter().flat_map(|r| &r.steps).any(|s| {
        s.step.as_str() == "update-consumer"
            && s.detail.contains("Key Vault certificate reference")
            && s.detail.contains("App Service resolves version")
    });
    assert!(confirmed, "{first:#?}");
    let after_first = keys(&w);
    assert_eq!(after_first.len(), 2, "{after_first:?}");
    assert!(
        after_first.contains(&theirs[0]),
        "another writer's key kept"
    );
    let v1_key = *after_first.iter().find(|k| **k != theirs[0]).unwrap();
    let reference = setting(&w, "TeamsCertificate").expect("reference written");
    assert!(
        reference.starts_with(&format!(
            "@Microsoft.KeyVault(SecretUri=https://{VAULT}.vault.azure.net/secrets/integration-cert/"
        )),
        "{reference}"
    );
    let thumb1 = setting(&w, "WEBSITE_LOAD_CERTIFICATES").expect("thumbprint written");
    assert_eq!(thumb1.len(), 40, "{thumb1}");
    // Other settings of the site are untouched.
    assert!(
        setting(&w, "TeamsClientSecret")
            .unwrap()
            .contains("TeamsClientSecret")
    );
    // Nothing more to do; a run now is idle.
    assert_eq!(run(&w).await.outcome, CredentialOutcome::Idle);

    // Renewal: within renewBeforeDays of the end of 12 months.
    w.advance_days(340);
    let renewal = settle(&w).await;
    let s = steps(&renewal);
    assert!(s.contains(&"add-key".to_string()), "{s:?}");
    let during = keys(&w);
    assert_eq!(
        during.len(),
        3,
        "old key kept through the grace period: {during:?}"
    );
    assert!(during.contains(&v1_key) && during.contains(&theirs[0]));
    let v2_key = *during
        .iter()
        .find(|k| **k != theirs[0] && **k != v1_key)
        .unwrap();
    let reference2 = setting(&w, "TeamsCertificate").unwrap();
    assert_ne!(
        reference, reference2,
        "the reference moved to the new version"
    );
    let thumb2 = setting(&w, "WEBSITE_LOAD_CERTIFICATES").unwrap();
    assert_ne!(thumb1, thumb2);
    assert_eq!(
        thumb2.len(),
        40,
        "the old thumbprint replaced, not appended: {thumb2}"
    );

    // Still inside the grace period: nothing is removed.
    w.advance_days(3);
    run(&w).await;
    assert_eq!(keys(&w).len(), 3);
    // After grace: exactly the old key goes.
    w.advance_days(5);
    let last = run(&w).await;
    assert!(
        last.steps
            .iter()
            .any(|s| s.step.as_str() == "remove-key" && s.detail.contains(&v1_key.to_string())),
        "{last:#?}"
    );
    let end = keys(&w);
    assert_eq!(end.len(), 2, "{end:?}");
    assert!(end.contains(&theirs[0]) && end.contains(&v2_key) && !end.contains(&v1_key));
    // The pass runs the certificate next to the secret; nothing is due for it now.
    let pass = w.engine.pass(w.now(), Duration::from_secs(120)).await;
    let mine = pass
        .credentials
        .iter()
        .find(|c| c.name == CERT)
        .expect("in the pass");
    assert_eq!(mine.outcome, CredentialOutcome::Idle, "{}", summary(&pass));
    assert!(pass.credentials.iter().any(|c| c.name == "integration-app"));
    // The records kept (last outcome, the run's report) carry no key material either.
    let last = w
        .engine
        .store
        .get_json(&format!("last/{CERT}.json"))
        .await
        .unwrap()
        .expect("last outcome recorded");
    assert_no_key_material(&last.to_string());
    assert_no_key_material(&serde_json::to_string(&pass).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_key_vault_made_on_its_own_is_adopted_and_taken_up_with_a_proof() {
    let w = spawn_world(scenario(), &policy()).await;
    settle(&w).await;
    let before = keys(&w);
    // A version nobody asked the rotator for (Key Vault's auto-renewal, or a person): no
    // rotator tags on it.
    let cert = &w.engine.policy.certificates[0];
    w.engine
        .certs
        .cert_create(cert, &Default::default())
        .await
        .unwrap();
    w.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let r = run(&w).await;
    let s: Vec<&str> = r.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        &s[..3],
        ["adopt-certificate", "add-key", "prove-key"],
        "{r:#?}"
    );
    assert!(r.steps[1].detail.contains("added"), "{r:#?}");
    let after = keys(&w);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(before.iter().all(|k| after.contains(k)), "no key lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_converts_and_goes_only_once_every_consumer_has_moved() {
    let w = spawn_world(scenario(), &policy()).await;
    // The secret path has taken its secret up (its Key Vault tags name the password).
    let r = w.run("integration-app").await;
    assert!(
        !matches!(
            r.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ),
        "{r:#?}"
    );
    let control = w.emu.emulator.control();
    let secret_pw: Vec<Uuid> = control
        .passwords(app_id())
        .iter()
        .filter(|p| p.secret_text == "Hcj8Q~.QZRI29VPnoAaMuV33naFd1W4yueZLpa4k")
        .map(|p| p.key_id)
        .collect();
    assert_eq!(secret_pw.len(), 1);
    let present = |w: &World| {
        w.emu
            .emulator
            .control()
            .passwords(app_id())
            .iter()
            .any(|p| p.key_id == secret_pw[0])
    };
    settle(&w).await;
    // Consumers of the certificate moved; the secret's consumer has not: the secret stays,
    // past any grace period.
    w.advance_days(20);
    run(&w).await;
    run(&w).await;
    assert!(present(&w), "the secret stays while its consumer holds it");
    // A person moves the app off the secret.
    let secret_site: ArmResource = match &w.credential("integration-app").consumers[0] {
        secret_rotator::policy::Consumer::AppSettingKeyVaultRef { site, .. } => site.clone(),
        other => panic!("{other:?}"),
    };
    w.engine
        .azure
        .set_app_setting(
            &secret_site,
            "TeamsClientSecret",
            &SecretValue::new("moved to the certificate".to_string()),
        )
        .await
        .unwrap();
    let released = run(&w).await;
    assert!(
        released
            .steps
            .iter()
            .any(|s| s.step.as_str() == "release-secret"),
        "{released:#?}"
    );
    assert!(present(&w), "released, not yet removed: grace first");
    w.advance_days(8);
    let removed = run(&w).await;
    assert!(
        removed
            .steps
            .iter()
            .any(|s| s.step.as_str() == "remove-client-secret"),
        "{removed:#?}"
    );
    assert!(!present(&w), "the secret's password is gone after grace");
    // The other password on the application (not the secret's) is kept.
    assert!(
        control
            .passwords(app_id())
            .iter()
            .any(|p| p.display_name.as_deref() == Some("portal test"))
    );
    // The secret path no longer rotates the replaced secret.
    let before = control.passwords(app_id()).len();
    let r = w
        .engine
        .rotate_one("integration-app", true, w.now())
        .await
        .unwrap();
    assert!(
        r.error
            .unwrap_or_default()
            .contains("replaced by certificate")
    );
    assert_eq!(control.passwords(app_id()).len(), before);
    // The probe: the certificate gets a token; the replaced secret is not probed (its
    // password is gone on purpose).
    let probe = w.engine.self_test_report(w.now()).await;
    for name in ["credential integration-cert", "credential integration-app"] {
        let c = probe.checks.iter().find(|c| c.name == name).expect(name);
        assert!(c.ok, "{c:?}");
    }
    // Polled again at once, the probe answers from its memo: no assertion is signed.
    let signs = |w: &World| {
        w.emu
            .emulator
            .control()
            .requests()
            .iter()
            .filter(|r| r.operation.as_deref() == Some("sign"))
            .count()
    };
    let before = signs(&w);
    let again = w.engine.self_test_report(w.now()).await;
    assert!(again.checks.iter().all(|c| c.ok), "{again:?}");
    assert_eq!(signs(&w), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_at_its_key_credential_limit_blocks_with_the_reason() {
    let mut s = scenario();
    // The application already holds as many keys as Graph lets it.
    s["keyCredentialLimit"] = json!(1);
    let w = spawn_world(s, &policy()).await;
    let theirs = keys(&w);
    let first = run(&w).await;
    assert_eq!(first.outcome, CredentialOutcome::Progressed, "{first:#?}");
    w.emu.emulator.control().advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let r = run(&w).await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    let why = r.error.clone().unwrap_or_default();
    assert!(why.contains("key-credential limit"), "{why}");
    assert!(why.contains("Directory_ResourceSizeExceeded"), "{why}");
    assert_eq!(keys(&w), theirs, "nothing added, nothing lost");
    // Not asked again: the next run is blocked without another write to Graph.
    let writes = |w: &World| {
        w.emu
            .emulator
            .control()
            .requests()
            .iter()
            .filter(|r| r.operation.as_deref() == Some("updateApplication"))
            .count()
    };
    let before = writes(&w);
    assert_eq!(run(&w).await.outcome, CredentialOutcome::Blocked);
    assert_eq!(writes(&w), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_name_a_secret_holds_blocks_with_the_fix_instead_of_looping() {
    // The vault already holds a plain secret of the certificate's name.
    let w = spawn_world(scenario(), &policy_on("TeamsClientSecret")).await;
    let r = run(&w).await;
    assert_eq!(r.outcome, CredentialOutcome::Blocked, "{r:#?}");
    assert_eq!(r.steps.len(), 1, "one request, not a loop: {r:#?}");
    let why = r.error.unwrap_or_default();
    assert!(why.contains("recover or purge"), "{why}");
    assert!(keys(&w).len() == 1, "nothing written to the application");
}

/// A conversion whose secret consumer is a plain app setting: a setting still holding the
/// secret — the current value, or one that starts as any of the secret's passwords does (a
/// consumer left on the previous one) — keeps the secret; only a setting that holds neither
/// lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_setting_on_any_of_the_secrets_passwords_keeps_the_secret() {
    let mut s = demo_scenario();
    let scope = "/subscriptions/{sub}/resourceGroups/rg-empower/providers/Microsoft.KeyVault/vaults/kv-empower";
    for role in ["Key Vault Certificates Officer", "Key Vault Crypto User"] {
        s["roleAssignments"]
            .as_array_mut()
            .unwrap()
            .push(json!({"principal": MI, "role": role, "scope": scope}));
    }
    let site = "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/rg-empower/providers/Microsoft.Web/sites/empower-backend";
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    let empower = p["credentials"][2].clone();
    p["credentials"] = json!([empower, {
        "type": "certificate", "name": "empower-cert",
        "application": {"appId": "5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30"},
        "certificate": {"vault": "kv-empower", "name": "empower-cert"},
        "graceDays": 7, "replacesSecret": "empower",
        "consumers": [{"type": "appSettingThumbprint", "site": site, "setting": "EntraClientCertificate"}]
    }]);
    let w = spawn_world(s, &p.to_string()).await;
    let app = Uuid::parse_str("5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30").unwrap();
    // The secret path renews the expired secret: its tags now name the new password and the
    // previous one.
    let r = w.run("empower").await;
    assert!(
        !matches!(
            r.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ),
        "{r:#?}"
    );
    let control = w.emu.emulator.control();
    let before = control.passwords(app).len();
    let rotate = |w: &World| {
        let (w, now) = (w.engine.clone(), w.now());
        async move {
            let r = w.rotate_one("empower-cert", false, now).await.unwrap();
            assert_no_key_material(&serde_json::to_string(&r).unwrap());
            r
        }
    };
    for _ in 0..3 {
        rotate(&w).await;
        control.advance(chrono::Duration::seconds(
            azure_emulator::certificates::SELF_ISSUE_SECONDS,
        ));
    }
    let secret_site = match &w.credential("empower").consumers[0] {
        secret_rotator::policy::Consumer::AppSettingValue { site, .. } => site.clone(),
        other => panic!("{other:?}"),
    };
    let set = |v: &str| {
        let (w, site, v) = (w.engine.clone(), secret_site.clone(), v.to_string());
        async move {
            w.azure
                .set_app_setting(&site, "EntraClientSecret", &SecretValue::new(v))
                .await
                .unwrap()
        }
    };
    // A value that starts as the secret's password does (Graph shows its first characters),
    // though not the one in Key Vault: still on the secret.
    let ours = control
        .passwords(app)
        .into_iter()
        .find(|p| {
            p.display_name
                .as_deref()
                .is_some_and(|n| n.starts_with("secret-rotator:empower:"))
        })
        .expect("the secret path's password");
    set(&format!("{}-a-copy-from-before", ours.hint)).await;
    w.advance_days(10);
    for _ in 0..2 {
        let r = rotate(&w).await;
        assert!(
            !r.steps.iter().any(|s| s.step.as_str() == "release-secret"),
            "{r:#?}"
        );
    }
    assert_eq!(control.passwords(app).len(), before, "nothing removed");
    // Moved: the setting now holds something that is none of the secret's passwords.
    set("uses the certificate now").await;
    let r = rotate(&w).await;
    assert!(
        r.steps.iter().any(|s| s.step.as_str() == "release-secret"),
        "{r:#?}"
    );
}

/// A Key Vault reference its owner wrote versionless stays versionless: App Service is told to
/// read it again, and its status confirms the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versionless_certificate_reference_is_refreshed_not_pinned() {
    let mut s = scenario();
    let versionless = format!("@Microsoft.KeyVault(VaultName={VAULT};SecretName=integration-cert)");
    for site in s["sites"].as_array_mut().unwrap() {
        if site["name"] == SITE {
            site["appSettings"]["TeamsCertificate"] = json!(versionless);
        }
    }
    let w = spawn_world(s, &policy()).await;
    let first = settle(&w).await;
    assert_eq!(
        setting(&w, "TeamsCertificate").as_deref(),
        Some(versionless.as_str())
    );
    let refreshed = first.iter().flat_map(|r| &r.steps).any(|s| {
        s.step.as_str() == "update-consumer"
            && s.detail.contains("refreshed the versionless reference")
            && s.detail.contains("App Service resolves version")
    });
    assert!(refreshed, "{first:#?}");
}

/// A person removes the secret's setting once the certificate is on the site: the secret's own
/// path (the same timer pass runs it) leaves it gone instead of writing the reference back,
/// so the conversion sees it moved and releases the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_moved_off_a_replaced_secret_is_not_written_back() {
    let w = spawn_world(scenario(), &policy()).await;
    w.run("integration-app").await;
    settle(&w).await;
    let control = w.emu.emulator.control();
    assert!(control.remove_app_setting(RG, SITE, "TeamsClientSecret"));
    w.advance_days(8);
    let secret = w
        .engine
        .rotate_one("integration-app", false, w.now())
        .await
        .unwrap();
    assert!(
        !matches!(
            secret.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ),
        "{secret:#?}"
    );
    assert_eq!(
        control.app_setting(RG, SITE, "TeamsClientSecret"),
        None,
        "{secret:#?}"
    );
    let released = run(&w).await;
    assert!(
        released
            .steps
            .iter()
            .any(|s| s.step.as_str() == "release-secret"),
        "{released:#?}"
    );
    assert_eq!(control.app_setting(RG, SITE, "TeamsClientSecret"), None);
}
