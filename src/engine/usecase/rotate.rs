//! Use case: one credential's rotation run ([`Engine::run_credential`]), the unit a pass runs
//! for each credential and `Rotate` runs on demand.
//!
//! Expected flow: take the credential's blob lease, then repeat {observe (everything at first,
//! together with reading the learnt lifetime cap; then only what a failed step may have
//! half-written: a step that succeeded says what it wrote), decide, perform the first step —
//! or, when it is a consumer update, the decision's updates of consumers on different
//! resources together (`planner::first_batch`)}
//! until the planner has nothing left, a step fails, the credential's step bound is reached or
//! the pass's deadline passes; write the tags the steps left unwritten (one write, the run's
//! last to Azure); then, together, release the lease and write the run's audit record and the
//! credential's last outcome ([`crate::engine::records`]); notify when it failed or is blocked.
//!
//! A consumer that cannot be read (observed `Blocked`) or whose write fails is held on its own
//! for the rest of the run ([`Observer::hold`]): the run goes on with the other consumers and
//! the renewal, and ends `Blocked` (or `Failed` when one of those writes failed in this run)
//! with an error, and a notification, naming each held consumer, why, and what to do.
//!
//! Guarantees: one rotation of a credential at a time across instances (the lease); a failed
//! step leaves state that the next run resumes from. Consumer updates performed together are
//! the same steps the loop would take one per turn (each writes only its own resource, from
//! the same observed version, and its `rotator-synced` entry is deferred either way), so a
//! crash among them leaves what a crash between them would: written consumers not yet
//! recorded, which the next run reads (or, unreadable, writes again: idempotent). A forced rotation happens at once (also
//! inside a grace period) or the report says why not, as a failure. A lifetime the tenant
//! refused is never asked again ([`lifetime`]): the rotation retries at once with a shorter one.
//!
//! Caveats: `now` advances with the wall clock from the host's `UtcNow`, so a run that takes
//! minutes sees the minutes pass.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::engine::context::{Clock, Engine};
use crate::engine::executor::{self, ExecContext, StepError};
use crate::engine::lifetime::{self, KnownCap};
use crate::engine::observe::{Observed, Observer, remedy};
use crate::engine::ports::{AzurePorts, LeaseGuard, PortError};
use crate::engine::records::{self, AuditRecord, AuditSubject, RecordPath};
use crate::engine::report::{CredentialOutcome, CredentialReport, StepRecord};
use crate::planner::{self, Step, StepKind, VaultState};
use crate::policy::minimums::MIN_FORCED_INTERVAL;
use crate::policy::{Consumer, CredentialPolicy};

