//! Fault campaign (issue 7, part 1): many credentials rotated under random fault schedules,
//! checking every invariant after every run.
//!
//! Why a seeded loop with its own RNG (SplitMix64) rather than proptest: one case costs seconds
//! (a whole world: emulator, Azurite, engines, real rotations), shrinking would multiply that,
//! and what a failing case needs is its seed, which the failure message prints; every random
//! choice — the tenant, the fault rules (their own emulator-side seeds included), the crash
//! points, the clock advances — comes from that one seed, so `FAULT_CAMPAIGN_SEED=<seed>
//! FAULT_CAMPAIGN_CASES=1` replays a case's schedule (request timing still varies: the pass
//! runs credentials concurrently).
//!
//! A case: a tenant of N = 5..20 applications (secrets due, expired or not due; some with a
//! password the rotator did not create; some not in Key Vault yet, some whose Key Vault secret
//! carries up to 14 of its owner's tags), each with one consumer of every kind (Key Vault
//! reference, plain app setting, API connection, Automation variable), and about half of them
//! also a plain setting on one site they all share (next to a setting nobody owns: writers of
//! one site must never undo each other nor touch what is not theirs); then 3..6 rounds, each
//! under a fresh random fault schedule (429 storms, 5xx, delays, connection resets,
//! commit-then-fail, on any operation of any service) and one of: a pass; a pass cancelled at
//! a random Azure request (a crash); two engines — two instances, two identities — running the
//! same credential at once. Then the faults stop, the rotator runs, the clock passes the grace
//! period, it runs again, and everything must be settled.
//!
//! Checked after every run (`support/faultkit.rs`): no consumer holds a value Entra refuses
//! (unless it held it, already refused, before the first run), the Key Vault value is accepted
//! and its password never removed, no password the rotator did not create is removed unless the
//! policy allows and it expired; no setting the rotator does not own changes; once settled, no
//! orphaned secret is left and every consumer holds its credential's current value. For the
//! concurrent
//! runs: the request log's Graph and Key Vault writes for the credential, by caller, never
//! interleave (one of the two must have been Busy or run strictly after the other).
//!
//! Default: 5 cases (about 1.5 minutes on 2 cores). Long mode: `FAULT_CAMPAIGN_CASES=500`.
//! The summary line goes to stderr and to `target/fault-campaign.txt`.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "support/emulator.rs"]
mod emulator;
#[path = "support/faultkit.rs"]
mod faultkit;
#[path = "support/invariants.rs"]
mod invariants;
#[path = "support/world.rs"]
mod world;

use std::sync::Arc;
use std::time::Duration;

use azure_emulator::faults::{FaultAction, FaultRule, OPERATIONS};
use chrono::{DateTime, Utc};
use faultkit::*;
use secret_rotator::azure::graph::WriteLimiter;
use secret_rotator::cloud::Cloud;
use secret_rotator::engine::report::CredentialOutcome;
use secret_rotator::engine::runner::Engine;
use secret_rotator::engine::service::{EngineParts, build_with};
use serde_json::{Value, json};
use uuid::Uuid;
use world::*;

const SUB: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const TENANT: &str = "d10c2e35-390b-4343-9fb3-36524a35717c";
/// The site about half of the credentials share.
const SHARED: &str = "camp-shared-site";
/// The second rotator instance's identity (its requests carry its own client id in the log).
const CI2_APP: &str = "secret-rotator-ci-2";
const CI2_SECRET: &str = "ci2Q~rotator.second.instance-0123456789";

/// SplitMix64: small, seedable, good enough to pick test choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
    fn secret(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        let mut s = format!("{prefix}Q~");
        while s.len() < 40 {
            s.push(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char);
        }
        s
    }
}

