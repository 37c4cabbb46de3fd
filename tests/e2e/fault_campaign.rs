//! Fault campaign (issue 7, part 1; at scale: issue 20): many credentials rotated under random
//! fault schedules, checking every invariant after every run.
//!
//! Why a seeded loop with its own RNG (SplitMix64) rather than proptest: one case costs seconds
//! (a whole world: emulator, Azurite, engines, real rotations), shrinking would multiply that,
//! and what a failing case needs is its seed, which the summary prints with the one-line
//! command that replays it; every random choice — the tenant, the fault rules (their own
//! emulator-side seeds included), the crash points, the clock advances — comes from that one
//! seed, so `FAULT_CAMPAIGN_SEED=<seed> FAULT_CAMPAIGN_CASES=1` replays a case's schedule
//! (request timing still varies: the pass runs credentials concurrently).
//!
//! A case: a tenant of N = 5..20 applications, each of a shape from `support/campaign.rs`'s
//! list (every consumer kind; a secret not in Key Vault yet; a secret soft-deleted by hand; a
//! secret carrying 8..14 of its owner's tags; a plain setting on one site several credentials
//! share, next to a setting nobody owns; a consumer site, connection or Automation account the
//! rotator has no role on; a Key Vault reference that never resolves; a connection that never
//! reaches Connected; a certificate credential; a client secret converted to a certificate)
//! — each with a secret due, expired or not due, maybe a password the rotator did not create —
//! and one variant of each uncertainty the emulator models (Key Vault reference
//! `activeVersion` present / absent / late, Graph read lag 0 / 30 s, connection PUT accepted /
//! refused, key replication and certificate issuance default / slow), drawn from the seed and
//! printed with it; then 3..6 rounds, each
//! under a fresh random fault schedule (429 storms, 5xx,
//! delays, connection resets, commit-then-fail, on any operation of any service) and one of: a
//! pass; a pass cancelled at a random Azure request (a crash); two engines — two instances, two
//! identities — running the same credential at once; and between rounds, other people act on
//! the certificates (`support/cert_campaign.rs`: a key added by hand, a version Key Vault made
//! on its own, a converted secret's consumer moved). Then the faults stop, the rotator runs,
//! the clock passes the grace period, it runs again, and everything must be settled (the
//! certificates, which renew every few days here, after up to three more 4-day steps).
//!
//! Checked after every run (`support/faultkit.rs`): no consumer holds a value Entra refuses
//! (unless it held it, already refused, before the first run), the Key Vault value is accepted
//! and its password never removed, no password the rotator did not create is removed unless the
//! policy allows and it expired; no setting the rotator does not own changes; once settled, no
//! orphaned secret is left, every consumer holds its credential's current value and no
//! credential is left inside its renewal window — except what a consumer broken on purpose
//! cannot do (`invariants::check_with`: it keeps a working value, and the password it may use
//! stays), and a soft-deleted secret's credential, of which nothing may change. For the
//! concurrent runs: the request log's Graph and Key Vault writes for the credential, attributed
//! to the instance that sent each (the emulator logs the sender of every request, a reset one
//! included), never interleave — one of the two must have been Busy or run strictly after the
//! other. The certificate invariants (`support/cert_invariants.rs`) are checked with the same
//! cadence, sampled mid-pass too, and every pass report is scanned for private keys. A write the check cannot attribute to either instance is a failure of the check
//! itself, reported apart from the violations: it proves neither safety nor a bug.
//!
//! Cases are independent worlds, so they run concurrently. Environment:
//! - `FAULT_CAMPAIGN_CASES` (default 5, CI's sample, about 1.5 minutes on 2 cores) and
//!   `FAULT_CAMPAIGN_SEED` (the first seed; case i runs seed + i);
//! - `FAULT_CAMPAIGN_PARALLEL` (default 1): cases in flight at once in this process;
//! - `FAULT_CAMPAIGN_SHARD=k/n` (default 0/1): this process runs case i only when i % n == k,
//!   so n processes share one seed range.
//!
//! Long mode, in release (see `docs/fault-campaign.md` for the recorded run):
//! `FAULT_CAMPAIGN_CASES=1000 FAULT_CAMPAIGN_PARALLEL=2 cargo test --release --test e2e
//! fault_campaign::fault_campaign -- --exact --nocapture`. The summary (figures, then every violating seed with its
//! replay command) goes to stderr and to `target/fault-campaign.txt` (`…-shard-k-of-n.txt`),
//! which is rewritten after every case so that a run stopped early keeps its figures.

use crate::support::emulator;
use crate::support::faultkit;
use crate::support::world;

use crate::support::campaign;
use crate::support::cert_campaign::{self, Admin};
use crate::support::cert_invariants::{self as cinv, CertBaseline, Oracle};

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use azure_emulator::faults::{FaultAction, FaultRule, OPERATIONS};
use campaign::*;
use faultkit::*;
use futures::StreamExt;
use secret_rotator::cloud::Cloud;
use secret_rotator::compose::{EngineParts, build_with};
use secret_rotator::engine::Engine;
use secret_rotator::engine::report::{CredentialOutcome, PassReport};
use secret_rotator::policy::{AppRef, CredentialPolicy};
use world::*;

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
            let action = fault_action(rng);
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