impl Engine {
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
    pub(crate) async fn run_credential_seen(
        &self,
        cred: &CredentialPolicy,
        now: DateTime<Utc>,
        force: bool,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> (CredentialReport, Option<Observed>) {
        // The pass polls several credentials' runs in one task: a span entered with a guard
        // would stay entered across their awaits and label one credential's logs with
        // another's, so the span instruments the future instead.
        let span = tracing::info_span!("credential", credential = %cred.name, run = %run_id);
        self.run_leased(cred, Clock::new(now), force, deadline, run_id)
            .instrument(span)
            .await
    }

    /// [`Self::run_credential_seen`] inside the credential's span.
    async fn run_leased(
        &self,
        cred: &CredentialPolicy,
        clock: Clock,
        force: bool,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> (CredentialReport, Option<Observed>) {
        let lease = match self.credential_lease(cred).await {
            Ok(lease) => lease,
            Err(report) => return (report, None),
        };
        let started = Instant::now();
        let mut run = Run::new(self, cred, force, clock);
        for _ in 0..self.options.max_steps_per_credential {
            if run.step(deadline).await.is_break() {
                break;
            }
        }
        write_unwritten_tags(self.azure.as_ref(), cred, &mut run.observer).await;
        // The tag write above was the run's last write to Azure: from here the lease guards
        // nothing, so its release and the run's records (our own storage) go out together
        // instead of holding the pass's slot for three storage round trips in a row.
        let (_, outcome) = futures::join!(lease.release(), run.finish(run_id, started.elapsed()));
        outcome
    }

    /// The credential's lease, or the report of a run that could not start without it.
    async fn credential_lease(
        &self,
        cred: &CredentialPolicy,
    ) -> Result<Box<dyn LeaseGuard>, CredentialReport> {
        let (outcome, error) = match self.store.lease(&format!("credential-{}", cred.name)).await {
            Ok(lease) => return Ok(lease),
            Err(PortError::Busy(m)) => (
                CredentialOutcome::Busy,
                format!("another run holds the lease: {m}"),
            ),
            Err(e) => (
                CredentialOutcome::Failed,
                format!("could not take the credential's lease: {e}"),
            ),
        };
        let mut report = empty_report(cred);
        report.outcome = outcome;
        report.error = Some(error);
        Err(report)
    }
}

fn empty_report(cred: &CredentialPolicy) -> CredentialReport {
    CredentialReport {
        name: cred.name.clone(),
        outcome: CredentialOutcome::Idle,
        steps: Vec::new(),
        error: None,
        next_due: None,
    }
}

/// One credential run in progress: what the loop carries from one step to the next.
struct Run<'e> {
    engine: &'e Engine,
    cred: &'e CredentialPolicy,
    force: bool,
    clock: Clock,
    report: CredentialReport,
    /// True once the forced rotation was asked for (or refused), and always when not forcing:
    /// the steps after it are ordinary ones.
    forced: bool,
    refused: Option<Refusal>,
    ctx: ExecContext<'e>,
    observer: Observer,
    /// The tenant's password-lifetime cap as learnt so far.
    known_cap: Option<KnownCap>,
    /// False until the cap was read from storage, together with the first observation.
    cap_loaded: bool,
    /// A consumer Azure has taken a write for but not finished applying (an asynchronous Key
    /// Vault reference resolution): held for this run, the next run checks again.
    not_failures: NotFailures,
    last_seen: Option<Observed>,
}

impl<'e> Run<'e> {
    fn new(engine: &'e Engine, cred: &'e CredentialPolicy, force: bool, clock: Clock) -> Self {
        Self {
            engine,
            cred,
            force,
            clock,
            report: empty_report(cred),
            forced: !force,
            refused: None,
            ctx: engine.exec_ctx(),
            observer: Observer::new(cred, false),
            known_cap: None,
            cap_loaded: false,
            not_failures: NotFailures::default(),
            last_seen: None,
        }
    }

    /// Ends the run with `outcome` and `error`.
    fn stop(&mut self, outcome: CredentialOutcome, error: String) -> ControlFlow<()> {
        self.report.outcome = outcome;
        self.report.error = Some(error);
        ControlFlow::Break(())
    }