fn at(now: DateTime<Utc>, days: i64) -> String {
    (now + chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A tenant of `n` applications with consumers of every kind, and its policy.
fn generate(rng: &mut Rng, n: usize) -> (Value, String) {
    let now: DateTime<Utc> = "2026-11-22T02:00:00Z".parse().unwrap();
    let mut apps = Vec::new();
    let mut mis =
        vec![json!({"name": "secret-rotator", "graphAppRoles": ["Application.ReadWrite.OwnedBy"]})];
    let mut vaults = Vec::new();
    let mut sites = Vec::new();
    let mut connections = Vec::new();
    let mut accounts = Vec::new();
    let mut roles = Vec::new();
    let mut creds = Vec::new();
    let ra = |principal: &str, role: &str, scope: String| json!({"principal": principal, "role": role, "scope": scope});
    // The site several credentials share.
    let shared_scope = format!(
        "/subscriptions/{{sub}}/resourceGroups/rg-camp-shared/providers/Microsoft.Web/sites/{SHARED}"
    );
    let mut shared = serde_json::Map::new();
    shared.insert("NOT_OURS".into(), json!("keep"));
    roles.push(ra("secret-rotator", "Website Contributor", shared_scope));
    mis.push(json!({"name": SHARED}));
    for i in 0..n {
        let app_id = rng.uuid();
        let current = rng.secret(&format!("c{i:02}"));
        // Due (within the 30-day renewal window, but not expiring during the campaign's clock
        // advances), expired, or not due.
        let end = match rng.range(0, 5) {
            0 => -(rng.range(1, 20) as i64),
            1..=3 => rng.range(14, 28) as i64,
            _ => rng.range(90, 300) as i64,
        };
        let mut passwords = vec![json!({
            "keyId": rng.uuid(), "displayName": "deployment", "secretText": current,
            "startDateTime": at(now, end - 365), "endDateTime": at(now, end)
        })];
        if rng.chance(0.5) {
            let end = if rng.chance(0.5) {
                -(rng.range(1, 30) as i64)
            } else {
                rng.range(40, 400) as i64
            };
            passwords.push(json!({
                "keyId": rng.uuid(), "displayName": "portal test", "secretText": rng.secret("pt"),
                "startDateTime": at(now, end - 365), "endDateTime": at(now, end)
            }));
        }
        apps.push(json!({
            "appId": app_id, "displayName": format!("campaign app {i}"),
            "owners": ["secret-rotator"], "passwordCredentials": passwords
        }));
        let rg = format!("rg-camp-{i}");
        let vault = format!("kv-camp-{i}");
        let site = format!("camp-site-{i}");
        let conn = format!("camp-conn-{i}");
        let account = format!("camp-auto-{i}");
        // Some secrets are not in Key Vault yet (first enrolment); some carry 8..14 tags of
        // their owner's, leaving the rotator's state little room (issue 18).
        let secrets = if rng.chance(0.15) {
            json!([])
        } else {
            let owner: serde_json::Map<String, Value> = (0..rng.range(0, 14))
                .filter(|_| rng.chance(0.3))
                .map(|t| (format!("owner-{t}"), json!("o".repeat(100))))
                .collect();
            let owner: serde_json::Map<String, Value> = if owner.is_empty() || rng.chance(0.5) {
                owner
            } else {
                (0..rng.range(8, 14))
                    .map(|t| (format!("owner-{t}"), json!("o".repeat(200))))
                    .collect()
            };
            json!([{"name": "appSecret", "versions": [{"value": current, "tags": owner}]}])
        };
        vaults.push(json!({"name": vault, "resourceGroup": rg, "secrets": secrets}));
        mis.push(json!({"name": site}));
        sites.push(
            json!({"resourceGroup": rg, "name": site, "identity": site, "appSettings": {
            "RefSecret": format!("@Microsoft.KeyVault(VaultName={vault};SecretName=appSecret)"),
            "PlainSecret": current, "OTHER": "1"}}),
        );
        connections.push(json!({"resourceGroup": rg, "name": conn, "api": "keyvault",
            "parameterValues": {"token:clientId": app_id, "token:clientSecret": current,
                "token:TenantId": TENANT, "token:grantType": "client_credentials"},
            "nonSecretParameterValues": {"vaultName": vault}}));
        accounts.push(json!({"resourceGroup": rg, "name": account, "variables": [{
            "name": "appSecret", "value": serde_json::to_string(&current).unwrap(),
            "isEncrypted": true}]}));
        let base = format!("/subscriptions/{{sub}}/resourceGroups/{rg}/providers");
        let vault_scope = format!("{base}/Microsoft.KeyVault/vaults/{vault}");
        let site_scope = format!("{base}/Microsoft.Web/sites/{site}");
        let conn_scope = format!("{base}/Microsoft.Web/connections/{conn}");
        let account_scope = format!("{base}/Microsoft.Automation/automationAccounts/{account}");
        roles.push(ra(
            "secret-rotator",
            "Key Vault Secrets Officer",
            vault_scope.clone(),
        ));
        roles.push(ra(
            "secret-rotator",
            "Website Contributor",
            site_scope.clone(),
        ));
        roles.push(ra(
            "secret-rotator",
            "Logic App Contributor",
            conn_scope.clone(),
        ));
        roles.push(ra(
            "secret-rotator",
            "Automation Contributor",
            account_scope.clone(),
        ));
        roles.push(ra(&site, "Key Vault Secrets User", vault_scope));
        let arm = |p: &str| format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/{p}");
        let mut consumers = vec![
            json!({"type": "appSettingKeyVaultReference", "site": arm(&format!("Microsoft.Web/sites/{site}")), "setting": "RefSecret"}),
            json!({"type": "appSettingValue", "site": arm(&format!("Microsoft.Web/sites/{site}")), "setting": "PlainSecret"}),
            json!({"type": "apiConnection", "connection": arm(&format!("Microsoft.Web/connections/{conn}")), "parameter": "token:clientSecret"}),
            json!({"type": "automationVariable", "account": arm(&format!("Microsoft.Automation/automationAccounts/{account}")), "variable": "appSecret"}),
        ];
        if rng.chance(0.5) {
            let setting = format!("Shared{i:02}");
            shared.insert(setting.clone(), json!(current));
            consumers.push(json!({"type": "appSettingValue", "site": format!("/subscriptions/{SUB}/resourceGroups/rg-camp-shared/providers/Microsoft.Web/sites/{SHARED}"), "setting": setting}));
        }
        creds.push(json!({
            "name": format!("camp-{i}"),
            "application": {"appId": app_id},
            "keyVault": {"vault": vault, "secret": "appSecret"},
            "removeUnmanagedExpired": rng.chance(0.5),
            "consumers": consumers
        }));
    }
    sites.push(
        json!({"resourceGroup": "rg-camp-shared", "name": SHARED, "identity": SHARED,
        "appSettings": shared}),
    );
    let mut scenario = json!({
        "tenantId": TENANT, "subscriptionId": SUB, "now": at(now, 0),
        "replicationDelaySeconds": REPLICATION_SECONDS,
        "managedIdentities": mis, "applications": apps, "vaults": vaults, "sites": sites,
        "connections": connections, "automationAccounts": accounts, "roleAssignments": roles
    });
    second_identity(&mut scenario);
    let policy = json!({
        "defaults": {"renewBeforeDays": 30, "lifetimeDays": 180, "graceDays": 7},
        "credentials": creds
    });
    (scenario, policy.to_string())
}

/// The second instance's identity: an application with everything the managed identity has
/// (what `world::ci_identity` does for the first).
fn second_identity(s: &mut Value) {
    for app in s["applications"].as_array_mut().unwrap() {
        app["owners"].as_array_mut().unwrap().push(json!(CI2_APP));
    }
    let extra: Vec<Value> = s["roleAssignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["principal"] == MI)
        .map(|r| {
            let mut r = r.clone();
            r["principal"] = json!(CI2_APP);
            r
        })
        .collect();
    s["roleAssignments"].as_array_mut().unwrap().extend(extra);
    s["applications"].as_array_mut().unwrap().push(json!({
        "displayName": CI2_APP, "owners": [], "graphAppRoles": ["Application.ReadWrite.OwnedBy"],
        "passwordCredentials": [{"displayName": "ci", "secretText": CI2_SECRET,
            "endDateTime": "2099-01-01T00:00:00Z"}]
    }));
}

/// A second engine on the same storage account (so the same leases), signed in as `CI2_APP`.
fn second_engine(w: &World, policy: &str) -> Arc<Engine> {
    let options = secret_rotator::azure::ServiceOptions::new(w.http.clone())
        .with_retry(emulator::fast_retry());
    build_with(EngineParts {
        policy: secret_rotator::policy::parse("policy.json", policy).unwrap(),
        cloud: Cloud::Public,
        tenant: w.emu.tenant(),
        credential: w.emu.app_credential_with(CI2_APP, CI2_SECRET, &options),
        options,
        blob_endpoint: url::Url::parse(&format!(
            "https://{}.blob.core.windows.net",
            w.azurite.account
        ))
        .unwrap(),
        container: "secret-rotator".into(),
        webhooks: Vec::new(),
        limiter: Arc::new(WriteLimiter::new(2400, Duration::from_secs(150), 100)),
        max_parallel: 4,
        verify: w.engine.options.verify,
        warn_unenrolled_days: w.engine.options.warn_unenrolled_days,
    })
    .expect("second engine builds")
}

/// 1..4 random fault rules: any operation of any service the rotator calls (or a whole
/// service: a storm), any action, hitting a random share of the matching calls.
fn schedule(rng: &mut Rng) -> Vec<FaultRule> {
    let services = ["entra", "graph", "keyvault", "arm"];
    (0..rng.range(1, 4))
        .map(|_| {
            let service = services[rng.range(0, 3) as usize];
            let ops = OPERATIONS.iter().find(|(s, _)| *s == service).unwrap().1;
            let operation = if rng.chance(0.15) {
                None
            } else {
                Some(ops[rng.range(0, ops.len() as u64 - 1) as usize].to_string())
            };
            let action = match rng.range(0, 5) {
                0 => FaultAction::Status {
                    status: 429,
                    retry_after: Some(0),
                },
                1 => FaultAction::Status {
                    status: [500, 502, 503, 504][rng.range(0, 3) as usize],
                    retry_after: None,
                },
                2 => FaultAction::Delay {
                    ms: rng.range(10, 200),
                },
                3 => FaultAction::Reset,
                _ => FaultAction::CommitThenFail {
                    status: [500, 503][rng.range(0, 1) as usize],
                },
            };
            FaultRule {
                service: service.into(),
                operation,
                nth: None,
                times: None,
                probability: Some(rng.range(10, 60) as f64 / 100.0),
                seed: Some(rng.next()),
                action,
            }
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    cases: usize,
    rounds: usize,
    credentials: usize,
    faults: usize,
    crashes: usize,
    concurrent: usize,
    busy: usize,
    /// Passes whose invariants were also sampled while they ran.
    watched: usize,
    /// Scans of unenrolled credentials run by those passes, and how many ended in a warning.
    scans: usize,
    scan_warnings: usize,
    violations: Vec<String>,
}

impl Tally {
    fn scan(&mut self, r: &secret_rotator::engine::report::PassReport) {
        if let Some(s) = &r.unenrolled {
            self.scans += 1;
            self.scan_warnings += usize::from(s.warning.is_some());
        }
    }
}

/// Writes of the credential's own resources, by caller: Graph password writes on its app and
/// Key Vault writes on its secret. Returns (caller, first seq, last seq) per caller.
fn write_spans(w: &World, from: usize, object_id: &str, vault: &str) -> Vec<(String, u64, u64)> {
    let mut spans: Vec<(String, u64, u64)> = Vec::new();
    for r in &w.emu.emulator.control().requests()[from..] {
        let ours = (r.service == "graph"
            && matches!(
                r.operation.as_deref(),
                Some("addPassword" | "removePassword")
            )
            && r.path.contains(object_id))
            || (r.service == "keyvault"
                && matches!(r.operation.as_deref(), Some("setSecret" | "updateSecret"))
                && r.host.starts_with(&format!("{vault}.")));
        if !ours {
            continue;
        }
        let caller = r.caller.clone().unwrap_or_default();
        match spans.iter_mut().find(|s| s.0 == caller) {
            Some(s) => s.2 = r.seq,
            None => spans.push((caller, r.seq, r.seq)),
        }
    }
    spans
}

async fn run_case(seed: u64, tally: &mut Tally) {
    let mut rng = Rng(seed);
    let n = rng.range(5, 20) as usize;
    let (scenario, policy) = generate(&mut rng, n);
    // The scan of unenrolled credentials runs in every pass: faults hit its listings too, and
    // it must neither fail a pass nor disturb a rotation.
    let w = fault_world_scanning(scenario, &policy, 30).await;
    let c = w.emu.emulator.control();
    let other = second_engine(&w, &policy);
    let b = baseline(&w);
    warm_up(&w).await;
    let _ = other.status_report(w.now()).await;
    let faults_before = faults_injected(&w);
    let check = |w: &World, settled: bool, when: &str, tally: &mut Tally| {
        for v in check_all(w, &b, settled) {
            tally
                .violations
                .push(format!("seed {seed} (N={n}), {when}: {v}"));
        }
    };
    for round in 0..rng.range(3, 6) {
        tally.rounds += 1;
        for r in schedule(&mut rng) {
            c.add_fault(r);
        }
        match rng.range(0, 3) {
            0 => {
                let k = rng.range(1, 40 * n as u64) as usize;
                tally.crashes += 1;
                let (_, mid) = watched(&w, &b, crash_pass_at(&w, k)).await;
                for v in mid {
                    tally.violations.push(format!(
                        "seed {seed} (N={n}), round {round}, before the crash: {v}"
                    ));
                }
                tally.watched += 1;
                check(
                    &w,
                    false,
                    &format!("round {round}, crash at request {k}"),
                    tally,
                );
            }
            1 => {
                let cred = w.engine.policy.credentials[rng.range(0, n as u64 - 1) as usize].clone();
                let from = c.requests().len();
                let now = w.now();
                let (a, bb) = tokio::join!(
                    w.engine
                        .run_credential(&cred, now, false, None, "campaign-a"),
                    other.run_credential(&cred, now, false, None, "campaign-b"),
                );
                tally.concurrent += 1;
                let busy = [&a, &bb]
                    .iter()
                    .filter(|r| r.outcome == CredentialOutcome::Busy)
                    .count();
                tally.busy += busy;
                let secret_rotator::policy::AppRef::AppId(app) = cred.application else {
                    unreachable!("generated by appId")
                };
                let object_id = c
                    .state()
                    .pointer("/applications")
                    .and_then(|a| a.as_array().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .find(|x| x["appId"] == json!(app))
                    .and_then(|x| {
                        x["objectId"]
                            .as_str()
                            .or(x["id"].as_str())
                            .map(String::from)
                    })
                    .unwrap_or_default();
                let spans = write_spans(&w, from, &object_id, &cred.key_vault.vault);
                if let [x, y] = spans.as_slice()
                    && x.1 <= y.2
                    && y.1 <= x.2
                {
                    tally.violations.push(format!(
                        "seed {seed}, round {round}: two runs of {} wrote at once: {spans:?} \
                         ({:?} / {:?})",
                        cred.name, a.outcome, bb.outcome
                    ));
                }
                check(
                    &w,
                    false,
                    &format!("round {round}, concurrent runs of {}", cred.name),
                    tally,
                );
            }
            _ => {
                let (r, mid) = watched(&w, &b, pass(&w)).await;
                for v in mid {
                    tally.violations.push(format!(
                        "seed {seed} (N={n}), round {round}, during a pass: {v}"
                    ));
                }
                tally.scan(&r);
                tally.watched += 1;
                check(&w, false, &format!("round {round}, faulted pass"), tally);
            }
        }
        c.clear_faults();
        // A crash may leave the lease held (see faultkit::crash_pass_at): let it lapse.
        break_leases(&w).await;
        if rng.chance(0.5) {
            // Never so far that a password due in 14 days expires during the campaign.
            c.advance(chrono::Duration::hours(rng.range(1, 24) as i64));
        }
    }
    let (r, mid) = watched(&w, &b, pass_after_crash(&w)).await;
    tally.watched += 1;
    for v in mid {
        tally.violations.push(format!(
            "seed {seed} (N={n}), during the first clean pass: {v}"
        ));
    }
    check(&w, false, "first pass without faults", tally);
    tally.scan(&r);
    match r.unenrolled.as_ref() {
        None => tally.violations.push(format!(
            "seed {seed}: the first pass without faults did not scan for unenrolled credentials"
        )),
        Some(s) if s.warning.is_some() => tally.violations.push(format!(
            "seed {seed}: the scan failed without faults: {:?}",
            s.warning
        )),
        Some(_) => {}
    }
    for x in r
        .credentials
        .iter()
        .filter(|x| x.outcome == CredentialOutcome::Failed)
    {
        tally.violations.push(format!(
            "seed {seed}: {} failed without faults: {:?}",
            x.name, x.error
        ));
    }
    w.advance_days(8);
    pass_after_crash(&w).await;
    check(&w, false, "pass after grace", tally);
    pass_after_crash(&w).await;
    check(&w, true, "settled", tally);
    tally.cases += 1;
    tally.credentials += n;
    tally.faults += faults_injected(&w) - faults_before;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign() {
    let cases: u64 = std::env::var("FAULT_CAMPAIGN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let first: u64 = std::env::var("FAULT_CAMPAIGN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005E_C2E7);
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for i in 0..cases {
        run_case(first + i, &mut tally).await;
    }
    let line = format!(
        "fault campaign: {} schedules ({} rounds, {} credentials, {} crashes, {} concurrent \
         pairs with {} Busy, {} passes watched mid-run, {} unenrolled scans of which {} warned), \
         {} faults injected, {} invariant violations, {:.0} s",
        tally.cases,
        tally.rounds,
        tally.credentials,
        tally.crashes,
        tally.concurrent,
        tally.busy,
        tally.watched,
        tally.scans,
        tally.scan_warnings,
        tally.faults,
        tally.violations.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fault-campaign.txt");
    let _ = std::fs::write(&out, format!("{line}\n"));
    assert!(tally.violations.is_empty(), "{:#?}", tally.violations);
}
