//! Use case: one certificate credential's run ([`Engine::run_certificate`]), run by the pass
//! beside the secret credentials, by `Rotate` on demand and planned by `Plan`
//! ([`Engine::plan_certificate`]).
//!
//! Expected flow, as the secret path's run: take the credential's lease
//! (`credential-{name}`), then repeat {observe, decide, perform `steps[0]`} until the planner
//! has nothing left or is blocked, a step fails, the step bound is reached or the pass's
//! deadline passes; release the lease; write the audit record (when something was done) and
//! the credential's last outcome; notify a person when the run failed or is blocked.
//!
//! Guarantees: one run of a credential at a time across instances (the lease); every step is
//! idempotent, so a failed run resumes from Azure's state; a key is added at most once per
//! version in a run, even if Graph's read lags behind the write (the run stops instead).

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::executor::{CertExec, kind_of};
use super::observe::{CertObserved, Sources, accepted, observe_certificate};
use crate::engine::context::{Clock, Engine};
use crate::engine::executor::StepError;
use crate::engine::ports::PortError;
use crate::engine::records::{self, AuditRecord, AuditSubject, RecordPath};
use crate::engine::report::{
    Check, CredentialOutcome, CredentialPlan, CredentialReport, ResultCode, StepRecord,
};
use crate::planner::StepKind;
use crate::planner::certificate::{CertDecision, CertStep, decide};
use crate::policy::CertificateCredentialPolicy;