fn fault_action(rng: &mut Rng) -> FaultAction {
    match rng.range(0, 5) {
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
    }
}

/// Something a case found: an invariant violation, or a check that could not decide.
#[derive(Debug, Clone)]
struct Finding {
    seed: u64,
    what: String,
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
    violations: Vec<Finding>,
    /// Checks that could not decide (a write attributed to neither instance): not a pass, not
    /// a violation.
    check_failures: Vec<Finding>,
    /// Seed → the uncertainty variants its emulator ran under (`campaign::variant_names`).
    variants: BTreeMap<u64, Vec<String>>,
    /// Certificate credentials, and what other people did to them between rounds: keys added
    /// by hand, versions Key Vault made on its own, converted secrets' consumers moved.
    certificates: usize,
    keys_added: usize,
    kv_renewals: usize,
    moves: usize,
}

impl Tally {
    fn scan(&mut self, r: &PassReport) {
        if let Some(s) = &r.unenrolled {
            self.scans += 1;
            self.scan_warnings += usize::from(s.warning.is_some());
        }
    }

    fn merge(&mut self, o: Tally) {
        self.cases += o.cases;
        self.rounds += o.rounds;
        self.credentials += o.credentials;
        self.faults += o.faults;
        self.crashes += o.crashes;
        self.concurrent += o.concurrent;
        self.busy += o.busy;
        self.watched += o.watched;
        self.scans += o.scans;
        self.scan_warnings += o.scan_warnings;
        self.violations.extend(o.violations);
        self.check_failures.extend(o.check_failures);
        self.variants.extend(o.variants);
        self.certificates += o.certificates;
        self.keys_added += o.keys_added;
        self.kv_renewals += o.kv_renewals;
        self.moves += o.moves;
    }

