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
