//! `secret-rotator dev` end to end: the README's first command. The real binary starts the
//! emulator, Azurite and itself as a custom handler (managed identity, real URLs redirected at
//! the transport), plays the Functions host through the rotation passes and the probe, and must
//! end green with every seed system rotated, verified and in sync — and one seed application
//! converting from its client secret to a certificate, checked on the emulator's state
//! (`--serve` keeps the emulator up; its `GET /_emulator/state` is read, then the run is
//! interrupted as Ctrl-C would).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The demo's converted application (`src/dev/demo-certificate.json`).
const APP_ID: &str = "3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10";
const SITE: &str = "NuudayToB-5sutozr67fiik";

/// Runs `dev --serve` until it serves; returns its output so far and the emulator's state.
async fn dev_until_serving() -> (String, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secret-rotator"))
        .args(["dev", "--serve", "--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("runs");
    let mut stdout = String::new();
    let mut control = None;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.expect("stdout");
        stdout.push_str(&line);
        stdout.push('\n');
        if let Some(rest) = line.trim().strip_prefix("curl -s http://")
            && let Some((url, _)) = rest.split_once("/clock/advance")
        {
            control = Some(format!("http://{url}"));
            break;
        }
    }
    let state = match &control {
        Some(c) => reqwest::get(format!("{c}/state"))
            .await
            .expect("state")
            .json()
            .await
            .expect("state JSON"),
        None => Value::Null,
    };
    // Ctrl-C, as a person ends `--serve` (its Azurite and handler stop with it).
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(
        control.is_some(),
        "dev mode did not reach --serve:\n{stdout}"
    );
    (stdout, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_rotates_every_seed_system_and_ends_green() {
    let (stdout, state) = dev_until_serving().await;
    // Before: the probe shows the expired secret (19) and the ones inside their renewal window.
    assert!(stdout.contains("✗ credential empower"), "{stdout}");
    assert!(stdout.contains("[19]"), "{stdout}");
    // The pass: every seed system progressed, each consumer kind updated and confirmed.
    for name in [
        "integration-app",
        "provision-assist",
        "empower",
        "ezsign",
        "integration-cert",
    ] {
        assert!(
            stdout.contains(&format!("{name} — progressed")),
            "{name}:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("✓ credential {name}")),
            "{name}:\n{stdout}"
        );
    }
    for what in [
        "refreshed the versionless reference; App Service resolves version",
        "(token:clientSecret): written, unconfirmed: status Connected",
        "Automation variable appSecret in rg-provisionassist/provisionassist-auto: wrote the new value into the encrypted variable",
        "app setting EntraClientSecret on site rg-empower/empower-backend: wrote the new value",
        "told the owners of EzSign signing server",
        "Action needed: give EzSign signing server its new client secret",
    ] {
        assert!(stdout.contains(what), "missing '{what}':\n{stdout}");
    }
    assert!(stdout.contains("success=true resultCode=\"0\""), "{stdout}");
    assert!(
        stdout.contains("Every seed system rotated, verified and in sync."),
        "{stdout}"
    );
    the_conversion_is_told(&stdout);
    the_conversion_holds_on_the_emulator(&state);
}

/// The conversion's story as printed: the certificate proven and on its consumers, the secret
/// kept while a consumer holds it (and why), the demo moving it as a person would, the release.
fn the_conversion_is_told(stdout: &str) {
    for what in [
        "✓ add-key: version",
        "✓ prove-key: Entra accepted an assertion signed by version",
        "Key Vault certificate reference TeamsCertificate on site TDC_Erhverv_Telephony_Integration/NuudayToB-5sutozr67fiik: pinned to version",
        "thumbprint setting WEBSITE_LOAD_CERTIFICATES on site TDC_Erhverv_Telephony_Integration/NuudayToB-5sutozr67fiik now names thumbprint",
        "Key Vault reference TeamsClientSecret on site TDC_Erhverv_Telephony_Integration/NuudayToB-5sutozr67fiik: STILL HOLDS THE SECRET",
        "the secret stays: removing a password a consumer still signs in with is an outage",
        "Secret credential integration-app stays: consumer #0 still holds it",
        "emulator control (not the rotator): removed app setting TeamsClientSecret",
        "not written back",
        "✓ release-secret",
        "conversion from client secret integration-app: secretReleased, its passwords go after",
    ] {
        assert!(stdout.contains(what), "missing '{what}':\n{stdout}");
    }
    // Before the person's move, the secret was kept; the secret was not probed away.
    let before_move = stdout
        .split("emulator control (not the rotator)")
        .next()
        .unwrap();
    assert!(!before_move.contains("release-secret"), "{stdout}");
    assert!(
        !stdout.contains("remove-client-secret"),
        "grace first:\n{stdout}"
    );
}

/// On the emulator's state: the application has the certificate's key, the consumer holds
/// that certificate, and the secret's password is still there (released, inside its grace).
fn the_conversion_holds_on_the_emulator(state: &Value) {
    let app = state["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["appId"] == APP_ID)
        .unwrap_or_else(|| panic!("no application {APP_ID} in {state:#}"));
    let thumbprints: Vec<&str> = app["keyCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["thumbprint"].as_str())
        .collect();
    assert_eq!(thumbprints.len(), 1, "{app:#}");
    let site = state["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == SITE)
        .unwrap_or_else(|| panic!("no site {SITE}"));
    let settings = &site["appSettings"];
    assert_eq!(
        settings["WEBSITE_LOAD_CERTIFICATES"].as_str(),
        Some(thumbprints[0]),
        "the consumer loads the certificate on the application"
    );
    assert!(
        settings["TeamsCertificate"]
            .as_str()
            .is_some_and(|r| r.contains("integration-app")),
        "{settings:#}"
    );
    assert!(settings.get("TeamsClientSecret").is_none(), "{settings:#}");
    // The rotated secret's password (in Key Vault) is still on the application: its grace
    // has not passed.
    let vault_value = state["vaults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"] == "kv5sutozr67fiik")
        .flat_map(|v| v["secrets"].as_array().into_iter().flatten())
        .find(|s| s["name"] == "TeamsClientSecret")
        .and_then(|s| s["versions"].as_array()?.last()?["value"].as_str())
        .expect("the secret in Key Vault");
    assert!(
        app["passwordCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["secretText"] == vault_value),
        "the secret's password is kept"
    );
}