    /// Observe, decide, perform the first step; `Break` when the run is over.
    async fn step(&mut self, deadline: Option<Instant>) -> ControlFlow<()> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            self.report.outcome = CredentialOutcome::InProgress;
            return ControlFlow::Break(());
        }
        let observed = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                return self.stop(
                    CredentialOutcome::Failed,
                    format!("observing Azure failed: {e}"),
                );
            }
        };
        let t = self.clock.now();
        self.last_seen = Some(observed.clone());
        // The policy as the tenant allows it: a lifetime Graph refused is not asked again.
        let cred = match lifetime::apply(self.cred, self.known_cap.as_ref()) {
            Ok((capped, _)) => capped,
            Err(why) => return self.stop(CredentialOutcome::Blocked, why),
        };
        let Some(batch) = self.next_steps(&cred, &observed, t) else {
            return ControlFlow::Break(());
        };
        let results = self.perform(&cred, &observed, &batch, t).await;
        self.account_batch(&cred, &batch, results)
    }

    /// Accounts for each step of a batch in its order. The run stops as the first step that
    /// stops it says (its outcome and error), after every step's record is in the report.
    fn account_batch(
        &mut self,
        cred: &CredentialPolicy,
        batch: &[Step],
        results: Vec<Result<String, StepError>>,
    ) -> ControlFlow<()> {
        let mut stopped = None;
        for (step, result) in batch.iter().zip(results) {
            let flow = self.account(cred, step, result);
            if flow.is_break() && stopped.is_none() {
                stopped = Some((self.report.outcome, self.report.error.clone()));
            }
        }
        let Some((outcome, error)) = stopped else {
            return ControlFlow::Continue(());
        };
        self.report.outcome = outcome;
        self.report.error = error;
        ControlFlow::Break(())
    }

    /// Observes Azure; the first time also reads the learnt lifetime cap, at the same time
    /// (it is only needed once the observation is in).
    async fn observe(&mut self) -> Result<Observed, PortError> {
        let engine = self.engine;
        let tenant = engine.tenant_for(self.cred);
        let observing = self
            .observer
            .observe(engine.azure.as_ref(), self.cred, tenant);
        if self.cap_loaded {
            return observing.await;
        }
        let loading = lifetime::load(engine.store.as_ref(), self.cred);
        let (observed, cap) = futures::join!(observing, loading);
        self.known_cap = cap;
        self.cap_loaded = true;
        observed
    }

    /// The planner's next steps now (`planner::first_batch`: its first step, or consumer
    /// updates of different resources together), or `None` when the run is over (the report
    /// says why).
    fn next_steps(
        &mut self,
        cred: &CredentialPolicy,
        observed: &Observed,
        t: DateTime<Utc>,
    ) -> Option<Vec<Step>> {
        let mut decision = planner::decide(cred, &observed.observation, t);
        // On demand: the planner says what a forced rotation is (its cleanup first, then
        // Rotate{Forced}), also inside a grace period: a leaked secret is replaced at once,
        // and the password consumers hold now keeps the policy's grace as the previous one.
        if !self.forced && decision.blocked.is_none() {
            if let Err(r) = forced_interval_allows(observed, t) {
                self.forced = true;
                self.refused = Some(r);
            } else {
                decision = planner::decide_forced(cred, &observed.observation, t);
            }
        }
        if let Some(why) = decision.blocked {
            let _ = self.stop(CredentialOutcome::Blocked, why);
            return None;
        }
        let batch = planner::first_batch(cred, &decision.steps);
        let Some(step) = batch.first() else {
            let report = &mut self.report;
            report.next_due = decision.next_due;
            report.outcome = settled_outcome(report, &decision.held_up, self.not_failures);
            if !decision.held_up.is_empty() {
                report.error = Some(format!(
                    "held up by {} consumer(s), the others are done: {}",
                    decision.held_up.len(),
                    decision.held_up.join("; ")
                ));
            }
            return None;
        };
        // The forced rotation is asked for once; the steps after it are ordinary ones.
        if matches!(step, Step::Rotate { .. }) {
            self.forced = true;
        }
        Some(batch)
    }

    /// Performs `batch` (one step, or consumer updates together) and keeps what each step
    /// taught: what it wrote (or may have half-written), the passwords addPassword answered
    /// with, and the tenant's lifetime cap. The results are in the batch's order.
    async fn perform(
        &mut self,
        cred: &CredentialPolicy,
        observed: &Observed,
        batch: &[Step],
        t: DateTime<Utc>,
    ) -> Vec<Result<String, StepError>> {
        let done = executor::perform_batch(&self.ctx, cred, observed, batch, t).await;
        let mut results = Vec::with_capacity(done.len());
        for (step, result) in batch.iter().zip(done) {
            results.push(match result {
                Ok(done) => {
                    self.observer.learn(step, &done.learnt);
                    Ok(done.detail)
                }
                Err(e) => {
                    self.observer.performed(step);
                    Err(e)
                }
            });
        }
        let store = self.engine.store.as_ref();
        // Only a batch of one can be a rotation.
        if let ([step], [result]) = (batch, results.as_slice()) {
            if lifetime_refused(result) {
                self.known_cap = Some(lifetime::refused(store, cred, cred.lifetime, t).await);
            } else if let (Ok(_), Step::Rotate { .. }, Some(cap)) = (result, step, self.known_cap) {
                lifetime::accepted(store, cred, cap, cred.lifetime).await;
            }
        }
        if let Ok(mut added) = self.ctx.added.lock() {
            self.observer.added(added.drain(..));
        }
        results
    }

    /// Records the step's result in the report and says whether the run goes on.
    fn account(
        &mut self,
        cred: &CredentialPolicy,
        step: &Step,
        result: Result<String, StepError>,
    ) -> ControlFlow<()> {
        self.not_failures.count(&result);
        let ok = result.is_ok();
        let lifetime_refused = lifetime_refused(&result);
        // A consumer that cannot be written is held on its own; the others still move.
        let held = match (&result, consumer_of(cred, step)) {
            (Err(e), Some((index, consumer))) if e.is_consumers() => {
                self.observer.hold(index, hold_reason(cred, consumer, e));
                true
            }
            _ => false,
        };
        let blocked = matches!(result, Err(StepError::Blocked(_)));
        let detail = result.unwrap_or_else(|e| e.to_string());
        let name = step.kind();
        if ok {
            tracing::info!(step = name.as_str(), "{detail}");
        } else {
            tracing::warn!(step = name.as_str(), "step failed: {detail}");
        }
        self.report.steps.push(StepRecord {
            at: self.clock.now(),
            step: name,
            detail: detail.clone(),
            ok,
        });
        if lifetime_refused {
            // Try again at once with the next shorter lifetime (bounded by the ladder).
            self.forced = !self.force;
            self.report.error = Some(detail);
            return ControlFlow::Continue(());
        }
        if !ok && !held {
            let outcome = if blocked {
                CredentialOutcome::Blocked
            } else {
                CredentialOutcome::Failed
            };
            return self.stop(outcome, detail);
        }
        self.report.outcome = CredentialOutcome::InProgress;
        ControlFlow::Continue(())
    }

    /// The run's answer after the loop: the forced rotation's fate, the records, and the
    /// failure notification.
    async fn finish(
        mut self,
        run_id: &str,
        duration: Duration,
    ) -> (CredentialReport, Option<Observed>) {
        if let Some(r) = self.refused.take() {
            r.apply(&mut self.report);
        } else if self.force {
            refuse_unperformed_force(&mut self.report);
        }
        let now = self.clock.now();
        let audit = audit_record(
            self.cred,
            &self.report,
            self.last_seen.as_ref(),
            duration,
            run_id,
            now,
        );
        record(self.engine, &audit).await;
        if matches!(
            self.report.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ) {
            let error = self.report.error.as_deref().unwrap_or("no detail");
            if let Err(e) = self
                .engine
                .notifier
                .rotation_failed(&self.cred.name, error, self.clock.now())
                .await
            {
                tracing::warn!("could not send the failure notification: {e}");
            }
        }
        (self.report, self.last_seen)
    }
}

