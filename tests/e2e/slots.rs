//! Deployment slots end to end: consumers at `…/sites/{site}/slots/{slot}` (a plain app setting
//! and a versionless Key Vault reference) rotate like site consumers, through the emulator's
//! slot routes, and the production site's settings are left alone.

use crate::support::world;

use secret_rotator::engine::report::CredentialOutcome;
use serde_json::{Value, json};
use world::*;

const SUB: &str = "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups";

/// The demo tenant plus a `staging` slot of each demo site.
fn scenario_with_slots() -> Value {
    let mut s = demo_scenario();
    let sites = s["sites"].as_array().unwrap().clone();
    for site in sites {
        let mut slot = site.clone();
        slot["slot"] = json!("staging");
        s["sites"].as_array_mut().unwrap().push(slot);
    }
    s
}

/// The demo policy with each site consumer's staging slot as another consumer.
fn policy_with_slots() -> String {
    let mut p: Value = serde_json::from_str(&demo_policy()).unwrap();
    for cred in p["credentials"].as_array_mut().unwrap() {
        let consumers = cred["consumers"].as_array_mut().unwrap();
        let slots: Vec<Value> = consumers
            .iter()
            .filter(|c| c.get("site").is_some())
            .map(|c| {
                let mut c = c.clone();
                c["site"] = json!(format!("{}/slots/staging", c["site"].as_str().unwrap()));
                c
            })
            .collect();
        consumers.extend(slots);
    }
    p.to_string()
}

#[tokio::test]
async fn slot_consumers_rotate_end_to_end() {
    let w = spawn_world(scenario_with_slots(), &policy_with_slots()).await;
    let c = w.emu.emulator.control();
    assert!(policy_with_slots().contains(&format!(
        "{SUB}/rg-empower/providers/Microsoft.Web/sites/empower-backend/slots/staging"
    )));

    let r = w.run("empower").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    let slot = "empower-backend/slots/staging";
    assert_eq!(
        c.app_setting("rg-empower", slot, "EntraClientSecret"),
        Some(value.clone())
    );
    assert_eq!(
        c.app_setting("rg-empower", "empower-backend", "EntraClientSecret"),
        Some(value)
    );

    let r = w.run("integration-app").await;
    assert_eq!(r.outcome, CredentialOutcome::Progressed, "{r:#?}");
    let (_, value, _) = c
        .secret_latest("kv5sutozr67fiik", "TeamsClientSecret")
        .unwrap();
    let rg = "TDC_Erhverv_Telephony_Integration";
    let slot = "NuudayToB-5sutozr67fiik/slots/staging";
    assert_eq!(
        c.app_setting_effective(rg, slot, "TeamsClientSecret"),
        Some(value)
    );
    assert!(
        r.steps.iter().any(|s| s.detail.contains("slot staging")),
        "the slot is named in the record: {r:#?}"
    );
}
