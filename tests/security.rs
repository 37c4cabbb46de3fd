//! Issue #15, replayed: each attack or mistake that used to work, tried again end to end (the
//! real engine and clients against the emulator and Azurite) and now refused or harmless.
//! The handler-level attempts (probe key, identity headers) are in `host_router.rs`; the unit
//! ones (escaping, names, CSV) next to the code they test.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "support/emulator.rs"]
mod emulator;
#[path = "support/world.rs"]
mod world;

use secret_rotator::engine::report::CredentialOutcome;
use world::*;

const SEED_VARIABLE: &str = "PAq8Q~r5Tz.Wm2NvB7xKc4Ld9Fh3Jg6Sp1Ye0Ui";

/// Was: an existing `isEncrypted: false` variable got the new secret in plain text and the step
/// said "updated (encrypted)". Now: blocked before any new secret is made, with the fix.
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
    // Nothing was written, and no secret was made that nobody could deliver.
    let value = c.automation_variable("rg-provisionassist", "provisionassist-auto", "appSecret");
    assert_eq!(value.as_deref(), Some(SEED_VARIABLE));
    assert_eq!(c.passwords(app).len(), passwords_before);
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
