//! Use case: `Plan` ([`Engine::plan_report`]), the dry run — for each enrolled credential, what
//! a pass would do now and why, with the password lifetime the tenant allows
//! ([`crate::engine::lifetime`]).
//!
//! Guarantees: changes nothing (one observation per credential, no token request); a
//! credential that cannot be observed gets a plan that says so, as `blocked`.

use chrono::{DateTime, Utc};

use crate::engine::context::Engine;
use crate::engine::lifetime;
use crate::engine::observe::{Observed, observe};
use crate::engine::report::{CredentialPlan, PlanReport};
use crate::planner;
use crate::policy::CredentialPolicy;

impl Engine {
    pub async fn plan_report(&self, now: DateTime<Utc>) -> PlanReport {
        let mut credentials = Vec::new();
        for cred in &self.policy.credentials {
            let cap = lifetime::load(self.store.as_ref(), cred).await;
            let plan = match observe(self.azure.as_ref(), cred, self.tenant_for(cred), false).await
            {
                Ok(o) => plan_one(cred, cap.as_ref(), &o, now),
                Err(e) => {
                    blocked_plan(cred, format!("could not observe Azure: {e}"), e.to_string())
                }
            };
            credentials.push(plan);
        }
        for cert in &self.policy.certificates {
            credentials.push(self.plan_certificate(cert, now).await);
        }
        PlanReport { now, credentials }
    }
}

/// A plan with no steps: `why` explains it, `blocked` is the reason a person reads.
fn blocked_plan(cred: &CredentialPolicy, why: String, blocked: String) -> CredentialPlan {
    CredentialPlan {
        name: cred.name.clone(),
        steps: Vec::new(),
        explanation: vec![why],
        next_due: None,
        blocked: Some(blocked),
    }
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
        Err(why) => return blocked_plan(cred, format!("Blocked: {why}."), why),
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