    /// How many schedules ran under each variant of each uncertainty (`late(45s)` counts as
    /// `late`), e.g. `connectionPut=refused 12`.
    fn variant_counts(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in self.variants.values().flatten() {
            *counts.entry(v.split('(').next().unwrap_or(v)).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
        counts.join(", ")
    }

    /// The variants `seed` ran under, for its replay line.
    fn variants_of(&self, seed: u64) -> String {
        self.variants
            .get(&seed)
            .map(|v| v.join(" "))
            .unwrap_or_else(|| "variants unknown: the case did not start".into())
    }
}

/// The two rotator instances of a case, by the client id each signs in with.
struct Instances {
    /// (client id, instance name)
    ids: [(String, &'static str); 2],
}

impl Instances {
    fn of(w: &World) -> Result<Instances, String> {
        let id = |name: &str| {
            client_id(w, name).ok_or_else(|| format!("the scenario has no application {name}"))
        };
        Ok(Instances {
            ids: [(id(CI_APP)?, "first"), (id(CI2_APP)?, "second")],
        })
    }

    fn name(&self, caller: &str) -> Option<&'static str> {
        self.ids.iter().find(|(id, _)| id == caller).map(|x| x.1)
    }
}

/// The app id the emulator gave the application named `display_name`.
fn client_id(w: &World, display_name: &str) -> Option<String> {
    let id = w.emu.emulator.control().app_id_by_name(display_name);
    id.map(|u| u.to_string())
}

/// The object id of the application `app_id`, from the emulator's state.
fn object_id(w: &World, app_id: &uuid::Uuid) -> Option<String> {
    let state = w.emu.emulator.control().state();
    let apps = state.pointer("/applications")?.as_array()?;
    let app = apps
        .iter()
        .find(|a| a["appId"].as_str() == Some(app_id.to_string().as_str()))?;
    app["objectId"]
        .as_str()
        .or(app["id"].as_str())
        .map(String::from)
}

/// Is this logged request a write of the credential's own resources: a Graph password write
/// on its app or a Key Vault write on its secret's vault?
fn is_write_of(r: &azure_emulator::faults::RequestRecord, object_id: &str, vault: &str) -> bool {
    let op = r.operation.as_deref();
    (r.service == "graph"
        && matches!(op, Some("addPassword" | "removePassword"))
        && r.path.contains(object_id))
        || (r.service == "keyvault"
            && matches!(op, Some("setSecret" | "updateSecret"))
            && r.host.starts_with(&format!("{vault}.")))
}

/// (instance, first seq, last seq) of the writes each instance sent.
type Spans = Vec<(&'static str, u64, u64)>;

/// The credential's writes logged from request `from` on, by the instance that sent each.
/// Key Vault's challenge round trip (no credentials, answered 401) writes nothing and is
/// skipped; any other write that names neither instance is an error: the check cannot decide.
fn write_spans(
    w: &World,
    from: usize,
    object_id: &str,
    vault: &str,
    who: &Instances,
) -> Result<Spans, String> {
    write_spans_by(w, from, who, |r| is_write_of(r, object_id, vault))
}

/// Is this logged request a write of a certificate credential's resources: a key or password
/// write on its app (the conversion removes passwords) or a certificate write in its vault?
fn is_certificate_write_of(
    r: &azure_emulator::faults::RequestRecord,
    object_id: &str,
    vault: &str,
) -> bool {
    let op = r.operation.as_deref();
    (r.service == "graph"
        && matches!(
            op,
            Some("addKey" | "removeKey" | "updateApplication" | "removePassword")
        )
        && r.path.contains(object_id))
        || (r.service == "keyvault"
            && matches!(op, Some("createCertificate" | "updateCertificate"))
            && r.host.starts_with(&format!("{vault}.")))
}

/// [`write_spans`] for any kind of write.
fn write_spans_by(
    w: &World,
    from: usize,
    who: &Instances,
    is_write: impl Fn(&azure_emulator::faults::RequestRecord) -> bool,
) -> Result<Spans, String> {
    use azure_emulator::caller::CallerAbsence;
    let mut spans: Spans = Vec::new();
    let log = w.emu.emulator.control().requests();
    for r in log.iter().skip(from).filter(|r| is_write(r)) {
        if r.caller_absent == Some(CallerAbsence::NoCredentials) && r.status == 401 {
            continue;
        }
        let instance = r
            .caller
            .as_deref()
            .and_then(|c| who.name(c))
            .ok_or_else(|| {
                format!(
                    "request {} ({} {:?}, status {}) was sent by {:?} ({:?}), neither instance",
                    r.seq, r.service, r.operation, r.status, r.caller, r.caller_absent
                )
            })?;
        match spans.iter_mut().find(|s| s.0 == instance) {
            Some(s) => s.2 = r.seq,
            None => spans.push((instance, r.seq, r.seq)),
        }
    }
    Ok(spans)
}

/// One seeded case: its world, its second instance, its baseline and what it found.
struct Case {
    seed: u64,
    n: usize,
    w: World,
    other: Arc<Engine>,
    b: Baseline,
    /// The certificate oracle's baseline (the other writer's writes are its own).
    cb: CertBaseline,
    /// The other writer, when the tenant has a certificate shape.
    admin: Option<Admin>,
    /// The pass reports, scanned for private keys at the end.
    outputs: Vec<(String, String)>,
    who: Instances,
    tally: Tally,
}

impl Case {
    /// The tenant of `seed`, its world warmed up; the RNG goes on to draw the rounds.
    async fn start(seed: u64) -> Result<(Case, Rng), String> {
        let mut rng = Rng(seed);
        let n = rng.range(5, 20) as usize;
        let g = generate(&mut rng, n);
        // The scan of unenrolled credentials runs in every pass: faults hit its listings too,
        // and it must neither fail a pass nor disturb a rotation.
        let w = fault_world_scanning(g.scenario, &g.policy, 30).await;
        for (vault, secret) in &g.soft_deleted {
            if !w.emu.emulator.control().soft_delete_secret(vault, secret) {
                return Err(format!("{vault}/{secret} could not be soft-deleted"));
            }
        }
        let other = second_engine(&w, &g.policy);
        let mut b = baseline(&w);
        b.broken = g.broken;
        for (cred, broken) in broken_by(&g.uncertainties, &w.engine.policy.credentials) {
            b.broken.entry(cred).or_default().extend(broken);
        }
        b.soft_deleted = g
            .soft_deleted
            .iter()
            .filter_map(|(vault, _)| {
                (w.engine.policy.credentials.iter())
                    .find(|c| c.key_vault.vault == *vault)
                    .map(|c| c.name.clone())
            })
            .collect();
        let who = Instances::of(&w)?;
        let admin = Admin::of(&w);
        let others: Vec<uuid::Uuid> = admin.iter().map(|a| a.id).collect();
        let cb = cinv::cert_baseline(&Oracle::of(&w), &others);
        warm_up(&w).await;
        let _ = other.status_report(w.now()).await;
        let tally = Tally {
            faults: faults_injected(&w),
            variants: [(seed, variant_names(&g.uncertainties))].into(),
            ..Tally::default()
        };
        let case = Case {
            seed,
            n,
            w,
            other,
            b,
            cb,
            admin,
            outputs: Vec::new(),
            who,
            tally,
        };
        Ok((case, rng))
    }

    fn violation(&mut self, when: &str, v: impl Display) {
        let what = format!("N={}, {when}: {v}", self.n);
        self.tally.violations.push(Finding {
            seed: self.seed,
            what,
        });
    }

    fn check(&mut self, settled: bool, when: &str) {
        let mut found = check_all(&self.w, &self.b, settled);
        found.extend(cinv::check_all(&Oracle::of(&self.w), &self.cb));
        for v in found {
            self.violation(when, v);
        }
    }

    /// Every not-settled invariant, secrets' and certificates', for sampling mid-run.
    fn sample(&self) -> Vec<String> {
        let mut found = check_all(&self.w, &self.b, false);
        found.extend(cinv::check_all(&Oracle::of(&self.w), &self.cb));
        found
    }

    fn keep(&mut self, what: &str, r: &PassReport) {
        let text = serde_json::to_string(r).unwrap_or_default();
        self.outputs.push((format!("{what} report"), text));
    }

    async fn crash_round(&mut self, rng: &mut Rng, round: u64) {
        let k = rng.range(1, 40 * self.n as u64) as usize;
        self.tally.crashes += 1;
        let (_, mid) = watched_with(crash_pass_at(&self.w, k), || self.sample()).await;
        for v in mid {
            self.violation(&format!("round {round}, before the crash"), v);
        }
        self.tally.watched += 1;
        self.check(false, &format!("round {round}, crash at request {k}"));
    }

    async fn concurrent_round(&mut self, rng: &mut Rng, round: u64) {
        let secrets = self.w.engine.policy.credentials.len();
        let certs = self.w.engine.policy.certificates.len();
        let i = rng.range(0, (secrets + certs) as u64 - 1) as usize;
        if i >= secrets {
            return self.concurrent_certificate(i - secrets, round).await;
        }
        let cred = self.w.engine.policy.credentials[i].clone();
        let from = self.w.emu.emulator.control().request_count();
        let now = self.w.now();
        let (a, b) = tokio::join!(
            self.w
                .engine
                .run_credential(&cred, now, false, None, "campaign-a"),
            self.other
                .run_credential(&cred, now, false, None, "campaign-b"),
        );
        self.tally.concurrent += 1;
        let outcomes = [a.outcome, b.outcome];
        self.tally.busy += outcomes
            .iter()
            .filter(|o| **o == CredentialOutcome::Busy)
            .count();
        self.check_writes(&cred, from, round, outcomes);
        self.check(
            false,
            &format!("round {round}, concurrent runs of {}", cred.name),
        );
    }

    /// Both instances run one certificate credential at once: their writes (keys on the
    /// application, the conversion's password removals, the certificate's versions and tags)
    /// never interleave.
    async fn concurrent_certificate(&mut self, i: usize, round: u64) {
        let cert = self.w.engine.policy.certificates[i].clone();
        let from = self.w.emu.emulator.control().request_count();
        let now = self.w.now();
        let (a, b) = tokio::join!(
            self.w
                .engine
                .run_certificate(&cert, now, None, "campaign-a"),
            self.other.run_certificate(&cert, now, None, "campaign-b"),
        );
        self.tally.concurrent += 1;
        let outcomes = [a.outcome, b.outcome];
        self.tally.busy += outcomes
            .iter()
            .filter(|o| **o == CredentialOutcome::Busy)
            .count();
        let AppRef::AppId(app) = &cert.application else {
            return self.check_failed(round, format!("{} is not named by appId", cert.name));
        };
        let Some(object_id) = object_id(&self.w, app) else {
            let why = format!("{}: the emulator has no application {app}", cert.name);
            return self.check_failed(round, why);
        };
        let is_write = |r: &azure_emulator::faults::RequestRecord| {
            is_certificate_write_of(r, &object_id, &cert.certificate.vault)
        };
        match write_spans_by(&self.w, from, &self.who, is_write) {
            Err(e) => self.check_failed(round, format!("{}: {e}", cert.name)),
            Ok(spans) => self.interleaved(round, &cert.name, &spans, outcomes),
        }
        self.check(
            false,
            &format!("round {round}, concurrent runs of {}", cert.name),
        );
    }

    fn interleaved(
        &mut self,
        round: u64,
        name: &str,
        spans: &Spans,
        outcomes: [CredentialOutcome; 2],
    ) {
        if let [x, y] = spans.as_slice()
            && x.1 <= y.2
            && y.1 <= x.2
        {
            self.violation(
                &format!("round {round}"),
                format!(
                    "two runs of {name} wrote at once: {spans:?} ({:?} / {:?})",
                    outcomes[0], outcomes[1]
                ),
            );
        }
    }

    /// The two runs' writes never interleave; a write neither sent fails the check itself.
    fn check_writes(
        &mut self,
        cred: &CredentialPolicy,
        from: usize,
        round: u64,
        outcomes: [CredentialOutcome; 2],
    ) {
        let AppRef::AppId(app) = &cred.application else {
            return self.check_failed(round, format!("{} is not named by appId", cred.name));
        };
        let Some(object_id) = object_id(&self.w, app) else {
            let why = format!("{}: the emulator has no application {app}", cred.name);
            return self.check_failed(round, why);
        };
        match write_spans(&self.w, from, &object_id, &cred.key_vault.vault, &self.who) {
            Err(e) => self.check_failed(round, format!("{}: {e}", cred.name)),
            Ok(spans) => self.interleaved(round, &cred.name, &spans, outcomes),
        }
    }

    fn check_failed(&mut self, round: u64, why: String) {
        let what = format!(
            "N={}, round {round}: the concurrency check could not attribute a write: {why}",
            self.n
        );
        self.tally.check_failures.push(Finding {
            seed: self.seed,
            what,
        });
    }

    async fn pass_round(&mut self, round: u64) {
        let (r, mid) = watched_with(pass(&self.w), || self.sample()).await;
        for v in mid {
            self.violation(&format!("round {round}, during a pass"), v);
        }
        self.keep(&format!("round {round}"), &r);
        self.tally.scan(&r);
        self.tally.watched += 1;
        self.check(false, &format!("round {round}, faulted pass"));
    }

    async fn round(&mut self, rng: &mut Rng, round: u64) {
        self.tally.rounds += 1;
        let c = self.w.emu.emulator.control();
        for r in schedule(rng) {
            c.add_fault(r);
        }
        match rng.range(0, 3) {
            0 => self.crash_round(rng, round).await,
            1 => self.concurrent_round(rng, round).await,
            _ => self.pass_round(round).await,
        }
        c.clear_faults();
        // A crash may leave the lease held (see faultkit::crash_pass_at): let it lapse.
        break_leases(&self.w).await;
        self.others_act(rng).await;
        if rng.chance(0.5) {
            // Never so far that a password due in 14 days expires during the campaign.
            c.advance(chrono::Duration::hours(rng.range(1, 24) as i64));
        }
    }

    /// Without faults: a pass that must succeed and scan cleanly, the grace period, a pass, and
    /// another after which everything is settled.
    async fn settle(&mut self) {
        let (r, mid) = watched_with(pass_after_crash(&self.w), || self.sample()).await;
        self.keep("first clean pass", &r);
        self.tally.watched += 1;
        for v in mid {
            self.violation("during the first clean pass", v);
        }
        self.check(false, "first pass without faults");
        self.tally.scan(&r);
        match r.unenrolled.as_ref() {
            None => self.violation(
                "first pass without faults",
                "it did not scan for unenrolled credentials",
            ),
            Some(s) if s.warning.is_some() => self.violation(
                "first pass without faults",
                format!("the scan failed: {:?}", s.warning),
            ),
            Some(_) => {}
        }
        let failed: Vec<String> = r
            .credentials
            .iter()
            .filter(|x| {
                x.outcome == CredentialOutcome::Failed
                    && !self.failed_on_broken(x)
                    && !failed_on_slow_replication(x)
            })
            .map(|x| format!("{} failed: {:?}", x.name, x.error))
            .collect();
        for failed in failed {
            self.violation("first pass without faults", failed);
        }
        // The timer's next pass, two minutes on: a Key Vault reference that resolves late
        // (uncertainty `late`, up to 120 s) is confirmed only now, and only then does the grace
        // period start (seed 9500045: settling without it found the previous passwords
        // "left over" a day early, which is the rotator keeping them for the full grace).
        let c = self.w.emu.emulator.control();
        c.advance(chrono::Duration::minutes(2));
        pass_after_crash(&self.w).await;
        self.check(false, "second pass without faults");
        self.w.advance_days(8);
        pass_after_crash(&self.w).await;
        self.check(false, "pass after grace");
        pass_after_crash(&self.w).await;
        self.check(true, "settled");
        self.settle_certificates().await;
    }

    /// Certificates renew every few days in the campaign (1 month, renewed 20 days before its
    /// end, 3 days of grace): a renewal the pass after grace started leaves its old key for 3
    /// more days. Up to three times, until every certificate is settled: 4 days on and a pass,
    /// then up to three passes 11 minutes apart (a version that pass asked for is issued, its
    /// key replicates, the pass after proves it).
    async fn settle_certificates(&mut self) {
        let certs = self.w.engine.policy.certificates.clone();
        let unsettled = |case: &Case| -> Vec<String> {
            let o = Oracle::of(&case.w);
            certs
                .iter()
                .filter_map(|c| cinv::check_settled(&o, c, &Default::default()).err())
                .collect()
        };
        for i in 0..3 {
            if unsettled(self).is_empty() {
                break;
            }
            self.w.advance_days(4);
            let r = pass_after_crash(&self.w).await;
            self.keep(&format!("certificate settling pass {i}"), &r);
            // A renewal that pass asked for is issued within minutes (600 s at most here) and
            // its key replicates within 180 s: the next timer passes add, prove and propagate
            // it (a proof that met a slow replication is retried by the pass after).
            for j in 0..3 {
                if unsettled(self).is_empty() {
                    break;
                }
                self.w
                    .emu
                    .emulator
                    .control()
                    .advance(chrono::Duration::minutes(11));
                let r = pass_after_crash(&self.w).await;
                self.keep(&format!("certificate settling pass {i}.{j}"), &r);
            }
            // The certificates' invariants only: the secrets settled above, and these extra days
            // may let a password a broken consumer holds expire (not the rotator's doing).
            for v in cinv::check_all(&Oracle::of(&self.w), &self.cb) {
                self.violation(&format!("certificate settling pass {i}"), v);
            }
        }
        for v in unsettled(self) {
            // What the rotator would do now, for whoever replays the seed (not the verdict).
            let name = v.split(':').next().unwrap_or_default();
            let plan = match certs.iter().find(|c| c.name == name) {
                Some(c) => format!(
                    "{:?}; Key Vault's pending operation due {:?}, now {}",
                    self.w.engine.plan_certificate(c, self.w.now()).await,
                    self.w
                        .emu
                        .emulator
                        .control()
                        .certificate_pending_due(&c.certificate.vault, &c.certificate.name),
                    self.w.now()
                ),
                None => String::new(),
            };
            self.violation(
                "certificates settled",
                format!("{v} (rotator's plan: {plan})"),
            );
        }
        let leaks = cinv::private_key_leaks(&Oracle::of(&self.w), &self.outputs);
        for v in leaks {
            self.violation("outputs", v);
        }
    }

    /// Between rounds, other people act on the certificates: someone adds a key of their own,
    /// Key Vault renews on its own, a person moves a converted secret's consumer.
    async fn others_act(&mut self, rng: &mut Rng) {
        let certs = self.w.engine.policy.certificates.clone();
        let Some(admin) = self.admin.as_ref().filter(|_| !certs.is_empty()) else {
            return;
        };
        let cert = &certs[rng.pick(certs.len())];
        if rng.chance(0.3)
            && cert_campaign::someone_adds_a_key(&self.w, admin, cert)
                .await
                .is_ok()
        {
            self.tally.keys_added += 1;
        }
        if rng.chance(0.2)
            && cert_campaign::key_vault_renews(&self.w, admin, cert)
                .await
                .is_ok()
        {
            self.tally.kv_renewals += 1;
        }
        if rng.chance(0.4)
            && cert_campaign::person_moves_the_secret_consumer(&self.w, admin, cert)
                .await
                .is_ok()
        {
            self.tally.moves += 1;
        }
    }

    /// A failed run that names a consumer broken on purpose: its write failed (a connection
    /// that never reaches Connected), which the run reports as a failure, with the consumer.
    fn failed_on_broken(&self, x: &secret_rotator::engine::report::CredentialReport) -> bool {
        let (Some(broken), Some(cred), Some(error)) = (
            self.b.broken.get(&x.name),
            self.w
                .engine
                .policy
                .credentials
                .iter()
                .find(|c| c.name == x.name),
            x.error.as_deref(),
        ) else {
            return false;
        };
        broken
            .iter()
            .filter_map(|&i| cred.consumers.get(i))
            .any(|c| error.contains(&c.describe()))
    }

    fn finish(mut self) -> Tally {
        self.tally.cases = 1;
        self.tally.credentials = self.n;
        self.tally.certificates = self.w.engine.policy.certificates.len();
        self.tally.faults = faults_injected(&self.w) - self.tally.faults;
        self.tally
    }
}

/// A certificate run that failed because Entra had not replicated the new key within the
/// verification timeout (the key-replication variant makes it slower than the tests' 5 s):
/// bounded verification, by design; the next runs prove it, which settling checks.
fn failed_on_slow_replication(x: &secret_rotator::engine::report::CredentialReport) -> bool {
    x.error
        .as_deref()
        .is_some_and(|e| e.contains("does not know the new key yet (AADSTS700027)"))
}

/// Runs the case of `seed` to the end; a case that cannot start is a check failure.
async fn run_case(seed: u64) -> Tally {
    let (mut case, mut rng) = match Case::start(seed).await {
        Ok(x) => x,
        Err(what) => {
            let check_failures = vec![Finding { seed, what }];
            return Tally {
                cases: 1,
                check_failures,
                ..Tally::default()
            };
        }
    };
    for round in 0..rng.range(3, 6) {
        case.round(&mut rng, round).await;
    }
    case.settle().await;
    case.finish()
}

/// What to run: seeds `first..first + cases`, those of this shard, `parallel` at a time.
struct Config {
    first: u64,
    cases: u64,
    parallel: usize,
    /// (k, n): this process runs case i when i % n == k.
    shard: (u64, u64),
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let num = |name: &str, default: u64| match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("{name}={v:?} is not a number: {e}")),
        };
        let config = Config {
            first: num("FAULT_CAMPAIGN_SEED", 0x005E_C2E7)?,
            cases: num("FAULT_CAMPAIGN_CASES", 5)?,
            parallel: num("FAULT_CAMPAIGN_PARALLEL", 1)?.max(1) as usize,
            shard: shard(std::env::var("FAULT_CAMPAIGN_SHARD").ok().as_deref())?,
        };
        Ok(config)
    }

