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
        if r.seq > from_seq {
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
    // The application is read once: addPassword answers with the new password.
    assert_eq!(n("getApplication 200"), 1, "{ops:#?}");
    // Key Vault: the first read, and the verification's read-back of what consumers now read;
    // setSecret answers with the new version, and the tags are written once per phase change
    // (the consumers' `rotator-synced` entries go with the verification's `propagated`).
    assert_eq!(n("getSecret 200"), 2, "{ops:#?}");
    assert_eq!(n("setSecret 200"), 1, "{ops:#?}");
    assert_eq!(n("updateSecret 200"), 1, "{ops:#?}");
    // Each consumer: its first read, then its write. A connection is read afresh right before
    // its full PUT (ARM refuses PATCH of its properties; the PUT is built from what GET returns,
    // so a stale copy would undo another writer's change), and the PUT's answer confirms it.
    // The variable was read encrypted: it is only patched.
    assert_eq!(
        n("getConnection 200"),
        1 + n("putConnection 200"),
        "{ops:#?}"
    );
    assert_eq!(n("getManagedApi 200"), n("putConnection 200"), "{ops:#?}");
    assert_eq!(n("getVariable 200"), 1, "{ops:#?}");
    assert_eq!(n("patchVariable 200"), 1, "{ops:#?}");
    let total: usize = ops.values().sum();
    let refused = n("token 401");
    assert!(
        total - refused <= 18,
        "{total} requests ({refused} token requests refused while the new secret replicated) \
         for a rotation with two consumers (was 49 when every step re-read everything): {ops:#?}"
    );
}

/// The shape (#19): one application with three consumers — a versionless Key Vault
/// reference, an API connection and an encrypted Automation variable — rotated from a vault
/// value nobody tagged yet (adopt, rotate, three updates, verification).
pub(crate) fn three_consumer_world() -> (serde_json::Value, String) {
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
        if r.seq > from_seq {
            *counts.entry(r.service.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Issue #19's budget: at most 20 Azure requests (the verification included) for a rotation
/// with three consumers, counted from the emulator's log. A running host has its tokens (one
/// per resource, cached) and each vault's authentication challenge (once per vault per
/// process) already: the budget is the rotation's own requests. The first rotation of a fresh
/// process pays those five more (4 tokens, 1 challenge) and is pinned too.
#[tokio::test]
async fn a_rotation_with_three_consumers_stays_within_twenty_requests() {
    for warm in [false, true] {
        let (scenario, policy) = three_consumer_world();
        let w = spawn_world(scenario, &policy).await;
        if warm {
            // What the host did before: e.g. a status page (tokens, the vault's challenge).
            let _ = w.engine.plan_report(w.now()).await;
        }
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
        let (what, budget) = if warm {
            ("in a running process", 20)
        } else {
            ("first of a fresh process", 21)
        };
        println!(
            "one rotation, three consumers, {what}: {total} Azure requests; per service {services:?}"
        );
        println!("per operation: {ops:#?}");
        let order: Vec<String> = w
            .emu
            .emulator
            .control()
            .requests()
            .into_iter()
            .filter(|r| r.seq > from)
            .map(|r| format!("{} {}", r.operation.unwrap_or_default(), r.status))
            .collect();
        println!("in order: {order:?}");
        assert!(
            total <= budget,
            "{total} requests for a rotation with three consumers, {what} (budget {budget}): per \
             service {services:?}, per operation {ops:#?}"
        );
    }
}

/// The consumers' `rotator-synced` entries are written once per run, not lost: when one
/// consumer's write fails, the run still records the others in the new version's tags (one tag
/// write), checked on the emulator's vault.
#[tokio::test]
async fn a_failed_consumer_does_not_lose_the_others_sync_records() {
    let (scenario, policy) = three_consumer_world();
    let w = spawn_world(scenario, &policy).await;
    let control = w.emu.emulator.control();
    control.add_fault(crate::support::faultkit::rule(
        "arm",
        "putConnection",
        azure_emulator::faults::FaultAction::Status {
            status: 400,
            retry_after: None,
        },
    ));
    let from = control.requests().len() as u64;
    let report = w.run("provision-assist").await;
    assert_ne!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.step == secret_rotator::planner::StepKind::Rotate && s.ok),
        "{report:#?}"
    );
    let cred = w.credential("provision-assist");
    let (_, _, tags) = control
        .secret_latest("kv-provisionassist", "appSecret")
        .expect("the secret exists");
    let state = secret_rotator::engine::tags::parse(&tags, cred)
        .expect("the rotator's tags parse")
        .expect("the new version carries the rotator's tags");
    let ids: Vec<_> = cred.consumers.iter().map(|c| c.id()).collect();
    assert!(
        state.synced.contains(&ids[0]) && state.synced.contains(&ids[2]),
        "the reference and the variable are recorded: {:?} of {ids:?}",
        state.synced
    );
    assert!(
        !state.synced.contains(&ids[1]),
        "the connection that refused its PUT is not: {:?}",
        state.synced
    );
    let ops = operations(&w, from);
    assert_eq!(
        ops.get("updateSecret 200").copied(),
        Some(1),
        "one tag write for the run: {ops:#?}"
    );
}

/// A fresh process's pass fetches the tokens it needs together at its start
/// (`AzurePorts::warm_tokens`), alongside the first runs that need the same tokens: each
/// resource's token is still fetched once (one per resource: Storage, Graph, Key Vault, ARM),
/// whatever order the requests meet in.
#[tokio::test]
async fn a_fresh_pass_fetches_its_own_token_once_per_resource() {
    let (scenario, policy) = three_consumer_world();
    let w = spawn_world(scenario, &policy).await;
    let control = w.emu.emulator.control();
    let me = control
        .app_id_by_name(CI_APP)
        .expect("the CI app")
        .to_string();
    let report = w
        .engine
        .pass(w.now(), std::time::Duration::from_secs(600))
        .await;
    assert!(
        report
            .credentials
            .iter()
            .all(|c| !matches!(c.outcome, CredentialOutcome::Failed)),
        "{}",
        summary(&report)
    );
    let mine: Vec<_> = control
        .requests()
        .into_iter()
        .filter(|r| {
            r.operation.as_deref() == Some("token") && r.caller.as_deref() == Some(me.as_str())
        })
        .map(|r| r.status)
        .collect();
    assert_eq!(
        mine,
        [200, 200, 200, 200],
        "the rotator's own token requests in a fresh pass (Storage, Graph, Key Vault, ARM)"
    );
}
