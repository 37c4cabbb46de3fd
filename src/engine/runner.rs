//! [`Engine`]: runs credentials through observe → plan → perform, and answers the probe,
//! status and plan questions. Implements [`RotatorService`] for the HTTP functions.
//!
//! Expected flow of a pass: for each enrolled credential (at most `max_parallel` at once, fewer
//! while Azure answers 429: [`Aimd`]), take its blob lease, then repeat {observe (everything at
//! first, then only what a failed step may have half-written: a step that succeeded says what
//! it wrote), decide, perform the first step} until the planner has nothing left, a step fails,
//! the credential's step bound is reached or the pass budget is spent; write the tags the steps
//! left unwritten (one write); release the lease; write the run's audit record and the
//! credential's last outcome.
//! Then, with what is left of the budget, scan the visible applications for credentials nobody
//! rotates that expire within `warn_unenrolled_days` and notify about each (once a day); which
//! passwords are enrolled is learnt from the credentials' last observations, so the scan costs
//! Graph list pages only. `Status` runs the same scan, bounded, for its `unenrolled` section.
//!
//! A consumer that cannot be read (observed `Blocked`) or whose write fails is held on its own
//! for the rest of the run ([`Observer::hold`]): the run goes on with the other consumers and
//! the renewal, and ends `Blocked` (or `Failed` when one of those writes failed in this run)
//! with an error, and a notification, naming each held consumer, why, and what to do.
//!
//! Guarantees: one rotation of a credential at a time across instances (the lease); one writer
//! of a site's app settings at a time across credentials and instances (the executor's
//! per-resource lease); a failed step leaves state that the next run resumes from; a pass
//! never starts a credential after its budget is spent (it is reported as deferred). A forced
//! rotation happens at once (also inside a grace period) or the report says why not, as a
//! failure. A lifetime the tenant refused is never asked again ([`lifetime`]): the rotation
//! retries at once with a shorter one.
//!
//! Caveats: `now` advances with the wall clock from the host's `UtcNow`, so a pass that takes
//! minutes sees the minutes pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::azure::common::THROTTLED;
use crate::cloud::Cloud;
use crate::engine::executor::{self, ExecContext, StepError, VerifyPolicy};
use crate::engine::inventory::{
    Enrolment, InventoryScan, ScanOptions, ScanSummary, SoonestUnenrolled, UnenrolledInventory,
    warns,
};
use crate::engine::lifetime;
use crate::engine::observe::{Observed, Observer, observe, remedy};
use crate::engine::parallelism::Aimd;
use crate::engine::ports::{AzurePorts, Notifier, PortError, StorePorts};
use crate::engine::report::*;
use crate::engine::service::{RotatorService, ServiceError};
use crate::engine::tags;
use crate::planner::{self, ConsumerSync, KeyIdentity, Step, StepKind, VaultState};
use crate::policy::minimums::MIN_FORCED_INTERVAL;
use crate::policy::{Consumer, CredentialPolicy, Policy};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cloud: Cloud,
    /// Tenant for verification token requests when the policy names none.
    pub tenant: String,
    pub max_parallel: usize,
    /// Upper bound on steps for one credential in one run (a safety net against a livelock).
    pub max_steps_per_credential: usize,
    pub verify: VerifyPolicy,
    /// Warn about credentials nobody rotates that expire within this many days (the timer
    /// pass's scan); 0 turns the scan off.
    pub warn_unenrolled_days: u32,
    /// Rows in `Status`'s inventory of unenrolled credentials.
    pub status_inventory_limit: usize,
    /// How long `Status` may scan the tenant before answering with what it has read.
    pub status_scan_budget: Duration,
    /// Applications per Graph page in the scans.
    pub scan_page_size: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cloud: Cloud::Public,
            tenant: String::new(),
            max_parallel: 4,
            max_steps_per_credential: 32,
            verify: VerifyPolicy::default(),
            warn_unenrolled_days: 30,
            status_inventory_limit: 200,
            status_scan_budget: Duration::from_secs(60),
            scan_page_size: 999,
        }
    }
}

pub struct Engine {
    pub policy: Arc<Policy>,
    pub azure: Arc<dyn AzurePorts>,
    pub store: Arc<dyn StorePorts>,
    pub notifier: Arc<dyn Notifier>,
    pub options: EngineOptions,
    /// The probe's last token answer per credential ([`ProbeMemo`]).
    pub probes: ProbeMemo,
}

/// What `Test` last learnt from Entra for each credential: `(Key Vault version, accepted, when)`.
/// Reused for [`PROBE_MEMO_TTL`] while the version is unchanged, so polling the probe makes at
/// most one token request per secret per TTL; a new version (a rotation, a fix) is asked again.
#[derive(Debug, Default)]
pub struct ProbeMemo(std::sync::Mutex<HashMap<String, ProbeAnswer>>);

/// One credential's last probe: the Key Vault version, whether Entra accepted it, and when.
type ProbeAnswer = (String, bool, DateTime<Utc>);

/// How long a probe's token answer stands for an unchanged Key Vault version.
pub const PROBE_MEMO_TTL: chrono::Duration = chrono::Duration::minutes(5);

impl ProbeMemo {
    fn get(&self, credential: &str, now: DateTime<Utc>) -> Option<(String, bool)> {
        let map = self.0.lock().ok()?;
        let (version, ok, at) = map.get(credential)?;
        (now >= *at && now - *at < PROBE_MEMO_TTL).then(|| (version.clone(), *ok))
    }

