//! How many Azure requests one rotation costs: within a run the engine reads again only what
//! its last step wrote (`engine::observe::Observer`). Counted from the emulator's request log,
//! so a change that makes the engine re-read everything before every step fails here.

use crate::support::world;

use std::collections::BTreeMap;

use secret_rotator::engine::report::CredentialOutcome;
use world::*;

fn operations(w: &World, from_seq: u64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in w.emu.emulator.control().requests() {
        if r.seq >= from_seq {
            let op = format!(
                "{} {}",
                r.operation
                    .unwrap_or_else(|| format!("{} {}", r.method, r.service)),
                r.status
            );
            *counts.entry(op).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn a_rotation_reads_each_resource_again_only_after_writing_it() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let from = w.emu.emulator.control().requests().len() as u64;
    let report = w.run("provision-assist").await;
    assert_eq!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    let ops = operations(&w, from);
    let n = |op: &str| ops.get(op).copied().unwrap_or(0);
    let steps = report.steps.len();
    let names: Vec<_> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        [
            "adopt",
            "rotate",
            "update-consumer",
            "update-consumer",
            "complete-propagation"
        ],
        "the seed's rotation: adopt the hand-made value, rotate, two consumers, verify"
    );
    // The application is read once, and again after the one step that wrote it (addPassword).
    assert_eq!(
        n("getApplication 200"),
        1 + n("addPassword 200"),
        "{ops:#?}"
    );
    // Key Vault: once per observation (before each step and after the last), plus the
    // verification's read-back; every step rewrites the version or its tags.
    assert_eq!(n("getSecret 200"), (steps + 1) + 1, "{ops:#?}");
    // Each consumer: the first read, the confirmation inside its update step (connections
    // report their status; the Automation client reads the variable to know whether to update
    // it or create it encrypted), and once more after the step that wrote it. Never once per
    // step. A connection's confirmation is the status its PUT answers with, but it is read
    // right before its PUT: ARM refuses PATCH of its properties, and the full PUT is built from
    // what GET returns (and the managed API's definition, read once per update).
    assert_eq!(
        n("getConnection 200"),
        1 + 2 * n("putConnection 200"),
        "{ops:#?}"
    );
    assert_eq!(n("getManagedApi 200"), n("putConnection 200"), "{ops:#?}");
    assert_eq!(
        n("getVariable 200"),
        1 + 2 * n("patchVariable 200"),
        "{ops:#?}"
    );
    let total: usize = ops.values().sum();
    assert!(
        total <= 36,
        "{total} requests for a rotation with two consumers (was 49 when every step re-read \
         everything): {ops:#?}"
    );
}

/// The shape (#19): one application with three consumers — a versionless Key Vault
/// reference, an API connection and an encrypted Automation variable — rotated from a vault
/// value nobody tagged yet (adopt, rotate, three updates, verification).
fn three_consumer_world() -> (serde_json::Value, String) {
    let mut scenario = demo_scenario();
    // Entra accepts a new secret at once: retries while it replicates are not the rotator's.
    scenario["replicationDelaySeconds"] = serde_json::json!(0);
    let rg = "rg-provisionassist";
    scenario["managedIdentities"]
        .as_array_mut()
        .expect("identities")
        .push(serde_json::json!({"name": "provisionassist-web"}));
    scenario["sites"]
        .as_array_mut()
        .expect("sites")
        .push(serde_json::json!({
            "resourceGroup": rg, "name": "provisionassist-web", "identity": "provisionassist-web",
            "appSettings": {
                "AppSecret": "@Microsoft.KeyVault(VaultName=kv-provisionassist;SecretName=appSecret)",
                "WEBSITE_RUN_FROM_PACKAGE": "1"
            }
        }));
    let ras = scenario["roleAssignments"].as_array_mut().expect("roles");
    ras.push(serde_json::json!({
        "principal": "secret-rotator", "role": "Website Contributor",
        "scope": format!("/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Web/sites/provisionassist-web")
    }));
    ras.push(serde_json::json!({
        "principal": "provisionassist-web", "role": "Key Vault Secrets User",
        "scope": format!("/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/kv-provisionassist")
    }));
    let mut policy: serde_json::Value = serde_json::from_str(&demo_policy()).expect("policy");
    let sub = "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let cred = policy["credentials"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["name"] == "provision-assist"))
        .expect("provision-assist");
    cred["consumers"].as_array_mut().expect("consumers").insert(
        0,
        serde_json::json!({
            "type": "appSettingKeyVaultReference",
            "site": format!("{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/provisionassist-web"),
            "setting": "AppSecret"
        }),
    );
    (scenario, policy.to_string())
}

/// Requests per service (`graph`, `keyvault`, `arm`, `token`...), for the failure message and
/// the test's output.
fn per_service(w: &World, from_seq: u64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in w.emu.emulator.control().requests() {
        if r.seq >= from_seq {
            *counts.entry(r.service.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Issue #19's budget: at most 20 Azure requests (tokens and the verification included) for
/// a rotation with three consumers, counted from the emulator's log.
#[tokio::test]
async fn a_rotation_with_three_consumers_stays_within_twenty_requests() {
    let (scenario, policy) = three_consumer_world();
    let w = spawn_world(scenario, &policy).await;
    let from = w.emu.emulator.control().requests().len() as u64;
    let report = w.run("provision-assist").await;
    assert_eq!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    let names: Vec<_> = report.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        [
            "adopt",
            "rotate",
            "update-consumer",
            "update-consumer",
            "update-consumer",
            "complete-propagation"
        ],
        "{report:#?}"
    );
    let ops = operations(&w, from);
    let services = per_service(&w, from);
    let total: usize = ops.values().sum();
    println!("one rotation, three consumers: {total} Azure requests; per service {services:?}");
    println!("per operation: {ops:#?}");
    assert!(
        total <= 20,
        "{total} requests for a rotation with three consumers (budget 20): per service \
         {services:?}, per operation {ops:#?}"
    );
}
