//! `secret-rotator dev` end to end: the README's first command. The real binary starts the
//! emulator, Azurite and itself as a custom handler (managed identity, real URLs redirected at
//! the transport), plays the Functions host through a rotation pass and the probe, and must end
//! green with every seed system rotated, verified and in sync.

use std::process::Command;

#[test]
fn dev_mode_rotates_every_seed_system_and_ends_green() {
    let out = Command::new(env!("CARGO_BIN_EXE_secret-rotator"))
        .arg("dev")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dev mode failed:\n{stdout}\n{stderr}");
    // Before: the probe shows the expired secret (19) and the ones inside their renewal window.
    assert!(stdout.contains("✗ credential empower"), "{stdout}");
    assert!(stdout.contains("[19]"), "{stdout}");
    // The pass: every seed system progressed, each consumer kind updated and confirmed.
    for name in ["integration-app", "provision-assist", "empower", "ezsign"] {
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
}