    fn seeds(&self) -> Vec<u64> {
        let (k, n) = self.shard;
        (0..self.cases)
            .filter(|i| i % n == k)
            .map(|i| self.first + i)
            .collect()
    }

    /// Where the summary goes: one file per shard, so shards never overwrite each other.
    fn summary_path(&self) -> std::path::PathBuf {
        let name = match self.shard {
            (_, 1) => "fault-campaign.txt".to_string(),
            (k, n) => format!("fault-campaign-shard-{k}-of-{n}.txt"),
        };
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(name)
    }
}

/// Parses `FAULT_CAMPAIGN_SHARD` ("k/n", k < n); absent: the whole range.
fn shard(v: Option<&str>) -> Result<(u64, u64), String> {
    let Some(v) = v else { return Ok((0, 1)) };
    let parsed = v
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if k < n => Ok((k, n)),
        _ => Err(format!(
            "FAULT_CAMPAIGN_SHARD={v:?} is not k/n with k < n (e.g. 0/2)"
        )),
    }
}

/// The one-line command that replays `seed` alone.
fn replay(seed: u64) -> String {
    format!(
        "FAULT_CAMPAIGN_SEED={seed} FAULT_CAMPAIGN_CASES=1 cargo test --test e2e fault_campaign::fault_campaign"
    )
}

