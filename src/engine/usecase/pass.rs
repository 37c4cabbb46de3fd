//! Use case: the timer's rotation pass ([`Engine::pass`]) over every enrolled credential.
//!
//! Expected flow: fetch the rotator's tokens for the resources the pass uses, together
//! (alongside the first runs: a failure there is only logged); run each enrolled credential ([`super::rotate`]), at most `max_parallel` at
//! once, fewer while Azure answers 429 ([`Aimd`]); then, with what is left of the budget, the
//! scan for credentials nobody rotates ([`super::scan`]), told which passwords and keys are
//! enrolled by the credentials' last observations, certificates' included (so it costs Graph
//! list pages only); then the run record
//! ([`crate::engine::records::RunRecord`]).
//!
//! Guarantees: a pass never starts a credential after its budget is spent (it is reported as
//! deferred); the scan can never hold up a rotation, and its failure is a warning in the
//! report, never a failed pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::azure::common::THROTTLED;
use crate::engine::certificate::CertObserved;
use crate::engine::context::{Clock, Engine, run_id};
use crate::engine::inventory::Enrolment;
use crate::engine::observe::Observed;
use crate::engine::parallelism::Aimd;
use crate::engine::records::{self, RecordPath};
use crate::engine::report::{CredentialReport, PassReport};
use crate::engine::usecase::scan::{learn_certificate, learn_enrolment};
use crate::policy::Consumer;

impl Engine {
    /// The name of the pass's job `i`: a client secret, then the certificates.
    fn job_name(&self, i: usize) -> String {
        let secrets = &self.policy.credentials;
        match secrets.get(i) {
            Some(c) => c.name.clone(),
            None => self.policy.certificates[i - secrets.len()].name.clone(),
        }
    }

    /// Runs the pass's job `i` (see [`Self::job_name`]); a client secret a certificate has
    /// replaced ([`Self::replaced_by_certificate`]) is not rotated any more.
    async fn run_job(
        &self,
        i: usize,
        now: DateTime<Utc>,
        deadline: Instant,
        id: &str,
    ) -> (CredentialReport, LastSeen) {
        let secrets = &self.policy.credentials;
        let Some(cred) = secrets.get(i) else {
            let cert = &self.policy.certificates[i - secrets.len()];
            let (report, seen) = self
                .run_certificate_seen(cert, now, Some(deadline), id)
                .await;
            return (
                report,
                seen.map_or(LastSeen::Nothing, |s| LastSeen::Certificate(i, Box::new(s))),
            );
        };
        match self.replaced_by_certificate(cred).await {
            Some(report) => (report, LastSeen::Nothing),
            None => {
                let (report, seen) = self
                    .run_credential_seen(cred, now, false, Some(deadline), id)
                    .await;
                (
                    report,
                    seen.map_or(LastSeen::Nothing, |s| LastSeen::Secret(i, Box::new(s))),
                )
            }
        }
    }

    /// Records in `enrolment` what job `i`'s run last observed.
    fn learn(&self, enrolment: &mut Enrolment, seen: &LastSeen) {
        match seen {
            LastSeen::Nothing => {}
            LastSeen::Secret(i, s) => learn_enrolment(enrolment, &self.policy.credentials[*i], s),
            LastSeen::Certificate(i, s) => {
                let cert = &self.policy.certificates[*i - self.policy.credentials.len()];
                learn_certificate(enrolment, cert, &s.observation);
            }
        }
    }
}

/// What a job's run last observed (by its job index), so the pass's scan tells the keys and
/// passwords the rotator keeps from the rest without reading them again.
enum LastSeen {
    Nothing,
    Secret(usize, Box<Observed>),
    Certificate(usize, Box<CertObserved>),
}

/// One credential's run in a pass, with its last observation; `Err(name)` when the pass's
/// budget was spent before it started (deferred).
type CredentialOutcomeOf = Result<(CredentialReport, LastSeen), String>;

impl Engine {
    pub async fn pass(&self, now: DateTime<Utc>, budget: Duration) -> PassReport {
        let deadline = Instant::now() + budget;
        let id = run_id(now);
        let clock = Clock::new(now);
        let creds = &self.policy.credentials;
        // The pass's first tokens go out together, alongside the first credential's lease
        // (whose Storage token the run fetches itself).
        let arm = creds.iter().any(|c| {
            c.consumers
                .iter()
                .any(|c| !matches!(c, Consumer::NotifyOnly { .. }))
        });
        let (_, outcomes) = futures::join!(
            self.azure.warm_tokens(arm),
            self.run_all(clock, deadline, &id)
        );
        let mut results = Vec::new();
        let mut deferred = Vec::new();
        let mut enrolment = Enrolment::from_policy(Some(&self.policy));
        // The client secrets' runs, then the certificates', in policy order.
        for o in outcomes {
            match o {
                Ok((r, seen)) => {
                    self.learn(&mut enrolment, &seen);
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
        if let Err(e) = records::write(
            self.store.as_ref(),
            &RecordPath::Run { run_id: &id },
            &report,
        )
        .await
        {
            tracing::warn!("could not record run {id}: {e}");
        }
        report
    }

    /// Every enrolled credential, in policy order (the client secrets, then the certificates),
    /// at most as many at once as the AIMD limit allows ([`Aimd`]: halved when a credential
    /// met a 429, `max_parallel` at most).
    async fn run_all(&self, clock: Clock, deadline: Instant, id: &str) -> Vec<CredentialOutcomeOf> {
        let jobs = self.policy.credentials.len() + self.policy.certificates.len();
        let mut limit = Aimd::new(self.options.max_parallel);
        let mut outcomes: Vec<Option<CredentialOutcomeOf>> = Vec::new();
        outcomes.resize_with(jobs, || None);
        let mut running = futures::stream::FuturesUnordered::new();
        let mut next = 0;
        loop {
            while next < jobs && running.len() < limit.limit() {
                let i = next;
                next += 1;
                let throttled = Arc::new(AtomicU64::new(0));
                let counter = throttled.clone();
                let epoch = limit.start();
                running.push(async move {
                    let outcome = if Instant::now() >= deadline {
                        Err(self.job_name(i))
                    } else {
                        let run = self.run_job(i, clock.now(), deadline, id);
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
}