impl Engine {
    /// The enrolled certificate credential of that name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateCredentialPolicy> {
        self.policy.certificates.iter().find(|c| c.name == name)
    }

    /// A report for a client secret a certificate credential has replaced (its secret
    /// released to removal or removed): the secret path no longer rotates it. `None` when it
    /// is not replaced, or that cannot be read (the secret path then runs as before).
    pub async fn replaced_by_certificate(
        &self,
        secret: &crate::policy::CredentialPolicy,
    ) -> Option<CredentialReport> {
        let cert = self
            .policy
            .certificates
            .iter()
            .find(|c| c.replaces_secret.as_deref() == Some(secret.name.as_str()))?;
        let versions = self.certs.cert_versions(&cert.certificate).await.ok()??;
        let newest = versions
            .iter()
            .filter_map(|v| {
                let t = super::tags::parse(&v.tags, cert).ok()?.state?;
                Some((v.created, t))
            })
            .max_by_key(|(c, _)| *c)?;
        newest.1.conversion?;
        Some(CredentialReport {
            name: secret.name.clone(),
            outcome: CredentialOutcome::Idle,
            steps: Vec::new(),
            error: Some(format!(
                "replaced by certificate credential {}: every consumer has moved, so it is no longer rotated",
                cert.name
            )),
            next_due: None,
        })
    }

    /// The probe's check of one certificate credential: the current key gets a token (19 when
    /// Entra refuses it), and nothing blocks it (27, with the reason).
    pub(crate) async fn check_certificate(
        &self,
        cert: &CertificateCredentialPolicy,
        now: DateTime<Utc>,
    ) -> Check {
        let name = format!("credential {}", cert.name);
        let (ok, result_code, message) = match self.probed(cert, now).await {
            Err(e) => (
                false,
                ResultCode::KeyVaultAccess,
                format!("could not observe Azure: {e}"),
            ),
            Ok((seen, _)) if seen.current.is_none() => (
                false,
                ResultCode::SecretMissing,
                format!(
                    "certificate {}/{} has no version the rotator has taken up yet; the next run creates or adopts one",
                    cert.certificate.vault, cert.certificate.name
                ),
            ),
            Ok((seen, _)) if seen.observation.current_accepted == Some(false) => (
                false,
                ResultCode::CredentialRefused,
                "Entra refuses a client assertion signed by the current certificate".into(),
            ),
            Ok((_, d)) => match d.blocked {
                Some(b) => (false, ResultCode::RotationFailed, b),
                None if d.held_up.is_empty() => (
                    true,
                    ResultCode::Ok,
                    "the current certificate gets a token".into(),
                ),
                None => (false, ResultCode::ConsumerAccess, d.held_up.join("; ")),
            },
        };
        Check {
            name,
            ok,
            result_code,
            message,
        }
    }

    /// The observation and decision with Entra's answer on the current key, asked at most
    /// once per version and [`crate::engine::usecase::self_test::PROBE_MEMO_TTL`] (the
    /// secrets' probe memo), so a monitoring tool polling the probe does not hammer Entra.
    async fn probed(
        &self,
        cert: &CertificateCredentialPolicy,
        now: DateTime<Utc>,
    ) -> Result<(CertObserved, CertDecision), PortError> {
        let mut seen = observe_certificate(&self.sources(), cert, false, now).await?;
        if let (Some((v, _)), Some(app_id)) = (seen.current.clone(), seen.app_id) {
            let known = self.probes.recall(&cert.name, &v.0, now);
            seen.observation.current_accepted = match known {
                Some(ok) => Some(ok),
                None => {
                    let ok = accepted(&self.sources(), cert, app_id, &v).await;
                    if let Some(ok) = ok {
                        self.probes.remember(&cert.name, &v.0, ok, now);
                    }
                    ok
                }
            };
        }
        let d = decide(cert, &seen.observation, now);
        Ok((seen, d))
    }

    fn sources(&self) -> Sources<'_> {
        Sources {
            azure: self.azure.as_ref(),
            certs: self.certs.as_ref(),
            policy: &self.policy,
            tenant: &self.options.tenant,
        }
    }

    /// Observes one certificate credential and decides (status, plan, the status page).
    pub async fn observe_and_decide(
        &self,
        cert: &CertificateCredentialPolicy,
        probe: bool,
        now: DateTime<Utc>,
    ) -> Result<(CertObserved, CertDecision), PortError> {
        let seen = observe_certificate(&self.sources(), cert, probe, now).await?;
        let d = decide(cert, &seen.observation, now);
        Ok((seen, d))
    }

    /// `Plan` for one certificate credential: what a run would do now, changing nothing.
    pub async fn plan_certificate(
        &self,
        cert: &CertificateCredentialPolicy,
        now: DateTime<Utc>,
    ) -> CredentialPlan {
        use crate::engine::usecase::plan::{certificate_plan, certificate_unobserved};
        match self.observe_and_decide(cert, false, now).await {
            Ok((_, d)) => certificate_plan(cert, &d),
            Err(e) => certificate_unobserved(cert, e.to_string()),
        }
    }

    /// Runs one certificate credential to a resting point (or the bounds). Never panics, never
    /// returns an error: every outcome is in the report.
    pub async fn run_certificate(
        &self,
        cert: &CertificateCredentialPolicy,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> CredentialReport {
        self.run_certificate_seen(cert, now, deadline, run_id)
            .await
            .0
    }

    /// [`Self::run_certificate`], with the run's last observation (the pass tells the keys the
    /// credential keeps from the rest by it).
    pub(crate) async fn run_certificate_seen(
        &self,
        cert: &CertificateCredentialPolicy,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
        run_id: &str,
    ) -> (CredentialReport, Option<CertObserved>) {
        let mut report = CredentialReport {
            name: cert.name.clone(),
            outcome: CredentialOutcome::Idle,
            steps: Vec::new(),
            error: None,
            next_due: None,
        };
        let lease = match self.store.lease(&format!("credential-{}", cert.name)).await {
            Ok(l) => l,
            Err(e) => {
                report.outcome = match e {
                    PortError::Busy(_) => CredentialOutcome::Busy,
                    _ => CredentialOutcome::Failed,
                };
                report.error = Some(format!("could not take the credential's lease: {e}"));
                return (report, None);
            }
        };
        let started = Instant::now();
        let clock = Clock::new(now);
        let last = self.run_steps(cert, clock, deadline, &mut report).await;
        lease.release().await;
        self.finish_certificate(cert, &report, last.as_ref(), started, run_id, clock.now())
            .await;
        (report, last)
    }

    /// The observe → decide → perform loop; the last observation.
    async fn run_steps(
        &self,
        cert: &CertificateCredentialPolicy,
        clock: Clock,
        deadline: Option<Instant>,
        report: &mut CredentialReport,
    ) -> Option<CertObserved> {
        let mut added = Vec::new();
        let mut previous: Option<CertStep> = None;
        let mut last = None;
        for n in 0..self.options.max_steps_per_credential {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                report.outcome = CredentialOutcome::InProgress;
                return last;
            }
            let now = clock.now();
            // The first look asks Entra whether the current key still gets a token (a refused
            // one is renewed); later looks follow the run's own steps, which prove their keys.
            let (seen, d) = match self.observe_and_decide(cert, n == 0, now).await {
                Ok(x) => x,
                Err(e) => {
                    stop(
                        report,
                        CredentialOutcome::Failed,
                        format!("could not observe Azure: {e}"),
                    );
                    return last;
                }
            };
            let step = d.steps.first().cloned();
            last = Some(seen);
            let Some(step) = step else {
                settle(report, &d);
                return last;
            };
            // The same step again means it changed nothing Azure shows yet (a read lagging
            // behind a write): stop rather than repeat it to the step bound.
            if previous.as_ref() == Some(&step) {
                let why = format!(
                    "{} changed nothing Azure shows yet; the next run goes on",
                    kind_of(&step)
                );
                stop(report, CredentialOutcome::InProgress, why);
                return last;
            }
            previous = Some(step.clone());
            if let CertStep::AddKey { version, .. } = &step {
                if added.contains(version) {
                    let why = format!(
                        "version {version}'s key was added in this run but Graph does not show it yet: the next run goes on"
                    );
                    stop(report, CredentialOutcome::InProgress, why);
                    return last;
                }
                added.push(version.clone());
            }
            let seen = last.as_ref()?;
            if !self.perform_one(cert, seen, &step, now, report).await {
                return last;
            }
        }
        report.outcome = CredentialOutcome::InProgress;
        last
    }

    /// One step and its record; `false` when the run stops on it.
    async fn perform_one(
        &self,
        cert: &CertificateCredentialPolicy,
        seen: &CertObserved,
        step: &CertStep,
        now: DateTime<Utc>,
        report: &mut CredentialReport,
    ) -> bool {
        let exec = CertExec {
            ctx: self.exec_ctx(),
            certs: self.certs.as_ref(),
            policy: cert,
            now,
        };
        let result = exec.perform(seen, step).await;
        let (ok, detail) = match &result {
            Ok(d) => (true, d.clone()),
            Err(e) => (false, e.to_string()),
        };
        tracing::info!(step = %kind_of(step), ok, "{detail}");
        report.steps.push(StepRecord {
            at: now,
            step: kind_of(step),
            detail,
            ok,
        });
        match result {
            Ok(_) => true,
            Err(StepError::Blocked(m) | StepError::TagBudget(m)) => {
                stop(report, CredentialOutcome::Blocked, m);
                false
            }
            // Taken by Azure, not applied yet (a reference App Service resolves later).
            Err(StepError::Pending(m)) => {
                stop(report, CredentialOutcome::InProgress, m);
                false
            }
            Err(e) => {
                stop(report, CredentialOutcome::Failed, e.to_string());
                false
            }
        }
    }

    /// The audit record (when the run did something) and the last outcome, and a
    /// notification when it failed or is blocked.
    async fn finish_certificate(
        &self,
        cert: &CertificateCredentialPolicy,
        report: &CredentialReport,
        seen: Option<&CertObserved>,
        started: Instant,
        run_id: &str,
        now: DateTime<Utc>,
    ) {
        let audit = audit_record(cert, report, seen, started, run_id, now);
        let store = self.store.as_ref();
        if !report.steps.is_empty() {
            let path = RecordPath::Audit {
                at: now,
                credential: &cert.name,
                run_id,
            };
            if let Err(e) = records::write(store, &path, &audit).await {
                tracing::warn!("the audit record was not kept: {e}");
            }
        }
        let last = RecordPath::Last {
            credential: &cert.name,
        };
        if let Err(e) = records::write(store, &last, &audit).await {
            tracing::warn!("could not record the last outcome of {}: {e}", cert.name);
        }
        if matches!(
            report.outcome,
            CredentialOutcome::Failed | CredentialOutcome::Blocked
        ) && let Some(error) = &report.error
            && let Err(e) = self.notifier.rotation_failed(&cert.name, error, now).await
        {
            tracing::warn!("could not notify about {}: {e}", cert.name);
        }
    }
}