    fn put(&self, credential: &str, observed: &Observed, now: DateTime<Utc>) {
        let (VaultState::Current(v), Some(ok)) = (
            &observed.observation.vault,
            observed.observation.current_value_accepted,
        ) else {
            return;
        };
        if let Ok(mut map) = self.0.lock() {
            map.insert(credential.to_string(), (v.version.clone(), ok, now));
        }
    }
}

/// One credential's run in a pass, with its last observation; `Err(name)` when the pass's
/// budget was spent before it started (deferred).
type CredentialOutcomeOf = Result<(CredentialReport, Option<Observed>), String>;

/// A `now` that keeps flowing from the host's timestamp.
#[derive(Clone, Copy)]
struct Clock {
    base: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    fn new(base: DateTime<Utc>) -> Self {
        Self {
            base,
            started: Instant::now(),
        }
    }
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

/// Writes the tags the run's steps recorded without writing (consumers' `rotator-synced`
/// entries, an adoption): one tag write for the run. A failure is a warning: the consumers are
/// written again by the next run, which finds them unrecorded.
async fn write_unwritten_tags(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    observer: &mut Observer,
) {
    let Some((version, tags)) = observer.unwritten_tags() else {
        return;
    };
    match azure
        .vault_update_tags(&cred.key_vault, &version, &tags)
        .await
    {
        Ok(_) => observer.tags_written(),
        Err(e) => tracing::warn!(
            "could not record the run's progress in the tags of {}/{} version {version}: {e}",
            cred.key_vault.vault,
            cred.key_vault.secret
        ),
    }
}

fn run_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

impl Engine {
    fn exec_ctx(&self) -> ExecContext<'_> {
        ExecContext {
            azure: self.azure.as_ref(),
            notifier: self.notifier.as_ref(),
            store: self.store.as_ref(),
            cloud: self.options.cloud,
            tenant: &self.options.tenant,
            verify: self.options.verify,
            added: Default::default(),
            accepted: Default::default(),
        }
    }

    fn tenant_for<'a>(&'a self, cred: &'a CredentialPolicy) -> &'a str {
        cred.tenant_id.as_deref().unwrap_or(&self.options.tenant)
    }

    fn credential(&self, name: &str) -> Option<&CredentialPolicy> {
        self.policy.credentials.iter().find(|c| c.name == name)
    }