fn lifetime_refused(result: &Result<String, StepError>) -> bool {
    matches!(
        result,
        Err(StepError::Azure {
            source: PortError::LifetimeRefused(_),
            ..
        })
    )
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

/// The run's audit record: the state as last observed (after the final step when the run
/// settled, which is what the record is about), key ids, never values.
fn audit_record(
    cred: &CredentialPolicy,
    report: &CredentialReport,
    seen: Option<&Observed>,
    duration: Duration,
    run_id: &str,
    now: DateTime<Utc>,
) -> AuditRecord {
    let tags = seen.and_then(|o| match &o.observation.vault {
        VaultState::Current(v) => v.tags.clone(),
        VaultState::Missing | VaultState::SoftDeleted { .. } => None,
    });
    let subject = AuditSubject {
        credential: cred.name.clone(),
        application: seen.and_then(|o| o.app.as_ref()).map(Into::into),
        key_vault: format!("{}/{}", cred.key_vault.vault, cred.key_vault.secret),
        state: tags.map(|t| (t.key_id, t.previous_key_id, t.phase)),
    };
    AuditRecord::of_run(subject, report, StepKind::Rotate, run_id, now, duration)
}

/// The audit record (one per run that changed something) and the credential's last outcome,
/// written together (two different blobs). Failures are warnings: a record never fails a run.
async fn record(engine: &Engine, audit: &AuditRecord) {
    let store = engine.store.as_ref();
    let credential = audit.credential.as_str();
    let keep_audit = async {
        if audit.report.steps.is_empty() {
            return;
        }
        if let Ok(line) = serde_json::to_string(audit) {
            tracing::info!(audit = %line, "rotation audit record");
        }
        let path = RecordPath::Audit {
            at: audit.at,
            credential,
            run_id: &audit.run_id,
        };
        if let Err(e) = records::write(store, &path, audit).await {
            tracing::warn!("the audit record was not kept: {e}");
        }
    };
    let keep_last = async {
        if let Err(e) = records::write(store, &RecordPath::Last { credential }, audit).await {
            tracing::warn!("could not record the last outcome of {credential}: {e}");
        }
    };
    futures::join!(keep_audit, keep_last);
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
