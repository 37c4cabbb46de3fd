//! A credential's consumers on different resources are written together (issue #19: the
//! three consumers one after another were five round trips in a row where two do):
//! `planner::first_batch` picks them, `executor::perform_batch` sends them at once. Seen on
//! the emulator's request log with a latency every answer waits: requests sent one after
//! another arrive at least that far apart, requests sent together do not.

use crate::support::world;

use secret_rotator::engine::report::CredentialOutcome;
use world::*;

/// Every answer waits this long: far above the scheduling noise of a loaded machine.
const LATENCY_MS: i64 = 400;

#[tokio::test]
async fn a_credentials_three_consumers_are_written_together() {
    let (mut scenario, policy) = crate::request_budget::three_consumer_world();
    scenario["latencyMs"] = serde_json::json!(LATENCY_MS);
    let w = spawn_world(scenario, &policy).await;
    let control = w.emu.emulator.control();
    let report = w.run("provision-assist").await;
    assert_eq!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    let log = control.requests();
    let stored = log
        .iter()
        .find(|r| r.operation.as_deref() == Some("setSecret"))
        .map(|r| r.time)
        .expect("the rotation stored its value");
    // The first request of each consumer's update, after the value was stored.
    let first = |op: &str| {
        log.iter()
            .filter(|r| r.time > stored && r.operation.as_deref() == Some(op))
            .map(|r| r.time)
            .min()
            .unwrap_or_else(|| panic!("no {op} after setSecret"))
    };
    let starts = [
        ("reference", first("refreshConfigReferences")),
        ("connection", first("getConnection")),
        ("variable", first("patchVariable")),
    ];
    let earliest = starts.iter().map(|s| s.1).min().expect("three");
    let latest = starts.iter().map(|s| s.1).max().expect("three");
    assert!(
        (latest - earliest).num_milliseconds() < LATENCY_MS,
        "the three consumers' first requests went out one after another: {starts:?}"
    );
    // All three are recorded in the new version's tags, with one tag write.
    let cred = w.credential("provision-assist");
    let (_, _, tags) = control
        .secret_latest("kv-provisionassist", "appSecret")
        .expect("the secret exists");
    let state = secret_rotator::engine::tags::parse(&tags, cred)
        .expect("the rotator's tags parse")
        .expect("the new version carries the rotator's tags");
    for c in &cred.consumers {
        assert!(
            state.synced.contains(&c.id()),
            "{} not recorded",
            c.describe()
        );
    }
    let tag_writes = log
        .iter()
        .filter(|r| r.operation.as_deref() == Some("updateSecret"))
        .count();
    assert_eq!(tag_writes, 1, "one tag write for the run");
}