    /// Runs one credential to a resting point (or the bounds). Never panics, never returns an
    /// error: every outcome is in the report.
    pub async fn run_credential(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
        force: bool,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> CredentialReport {
        self.run_credential_seen(cred, now, force, deadline, run_id)
            .await
            .0
    }

    /// [`Self::run_credential`], with the credential's last observation: the pass learns from
    /// it which password each vault holds without asking Azure again.
    async fn run_credential_seen(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
        force: bool,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> (CredentialReport, Option<Observed>) {
        let clock = Clock::new(now);
        let span = tracing::info_span!("credential", credential = %cred.name, run = %run_id);
        let _enter = span.enter();
        let mut report = CredentialReport {
            name: cred.name.clone(),
            outcome: CredentialOutcome::Idle,
            steps: Vec::new(),
            error: None,
            next_due: None,
        };
        let lease = match self.store.lease(&format!("credential-{}", cred.name)).await {
            Ok(l) => l,
            Err(PortError::Busy(m)) => {
                report.outcome = CredentialOutcome::Busy;
                report.error = Some(format!("another run holds the lease: {m}"));
                return (report, None);
            }
            Err(e) => {
                report.outcome = CredentialOutcome::Failed;
                report.error = Some(format!("could not take the credential's lease: {e}"));
                return (report, None);
            }
        };
        let mut forced = !force;
        let mut refused: Option<Refusal> = None;
        let ctx = self.exec_ctx();
        let started = Instant::now();
        let mut last_seen: Option<Observed> = None;
        let mut observer = Observer::new(cred, false);
        let mut known_cap = lifetime::load(self.store.as_ref(), cred).await;
        // A consumer Azure has taken a write for but not finished applying (an asynchronous
        // Key Vault reference resolution): held for this run, the next run checks again.
        let mut not_failures = NotFailures::default();

        for _ in 0..self.options.max_steps_per_credential {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                report.outcome = CredentialOutcome::InProgress;
                break;
            }
            let observed = match observer
                .observe(self.azure.as_ref(), cred, self.tenant_for(cred))
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    report.outcome = CredentialOutcome::Failed;
                    report.error = Some(format!("observing Azure failed: {e}"));
                    break;
                }
            };
            let t = clock.now();
            last_seen = Some(observed.clone());
            // The policy as the tenant allows it: a lifetime Graph refused is not asked again.
            let cred = &match lifetime::apply(cred, known_cap.as_ref()) {
                Ok((capped, _)) => capped,
                Err(why) => {
                    report.outcome = CredentialOutcome::Blocked;
                    report.error = Some(why);
                    break;
                }
            };
            let mut decision = planner::decide(cred, &observed.observation, t);
            // On demand: the planner says what a forced rotation is (its cleanup first, then
            // Rotate{Forced}), also inside a grace period: a leaked secret is replaced at once,
            // and the password consumers hold now keeps the policy's grace as the previous one.
            if !forced && decision.blocked.is_none() {
                if let Err(r) = forced_interval_allows(&observed, t) {
                    forced = true;
                    refused = Some(r);
                } else {
                    decision = planner::decide_forced(cred, &observed.observation, t);
                }
            }
            if let Some(why) = decision.blocked {
                report.outcome = CredentialOutcome::Blocked;
                report.error = Some(why);
                break;
            }
            let Some(step) = decision.steps.into_iter().next() else {
                report.next_due = decision.next_due;
                report.outcome = settled_outcome(&report, &decision.held_up, not_failures);
                if !decision.held_up.is_empty() {
                    report.error = Some(format!(
                        "held up by {} consumer(s), the others are done: {}",
                        decision.held_up.len(),
                        decision.held_up.join("; ")
                    ));
                }
                break;
            };
            let name = step.kind();
            // The forced rotation is asked for once; the steps after it are ordinary ones.
            if matches!(step, Step::Rotate { .. }) {
                forced = true;
            }
            let result = executor::perform(&ctx, cred, &observed, &step, t).await;
            let result = match result {
                Ok(done) => {
                    observer.learn(&step, &done.learnt);
                    Ok(done.detail)
                }
                Err(e) => {
                    observer.performed(&step);
                    Err(e)
                }
            };
            let lifetime_refused = matches!(
                &result,
                Err(executor::StepError::Azure {
                    source: PortError::LifetimeRefused(_),
                    ..
                })
            );
            if lifetime_refused {
                known_cap =
                    Some(lifetime::refused(self.store.as_ref(), cred, cred.lifetime, t).await);
            } else if let (Ok(_), Step::Rotate { .. }, Some(cap)) = (&result, &step, known_cap) {
                lifetime::accepted(self.store.as_ref(), cred, cap, cred.lifetime).await;
            }
            if let Ok(mut added) = ctx.added.lock() {
                observer.added(added.drain(..));
            }
            not_failures.count(&result);
            let ok = result.is_ok();
            // A consumer that cannot be written is held on its own; the others still move.
            let held = match (&result, consumer_of(cred, &step)) {
                (Err(e), Some((index, consumer))) if e.is_consumers() => {
                    observer.hold(index, hold_reason(cred, consumer, e));
                    true
                }
                _ => false,
            };
            let blocked = matches!(result, Err(executor::StepError::Blocked(_)));
            let detail = match result {
                Ok(d) => d,
                Err(e) => e.to_string(),
            };
            if ok {
                tracing::info!(step = name.as_str(), "{detail}");
            } else {
                tracing::warn!(step = name.as_str(), "step failed: {detail}");
            }
            report.steps.push(StepRecord {
                at: clock.now(),
                step: name,
                detail: detail.clone(),
                ok,
            });
            if lifetime_refused {
                // Try again at once with the next shorter lifetime (bounded by the ladder).
                forced = !force;
                report.error = Some(detail);
                continue;
            }
            if !ok && !held {
                report.outcome = if blocked {
                    CredentialOutcome::Blocked
                } else {
                    CredentialOutcome::Failed
                };
                report.error = Some(detail);
                break;
            }
            report.outcome = CredentialOutcome::InProgress;
        }
        write_unwritten_tags(self.azure.as_ref(), cred, &mut observer).await;
        lease.release().await;
        if let Some(r) = refused {
            r.apply(&mut report);
        } else if force {
            refuse_unperformed_force(&mut report);
        }
        let audit = Audit {
            seen: last_seen.as_ref(),
            duration: started.elapsed(),
        };
        self.record(cred, &report, &audit, run_id, clock.now())
            .await;
        if matches!(
            report.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ) {
            let error = report.error.as_deref().unwrap_or("no detail");
            if let Err(e) = self
                .notifier
                .rotation_failed(&cred.name, error, clock.now())
                .await
            {
                tracing::warn!("could not send the failure notification: {e}");
            }
        }
        (report, last_seen)
    }

    /// The audit record (one per run that changed something) and the credential's last outcome.
    async fn record(
        &self,
        cred: &CredentialPolicy,
        report: &CredentialReport,
        audit: &Audit<'_>,
        run_id: &str,
        now: DateTime<Utc>,
    ) {
        // The state as last observed: after the final step when the run settled, which is what
        // the record is about (key ids, never values).
        let tags = audit.seen.and_then(|o| match &o.observation.vault {
            VaultState::Current(v) => v.tags.clone(),
            VaultState::Missing | VaultState::SoftDeleted { .. } => None,
        });
        let rotated = report
            .steps
            .iter()
            .any(|s| s.step == StepKind::Rotate && s.ok);
        let body = serde_json::json!({
            "credential": cred.name,
            "application": audit.seen.and_then(|o| o.app.as_ref()).map(|a| serde_json::json!({
                "appId": a.app_id, "objectId": a.object_id, "displayName": a.display_name
            })),
            "keyVault": format!("{}/{}", cred.key_vault.vault, cred.key_vault.secret),
            "runId": run_id,
            "at": now,
            "rotated": rotated,
            "keyIdInUse": tags.as_ref().map(|t| t.key_id.to_string()),
            "previousKeyId": tags.as_ref().and_then(|t| t.previous_key_id).map(|k| k.to_string()),
            "phase": tags.as_ref().map(|t| tags::phase_name(t.phase)),
            "consumersTouched": report.steps.iter()
                .filter(|s| matches!(s.step, StepKind::UpdateConsumer | StepKind::Notify))
                .map(|s| serde_json::json!({"ok": s.ok, "detail": s.detail}))
                .collect::<Vec<_>>(),
            "verified": report.steps.iter()
                .find(|s| s.step == StepKind::CompletePropagation)
                .map(|s| s.ok),
            "durationMs": audit.duration.as_millis() as u64,
            "report": report,
        });
        if !report.steps.is_empty() {
            let path = format!(
                "audit/{}/{}-{run_id}.json",
                now.format("%Y/%m/%d"),
                cred.name
            );
            tracing::info!(audit = %body, "rotation audit record");
            if let Err(e) = self.store.put_json(&path, &body).await {
                tracing::warn!("could not write the audit record {path}: {e}");
            }
        }
        if let Err(e) = self
            .store
            .put_json(&format!("last/{}.json", cred.name), &body)
            .await
        {
            tracing::warn!("could not record the last outcome of {}: {e}", cred.name);
        }
    }

    pub async fn pass(&self, now: DateTime<Utc>, budget: Duration) -> PassReport {
        let started = Instant::now();
        let deadline = started + budget;
        let id = run_id(now);
        let clock = Clock::new(now);
        let creds = &self.policy.credentials;
        let outcomes = self.run_all(clock, deadline, &id).await;
        let mut results = Vec::new();
        let mut deferred = Vec::new();
        let mut enrolment = Enrolment::from_policy(Some(&self.policy));
        for (cred, o) in creds.iter().zip(outcomes) {
            match o {
                Ok((r, seen)) => {
                    if let Some(seen) = &seen {
                        learn_enrolment(&mut enrolment, cred, seen);
                    }
                    results.push(r);
                }
                Err(name) => deferred.push(name),
            }
        }
        // After the enrolled credentials, with what is left of the budget: the scan can never
        // hold up a rotation, and its failure is a warning in the report, not a failed pass.
        let unenrolled = if self.options.warn_unenrolled_days == 0 {
            None
        } else if Instant::now() >= deadline {
            tracing::warn!("no budget left for the scan of unenrolled credentials this pass");
            None
        } else {
            Some(self.warn_unenrolled(&enrolment, clock, deadline).await)
        };
        let report = PassReport {
            run_id: id.clone(),
            started: now,
            finished: clock.now(),
            credentials: results,
            deferred,
            unenrolled,
        };
        if let Ok(body) = serde_json::to_value(&report)
            && let Err(e) = self.store.put_json(&format!("runs/{id}.json"), &body).await
        {
            tracing::warn!("could not record run {id}: {e}");
        }
        report
    }

    /// Every enrolled credential, in policy order, at most as many at once as the AIMD limit
    /// allows ([`Aimd`]: halved when a credential met a 429, `max_parallel` at most).
    async fn run_all(&self, clock: Clock, deadline: Instant, id: &str) -> Vec<CredentialOutcomeOf> {
        let creds = &self.policy.credentials;
        let mut limit = Aimd::new(self.options.max_parallel);
        let mut outcomes: Vec<Option<CredentialOutcomeOf>> = Vec::new();
        outcomes.resize_with(creds.len(), || None);
        let mut running = futures::stream::FuturesUnordered::new();
        let mut next = 0;
        loop {
            while next < creds.len() && running.len() < limit.limit() {
                let i = next;
                next += 1;
                let throttled = Arc::new(AtomicU64::new(0));
                let counter = throttled.clone();
                let epoch = limit.start();
                running.push(async move {
                    let cred = &creds[i];
                    let outcome = if Instant::now() >= deadline {
                        Err(cred.name.clone())
                    } else {
                        let run =
                            self.run_credential_seen(cred, clock.now(), false, Some(deadline), id);
                        Ok(THROTTLED.scope(counter, run).await)
                    };
                    (i, outcome, epoch, throttled.load(Ordering::Relaxed))
                });
            }
            let Some((i, outcome, epoch, throttled)) = running.next().await else {
                break;
            };
            limit.finished(epoch, throttled);
            outcomes[i] = Some(outcome);
        }
        outcomes.into_iter().flatten().collect()
    }

    /// Scans the tenant for credentials nobody rotates that expire within
    /// `warn_unenrolled_days` and sends each its message (deduplicated per credential and day
    /// by the notifier's store). Stops at `deadline`.
    async fn warn_unenrolled(
        &self,
        enrolment: &Enrolment,
        clock: Clock,
        deadline: Instant,
    ) -> UnenrolledScanReport {
        let days = self.options.warn_unenrolled_days;
        let opts = ScanOptions {
            owned_only: false,
            page_size: self.options.scan_page_size,
            deadline: Some(deadline),
        };
        let mut scan = InventoryScan::new(self.azure.as_ref(), enrolment, opts, clock.now());
        let mut report = UnenrolledScanReport {
            warn_days: days,
            scan: ScanSummary::default(),
            expiring: 0,
            notified: 0,
            already_sent_today: 0,
            warning: None,
        };
        let mut send_failures = Vec::new();
        loop {
            let rows = match scan.next_page().await {
                Ok(Some(rows)) => rows,
                Ok(None) => break,
                Err(e) => {
                    report.warning = Some(format!(
                        "the scan for unenrolled credentials failed after {} page(s): {e}",
                        scan.summary().pages
                    ));
                    break;
                }
            };
            for note in scan.take_notes() {
                tracing::info!("unenrolled scan: {note}");
            }
            for row in rows.iter().filter(|r| warns(r, clock.now(), days)) {
                report.expiring += 1;
                if Instant::now() >= deadline {
                    continue; // counted; told on the next pass
                }
                match self.notifier.expiring_unenrolled(row, clock.now()).await {
                    Ok(true) => report.notified += 1,
                    Ok(false) => report.already_sent_today += 1,
                    Err(e) => send_failures.push(format!("{}/{}: {e}", row.app_id, row.key_id)),
                }
            }
        }
        for note in scan.take_notes() {
            tracing::info!("unenrolled scan: {note}");
        }
        report.scan = scan.summary().clone();
        if !send_failures.is_empty() {
            let failed = format!(
                "{} notification(s) about expiring unenrolled credentials could not be sent: {}",
                send_failures.len(),
                send_failures.join("; ")
            );
            report.warning = Some(match report.warning.take() {
                Some(w) => format!("{w}; {failed}"),
                None => failed,
            });
        }
        if let Some(w) = &report.warning {
            tracing::warn!("{w}");
        }
        report
    }

    /// Every enrolled credential's status, and what they say about which password each vault
    /// holds (one observation per credential, never one per application).
    pub async fn credentials_status(
        &self,
        now: DateTime<Utc>,
    ) -> (Vec<CredentialStatus>, Enrolment) {
        let mut credentials = Vec::new();
        let mut enrolment = Enrolment::from_policy(Some(&self.policy));
        for cred in &self.policy.credentials {
            let (st, seen) = self.credential_status(cred, now).await;
            if let Some(seen) = &seen {
                learn_enrolment(&mut enrolment, cred, seen);
            }
            credentials.push(st);
        }
        (credentials, enrolment)
    }

    /// Every enrolled credential, then the credentials of the visible applications that
    /// nobody rotates (bounded to `status_inventory_limit` rows and `status_scan_budget`).
    pub async fn status_report(&self, now: DateTime<Utc>) -> StatusReport {
        let (credentials, enrolment) = self.credentials_status(now).await;
        let unenrolled = self.unenrolled_inventory(&enrolment, now).await;
        StatusReport {
            now,
            credentials,
            unenrolled: Some(unenrolled),
        }
    }

    async fn unenrolled_inventory(
        &self,
        enrolment: &Enrolment,
        now: DateTime<Utc>,
    ) -> UnenrolledInventory {
        let opts = ScanOptions {
            owned_only: false,
            page_size: self.options.scan_page_size,
            deadline: Some(Instant::now() + self.options.status_scan_budget),
        };
        let mut scan = InventoryScan::new(self.azure.as_ref(), enrolment, opts, now);
        let mut soonest = SoonestUnenrolled::new(self.options.status_inventory_limit);
        let problem = loop {
            match scan.next_page().await {
                Ok(Some(rows)) => rows.iter().for_each(|r| soonest.add(r)),
                Ok(None) => break None,
                Err(e) => {
                    break Some(format!(
                        "the scan failed after {} page(s): {e}",
                        scan.summary().pages
                    ));
                }
            }
        };
        soonest.finish(scan.summary().clone(), problem)
    }

    async fn last_outcome(&self, cred: &CredentialPolicy) -> Option<CredentialOutcome> {
        let v = self
            .store
            .get_json(&format!("last/{}.json", cred.name))
            .await
            .ok()??;
        serde_json::from_value(v.get("report")?.get("outcome")?.clone()).ok()
    }

    async fn credential_status(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
    ) -> (CredentialStatus, Option<Observed>) {
        let mut st = CredentialStatus {
            name: cred.name.clone(),
            app_id: None,
            display_name: None,
            key_id_in_use: None,
            key_id_source: None,
            expires: None,
            days_left: None,
            last_rotation: None,
            phase: None,
            consumers_in_sync: false,
            consumers: Vec::new(),
            next_due: None,
            problem: None,
            last_outcome: self.last_outcome(cred).await,
        };
        let observed = match observe(self.azure.as_ref(), cred, self.tenant_for(cred), false).await
        {
            Ok(o) => o,
            Err(e) => {
                st.problem = Some(e.to_string());
                return (st, None);
            }
        };
        fill_status(&mut st, cred, &observed, now);
        (st, Some(observed))
    }

    pub async fn plan_report(&self, now: DateTime<Utc>) -> PlanReport {
        let mut credentials = Vec::new();
        for cred in &self.policy.credentials {
            let cap = lifetime::load(self.store.as_ref(), cred).await;
            let plan = match observe(self.azure.as_ref(), cred, self.tenant_for(cred), false).await
            {
                Ok(o) => plan_one(cred, cap.as_ref(), &o, now),
                Err(e) => CredentialPlan {
                    name: cred.name.clone(),
                    steps: Vec::new(),
                    explanation: vec![format!("could not observe Azure: {e}")],
                    next_due: None,
                    blocked: Some(e.to_string()),
                },
            };
            credentials.push(plan);
        }
        PlanReport { now, credentials }
    }

    pub async fn self_test_report(&self, now: DateTime<Utc>) -> SelfTestReport {
        let mut checks = Vec::new();
        match self.store.get_json("last/.probe.json").await {
            Ok(_) => checks.push(Check {
                name: "storage".into(),
                ok: true,
                result_code: ResultCode::Ok,
                message: "the rotator's storage account answers".into(),
            }),
            Err(e) => checks.push(Check {
                name: "storage".into(),
                ok: false,
                result_code: ResultCode::StorageAccess,
                message: format!("the rotator's storage account: {e}"),
            }),
        }
        for cred in &self.policy.credentials {
            checks.push(self.check_credential(cred, now).await);
        }
        SelfTestReport { checks }
    }

    async fn check_credential(&self, cred: &CredentialPolicy, now: DateTime<Utc>) -> Check {
        let name = format!("credential {}", cred.name);
        let fail = |code, message: String| Check {
            name: name.clone(),
            ok: false,
            result_code: code,
            message,
        };
        let mut observer = Observer::new(cred, true);
        if let Some((version, ok)) = self.probes.get(&cred.name, now) {
            observer = observer.knowing(version, ok);
        }
        let observed = match observer
            .observe(self.azure.as_ref(), cred, self.tenant_for(cred))
            .await
        {
            Ok(o) => {
                self.probes.put(&cred.name, &o, now);
                o
            }
            Err(PortError::AccessDenied(m)) => {
                return fail(ResultCode::KeyVaultAccess, format!("access denied: {m}"));
            }
            Err(PortError::Disabled(m)) => return fail(ResultCode::SecretDisabled, m),
            Err(PortError::Refused { code, message }) => {
                return fail(
                    ResultCode::IdentityUnavailable,
                    format!("AADSTS{code}: {message}"),
                );
            }
            Err(e) => return fail(ResultCode::Internal, e.to_string()),
        };
        if let Err(why) = &observed.observation.app {
            return fail(ResultCode::GraphAccess, why.clone());
        }
        if observed.secret.is_none() {
            let (v, s) = (&cred.key_vault.vault, &cred.key_vault.secret);
            let why = match observed.observation.vault {
                VaultState::SoftDeleted { .. } => format!(
                    "is soft-deleted: recover it (az keyvault secret recover --vault-name {v} --name {s}) or purge it"
                ),
                _ => "does not exist".to_string(),
            };
            return fail(
                ResultCode::SecretMissing,
                format!("ClientSecret not found: Key Vault secret {v}/{s} {why}"),
            );
        }
        if observed.observation.current_value_accepted == Some(false) {
            return fail(
                ResultCode::CredentialRefused,
                format!(
                    "Entra refuses the value in {}/{}",
                    cred.key_vault.vault, cred.key_vault.secret
                ),
            );
        }
        let blocked = consumer_problems(cred, &observed, |s| match s {
            ConsumerSync::Blocked { reason } => Some(reason.clone()),
            _ => None,
        });
        if !blocked.is_empty() {
            return fail(ResultCode::ConsumerAccess, blocked.join("; "));
        }
        let out_of_sync = consumer_problems(cred, &observed, |s| match s {
            ConsumerSync::OutOfSync { detail } => Some(detail.clone()),
            ConsumerSync::NotObservable {
                healthy: Some(false),
            } => Some("unhealthy".to_string()),
            _ => None,
        });
        if !out_of_sync.is_empty() {
            return fail(ResultCode::ConsumerOutOfSync, out_of_sync.join("; "));
        }
        let mut st = CredentialStatus {
            name: cred.name.clone(),
            app_id: None,
            display_name: None,
            key_id_in_use: None,
            key_id_source: None,
            expires: None,
            days_left: None,
            last_rotation: None,
            phase: None,
            consumers_in_sync: true,
            consumers: Vec::new(),
            next_due: None,
            problem: None,
            last_outcome: None,
        };
        fill_status(&mut st, cred, &observed, now);
        if let Some(exp) = st.expires
            && exp - cred.renew_before + chrono::Duration::days(1) <= now
        {
            return fail(
                ResultCode::RotationOverdue,
                format!(
                    "the secret expires {} and is inside its renewal window",
                    exp.format("%Y-%m-%d")
                ),
            );
        }
        if self.last_outcome(cred).await == Some(CredentialOutcome::Failed) {
            return fail(
                ResultCode::RotationFailed,
                "the last rotation run failed; see Status".into(),
            );
        }
        Check {
            name,
            ok: true,
            result_code: ResultCode::Ok,
            message: format!(
                "the value in {}/{} gets a token{}",
                cred.key_vault.vault,
                cred.key_vault.secret,
                st.days_left
                    .map(|d| format!("; {d} days left"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Records which password `cred`'s vault holds (and which one its last rotation replaced), as
/// observed, for telling enrolled credentials from the rest.
fn learn_enrolment(enrolment: &mut Enrolment, cred: &CredentialPolicy, seen: &Observed) {
    if let VaultState::Current(v) = &seen.observation.vault {
        let current = match &v.identity {
            KeyIdentity::Tagged(k) | KeyIdentity::InferredFromHint(k) => Some(*k),
            KeyIdentity::Unknown { .. } => None,
        };
        enrolment.observed(
            &cred.name,
            current,
            v.tags.as_ref().and_then(|t| t.previous_key_id),
            format!("{}/{}", cred.key_vault.vault, cred.key_vault.secret),
        );
    }
}

/// Why a forced rotation was not done, and from when it would be accepted (when known).
struct Refusal {
    reason: String,
    earliest: Option<DateTime<Utc>>,
}

impl Refusal {
    /// The credential's answer says the force was refused, unless something worse happened.
    fn apply(self, report: &mut CredentialReport) {
        if matches!(
            report.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked | CredentialOutcome::Busy
        ) {
            return;
        }
        report.outcome = CredentialOutcome::Refused;
        report.error = Some(match self.earliest {
            Some(at) => format!(
                "{}; a forced rotation is accepted from {}",
                self.reason,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => self.reason,
        });
        if self.earliest.is_some() {
            report.next_due = self.earliest;
        }
    }
}

/// A forced rotation only [`MIN_FORCED_INTERVAL`] after the last rotation, whatever the grace.
fn forced_interval_allows(observed: &Observed, now: DateTime<Utc>) -> Result<(), Refusal> {
    let VaultState::Current(v) = &observed.observation.vault else {
        return Ok(());
    };
    let Some(last) = v.tags.as_ref().and_then(|t| t.rotated_at) else {
        return Ok(());
    };
    let earliest = last + MIN_FORCED_INTERVAL;
    if now >= earliest {
        return Ok(());
    }
    Err(Refusal {
        reason: format!(
            "not forcing a rotation: the last one was at {}, less than {} minutes ago",
            last.format("%Y-%m-%d %H:%M UTC"),
            MIN_FORCED_INTERVAL.num_minutes()
        ),
        earliest: Some(earliest),
    })
}

/// "consumer: problem" for each consumer whose observed sync `problem` describes.
fn consumer_problems(
    cred: &CredentialPolicy,
    observed: &Observed,
    problem: impl Fn(&ConsumerSync) -> Option<String>,
) -> Vec<String> {
    cred.consumers
        .iter()
        .zip(&observed.observation.consumers)
        .filter_map(|(c, o)| problem(&o.sync).map(|p| format!("{}: {p}", c.describe())))
        .collect()
}

/// The outcome of a run whose last decision has no steps. Consumers held up make it `Blocked`
/// (a person must act; the error names each and what to do), or `Failed` when one of their
/// writes failed in this run (it is tried again on the next pass).
fn settled_outcome(
    report: &CredentialReport,
    held_up: &[String],
    not_failures: NotFailures,
) -> CredentialOutcome {
    if !held_up.is_empty() {
        let unsuccessful = report.steps.iter().filter(|s| !s.ok).count();
        let failed = unsuccessful.saturating_sub(not_failures.blocked + not_failures.pending);
        return if failed > 0 {
            CredentialOutcome::Failed
        } else if not_failures.pending > 0 && not_failures.blocked == 0 {
            // Only a write Azure is still applying: the next run confirms it.
            CredentialOutcome::InProgress
        } else {
            CredentialOutcome::Blocked
        };
    }
    if report.steps.is_empty() {
        CredentialOutcome::Idle
    } else {
        CredentialOutcome::Progressed
    }
}

/// Unsuccessful steps of a run that are not failures: Azure would not take the change as the
/// rotator can make it (a person must act), or has taken it and is still applying it.
#[derive(Debug, Default, Clone, Copy)]
struct NotFailures {
    blocked: usize,
    pending: usize,
}

impl NotFailures {
    fn count(&mut self, result: &Result<String, StepError>) {
        match result {
            Err(StepError::Blocked(_)) => self.blocked += 1,
            Err(StepError::Pending(_)) => self.pending += 1,
            _ => {}
        }
    }
}

/// The consumer a step writes or tells, with its index.
fn consumer_of<'c>(cred: &'c CredentialPolicy, step: &Step) -> Option<(usize, &'c Consumer)> {
    match step {
        Step::UpdateConsumer { index, .. } | Step::Notify { index, .. } => {
            cred.consumers.get(*index).map(|c| (*index, c))
        }
        _ => None,
    }
}

/// Why a consumer whose write failed is held for the rest of the run, and what to do.
fn hold_reason(cred: &CredentialPolicy, consumer: &Consumer, e: &StepError) -> String {
    let todo = match (e, consumer) {
        (StepError::Azure { source, .. }, _) => remedy(consumer, source),
        (StepError::NotConfirmed(_), Consumer::AppSettingKeyVaultRef { .. }) => format!(
            "App Service cannot resolve the reference: give the site's managed identity Key \
             Vault Secrets User on {} (or fix the reference); the next pass finishes the \
             rotation",
            cred.key_vault.vault
        ),
        // The text already says what a person must do, or that the next pass checks again.
        (StepError::Blocked(_) | StepError::Pending(_), _) => return e.to_string(),
        _ => "retried on the next pass".to_string(),
    };
    format!("{e}; {todo}")
}

/// The plan for one credential, with the lifetime the tenant allows (and why it differs).
fn plan_one(
    cred: &CredentialPolicy,
    cap: Option<&lifetime::KnownCap>,
    seen: &Observed,
    now: DateTime<Utc>,
) -> CredentialPlan {
    let (capped, note) = match lifetime::apply(cred, cap) {
        Ok(c) => c,
        Err(why) => {
            return CredentialPlan {
                name: cred.name.clone(),
                steps: Vec::new(),
                explanation: vec![format!("Blocked: {why}.")],
                next_due: None,
                blocked: Some(why),
            };
        }
    };
    let d = planner::decide(&capped, &seen.observation, now);
    CredentialPlan {
        name: cred.name.clone(),
        steps: d.steps.iter().map(planner::describe_step).collect(),
        explanation: note.into_iter().chain(d.explanation).collect(),
        next_due: d.next_due,
        blocked: d.blocked,
    }
}

/// A forced rotation that did not happen is not a success: the report says so and why (a run
/// that ended without its rotation step, however it ended).
fn refuse_unperformed_force(report: &mut CredentialReport) {
    let rotated = report
        .steps
        .iter()
        .any(|s| s.step == StepKind::Rotate && s.ok);
    if rotated || matches!(report.outcome, CredentialOutcome::Busy) {
        return;
    }
    let why = report
        .error
        .take()
        .unwrap_or_else(|| "the run ended before its rotation step".into());
    report.error = Some(format!("the forced rotation was not performed: {why}"));
    report.outcome = match report.outcome {
        CredentialOutcome::Idle => CredentialOutcome::Blocked,
        CredentialOutcome::Progressed | CredentialOutcome::InProgress => CredentialOutcome::Failed,
        other => other,
    };
}

fn fill_status(
    st: &mut CredentialStatus,
    cred: &CredentialPolicy,
    observed: &Observed,
    now: DateTime<Utc>,
) {
    if let Some(app) = &observed.app {
        st.app_id = Some(app.app_id.to_string());
        st.display_name = Some(app.display_name.clone());
    }
    if let Err(why) = &observed.observation.app {
        st.problem = Some(why.clone());
    }
    match &observed.observation.vault {
        VaultState::Missing => {
            st.problem
                .get_or_insert_with(|| "the Key Vault secret does not exist".into());
        }
        VaultState::SoftDeleted { .. } => {
            st.problem.get_or_insert_with(|| {
                "the Key Vault secret is soft-deleted: recover or purge it".into()
            });
        }
        VaultState::Current(v) => {
            let (key, source) = match &v.identity {
                KeyIdentity::Tagged(k) => (Some(*k), "tags, confirmed by hint".to_string()),
                KeyIdentity::InferredFromHint(k) => (Some(*k), "hint".to_string()),
                KeyIdentity::Unknown { reason } => (None, format!("unknown: {reason}")),
            };
            st.key_id_in_use = key.map(|k| k.to_string());
            st.key_id_source = Some(source);
            if let (Some(k), Some(app)) = (key, &observed.app)
                && let Some(p) = app.passwords.iter().find(|p| p.key_id == k)
            {
                st.expires = p.end;
                st.days_left = p.end.map(|e| (e - now).num_days());
                st.next_due = p.end.map(|e| e - cred.renew_before);
            }
            if let Some(t) = &v.tags {
                st.phase = Some(tags::phase_name(t.phase).to_string());
                st.last_rotation = t.rotated_at;
            }
        }
    }
    st.consumers = cred
        .consumers
        .iter()
        .zip(&observed.observation.consumers)
        .map(|(c, o)| {
            let synced = match &observed.observation.vault {
                VaultState::Current(v) => v
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.synced.iter().any(|s| s == &o.id)),
                VaultState::Missing | VaultState::SoftDeleted { .. } => false,
            };
            let (in_sync, detail) = match &o.sync {
                ConsumerSync::InSync => (Some(true), None),
                ConsumerSync::OutOfSync { detail } => (Some(false), Some(detail.clone())),
                ConsumerSync::Blocked { reason } => (None, Some(format!("blocked: {reason}"))),
                ConsumerSync::NotObservable {
                    healthy: Some(false),
                } => (Some(false), Some("reports an error".to_string())),
                ConsumerSync::NotObservable { healthy } => (
                    if synced { Some(true) } else { None },
                    Some(format!(
                        "write-only{}",
                        if *healthy == Some(true) {
                            "; healthy"
                        } else {
                            ""
                        }
                    )),
                ),
            };
            ConsumerStatus {
                description: c.describe(),
                in_sync,
                detail,
            }
        })
        .collect();
    st.consumers_in_sync = st.consumers.iter().all(|c| c.in_sync != Some(false))
        && !observed
            .observation
            .consumers
            .iter()
            .any(|o| matches!(o.sync, ConsumerSync::Blocked { .. }));
}

/// What the audit record needs beyond the report.
struct Audit<'a> {
    seen: Option<&'a Observed>,
    duration: Duration,
}

#[async_trait::async_trait]
impl RotatorService for Engine {
    async fn rotation_pass(&self, now: DateTime<Utc>, budget: Duration) -> PassReport {
        self.pass(now, budget).await
    }

    async fn rotate_one(
        &self,
        credential: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<CredentialReport, ServiceError> {
        let cred = self
            .credential(credential)
            .ok_or_else(|| ServiceError::UnknownCredential(credential.to_string()))?;
        Ok(self
            .run_credential(cred, now, force, None, &run_id(now))
            .await)
    }

    async fn self_test(&self, now: DateTime<Utc>) -> SelfTestReport {
        self.self_test_report(now).await
    }

    async fn status(&self, now: DateTime<Utc>) -> StatusReport {
        self.status_report(now).await
    }

    async fn plan(&self, now: DateTime<Utc>) -> PlanReport {
        self.plan_report(now).await
    }
}