/// The figures line, then every seed with a finding: its replay command and its findings.
fn summary(t: &Tally, config: &Config, secs: f64) -> String {
    let mut out = format!(
        "fault campaign: {} schedules ({} rounds, {} credentials, {} crashes, {} concurrent \
         pairs with {} Busy, {} passes watched mid-run, {} unenrolled scans of which {} warned), \
         {} faults injected, {} invariant violations, {} check failures, {secs:.0} s \
         (seeds {}.., parallel {}, shard {}/{}){}\nuncertainty variants drawn: {}\n",
        t.cases,
        t.rounds,
        t.credentials,
        t.crashes,
        t.concurrent,
        t.busy,
        t.watched,
        t.scans,
        t.scan_warnings,
        t.faults,
        t.violations.len(),
        t.check_failures.len(),
        config.first,
        config.parallel,
        config.shard.0,
        config.shard.1,
        match config.seeds().len() {
            planned if planned > t.cases => format!(", in progress: {} of {planned}", t.cases),
            _ => String::new(),
        },
        t.variant_counts(),
    );
    out.push_str(&format!(
        "certificates: {} credentials; by other people: {} keys added, {} Key Vault renewals, \
         {} converted consumers moved\n",
        t.certificates, t.keys_added, t.kv_renewals, t.moves
    ));
    for (title, findings) in [
        ("violations", &t.violations),
        ("check failures", &t.check_failures),
    ] {
        let mut seeds: Vec<u64> = findings.iter().map(|f| f.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        for seed in seeds {
            out.push_str(&format!(
                "{title}: seed {seed} ({}): {}\n",
                t.variants_of(seed),
                replay(seed)
            ));
            for f in findings.iter().filter(|f| f.seed == seed) {
                out.push_str(&format!("    {}\n", f.what));
            }
        }
    }
    out
}

/// Runs the configured cases; the summary file is rewritten after each, so a long run stopped
/// early still leaves the figures of the cases it finished.
async fn campaign(config: &Config, started: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut cases = futures::stream::iter(config.seeds())
        .map(|seed| async move { (seed, Instant::now(), tokio::spawn(run_case(seed)).await) })
        .buffer_unordered(config.parallel);
    while let Some((seed, case_started, done)) = cases.next().await {
        // The checks return findings; a panic is the harness's (a world that would not start):
        // the check could not run, and the campaign goes on.
        let t = done.unwrap_or_else(|e| Tally {
            cases: 1,
            check_failures: vec![Finding {
                seed,
                what: format!("the case panicked: {e}"),
            }],
            ..Tally::default()
        });
        eprintln!(
            "fault campaign: seed {seed} ({}) done in {:.0} s: {} violations, {} check failures",
            t.variants_of(seed),
            case_started.elapsed().as_secs_f64(),
            t.violations.len(),
            t.check_failures.len()
        );
        tally.merge(t);
        let text = summary(&tally, config, started.elapsed().as_secs_f64());
        let _ = std::fs::write(config.summary_path(), text);
    }
    tally
}

#[test]
fn fault_campaign() {
    let config = Config::from_env().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2.max(config.parallel + 1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let tally = runtime.block_on(campaign(&config, started));
    let text = summary(&tally, &config, started.elapsed().as_secs_f64());
    eprint!("{text}");
    let _ = std::fs::write(config.summary_path(), &text);
    assert!(
        tally.violations.is_empty() && tally.check_failures.is_empty(),
        "{text}"
    );
}

/// Issue 20: a write whose connection a fault reset is its sender's (seed 7000052 logged one
/// with no caller, and the check took it for a second writer); a write that names neither
/// instance fails the check instead of passing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_write_is_attributed_to_its_sender() {
    let (case, _) = Case::start(7_000_052).await.expect("the case starts");
    let c = case.w.emu.emulator.control();
    // A credential whose rotation writes its secret (not one blocked on a soft-deleted one).
    let cred = (case.w.engine.policy.credentials.iter())
        .find(|c| !case.b.soft_deleted.contains(&c.name))
        .expect("a credential whose secret is not soft-deleted")
        .clone();
    let vault = cred.key_vault.vault.clone();
    let AppRef::AppId(app) = &cred.application else {
        panic!("campaign credentials name their app by appId")
    };
    let object_id = object_id(&case.w, app).expect("the app has an object id");
    let mut reset = rule("keyvault", "setSecret", FaultAction::Reset);
    reset.nth = Some(1);
    c.add_fault(reset);
    let from = c.request_count();
    let now = case.w.now();
    let report = case
        .other
        .run_credential(&cred, now, true, None, "reset")
        .await;
    let log = c.requests();
    let hit = log[from..]
        .iter()
        .find(|r| r.status == 0 && r.operation.as_deref() == Some("setSecret"))
        .unwrap_or_else(|| panic!("the fault reset no setSecret: {report:#?}"));
    assert_eq!(hit.caller, client_id(&case.w, CI2_APP));
    let spans = write_spans(&case.w, from, &object_id, &vault, &case.who).expect("attributed");
    assert!(matches!(spans.as_slice(), [("second", a, b)] if *a <= hit.seq && hit.seq <= *b));
    // A write with credentials that name nobody: the check cannot decide.
    let url = format!("https://{vault}.vault.azure.net/secrets/appSecret?api-version=2025-07-01");
    let forged = case
        .w
        .http
        .put(url)
        .bearer_auth("a.b.c")
        .body("{}")
        .send()
        .await;
    assert_eq!(forged.map(|r| r.status().as_u16()).ok(), Some(401));
    let e = write_spans(&case.w, from, &object_id, &vault, &case.who).unwrap_err();
    assert!(e.contains("CredentialsRefused"), "{e}");
}

#[test]
fn shards_split_the_seed_range() {
    assert_eq!(shard(None), Ok((0, 1)));
    assert_eq!(shard(Some("1/3")), Ok((1, 3)));
    assert!(shard(Some("3/3")).unwrap_err().contains("k < n"));
    let config = |k| Config {
        first: 10,
        cases: 5,
        parallel: 1,
        shard: (k, 2),
    };
    assert_eq!(config(0).seeds(), vec![10, 12, 14]);
    assert_eq!(config(1).seeds(), vec![11, 13]);
    let t = Tally {
        violations: vec![Finding {
            seed: 12,
            what: "x".into(),
        }],
        variants: [
            (12, vec!["connectionPut=refused".into()]),
            (14, vec!["referenceActiveVersion=late(30s)".into()]),
        ]
        .into(),
        ..Tally::default()
    };
    let text = summary(&t, &config(0), 1.0);
    assert!(
        text.contains(&format!(
            "violations: seed 12 (connectionPut=refused): {}",
            replay(12)
        )),
        "{text}"
    );
    assert!(
        text.contains("variants drawn: connectionPut=refused 1, referenceActiveVersion=late 1"),
        "{text}"
    );
}

/// The allowances for consumers broken on purpose are exactly what such a consumer needs, not
/// a way to pass anything: a tenant with an API connection the rotator cannot update settles
/// clean with them and not without them; the connection given a value Entra refuses is a
/// violation, allowances or not; and a credential left inside its renewal window is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_consumers_are_held_to_less_but_not_to_nothing() {
    use azure_emulator::scenario::ConnectionPut;
    let broken_connection = |seed: u64| {
        let mut rng = Rng(seed);
        let n = rng.range(5, 20) as usize;
        let g = generate(&mut rng, n);
        let only_2 = |b: &std::collections::BTreeSet<usize>| b.len() == 1 && b.contains(&2);
        let cred = g
            .broken
            .iter()
            .find(|(_, b)| only_2(b))
            .map(|(c, _)| c.clone());
        cred.filter(|_| g.uncertainties.connection_put == ConnectionPut::Accepted && n <= 8)
    };
    let (seed, name) = (7_000_000..7_010_000)
        .find_map(|s| broken_connection(s).map(|c| (s, c)))
        .expect("a seed with a broken connection");
    let (mut case, _) = Case::start(seed).await.expect("the case starts");
    case.settle().await;
    assert!(
        case.tally.violations.is_empty(),
        "seed {seed}: {:#?}",
        case.tally.violations
    );
    let broken = std::mem::take(&mut case.b.broken);
    let strict = check_all(&case.w, &case.b, true);
    assert!(
        strict.iter().any(|v| v.starts_with(&format!("{name}:"))),
        "{strict:#?}"
    );
    case.b.broken = broken;
    let cred = case.w.credential(&name).clone();
    let secret_rotator::policy::Consumer::ApiConnection { connection, .. } = &cred.consumers[2]
    else {
        panic!("consumer 2 of a campaign credential is its connection")
    };
    let c = case.w.emu.emulator.control();
    let (rg, conn) = (&connection.resource_group, &connection.name);
    assert!(c.set_connection_parameter(rg, conn, "token:clientSecret", "refusedQ~value"));
    for settled in [false, true] {
        let v = check_all(&case.w, &case.b, settled);
        let refused = format!(
            "{name}: {} holds a value Entra refuses",
            cred.consumers[2].describe()
        );
        assert!(v.iter().any(|v| v.starts_with(&refused)), "{v:#?}");
    }
    // 180-day lifetime, 30-day renewal window: 151 days on, every credential is due.
    case.w.advance_days(151);
    let v = check_all(&case.w, &case.b, true);
    assert!(
        v.iter().any(|v| v.contains("inside its renewal window")),
        "{v:#?}"
    );
}