fn stop(report: &mut CredentialReport, outcome: CredentialOutcome, error: String) {
    report.outcome = outcome;
    report.error = Some(error);
}

/// The planner has nothing to do now: blocked, or resting until `next_due`.
fn settle(report: &mut CredentialReport, d: &CertDecision) {
    report.next_due = d.next_due;
    if let Some(b) = &d.blocked {
        stop(report, CredentialOutcome::Blocked, b.clone());
        return;
    }
    report.outcome = if report.steps.is_empty() {
        CredentialOutcome::Idle
    } else {
        CredentialOutcome::Progressed
    };
    if !d.held_up.is_empty() {
        stop(report, CredentialOutcome::Blocked, d.held_up.join("; "));
    }
}

fn audit_record(
    cert: &CertificateCredentialPolicy,
    report: &CredentialReport,
    seen: Option<&CertObserved>,
    started: Instant,
    run_id: &str,
    now: DateTime<Utc>,
) -> AuditRecord {
    let state = seen.and_then(|s| {
        let (id, _) = s.current.as_ref()?;
        match &s.observation.vault {
            crate::planner::certificate::CertVaultState::Present(c) => c
                .versions
                .iter()
                .find(|v| &v.version == id)
                .and_then(|v| v.tags.clone()),
            _ => None,
        }
    });
    let subject = AuditSubject {
        credential: cert.name.clone(),
        application: None,
        key_vault: format!("{}/{}", cert.certificate.vault, cert.certificate.name),
        state: state.map(|t| (t.key_id, t.previous_key_id, t.phase)),
    };
    let elapsed = started.elapsed();
    AuditRecord::of_run(subject, report, StepKind::ProveKey, run_id, now, elapsed)
}
